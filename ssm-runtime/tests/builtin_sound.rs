//! Does each built-in model sound like a piano? The listening checks of
//! [`ssm_runtime::soundcheck`] (pitch, dynamics, onset timing, silence after release, the
//! sustain pedal) on every embedded model at 48 kHz. `trainer check --soundfont` shows the
//! training target passes the same checks. Each also holds a regression limit near what the
//! shipped models reach (`assets/README.md`, "Listening checks"), far inside the check's own
//! limit, so a model that got worse fails before it stops sounding like a piano.

use ssm_runtime::soundcheck::{self, ModelRenderer, Outcome, Renderer};
use ssm_runtime::{builtin, Model};

const RATE: u32 = 48_000;

/// Regression limits (the shipped L and XL reach: pitch 27 and 28 of 30 keys, dynamics 22.7
/// and 23.0 dB, onsets 0 ms, silence −150 and −163 dBFS, pedal +132 and +124 dB).
const PITCH_SHARE: f64 = 0.9;
const DYNAMICS_SPAN_DB: f64 = 21.0;
const ONSET_S: f64 = 0.002;
const SILENCE_DBFS: f64 = -120.0;
const PEDAL_DB: f64 = 100.0;

/// Runs `check` on every built-in model and fails with every model's figure, if the check
/// fails or its figure is on the wrong side of `regression` (`at_least` says which side).
fn each_model(check: fn(&mut dyn Renderer) -> Outcome, regression: f64, at_least: bool) {
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
        .filter(|(_, o)| {
            let regressed = if at_least {
                o.figure < regression
            } else {
                o.figure > regression
            };
            !o.passed || regressed
        })
        .map(|(size, o)| {
            format!(
                "{} {size}: {o} (figure {:.4}, regression limit {regression})",
                builtin::FAMILY,
                o.figure
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pitch_of_every_third_key() {
    each_model(soundcheck::pitch, PITCH_SHARE, true);
}

#[test]
fn louder_with_velocity() {
    each_model(soundcheck::dynamics, DYNAMICS_SPAN_DB, true);
}

#[test]
fn onsets_follow_note_ons() {
    each_model(soundcheck::onsets, ONSET_S, false);
}

#[test]
fn silent_two_seconds_after_release() {
    each_model(soundcheck::silence, SILENCE_DBFS, false);
}

#[test]
fn pedal_sustains_released_keys() {
    each_model(soundcheck::pedal, PEDAL_DB, true);
}
