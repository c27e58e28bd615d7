//! Live playing through `Player` (events with sample offsets, host-sized blocks) gives the
//! file renderer's samples when events fall on frame boundaries, at any block size.

mod common;

use common::{checkpoint, reference_dir};
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::frame_start;
use ssm_runtime::{Engine, KeyEvent, MidiFile, Player};

fn stream(player: &mut Player, events: &[(u64, KeyEvent)], total: usize, block: usize) -> Vec<f32> {
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
        let events: Vec<(u64, KeyEvent)> = midi
            .events
            .iter()
            .map(|e| {
                (
                    frame_start((e.seconds * mr as f64).floor() as u64, rate, mr),
                    e.event,
                )
            })
            .collect();
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
    fresh.process(std::iter::empty(), &mut silent);
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
    player.process(std::iter::empty(), &mut block);
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
        .events
        .iter()
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
