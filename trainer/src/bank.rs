//! A key bank in the first layer (`--key-bank K`): K more states for every key, each driven
//! by its own key alone and damped by it, with poles on that key's string partials.
//!
//! Why (issue 30): a held note of the built-in models keeps 3 partials after 0.3 s where a
//! recorded grand keeps 8. Layer 1 is the only layer whose poles may ring for seconds (the
//! damper stops them; layers 2–4 are held under `--later-t60`), and it has 1–3 states a
//! key. The bank gives each key room for K partials.
//!
//! In the model format the bank is plain layer-1 states (version ≤ 3 reads it): the last
//! `88·K` states, K per key in key order, tagged with their key's damper, with input weights
//! (`B`, `B_square`) zero except in their key's column and no input bias. Training keeps that
//! structure ([`project`] after every step), so the engine runs a silent
//! key's bank asleep (`docs/ringing-layer-plan.md`).

use anyhow::{bail, Result};
use num_complex::Complex64;
use ssm_runtime::model::{KeyBank, Model, KEYS, LOWEST_NOTE};
use ssm_runtime::soundcheck::key_hz;
use std::f64::consts::TAU;

use crate::init::damped_keys::DAMPED_T60;
use crate::init::gated_keys::RING;
use tch::{Device, Kind, Tensor};

/// The longest 60 dB decay (seconds) a bank state starts with (A0's fundamental).
const LOWEST_T60: f64 = 25.0;
/// The fundamental's decay halves every this many keys up the keyboard.
const T60_HALVING_KEYS: f64 = 24.0;
/// Partial n starts with the fundamental's decay over `1 + PARTIAL_DECAY·(n − 1)`.
const PARTIAL_DECAY: f64 = 0.25;
/// No partial above this fraction of the training rate (kept clear of Nyquist).
const HIGHEST_PARTIAL: f64 = 0.45;
/// Detuning (cents) of the unison copies that fill a high key's bank once its partials
/// pass [`HIGHEST_PARTIAL`]: a piano's two or three strings a key beat against each other.
const UNISON_CENTS: [f64; 4] = [1.5, -1.5, 3.0, -3.0];

/// The bank of `per_key` states a key `model`'s first layer ends in, if it has one.
pub fn find(model: &Model, per_key: usize) -> Option<KeyBank> {
    KeyBank::find(model.layers.first()?, per_key)
}

/// `model` with a bank of `per_key` states a key appended to its first layer, poles in
/// units of a sample at `train_rate`: see the module comment. Its output weights start at
/// zero, so the model plays exactly as before; the states are driven from the first
/// step, so their output weights have a gradient at once.
pub fn append(model: &Model, per_key: usize, train_rate: f64) -> Result<(Model, KeyBank)> {
    let mut model = model.clone();
    let Some(layer) = model.layers.first_mut() else {
        bail!("--key-bank: the model has no layers");
    };
    if layer.inputs != KEYS {
        bail!(
            "--key-bank: the first layer reads {} inputs, not the {KEYS} keys",
            layer.inputs
        );
    }
    let Some(damper) = layer.damper.as_mut() else {
        bail!("--key-bank needs a model with a key damper (layers.0.damper_key): a bank without one would ring on after release");
    };
    let (p, added) = (layer.state, KEYS * per_key);
    let q = p + added;
    let bank = KeyBank { first: p, per_key };
    for i in p..q {
        let key = bank.key_of(i);
        let partial = partial_of(&bank, i, train_rate);
        let (norm, angle, lambda) = stored(partial.freq, partial.t60, train_rate);
        let (d_norm, d_angle, _) = stored(partial.freq, DAMPED_T60, train_rate);
        layer.norm.push(norm);
        layer.angle.push(angle);
        damper.key.push(Some(key as u8));
        damper.norm.push(d_norm);
        damper.angle.push(d_angle);
        // B = −λ·RING/n: a full touch rests partial n at RING/n, as the damped-keys init
        // sets its strings; phases spread by the golden angle, so no two start alike
        let phase = TAU * ((i as f64 * 0.618_033_988_75) % 1.0);
        let b = -lambda * (RING / partial.number as f64) * Complex64::from_polar(1.0, phase);
        let mut row = vec![0.0; KEYS * 2];
        row[key * 2] = b.re as f32;
        row[key * 2 + 1] = b.im as f32;
        layer.b.extend_from_slice(&row);
        layer.b_bias.extend_from_slice(&[0.0, 0.0]);
    }
    if let Some(square) = &mut layer.b_square {
        square.resize(q * KEYS * 2, 0.0);
    }
    // C: (out, P, 2) → (out, P + added, 2), the bank's columns at zero
    let mut c = Vec::with_capacity(layer.outputs * q * 2);
    for row in layer.c.chunks(p * 2) {
        c.extend_from_slice(row);
        c.resize(c.len() + added * 2, 0.0);
    }
    layer.c = c;
    layer.state = q;
    // heads that read the first layer's states read none of the bank's
    if let Some(e) = &mut model.head_state_weight {
        *e = e
            .chunks(p * 2)
            .flat_map(|row| {
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0.0, added * 2))
            })
            .collect();
    }
    model.validate()?;
    Ok((model, bank))
}

/// The string partial bank state `i` starts on: partial n = 1, 2, … of its key on a
/// stretched series, and once those pass [`HIGHEST_PARTIAL`], unison copies of the lower
/// ones, detuned.
fn partial_of(bank: &KeyBank, i: usize, train_rate: f64) -> Partial {
    let key = bank.key_of(i);
    let slot = (i - bank.first) % bank.per_key;
    let f0 = key_hz(LOWEST_NOTE + key as u8);
    // inharmonicity: about 1e-4 in the bass, rising to 2e-2 at the top
    let beta = 1e-4 * 10f64.powf(2.3 * (key as f64 / 87.0).powi(2));
    // the fundamental on the key's pitch, the partials above it stretched
    let series = |n: f64| n * f0 * ((1.0 + beta * n * n) / (1.0 + beta)).sqrt();
    let fits = (1..=bank.per_key)
        .take_while(|&n| series(n as f64) < HIGHEST_PARTIAL * train_rate)
        .count()
        .max(1);
    let (n, cents) = if slot < fits {
        (slot + 1, 0.0)
    } else {
        let copy = slot - fits;
        (
            copy % fits + 1,
            UNISON_CENTS[(copy / fits) % UNISON_CENTS.len()],
        )
    };
    let t60 = LOWEST_T60 * 0.5f64.powf(key as f64 / T60_HALVING_KEYS)
        / (1.0 + PARTIAL_DECAY * (n as f64 - 1.0));
    Partial {
        number: n,
        freq: series(n as f64) * 2f64.powf(cents / 1200.0),
        t60,
    }
}

/// Keeps the bank's structure after an optimizer step: each bank state's input weights
/// (`B`, `B_square`) outside its key's column and its input bias at zero.
pub fn project(bank: &KeyBank, b: &mut Tensor, b_square: Option<&mut Tensor>, b_bias: &mut Tensor) {
    let _guard = tch::no_grad_guard();
    let mask = input_mask(bank, b.size()[0], b.kind(), b.device());
    let _ = b.g_mul_(&mask);
    if let Some(square) = b_square {
        let _ = square.g_mul_(&mask);
    }
    let _ = b_bias
        .narrow(0, bank.first as i64, b_bias.size()[0] - bank.first as i64)
        .zero_();
}

/// (P, 88, 1): 1 where a state may read a key, 0 where a bank state may not.
fn input_mask(bank: &KeyBank, states: i64, kind: Kind, device: Device) -> Tensor {
    let mut mask = vec![1f32; states as usize * KEYS];
    for i in bank.first..states as usize {
        let row = &mut mask[i * KEYS..(i + 1) * KEYS];
        row.fill(0.0);
        row[bank.key_of(i)] = 1.0;
    }
    Tensor::from_slice(&mask)
        .view([states, KEYS as i64, 1])
        .to_kind(kind)
        .to_device(device)
}

/// A bank state's starting string partial: frequency (Hz) and 60 dB decay (s).
struct Partial {
    /// 1 for the fundamental
    number: usize,
    freq: f64,
    t60: f64,
}

/// The stored (norm, angle) of the continuous pole that rings at `freq` Hz and decays 60 dB
/// in `t60` s, in units of a sample at `rate` (`stable_pole`'s reading).
fn stored(freq: f64, t60: f64, rate: f64) -> (f32, f32, Complex64) {
    let lambda = crate::init::pole(freq, t60, rate);
    (lambda.norm().ln() as f32, lambda.arg() as f32, lambda)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssm_runtime::model::stable_pole;
    use ssm_runtime::soundcheck::{ModelRenderer, Renderer};
    use ssm_runtime::{builtin, KeyEvent};

    fn built_in_l() -> Model {
        let b = builtin::MODELS
            .iter()
            .find(|b| b.size == ssm_runtime::Size::L);
        Model::from_bytes(b.expect("a built-in L").bytes).expect("it loads")
    }

    /// A chord struck, held under the pedal and released: every key bank it reaches sounds.
    fn chord(model: &Model) -> Vec<f32> {
        let mut events = vec![(0.0, KeyEvent::Sustain { value: 127 })];
        for (i, key) in [36u8, 60, 64, 67, 96].into_iter().enumerate() {
            events.push((
                0.05 + 0.01 * i as f64,
                KeyEvent::NoteOn {
                    note: key,
                    velocity: 90,
                },
            ));
            events.push((0.4, KeyEvent::NoteOff { note: key }));
        }
        events.push((0.8, KeyEvent::Sustain { value: 0 }));
        let mut r = ModelRenderer {
            model,
            sample_rate: 48_000,
        };
        r.render(&events, 1.2)
    }

    #[test]
    fn an_appended_bank_plays_as_before_and_is_found_again() {
        let model = built_in_l();
        let (banked, bank) = append(&model, 4, 24_000.0).expect("appends");
        assert_eq!(banked.layers[0].state, model.layers[0].state + KEYS * 4);
        assert_eq!(find(&banked, 4), Some(bank));
        assert_eq!(find(&banked, 3), None, "a bank of another size");
        assert_eq!(
            find(&model, 4),
            None,
            "the shipped model's own bank is not one of 4"
        );
        // the bank's output weights are zero: the same sound
        let (before, after) = (chord(&model), chord(&banked));
        let diff = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let peak = before.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            peak > 1e-3 && diff <= 1e-6 * peak,
            "differs by {diff} (peak {peak})"
        );
        // a bank state that reads another key is no bank
        let mut broken = banked.clone();
        let row = (bank.first + 5) * KEYS * 2;
        broken.layers[0].b[row + 2 * 40] = 0.1;
        assert_eq!(find(&broken, 4), None);
    }

    #[test]
    fn projection_restores_the_structure_a_step_breaks() {
        let (banked, bank) = append(&built_in_l(), 2, 24_000.0).expect("appends");
        let mut b = Tensor::ones(
            [banked.layers[0].state as i64, KEYS as i64, 2],
            (Kind::Float, Device::Cpu),
        );
        let mut square = b.copy();
        let mut bias = Tensor::ones(
            [banked.layers[0].state as i64, 2],
            (Kind::Float, Device::Cpu),
        );
        project(&bank, &mut b, Some(&mut square), &mut bias);
        let first = bank.first as i64;
        // the layer's own states keep every input, a bank state only its key's
        assert_eq!(
            b.narrow(0, 0, first).sum(Kind::Double).double_value(&[]),
            (first * KEYS as i64 * 2) as f64
        );
        for t in [&b, &square] {
            let bank_part = t.narrow(0, first, (KEYS * 2) as i64);
            assert_eq!(
                bank_part.sum(Kind::Double).double_value(&[]),
                (KEYS * 2 * 2) as f64
            );
            // state 2k and 2k+1 read key k
            assert_eq!(bank_part.double_value(&[7, 3, 0]), 1.0);
            assert_eq!(bank_part.double_value(&[7, 4, 0]), 0.0);
        }
        assert_eq!(
            bias.narrow(0, first, (KEYS * 2) as i64)
                .abs()
                .sum(Kind::Double)
                .double_value(&[]),
            0.0
        );
        assert_eq!(
            bias.narrow(0, 0, first).sum(Kind::Double).double_value(&[]),
            (first * 2) as f64
        );
    }

    #[test]
    fn poles_ring_at_the_asked_frequency_and_decay() {
        let rate = 24_000.0;
        let (norm, angle, _) = stored(261.6, 8.0, rate);
        let l = stable_pole(norm, angle);
        assert!(
            (l.im * rate / TAU - 261.6).abs() < 1e-3,
            "{}",
            l.im * rate / TAU
        );
        assert!((-6.9 / (l.re * rate) - 8.0).abs() < 1e-3);
    }

    #[test]
    fn partials_stretch_and_high_keys_fill_with_unisons() {
        let bank = KeyBank {
            first: 0,
            per_key: 8,
        };
        let rate = 24_000.0;
        let a4: Vec<f64> = (48 * 8..49 * 8)
            .map(|i| partial_of(&bank, i, rate).freq)
            .collect();
        assert!((a4[0] - 440.0).abs() < 0.1, "{a4:?}");
        // stretched: partial 8 above 8·f1, every partial higher than the last
        assert!(
            a4[7] > 8.0 * a4[0] && a4.windows(2).all(|w| w[1] > w[0]),
            "{a4:?}"
        );
        // C8 (key 87): only its fundamental and second partial fit under 10.8 kHz
        let c8: Vec<f64> = (87 * 8..88 * 8)
            .map(|i| partial_of(&bank, i, rate).freq)
            .collect();
        assert!(
            c8.iter().all(|&f| f < HIGHEST_PARTIAL * rate * 1.003),
            "{c8:?}"
        );
        assert!(
            (c8[2] / c8[0] - 2f64.powf(1.5 / 1200.0)).abs() < 1e-9,
            "{c8:?}"
        );
    }
}
