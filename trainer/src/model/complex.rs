//! Complex tensors as (re, im) pairs, continuous and discrete poles, and the tensor
//! helpers the kernels share.

use super::*;

/// A complex tensor as its real and imaginary parts (plain real autograd throughout).
pub(super) struct Cx {
    pub(super) re: Tensor,
    pub(super) im: Tensor,
}

impl Cx {
    pub(super) fn new(re: Tensor, im: Tensor) -> Cx {
        Cx { re, im }
    }

    pub(super) fn mul(&self, o: &Cx) -> Cx {
        Cx::new(
            &self.re * &o.re - &self.im * &o.im,
            &self.re * &o.im + &self.im * &o.re,
        )
    }

    pub(super) fn add(&self, o: &Cx) -> Cx {
        Cx::new(&self.re + &o.re, &self.im + &o.im)
    }

    pub(super) fn clone_cx(&self) -> Cx {
        Cx::new(self.re.shallow_clone(), self.im.shallow_clone())
    }

    /// The last entry of dimension 3 of `len`.
    pub(super) fn select_last(&self, len: i64) -> Cx {
        Cx::new(self.re.select(3, len - 1), self.im.select(3, len - 1))
    }

    /// Drops a size-1 dimension 3.
    pub(super) fn squeeze3(&self) -> Cx {
        Cx::new(self.re.squeeze_dim(3), self.im.squeeze_dim(3))
    }
}

/// A layer's continuous-time poles after the stability rule, float64 (P).
pub(super) struct ContinuousPoles {
    pub(super) re: Tensor,
    pub(super) im: Tensor,
}

impl ContinuousPoles {
    pub(super) fn new(norm: &Tensor, angle: &Tensor) -> Self {
        let mag = norm.to_kind(Kind::Double).exp();
        let angle = angle.to_kind(Kind::Double);
        ContinuousPoles {
            re: -(&mag * angle.cos()).abs(),
            im: mag * angle.sin(),
        }
    }

    /// The discrete pole `λ̄ = e^{λ s}` (P).
    pub(super) fn discrete(&self, s: f64) -> Cx {
        let decay = (&self.re * s).exp();
        Cx::new(&decay * (&self.im * s).cos(), decay * (&self.im * s).sin())
    }

    /// The zero-order-hold input gain `g = (e^{λ s} − 1)/λ` (P).
    pub(super) fn zoh_gain(&self, s: f64) -> Cx {
        let r = (&self.re * s).exp();
        let (n_re, n_im) = (&r * (&self.im * s).cos() - 1.0, r * (&self.im * s).sin());
        let denom = &self.re * &self.re + &self.im * &self.im;
        Cx::new(
            (&n_re * &self.re + &n_im * &self.im) / &denom,
            (n_im * &self.re - n_re * &self.im) / denom,
        )
    }

    /// `−1/λ` as (P, 1, 1) of `kind`: the equilibrium of a unit constant input.
    pub(super) fn negative_inverse(&self, kind: Kind) -> Cx {
        let denom = &self.re * &self.re + &self.im * &self.im;
        Cx::new(
            (-&self.re / &denom).to_kind(kind).view([-1, 1, 1]),
            (&self.im / denom).to_kind(kind).view([-1, 1, 1]),
        )
    }
}

/// Inclusive prefix scan of `X_f = A_f X_{f−1} + c_f` (X_{−1} = 0) over dimension 2 of
/// length `len` (Hillis–Steele: ⌈log₂ len⌉ steps; the products of |A| ≤ 1 stay bounded).
pub(super) fn prefix_scan(mut a: Cx, mut c: Cx, len: i64) -> Cx {
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

/// (out, in) × (in, …) → (out, …) as one 2-D matrix product.
pub(super) fn channel_matmul(w: &Tensor, x: &Tensor) -> Tensor {
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
