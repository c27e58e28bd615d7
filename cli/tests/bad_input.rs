//! Broken model files, broken MIDI files and bad command lines given to `piano-ssm`: clear
//! errors that name the problem, never a panic.

use std::path::Path;

mod common;

use common::{assert_fails, piano_ssm};
use ssm_runtime::Model;
use test_support::{checkpoint, reference_dir};

fn small() -> Model {
    checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth")
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
