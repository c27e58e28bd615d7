//! The real-time engine: a model discretised for one sample rate, run block by block.
//!
//! Per block of up to [`MAX_BLOCK`] samples each layer does
//! 1. its input projection `U = H_prev · [gB | W_skip]ᵀ` as one matrix product (weights
//!    packed for SIMD, reused across the block's samples),
//! 2. the diagonal recurrence `x_t = λ̄ x_{t-1} + u_t`, the only per-sample step, in f64 so
//!    long-ringing poles keep their exact frequency and decay,
//! 3. its output projection `Y = X · [Re C | -Im C]ᵀ` as one matrix product, then
//!    `h = (act(Y + Re C_bias) + skip) / √2`.
//!
//! The first layer's input is the key frame, constant between roll changes, so its
//! projection is computed only when the keys change and only over the keys that sound. Its
//! key damper (format version 2, [`keys`]) switches the poles of the states tagged with a key
//! at the same moment; only its falls and the fades after releases run sample by sample.
//! In silence the engine sleeps at the network's rest ([`rest`]).
//! Nothing allocates, locks or does I/O after [`Engine::new`].

mod activation;
mod heads;
mod keys;
mod recurrence;
mod rest;
mod simd;

use num_complex::Complex64;

use crate::error::EngineError;
use crate::limits::{KEYS, MAX_RATE, MIN_RATE};
use crate::model::{stable_pole, Activation, Model, ModelInfo, SsmLayer};
use crate::roll::KeyFrame;
use heads::Heads;
pub use heads::Outputs;
use keys::KeyInput;
use recurrence::{Input, Recurrence};
use rest::Rest;
pub use rest::SLEEP_TOLERANCE;
use simd::{Packed, Simd};

pub use crate::limits::{A4_RANGE, STANDARD_A4};

/// Largest number of samples processed as one block; longer requests are split.
pub const MAX_BLOCK: usize = 64;

/// Instruction set the engine's kernels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The fastest instruction set this CPU supports.
    pub fn detect() -> Isa {
        Isa::available()[0]
    }

    /// Every instruction set this CPU can run, fastest first.
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }

    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 | Isa::Portable => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// Where a layer's input comes from.
enum LayerInput {
    /// First layer: the key frame.
    Keys(Box<KeyInput>),
    /// Hidden layers: `[g ⊙ B | W_skip]` packed for the block product, with its bias.
    Hidden { w: Packed, bias: Vec<f32> },
}

/// One layer, discretised and packed for a sample rate.
struct Layer {
    p: usize,
    outputs: usize,
    /// The first layer only: how many head channels read its states (`heads.state_weight`),
    /// computed as extra output columns after the layer's own.
    head_reads: usize,
    /// Output width (with the heads' columns) rounded up to the SIMD panel width.
    out_pad: usize,
    rec: Recurrence,
    input: LayerInput,
    w_out: Packed,
    c_bias: Vec<f32>,
}

/// Complex values as `[re; im]`.
pub(super) fn split(v: &[Complex64]) -> Vec<f64> {
    v.iter()
        .map(|z| z.re)
        .chain(v.iter().map(|z| z.im))
        .collect()
}

/// Continuous-time pole after the stability rule, then its discretisation for `step`:
/// `λ̄ = exp(λ s)`, `g = (λ̄ − 1) / λ`.
pub(super) fn discretise(norm: f32, angle: f32, step: f64) -> (Complex64, Complex64) {
    let lambda = stable_pole(norm, angle);
    let lambda_bar = (lambda * step).exp();
    (lambda_bar, (lambda_bar - 1.0) / lambda)
}

/// `model` with every hidden layer's state padded to a multiple of half the SIMD width: the
/// kernels read a hidden layer's state `[re P | im P]` whole panels at a time. The added
/// states have no input, no output and their layer's first pole, so they stay at zero and
/// the sound is the model's own; models whose sizes fit (all that we ship) are not copied.
fn padded_states(model: &Model, lanes: usize) -> std::borrow::Cow<'_, Model> {
    let half = lanes / 2;
    let fits = |l: &SsmLayer| l.skip.is_none() || l.state.is_multiple_of(half);
    if model.layers.iter().all(fits) {
        return std::borrow::Cow::Borrowed(model);
    }
    let mut model = model.clone();
    for l in model.layers.iter_mut().filter(|l| !fits(l)) {
        let (p, padded) = (l.state, l.state.next_multiple_of(half));
        l.norm.resize(padded, l.norm[0]);
        l.angle.resize(padded, l.angle[0]);
        l.b.resize(padded * l.inputs * 2, 0.0);
        l.b_bias.resize(padded * 2, 0.0);
        l.c =
            l.c.chunks(2 * p)
                .flat_map(|row| {
                    row.iter()
                        .copied()
                        .chain(std::iter::repeat_n(0.0, 2 * (padded - p)))
                })
                .collect();
        l.state = padded;
    }
    std::borrow::Cow::Owned(model)
}

impl Layer {
    /// `l` discretised for `step` (train rate / sample rate), `frame` samples per MIDI frame;
    /// `head_reads`: the head channels' weights on its states (`heads.state_weight`), each
    /// computed as one more output column.
    fn new(l: &SsmLayer, step: f64, frame: f64, lanes: usize, head_reads: &[f32]) -> Layer {
        let p = l.state;
        let (lam, g): (Vec<Complex64>, Vec<Complex64>) = l
            .norm
            .iter()
            .zip(&l.angle)
            .map(|(&n, &a)| discretise(n, a, step))
            .unzip();
        let cplx = |v: &[f32], i: usize| Complex64::new(v[2 * i] as f64, v[2 * i + 1] as f64);
        let reads = head_reads.len() / (2 * p).max(1);
        let columns = l.outputs + reads;
        let out_pad = columns.div_ceil(lanes) * lanes;
        let input = match &l.skip {
            None => LayerInput::Keys(Box::new(KeyInput::new(l, &lam, &g, step, frame))),
            Some(skip) => {
                // g ⊙ B as a function of (input k, real state row r < 2P)
                let gb = |k: usize, r: usize| {
                    let z = g[r % p] * cplx(&l.b, (r % p) * l.inputs + k);
                    if r < p {
                        z.re
                    } else {
                        z.im
                    }
                };
                let m = 2 * p + out_pad;
                let w = Packed::new(l.inputs, m, m, lanes, |k, col| {
                    if col < 2 * p {
                        gb(k, col) as f32
                    } else if col - 2 * p < l.outputs {
                        skip[(col - 2 * p) * l.inputs + k]
                    } else {
                        0.0
                    }
                });
                let gbias: Vec<Complex64> = (0..p).map(|q| g[q] * cplx(&l.b_bias, q)).collect();
                let mut bias: Vec<f32> = split(&gbias).iter().map(|&v| v as f32).collect();
                bias.resize(m, 0.0);
                LayerInput::Hidden { w, bias }
            }
        };
        // Re(C x) = Re C · Re x − Im C · Im x over the state stored as [re; im]; the heads'
        // columns alike
        let w_out = Packed::new(2 * p, columns, out_pad, lanes, |r, o| {
            let c = match o.checked_sub(l.outputs) {
                None => cplx(&l.c, o * p + r % p),
                Some(j) => cplx(head_reads, j * p + r % p),
            };
            (if r < p { c.re } else { -c.im }) as f32
        });
        let mut c_bias: Vec<f32> = (0..l.outputs).map(|o| l.c_bias[2 * o]).collect();
        c_bias.resize(out_pad, 0.0);
        Layer {
            p,
            outputs: l.outputs,
            head_reads: reads,
            out_pad,
            rec: Recurrence::new(
                lam.iter().map(|z| z.re).collect(),
                lam.iter().map(|z| z.im).collect(),
            ),
            input,
            w_out,
            c_bias,
        }
    }

    /// Width of the block product's output: the state (re, im) plus the skip columns.
    fn input_width(&self) -> usize {
        match &self.input {
            LayerInput::Keys(_) => 0,
            LayerInput::Hidden { w, .. } => w.m,
        }
    }
}

/// Whether an engine can play at `sample_rate` ([`MIN_RATE`] to [`MAX_RATE`]): the one rule,
/// which the command and the plugin ask before they spend time on a model.
pub fn check_rate(sample_rate: u32) -> Result<(), EngineError> {
    match (MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        true => Ok(()),
        false => Err(EngineError::UnsupportedRate(sample_rate)),
    }
}

/// A Piano-SSM model ready to render at one sample rate.
pub struct Engine {
    isa: Isa,
    info: ModelInfo,
    parameter_count: usize,
    state_sizes: Vec<usize>,
    sample_rate: u32,
    /// the master tuning, A4 in Hz
    a4: f64,
    layers: Vec<Layer>,
    activation: Activation,
    heads: Heads,
    keys: KeyFrame,
    rest: Rest,
    /// set while a block finds the rest: each layer starts at its input's fixed point
    rest_pass: bool,
    // scratch for one block
    u: Vec<f32>,
    x: Vec<f32>,
    y: Vec<f32>,
    h: [Vec<f32>; 2],
    /// the head channels' reads of the first layer's states (as many a sample as
    /// `rest.reads` holds)
    reads: Vec<f32>,
    /// while [`Engine::process_hidden`] asks for them (`capture_first`): the first layer's
    /// states, as its outputs read them, a block of rows of `2P` (empty until first asked)
    first_states: Vec<f32>,
    capture_first: bool,
}

impl Engine {
    /// Discretises `model` for `sample_rate` on the fastest instruction set available.
    pub fn new(model: &Model, sample_rate: u32) -> Result<Engine, EngineError> {
        Engine::with_isa(model, sample_rate, Isa::detect())
    }

    /// As [`Engine::new`] on a chosen instruction set (benchmarks and tests compare them).
    /// An instruction set the CPU lacks falls back to the fastest available one.
    pub fn with_isa(model: &Model, sample_rate: u32, isa: Isa) -> Result<Engine, EngineError> {
        Engine::build(model, sample_rate, isa, STANDARD_A4)
    }

    /// As [`Engine::new`], tuned to A4 = `a4` Hz (see [`A4_RANGE`]). The model's time runs
    /// `r = a4 / 440` times as fast: every pole is discretised for the step
    /// `r · train_rate / sample_rate`, so every partial moves by the ratio `r` and every decay
    /// shortens by it, as a piano tuned higher would sound; the roll keeps real time (its
    /// frames, the damper's fall and the settling fade start and last as untuned).
    pub fn tuned(model: &Model, sample_rate: u32, a4: f64) -> Result<Engine, EngineError> {
        Engine::build(model, sample_rate, Isa::detect(), a4)
    }

    fn build(model: &Model, sample_rate: u32, isa: Isa, a4: f64) -> Result<Engine, EngineError> {
        check_rate(sample_rate)?;
        if !A4_RANGE.contains(&a4) {
            return Err(EngineError::UnsupportedTuning(a4));
        }
        let isa = if Isa::available().contains(&isa) {
            isa
        } else {
            Isa::detect()
        };
        let step = a4 / STANDARD_A4 * model.info.train_rate as f64 / sample_rate as f64;
        let frame = sample_rate as f64 / model.info.midi_rate as f64;
        let lanes = isa.lanes();
        let padded = padded_states(model, lanes);
        let model = padded.as_ref();
        let reads = model.head_state_weight.as_deref().unwrap_or(&[]);
        let layers: Vec<Layer> = model
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| Layer::new(l, step, frame, lanes, if i == 0 { reads } else { &[] }))
            .collect();
        let head_reads = layers.first().map_or(0, |l| l.head_reads);
        let max = |f: &dyn Fn(&Layer) -> usize| layers.iter().map(f).max().unwrap_or(0);
        let (max_u, max_x, max_y) = (
            max(&|l| l.input_width()),
            max(&|l| 2 * l.p),
            max(&|l| l.out_pad),
        );
        let width = layers.last().map_or(0, |l| l.outputs);
        let head_gain = model
            .head_weight
            .chunks(width.max(1))
            .map(|w| w.iter().map(|v| v.abs() as f64).sum::<f64>())
            .fold(0.0, f64::max);
        let limit = SLEEP_TOLERANCE / (head_gain * model.info.norm_std.abs()).max(1e-30);
        let mut weight: Vec<Vec<f64>> = model.layers.iter().map(output_weights).collect();
        if let (Some(e), Some(w)) = (&model.head_state_weight, weight.first_mut()) {
            // the heads' reads move the output too: in units of the head's gain
            add_read_weights(w, e, head_gain);
        }
        let rest = Rest::new(&model.state_sizes(), weight, width, limit, head_reads);
        let mut engine = Engine {
            isa,
            info: model.info.clone(),
            parameter_count: model.parameter_count(),
            state_sizes: model.state_sizes(),
            sample_rate,
            a4,
            layers,
            activation: model.info.activation,
            heads: Heads::new(model),
            keys: [0; KEYS],
            rest,
            rest_pass: false,
            u: vec![0.0; MAX_BLOCK * max_u],
            x: vec![0.0; MAX_BLOCK * max_x],
            y: vec![0.0; MAX_BLOCK * max_y],
            h: [vec![0.0; MAX_BLOCK * max_y], vec![0.0; MAX_BLOCK * max_y]],
            reads: vec![0.0; MAX_BLOCK * head_reads],
            first_states: Vec::new(),
            capture_first: false,
        };
        engine.reset();
        engine.find_rest();
        Ok(engine)
    }

    /// One sample in which every layer starts at its input's fixed point: the states and
    /// the last layer's output at rest. Then back to a fresh engine's zero state.
    fn find_rest(&mut self) {
        self.rest_pass = true;
        let _denormals = DenormalGuard::flush_to_zero();
        self.compute(1);
        self.rest_pass = false;
        self.heads.set_rest(&self.rest.h, &self.rest.reads);
        self.reset();
    }

    /// Whether the engine may sleep in silence (on by default). Off, it computes every sample.
    pub fn set_sleep(&mut self, enabled: bool) {
        self.rest.enabled = enabled;
        self.rest.asleep &= enabled;
    }

    /// How many keys' banks run now (0 for a model without a key bank): a key's bank wakes
    /// when it is struck and sleeps once it is silent and has decayed.
    pub fn awake_banks(&self) -> usize {
        match self.layers.first().map(|l| &l.input) {
            Some(LayerInput::Keys(keys)) => keys.awake_banks(),
            _ => 0,
        }
    }

    /// Whether the engine is asleep at rest (it computes nothing until a key wakes it).
    pub fn is_asleep(&self) -> bool {
        self.rest.asleep
    }

    /// Puts the key banks of silent keys that have decayed to sleep (see `keys.rs`), by the
    /// rule the whole engine sleeps by, each bank within an 88th of its tolerance: every key's
    /// bank may jump once, and together they must stay within the one tolerance.
    fn sleep_banks(&mut self) {
        if !self.rest.enabled {
            return;
        }
        if let Some(Layer {
            input: LayerInput::Keys(keys),
            rec,
            ..
        }) = self.layers.first_mut()
        {
            keys.sleep_banks(rec, &self.rest.weight[0], self.rest.limit / KEYS as f64);
        }
    }

    /// Falls asleep if no key sounds, the first layer's input is steady and every state is
    /// close enough to rest; the states are then put at rest exactly.
    fn try_sleep(&mut self) {
        if !self.rest.enabled || self.keys != [0; KEYS] {
            return;
        }
        if let Some(Layer {
            input: LayerInput::Keys(keys),
            ..
        }) = self.layers.first()
        {
            if !keys.is_steady() {
                return;
            }
        }
        let distance: f64 = self
            .layers
            .iter()
            .zip(&self.rest.x)
            .zip(&self.rest.weight)
            .map(|((l, x), w)| l.rec.distance(x, w))
            .sum();
        if distance < self.rest.limit {
            for (l, x) in self.layers.iter_mut().zip(&self.rest.x) {
                l.rec.set(x);
            }
            self.rest.asleep = true;
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The master tuning: A4 in Hz.
    pub fn a4(&self) -> f64 {
        self.a4
    }

    pub fn midi_rate(&self) -> u32 {
        self.info.midi_rate
    }

    pub fn parameter_count(&self) -> usize {
        self.parameter_count
    }

    pub fn state_sizes(&self) -> &[usize] {
        &self.state_sizes
    }

    pub fn head(&self) -> usize {
        self.heads.selected()
    }

    pub fn head_count(&self) -> usize {
        self.heads.count()
    }

    /// The model's output channels: 1 (mono) or 2 (stereo).
    pub fn channels(&self) -> usize {
        self.heads.channels()
    }

    /// Selects the output head (e.g. a MAESTRO year); takes effect from the next sample.
    pub fn set_head(&mut self, head: usize) -> Result<(), EngineError> {
        if head >= self.head_count() {
            return Err(EngineError::NoSuchHead {
                index: head,
                count: self.head_count(),
            });
        }
        self.heads.select(head);
        self.heads.set_rest(&self.rest.h, &self.rest.reads);
        Ok(())
    }

    /// Clears every state and releases all keys: the next sample is as from a fresh engine.
    pub fn reset(&mut self) {
        // keys up (every damper down; falls in progress ended first, so the list of falling
        // states never outgrows its capacity), then the states cleared (the key change moved
        // them); a fresh engine's dampers are down, not falling, and nothing fades
        self.stop_dampers();
        self.keys = [1; KEYS];
        self.set_keys(&[0; KEYS]);
        self.stop_dampers();
        for l in &mut self.layers {
            l.rec.clear();
        }
        self.rest.asleep = false;
    }

    fn stop_dampers(&mut self) {
        if let Some(Layer {
            input: LayerInput::Keys(keys),
            ..
        }) = self.layers.first_mut()
        {
            keys.stop();
        }
    }

    /// True when no state holds NaN or infinity.
    pub fn is_finite(&self) -> bool {
        self.layers.iter().all(|l| l.rec.is_finite())
    }

    /// Sets the key frame (velocities 0..=127, A0 first) heard from the next sample on.
    /// Cheap when nothing changed; otherwise proportional to the number of sounding keys.
    pub fn set_keys(&mut self, keys: &KeyFrame) {
        if *keys == self.keys {
            return;
        }
        self.rest.asleep = false;
        let before = std::mem::replace(&mut self.keys, *keys);
        if let Some(Layer {
            input: LayerInput::Keys(input),
            rec,
            ..
        }) = self.layers.first_mut()
        {
            input.set_keys(&before, keys, rec);
        }
    }

    /// The first layer (from 0) whose state holds a NaN or an infinity: where a render that
    /// met one went wrong. `None` when every state is finite.
    pub fn first_non_finite_layer(&self) -> Option<usize> {
        self.layers.iter().position(|l| {
            let r = &l.rec;
            !r.x_re.iter().chain(&r.x_im).all(|v| v.is_finite())
        })
    }

    /// Renders `out.len()` samples with the current keys (asleep: the rest output): a mono
    /// model's head, or the mean of a stereo model's two channels.
    pub fn process(&mut self, out: &mut [f32]) {
        self.process_outputs(Outputs::Mono(out));
    }

    /// Renders `left.len()` samples into `left` and `right` (no more than `right.len()`): a
    /// stereo model's two channels, or a mono model's one channel in both.
    pub fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        self.process_outputs(Outputs::stereo(left, right));
    }

    /// Renders `out.len()` samples into one channel ([`Engine::process`]) or a stereo pair
    /// ([`Engine::process_stereo`]).
    pub fn process_outputs(&mut self, mut out: Outputs<'_>) {
        let _denormals = DenormalGuard::flush_to_zero();
        let len = out.len();
        for start in (0..len).step_by(MAX_BLOCK) {
            let block = start..(start + MAX_BLOCK).min(len);
            if self.rest.asleep {
                self.heads.write_rest(&mut out, block);
                continue;
            }
            let stride = self.compute(block.len());
            self.heads
                .write(&mut out, block, &self.h[0], stride, &self.reads);
            self.sleep_banks();
            self.try_sleep();
        }
    }

    /// The last layer's outputs — what every head reads — for the next `hidden.len() /
    /// width` samples (`width` = [`Engine::hidden_width`]), a sample's `width` values after
    /// the last's: as [`Engine::process`] renders them, without the head. With `first`, the
    /// first layer's states too, `2P` a sample (`[re; im]`, as its outputs read them). Why:
    /// the trainer fits new heads (a stereo one) to a trained network on these. The first
    /// call that asks for the states allocates room for a block of them.
    pub fn process_hidden(&mut self, hidden: &mut [f32], mut first: Option<&mut [f32]>) {
        let _denormals = DenormalGuard::flush_to_zero();
        let width = self.hidden_width();
        let p2 = 2 * self.state_sizes.first().copied().unwrap_or(0);
        let samples = hidden.len() / width.max(1);
        self.capture_first = first.is_some();
        if self.capture_first {
            self.first_states.resize(MAX_BLOCK * p2, 0.0);
        }
        for start in (0..samples).step_by(MAX_BLOCK) {
            let rows = (samples - start).min(MAX_BLOCK);
            let block = &mut hidden[start * width..(start + rows) * width];
            let states = first
                .as_deref_mut()
                .map(|f| &mut f[start * p2..(start + rows) * p2]);
            if self.rest.asleep {
                for row in block.chunks_exact_mut(width) {
                    row.copy_from_slice(&self.rest.h);
                }
                for row in states.into_iter().flat_map(|s| s.chunks_exact_mut(p2)) {
                    for (o, x) in row.iter_mut().zip(&self.rest.x[0]) {
                        *o = *x as f32;
                    }
                }
                continue;
            }
            let stride = self.compute(rows);
            for (row, h) in block.chunks_exact_mut(width).zip(self.h[0].chunks(stride)) {
                row.copy_from_slice(&h[..width]);
            }
            if let Some(to) = states {
                to.copy_from_slice(&self.first_states[..rows * p2]);
            }
            self.sleep_banks();
            self.try_sleep();
        }
        self.capture_first = false;
    }

    /// How many outputs the last layer has (what a head reads).
    pub fn hidden_width(&self) -> usize {
        self.rest.h.len()
    }

    /// Computes one block of up to [`MAX_BLOCK`] samples through every layer: the last
    /// layer's outputs in `h[0]`, rows of the returned stride.
    fn compute(&mut self, rows: usize) -> usize {
        // SAFETY: `isa` was checked against the CPU's features in `with_isa`.
        unsafe {
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => self.block_avx512(rows),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => self.block_avx2(rows),
                _ => self.block::<simd::Portable>(rows),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn block_avx512(&mut self, rows: usize) -> usize {
        self.block::<simd::Avx512>(rows)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2(&mut self, rows: usize) -> usize {
        self.block::<simd::Avx2>(rows)
    }

    /// One block of `rows` samples through every layer; returns the last layer's stride.
    #[inline(always)]
    unsafe fn block<S: Simd>(&mut self, rows: usize) -> usize {
        let scale = std::f32::consts::FRAC_1_SQRT_2;
        let act = self.activation;
        let [h_prev, h_next] = &mut self.h;
        let mut prev_stride = 0;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let (p, out_pad) = (layer.p, layer.out_pad);
            let rest = self.rest_pass.then(|| &mut self.rest.x[i]);
            let skip_at = match &mut layer.input {
                LayerInput::Keys(keys) => {
                    if let Some(rest) = rest {
                        settle(
                            &mut layer.rec,
                            p,
                            Input::Constant(keys.steady_input()),
                            rest,
                        );
                    }
                    keys.run(&mut layer.rec, rows, &mut self.x);
                    if self.capture_first {
                        let n = rows * 2 * p;
                        self.first_states[..n].copy_from_slice(&self.x[..n]);
                    }
                    None
                }
                LayerInput::Hidden { w, bias } => {
                    let (w, bias) = (&*w, &*bias);
                    let m = w.m;
                    let all = 0..w.k;
                    let all = std::slice::from_ref(&all);
                    simd::gemm::<S>(rows, h_prev, prev_stride, w, bias, &mut self.u, m, all);
                    if let Some(rest) = rest {
                        settle(&mut layer.rec, p, Input::Rows(&self.u, m), rest);
                    }
                    let states = 0..p;
                    let states = std::slice::from_ref(&states);
                    layer
                        .rec
                        .run(states, p, rows, Input::Rows(&self.u, m), &mut self.x);
                    Some(m)
                }
            };
            let all_rows = 0..2 * p;
            let state_rows = match &layer.input {
                LayerInput::Keys(keys) => keys.state_rows(),
                LayerInput::Hidden { .. } => std::slice::from_ref(&all_rows),
            };
            simd::gemm::<S>(
                rows,
                &self.x,
                2 * p,
                &layer.w_out,
                &layer.c_bias,
                &mut self.y,
                out_pad,
                state_rows,
            );
            if layer.head_reads > 0 {
                let (from, n) = (layer.outputs, layer.head_reads);
                for (to, y) in self
                    .reads
                    .chunks_exact_mut(n)
                    .zip(self.y.chunks(out_pad))
                    .take(rows)
                {
                    to.copy_from_slice(&y[from..from + n]);
                }
            }
            // whole padded rows: the padding columns hold zeros and keep the loops branch-free
            let y = &self.y[..rows * out_pad];
            let h = &mut h_next[..rows * out_pad];
            match skip_at {
                None => activation::apply(act, y, None, scale, h),
                Some(m) => {
                    for n in 0..rows {
                        let skip = &self.u[n * m + 2 * p..n * m + 2 * p + out_pad];
                        let row = n * out_pad..(n + 1) * out_pad;
                        activation::apply(act, &y[row.clone()], Some(skip), scale, &mut h[row]);
                    }
                }
            }
            std::mem::swap(h_prev, h_next);
            prev_stride = out_pad;
        }
        if self.rest_pass {
            let width = self.rest.h.len();
            self.rest.h.copy_from_slice(&h_prev[..width]);
            let n = self.rest.reads.len();
            self.rest.reads.copy_from_slice(&self.reads[..n]);
        }
        prev_stride
    }
}

/// Adds to the first layer's per-state weights (see [`output_weights`]) what a unit of each
/// state moves the heads' reads `e` (rows of `P` complex weights), in units of the heads'
/// gain `head_gain` (the sleep limit's scale).
fn add_read_weights(weight: &mut [f64], e: &[f32], head_gain: f64) {
    let p = weight.len();
    for row in e.chunks_exact(2 * p) {
        for (w, pair) in weight.iter_mut().zip(row.chunks_exact(2)) {
            *w += (pair[0] as f64).hypot(pair[1] as f64) / head_gain.max(1e-30);
        }
    }
}

/// Puts a layer's state at the fixed point of input `u`, kept in `rest`.
fn settle(rec: &mut Recurrence, p: usize, u: Input<'_>, rest: &mut [f64]) {
    rec.fixed_point(p, u, rest);
    rec.set(rest);
}

/// Per state of `l`: `Σ_o |C_oq|`, how much a unit of the state moves the layer's outputs.
fn output_weights(l: &SsmLayer) -> Vec<f64> {
    (0..l.state)
        .map(|q| {
            (0..l.outputs)
                .map(|o| {
                    let i = 2 * (o * l.state + q);
                    (l.c[i] as f64).hypot(l.c[i + 1] as f64)
                })
                .sum()
        })
        .collect()
}

/// Sets flush-to-zero and denormals-are-zero for its lifetime: decaying states would
/// otherwise reach subnormal numbers after long silences and slow every operation down.
struct DenormalGuard {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl DenormalGuard {
    #[allow(deprecated)]
    fn flush_to_zero() -> DenormalGuard {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
            let saved = _mm_getcsr();
            _mm_setcsr(saved | 0x8040); // FTZ (bit 15) | DAZ (bit 6)
            DenormalGuard { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        DenormalGuard {}
    }
}

impl Drop for DenormalGuard {
    #[allow(deprecated)]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discretisation_matches_closed_form() {
        // angle π/3 has Re > 0: the stability rule mirrors it to 2π/3
        let (lb, g) = discretise(0.5, std::f32::consts::FRAC_PI_3, 0.5);
        let angle = std::f32::consts::FRAC_PI_3 as f64;
        let lambda = Complex64::from_polar(0.5f64.exp(), std::f64::consts::PI - angle);
        assert!((lb - (lambda * 0.5).exp()).norm() < 1e-12);
        assert!((g - ((lambda * 0.5).exp() - 1.0) / lambda).norm() < 1e-12);
        assert!(lb.norm() < 1.0, "stable");
    }
}
