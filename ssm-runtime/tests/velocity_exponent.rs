//! The first layer's velocity exponent (`layers.0.velocity_exponent`, format version 2): it
//! survives a save and load, makes the file version 2, reads a roll value `v` as
//! `(v/127)^e` — through strikes, releases with and without a key damper, and sums of
//! overlapping notes — and out-of-range or misplaced exponents are refused by name.

mod common;

use ssm_runtime::model::{Damper, Model};
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::Roll;
use ssm_runtime::{Engine, KeyFrame, KEYS};

fn published() -> Model {
    common::checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth")
}

/// The S checkpoint with a key damper on its first 88 states (so releases move equilibria).
fn damped(mut m: Model) -> Model {
    let first = &mut m.layers[0];
    let mut d = Damper::none(&first.norm, &first.angle);
    for (p, k) in d.key.iter_mut().enumerate().take(KEYS.min(first.state)) {
        *k = Some(p as u8);
    }
    for v in &mut d.norm {
        *v += 10f32.ln();
    }
    d.fall_frames = 5;
    d.settle_frames = 4;
    first.damper = Some(d);
    m
}

fn version(bytes: &[u8]) -> String {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().as_ref().unwrap()["format_version"].clone()
}

/// Each key at one fixed value while it sounds (so a per-key scale of B is the same input):
/// C4 at 190 (two overlapping notes summed), E4 at 64, a bass key at 20, released at
/// different frames, then silence.
const PLAYED: [(usize, u8, usize, usize); 3] =
    [(39, 190, 20, 300), (43, 64, 60, 200), (3, 20, 40, 250)];

fn phrase() -> Vec<KeyFrame> {
    let mut frames = vec![[0u8; KEYS]; 450];
    for (key, v, from, to) in PLAYED {
        for f in &mut frames[from..to] {
            f[key] = v;
        }
    }
    frames
}

fn render(model: &Model) -> Vec<f32> {
    let mut engine = Engine::new(model, 16_000).unwrap();
    let roll = Roll {
        midi_rate: 1000,
        frames: phrase(),
    };
    render_roll(&mut engine, &roll, |_, _| {})
}

/// `model` without an exponent, its B columns scaled so that each played key's `v/127`
/// arrives as `(v/127)^e`: the network the exponent must play.
fn scaled_columns(mut model: Model, e: f64) -> Model {
    let first = &mut model.layers[0];
    let inputs = first.inputs;
    for (key, v, _, _) in PLAYED {
        let u = v as f64 / 127.0;
        let scale = u.powf(e) / u;
        for p in 0..first.state {
            for part in 0..2 {
                first.b[(p * inputs + key) * 2 + part] *= scale as f32;
            }
        }
    }
    model
}

#[test]
fn an_exponent_round_trips_as_version_2() {
    let mut model = published();
    model.layers[0].velocity_exponent = Some(2.0);
    let bytes = model.to_bytes().unwrap();
    assert_eq!(version(&bytes), "2");
    assert_eq!(Model::from_bytes(&bytes).unwrap(), model);
}

#[test]
fn the_first_layer_reads_velocity_raised_to_the_exponent() {
    for (label, base) in [("plain", published()), ("damped", damped(published()))] {
        for e in [2.0f32, 0.5] {
            let mut with = base.clone();
            with.layers[0].velocity_exponent = Some(e);
            let expected = render(&scaled_columns(base.clone(), e as f64));
            let err = common::relative_l2(&render(&with), &expected);
            // and the exponent is audible: without it the same phrase plays otherwise
            let linear = common::relative_l2(&render(&base), &expected);
            eprintln!("{label}, exponent {e}: {err:.2e} (linear {linear:.2e})");
            assert!(err < 1e-5, "{label}, exponent {e}: relative L2 {err:.3e}");
            assert!(linear > 1e-2, "{label}, exponent {e}: {linear:.3e}");
        }
    }
}

#[test]
fn bad_exponents_are_refused_by_name() {
    for (layer, e) in [(0, 0.0), (0, 5.0), (0, f32::NAN), (0, -1.0), (1, 2.0)] {
        let mut model = published();
        model.layers[layer].velocity_exponent = Some(e);
        let name = format!("layers.{layer}.velocity_exponent");
        let err = model.validate().expect_err(&name);
        assert!(err.to_string().contains(&name), "{name} = {e}: {err}");
    }
}
