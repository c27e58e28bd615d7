//! What several trainer tests build: a freshly initialised network as a runtime model.
#![allow(dead_code)]

use ssm_runtime::{Activation, Model, ModelInfo};
use tch::Device;
use trainer::model::{InitOptions, PianoSsm, PoleInit, Size};

/// The training rate of the test models.
pub const RATE: u32 = 16_000;

/// A fresh one-head `size` network from `poles` (seed `seed`, 1 kHz frames, output scale
/// `norm_std`), exported as the runtime model.
pub fn fresh_model(size: Size, poles: PoleInit, seed: u64, norm_std: f64) -> Model {
    fresh_model_at(size, poles, seed, norm_std, RATE, 1_000)
}

/// [`fresh_model`] trained at `rate` with `midi_rate` frames.
pub fn fresh_model_at(
    size: Size,
    poles: PoleInit,
    seed: u64,
    norm_std: f64,
    rate: u32,
    midi_rate: u32,
) -> Model {
    let net = PianoSsm::new(
        Device::Cpu,
        size,
        1,
        Activation::Tanh,
        InitOptions::new(poles, rate, seed),
    )
    .unwrap();
    net.to_runtime(ModelInfo {
        family: "test".into(),
        size: size.label().into(),
        activation: Activation::Tanh,
        train_rate: rate,
        midi_rate,
        norm_mean: 0.0,
        norm_std,
        heads: vec!["only".into()],
        head_kind: None,
        description: String::new(),
    })
    .unwrap()
}
