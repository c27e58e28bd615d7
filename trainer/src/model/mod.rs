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

mod complex;
mod convert;
mod damper;
mod edits;
mod scan;

pub use complex::fft_length;
use complex::*;
use damper::*;
pub use edits::DecayLimits;

/// Channel widths of the paper's network: 88 keys in, 20 features into the heads.
pub use ssm_runtime::size::WIDTHS;

/// Model sizes of the paper (state size per layer): the runtime's one definition.
pub use ssm_runtime::Size;

/// One diagonal SSM layer's trainable tensors, named like the runtime format.
struct NetworkLayer {
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

/// Per-forward constants of one layer: the kernel spectra, which depend only on the poles.
struct Spectra {
    /// rfft of Re(g λ̄^t) and Im(g λ̄^t), each (P, F)
    re: Tensor,
    im: Tensor,
}

pub struct Network {
    pub vs: nn::VarStore,
    layers: Vec<NetworkLayer>,
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

impl Network {
    /// A freshly initialised model (deterministic for `init.seed`).
    pub fn new(
        device: Device,
        size: Size,
        heads: usize,
        activation: Activation,
        init: InitOptions,
    ) -> Result<Network> {
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
    /// (train with [`Network::forward_train`]).
    pub fn forward(&self, roll: &Tensor, heads: &Tensor, hold: i64, step: f64) -> Tensor {
        match self.kernel {
            Kernel::Fft => self.forward_fft(roll, heads, hold, step),
            Kernel::Scan => self.forward_scan(roll, heads, hold, step, false).audio,
        }
    }

    /// [`Network::forward`] for training: the prediction's `backward` accumulates a loss's
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

    fn activate(&self, y: &Tensor) -> Tensor {
        self.activation.apply(y)
    }
}

/// `roll` (velocities / 127) as a first layer with velocity exponent `e` reads it: `roll^e`
/// (0 stays 0: the exponent is positive).
fn touch(roll: &Tensor, e: f32) -> Tensor {
    roll.pow_tensor_scalar(e as f64)
}

impl NetworkLayer {
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
    /// `[u; u²]` (2·in, B, L), to match [`NetworkLayer::input_weights`].
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
