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
//! Every file is written as the lowest version that holds it: files without a damper or an
//! exponent as version 1, so every earlier build reads them (the published checkpoints import
//! that way), and only files with `B_square` as version 3.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use num_complex::Complex64;
use safetensors::{Dtype, SafeTensors};

use crate::error::ModelError;

/// Number of piano keys, A0 (MIDI 21) to C8 (MIDI 108): the model's input width.
pub const KEYS: usize = 88;
/// MIDI note number of the lowest key.
pub const LOWEST_NOTE: u8 = 21;
/// The newest format version this crate reads and writes; loading rejects newer versions.
pub const FORMAT_VERSION: u32 = 3;
/// The version a model with a key damper or a velocity exponent, but no `B_square`, is
/// written as.
const DAMPER_FORMAT_VERSION: u32 = 2;
/// The version a model without any first-layer extension is written as.
const PLAIN_FORMAT_VERSION: u32 = 1;
/// Value of the `format` metadata field, marking a file as a Piano-SSM model.
pub const FORMAT_NAME: &str = "piano-ssm";
/// Lowest and highest sample rates the models are trained at or rendered for.
pub const MIN_RATE: u32 = 8_000;
pub const MAX_RATE: u32 = 192_000;

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
    /// (heads, last width)
    pub head_weight: Vec<f32>,
    /// (heads)
    pub head_bias: Vec<f32>,
}

impl Model {
    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let bytes =
            crate::fsutil::read_capped(path, crate::fsutil::MAX_MODEL_BYTES).map_err(|source| {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Model::from_bytes(&bytes)
    }

    /// Parses and validates a model from the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| ModelError::NotSafetensors(e.to_string()))?;
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| ModelError::NotSafetensors(e.to_string()))?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or(ModelError::MissingField("__metadata__"))?;
        let fields = MetaFields(meta);
        let info = fields.info()?;
        let widths: Vec<usize> = fields.json("widths")?;
        let states: Vec<usize> = fields.json("state_sizes")?;
        check_architecture(&widths, &states)?;

        let reader = TensorReader(&tensors);
        let layers = (0..states.len())
            .map(|i| reader.layer(i, widths[i], widths[i + 1], states[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let last = *widths.last().expect("checked non-empty");
        let heads = info.heads.len();
        let head_weight = reader.f32("heads.weight", &[heads, last])?;
        let head_bias = reader.f32("heads.bias", &[heads])?;
        reader.reject_unknown(states.len())?;

        let model = Model {
            info,
            layers,
            head_weight,
            head_bias,
        };
        model.validate()?;
        Ok(model)
    }

    /// Serialises the model to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.validate()?;
        let mut tensors: BTreeMap<String, (Vec<usize>, &[f32])> = BTreeMap::new();
        // the damper's values stored as f32 tensors, kept alive for the borrow below
        let stored: Vec<Option<StoredDamper>> = self
            .layers
            .iter()
            .map(|l| l.damper.as_ref().map(StoredDamper::new))
            .collect();
        for (i, l) in self.layers.iter().enumerate() {
            let (p, n_in, n_out) = (l.state, l.inputs, l.outputs);
            let mut entries: Vec<(&str, Vec<usize>, &[f32])> = vec![
                ("norm", vec![p], &l.norm),
                ("angle", vec![p], &l.angle),
                ("B", vec![p, n_in, 2], &l.b),
                ("B_bias", vec![p, 2], &l.b_bias),
                ("C", vec![n_out, p, 2], &l.c),
                ("C_bias", vec![n_out, 2], &l.c_bias),
            ];
            if let Some(skip) = &l.skip {
                entries.push(("skip", vec![n_out, n_in], skip));
            }
            if let (Some(d), Some(stored)) = (&l.damper, &stored[i]) {
                entries.push(("damper_key", vec![p], &stored.tags));
                entries.push(("damper_fall", vec![1], &stored.fall));
                entries.push(("damper_settle", vec![1], &stored.settle));
                entries.push(("damper_norm", vec![p], &d.norm));
                entries.push(("damper_angle", vec![p], &d.angle));
            }
            if let Some(e) = &l.velocity_exponent {
                entries.push(("velocity_exponent", vec![1], std::slice::from_ref(e)));
            }
            if let Some(b) = &l.b_square {
                entries.push(("B_square", vec![p, n_in, 2], b));
            }
            for (name, shape, data) in entries {
                tensors.insert(format!("layers.{i}.{name}"), (shape, data));
            }
        }
        let last = self.widths().last().copied().unwrap_or(0);
        tensors.insert(
            "heads.weight".into(),
            (vec![self.head_count(), last], &self.head_weight),
        );
        tensors.insert(
            "heads.bias".into(),
            (vec![self.head_count()], &self.head_bias),
        );

        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .into_iter()
            .map(|(name, (shape, data))| {
                (
                    name,
                    data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    shape,
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, data, shape)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Serialise(e.to_string()))?;
        safetensors::serialize(views, Some(self.metadata()))
            .map_err(|e| ModelError::Serialise(e.to_string()))
    }

    /// Writes the model atomically (temporary file, then rename), so a crash never leaves
    /// half a model where a good one was.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_bytes()?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|source| ModelError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

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
        self.head_bias.len()
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

    /// Checks every invariant the engine relies on.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_info(&self.info)?;
        check_architecture(&self.widths(), &self.state_sizes())?;
        for (i, l) in self.layers.iter().enumerate() {
            let name = |t: &str| format!("layers.{i}.{t}");
            let (p, n_in, n_out) = (l.state, l.inputs, l.outputs);
            check_len(&name("norm"), &l.norm, p)?;
            check_len(&name("angle"), &l.angle, p)?;
            check_weights(&name("B"), &l.b, p * n_in * 2)?;
            check_weights(&name("B_bias"), &l.b_bias, p * 2)?;
            check_weights(&name("C"), &l.c, n_out * p * 2)?;
            check_weights(&name("C_bias"), &l.c_bias, n_out * 2)?;
            match (&l.skip, i) {
                (None, 0) => {}
                (Some(s), i) if i > 0 => check_weights(&name("skip"), s, n_out * n_in)?,
                (Some(_), _) => return Err(ModelError::UnexpectedTensor(name("skip"))),
                (None, _) => return Err(ModelError::MissingTensor(name("skip"))),
            }
            match (&l.damper, i) {
                (None, _) => {}
                (Some(d), 0) => {
                    if d.key.len() != p {
                        return Err(ModelError::BadValue {
                            name: name("damper_key"),
                            reason: format!("holds {} values, expected {p}", d.key.len()),
                        });
                    }
                    if let Some(k) = d.key.iter().flatten().find(|&&k| k as usize >= KEYS) {
                        return Err(ModelError::BadValue {
                            name: name("damper_key"),
                            reason: format!("key {k} is not one of the {KEYS} keys"),
                        });
                    }
                    check_len(&name("damper_norm"), &d.norm, p)?;
                    check_len(&name("damper_angle"), &d.angle, p)?;
                    check_norms(&name("damper_norm"), &d.norm)?;
                    for (tensor, frames) in [
                        ("damper_fall", d.fall_frames),
                        ("damper_settle", d.settle_frames),
                    ] {
                        if frames > MAX_DAMPER_FRAMES {
                            return Err(ModelError::BadValue {
                                name: name(tensor),
                                reason: format!(
                                    "{frames} frames is longer than {MAX_DAMPER_FRAMES}"
                                ),
                            });
                        }
                    }
                }
                (Some(_), _) => return Err(ModelError::UnexpectedTensor(name("damper_key"))),
            }
            match (l.velocity_exponent, i) {
                (None, _) => {}
                (Some(e), 0) if VELOCITY_EXPONENTS.contains(&e) => {}
                (Some(e), 0) => {
                    return Err(ModelError::BadValue {
                        name: name("velocity_exponent"),
                        reason: format!(
                            "{e} is outside {}..={}",
                            VELOCITY_EXPONENTS.start(),
                            VELOCITY_EXPONENTS.end()
                        ),
                    })
                }
                (Some(_), _) => {
                    return Err(ModelError::UnexpectedTensor(name("velocity_exponent")))
                }
            }
            match (&l.b_square, i) {
                (None, _) => {}
                (Some(b), 0) => check_weights(&name("B_square"), b, p * n_in * 2)?,
                (Some(_), _) => return Err(ModelError::UnexpectedTensor(name("B_square"))),
            }
            check_norms(&name("norm"), &l.norm)?;
        }
        let heads = self.info.heads.len();
        let last = self.widths().last().copied().unwrap_or(0);
        check_weights("heads.weight", &self.head_weight, heads * last)?;
        check_weights("heads.bias", &self.head_bias, heads)?;
        Ok(())
    }

    /// The lowest format version that holds this model (see the module comment).
    pub fn format_version(&self) -> u32 {
        let any = |has: fn(&SsmLayer) -> bool| self.layers.iter().any(has);
        if any(|l| l.b_square.is_some()) {
            FORMAT_VERSION
        } else if any(|l| l.damper.is_some() || l.velocity_exponent.is_some()) {
            DAMPER_FORMAT_VERSION
        } else {
            PLAIN_FORMAT_VERSION
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let i = &self.info;
        let mut m = HashMap::new();
        m.insert("format".into(), FORMAT_NAME.into());
        m.insert("format_version".into(), self.format_version().to_string());
        m.insert("family".into(), i.family.clone());
        m.insert("size".into(), i.size.clone());
        m.insert("activation".into(), i.activation.name().into());
        m.insert(
            "widths".into(),
            serde_json::to_string(&self.widths()).expect("plain list"),
        );
        m.insert(
            "state_sizes".into(),
            serde_json::to_string(&self.state_sizes()).expect("plain list"),
        );
        m.insert("train_rate".into(), i.train_rate.to_string());
        m.insert("midi_rate".into(), i.midi_rate.to_string());
        // `{:?}` prints the shortest text that parses back to the same f64.
        m.insert("norm_mean".into(), format!("{:?}", i.norm_mean));
        m.insert("norm_std".into(), format!("{:?}", i.norm_std));
        m.insert(
            "heads".into(),
            serde_json::to_string(&i.heads).expect("plain list"),
        );
        if let Some(kind) = &i.head_kind {
            m.insert("head_kind".into(), kind.clone());
        }
        m.insert("description".into(), i.description.clone());
        m
    }
}

/// The tensors of every layer `layers.i.*` (the skip on every layer but the first).
const LAYER_TENSORS: [&str; 6] = ["norm", "angle", "B", "B_bias", "C", "C_bias"];
/// The key damper's tensors, `layers.0.*` (format version 2).
const DAMPER_TENSORS: [&str; 5] = [
    "damper_key",
    "damper_norm",
    "damper_angle",
    "damper_fall",
    "damper_settle",
];
/// The first layer's other optional tensors, `layers.0.*` (format versions 2 and 3).
const FIRST_LAYER_TENSORS: [&str; 2] = ["velocity_exponent", "B_square"];
/// The heads' tensors.
const HEAD_TENSORS: [&str; 2] = ["heads.weight", "heads.bias"];

/// A damper's key tags and durations as the f32 tensors the file stores.
struct StoredDamper {
    tags: Vec<f32>,
    fall: [f32; 1],
    settle: [f32; 1],
}

impl StoredDamper {
    fn new(d: &Damper) -> StoredDamper {
        StoredDamper {
            tags: d.key_tags(),
            fall: [d.fall_frames as f32],
            settle: [d.settle_frames as f32],
        }
    }
}

/// A stored damper duration (`tensor`): a whole number of frames up to [`MAX_DAMPER_FRAMES`].
fn damper_frames(tensor: &str, v: f32) -> Result<u32, ModelError> {
    if v >= 0.0 && v <= MAX_DAMPER_FRAMES as f32 && v.fract() == 0.0 {
        Ok(v as u32)
    } else {
        Err(ModelError::BadValue {
            name: format!("layers.0.{tensor}"),
            reason: format!("{v} is not a whole number of frames in 0..={MAX_DAMPER_FRAMES}"),
        })
    }
}

/// Pole magnitudes beyond e^30 per sample are no model's: a corrupt file.
fn check_norms(name: &str, norm: &[f32]) -> Result<(), ModelError> {
    match norm.iter().position(|v| !NORMS.contains(v)) {
        Some(k) => Err(ModelError::BadValue {
            name: name.into(),
            reason: format!(
                "pole magnitude exp({}) at index {k} is outside exp({})..=exp({})",
                norm[k],
                NORMS.start(),
                NORMS.end()
            ),
        }),
        None => Ok(()),
    }
}

/// [`check_len`], and every value within ±[`MAX_WEIGHT`].
fn check_weights(name: &str, data: &[f32], expected: usize) -> Result<(), ModelError> {
    check_len(name, data, expected)?;
    match data.iter().position(|v| v.abs() > MAX_WEIGHT) {
        Some(k) => Err(ModelError::BadValue {
            name: name.into(),
            reason: format!("{} at index {k} is beyond ±{MAX_WEIGHT:e}", data[k]),
        }),
        None => Ok(()),
    }
}

fn check_len(name: &str, data: &[f32], expected: usize) -> Result<(), ModelError> {
    if data.len() != expected {
        return Err(ModelError::BadValue {
            name: name.into(),
            reason: format!("holds {} values, expected {expected}", data.len()),
        });
    }
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFinite {
            name: name.into(),
            index,
        });
    }
    Ok(())
}

fn check_info(info: &ModelInfo) -> Result<(), ModelError> {
    let bad = |field: &'static str, reason: String| Err(ModelError::BadField { field, reason });
    if !(MIN_RATE..=MAX_RATE).contains(&info.train_rate) {
        return bad(
            "train_rate",
            format!(
                "{} Hz is outside {MIN_RATE}..={MAX_RATE} Hz",
                info.train_rate
            ),
        );
    }
    if info.midi_rate == 0 || !info.train_rate.is_multiple_of(info.midi_rate) {
        return bad(
            "midi_rate",
            format!(
                "{} Hz does not divide the training rate {} Hz",
                info.midi_rate, info.train_rate
            ),
        );
    }
    let max = MAX_WEIGHT as f64;
    if !(info.norm_std > 0.0 && info.norm_std.is_finite() && info.norm_std <= max) {
        return bad(
            "norm_std",
            format!("{} is not a positive number up to {max:e}", info.norm_std),
        );
    }
    if !info.norm_mean.is_finite() || info.norm_mean.abs() > max {
        return bad(
            "norm_mean",
            format!("{} is not a number within ±{max:e}", info.norm_mean),
        );
    }
    if info.heads.is_empty() {
        return bad("heads", "the model needs at least one output head".into());
    }
    Ok(())
}

fn check_architecture(widths: &[usize], states: &[usize]) -> Result<(), ModelError> {
    let bad = |field: &'static str, reason: String| Err(ModelError::BadField { field, reason });
    if states.is_empty() {
        return bad("state_sizes", "the model needs at least one layer".into());
    }
    if widths.len() != states.len() + 1 {
        return bad(
            "widths",
            format!(
                "{} widths for {} layers (expected one more than layers)",
                widths.len(),
                states.len()
            ),
        );
    }
    if widths[0] != KEYS {
        return bad(
            "widths",
            format!("input width is {}, expected {KEYS} keys", widths[0]),
        );
    }
    if let Some(w) = widths.iter().find(|&&w| w == 0 || w > 4096) {
        return bad("widths", format!("width {w} is outside 1..=4096"));
    }
    if let Some(p) = states.iter().find(|&&p| p == 0 || p > 8192) {
        return bad("state_sizes", format!("state size {p} is outside 1..=8192"));
    }
    Ok(())
}

/// Typed access to the string-valued metadata map.
struct MetaFields<'a>(&'a HashMap<String, String>);

impl MetaFields<'_> {
    fn text(&self, field: &'static str) -> Result<&str, ModelError> {
        self.0
            .get(field)
            .map(String::as_str)
            .ok_or(ModelError::MissingField(field))
    }

    fn parse<T: std::str::FromStr>(&self, field: &'static str) -> Result<T, ModelError> {
        let text = self.text(field)?;
        text.trim().parse().map_err(|_| ModelError::BadField {
            field,
            reason: format!("cannot parse {text:?}"),
        })
    }

    fn json<T: serde::de::DeserializeOwned>(&self, field: &'static str) -> Result<T, ModelError> {
        serde_json::from_str(self.text(field)?).map_err(|e| ModelError::BadField {
            field,
            reason: e.to_string(),
        })
    }

    fn info(&self) -> Result<ModelInfo, ModelError> {
        if self.text("format")? != FORMAT_NAME {
            return Err(ModelError::BadField {
                field: "format",
                reason: format!("{:?} is not {FORMAT_NAME:?}", self.text("format")?),
            });
        }
        let version: u32 = self.parse("format_version")?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(ModelError::BadField {
                field: "format_version",
                reason: format!(
                    "version {version} is not supported (this build reads 1..={FORMAT_VERSION})"
                ),
            });
        }
        let activation_name = self.text("activation")?;
        let activation =
            Activation::parse(activation_name).ok_or_else(|| ModelError::BadField {
                field: "activation",
                reason: format!("unknown activation {activation_name:?}"),
            })?;
        let info = ModelInfo {
            family: self.text("family")?.to_string(),
            size: self.text("size")?.to_string(),
            activation,
            train_rate: self.parse("train_rate")?,
            midi_rate: self.parse("midi_rate")?,
            norm_mean: self.parse("norm_mean")?,
            norm_std: self.parse("norm_std")?,
            heads: self.json("heads")?,
            head_kind: self.0.get("head_kind").cloned(),
            description: self.0.get("description").cloned().unwrap_or_default(),
        };
        check_info(&info)?;
        Ok(info)
    }
}

/// Reads named f32 tensors with an expected shape.
struct TensorReader<'a, 'd>(&'a SafeTensors<'d>);

impl TensorReader<'_, '_> {
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let view = self
            .0
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor(name.into()))?;
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::BadValue {
                name: name.into(),
                reason: format!("dtype {:?}, expected F32", view.dtype()),
            });
        }
        if view.shape() != shape {
            return Err(ModelError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                name: name.into(),
                index,
            });
        }
        Ok(data)
    }

    fn layer(&self, i: usize, n_in: usize, n_out: usize, p: usize) -> Result<SsmLayer, ModelError> {
        let t = |name: &str, shape: &[usize]| self.f32(&format!("layers.{i}.{name}"), shape);
        Ok(SsmLayer {
            inputs: n_in,
            outputs: n_out,
            state: p,
            norm: t("norm", &[p])?,
            angle: t("angle", &[p])?,
            b: t("B", &[p, n_in, 2])?,
            b_bias: t("B_bias", &[p, 2])?,
            c: t("C", &[n_out, p, 2])?,
            c_bias: t("C_bias", &[n_out, 2])?,
            skip: if i == 0 {
                None
            } else {
                Some(t("skip", &[n_out, n_in])?)
            },
            // any one of the damper's tensors means the four required ones must be there
            damper: if i == 0
                && DAMPER_TENSORS
                    .iter()
                    .any(|t| self.0.tensor(&format!("layers.0.{t}")).is_ok())
            {
                Some(Damper {
                    key: Damper::parse_key_tags(&t("damper_key", &[p])?)?,
                    norm: t("damper_norm", &[p])?,
                    angle: t("damper_angle", &[p])?,
                    fall_frames: damper_frames("damper_fall", t("damper_fall", &[1])?[0])?,
                    // files written before the settling fade drop the equilibrium at once
                    settle_frames: match self.0.tensor("layers.0.damper_settle") {
                        Ok(_) => damper_frames("damper_settle", t("damper_settle", &[1])?[0])?,
                        Err(_) => 0,
                    },
                })
            } else {
                None
            },
            velocity_exponent: match self.0.tensor("layers.0.velocity_exponent") {
                Ok(_) if i == 0 => Some(t("velocity_exponent", &[1])?[0]),
                _ => None,
            },
            b_square: match self.0.tensor("layers.0.B_square") {
                Ok(_) if i == 0 => Some(t("B_square", &[p, n_in, 2])?),
                _ => None,
            },
        })
    }

    /// A tensor the format does not define means the file is not what it claims to be.
    fn reject_unknown(&self, layers: usize) -> Result<(), ModelError> {
        for name in self.0.names() {
            let known = match name.strip_prefix("layers.") {
                Some(rest) => rest.split_once('.').is_some_and(|(idx, t)| {
                    idx.parse::<usize>().is_ok_and(|i| {
                        let names: &[&[&str]] = match i {
                            0 => &[&LAYER_TENSORS, &DAMPER_TENSORS, &FIRST_LAYER_TENSORS],
                            i if i < layers => &[&LAYER_TENSORS, &["skip"]],
                            _ => &[],
                        };
                        names.iter().any(|group| group.contains(&t))
                    })
                }),
                None => HEAD_TENSORS.contains(&name),
            };
            if !known {
                return Err(ModelError::UnexpectedTensor(name.to_string()));
            }
        }
        Ok(())
    }
}
