//! `piano-ssm render` as a user runs it: the streamed render is the in-memory one sample for
//! sample, `--duration` cuts it, `--peak` and `--normalize` meet their level, and a batch
//! renders files, folders and patterns, names each bad input and still renders the rest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssm_runtime::render::{render_roll, render_roll_stereo};
use ssm_runtime::{builtin, Engine, MidiFile};

fn piano_ssm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_piano-ssm"))
        .args(args)
        .output()
        .unwrap()
}

fn midi(name: &str) -> PathBuf {
    test_support::reference_dir().join("midi").join(name)
}

fn read(path: &Path) -> Vec<f32> {
    let mut wav = hound::WavReader::open(path).unwrap();
    match wav.spec().sample_format {
        hound::SampleFormat::Float => wav.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let full = (1i64 << (wav.spec().bits_per_sample - 1)) as f32 - 1.0;
            wav.samples::<i32>()
                .map(|s| s.unwrap() as f32 / full)
                .collect()
        }
    }
}

fn render(args: &[&str], out: &Path) -> Vec<f32> {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    all.push(out.to_str().unwrap());
    let done = piano_ssm(&all);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    read(out)
}

#[test]
fn the_streamed_render_is_the_in_memory_render() {
    let dir = tempfile::tempdir().unwrap();
    let input = midi("pedal.mid");
    // the built-in model plays in stereo: two channels, interleaved
    let streamed = render(&[input.to_str().unwrap()], &dir.path().join("a.wav"));
    let model = builtin::require(builtin::DEFAULT_SIZE).unwrap();
    assert_eq!(model.channels, 2);
    let roll = MidiFile::load(&input)
        .unwrap()
        .roll(model.info.midi_rate, 1.5);
    let memory = in_memory(&roll, 440.0);
    assert_eq!(streamed.len(), memory.len());
    assert!(streamed == memory, "the streamed render differs");
    // --duration cuts it, tail included
    let cut = render(
        &[input.to_str().unwrap(), "--duration", "0.75"],
        &dir.path().join("b.wav"),
    );
    assert_eq!(cut.len(), 2 * 36_000);
    assert!(cut[..] == memory[..2 * 36_000]);
    // --channels 1: the engine's mono output
    let mono = render(
        &[input.to_str().unwrap(), "--channels", "1"],
        &dir.path().join("c.wav"),
    );
    let mut engine = Engine::new(&model, 48_000).unwrap();
    assert!(mono == render_roll(&mut engine, &roll, |_, _| {}));
}

#[test]
fn peak_and_loudness_normalisation_meet_their_level() {
    let dir = tempfile::tempdir().unwrap();
    let input = midi("scale.mid");
    let input = input.to_str().unwrap();
    let plain = render(&[input], &dir.path().join("plain.wav"));
    let peaked = render(&[input, "--peak", "-3"], &dir.path().join("peak.wav"));
    let peak = peaked.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        (20.0 * (peak as f64).log10() + 3.0).abs() < 1e-4,
        "peak {peak}"
    );
    // the same music, only scaled
    let gain = peaked[1000] / plain[1000];
    for (p, q) in plain.iter().zip(&peaked).step_by(97) {
        assert!((p * gain - q).abs() < 1e-6);
    }
    for channels in ["1", "2"] {
        let out = dir.path().join(format!("loud{channels}.wav"));
        let loud = render(
            &[
                input,
                "--normalize",
                "-20",
                "--channels",
                channels,
                "--format",
                "s24",
            ],
            &out,
        );
        let n = channels.parse::<u32>().unwrap();
        let mut meter = ebur128::EbuR128::new(n, 48_000, ebur128::Mode::I).unwrap();
        meter.add_frames_f32(&loud).unwrap();
        let lufs = meter.loudness_global().unwrap();
        assert!(
            (lufs + 20.0).abs() < 0.05,
            "{channels} channels: {lufs} LUFS"
        );
    }
}

#[test]
fn a_batch_renders_files_folders_and_patterns_and_names_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::copy(midi("scale.mid"), src.join("scale.mid")).unwrap();
    std::fs::copy(midi("pedal.mid"), src.join("sub/pedal.MIDI")).unwrap();
    std::fs::copy(midi("extremes.mid"), dir.path().join("extremes.mid")).unwrap();
    std::fs::write(src.join("broken.mid"), b"MThd not really").unwrap();
    std::fs::write(src.join("notes.txt"), b"not MIDI, not looked at").unwrap();
    let out = dir.path().join("out");
    let pattern = format!("{}/*.mid", dir.path().display());
    let run = |extra: &[&str]| {
        let mut args = vec!["render", src.to_str().unwrap(), &pattern, "nothing-*.mid"];
        args.extend_from_slice(&["--out-dir", out.to_str().unwrap(), "--jobs", "2"]);
        args.extend_from_slice(extra);
        piano_ssm(&args)
    };
    let first = run(&[]);
    let log = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(1), "{log}");
    assert!(log.contains("broken.mid"), "{log}");
    assert!(log.contains("nothing-*.mid"), "{log}");
    for name in ["scale", "pedal", "extremes"] {
        let batch = read(&out.join(format!("{name}.wav")));
        let single = render(
            &[midi(&format!("{name}.mid")).to_str().unwrap()],
            &dir.path().join(format!("{name}-single.wav")),
        );
        assert!(batch == single, "{name}: the batch render differs");
    }
    assert!(
        !out.join("broken.wav").exists(),
        "a broken input leaves no file"
    );
    // again: the outputs exist, and only --force overwrites them
    let again = run(&[]);
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("exists"), "{log}");
    let forced = run(&["--force"]);
    let log = String::from_utf8_lossy(&forced.stderr);
    assert!(!log.contains("exists"), "{log}");
    assert!(log.contains("rendered 3 of 5"), "{log}");
    // two inputs with one name: the second is refused, not written over the first
    std::fs::copy(midi("pedal.mid"), src.join("scale.midi")).unwrap();
    let clash = run(&["--force"]);
    let log = String::from_utf8_lossy(&clash.stderr);
    assert!(log.contains("already the output of"), "{log}");
}

#[test]
fn the_single_form_refuses_to_write_over_its_input_and_several_inputs_need_out_dir() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("take.mid");
    std::fs::copy(midi("scale.mid"), &input).unwrap();
    let same = piano_ssm(&["render", input.to_str().unwrap(), input.to_str().unwrap()]);
    assert!(!same.status.success());
    assert!(String::from_utf8_lossy(&same.stderr).contains("is the input"));
    assert_eq!(
        std::fs::read(&input).unwrap(),
        std::fs::read(midi("scale.mid")).unwrap()
    );
    let three = piano_ssm(&["render", "a.mid", "b.mid", "c.mid"]);
    assert!(String::from_utf8_lossy(&three.stderr).contains("--out-dir"));
}

/// The built-in model's render of `roll` at 48 kHz, tuned to `a4`, as the command writes it.
fn in_memory(roll: &ssm_runtime::Roll, a4: f64) -> Vec<f32> {
    let model = builtin::require(builtin::DEFAULT_SIZE).unwrap();
    interleaved(&mut Engine::tuned(&model, 48_000, a4).unwrap(), roll)
}

/// `engine`'s two channels of `roll`, interleaved as a stereo WAV holds them.
fn interleaved(engine: &mut Engine, roll: &ssm_runtime::Roll) -> Vec<f32> {
    let [left, right] = render_roll_stereo(engine, roll);
    left.iter()
        .zip(&right)
        .flat_map(|(l, r)| [*l, *r])
        .collect()
}

#[test]
fn transpose_velocity_curve_and_tuning_play_the_changed_roll() {
    let dir = tempfile::tempdir().unwrap();
    let input = midi("scale.mid");
    let model = builtin::require(builtin::DEFAULT_SIZE).unwrap();
    let roll = MidiFile::load(&input)
        .unwrap()
        .roll(model.info.midi_rate, 1.5);
    let arg = input.to_str().unwrap();
    // an octave up: every column 12 keys higher, the top octave's notes gone
    let mut up = roll.clone();
    for f in &mut up.frames {
        let shifted: Vec<u8> = (0..f.len())
            .map(|k| if k >= 12 { f[k - 12] } else { 0 })
            .collect();
        f.copy_from_slice(&shifted);
    }
    assert!(up != roll);
    let out = render(&[arg, "--transpose", "12"], &dir.path().join("up.wav"));
    assert!(out == in_memory(&up, 440.0), "--transpose 12");
    // velocities squared (scale.mid has no overlapping notes, so roll values are velocities)
    let mut soft = roll.clone();
    for v in soft.frames.iter_mut().flatten().filter(|v| **v > 0) {
        *v = ((127.0 * (*v as f64 / 127.0).powi(2)).round() as u8).max(1);
    }
    let out = render(
        &[arg, "--velocity-curve", "2"],
        &dir.path().join("soft.wav"),
    );
    assert!(out == in_memory(&soft, 440.0), "--velocity-curve 2");
    let out = render(&[arg, "--tune", "446"], &dir.path().join("tuned.wav"));
    assert!(out == in_memory(&roll, 446.0), "--tune 446");
    for bad in [
        ["--tune", "390"],
        ["--transpose", "30"],
        ["--velocity-curve", "3"],
    ] {
        let mut args = vec!["render", arg, "x.wav"];
        args.extend_from_slice(&bad);
        let done = piano_ssm(&args);
        assert!(!done.status.success(), "{bad:?} accepted");
        assert!(
            String::from_utf8_lossy(&done.stderr).contains(bad[0]),
            "{bad:?}"
        );
    }
}

/// The built-in model, mono (its stereo head folded) and stereo again with a head of its own:
/// left the mono head plus a tilt across the last layer's outputs, right the head minus it.
fn stereo_builtin() -> ssm_runtime::Model {
    let mut m = builtin::require(builtin::DEFAULT_SIZE)
        .unwrap()
        .folded_to_mono();
    let width = *m.widths().last().unwrap();
    let (w, b) = m.head_channel(0, 0);
    let tilt = |sign: f32| -> Vec<f32> {
        (0..width)
            .map(|i| w[i] * (1.0 + sign * 0.5 * (i as f32 / width as f32 - 0.5)))
            .collect()
    };
    let (left, right, bias) = (tilt(1.0), tilt(-1.0), b);
    m.channels = 2;
    m.head_weight = [left, right].concat();
    m.head_bias = vec![bias, bias];
    m.validate().unwrap();
    m
}

#[test]
fn a_stereo_model_renders_in_stereo_by_default_and_folds_to_mono_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let model = stereo_builtin();
    let path = dir.path().join("stereo.safetensors");
    model.save(&path).unwrap();
    let input = midi("pedal.mid");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a = vec![input.to_str().unwrap().to_string(), "--model".into()];
        a.push(path.to_str().unwrap().into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str], name: &str| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = dir.path().join(name);
        let samples = render(&a, &out);
        (
            hound::WavReader::open(&out).unwrap().spec().channels,
            samples,
        )
    };
    let (channels, both) = run(&[], "default.wav");
    assert_eq!(channels, 2, "a stereo model writes two channels unasked");
    let roll = MidiFile::load(&input)
        .unwrap()
        .roll(model.info.midi_rate, 1.5);
    let expected = interleaved(&mut Engine::new(&model, 48_000).unwrap(), &roll);
    assert!(both == expected, "the file is the engine's two channels");
    let (l, r): (Vec<f32>, Vec<f32>) = both.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    assert!(
        test_support::relative_l2(&l, &r) > 0.01,
        "left and right differ"
    );
    // --channels 1: their mean
    let (channels, mono) = run(&["--channels", "1"], "mono.wav");
    assert_eq!(channels, 1);
    for ((m, l), r) in mono.iter().zip(&l).zip(&r).step_by(31) {
        assert!((m - 0.5 * (l + r)).abs() < 1e-6, "{m} vs {l}, {r}");
    }
    // `info` says so
    let info = piano_ssm(&["info", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("channels:     2 (stereo)"), "{text}");
}
