//! Sleeping in silence: after the music the engine stops computing at the network's rest,
//! and what it writes then — and after the next key wakes it — stays within 1e-8 of full
//! scale of the engine that computes every sample (measured: 0 for the L and the XL with their key banks), for the built-in models (key damper,
//! velocity exponent); a published checkpoint, whose later layers ring on for minutes
//! (their poles were not limited in training), is not put to sleep while it rings.

use ssm_runtime::{builtin, Engine, KeyFrame, Model, Size, KEYS};

/// A chord for 0.5 s, `silence` seconds of nothing, another chord, and 3 s after it.
fn play(engine: &mut Engine, silence: f64) -> (Vec<f32>, bool) {
    let sr = engine.sample_rate() as f64;
    let mut chord: KeyFrame = [0; KEYS];
    for (k, v) in [(27, 90), (31, 70), (34, 100), (39, 60)] {
        chord[k] = v;
    }
    let mut out = Vec::new();
    let mut part = |engine: &mut Engine, keys: &KeyFrame, seconds: f64| {
        let mut buf = vec![0.0f32; (seconds * sr) as usize];
        engine.set_keys(keys);
        // host-sized blocks
        for block in buf.chunks_mut(128) {
            engine.process(block);
        }
        out.extend_from_slice(&buf);
    };
    part(engine, &chord, 0.5);
    part(engine, &[0; KEYS], silence);
    let slept = engine.is_asleep();
    part(engine, &chord, 0.5);
    part(engine, &[0; KEYS], 3.0);
    (out, slept)
}

/// Plays [`play`] with and without sleep; returns whether the sleeping engine slept.
fn compare(label: &str, model: &Model, silence: f64) -> bool {
    let mut awake = Engine::new(model, 48_000).unwrap();
    awake.set_sleep(false);
    let mut sleeping = Engine::new(model, 48_000).unwrap();
    let (reference, never) = play(&mut awake, silence);
    let (slept_out, slept) = play(&mut sleeping, silence);
    assert!(!never, "{label}: an engine without sleep fell asleep");
    let worst = reference
        .iter()
        .zip(&slept_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let peak = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("{label}: largest difference {worst:.2e} (peak {peak:.2})");
    assert!(
        worst < 1e-8,
        "{label}: sleeping changed the output by {worst:e}"
    );
    assert!(peak > 0.01, "{label}: the chord should sound");
    slept
}

#[test]
fn the_built_in_models_sleep_in_silence_without_a_trace() {
    for size in [Size::L, Size::XL] {
        let label = size.label();
        let slept = compare(label, &builtin::require(size).unwrap(), 20.0);
        assert!(slept, "{label}: still awake 20 s after the chord");
    }
}

#[test]
fn a_published_checkpoint_is_not_put_to_sleep_while_it_rings() {
    let model = test_support::checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth");
    let slept = compare("published S", &model, 30.0);
    assert!(
        !slept,
        "published S: asleep 30 s after the chord while it still rings"
    );
}

/// The built-in L, folded to mono, with a second head: the first one's weights halved and its
/// bias moved, so it rests at another level.
fn two_heads() -> Model {
    let mut model = builtin::require(Size::L).unwrap().folded_to_mono();
    let first = model.head_weight.clone();
    model.head_weight.extend(first.iter().map(|w| w * 0.5));
    model.head_bias.push(model.head_bias[0] * 0.5 + 0.1);
    model.info.heads.push("half".into());
    model
}

#[test]
fn a_reset_wakes_the_engine_and_a_head_change_keeps_the_rest_right() {
    let model = two_heads();
    let mut engine = Engine::new(&model, 48_000).unwrap();
    let mut buf = vec![0.0f32; 48_000 * 30];
    engine.process(&mut buf);
    assert!(engine.is_asleep(), "silence from the start should sleep");
    let rest_of_head_0 = buf[buf.len() - 1];
    // asleep, another head: its own rest output, as the awake engine computes it
    engine.set_head(1).unwrap();
    let mut asleep = [0.0f32; 64];
    engine.process(&mut asleep);
    let mut awake = Engine::new(&model, 48_000).unwrap();
    awake.set_sleep(false);
    awake.set_head(1).unwrap();
    awake.process(&mut buf);
    let mut computed = [0.0f32; 64];
    awake.process(&mut computed);
    for (a, b) in asleep.iter().zip(&computed) {
        assert!(
            (a - b).abs() < 1e-6,
            "head 1 at rest: {a} asleep, {b} computed"
        );
    }
    assert!(
        (asleep[0] - rest_of_head_0).abs() > 1e-3,
        "the heads should rest apart"
    );
    engine.reset();
    assert!(!engine.is_asleep());
}
