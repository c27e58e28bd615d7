//! What a run starts from: the data it reads, the weights it loads or initialises, the
//! output level and normalisation it matches.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::checkpoint::{import_pth, ImportOptions, MAESTRO_NORM_MEAN, MAESTRO_NORM_STD};
use ssm_runtime::model::Model;
use tch::Device;

use crate::bank;
use crate::data::synth::ReferencePiano;
use crate::data::{self, synth, Batch, Norm, Rates, Source};
use crate::model::{InitOptions, Network};
use ssm_runtime::model::KeyBank;

use super::{DatasetKind, TrainArgs};

/// Clips measured for the normalisation statistics.
const NORM_CLIPS: usize = 16;

/// Which data a command reads: shared by `train` and `eval`.
pub struct DataSelection {
    pub kind: DatasetKind,
    pub path: Option<PathBuf>,
    pub instrument: Option<ReferencePiano>,
    pub train_year: String,
    pub test_year: String,
    pub multi_head: bool,
    pub seed: u64,
    /// `--lone-notes`
    pub lone_notes: f64,
    /// `--lone-hold`
    pub lone_hold: f64,
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
            lone_hold: args.lone_hold,
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
                    (None, Some(path)) => ReferencePiano::SoundFont(path.clone()),
                    (None, None) => ReferencePiano::fluid(),
                };
                Box::new(
                    synth::SynthSource::open(&instrument, rates, self.seed)?
                        .with_lone_notes(self.lone_notes)
                        .with_lone_hold(self.lone_hold),
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
pub(super) fn init_options(args: &TrainArgs, rates: Rates) -> InitOptions {
    InitOptions {
        poles: args.init,
        sample_rate: rates.sample_rate,
        seed: args.seed,
        gate: args.gate,
    }
}

/// `--weights` as the network training starts from: `--damper-settle` applied, grown into
/// `--model` when that is larger (its states first, the added ones silent), and with
/// `--key-bank` the first layer's key bank (appended, or found).
pub(super) fn start_from_weights(
    path: &Path,
    args: &TrainArgs,
    rates: Rates,
    device: Device,
    heads: &[String],
) -> Result<(Network, Option<KeyBank>)> {
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
    let model = if model.state_sizes().iter().all(|&s| s < args.model.state()) {
        grow(model, args, rates, device, heads)?
    } else {
        model
    };
    let (model, bank) = match args.key_bank {
        None => (model, None),
        Some(k) => match bank::find(&model, k) {
            Some(bank) => (model, Some(bank)),
            None => {
                let (model, bank) = bank::append(&model, k, rates.sample_rate as f64)?;
                eprintln!(
                    "a key bank of {k} states a key: layer 1 grows to {} states",
                    model.layers[0].state
                );
                (model, Some(bank))
            }
        },
    };
    Ok((Network::from_runtime(device, &model)?, bank))
}

/// `model` grown into `--model` (its states first, the added ones silent).
fn grow(
    model: Model,
    args: &TrainArgs,
    rates: Rates,
    device: Device,
    heads: &[String],
) -> Result<Model> {
    eprintln!(
        "growing into {}: the model's states come first, the added ones start silent",
        args.model.label()
    );
    let fresh = Network::new(
        device,
        args.model,
        heads.len(),
        model.info.activation,
        init_options(args, rates),
    )?;
    let mut info = model.info.clone();
    info.size = args.model.label().into();
    crate::grow::grow(&model, fresh.to_runtime(info)?)
}

/// Loads `--weights`: a runtime model or a published `.pth` checkpoint.
/// A stereo model comes as its mono fold: the network trains mono heads (`trainer stereo`
/// fits a stereo head to the result).
pub fn load_weights(path: &Path) -> Result<Model> {
    if path.extension().is_some_and(|e| e == "pth") {
        Ok(import_pth(path, &ImportOptions::default())?)
    } else {
        Ok(Model::load(path)?.folded_to_mono())
    }
}

/// Clips a key-bank network's output level is matched on.
const LEVEL_CLIPS: usize = 4;

/// Sets a fresh key-bank network's (gated or damped keys) head gain to the training data's level, on clips of
/// their own seed stream (the training crops are not disturbed).
pub(super) fn match_level(
    net: &mut Network,
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
pub(super) fn normalisation(args: &TrainArgs, source: &dyn Source, rates: Rates) -> Result<Norm> {
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
