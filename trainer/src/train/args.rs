//! What `cargo run -p trainer` accepts, how it is checked, and the fingerprint a resumed run
//! must match.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ssm_runtime::model::{Activation, VELOCITY_EXPONENTS};

use crate::data::performance::LONE_HOLD;
use crate::data::synth::ReferencePiano;
use crate::init::gated_keys;
use crate::loss::{BrightnessLoss, Criterion};
use crate::model::{DecayLimits, Kernel, PoleInit, Size};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum DatasetKind {
    Maestro,
    Maps,
    Synth,
}

/// Everything `cargo run -p trainer` accepts. Defaults follow the paper's train.py except
/// where a short out-of-the-box run needs otherwise (epoch size, batch size).
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct TrainArgs {
    #[arg(long, default_value_t = 50)]
    pub epochs: u64,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Crop length in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub sample_length: f64,
    /// Crops per epoch.
    #[arg(long, default_value_t = 4)]
    pub epoch_size: usize,
    /// Batches per optimizer step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    pub step_size: usize,
    #[arg(long, value_enum, default_value_t = DatasetKind::Synth)]
    pub dataset: DatasetKind,
    /// MAESTRO or MAPS root folder; for `synth`, a SoundFont file (as `--instrument FILE.sf2`).
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// The piano that renders `--dataset synth`: `salamander` (the Salamander Grand Piano V3
    /// from `scripts/fetch-salamander.sh`'s folder), `salamander:DIR` or `FILE.sf2`
    /// (default: Debian's FluidR3_GM).
    #[arg(long, value_parser = ReferencePiano::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<ReferencePiano>,
    /// With `--dataset synth`: the share (0–1) of training clips that are lone notes — one
    /// key at a time, any velocity, each followed by silence — instead of performances, so
    /// the loss hears each strike's tone and each release alone. Validation and test sets
    /// stay performances.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    #[serde(skip_serializing_if = "is_zero")]
    pub lone_notes: f64,
    /// With `--lone-notes`: the longest a lone note is held, seconds (0.3–60; the crop
    /// bounds it too). Long holds let the loss hear partials ring for seconds.
    #[arg(long, default_value_t = LONE_HOLD, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "is_lone_hold")]
    pub lone_hold: f64,
    /// MAESTRO: all, single or a year; MAPS: ambient, close or all.
    #[arg(long, default_value = "all")]
    pub train_year: String,
    #[arg(long, default_value = "all")]
    pub test_year: String,
    /// Model size: S, L or XL.
    #[arg(long, default_value_t = Size::S)]
    pub model: Size,
    /// One output head per MAESTRO year or MAPS piano.
    #[arg(long)]
    pub multi_head: bool,
    #[arg(long, default_value = "tanh", value_parser = parse_activation)]
    pub activation: ActivationArg,
    #[arg(long, default_value_t = 16_000)]
    pub sample_rate: u32,
    #[arg(long, default_value_t = 1_000)]
    pub midi_rate: u32,
    /// Train on audio normalised to zero mean and unit variance (MAESTRO: the published
    /// statistics); on by default, `--normalize false` to train on raw levels.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub normalize: bool,
    /// One or more criteria, summed.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Criterion::CombinedSpectral])]
    pub criterion: Vec<Criterion>,
    /// The brightness criterion's factor (its loss is in octaves of spectral centroid).
    #[arg(long, default_value_t = BrightnessLoss::WEIGHT, value_name = "W")]
    #[serde(skip_serializing_if = "is_default_brightness")]
    pub brightness_weight: f64,
    /// Cosine annealing with warm-up and restarts (otherwise a constant rate).
    #[arg(long)]
    pub scheduler: bool,
    /// 20 more epochs at lr/5 with the spectral loss only.
    #[arg(long)]
    pub finetune: bool,
    /// Score the test split after every epoch.
    #[arg(long)]
    pub test: bool,
    /// Score the validation split after every epoch.
    #[arg(long)]
    pub valid: bool,
    /// Start from a runtime model (.safetensors) or a published checkpoint (.pth). A smaller
    /// model than --model is grown into it (its states first, the added ones silent).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// cpu, cuda or cuda:N (default: CUDA when available).
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Learning-rate factor for the poles (norm, angle), 1 as in the paper.
    #[arg(long, default_value_t = 1.0)]
    pub pole_lr: f64,
    /// After every step, set the layers' input biases so that a silent roll leaves every state
    /// at zero, and the heads' biases so that it plays silence (no start-of-render transient,
    /// no offset after the music stops; recommended with --init gated-keys).
    #[arg(long)]
    pub rest_at_zero: bool,
    /// Longest 60 dB decay (seconds) of a pole in layers 2–4 and of the key damper's damped
    /// poles, enforced after every step; the first layer's sounding poles are not limited.
    /// Only the first layer is gated or damped by the keys: a long ring later, or a damped
    /// string that learns to ring, would play on after release.
    #[arg(long)]
    pub later_t60: Option<f64>,
    /// Shortest 60 dB decay (seconds) of the first layer's sounding poles (the strings while
    /// their keys are held), enforced after every step; the damper's poles are not touched.
    /// The spectral loss hears little of a quiet high string's tail and shortens it to tens
    /// of milliseconds, where a piano's rings for seconds.
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_t60: Option<f64>,
    /// With --weights, on a fresh start: scale layer 1's outputs by K and layer 2's inputs by
    /// 1/K, the same model for quiet notes, K times deeper into the tanh for loud ones (where
    /// its overtones brighten the tone, as a harder strike does).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive: Option<f64>,
    /// With --weights, on a fresh start: multiply layer 2's skip weights by GAIN. Why: a
    /// trained network carries its sound through layers 2–4's resonators, 30–50 dB above the
    /// skips, and those pass only the partials they were trained on, so the overtones a
    /// driven tanh adds to a loud note never reach the output (measured: the same tone at
    /// every velocity at any --drive). The skips are flat in frequency: opened, they carry a
    /// hard strike's overtones as they are (figures: docs/salamander-training.md).
    #[arg(long, value_name = "GAIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_skip: Option<f64>,
    /// With --weights: set the key damper's settling fade to FRAMES (`layers.0.damper_settle`;
    /// models written before the fade exist drop the equilibrium at once, which clicks).
    #[arg(long, value_name = "FRAMES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damper_settle: Option<u32>,
    /// The first layer reads a key's roll value `v` as `(v/127)^E` (`layers.0.velocity_exponent`,
    /// fixed during training): 2 gives a linear network the training sampler's dynamic range
    /// (its curve is 40·log10(v/127) dB); without it a model keeps the exponent it has (none:
    /// `v/127`, as the published checkpoints).
    #[arg(long, value_name = "E")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub velocity_exponent: Option<f32>,
    /// With --weights: give the first layer a bank of K more states for every key, each
    /// driven and damped by its key alone, poles on the key's string partials, output weights
    /// at zero (the model plays as before until training opens them); a model that ends in
    /// such a bank keeps it. Why: a held note keeps only as many ringing partials as layer 1
    /// has states for its key (1–3 in the built-ins; a grand rings 8). See `trainer::bank`.
    #[arg(long, value_name = "K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_bank: Option<usize>,
    /// Give the first layer a second input matrix for each key's touch squared
    /// (`layers.0.B_square`, model format version 3), starting at zero: each state can then
    /// answer velocity with its own curve, so a harder strike can sound brighter and not only
    /// louder. A model that has one keeps it without this flag.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub touch_square: bool,
    /// Learning-rate factor for the touch square (`layers.0.B_square`), which starts at zero
    /// on a trained model and must grow to B's size within a fine-tuning run.
    #[arg(long, default_value_t = 1.0)]
    #[serde(skip_serializing_if = "is_one")]
    pub square_lr: f64,
    /// Where a fresh model's poles start (ignored with --weights).
    #[arg(long, value_enum, default_value_t = PoleInit::Keyboard)]
    pub init: PoleInit,
    /// With --init gated-keys: the gate depth β; a released key's resonance passes at
    /// sech²(β) (3: −40 dB, 4: −58 dB), and softer keys open the gate less.
    #[arg(long, default_value_t = gated_keys::GATE)]
    // left out of the fingerprint at its default, so runs from before the option still resume
    #[serde(skip_serializing_if = "is_default_gate")]
    pub gate: f64,
    /// CPU threads for libtorch and the scan kernel (default: all cores).
    #[arg(long)]
    #[serde(skip)]
    pub threads: Option<usize>,
    /// How the recurrences are evaluated: `scan` (time-domain, CPU only) or `fft` (any
    /// device); default: scan on CPU, fft on CUDA. Both compute the same gradients, so a run
    /// may resume with the other.
    #[arg(long, value_enum)]
    #[serde(skip)]
    pub kernel: Option<Kernel>,
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Continue from OUT/checkpoint.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Family name written into the exported model.
    #[arg(long, default_value = "Piano-SSM Custom")]
    pub family: String,
    /// Hide progress bars (logs one line per epoch instead).
    #[arg(long)]
    pub quiet: bool,
    /// Also keep every epoch's export as OUT/epochs/NNN.safetensors, to choose a model by its
    /// listening checks and held-out loss rather than take the last one.
    #[arg(long)]
    #[serde(skip)]
    pub keep_epochs: bool,
}

impl TrainArgs {
    /// The decay projections chosen on the command line.
    pub fn decay_limits(&self) -> DecayLimits {
        DecayLimits {
            later_t60: self.later_t60,
            string_t60: self.string_t60,
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ActivationArg(#[serde(serialize_with = "ser_activation")] pub Activation);

fn ser_activation<S: serde::Serializer>(a: &Activation, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

fn parse_activation(s: &str) -> Result<ActivationArg, String> {
    Activation::parse(s)
        .map(ActivationArg)
        .ok_or_else(|| format!("{s:?}: expected tanh, relu, leaky-relu or identity"))
}

pub(super) fn validate(args: &TrainArgs) -> Result<()> {
    if args.batch_size == 0 || args.epoch_size == 0 || args.step_size == 0 {
        bail!("--batch-size, --epoch-size and --step-size must be at least 1");
    }
    if !(args.sample_length > 0.0 && args.sample_length <= 60.0) {
        bail!("--sample-length must be in (0, 60] seconds");
    }
    args.decay_limits().check()?;
    if args.weights.is_none()
        && (args.drive.is_some() || args.open_skip.is_some() || args.damper_settle.is_some())
    {
        bail!("--drive, --open-skip and --damper-settle change a trained model: give it --weights");
    }
    if let Some(e) = args
        .velocity_exponent
        .filter(|e| !VELOCITY_EXPONENTS.contains(e))
    {
        bail!(
            "--velocity-exponent must be in {}..={}, not {e}",
            VELOCITY_EXPONENTS.start(),
            VELOCITY_EXPONENTS.end()
        );
    }
    match args.key_bank {
        Some(_) if args.weights.is_none() => {
            bail!("--key-bank extends a trained model's first layer: give it --weights")
        }
        Some(k) if !(1..=16).contains(&k) => {
            bail!("--key-bank must be 1 to 16 states a key, not {k}")
        }
        _ => {}
    }
    if let Some(k) = args.drive.filter(|k| !(k.is_finite() && *k > 0.0)) {
        bail!("--drive must be a positive number, not {k}");
    }
    if let Some(g) = args.open_skip.filter(|g| !(g.is_finite() && *g > 0.0)) {
        bail!("--open-skip must be a positive number, not {g}");
    }
    if !gated_keys::is_valid_gate(args.gate) {
        bail!(
            "--gate must be in (0, {}]: released keys pass at sech²(gate)",
            gated_keys::MAX_GATE
        );
    }
    if !(args.pole_lr > 0.0 && args.pole_lr.is_finite()) {
        bail!("--pole-lr must be a positive factor");
    }
    if !(args.square_lr > 0.0 && args.square_lr.is_finite()) {
        bail!("--square-lr must be a positive factor");
    }
    if args.criterion.is_empty() {
        bail!(
            "--criterion needs at least one of combined-spectral, spectral, equalised, brightness"
        );
    }
    if !(args.brightness_weight.is_finite() && args.brightness_weight > 0.0) {
        bail!(
            "--brightness-weight must be a positive number, not {}",
            args.brightness_weight
        );
    }
    if !(0.0..=1.0).contains(&args.lone_notes) {
        bail!(
            "--lone-notes is a share of the clips, 0 to 1, not {}",
            args.lone_notes
        );
    }
    if !(0.3..=60.0).contains(&args.lone_hold) {
        bail!(
            "--lone-hold is the longest hold of a lone note, 0.3 to 60 seconds, not {}",
            args.lone_hold
        );
    }
    if args.lone_notes > 0.0 && args.dataset != DatasetKind::Synth {
        bail!("--lone-notes plays the synth dataset's piano: use it with --dataset synth");
    }
    Ok(())
}

fn is_lone_hold(seconds: &f64) -> bool {
    *seconds == LONE_HOLD
}

fn is_one(factor: &f64) -> bool {
    *factor == 1.0
}

fn is_zero(share: &f64) -> bool {
    *share == 0.0
}

fn is_default_brightness(weight: &f64) -> bool {
    *weight == BrightnessLoss::WEIGHT
}

fn is_default_gate(gate: &f64) -> bool {
    *gate == gated_keys::GATE
}

/// Identifies a run's settings; resuming with different ones is refused.
pub(super) fn fingerprint(args: &TrainArgs) -> String {
    let mut a = args.clone();
    // these may change between sessions without changing the run
    a.resume = false;
    a.device = None;
    a.quiet = false;
    a.epochs = 0;
    // a run folder may be moved or renamed
    a.out = PathBuf::new();
    serde_json::to_string(&a).unwrap_or_default()
}
