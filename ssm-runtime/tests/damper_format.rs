//! The key damper's place in the model format (version 2): it survives a save and load, a
//! model without it is still written as version 1, a file from before the settling fade still
//! loads, a damper that tags no state plays as no damper at all while no key is released, and
//! broken damper tensors are refused with their name.

use ssm_runtime::model::Model;
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::Roll;
use ssm_runtime::{Engine, ModelError, KEYS};

fn published() -> Model {
    test_support::checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth")
}

/// The S checkpoint with its first 88 states tagged with key k and a damped pole 10× as fast.
fn damped() -> Model {
    test_support::with_test_damper(published())
}

/// Two keys struck at frame 20, held to frame `to`, then silence up to frame 400.
fn render(model: &Model, to: usize) -> Vec<f32> {
    let mut frames = vec![[0u8; KEYS]; 400];
    for f in &mut frames[20..to] {
        f[39] = 100;
        f[3] = 60;
    }
    let mut engine = Engine::new(model, 16_000).unwrap();
    render_roll(
        &mut engine,
        &Roll {
            midi_rate: 1000,
            frames,
        },
        |_, _| {},
    )
}

#[test]
fn a_damper_round_trips_as_version_2() {
    let model = damped();
    let bytes = model.to_bytes().unwrap();
    assert_eq!(test_support::format_version(&bytes), "2");
    assert_eq!(Model::from_bytes(&bytes).unwrap(), model);
    // and a model without one stays readable by earlier builds
    assert_eq!(
        test_support::format_version(&published().to_bytes().unwrap()),
        "1"
    );
}

#[test]
fn a_file_from_before_the_settling_fade_drops_the_equilibrium_at_once() {
    let model = damped();
    let bytes = model.to_bytes().unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let older: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "layers.0.damper_settle")
        .collect();
    let older = safetensors::serialize(older, header.metadata().clone()).unwrap();
    let loaded = Model::from_bytes(&older).unwrap();
    let damper = loaded.layers[0].damper.as_ref().unwrap();
    assert_eq!(damper.settle_frames, 0);
    assert_eq!(damper.fall_frames, 5);
}

#[test]
fn a_damper_tagging_nothing_plays_as_none_until_a_key_is_released() {
    let mut model = damped();
    let with = render(&model, 400);
    model.layers[0].damper.as_mut().unwrap().key.fill(None);
    let untagged = render(&model, 400);
    let untagged_released = render(&model, 150);
    model.layers[0].damper = None;
    let plain = render(&model, 400);
    assert_eq!(untagged, plain);
    let diff = test_support::relative_l2(&with, &plain);
    assert!(diff > 1e-2, "the damper should change the sound: {diff:e}");
    // a released key never strikes in a layer with a damper: it does in the plain layer
    let plain_released = render(&model, 150);
    let after = 150 * 16;
    let diff = test_support::relative_l2(&untagged_released[after..], &plain_released[after..]);
    assert!(diff > 1e-2, "a release should play differently: {diff:e}");
}

#[test]
fn broken_dampers_are_refused_by_name() {
    let mut bad_key = damped();
    bad_key.layers[0].damper.as_mut().unwrap().key[0] = Some(KEYS as u8);
    let mut short = damped();
    short.layers[0].damper.as_mut().unwrap().norm.pop();
    let mut on_layer_two = damped();
    on_layer_two.layers[1].damper = on_layer_two.layers[0].damper.clone();
    let mut long_fall = damped();
    long_fall.layers[0].damper.as_mut().unwrap().fall_frames = 100_000;
    let mut long_settle = damped();
    long_settle.layers[0].damper.as_mut().unwrap().settle_frames = 1001;
    for (model, name) in [
        (bad_key, "layers.0.damper_key"),
        (short, "layers.0.damper_norm"),
        (on_layer_two, "layers.1.damper_key"),
        (long_fall, "layers.0.damper_fall"),
        (long_settle, "layers.0.damper_settle"),
    ] {
        let err = model.validate().expect_err(name);
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

#[test]
fn a_file_with_half_a_damper_is_refused() {
    // the damper's tensors without its key tags: written by hand, as a corrupt file would be
    let model = damped();
    let bytes = model.to_bytes().unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "layers.0.damper_key")
        .collect();
    let broken = safetensors::serialize(kept, header.metadata().clone()).unwrap();
    match Model::from_bytes(&broken) {
        Err(ModelError::MissingTensor(name)) => assert_eq!(name, "layers.0.damper_key"),
        other => panic!("expected the missing damper_key, got {other:?}"),
    }
}
