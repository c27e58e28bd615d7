//! `trainer average`: one model from several checkpoints of a run (or fine-tunes of one model),
//! by averaging their weights: stochastic weight averaging.
//!
//! Why: with batches of two 2 s crops, each epoch's weights sit somewhere in a noisy cloud
//! around the minimum, and the held-out loss swings by about ±1 MSSL from one epoch to the next.
//! The cloud's centre scores better than almost any one point in it (Izmailov et al. 2018).
//!
//! Two ways to average the poles (`--poles`); the other weights are always averaged as stored.
//! A long-ringing key resonance sits at an angle near π/2, where the forward's stability rule
//! (`−|e^norm cos angle| + i e^norm sin angle`) folds, and Adam's steps carry it back and forth
//! across the fold from epoch to epoch (18 of Grand L's 128 layer-1 poles crossed it in 38
//! fine-tune epochs).
//! * `stored` (SWA's parameter mean) takes the centre of that jitter: for those poles a decay
//!   about half as fast as the checkpoints' mean. Longer sustain scores better (Grand L: 13.02
//!   against 13.46 MSSL on the same 19 epochs, 32 test segments) and leaks more after release
//!   (an XL average missed the silence check by 1 dB). An angle and its mirror π − angle (one
//!   pole, two stored forms, from unrelated models) would average to an undamped pole, so
//!   angles that far apart are refused.
//! * `forward` averages the poles the forward plays: the checkpoints' mean decay.
//!
//! The constraints a run trained under (`--rest-at-zero`, `--later-t60`) are nonlinear in the
//! weights, so an average can break them slightly; the same options re-apply them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ssm_runtime::model::{stable_pole, SsmLayer};
use ssm_runtime::Model;
use tch::Device;

use crate::model::{DecayLimits, Network};

#[derive(Debug, Clone, clap::Args)]
pub struct AverageArgs {
    /// Runtime models (.safetensors) of one architecture and rates, e.g. the epochs a run kept
    /// with --keep-epochs (other output normalisations are converted to the first model's).
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
    /// Re-apply training's `--string-t60` floor (seconds) to the first layer's sounding poles;
    /// with one model, that model with the floor applied.
    #[arg(long, value_name = "SECONDS")]
    pub string_t60: Option<f64>,
    /// How the poles are averaged (the other weights always by their mean).
    #[arg(long, value_enum, default_value_t = PoleMean::Stored)]
    pub poles: PoleMean,
    /// Family name written into the averaged model (default: the first model's).
    #[arg(long)]
    pub family: Option<String>,
    /// Description written into the averaged model (default: which files were averaged).
    #[arg(long)]
    pub description: Option<String>,
}

impl AverageArgs {
    /// The decay projections chosen on the command line.
    pub fn decay_limits(&self) -> DecayLimits {
        DecayLimits {
            later_t60: self.later_t60,
            string_t60: self.string_t60,
        }
    }
}

/// The two ways to average a pole; see the module documentation for what each does to the
/// long-ringing key resonances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoleMean {
    /// The mean of the stored log-magnitude and angle, as SWA averages every parameter: the
    /// centre of a resonance's jitter across the stability fold, so a longer decay.
    Stored,
    /// The mean of the poles as the forward uses them (real part negative): the mean decay of
    /// the checkpoints, and mirrored angles of one pole allowed.
    Forward,
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
    args.decay_limits().check()?;
    let mut models = args
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
    let (first, rest) = models.split_at_mut(1);
    for model in rest {
        in_units_of(model, &first[0].info);
    }
    let mut avg = mean(&models, args.poles)?;
    avg.info.family = args.family.clone().unwrap_or(avg.info.family);
    avg.info.description = args.description.clone().unwrap_or_else(|| {
        format!(
            "weight average of {} models: {}",
            models.len(),
            args.models
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
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

/// Models average meaningfully only with one architecture and one discretisation. (Their output
/// normalisations may differ: [`in_units_of`] converts them.)
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
    Ok(())
}

/// Re-expresses `model`'s output in `target`'s normalisation (`audio = out · std + mean`).
/// Exact, because the heads are linear and last: a fine-tune on another seed's data measures
/// slightly different statistics, and its weights are otherwise in other units.
fn in_units_of(model: &mut Model, target: &ssm_runtime::ModelInfo) {
    let (mean, std) = (model.info.norm_mean, model.info.norm_std);
    let gain = std / target.norm_std;
    for w in &mut model.head_weight {
        *w = (*w as f64 * gain) as f32;
    }
    for b in &mut model.head_bias {
        *b = ((*b as f64 * std + mean - target.norm_mean) / target.norm_std) as f32;
    }
    model.info.norm_mean = target.norm_mean;
    model.info.norm_std = target.norm_std;
}

/// Widest spread of one pole's stored angle across the averaged models (radians). Checkpoints
/// of one run move by hundredths; an unrelated model's angles are anywhere.
pub const MAX_ANGLE_SPREAD: f32 = 0.5;

/// The element-wise mean of compatible models (the first model's metadata).
pub fn mean(models: &[Model], poles: PoleMean) -> Result<Model> {
    let mut out = models[0].clone();
    for (i, layer) in out.layers.iter_mut().enumerate() {
        let layers: Vec<&SsmLayer> = models.iter().map(|m| &m.layers[i]).collect();
        let field = |f: fn(&SsmLayer) -> &Vec<f32>| average(layers.iter().map(|l| &f(l)[..]));
        let sounding: Vec<(&[f32], &[f32])> =
            layers.iter().map(|l| (&l.norm[..], &l.angle[..])).collect();
        (layer.norm, layer.angle) =
            mean_poles(&sounding, poles).with_context(|| format!("layer {}", i + 1))?;
        if let Some(damper) = &mut layer.damper {
            let damped = layers
                .iter()
                .map(|l| match &l.damper {
                    Some(d)
                        if d.key == damper.key
                            && d.fall_frames == damper.fall_frames
                            && d.settle_frames == damper.settle_frames =>
                    {
                        Ok((&d.norm[..], &d.angle[..]))
                    }
                    _ => bail!("layer {}: the models' key dampers differ", i + 1),
                })
                .collect::<Result<Vec<_>>>()?;
            (damper.norm, damper.angle) =
                mean_poles(&damped, poles).with_context(|| format!("layer {}'s damper", i + 1))?;
        }
        layer.b = field(|l| &l.b);
        layer.b_bias = field(|l| &l.b_bias);
        layer.c = field(|l| &l.c);
        layer.c_bias = field(|l| &l.c_bias);
        if layer.skip.is_some() {
            layer.skip = Some(average(layers.iter().filter_map(|l| l.skip.as_deref())));
        }
        if layers.iter().any(|l| l.b_square.is_some()) {
            // a model without a touch square is one whose square is zero
            let zero = vec![0.0; layer.b.len()];
            layer.b_square = Some(average(
                layers
                    .iter()
                    .map(|l| l.b_square.as_deref().unwrap_or(&zero)),
            ));
        }
    }
    out.head_weight = average(models.iter().map(|m| &m.head_weight[..]));
    out.head_bias = average(models.iter().map(|m| &m.head_bias[..]));
    Ok(out)
}

/// The mean of one set of poles (norm, angle) across the models, as `poles` says.
fn mean_poles(layers: &[(&[f32], &[f32])], poles: PoleMean) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok(match poles {
        PoleMean::Stored => {
            check_angle_spread(layers)?;
            (
                average(layers.iter().map(|l| l.0)),
                average(layers.iter().map(|l| l.1)),
            )
        }
        PoleMean::Forward => forward_mean(layers),
    })
}

fn check_angle_spread(layers: &[(&[f32], &[f32])]) -> Result<()> {
    for k in 0..layers[0].1.len() {
        let (lo, hi) = layers.iter().fold((f32::MAX, f32::MIN), |(lo, hi), l| {
            (lo.min(l.1[k]), hi.max(l.1[k]))
        });
        if hi - lo > MAX_ANGLE_SPREAD {
            bail!(
                "pole {k}'s angle ranges over {lo:.3}..{hi:.3} rad across the models (at most \
                 {MAX_ANGLE_SPREAD} for checkpoints of one run): these models are not one run's"
            );
        }
    }
    Ok(())
}

/// The mean of each pole in the complex plane, back as (norm, angle) with a negative real part.
fn forward_mean(layers: &[(&[f32], &[f32])]) -> (Vec<f32>, Vec<f32>) {
    let p = layers[0].0.len();
    let (mut re, mut im) = (vec![0.0f64; p], vec![0.0f64; p]);
    for (norm, angle) in layers {
        for k in 0..p {
            let pole = stable_pole(norm[k], angle[k]);
            re[k] += pole.re;
            im[k] += pole.im;
        }
    }
    let n = layers.len() as f64;
    (0..p)
        .map(|k| {
            let (r, i) = (re[k] / n, im[k] / n);
            (r.hypot(i).ln() as f32, i.atan2(r) as f32)
        })
        .unzip()
}

fn average<'a>(vs: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
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

/// Re-applies the training constraints chosen in `args` (through the trainer's network, where
/// they are defined), or returns the average as it is.
fn constrain(avg: &Model, args: &AverageArgs) -> Result<Model> {
    let limits = args.decay_limits();
    if !args.rest_at_zero && limits.is_none() {
        return Ok(avg.clone());
    }
    let mut net = Network::from_runtime(Device::Cpu, avg)?;
    net.limit_decays(limits, avg.info.train_rate as f64);
    if args.rest_at_zero {
        net.settle_rest(-avg.info.norm_mean / avg.info.norm_std);
    }
    net.to_runtime(avg.info.clone())
}
