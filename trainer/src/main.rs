//! `cargo run -p trainer [OPTIONS]` trains; `cargo run -p trainer -- eval …` scores models;
//! `… -- check` runs the listening checks; `… -- average` averages checkpoints into one model;
//! `… -- stereo` fits a stereo head.

use clap::{Parser, Subcommand};
use trainer::average::{self, AverageArgs};
use trainer::check::{self, CheckArgs};
use trainer::compare::{self, CompareArgs};
use trainer::eval::{self, EvalArgs};
use trainer::stereo::{self, StereoArgs};
use trainer::train::{self, TrainArgs};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train Piano-SSM models on libtorch and export them for the runtime"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train (the default when no subcommand is given).
    Train(Box<TrainArgs>),
    /// Score models on a dataset's test split, beside baselines.
    Eval(EvalArgs),
    /// Play a MIDI file with the SoundFont and a model: two WAVs and their spectrograms.
    Compare(CompareArgs),
    /// Listening checks (pitch, dynamics, onsets, silence, pedal) for models or the SoundFont.
    Check(CheckArgs),
    /// Average checkpoints of one run (or fine-tunes of one model) into one model.
    Average(AverageArgs),
    /// Give a trained model a stereo head, fitted to the Salamander's stereo image.
    Stereo(StereoArgs),
}

fn main() {
    trainer::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Eval(args)) => eval::run(&args).and_then(|scores| {
            print!("{}", eval::table(&scores));
            if args.listen {
                print!("\n{}", eval::listen(&args)?);
            }
            Ok(())
        }),
        Some(Command::Compare(args)) => compare::run(&args),
        Some(Command::Check(args)) => {
            check::run(&args).map(|r| print!("{}", check::report(&r, args.sample_rate)))
        }
        Some(Command::Average(args)) => {
            average::run(&args).map(|m| println!("{}: {}", args.out.display(), m.info.description))
        }
        Some(Command::Stereo(args)) => stereo::run(&args).map(|fitted| {
            print!("{}", stereo::report(&fitted.image));
            println!("{}: {}", args.out.display(), fitted.model.info.description);
        }),
        Some(Command::Train(args)) => report(train::train(&args)),
        None => report(train::train(&cli.train)),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn report(outcome: anyhow::Result<train::Outputs>) -> anyhow::Result<()> {
    let out = outcome?;
    println!("checkpoint: {}", out.checkpoint.display());
    println!("log:        {}", out.log.display());
    for p in &out.plots {
        println!("plot:       {}", p.display());
    }
    println!(
        "model:      {}  (play it: piano-ssm render --model {} in.mid out.wav)",
        out.export.display(),
        out.export.display()
    );
    println!(
        "throughput: {:.2} s of audio per second",
        out.audio_seconds_per_second
    );
    Ok(())
}
