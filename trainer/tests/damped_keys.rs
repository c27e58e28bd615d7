//! The key damper (model format version 2) and the damped-keys initialisation: the trainer's
//! closed-form forward plays what the engine's per-sample recurrence plays, at the training
//! rate and another, with overlapping notes and re-strikes, fresh and after training moved
//! the weights, with a velocity exponent and with a touch square (format version 3); a
//! released key stops without a click; and while no key is released a damper that tags no
//! state is the plain layer (the FFT path).

use ssm_runtime::model::Model;
use ssm_runtime::render::render_roll;
use ssm_runtime::roll::Roll;
use ssm_runtime::{Activation, Engine, KeyFrame, ModelInfo, KEYS};
use tch::{Device, Kind, Tensor};
use test_support::relative_l2;
use trainer::listen::rms;
use trainer::model::{InitOptions, Network, PoleInit, Size};

const TRAIN_RATE: u32 = 16_000;
const MIDI_RATE: u32 = 1_000;

fn fresh(size: Size) -> anyhow::Result<Network> {
    Network::new(
        Device::Cpu,
        size,
        1,
        Activation::Tanh,
        InitOptions {
            poles: PoleInit::DampedKeys,
            sample_rate: TRAIN_RATE,
            seed: 3,
            gate: 3.0,
        },
    )
}

fn info() -> ModelInfo {
    ModelInfo {
        family: "test".into(),
        size: "L".into(),
        activation: Activation::Tanh,
        train_rate: TRAIN_RATE,
        midi_rate: MIDI_RATE,
        norm_mean: 0.0,
        norm_std: 1.0,
        heads: vec!["only".into()],
        head_kind: None,
        description: String::new(),
    }
}

/// A phrase that switches the damper often: a chord, a re-strike of a sounding key, a key
/// released while another key's partials ring into it, values above 127 (overlapping notes
/// add), and silence after.
fn phrase(frames: usize) -> Vec<KeyFrame> {
    let mut roll = vec![[0u8; KEYS]; frames];
    let mut hold = |key: usize, from: usize, to: usize, v: u8| {
        for f in &mut roll[from..to.min(frames)] {
            f[key] = f[key].saturating_add(v);
        }
    };
    hold(39, 10, 300, 100); // C4
    hold(43, 10, 200, 80);
    hold(46, 120, 400, 60);
    hold(39, 150, 260, 90); // overlapping: C4 sums to 190
    hold(12, 50, 51, 127); // a note one frame long
    hold(70, 310, 330, 40);
    roll
}

/// `model` as training leaves it: the first layer's B and C moved off the init's pattern, so
/// each key drives every state and the output reads the states' equilibria (the init's are
/// invisible to it).
fn trained_like(mut model: Model) -> Model {
    let mut seed = 0x2545_f491_u64;
    let mut noise = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    };
    let l = &mut model.layers[0];
    let scale = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let (b, c) = (scale(&l.b), scale(&l.c));
    l.b.iter_mut().for_each(|v| *v += 0.2 * b * noise());
    l.c.iter_mut().for_each(|v| *v += 0.2 * c * noise());
    model
}

fn trainer_render(net: &Network, frames: &[KeyFrame], hold: i64, step: f64) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let roll = trainer::roll_tensor(frames, Device::Cpu);
    let out = net.forward(&roll, &Tensor::from_slice(&[0i64]), hold, step);
    Vec::<f32>::try_from(out.squeeze_dim(0).to_kind(Kind::Float)).unwrap()
}

fn engine_render(model: &Model, frames: &[KeyFrame], rate: u32) -> Vec<f32> {
    let mut engine = Engine::new(model, rate).unwrap();
    let roll = Roll {
        midi_rate: MIDI_RATE,
        frames: frames.to_vec(),
    };
    render_roll(&mut engine, &roll, |_, _| {})
}

#[test]
fn trainer_and_engine_play_the_damper_alike() {
    let model = fresh(Size::L).unwrap().to_runtime(info()).unwrap();
    assert!(model.layers[0].damper.is_some());
    let mut exponent = trained_like(model.clone());
    exponent.layers[0].velocity_exponent = Some(2.0);
    let squared = with_square(exponent.clone());
    for (label, model) in [
        ("fresh", model.clone()),
        ("trained", trained_like(model)),
        ("velocity exponent 2", exponent),
        ("touch square", squared),
    ] {
        trainer_and_engine_agree(label, &model);
    }
}

/// `model` with a touch square unlike its B (B's values in reverse order, doubled).
fn with_square(mut model: Model) -> Model {
    let first = &mut model.layers[0];
    first.b_square = Some(first.b.iter().rev().map(|v| 2.0 * v).collect());
    model
}

/// A touch square added by the trainer starts at zero, so the network plays as before, and
/// the loss's gradient reaches it at once.
#[test]
fn an_added_touch_square_is_silent_until_trained() {
    let mut model = trained_like(fresh(Size::L).unwrap().to_runtime(info()).unwrap());
    model.layers[0].velocity_exponent = Some(2.0);
    let before = Network::from_runtime(Device::Cpu, &model).unwrap();
    let mut net = Network::from_runtime(Device::Cpu, &model).unwrap();
    net.add_touch_square();
    assert!(net.has_touch_square() && !before.has_touch_square());
    let frames = phrase(400);
    let err = relative_l2(
        &trainer_render(&net, &frames, 16, 1.0),
        &trainer_render(&before, &frames, 16, 1.0),
    );
    assert!(err < 1e-6, "relative L2 {err:.3e}");
    let roll = trainer::roll_tensor(&frames, Device::Cpu);
    let out = net.forward_train(&roll, &Tensor::from_slice(&[0i64]), 16, 1.0);
    let loss = out.audio.square().mean(Kind::Float);
    out.backward(&loss);
    let square = &net.vs.variables()["layers.0.B_square"];
    let g = square.grad().abs().sum(Kind::Double).double_value(&[]);
    assert!(g.is_finite() && g > 0.0, "gradient {g}");
    // and it is saved with the model: format version 3
    let saved = net.to_runtime(info()).unwrap();
    assert_eq!(saved.format_version(), 3);
    assert!(saved.layers[0]
        .b_square
        .as_ref()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
}

fn trainer_and_engine_agree(label: &str, model: &Model) {
    let net = Network::from_runtime(Device::Cpu, model).unwrap();
    let frames = phrase(500);
    for rate in [TRAIN_RATE, 48_000] {
        let hold = (rate / MIDI_RATE) as i64;
        let ours = trainer_render(&net, &frames, hold, TRAIN_RATE as f64 / rate as f64);
        let engine = engine_render(model, &frames, rate);
        let err = relative_l2(&ours, &engine);
        // the same network without its damper, through the FFT path: float32's own floor
        let mut plain_model = model.clone();
        plain_model.layers[0].damper = None;
        let plain = Network::from_runtime(Device::Cpu, &plain_model).unwrap();
        let floor = relative_l2(
            &trainer_render(&plain, &frames, hold, TRAIN_RATE as f64 / rate as f64),
            &engine_render(&plain_model, &frames, rate),
        );
        eprintln!(
            "{label}, {rate} Hz: trainer against engine, relative L2 {err:.2e} (undamped \
             {floor:.2e})"
        );
        // float32 rounding of the per-frame tables and the scan: 1.3e-4 at 48 kHz, where the
        // same forward in float64 meets the engine at 1.3e-5 (the engine's own f32 floor)
        assert!(err < 5e-4, "{label}, {rate} Hz: relative L2 {err:.3e}");
    }
}

#[test]
fn a_damper_that_damps_nothing_is_the_plain_layer() {
    let model = fresh(Size::L).unwrap().to_runtime(info()).unwrap();
    let mut model = trained_like(model);
    // no state tagged and no key released: the layer is time-invariant, through the closed
    // form and scan
    model.layers[0].damper.as_mut().unwrap().key.fill(None);
    let same = Network::from_runtime(Device::Cpu, &model).unwrap();
    model.layers[0].damper = None;
    let plain = Network::from_runtime(Device::Cpu, &model).unwrap();
    let mut frames = phrase(500);
    // every key held from its first note to the end
    for f in 1..frames.len() {
        let before = frames[f - 1];
        for (k, v) in frames[f].iter_mut().enumerate() {
            *v = (*v).max(before[k]);
        }
    }
    for f in 1..frames.len() {
        assert!((0..KEYS).all(|k| frames[f - 1][k] == 0 || frames[f][k] > 0));
    }
    let (a, b) = (
        trainer_render(&same, &frames, 16, 1.0),
        trainer_render(&plain, &frames, 16, 1.0),
    );
    let err = relative_l2(&a, &b);
    // float32: 1.2e-4 (the trained-like weights' own floor against the engine is 7e-5)
    assert!(err < 3e-4, "closed form against FFT: relative L2 {err:.3e}");
}

/// A4 held 0.2 s then released: 0.3–0.5 s later the damped network is more than 60 dB below
/// the held level, and without the damper (no state tagged) it rings on.
#[test]
fn a_released_key_is_damped() {
    let net = fresh(Size::L).unwrap();
    let mut model = net.to_runtime(info()).unwrap();
    let mut frames = vec![[0u8; KEYS]; 800];
    for f in &mut frames[..200] {
        f[48] = 127;
    }
    let level = |m: &Model| {
        let out = engine_render(m, &frames, TRAIN_RATE);
        let ms = |t: usize| t * TRAIN_RATE as usize / 1000;
        20.0 * (rms(&out[ms(500)..ms(700)]) / rms(&out[ms(0)..ms(200)])).log10()
    };
    let damped = level(&model);
    model.layers[0].damper.as_mut().unwrap().key.fill(None);
    let undamped = level(&model);
    eprintln!("released A4: {damped:.1} dB damped, {undamped:.1} dB undamped");
    assert!(damped < -60.0, "damped: {damped:.1} dB");
    assert!(undamped > -30.0, "undamped: {undamped:.1} dB");
}

/// After training moved B and C, a release must still not click: A4 and C5 held, A4
/// released; the energy above 2 kHz in the 60 ms after the release stays below that in the
/// 60 ms before. Dropping the equilibrium at once (no settling fade) is a step in the output
/// at every release: measured +30 dB.
#[test]
fn a_release_does_not_click() {
    let rate = 48_000;
    let mut frames = vec![[0u8; KEYS]; 800];
    for f in &mut frames[..500] {
        f[51] = 90;
    }
    for f in &mut frames[..300] {
        f[48] = 70;
    }
    let burst = |m: &Model| {
        let out = engine_render(m, &frames, rate);
        let at = 300 * rate as usize / MIDI_RATE as usize;
        let n = 60 * rate as usize / 1000;
        let high = |x: &[f32]| high_energy(x, rate as f64, 2000.0);
        10.0 * (high(&out[at..at + n]) / high(&out[at - n..at])).log10()
    };
    let mut model = trained_like(fresh(Size::L).unwrap().to_runtime(info()).unwrap());
    let settled = burst(&model);
    model.layers[0].damper.as_mut().unwrap().settle_frames = 0;
    let dropped = burst(&model);
    eprintln!("release burst: {settled:+.1} dB settling, {dropped:+.1} dB dropped at once");
    assert!(settled < 0.0, "settling: {settled:+.1} dB");
    assert!(
        dropped > settled + 10.0,
        "dropped at once: {dropped:+.1} dB"
    );
}

/// Energy above `from` Hz of a Hann-windowed frame (a plain DFT: the frames are short).
fn high_energy(x: &[f32], rate: f64, from: f64) -> f64 {
    let n = x.len();
    let w = |i: usize| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
    let first = (from * n as f64 / rate).ceil() as usize;
    (first..n / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, v) in x.iter().enumerate() {
                let a = 2.0 * std::f64::consts::PI * (k * i) as f64 / n as f64;
                re += w(i) * *v as f64 * a.cos();
                im -= w(i) * *v as f64 * a.sin();
            }
            re * re + im * im
        })
        .sum()
}

/// The damped poles learn: the loss's gradient reaches them.
#[test]
fn the_damped_poles_get_gradients() {
    let net = fresh(Size::L).unwrap();
    let roll = trainer::roll_tensor(&phrase(400), Device::Cpu);
    let out = net.forward_train(&roll, &Tensor::from_slice(&[0i64]), 16, 1.0);
    let loss = out.audio.square().mean(Kind::Float);
    out.backward(&loss);
    let grads: Vec<(String, f64)> = net
        .vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.contains("damper"))
        .map(|(name, t)| (name, t.grad().abs().sum(Kind::Double).double_value(&[])))
        .collect();
    assert_eq!(grads.len(), 2, "{grads:?}");
    for (name, g) in grads {
        assert!(g.is_finite() && g > 0.0, "{name}: gradient {g}");
    }
}

#[test]
fn the_damped_keys_init_needs_a_state_per_key() {
    let err = fresh(Size::S).err().expect("S has 64 states: too few");
    assert!(
        format!("{err}").contains("needs at least 88 states"),
        "{err}"
    );
    assert!(fresh(Size::XL).is_ok());
}

/// `--later-t60` caps the damped poles too: training stretched some to 20 s without it.
#[test]
fn later_t60_caps_the_damped_poles() {
    let mut net = fresh(Size::L).unwrap();
    {
        // as 7 epochs did: damped poles ten times slower than the init's 0.1 s
        let _guard = tch::no_grad_guard();
        for (name, mut t) in net.vs.variables() {
            if name.ends_with("damper_norm") {
                let _ = t.g_sub_scalar_(10f64.ln());
            }
        }
    }
    let longest = |net: &Network| {
        let d = net.to_runtime(info()).unwrap().layers[0]
            .damper
            .clone()
            .unwrap();
        d.norm
            .iter()
            .zip(&d.angle)
            .map(|(&n, &a)| 6.9 / (-ssm_runtime::model::stable_pole(n, a).re * TRAIN_RATE as f64))
            .fold(0.0, f64::max)
    };
    assert!(
        longest(&net) > 0.5,
        "the stretched poles ring {} s",
        longest(&net)
    );
    net.limit_later_decays(0.2 * TRAIN_RATE as f64);
    let capped = longest(&net);
    assert!(
        capped <= 0.2 + 1e-6,
        "damped poles ring {capped} s after the cap"
    );
}

/// `--string-t60` lengthens the first layer's short strings to the floor, keeps their pitch,
/// leaves the longer strings and the damper's poles as they were.
#[test]
fn string_t60_lengthens_the_short_strings_only() {
    let mut net = fresh(Size::L).unwrap();
    let first = |net: &Network| net.to_runtime(info()).unwrap().layers[0].clone();
    let poles = |norm: &[f32], angle: &[f32]| -> Vec<(f64, f64)> {
        norm.iter()
            .zip(angle)
            .map(|(&n, &a)| {
                let p = ssm_runtime::model::stable_pole(n, a);
                (6.9 / (-p.re * TRAIN_RATE as f64), p.im)
            })
            .collect()
    };
    let before = first(&net);
    let strings = poles(&before.norm, &before.angle);
    let floor = 2.5;
    let short = strings.iter().filter(|(t60, _)| *t60 < floor).count();
    assert!(
        short > 10 && short < strings.len(),
        "the init should have short and long strings around {floor} s: {short} short"
    );
    net.lengthen_string_decays(floor * TRAIN_RATE as f64);
    let after = first(&net);
    for (i, (&(t60, im), (t60_now, im_now))) in strings
        .iter()
        .zip(poles(&after.norm, &after.angle))
        .enumerate()
    {
        let expected = t60.max(floor);
        // (the stored f32 angle sits near ±π/2, so the decay reads back to about 1e-4)
        assert!(
            (t60_now - expected).abs() <= 1e-3 * expected,
            "state {i}: {t60} s became {t60_now} s, not {expected} s"
        );
        assert!(
            (im_now - im).abs() <= 1e-5 * im.abs(),
            "state {i}: pitch moved"
        );
    }
    let damper = |l: &ssm_runtime::model::SsmLayer| l.damper.clone().unwrap();
    assert_eq!(damper(&before).norm, damper(&after).norm);
    assert_eq!(damper(&before).angle, damper(&after).angle);
}

/// `drive_first_tanh` keeps a quiet note as it was (the tanh is linear there) and changes a
/// loud one (deeper into the tanh).
#[test]
fn driving_the_tanh_changes_loud_notes_only() {
    let model = trained_like(fresh(Size::L).unwrap().to_runtime(info()).unwrap());
    let plain = Network::from_runtime(Device::Cpu, &model).unwrap();
    let mut driven = Network::from_runtime(Device::Cpu, &model).unwrap();
    driven.drive_first_tanh(10.0);
    let change = |velocity: u8| {
        let mut frames = vec![[0u8; KEYS]; 300];
        for f in &mut frames[10..200] {
            f[39] = velocity;
            f[46] = velocity;
        }
        relative_l2(
            &trainer_render(&driven, &frames, 16, 1.0),
            &trainer_render(&plain, &frames, 16, 1.0),
        )
    };
    let (quiet, loud) = (change(2), change(127));
    eprintln!("driven ×10: relative change {quiet:.2e} quiet, {loud:.2e} loud");
    assert!(quiet < 0.2 * loud, "quiet {quiet:.2e}, loud {loud:.2e}");
}

/// `open_first_skip` multiplies layer 2's skip weights, the flat path from the first tanh
/// to the output, and nothing else.
#[test]
fn opening_the_skip_scales_layer_2s_skip_only() {
    let model = trained_like(fresh(Size::L).unwrap().to_runtime(info()).unwrap());
    let mut net = Network::from_runtime(Device::Cpu, &model).unwrap();
    net.open_first_skip(20.0);
    let opened = net.to_runtime(info()).unwrap();
    for (i, (was, now)) in model.layers.iter().zip(&opened.layers).enumerate() {
        let (skip, skip_now) = (was.skip.clone(), now.skip.clone());
        let mut now = now.clone();
        now.skip = was.skip.clone();
        assert_eq!(&now, was, "layer {} changed beyond its skip", i + 1);
        if i == 1 {
            let want: Vec<f32> = skip.unwrap().iter().map(|w| w * 20.0).collect();
            assert_eq!(skip_now.unwrap(), want);
        } else {
            assert_eq!(skip_now, skip, "layer {}'s skip changed", i + 1);
        }
    }
    assert_eq!(opened.head_weight, model.head_weight);
    assert_eq!(opened.head_bias, model.head_bias);
}
