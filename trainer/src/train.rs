//! The training loop: crops → forward → spectral losses → Adam, with per-epoch validation,
//! checkpoints, logs, plots and the exported runtime model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::checkpoint::{import_pth, ImportOptions, MAESTRO_NORM_MEAN, MAESTRO_NORM_STD};
use ssm_runtime::model::{Activation, Model, ModelInfo, VELOCITY_EXPONENTS};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, LogRow, LoopState};
use crate::data::synth::Instrument;
use crate::data::{self, synth, Batch, Clip, Norm, Rates, Source, Split};
use crate::init::gated_keys;
use crate::loss::{BrightnessLoss, Criterion, Losses};
use crate::model::{DecayLimits, InitOptions, Kernel, PianoSsm, PoleInit, Size};
use crate::optim::{Adam, Schedule};
use crate::plots;

/// Epochs of `--finetune`, at lr/5 with the spectral loss only (as in the paper).
pub const FINETUNE_EPOCHS: u64 = 20;
/// Held-out clips scored after each epoch with `--valid` / `--test`.
const HELD_OUT_CLIPS: usize = 4;
/// Clips measured for the normalisation statistics.
const NORM_CLIPS: usize = 16;

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
    #[arg(long, value_parser = Instrument::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<Instrument>,
    /// With `--dataset synth`: the share (0–1) of training clips that are lone notes — one
    /// key at a time, any velocity, each followed by silence — instead of performances, so
    /// the loss hears each strike's tone and each release alone. Validation and test sets
    /// stay performances.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    #[serde(skip_serializing_if = "is_zero")]
    pub lone_notes: f64,
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
    /// hard strike's overtones as they are (on the built-in L of 2026-12-06 with --drive 10,
    /// GAIN 10 to 30 put the centroid at velocity 110 over 30 at 1.07 to 1.23 untrained).
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

/// Where a finished run put its files.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub checkpoint: PathBuf,
    pub export: PathBuf,
    pub log: PathBuf,
    pub plots: Vec<PathBuf>,
    pub audio_seconds_per_second: f64,
}

/// Which data a command reads: shared by `train` and `eval`.
pub struct DataSelection {
    pub kind: DatasetKind,
    pub path: Option<PathBuf>,
    pub instrument: Option<Instrument>,
    pub train_year: String,
    pub test_year: String,
    pub multi_head: bool,
    pub seed: u64,
    /// `--lone-notes`
    pub lone_notes: f64,
}

impl DataSelection {
    pub fn of(args: &TrainArgs) -> DataSelection {
        DataSelection {
            kind: args.dataset,
            path: args.dataset_path.clone(),
            instrument: args.instrument.clone(),
            train_year: args.train_year.clone(),
            test_year: args.test_year.clone(),
            multi_head: args.multi_head,
            seed: args.seed,
            lone_notes: args.lone_notes,
        }
    }

    pub fn open(&self, rates: Rates) -> Result<Box<dyn Source>> {
        Ok(match self.kind {
            DatasetKind::Synth => {
                let instrument = match (&self.instrument, &self.path) {
                    (Some(_), Some(_)) => {
                        bail!("give the synth dataset's piano once: --instrument or --dataset-path")
                    }
                    (Some(i), None) => i.clone(),
                    (None, Some(path)) => Instrument::SoundFont(path.clone()),
                    (None, None) => Instrument::fluid(),
                };
                Box::new(
                    synth::SynthSource::open(&instrument, rates, self.seed)?
                        .with_lone_notes(self.lone_notes),
                )
            }
            DatasetKind::Maestro => {
                let root = self
                    .path
                    .as_deref()
                    .context("--dataset maestro needs --dataset-path <maestro-v3.0.0 folder>")?;
                let (train, test) = (
                    data::maestro::YearFilter::parse(&self.train_year)?,
                    data::maestro::YearFilter::parse(&self.test_year)?,
                );
                Box::new(data::maestro::open(
                    root,
                    rates,
                    &train,
                    &test,
                    self.multi_head,
                )?)
            }
            DatasetKind::Maps => {
                let root = self
                    .path
                    .as_deref()
                    .context("--dataset maps needs --dataset-path <MAPS folder>")?;
                Box::new(data::maps::open(
                    root,
                    rates,
                    &self.train_year,
                    self.multi_head,
                )?)
            }
        })
    }
}

/// libtorch's intra-op threads: `threads`, or every core.
pub fn set_threads(threads: Option<usize>) {
    let cores =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(cores.max(1) as i32);
}

/// A fresh model's initialisation as the options ask for it.
fn init_options(args: &TrainArgs, rates: Rates) -> InitOptions {
    InitOptions {
        poles: args.init,
        sample_rate: rates.sample_rate,
        seed: args.seed,
        gate: args.gate,
    }
}

/// `--weights` as the network training starts from: `--damper-settle` applied, and grown into
/// `--model` when that is larger (its states first, the added ones silent).
fn start_from_weights(
    path: &Path,
    args: &TrainArgs,
    rates: Rates,
    device: Device,
    heads: &[String],
) -> Result<PianoSsm> {
    let mut model = load_weights(path)?;
    if let Some(frames) = args.damper_settle {
        match model.layers.first_mut().and_then(|l| l.damper.as_mut()) {
            Some(d) => d.settle_frames = frames,
            None => bail!(
                "--damper-settle: {} has no key damper to settle",
                path.display()
            ),
        }
    }
    if model.head_count() != heads.len() {
        bail!(
            "{} has {} heads; this dataset trains {} ({})",
            path.display(),
            model.head_count(),
            heads.len(),
            heads.join(", ")
        );
    }
    if !model.state_sizes().iter().all(|&s| s < args.model.state()) {
        return PianoSsm::from_runtime(device, &model);
    }
    eprintln!(
        "growing {} into {}: its states come first, the added ones start silent",
        path.display(),
        args.model.label()
    );
    let fresh = PianoSsm::new(
        device,
        args.model,
        heads.len(),
        model.info.activation,
        init_options(args, rates),
    )?;
    let mut info = model.info.clone();
    info.size = args.model.label().into();
    let grown = crate::grow::grow(&model, fresh.to_runtime(info)?)?;
    PianoSsm::from_runtime(device, &grown)
}

/// Loads `--weights`: a runtime model or a published `.pth` checkpoint.
pub fn load_weights(path: &Path) -> Result<Model> {
    if path.extension().is_some_and(|e| e == "pth") {
        Ok(import_pth(path, &ImportOptions::default())?)
    } else {
        Ok(Model::load(path)?)
    }
}

struct Run<'a> {
    args: &'a TrainArgs,
    rates: Rates,
    device: Device,
    source: Box<dyn Source>,
    net: PianoSsm,
    params: BTreeMap<String, Tensor>,
    adam: Adam,
    losses: Losses,
    state: LoopState,
    valid: Vec<Clip>,
    test: Vec<Clip>,
}

pub fn train(args: &TrainArgs) -> Result<Outputs> {
    validate(args)?;
    set_threads(args.threads);
    let device = crate::parse_device(args.device.as_deref())?;
    let rates = Rates::new(args.sample_rate, args.midi_rate)?;
    let source = DataSelection::of(args).open(rates)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    let mut run = Run::start(args, rates, device, source)?;
    if run.adam.step == 0 {
        // a fresh network starts inside the constraints it is trained under
        run.constrain();
    }
    run.run()
}

fn validate(args: &TrainArgs) -> Result<()> {
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
    if args.lone_notes > 0.0 && args.dataset != DatasetKind::Synth {
        bail!("--lone-notes plays the synth dataset's piano: use it with --dataset synth");
    }
    Ok(())
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
fn fingerprint(args: &TrainArgs) -> String {
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

impl<'a> Run<'a> {
    fn start(
        args: &'a TrainArgs,
        rates: Rates,
        device: Device,
        source: Box<dyn Source>,
    ) -> Result<Run<'a>> {
        let heads = source.heads();
        let mut net = match &args.weights {
            Some(path) => start_from_weights(path, args, rates, device, &heads)?,
            None => PianoSsm::new(
                device,
                args.model,
                heads.len(),
                args.activation.0,
                init_options(args, rates),
            )?,
        };
        if let Some(e) = args.velocity_exponent {
            net.velocity_exponent = Some(e);
        }
        if args.touch_square {
            net.add_touch_square();
        }
        net.kernel = args.kernel.unwrap_or(Kernel::default_for(device));
        net.kernel.check(device)?;
        let params: BTreeMap<String, Tensor> = net.vs.variables().into_iter().collect();
        let mut adam = Adam::new(1e-4);
        adam.pole_lr = args.pole_lr;
        adam.square_lr = args.square_lr;
        let ckpt = args.out.join("checkpoint.safetensors");
        let state = if args.resume && ckpt.is_file() {
            let state = checkpoint::load(&ckpt, &params, &mut adam)?;
            if state.fingerprint != fingerprint(args) {
                bail!("{} was written by a run with other options; resume with the same options or choose another --out", ckpt.display());
            }
            eprintln!(
                "resuming {} after epoch {}",
                ckpt.display(),
                state.epochs_done
            );
            state
        } else {
            if args.resume {
                eprintln!("no checkpoint at {}: starting from scratch", ckpt.display());
            }
            let norm = normalisation(args, &*source, rates)?;
            if let Some(k) = args.drive {
                net.drive_first_tanh(k);
            }
            if let Some(g) = args.open_skip {
                net.open_first_skip(g);
            }
            if args.weights.is_none()
                && matches!(args.init, PoleInit::GatedKeys | PoleInit::DampedKeys)
            {
                let gain = match_level(&mut net, args, &*source, rates, norm, device)?;
                eprintln!(
                    "{:?} init: head gain {gain:.3} matches the training level",
                    args.init
                );
            }
            LoopState {
                epochs_done: 0,
                adam_step: 0,
                norm,
                fingerprint: fingerprint(args),
                log: Vec::new(),
                seconds: 0.0,
            }
        };
        let frames = rates.frames(args.sample_length);
        let valid = if args.valid {
            source.held_out(Split::Validation, frames, HELD_OUT_CLIPS)?
        } else {
            Vec::new()
        };
        let test = if args.test {
            source.held_out(Split::Test, frames, HELD_OUT_CLIPS)?
        } else {
            Vec::new()
        };
        Ok(Run {
            args,
            rates,
            device,
            source,
            net,
            params,
            adam,
            losses: Losses {
                brightness_weight: args.brightness_weight,
                ..Losses::new(rates.sample_rate, device)
            },
            state,
            valid,
            test,
        })
    }

    /// The projections chosen on the command line, after every step and on a fresh start.
    fn constrain(&mut self) {
        self.net
            .limit_decays(self.args.decay_limits(), self.rates.sample_rate as f64);
        if self.args.rest_at_zero {
            let norm = self.state.norm;
            self.net.settle_rest(-norm.mean / norm.std);
        }
    }

    fn total_epochs(&self) -> u64 {
        self.args.epochs
            + if self.args.finetune {
                FINETUNE_EPOCHS
            } else {
                0
            }
    }

    fn steps_per_epoch(&self) -> u64 {
        self.batches_per_epoch()
            .div_ceil(self.args.step_size as u64)
    }

    fn batches_per_epoch(&self) -> u64 {
        self.args.epoch_size.div_ceil(self.args.batch_size) as u64
    }

    fn run(&mut self) -> Result<Outputs> {
        let out = &self.args.out;
        let ckpt = out.join("checkpoint.safetensors");
        println!(
            "training {} on {} ({}), {} Hz / {} Hz frames, device {:?}, {:?} kernel, {} parameters",
            self.args.model.label(),
            self.source.describe(),
            self.source.heads().join(", "),
            self.rates.sample_rate,
            self.rates.midi_rate,
            self.device,
            self.net.kernel,
            self.params.values().map(|p| p.numel()).sum::<usize>()
        );
        while self.state.epochs_done < self.total_epochs() {
            let epoch = self.state.epochs_done;
            let started = Instant::now();
            let (train_loss, lr, audio) = self.epoch(epoch)?;
            let seconds = started.elapsed().as_secs_f64();
            let valid_loss = self.held_out_loss(&self.valid)?;
            let test_loss = self.held_out_loss(&self.test)?;
            self.state.seconds += seconds;
            self.state.epochs_done += 1;
            self.state.adam_step = self.adam.step;
            let row = LogRow {
                epoch: epoch + 1,
                steps: self.adam.step,
                lr,
                train_loss,
                valid_loss,
                test_loss,
                audio_seconds_per_second: audio / seconds,
            };
            let fmt = |v: Option<f64>| v.map_or(String::new(), |x| format!(" valid {x:.4}"));
            self.state.log.push(row.clone());
            checkpoint::save(&ckpt, &self.params, &self.adam, &self.state)?;
            self.write_log()?;
            let model = self.export()?;
            if self.args.keep_epochs {
                self.keep(&model, row.epoch)?;
            }
            println!(
                "epoch {}/{}: loss {train_loss:.4}{} lr {lr:.2e}, {:.2} s of audio per second; {}",
                row.epoch,
                self.total_epochs(),
                fmt(valid_loss),
                row.audio_seconds_per_second,
                listening_checks(&model)
            );
        }
        if self.state.log.is_empty() {
            // `--epochs 0`: the initialised network, e.g. to listen to an initialisation
            self.export()?;
        }
        let plots = self.plots()?;
        let log = &self.state.log;
        let speed = if log.is_empty() {
            0.0
        } else {
            log.iter().map(|r| r.audio_seconds_per_second).sum::<f64>() / log.len() as f64
        };
        if self.source.skipped() > 0 {
            eprintln!(
                "warning: {} file(s) or crops were skipped as missing or corrupt",
                self.source.skipped()
            );
        }
        Ok(Outputs {
            checkpoint: ckpt,
            export: out.join("model.safetensors"),
            log: out.join("log.csv"),
            plots,
            audio_seconds_per_second: speed,
        })
    }

    /// One epoch; returns (mean loss, last learning rate, seconds of audio trained).
    fn epoch(&mut self, epoch: u64) -> Result<(f64, f64, f64)> {
        let finetune = epoch >= self.args.epochs;
        let schedule = if finetune {
            Schedule::constant(self.args.lr / 5.0)
        } else if self.args.scheduler {
            Schedule::paper(self.args.lr, self.args.epochs * self.steps_per_epoch())
        } else {
            Schedule::constant(self.args.lr)
        };
        let criteria: Vec<Criterion> = if finetune {
            vec![Criterion::Spectral]
        } else {
            self.args.criterion.clone()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(synth::clip_seed(self.args.seed, epoch));
        let frames = self.rates.frames(self.args.sample_length);
        let bar = self.progress(epoch);
        let (mut total, mut count, mut lr) = (0.0, 0usize, schedule.lr(self.adam.step as u64));
        let mut remaining = self.args.epoch_size;
        for batch_index in 0..self.batches_per_epoch() {
            let n = remaining.min(self.args.batch_size);
            remaining -= n;
            let clips = (0..n)
                .map(|_| self.source.train_clip(&mut rng, frames))
                .collect::<Result<Vec<_>>>()?;
            let batch = Batch::new(&clips, self.state.norm, self.device);
            let pred =
                self.net
                    .forward_train(&batch.roll, &batch.heads, self.rates.hold() as i64, 1.0);
            let loss = criteria
                .iter()
                .map(|&c| self.losses.get(c, &pred.audio, &batch.audio))
                .fold(Tensor::zeros([], (Kind::Float, self.device)), |a, b| a + b);
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                bail!(
                    "the loss became {value} at epoch {} batch {batch_index}; lower --lr",
                    epoch + 1
                );
            }
            pred.backward(&(loss / self.args.step_size as f64));
            total += value;
            count += 1;
            let last = batch_index + 1 == self.batches_per_epoch();
            if (batch_index + 1) % self.args.step_size as u64 == 0 || last {
                lr = schedule.lr(self.adam.step as u64);
                self.adam.step(&self.params, lr);
                Adam::zero_grad(&self.params);
                self.constrain();
            }
            bar.set_message(format!("loss {value:.4} lr {lr:.2e}"));
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        let audio = self.args.epoch_size as f64 * frames as f64 / self.rates.midi_rate as f64;
        Ok((total / count.max(1) as f64, lr, audio))
    }

    fn progress(&self, epoch: u64) -> ProgressBar {
        if self.args.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(self.args.epoch_size as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} crops {msg} [{elapsed_precise}]",
            )
            .unwrap(),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, self.total_epochs()));
        bar
    }

    /// Mean training criterion over held-out clips (normalised units), if any.
    fn held_out_loss(&self, clips: &[Clip]) -> Result<Option<f64>> {
        if clips.is_empty() {
            return Ok(None);
        }
        let _guard = tch::no_grad_guard();
        let mut total = 0.0;
        for clip in clips {
            let batch = Batch::new(std::slice::from_ref(clip), self.state.norm, self.device);
            let pred = self
                .net
                .forward(&batch.roll, &batch.heads, self.rates.hold() as i64, 1.0);
            total += self
                .args
                .criterion
                .iter()
                .map(|&c| self.losses.get(c, &pred, &batch.audio).double_value(&[]))
                .sum::<f64>();
        }
        Ok(Some(total / clips.len() as f64))
    }

    fn write_log(&self) -> Result<()> {
        let path = self.args.out.join("log.csv");
        ssm_runtime::fsutil::write_atomic(&path, checkpoint::csv(&self.state.log).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn info(&self) -> ModelInfo {
        let a = self.args;
        let heads = self.source.heads();
        ModelInfo {
            family: a.family.clone(),
            size: a.model.label().into(),
            activation: a.activation.0,
            train_rate: self.rates.sample_rate,
            midi_rate: self.rates.midi_rate,
            norm_mean: self.state.norm.mean,
            norm_std: self.state.norm.std,
            head_kind: (heads.len() > 1).then(|| self.source.head_kind()).flatten(),
            heads,
            description: format!(
                "trained by the piano-ssm trainer on {}: {} epochs × {} crops of {} s, lr {}, seed {}, {:.0} s on {:?}",
                self.source.describe(),
                self.state.epochs_done,
                a.epoch_size,
                a.sample_length,
                a.lr,
                a.seed,
                self.state.seconds,
                self.device
            ),
        }
    }

    /// Writes OUT/model.safetensors and returns the model.
    fn export(&self) -> Result<Model> {
        let model = self.net.to_runtime(self.info())?;
        let path = self.args.out.join("model.safetensors");
        model
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(model)
    }

    /// Writes OUT/epochs/NNN.safetensors (`--keep-epochs`).
    fn keep(&self, model: &Model, epoch: u64) -> Result<()> {
        let dir = self.args.out.join("epochs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{epoch:03}.safetensors"));
        model
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    fn plots(&self) -> Result<Vec<PathBuf>> {
        let mut written = vec![];
        let curves = self.args.out.join("loss.png");
        plots::loss_curves(&curves, &self.state.log)?;
        written.push(curves);
        let clip = match self.valid.first() {
            Some(c) => c.clone(),
            None => self
                .source
                .held_out(
                    Split::Validation,
                    self.rates.frames(self.args.sample_length.min(4.0)),
                    1,
                )?
                .remove(0),
        };
        let _guard = tch::no_grad_guard();
        let batch = Batch::new(std::slice::from_ref(&clip), self.state.norm, self.device);
        let pred = self
            .net
            .forward(&batch.roll, &batch.heads, self.rates.hold() as i64, 1.0);
        let spec = self.args.out.join("spectrogram.png");
        plots::spectrograms(
            &spec,
            &batch.audio.get(0),
            &pred.get(0),
            self.rates.sample_rate,
        )?;
        written.push(spec);
        Ok(written)
    }
}

/// The listening checks at the training rate, as one line: how many pass, and which fail.
fn listening_checks(model: &Model) -> String {
    let outcomes = ssm_runtime::soundcheck::all(&mut ssm_runtime::soundcheck::ModelRenderer {
        model,
        sample_rate: model.info.train_rate,
    });
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.name)
        .collect();
    let passed = outcomes.len() - failed.len();
    if failed.is_empty() {
        format!("checks {passed}/{}", outcomes.len())
    } else {
        format!(
            "checks {passed}/{} (failing: {})",
            outcomes.len(),
            failed.join(", ")
        )
    }
}

/// Clips a key-bank network's output level is matched on.
const LEVEL_CLIPS: usize = 4;

/// Sets a fresh key-bank network's (gated or damped keys) head gain to the training data's level, on clips of
/// their own seed stream (the training crops are not disturbed).
fn match_level(
    net: &mut PianoSsm,
    args: &TrainArgs,
    source: &dyn Source,
    rates: Rates,
    norm: Norm,
    device: Device,
) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(synth::clip_seed(args.seed, u64::MAX - 1));
    let frames = rates.frames(args.sample_length);
    let clips = (0..LEVEL_CLIPS)
        .map(|_| source.train_clip(&mut rng, frames))
        .collect::<Result<Vec<_>>>()?;
    let batch = Batch::new(&clips, norm, device);
    Ok(net.match_level(&batch, rates.hold() as i64))
}

/// Normalisation statistics: MAESTRO's published ones, or measured on training crops.
fn normalisation(args: &TrainArgs, source: &dyn Source, rates: Rates) -> Result<Norm> {
    if !args.normalize {
        return Ok(Norm::IDENTITY);
    }
    if args.dataset == DatasetKind::Maestro {
        return Ok(Norm {
            mean: MAESTRO_NORM_MEAN,
            std: MAESTRO_NORM_STD,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(synth::clip_seed(args.seed, u64::MAX));
    let frames = rates.frames(args.sample_length);
    let clips = (0..NORM_CLIPS)
        .map(|_| source.train_clip(&mut rng, frames))
        .collect::<Result<Vec<_>>>()?;
    Ok(Norm::measure(&clips))
}
