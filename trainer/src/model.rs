//! The Piano-SSM network in libtorch, parameterised exactly like the published checkpoints
//! and the runtime's model format, with the diagonal recurrence evaluated as an FFT convolution.
//! Where a fresh network starts is [`crate::init`]'s business.
//!
//! Why FFT convolution: a diagonal linear recurrence `x_t = a x_{t-1} + g v_t` with x_{-1} = 0 is
//! the convolution `x = (g a^t) * v`. On CPU one FFT pair per layer beats any scan (see
//! `../shared/notes/toolchain.md`). To keep the FFT count down, the input is transformed once
//! (in-channels), B and C are applied in the frequency domain as *real* matmuls on the
//! (re, im)-interleaved spectra, and only the out-channels are transformed back.

use anyhow::{bail, Context, Result};
use ssm_runtime::model::{Activation, Model, ModelInfo, SsmLayer, KEYS};
use tch::{nn, Device, Kind, Tensor};

use crate::init::Init;
pub use crate::init::{InitOptions, PoleInit};

/// Channel widths of the paper's network: 88 keys in, 20 features into the heads.
pub const WIDTHS: [usize; 5] = [KEYS, 88, 60, 40, 20];

/// Model sizes of the paper (state size per layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Size {
    #[value(name = "S", alias = "s")]
    S,
    #[value(name = "L", alias = "l")]
    L,
    #[value(name = "XL", alias = "xl")]
    XL,
}

impl Size {
    pub fn state(self) -> usize {
        match self {
            Size::S => 64,
            Size::L => 128,
            Size::XL => 256,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Size::S => "S",
            Size::L => "L",
            Size::XL => "XL",
        }
    }
}

/// One diagonal SSM layer's trainable tensors, named like the runtime format.
struct Layer {
    norm: Tensor,
    angle: Tensor,
    /// (P, in, 2)
    b: Tensor,
    /// (P, 2)
    b_bias: Tensor,
    /// (out, P, 2)
    c: Tensor,
    /// (out, 2)
    c_bias: Tensor,
    /// (out, in), every layer but the first
    skip: Option<Tensor>,
    state: i64,
}

/// Per-forward constants of one layer: the kernel spectra, which depend only on the poles.
struct Kernel {
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
}

/// `--later-t60` as `train` and `average` accept it: a positive, finite number of seconds.
pub fn check_later_t60(seconds: f64) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--later-t60 must be a positive number of seconds, not {seconds}");
    }
    Ok(())
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
        layers: &[SsmLayer],
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
        let layers = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = &root / "layers" / i;
                let (pn, inp, out) = (l.state as i64, l.inputs as i64, l.outputs as i64);
                Layer {
                    norm: var(&p, "norm", &l.norm, &[pn]),
                    angle: var(&p, "angle", &l.angle, &[pn]),
                    b: var(&p, "B", &l.b, &[pn, inp, 2]),
                    b_bias: var(&p, "B_bias", &l.b_bias, &[pn, 2]),
                    c: var(&p, "C", &l.c, &[out, pn, 2]),
                    c_bias: var(&p, "C_bias", &l.c_bias, &[out, 2]),
                    skip: l.skip.as_ref().map(|s| var(&p, "skip", s, &[out, inp])),
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
        }
    }

    pub fn heads(&self) -> i64 {
        self.head_weight.size()[0]
    }

    /// Renders a batch. `roll`: (B, 88, frames) velocities / 127; `heads`: (B) int64;
    /// each frame is held for `hold` samples; `step` is train_rate / sample_rate.
    /// Returns (B, frames * hold) in normalised units.
    ///
    /// Inside, activations are channel-first (C, B, L): every weight product is then one plain
    /// 2-D matrix product over all items and frequencies, and per-state slices are contiguous.
    pub fn forward(&self, roll: &Tensor, heads: &Tensor, hold: i64, step: f64) -> Tensor {
        let u = roll
            .permute([1, 0, 2])
            .repeat_interleave_self_int(hold, Some(2), None::<i64>);
        let len = u.size()[2];
        let n_fft = fft_length(2 * len - 1);
        let sqrt2 = std::f64::consts::SQRT_2;
        let mut h = Tensor::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let kernel = layer.kernel(len, n_fft, step);
            let input = if i == 0 { &u } else { &h };
            let y = self.activate(&layer.forward(input, &kernel, n_fft));
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
            let _ = layer.b_bias.copy_(&bias);
            // states at zero: y = Re(C_bias)
            let y = self.activation.apply(&layer.c_bias.select(1, 0));
            rest = match &layer.skip {
                Some(w) => (y + w.matmul(&rest)) / sqrt2,
                None => y / sqrt2,
            };
        }
        let bias = -self.head_weight.matmul(&rest) + silence;
        let _ = self.head_bias.copy_(&bias);
    }

    /// Shortens every pole of layers 2–4 whose 60 dB decay is longer than `t60` samples to
    /// that decay (its frequency kept). Why: with `PoleInit::GatedKeys` only the first layer is
    /// gated by the keys, and a spectral loss that wants energy in every bin will otherwise
    /// stretch a later layer's pole into a ring that plays on long after the keys are released.
    pub fn limit_later_decays(&mut self, t60: f64) {
        let _guard = tch::no_grad_guard();
        let min_decay = 6.9 / t60;
        for layer in self.layers.iter_mut().skip(1) {
            let (norm, angle) = (
                layer.norm.to_kind(Kind::Double),
                layer.angle.to_kind(Kind::Double),
            );
            let mag = norm.exp();
            // the pole as the forward sees it (stability rule: real part negative)
            let re = -(&mag * angle.cos()).abs();
            let im = &mag * angle.sin();
            let re = re.clamp_max(-min_decay);
            let new_norm = (&re * &re + &im * &im).sqrt().log();
            let new_angle = im.atan2(&re);
            let kind = layer.norm.kind();
            let _ = layer.norm.copy_(&new_norm.to_kind(kind));
            let _ = layer.angle.copy_(&new_angle.to_kind(kind));
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
                    b_bias: to_vec(&l.b_bias)?,
                    c: to_vec(&l.c)?,
                    c_bias: to_vec(&l.c_bias)?,
                    skip: l.skip.as_ref().map(to_vec).transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
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

impl Layer {
    /// Poles after the stability rule, discretised with step `s`, and the kernel g·λ̄^t
    /// for t < len, transformed. Built in float64: λ̄^t's phase grows to ~10^5 radians over
    /// a crop, which float32 would get wrong by a few hundredths of a radian.
    fn kernel(&self, len: i64, n_fft: i64, s: f64) -> Kernel {
        let opts = (Kind::Double, self.norm.device());
        let norm = self.norm.to_kind(Kind::Double);
        let angle = self.angle.to_kind(Kind::Double);
        let mag = norm.exp();
        // stability: the pole's real part is forced negative, imaginary part kept
        let re = -(&mag * angle.cos()).abs();
        let im = &mag * angle.sin();
        // λ̄ = exp(λ s), g = (λ̄ − 1) / λ
        let (bar_re, bar_im) = {
            let r = (&re * s).exp();
            (&r * (&im * s).cos(), r * (&im * s).sin())
        };
        let denom = &re * &re + &im * &im;
        let (num_re, num_im) = (bar_re - 1.0, bar_im);
        let g_re = (&num_re * &re + &num_im * &im) / &denom;
        let g_im = (&num_im * &re - &num_re * &im) / &denom;
        // λ̄^t = exp(λ s t)
        let t = Tensor::arange(len, opts) * s;
        let decay = (re.unsqueeze(1) * &t).exp();
        let phase = im.unsqueeze(1) * &t;
        let (pow_re, pow_im) = (&decay * phase.cos(), decay * phase.sin());
        let k_re = g_re.unsqueeze(1) * &pow_re - g_im.unsqueeze(1) * &pow_im;
        let k_im = g_re.unsqueeze(1) * pow_im + g_im.unsqueeze(1) * pow_re;
        let kind = self.norm.kind();
        Kernel {
            re: k_re.to_kind(kind).fft_rfft(n_fft, -1, "backward"),
            im: k_im.to_kind(kind).fft_rfft(n_fft, -1, "backward"),
        }
    }

    /// y = Re(C x + C_bias) for input u: (in, B, L) → (out, B, L).
    fn forward(&self, u: &Tensor, kernel: &Kernel, n_fft: i64) -> Tensor {
        let (batch, len) = (u.size()[1], u.size()[2]);
        let p = self.state;
        // the bias is a constant input channel
        let ones = Tensor::ones([1, batch, len], (u.kind(), u.device()));
        let spec = Tensor::cat(&[u, &ones], 0).fft_rfft(n_fft, -1, "backward"); // (in+1, B, F)
                                                                                // [B_re | b_re ; B_im | b_im]: (2P, in+1), real, applied to the (re, im)-interleaved spectra
        let b_re = Tensor::cat(
            &[self.b.select(2, 0), self.b_bias.select(1, 0).unsqueeze(1)],
            1,
        );
        let b_im = Tensor::cat(
            &[self.b.select(2, 1), self.b_bias.select(1, 1).unsqueeze(1)],
            1,
        );
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
