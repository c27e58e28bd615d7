//! The network's forward and backward pass with the scan kernel: the projections as matrix
//! products over (batch × time) rows in libtorch, the diagonal recurrences as time-domain
//! scans in Rust ([`crate::recurrence`]), joined to libtorch's autograd by segment.
//!
//! Each layer is one segment. Its states `x` enter the graph as a leaf; the layer's output
//! `h` is the next layer's input as a leaf. Backward runs the segments from the last: the
//! gradient at `h` goes back through the output projection, activation and skip to `x` and to
//! the layer's input leaf; the adjoint scan turns `x`'s gradient into the gradients at the
//! scan's input and poles, which go back through the input projection and the pole
//! parameterisation with one more `backward`. Every part of the graph is walked once.

use ssm_runtime::model::Damper;
use tch::{Device, Kind, Tensor};

use super::{
    channel_matmul, settle, touch, Apply, ContinuousPoles, Cx, FallSchedules, KeyDamper, Network,
    NetworkLayer,
};
use crate::recurrence::{self, Complexes, DampedFrames, Schedules, Shape};

/// `$body` with `$t` the element type of tensors of `$kind`: float64 for double, float32
/// otherwise (the network's parameters are one or the other).
macro_rules! by_element {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            Kind::Double => {
                type $t = f64;
                $body
            }
            _ => {
                type $t = f32;
                $body
            }
        }
    };
}

/// How the diagonal recurrences are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Kernel {
    /// Each state's impulse response convolved through FFTs over the whole crop: libtorch
    /// operations only, so it runs on any device (the path for CUDA).
    Fft,
    /// Time-domain scans in Rust on CPU, forward and adjoint: about a tenth of the FFT path's
    /// time on CPU.
    Scan,
}

impl Kernel {
    /// The scan on CPU, the FFT elsewhere.
    pub fn default_for(device: Device) -> Kernel {
        match device {
            Device::Cpu => Kernel::Scan,
            _ => Kernel::Fft,
        }
    }

    /// Whether the kernel runs on `device`.
    pub fn check(self, device: Device) -> anyhow::Result<()> {
        if self == Kernel::Scan && device != Device::Cpu {
            anyhow::bail!("--kernel scan runs on the CPU; on {device:?} use --kernel fft");
        }
        Ok(())
    }
}

/// A forward pass's output and, when it was recorded for training, how to run it backward.
pub struct Prediction {
    /// (B, L) in normalised units
    pub audio: Tensor,
    tape: Option<Tape>,
}

impl Prediction {
    pub(super) fn plain(audio: Tensor) -> Prediction {
        Prediction { audio, tape: None }
    }

    /// Accumulates the gradient of `loss` (a scalar computed from [`Prediction::audio`]) into
    /// the network's parameters.
    pub fn backward(self, loss: &Tensor) {
        loss.backward();
        if let Some(tape) = self.tape {
            tape.backward();
        }
    }
}

/// What the backward pass needs of each layer, first layer first.
struct Tape {
    segments: Vec<Segment>,
}

struct Segment {
    /// the layer's input as a leaf (none for the first layer, which reads the roll)
    input: Option<Tensor>,
    /// the layer's output, computed from `states` and `input`
    output: Tensor,
    /// the states as a leaf, (B, L, 2P)
    states: Tensor,
    recurrence: Recurrence,
    threads: usize,
}

enum Recurrence {
    /// `x_t = a x_{t−1} + v`
    Plain {
        /// (P) each, float64, in the graph of the poles
        a: Cx,
        poles: Complexes,
        /// (B, frames, 2P), in the graph of the input projection
        v: Tensor,
        shape: Shape,
    },
    /// the first layer with its key damper
    Damped(Box<DampedSegment>),
}

struct DampedSegment {
    /// (P, schedules, hold) each, float64, in the graph of the poles
    pow: Cx,
    gain: Cx,
    tables: Schedules,
    /// (P, B, F): the layer's input and the jumps, in the graph of the weights
    w: Cx,
    jump: Cx,
    /// the jumps as the settling fade read them, a leaf
    settled_jump: Option<(Tensor, Tensor)>,
    frames: DampedFrames,
    shape: Shape,
}

impl Tape {
    fn backward(mut self) {
        let mut above: Option<Tensor> = None;
        while let Some(segment) = self.segments.pop() {
            if let Some(input_grad) = above.take() {
                if input_grad.defined() {
                    (&segment.output * input_grad).sum(Kind::Double).backward();
                }
            }
            segment.recurrence_backward();
            above = segment.input.as_ref().map(Tensor::grad);
        }
    }
}

impl Segment {
    /// From the states' gradient through the adjoint scan into the graph before it.
    fn recurrence_backward(&self) {
        let gx = self.states.grad();
        if !gx.defined() {
            return;
        }
        let gx = gx.contiguous();
        let (x, threads) = (&self.states, self.threads);
        let surrogate = match &self.recurrence {
            Recurrence::Plain { a, poles, v, shape } => {
                let gv = Tensor::empty(v.size(), (v.kind(), Device::Cpu));
                let ga = by_element!(v.kind(), T => recurrence::backward(
                    poles,
                    values::<T>(x),
                    values(&gx),
                    *shape,
                    values_mut(&gv),
                    threads,
                ));
                (v * gv).sum(Kind::Double) + dot(a, &ga, &[poles.len() as i64])
            }
            Recurrence::Damped(d) => {
                let (tables, frames) = (&d.tables, &d.frames);
                let g = by_element!(x.kind(), T => recurrence::damped_backward(
                    tables,
                    frames,
                    values::<T>(x),
                    values(&gx),
                    d.shape,
                    threads,
                ));
                let table = d.pow.re.size();
                let per_frame = [d.shape.batch as i64, d.shape.frames() as i64, -1];
                let mut jump = channel_first(&g.jump, &per_frame);
                if let Some((re, im)) = &d.settled_jump {
                    jump = Cx::new(jump.re + grad_or_zero(re), jump.im + grad_or_zero(im));
                }
                dot(&d.pow, &g.pow, &table)
                    + dot(&d.gain, &g.gain, &table)
                    + cx_dot(&d.w, &channel_first(&g.w, &per_frame))
                    + cx_dot(&d.jump, &jump)
            }
        };
        surrogate.backward();
    }
}

impl Network {
    /// The forward pass with the scan kernel; `record`: keep what the backward pass needs.
    pub(super) fn forward_scan(
        &self,
        roll: &Tensor,
        heads: &Tensor,
        hold: i64,
        step: f64,
        record: bool,
    ) -> Prediction {
        let _guard = (!record).then(tch::no_grad_guard);
        let threads = tch::get_num_threads().max(1) as usize;
        let roll = match self.velocity_exponent {
            Some(e) => touch(roll, e),
            None => roll.shallow_clone(),
        };
        let sqrt2 = std::f64::consts::SQRT_2;
        let mut segments = Vec::with_capacity(self.layers.len());
        let mut h = Tensor::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let input = (i > 0).then(|| leaf(&h, record));
            let (states, mut recurrence) = match (&layer.damper, &input) {
                (Some(damper), None) => layer.scan_damped(damper, &roll, hold, step, threads),
                (None, None) => {
                    // the roll, frame-major (B, F, 88): its projection once a frame
                    let u = roll.permute([0, 2, 1]);
                    layer.scan_plain(&layer.touch_features_last(&u), hold, step, threads)
                }
                (_, Some(input)) => layer.scan_plain(input, 1, step, threads),
            };
            let states = leaf(&states, record);
            let y = layer.read_out(&states, &mut recurrence, hold, record);
            let y = self.activation.apply(&y);
            h = match (&layer.skip, &input) {
                (Some(w), Some(input)) => (y + input.matmul(&w.tr())) / sqrt2,
                _ => y / sqrt2,
            };
            if record {
                segments.push(Segment {
                    input,
                    output: h.shallow_clone(),
                    states,
                    recurrence,
                    threads,
                });
            }
        }
        // h: (B, L, 20); each item through its own head
        let w = self.head_weight.index_select(0, heads).unsqueeze(2); // (B, 20, 1)
        let audio = h.bmm(&w).squeeze_dim(2) + self.head_bias.index_select(0, heads).unsqueeze(1);
        Prediction {
            audio,
            tape: record.then_some(Tape { segments }),
        }
    }
}

impl NetworkLayer {
    /// The plain recurrence on `input` (B, rows, in), each row held `hold` samples: the
    /// states (B, rows·hold, 2P) and what their backward pass needs.
    fn scan_plain(
        &self,
        input: &Tensor,
        hold: i64,
        step: f64,
        threads: usize,
    ) -> (Tensor, Recurrence) {
        let poles = ContinuousPoles::new(&self.norm, &self.angle);
        let a = poles.discrete(step);
        let g = poles.zoh_gain(step);
        // g folded into the input weights and bias: v = g·(B u + b)
        let kind = self.norm.kind();
        let g = Cx::new(
            g.re.to_kind(kind).unsqueeze(1),
            g.im.to_kind(kind).unsqueeze(1),
        );
        let weights = self.input_weights(); // (P, in, 2)
        let w = g.mul(&Cx::new(weights.select(2, 0), weights.select(2, 1)));
        let b = g.mul(&Cx::new(
            self.b_bias.select(1, 0).unsqueeze(1),
            self.b_bias.select(1, 1).unsqueeze(1),
        ));
        let w = Tensor::cat(&[w.re, w.im], 0); // (2P, in)
        let b = Tensor::cat(&[b.re, b.im], 0).squeeze_dim(1);
        let v = (input.matmul(&w.tr()) + b).contiguous();
        let size = input.size();
        let shape = Shape {
            batch: size[0] as usize,
            len: (size[1] * hold) as usize,
            state: self.state as usize,
            hold: hold as usize,
        };
        let poles = complexes(&a);
        let x = Tensor::empty(
            [size[0], size[1] * hold, 2 * self.state],
            (kind, Device::Cpu),
        );
        by_element!(kind, T => {
            recurrence::forward::<T>(&poles, values(&v), shape, values_mut(&x), threads)
        });
        (x, Recurrence::Plain { a, poles, v, shape })
    }

    /// The first layer with its key damper on `roll` (B, 88, F) (touched already).
    fn scan_damped(
        &self,
        damper: &KeyDamper,
        roll: &Tensor,
        hold: i64,
        step: f64,
        threads: usize,
    ) -> (Tensor, Recurrence) {
        let (batch, frames) = (roll.size()[0], roll.size()[2]);
        let keys = roll.permute([1, 0, 2]); // (88, B, F)
        let w = self.key_input(&keys);
        let schedules =
            FallSchedules::new(&self.norm, &self.angle, damper, hold, step, Kind::Double);
        let (phase, untagged) = damper.state_phases(roll);
        let jump = self.release_jump(&schedules, &w, &keys, &phase, &untagged);
        let shape = Shape {
            batch: batch as usize,
            len: (frames * hold) as usize,
            state: self.state as usize,
            hold: hold as usize,
        };
        let time_major = |c: &Cx| Complexes {
            re: f64_values(&c.re.permute([1, 2, 0])),
            im: f64_values(&c.im.permute([1, 2, 0])),
        };
        let schedule: Vec<u32> = Vec::<i64>::try_from(phase.permute([1, 2, 0]).flatten(0, -1))
            .expect("int64 phases")
            .into_iter()
            .map(|s| s as u32)
            .collect();
        let frames_in = DampedFrames {
            w: time_major(&w),
            jump: time_major(&jump),
            schedule,
        };
        let tables = Schedules {
            pow: complexes(&schedules.pow),
            gain: complexes(&schedules.gain),
            schedules: schedules.schedules as usize,
        };
        let kind = self.norm.kind();
        let x = Tensor::empty([batch, frames * hold, 2 * self.state], (kind, Device::Cpu));
        by_element!(kind, T => recurrence::damped_forward::<T>(
            &tables,
            &frames_in,
            shape,
            values_mut(&x),
            threads,
        ));
        let segment = DampedSegment {
            pow: schedules.pow,
            gain: schedules.gain,
            tables,
            w,
            jump,
            settled_jump: None,
            frames: frames_in,
            shape,
        };
        (x, Recurrence::Damped(Box::new(segment)))
    }

    /// `y = Re(C x + C_bias)` for states (B, L, 2P), with a damped layer's settling fade:
    /// (B, L, out).
    fn read_out(
        &self,
        states: &Tensor,
        recurrence: &mut Recurrence,
        hold: i64,
        record: bool,
    ) -> Tensor {
        let c = Tensor::cat(&[self.c.select(2, 0), -self.c.select(2, 1)], 1); // (out, 2P)
        let y = states.matmul(&c.tr()) + self.c_bias.select(1, 0);
        let (Recurrence::Damped(d), Some(damper)) = (recurrence, &self.damper) else {
            return y;
        };
        let fade: Vec<f64> = Damper::settle_fade(damper.settle_frames, hold as f64).collect();
        if fade.is_empty() {
            return y;
        }
        // the jumps enter the fade as leaves, so that their graph is walked once, by the
        // segment's recurrence backward, with the fade's gradient added
        let jump_re = leaf(&d.jump.re.to_kind(c.kind()), record);
        let jump_im = leaf(&d.jump.im.to_kind(c.kind()), record);
        let left = -channel_matmul(&c, &Tensor::cat(&[&jump_re, &jump_im], 0)); // (out, B, F)
        let settled = settle(&left, &fade, hold).permute([1, 2, 0]); // (B, L, out)
        d.settled_jump = Some((jump_re, jump_im));
        y + settled
    }

    /// [`NetworkLayer::touch_features`] for a frame-major input (B, F, in): features on the last
    /// dimension.
    fn touch_features_last(&self, u: &Tensor) -> Tensor {
        match &self.b_square {
            Some(_) => Tensor::cat(&[u, &u.square()], 2),
            None => u.shallow_clone(),
        }
    }
}

/// `t` cut from its graph, as a leaf that records its gradient when `record`.
fn leaf(t: &Tensor, record: bool) -> Tensor {
    let t = t.detach();
    if record {
        t.set_requires_grad(true)
    } else {
        t
    }
}

fn grad_or_zero(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() {
        g
    } else {
        t.zeros_like()
    }
}

/// Σ Re(t)·Re(g) + Im(t)·Im(g): the scalar whose gradient at `t` is `g`.
fn dot(t: &Cx, g: &Complexes, shape: &[i64]) -> Tensor {
    let part = |t: &Tensor, g: &[f64]| {
        (t * Tensor::from_slice(g).view(shape).to_kind(t.kind())).sum(Kind::Double)
    };
    part(&t.re, &g.re) + part(&t.im, &g.im)
}

fn cx_dot(t: &Cx, g: &Cx) -> Tensor {
    (&t.re * g.re.to_kind(t.re.kind())).sum(Kind::Double)
        + (&t.im * g.im.to_kind(t.im.kind())).sum(Kind::Double)
}

/// Per-frame values (B, F, P) as channel-first tensors (P, B, F).
fn channel_first(c: &Complexes, shape: &[i64]) -> Cx {
    let t = |v: &[f64]| Tensor::from_slice(v).view(shape).permute([2, 0, 1]);
    Cx::new(t(&c.re), t(&c.im))
}

fn complexes(c: &Cx) -> Complexes {
    Complexes {
        re: f64_values(&c.re),
        im: f64_values(&c.im),
    }
}

fn f64_values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).flatten(0, -1)).expect("a CPU tensor")
}

/// A contiguous CPU tensor's values, without a copy.
fn values<T: tch::kind::Element>(t: &Tensor) -> &[T] {
    check_values::<T>(t);
    // SAFETY: the tensor owns numel() contiguous values of T and outlives the borrow
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, t.numel()) }
}

/// A contiguous CPU tensor's values to write, without a copy.
#[allow(clippy::mut_from_ref)]
fn values_mut<T: tch::kind::Element>(t: &Tensor) -> &mut [T] {
    check_values::<T>(t);
    // SAFETY: a fresh tensor that nothing else reads while a kernel writes it
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel()) }
}

fn check_values<T: tch::kind::Element>(t: &Tensor) {
    assert!(
        t.kind() == T::KIND && t.device() == Device::Cpu && t.is_contiguous(),
        "the scan kernel reads contiguous CPU tensors of one kind, not {:?} on {:?}",
        t.kind(),
        t.device()
    );
}
