//! What a listener hears, measured: how a released key falls silent (release drop), whether
//! the release clicks (release burst), how much of a note is tone rather than noise
//! (harmonic-to-noise ratio per velocity), whether harder touch sounds brighter (spectral
//! centroid against velocity), and how far a whole performance is from the target piano
//! (multi-scale spectral distance, level-matched). Every figure is relative to the note's or
//! the performance's own level, never in dBFS, so a quiet model cannot pass by being quiet.
//!
//! Any [`Renderer`] can be measured: a model through the runtime, the Salamander sampler,
//! a SoundFont.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use realfft::RealFftPlanner;
use ssm_runtime::soundcheck::{key_hz, Renderer};
use ssm_runtime::KeyEvent;

use crate::data::performance::Performance;

/// Keys of the note measures: A0 to C8 in steps of three.
pub const KEYS: std::ops::RangeInclusive<u8> = 21..=108;
pub const KEY_STEP: usize = 3;
/// Velocities of the note measures.
pub const VELOCITIES: [u8; 3] = [30, 70, 110];
/// A note is struck at `ONSET` and released at `RELEASE` (seconds); the render lasts `LENGTH`.
const ONSET: f64 = 0.1;
const RELEASE: f64 = 1.1;
const LENGTH: f64 = 1.7;
/// Performances of the spectral distance: how many, how long, on a 5 ms grid that both
/// 1000 Hz and 1200 Hz roll frames hit exactly.
pub const PERFORMANCES: usize = 6;
pub const PERFORMANCE_SECONDS: f64 = 4.0;
const GRID_RATE: u32 = 200;
/// Seed stream of the measured performances, apart from training's and the test split's.
const PERFORMANCE_SEED: u64 = 0x115_7E11;
/// FFT sizes of the spectral distance at 48 kHz (scaled for other rates).
pub const DISTANCE_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 2048, 4096];

/// One note's figures.
#[derive(Debug, Clone, Copy)]
pub struct NoteFigures {
    pub key: u8,
    pub velocity: u8,
    /// Level 0.45–0.5 s after note-off below the 50 ms before it (dB).
    pub release_drop: f64,
    /// Energy above 2 kHz in the 60 ms after note-off over the 60 ms before (dB).
    pub release_burst: f64,
    /// Harmonic-to-noise ratio 0.1–0.6 s after the onset (dB).
    pub hnr: f64,
    /// Spectral centroid of the first 0.5 s (Hz).
    pub centroid: f64,
    /// Partials of the stretched series within [`RINGING_RANGE_DB`] of the strongest,
    /// [`RINGING_WINDOW`] after the onset: what of the tone still rings.
    pub ringing: usize,
}

/// Partials within this many dB of the strongest count as ringing.
pub const RINGING_RANGE_DB: f64 = 40.0;
/// The window the ringing partials are counted in, after the onset (seconds); a note must be
/// held at least to its end.
pub const RINGING_WINDOW: (f64, f64) = (0.3, 0.8);

/// The summary a model is judged by.
#[derive(Debug, Clone)]
pub struct Summary {
    pub release_drop: f64,
    pub release_burst: f64,
    pub hnr: f64,
    /// Harmonic-to-noise median at each of [`VELOCITIES`].
    pub hnr_by_velocity: Vec<f64>,
    /// Median over keys of centroid(velocity 110) / centroid(velocity 30).
    pub centroid_ratio: f64,
    /// Median of the partials ringing.
    pub ringing: f64,
}

/// Every note figure for `r`.
pub fn notes(r: &mut dyn Renderer) -> Vec<NoteFigures> {
    let rate = r.sample_rate() as f64;
    let mut out = Vec::new();
    for key in KEYS.step_by(KEY_STEP) {
        for &velocity in &VELOCITIES {
            let events = [
                (
                    ONSET,
                    KeyEvent::NoteOn {
                        note: key,
                        velocity,
                    },
                ),
                (RELEASE, KeyEvent::NoteOff { note: key }),
            ];
            let x = r.render(&events, LENGTH);
            out.push(note_figures(&x, rate, key, velocity, ONSET, RELEASE));
        }
    }
    out
}

/// The figures of one note of `key` at `velocity` in `x` (at `rate`), struck at `onset` and
/// released at `release` (seconds).
pub fn note_figures(
    x: &[f32],
    rate: f64,
    key: u8,
    velocity: u8,
    onset: f64,
    release: f64,
) -> NoteFigures {
    let at = |t: f64| (t * rate).round() as usize;
    let (off, on) = (at(release), at(onset));
    let pre = rms(&x[off - at(0.05)..off]);
    let post = rms(&x[off + at(0.45)..off + at(0.5)]);
    let burst = high_energy(&x[off..off + at(0.06)], rate, 2000.0)
        / high_energy(&x[off - at(0.06)..off], rate, 2000.0).max(1e-30);
    let steady = &x[on + at(0.1)..on + at(0.6)];
    let ringing = &x[on + at(RINGING_WINDOW.0)..on + at(RINGING_WINDOW.1)];
    NoteFigures {
        key,
        velocity,
        release_drop: db_power((pre / post.max(1e-12)).powi(2)),
        release_burst: db_power(burst.max(1e-30)),
        hnr: harmonic_to_noise(steady, rate, key_hz(key)),
        centroid: centroid(&x[on..on + at(0.5)], rate),
        ringing: partials_ringing(ringing, rate, key_hz(key), RINGING_RANGE_DB),
    }
}

/// Medians of the note figures.
pub fn summarise(figures: &[NoteFigures]) -> Summary {
    let all = |f: fn(&NoteFigures) -> f64| median(figures.iter().map(f).collect());
    let hnr_by_velocity = VELOCITIES
        .iter()
        .map(|&v| {
            median(
                figures
                    .iter()
                    .filter(|n| n.velocity == v)
                    .map(|n| n.hnr)
                    .collect(),
            )
        })
        .collect();
    let ratios = figures
        .iter()
        .filter(|n| n.velocity == 110)
        .filter_map(|hard| {
            let soft = figures
                .iter()
                .find(|n| n.key == hard.key && n.velocity == 30)?;
            Some(hard.centroid / soft.centroid.max(1e-9))
        })
        .collect();
    Summary {
        release_drop: all(|n| n.release_drop),
        release_burst: all(|n| n.release_burst),
        hnr: all(|n| n.hnr),
        hnr_by_velocity,
        centroid_ratio: median(ratios),
        ringing: all(|n| n.ringing as f64),
    }
}

/// The measured performances' events (seconds) — the same for every renderer.
pub fn performances() -> Vec<Vec<(f64, KeyEvent)>> {
    (0..PERFORMANCES as u64)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(PERFORMANCE_SEED + i);
            let frames = (PERFORMANCE_SECONDS * GRID_RATE as f64) as u64;
            Performance::generate(&mut rng, frames, GRID_RATE)
                .events
                .iter()
                .map(|&(f, e)| (f as f64 / GRID_RATE as f64, e))
                .collect()
        })
        .collect()
}

/// Renders the measured performances (plus a second of tail each).
pub fn render_performances(r: &mut dyn Renderer) -> Vec<Vec<f32>> {
    performances()
        .iter()
        .map(|events| r.render(events, PERFORMANCE_SECONDS + 1.0))
        .collect()
}

/// Mean multi-scale spectral distance of `x` to `target`, `x` first scaled to the target's
/// RMS: Σ over the sizes of mean |S_x − S_t| + mean |log S_x − log S_t| (Hann, hop n/4),
/// with magnitudes relative to the target's RMS so the figure does not depend on the level.
pub fn spectral_distance(x: &[Vec<f32>], target: &[Vec<f32>], rate: u32) -> f64 {
    let mut total = 0.0;
    for (a, t) in x.iter().zip(target) {
        let level = rms(t).max(1e-12);
        let gain = level / rms(a).max(1e-12);
        let a: Vec<f32> = a
            .iter()
            .map(|v| (*v as f64 * gain / level) as f32)
            .collect();
        let t: Vec<f32> = t.iter().map(|v| (*v as f64 / level) as f32).collect();
        for &size in &DISTANCE_SIZES {
            let n = (size * rate as usize / 48_000).max(16);
            total += stft_distance(&a, &t, n);
        }
    }
    total / x.len().max(1) as f64
}

fn stft_distance(a: &[f32], b: &[f32], n: usize) -> f64 {
    let (ma, mb) = (stft_magnitudes(a, n), stft_magnitudes(b, n));
    let count = ma.len().min(mb.len()).max(1) as f64;
    let (mut lin, mut log) = (0.0, 0.0);
    for (x, y) in ma.iter().zip(&mb) {
        lin += (x - y).abs();
        log += ((x + 1e-7).ln() - (y + 1e-7).ln()).abs();
    }
    (lin + log) / count
}

/// All STFT magnitudes, frame after frame (Hann, hop n/4, no padding).
fn stft_magnitudes(x: &[f32], n: usize) -> Vec<f64> {
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let window = hann(n);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut out = Vec::new();
    let mut start = 0;
    while start + n <= x.len() {
        for (i, v) in input.iter_mut().enumerate() {
            *v = x[start + i] as f64 * window[i];
        }
        fft.process(&mut input, &mut spectrum)
            .expect("sizes match the plan");
        out.extend(spectrum.iter().map(|c| c.norm()));
        start += n / 4;
    }
    out
}

pub fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect()
}

/// Power spectrum of a Hann-windowed segment, zero-padded to at least `min_size`, and the
/// bin width in Hz.
pub fn power_spectrum(x: &[f32], rate: f64, min_size: usize) -> (Vec<f64>, f64) {
    let n = x.len().max(min_size).next_power_of_two();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let window = hann(x.len());
    let mut input = fft.make_input_vec();
    for (i, v) in x.iter().enumerate() {
        input[i] = *v as f64 * window[i];
    }
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut input, &mut spectrum)
        .expect("sizes match the plan");
    (
        spectrum.iter().map(|c| c.norm_sqr()).collect(),
        rate / n as f64,
    )
}

/// Energy above `hz`.
pub fn high_energy(x: &[f32], rate: f64, hz: f64) -> f64 {
    let (p, df) = power_spectrum(x, rate, 0);
    p.iter().skip((hz / df).ceil() as usize).sum()
}

/// A partial found in a power spectrum: its frequency, the bins it takes and its energy.
struct Partial {
    bins: std::ops::RangeInclusive<usize>,
    energy: f64,
}

/// The partials of a note of fundamental `f0` in the power spectrum `p` (bin width `df`) of
/// a segment of `len` samples: found one after another, each within ±40 cents of where the
/// previous two put it (the stretched series of a real string), each taking the energy within
/// ±25 cents of its peak (or the Hann window's main lobe, where that is wider), up to 20 kHz.
fn partials(p: &[f64], df: f64, rate: f64, len: usize, f0: f64) -> Vec<Partial> {
    let top = (20_000f64.min(0.475 * rate) / df) as usize;
    let bin = |hz: f64| ((hz / df).round() as usize).min(top);
    let cents = |hz: f64, c: f64| hz * 2f64.powf(c / 1200.0);
    let lobe = 2.0 * rate / len as f64;
    let mut found = Vec::new();
    let (mut prev, mut prev2) = (0f64, 0f64);
    loop {
        let predicted = if prev == 0.0 {
            f0
        } else {
            prev + (prev - prev2).max(f0 * 0.5)
        };
        // above the previous partial, so the search always moves up the spectrum (high up,
        // 40 cents are wider than half a low key's harmonic spacing)
        let lo = bin(cents(predicted, -40.0)).max(bin(prev) + 1);
        let hi = bin(cents(predicted, 40.0));
        if hi >= top || lo >= hi {
            break;
        }
        let peak = (lo..=hi).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        let f = peak as f64 * df;
        // ±25 cents, but never narrower than the window's main lobe (±2 bins of the segment's
        // own resolution), which a low partial's 25 cents are
        let half = (f * (2f64.powf(25.0 / 1200.0) - 1.0)).max(lobe);
        let bins = bin(f - half)..=bin(f + half);
        let energy = p[bins.clone()].iter().sum();
        found.push(Partial { bins, energy });
        (prev2, prev) = (prev, f);
    }
    found
}

/// Harmonic-to-noise ratio (dB): the energy of the partials ([`partials`]) over every other
/// bit of energy above f0/2 (up to 20 kHz).
pub fn harmonic_to_noise(x: &[f32], rate: f64, f0: f64) -> f64 {
    let (p, df) = power_spectrum(x, rate, 1 << 16);
    let top = (20_000f64.min(0.475 * rate) / df) as usize;
    let mut harmonic = vec![false; top + 1];
    for partial in partials(&p, df, rate, x.len(), f0) {
        for flag in &mut harmonic[partial.bins] {
            *flag = true;
        }
    }
    let (mut h, mut noise) = (0.0, 0.0);
    let from = ((f0 / 2.0 / df).round() as usize).min(top);
    for (k, &e) in p.iter().enumerate().take(top + 1).skip(from) {
        if harmonic[k] {
            h += e;
        } else {
            noise += e;
        }
    }
    db_power(h.max(1e-30) / noise.max(1e-30))
}

/// How many partials ([`partials`]) of a note of fundamental `f0` lie within `range_db` of
/// the strongest in `x`: how many still ring.
pub fn partials_ringing(x: &[f32], rate: f64, f0: f64, range_db: f64) -> usize {
    let (p, df) = power_spectrum(x, rate, 1 << 16);
    let found = partials(&p, df, rate, x.len(), f0);
    let strongest = found.iter().map(|q| q.energy).fold(0.0, f64::max);
    let floor = strongest * 10f64.powf(-range_db / 10.0);
    found
        .iter()
        .filter(|q| q.energy > 0.0 && q.energy >= floor)
        .count()
}

/// Spectral centroid (Hz) above 20 Hz.
pub fn centroid(x: &[f32], rate: f64) -> f64 {
    let (p, df) = power_spectrum(x, rate, 0);
    let (mut num, mut den) = (0.0, 0.0);
    for (k, &e) in p.iter().enumerate().skip((20.0 / df) as usize) {
        num += k as f64 * df * e;
        den += e;
    }
    num / den.max(1e-30)
}

pub use ssm_runtime::soundcheck::rms;

pub fn db_power(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// One table row per measured thing: the figures and the distance to the target.
pub fn table(rows: &[(String, Summary, f64)], rate: u32) -> String {
    let mut s = format!(
        "| measured at {} kHz | release drop | release burst | HNR (all) | HNR v30 / v70 / v110 | centroid v110/v30 | spectral distance to target |\n|---|---:|---:|---:|---|---:|---:|\n",
        rate as f64 / 1000.0
    );
    for (name, m, d) in rows {
        let by_v: Vec<String> = m
            .hnr_by_velocity
            .iter()
            .map(|h| format!("{h:.1}"))
            .collect();
        s += &format!(
            "| {name} | {:.1} dB | {:+.1} dB | {:.1} dB | {} dB | {:.2} | {:.2} |\n",
            m.release_drop,
            m.release_burst,
            m.hnr,
            by_v.join(" / "),
            m.centroid_ratio,
            d
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 48_000.0;

    /// 0.5 s of a note with `partials` harmonics (stretched by `b`, as a string's are) and
    /// white-ish noise at `noise` amplitude.
    fn note(f0: f64, partials: usize, b: f64, noise: f32) -> Vec<f32> {
        let mut rng = 0x2545F491u32;
        (0..(0.5 * RATE) as usize)
            .map(|i| {
                let t = i as f64 / RATE;
                let tone: f64 = (1..=partials)
                    .map(|n| {
                        let f = n as f64 * f0 * (1.0 + b * (n * n) as f64).sqrt();
                        (2.0 * std::f64::consts::PI * f * t).sin() / n as f64
                    })
                    .sum();
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                tone as f32 * 0.1 + noise * (rng as f32 / u32::MAX as f32 - 0.5)
            })
            .collect()
    }

    #[test]
    fn harmonic_to_noise_follows_the_stretched_series_and_the_noise() {
        // a bass string stretched as a real one (B = 4e-4): 40 partials, all found
        let clean = harmonic_to_noise(&note(55.0, 40, 4e-4, 0.0), RATE, 55.0);
        // (the window's side lobes outside the bands cap a pure tone near 33 dB)
        assert!(clean > 30.0, "clean stretched tone: {clean:.1} dB");
        // the same tone against noise: lower, and lower still with more noise
        let some = harmonic_to_noise(&note(55.0, 40, 4e-4, 0.02), RATE, 55.0);
        let more = harmonic_to_noise(&note(55.0, 40, 4e-4, 0.2), RATE, 55.0);
        assert!(
            clean > some && some > more + 10.0,
            "{clean:.1} {some:.1} {more:.1}"
        );
        // noise alone scores lowest (it still finds "partials": the peaks of the noise, and
        // high up the ±25 cent bands of a low key overlap), and the search ends, as partials
        // are looked for above the last one
        let noise = harmonic_to_noise(&note(27.5, 0, 0.0, 0.5), RATE, 27.5);
        assert!(
            noise < more && noise < 5.0,
            "noise: {noise:.1} dB, noisy tone {more:.1} dB"
        );
    }

    #[test]
    fn centroid_rises_with_brightness() {
        let dull = centroid(&note(220.0, 2, 0.0, 0.0), RATE);
        let bright = centroid(&note(220.0, 30, 0.0, 0.0), RATE);
        assert!((220.0..400.0).contains(&dull), "{dull}");
        assert!(bright > 2.0 * dull, "{bright} vs {dull}");
    }

    /// A renderer whose notes decay with time constant `tau` after the note-off, and click
    /// there (a step of `click` amplitude) if asked.
    struct Damped {
        tau: f64,
        click: f32,
    }

    impl Renderer for Damped {
        fn sample_rate(&self) -> u32 {
            RATE as u32
        }
        fn render(&mut self, events: &[(f64, KeyEvent)], seconds: f64) -> Vec<f32> {
            let mut out = vec![0f32; (seconds * RATE) as usize];
            let (mut on, mut off, mut f0, mut vel) = (0.0, f64::INFINITY, 0.0, 0.0);
            for &(t, e) in events {
                match e {
                    KeyEvent::NoteOn { note, velocity } => {
                        (on, f0, vel) = (t, key_hz(note), velocity as f64 / 127.0)
                    }
                    KeyEvent::NoteOff { .. } => off = t,
                    _ => {}
                }
            }
            for (i, o) in out.iter_mut().enumerate() {
                let t = i as f64 / RATE;
                if t < on {
                    continue;
                }
                let env = if t < off {
                    1.0
                } else {
                    (-(t - off) / self.tau).exp()
                };
                let bright = 1 + (vel * 8.0) as usize;
                let tone: f64 = (1..=bright)
                    .map(|n| {
                        (2.0 * std::f64::consts::PI * f0 * n as f64 * (t - on)).sin() / n as f64
                    })
                    .sum();
                *o = (0.2 * vel * env * tone) as f32;
                if t >= off && t < off + 0.0005 {
                    *o += self.click;
                }
            }
            out
        }
    }

    #[test]
    fn the_note_measures_hear_damping_clicks_and_brightness() {
        let damped = summarise(&notes(&mut Damped {
            tau: 0.02,
            click: 0.0,
        }));
        let ringing = summarise(&notes(&mut Damped {
            tau: 2.0,
            click: 0.0,
        }));
        let clicking = summarise(&notes(&mut Damped {
            tau: 0.02,
            click: 0.5,
        }));
        // 0.45 s at τ = 20 ms is 195 dB; at τ = 2 s, 2 dB
        assert!(damped.release_drop > 100.0, "{}", damped.release_drop);
        assert!(ringing.release_drop < 5.0, "{}", ringing.release_drop);
        assert!(damped.release_burst < 0.0, "{}", damped.release_burst);
        assert!(clicking.release_burst > 10.0, "{}", clicking.release_burst);
        // harder notes have more partials here: brighter
        assert!(damped.centroid_ratio > 1.2, "{}", damped.centroid_ratio);
        assert!(damped.hnr > 30.0, "{}", damped.hnr);
        // velocity 30, 70, 110 play 2, 5 and 7 partials of amplitude 1/n (all within 40 dB)
        assert_eq!(damped.ringing, 5.0);
    }

    #[test]
    fn spectral_distance_is_zero_to_itself_and_level_free() {
        let a: Vec<Vec<f32>> = vec![note(220.0, 10, 0.0, 0.01)];
        let quiet: Vec<Vec<f32>> = vec![a[0].iter().map(|x| x * 0.01).collect()];
        let other: Vec<Vec<f32>> = vec![note(330.0, 3, 0.0, 0.05)];
        assert!(spectral_distance(&a, &a, RATE as u32) < 1e-9);
        let (q, o) = (
            spectral_distance(&quiet, &a, RATE as u32),
            spectral_distance(&other, &a, RATE as u32),
        );
        assert!(
            q < 1e-3 && o > 1000.0 * q,
            "quiet copy {q:e}, other note {o:e}"
        );
    }
}
