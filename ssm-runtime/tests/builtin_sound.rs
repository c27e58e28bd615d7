//! Does each built-in model sound like a piano? The listening checks of
//! [`ssm_runtime::soundcheck`] (pitch, dynamics, onset timing, silence after release, the
//! sustain pedal) on every embedded model at 48 kHz. `trainer check --soundfont` shows the
//! training target passes the same checks.

use ssm_runtime::soundcheck::{self, ModelRenderer, Outcome, Renderer};
use ssm_runtime::{builtin, Model};

const RATE: u32 = 48_000;

/// Runs `check` on every built-in model and fails with every model's figure.
fn each_model(check: fn(&mut dyn Renderer) -> Outcome) {
    let failures: Vec<String> = builtin::MODELS
        .iter()
        .map(|b| {
            let model = Model::from_bytes(b.bytes).expect("built-in model loads");
            let outcome = check(&mut ModelRenderer {
                model: &model,
                sample_rate: RATE,
            });
            (b.size, outcome)
        })
        .filter(|(_, o)| !o.passed)
        .map(|(size, o)| format!("{} {size}: {o}", builtin::FAMILY))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pitch_of_every_third_key() {
    each_model(soundcheck::pitch);
}

#[test]
fn louder_with_velocity() {
    each_model(soundcheck::dynamics);
}

#[test]
fn onsets_follow_note_ons() {
    each_model(soundcheck::onsets);
}

#[test]
fn silent_two_seconds_after_release() {
    each_model(soundcheck::silence);
}

#[test]
fn pedal_sustains_released_keys() {
    each_model(soundcheck::pedal);
}
