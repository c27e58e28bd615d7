//! The few vector operations the engine's matrix products need, for AVX-512, AVX2+FMA and a
//! portable fallback, plus the register-tiled matrix product built on them.
//!
//! Weights are packed once, when an engine is built, into panels `PW = LANES` columns wide so
//! the inner loop loads whole vectors of weights and broadcasts one activation per sample.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

/// A SIMD vector of f32 lanes. Every method is `unsafe` because the caller must run on a CPU
/// with the instruction set (guaranteed by the dispatch in `engine`).
pub(crate) trait Simd: Copy {
    const LANES: usize;
    /// Rows (samples) per register tile: as many as the register file holds with 3 panels.
    const ROWS: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// `a * b + c`
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512(__m512);

#[cfg(target_arch = "x86_64")]
impl Simd for Avx512 {
    const LANES: usize = 16;
    const ROWS: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Avx512(_mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Avx512(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Avx512(_mm512_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Avx512(_mm512_fmadd_ps(a.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2(__m256);

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    const LANES: usize = 8;
    const ROWS: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Avx2(_mm256_setzero_ps())
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Avx2(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Avx2(_mm256_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Avx2(_mm256_fmadd_ps(a.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
}

/// Plain arrays the compiler vectorises for whatever the target has (SSE2, NEON, …).
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; 8]);

impl Simd for Portable {
    const LANES: usize = 8;
    const ROWS: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Portable(std::ptr::read_unaligned(p as *const [f32; 8]))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        let mut r = c.0;
        for ((r, a), b) in r.iter_mut().zip(a.0).zip(b.0) {
            *r += a * b;
        }
        Portable(r)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; 8], self.0)
    }
}

/// A weight matrix `W` (K × M) packed in panels of `pw` columns: `data[j][k][0..pw]`.
/// M is padded with zero columns to a multiple of `pw`.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub k: usize,
    pub m: usize,
    pub pw: usize,
    pub data: Vec<f32>,
}

impl Packed {
    /// Packs `w(k, m)` for `k < rows`, `m < cols`, padding to `m_pad` columns.
    pub fn new(
        rows: usize,
        cols: usize,
        m_pad: usize,
        pw: usize,
        w: impl Fn(usize, usize) -> f32,
    ) -> Packed {
        assert!(m_pad.is_multiple_of(pw) && m_pad >= cols);
        let mut data = vec![0.0; rows * m_pad];
        for j in 0..m_pad / pw {
            for k in 0..rows {
                for l in 0..pw {
                    let m = j * pw + l;
                    if m < cols {
                        data[(j * rows + k) * pw + l] = w(k, m);
                    }
                }
            }
        }
        Packed {
            k: rows,
            m: m_pad,
            pw,
            data,
        }
    }
}

/// Rows of K per pass: 3 panels × 16 lanes × 128 × 4 bytes = 24 KiB, half of a typical L1.
const K_SLICE: usize = 128;

/// One register tile: `c[n][0..V·PW] = init + Σ_{k in k0..k1} a[n][k] · W[k][panel j..j+V]`
/// for `n < R`, where `init` is the bias (`first` slice of K) or `c` itself (later slices).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<S: Simd, const R: usize, const V: usize>(
    (k, k0, k1, first): (usize, usize, usize, bool),
    a: *const f32,
    lda: usize,
    w: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let pw = S::LANES;
    let panel = k * pw;
    let mut acc = [[S::zero(); V]; R];
    for (r, row) in acc.iter_mut().enumerate() {
        for (v, val) in row.iter_mut().enumerate() {
            *val = if first {
                S::load(bias.add(v * pw))
            } else {
                S::load(c.add(r * ldc + v * pw))
            };
        }
    }
    for kk in k0..k1 {
        let mut wv = [S::zero(); V];
        for (v, wr) in wv.iter_mut().enumerate() {
            *wr = S::load(w.add(v * panel + kk * pw));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let x = S::splat(*a.add(r * lda + kk));
            for v in 0..V {
                row[v] = S::mul_add(x, wv[v], row[v]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, val) in row.iter().enumerate() {
            val.store(c.add(r * ldc + v * pw));
        }
    }
}

macro_rules! dispatch_tile {
    ($s:ty, $rows:expr, $v:expr, $($args:expr),*) => {
        match ($rows, $v) {
            (8, 3) => tile::<$s, 8, 3>($($args),*), (8, 2) => tile::<$s, 8, 2>($($args),*), (8, 1) => tile::<$s, 8, 1>($($args),*),
            (7, 3) => tile::<$s, 7, 3>($($args),*), (7, 2) => tile::<$s, 7, 2>($($args),*), (7, 1) => tile::<$s, 7, 1>($($args),*),
            (6, 3) => tile::<$s, 6, 3>($($args),*), (6, 2) => tile::<$s, 6, 2>($($args),*), (6, 1) => tile::<$s, 6, 1>($($args),*),
            (5, 3) => tile::<$s, 5, 3>($($args),*), (5, 2) => tile::<$s, 5, 2>($($args),*), (5, 1) => tile::<$s, 5, 1>($($args),*),
            (4, 3) => tile::<$s, 4, 3>($($args),*), (4, 2) => tile::<$s, 4, 2>($($args),*), (4, 1) => tile::<$s, 4, 1>($($args),*),
            (3, 3) => tile::<$s, 3, 3>($($args),*), (3, 2) => tile::<$s, 3, 2>($($args),*), (3, 1) => tile::<$s, 3, 1>($($args),*),
            (2, 3) => tile::<$s, 2, 3>($($args),*), (2, 2) => tile::<$s, 2, 2>($($args),*), (2, 1) => tile::<$s, 2, 1>($($args),*),
            (1, 3) => tile::<$s, 1, 3>($($args),*), (1, 2) => tile::<$s, 1, 2>($($args),*), (1, 1) => tile::<$s, 1, 1>($($args),*),
            _ => unreachable!("tile shape out of range"),
        }
    };
}

/// `c[n][m] = bias[m] + Σ_{k in ks} a[n·lda + k] · W[k][m]` for `n < rows`, all `m < w.m`:
/// the product over the rows of K in the ranges `ks` (all of K: `&[0..w.k]`).
///
/// # Safety
/// `a` holds `rows` rows of at least `w.k` values at stride `lda`, `c` holds `rows` rows of
/// at least `w.m` values at stride `ldc`, `bias` holds `w.m` values, `w.pw == S::LANES`,
/// every range of `ks` lies within `0..w.k`, and the CPU supports `S`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<S: Simd>(
    rows: usize,
    a: &[f32],
    lda: usize,
    w: &Packed,
    bias: &[f32],
    c: &mut [f32],
    ldc: usize,
    ks: &[Range<usize>],
) {
    debug_assert_eq!(w.pw, S::LANES);
    debug_assert!(
        rows == 0 || (a.len() >= (rows - 1) * lda + w.k && c.len() >= (rows - 1) * ldc + w.m)
    );
    debug_assert!(bias.len() >= w.m);
    debug_assert!(ks.iter().all(|r| r.start <= r.end && r.end <= w.k));
    let panels = w.m / S::LANES;
    let (a, c, wp, bias) = (a.as_ptr(), c.as_mut_ptr(), w.data.as_ptr(), bias.as_ptr());
    let mut j = 0;
    while j < panels {
        let v = (panels - j).min(3);
        let col = j * S::LANES;
        let mut first = true;
        // slices of K small enough that the panels' weights stay in L1 across the row tiles
        for range in ks {
            let mut k0 = range.start;
            while k0 < range.end {
                let k1 = (k0 + K_SLICE).min(range.end);
                let mut n = 0;
                while n < rows {
                    let r = (rows - n).min(S::ROWS);
                    let panel = wp.add(j * w.k * S::LANES);
                    dispatch_tile!(
                        S,
                        r,
                        v,
                        (w.k, k0, k1, first),
                        a.add(n * lda),
                        lda,
                        panel,
                        bias.add(col),
                        c.add(n * ldc + col),
                        ldc
                    );
                    n += r;
                }
                first = false;
                k0 = k1;
            }
        }
        if first {
            // no rows of K: the bias alone
            for n in 0..rows {
                std::ptr::copy_nonoverlapping(bias.add(col), c.add(n * ldc + col), v * S::LANES);
            }
        }
        j += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<S: Simd>(rows: usize, k: usize, m: usize) {
        let pw = S::LANES;
        let m_pad = m.div_ceil(pw) * pw;
        let wf = |kk: usize, mm: usize| ((kk * 7 + mm * 3) % 11) as f32 - 5.0;
        let w = Packed::new(k, m, m_pad, pw, wf);
        let lda = k + 3;
        let a: Vec<f32> = (0..rows * lda)
            .map(|i| ((i * 5) % 13) as f32 * 0.25 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..m_pad).map(|i| i as f32 * 0.5).collect();
        let mut c = vec![0.0; rows * m_pad];
        let all = 0..k;
        unsafe {
            gemm::<S>(
                rows,
                &a,
                lda,
                &w,
                &bias,
                &mut c,
                m_pad,
                std::slice::from_ref(&all),
            )
        };
        let naive = |c: &[f32], ks: &[Range<usize>]| {
            for n in 0..rows {
                for mm in 0..m {
                    let expect: f32 = bias[mm]
                        + ks.iter()
                            .flat_map(|r| r.clone())
                            .map(|kk| a[n * lda + kk] * wf(kk, mm))
                            .sum::<f32>();
                    assert!(
                        (c[n * m_pad + mm] - expect).abs() < 1e-3,
                        "row {n} col {mm} over {ks:?}: {} vs {expect}",
                        c[n * m_pad + mm]
                    );
                }
            }
        };
        naive(&c, std::slice::from_ref(&all));
        // parts of K only (a key bank's awake states), and none at all (the bias)
        let parts = [0..k / 3, k / 2..k / 2 + k / 4, k - 1..k];
        for ks in [&parts[..], &[]] {
            let mut c = vec![7.0; rows * m_pad];
            unsafe { gemm::<S>(rows, &a, lda, &w, &bias, &mut c, m_pad, ks) };
            naive(&c, ks);
        }
    }

    #[test]
    fn portable_gemm_matches_naive_product() {
        for (rows, k, m) in [(1, 1, 1), (5, 17, 20), (9, 88, 60), (13, 40, 130)] {
            check::<Portable>(rows, k, m);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_gemm_matches_naive_product() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(rows: usize, k: usize, m: usize) {
            check::<Avx2>(rows, k, m)
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(rows: usize, k: usize, m: usize) {
            check::<Avx512>(rows, k, m)
        }
        for (rows, k, m) in [
            (1, 1, 1),
            (5, 17, 20),
            (9, 88, 60),
            (13, 40, 130),
            (64, 512, 88),
        ] {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                unsafe { avx2(rows, k, m) };
            }
            if is_x86_feature_detected!("avx512f") {
                unsafe { avx512(rows, k, m) };
            }
        }
    }
}
