//! What several trainer tests build: a freshly initialised network as a runtime model.

use ssm_runtime::{Activation, Model, ModelInfo};
use tch::Device;
use trainer::init::gated_keys;
use trainer::model::{InitOptions, PianoSsm, PoleInit, Size};

/// The training rate of the test models.
pub const RATE: u32 = 16_000;

/// A fresh one-head `size` network from `poles` (seed `seed`, 1 kHz frames, output scale
/// `norm_std`), exported as the runtime model.
pub fn fresh_model(size: Size, poles: PoleInit, seed: u64, norm_std: f64) -> Model {
    let net = PianoSsm::new(
        Device::Cpu,
        size,
        1,
        Activation::Tanh,
        InitOptions {
            poles,
            sample_rate: RATE,
            seed,
            gate: gated_keys::GATE,
        },
    )
    .unwrap();
    net.to_runtime(ModelInfo {
        family: "test".into(),
        size: size.label().into(),
        activation: Activation::Tanh,
        train_rate: RATE,
        midi_rate: 1_000,
        norm_mean: 0.0,
        norm_std,
        heads: vec!["only".into()],
        head_kind: None,
        description: String::new(),
    })
    .unwrap()
}
