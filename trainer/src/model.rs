//! The Piano-SSM network in libtorch, parameterised exactly like the published checkpoints
//! and the runtime's model format, with the diagonal recurrence evaluated as an FFT convolution.
//!
//! Why FFT convolution: a diagonal linear recurrence `x_t = a x_{t-1} + g v_t` with x_{-1} = 0 is
//! the convolution `x = (g a^t) * v`. On CPU one FFT pair per layer beats any scan (see
//! `../shared/notes/toolchain.md`). To keep the FFT count down, the input is transformed once
//! (in-channels), B and C are applied in the frequency domain as *real* matmuls on the
//! (re, im)-interleaved spectra, and only the out-channels are transformed back.

use anyhow::{bail, Context, Result};
use num_complex::Complex64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssm_runtime::model::{Activation, Model, ModelInfo, SsmLayer, KEYS};
use tch::{nn, Device, Kind, Tensor};

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

impl PianoSsm {
    /// A freshly initialised model (deterministic for `init.seed`).
    pub fn new(
        device: Device,
        size: Size,
        heads: usize,
        activation: Activation,
        init: InitOptions,
    ) -> PianoSsm {
        let init = Init::new(size.state(), heads, init);
        Self::from_parts(
            device,
            &init.layers,
            &init.head_weight,
            &init.head_bias,
            heads,
            activation,
        )
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

    fn activate(&self, y: &Tensor) -> Tensor {
        match self.activation {
            Activation::Tanh => y.tanh(),
            Activation::Relu => y.relu(),
            Activation::LeakyRelu => y.leaky_relu(),
            Activation::Identity => y.shallow_clone(),
        }
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

/// Where the poles start.
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
}

/// How a fresh model is initialised.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    pub poles: PoleInit,
    /// Training sample rate: the keyboard layout is in Hz.
    pub sample_rate: u32,
    pub seed: u64,
}

/// Initial weights: poles as `PoleInit` says, B scaled to unit state gain (see
/// [`unit_gain_row`]), C and the skips Gaussian scaled by fan-in, biases zero.
struct Init {
    layers: Vec<SsmLayer>,
    head_weight: Vec<f32>,
    head_bias: Vec<f32>,
}

impl Init {
    fn new(state: usize, heads: usize, options: InitOptions) -> Init {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut normal = move |scale: f64| -> f32 {
            // Box–Muller: rand_distr is not worth a dependency for this
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * scale) as f32
        };
        let mut layers = Vec::new();
        for (i, pair) in WIDTHS.windows(2).enumerate() {
            let (inp, out) = (pair[0], pair[1]);
            let poles = match options.poles {
                PoleInit::Keyboard => {
                    keyboard_poles(state, i, WIDTHS.len() - 1, options.sample_rate as f64)
                }
                PoleInit::LogUniform => log_uniform_poles(state, i),
            };
            let skip_scale = 1.0 / (inp as f64).sqrt();
            let c_scale = 0.7 / (state as f64).sqrt();
            layers.push(SsmLayer {
                inputs: inp,
                outputs: out,
                state,
                norm: poles.iter().map(|l| l.norm().ln() as f32).collect(),
                angle: poles.iter().map(|l| l.arg() as f32).collect(),
                b: poles
                    .iter()
                    .flat_map(|l| unit_gain_row(l, inp, &mut normal))
                    .collect(),
                b_bias: vec![0.0; state * 2],
                c: (0..out * state * 2).map(|_| normal(c_scale)).collect(),
                c_bias: vec![0.0; out * 2],
                skip: (i > 0).then(|| (0..out * inp).map(|_| normal(skip_scale)).collect()),
            });
        }
        let last = *WIDTHS.last().unwrap();
        let head_weight = (0..heads * last)
            .map(|_| normal(0.1 / (last as f64).sqrt()))
            .collect();
        Init {
            layers,
            head_weight,
            head_bias: vec![0.0; heads],
        }
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
fn unit_gain_row(pole: &Complex64, inputs: usize, normal: &mut impl FnMut(f64) -> f32) -> Vec<f32> {
    let scale = 0.5 * pole.norm() / std::f64::consts::SQRT_2;
    (0..inputs * 2).map(|_| normal(scale)).collect()
}

/// Continuous-time pole (unit: one training sample) ringing at `hz` with a 60 dB decay time
/// of `t60` seconds.
fn pole(hz: f64, t60: f64, sample_rate: f64) -> Complex64 {
    Complex64::new(
        -6.9 / (t60 * sample_rate),
        2.0 * std::f64::consts::PI * hz / sample_rate,
    )
}

/// `PoleInit::Keyboard` for layer `layer` of `layers`.
fn keyboard_poles(state: usize, layer: usize, layers: usize, sample_rate: f64) -> Vec<Complex64> {
    let key_hz = |midi: f64| 440.0 * 2f64.powf((midi - 69.0) / 12.0);
    // A0 upwards, as far as the training rate carries (partials of the top keys continue
    // above C8)
    let keys: Vec<f64> = (21..128)
        .map(f64::from)
        .take_while(|&m| key_hz(m) < 0.45 * sample_rate)
        .collect();
    let pitched = state / 2;
    let ringing = (0..pitched).map(|k| {
        // each layer is offset by a fraction of the key spacing so the layers together cover
        // the keyboard
        let at =
            (k as f64 + (layer as f64 + 0.5) / layers as f64) * keys.len() as f64 / pitched as f64;
        let midi = keys[(at as usize).min(keys.len() - 1)];
        // bass strings ring longer than treble ones: 8 s at A0 down to 1 s at C8
        let t60 = 8.0 * (1.0f64 / 8.0).powf(((midi - 21.0) / 87.0).clamp(0.0, 1.0));
        pole(key_hz(midi), t60, sample_rate)
    });
    let short = state - pitched;
    let transients = (0..short).map(|k| {
        let frac = (k as f64 + 0.5) / short as f64;
        let hz = 5.0 * (0.45 * sample_rate / 5.0).powf(frac);
        // decays scrambled against frequency: 5 ms … 300 ms
        let d = ((k * 7919 + layer * 31) % short) as f64 / short as f64;
        pole(hz, 0.005 * 60f64.powf(d), sample_rate)
    });
    ringing.chain(transients).collect()
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
