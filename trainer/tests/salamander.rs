//! The Salamander sampler: a small library generated here (WAV files named as the real
//! library names its OGGs, with the real recordings' silence before the attack) shows where
//! onsets land, that notes are pitched, layered, scaled and damped as the module says, and
//! that bad folders are named; the real library's velocity-8 layer (fetched by
//! `scripts/test.sh` with `scripts/fetch-salamander.sh --test`) shows the Vorbis path.

use std::path::Path;

mod common;

use common::real_subset;
use ssm_runtime::roll::KeyEvent;
use trainer::data::performance::Performance;
use trainer::data::salamander::{voices, Library};
use trainer::listen::rms;

const RATE: u32 = 48_000;
/// The recordings' silence before the attack.
const LEAD: f64 = 0.012;

/// A decaying tone at `freq` with `harmonics` (amplitude 1/n each), `LEAD` s of silence first.
fn tone(freq: f64, amp: f64, harmonics: usize, seconds: f64) -> Vec<f32> {
    let n = (seconds * RATE as f64) as usize;
    let lead = (LEAD * RATE as f64) as usize;
    (0..n)
        .map(|i| {
            if i < lead {
                return 0.0;
            }
            let t = (i - lead) as f64 / RATE as f64;
            let s: f64 = (1..=harmonics)
                .map(|h| (2.0 * std::f64::consts::PI * freq * h as f64 * t).sin() / h as f64)
                .sum();
            // a slow decay (T60 10 s), so whatever damps a note is the damper
            (amp * s * (-0.69 * t).exp()) as f32
        })
        .collect()
}

fn write_wav(path: &Path, x: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in x {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A4 in layers 1 (a soft sine) and 16 (12 dB louder, with harmonics), C6 in layer 1, and
/// optionally A4's release sample (a 50 ms noise-like burst): key 69 is rel49.
fn library(dir: &Path, with_release: bool) -> Library {
    write_wav(&dir.join("A4v1.wav"), &tone(440.0, 0.1, 1, 3.0));
    write_wav(&dir.join("A4v16.wav"), &tone(440.0, 0.4, 4, 3.0));
    write_wav(&dir.join("C6v1.wav"), &tone(1046.5, 0.1, 1, 3.0));
    if with_release {
        let burst: Vec<f32> = (0..RATE as usize / 20)
            .map(|i| ((i as f32 * 0.37).sin() * (i as f32 * 1.13).cos()) * 0.5)
            .collect();
        write_wav(&dir.join("rel49.wav"), &burst);
    }
    Library::open(dir).unwrap()
}

fn perf(events: &[(u64, KeyEvent)]) -> Performance {
    Performance {
        events: events.to_vec(),
    }
}

fn on(note: u8, velocity: u8) -> KeyEvent {
    KeyEvent::NoteOn { note, velocity }
}

fn off(note: u8) -> KeyEvent {
    KeyEvent::NoteOff { note }
}

fn db(x: f64) -> f64 {
    20.0 * x.max(1e-20).log10()
}

/// Frequency from upward zero crossings (fine for one partial).
fn frequency(x: &[f32], rate: u32) -> f64 {
    let ups: Vec<usize> = (1..x.len())
        .filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0)
        .collect();
    (ups.len() - 1) as f64 * rate as f64 / (ups[ups.len() - 1] - ups[0]) as f64
}

/// 1 kHz frames at 24 kHz: 24 samples a frame.
const OUT_RATE: u32 = 24_000;
const HOLD: usize = 24;

fn seconds(s: f64) -> usize {
    (s * OUT_RATE as f64) as usize
}

#[test]
fn onsets_land_on_their_frame_start_and_notes_are_pitched() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library(dir.path(), false);
    // A4 at frame 100, B4 (two semitones above the sampled A4) at frame 1100
    let out = lib
        .render(
            &perf(&[(100, on(69, 100)), (1100, on(71, 100))]),
            OUT_RATE,
            HOLD,
            2000,
        )
        .unwrap();
    assert!(
        out[..100 * HOLD].iter().all(|&s| s == 0.0),
        "sound before the onset"
    );
    let peak = out[100 * HOLD..1100 * HOLD]
        .iter()
        .fold(0f32, |m, &v| m.max(v.abs()));
    let first = out.iter().position(|&v| v.abs() > peak * 0.03).unwrap();
    // the recording's 12 ms lead is cut: the attack starts within a millisecond of the frame
    assert!(
        (100 * HOLD..100 * HOLD + seconds(0.001)).contains(&first),
        "A4 starts {} samples after its frame",
        first as i64 - (100 * HOLD) as i64
    );
    // the second note sounds with the first: look at B4 alone, and at velocity 1 (the sine
    // layer alone), whose zero crossings count its fundamental
    let b4 = lib
        .render(&perf(&[(0, on(71, 1))]), OUT_RATE, HOLD, 1000)
        .unwrap();
    let f = frequency(&b4[seconds(0.1)..seconds(0.9)], OUT_RATE);
    let want = 440.0 * 2f64.powf(2.0 / 12.0);
    assert!(
        (f / want - 1.0).abs() < 1e-3,
        "B4 plays at {f:.2} Hz, not {want:.2}"
    );
    // the nearest sampled key plays: C6 (sampled) rather than A4 shifted up 15 semitones
    let c6 = lib
        .render(&perf(&[(0, on(84, 1))]), OUT_RATE, HOLD, 1000)
        .unwrap();
    let f = frequency(&c6[seconds(0.1)..seconds(0.9)], OUT_RATE);
    assert!((f / 1046.5 - 1.0).abs() < 1e-3, "C6 plays at {f:.2} Hz");
}

#[test]
fn velocity_picks_and_crossfades_layers_and_follows_the_gain_curve() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library(dir.path(), false);
    // two layers present: velocity 1 plays only the soft one, 127 only the loud one, and the
    // middle both, at equal power
    assert_eq!(lib.layer_mix(1), vec![(0, 1.0)]);
    assert_eq!(lib.layer_mix(127), vec![(1, 1.0)]);
    let mid = lib.layer_mix(64);
    assert_eq!(mid.len(), 2);
    let power: f64 = mid.iter().map(|(_, a)| a * a).sum();
    assert!((power - 1.0).abs() < 1e-9);
    // the rendered level follows 40·log10(v/127) dB: velocity 30 is 25.1 dB below 127,
    // whatever the layers' own levels
    let level = |v: u8| {
        let x = lib
            .render(&perf(&[(0, on(69, v))]), OUT_RATE, HOLD, 500)
            .unwrap();
        db(rms(&x[seconds(0.02)..seconds(0.5)]))
    };
    let (l30, l127) = (level(30), level(127));
    let expected = 40.0 * (30f64 / 127.0).log10();
    // the layers differ in timbre too, so allow a little for where the curve is applied
    assert!(
        (l30 - l127 - expected).abs() < 1.0,
        "v30 − v127 = {:.2} dB",
        l30 - l127
    );
    let mut last = f64::NEG_INFINITY;
    for v in [1, 10, 30, 50, 64, 80, 100, 115, 127] {
        let l = level(v);
        assert!(l > last, "velocity {v} is not louder than the one below it");
        last = l;
    }
    // brighter with force: the loud layer's harmonics come in
    let h3 = |v: u8| {
        let x = lib
            .render(&perf(&[(0, on(69, v))]), OUT_RATE, HOLD, 500)
            .unwrap();
        let body = &x[seconds(0.1)..seconds(0.4)];
        // second difference: a high-pass that weights the 3rd harmonic 9× the fundamental
        let d2: Vec<f32> = body.windows(3).map(|w| w[0] - 2.0 * w[1] + w[2]).collect();
        rms(&d2) / rms(body)
    };
    assert!(h3(127) > 1.5 * h3(1), "the loud layer is not brighter");
}

/// A4 struck at velocity 100 and released at 0.5 s, 1.5 s of it.
fn released_a4(lib: &Library) -> Vec<f32> {
    lib.render(
        &perf(&[(0, on(69, 100)), (500, off(69))]),
        OUT_RATE,
        HOLD,
        1500,
    )
    .unwrap()
}

#[test]
fn the_damper_stops_a_released_key_and_the_release_sample_sounds() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library(dir.path(), true);
    let x = released_a4(&lib);
    let before = rms(&x[seconds(0.45)..seconds(0.5)]);
    let after = rms(&x[seconds(0.95)..seconds(1.0)]);
    // the tone decays 3 dB in that half second; the damper takes it (and the 50 ms release
    // sample is over) far below
    assert!(
        db(before / after) > 60.0,
        "released A4 fell only {:.1} dB",
        db(before / after)
    );
    // the release sample: the same note without it in the library damps the same way but
    // adds nothing right after the note-off
    let dir2 = tempfile::tempdir().unwrap();
    let bare = library(dir2.path(), false);
    let y = released_a4(&bare);
    assert_eq!(x[..seconds(0.5)], y[..seconds(0.5)]);
    let burst: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
    let rel = db(rms(&burst[seconds(0.5)..seconds(0.55)]) / before);
    assert!(
        (-45.0..-15.0).contains(&rel),
        "release sample at {rel:.1} dB of the note"
    );
    assert!(
        burst[seconds(0.56)..].iter().all(|&s| s == 0.0),
        "release longer than its sample"
    );
}

#[test]
fn the_pedal_holds_released_keys_until_it_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library(dir.path(), false);
    let events = [
        (0, KeyEvent::Sustain { value: 100 }),
        (0, on(69, 100)),
        (300, off(69)),
        (1000, KeyEvent::Sustain { value: 20 }),
    ];
    let x = lib.render(&perf(&events), OUT_RATE, HOLD, 1600).unwrap();
    let free = lib
        .render(&perf(&[(0, on(69, 100))]), OUT_RATE, HOLD, 1600)
        .unwrap();
    // under the pedal the released key rings exactly as if never let go …
    assert_eq!(x[..seconds(1.0)], free[..seconds(1.0)]);
    // … and is damped when the pedal lifts
    let held = rms(&x[seconds(0.95)..seconds(1.0)]);
    let later = rms(&x[seconds(1.5)..seconds(1.6)]);
    assert!(db(held / later) > 40.0);
    // a pedal value of 63 is up: the same note with it damps at its note-off
    let events = [
        (0, KeyEvent::Sustain { value: 63 }),
        (0, on(69, 100)),
        (300, off(69)),
    ];
    let v = voices(&perf(&events), HOLD);
    assert_eq!(v[0].damped_at, Some(300 * HOLD));
}

#[test]
fn a_restruck_key_damps_its_previous_note_without_a_release() {
    let events = [(0, on(69, 80)), (200, on(69, 90)), (400, off(69))];
    let v = voices(&perf(&events), HOLD);
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].start, v[0].damped_at, v[0].released),
        (0, Some(200 * HOLD), false)
    );
    assert_eq!(
        (v[1].start, v[1].damped_at, v[1].released),
        (200 * HOLD, Some(200 * HOLD), true)
    );
    // all notes off lifts the keys but not the pedal
    let events = [
        (0, KeyEvent::Sustain { value: 127 }),
        (0, on(60, 80)),
        (100, KeyEvent::AllNotesOff),
        (300, KeyEvent::Sustain { value: 0 }),
    ];
    assert_eq!(voices(&perf(&events), HOLD)[0].damped_at, Some(300 * HOLD));
}

/// The sostenuto keeps the key held as it goes down (A4) until it lifts; a key struck after
/// it (C5) damps at its note-off; the sustain lifted meanwhile does not let A4 go.
#[test]
fn the_sostenuto_holds_only_the_keys_down_when_it_goes_down() {
    let events = [
        (0, on(69, 80)),
        (100, KeyEvent::Sostenuto { value: 127 }),
        (150, on(72, 90)),
        (200, off(69)),
        (250, off(72)),
        (300, KeyEvent::Sustain { value: 127 }),
        (350, KeyEvent::Sustain { value: 0 }),
        (500, KeyEvent::Sostenuto { value: 0 }),
    ];
    // (damped_at counts from the voice's start)
    let v = voices(&perf(&events), HOLD);
    assert_eq!((v[0].key, v[0].damped_at), (69, Some(500 * HOLD)));
    assert_eq!((v[1].key, v[1].damped_at), (72, Some((250 - 150) * HOLD)));
}

#[test]
fn renders_are_deterministic_and_independent_of_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library(dir.path(), true);
    let p = perf(&[
        (10, on(69, 70)),
        (40, on(84, 40)),
        (700, off(69)),
        (900, off(84)),
    ]);
    let a = lib.render(&p, OUT_RATE, HOLD, 1200).unwrap();
    assert_eq!(
        a,
        Library::open(dir.path())
            .unwrap()
            .render(&p, OUT_RATE, HOLD, 1200)
            .unwrap()
    );
    // a longer render first fills the cache with longer notes (resampled in one longer run):
    // the short render is the same to float rounding
    let fresh = Library::open(dir.path()).unwrap();
    let _ = fresh.render(&p, OUT_RATE, HOLD, 2900).unwrap();
    let b = fresh.render(&p, OUT_RATE, HOLD, 1200).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let at = a.iter().zip(&b).position(|(x, y)| (x - y).abs() == worst);
    assert!(
        worst < 1e-6,
        "the cache changed a render by {worst:e} at {at:?}"
    );
    assert!(a.iter().any(|&s| s.abs() > 0.01));
}

#[test]
fn bad_sample_folders_are_named() {
    let missing = Library::open(Path::new("/nonexistent/salamander")).unwrap_err();
    let text = format!("{missing:#}");
    assert!(
        text.contains("/nonexistent/salamander") && text.contains("fetch-salamander"),
        "{text}"
    );
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), "no samples").unwrap();
    let text = format!("{:#}", Library::open(empty.path()).unwrap_err());
    assert!(text.contains("no Salamander note samples"), "{text}");
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(corrupt.path().join("A4v3.ogg"), b"OggS but not really").unwrap();
    let text = format!("{:#}", Library::open(corrupt.path()).unwrap_err());
    assert!(text.contains("A4v3.ogg"), "{text}");
}

#[test]
fn the_real_library_decodes_and_plays_in_tune() {
    let dir = real_subset();
    let lib = Library::open(&dir).unwrap();
    assert!(lib
        .describe()
        .contains("30 keys × 1 velocity layers, 88 release samples"));
    // A4 from its own recording and B4 from it, two semitones up: the fundamental's period,
    // read from the autocorrelation's first peak near the expected lag
    for (key, f0) in [(69u8, 440.0), (71, 493.883)] {
        let x = lib
            .render(
                &perf(&[(0, on(key, 64)), (800, off(key))]),
                OUT_RATE,
                HOLD,
                1400,
            )
            .unwrap();
        let body = &x[seconds(0.1)..seconds(0.6)];
        let lag = |l: usize| -> f64 {
            body.iter()
                .zip(&body[l..])
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let expect = OUT_RATE as f64 / f0;
        let range = (expect * 0.9) as usize..=(expect * 1.1) as usize;
        let best = range.max_by(|&a, &b| lag(a).total_cmp(&lag(b))).unwrap();
        // parabolic refinement of the peak
        let (l, c, r) = (lag(best - 1), lag(best), lag(best + 1));
        let peak = best as f64 + 0.5 * (l - r) / (l - 2.0 * c + r);
        let f = OUT_RATE as f64 / peak;
        // Salamander is tuned to A440 (within a few cents, with a real piano's stretch)
        assert!(
            (1200.0 * (f / f0).log2()).abs() < 10.0,
            "key {key} plays {f:.2} Hz"
        );
        // released at 0.8 s: damped, and the 0.46 s release sample over, by 1.3 s
        let tail = db(rms(&x[seconds(1.3)..seconds(1.35)]) / rms(&x[seconds(0.75)..seconds(0.8)]));
        assert!(
            tail < -40.0,
            "key {key} falls only {tail:.1} dB after its release"
        );
    }
}
