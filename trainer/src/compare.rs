//! `trainer compare`: one MIDI file played by the piano a synthetic set is rendered with (the
//! Salamander sampler or a SoundFont) and by a model, written as WAVs and as stacked
//! spectrograms (the README's picture).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ssm_runtime::render::render_roll;
use ssm_runtime::{Engine, KeyEvent, MidiFile, Model, Size};
use tch::Tensor;

use crate::data::performance::Performance;
use crate::data::synth::{ReferencePiano, SynthSource};
use crate::data::Rates;
use crate::plots;

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The MIDI file to play.
    pub midi: PathBuf,
    /// A runtime model (.safetensors); the built-in model of `--size` when omitted.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Built-in model size, without --model.
    #[arg(long, default_value_t = ssm_runtime::builtin::DEFAULT_SIZE)]
    pub size: Size,
    /// The target piano, as training's --instrument: salamander, salamander:DIR or FILE.sf2
    /// (default: Debian's FluidR3_GM).
    #[arg(long, value_parser = ReferencePiano::parse)]
    pub instrument: Option<ReferencePiano>,
    /// Only the first this many seconds.
    #[arg(long, default_value_t = 12.0)]
    pub seconds: f64,
    /// The spectrogram picture (PNG); the two WAVs go beside it.
    #[arg(long, default_value = "compare.png")]
    pub out: PathBuf,
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let model = match &args.model {
        Some(path) => {
            Model::load(path).with_context(|| format!("cannot load {}", path.display()))?
        }
        None => ssm_runtime::builtin::require(args.size)?,
    };
    let rates = Rates::new(model.info.train_rate, model.info.midi_rate)?;
    let midi = MidiFile::load(&args.midi)?;
    let frames = (args.seconds * rates.midi_rate as f64) as usize;
    let perf = performance(&midi, rates.midi_rate, frames as u64);
    let piano = args
        .instrument
        .clone()
        .unwrap_or_else(ReferencePiano::fluid);
    let target = SynthSource::open(&piano, rates, 0)?.render(&perf, frames)?;
    let roll = midi.roll_frames(rates.midi_rate, frames);
    let mut engine = Engine::new(&model, rates.sample_rate)?;
    let pred = render_roll(&mut engine, &roll, |_, _| {});
    let (target_wav, model_wav) = (
        args.out.with_extension("target.wav"),
        args.out.with_extension("model.wav"),
    );
    write_wav(&target_wav, &target, rates.sample_rate)?;
    write_wav(&model_wav, &pred, rates.sample_rate)?;
    plots::spectrograms(
        &args.out,
        &Tensor::from_slice(&target),
        &Tensor::from_slice(&pred),
        rates.sample_rate,
    )?;
    println!(
        "{}: {} {} vs {}",
        args.out.display(),
        model.info.family,
        model.info.size,
        piano
    );
    println!("{}\n{}", target_wav.display(), model_wav.display());
    Ok(())
}

/// The file's events on the frame grid, as the synthetic set's performances are.
fn performance(midi: &MidiFile, midi_rate: u32, frames: u64) -> Performance {
    let events: Vec<(u64, KeyEvent)> = midi
        .events()
        .map(|e| ((e.seconds * midi_rate as f64).floor() as u64, e.event))
        .filter(|&(frame, _)| frame < frames)
        .collect();
    Performance { events }
}

fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    crate::data::audio::write_mono(path, samples, rate)
        .with_context(|| format!("cannot write {}", path.display()))
}
