//! `piano-ssm`: render MIDI files with a Piano-SSM model, import published checkpoints,
//! inspect models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod batch;
mod render;
mod wav;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ssm_runtime::builtin;
use ssm_runtime::checkpoint::{import_pth, ImportOptions};
use ssm_runtime::engine::{check_rate, A4_RANGE, STANDARD_A4};
use ssm_runtime::fsutil::{self, check_target};
use ssm_runtime::model::{MAX_RATE, MIN_RATE};
use ssm_runtime::notes::{
    NoteMap, DEFAULT_SOFT_PEDAL, SOFT_PEDAL_RANGE, TRANSPOSE_RANGE, VELOCITY_CURVE_RANGE,
};
use ssm_runtime::{MidiFile, Model, Size};

use render::{Level, RenderSettings, Rendered};
use wav::WavFormat;

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

#[derive(Subcommand)]
enum Command {
    /// Render MIDI files to WAV files: `render IN.mid OUT.wav`, or `render IN... --out-dir DIR`.
    Render(RenderArgs),
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
    // an interrupted render or import leaves no temporary file behind (130: as for SIGINT)
    if let Err(e) = ctrlc::set_handler(|| fsutil::exit_removing_temp_files(130)) {
        eprintln!("piano-ssm: warning: cannot watch for Ctrl-C: {e}");
    }
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
        Command::Render(args) => render(args),
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
            check_output(&output, &[&input])?;
            let model = import_pth(
                &input,
                &ImportOptions {
                    train_rate,
                    midi_rate,
                },
            )
            .map_err(|e| format!("{}: {e}", input.display()))?;
            model.save(&output).map_err(|e| e.to_string())?;
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
        return builtin::require(size.unwrap_or(builtin::DEFAULT_SIZE)).map_err(|e| e.to_string());
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

#[derive(Args)]
struct RenderArgs {
    /// MIDI files (format 0 or 1), folders (searched recursively for .mid and .midi files)
    /// or glob patterns such as 'takes/*.mid'; without --out-dir: one MIDI file, then the WAV
    /// file to write
    #[arg(required = true, value_name = "IN")]
    inputs: Vec<String>,
    /// Write DIR/<name>.wav for every input (the folder is created if needed)
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// With --out-dir: overwrite outputs that exist
    #[arg(long)]
    force: bool,
    /// With --out-dir: files rendered at once (default: the available cores)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// Model file: a runtime .safetensors model or a published .pth checkpoint
    /// (default: the built-in Piano-SSM Grand model)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Model size, S, L or XL: picks the built-in model; with --model, checked against the model
    #[arg(long)]
    size: Option<Size>,
    /// Output head by label, e.g. a MAESTRO year
    #[arg(long, conflicts_with = "head")]
    year: Option<String>,
    /// Output head by index
    #[arg(long)]
    head: Option<usize>,
    /// Output sample rate in Hz
    #[arg(long, default_value_t = 48_000)]
    sample_rate: u32,
    /// Seconds rendered after the last MIDI event
    #[arg(long, default_value_t = 1.5)]
    tail: f64,
    /// Stop after this many seconds (the tail included)
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Scale to this integrated loudness (EBU R128), e.g. -16
    #[arg(
        long,
        value_name = "LUFS",
        allow_negative_numbers = true,
        conflicts_with = "peak"
    )]
    normalize: Option<f64>,
    /// Scale so that the highest sample peaks here, e.g. -1
    #[arg(long, value_name = "DBFS", allow_negative_numbers = true)]
    peak: Option<f64>,
    /// Master tuning: the pitch of A4 in Hz, 400 to 480 (every partial moves, decays shorten
    /// by the same ratio)
    #[arg(long, value_name = "HZ", default_value_t = STANDARD_A4)]
    tune: f64,
    /// Semitones to move every key by, -24 to 24 (keys moved off the keyboard are dropped)
    #[arg(
        long,
        value_name = "SEMITONES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    transpose: i32,
    /// Velocity curve: velocity' = 127·(velocity/127)^GAMMA, GAMMA from 0.5 (soft notes
    /// louder) to 2 (softer)
    #[arg(long, value_name = "GAMMA", default_value_t = 1.0)]
    velocity_curve: f64,
    /// Soft pedal (CC67): the share of its velocity a note struck under it keeps, 0.3 to 1
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT_SOFT_PEDAL)]
    soft_pedal: f64,
    #[arg(long, value_enum, default_value = "f32")]
    format: WavFormat,
    /// 1 (mono) or 2 (stereo: a stereo model's two channels, a mono model's one on both);
    /// the model's own channel count if not given
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=2))]
    channels: Option<u16>,
}

fn render(args: RenderArgs) -> Result<(), String> {
    check_rate(args.sample_rate).map_err(|e| e.to_string())?;
    if !(args.tail.is_finite() && (0.0..=600.0).contains(&args.tail)) {
        return Err(format!(
            "--tail {} must be between 0 and 600 seconds",
            args.tail
        ));
    }
    if let Some(d) = args.duration.filter(|d| !(d.is_finite() && *d > 0.0)) {
        return Err(format!(
            "--duration {d} must be a positive number of seconds"
        ));
    }
    let level = match (args.normalize, args.peak) {
        (Some(l), _) if !(l.is_finite() && (-70.0..=0.0).contains(&l)) => {
            return Err(format!("--normalize {l} must be between -70 and 0 LUFS"))
        }
        (_, Some(p)) if !(p.is_finite() && (-100.0..=0.0).contains(&p)) => {
            return Err(format!("--peak {p} must be between -100 and 0 dBFS"))
        }
        (Some(l), _) => Some(Level::Loudness(l)),
        (_, Some(p)) => Some(Level::Peak(p)),
        _ => None,
    };
    if !A4_RANGE.contains(&args.tune) {
        return Err(format!(
            "--tune {} must be between {} and {} Hz",
            args.tune,
            A4_RANGE.start(),
            A4_RANGE.end()
        ));
    }
    let notes =
        NoteMap::new(args.transpose, args.velocity_curve, args.soft_pedal).ok_or_else(|| {
            format!(
                "--transpose must be in {}..={} semitones, --velocity-curve in {}..={} and \
                 --soft-pedal in {}..={}",
                TRANSPOSE_RANGE.start(),
                TRANSPOSE_RANGE.end(),
                VELOCITY_CURVE_RANGE.start(),
                VELOCITY_CURVE_RANGE.end(),
                SOFT_PEDAL_RANGE.start(),
                SOFT_PEDAL_RANGE.end()
            )
        })?;
    let model = resolve_model(args.model.as_deref(), args.size)?;
    let settings = RenderSettings {
        a4: args.tune,
        notes,
        head: resolve_head(&model, args.year.as_deref(), args.head)?,
        model: &model,
        sample_rate: args.sample_rate,
        tail: args.tail,
        duration: args.duration,
        level,
        format: args.format,
        channels: args.channels.unwrap_or(model.channels as u16),
    };
    match &args.out_dir {
        None => render_one(&args.inputs, args.model.as_deref(), &settings),
        Some(dir) => render_batch(&args, dir, &settings),
    }
}

/// `render IN.mid OUT.wav`.
fn render_one(
    inputs: &[String],
    model_file: Option<&Path>,
    settings: &RenderSettings,
) -> Result<(), String> {
    let [input, output] = inputs else {
        return Err(format!(
            "give one MIDI file and the WAV file to write, or --out-dir DIR for {} inputs",
            inputs.len()
        ));
    };
    let (input, output) = (Path::new(input), Path::new(output));
    let mut inputs = vec![input];
    inputs.extend(model_file);
    check_output(output, &inputs)?;
    let midi = MidiFile::load(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let bar = progress_bar(settings.samples(&midi));
    if settings.samples(&midi) < 20 * settings.sample_rate as u64 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let rendered = settings
        .render(&midi, output, &|n| bar.inc(n))
        .map_err(|e| format!("{}: {e}", input.display()))?;
    bar.finish_and_clear();
    eprintln!("{}", summary(output, &rendered));
    Ok(())
}

/// `render IN... --out-dir DIR`: every file, and exit status 1 if any failed.
fn render_batch(args: &RenderArgs, dir: &Path, settings: &RenderSettings) -> Result<(), String> {
    let (files, bad_inputs) = batch::expand(&args.inputs);
    for (input, e) in &bad_inputs {
        eprintln!("piano-ssm: error: {input}: {e}");
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let jobs = batch::plan(files, dir, args.force);
    let threads = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let bar = progress_bar(0);
    let results = batch::run(&jobs, settings, threads, &bar);
    bar.finish_and_clear();
    let failed = results.iter().filter(|r| r.is_err()).count() + bad_inputs.len();
    eprintln!(
        "rendered {} of {} files into {}",
        results.len() - results.iter().filter(|r| r.is_err()).count(),
        jobs.len() + bad_inputs.len(),
        dir.display()
    );
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} input(s) failed, named above")),
    }
}

fn progress_bar(samples: u64) -> ProgressBar {
    let bar = ProgressBar::new(samples);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {elapsed} / {eta} left")
            .expect("valid template"),
    );
    bar
}

/// The line printed for a finished file.
fn summary(output: &Path, r: &Rendered) -> String {
    let mut line = format!("wrote {} ({:.2} s", output.display(), r.seconds);
    if let Some(db) = r.gain_db {
        line += &format!(", gain {db:+.2} dB");
    }
    line += ")";
    if r.clipped > 0 {
        line += &format!(
            "\nwarning: {} samples exceeded full scale and were clipped; use --format f32 to keep them",
            r.clipped
        );
    }
    line
}

/// An output the command may write: its folder exists; it is not a folder, device or FIFO
/// (`/dev/null` included), not read-only, and not one of `inputs` (by path or through a
/// link). Checked before any render time is spent.
fn check_output(output: &Path, inputs: &[&Path]) -> Result<(), String> {
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
    if let Some(input) = inputs.iter().find(|i| same_file(output, i)) {
        return Err(format!(
            "{} is the input {}: give another output",
            output.display(),
            input.display()
        ));
    }
    check_target(output).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(())
}

/// Whether two paths name one existing file (the same path, a symbolic or a hard link).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (ma.dev(), ma.ino()) == (mb.dev(), mb.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    }
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
        "train rate:   {} Hz (plays at any rate from {MIN_RATE} to {MAX_RATE} Hz)\n",
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
    s += &format!(
        "channels:     {}\n",
        match model.channels {
            1 => "1 (mono)",
            _ => "2 (stereo)",
        }
    );
    if !i.description.is_empty() {
        s += &format!("description:  {}\n", i.description);
    }
    s
}
