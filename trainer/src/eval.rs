//! `trainer eval`: the paper's test metrics (SpectralLoss and CombinedSpectralLoss on
//! de-normalised audio, averaged over the test split cut into 4 s segments) for one or more
//! models, beside baselines: silence, the untrained network, another SoundFont's piano.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ssm_runtime::Model;
use tch::{Device, Kind, Tensor};

use crate::data::performance::LONE_HOLD;
use crate::data::synth::{ReferencePiano, SynthSource};
use crate::data::{Batch, Clip, Norm, Rates, Source, Split};
use crate::init::gated_keys;
use crate::loss::Losses;
use crate::model::{InitOptions, Network, PoleInit, Size};
use crate::train::{DataSelection, DatasetKind};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Runtime models (.safetensors) to score; repeat for several.
    #[arg(long, num_args = 1..)]
    pub model: Vec<PathBuf>,
    /// Baselines: `silence`, `untrained` (the first model's architecture, freshly initialised
    /// with keyboard poles; `untrained:gated-keys` for the gated-keys initialisation, its level
    /// matched on the first scored segments; `untrained:gated-keys:4` with gate depth 4) or
    /// `soundfont:FILE.sf2` (another piano playing the same notes, level-matched; synth only).
    #[arg(long, num_args = 1..)]
    pub baseline: Vec<String>,
    #[arg(long, value_enum, default_value_t = DatasetKind::Synth)]
    pub dataset: DatasetKind,
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// The piano that renders the synthetic test set (see `train --instrument`).
    #[arg(long, value_parser = ReferencePiano::parse)]
    pub instrument: Option<ReferencePiano>,
    #[arg(long, default_value = "all")]
    pub test_year: String,
    /// Segments scored (the whole test split if it has fewer).
    #[arg(long, default_value_t = 32)]
    pub segments: usize,
    #[arg(long, default_value_t = 4.0)]
    pub segment_length: f64,
    #[arg(long)]
    pub device: Option<String>,
    /// Seed of the synthetic test set (the trainer's default is 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also measure what a listener hears, at 48 kHz, beside the Salamander target and the
    /// two "other pianos" (FluidR3, TimGM6mb): `trainer check --listen` on the models.
    #[arg(long)]
    pub listen: bool,
}

/// The pianos `eval --listen` puts beside the models: the target, then two other pianos.
pub fn listen_pianos() -> Vec<ReferencePiano> {
    vec![
        ReferencePiano::parse("salamander").expect("a valid name"),
        ReferencePiano::fluid(),
        ReferencePiano::SoundFont(crate::data::synth::OTHER_SOUNDFONT.into()),
    ]
}

/// The listening table of `eval --listen` (see [`crate::check`]).
pub fn listen(args: &EvalArgs) -> Result<String> {
    let check = crate::check::CheckArgs {
        model: args.model.clone(),
        builtin: false,
        soundfont: None,
        instrument: listen_pianos(),
        listen: true,
        target: ReferencePiano::parse("salamander").expect("a valid name"),
        sample_rate: 48_000,
    };
    Ok(crate::check::listen_table(
        &crate::check::run(&check)?,
        check.sample_rate,
    ))
}

/// One row of the results table.
#[derive(Debug, Clone)]
pub struct Score {
    pub name: String,
    pub spectral: f64,
    pub combined: f64,
    pub segments: usize,
}

pub fn run(args: &EvalArgs) -> Result<Vec<Score>> {
    crate::train::set_threads(None);
    let device = crate::parse_device(args.device.as_deref())?;
    let first = args
        .model
        .first()
        .context("eval needs at least one --model")?;
    let reference = Model::load(first)?;
    let rates = Rates::new(reference.info.train_rate, reference.info.midi_rate)?;
    let multi_head = reference.head_count() > 1;
    let source = open(args, rates, multi_head)?;
    let frames = rates.frames(args.segment_length);
    let clips = source.held_out(Split::Test, frames, args.segments)?;
    if clips.is_empty() {
        bail!("the test split gave no segments");
    }
    let losses = Losses::new(rates.sample_rate, device);
    let mut scores = Vec::new();
    for path in &args.model {
        let model = Model::load(path)?;
        if (model.info.train_rate, model.info.midi_rate) != (rates.sample_rate, rates.midi_rate) {
            bail!(
                "{}: trained at {}/{} Hz; the first model at {}/{} Hz — evaluate them separately",
                path.display(),
                model.info.train_rate,
                model.info.midi_rate,
                rates.sample_rate,
                rates.midi_rate
            );
        }
        let net = Network::from_runtime(device, &model)?;
        let norm = Norm {
            mean: model.info.norm_mean,
            std: model.info.norm_std,
        };
        scores.push(score(
            &path.display().to_string(),
            &clips,
            &losses,
            device,
            |b| net.forward(&b.roll, &b.heads, rates.hold() as i64, 1.0) * norm.std + norm.mean,
        )?);
    }
    for baseline in &args.baseline {
        scores.push(score_baseline(
            baseline, args, &reference, rates, &clips, &losses, device,
        )?);
    }
    Ok(scores)
}

fn open(args: &EvalArgs, rates: Rates, multi_head: bool) -> Result<Box<dyn Source>> {
    let selection = DataSelection {
        kind: args.dataset,
        path: args.dataset_path.clone(),
        instrument: args.instrument.clone(),
        train_year: "all".into(),
        test_year: args.test_year.clone(),
        multi_head,
        seed: args.seed,
        lone_notes: 0.0,
        lone_hold: LONE_HOLD,
    };
    selection.open(rates)
}

fn score_baseline(
    name: &str,
    args: &EvalArgs,
    reference: &Model,
    rates: Rates,
    clips: &[Clip],
    losses: &Losses,
    device: Device,
) -> Result<Score> {
    match name {
        "silence" => score("silence", clips, losses, device, |b| b.audio.zeros_like()),
        _ if name == "untrained" || name.starts_with("untrained:") => {
            let (poles, gate) = untrained_init(name)?;
            let size: Size = reference
                .info
                .size
                .parse()
                .map_err(|e| anyhow::anyhow!("untrained baseline: {e}"))?;
            let init = InitOptions {
                poles,
                sample_rate: rates.sample_rate,
                seed: args.seed,
                gate,
            };
            let mut net = Network::new(
                device,
                size,
                reference.head_count(),
                reference.info.activation,
                init,
            )?;
            let norm = Norm {
                mean: reference.info.norm_mean,
                std: reference.info.norm_std,
            };
            if poles == PoleInit::GatedKeys {
                // its level is set on data, as training does: here on the scored clips, the
                // most an untrained network can be given
                let batch = Batch::new(&clips[..clips.len().min(4)], norm, device);
                net.match_level(&batch, rates.hold() as i64);
            }
            let label = format!("untrained {size:?} ({})", init_label(poles, gate));
            score(&label, clips, losses, device, |b| {
                net.forward(&b.roll, &b.heads, rates.hold() as i64, 1.0) * norm.std + norm.mean
            })
        }
        other => {
            let path = other.strip_prefix("soundfont:").with_context(|| {
                format!("unknown baseline {other:?}: use silence, untrained[:keyboard|:gated-keys[:GATE]] or soundfont:FILE")
            })?;
            if args.dataset != DatasetKind::Synth {
                bail!("the soundfont baseline replays the synthetic test set; use it with --dataset synth");
            }
            let other_font =
                SynthSource::open(&ReferencePiano::SoundFont(path.into()), rates, args.seed)?;
            let rendered = other_font.held_out(Split::Test, clips[0].frames.len(), clips.len())?;
            let gain = level_match(clips, &rendered);
            let label = format!(
                "{} (level-matched, ×{gain:.2})",
                PathBuf::from(path)
                    .file_stem()
                    .map_or(path.into(), |s| s.to_string_lossy().into_owned())
            );
            let mut i = 0;
            score(&label, clips, losses, device, |b| {
                let n = b.audio.size()[0] as usize;
                let audio: Vec<f32> = rendered[i..i + n]
                    .iter()
                    .flat_map(|c| c.audio.iter().map(|x| x * gain as f32))
                    .collect();
                i += n;
                Tensor::from_slice(&audio)
                    .reshape([n as i64, -1])
                    .to_device(device)
            })
        }
    }
}

/// `untrained`, `untrained:keyboard`, `untrained:gated-keys` or `untrained:gated-keys:GATE`.
fn untrained_init(name: &str) -> Result<(PoleInit, f64)> {
    let mut parts = name.split(':').skip(1);
    let poles = match parts.next() {
        None | Some("keyboard") => PoleInit::Keyboard,
        Some("gated-keys") => PoleInit::GatedKeys,
        Some(other) => {
            bail!("untrained baseline: unknown init {other:?}: use keyboard or gated-keys")
        }
    };
    let gate = match parts.next() {
        None => gated_keys::GATE,
        Some(g) if poles == PoleInit::GatedKeys => g
            .parse::<f64>()
            .ok()
            .filter(|&g| gated_keys::is_valid_gate(g))
            .with_context(|| {
                format!(
                    "untrained baseline: gate {g:?} is not a number in (0, {}]",
                    gated_keys::MAX_GATE
                )
            })?,
        Some(_) => bail!("untrained baseline {name:?}: only gated-keys takes a gate"),
    };
    if parts.next().is_some() {
        bail!("untrained baseline {name:?}: too many fields");
    }
    Ok((poles, gate))
}

fn init_label(poles: PoleInit, gate: f64) -> String {
    match poles {
        PoleInit::GatedKeys if gate == gated_keys::GATE => "gated-keys init".into(),
        PoleInit::GatedKeys => format!("gated-keys init, gate {gate}"),
        _ => "keyboard init".into(),
    }
}

/// The gain that gives `other` the RMS of `target` over the whole set.
fn level_match(target: &[Clip], other: &[Clip]) -> f64 {
    let energy = |c: &[Clip]| {
        c.iter()
            .flat_map(|c| &c.audio)
            .map(|&x| (x as f64).powi(2))
            .sum::<f64>()
    };
    let (t, o) = (energy(target), energy(other));
    if o > 0.0 {
        (t / o).sqrt()
    } else {
        1.0
    }
}

/// Mean losses over the clips, in batches; `predict` returns de-normalised audio.
fn score(
    name: &str,
    clips: &[Clip],
    losses: &Losses,
    device: Device,
    mut predict: impl FnMut(&Batch) -> Tensor,
) -> Result<Score> {
    let _guard = tch::no_grad_guard();
    let (mut spectral, mut combined) = (0.0, 0.0);
    for chunk in clips.chunks(4) {
        // raw audio: the metrics are on de-normalised signals
        let batch = Batch::new(chunk, Norm::IDENTITY, device);
        let pred = predict(&batch).to_kind(Kind::Float);
        let n = chunk.len() as f64;
        spectral += losses
            .spectral
            .forward(&pred, &batch.audio)
            .double_value(&[])
            * n;
        combined += losses
            .combined
            .forward(&pred, &batch.audio)
            .double_value(&[])
            * n;
    }
    let n = clips.len() as f64;
    Ok(Score {
        name: name.into(),
        spectral: spectral / n,
        combined: combined / n,
        segments: clips.len(),
    })
}

/// The results as a Markdown table.
pub fn table(scores: &[Score]) -> String {
    let mut out = String::from(
        "| model | SpectralLoss (MSSL) | CombinedSpectralLoss | segments |\n|---|---:|---:|---:|\n",
    );
    for s in scores {
        out += &format!(
            "| {} | {:.4} | {:.4} | {} |\n",
            s.name, s.spectral, s.combined, s.segments
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrained_baselines_name_their_init_and_gate() {
        assert_eq!(
            untrained_init("untrained").unwrap(),
            (PoleInit::Keyboard, gated_keys::GATE)
        );
        assert_eq!(
            untrained_init("untrained:gated-keys").unwrap(),
            (PoleInit::GatedKeys, gated_keys::GATE)
        );
        assert_eq!(
            untrained_init("untrained:gated-keys:4").unwrap(),
            (PoleInit::GatedKeys, 4.0)
        );
        for bad in [
            "untrained:gated",
            "untrained:gated-keys:x",
            "untrained:gated-keys:0",
            "untrained:keyboard:4",
            "untrained:gated-keys:4:1",
        ] {
            assert!(untrained_init(bad).is_err(), "{bad} was accepted");
        }
    }
}
