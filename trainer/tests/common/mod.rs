//! What several trainer tests build: a freshly initialised network as a runtime model; where
//! the Salamander test subset is.
#![allow(dead_code)]

use ssm_runtime::{Activation, Model, ModelInfo};
use tch::Device;
use trainer::model::{InitOptions, Network, PoleInit, Size};

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
    let net = Network::new(
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

/// The velocity-8 layer and the releases of the real Salamander library:
/// `PIANO_SSM_SALAMANDER_TEST`, else the folder `scripts/test.sh` fetches them into.
pub fn real_subset() -> std::path::PathBuf {
    let dir = std::env::var_os("PIANO_SSM_SALAMANDER_TEST")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/salamander-test")
        });
    assert!(
        dir.join("A4v8.ogg").exists(),
        "{} lacks the Salamander test subset: run `bash scripts/fetch-salamander.sh --test {}`",
        dir.display(),
        dir.display()
    );
    dir
}
