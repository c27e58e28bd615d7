//! `trainer average`: the weights' mean, poles averaged as the forward sees them, the training
//! constraints re-applied on request, and incompatible or dangerous inputs refused.

use std::path::{Path, PathBuf};

use ssm_runtime::soundcheck::{ModelRenderer, Renderer};
use ssm_runtime::{Activation, Model, ModelInfo};
use tch::Device;
use trainer::average::{self, AverageArgs};
use trainer::init::gated_keys;
use trainer::model::{InitOptions, PianoSsm, PoleInit, Size};

const RATE: u32 = 16_000;

fn fresh(size: Size, seed: u64) -> Model {
    let net = PianoSsm::new(
        Device::Cpu,
        size,
        1,
        Activation::Tanh,
        InitOptions {
            poles: PoleInit::GatedKeys,
            sample_rate: RATE,
            seed,
            gate: gated_keys::GATE,
        },
    )
    .unwrap();
    net.to_runtime(ModelInfo {
        family: "test".into(),
        size: size.label().into(),
        activation: Activation::Tanh,
        train_rate: RATE,
        midi_rate: 1_000,
        norm_mean: 0.0,
        norm_std: 0.05,
        heads: vec!["only".into()],
        head_kind: None,
        description: String::new(),
    })
    .unwrap()
}

/// The continuous-time pole the forward uses (stability rule: real part negative).
fn pole(norm: f32, angle: f32) -> (f64, f64) {
    let mag = (norm as f64).exp();
    let angle = angle as f64;
    (-(mag * angle.cos()).abs(), mag * angle.sin())
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
        family: None,
    }
}

/// `model` with its biases settled so that a silent roll plays silence, as training leaves it.
fn settled(model: &Model) -> Model {
    let mut net = PianoSsm::from_runtime(Device::Cpu, model).unwrap();
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
fn poles_are_averaged_where_the_forward_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(Size::L, 2);
    // the same poles stored as π − angle (the stability rule maps both to one pole), and C ×3
    let mut b = a.clone();
    for layer in &mut b.layers {
        for angle in &mut layer.angle {
            *angle = std::f32::consts::PI - *angle;
        }
        for c in &mut layer.c {
            *c *= 3.0;
        }
    }
    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];
    let avg = average::run(&args(paths, dir.path().join("avg.safetensors"))).unwrap();
    let reloaded = Model::load(&dir.path().join("avg.safetensors")).unwrap();
    assert_eq!(reloaded.layers[0].c, avg.layers[0].c);
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
        for (c, cavg) in la.c.iter().zip(&lavg.c) {
            assert!(
                (2.0 * c - cavg).abs() <= 1e-6 * c.abs().max(1.0),
                "{c} → {cavg}"
            );
        }
    }
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
    // a nearly undamped pole in layer 2
    b.layers[1].angle[0] = std::f32::consts::FRAC_PI_2 - 1e-5;
    let paths = vec![
        save(dir.path(), "a.safetensors", &a),
        save(dir.path(), "b.safetensors", &b),
    ];
    let mut limited = args(paths, dir.path().join("avg.safetensors"));
    limited.later_t60 = Some(0.2);
    let avg = average::run(&limited).unwrap();
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
