//! Every public reference case, rendered from its MIDI file through the `piano-ssm` command,
//! against the float64 reference.

use std::process::Command;

use test_support::{cases, reference_dir, relative_l2, within_both_limits};

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
        within_both_limits(&case, err);
    }
}
