//! `piano-ssm`: render MIDI files with a Piano-SSM model, import published checkpoints,
//! inspect models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ssm_runtime::builtin;
use ssm_runtime::checkpoint::{import_pth, ImportOptions};
use ssm_runtime::render::{render_roll, write_wav, WavFormat};
use ssm_runtime::{Engine, MidiFile, Model};

/// A guard against files whose tempo map describes days of silence (memory for the roll
/// and the audio grows with the duration).
const MAX_RENDER_SECONDS: f64 = 4.0 * 3600.0;

#[derive(Parser)]
#[command(
    name = "piano-ssm",
    version,
    about = "Piano-SSM: neural piano synthesis from MIDI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Size {
    S,
    L,
    #[value(name = "XL")]
    Xl,
}

impl Size {
    fn label(self) -> &'static str {
        match self {
            Size::S => "S",
            Size::L => "L",
            Size::Xl => "XL",
        }
    }
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Format {
    F32,
    S16,
    S24,
}

#[derive(Subcommand)]
enum Command {
    /// Render a MIDI file to a WAV file.
    Render {
        /// MIDI file (format 0 or 1)
        input: PathBuf,
        /// WAV file to write
        output: PathBuf,
        /// Model file: a runtime .safetensors model or a published .pth checkpoint
        /// (default: the built-in Piano-SSM Grand model)
        #[arg(long)]
        model: Option<PathBuf>,
        /// Model size: picks the built-in model; with --model, checked against the model
        #[arg(long, value_enum, ignore_case = true)]
        size: Option<Size>,
        /// Output head by label, e.g. a MAESTRO year
        #[arg(long, conflicts_with = "head")]
        year: Option<String>,
        /// Output head by index
        #[arg(long)]
        head: Option<usize>,
        /// Output sample rate in Hz (8000 to 192000)
        #[arg(long, default_value_t = 48_000)]
        sample_rate: u32,
        /// Seconds rendered after the last MIDI event
        #[arg(long, default_value_t = 1.5)]
        tail: f64,
        #[arg(long, value_enum, default_value = "f32")]
        format: Format,
        /// 1 (mono) or 2 (the mono signal on both channels)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2))]
        channels: u16,
    },
    /// Print a model's architecture, size, rates and heads.
    Info {
        /// .safetensors model or .pth checkpoint
        model: PathBuf,
    },
    /// Convert a published PyTorch checkpoint (.pth) to the runtime format.
    Import {
        input: PathBuf,
        output: PathBuf,
        /// Training sample rate; read from the file name when omitted
        #[arg(long)]
        train_rate: Option<u32>,
        /// MIDI frame rate; the published value for the training rate when omitted
        #[arg(long)]
        midi_rate: Option<u32>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("piano-ssm: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Render {
            input,
            output,
            model,
            size,
            year,
            head,
            sample_rate,
            tail,
            format,
            channels,
        } => {
            let model = resolve_model(model.as_deref(), size)?;
            let head = resolve_head(&model, year.as_deref(), head)?;
            render(
                &input,
                &output,
                &model,
                head,
                sample_rate,
                tail,
                format,
                channels,
            )
        }
        Command::Info { model } => {
            print!(
                "{}",
                describe(&load_model(&model, &ImportOptions::default())?)
            );
            Ok(())
        }
        Command::Import {
            input,
            output,
            train_rate,
            midi_rate,
        } => {
            let model = import_pth(
                &input,
                &ImportOptions {
                    train_rate,
                    midi_rate,
                },
            )
            .map_err(|e| format!("{}: {e}", input.display()))?;
            model
                .save(&output)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            eprintln!(
                "wrote {} ({} {} at {} Hz, {} heads)",
                output.display(),
                model.info.family,
                model.info.size,
                model.info.train_rate,
                model.head_count()
            );
            Ok(())
        }
    }
}

/// Loads a runtime model, or imports a `.pth` checkpoint on the fly.
fn load_model(path: &Path, import: &ImportOptions) -> Result<Model, String> {
    let is_pth = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pth") || e.eq_ignore_ascii_case("pt"));
    let result = if is_pth {
        import_pth(path, import)
    } else {
        Model::load(path)
    };
    result.map_err(|e| format!("{}: {e}", path.display()))
}

fn resolve_model(path: Option<&Path>, size: Option<Size>) -> Result<Model, String> {
    let Some(path) = path else {
        // no file: the built-in family
        return builtin::require(size.map_or(builtin::DEFAULT_SIZE, |s| s.label()));
    };
    let model = load_model(path, &ImportOptions::default())?;
    if let Some(size) = size {
        if model.info.size != size.label() {
            return Err(format!(
                "--size {} asked for, but {} is size {}",
                size.label(),
                path.display(),
                model.info.size
            ));
        }
    }
    Ok(model)
}

fn resolve_head(model: &Model, year: Option<&str>, head: Option<usize>) -> Result<usize, String> {
    let labels = model.info.heads.join(", ");
    match (year, head) {
        (Some(y), _) => model
            .head_index(y)
            .ok_or_else(|| format!("the model has no head {y:?}; its heads are {labels}")),
        (None, Some(h)) if h < model.head_count() => Ok(h),
        (None, Some(h)) => Err(format!(
            "head {h} does not exist: the model has {} heads ({labels})",
            model.head_count()
        )),
        (None, None) => Ok(0),
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    input: &Path,
    output: &Path,
    model: &Model,
    head: usize,
    sample_rate: u32,
    tail: f64,
    format: Format,
    channels: u16,
) -> Result<(), String> {
    if !(tail.is_finite() && (0.0..=600.0).contains(&tail)) {
        return Err(format!("--tail {tail} must be between 0 and 600 seconds"));
    }
    let midi = MidiFile::load(input).map_err(|e| format!("{}: {e}", input.display()))?;
    if midi.duration() + tail > MAX_RENDER_SECONDS {
        return Err(format!(
            "{}: the file lasts {:.1} hours; renders are limited to {} hours",
            input.display(),
            midi.duration() / 3600.0,
            MAX_RENDER_SECONDS / 3600.0
        ));
    }
    let mut engine = Engine::new(model, sample_rate).map_err(|e| e.to_string())?;
    engine.set_head(head).map_err(|e| e.to_string())?;
    let roll = midi.roll(model.info.midi_rate, tail);
    // check the output path before spending the render time
    check_writable(output)?;
    let bar = ProgressBar::new(roll.samples(sample_rate));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {elapsed} / {eta} left")
            .expect("valid template"),
    );
    if roll.seconds() < 20.0 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let audio = render_roll(&mut engine, &roll, |done, _| bar.set_position(done));
    bar.finish_and_clear();
    let format = match format {
        Format::F32 => WavFormat::F32,
        Format::S16 => WavFormat::S16,
        Format::S24 => WavFormat::S24,
    };
    let clipped = write_wav(output, &audio, sample_rate, format, channels)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    if clipped > 0 {
        eprintln!("warning: {clipped} samples exceeded full scale and were clipped; use --format f32 to keep them");
    }
    eprintln!(
        "wrote {} ({:.2} s at {} Hz, {} {} head {})",
        output.display(),
        audio.len() as f64 / sample_rate as f64,
        sample_rate,
        model.info.family,
        model.info.size,
        model.info.heads[head]
    );
    Ok(())
}

fn check_writable(output: &Path) -> Result<(), String> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "cannot write {}: folder {} does not exist",
            output.display(),
            dir.display()
        ));
    }
    if output.is_dir() {
        return Err(format!("cannot write {}: it is a folder", output.display()));
    }
    Ok(())
}

fn describe(model: &Model) -> String {
    let i = &model.info;
    let mut s = String::new();
    s += &format!("family:       {}\n", i.family);
    s += &format!("size:         {}\n", i.size);
    s += &format!(
        "layers:       {} (widths {:?}, state sizes {:?})\n",
        model.layers.len(),
        model.widths(),
        model.state_sizes()
    );
    s += &format!("activation:   {}\n", i.activation.name());
    s += &format!("parameters:   {} real values\n", model.parameter_count());
    s += &format!(
        "train rate:   {} Hz (plays at any rate from 8000 to 192000 Hz)\n",
        i.train_rate
    );
    s += &format!("MIDI rate:    {} Hz\n", i.midi_rate);
    s += &format!(
        "normalise:    audio = out * {} + {}\n",
        i.norm_std, i.norm_mean
    );
    let kind = i.head_kind.as_deref().unwrap_or("head");
    s += &format!(
        "heads:        {} by {kind}: {}\n",
        model.head_count(),
        i.heads.join(", ")
    );
    if !i.description.is_empty() {
        s += &format!("description:  {}\n", i.description);
    }
    s
}
