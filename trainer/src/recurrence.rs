//! The diagonal recurrences of the scan kernel and their adjoints, on CPU, over plain slices.
//!
//! Layout: every activation is time-major, `(batch, time, 2P)` with a row's first `P` entries
//! the real parts and the next `P` the imaginary parts, the layout a matrix product over
//! (batch × time) rows gives. States run in float64 (the phase of a pole advances by up to
//! π a sample, and a float32 state would drift over a crop); what is stored is float32.
//!
//! Gradients follow one convention: for a real loss `L` and a complex `z`, `G_z = ∂L/∂Re z +
//! i ∂L/∂Im z`. Then for `z = a·b`, `G_b = conj(a)·G_z` and `G_a = G_z·conj(b)`.
//!
//! Work is split over batch items and blocks of states, on `threads` threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use multiversion::multiversion;

/// What activations are stored as: float32 in training, float64 where a test wants the
/// kernels exact.
pub trait Real: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
}

/// Complex numbers per state, as two float64 arrays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Complexes {
    pub re: Vec<f64>,
    pub im: Vec<f64>,
}

impl Complexes {
    pub fn zeros(n: usize) -> Complexes {
        Complexes {
            re: vec![0.0; n],
            im: vec![0.0; n],
        }
    }

    pub fn len(&self) -> usize {
        self.re.len()
    }

    pub fn is_empty(&self) -> bool {
        self.re.is_empty()
    }
}

/// The shape of a layer's activations: `batch` items of `len` samples, `state` states, the
/// input held for `hold` samples (1 for a layer fed at the sample rate; the samples per roll
/// frame for the first layer, whose input changes once a frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub len: usize,
    pub state: usize,
    pub hold: usize,
}

impl Shape {
    /// Input rows per item.
    pub fn frames(self) -> usize {
        self.len / self.hold
    }

    fn row(self) -> usize {
        2 * self.state
    }
}

/// `x_t = a x_{t−1} + v_{⌊t/hold⌋}` from `x_{−1} = 0`: `v` is `(batch, frames, 2P)`, `x`
/// `(batch, len, 2P)`.
pub fn forward<T: Real>(a: &Complexes, v: &[T], shape: Shape, x: &mut [T], threads: usize) {
    check(shape, a.len(), v.len(), x.len());
    let out = Shared(x.as_mut_ptr());
    let blocks = Blocks::new(shape, threads);
    run(blocks.count(), threads, |unit| {
        let (b, states) = blocks.unit(unit);
        let a = (&a.re[states.clone()], &a.im[states.clone()]);
        let start = b * shape.len * shape.row() + states.start;
        let v = &v[b * shape.frames() * shape.row() + states.start..];
        forward_unit(a, v, out, start, shape);
    });
}

/// One unit of [`forward`]: `a.len()` states from the start of each row of `v`, written to
/// `x` from `start`. Compiled again for AVX2 with FMA and for AVX-512, chosen at run time (the
/// crate is built for x86-64's baseline, two float64 lanes without fused multiply-add).
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn forward_unit<T: Real>(a: Pair<f64>, v: &[T], x: Shared<T>, start: usize, shape: Shape) {
    let n = a.0.len();
    let (ar, ai) = (&a.0[..n], &a.1[..n]);
    let (mut sr, mut si) = (vec![0.0f64; n], vec![0.0f64; n]);
    let (row, p_im) = (shape.row(), shape.state);
    for t in 0..shape.len {
        let at = (t / shape.hold) * row;
        let (vr, vi) = halves(v, at, p_im, n);
        // SAFETY: each unit writes only its own item's rows at its own states
        let (xr, xi) = unsafe { x.pair(start + t * row, p_im, n) };
        let (sr, si) = (&mut sr[..n], &mut si[..n]);
        for p in 0..n {
            let r = ar[p] * sr[p] - ai[p] * si[p] + vr[p].to_f64();
            let i = ar[p] * si[p] + ai[p] * sr[p] + vi[p].to_f64();
            sr[p] = r;
            si[p] = i;
            xr[p] = T::from_f64(r);
            xi[p] = T::from_f64(i);
        }
    }
}

/// The adjoint of [`forward`]: from `gx` (the loss's gradient at `x`) and the stored `x`,
/// writes `gv` (at `v`, summed over each input row's `hold` samples) and returns `G_a`, summed
/// over the batch.
pub fn backward<T: Real>(
    a: &Complexes,
    x: &[T],
    gx: &[T],
    shape: Shape,
    gv: &mut [T],
    threads: usize,
) -> Complexes {
    check(shape, a.len(), gv.len(), x.len());
    assert_eq!(gx.len(), x.len(), "the gradient has the states' shape");
    let out = Shared(gv.as_mut_ptr());
    let blocks = Blocks::new(shape, threads);
    let partial = run(blocks.count(), threads, |unit| {
        let (b, states) = blocks.unit(unit);
        let a = (&a.re[states.clone()], &a.im[states.clone()]);
        let ga = backward_unit(a, x, gx, out, b, states.start, shape);
        (states, ga)
    });
    gather(a.len(), partial)
}

/// One unit of [`backward`]: item `b`'s states `a.len()` from `first`; returns their `G_a`.
/// Compiled for the CPU's vectors like [`forward_unit`].
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn backward_unit<T: Real>(
    a: Pair<f64>,
    x: &[T],
    gx: &[T],
    gv: Shared<T>,
    b: usize,
    first: usize,
    shape: Shape,
) -> Complexes {
    let n = a.0.len();
    {
        // the adjoint state λ_t = G_x,t + conj(a) λ_{t+1}, its sum over the input row, G_a
        let mut lambda = (vec![0.0f64; n], vec![0.0f64; n]);
        let mut row_sum = (vec![0.0f64; n], vec![0.0f64; n]);
        let mut ga = (vec![0.0f64; n], vec![0.0f64; n]);
        let zeros = vec![T::from_f64(0.0); n];
        let (row, p_im) = (shape.row(), shape.state);
        for t in (0..shape.len).rev() {
            let at = (b * shape.len + t) * row + first;
            let before = match t {
                0 => (&zeros[..], &zeros[..]),
                _ => halves(x, at - row, p_im, n),
            };
            let g = halves(gx, at, p_im, n);
            adjoint_step(a, g, before, &mut lambda, &mut row_sum, &mut ga);
            if t % shape.hold == 0 {
                let frame = (b * shape.frames() + t / shape.hold) * row + first;
                // SAFETY: each unit writes only its own item's rows at its own states
                let (vr, vi) = unsafe { gv.pair(frame, p_im, n) };
                for (v, s) in vr.iter_mut().zip(row_sum.0.iter_mut()) {
                    *v = T::from_f64(std::mem::take(s));
                }
                for (v, s) in vi.iter_mut().zip(row_sum.1.iter_mut()) {
                    *v = T::from_f64(std::mem::take(s));
                }
            }
        }
        Complexes { re: ga.0, im: ga.1 }
    }
}

type Pair<'a, T> = (&'a [T], &'a [T]);

/// The `n` entries from `at` and from `at + gap`: a row's real and imaginary parts.
fn halves<T>(t: &[T], at: usize, gap: usize, n: usize) -> Pair<'_, T> {
    (&t[at..at + n], &t[at + gap..at + gap + n])
}

/// One sample of the adjoint scan, every state at once: `λ ← G_x + conj(a) λ`, added to the
/// input row's sum, and `G_a += λ conj(x_{t−1})`. All slices have the states' length, which
/// lets the compiler drop the bounds checks and vectorise.
#[inline(always)]
fn adjoint_step<T: Real>(
    a: Pair<f64>,
    gx: Pair<T>,
    before: Pair<T>,
    lambda: &mut (Vec<f64>, Vec<f64>),
    row_sum: &mut (Vec<f64>, Vec<f64>),
    ga: &mut (Vec<f64>, Vec<f64>),
) {
    let n = lambda.0.len();
    let (ar, ai, gr, gi) = (&a.0[..n], &a.1[..n], &gx.0[..n], &gx.1[..n]);
    let (xr, xi) = (&before.0[..n], &before.1[..n]);
    let (lr, li) = (&mut lambda.0[..n], &mut lambda.1[..n]);
    let (sr, si) = (&mut row_sum.0[..n], &mut row_sum.1[..n]);
    let (cr, ci) = (&mut ga.0[..n], &mut ga.1[..n]);
    for p in 0..n {
        let r = gr[p].to_f64() + ar[p] * lr[p] + ai[p] * li[p];
        let i = gi[p].to_f64() + ar[p] * li[p] - ai[p] * lr[p];
        lr[p] = r;
        li[p] = i;
        sr[p] += r;
        si[p] += i;
        let (x_re, x_im) = (xr[p].to_f64(), xi[p].to_f64());
        cr[p] += r * x_re + i * x_im;
        ci[p] += i * x_re - r * x_im;
    }
}

/// A damped first layer's per-sample tables for every schedule a state's frame can follow
/// (sounding, the damper's frames of falling, damped): `pow[p][s][i]` and `gain[p][s][i]`,
/// `i` samples into the frame, each `(state, schedules, hold)` flattened.
#[derive(Debug, Clone)]
pub struct Schedules {
    pub pow: Complexes,
    pub gain: Complexes,
    pub schedules: usize,
}

/// Per-frame inputs of a damped first layer, each `(batch, frames, P)` flattened: the layer's
/// input `w`, the states' jump at the frame's start, and the schedule each state follows.
#[derive(Debug, Clone)]
pub struct DampedFrames {
    pub w: Complexes,
    pub jump: Complexes,
    pub schedule: Vec<u32>,
}

/// The damped first layer: in frame `f`, `i` samples in, `x = pow[s][i] (X_{f−1} + J_f) +
/// gain[s][i] w_f` for the state's schedule `s`, `X_f` the frame's last sample, `X_{−1} = 0`.
/// Writes `x`, `(batch, len, 2P)`.
pub fn damped_forward<T: Real>(
    tables: &Schedules,
    frames: &DampedFrames,
    shape: Shape,
    x: &mut [T],
    threads: usize,
) {
    check_damped(tables, frames, shape, x.len());
    let out = Shared(x.as_mut_ptr());
    let blocks = Blocks::new(shape, threads);
    let (hold, span) = (shape.hold, tables.schedules * shape.hold);
    run(blocks.count(), threads, |unit| {
        {
            let (b, states) = blocks.unit(unit);
            let mut end = Complexes::zeros(shape.state);
            for f in 0..shape.frames() {
                let at = (b * shape.frames() + f) * shape.state;
                for p in states.clone() {
                    let s = frames.schedule[at + p] as usize;
                    let zr = end.re[p] + frames.jump.re[at + p];
                    let zi = end.im[p] + frames.jump.im[at + p];
                    let (wr, wi) = (frames.w.re[at + p], frames.w.im[at + p]);
                    let table = p * span + s * hold;
                    let (pr, pi) = (&tables.pow.re[table..], &tables.pow.im[table..]);
                    let (gr, gi) = (&tables.gain.re[table..], &tables.gain.im[table..]);
                    let (mut r, mut i) = (0.0, 0.0);
                    for k in 0..hold {
                        r = pr[k] * zr - pi[k] * zi + gr[k] * wr - gi[k] * wi;
                        i = pr[k] * zi + pi[k] * zr + gr[k] * wi + gi[k] * wr;
                        let sample = ((b * shape.len) + f * hold + k) * shape.row() + p;
                        // SAFETY: each unit writes only its own item's rows at its own states
                        unsafe {
                            out.write(sample, T::from_f64(r));
                            out.write(sample + shape.state, T::from_f64(i));
                        }
                    }
                    end.re[p] = r;
                    end.im[p] = i;
                }
            }
        }
    });
}

/// What [`damped_backward`] returns: the gradients at the tables and the frame inputs.
#[derive(Debug, Clone)]
pub struct DampedGradients {
    pub pow: Complexes,
    pub gain: Complexes,
    pub w: Complexes,
    pub jump: Complexes,
}

/// The adjoint of [`damped_forward`], from `gx` (the loss's gradient at `x`) and the stored
/// `x`; table gradients summed over the batch.
pub fn damped_backward<T: Real>(
    tables: &Schedules,
    frames: &DampedFrames,
    x: &[T],
    gx: &[T],
    shape: Shape,
    threads: usize,
) -> DampedGradients {
    check_damped(tables, frames, shape, x.len());
    assert_eq!(gx.len(), x.len(), "the gradient has the states' shape");
    let per_frame = frames.w.len();
    let (mut gw, mut gj) = (Complexes::zeros(per_frame), Complexes::zeros(per_frame));
    let (w_out, j_out) = (
        (Shared(gw.re.as_mut_ptr()), Shared(gw.im.as_mut_ptr())),
        (Shared(gj.re.as_mut_ptr()), Shared(gj.im.as_mut_ptr())),
    );
    let blocks = Blocks::new(shape, threads);
    let (hold, span, row) = (shape.hold, tables.schedules * shape.hold, shape.row());
    let partial = run(blocks.count(), threads, |unit| {
        {
            let (b, states) = blocks.unit(unit);
            let first = states.start * span;
            let mut gp = Complexes::zeros(states.len() * span);
            let mut gg = Complexes::zeros(states.len() * span);
            // the adjoint of the next frame's start Z_{f+1} = X_f + J_{f+1}
            let mut next = Complexes::zeros(shape.state);
            let mut t = Complexes::zeros(hold);
            for f in (0..shape.frames()).rev() {
                let at = (b * shape.frames() + f) * shape.state;
                for p in states.clone() {
                    let s = frames.schedule[at + p] as usize;
                    let table = p * span + s * hold;
                    // the total adjoint of each sample's state
                    for k in 0..hold {
                        let sample = ((b * shape.len) + f * hold + k) * row + p;
                        t.re[k] = gx[sample].to_f64();
                        t.im[k] = gx[sample + shape.state].to_f64();
                    }
                    t.re[hold - 1] += next.re[p];
                    t.im[hold - 1] += next.im[p];
                    // the frame's start, as the forward pass saw it
                    let (er, ei) = match f {
                        0 => (0.0, 0.0),
                        _ => {
                            let end = ((b * shape.len) + f * hold - 1) * row + p;
                            (x[end].to_f64(), x[end + shape.state].to_f64())
                        }
                    };
                    let (zr, zi) = (er + frames.jump.re[at + p], ei + frames.jump.im[at + p]);
                    let (wr, wi) = (frames.w.re[at + p], frames.w.im[at + p]);
                    let (pr, pi) = (&tables.pow.re[table..], &tables.pow.im[table..]);
                    let (gr, gi) = (&tables.gain.re[table..], &tables.gain.im[table..]);
                    let local = table - first;
                    let (mut ar, mut ai, mut br, mut bi) = (0.0, 0.0, 0.0, 0.0);
                    for k in 0..hold {
                        let (tr, ti) = (t.re[k], t.im[k]);
                        // conj(pow)·T and conj(gain)·T
                        ar += pr[k] * tr + pi[k] * ti;
                        ai += pr[k] * ti - pi[k] * tr;
                        br += gr[k] * tr + gi[k] * ti;
                        bi += gr[k] * ti - gi[k] * tr;
                        // T·conj(Z) and T·conj(w)
                        gp.re[local + k] += tr * zr + ti * zi;
                        gp.im[local + k] += ti * zr - tr * zi;
                        gg.re[local + k] += tr * wr + ti * wi;
                        gg.im[local + k] += ti * wr - tr * wi;
                    }
                    next.re[p] = ar;
                    next.im[p] = ai;
                    // SAFETY: each unit writes only its own item's frames at its own states
                    unsafe {
                        w_out.0.write(at + p, br);
                        w_out.1.write(at + p, bi);
                        j_out.0.write(at + p, ar);
                        j_out.1.write(at + p, ai);
                    }
                }
            }
            (first..first + states.len() * span, (gp, gg))
        }
    });
    let (mut pow, mut gain) = (
        Complexes::zeros(tables.pow.len()),
        Complexes::zeros(tables.pow.len()),
    );
    for (range, (gp, gg)) in partial {
        add_at(&mut pow, range.start, &gp);
        add_at(&mut gain, range.start, &gg);
    }
    DampedGradients {
        pow,
        gain,
        w: gw,
        jump: gj,
    }
}

/// Adds `part` into `total` from `start` on.
fn add_at(total: &mut Complexes, start: usize, part: &Complexes) {
    let end = start + part.len();
    for (a, b) in total.re[start..end].iter_mut().zip(&part.re) {
        *a += b;
    }
    for (a, b) in total.im[start..end].iter_mut().zip(&part.im) {
        *a += b;
    }
}

fn check(shape: Shape, poles: usize, v: usize, x: usize) {
    assert_eq!(poles, shape.state, "one pole a state");
    assert!(
        shape.hold > 0 && shape.len.is_multiple_of(shape.hold),
        "whole frames"
    );
    assert_eq!(v, shape.batch * shape.frames() * shape.row(), "input shape");
    assert_eq!(x, shape.batch * shape.len * shape.row(), "state shape");
}

fn check_damped(tables: &Schedules, frames: &DampedFrames, shape: Shape, x: usize) {
    let per_frame = shape.batch * shape.frames() * shape.state;
    assert!(
        shape.hold > 0 && shape.len.is_multiple_of(shape.hold),
        "whole frames"
    );
    assert_eq!(
        tables.pow.len(),
        shape.state * tables.schedules * shape.hold,
        "tables"
    );
    assert_eq!(tables.gain.len(), tables.pow.len(), "tables");
    assert_eq!(frames.w.len(), per_frame, "frame inputs");
    assert_eq!(frames.jump.len(), per_frame, "frame jumps");
    assert_eq!(frames.schedule.len(), per_frame, "frame schedules");
    assert!(
        frames
            .schedule
            .iter()
            .all(|&s| (s as usize) < tables.schedules),
        "a schedule beyond the tables"
    );
    assert_eq!(x, shape.batch * shape.len * shape.row(), "state shape");
}

/// Per-unit sums of `G_a` over their states, added up per state.
fn gather(states: usize, partial: Vec<(std::ops::Range<usize>, Complexes)>) -> Complexes {
    let mut total = Complexes::zeros(states);
    for (range, part) in partial {
        add_at(&mut total, range.start, &part);
    }
    total
}

/// Units of work: each batch item, its states cut into blocks so that every thread has work.
struct Blocks {
    batch: usize,
    state: usize,
    size: usize,
}

impl Blocks {
    /// States per block are a multiple of 8 (a vector's float64 lanes).
    fn new(shape: Shape, threads: usize) -> Blocks {
        let per_item = threads.div_ceil(shape.batch.max(1)).max(1);
        let size = shape.state.div_ceil(per_item).next_multiple_of(8).max(8);
        Blocks {
            batch: shape.batch,
            state: shape.state,
            size,
        }
    }

    fn per_item(&self) -> usize {
        self.state.div_ceil(self.size).max(1)
    }

    fn count(&self) -> usize {
        self.batch * self.per_item()
    }

    /// The unit's batch item and states.
    fn unit(&self, unit: usize) -> (usize, std::ops::Range<usize>) {
        let (b, block) = (unit / self.per_item(), unit % self.per_item());
        let start = block * self.size;
        (b, start..(start + self.size).min(self.state))
    }
}

/// Runs `work` for units `0..count` on up to `threads` threads, results in unit order.
fn run<R: Send>(count: usize, threads: usize, work: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return (0..count).map(&work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let unit = next.fetch_add(1, Ordering::Relaxed);
                        if unit >= count {
                            break done;
                        }
                        done.push((unit, work(unit)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a scan thread panicked"))
            .collect()
    });
    results.sort_by_key(|(unit, _)| *unit);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A buffer that units write at disjoint places from several threads.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);

// SAFETY: the kernels give every unit a disjoint set of indices to write
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// No other unit writes `at`.
    unsafe fn write(&self, at: usize, value: T) {
        unsafe { self.0.add(at).write(value) }
    }

    /// The `n` entries from `at` and from `at + gap`, as slices.
    ///
    /// # Safety
    /// No other unit touches those entries while the slices live.
    #[allow(clippy::mut_from_ref)]
    unsafe fn pair(&self, at: usize, gap: usize, n: usize) -> (&mut [T], &mut [T]) {
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.0.add(at), n),
                std::slice::from_raw_parts_mut(self.0.add(at + gap), n),
            )
        }
    }
}
