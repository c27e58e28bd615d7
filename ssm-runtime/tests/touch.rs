//! How the first layer reads a key's touch.
//!
//! The velocity exponent (`layers.0.velocity_exponent`, format version 2): it survives a save
//! and load, makes the file version 2, reads a roll value `v` as `(v/127)^e` — through
//! strikes, releases with and without a key damper, and sums of overlapping notes — and
//! out-of-range or misplaced exponents are refused by name.
//!
//! The touch square (`layers.0.B_square`, format version 3): it survives a save and load,
//! makes the file version 3, adds `t²·B_square` to each key's `t·B` (with and without an
//! exponent and a damper), and a misplaced or misshapen one is refused by name.

use ssm_runtime::model::Model;
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::Roll;
use ssm_runtime::{Engine, KeyFrame, KEYS};

fn published() -> Model {
    test_support::checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth")
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

/// `model` without an exponent or a touch square, its B columns folded so that each played
/// key's `v/127` arrives as `t·B + t²·B_square` with `t = (v/127)^e`: the network the
/// exponent and the square must play (each key sounds at one value, so the fold is exact).
fn folded_columns(mut model: Model, e: f64) -> Model {
    let first = &mut model.layers[0];
    let inputs = first.inputs;
    let square = first.b_square.take();
    first.velocity_exponent = None;
    for (key, v, _, _) in PLAYED {
        let u = v as f64 / 127.0;
        let t = u.powf(e);
        for p in 0..first.state {
            for part in 0..2 {
                let at = (p * inputs + key) * 2 + part;
                let b2 = square.as_ref().map_or(0.0, |s| s[at] as f64);
                first.b[at] = ((t * first.b[at] as f64 + t * t * b2) / u) as f32;
            }
        }
    }
    model
}

/// A touch square unlike B: each state's B row shifted by one key and tripled.
fn with_square(mut model: Model) -> Model {
    let first = &mut model.layers[0];
    let inputs = first.inputs;
    let square = (0..first.b.len())
        .map(|at| {
            let (p, k, part) = (at / (2 * inputs), at / 2 % inputs, at % 2);
            3.0 * first.b[(p * inputs + (k + 1) % inputs) * 2 + part]
        })
        .collect();
    first.b_square = Some(square);
    model
}

#[test]
fn an_exponent_round_trips_as_version_2() {
    let mut model = published();
    model.layers[0].velocity_exponent = Some(2.0);
    let bytes = model.to_bytes().unwrap();
    assert_eq!(test_support::format_version(&bytes), "2");
    assert_eq!(Model::from_bytes(&bytes).unwrap(), model);
}

#[test]
fn the_first_layer_reads_velocity_raised_to_the_exponent() {
    for (label, base) in [
        ("plain", published()),
        ("damped", test_support::with_test_damper(published())),
    ] {
        for e in [2.0f32, 0.5] {
            let mut with = base.clone();
            with.layers[0].velocity_exponent = Some(e);
            let expected = render(&folded_columns(with.clone(), e as f64));
            let err = test_support::relative_l2(&render(&with), &expected);
            // and the exponent is audible: without it the same phrase plays otherwise
            let linear = test_support::relative_l2(&render(&base), &expected);
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

#[test]
fn a_touch_square_round_trips_as_version_3() {
    let model = with_square(test_support::with_test_damper(published()));
    let bytes = model.to_bytes().unwrap();
    assert_eq!(test_support::format_version(&bytes), "3");
    assert_eq!(Model::from_bytes(&bytes).unwrap(), model);
    assert_eq!(model.format_version(), 3);
    assert_eq!(
        test_support::with_test_damper(published()).format_version(),
        2
    );
    assert_eq!(published().format_version(), 1);
}

#[test]
fn the_first_layer_adds_the_touch_squared_through_b_square() {
    for (label, base) in [
        ("plain", published()),
        ("damped", test_support::with_test_damper(published())),
    ] {
        for e in [None, Some(2.0f32)] {
            let mut with = with_square(base.clone());
            with.layers[0].velocity_exponent = e;
            let expected = render(&folded_columns(with.clone(), e.map_or(1.0, f64::from)));
            let err = test_support::relative_l2(&render(&with), &expected);
            // and the square is audible: without it the same phrase plays otherwise
            let mut without = with.clone();
            without.layers[0].b_square = None;
            let linear = test_support::relative_l2(&render(&without), &expected);
            eprintln!("{label}, exponent {e:?}: {err:.2e} (without the square {linear:.2e})");
            assert!(err < 1e-5, "{label}, exponent {e:?}: relative L2 {err:.3e}");
            assert!(linear > 1e-2, "{label}, exponent {e:?}: {linear:.3e}");
        }
    }
}

#[test]
fn misplaced_or_misshapen_touch_squares_are_refused_by_name() {
    let mut second = published();
    second.layers[1].b_square = Some(second.layers[1].b.clone());
    let mut short = with_square(published());
    short.layers[0].b_square.as_mut().unwrap().pop();
    let mut nan = with_square(published());
    nan.layers[0].b_square.as_mut().unwrap()[7] = f32::NAN;
    for (label, model, name) in [
        ("second layer", second, "layers.1.B_square"),
        ("one value short", short, "layers.0.B_square"),
        ("not finite", nan, "layers.0.B_square"),
    ] {
        let err = model.validate().expect_err(label);
        assert!(err.to_string().contains(name), "{label}: {err}");
    }
}
