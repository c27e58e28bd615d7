//! Training data: pairs of piano rolls (through the runtime's encoder) and audio at the model rate.
//!
//! * [`maestro`] — MAESTRO v3.0.0 (CSV or JSON index, splits, years).
//! * [`maps`] — MAPS ENSTDkAm / ENSTDkCl `MUS` pieces.
//! * [`synth`] — procedurally generated performances rendered by a sampled piano.
//! * [`salamander`] — the sampler for the Salamander Grand Piano V3 library.
//! * [`audio`] — WAV reading, mono mix-down and resampling.

pub mod audio;
pub mod files;
pub mod maestro;
pub mod maps;
pub mod performance;
pub mod salamander;
pub mod synth;

use anyhow::Result;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::{KeyFrame, KEYS};
use tch::{Device, Tensor};

/// One training or test example: `frames` roll frames and `frames * hold` samples of audio.
#[derive(Debug, Clone)]
pub struct Clip {
    pub frames: Vec<KeyFrame>,
    /// Raw (not normalised) mono audio at the model's sample rate.
    pub audio: Vec<f32>,
    pub head: usize,
}

/// Model sample rate and roll frame rate; the rate divides the sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub sample_rate: u32,
    pub midi_rate: u32,
}

impl Rates {
    pub fn new(sample_rate: u32, midi_rate: u32) -> Result<Rates> {
        if midi_rate == 0 || !sample_rate.is_multiple_of(midi_rate) {
            anyhow::bail!("--midi-rate {midi_rate} must divide --sample-rate {sample_rate}");
        }
        Ok(Rates {
            sample_rate,
            midi_rate,
        })
    }

    /// Samples per roll frame.
    pub fn hold(self) -> usize {
        (self.sample_rate / self.midi_rate) as usize
    }

    /// Whole frames in `seconds`.
    pub fn frames(self, seconds: f64) -> usize {
        (seconds * self.midi_rate as f64).round().max(1.0) as usize
    }
}

/// What the training loop needs from a dataset.
pub trait Source: Send + Sync {
    /// Head labels (years, pianos, or one label for a single-head model).
    fn heads(&self) -> Vec<String>;
    /// What a head stands for, for the model metadata ("year", "piano").
    fn head_kind(&self) -> Option<String>;
    /// A random crop of the training split.
    fn train_clip(&self, rng: &mut ChaCha8Rng, frames: usize) -> Result<Clip>;
    /// A held-out split as consecutive segments, at most `limit` of them.
    fn held_out(&self, split: Split, frames: usize, limit: usize) -> Result<Vec<Clip>>;
    /// One line for the model's description: what it was trained on.
    fn describe(&self) -> String;
    /// Files skipped as missing or corrupt so far.
    fn skipped(&self) -> usize;
}

/// The held-out splits: validation (checked during training) and test (reported by `eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Validation,
    Test,
}

/// Audio normalisation: the model predicts (audio − mean) / std.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Norm {
    pub mean: f64,
    pub std: f64,
}

impl Norm {
    pub const IDENTITY: Norm = Norm {
        mean: 0.0,
        std: 1.0,
    };

    /// Mean and standard deviation over clips (silence-only data gives std 1).
    pub fn measure(clips: &[Clip]) -> Norm {
        let n: usize = clips.iter().map(|c| c.audio.len()).sum();
        let mean = clips
            .iter()
            .flat_map(|c| &c.audio)
            .map(|&x| x as f64)
            .sum::<f64>()
            / n.max(1) as f64;
        let var = clips
            .iter()
            .flat_map(|c| &c.audio)
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n.max(1) as f64;
        let std = if var > 1e-20 { var.sqrt() } else { 1.0 };
        Norm { mean, std }
    }
}

/// A batch on the device: roll (B, 88, frames), normalised audio (B, L), heads (B).
pub struct Batch {
    pub roll: Tensor,
    pub audio: Tensor,
    pub heads: Tensor,
}

impl Batch {
    pub fn new(clips: &[Clip], norm: Norm, device: Device) -> Batch {
        let rolls: Vec<Tensor> = clips
            .iter()
            .map(|c| crate::roll_tensor(&c.frames, device))
            .collect();
        let roll = Tensor::cat(&rolls, 0);
        let audio: Vec<f32> = clips
            .iter()
            .flat_map(|c| {
                c.audio
                    .iter()
                    .map(|&x| ((x as f64 - norm.mean) / norm.std) as f32)
            })
            .collect();
        let audio = Tensor::from_slice(&audio)
            .reshape([clips.len() as i64, -1])
            .to_device(device);
        let heads: Vec<i64> = clips.iter().map(|c| c.head as i64).collect();
        Batch {
            roll,
            audio,
            heads: Tensor::from_slice(&heads).to_device(device),
        }
    }
}

/// Cuts a whole roll + audio into consecutive segments of `frames` (the last one zero-padded).
pub fn segments(
    frames: &[KeyFrame],
    audio: &[f32],
    hold: usize,
    head: usize,
    len: usize,
) -> Vec<Clip> {
    let count = frames.len().div_ceil(len);
    (0..count)
        .map(|i| {
            let mut f: Vec<KeyFrame> = frames[i * len..((i + 1) * len).min(frames.len())].to_vec();
            f.resize(len, [0; KEYS]);
            let start = (i * len * hold).min(audio.len());
            let mut a = audio[start..((i + 1) * len * hold).min(audio.len())].to_vec();
            a.resize(len * hold, 0.0);
            Clip {
                frames: f,
                audio: a,
                head,
            }
        })
        .collect()
}
