//! The Piano-SSM model file: raw (continuous-time) parameters in safetensors, plus a JSON
//! description in the safetensors `__metadata__` map.
//!
//! Parameters are stored exactly as trained (before discretisation), so one file serves
//! every sample rate: the engine discretises for the host rate when it is built.
//! Complex tensors are stored as real `(…, 2)` pairs (safetensors has no complex dtype).
//!
//! Tensor names, for layer `i` with `in → out` channels and state size `P`:
//! `layers.i.norm` (P), `layers.i.angle` (P), `layers.i.B` (P, in, 2), `layers.i.B_bias` (P, 2),
//! `layers.i.C` (out, P, 2), `layers.i.C_bias` (out, 2), `layers.i.skip` (out, in) for i ≥ 1,
//! `heads.weight` (H, last width), `heads.bias` (H).
//!
//! Format version 2 adds the **key damper** to the first layer (see [`Damper`]):
//! `layers.0.damper_key` (P; the key index 0..88 a state belongs to, or −1), and
//! `layers.0.damper_norm`, `layers.0.damper_angle` (P): the pole a tagged state plays while its
//! key is silent, `layers.0.damper_fall` (1): how many frames the damper takes to fall, and
//! `layers.0.damper_settle` (1, optional, 0 when absent): the time constant in frames over
//! which the held equilibrium fades out of the output after a fall. Version 2 also adds
//! `layers.0.velocity_exponent` (1, optional, 1 when absent): the first layer reads a key's
//! roll value `v` as `(v/127)^e` instead of `v/127` (see [`SsmLayer::velocity_exponent`]).
//! Format version 3 adds `layers.0.B_square` (P, 88, 2, optional): a second input matrix that
//! reads the square of each key's touch (see [`SsmLayer::b_square`]).
//! Format version 4 lets the heads have two output channels (stereo, left then right): the
//! metadata field `channels` ("1" when absent) and `heads.weight` (H, 2, last width),
//! `heads.bias` (H, 2) (see [`Model::channels`]); and the optional `heads.state_weight`
//! (H, channels, P₁, 2): each head channel also reads the first layer's states directly (see
//! [`Model::head_state_weight`]).
//! Every file is written as the lowest version that holds it: files without a damper or an
//! exponent as version 1, so every earlier build reads them (the published checkpoints import
//! that way), only files with `B_square` as version 3 and only stereo files as version 4.

use num_complex::Complex64;

use crate::error::ModelError;

pub use crate::limits::{KEYS, LOWEST_NOTE, MAX_RATE, MIN_RATE};
/// The newest format version this crate reads and writes; loading rejects newer versions.
pub const FORMAT_VERSION: u32 = 4;
/// The version a model with stereo heads or head state weights is written as.
const STEREO_FORMAT_VERSION: u32 = 4;
/// The version a mono model with `B_square` is written as.
const SQUARE_FORMAT_VERSION: u32 = 3;
/// The version a model with a key damper or a velocity exponent, but no `B_square`, is
/// written as.
const DAMPER_FORMAT_VERSION: u32 = 2;
/// The version a model without any first-layer extension is written as.
const PLAIN_FORMAT_VERSION: u32 = 1;
/// Value of the `format` metadata field, marking a file as a Piano-SSM model.
pub const FORMAT_NAME: &str = "piano-ssm";

/// The nonlinearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
    /// PyTorch's `LeakyReLU` with its default slope 0.01.
    LeakyRelu,
    Identity,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Identity => "identity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tanh" => Some(Activation::Tanh),
            "relu" => Some(Activation::Relu),
            "leaky-relu" | "leaky_relu" => Some(Activation::LeakyRelu),
            "identity" => Some(Activation::Identity),
            _ => None,
        }
    }
}

/// Everything about a model that is not a weight.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Model family shown to users, e.g. "Piano-SSM MAESTRO".
    pub family: String,
    /// Size label: "S", "L", "XL" (or another label for custom widths).
    pub size: String,
    pub activation: Activation,
    /// Sample rate the model was trained at (Hz).
    pub train_rate: u32,
    /// Rate of the piano-roll frames (Hz); divides `train_rate`.
    pub midi_rate: u32,
    /// The model outputs normalised audio: `audio = out * norm_std + norm_mean`.
    pub norm_mean: f64,
    pub norm_std: f64,
    /// One label per output head, e.g. the MAESTRO years.
    pub heads: Vec<String>,
    /// What the heads stand for ("year", "piano", …), if anything.
    pub head_kind: Option<String>,
    /// Free-form provenance: where the weights come from, what data trained them.
    pub description: String,
}

/// One diagonal SSM layer's raw parameters (row-major, complex values as (re, im) pairs).
#[derive(Debug, Clone, PartialEq)]
pub struct SsmLayer {
    pub inputs: usize,
    pub outputs: usize,
    pub state: usize,
    /// log-magnitude of the continuous-time poles (P)
    pub norm: Vec<f32>,
    /// angle of the continuous-time poles before the stability rule (P)
    pub angle: Vec<f32>,
    /// input matrix (P, in, 2)
    pub b: Vec<f32>,
    /// input bias (P, 2)
    pub b_bias: Vec<f32>,
    /// output matrix (out, P, 2)
    pub c: Vec<f32>,
    /// output bias (out, 2); only the real part reaches the output
    pub c_bias: Vec<f32>,
    /// skip connection (out, in), on every layer but the first
    pub skip: Option<Vec<f32>>,
    /// the key damper, on the first layer only (format version 2)
    pub damper: Option<Damper>,
    /// On the first layer only (format version 2): the layer reads a key's roll value `v` as
    /// `(v/127)^e`; `None` reads `v/127`, as the published checkpoints were trained. Why: a
    /// layer linear in `v/127` plays velocity 20 only 16 dB below 120 (less once the tanh
    /// compresses), while a grand's soft notes lie about 30 dB below its loud ones (the
    /// training sampler's curve is `40·log10(v/127)` dB, an exponent of 2 in amplitude).
    pub velocity_exponent: Option<f32>,
    /// On the first layer only (format version 3): a second input matrix (P, in, 2) for the
    /// square of each key's touch, so the layer's input is `B t + B_square t² + B_bias` with
    /// `t` the roll value as the layer reads it. Why: with one matrix every state answers a
    /// key in the same proportion at every velocity, so velocity scales the tone but cannot
    /// change it; a piano's upper partials grow faster with velocity than its fundamental
    /// (a harder strike sounds brighter). Two powers give each state its own velocity curve.
    pub b_square: Option<Vec<f32>>,
}

/// The range a first layer's velocity exponent may take.
pub const VELOCITY_EXPONENTS: std::ops::RangeInclusive<f32> = 0.25..=4.0;

/// The first layer's key damper: a state tagged with a key plays a second pole while that
/// key's roll value is 0, as a felt damper stops a string when its key is up. A released key
/// never strikes: where keys fall to 0, *every* state of the layer keeps its deviation from
/// equilibrium (the vibration) and moves at once from the equilibrium it held to that of the
/// keys still down, each at the pole the state rests at before and after (the damped one while
/// its key is up): `x ← x + x*_after(w_kept) − x*_before(w_before)`, `x* = −w/λ`,
/// `w = B u + B_bias` for the previous frame's keys and for those of them still down. Without
/// that rule the layer would answer the key-up edge as it answers the key-down edge, and every
/// state a key drives would ring out a second, negated strike. The damper falls over `fall_frames` frames: sample by sample the pole moves linearly from the sounding
/// pole to the damped one (`λ_n = λ + (λ_d − λ)·n/R`, `R` the fall in samples), and the input
/// gain with it (`g_n = g + (g_d − g)·n/R`), so a released string fades in without the kink
/// an instant switch puts into its waveform (heard as a click).
///
/// The equilibrium a state leaves is not dropped from the output at once: it moves to an
/// **offset** that the output reads beside the state (`Re C (x + o)`) and that fades out along
/// a critically damped curve, `o_n = Δ·(ρⁿ + n(1 − ρ)ρⁿ⁻¹)` with `Δ` minus the state's jump,
/// `ρ = exp(−1/(settle_frames·frame))` per sample, `n` counted from the change's first sample.
/// Once a trained layer's output holds a visible part of the equilibrium, dropping it in one
/// sample is a step in the output, heard as a click at every release; the fade starts flat
/// and ends flat, so the step becomes a slope falling 18 dB per octave. The fade is cut where
/// it has fallen below [`SETTLE_FLOOR`] of `Δ`. Overlapping fades add.
///
/// Why: the roll holds a key at its velocity and a linear layer driven by it answers the
/// key-up edge exactly as much as the key-down edge, so no time-invariant first layer can
/// stop a resonance when a key is released. A pole that switches with the key can: the
/// trained (or initial) damped pole decays in a fraction of a second, and being a different
/// pole, it takes the state's energy with it instead of ringing it again. The layer stays
/// linear in its input between roll changes, so the trainer keeps a closed form per frame and
/// the engine pays nothing per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Damper {
    /// per state: the key (0 = A0) whose silence damps it, or `None` (never damped)
    pub key: Vec<Option<u8>>,
    /// log-magnitude of the damped pole (P), read like `norm`
    pub norm: Vec<f32>,
    /// angle of the damped pole (P), read like `angle` (the same stability rule)
    pub angle: Vec<f32>,
    /// how many frames (at the model's MIDI rate) the damper takes to fall; 0 = at once
    pub fall_frames: u32,
    /// the time constant, in frames, of the held equilibrium's fade; 0 = dropped at once
    pub settle_frames: u32,
}

/// The longest damper fall or settling time constant a model may ask for, in frames.
pub const MAX_DAMPER_FRAMES: u32 = 1000;

/// The largest magnitude a weight (B, B_bias, B_square, C, C_bias, skip, heads) or the
/// output scale `norm_std` / offset `norm_mean` may have. Trained models stay below 11,
/// the published ones below 5; the bound keeps every product the engine forms finite in
/// f32, so a model that validates cannot play an infinity.
pub const MAX_WEIGHT: f32 = 1e4;
/// The range of a pole's log-magnitude (`norm`, `damper_norm`): exp(±30) spans every
/// decay and frequency the rates allow (published: −7.2 to 2.3), and a pole no smaller
/// than exp(−30) keeps the discretisation `(λ̄ − 1)/λ` away from 0/0.
pub const NORMS: std::ops::RangeInclusive<f32> = -30.0..=30.0;

/// Where a damper's settling fade is cut: this fraction of where it started.
pub const SETTLE_FLOOR: f64 = 1e-6;

impl Damper {
    /// A damper that damps nothing, for a layer of `state` states (the trainer's starting
    /// point when a model gains a damper).
    pub fn none(norm: &[f32], angle: &[f32]) -> Damper {
        Damper {
            key: vec![None; norm.len()],
            norm: norm.to_vec(),
            angle: angle.to_vec(),
            fall_frames: 0,
            settle_frames: 0,
        }
    }

    /// The settling fade of `settle_frames` sample by sample, for `frame` samples per MIDI
    /// frame: `o_n / Δ` for n = 0 up to where it falls below [`SETTLE_FLOOR`]; nothing when the
    /// damper does not settle. Computed by the recurrence the engine runs (`z₂ ← ρ z₂ +
    /// (1 − ρ) z₁`, `z₁ ← ρ z₁`), so the trainer's table and the engine's states agree to
    /// rounding; the engine only counts it.
    pub fn settle_fade(settle_frames: u32, frame: f64) -> impl Iterator<Item = f64> {
        let rho = Damper::settle_pole(settle_frames, frame);
        let start = if settle_frames == 0 {
            (0.0, 0.0)
        } else {
            (1.0, 1.0)
        };
        std::iter::successors(Some(start), move |&(drive, visible)| {
            Some((drive * rho, rho * visible + (1.0 - rho) * drive))
        })
        .map(|(_, visible)| visible)
        .take_while(|&visible| visible >= SETTLE_FLOOR)
    }

    /// The settling fade's per-sample pole for `settle_frames` frames of `frame` samples.
    pub fn settle_pole(settle_frames: u32, frame: f64) -> f64 {
        (-1.0 / (settle_frames as f64 * frame)).exp()
    }

    /// The key tags as stored: the key index, or −1.
    pub fn key_tags(&self) -> Vec<f32> {
        self.key
            .iter()
            .map(|k| k.map_or(-1.0, |k| k as f32))
            .collect()
    }

    /// Reads stored key tags (`damper_key`), each −1 or a key index.
    pub fn parse_key_tags(tags: &[f32]) -> Result<Vec<Option<u8>>, ModelError> {
        tags.iter()
            .enumerate()
            .map(|(i, &t)| match t {
                -1.0 => Ok(None),
                t if t >= 0.0 && t < KEYS as f32 && t.fract() == 0.0 => Ok(Some(t as u8)),
                t => Err(ModelError::BadValue {
                    name: "layers.0.damper_key".into(),
                    reason: format!("value {t} at index {i} is neither −1 nor a key 0..{KEYS}"),
                }),
            })
            .collect()
    }
}

/// The continuous-time pole a stored (norm, angle) pair plays as: magnitude `e^norm`, and the
/// stability rule's angle, which mirrors any pole with a positive real part to the left half
/// plane (`atan2(sin a, −|cos a|)`). The engine and the trainer's weight averaging read poles
/// through this function; the trainer's forward applies the same rule to its tensors.
pub fn stable_pole(norm: f32, angle: f32) -> Complex64 {
    let ev = Complex64::from_polar(1.0, angle as f64);
    let stable_angle = f64::atan2(ev.im, -ev.re.abs());
    Complex64::from_polar((norm as f64).exp(), stable_angle)
}

impl SsmLayer {
    fn parameter_count(&self) -> usize {
        self.norm.len()
            + self.angle.len()
            + self.b.len()
            + self.b_bias.len()
            + self.c.len()
            + self.c_bias.len()
            + self.skip.as_ref().map_or(0, Vec::len)
            + self.b_square.as_ref().map_or(0, Vec::len)
            + self
                .damper
                .as_ref()
                .map_or(0, |d| d.norm.len() + d.angle.len())
    }
}

/// A complete model: layers, heads and description.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub info: ModelInfo,
    pub layers: Vec<SsmLayer>,
    /// Output channels of every head: 1 (mono) or 2 (stereo: left, then right; format
    /// version 4). Every channel reads the same last layer and is scaled to audio alike
    /// (`norm_std`, `norm_mean`); a stereo head is two heads that share the network.
    pub channels: usize,
    /// (heads, channels, last width)
    pub head_weight: Vec<f32>,
    /// (heads, channels)
    pub head_bias: Vec<f32>,
    /// Format version 4, optional: (heads, channels, first layer's states, 2) complex
    /// weights by which each head channel also reads the first layer's states, as the first
    /// layer's own outputs read them (`C`): the channel's output gains `Re(Σ_q E_q x_q)`
    /// before the output scale. Why: the first layer's states belong to keys (the damper's
    /// tags, a key bank), the later layers mix every key; a stereo image that places each
    /// key's strings where the recording's microphones heard them needs a path from the
    /// strings that is still per key (`trainer stereo` fits it).
    pub head_state_weight: Option<Vec<f32>>,
}

/// The most output channels a head may have (stereo).
pub const MAX_CHANNELS: usize = 2;

/// The element-wise mean of equally long `rows`.
fn mean(rows: &[&[f32]]) -> Vec<f32> {
    let n = rows.len() as f32;
    (0..rows.first().map_or(0, |r| r.len()))
        .map(|i| rows.iter().map(|r| r[i]).sum::<f32>() / n)
        .collect()
}

mod bank;
mod file;
mod validate;

pub use bank::KeyBank;

pub(crate) use file::read_model_file;

impl Model {
    /// Channel widths from input to last layer, e.g. [88, 88, 60, 40, 20].
    pub fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self
            .layers
            .first()
            .map(|l| vec![l.inputs])
            .unwrap_or_default();
        w.extend(self.layers.iter().map(|l| l.outputs));
        w
    }

    /// State size of each layer.
    pub fn state_sizes(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.state).collect()
    }

    pub fn head_count(&self) -> usize {
        self.info.heads.len()
    }

    /// The weights and bias of one channel of one head (`head` < heads, `channel` <
    /// [`Model::channels`]).
    pub fn head_channel(&self, head: usize, channel: usize) -> (&[f32], f32) {
        let width = self.widths().last().copied().unwrap_or(0);
        let row = head * self.channels + channel;
        (
            &self.head_weight[row * width..(row + 1) * width],
            self.head_bias[row],
        )
    }

    /// One channel's weights on the first layer's states (`[re, im]` pairs), if the heads
    /// read them.
    pub fn head_state_channel(&self, head: usize, channel: usize) -> Option<&[f32]> {
        let p = 2 * self.layers.first()?.state;
        let row = head * self.channels + channel;
        let e = self.head_state_weight.as_ref()?;
        Some(&e[row * p..(row + 1) * p])
    }

    /// One head's channels folded to their mean: its weights and bias (a mono head's own).
    pub fn head_mean(&self, head: usize) -> (Vec<f32>, f32) {
        let channels = (0..self.channels).map(|ch| self.head_channel(head, ch));
        let (weights, biases): (Vec<&[f32]>, Vec<f32>) = channels.unzip();
        let c = self.channels as f32;
        (mean(&weights), biases.iter().sum::<f32>() / c)
    }

    /// The model with mono heads, each the mean of its channels (the stereo image folded
    /// to its middle); a mono model unchanged. State weights that cancel in the mean (a
    /// side, as `trainer stereo` fits) leave none.
    pub fn folded_to_mono(&self) -> Model {
        let mut mono = self.clone();
        if self.channels == 1 {
            return mono;
        }
        let (mut weight, mut bias, mut states) = (Vec::new(), Vec::new(), Vec::new());
        for head in 0..self.head_count() {
            let (w, b) = self.head_mean(head);
            weight.extend(w);
            bias.push(b);
            if self.head_state_weight.is_some() {
                let rows: Vec<&[f32]> = (0..self.channels)
                    .filter_map(|ch| self.head_state_channel(head, ch))
                    .collect();
                states.extend(mean(&rows));
            }
        }
        mono.channels = 1;
        mono.head_weight = weight;
        mono.head_bias = bias;
        mono.head_state_weight = Some(states).filter(|s| s.iter().any(|&v| v != 0.0));
        mono
    }

    /// Number of real values in all weights (a complex weight counts as two).
    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(SsmLayer::parameter_count)
            .sum::<usize>()
            + self.head_weight.len()
            + self.head_bias.len()
    }

    /// Head index for a label (e.g. "2009"), if the model has such a head.
    pub fn head_index(&self, label: &str) -> Option<usize> {
        self.info.heads.iter().position(|h| h == label)
    }
}
