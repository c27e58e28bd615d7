//! The engine slot on its own: an install into a silent player plays at once, a switch
//! crossfades linearly from the old engine to the new one and then hands the old one to the
//! disposer exactly once, and a disposer that cannot take it yet keeps the slot busy (a new
//! engine is given back, not installed) until it can.

use plugin::slot::Slot;
use ssm_runtime::engine::Outputs;
use ssm_runtime::{Engine, KeyEvent, Model, Player, Size};

const RATE: u32 = 16_000;
const BLOCK: usize = 256;

fn builtin(size: Size) -> Model {
    ssm_runtime::builtin::load(size).unwrap().unwrap()
}

fn engine(model: &Model) -> Box<Engine> {
    Box::new(Engine::new(model, RATE).unwrap())
}

/// A C major chord struck at the first sample.
fn chord() -> [(u32, KeyEvent); 3] {
    [60, 64, 67].map(|note| {
        let velocity = 100;
        (0, KeyEvent::NoteOn { note, velocity })
    })
}

const NONE: [(u32, KeyEvent); 0] = [];

#[test]
fn an_install_into_a_silent_player_plays_at_once() {
    let model = builtin(Size::L);
    let mut player = Player::silent();
    let mut slot = Slot::new(100);
    assert!(slot.install(&mut player, engine(&model)).is_ok());
    assert!(!slot.is_fading(), "nothing was playing, so nothing fades");
    let mut out = vec![0.0f32; BLOCK];
    player.process(chord(), &mut out);
    // the same engine alone, the chord's keys from the first sample
    let mut alone = engine(&model);
    alone.set_keys(&player.encoder().roll());
    let mut expected = vec![0.0f32; BLOCK];
    alone.process(&mut expected);
    assert!(expected.iter().any(|v| v.abs() > 1e-4), "the chord sounds");
    assert_eq!(out, expected);
}

#[test]
fn a_switch_crossfades_linearly_then_hands_the_old_engine_back() {
    let (old_model, new_model) = (builtin(Size::L), builtin(Size::XL));
    let fade = 600; // over two and a half blocks
    let mut player = Player::new(*engine(&old_model));
    let mut first = vec![0.0f32; BLOCK];
    player.process(chord(), &mut first);
    let keys = player.encoder().roll();
    // what each engine plays on its own from here: the old one continuing, the new one
    // starting from rest with the chord held
    let mut old_alone = engine(&old_model);
    old_alone.set_keys(&keys);
    old_alone.process(&mut vec![0.0f32; BLOCK]);
    let mut new_alone = engine(&new_model);
    new_alone.set_keys(&keys);

    let mut slot = Slot::new(fade);
    assert!(slot.install(&mut player, engine(&new_model)).is_ok());
    assert!(slot.is_fading() && !slot.is_free());
    let mut scratch = vec![0.0f32; BLOCK];
    let mut handed_back = 0;
    for b in 0..4 {
        let mut out = vec![0.0f32; BLOCK];
        player.process(NONE, &mut out);
        slot.fade(&keys, Outputs::Mono(&mut out), &mut scratch, |_old| {
            handed_back += 1;
            Ok(())
        });
        let (mut old, mut new) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
        old_alone.process(&mut old);
        new_alone.process(&mut new);
        for i in 0..BLOCK {
            let t = ((b * BLOCK + i) as f32 / fade as f32).min(1.0);
            let expected = new[i] * t + old[i] * (1.0 - t);
            assert!(
                (out[i] - expected).abs() <= 1e-6,
                "block {b}, sample {i}: {} against {expected}",
                out[i]
            );
        }
        // the old engine goes back when the fade's last sample is done, not before
        let done = (b + 1) * BLOCK >= fade;
        assert_eq!(handed_back, usize::from(done), "after block {b}");
        assert_eq!(slot.is_free(), done);
    }
    assert_eq!(handed_back, 1);
}

#[test]
fn a_full_disposer_keeps_the_slot_busy_until_it_takes_the_engine() {
    let model = builtin(Size::L);
    let mut player = Player::new(*engine(&model));
    let mut slot = Slot::new(BLOCK);
    assert!(slot.install(&mut player, engine(&model)).is_ok());
    let keys = player.encoder().roll();
    let (mut out, mut scratch) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
    player.process(NONE, &mut out);
    // the fade ends, but the disposer's queue is full
    slot.fade(&keys, Outputs::Mono(&mut out), &mut scratch, Err);
    assert!(!slot.is_fading() && !slot.is_free());
    // a new engine is given back rather than installed over the waiting one
    let refused = slot.install(&mut player, engine(&model));
    assert!(refused.is_err());
    // still full, then free
    slot.collect(Err);
    assert!(!slot.is_free());
    let mut taken = 0;
    slot.collect(|_old| {
        taken += 1;
        Ok(())
    });
    assert_eq!(taken, 1);
    assert!(slot.is_free());
    let Err(refused) = refused else {
        unreachable!()
    };
    assert!(slot.install(&mut player, refused).is_ok());
}
