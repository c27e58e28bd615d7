//! `trainer average`: one model from several checkpoints of a run (or fine-tunes of one model),
//! by averaging their weights: stochastic weight averaging.
//!
//! Why: with batches of two 2 s crops, each epoch's weights sit somewhere in a noisy cloud
//! around the minimum, and the held-out loss swings by about ±1 MSSL from one epoch to the next.
//! The cloud's centre scores better than almost any one point in it (Izmailov et al. 2018).
//!
//! The poles are averaged as the forward sees them (`−|e^norm cos angle| + i e^norm sin
//! angle`), not as stored: an angle and its mirror π − angle are the same stable pole, and
//! averaging the stored pair would put it on the imaginary axis. The constraints a run trained
//! under (`--rest-at-zero`, `--later-t60`) are nonlinear in the weights, so an average can
//! break them slightly; the same options re-apply them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ssm_runtime::model::SsmLayer;
use ssm_runtime::Model;
use tch::Device;

use crate::model::PianoSsm;

#[derive(Debug, Clone, clap::Args)]
pub struct AverageArgs {
    /// Runtime models (.safetensors) of one architecture and normalisation, e.g. the epochs
    /// a run kept with --keep-epochs.
    #[arg(required = true, num_args = 2..)]
    pub models: Vec<PathBuf>,
    /// Where the averaged model goes (not one of the inputs).
    #[arg(long)]
    pub out: PathBuf,
    /// Re-settle the input and head biases so that a silent roll plays digital silence, as
    /// `--rest-at-zero` does after every training step.
    #[arg(long)]
    pub rest_at_zero: bool,
    /// Re-apply training's `--later-t60` limit (seconds) to layers 2–4's poles.
    #[arg(long)]
    pub later_t60: Option<f64>,
    /// Family name written into the averaged model (default: the first model's).
    #[arg(long)]
    pub family: Option<String>,
}

/// Averages `args.models` and writes the result to `args.out`.
pub fn run(args: &AverageArgs) -> Result<Model> {
    for input in &args.models {
        if same_file(input, &args.out) {
            bail!(
                "--out {} is one of the models being averaged; it would be overwritten",
                args.out.display()
            );
        }
    }
    if let Some(t60) = args.later_t60 {
        if !(t60.is_finite() && t60 > 0.0) {
            bail!("--later-t60 must be a positive number of seconds, not {t60}");
        }
    }
    let models = args
        .models
        .iter()
        .map(|p| Model::load(p).with_context(|| format!("cannot average {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    for (model, path) in models.iter().zip(&args.models).skip(1) {
        compatible(&models[0], model).with_context(|| {
            format!(
                "{} does not match {}",
                path.display(),
                args.models[0].display()
            )
        })?;
    }
    let mut avg = mean(&models);
    avg.info.family = args.family.clone().unwrap_or(avg.info.family);
    avg.info.description = format!(
        "weight average of {} models: {}",
        models.len(),
        args.models
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let avg = constrain(&avg, args)?;
    avg.save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(avg)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Models average meaningfully only with one architecture, one output scale and one
/// discretisation.
fn compatible(a: &Model, b: &Model) -> Result<()> {
    let (ia, ib) = (&a.info, &b.info);
    if a.widths() != b.widths() || a.state_sizes() != b.state_sizes() {
        bail!(
            "architecture differs: widths {:?} state {:?} against {:?} state {:?}",
            b.widths(),
            b.state_sizes(),
            a.widths(),
            a.state_sizes()
        );
    }
    if ia.heads != ib.heads {
        bail!("heads differ: {:?} against {:?}", ib.heads, ia.heads);
    }
    if ia.activation != ib.activation {
        bail!(
            "activation differs: {:?} against {:?}",
            ib.activation,
            ia.activation
        );
    }
    if (ia.train_rate, ia.midi_rate) != (ib.train_rate, ib.midi_rate) {
        bail!(
            "rates differ: {} Hz / {} Hz frames against {} Hz / {} Hz",
            ib.train_rate,
            ib.midi_rate,
            ia.train_rate,
            ia.midi_rate
        );
    }
    if (ia.norm_mean, ia.norm_std) != (ib.norm_mean, ib.norm_std) {
        bail!(
            "output normalisation differs (mean {} std {} against {} {}): the weights are in different units",
            ib.norm_mean,
            ib.norm_std,
            ia.norm_mean,
            ia.norm_std
        );
    }
    Ok(())
}

/// The element-wise mean of compatible models (the first model's metadata).
pub fn mean(models: &[Model]) -> Model {
    let mut out = models[0].clone();
    for (i, layer) in out.layers.iter_mut().enumerate() {
        let layers: Vec<&SsmLayer> = models.iter().map(|m| &m.layers[i]).collect();
        let field = |f: fn(&SsmLayer) -> &Vec<f32>| average(layers.iter().map(|l| f(l)));
        layer.b = field(|l| &l.b);
        layer.b_bias = field(|l| &l.b_bias);
        layer.c = field(|l| &l.c);
        layer.c_bias = field(|l| &l.c_bias);
        if layer.skip.is_some() {
            layer.skip = Some(average(layers.iter().filter_map(|l| l.skip.as_ref())));
        }
        (layer.norm, layer.angle) = average_poles(&layers);
    }
    out.head_weight = average(models.iter().map(|m| &m.head_weight));
    out.head_bias = average(models.iter().map(|m| &m.head_bias));
    out
}

fn average<'a>(vs: impl Iterator<Item = &'a Vec<f32>>) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0.0;
    for v in vs {
        sum.resize(v.len(), 0.0);
        for (s, &x) in sum.iter_mut().zip(v) {
            *s += x as f64;
        }
        n += 1.0;
    }
    sum.into_iter().map(|s| (s / n) as f32).collect()
}

/// The mean of each pole in the complex plane, back as (norm, angle) with a negative real part.
fn average_poles(layers: &[&SsmLayer]) -> (Vec<f32>, Vec<f32>) {
    let p = layers[0].norm.len();
    let (mut re, mut im) = (vec![0.0f64; p], vec![0.0f64; p]);
    for l in layers {
        for k in 0..p {
            let mag = (l.norm[k] as f64).exp();
            let angle = l.angle[k] as f64;
            // the forward's stability rule
            re[k] -= (mag * angle.cos()).abs();
            im[k] += mag * angle.sin();
        }
    }
    let n = layers.len() as f64;
    (0..p)
        .map(|k| {
            let (r, i) = (re[k] / n, im[k] / n);
            ((r.hypot(i).ln()) as f32, i.atan2(r) as f32)
        })
        .unzip()
}

/// Re-applies the training constraints chosen in `args` (through the trainer's network, where
/// they are defined), or returns the average as it is.
fn constrain(avg: &Model, args: &AverageArgs) -> Result<Model> {
    if !args.rest_at_zero && args.later_t60.is_none() {
        return Ok(avg.clone());
    }
    let mut net = PianoSsm::from_runtime(Device::Cpu, avg)?;
    if let Some(t60) = args.later_t60 {
        net.limit_later_decays(t60 * avg.info.train_rate as f64);
    }
    if args.rest_at_zero {
        net.settle_rest(-avg.info.norm_mean / avg.info.norm_std);
    }
    net.to_runtime(avg.info.clone())
}
