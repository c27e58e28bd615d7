//! Growing an L into an XL (`--weights L --model XL`): the grown model plays what the L
//! played, through the engine, releases, damper and touch square included; the added states
//! learn.

use ssm_runtime::model::Model;
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::Roll;
use ssm_runtime::{Engine, KeyFrame, KEYS};
use tch::{Device, Kind, Tensor};
use trainer::grow::grow;
use trainer::model::{Network, PoleInit, Size};

mod common;

use common::RATE;

fn fresh(size: Size, seed: u64) -> Model {
    common::fresh_model(size, PoleInit::DampedKeys, seed, 1.0)
}

/// A chord with a release while other keys ring, a re-strike, silence after.
fn phrase() -> Vec<KeyFrame> {
    let mut frames = vec![[0u8; KEYS]; 600];
    for f in &mut frames[10..300] {
        f[39] = 100;
    }
    for f in &mut frames[10..200] {
        f[43] = 80;
    }
    for f in &mut frames[150..400] {
        f[46] = 60;
    }
    for f in &mut frames[250..260] {
        f[43] = 127;
    }
    frames
}

fn render(model: &Model, rate: u32) -> Vec<f32> {
    let mut engine = Engine::new(model, rate).unwrap();
    let roll = Roll {
        midi_rate: 1_000,
        frames: phrase(),
    };
    render_roll(&mut engine, &roll, |_, _| {})
}

#[test]
fn a_grown_model_plays_what_the_small_one_played() {
    // an L whose weights moved off the init, so every state is heard
    let mut small = fresh(Size::L, 1);
    let mut seed = 7u64;
    for v in small.layers.iter_mut().flat_map(|l| l.c.iter_mut()) {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        *v += 0.02 * (((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5);
    }
    // with a touch square unlike its B, which the grown model must keep
    let first = &mut small.layers[0];
    first.b_square = Some(first.b.iter().rev().map(|v| 0.5 * v).collect());
    let big = grow(&small, fresh(Size::XL, 2)).unwrap();
    assert_eq!(big.state_sizes(), vec![256; 4]);
    assert_eq!(big.info.size, "XL");
    for rate in [RATE, 48_000] {
        let (a, b) = (render(&small, rate), render(&big, rate));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let peak = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(peak > 1e-3, "the phrase should sound");
        assert!(
            worst <= 1e-5 * peak,
            "{rate} Hz: differs by {worst} (peak {peak})"
        );
    }
    // the added states' output weights get a gradient at once
    let net = Network::from_runtime(Device::Cpu, &big).unwrap();
    let roll = trainer::roll_tensor(&phrase(), Device::Cpu);
    let out = net.forward_train(&roll, &Tensor::from_slice(&[0i64]), 16, 1.0);
    let loss = out.audio.square().mean(Kind::Float);
    out.backward(&loss);
    for (name, t) in net.vs.variables() {
        if name.ends_with(".C") {
            let added = t.grad().narrow(1, 128, 128).abs().sum(Kind::Double);
            assert!(
                added.double_value(&[]) > 0.0,
                "{name}: no gradient on the added states"
            );
        }
    }
}

#[test]
fn a_model_that_does_not_fit_is_refused() {
    let err = grow(&fresh(Size::XL, 1), fresh(Size::L, 2)).unwrap_err();
    assert!(format!("{err}").contains("do not fit"), "{err}");
}
