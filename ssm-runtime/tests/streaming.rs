//! Live playing through `Player` (events with sample offsets, host-sized blocks) gives the
//! file renderer's samples when events fall on frame boundaries, at any block size, and plays
//! each MIDI channel as its own instrument, as a file's channels are.

use ssm_runtime::midi_file::TimedEvent;
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::frame_start;
use ssm_runtime::{ChannelEvent, Engine, KeyEvent, MidiFile, Player};
use test_support::{checkpoint, reference_dir};

fn stream<E: Into<ChannelEvent> + Copy>(
    player: &mut Player,
    events: &[(u64, E)],
    total: usize,
    block: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; total];
    let mut next = 0;
    for (b, chunk) in out.chunks_mut(block).enumerate() {
        let start = (b * block) as u64;
        let end = start + chunk.len() as u64;
        let first = next;
        while next < events.len() && events[next].0 < end {
            next += 1;
        }
        player.process(
            events[first..next]
                .iter()
                .map(|&(at, e)| ((at - start) as u32, e)),
            chunk,
        );
    }
    out
}

#[test]
fn player_matches_file_render_at_any_block_size() {
    let model = checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth");
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    for rate in [16_000, 48_000] {
        let roll = midi.roll(model.info.midi_rate, 1.5);
        let mut engine = Engine::new(&model, rate).unwrap();
        engine.set_head(3).unwrap();
        let expected = render_roll(&mut engine, &roll, |_, _| {});
        // each event at the first sample of the frame the file's roll puts it in
        let mr = model.info.midi_rate;
        let events: Vec<(u64, KeyEvent)> = midi.events_at_frame_starts(rate, mr).collect();
        for block in [1, 64, 1000, 4096] {
            engine.reset();
            let mut player = Player::new(engine);
            let out = stream(&mut player, &events, expected.len(), block);
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-6,
                "{rate} Hz, block {block}: max difference {worst}"
            );
            engine = Engine::new(&model, rate).unwrap();
            engine.set_head(3).unwrap();
        }
    }
}

#[test]
fn reset_and_sound_off_silence_the_player() {
    let model = checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth");
    let mut player = Player::new(Engine::new(&model, 16_000).unwrap());
    let mut block = vec![0.0; 4000];
    player.process(
        [(
            0,
            KeyEvent::NoteOn {
                note: 60,
                velocity: 100,
            },
        )],
        &mut block,
    );
    let loud = block.iter().map(|v| v * v).sum::<f32>();
    // the model's output with no key and zero state: its bias, a constant near zero
    let mut fresh = Player::new(Engine::new(&model, 16_000).unwrap());
    let mut silent = vec![0.0; 4000];
    fresh.process(std::iter::empty::<(u32, KeyEvent)>(), &mut silent);
    player.process([(0, KeyEvent::AllSoundOff)], &mut block);
    assert_eq!(block, silent, "all-sound-off clears the state at once");
    player.process(
        [(
            0,
            KeyEvent::NoteOn {
                note: 60,
                velocity: 100,
            },
        )],
        &mut block,
    );
    player.reset();
    player.process(std::iter::empty::<(u32, KeyEvent)>(), &mut block);
    assert_eq!(block, silent, "reset clears the state");
    let quiet = silent.iter().map(|v| v * v).sum::<f32>();
    assert!(loud > 10.0 * quiet, "note energy {loud} vs silence {quiet}");
}

#[test]
fn with_one_frame_of_latency_any_block_size_is_exact() {
    // 44.1 kHz-trained model (MIDI rate 1764) at 48 kHz: frames of 27.21 samples, so events
    // fall mid-frame and frames straddle block boundaries
    let model = checkpoint("PianoSSM_S_MH_maestro_all_44100_model.pth");
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    let (rate, mr) = (48_000, model.info.midi_rate);
    let roll = midi.roll(mr, 1.5);
    let mut engine = Engine::new(&model, rate).unwrap();
    let expected = render_roll(&mut engine, &roll, |_, _| {});
    // a host places each event at its own sample, not at its frame's start
    let events: Vec<(u64, KeyEvent)> = midi
        .events()
        .map(|e| ((e.seconds * rate as f64).round() as u64, e.event))
        .collect();
    // events must not land exactly on a frame boundary the float file times put elsewhere
    let latency = ssm_runtime::player::frame_latency(rate, mr);
    assert_eq!(latency, 28);
    for block in [1, 64, 1000] {
        let mut player = Player::new(Engine::new(&model, rate).unwrap());
        player.set_latency(latency);
        let out = stream(
            &mut player,
            &events,
            expected.len() + latency as usize,
            block,
        );
        assert!(out[..latency as usize].iter().all(|&v| v == 0.0));
        let worst = out[latency as usize..]
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "block {block}: max difference {worst}");
    }
}

/// A player that ran before the host's transport started (Ardour processes from the moment
/// its engine runs) counts frames from its own first sample; aligned to the timeline when the
/// transport starts, it plays the file renderer's samples again, and without the alignment it
/// would not (its frame boundaries lie some samples off the timeline's).
#[test]
fn aligned_to_the_timeline_a_player_that_ran_before_plays_as_the_file_renderer() {
    // the built-in L: its rest is the zero state a file render starts from, so idling first
    // changes nothing but the frame grid (1200 Hz frames, 40 samples at 48 kHz)
    let model = ssm_runtime::builtin::load(ssm_runtime::Size::L)
        .unwrap()
        .unwrap();
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    let (rate, mr) = (48_000, model.info.midi_rate);
    let mut engine = Engine::new(&model, rate).unwrap();
    let expected = render_roll(&mut engine, &midi.roll(mr, 1.5), |_, _| {});
    // each event at the first sample of the frame the file renderer puts it in
    let events: Vec<(u64, KeyEvent)> = midi.events_at_frame_starts(rate, mr).collect();
    let latency = ssm_runtime::player::frame_latency(rate, mr);
    let worst_after_idling = |idle: usize, align: bool| {
        let mut player = Player::new(Engine::new(&model, rate).unwrap());
        player.set_latency(latency);
        let none: [(u32, KeyEvent); 0] = [];
        player.process(none, &mut vec![0.0; idle]);
        if align {
            player.align(0);
        }
        let out = stream(&mut player, &events, expected.len() + latency as usize, 64);
        out[latency as usize..]
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    // idle lengths that are not whole frames (as Ardour's 1024-sample cycles are not)
    for idle in [1013, 2048, 4096] {
        let aligned = worst_after_idling(idle, true);
        assert!(aligned <= 1e-6, "idle {idle}: max difference {aligned}");
        let unaligned = worst_after_idling(idle, false);
        assert!(
            unaligned > 1e-3,
            "idle {idle}: unaligned differs by only {unaligned}"
        );
    }
}

/// One key on two channels, overlapping, one channel's pedal down: live, a note-off on one
/// channel leaves the other's note sounding and each pedal holds its own channel, exactly as
/// the file's two instruments play (and not as one channel would).
#[test]
fn live_channels_play_as_a_files_instruments() {
    let model = checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth");
    let (rate, mr) = (16_000, model.info.midi_rate);
    let on = |note, velocity| KeyEvent::NoteOn { note, velocity };
    let off = |note| KeyEvent::NoteOff { note };
    let script: [(f64, u16, KeyEvent); 9] = [
        (0.05, 0, on(60, 90)),
        (0.10, 1, on(60, 50)),
        (0.20, 0, off(60)),
        (0.30, 1, KeyEvent::Sustain { value: 100 }),
        (0.35, 1, on(64, 70)),
        (0.40, 0, on(64, 40)),
        (0.45, 1, off(64)),
        (0.50, 0, off(64)),
        (0.70, 1, off(60)),
    ];
    let mut events: Vec<TimedEvent> = script
        .iter()
        .map(|&(seconds, instrument, event)| TimedEvent {
            seconds,
            tick: (seconds * 1000.0) as u64,
            instrument,
            event,
        })
        .collect();
    events.push(TimedEvent {
        seconds: 1.0,
        tick: 1000,
        instrument: 1,
        event: KeyEvent::Sustain { value: 0 },
    });
    let midi = MidiFile::from_events(events);
    let roll = midi.roll(mr, 0.5);
    let expected = render_roll(&mut Engine::new(&model, rate).unwrap(), &roll, |_, _| {});
    let at = |seconds: f64| frame_start((seconds * mr as f64).floor() as u64, rate, mr);
    let live: Vec<(u64, ChannelEvent)> = midi
        .events()
        .map(|e| {
            let channel = Some(e.instrument as u8);
            (
                at(e.seconds),
                ChannelEvent {
                    channel,
                    event: e.event,
                },
            )
        })
        .collect();
    let one_channel: Vec<(u64, KeyEvent)> = live.iter().map(|&(t, e)| (t, e.event)).collect();
    let play = |events: &[(u64, ChannelEvent)]| {
        let mut player = Player::new(Engine::new(&model, rate).unwrap());
        stream(&mut player, events, expected.len(), 64)
    };
    let worst = |out: &[f32]| {
        out.iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(worst(&play(&live)) <= 1e-6, "{}", worst(&play(&live)));
    let mut player = Player::new(Engine::new(&model, rate).unwrap());
    let merged = stream(&mut player, &one_channel, expected.len(), 64);
    assert!(worst(&merged) > 1e-3, "one channel should play differently");
}

/// A note-off for any channel (a CLAP wildcard) ends the key on every channel; a note-on for
/// any channel opens one note, on the first.
#[test]
fn wildcard_channels() {
    let mut encoder = ssm_runtime::RollEncoder::new();
    let on = |channel, velocity| ChannelEvent {
        channel,
        event: KeyEvent::NoteOn { note: 60, velocity },
    };
    encoder.apply_live(on(Some(0), 30), 0);
    encoder.apply_live(on(Some(5), 40), 1);
    encoder.apply_live(on(None, 20), 2);
    assert_eq!(encoder.roll()[60 - 21], 90);
    encoder.apply_live(
        ChannelEvent {
            channel: None,
            event: KeyEvent::NoteOff { note: 60 },
        },
        3,
    );
    assert_eq!(encoder.roll()[60 - 21], 0);
}

/// Quantized MIDI: every event of pedal.mid lies on a 1 ms frame boundary of the 1 kHz model,
/// and a host's tick-to-sample rounding may deliver it a sample early or late. Whichever, the
/// player (one frame of latency) plays each event in the frame that starts at its beat: the
/// render of the same events placed mid-frame, where no rounding can move them.
#[test]
fn events_a_sample_off_a_frame_boundary_keep_their_frame() {
    let model = checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth");
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    let (rate, mr) = (48_000, model.info.midi_rate);
    assert_eq!(mr, 1000);
    let beats: Vec<(i64, TimedEvent)> = midi
        .events()
        .map(|e| {
            let on_grid = (e.seconds * rate as f64).round() as i64;
            assert_eq!(on_grid % 48, 0, "pedal.mid is quantized to 1 ms");
            (on_grid, e)
        })
        .collect();
    let mid_frame = MidiFile::from_events_until(
        beats
            .iter()
            .map(|&(s, e)| TimedEvent {
                seconds: (s as f64 / 48.0 + 0.5) / mr as f64,
                ..e
            })
            .collect(),
        midi.duration(),
    );
    let roll = mid_frame.roll(mr, 1.0);
    let expected = render_roll(&mut Engine::new(&model, rate).unwrap(), &roll, |_, _| {});
    let latency = ssm_runtime::player::frame_latency(rate, mr);
    for shift in [-1i64, 0, 1] {
        let events: Vec<(u64, KeyEvent)> = beats
            .iter()
            .map(|&(s, e)| ((s + shift).max(0) as u64, e.event))
            .collect();
        let mut player = Player::new(Engine::new(&model, rate).unwrap());
        player.set_latency(latency);
        let out = stream(&mut player, &events, expected.len() + latency as usize, 64);
        let worst = out[latency as usize..]
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "shift {shift}: max difference {worst}");
    }
}
