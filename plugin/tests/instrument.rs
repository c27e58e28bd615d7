//! The instrument core without a host: it plays what `piano-ssm render` plays, switches
//! models without allocating on the audio thread, keeps playing through a broken model and
//! stays silent, with a message, when there is no model.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use alloc_counter::{watched, Counting};
use parking_lot::RwLock;
use plugin::catalog::Catalog;
use plugin::instrument::{Instrument, Settings};
use plugin::shared::Shared;
use ssm_runtime::checkpoint::{import_pth, ImportOptions};
use ssm_runtime::midi_file::TimedEvent;
use ssm_runtime::notes::NoteMap;
use ssm_runtime::render::render_roll;
use ssm_runtime::{Engine, KeyEvent, MidiFile};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn reference() -> PathBuf {
    test_support::reference_dir()
}

/// A model folder with the published S and L checkpoints (16 kHz) imported into it.
fn model_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for size in ["S", "L"] {
        let pth = reference().join(format!(
            "weights/PianoSSM_{size}_MH_maestro_all_16000_model.pth"
        ));
        import_pth(&pth, &ImportOptions::default())
            .unwrap()
            .save(&dir.path().join(format!("{size}.safetensors")))
            .unwrap();
    }
    dir
}

/// The user folder's models only: these tests compare against the published checkpoints.
fn catalog(dir: &Path) -> Arc<RwLock<Catalog>> {
    Arc::new(RwLock::new(Catalog::user_models(Some(dir))))
}

/// A block without events.
const NONE: [(u32, KeyEvent); 0] = [];

const S: Settings = Settings {
    head: 3,
    ..Settings::DEFAULT
};

/// Plays a MIDI file through the instrument in blocks of `block`, as a sample-accurate host
/// does: each event on the first sample of its roll frame at the model's `midi_rate`,
/// floor(k · rate / midi_rate), which at 44.1 kHz lies a fraction of a sample before the
/// frame's time (the frame is taken as the file renderer takes it, from the event's time in
/// seconds).
fn play(
    inst: &mut Instrument,
    settings: &Settings,
    midi: &MidiFile,
    (rate, midi_rate): (u32, u32),
    len: usize,
    block: usize,
) -> Vec<f32> {
    let events: Vec<(u64, KeyEvent)> = midi.events_at_frame_starts(rate, midi_rate).collect();
    let mut out = vec![0.0f32; len];
    let mut next = 0;
    for (b, chunk) in out.chunks_mut(block).enumerate() {
        let (start, end) = ((b * block) as u64, (b * block + chunk.len()) as u64);
        let first = next;
        while next < events.len() && events[next].0 < end {
            next += 1;
        }
        let these = events[first..next]
            .iter()
            .map(|&(at, e)| ((at - start) as u32, e));
        inst.process(settings, these, chunk);
    }
    out
}

/// Plays `midi` through a fresh instrument on the published S (head 3) at 48 kHz in blocks of
/// `block`, and renders its roll with the file renderer; returns the instrument's reported
/// latency, its output and the largest difference from the render after that latency.
fn against_file_renderer(
    dir: &Path,
    midi: &MidiFile,
    roll: &ssm_runtime::Roll,
    block: usize,
) -> (usize, Vec<f32>, f32) {
    let rate = 48_000;
    let mut inst = Instrument::new(catalog(dir), Arc::new(Shared::default()), rate, block, &S);
    let model = ssm_runtime::Model::load(&dir.join("S.safetensors")).unwrap();
    let mut engine = Engine::new(&model, rate).unwrap();
    engine.set_head(3).unwrap();
    let expected = render_roll(&mut engine, roll, |_, _| {});
    let latency = inst.latency() as usize;
    let out = play(
        &mut inst,
        &S,
        midi,
        (rate, model.info.midi_rate),
        expected.len() + latency,
        block,
    );
    let worst = out[latency..]
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    (latency, out, worst)
}

#[test]
fn plays_what_the_file_renderer_plays() {
    let dir = model_folder();
    let midi = MidiFile::load(&reference().join("midi/pedal.mid")).unwrap();
    let roll = midi.roll(1000, 1.5);
    let (latency, out, worst) = against_file_renderer(dir.path(), &midi, &roll, 512);
    assert_eq!(latency, 48, "one 1 ms frame at 48 kHz");
    assert!(out[..latency].iter().all(|&v| v == 0.0));
    assert!(worst <= 1e-6, "max difference {worst}");
}

/// Overlapping notes of one key (a re-strike before the note-off, which ends both; the same
/// key struck twice at once) play as the file renderer plays them: the roll sums their
/// velocities, as the training pipeline does, past 127.
#[test]
fn overlapping_restrikes_play_as_the_file_renderer() {
    let dir = model_folder();
    let at = |seconds, event| TimedEvent {
        seconds,
        tick: 0,
        instrument: 0,
        event,
    };
    let (on, off) = (
        |note, velocity| KeyEvent::NoteOn { note, velocity },
        |note| KeyEvent::NoteOff { note },
    );
    let midi = MidiFile::from_events(vec![
        at(0.1003, on(60, 80)),
        at(0.2507, on(60, 60)),
        at(0.3, on(64, 100)),
        at(0.4502, off(60)),
        at(0.5, on(60, 127)),
        at(0.5, on(60, 127)),
        at(0.7, off(60)),
        at(0.75, off(64)),
    ]);
    let roll = midi.roll(1000, 1.0);
    let c4 = 60 - 21;
    assert_eq!(roll.frames[300][c4], 140, "re-struck C4: 80 + 60");
    assert_eq!(roll.frames[600][c4], 254, "C4 struck twice at once");
    let (_, _, worst) = against_file_renderer(dir.path(), &midi, &roll, 256);
    assert!(worst <= 1e-6, "max difference {worst}");
}

#[test]
fn model_switch_heads_notes_and_reset_never_allocate() {
    let dir = model_folder();
    let shared = Arc::new(Shared::default());
    let mut inst = Instrument::new(catalog(dir.path()), shared.clone(), 44_100, 256, &S);
    let mut block = vec![0.0f32; 256];
    let large = Settings { size: 1, ..S };
    let note_on = KeyEvent::NoteOn {
        note: 60,
        velocity: 100,
    };
    let ((), count) = watched(|| {
        let first = [(0, note_on), (10, KeyEvent::Sustain { value: 127 })];
        inst.process(&S, first, &mut block);
        let off = [(3, KeyEvent::NoteOff { note: 60 })];
        inst.process(&Settings { head: 7, ..S }, off, &mut block);
        // ask for L, then keep playing until the loader thread has delivered it
        for _ in 0..2000 {
            inst.process(&large, NONE, &mut block);
            if shared.playing_size.load(Ordering::Relaxed) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for _ in 0..20 {
            // crossfade and hand the old engine back
            inst.process(&large, NONE, &mut block);
        }
        inst.process(&large, [(0, KeyEvent::AllSoundOff)], &mut block[..17]);
        inst.reset();
        inst.process(&large, NONE, &mut block);
        // a host's flood in one block: thousands of events, more than the player keeps
        let flood = (0..20_000u32).map(|i| {
            let note = 21 + (i % 88) as u8;
            let event = match i % 3 {
                0 => KeyEvent::NoteOn {
                    note,
                    velocity: 1 + (i % 127) as u8,
                },
                1 => KeyEvent::NoteOff { note },
                _ => KeyEvent::Sustain {
                    value: (i % 128) as u8,
                },
            };
            (i * 256 / 20_000, event)
        });
        inst.process(&large, flood, &mut block);
        inst.process(&large, NONE, &mut block);
    });
    assert_eq!(
        shared.playing_size.load(Ordering::Relaxed),
        1,
        "switched to L"
    );
    assert_eq!(count, 0, "the audio path allocated or freed {count} times");
}

#[test]
fn held_keys_sound_through_a_switch_without_a_click() {
    let dir = model_folder();
    let shared = Arc::new(Shared::default());
    let mut inst = Instrument::new(catalog(dir.path()), shared.clone(), 16_000, 64, &S);
    let mut out = Vec::new();
    let mut block = [0.0f32; 64];
    let note_on = KeyEvent::NoteOn {
        note: 48,
        velocity: 90,
    };
    for i in 0..600 {
        let settings = if i < 100 {
            S
        } else {
            Settings { size: 1, ..S }
        };
        let events = if i == 0 {
            vec![(0, note_on)]
        } else {
            Vec::new()
        };
        inst.process(&settings, events, &mut block);
        out.extend_from_slice(&block);
        if i >= 100 && shared.playing_size.load(Ordering::Relaxed) != 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(shared.playing_size.load(Ordering::Relaxed), 1);
    let tail = &out[out.len() - 3200..];
    let rms = (tail.iter().map(|v| v * v).sum::<f32>() / tail.len() as f32).sqrt();
    assert!(
        rms > 1e-3,
        "the held note still sounds after the switch (rms {rms})"
    );
    // no sample-to-sample jump bigger than the note itself makes anywhere
    let steps = |s: &[f32]| {
        s.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max)
    };
    let before = steps(&out[3200..6400]);
    assert!(
        steps(&out[6400..]) <= 2.0 * before + 1e-3,
        "switch produced a jump"
    );
}

#[test]
fn broken_model_keeps_the_previous_one_playing() {
    let dir = model_folder();
    std::fs::write(dir.path().join("L.safetensors"), b"truncated").unwrap();
    let shared = Arc::new(Shared::default());
    let cat = catalog(dir.path());
    assert_eq!(cat.read().problems.len(), 1, "the broken file is reported");
    // the catalog only lists S now; ask for a family that does not exist
    let mut inst = Instrument::new(cat, shared.clone(), 16_000, 64, &S);
    let mut block = [0.0f32; 64];
    let note_on = KeyEvent::NoteOn {
        note: 60,
        velocity: 90,
    };
    for i in 0..50 {
        let events = if i == 0 {
            vec![(0, note_on)]
        } else {
            Vec::new()
        };
        inst.process(&Settings { family: 5, ..S }, events, &mut block);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        shared.playing_family.load(Ordering::Relaxed),
        1,
        "family 0 still plays"
    );
    assert!(block.iter().any(|v| v.abs() > 1e-4), "and makes sound");
    let status = shared.status();
    assert!(
        status.is_error && status.message.contains("cannot load"),
        "{status:?}"
    );
}

#[test]
fn without_models_it_is_silent_and_says_why() {
    let empty = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::default());
    let mut inst = Instrument::new(catalog(empty.path()), shared.clone(), 48_000, 128, &S);
    let mut block = [1.0f32; 128];
    let note_on = KeyEvent::NoteOn {
        note: 60,
        velocity: 90,
    };
    inst.process(&S, [(0, note_on)], &mut block);
    assert!(block.iter().all(|&v| v == 0.0));
    let status = shared.status();
    assert!(
        status.is_error && status.message.contains("no models found"),
        "{status:?}"
    );
    assert!(shared.held_keys()[39], "keys are still followed");
}

/// With an empty user folder the built-in family is there, first, and plays what
/// `piano-ssm render --size L` plays.
#[test]
fn the_built_in_model_plays_without_any_file() {
    let empty = tempfile::tempdir().unwrap();
    let catalog = Arc::new(RwLock::new(Catalog::scan(Some(empty.path()))));
    assert_eq!(
        catalog.read().family_name(0),
        Some(ssm_runtime::builtin::FAMILY)
    );
    let shared = Arc::new(Shared::default());
    let rate = 44_100;
    let settings = Settings {
        size: 1,
        head: 3,
        ..Settings::DEFAULT
    };
    let mut inst = Instrument::new(catalog, shared.clone(), rate, 256, &settings);
    let midi = MidiFile::load(&reference().join("midi/scale.mid")).unwrap();
    // settings.size 1 is L
    let model = ssm_runtime::builtin::load(ssm_runtime::Size::L)
        .unwrap()
        .unwrap();
    let roll = midi.roll(model.info.midi_rate, 0.5);
    let mut engine = Engine::new(&model, rate).unwrap();
    let expected = render_roll(&mut engine, &roll, |_, _| {});
    let latency = inst.latency() as usize;
    let out = play(
        &mut inst,
        &settings,
        &midi,
        (rate, model.info.midi_rate),
        expected.len() + latency,
        256,
    );
    let got = &out[latency..];
    let num: f64 = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let den: f64 = expected.iter().map(|b| (*b as f64).powi(2)).sum();
    assert!(den > 0.0, "the built-in model is silent");
    assert!(
        (num / den).sqrt() < 1e-4,
        "relative L2 {:.2e}",
        (num / den).sqrt()
    );
    assert!(!shared.status().is_error, "{:?}", shared.status());
}

/// A host that runs the plugin before its transport starts (Ardour does, from the moment its
/// engine runs) and then bounces from timeline 0, reporting each block's transport position as
/// Ardour does (the block at −latency holds the events at 0): the bounce is the file render,
/// though the plugin's own sample count was some way off the timeline's frame grid.
#[test]
fn a_bounce_after_idling_is_the_file_render() {
    let empty = tempfile::tempdir().unwrap();
    let catalog = Arc::new(RwLock::new(Catalog::scan(Some(empty.path()))));
    let settings = Settings {
        size: 1, // the built-in L: its rest is the zero state a render starts from
        ..Settings::DEFAULT
    };
    let (rate, block) = (48_000u32, 256usize);
    let mut inst = Instrument::new(catalog, Arc::new(Shared::default()), rate, block, &settings);
    let model = ssm_runtime::builtin::load(ssm_runtime::Size::L)
        .unwrap()
        .unwrap();
    let mr = model.info.midi_rate;
    let midi = MidiFile::load(&reference().join("midi/pedal.mid")).unwrap();
    let mut engine = Engine::new(&model, rate).unwrap();
    let expected = render_roll(&mut engine, &midi.roll(mr, 1.0), |_, _| {});
    // each event on its frame's first sample of the timeline, as a quantized region plays
    let events: Vec<(u64, KeyEvent)> = midi.events_at_frame_starts(rate, mr).collect();
    // idling: not a whole number of 40-sample frames
    inst.process(&settings, NONE, &mut vec![0.0f32; 781]);
    let latency = inst.latency() as usize;
    let mut out = vec![0.0f32; expected.len() + latency];
    for (b, chunk) in out.chunks_mut(block).enumerate() {
        let position = (b * block) as i64 - latency as i64;
        inst.align_to_transport(position);
        // this block's events: the timeline `latency` samples on from its position
        let from = (position + latency as i64) as u64;
        let span = from..from + chunk.len() as u64;
        let these = events
            .iter()
            .filter(|(at, _)| span.contains(at))
            .map(|&(at, e)| ((at - from) as u32, e));
        inst.process(&settings, these, chunk);
    }
    let worst = out[latency..]
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(expected.iter().any(|v| v.abs() > 1e-3), "the render sounds");
    assert!(worst <= 1e-6, "max difference {worst}");
}

/// A gain change glides over a few milliseconds instead of stepping (a step clicks), then
/// settles exactly on the new gain.
#[test]
fn gain_changes_glide() {
    let empty = tempfile::tempdir().unwrap();
    let rate = 48_000;
    let unity = Settings::DEFAULT;
    let quarter = Settings {
        gain: 0.25,
        ..unity
    };
    let play_with = |change_at: Option<usize>| -> Vec<f32> {
        let catalog = Arc::new(RwLock::new(Catalog::scan(Some(empty.path()))));
        let mut inst = Instrument::new(catalog, Arc::new(Shared::default()), rate, 256, &unity);
        let chord = [48, 55, 60, 64].map(|note| {
            let velocity = 100;
            (0, KeyEvent::NoteOn { note, velocity })
        });
        let mut out = vec![0.0f32; 256 * 40];
        for (b, block) in out.chunks_mut(256).enumerate() {
            let settings = if change_at.is_some_and(|c| b >= c) {
                &quarter
            } else {
                &unity
            };
            let events = if b == 0 { &chord[..] } else { &[] };
            inst.process(settings, events.iter().copied(), block);
        }
        out
    };
    let (a, b) = (play_with(None), play_with(Some(20)));
    let change = 20 * 256;
    assert_eq!(
        a[..change],
        b[..change],
        "nothing changes before the gain does"
    );
    // the ratio of the two outputs is the applied gain (where the signal is not tiny)
    let gain_at = |i: usize| {
        (i..i + 64)
            .filter(|&j| a[j].abs() > 1e-4)
            .map(|j| b[j] / a[j])
            .next()
            .unwrap()
    };
    let first = gain_at(change);
    assert!(first > 0.9, "the gain jumped to {first} at once");
    let mut last = first;
    for ms in 1..=50 {
        let g = gain_at(change + ms * rate as usize / 1000);
        assert!(
            g <= last + 1e-6,
            "the glide is not monotone: {g} after {last}"
        );
        last = g;
    }
    assert!(
        (last - 0.25).abs() < 1e-3,
        "50 ms after the change the gain is {last}, not 0.25"
    );
    let end = &b[b.len() - 256..];
    let ratio_exact = end
        .iter()
        .zip(&a[a.len() - 256..])
        .all(|(y, x)| *y == *x * 0.25);
    assert!(ratio_exact, "the gain settles exactly on 0.25");
}

/// Tuning, transposition and the velocity curve as plugin settings play what the file
/// renderer plays with the same changes (`Engine::tuned`, `MidiFile::with_notes`).
#[test]
fn tuning_transpose_and_velocity_curve_play_as_the_file_renderer() {
    let dir = model_folder();
    let rate = 48_000;
    let settings = Settings {
        a4: 432.0,
        transpose: -5,
        velocity_curve: 1.6,
        ..S
    };
    let mut inst = Instrument::new(
        catalog(dir.path()),
        Arc::new(Shared::default()),
        rate,
        512,
        &settings,
    );
    let midi = MidiFile::load(&reference().join("midi/scale.mid")).unwrap();
    let changed = midi.with_notes(&NoteMap::new(-5, 1.6, 0.7).unwrap());
    let model = ssm_runtime::Model::load(&dir.path().join("S.safetensors")).unwrap();
    let mut engine = Engine::tuned(&model, rate, 432.0).unwrap();
    engine.set_head(3).unwrap();
    let expected = render_roll(&mut engine, &changed.roll(1000, 1.5), |_, _| {});
    let mut untuned = Engine::new(&model, rate).unwrap();
    untuned.set_head(3).unwrap();
    let plain = render_roll(&mut untuned, &midi.roll(1000, 1.5), |_, _| {});
    let latency = inst.latency() as usize;
    let out = play(
        &mut inst,
        &settings,
        &midi,
        (rate, model.info.midi_rate),
        expected.len() + latency,
        512,
    );
    let worst = |reference: &[f32]| {
        out[latency..]
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        worst(&expected) <= 1e-6,
        "max difference {}",
        worst(&expected)
    );
    assert!(worst(&plain) > 1e-2, "the settings should change the sound");
}
