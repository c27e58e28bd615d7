//! The Piano-SSM network in libtorch, parameterised exactly like the published checkpoints
//! and the runtime's model format, with two kernels for its diagonal recurrences
//! ([`Kernel`]): the FFT convolution here, and the time-domain scan in `scan.rs`.
//! Where a fresh network starts is [`crate::init`]'s business.
//!
//! The FFT kernel: a diagonal linear recurrence `x_t = a x_{t-1} + g v_t` with x_{-1} = 0 is
//! the convolution `x = (g a^t) * v`, which libtorch's operations evaluate on any device
//! without a time loop. To keep the FFT count down, the input is transformed once
//! (in-channels), B and C are applied in the frequency domain as *real* matmuls on the
//! (re, im)-interleaved spectra, and only the out-channels are transformed back.

use anyhow::{bail, Context, Result};
use ssm_runtime::model::{Activation, Damper, Model, ModelInfo, SsmLayer, KEYS};
use tch::{nn, Device, Kind, Tensor};

use crate::init::Init;
pub use crate::init::{InitOptions, PoleInit};
pub use scan::{Kernel, Prediction};

mod scan;

/// Channel widths of the paper's network: 88 keys in, 20 features into the heads.
pub use ssm_runtime::size::WIDTHS;

/// Model sizes of the paper (state size per layer): the runtime's one definition.
pub use ssm_runtime::Size;

/// One diagonal SSM layer's trainable tensors, named like the runtime format.
struct Layer {
    norm: Tensor,
    angle: Tensor,
    /// (P, in, 2)
    b: Tensor,
    /// (P, in, 2), the first layer's input matrix of the touch squared (format version 3)
    b_square: Option<Tensor>,
    /// (P, 2)
    b_bias: Tensor,
    /// (out, P, 2)
    c: Tensor,
    /// (out, 2)
    c_bias: Tensor,
    /// (out, in), every layer but the first
    skip: Option<Tensor>,
    /// the first layer's key damper
    damper: Option<KeyDamper>,
    state: i64,
}

/// The first layer's key damper as tensors (see `ssm_runtime::model::Damper`).
struct KeyDamper {
    /// per state: the key whose silence damps it
    key: Vec<Option<u8>>,
    /// (P) the damped poles, trainable like `norm` and `angle`
    norm: Tensor,
    angle: Tensor,
    /// frames the damper takes to fall (fixed)
    fall_frames: u32,
    /// time constant of the held equilibrium's fade out of the output, frames (fixed)
    settle_frames: u32,
}

impl KeyDamper {
    /// Each state's schedule per frame for `roll` (B, 88, F): (P, B, F) int64, untagged states
    /// always sounding (0); and which states are untagged, (P, 1, 1).
    fn state_phases(&self, roll: &Tensor) -> (Tensor, Tensor) {
        let device = roll.device();
        let phase = fall_phases(roll, self.fall_frames).to_device(device); // (88, B, F)
        let tagged: Vec<i64> = self.key.iter().map(|k| k.map_or(0, i64::from)).collect();
        let untagged: Vec<bool> = self.key.iter().map(Option::is_none).collect();
        let untagged = Tensor::from_slice(&untagged)
            .to_device(device)
            .view([-1, 1, 1]);
        let phase = phase
            .index_select(0, &Tensor::from_slice(&tagged).to_device(device))
            .masked_fill(&untagged, 0);
        (phase, untagged)
    }
}

/// Per-forward constants of one layer: the kernel spectra, which depend only on the poles.
struct Spectra {
    /// rfft of Re(g λ̄^t) and Im(g λ̄^t), each (P, F)
    re: Tensor,
    im: Tensor,
}

pub struct PianoSsm {
    pub vs: nn::VarStore,
    layers: Vec<Layer>,
    /// (H, 20)
    head_weight: Tensor,
    /// (H)
    head_bias: Tensor,
    pub activation: Activation,
    /// the first layer reads a roll value `u = v/127` as `u^e` (fixed, not trained; see
    /// `ssm_runtime::model::SsmLayer::velocity_exponent`)
    pub velocity_exponent: Option<f32>,
    /// how the recurrences are evaluated (by default the scan on CPU, the FFT elsewhere)
    pub kernel: Kernel,
}

/// The decay projections `train` (after every step) and `average` (on the mean) apply, in
/// seconds: `--later-t60`, the longest decay of layers 2–4 and of the damper's damped poles,
/// and `--string-t60`, the shortest of layer 1's strings.
#[derive(Debug, Clone, Copy)]
pub struct DecayLimits {
    pub later_t60: Option<f64>,
    pub string_t60: Option<f64>,
}

impl DecayLimits {
    /// Each limit given must be a positive, finite number of seconds.
    pub fn check(&self) -> Result<()> {
        for (flag, seconds) in [
            ("--later-t60", self.later_t60),
            ("--string-t60", self.string_t60),
        ] {
            if let Some(s) = seconds.filter(|s| !(s.is_finite() && *s > 0.0)) {
                bail!("{flag} must be a positive number of seconds, not {s}");
            }
        }
        Ok(())
    }

    pub fn is_none(&self) -> bool {
        self.later_t60.is_none() && self.string_t60.is_none()
    }
}

impl PianoSsm {
    /// A freshly initialised model (deterministic for `init.seed`).
    pub fn new(
        device: Device,
        size: Size,
        heads: usize,
        activation: Activation,
        init: InitOptions,
    ) -> Result<PianoSsm> {
        let init = Init::new(size.state(), heads, init)?;
        Ok(Self::from_parts(
            device,
            &init.layers,
            &init.head_weight,
            &init.head_bias,
            heads,
            activation,
        ))
    }

    /// Scales the heads so that the network's output has the RMS of `target` on `batch`
    /// (normalised units), leaving its rest level at zero. For a network whose output level
    /// is not set by its initialisation (`PoleInit::GatedKeys`).
    pub fn match_level(&mut self, batch: &crate::data::Batch, hold: i64) -> f64 {
        let _guard = tch::no_grad_guard();
        let pred = self.forward(&batch.roll, &batch.heads, hold, 1.0);
        let rms = |t: &Tensor| t.square().mean(Kind::Double).sqrt().double_value(&[]);
        let (have, want) = (rms(&pred), rms(&batch.audio));
        let gain = if have > 0.0 { want / have } else { 1.0 };
        let _ = self.head_weight.g_mul_scalar_(gain);
        let _ = self.head_bias.g_mul_scalar_(gain);
        gain
    }

    /// Loads weights from a runtime model (e.g. an imported published checkpoint).
    pub fn from_runtime(device: Device, model: &Model) -> Result<PianoSsm> {
        model.validate().context("model does not validate")?;
        if model.widths() != WIDTHS {
            bail!(
                "the trainer builds the paper's widths {WIDTHS:?}; this model has {:?}",
                model.widths()
            );
        }
        Ok(Self::from_parts(
            device,
            &model.layers,
            &model.head_weight,
            &model.head_bias,
            model.head_count(),
            model.info.activation,
        ))
    }

    fn from_parts(
        device: Device,
        layers_in: &[SsmLayer],
        head_w: &[f32],
        head_b: &[f32],
        heads: usize,
        activation: Activation,
    ) -> PianoSsm {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let var = |path: &nn::Path, name: &str, data: &[f32], shape: &[i64]| {
            let t = Tensor::from_slice(data).reshape(shape).to_device(device);
            path.var_copy(name, &t)
        };
        let layers = layers_in
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = &root / "layers" / i;
                let (pn, inp, out) = (l.state as i64, l.inputs as i64, l.outputs as i64);
                Layer {
                    norm: var(&p, "norm", &l.norm, &[pn]),
                    angle: var(&p, "angle", &l.angle, &[pn]),
                    b: var(&p, "B", &l.b, &[pn, inp, 2]),
                    b_square: l
                        .b_square
                        .as_ref()
                        .map(|b| var(&p, "B_square", b, &[pn, inp, 2])),
                    b_bias: var(&p, "B_bias", &l.b_bias, &[pn, 2]),
                    c: var(&p, "C", &l.c, &[out, pn, 2]),
                    c_bias: var(&p, "C_bias", &l.c_bias, &[out, 2]),
                    skip: l.skip.as_ref().map(|s| var(&p, "skip", s, &[out, inp])),
                    damper: l.damper.as_ref().map(|d| KeyDamper {
                        key: d.key.clone(),
                        norm: var(&p, "damper_norm", &d.norm, &[pn]),
                        angle: var(&p, "damper_angle", &d.angle, &[pn]),
                        fall_frames: d.fall_frames,
                        settle_frames: d.settle_frames,
                    }),
                    state: pn,
                }
            })
            .collect();
        let h = &root / "heads";
        let head_weight = var(
            &h,
            "weight",
            head_w,
            &[heads as i64, *WIDTHS.last().unwrap() as i64],
        );
        let head_bias = var(&h, "bias", head_b, &[heads as i64]);
        PianoSsm {
            vs,
            layers,
            head_weight,
            head_bias,
            activation,
            velocity_exponent: layers_in.first().and_then(|l| l.velocity_exponent),
            kernel: Kernel::default_for(device),
        }
    }

    pub fn heads(&self) -> i64 {
        self.head_weight.size()[0]
    }

    /// Whether the first layer has a touch square (`B_square`).
    pub fn has_touch_square(&self) -> bool {
        self.layers.first().is_some_and(|l| l.b_square.is_some())
    }

    /// Gives the first layer a touch square (`layers.0.B_square`) at zero, so the network
    /// plays exactly as before and training can grow a velocity response of its own for each
    /// state (the gradient reaches it at once: its input, the touch squared, is never zero
    /// while a key sounds). Nothing changes if it has one.
    pub fn add_touch_square(&mut self) {
        let Some(first) = self.layers.first_mut() else {
            return;
        };
        if first.b_square.is_none() {
            let path = self.vs.root() / "layers" / 0;
            first.b_square = Some(path.var_copy("B_square", &first.b.detach().zeros_like()));
        }
    }

    /// Renders a batch. `roll`: (B, 88, frames) velocities / 127; `heads`: (B) int64;
    /// each frame is held for `hold` samples; `step` is train_rate / sample_rate.
    /// Returns (B, frames * hold) in normalised units.
    ///
    /// Inside, activations are channel-first (C, B, L): every weight product is then one plain
    /// 2-D matrix product over all items and frequencies, and per-state slices are contiguous.
    ///
    /// For inference: with the scan kernel the output carries no gradient to the weights
    /// (train with [`PianoSsm::forward_train`]).
    pub fn forward(&self, roll: &Tensor, heads: &Tensor, hold: i64, step: f64) -> Tensor {
        match self.kernel {
            Kernel::Fft => self.forward_fft(roll, heads, hold, step),
            Kernel::Scan => self.forward_scan(roll, heads, hold, step, false).audio,
        }
    }

    /// [`PianoSsm::forward`] for training: the prediction's `backward` accumulates a loss's
    /// gradient into the weights, with either kernel.
    pub fn forward_train(&self, roll: &Tensor, heads: &Tensor, hold: i64, step: f64) -> Prediction {
        match self.kernel {
            Kernel::Fft => Prediction::plain(self.forward_fft(roll, heads, hold, step)),
            Kernel::Scan => self.forward_scan(roll, heads, hold, step, true),
        }
    }

    /// The forward pass with the FFT kernel (libtorch operations only, any device).
    fn forward_fft(&self, roll: &Tensor, heads: &Tensor, hold: i64, step: f64) -> Tensor {
        let touched;
        let roll = match self.velocity_exponent {
            Some(e) => {
                touched = touch(roll, e);
                &touched
            }
            None => roll,
        };
        let u = roll
            .permute([1, 0, 2])
            .repeat_interleave_self_int(hold, Some(2), None::<i64>);
        let len = u.size()[2];
        let n_fft = fft_length(2 * len - 1);
        let sqrt2 = std::f64::consts::SQRT_2;
        let mut h = Tensor::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let y = match &layer.damper {
                // the damper's layer: its input is the roll, constant within a frame
                Some(damper) => layer.forward_damped(damper, roll, hold, step),
                None => {
                    let kernel = layer.kernel(len, n_fft, step);
                    let input = if i == 0 {
                        layer.touch_features(&u)
                    } else {
                        h.shallow_clone()
                    };
                    layer.forward(&input, &kernel, n_fft)
                }
            };
            let y = self.activate(&y);
            h = match &layer.skip {
                Some(w) => (y + channel_matmul(w, &h)) / sqrt2,
                None => y / sqrt2,
            };
        }
        // h: (20, B, L); each item through its own head
        let w = self.head_weight.index_select(0, heads); // (B, 20)
        (h * w.transpose(0, 1).unsqueeze(2)).sum_dim_intlist(0, false, w.kind())
            + self.head_bias.index_select(0, heads).unsqueeze(1)
    }

    /// Sets every layer's input bias so that the zero state is the network's equilibrium for a
    /// silent roll (B_bias = −B·(what the layer's input holds at rest)), and the heads' biases
    /// so that the silent network plays `silence` (the normalised value of digital silence).
    /// Then a render that starts from zero, as the runtime's and every training crop's does,
    /// starts silent, and a released piano falls back to silence: an optimizer step can leave
    /// neither a thump at the start of a render nor an offset where the music stops.
    pub fn settle_rest(&mut self, silence: f64) {
        let _guard = tch::no_grad_guard();
        let sqrt2 = std::f64::consts::SQRT_2;
        // layer 1's input, the roll, is zero at rest
        let mut rest = Tensor::zeros(
            [self.layers[0].b.size()[1]],
            (Kind::Float, self.head_bias.device()),
        );
        for layer in &mut self.layers {
            let b = layer.b.detach(); // (P, in, 2)
            let bias = -(b * rest.view([1, -1, 1])).sum_dim_intlist(1, false, Kind::Float);
            layer.b_bias.copy_(&bias);
            // states at zero: y = Re(C_bias)
            let y = self.activation.apply(&layer.c_bias.select(1, 0));
            rest = match &layer.skip {
                Some(w) => (y + w.matmul(&rest)) / sqrt2,
                None => y / sqrt2,
            };
        }
        let bias = -self.head_weight.matmul(&rest) + silence;
        self.head_bias.copy_(&bias);
    }

    /// Scales the first layer's outputs by `k` and the second layer's inputs (B and the skip)
    /// by `1/k`: for quiet signals, where the tanh is linear, the same network; for loud ones
    /// `k` times deeper into the tanh, whose overtones brighten a loud note as a harder
    /// strike brightens a string. A network trained with its tanh in the linear range has no
    /// gradient towards that (measured: the same spectral centroid at velocity 30 and 110).
    pub fn drive_first_tanh(&mut self, k: f64) {
        let _guard = tch::no_grad_guard();
        let [first, second, ..] = &mut self.layers[..] else {
            return;
        };
        let _ = first.c.g_mul_scalar_(k);
        let _ = first.c_bias.g_mul_scalar_(k);
        let _ = second.b.g_div_scalar_(k);
        if let Some(skip) = &mut second.skip {
            let _ = skip.g_div_scalar_(k);
        }
    }

    /// Multiplies layer 2's skip weights by `gain`: the frequency-flat path from the first
    /// layer's tanh to the output (see `--open-skip`).
    pub fn open_first_skip(&mut self, gain: f64) {
        let _guard = tch::no_grad_guard();
        if let Some(skip) = self.layers.get_mut(1).and_then(|l| l.skip.as_mut()) {
            let _ = skip.g_mul_scalar_(gain);
        }
    }

    /// Shortens every pole of layers 2–4, and every damped pole of layer 1's key damper, whose
    /// 60 dB decay is longer than `t60` samples to that decay (its frequency kept). Why: only
    /// the first layer is gated or damped by the keys, and a spectral loss that wants energy in
    /// every bin will otherwise stretch a later layer's pole, or a damped string's, into a ring
    /// that plays on long after the keys are released (a damped pole reached 20 s in 7 epochs).
    pub fn limit_later_decays(&mut self, t60: f64) {
        let _guard = tch::no_grad_guard();
        let min_decay = 6.9 / t60;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if i > 0 {
                clamp_decay(&mut layer.norm, &mut layer.angle, |re| {
                    re.clamp_max(-min_decay)
                });
            }
            if let Some(d) = &mut layer.damper {
                clamp_decay(&mut d.norm, &mut d.angle, |re| re.clamp_max(-min_decay));
            }
        }
    }

    /// Applies `limits` to a network trained at `train_rate`.
    pub fn limit_decays(&mut self, limits: DecayLimits, train_rate: f64) {
        if let Some(t60) = limits.later_t60 {
            self.limit_later_decays(t60 * train_rate);
        }
        if let Some(t60) = limits.string_t60 {
            self.lengthen_string_decays(t60 * train_rate);
        }
    }

    /// Lengthens every sounding pole of the first layer (the strings, while their keys are
    /// held) whose 60 dB decay is shorter than `t60` samples to that decay, its frequency
    /// kept; the key damper's damped poles are left alone. Why: the spectral loss hears
    /// little of a quiet high string's tail, and training shortened the top keys' strings to
    /// 30–160 ms where the Salamander's ring for seconds; a note that has died before its
    /// release then measures every release as a burst of high frequencies.
    pub fn lengthen_string_decays(&mut self, t60: f64) {
        let _guard = tch::no_grad_guard();
        let max_decay = 6.9 / t60;
        if let Some(first) = self.layers.first_mut() {
            clamp_decay(&mut first.norm, &mut first.angle, |re| {
                re.clamp_min(-max_decay)
            });
        }
    }

    fn activate(&self, y: &Tensor) -> Tensor {
        self.activation.apply(y)
    }

    /// The weights in the runtime's format, with `info` as metadata.
    pub fn to_runtime(&self, info: ModelInfo) -> Result<Model> {
        let layers = self
            .layers
            .iter()
            .map(|l| -> Result<SsmLayer> {
                let c = l.c.size();
                Ok(SsmLayer {
                    inputs: l.b.size()[1] as usize,
                    outputs: c[0] as usize,
                    state: l.state as usize,
                    norm: to_vec(&l.norm)?,
                    angle: to_vec(&l.angle)?,
                    b: to_vec(&l.b)?,
                    b_square: l.b_square.as_ref().map(to_vec).transpose()?,
                    b_bias: to_vec(&l.b_bias)?,
                    c: to_vec(&l.c)?,
                    c_bias: to_vec(&l.c_bias)?,
                    skip: l.skip.as_ref().map(to_vec).transpose()?,
                    damper: l
                        .damper
                        .as_ref()
                        .map(|d| -> Result<Damper> {
                            Ok(Damper {
                                key: d.key.clone(),
                                norm: to_vec(&d.norm)?,
                                angle: to_vec(&d.angle)?,
                                fall_frames: d.fall_frames,
                                settle_frames: d.settle_frames,
                            })
                        })
                        .transpose()?,
                    velocity_exponent: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut layers = layers;
        if let Some(first) = layers.first_mut() {
            first.velocity_exponent = self.velocity_exponent;
        }
        let model = Model {
            info,
            layers,
            head_weight: to_vec(&self.head_weight)?,
            head_bias: to_vec(&self.head_bias)?,
        };
        model
            .validate()
            .context("exported model does not validate")?;
        Ok(model)
    }
}

/// `roll` (velocities / 127) as a first layer with velocity exponent `e` reads it: `roll^e`
/// (0 stays 0: the exponent is positive).
fn touch(roll: &Tensor, e: f32) -> Tensor {
    roll.pow_tensor_scalar(e as f64)
}

impl Layer {
    /// Poles after the stability rule, discretised with step `s`, and the kernel g·λ̄^t
    /// for t < len, transformed. Built in float64: λ̄^t's phase grows to ~10^5 radians over
    /// a crop, which float32 would get wrong by a few hundredths of a radian.
    fn kernel(&self, len: i64, n_fft: i64, s: f64) -> Spectra {
        let opts = (Kind::Double, self.norm.device());
        let poles = ContinuousPoles::new(&self.norm, &self.angle);
        // g = (λ̄ − 1) / λ with λ̄ = exp(λ s)
        let Cx { re: g_re, im: g_im } = poles.zoh_gain(s);
        let (re, im) = (&poles.re, &poles.im);
        // λ̄^t = exp(λ s t)
        let t = Tensor::arange(len, opts) * s;
        let decay = (re.unsqueeze(1) * &t).exp();
        let phase = im.unsqueeze(1) * &t;
        let (pow_re, pow_im) = (&decay * phase.cos(), decay * phase.sin());
        let k_re = g_re.unsqueeze(1) * &pow_re - g_im.unsqueeze(1) * &pow_im;
        let k_im = g_re.unsqueeze(1) * pow_im + g_im.unsqueeze(1) * pow_re;
        let kind = self.norm.kind();
        Spectra {
            re: k_re.to_kind(kind).fft_rfft(n_fft, -1, "backward"),
            im: k_im.to_kind(kind).fft_rfft(n_fft, -1, "backward"),
        }
    }

    /// The first layer with its key damper, for `roll` (B, 88, F) held `hold` samples a frame:
    /// (out, B, F·hold).
    ///
    /// Why not the FFT: a damped state's pole switches with its key, so the layer is not one
    /// convolution. But its input is constant within a frame and its pole follows one of a few
    /// schedules per frame (sounding, the damper's n-th frame of falling, damped), so the state
    /// `i` samples into frame f is exactly `x = P[i] X_{f−1} + G[i] w_f`, with the schedule's
    /// tables P, G — what the engine's per-sample recurrence computes — and the frame ends
    /// are a first-order recurrence over frames, solved by a parallel prefix scan (log₂ F
    /// steps of tensor products). Where keys are released the states jump to the kept keys'
    /// equilibrium ([`Layer::release_jump`]) and the output reads what they left along the
    /// settling fade (an FFT convolution of per-frame impulses, [`settle`]).
    fn forward_damped(&self, damper: &KeyDamper, roll: &Tensor, hold: i64, s: f64) -> Tensor {
        let (batch, frames) = (roll.size()[0], roll.size()[2]);
        let device = roll.device();
        let kind = self.norm.kind();
        let keys = roll.permute([1, 0, 2]); // (88, B, F)
        let w_now = self.key_input(&keys);
        let schedules = FallSchedules::new(&self.norm, &self.angle, damper, hold, s, kind);
        let (phase, untagged) = damper.state_phases(roll);
        let (pow, gain) = schedules.pick(&phase);
        let jump = self.release_jump(&schedules, &w_now, &keys, &phase, &untagged);
        let zero = Tensor::zeros([self.state, batch, 1], (kind, device));
        let shift = |t: &Tensor| previous(t, &zero);
        let w = Cx::new(w_now.re.unsqueeze(3), w_now.im.unsqueeze(3));
        // frame ends: X_f = A_f (X_{f−1} + jump_f) + c_f
        let last = |t: &Tensor| t.select(3, hold - 1);
        let a = Cx::new(last(&pow.re), last(&pow.im));
        let c = gain.select_last(hold).mul(&w.squeeze3()).add(&a.mul(&jump));
        let ends = prefix_scan(a, c, frames);
        // X_{f−1} (zero before the first frame) after the frame's jump
        let before = Cx::new(
            (shift(&ends.re) + &jump.re).unsqueeze(3),
            (shift(&ends.im) + &jump.im).unsqueeze(3),
        );
        let x = pow.mul(&before).add(&gain.mul(&w));
        let flat = |t: Tensor| t.reshape([self.state, batch, frames * hold]);
        let (x_re, x_im) = (flat(x.re), flat(x.im));
        // Re(C x) = C_re x_re − C_im x_im
        let c = Tensor::cat(&[self.c.select(2, 0), -self.c.select(2, 1)], 1); // (out, 2P)
        let y = channel_matmul(&c, &Tensor::cat(&[x_re, x_im], 0))
            + self.c_bias.select(1, 0).view([-1, 1, 1]);
        // the output lets go of the equilibria the jumps left, along the settling fade
        let fade: Vec<f64> = Damper::settle_fade(damper.settle_frames, hold as f64).collect();
        if fade.is_empty() {
            return y;
        }
        let left = -channel_matmul(&c, &Tensor::cat(&[jump.re, jump.im], 0)); // (out, B, F)
        y + settle(&left, &fade, hold)
    }

    /// The jump of every state at every frame (P, B, F): a released key never excites, so
    /// each state keeps its deviation from equilibrium and moves from the equilibrium of the
    /// previous frame's keys at its previous resting pole to that of the keys still down at
    /// its new one (the engine's rule; zero where no key is released and no damper moves).
    /// `w_now` is the layer input per frame for `keys` (88, B, F), `phase` each state's
    /// schedule, `untagged` (P, 1, 1) marks the states no key damps. Each frame's predecessor
    /// is read with [`previous`]; the one before the first is silence.
    fn release_jump(
        &self,
        schedules: &FallSchedules,
        w_now: &Cx,
        keys: &Tensor,
        phase: &Tensor,
        untagged: &Tensor,
    ) -> Cx {
        let bias = |part: i64| self.b_bias.select(1, part).view([-1, 1, 1]);
        let w_before = Cx::new(previous(&w_now.re, &bias(0)), previous(&w_now.im, &bias(1)));
        // the previous frame's keys that stay down
        let held_keys = previous(keys, &keys.zeros_like().narrow(2, 0, 1));
        let w_kept = self.key_input(&(held_keys * keys.gt(0.0).to_kind(keys.kind())));
        // −1/λ of the pole each state rests at: sounding in phase 0, damped otherwise; in
        // silence a tagged state is damped
        let (up, down) = (&schedules.sounding_inverse, &schedules.damped_inverse);
        let damped = phase.ne(0);
        let rest = |u: &Tensor, d: &Tensor, at: &Tensor| d.where_self(at, u);
        let rest_now = Cx::new(
            rest(&up.re, &down.re, &damped),
            rest(&up.im, &down.im, &damped),
        );
        let tagged = untagged.logical_not();
        let rest_before = Cx::new(
            previous(&rest_now.re, &rest(&up.re, &down.re, &tagged)),
            previous(&rest_now.im, &rest(&up.im, &down.im, &tagged)),
        );
        let after = rest_now.mul(&w_kept);
        let held = rest_before.mul(&w_before);
        Cx::new(after.re - held.re, after.im - held.im)
    }

    /// The first layer's input `w = B t + B_square t² + B_bias` for key frames `keys`
    /// (88, B, F) of touches `t`: (P, B, F).
    fn key_input(&self, keys: &Tensor) -> Cx {
        let features = self.touch_features(keys);
        let b = self.input_weights();
        let w = |part: i64| {
            channel_matmul(&b.select(2, part), &features)
                + self.b_bias.select(1, part).view([-1, 1, 1])
        };
        Cx::new(w(0), w(1))
    }

    /// What the layer's input matrix reads: the input `u` (in, B, L), or with a touch square
    /// `[u; u²]` (2·in, B, L), to match [`Layer::input_weights`].
    fn touch_features(&self, u: &Tensor) -> Tensor {
        match &self.b_square {
            Some(_) => Tensor::cat(&[u, &u.square()], 0),
            None => u.shallow_clone(),
        }
    }

    /// B, or with a touch square `[B, B_square]` (P, 2·in, 2).
    fn input_weights(&self) -> Tensor {
        match &self.b_square {
            Some(square) => Tensor::cat(&[&self.b, square], 1),
            None => self.b.shallow_clone(),
        }
    }
    /// y = Re(C x + C_bias) for input u: (in, B, L) → (out, B, L).
    fn forward(&self, u: &Tensor, kernel: &Spectra, n_fft: i64) -> Tensor {
        let (batch, len) = (u.size()[1], u.size()[2]);
        let p = self.state;
        // the bias is a constant input channel
        let ones = Tensor::ones([1, batch, len], (u.kind(), u.device()));
        let spec = Tensor::cat(&[u, &ones], 0).fft_rfft(n_fft, -1, "backward"); // (in+1, B, F)
                                                                                // [B_re | b_re ; B_im | b_im]: (2P, in+1), real, applied to the (re, im)-interleaved spectra
        let b = self.input_weights();
        let b_re = Tensor::cat(&[b.select(2, 0), self.b_bias.select(1, 0).unsqueeze(1)], 1);
        let b_im = Tensor::cat(&[b.select(2, 1), self.b_bias.select(1, 1).unsqueeze(1)], 1);
        let w = channel_matmul(&Tensor::cat(&[b_re, b_im], 0), &spec.view_as_real()); // (2P, B, F, 2)
        let w = w.view_as_complex();
        let (w_re, w_im) = (w.narrow(0, 0, p), w.narrow(0, p, p));
        // x = K * w with K = K_re + i K_im, w = w_re + i w_im
        let (k_re, k_im) = (kernel.re.unsqueeze(1), kernel.im.unsqueeze(1));
        let x_re = &k_re * &w_re - &k_im * &w_im;
        let x_im = k_re * w_im + k_im * w_re;
        // Re(C x) = C_re x_re − C_im x_im
        let c = Tensor::cat(&[self.c.select(2, 0), -self.c.select(2, 1)], 1); // (out, 2P)
        let y = channel_matmul(&c, &Tensor::cat(&[x_re, x_im], 0).view_as_real()).view_as_complex();
        let y = y.fft_irfft(n_fft, -1, "backward").narrow(2, 0, len);
        y + self.c_bias.select(1, 0).view([-1, 1, 1])
    }
}

/// Each frame's predecessor along dimension 2 of `t`, `first` (broadcast to one frame)
/// before the first.
fn previous(t: &Tensor, first: &Tensor) -> Tensor {
    let frames = t.size()[2];
    let first = first.expand_as(&t.narrow(2, 0, 1));
    Tensor::cat(&[&first, &t.narrow(2, 0, frames - 1)], 2)
}

/// `left` (out, B, F), each frame's value read from the frame's first sample on along the
/// settling `fade`, the frames' fades added: (out, B, F·hold). An FFT convolution of the
/// frames' impulses with the fade.
fn settle(left: &Tensor, fade: &[f64], hold: i64) -> Tensor {
    let size = left.size();
    let (out, batch, frames) = (size[0], size[1], size[2]);
    let len = frames * hold;
    let opts = (left.kind(), left.device());
    let gaps = Tensor::zeros([out, batch, frames, hold - 1], opts);
    let impulses = Tensor::cat(&[&left.unsqueeze(3), &gaps], 3).reshape([out, batch, len]);
    let taps = fade.len().min(len as usize);
    let kernel = Tensor::from_slice(&fade[..taps])
        .to_kind(opts.0)
        .to_device(opts.1);
    let n_fft = fft_length(len + taps as i64 - 1);
    let spec = impulses.fft_rfft(n_fft, -1, "backward") * kernel.fft_rfft(n_fft, -1, "backward");
    spec.fft_irfft(n_fft, -1, "backward").narrow(2, 0, len)
}

/// A complex tensor as its real and imaginary parts (plain real autograd throughout).
struct Cx {
    re: Tensor,
    im: Tensor,
}

impl Cx {
    fn new(re: Tensor, im: Tensor) -> Cx {
        Cx { re, im }
    }

    fn mul(&self, o: &Cx) -> Cx {
        Cx::new(
            &self.re * &o.re - &self.im * &o.im,
            &self.re * &o.im + &self.im * &o.re,
        )
    }

    fn add(&self, o: &Cx) -> Cx {
        Cx::new(&self.re + &o.re, &self.im + &o.im)
    }

    fn clone_cx(&self) -> Cx {
        Cx::new(self.re.shallow_clone(), self.im.shallow_clone())
    }

    /// The last entry of dimension 3 of `len`.
    fn select_last(&self, len: i64) -> Cx {
        Cx::new(self.re.select(3, len - 1), self.im.select(3, len - 1))
    }

    /// Drops a size-1 dimension 3.
    fn squeeze3(&self) -> Cx {
        Cx::new(self.re.squeeze_dim(3), self.im.squeeze_dim(3))
    }
}

/// Where each key's damper is, frame by frame, for `roll` (B, 88, F): 0 while the key sounds,
/// n = 1..=fall in the n-th frame of its fall, fall + 1 once down (also before the key was
/// ever struck: the rest). (88, B, F) int64.
fn fall_phases(roll: &Tensor, fall: u32) -> Tensor {
    let size = roll.size();
    let (batch, frames) = (size[0] as usize, size[2] as usize);
    let values = Vec::<f32>::try_from(
        roll.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )
    .expect("a float roll");
    let down = fall as i64 + 1;
    let mut phase = vec![0i64; values.len()];
    for row in 0..batch * KEYS {
        let mut prev = down;
        for f in 0..frames {
            let at = row * frames + f;
            prev = if values[at] > 0.0 {
                0
            } else {
                (prev + 1).min(down)
            };
            phase[at] = prev;
        }
    }
    Tensor::from_slice(&phase)
        .view([batch as i64, KEYS as i64, frames as i64])
        .permute([1, 0, 2])
}

/// The first layer's per-frame tables `P[i]`, `G[i]` (i = 0..hold) for every schedule a
/// state's frame can follow: 0 sounding, 1..=fall the damper's frames of falling, fall + 1
/// damped. Built in float64 from the poles (so gradients reach both), returned as `kind`.
struct FallSchedules {
    /// (P, fall + 2, hold) each
    pow: Cx,
    gain: Cx,
    /// −1/λ for the sounding and the damped pole, (P, 1, 1)
    sounding_inverse: Cx,
    damped_inverse: Cx,
    schedules: i64,
    hold: i64,
}

impl FallSchedules {
    fn new(norm: &Tensor, angle: &Tensor, d: &KeyDamper, hold: i64, s: f64, kind: Kind) -> Self {
        let up = ContinuousPoles::new(norm, angle);
        let down = ContinuousPoles::new(&d.norm, &d.angle);
        let p = up.re.size()[0];
        let fall = d.fall_frames as i64;
        let device = norm.device();
        let opts = (Kind::Double, device);
        // per-sample fractions n/R of the fall, n = 1..=R, as (fall, hold)
        let r = (fall * hold).max(1) as f64;
        let n = Tensor::arange_start(1, fall * hold + 1, opts).view([fall, hold]) / r;
        // a schedule row per frame: (P, fall + 2, hold), fraction 0 = sounding, 1 = damped
        let frac = Tensor::cat(
            &[
                Tensor::zeros([1, hold], opts),
                n,
                Tensor::ones([1, hold], opts),
            ],
            0,
        )
        .unsqueeze(0);
        let lerp = |a: &Tensor, b: &Tensor| a.view([p, 1, 1]) + (b - a).view([p, 1, 1]) * &frac;
        let (re, im) = (lerp(&up.re, &down.re), lerp(&up.im, &down.im));
        // per sample: λ̄_n = e^{λ_n s} and the gain g_n, interpolated like the pole (the
        // engine's rule); outside the fall both are constant and give the ZOH tables
        let decay = (&re * s).exp();
        let a = Cx::new(&decay * (&im * s).cos(), decay * (&im * s).sin());
        let g_up = up.zoh_gain(s);
        let g_down = down.zoh_gain(s);
        let g = Cx::new(lerp(&g_up.re, &g_down.re), lerp(&g_up.im, &g_down.im));
        // P_i = a_i P_{i−1}, G_i = a_i G_{i−1} + g_i, from P_{−1} = 1, G_{−1} = 0
        let (mut pw, mut gn) = (Vec::new(), Vec::new());
        let mut prev: Option<(Cx, Cx)> = None;
        for i in 0..hold {
            let ai = Cx::new(a.re.select(2, i), a.im.select(2, i));
            let gi = Cx::new(g.re.select(2, i), g.im.select(2, i));
            let next = match &prev {
                None => (ai.clone_cx(), gi),
                Some((pp, gp)) => (ai.mul(pp), ai.mul(gp).add(&gi)),
            };
            pw.push(next.0.clone_cx());
            gn.push(next.1.clone_cx());
            prev = Some(next);
        }
        let stack = |v: &[Cx], re: bool| {
            let parts: Vec<&Tensor> = v.iter().map(|c| if re { &c.re } else { &c.im }).collect();
            Tensor::stack(&parts, 2).to_kind(kind)
        };
        FallSchedules {
            pow: Cx::new(stack(&pw, true), stack(&pw, false)),
            gain: Cx::new(stack(&gn, true), stack(&gn, false)),
            sounding_inverse: up.negative_inverse(kind),
            damped_inverse: down.negative_inverse(kind),
            schedules: fall + 2,
            hold,
        }
    }

    /// The tables for each state's schedule `phase` (P, B, F): (P, B, F, hold) each.
    fn pick(&self, phase: &Tensor) -> (Cx, Cx) {
        let size = phase.size();
        let p = size[0];
        let rows =
            Tensor::arange(p, (Kind::Int64, phase.device())).view([-1, 1, 1]) * self.schedules;
        let index = (phase + rows).flatten(0, -1);
        let mut shape = size.clone();
        shape.push(self.hold);
        let take = |t: &Tensor| {
            t.reshape([p * self.schedules, self.hold])
                .index_select(0, &index)
                .view(shape.as_slice())
        };
        (
            Cx::new(take(&self.pow.re), take(&self.pow.im)),
            Cx::new(take(&self.gain.re), take(&self.gain.im)),
        )
    }
}

/// A layer's continuous-time poles after the stability rule, float64 (P).
struct ContinuousPoles {
    re: Tensor,
    im: Tensor,
}

impl ContinuousPoles {
    fn new(norm: &Tensor, angle: &Tensor) -> Self {
        let mag = norm.to_kind(Kind::Double).exp();
        let angle = angle.to_kind(Kind::Double);
        ContinuousPoles {
            re: -(&mag * angle.cos()).abs(),
            im: mag * angle.sin(),
        }
    }

    /// The discrete pole `λ̄ = e^{λ s}` (P).
    fn discrete(&self, s: f64) -> Cx {
        let decay = (&self.re * s).exp();
        Cx::new(&decay * (&self.im * s).cos(), decay * (&self.im * s).sin())
    }

    /// The zero-order-hold input gain `g = (e^{λ s} − 1)/λ` (P).
    fn zoh_gain(&self, s: f64) -> Cx {
        let r = (&self.re * s).exp();
        let (n_re, n_im) = (&r * (&self.im * s).cos() - 1.0, r * (&self.im * s).sin());
        let denom = &self.re * &self.re + &self.im * &self.im;
        Cx::new(
            (&n_re * &self.re + &n_im * &self.im) / &denom,
            (n_im * &self.re - n_re * &self.im) / denom,
        )
    }

    /// `−1/λ` as (P, 1, 1) of `kind`: the equilibrium of a unit constant input.
    fn negative_inverse(&self, kind: Kind) -> Cx {
        let denom = &self.re * &self.re + &self.im * &self.im;
        Cx::new(
            (-&self.re / &denom).to_kind(kind).view([-1, 1, 1]),
            (&self.im / denom).to_kind(kind).view([-1, 1, 1]),
        )
    }
}

/// Inclusive prefix scan of `X_f = A_f X_{f−1} + c_f` (X_{−1} = 0) over dimension 2 of
/// length `len` (Hillis–Steele: ⌈log₂ len⌉ steps; the products of |A| ≤ 1 stay bounded).
fn prefix_scan(mut a: Cx, mut c: Cx, len: i64) -> Cx {
    let mut d = 1;
    while d < len {
        // entries f ≥ d combine with f − d: (A, c)[f] ← (A[f]·A[f−d], A[f]·c[f−d] + c[f])
        let head = |t: &Tensor| t.narrow(2, 0, d);
        let lo = |t: &Tensor| t.narrow(2, 0, len - d);
        let hi = |t: &Tensor| t.narrow(2, d, len - d);
        let a_hi = Cx::new(hi(&a.re), hi(&a.im));
        let c_new = a_hi
            .mul(&Cx::new(lo(&c.re), lo(&c.im)))
            .add(&Cx::new(hi(&c.re), hi(&c.im)));
        let a_new = a_hi.mul(&Cx::new(lo(&a.re), lo(&a.im)));
        c = Cx::new(
            Tensor::cat(&[head(&c.re), c_new.re], 2),
            Tensor::cat(&[head(&c.im), c_new.im], 2),
        );
        a = Cx::new(
            Tensor::cat(&[head(&a.re), a_new.re], 2),
            Tensor::cat(&[head(&a.im), a_new.im], 2),
        );
        d *= 2;
    }
    c
}

/// Moves every pole (norm, angle) to the real part `clamp` gives its real part (the decay per
/// sample, negated), its frequency kept, in place.
fn clamp_decay(norm: &mut Tensor, angle: &mut Tensor, clamp: impl Fn(&Tensor) -> Tensor) {
    let poles = ContinuousPoles::new(norm, angle);
    let re = clamp(&poles.re);
    let im = poles.im;
    let new_norm = (&re * &re + &im * &im).sqrt().log();
    let new_angle = im.atan2(&re);
    let kind = norm.kind();
    norm.copy_(&new_norm.to_kind(kind));
    angle.copy_(&new_angle.to_kind(kind));
}

/// The activations on tensors.
trait Apply {
    fn apply(self, y: &Tensor) -> Tensor;
}

impl Apply for Activation {
    fn apply(self, y: &Tensor) -> Tensor {
        match self {
            Activation::Tanh => y.tanh(),
            Activation::Relu => y.relu(),
            Activation::LeakyRelu => y.leaky_relu(),
            Activation::Identity => y.shallow_clone(),
        }
    }
}

/// (out, in) × (in, …) → (out, …) as one 2-D matrix product.
fn channel_matmul(w: &Tensor, x: &Tensor) -> Tensor {
    let mut shape = x.size();
    let flat = x.reshape([shape[0], -1]);
    shape[0] = w.size()[0];
    w.matmul(&flat).reshape(shape.as_slice())
}

/// The smallest 2^a·3^b·5^c ≥ n: pocketfft is fastest on such lengths.
pub fn fft_length(n: i64) -> i64 {
    let mut best = i64::MAX;
    let mut p2 = 1i64;
    while p2 < 2 * n {
        let mut p3 = p2;
        while p3 < 2 * n {
            let mut p5 = p3;
            while p5 < 2 * n {
                if p5 >= n {
                    best = best.min(p5);
                }
                p5 *= 5;
            }
            p3 *= 3;
        }
        p2 *= 2;
    }
    best
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )?)
}
