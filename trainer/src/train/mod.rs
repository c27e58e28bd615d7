//! The training loop: crops → forward → spectral losses → Adam, with per-epoch validation,
//! checkpoints, logs, plots and the exported runtime model.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::model::{KeyBank, Model, ModelInfo};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, LogRow, LoopState};
use crate::data::{synth, Batch, Clip, Rates, Source, Split};
use crate::loss::{Criterion, Losses};
use crate::model::{Kernel, Network, PoleInit};
use crate::optim::{Adam, Schedule};
use crate::plots;

mod args;
mod setup;

pub use args::*;
pub use setup::*;

/// Epochs of `--finetune`, at lr/5 with the spectral loss only (as in the paper).
pub const FINETUNE_EPOCHS: u64 = 20;
/// Held-out clips scored after each epoch with `--valid` / `--test`.
const HELD_OUT_CLIPS: usize = 4;

/// Where a finished run put its files.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub checkpoint: PathBuf,
    pub export: PathBuf,
    pub log: PathBuf,
    pub plots: Vec<PathBuf>,
    pub audio_seconds_per_second: f64,
}

struct Run<'a> {
    args: &'a TrainArgs,
    rates: Rates,
    device: Device,
    source: Box<dyn Source>,
    net: Network,
    params: BTreeMap<String, Tensor>,
    adam: Adam,
    losses: Losses,
    state: LoopState,
    valid: Vec<Clip>,
    test: Vec<Clip>,
    /// layer 1's key bank (`--key-bank`), kept structured after every step
    bank: Option<KeyBank>,
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

impl<'a> Run<'a> {
    fn start(
        args: &'a TrainArgs,
        rates: Rates,
        device: Device,
        source: Box<dyn Source>,
    ) -> Result<Run<'a>> {
        let heads = source.heads();
        let (mut net, bank) = match &args.weights {
            Some(path) => start_from_weights(path, args, rates, device, &heads)?,
            None => (
                Network::new(
                    device,
                    args.model,
                    heads.len(),
                    args.activation.0,
                    init_options(args, rates),
                )?,
                None,
            ),
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
            bank,
        })
    }

    /// The projections chosen on the command line, after every step and on a fresh start.
    fn constrain(&mut self) {
        if let Some(bank) = &self.bank {
            self.net.project_key_bank(bank);
        }
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
