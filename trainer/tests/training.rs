//! Training end to end on tiny data: MAESTRO- and MAPS-shaped trees built here, the synthetic
//! set, exact resume, bad datasets, and the exported model in the runtime.

use std::path::{Path, PathBuf};

use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use ssm_runtime::Activation;
use ssm_runtime::{Engine, MidiFile, Model};
use tch::{Device, Tensor};
use trainer::data::performance::Performance;
use trainer::data::synth::{ReferencePiano, SynthSource};
use trainer::data::Rates;
use trainer::init::gated_keys;
use trainer::model::{InitOptions, Network, PoleInit, Size};
use trainer::train::{train, TrainArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

/// Options as the command line would give them, with a tiny, fast run.
fn args(out: &Path, extra: &[&str]) -> TrainArgs {
    let mut argv = vec![
        "trainer",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--epoch-size",
        "2",
        "--sample-length",
        "0.25",
        "--quiet",
        "--device",
        "cpu",
    ];
    let out = out.to_str().unwrap().to_string();
    argv.extend(["--out", &out]);
    argv.extend(extra);
    Cli::try_parse_from(argv).unwrap().args
}

/// A checkpoint's weights, by name.
fn weights(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = tensors(path);
    v.retain(|(n, _)| n.starts_with("model/"));
    v
}

/// Every tensor of a safetensors file, by name (the header's order varies between writes).
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// A performance rendered by the SoundFont at `rate` into `wav` (stereo 16-bit) and `midi`.
fn write_pair(
    dir: &Path,
    stem: &str,
    midi_ext: &str,
    seed: u64,
    seconds: f64,
    rate: u32,
) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let rates = Rates::new(rate, rate / 20).unwrap();
    let source = SynthSource::open(&ReferencePiano::fluid(), rates, 0).unwrap();
    let frames = rates.frames(seconds);
    let perf = Performance::generate(
        &mut ChaCha8Rng::seed_from_u64(seed),
        frames as u64,
        rates.midi_rate,
    );
    let audio = source.render(&perf, frames).unwrap();
    let midi = dir.join(format!("{stem}.{midi_ext}"));
    std::fs::write(&midi, perf.to_smf(rates.midi_rate)).unwrap();
    let wav = dir.join(format!("{stem}.wav"));
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for s in audio {
        let v = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    (midi, wav)
}

/// MAESTRO layout: year folders, `.midi` + `.wav`, an index as CSV (or column JSON).
fn maestro_tree(root: &Path, json: bool) {
    let rows = [
        ("train", "2004", 1u64),
        ("train", "2018", 2),
        ("validation", "2009", 3),
        ("test", "2011", 4),
    ];
    let mut csv = String::from(
        "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n",
    );
    let mut cols: Vec<serde_json::Map<String, serde_json::Value>> = vec![Default::default(); 4];
    for (i, (split, year, seed)) in rows.iter().enumerate() {
        let stem = format!("piece-{i}");
        write_pair(&root.join(year), &stem, "midi", *seed, 1.5, 44_100);
        let (midi, wav) = (format!("{year}/{stem}.midi"), format!("{year}/{stem}.wav"));
        csv += &format!("Composer,\"Title, {i}\",{split},{year},{midi},{wav},1.5\n");
        for (c, v) in cols
            .iter_mut()
            .zip([split.to_string(), year.to_string(), midi, wav])
        {
            c.insert(i.to_string(), v.into());
        }
    }
    if json {
        let doc: serde_json::Map<String, serde_json::Value> =
            ["split", "year", "midi_filename", "audio_filename"]
                .iter()
                .zip(cols)
                .map(|(k, c)| (k.to_string(), c.into()))
                .collect();
        std::fs::write(
            root.join("maestro-v3.0.0.json"),
            serde_json::to_string(&doc).unwrap(),
        )
        .unwrap();
    } else {
        std::fs::write(root.join("maestro-v3.0.0.csv"), csv).unwrap();
    }
}

fn maps_tree(root: &Path) {
    for (i, piano) in ["ENSTDkAm", "ENSTDkCl"].iter().enumerate() {
        for j in 0..2 {
            write_pair(
                &root.join(piano).join("MUS"),
                &format!("MAPS_MUS-piece{j}_{piano}"),
                "mid",
                10 + (i * 2 + j) as u64,
                1.5,
                44_100,
            );
        }
    }
}

#[test]
fn maestro_tree_trains_one_step_with_year_heads() {
    for json in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("maestro-v3.0.0");
        maestro_tree(&root, json);
        let root_s = root.to_str().unwrap().to_string();
        let out = dir.path().join("run");
        train(&args(
            &out,
            &[
                "--dataset",
                "maestro",
                "--dataset-path",
                &root_s,
                "--multi-head",
                "--valid",
                "--test",
            ],
        ))
        .unwrap();
        let model = Model::load(&out.join("model.safetensors")).unwrap();
        assert_eq!(
            model.info.heads,
            ssm_runtime::checkpoint::MAESTRO_YEARS
                .map(String::from)
                .to_vec()
        );
        assert_eq!(model.info.head_kind.as_deref(), Some("year"));
        assert_eq!(
            model.info.norm_std,
            ssm_runtime::checkpoint::MAESTRO_NORM_STD
        );
        let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
        assert_eq!(log.lines().count(), 2, "{log}");
        assert!(out.join("loss.png").is_file() && out.join("spectrogram.png").is_file());
    }
}

#[test]
fn maps_tree_trains_one_step_with_piano_heads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("MAPS");
    maps_tree(&root);
    let out = dir.path().join("run");
    train(&args(
        &out,
        &[
            "--dataset",
            "maps",
            "--dataset-path",
            root.to_str().unwrap(),
            "--multi-head",
            "--train-year",
            "all",
        ],
    ))
    .unwrap();
    let model = Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(model.info.heads, vec!["ENSTDkAm", "ENSTDkCl"]);
}

#[test]
fn missing_and_corrupt_files_are_skipped_and_empty_datasets_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("maestro");
    maestro_tree(&root, false);
    // one training recording is missing, the other corrupt: nothing is left to train on
    std::fs::remove_file(root.join("2004/piece-0.wav")).unwrap();
    std::fs::write(root.join("2018/piece-1.wav"), b"RIFF....WAVEfmt garbage").unwrap();
    let err = train(&args(
        &dir.path().join("a"),
        &[
            "--dataset",
            "maestro",
            "--dataset-path",
            root.to_str().unwrap(),
        ],
    ))
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no usable training files") && msg.contains("2 skipped"),
        "{msg}"
    );
    // an absent folder is named
    let absent = dir.path().join("nowhere");
    let err = train(&args(
        &dir.path().join("b"),
        &[
            "--dataset",
            "maps",
            "--dataset-path",
            absent.to_str().unwrap(),
        ],
    ))
    .unwrap_err();
    assert!(
        format!("{err:#}").contains(absent.to_str().unwrap()),
        "{err:#}"
    );
    // a decay limit that is not a positive duration is refused before any work
    for bad in ["0", "-0.2", "NaN", "inf"] {
        let err = train(&args(
            &dir.path().join("c"),
            &[&format!("--later-t60={bad}")],
        ))
        .unwrap_err();
        assert!(format!("{err:#}").contains("--later-t60"), "{bad}: {err:#}");
    }
    // a corrupt MIDI file is skipped at crop time and counted, training goes on
    let root2 = dir.path().join("maestro2");
    maestro_tree(&root2, false);
    std::fs::write(root2.join("2004/piece-0.midi"), b"MThd garbage").unwrap();
    let mut many = args(
        &dir.path().join("c"),
        &[
            "--dataset",
            "maestro",
            "--dataset-path",
            root2.to_str().unwrap(),
        ],
    );
    (many.epoch_size, many.batch_size) = (6, 6);
    train(&many).unwrap();
}

#[test]
fn resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    let common = ["--seed", "7", "--scheduler", "--lr", "1e-3"];
    let mut two = args(&a, &common);
    two.epochs = 2;
    two.keep_epochs = true;
    train(&two).unwrap();
    // --keep-epochs keeps each epoch's export; the last is the run's model
    let kept = |n: &str| tensors(&a.join("epochs").join(n));
    assert_eq!(
        kept("002.safetensors"),
        tensors(&a.join("model.safetensors"))
    );
    assert_ne!(kept("001.safetensors"), kept("002.safetensors"));
    let mut one = args(&b, &common);
    one.epochs = 1;
    train(&one).unwrap();
    let after_one = weights(&b.join("checkpoint.safetensors"));
    // a run folder may be moved between sessions
    let moved = dir.path().join("moved");
    std::fs::rename(&b, &moved).unwrap();
    let b = moved;
    let mut rest = args(&b, &common);
    rest.epochs = 2;
    rest.resume = true;
    // keeping epochs is not a different run
    rest.keep_epochs = true;
    train(&rest).unwrap();
    let (straight, resumed) = (
        weights(&a.join("checkpoint.safetensors")),
        weights(&b.join("checkpoint.safetensors")),
    );
    assert_ne!(after_one, resumed, "the resumed epoch changed nothing");
    assert_eq!(
        straight, resumed,
        "2 epochs straight differ from 1 + resumed 1"
    );
    let log = std::fs::read_to_string(b.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
    // resuming with other options is refused rather than silently mixing runs
    let mut other = args(&b, &["--seed", "8"]);
    other.resume = true;
    other.epochs = 3;
    assert!(format!("{:#}", train(&other).unwrap_err()).contains("other options"));
}

/// A trainer export renders in the runtime within 1e-4 of the trainer's own forward.
#[test]
fn exported_model_renders_like_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train(&args(&out, &["--lr", "1e-3"])).unwrap();
    let model = Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(model.info.family, "Piano-SSM Custom");
    assert_eq!(
        (model.info.train_rate, model.info.midi_rate),
        (16_000, 1_000)
    );
    assert!(
        model.info.description.contains("FluidR3_GM"),
        "{}",
        model.info.description
    );
    let midi = MidiFile::load(&test_support::reference_dir().join("midi/pedal.mid")).unwrap();
    let roll = midi.roll(1_000, 1.0);
    let mut engine = Engine::new(&model, 16_000).unwrap();
    let runtime = ssm_runtime::render::render_roll(&mut engine, &roll, |_, _| {});
    // in float64, so that the comparison measures the export, not float32 FFT rounding
    let mut net = Network::from_runtime(Device::Cpu, &model).unwrap();
    net.vs.double();
    let _guard = tch::no_grad_guard();
    let roll64 = trainer::roll_tensor(&roll.frames, Device::Cpu).to_kind(tch::Kind::Double);
    let out = net
        .forward(&roll64, &Tensor::from_slice(&[0i64]), 16, 1.0)
        .to_kind(tch::Kind::Float);
    let own: Vec<f32> =
        Vec::try_from(out.squeeze_dim(0) * model.info.norm_std + model.info.norm_mean).unwrap();
    assert_eq!(own.len(), runtime.len());
    let (num, den) = own
        .iter()
        .zip(&runtime)
        .fold((0.0, 0.0), |(n, d), (&a, &b)| {
            (n + (a as f64 - b as f64).powi(2), d + (a as f64).powi(2))
        });
    let err = (num / den).sqrt();
    assert!(err <= 1e-4, "runtime vs trainer relative L2 {err:.2e}");
    assert!(den > 0.0);
}

/// The synthetic set is deterministic per seed, and its audio starts where its roll does.
#[test]
fn synth_clips_are_deterministic_and_aligned() {
    let rates = Rates::new(16_000, 1_000).unwrap();
    let source = SynthSource::open(&ReferencePiano::fluid(), rates, 0).unwrap();
    let (a, b, c) = (
        source.clip(5, 1000).unwrap(),
        source.clip(5, 1000).unwrap(),
        source.clip(6, 1000).unwrap(),
    );
    assert_eq!(a.audio, b.audio);
    assert_eq!(a.frames, b.frames);
    assert_ne!(a.audio, c.audio);
    let first = a
        .frames
        .iter()
        .position(|f| f.iter().any(|&v| v > 0))
        .expect("the clip plays something");
    let start = a
        .audio
        .iter()
        .position(|&x| x != 0.0)
        .expect("the clip sounds");
    assert_eq!(
        start,
        first * 16,
        "audio starts at sample {start} but the roll at frame {first}"
    );
    let onset = a.audio.iter().position(|x| x.abs() > 1e-3).unwrap();
    assert!(onset - start < 80, "attack takes {} samples", onset - start);
    // the whole key and velocity range is exercised over a few clips
    let clips: Vec<_> = (0..12).map(|s| source.clip(s, 4000).unwrap()).collect();
    let keys_played = (0..88)
        .filter(|&k| clips.iter().any(|c| c.frames.iter().any(|f| f[k] > 0)))
        .count();
    assert!(keys_played > 70, "only {keys_played} keys played");
}

#[test]
fn lone_note_clips_mix_into_training_and_not_into_validation() {
    use trainer::data::{Source, Split};
    let rates = Rates::new(16_000, 1_000).unwrap();
    let plain = SynthSource::open(&ReferencePiano::fluid(), rates, 0).unwrap();
    let lone = SynthSource::open(&ReferencePiano::fluid(), rates, 0)
        .unwrap()
        .with_lone_notes(1.0);
    let keys_at_once = |c: &trainer::data::Clip| {
        c.frames
            .iter()
            .map(|f| f.iter().filter(|&&v| v > 0).count())
            .max()
            .unwrap()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..4 {
        let c = lone.train_clip(&mut rng, 2000).unwrap();
        assert_eq!(
            keys_at_once(&c),
            1,
            "a lone-note clip sounds one key at a time"
        );
        assert!(c.audio.iter().any(|x| x.abs() > 1e-3), "and sounds");
    }
    // performances hold chords; without the option a run draws the same clips as before
    let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(3), ChaCha8Rng::seed_from_u64(3));
    let without = SynthSource::open(&ReferencePiano::fluid(), rates, 0)
        .unwrap()
        .with_lone_notes(0.0);
    for _ in 0..3 {
        let (a, b) = (
            plain.train_clip(&mut r1, 2000).unwrap(),
            without.train_clip(&mut r2, 2000).unwrap(),
        );
        assert_eq!(a.audio, b.audio);
    }
    let chords = (0..6)
        .map(|_| keys_at_once(&plain.train_clip(&mut r1, 2000).unwrap()))
        .max()
        .unwrap();
    assert!(
        chords > 2,
        "performances play chords ({chords} keys at once)"
    );
    let (v1, v2) = (
        plain.held_out(Split::Validation, 2000, 2).unwrap(),
        lone.held_out(Split::Validation, 2000, 2).unwrap(),
    );
    for (a, b) in v1.iter().zip(&v2) {
        assert_eq!(
            a.audio, b.audio,
            "validation clips are performances either way"
        );
    }
}

/// Continuous poles (Hz, T60 in s) of every layer of a fresh model at `rate`.
fn fresh_poles(size: Size, poles: PoleInit, rate: u32) -> Vec<Vec<(f64, f64)>> {
    let net = Network::new(
        Device::Cpu,
        size,
        1,
        Activation::Tanh,
        InitOptions {
            poles,
            sample_rate: rate,
            seed: 3,
            gate: gated_keys::GATE,
        },
    )
    .unwrap();
    let vars = net.vs.variables();
    let values =
        |name: String| Vec::<f64>::try_from(vars[&name].to_kind(tch::Kind::Double)).unwrap();
    (0..4)
        .map(|i| {
            let (norm, angle) = (
                values(format!("layers.{i}.norm")),
                values(format!("layers.{i}.angle")),
            );
            let per_second = |x: f64| x * rate as f64;
            norm.iter()
                .zip(&angle)
                .map(|(n, a)| {
                    let (re, im) = (n.exp() * a.cos(), n.exp() * a.sin());
                    (
                        per_second(im.abs()) / (2.0 * std::f64::consts::PI),
                        6.9 / per_second(re.abs()),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn keyboard_init_rings_on_the_keys() {
    let key_hz = |m: u8| 440.0 * 2f64.powf((m as f64 - 69.0) / 12.0);
    let rings_at = |layer: &[(f64, f64)], hz: f64| {
        layer
            .iter()
            .any(|&(f, t60)| (1200.0 * (f / hz).log2()).abs() < 1.0 && t60 >= 0.9)
    };
    for (size, rate) in [(Size::S, 16_000), (Size::L, 24_000), (Size::XL, 24_000)] {
        let layers = fresh_poles(size, PoleInit::Keyboard, rate);
        for layer in &layers {
            // half of each layer's poles ring for a second or more on a key, the rest are short
            let ringing = layer
                .iter()
                .filter(|&&(f, t60)| {
                    t60 >= 0.9 && (21..128).any(|m| (1200.0 * (f / key_hz(m)).log2()).abs() < 1.0)
                })
                .count();
            assert_eq!(ringing, size.state() / 2, "{size:?}");
            assert!(
                layer.iter().all(|&(f, _)| f < 0.45 * rate as f64),
                "{size:?}: a pole above the band"
            );
        }
        // together the layers cover the keyboard: every key for L and XL, nearly every key for S
        let covered = (21..=108u8)
            .filter(|&m| layers.iter().any(|l| rings_at(l, key_hz(m))))
            .count();
        let need = if size == Size::S { 80 } else { 88 };
        assert!(
            covered >= need,
            "{size:?}: {covered} of 88 keys have a ringing pole"
        );
    }
    // the log-uniform alternative is not keyed to the keyboard
    let layers = fresh_poles(Size::L, PoleInit::LogUniform, 24_000);
    let covered = (21..=108u8)
        .filter(|&m| layers.iter().any(|l| rings_at(l, key_hz(m))))
        .count();
    assert!(covered < 20, "log-uniform poles hit {covered} keys");
}

/// A fresh model's states answer a key with about half its velocity whatever their pole:
/// B scaled by |λ| (fan-in scaling alone drives slow poles' states hundreds of times higher
/// and every tanh into saturation).
#[test]
fn fresh_states_have_unit_gain() {
    for poles in [PoleInit::Keyboard, PoleInit::LogUniform] {
        let net = Network::new(
            Device::Cpu,
            Size::S,
            1,
            Activation::Tanh,
            InitOptions {
                poles,
                sample_rate: 16_000,
                seed: 5,
                gate: gated_keys::GATE,
            },
        )
        .unwrap();
        let vars = net.vs.variables();
        let values = |name: String| {
            Vec::<f64>::try_from(vars[&name].to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
        };
        for i in 0..4 {
            let (norm, b) = (
                values(format!("layers.{i}.norm")),
                values(format!("layers.{i}.B")),
            );
            let inputs = b.len() / (2 * norm.len());
            let mut gains: Vec<f64> = norm
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    let row = &b[k * inputs * 2..(k + 1) * inputs * 2];
                    (row.iter().map(|v| v * v).sum::<f64>() / inputs as f64).sqrt() / n.exp()
                })
                .collect();
            gains.sort_by(f64::total_cmp);
            let (lo, hi) = (gains[0], gains[gains.len() - 1]);
            assert!(
                lo > 0.3 && hi < 0.8,
                "{poles:?} layer {i}: |B_k| / |λ_k| from {lo:.3} to {hi:.3}"
            );
        }
    }
}

/// `--weights` with `--damper-settle` gives an older damped model (no settling fade) its fade,
/// and `--model XL` grows an L; both are refused where they mean nothing.
#[test]
fn weights_take_a_settling_fade_and_grow() {
    let dir = tempfile::tempdir().unwrap();
    let net = Network::new(
        Device::Cpu,
        Size::L,
        1,
        Activation::Tanh,
        InitOptions {
            poles: PoleInit::DampedKeys,
            sample_rate: 16_000,
            seed: 1,
            gate: gated_keys::GATE,
        },
    )
    .unwrap();
    train(&args(&dir.path().join("base"), &["--model", "L"])).unwrap();
    let mut older = Model::load(&dir.path().join("base/model.safetensors")).unwrap();
    older.layers = net.to_runtime(older.info.clone()).unwrap().layers;
    older.layers[0].damper.as_mut().unwrap().settle_frames = 0;
    let path = dir.path().join("older.safetensors");
    older.save(&path).unwrap();
    let weights = path.to_str().unwrap();
    let out = dir.path().join("settled");
    let settle = [
        "--weights",
        weights,
        "--damper-settle",
        "9",
        "--model",
        "XL",
    ];
    train(&args(&out, &settle)).unwrap();
    let trained = Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(trained.layers[0].damper.as_ref().unwrap().settle_frames, 9);
    assert_eq!(trained.state_sizes(), vec![256; 4]);
    assert_eq!(trained.info.size, "XL");
    refused(
        &dir.path().join("no"),
        &["--damper-settle", "9"],
        "--weights",
    );
    let plain = dir.path().join("base/model.safetensors");
    let plain = ["--weights", plain.to_str().unwrap(), "--damper-settle", "9"];
    refused(&dir.path().join("no2"), &plain, "no key damper");
}

/// Training with `extra` fails with a message that names `says`.
fn refused(out: &Path, extra: &[&str], says: &str) {
    let err = train(&args(out, extra)).unwrap_err();
    assert!(format!("{err:#}").contains(says), "{err:#}");
}

/// `--drive` and `--open-skip` change a trained model's layer 1 → 2 path before training
/// (the exported model's skip is the base's × GAIN / K), `--criterion brightness` trains beside
/// the others; each is refused where it means nothing.
#[test]
fn a_trained_model_opens_its_skip_and_trains_for_brightness() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    train(&args(&base, &["--model", "L", "--init", "damped-keys"])).unwrap();
    let weights = base.join("model.safetensors");
    let weights = weights.to_str().unwrap();
    let open = dir.path().join("open");
    let extra = [
        "--weights",
        weights,
        "--drive",
        "10",
        "--open-skip",
        "20",
        "--lr",
        "1e-12",
        "--criterion",
        "combined-spectral",
        "brightness",
        "--brightness-weight",
        "30",
    ];
    train(&args(&open, &extra)).unwrap();
    let skip = |path: &Path| Model::load(path).unwrap().layers[1].skip.clone().unwrap();
    let (before, after) = (
        skip(&base.join("model.safetensors")),
        skip(&open.join("model.safetensors")),
    );
    for (b, a) in before.iter().zip(&after) {
        // at a learning rate of 1e-12, the skip is the transform's
        assert!(
            (a - 2.0 * b).abs() <= 1e-4 * b.abs().max(1e-3),
            "{b} became {a}, not ×2"
        );
    }
    let no = dir.path().join("no");
    refused(&no, &["--open-skip", "20"], "--weights");
    refused(
        &no,
        &["--weights", weights, "--open-skip", "0"],
        "--open-skip must be",
    );
    refused(
        &no,
        &["--brightness-weight=-1"],
        "--brightness-weight must be",
    );
}
