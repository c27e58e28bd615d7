//! The numbers the whole runtime shares: the keyboard, the sample rates and tunings a model
//! plays at, how many instruments a MIDI file may have. A leaf: it uses nothing of the
//! crate, so the encoder, the model format, the engine and the error types all take these
//! from here without depending on each other.

/// Number of piano keys, A0 (MIDI 21) to C8 (MIDI 108): the model's input width.
pub const KEYS: usize = 88;
/// MIDI note number of the lowest key.
pub const LOWEST_NOTE: u8 = 21;
/// Lowest and highest sample rates the models are trained at or rendered for.
pub const MIN_RATE: u32 = 8_000;
pub const MAX_RATE: u32 = 192_000;
/// The pitch of A4 the models are trained at (Hz).
pub const STANDARD_A4: f64 = 440.0;
/// The master tunings the engine plays: A4 from 400 to 480 Hz.
pub const A4_RANGE: std::ops::RangeInclusive<f64> = 400.0..=480.0;
/// The most instruments a file may play (pretty_midi's: a program on a channel of a track,
/// drums aside). Music has a few; each costs the encoder 2 kB, and a crafted file can
/// declare tens of thousands.
pub const MAX_INSTRUMENTS: usize = 1024;
