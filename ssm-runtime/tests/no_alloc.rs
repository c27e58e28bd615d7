//! The audio path never touches the allocator: a counting global allocator watches the
//! thread while `Player::process` plays notes, pedal, head changes, engine swaps (new model,
//! new rate) and resets, at block sizes from 1 to 16384. The first engine carries a key damper
//! (format version 2), so releases run its falls and fades.

use alloc_counter::{watched, Counting};
use ssm_runtime::model::{Damper, Model};
use ssm_runtime::{Engine, KeyEvent, Player, KEYS};
use test_support::checkpoint;

/// `m` with its first 88 states damped by their keys, falling over 12 frames; released
/// equilibria fade over 6.
fn with_damper(mut m: Model) -> Model {
    let first = &mut m.layers[0];
    let mut d = Damper::none(&first.norm, &first.angle);
    for (p, k) in d.key.iter_mut().enumerate().take(KEYS) {
        *k = Some(p as u8);
    }
    d.norm.iter_mut().for_each(|v| *v += 2.0);
    d.fall_frames = 12;
    d.settle_frames = 6;
    first.damper = Some(d);
    m
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn counter_sees_allocations() {
    let (_, n) = watched(|| std::hint::black_box(vec![1u8; 10]));
    assert!(n >= 1, "the counting allocator must notice a Vec");
}

#[test]
fn audio_path_never_allocates() {
    let small = with_damper(checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth"));
    let large = checkpoint("PianoSSM_XL_MH_maestro_all_44100_model.pth");
    let mut player = Player::new(Engine::new(&small, 44_100).unwrap());
    // prepared off the audio thread, as the plugin does
    let mut spare = Some(Box::new(Engine::new(&large, 96_000).unwrap()));
    let mut buffer = vec![0.0f32; 16_384];
    let script = [
        vec![
            (
                0,
                KeyEvent::NoteOn {
                    note: 60,
                    velocity: 90,
                },
            ),
            (
                3,
                KeyEvent::NoteOn {
                    note: 64,
                    velocity: 70,
                },
            ),
        ],
        vec![
            (0, KeyEvent::Sustain { value: 127 }),
            (1, KeyEvent::NoteOff { note: 60 }),
        ],
        vec![
            (
                0,
                KeyEvent::NoteOn {
                    note: 21,
                    velocity: 1,
                },
            ),
            (
                0,
                KeyEvent::NoteOn {
                    note: 108,
                    velocity: 127,
                },
            ),
        ],
        vec![
            (5, KeyEvent::Sustain { value: 0 }),
            (6, KeyEvent::AllNotesOff),
        ],
        vec![
            (
                0,
                KeyEvent::NoteOn {
                    note: 72,
                    velocity: 0,
                },
            ),
            (2, KeyEvent::AllSoundOff),
        ],
        vec![
            (0, KeyEvent::Reset),
            (
                1,
                KeyEvent::NoteOn {
                    note: 50,
                    velocity: 100,
                },
            ),
        ],
    ];
    let ((), count) = watched(|| {
        for (i, block) in [1usize, 7, 64, 333, 1024, 16_384].into_iter().enumerate() {
            for events in &script {
                player.process(events.iter().copied(), &mut buffer[..block]);
            }
            player.engine_mut().unwrap().set_head(i % 10).unwrap();
            if i == 2 {
                player.swap_engine(&mut spare);
            }
            if i == 4 {
                player.reset();
            }
        }
    });
    assert_eq!(
        spare.unwrap().sample_rate(),
        44_100,
        "the old engine came back in the box"
    );
    assert_eq!(count, 0, "the audio path allocated or freed {count} times");
    assert!(buffer.iter().all(|v| v.is_finite()));
}

#[test]
fn stereo_audio_path_never_allocates() {
    let mut model = with_damper(checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth"));
    // every head stereo: its weights on the left, 0.7 of them on the right
    let width = *model.widths().last().unwrap();
    model.channels = 2;
    model.head_weight = model
        .head_weight
        .chunks(width)
        .flat_map(|w| w.iter().copied().chain(w.iter().map(|v| 0.7 * v)))
        .collect();
    model.head_bias = model.head_bias.iter().flat_map(|&b| [b, b]).collect();
    // and every channel reads the first layer's states
    let reads = model.head_count() * 2 * 2 * model.layers[0].state;
    model.head_state_weight = Some((0..reads).map(|i| (i % 5) as f32 * 1e-3).collect());
    model.validate().unwrap();
    let mut player = Player::new(Engine::new(&model, 48_000).unwrap());
    let (mut left, mut right) = (vec![0.0f32; 4096], vec![0.0f32; 4096]);
    let chord = [60u8, 64, 67].map(|note| {
        (
            0,
            KeyEvent::NoteOn {
                note,
                velocity: 100,
            },
        )
    });
    let ((), count) = watched(|| {
        for (i, block) in [1usize, 64, 333, 4096].into_iter().enumerate() {
            player.process_stereo(chord, &mut left[..block], &mut right[..block]);
            player.engine_mut().unwrap().set_head(i % 10).unwrap();
            player.process_stereo(
                [(0, KeyEvent::AllNotesOff)],
                &mut left[..block],
                &mut right[..block],
            );
        }
    });
    assert_eq!(count, 0, "the stereo path allocated or freed {count} times");
    assert!(left.iter().chain(&right).all(|v| v.is_finite()));
    assert!(left.iter().zip(&right).any(|(l, r)| l != r), "two channels");
}
