//! The diagonal recurrence `x_t = λ̄ x_{t-1} + u_t` of one layer, the engine's only
//! per-sample step, in f64 so long-ringing poles keep their exact frequency and decay.

use std::ops::Range;

use num_complex::Complex64;

/// A layer's discretised poles and its f64 state, stored as separate real and imaginary parts
/// so the loop vectorises.
pub(super) struct Recurrence {
    pub(super) lam_re: Vec<f64>,
    pub(super) lam_im: Vec<f64>,
    pub(super) x_re: Vec<f64>,
    pub(super) x_im: Vec<f64>,
}

/// The recurrence's input: one row for every sample, or one constant row.
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    Constant(&'a [f64]),
    Rows(&'a [f32], usize),
}

impl Recurrence {
    pub(super) fn new(lam_re: Vec<f64>, lam_im: Vec<f64>) -> Recurrence {
        let p = lam_re.len();
        Recurrence {
            lam_re,
            lam_im,
            x_re: vec![0.0; p],
            x_im: vec![0.0; p],
        }
    }

    /// Runs the recurrence of the states in `ranges` (all of them: `&[0..p]`) over `rows`
    /// samples, input row `n` at `u[n·ldu..]` (`[re; im]`), writing those states as f32
    /// `[re; im]` rows of `x` (the other states' entries are left as they are).
    #[inline(always)]
    pub(super) fn run(
        &mut self,
        ranges: &[Range<usize>],
        p: usize,
        rows: usize,
        u: Input<'_>,
        x: &mut [f32],
    ) {
        for n in 0..rows {
            let xo = &mut x[n * 2 * p..(n + 1) * 2 * p];
            let (xo_re, xo_im) = xo.split_at_mut(p);
            let (ur, ui): (&[f64], &[f64]) = match u {
                Input::Constant(u) => (&u[..p], &u[p..2 * p]),
                Input::Rows(..) => (&[], &[]),
            };
            for r in ranges {
                // re-slicing every operand to exactly the range lets the compiler drop bounds
                // checks and vectorise
                let len = r.len();
                let (lr, li) = (&self.lam_re[r.clone()], &self.lam_im[r.clone()]);
                let (xr, xi) = (&mut self.x_re[r.clone()], &mut self.x_im[r.clone()]);
                let (or, oi) = (&mut xo_re[r.clone()], &mut xo_im[r.clone()]);
                match u {
                    Input::Constant(_) => {
                        let (ur, ui) = (&ur[r.clone()], &ui[r.clone()]);
                        for q in 0..len {
                            let re = lr[q] * xr[q] - li[q] * xi[q] + ur[q];
                            let im = lr[q] * xi[q] + li[q] * xr[q] + ui[q];
                            (xr[q], xi[q]) = (re, im);
                            (or[q], oi[q]) = (re as f32, im as f32);
                        }
                    }
                    Input::Rows(u, ldu) => {
                        let row = &u[n * ldu..n * ldu + 2 * p];
                        let (ur, ui) = (&row[r.clone()], &row[p + r.start..p + r.end]);
                        for q in 0..len {
                            let re = lr[q] * xr[q] - li[q] * xi[q] + ur[q] as f64;
                            let im = lr[q] * xi[q] + li[q] * xr[q] + ui[q] as f64;
                            (xr[q], xi[q]) = (re, im);
                            (or[q], oi[q]) = (re as f32, im as f32);
                        }
                    }
                }
            }
        }
    }

    /// The fixed point of a constant input `u` (its first row): `x* = u / (1 − λ̄)` per state,
    /// as `[re; im]` into `rest`.
    pub(super) fn fixed_point(&self, p: usize, u: Input<'_>, rest: &mut [f64]) {
        for q in 0..p {
            let (re, im) = match u {
                Input::Constant(u) => (u[q], u[p + q]),
                Input::Rows(u, _) => (u[q] as f64, u[p + q] as f64),
            };
            let x = Complex64::new(re, im) / Complex64::new(1.0 - self.lam_re[q], -self.lam_im[q]);
            (rest[q], rest[p + q]) = (x.re, x.im);
        }
    }

    /// Puts the state at `rest` (`[re; im]`).
    pub(super) fn set(&mut self, rest: &[f64]) {
        let p = self.x_re.len();
        self.x_re.copy_from_slice(&rest[..p]);
        self.x_im.copy_from_slice(&rest[p..2 * p]);
    }

    /// `Σ_q weight_q · |x_q − rest_q|`: how far the state is from `rest`, each state weighted
    /// by how much it moves the layer's outputs.
    pub(super) fn distance(&self, rest: &[f64], weight: &[f64]) -> f64 {
        let p = self.x_re.len();
        (0..p)
            .map(|q| {
                let d = Complex64::new(self.x_re[q] - rest[q], self.x_im[q] - rest[p + q]);
                weight[q] * d.norm()
            })
            .sum()
    }

    /// Zeroes the states in `range`.
    pub(super) fn clear_range(&mut self, range: Range<usize>) {
        self.x_re[range.clone()].fill(0.0);
        self.x_im[range].fill(0.0);
    }

    /// Zeroes the state.
    pub(super) fn clear(&mut self) {
        self.x_re.fill(0.0);
        self.x_im.fill(0.0);
    }

    pub(super) fn is_finite(&self) -> bool {
        self.x_re.iter().chain(&self.x_im).all(|v| v.is_finite())
    }
}
