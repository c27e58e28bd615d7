//! Piano-SSM inference runtime.
//!
//! * [`limits`] — the numbers every part shares: the keyboard, the rates and tunings, the
//!   instruments a MIDI file may have (a leaf: no other module of the crate).
//! * [`model`] — the model file format (safetensors + JSON metadata), loading and validation.
//! * [`size`] — the model sizes S, L and XL.
//! * [`builtin`] — the models compiled into the binaries (the Piano-SSM Grand family).
//! * [`checkpoint`] — import of the published PyTorch checkpoints, in pure Rust.
//! * [`roll`] — the MIDI-to-piano-roll encoder shared by the plugin, renderer and trainer.
//! * [`midi_file`] — standard MIDI files to timed events and rolls.
//! * [`engine`] — the allocation-free, sample-rate-agnostic SSM engine.
//! * [`player`] — encoder + engine for live MIDI with sample offsets.
//! * [`render`] — whole-file rendering, streamed in chunks (the `piano-ssm` command, in `cli/`,
//!   writes them to WAV files).
//! * `soundcheck` (feature `soundcheck`) — listening checks (pitch, dynamics, onsets, silence,
//!   pedal) as measurements, for the trainer and the tests.

pub mod builtin;
pub mod checkpoint;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod limits;
pub mod midi_file;
pub mod model;
pub mod notes;
mod pickle;
pub mod player;
pub mod render;
pub mod roll;
pub mod size;
#[cfg(feature = "soundcheck")]
pub mod soundcheck;

pub use engine::{Engine, Isa, MAX_BLOCK};
pub use error::{BuiltinError, EngineError, MidiError, ModelError};
pub use midi_file::MidiFile;
pub use model::{Activation, Model, ModelInfo, KEYS};
pub use player::Player;
pub use roll::{ChannelEvent, KeyEvent, KeyFrame, Roll, RollEncoder};
pub use size::Size;
