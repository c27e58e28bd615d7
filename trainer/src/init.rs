//! Where a fresh network starts: its poles, input and output weights.
//!
//! * [`PoleInit::Keyboard`] / [`PoleInit::LogUniform`] — random weights around structured poles.
//! * [`PoleInit::GatedKeys`] — the network starts as a bank of gated key resonators (see
//!   [`gated_keys`]): every key rings at its pitch while it is held and is damped when it is
//!   released, which a spectral loss does not find on its own in a CPU budget.

use anyhow::{bail, Result};
use num_complex::Complex64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssm_runtime::model::SsmLayer;
use ssm_runtime::soundcheck::key_hz;
use ssm_runtime::KEYS;

use ssm_runtime::size::WIDTHS;

/// Where a fresh network starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum PoleInit {
    /// Half the poles ring for seconds at equal-temperament key frequencies (each layer takes an
    /// interleaved share of the keyboard), half are short-lived and spread log-uniformly. This is
    /// the structure trained models end up with (about half of the published checkpoints' poles
    /// sit within 10 cents of a key), so training starts where it would otherwise spend most of
    /// its steps: a spectral loss barely moves a narrow resonance that does not yet overlap its
    /// target partial.
    #[default]
    Keyboard,
    /// Frequencies log-uniform over the whole band, decays log-uniform from 5 ms to 5 s.
    LogUniform,
    /// The first layer is one resonator per key, gated by the key's held envelope; the later
    /// layers are random with short-lived poles (see `init::gated_keys`); needs 118 or more
    /// states (L, XL).
    GatedKeys,
    /// The first layer is the keys' partials, each damped by its key's damper (format
    /// version 2) instead of a gate; the later layers as `gated-keys` (see
    /// `init::damped_keys`); needs 88 or more states.
    DampedKeys,
}

/// How a fresh model is initialised.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    pub poles: PoleInit,
    /// Training sample rate: pole frequencies and time constants are in Hz and seconds.
    pub sample_rate: u32,
    pub seed: u64,
    /// Gate depth β of `PoleInit::GatedKeys` (see [`gated_keys`]); ignored by the others.
    pub gate: f64,
}

impl InitOptions {
    /// `poles` at `sample_rate` from `seed`, with the default gate depth.
    pub fn new(poles: PoleInit, sample_rate: u32, seed: u64) -> InitOptions {
        InitOptions {
            poles,
            sample_rate,
            seed,
            gate: gated_keys::GATE,
        }
    }
}

/// Initial weights of the whole network, in the runtime's layout.
pub struct Init {
    pub layers: Vec<SsmLayer>,
    pub head_weight: Vec<f32>,
    pub head_bias: Vec<f32>,
}

impl Init {
    pub fn new(state: usize, heads: usize, options: InitOptions) -> Result<Init> {
        let mut normal = Normal::new(options.seed);
        match options.poles {
            PoleInit::GatedKeys => gated_keys::network(state, heads, options, &mut normal),
            PoleInit::DampedKeys => damped_keys::network(state, heads, options, &mut normal),
            PoleInit::Keyboard | PoleInit::LogUniform => {
                Ok(random(state, heads, options, &mut normal))
            }
        }
    }
}

/// Gaussian samples from a seeded stream (Box–Muller: rand_distr is not worth a dependency).
pub struct Normal(ChaCha8Rng);

impl Normal {
    pub fn new(seed: u64) -> Normal {
        Normal(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn sample(&mut self, scale: f64) -> f32 {
        let (u1, u2): (f64, f64) = (self.0.random::<f64>().max(1e-12), self.0.random());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * scale) as f32
    }

    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| self.sample(scale)).collect()
    }
}

/// `Keyboard` / `LogUniform`: poles as they say, B scaled to unit state gain (see
/// [`unit_gain_row`]), C and the skips Gaussian scaled by fan-in, biases zero.
fn random(state: usize, heads: usize, options: InitOptions, normal: &mut Normal) -> Init {
    let layers = WIDTHS
        .windows(2)
        .enumerate()
        .map(|(i, pair)| {
            let (inp, out) = (pair[0], pair[1]);
            let poles = match options.poles {
                PoleInit::LogUniform => log_uniform_poles(state, i),
                _ => keyboard_poles(state, i, WIDTHS.len() - 1, options.sample_rate as f64),
            };
            let mut layer = random_layer(&poles, inp, out, 0.7 / (state as f64).sqrt(), normal);
            if i > 0 {
                layer.skip = Some(normal.vec(out * inp, 1.0 / (inp as f64).sqrt()));
            }
            layer
        })
        .collect();
    let last = *WIDTHS.last().unwrap();
    Init {
        layers,
        head_weight: normal.vec(heads * last, 0.1 / (last as f64).sqrt()),
        head_bias: vec![0.0; heads],
    }
}

/// A layer with `poles`, unit-gain random B, Gaussian C of `c_scale`, zero biases, no skip.
fn random_layer(
    poles: &[Complex64],
    inputs: usize,
    outputs: usize,
    c_scale: f64,
    normal: &mut Normal,
) -> SsmLayer {
    let state = poles.len();
    SsmLayer {
        inputs,
        outputs,
        state,
        norm: poles.iter().map(|l| l.norm().ln() as f32).collect(),
        angle: poles.iter().map(|l| l.arg() as f32).collect(),
        b: poles
            .iter()
            .flat_map(|l| unit_gain_row(l, inputs, normal))
            .collect(),
        b_bias: vec![0.0; state * 2],
        c: normal.vec(outputs * state * 2, c_scale),
        c_bias: vec![0.0; outputs * 2],
        skip: None,
        damper: None,
        velocity_exponent: None,
        b_square: None,
    }
}

/// One state's B row (`inputs` complex weights, interleaved), scaled by the pole's magnitude.
///
/// Why: a constant input v drives a state to −B·v/λ and a step rings with the same amplitude,
/// so with |λ| ≪ 1 per sample (slow or low poles) a fan-in-scaled B gives states hundreds of
/// times their input, every tanh saturates and the untrained network plays clipped noise that
/// a spectral loss cannot climb out of. Scaled by |λ|, each state answers a key with about
/// half its velocity, as in the published checkpoints (median |B_k| / |λ_k| ≈ 0.5 in every
/// layer).
fn unit_gain_row(pole: &Complex64, inputs: usize, normal: &mut Normal) -> Vec<f32> {
    normal.vec(inputs * 2, 0.5 * pole.norm() / std::f64::consts::SQRT_2)
}

/// Continuous-time pole (unit: one training sample) ringing at `hz` with a 60 dB decay time
/// of `t60` seconds.
pub fn pole(hz: f64, t60: f64, sample_rate: f64) -> Complex64 {
    Complex64::new(
        -6.9 / (t60 * sample_rate),
        2.0 * std::f64::consts::PI * hz / sample_rate,
    )
}

/// A real pole (no oscillation) with time constant `seconds`.
fn real_pole(seconds: f64, sample_rate: f64) -> Complex64 {
    Complex64::new(-1.0 / (seconds * sample_rate), 0.0)
}

/// How long a key rings while held: 8 s at A0 down to 1 s at C8 (bass strings ring longer).
fn key_t60(midi: f64) -> f64 {
    8.0 * (1.0f64 / 8.0).powf(((midi - 21.0) / 87.0).clamp(0.0, 1.0))
}

/// `PoleInit::Keyboard` for layer `layer` of `layers`.
fn keyboard_poles(state: usize, layer: usize, layers: usize, sample_rate: f64) -> Vec<Complex64> {
    // A0 upwards, as far as the training rate carries (partials of the top keys continue
    // above C8)
    let keys: Vec<f64> = (21..128)
        .map(f64::from)
        .take_while(|&m| key_hz(m as u8) < 0.45 * sample_rate)
        .collect();
    let pitched = state / 2;
    let ringing = (0..pitched).map(|k| {
        // each layer is offset by a fraction of the key spacing so the layers together cover
        // the keyboard
        let at =
            (k as f64 + (layer as f64 + 0.5) / layers as f64) * keys.len() as f64 / pitched as f64;
        let midi = keys[(at as usize).min(keys.len() - 1)];
        pole(key_hz(midi as u8), key_t60(midi), sample_rate)
    });
    ringing
        .chain(transient_poles(state - pitched, layer, sample_rate))
        .collect()
}

/// `count` short-lived poles: frequencies log-uniform from 5 Hz to 0.45·sr, decays from 5 to
/// 300 ms scrambled against frequency.
fn transient_poles(count: usize, layer: usize, sample_rate: f64) -> Vec<Complex64> {
    (0..count)
        .map(|k| {
            let frac = (k as f64 + 0.5) / count as f64;
            let hz = 5.0 * (0.45 * sample_rate / 5.0).powf(frac);
            let d = ((k * 7919 + layer * 31) % count) as f64 / count as f64;
            pole(hz, 0.005 * 60f64.powf(d), sample_rate)
        })
        .collect()
}

/// `PoleInit::LogUniform`: partial frequencies spread log-uniformly over the band, decay times
/// log-uniform from 80 to 80 000 samples, scrambled against frequency.
fn log_uniform_poles(state: usize, layer: usize) -> Vec<Complex64> {
    (0..state)
        .map(|k| {
            let frac = (k as f64 + 0.5) / state as f64;
            let omega = 0.005 * (std::f64::consts::PI / 0.005).powf(frac); // rad/sample
            let decay = 1.0
                / (80.0 * 1000f64.powf(((k * 7919 + layer * 31) % state) as f64 / state as f64));
            Complex64::new(-decay, omega)
        })
        .collect()
}

/// `PoleInit::GatedKeys`: the network starts as a polyphonic instrument whose keys fall silent
/// when released.
///
/// Why: a released key must fall silent, and no linear filter of the roll does that: the key-up
/// step excites a resonance as much as the key-down step did, so a resonance that rings for
/// seconds rings on after release. Damping needs a nonlinearity per key, and the only layer
/// with a channel per key is the first (88 → 88). So layer 1 channel k is
///
/// ```text
///     y_k = β − α·e_k + Σ_n r_{k,n}
/// ```
///
/// with e_k the key's held envelope (a real pole of 2 ms, ≈ velocity / 127 while held), r_{k,n}
/// its resonances (fundamental and, where states are left, overtones), α = β (`--gate`, 3 by
/// default). Held at full velocity the tanh works in its linear range and the resonance passes;
/// released, y_k sits at β where tanh's slope is sech²(β): −40 dB at 3, −58 dB at 4. The price:
/// softer keys open the gate less (the gain at velocity v is sech²(β·(1 − v/127))), so dynamics
/// are steeper than a piano's until training reshapes them, the more so the deeper the gate.
/// Why deeper: a trained key's resonance rings for seconds (low keys for minutes), and what the
/// gate lets through after release is still there 2 s later.
///
/// A key needs one resonance state and half a gate state (a real pole's complex state carries
/// two envelopes, one in its real and one in its imaginary part): 132 states for 88 keys. L
/// has 128, so its top ten keys share two gates; S (64) cannot hold the design.
///
/// Layers 2–4 start as the random init's layers (unit-gain B, Gaussian C and skips) but with
/// short-lived poles only (5–300 ms): they turn the gated tones into a piano's spectrum
/// (overtones and intermodulation, which a spectral loss wants in every bin), and whatever
/// they play stops within a fraction of a second of their input, which stops when the keys
/// are released. Each layer's input bias cancels the constant its input holds at rest and the
/// head's bias the rest of the output, so the silent network is silent from a zero state. The
/// head sums the last 20 channels; its level is set by the caller on training data
/// (`Network::match_level`). Trained with `--rest-at-zero` and `--later-t60`, which keep the
/// rest silent and the later poles short after every step.
pub mod gated_keys {
    use super::*;

    /// Default gate bias β (and gain α): released, the tanh slope is sech²(β), −40 dB.
    pub const GATE: f64 = 3.0;
    /// Deepest gate accepted: sech²(8) is −133 dB, and soft keys would barely open it.
    pub const MAX_GATE: f64 = 8.0;

    /// Whether `gate` is a usable depth, in (0, [`MAX_GATE`]].
    pub fn is_valid_gate(gate: f64) -> bool {
        gate > 0.0 && gate <= MAX_GATE
    }
    /// A resonance's amplitude in the first layer's tanh at full velocity.
    pub const RING: f64 = 0.3;
    /// Time constant of the held envelope.
    pub const ENVELOPE_SECONDS: f64 = 0.002;
    /// Fewest first-layer states: 88 resonances and 30 gates (60 envelopes).
    pub const MIN_STATES: usize = KEYS + 30;

    /// The whole network.
    pub fn network(
        state: usize,
        heads: usize,
        options: InitOptions,
        normal: &mut Normal,
    ) -> Result<Init> {
        if state < MIN_STATES {
            bail!(
                "--init gated-keys needs at least {MIN_STATES} states (one resonance per key and \
                 the key gates); this size has {state}: use L or XL, or --init keyboard"
            );
        }
        let sr = options.sample_rate as f64;
        Ok(behind(
            first_layer(state, sr, options.gate),
            state,
            heads,
            sr,
            normal,
        ))
    }

    /// The network behind a key layer: layers 2–4 random with short-lived poles, each input
    /// bias cancelling its input's rest, and heads summing the last layer with the rest's
    /// output cancelled.
    pub(super) fn behind(
        first: SsmLayer,
        state: usize,
        heads: usize,
        sr: f64,
        normal: &mut Normal,
    ) -> Init {
        let mut layers = vec![first];
        for (i, pair) in WIDTHS.windows(2).enumerate().skip(1) {
            let (inp, out) = (pair[0], pair[1]);
            let poles = transient_poles(state, i, sr);
            let mut layer = random_layer(&poles, inp, out, 0.7 / (state as f64).sqrt(), normal);
            layer.skip = Some(normal.vec(out * inp, 1.0 / (inp as f64).sqrt()));
            cancel_rest(&mut layer, &layers_rest(&layers));
            layers.push(layer);
        }
        let last = *WIDTHS.last().unwrap();
        let out_rest = layers_rest(&layers);
        let head_weight = vec![1.0f32; heads * last];
        let bias = -out_rest.iter().sum::<f64>() as f32;
        Init {
            layers,
            head_weight,
            head_bias: vec![bias; heads],
        }
    }

    /// Layer 1: resonances, overtones (if states are left) and gates.
    fn first_layer(state: usize, sr: f64, gate: f64) -> SsmLayer {
        let gates = (state - KEYS).min(KEYS / 2);
        let overtones = overtones(state - KEYS - gates, sr);
        let (inp, out) = (KEYS, KEYS);
        let mut l = empty_layer(inp, out, state);
        let mut p = 0;
        // the fundamentals, then the overtones
        let partials = (0..KEYS).map(|k| (k, 1usize)).chain(overtones);
        for (k, n) in partials {
            let midi = (k + 21) as f64;
            let hz = (n as f64 * key_hz(midi as u8)).min(0.45 * sr);
            let lambda = pole(hz, key_t60(midi) / n as f64, sr);
            set_pole(&mut l, p, lambda);
            // B = −r·λ: the state settles at r·v and its ringing starts at −r·v, so x_im is
            // −r·v·e^{−at}·sin(ωt): a resonance without a DC step
            let b = -lambda * (RING / n as f64);
            set_b(&mut l, p, k, b);
            // y_k += Im x_p  (Re(C x) with C = −i)
            set_c(&mut l, k, p, Complex64::new(0.0, -1.0));
            p += 1;
        }
        let envelope = real_pole(ENVELOPE_SECONDS, sr);
        let a = -envelope.re;
        for (k, signal) in gate_signals(gates) {
            let g = p + signal / 2;
            set_pole(&mut l, g, envelope);
            // B = a settles the state at v/127; the real part carries one key's envelope,
            // the imaginary part another's
            let (b, c) = if signal % 2 == 0 {
                (Complex64::new(a, 0.0), Complex64::new(-gate, 0.0))
            } else {
                (Complex64::new(0.0, a), Complex64::new(0.0, gate))
            };
            set_b(&mut l, g, k, b);
            set_c(&mut l, k, g, c);
        }
        for k in 0..KEYS {
            l.c_bias[2 * k] = gate as f32;
        }
        l
    }

    /// (key, envelope signal) for `gates` gate states (two signals each): one signal per key
    /// while there are enough, else the top keys share the last two signals in two groups.
    fn gate_signals(gates: usize) -> Vec<(usize, usize)> {
        let signals = 2 * gates;
        if signals >= KEYS {
            return (0..KEYS).map(|k| (k, k)).collect();
        }
        let own = signals - 2;
        let shared = KEYS - own;
        (0..KEYS)
            .map(|k| {
                if k < own {
                    (k, k)
                } else {
                    (k, own + (k - own) * 2 / shared)
                }
            })
            .collect()
    }

    /// `count` overtone partials (key, n): the second partial of every key, then the third,
    /// and so on, bottom up, as long as they lie below 0.45·sr.
    pub(super) fn overtones(count: usize, sr: f64) -> Vec<(usize, usize)> {
        (2..16)
            .flat_map(|n| (0..KEYS).map(move |k| (k, n)))
            .filter(|&(k, n)| n as f64 * key_hz((k + 21) as u8) < 0.45 * sr)
            .take(count)
            .collect()
    }

    /// What each layer's output holds at rest, for the layers so far (every state at zero).
    pub(super) fn layers_rest(layers: &[SsmLayer]) -> Vec<f64> {
        let mut h: Vec<f64> = Vec::new();
        for l in layers {
            let y: Vec<f64> = (0..l.outputs)
                .map(|j| (l.c_bias[2 * j] as f64).tanh())
                .collect();
            h = match &l.skip {
                Some(w) => (0..l.outputs)
                    .map(|j| {
                        let skip: f64 = (0..l.inputs)
                            .map(|k| w[j * l.inputs + k] as f64 * h[k])
                            .sum();
                        (y[j] + skip) / std::f64::consts::SQRT_2
                    })
                    .collect(),
                None => y.iter().map(|v| v / std::f64::consts::SQRT_2).collect(),
            };
        }
        h
    }

    /// Sets B_bias = −B·rest, so a constant input `rest` leaves every state at zero.
    pub(super) fn cancel_rest(l: &mut SsmLayer, rest: &[f64]) {
        for p in 0..l.state {
            for component in 0..2 {
                let s: f64 = (0..l.inputs)
                    .map(|i| l.b[(p * l.inputs + i) * 2 + component] as f64 * rest[i])
                    .sum();
                l.b_bias[2 * p + component] = -s as f32;
            }
        }
    }

    pub(super) fn empty_layer(inputs: usize, outputs: usize, state: usize) -> SsmLayer {
        SsmLayer {
            inputs,
            outputs,
            state,
            norm: vec![0.0; state],
            angle: vec![0.0; state],
            b: vec![0.0; state * inputs * 2],
            b_bias: vec![0.0; state * 2],
            c: vec![0.0; outputs * state * 2],
            c_bias: vec![0.0; outputs * 2],
            skip: None,
            damper: None,
            velocity_exponent: None,
            b_square: None,
        }
    }

    pub(super) fn set_pole(l: &mut SsmLayer, p: usize, lambda: Complex64) {
        l.norm[p] = lambda.norm().ln() as f32;
        l.angle[p] = lambda.arg() as f32;
    }

    pub(super) fn set_b(l: &mut SsmLayer, p: usize, input: usize, b: Complex64) {
        let at = (p * l.inputs + input) * 2;
        l.b[at] = b.re as f32;
        l.b[at + 1] = b.im as f32;
    }

    pub(super) fn set_c(l: &mut SsmLayer, output: usize, p: usize, c: Complex64) {
        let at = (output * l.state + p) * 2;
        l.c[at] = c.re as f32;
        l.c[at + 1] = c.im as f32;
    }
}

/// `PoleInit::DampedKeys`: the network starts as a piano whose keys are stopped by dampers.
///
/// Layer 1 is every key's partials — its fundamental, then second partials bottom up, then
/// third, as far as the states go — each a state ringing at the partial with the key's held
/// decay ([`key_t60`] over the partial number), driven by its key only (`B = −r·λ/n`: the
/// state settles at a real value and `Im x`, which channel k reads, rings without a DC step)
/// and tagged with its key for the damper. The damped pole keeps the partial's frequency and
/// decays in [`DAMPED_T60`] (or half the held decay, if that is shorter), reached over the
/// damper's fall of [`FALL_FRAMES`]: released, the partial fades smoothly, and the damper's
/// rule (every state keeps its vibration, not its equilibrium) keeps the release from striking
/// it again, and the equilibrium fades out of the output over [`SETTLE_FRAMES`]. No gate: the
/// tanh works in its linear range at every velocity, so dynamics start linear.
/// Layers 2–4 and the heads as in [`gated_keys`].
pub mod damped_keys {
    use super::gated_keys::{behind, empty_layer, overtones, set_b, set_c, set_pole, RING};
    use super::*;
    use ssm_runtime::model::Damper;

    /// 60 dB decay of a damped string (seconds): a felt damper stops a mid-range string in
    /// about a tenth of a second.
    pub const DAMPED_T60: f64 = 0.1;
    /// How many frames the damper takes to fall: 10 ms at the 1200 Hz MIDI rate of the
    /// Salamander runs (a felt settles on its string over some milliseconds; an instant
    /// switch puts a kink in the waveform, heard as a click).
    pub const FALL_FRAMES: u32 = 12;
    /// Time constant of the held equilibrium's fade out of the output after a release, in
    /// frames: 5 ms at 1200 Hz. Measured on a trained Grand L (48 kHz, keys A2..A5): energy
    /// above 2 kHz in the 60 ms after a release −11 dB with the equilibrium dropped at once,
    /// −80 to −90 dB with 6 frames, no better with 24.
    pub const SETTLE_FRAMES: u32 = 6;

    pub fn network(
        state: usize,
        heads: usize,
        options: InitOptions,
        normal: &mut Normal,
    ) -> Result<Init> {
        if state < KEYS {
            bail!(
                "--init damped-keys needs at least {KEYS} states (one partial per key); this \
                 size has {state}: use L or XL, or --init keyboard"
            );
        }
        let sr = options.sample_rate as f64;
        Ok(behind(first_layer(state, sr), state, heads, sr, normal))
    }

    fn first_layer(state: usize, sr: f64) -> SsmLayer {
        let mut l = empty_layer(KEYS, KEYS, state);
        let mut damper = Damper::none(&l.norm, &l.angle);
        let partials = (0..KEYS)
            .map(|k| (k, 1usize))
            .chain(overtones(state - KEYS, sr));
        for (p, (k, n)) in partials.enumerate() {
            let midi = (k + 21) as f64;
            let hz = (n as f64 * key_hz(midi as u8)).min(0.45 * sr);
            let t60 = key_t60(midi) / n as f64;
            let lambda = pole(hz, t60, sr);
            set_pole(&mut l, p, lambda);
            set_b(&mut l, p, k, -lambda * (RING / n as f64));
            set_c(&mut l, k, p, Complex64::new(0.0, -1.0));
            let damped = pole(hz, DAMPED_T60.min(t60 / 2.0), sr);
            damper.key[p] = Some(k as u8);
            damper.norm[p] = damped.norm().ln() as f32;
            damper.angle[p] = damped.arg() as f32;
        }
        damper.fall_frames = FALL_FRAMES;
        damper.settle_frames = SETTLE_FRAMES;
        l.damper = Some(damper);
        l
    }
}
