//! The model format's extensions — the key damper (its fall, the jumps, the settling fade), the
//! velocity exponent and the touch square — against a float64 reference written from their
//! equations in `docs/model-format.md`, not from the engine: one sample at a time, complex
//! arithmetic, every product in float64, each fade kept as a list of jumps. Random extensions
//! on a published network and the built-in models, random rolls (re-strikes while held and
//! while a damper falls, overlapping releases, silence), at the training rate and at a rate
//! whose frames are not whole samples. Stereo heads (format version 4): each channel against
//! the reference's.

use ssm_runtime::model::{Damper, KeyBank, SETTLE_FLOOR};
use ssm_runtime::render::{render_roll, render_roll_stereo};
use ssm_runtime::{Engine, Isa, Model, Roll, Size, KEYS};
use test_support::{checkpoint, relative_l2};

/// What the engine must meet against the reference (relative L2).
const LIMIT: f64 = 1e-5;

type C = (f64, f64);

fn add(a: C, b: C) -> C {
    (a.0 + b.0, a.1 + b.1)
}

fn sub(a: C, b: C) -> C {
    (a.0 - b.0, a.1 - b.1)
}

fn mul(a: C, b: C) -> C {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn scale(a: C, k: f64) -> C {
    (a.0 * k, a.1 * k)
}

fn div(a: C, b: C) -> C {
    let d = b.0 * b.0 + b.1 * b.1;
    ((a.0 * b.0 + a.1 * b.1) / d, (a.1 * b.0 - a.0 * b.1) / d)
}

fn cexp(a: C) -> C {
    let m = a.0.exp();
    (m * a.1.cos(), m * a.1.sin())
}

/// The continuous pole of (norm, angle) after the stability rule.
fn pole(norm: f32, angle: f32) -> C {
    let e = cexp((norm as f64, angle as f64));
    let theta = e.1.atan2(-e.0.abs());
    cexp((norm as f64, theta))
}

/// `λ̄ = exp(λ s)` and `g = (λ̄ − 1)/λ`.
fn discrete(lambda: C, s: f64) -> (C, C) {
    let bar = cexp(scale(lambda, s));
    (bar, div(sub(bar, (1.0, 0.0)), lambda))
}

/// The fade `φ(n)`, cut from the first value below the floor on.
fn fade(settle_frames: u32, frame: f64) -> Vec<f64> {
    if settle_frames == 0 {
        return Vec::new();
    }
    let rho = (-1.0 / (settle_frames as f64 * frame)).exp();
    (0..)
        .map(|n: i32| rho.powi(n) + n as f64 * (1.0 - rho) * rho.powi(n - 1))
        .take_while(|&v| v >= SETTLE_FLOOR)
        .collect()
}

/// Layer 1's input `w = B t + B_square t² + b` for key values `keys` (0..255).
fn first_input(model: &Model, keys: &[f64; KEYS], q: usize) -> C {
    let l = &model.layers[0];
    let e = l.velocity_exponent.unwrap_or(1.0) as f64;
    let mut w = (l.b_bias[2 * q] as f64, l.b_bias[2 * q + 1] as f64);
    for (k, &v) in keys.iter().enumerate() {
        if v == 0.0 {
            continue;
        }
        let t = (v / 127.0).powf(e);
        let at = 2 * (q * l.inputs + k);
        w = add(w, scale((l.b[at] as f64, l.b[at + 1] as f64), t));
        if let Some(square) = &l.b_square {
            w = add(w, scale((square[at] as f64, square[at + 1] as f64), t * t));
        }
    }
    w
}

/// The model rendered from the equations, at `rate`, head 0.
fn reference(model: &Model, roll: &Roll, rate: u32) -> Vec<f32> {
    assert_eq!(model.channels, 1, "a mono model");
    reference_channels(model, roll, rate).remove(0)
}

/// The reference's output in each of head 0's channels (left, then right for a stereo head).
fn reference_channels(model: &Model, roll: &Roll, rate: u32) -> Vec<Vec<f32>> {
    let s = model.info.train_rate as f64 / rate as f64;
    let frame = rate as f64 / roll.midi_rate as f64;
    let first = &model.layers[0];
    let p = first.state;
    let sounding: Vec<(C, C, C)> = (0..p)
        .map(|q| {
            let lambda = pole(first.norm[q], first.angle[q]);
            let (bar, g) = discrete(lambda, s);
            (lambda, bar, g)
        })
        .collect();
    let damper = first.damper.clone();
    let damped: Vec<Option<(usize, C, C, C)>> = (0..p)
        .map(|q| {
            let d = damper.as_ref()?;
            let key = d.key[q]? as usize;
            let lambda = pole(d.norm[q], d.angle[q]);
            let (bar, g) = discrete(lambda, s);
            Some((key, lambda, bar, g))
        })
        .collect();
    let fall = damper
        .as_ref()
        .map_or(0, |d| (d.fall_frames as f64 * frame).round() as u64);
    let phi = damper
        .as_ref()
        .map_or(Vec::new(), |d| fade(d.settle_frames, frame));
    // later layers: (λ̄, g) per state
    let later: Vec<Vec<(C, C)>> = model.layers[1..]
        .iter()
        .map(|l| {
            (0..l.state)
                .map(|q| discrete(pole(l.norm[q], l.angle[q]), s))
                .collect()
        })
        .collect();
    let mut x1 = vec![(0.0, 0.0); p];
    let mut xs: Vec<Vec<C>> = model.layers[1..]
        .iter()
        .map(|l| vec![(0.0, 0.0); l.state])
        .collect();
    // per key: the sample its damper began to fall at (None: sounding or never struck)
    let mut fell_at: [Option<u64>; KEYS] = [None; KEYS];
    // the jumps the offsets fade: (sample, per state J)
    let mut jumps: Vec<(u64, Vec<C>)> = Vec::new();
    let mut previous = [0.0f64; KEYS];
    let mut w_now = vec![(0.0, 0.0); p];
    let total = roll.samples(rate);
    let mut out = vec![Vec::with_capacity(total as usize); model.channels];
    let mut f = 0usize;
    let mut keys = [0.0f64; KEYS];
    for t in 0..total {
        let starts_frame = roll.frame_start(f as u64, rate) == t;
        if starts_frame {
            keys = roll.frames[f].map(|v| v as f64);
            let kept: [f64; KEYS] =
                std::array::from_fn(|k| if keys[k] > 0.0 { previous[k] } else { 0.0 });
            let rests = |values: &[f64; KEYS], q: usize| -> C {
                match damped[q] {
                    Some((key, lambda_d, _, _)) if values[key] == 0.0 => lambda_d,
                    _ => sounding[q].0,
                }
            };
            let mut jump = vec![(0.0, 0.0); p];
            for q in 0..p {
                let w_before = first_input(model, &previous, q);
                let w_kept = first_input(model, &kept, q);
                let j = add(
                    scale(div(w_kept, rests(&keys, q)), -1.0),
                    div(w_before, rests(&previous, q)),
                );
                x1[q] = add(x1[q], j);
                jump[q] = j;
                w_now[q] = first_input(model, &keys, q);
            }
            if !phi.is_empty() {
                jumps.push((t, jump));
            }
            for k in 0..KEYS {
                if keys[k] > 0.0 {
                    fell_at[k] = None;
                } else if previous[k] > 0.0 {
                    fell_at[k] = Some(t);
                }
            }
            previous = keys;
            f += 1;
        }
        // layer 1
        for q in 0..p {
            let (bar, g) = match damped[q] {
                Some((key, lambda_d, bar_d, g_d)) if keys[key] == 0.0 => match fell_at[key] {
                    Some(at) if t - at + 1 < fall => {
                        let n = (t - at + 1) as f64 / fall as f64;
                        let (lambda, _, g) = sounding[q];
                        let lambda_n = add(lambda, scale(sub(lambda_d, lambda), n));
                        (cexp(scale(lambda_n, s)), add(g, scale(sub(g_d, g), n)))
                    }
                    _ => (bar_d, g_d),
                },
                _ => (sounding[q].1, sounding[q].2),
            };
            x1[q] = add(mul(bar, x1[q]), mul(g, w_now[q]));
        }
        jumps.retain(|(at, _)| ((t - at) as usize) < phi.len());
        // what the outputs read: each state less its fading offsets
        let seen: Vec<C> = (0..p)
            .map(|q| {
                let mut state = x1[q];
                for (at, j) in &jumps {
                    state = sub(state, scale(j[q], phi[(t - at) as usize]));
                }
                state
            })
            .collect();
        let mut h: Vec<f64> = (0..first.outputs)
            .map(|o| {
                let mut y = first.c_bias[2 * o] as f64;
                for (q, &state) in seen.iter().enumerate() {
                    let c = (
                        first.c[2 * (o * p + q)] as f64,
                        first.c[2 * (o * p + q) + 1] as f64,
                    );
                    y += mul(c, state).0;
                }
                y.tanh() / 2f64.sqrt()
            })
            .collect();
        for ((l, x), poles) in model.layers[1..].iter().zip(&mut xs).zip(&later) {
            for (q, &(bar, g)) in poles.iter().enumerate() {
                let mut w = (l.b_bias[2 * q] as f64, l.b_bias[2 * q + 1] as f64);
                for (k, &hk) in h.iter().enumerate() {
                    let at = 2 * (q * l.inputs + k);
                    w = add(w, scale((l.b[at] as f64, l.b[at + 1] as f64), hk));
                }
                x[q] = add(mul(bar, x[q]), mul(g, w));
            }
            h = (0..l.outputs)
                .map(|o| {
                    let mut y = l.c_bias[2 * o] as f64;
                    for (q, &xq) in x.iter().enumerate() {
                        let at = 2 * (o * l.state + q);
                        y += mul((l.c[at] as f64, l.c[at + 1] as f64), xq).0;
                    }
                    let skip: f64 = l.skip.as_ref().map_or(0.0, |w| {
                        (0..l.inputs)
                            .map(|k| w[o * l.inputs + k] as f64 * h[k])
                            .sum()
                    });
                    (y.tanh() + skip) / 2f64.sqrt()
                })
                .collect();
        }
        // head 0: (channels, width) weights, then (channels) biases; and (channels, P)
        // complex weights on the states the first layer's outputs read
        for (c, out) in out.iter_mut().enumerate() {
            let w = &model.head_weight[c * h.len()..(c + 1) * h.len()];
            let mut y = model.head_bias[c] as f64
                + h.iter().zip(w).map(|(a, b)| a * *b as f64).sum::<f64>();
            if let Some(e) = &model.head_state_weight {
                let e = &e[2 * c * p..2 * (c + 1) * p];
                for (q, &state) in seen.iter().enumerate() {
                    y += mul((e[2 * q] as f64, e[2 * q + 1] as f64), state).0;
                }
            }
            out.push((y * model.info.norm_std + model.info.norm_mean) as f32);
        }
    }
    out
}

/// A small deterministic generator (xorshift).
pub struct Noise(u64);

impl Noise {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n
    }
}

/// A roll of `frames` frames: notes on a few keys (so that releases meet falling dampers and
/// re-strikes), some overlapping, a one-frame note, velocities 1..127, silence at the end.
fn random_roll(noise: &mut Noise, frames: usize, midi_rate: u32, keys: &[usize]) -> Roll {
    let mut roll = vec![[0u8; KEYS]; frames];
    let playing = frames * 3 / 4;
    for _ in 0..24 {
        let key = keys[noise.below(keys.len())];
        let start = noise.below(playing);
        let len = 1 + noise.below(frames / 6);
        let velocity = 1 + noise.below(127) as u8;
        for f in &mut roll[start..(start + len).min(playing)] {
            f[key] = f[key].saturating_add(velocity);
        }
    }
    Roll {
        midi_rate,
        frames: roll,
    }
}

/// `model` with a random damper (most states tagged, damped poles 3–30× faster), fall, fade,
/// velocity exponent and touch square.
fn extended(mut model: Model, noise: &mut Noise, fall: u32, settle: u32) -> Model {
    let l = &mut model.layers[0];
    let mut d = Damper::none(&l.norm, &l.angle);
    for (q, key) in d.key.iter_mut().enumerate() {
        *key = (noise.unit() < 0.8).then_some((q % KEYS) as u8);
    }
    for v in &mut d.norm {
        *v += (3.0 + 27.0 * noise.unit()).ln() as f32;
    }
    d.fall_frames = fall;
    d.settle_frames = settle;
    l.damper = Some(d);
    l.velocity_exponent = Some((0.5 + 2.5 * noise.unit()) as f32);
    let peak = l.b.iter().fold(0f32, |m, v| m.max(v.abs()));
    l.b_square = Some(
        (0..l.b.len())
            .map(|_| ((noise.unit() - 0.5) * peak as f64) as f32)
            .collect(),
    );
    // a nonzero input bias, so that the jumps between poles are exercised at rest too
    for v in &mut l.b_bias {
        *v += ((noise.unit() - 0.5) * 0.1 * peak as f64) as f32;
    }
    model.validate().expect("a valid extended model");
    model
}

fn engine_matches(label: &str, model: &Model, roll: &Roll, rate: u32) -> f64 {
    engine_matches_on(label, model, roll, rate, Isa::detect())
}

fn engine_matches_on(label: &str, model: &Model, roll: &Roll, rate: u32, isa: Isa) -> f64 {
    engine_matches_reference(label, model, roll, rate, isa, &reference(model, roll, rate))
}

fn engine_matches_reference(
    label: &str,
    model: &Model,
    roll: &Roll,
    rate: u32,
    isa: Isa,
    expected: &[f32],
) -> f64 {
    let mut engine = Engine::with_isa(model, rate, isa).unwrap();
    let audio = render_roll(&mut engine, roll, |_, _| {});
    let err = relative_l2(&audio, expected);
    let level = expected
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    println!("{label} at {rate} Hz: relative L2 {err:.2e}");
    assert!(level > 0.0, "{label}: the reference is silent");
    assert!(
        err <= LIMIT,
        "{label} at {rate} Hz: relative L2 {err:.3e} > {LIMIT:.0e}"
    );
    err
}

#[test]
fn random_extensions_on_a_published_network_match_the_equations() {
    let base = checkpoint("PianoSSM_S_MH_maestro_all_24000_model.pth");
    let mut noise = Noise(0x5eed_1234_abcd_0001);
    let midi_rate = base.info.midi_rate;
    // (fall, settle) frames: none, a fall only, a fade only, both
    for (i, (fall, settle)) in [(0, 0), (3, 0), (0, 4), (5, 6)].into_iter().enumerate() {
        let model = extended(base.clone(), &mut noise, fall, settle);
        // few keys, so that releases meet falling dampers and held re-strikes
        let keys: Vec<usize> = (0..6).map(|_| noise.below(KEYS)).collect();
        let roll = random_roll(
            &mut noise,
            (0.4 * midi_rate as f64) as usize,
            midi_rate,
            &keys,
        );
        let label = format!("S + damper (fall {fall}, settle {settle})");
        engine_matches(&label, &model, &roll, 24_000);
        if i % 2 == 1 {
            // 48 kHz: 40 samples a frame; 44.1 kHz: 36.75, frames of unequal length
            engine_matches(&label, &model, &roll, [48_000, 44_100][i / 2]);
        }
    }
}

/// `model` with layer `i` cut to its first `p` states.
fn cut_states(mut model: Model, i: usize, p: usize) -> Model {
    let l = &mut model.layers[i];
    let old = l.state;
    l.state = p;
    l.norm.truncate(p);
    l.angle.truncate(p);
    l.b.truncate(p * l.inputs * 2);
    l.b_bias.truncate(p * 2);
    if let Some(square) = &mut l.b_square {
        square.truncate(p * l.inputs * 2);
    }
    if let Some(d) = &mut l.damper {
        d.key.truncate(p);
        d.norm.truncate(p);
        d.angle.truncate(p);
    }
    l.c =
        l.c.chunks(2 * old)
            .flat_map(|row| row[..2 * p].to_vec())
            .collect();
    if let (0, Some(e)) = (i, &mut model.head_state_weight) {
        *e = e
            .chunks(2 * old)
            .flat_map(|row| row[..2 * p].to_vec())
            .collect();
    }
    model.validate().expect("a valid cut model");
    model
}

/// The built-in L (mono) without its own key bank, with a random one of `per_key` states a
/// key (fewer states than the shipped bank: the float64 reference reads every state every
/// sample).
fn l_with_random_bank(per_key: usize, noise: &mut Noise) -> Model {
    let l = ssm_runtime::builtin::require(Size::L)
        .unwrap()
        .folded_to_mono();
    let own = KeyBank::detect(&l.layers[0]).map_or(l.layers[0].state, |b| b.first);
    with_key_bank(cut_states(l, 0, own), per_key, noise)
}

/// Any state size the format allows plays, on every instruction set, as the equations say:
/// the SIMD kernels work whole panels (8 or 16 lanes), so the engine pads a hidden layer's
/// state where its size does not fill them (5 states once panicked in a kernel).
#[test]
fn every_state_size_plays_on_every_instruction_set() {
    let base = checkpoint("PianoSSM_S_MH_maestro_all_24000_model.pth");
    let mut noise = Noise(0x0dd5_12e5_0000_0003);
    let midi_rate = base.info.midi_rate;
    for sizes in [[64, 5, 1, 13], [7, 3, 9, 17]] {
        let cut = (0..4).fold(base.clone(), |m, i| cut_states(m, i, sizes[i]));
        let model = extended(cut, &mut noise, 3, 4);
        let keys: Vec<usize> = (0..6).map(|_| noise.below(KEYS)).collect();
        let roll = random_roll(
            &mut noise,
            (0.3 * midi_rate as f64) as usize,
            midi_rate,
            &keys,
        );
        for isa in Isa::available() {
            engine_matches_on(
                &format!("S cut to {sizes:?}, {isa:?}"),
                &model,
                &roll,
                48_000,
                isa,
            );
        }
    }
}

#[test]
fn the_built_in_models_match_the_equations() {
    let mut noise = Noise(0x0b11_7100_0000_0002);
    for size in [Size::L, Size::XL] {
        let model = ssm_runtime::builtin::require(size).unwrap();
        let midi_rate = model.info.midi_rate;
        let keys: Vec<usize> = (0..8).map(|_| 20 + noise.below(50)).collect();
        // 0.15 s: the float64 reference reads all 832 states of the L's first layer (its key
        // bank) every sample
        let roll = random_roll(
            &mut noise,
            (0.15 * midi_rate as f64) as usize,
            midi_rate,
            &keys,
        );
        channels_match(&format!("built-in {}", size.label()), &model, &roll, 48_000);
    }
}

/// The engine's two channels of `model` (a stereo one's, or a mono one's on both) against the
/// reference's, at `rate`; the engine's channels.
fn channels_match(label: &str, model: &Model, roll: &Roll, rate: u32) -> [Vec<f32>; 2] {
    let expected = reference_channels(model, roll, rate);
    let [left, right] = render_roll_stereo(&mut Engine::new(model, rate).unwrap(), roll);
    let errors = [
        relative_l2(&left, &expected[0]),
        relative_l2(&right, expected.last().unwrap()),
    ];
    println!(
        "{label} at {rate} Hz: left {:.2e}, right {:.2e}",
        errors[0], errors[1]
    );
    assert!(
        errors.iter().all(|&e| e <= LIMIT),
        "{label} at {rate} Hz: left {:.3e}, right {:.3e} > {LIMIT:.0e}",
        errors[0],
        errors[1]
    );
    [left, right]
}

/// `model` with a key bank of `per_key` random states a key appended to its first layer
/// (`docs/model-format.md`, "Key bank"): each tagged with its key, reading only that key,
/// poles 0.2–3 s long on random frequencies, nonzero output weights.
pub fn with_key_bank(mut model: Model, per_key: usize, noise: &mut Noise) -> Model {
    let l = &mut model.layers[0];
    let (p, q) = (l.state, l.state + KEYS * per_key);
    let rate = model.info.train_rate as f64;
    let d = l.damper.as_mut().expect("a model with a damper");
    let peak = l.c.iter().fold(0f32, |m, v| m.max(v.abs()));
    for i in p..q {
        let key = (i - p) / per_key;
        let hz = 30.0 + 8000.0 * noise.unit();
        let (t60, damped) = (0.2 + 2.8 * noise.unit(), 0.05);
        for (norm, angle, t) in [
            (&mut l.norm, &mut l.angle, t60),
            (&mut d.norm, &mut d.angle, damped),
        ] {
            let (re, im) = (-6.9 / (t * rate), 2.0 * std::f64::consts::PI * hz / rate);
            norm.push((re * re + im * im).sqrt().ln() as f32);
            angle.push(im.atan2(re) as f32);
        }
        d.key.push(Some(key as u8));
        let mut row = vec![0.0; KEYS * 2];
        row[2 * key] = (noise.unit() - 0.5) as f32 * 0.2;
        row[2 * key + 1] = (noise.unit() - 0.5) as f32 * 0.2;
        if let Some(square) = &mut l.b_square {
            square.extend(row.iter().map(|v| v * 0.5));
        }
        l.b.extend_from_slice(&row);
        l.b_bias.extend_from_slice(&[0.0, 0.0]);
    }
    l.c =
        l.c.chunks(2 * p)
            .flat_map(|row| {
                let bank: Vec<f32> = (0..2 * (q - p))
                    .map(|_| ((noise.unit() - 0.5) * peak as f64) as f32)
                    .collect();
                row.iter().copied().chain(bank).collect::<Vec<f32>>()
            })
            .collect();
    l.state = q;
    model.validate().expect("a valid model with a key bank");
    assert_eq!(
        KeyBank::detect(&model.layers[0]).map(|b| b.per_key),
        Some(per_key)
    );
    model
}

/// A key bank is plain first-layer states to the equations; the engine runs a silent key's
/// bank asleep, and still plays them (at the built-in L's rate and at 44.1 kHz, every
/// instruction set).
#[test]
fn a_key_bank_plays_the_equations() {
    let mut noise = Noise(0x0b11_7100_0000_0003);
    let model = l_with_random_bank(2, &mut noise);
    let midi_rate = model.info.midi_rate;
    let keys: Vec<usize> = (0..8).map(|_| 10 + noise.below(70)).collect();
    let roll = random_roll(
        &mut noise,
        (0.25 * midi_rate as f64) as usize,
        midi_rate,
        &keys,
    );
    for rate in [48_000, 44_100] {
        let expected = reference(&model, &roll, rate);
        for isa in Isa::available() {
            let label = format!("built-in L with a key bank, {}", isa.name());
            engine_matches_reference(&label, &model, &roll, rate, isa, &expected);
        }
    }
}

/// A struck key wakes its bank, a released one's bank sleeps once it has decayed, and
/// sleeping changes nothing a listener could hear: the same notes with every bank running
/// (the engine's sleep off) differ by under 1e-6.
#[test]
fn a_silent_keys_bank_sleeps() {
    let mut noise = Noise(0x0b11_7100_0000_0004);
    let model = l_with_random_bank(2, &mut noise);
    let rate = 48_000;
    let play = |sleep: bool| -> (Vec<f32>, Vec<usize>) {
        let mut engine = Engine::new(&model, rate).unwrap();
        engine.set_sleep(sleep);
        let (mut out, mut awake) = (Vec::new(), Vec::new());
        let mut keys = [0u8; KEYS];
        for (k, v, seconds) in [(40, 90, 0.3), (52, 70, 0.3), (40, 0, 0.2), (52, 0, 2.0)] {
            keys[k] = v;
            engine.set_keys(&keys);
            let mut block = vec![0f32; (seconds * rate as f64) as usize];
            engine.process(&mut block);
            out.extend(block);
            awake.push(engine.awake_banks());
        }
        (out, awake)
    };
    let ((asleep, awake), (dense, _)) = (play(true), play(false));
    assert_eq!(awake, [1, 2, 1, 0], "banks awake after each step");
    let err = relative_l2(&asleep, &dense);
    assert!(err < 1e-6, "sleeping banks change the sound by {err:.2e}");
}

/// The reference is not the engine by construction: it hears what the extensions do. A
/// damper, an exponent and a touch square each change its output, and a reference that
/// forgot one (here: the same model without it) is far from the engine.
/// `model` with head 0 made stereo: left and right each the mono head with its own random
/// change of a fifth of the largest weight.
fn with_stereo_head(mut model: Model, noise: &mut Noise) -> Model {
    let width = *model.widths().last().unwrap();
    let (w, b) = (model.head_weight[..width].to_vec(), model.head_bias[0]);
    let peak = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut shaken = |v: f32| v + ((noise.unit() - 0.5) * 0.4 * peak as f64) as f32;
    let left: Vec<f32> = w.iter().map(|&v| shaken(v)).collect();
    let right: Vec<f32> = w.iter().map(|&v| shaken(v)).collect();
    model.info.heads.truncate(1);
    model.channels = 2;
    model.head_weight = [left, right].concat();
    model.head_bias = vec![shaken(b), shaken(b)];
    // each channel reads half the first layer's states, with weights of a tenth of C's
    let first = &model.layers[0];
    let c_peak = first.c.iter().fold(0f32, |m, v| m.max(v.abs()));
    let p = first.state;
    let reads: Vec<f32> = (0..2 * 2 * p)
        .map(|i| {
            let q = (i / 2) % p;
            let keep = q.is_multiple_of(2) == (i < 2 * p);
            let v = ((noise.unit() - 0.5) * 0.2 * c_peak as f64) as f32;
            if keep {
                v
            } else {
                0.0
            }
        })
        .collect();
    model.head_state_weight = Some(reads);
    model.validate().expect("a valid stereo model");
    model
}

/// A random roll of `seconds` on six random keys (so that releases meet falling dampers and
/// held re-strikes).
fn six_key_roll(noise: &mut Noise, seconds: f64, midi_rate: u32) -> Roll {
    let keys: Vec<usize> = (0..6).map(|_| noise.below(KEYS)).collect();
    random_roll(
        noise,
        (seconds * midi_rate as f64) as usize,
        midi_rate,
        &keys,
    )
}

#[test]
fn a_stereo_head_plays_each_channel_by_the_equations() {
    let base = checkpoint("PianoSSM_S_MH_maestro_all_24000_model.pth");
    let mut noise = Noise(0x57e7_e0ff_0000_0004);
    let model = with_stereo_head(extended(base, &mut noise, 3, 4), &mut noise);
    let roll = six_key_roll(&mut noise, 0.3, model.info.midi_rate);
    let [left, right] = channels_match("stereo head", &model, &roll, 44_100);
    let expected = reference_channels(&model, &roll, 44_100);
    // the reads of the first layer's states are heard
    let mut unread = model.clone();
    unread.head_state_weight = None;
    let without = reference_channels(&unread, &roll, 44_100);
    let (l, r) = (
        relative_l2(&left, &without[0]),
        relative_l2(&right, &without[1]),
    );
    println!("without the state reads: left {l:.2e}, right {r:.2e}");
    assert!(l > 100.0 * LIMIT && r > 100.0 * LIMIT);
    // the channels differ, and a mono render plays their mean
    assert!(relative_l2(&left, &right) > 100.0 * LIMIT);
    let mid: Vec<f32> = expected[0]
        .iter()
        .zip(&expected[1])
        .map(|(a, b)| 0.5 * (a + b))
        .collect();
    let mono = render_roll(&mut Engine::new(&model, 44_100).unwrap(), &roll, |_, _| {});
    let err = relative_l2(&mono, &mid);
    println!("stereo head folded to mono: {err:.2e}");
    assert!(err <= LIMIT, "mono fold {err:.3e}");
}

#[test]
fn the_reference_hears_every_extension() {
    let base = checkpoint("PianoSSM_S_MH_maestro_all_24000_model.pth");
    let mut noise = Noise(0x7e57_0000_0000_0003);
    let model = extended(base, &mut noise, 4, 5);
    let roll = six_key_roll(&mut noise, 0.3, model.info.midi_rate);
    let mut engine = Engine::new(&model, 24_000).unwrap();
    let audio = render_roll(&mut engine, &roll, |_, _| {});
    let without = |f: &dyn Fn(&mut Model)| {
        let mut m = model.clone();
        f(&mut m);
        relative_l2(&audio, &reference(&m, &roll, 24_000))
    };
    for (name, err) in [
        (
            "no settling fade",
            without(&|m| m.layers[0].damper.as_mut().unwrap().settle_frames = 0),
        ),
        (
            "no fall",
            without(&|m| m.layers[0].damper.as_mut().unwrap().fall_frames = 0),
        ),
        (
            "no exponent",
            without(&|m| m.layers[0].velocity_exponent = None),
        ),
        ("no touch square", without(&|m| m.layers[0].b_square = None)),
        ("no damper", without(&|m| m.layers[0].damper = None)),
    ] {
        println!("reference with {name}: relative L2 {err:.2e} from the engine");
        assert!(err > 100.0 * LIMIT, "{name}: {err:.2e}");
    }
}
