//! Every public reference case, rendered from its MIDI file through the public API and
//! through the `piano-ssm` command, against the float64 reference.

mod common;

use std::process::Command;

use common::{cases, checkpoint, reference_dir, relative_l2, tolerance};
use ssm_runtime::render::render_roll;
use ssm_runtime::{Engine, MidiFile};

#[test]
fn encoder_reproduces_every_reference_roll() {
    for case in cases() {
        let midi = MidiFile::load(&reference_dir().join("midi").join(&case.midi)).unwrap();
        let roll = midi.roll(case.midi_rate, 1.5);
        assert_eq!(
            roll.frames.len(),
            case.velocity.len(),
            "{}: frame count",
            case.name
        );
        for (f, (ours, theirs)) in roll.frames.iter().zip(&case.velocity).enumerate() {
            assert_eq!(ours, theirs, "{}: frame {f} differs", case.name);
        }
    }
}

#[test]
fn api_render_matches_every_reference_case() {
    for case in cases() {
        let model = checkpoint(&case.checkpoint);
        assert_eq!(model.info.heads[case.year_index], case.year);
        let mut engine = Engine::new(&model, case.sample_rate).unwrap();
        engine.set_head(case.year_index).unwrap();
        let midi = MidiFile::load(&reference_dir().join("midi").join(&case.midi)).unwrap();
        let audio = render_roll(
            &mut engine,
            &midi.roll(model.info.midi_rate, 1.5),
            |_, _| {},
        );
        let err = relative_l2(&audio, &case.audio);
        println!("{:40} relative L2 {err:.2e}", case.name);
        assert!(
            err <= tolerance(case.sample_rate, case.train_rate),
            "{}: relative L2 {err:.3e}",
            case.name
        );
    }
}

#[test]
fn command_render_matches_every_reference_case() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let out = dir.path().join(format!("{}.wav", case.name));
        let status = Command::new(env!("CARGO_BIN_EXE_piano-ssm"))
            .arg("render")
            .arg(reference_dir().join("midi").join(&case.midi))
            .arg(&out)
            .arg("--model")
            .arg(reference_dir().join("weights").join(&case.checkpoint))
            .args(["--year", &case.year, "--tail", "1.5", "--format", "f32"])
            .args(["--sample-rate", &case.sample_rate.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "{}: piano-ssm render failed", case.name);
        let mut wav = hound::WavReader::open(&out).unwrap();
        assert_eq!(wav.spec().sample_rate, case.sample_rate);
        assert_eq!(wav.spec().channels, 1);
        let audio: Vec<f32> = wav.samples::<f32>().map(Result::unwrap).collect();
        let err = relative_l2(&audio, &case.audio);
        assert!(
            err <= tolerance(case.sample_rate, case.train_rate),
            "{}: relative L2 {err:.3e}",
            case.name
        );
    }
}
