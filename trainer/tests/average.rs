//! `trainer average`: the weights' mean, poles averaged as the forward sees them, the training
//! constraints re-applied on request, and incompatible or dangerous inputs refused.

use std::path::{Path, PathBuf};

use ssm_runtime::model::stable_pole;
use ssm_runtime::soundcheck::{ModelRenderer, Renderer};
use ssm_runtime::Model;
use tch::Device;
use trainer::average::{self, AverageArgs, PoleMean};
use trainer::model::{Network, PoleInit, Size};

mod common;

use common::RATE;

fn fresh(size: Size, seed: u64) -> Model {
    common::fresh_model(size, PoleInit::GatedKeys, seed, 0.05)
}

/// The continuous-time pole the forward uses (stability rule: real part negative).
fn pole(norm: f32, angle: f32) -> (f64, f64) {
    let z = stable_pole(norm, angle);
    (z.re, z.im)
}

fn save(dir: &Path, name: &str, model: &Model) -> PathBuf {
    let path = dir.join(name);
    model.save(&path).unwrap();
    path
}

fn args(models: Vec<PathBuf>, out: PathBuf) -> AverageArgs {
    AverageArgs {
        models,
        out,
        rest_at_zero: false,
        later_t60: None,
        string_t60: None,
        poles: PoleMean::Stored,
        family: None,
        description: None,
    }
}

/// `model` with its biases settled so that a silent roll plays silence, as training leaves it.
fn settled(model: &Model) -> Model {
    let mut net = Network::from_runtime(Device::Cpu, model).unwrap();
    net.settle_rest(0.0);
    net.to_runtime(model.info.clone()).unwrap()
}

/// Peak of half a second of a silent roll, de-normalised.
fn rest_peak(model: &Model) -> f32 {
    let out = ModelRenderer {
        model,
        sample_rate: RATE,
    }
    .render(&[], 0.5);
    out.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn the_stored_parameters_are_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(Size::L, 2);
    // a neighbouring checkpoint: every angle 0.02 rad on, C three times as large
    let mut b = a.clone();
    for layer in &mut b.layers {
        layer.angle.iter_mut().for_each(|v| *v += 0.02);
        layer.c.iter_mut().for_each(|v| *v *= 3.0);
    }
    // and a touch square that `a` lacks: `a`'s counts as zero
    b.layers[0].b_square = Some(a.layers[0].b.iter().map(|v| 4.0 * v).collect());
    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];
    let avg = average::run(&args(paths, dir.path().join("avg.safetensors"))).unwrap();
    assert_eq!(
        Model::load(&dir.path().join("avg.safetensors")).unwrap(),
        avg
    );
    for (la, lavg) in a.layers.iter().zip(&avg.layers) {
        assert_eq!(la.norm, lavg.norm);
        for (x, m) in la.angle.iter().zip(&lavg.angle) {
            assert!((x + 0.01 - m).abs() < 1e-6, "angle {x} → {m}");
        }
        for (c, m) in la.c.iter().zip(&lavg.c) {
            assert!(
                (2.0 * c - m).abs() <= 1e-6 * c.abs().max(1.0),
                "C {c} → {m}"
            );
        }
    }
    let square = avg.layers[0]
        .b_square
        .as_ref()
        .expect("the mean keeps the touch square");
    for (b, m) in a.layers[0].b.iter().zip(square) {
        assert!(
            (2.0 * b - m).abs() <= 1e-6 * b.abs().max(1.0),
            "B_square {b} → {m}"
        );
    }
}

/// An angle and its mirror π − angle are one stable pole; their mean, π/2, would ring forever.
#[test]
fn mirrored_poles_from_unrelated_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(Size::L, 2);
    let mut b = a.clone();
    for angle in &mut b.layers[2].angle {
        *angle = std::f32::consts::PI - *angle;
    }
    assert!(
        (0..a.layers[2].angle.len()).all(|k| {
            let (pa, pb) = (
                pole(a.layers[2].norm[k], a.layers[2].angle[k]),
                pole(b.layers[2].norm[k], b.layers[2].angle[k]),
            );
            (pa.0 - pb.0).abs() < 1e-6 && (pa.1 - pb.1).abs() < 1e-6
        }),
        "the mirrored model plays the same poles"
    );
    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];
    let err = average::run(&args(paths, dir.path().join("avg.safetensors"))).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("layer 3") && msg.contains("not one run's"),
        "{msg}"
    );
    assert!(!dir.path().join("avg.safetensors").exists());

    // --poles forward averages the poles as played: the mirrored pair stays one pole
    let mut forward = args(
        paths_of(&dir, &["a", "b"]),
        dir.path().join("fwd.safetensors"),
    );
    forward.poles = PoleMean::Forward;
    let avg = average::run(&forward).unwrap();
    for (la, lavg) in a.layers.iter().zip(&avg.layers) {
        for k in 0..la.norm.len() {
            let (want, got) = (
                pole(la.norm[k], la.angle[k]),
                pole(lavg.norm[k], lavg.angle[k]),
            );
            let scale = want.0.hypot(want.1);
            assert!(
                (want.0 - got.0).abs() < 1e-5 * scale && (want.1 - got.1).abs() < 1e-5 * scale,
                "pole {k}: {want:?} became {got:?}"
            );
        }
    }
}

fn paths_of(dir: &tempfile::TempDir, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| dir.path().join(format!("{n}.safetensors")))
        .collect()
}

#[test]
fn rest_at_zero_resettles_an_average_of_settled_models() {
    let dir = tempfile::tempdir().unwrap();
    let a = settled(&fresh(Size::L, 2));
    // another model at rest, with layer 1's output bias moved
    let mut b = fresh(Size::L, 3);
    for v in b.layers[0].c_bias.iter_mut().step_by(2) {
        *v += 0.8;
    }
    let b = settled(&b);
    let (rest_a, rest_b) = (rest_peak(&a), rest_peak(&b));
    assert!(
        rest_a < 1e-4 && rest_b < 1e-4,
        "the inputs rest at {rest_a} and {rest_b}"
    );
    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];

    // tanh is not linear: the plain mean of two resting networks does not rest
    let plain = average::run(&args(paths.clone(), dir.path().join("plain.safetensors"))).unwrap();
    assert!(
        rest_peak(&plain) > 1e-3,
        "plain mean rests at {}",
        rest_peak(&plain)
    );

    let mut settled = args(paths, dir.path().join("settled.safetensors"));
    settled.rest_at_zero = true;
    let settled = average::run(&settled).unwrap();
    assert!(
        rest_peak(&settled) < 1e-4,
        "settled mean rests at {}",
        rest_peak(&settled)
    );
}

#[test]
fn later_t60_limits_the_averaged_poles() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(Size::L, 2);
    let mut b = a.clone();
    // a pole of layer 2 at e^-6 of its magnitude: its decay too, a ring of minutes
    b.layers[1].norm[0] -= 6.0;
    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];
    let mut limited = args(paths, dir.path().join("avg.safetensors"));
    limited.later_t60 = Some(0.2);
    let avg = average::run(&limited).unwrap();
    // a limit that is not a positive duration is refused (train's test does the same)
    for bad in [0.0, -0.2, f64::NAN, f64::INFINITY] {
        let mut wrong = limited.clone();
        wrong.later_t60 = Some(bad);
        let err = average::run(&wrong).unwrap_err();
        assert!(format!("{err:#}").contains("--later-t60"), "{bad}: {err:#}");
    }
    let min_decay = 6.9 / (0.2 * RATE as f64);
    for layer in &avg.layers[1..] {
        for k in 0..layer.norm.len() {
            let (re, _) = pole(layer.norm[k], layer.angle[k]);
            assert!(
                -re >= min_decay * (1.0 - 1e-4),
                "decay {} < {min_decay}",
                -re
            );
        }
    }
}

/// `--string-t60` on one model: that model with its short first-layer strings lengthened,
/// every other weight as it was.
#[test]
fn string_t60_lengthens_one_models_strings() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(Size::L, 2);
    let floor = 2.5;
    let decay = |m: &Model, k: usize| -pole(m.layers[0].norm[k], m.layers[0].angle[k]).0;
    let max_decay = 6.9 / (floor * RATE as f64);
    let states = a.layers[0].norm.len();
    let short = (0..states).filter(|&k| decay(&a, k) > max_decay).count();
    assert!(
        short > 0,
        "the fresh model should have strings shorter than {floor} s"
    );
    let mut floored = args(
        vec![save(dir.path(), "a.safetensors", &a)],
        dir.path().join("floored.safetensors"),
    );
    floored.string_t60 = Some(floor);
    let out = average::run(&floored).unwrap();
    for k in 0..states {
        let expected = decay(&a, k).min(max_decay);
        assert!(
            (decay(&out, k) - expected).abs() <= 2e-3 * expected,
            "state {k}: decay {} for {expected}",
            decay(&out, k)
        );
    }
    assert_eq!(out.layers[0].b, a.layers[0].b);
    assert_eq!(out.layers[1].norm, a.layers[1].norm);
    floored.string_t60 = Some(-1.0);
    let err = average::run(&floored).unwrap_err();
    assert!(format!("{err:#}").contains("--string-t60"), "{err:#}");
}

#[test]
fn refuses_mismatched_models_and_overwriting_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let l = save(dir.path(), "l.safetensors", &fresh(Size::L, 2));
    let xl = save(dir.path(), "xl.safetensors", &fresh(Size::XL, 2));
    let err = average::run(&args(
        vec![l.clone(), xl.clone()],
        dir.path().join("o.safetensors"),
    ))
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("xl.safetensors") && msg.contains("architecture"),
        "{msg}"
    );

    let before = std::fs::read(&l).unwrap();
    let err = average::run(&args(vec![l.clone(), l.clone()], l.clone())).unwrap_err();
    assert!(format!("{err:#}").contains("overwritten"), "{err:#}");
    assert_eq!(std::fs::read(&l).unwrap(), before, "the input is untouched");

    let broken = dir.path().join("broken.safetensors");
    std::fs::write(&broken, b"not a model").unwrap();
    let err = average::run(&args(vec![l, broken], dir.path().join("o.safetensors"))).unwrap_err();
    assert!(format!("{err:#}").contains("broken.safetensors"), "{err:#}");
}

/// A fine-tune on another seed's data has other normalisation statistics: the same network in
/// other units must average to the same sound, not to a mix of two scales.
#[test]
fn models_in_other_units_are_converted_before_averaging() {
    let dir = tempfile::tempdir().unwrap();
    let a = settled(&fresh(Size::L, 2));
    // a plays audio = out · 0.05; b is the same network with audio = out · 0.1 + 0.01
    let mut b = a.clone();
    b.info.norm_std = 0.1;
    b.info.norm_mean = 0.01;
    b.head_weight.iter_mut().for_each(|w| *w /= 2.0);
    b.head_bias
        .iter_mut()
        .for_each(|v| *v = (*v as f64 * 0.05 / 0.1 - 0.01 / 0.1) as f32);
    let note = [
        (
            0.05,
            ssm_runtime::KeyEvent::NoteOn {
                note: 60,
                velocity: 100,
            },
        ),
        (0.25, ssm_runtime::KeyEvent::NoteOff { note: 60 }),
    ];
    let play = |m: &Model| {
        ModelRenderer {
            model: m,
            sample_rate: RATE,
        }
        .render(&note, 0.4)
    };
    let (want, same) = (play(&a), play(&b));
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = |x: &[f32]| {
        x.iter()
            .zip(&want)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
    };
    assert!(
        peak > 1e-3 && worst(&same) < 1e-4 * peak.max(1.0),
        "b plays what a plays"
    );

    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];
    let avg = average::run(&args(paths, dir.path().join("avg.safetensors"))).unwrap();
    let got = play(&avg);
    assert!(
        worst(&got) < 1e-4 * peak.max(1.0),
        "the average plays a's sound: off by {} of {peak}",
        worst(&got)
    );
}

/// Models whose key dampers fall or settle over different times play releases differently:
/// their mean would be neither's.
#[test]
fn differing_dampers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = fresh(Size::L, 2);
    let first = &mut a.layers[0];
    let mut damper = ssm_runtime::model::Damper::none(&first.norm, &first.angle);
    damper.key[0] = Some(39);
    damper.fall_frames = 12;
    damper.settle_frames = 6;
    first.damper = Some(damper);
    let mut same = a.clone();
    same.layers[0].b[0] += 0.01;
    let ok = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "same.safetensors", &same),
    ];
    let mut described = args(ok, dir.path().join("ok.safetensors"));
    described.description = Some("credit where it is due".into());
    let avg = average::run(&described).unwrap();
    assert_eq!(avg.info.description, "credit where it is due");
    for (name, change) in [
        (
            "fall",
            (|d| d.fall_frames = 6) as fn(&mut ssm_runtime::model::Damper),
        ),
        ("settle", |d| d.settle_frames = 12),
    ] {
        let mut b = a.clone();
        change(b.layers[0].damper.as_mut().unwrap());
        let paths = vec![
            save(dir.path(), "a.safetensors", &a),
            save(dir.path(), &format!("{name}.safetensors"), &b),
        ];
        let err = average::run(&args(paths, dir.path().join("avg.safetensors"))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("key dampers differ"), "{name}: {msg}");
    }
}
