//! Broken model files, broken MIDI files and bad command lines give clear errors that name
//! the problem, never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{checkpoint, reference_dir};
use ssm_runtime::{Engine, EngineError, Model, ModelError};

fn small() -> Model {
    checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth")
}

#[test]
fn model_round_trips_through_safetensors() {
    let model = small();
    let back = Model::from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(back, model);
    assert_eq!(back.parameter_count(), 72_082);
    assert_eq!(back.widths(), vec![88, 88, 60, 40, 20]);
    assert_eq!(back.state_sizes(), vec![64; 4]);
}

#[test]
fn truncated_and_foreign_files_are_rejected() {
    let bytes = small().to_bytes().unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = Model::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, ModelError::NotSafetensors(_)),
            "cut at {cut}: {err}"
        );
    }
    let err = Model::from_bytes(b"MThd\0\0\0\x06\0\x01\0\x02\0\xdc").unwrap_err();
    assert!(matches!(err, ModelError::NotSafetensors(_)));
}

#[test]
fn non_finite_weights_name_the_tensor() {
    let mut model = small();
    model.layers[2].c[17] = f32::NAN;
    let err = model.to_bytes().unwrap_err();
    assert!(
        matches!(&err, ModelError::NonFinite { name, index: 17 } if name == "layers.2.C"),
        "{err}"
    );
    // and a file written by someone else with a NaN inside is caught on load
    let mut good = small();
    good.head_bias[3] = 1234.5;
    let mut bytes = good.to_bytes().unwrap();
    let pattern = 1234.5f32.to_le_bytes();
    let at = bytes.windows(4).position(|w| w == pattern).unwrap();
    bytes[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let err = Model::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(&err, ModelError::NonFinite { name, index: 3 } if name == "heads.bias"),
        "{err}"
    );
}

#[test]
fn wrong_shapes_and_missing_tensors_are_named() {
    let mut model = small();
    model.layers[1].skip = None;
    assert!(
        matches!(model.to_bytes().unwrap_err(), ModelError::MissingTensor(n) if n == "layers.1.skip")
    );
    let mut model = small();
    model.layers[0].norm.pop();
    let err = model.to_bytes().unwrap_err();
    assert!(err.to_string().contains("layers.0.norm"), "{err}");
}

#[test]
fn bad_metadata_is_named() {
    let mut model = small();
    model.info.midi_rate = 7;
    let err = model.validate().unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::BadField {
                field: "midi_rate",
                ..
            }
        ),
        "{err}"
    );
    let mut model = small();
    model.info.train_rate = 1_000_000;
    assert!(matches!(
        model.validate().unwrap_err(),
        ModelError::BadField {
            field: "train_rate",
            ..
        }
    ));
    let mut model = small();
    model.info.heads.pop();
    assert!(model.validate().is_err(), "10 head weights but 9 labels");
}

#[test]
fn unsupported_rates_and_heads_are_errors() {
    let model = small();
    assert_eq!(
        Engine::new(&model, 7_999).err(),
        Some(EngineError::UnsupportedRate(7_999))
    );
    assert_eq!(
        Engine::new(&model, 192_001).err(),
        Some(EngineError::UnsupportedRate(192_001))
    );
    let mut engine = Engine::new(&model, 192_000).unwrap();
    assert_eq!(
        engine.set_head(10),
        Err(EngineError::NoSuchHead {
            index: 10,
            count: 10
        })
    );
    assert_eq!(engine.head(), 0);
}

fn piano_ssm(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_piano-ssm"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

/// Exit code 1 (not a panic's 101) and a message containing `needle`.
fn assert_fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn command_reports_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let midi = reference_dir().join("midi/scale.mid");
    let model_path = d.join("s.safetensors");
    small().save(&model_path).unwrap();
    let out = d.join("out.wav");

    // without --model the built-in model plays; a size that is not built in is named
    let builtin_out = d.join("builtin.wav");
    let r = piano_ssm(&[&"render", &midi, &builtin_out]);
    assert!(
        r.status.success() && builtin_out.is_file(),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_fails(
        &piano_ssm(&[&"render", &midi, &out, &"--size", &"S"]),
        "no built-in S model",
    );
    std::fs::write(d.join("broken.safetensors"), b"not a model").unwrap();
    assert_fails(
        &piano_ssm(&[
            &"render",
            &midi,
            &out,
            &"--model",
            &d.join("broken.safetensors"),
        ]),
        "broken.safetensors",
    );
    assert_fails(
        &piano_ssm(&[
            &"render",
            &midi,
            &out,
            &"--model",
            &d.join("absent.safetensors"),
        ]),
        "absent.safetensors",
    );
    std::fs::write(d.join("notes.mid"), b"this is text, not MIDI").unwrap();
    assert_fails(
        &piano_ssm(&[
            &"render",
            &d.join("notes.mid"),
            &out,
            &"--model",
            &model_path,
        ]),
        "not a valid MIDI file",
    );
    assert_fails(
        &piano_ssm(&[
            &"render",
            &midi,
            &Path::new("/nonexistent-dir/out.wav"),
            &"--model",
            &model_path,
        ]),
        "cannot write",
    );
    assert_fails(
        &piano_ssm(&[
            &"render",
            &midi,
            &out,
            &"--model",
            &model_path,
            &"--sample-rate",
            &"4000",
        ]),
        "4000 Hz is not supported",
    );
    assert_fails(
        &piano_ssm(&[
            &"render",
            &midi,
            &out,
            &"--model",
            &model_path,
            &"--year",
            &"1999",
        ]),
        "no head \"1999\"",
    );
    assert_fails(
        &piano_ssm(&[
            &"render",
            &midi,
            &out,
            &"--model",
            &model_path,
            &"--size",
            &"XL",
        ]),
        "--size XL",
    );
    assert_fails(&piano_ssm(&[&"info", &d.join("notes.mid")]), "notes.mid");
    assert_fails(
        &piano_ssm(&[&"import", &d.join("notes.mid"), &d.join("x.safetensors")]),
        "training rate",
    );
    assert!(!out.exists(), "a failed render leaves no output file");
}

#[test]
fn command_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("s.safetensors");
    small().save(&model_path).unwrap();
    let midi = reference_dir().join("midi/extremes.mid");
    let mut reference: Vec<f32> = Vec::new();
    for (format, bits, channels) in [("f32", 32, "1"), ("s16", 16, "2"), ("s24", 24, "1")] {
        let out = dir.path().join(format!("{format}.wav"));
        let r = piano_ssm(&[
            &"render",
            &midi,
            &out,
            &"--model",
            &model_path,
            &"--format",
            &format,
            &"--channels",
            &channels,
            &"--sample-rate",
            &"22050",
            &"--tail",
            &"0.5",
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let wav = hound::WavReader::open(&out).unwrap();
        let spec = wav.spec();
        assert_eq!(
            (
                spec.bits_per_sample,
                spec.channels.to_string().as_str(),
                spec.sample_rate
            ),
            (bits, channels, 22_050)
        );
        // extremes.mid ends at 5.0 s; 0.5 s tail
        assert_eq!(wav.duration(), 22_050 * 11 / 2);
        // the samples: the float render, on every channel, rounded to the format's full scale
        let full = match bits {
            32 => {
                reference = wav.into_samples::<f32>().map(Result::unwrap).collect();
                assert!(
                    reference.iter().any(|&v| v.abs() > 1e-3),
                    "the render sounds"
                );
                continue;
            }
            bits => ((1i64 << (bits - 1)) - 1) as f32,
        };
        let samples: Vec<i32> = wav.into_samples::<i32>().map(Result::unwrap).collect();
        let n: usize = channels.parse().unwrap();
        assert_eq!(samples.len(), reference.len() * n);
        for (i, frame) in samples.chunks_exact(n).enumerate() {
            let want = (reference[i].clamp(-1.0, 1.0) * full).round() as i32;
            assert!(
                frame.iter().all(|&v| v == want),
                "{format}: sample {i} is {frame:?}, the float render's {want}"
            );
        }
    }
}
