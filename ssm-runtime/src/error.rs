//! Errors a user can cause: each names the file, field or tensor at fault.

use std::path::PathBuf;

/// A model file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid safetensors file: {0}")]
    NotSafetensors(String),
    /// Writing a model: its tensors could not be laid out as safetensors (a bug, not a file).
    #[error("cannot serialise the model as safetensors: {0}")]
    Serialise(String),
    #[error("model metadata lacks the field `{0}`")]
    MissingField(&'static str),
    #[error("model metadata field `{field}`: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("model lacks the tensor `{0}`")]
    MissingTensor(String),
    #[error("model holds a tensor this format does not define: `{0}`")]
    UnexpectedTensor(String),
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` holds a non-finite value (NaN or infinity) at flat index {index}")]
    NonFinite { name: String, index: usize },
    #[error("tensor `{name}`: {reason}")]
    BadValue { name: String, reason: String },
    #[error("PyTorch checkpoint: {0}")]
    Checkpoint(String),
}

/// A request the engine cannot honour.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("sample rate {0} Hz is not supported (use {min} to {max} Hz)", min = crate::limits::MIN_RATE, max = crate::limits::MAX_RATE)]
    UnsupportedRate(u32),
    #[error("tuning A4 = {0} Hz is not supported (use {min} to {max} Hz)", min = crate::limits::A4_RANGE.start(), max = crate::limits::A4_RANGE.end())]
    UnsupportedTuning(f64),
    #[error("head {index} does not exist: the model has {count} heads")]
    NoSuchHead { index: usize, count: usize },
}

/// A MIDI file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MidiError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid MIDI file: {0}")]
    Parse(String),
    #[error("MIDI file uses an unsupported timing: {0}")]
    Timing(String),
    #[error(
        "the file plays {0} instruments (program, channel and track combinations); a piano \
         plays at most {max}",
        max = crate::limits::MAX_INSTRUMENTS
    )]
    TooManyInstruments(usize),
}

/// A built-in model that this build lacks or cannot read.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("no built-in {size} model: this build has {have}; pass --model FILE for others")]
    Missing { size: crate::Size, have: String },
    #[error("built-in model {size}: {source}")]
    Broken {
        size: crate::Size,
        source: ModelError,
    },
}
