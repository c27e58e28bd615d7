//! A piano judged on material unlike its training ([`crate::material`]), against a target
//! piano (the Salamander): how many partials still ring, harmonic-to-noise, brightness
//! against velocity, release drop and burst (single notes), the multi-scale spectral
//! distance over every piece of material, and the Fréchet distance of log-mel frame
//! statistics over the real music. Every render is level-matched to the target's render of
//! the same material first, so no figure rewards being louder or quieter.

use std::path::Path;

use anyhow::Result;
use ssm_runtime::soundcheck::Renderer;
use tch::{Kind, Tensor};

use crate::listen::{self, rms};
use crate::material::{self, Piece, Single};

/// Log-mel frames of the Fréchet distance: bands, FFT size and hop at 48 kHz.
const MEL_BANDS: usize = 64;
const MEL_FFT: usize = 2048;
const MEL_HOP: usize = 512;

/// Everything a renderer played, level-matched to the target.
pub struct Renders {
    /// One per [`Single::all`], in its order.
    pub singles: Vec<Vec<f32>>,
    /// One per [`material::long_notes`].
    pub long: Vec<Vec<f32>>,
    /// The chords under the pedal and the repeated notes.
    pub other: Vec<Vec<f32>>,
    /// One per [`material::music`]: the Fréchet distance's material.
    pub music: Vec<Vec<f32>>,
}

/// The material in its four groups: the single notes ([`Single::all`]), the long notes, the
/// chords under the pedal and the repeated notes, the music.
pub fn pieces(assets: &Path) -> Result<[Vec<Piece>; 4]> {
    Ok([
        Single::all().iter().map(|s| s.piece()).collect(),
        material::long_notes(),
        vec![material::chords_under_pedal(), material::repeated_notes()],
        material::music(assets)?,
    ])
}

/// Renders all the material with `r`, each render scaled to `target`'s of the same material
/// (`None`: `r` is the target).
pub fn render(r: &mut dyn Renderer, assets: &Path, target: Option<&Renders>) -> Result<Renders> {
    let groups = pieces(assets)?.map(|pieces| {
        pieces
            .iter()
            .map(|p| r.render(&p.events, p.seconds))
            .collect()
    });
    let mut renders = Renders::from_groups(groups);
    if let Some(t) = target {
        renders.match_levels(t);
    }
    Ok(renders)
}

impl Renders {
    /// The renders of [`pieces`]' four groups, in its order.
    pub fn from_groups([singles, long, other, music]: [Vec<Vec<f32>>; 4]) -> Renders {
        Renders {
            singles,
            long,
            other,
            music,
        }
    }

    fn groups(&self) -> [&[Vec<f32>]; 4] {
        [&self.singles, &self.long, &self.other, &self.music]
    }

    pub(crate) fn match_levels(&mut self, target: &Renders) {
        let groups = [
            &mut self.singles,
            &mut self.long,
            &mut self.other,
            &mut self.music,
        ];
        for (group, to) in groups.into_iter().zip(target.groups()) {
            for (x, t) in group.iter_mut().zip(to) {
                let gain = (rms(t) / rms(x).max(1e-12)) as f32;
                x.iter_mut().for_each(|v| *v *= gain);
            }
        }
    }

    /// The material as the spectral distance hears it: the single notes end to end, the
    /// long notes end to end, then each other piece.
    pub fn files(&self) -> Vec<Vec<f32>> {
        let mut files = vec![self.singles.concat(), self.long.concat()];
        files.extend(self.other.iter().chain(&self.music).cloned());
        files
    }

    fn music(&self) -> Vec<&[f32]> {
        self.music.iter().map(Vec::as_slice).collect()
    }
}

/// What a listener hears of one piano on the material.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The single notes' partials ringing, release drop and burst, harmonic-to-noise
    /// (0.1–0.6 s after the onset) and centroid ratio, as [`listen::notes`] measures its own.
    pub notes: listen::Summary,
    /// Multi-scale spectral distance to the target, mean over the material's files.
    pub distance: f64,
    /// Fréchet distance of log-mel frame statistics to the target's, over the music.
    pub frechet: f64,
}

/// The figures of `renders` against the target's.
pub fn figures(renders: &Renders, target: &Renders, rate: u32) -> Figures {
    let (onset, release) = (material::SINGLE_ONSET, Single::release());
    let notes: Vec<listen::NoteFigures> = Single::all()
        .iter()
        .zip(&renders.singles)
        .map(|(s, x)| listen::note_figures(x, rate as f64, s.key, s.velocity, onset, release))
        .collect();
    let notes = listen::summarise(&notes);
    Figures {
        notes,
        distance: listen::spectral_distance(&renders.files(), &target.files(), rate),
        frechet: frechet_distance(
            &mel_statistics(&renders.music(), rate),
            &mel_statistics(&target.music(), rate),
        ),
    }
}

/// Mean and covariance of log-mel frames: `(μ (bands), Σ (bands × bands))`, in float64.
pub struct MelStatistics {
    mean: Tensor,
    covariance: Tensor,
}

/// The statistics of every log-mel frame of `files` (Hann, [`MEL_FFT`] and [`MEL_HOP`] at
/// 48 kHz, scaled for other rates; [`MEL_BANDS`] Slaney bands; log of power + 1e-10).
pub fn mel_statistics(files: &[&[f32]], rate: u32) -> MelStatistics {
    let n = (MEL_FFT * rate as usize / 48_000).next_power_of_two();
    let hop = MEL_HOP * n / MEL_FFT;
    let bank = crate::loss::mel_filterbank(rate as f64, n, MEL_BANDS);
    let bins = n / 2 + 1;
    let window = listen::hann(n);
    let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let (mut input, mut spectrum) = (fft.make_input_vec(), fft.make_output_vec());
    let mut frames: Vec<f64> = Vec::new();
    for x in files {
        let mut start = 0;
        while start + n <= x.len() {
            for (i, v) in input.iter_mut().enumerate() {
                *v = x[start + i] as f64 * window[i];
            }
            fft.process(&mut input, &mut spectrum)
                .expect("sizes match the plan");
            for band in bank.chunks(bins) {
                let power: f64 = band
                    .iter()
                    .zip(&spectrum)
                    .map(|(w, c)| *w as f64 * c.norm_sqr())
                    .sum();
                frames.push((power + 1e-10).ln());
            }
            start += hop;
        }
    }
    let count = (frames.len() / MEL_BANDS) as i64;
    let m = Tensor::from_slice(&frames).reshape([count, MEL_BANDS as i64]);
    let mean = m.mean_dim(0, false, Kind::Double);
    let centred = &m - &mean;
    let covariance = centred.transpose(0, 1).matmul(&centred) / (count - 1).max(1) as f64;
    MelStatistics { mean, covariance }
}

/// Fréchet distance between two Gaussians: |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½
/// (the square root of a symmetric matrix by its eigendecomposition).
pub fn frechet_distance(a: &MelStatistics, b: &MelStatistics) -> f64 {
    let (values, vectors) = a.covariance.linalg_eigh("L");
    let root = vectors
        .matmul(&values.clamp_min(0.0).sqrt().diag(0))
        .matmul(&vectors.transpose(0, 1));
    let product = root.matmul(&b.covariance).matmul(&root);
    let product = (&product + product.transpose(0, 1)) / 2.0;
    let (eigen, _) = product.linalg_eigh("L");
    let mean = (&a.mean - &b.mean)
        .square()
        .sum(Kind::Double)
        .double_value(&[]);
    let traces = a.covariance.trace().double_value(&[]) + b.covariance.trace().double_value(&[]);
    let cross = eigen
        .clamp_min(0.0)
        .sqrt()
        .sum(Kind::Double)
        .double_value(&[]);
    mean + traces - 2.0 * cross
}

/// The figures as a table, one row per piano, against the targets.
pub fn table(rows: &[(String, Figures)], rate: u32) -> String {
    let mut s = format!(
        "| unseen material at {} kHz, level-matched | partials ringing | HNR (v30) | centroid v110/v30 | release drop / burst | spectral distance | Fréchet (log-mel) |\n|---|---:|---:|---:|---:|---:|---:|\n",
        rate as f64 / 1000.0
    );
    for (name, f) in rows {
        s += &format!(
            "| {name} | {:.0} | {:.1} ({:.1}) dB | {:.2} | {:.1} / {:+.1} dB | {:.2} | {:.0} |\n",
            f.notes.ringing,
            f.notes.hnr,
            f.notes.hnr_by_velocity[0],
            f.notes.centroid_ratio,
            f.notes.release_drop,
            f.notes.release_burst,
            f.distance,
            f.frechet
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A note of `partials` harmonics, each `step_db` below the one before.
    fn tone(f0: f64, partials: usize, step_db: f64, rate: f64) -> Vec<f32> {
        (0..(0.5 * rate) as usize)
            .map(|i| {
                let t = i as f64 / rate;
                (1..=partials)
                    .map(|h| {
                        let amplitude = 10f64.powf(-step_db * (h - 1) as f64 / 20.0);
                        amplitude * (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin()
                    })
                    .sum::<f64>() as f32
            })
            .collect()
    }

    #[test]
    fn ringing_counts_the_partials_within_the_range() {
        let rate = 48_000.0;
        // 12 partials 5 dB apart: 0..=40 dB below the first are the first 9
        assert_eq!(
            listen::partials_ringing(&tone(220.0, 12, 5.0, rate), rate, 220.0, 40.0),
            9
        );
        // 3 partials only
        assert_eq!(
            listen::partials_ringing(&tone(220.0, 3, 1.0, rate), rate, 220.0, 40.0),
            3
        );
    }

    #[test]
    fn frechet_is_zero_to_itself_and_grows_with_a_difference() {
        let rate = 48_000;
        let a = tone(220.0, 8, 3.0, rate as f64);
        let b = tone(330.0, 2, 10.0, rate as f64);
        let sa = mel_statistics(&[&a, &b], rate);
        let same = frechet_distance(&sa, &mel_statistics(&[&a, &b], rate));
        // zero up to the eigensolver's rounding on traces of about 1e3
        assert!(same.abs() < 1e-3, "{same}");
        let other = frechet_distance(&sa, &mel_statistics(&[&b, &b], rate));
        assert!(other > 1.0, "{other}");
    }
}
