//! The models compiled into the binaries: the "Piano-SSM Grand" family, trained by our own
//! trainer on synthetic performances played by our sampler from the Salamander Grand Piano
//! (see `assets/README.md` for their provenance). The published checkpoints cannot be
//! redistributed; these can, so every build plays out of the box.

use crate::{BuiltinError, Model, ModelError, Size};

/// Family name of the built-in models (also written in their metadata).
pub const FAMILY: &str = "Piano-SSM Grand";

/// The credit the built-in models' licence asks for (the samples they learned from are CC BY
/// 3.0), shown wherever they play: the panel, `piano-ssm info`, their description.
pub const CREDIT: &str = "trained on the Salamander Grand Piano V3 by Alexander Holm (CC BY 3.0)";

/// One embedded model file.
pub struct Builtin {
    pub size: Size,
    pub bytes: &'static [u8],
}

/// The embedded models, smallest first. There is no S: its 64 states per layer are fewer than
/// the 88 keys, so it cannot give every key a string of its own that stops when that key is
/// released (see `assets/README.md`).
pub const MODELS: &[Builtin] = &[
    Builtin {
        size: Size::L,
        bytes: include_bytes!("../../assets/models/grand-L.safetensors"),
    },
    Builtin {
        size: Size::XL,
        bytes: include_bytes!("../../assets/models/grand-XL.safetensors"),
    },
];

/// The size `piano-ssm render` uses without `--model`/`--size`: L, which costs half XL's CPU
/// (the plugin starts on L too); XL is a little nearer the Salamander recording (spectral
/// distance 24.3 against 25.9, see `assets/README.md`).
pub const DEFAULT_SIZE: Size = Size::L;

/// The built-in model of `size`, if this build has one.
pub fn load(size: Size) -> Option<Result<Model, ModelError>> {
    MODELS
        .iter()
        .find(|m| m.size == size)
        .map(|m| Model::from_bytes(m.bytes))
}

/// The built-in model of `size`, or an error naming the sizes this build has.
pub fn require(size: Size) -> Result<Model, BuiltinError> {
    match load(size) {
        Some(model) => model.map_err(|source| BuiltinError::Broken { size, source }),
        None => Err(BuiltinError::Missing {
            size,
            have: sizes().map(Size::label).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The sizes that are built in, smallest first.
pub fn sizes() -> impl Iterator<Item = Size> {
    MODELS.iter().map(|m| m.size)
}
