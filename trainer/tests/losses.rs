//! The training criteria against a second, naive implementation (direct DFT in float64) and
//! hand-derived cases.

use tch::{Device, Kind, Tensor};
use trainer::loss::{
    hz_to_mel, mel_filterbank, mel_to_hz, pad_to_frames, BrightnessLoss, CombinedSpectralLoss,
    SpectralLoss,
};

const RATE: u32 = 4_000;

/// A deterministic test signal: a few decaying partials plus noise-like chirps.
fn signal(len: usize, seed: f64) -> Vec<f32> {
    (0..len)
        .map(|n| {
            let t = n as f64 / RATE as f64;
            let a =
                (2.0 * std::f64::consts::PI * (220.0 + 40.0 * seed) * t).sin() * (-3.0 * t).exp();
            let b = 0.3 * (2.0 * std::f64::consts::PI * (900.0 * t + 300.0 * t * t * seed)).sin();
            let c = 0.05 * ((n as f64 * 12.9898 + seed * 78.233).sin() * 43758.5453).fract();
            (a + b + c) as f32
        })
        .collect()
}

fn tensor(x: &[f32]) -> Tensor {
    Tensor::from_slice(x).unsqueeze(0)
}

/// Periodic Hann, as torch.hann_window.
fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect()
}

/// Naive STFT magnitudes (frames × bins) of already padded `x`; the window (length `win`) sits in
/// the middle of the `n`-point frame, as torch.stft places it.
fn naive_stft(x: &[f64], n: usize, hop: usize, win: usize) -> Vec<Vec<f64>> {
    let w = hann(win);
    let offset = (n - win) / 2;
    let frames = (x.len() - n) / hop + 1;
    (0..frames)
        .map(|f| {
            (0..=n / 2)
                .map(|k| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (j, wj) in w.iter().enumerate() {
                        let v = x[f * hop + offset + j] * wj;
                        let ph = -2.0 * std::f64::consts::PI * (k * (offset + j)) as f64 / n as f64;
                        re += v * ph.cos();
                        im += v * ph.sin();
                    }
                    (re * re + im * im).max(1e-8).sqrt()
                })
                .collect()
        })
        .collect()
}

fn zero_pad_end(x: &[f32], n: usize, hop: usize) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().map(|&s| s as f64).collect();
    let frames = if v.len() <= n {
        1
    } else {
        (v.len() - n).div_ceil(hop) + 1
    };
    v.resize((frames - 1) * hop + n, 0.0);
    v
}

fn reflect_pad(x: &[f32], pad: usize) -> Vec<f64> {
    let v: Vec<f64> = x.iter().map(|&s| s as f64).collect();
    let len = v.len();
    (0..len + 2 * pad)
        .map(|i| {
            let j = i as isize - pad as isize;
            let j = if j < 0 {
                -j
            } else if j >= len as isize {
                2 * (len as isize - 1) - j
            } else {
                j
            };
            v[j as usize]
        })
        .collect()
}

fn naive_mssl(x: &[f32], y: &[f32], sizes: &[i64]) -> f64 {
    let mut total = 0.0;
    for &n in sizes {
        let (n, hop) = (n as usize, n as usize / 4);
        let (sx, sy) = (
            naive_stft(&zero_pad_end(x, n, hop), n, hop, n),
            naive_stft(&zero_pad_end(y, n, hop), n, hop, n),
        );
        let (mut lin, mut log, mut count) = (0.0, 0.0, 0.0);
        for (fx, fy) in sx.iter().zip(&sy) {
            for (a, b) in fx.iter().zip(fy) {
                lin += (a - b).abs();
                log += ((a + 1e-7).ln() - (b + 1e-7).ln()).abs();
                count += 1.0;
            }
        }
        total += (lin + log) / count;
    }
    total
}

#[test]
fn spectral_loss_matches_a_naive_implementation() {
    let loss = SpectralLoss::new(RATE, Device::Cpu);
    // 192 … 12288 at 48 kHz scale to 16 … 1024 at 4 kHz (1526 → 127)
    assert_eq!(loss.fft_sizes(), vec![16, 32, 64, 127, 256, 512, 1024]);
    let (x, y) = (signal(3000, 1.0), signal(3000, 2.0));
    let got = loss.forward(&tensor(&x), &tensor(&y)).double_value(&[]);
    let want = naive_mssl(&x, &y, &loss.fft_sizes());
    assert!(
        (got - want).abs() <= 1e-4 * want,
        "MSSL {got} vs naive {want}"
    );
}

#[test]
fn identical_signals_score_zero() {
    let x = tensor(&signal(4000, 1.0));
    assert!(
        SpectralLoss::new(RATE, Device::Cpu)
            .forward(&x, &x)
            .double_value(&[])
            .abs()
            < 1e-6
    );
    assert!(
        CombinedSpectralLoss::new(RATE, Device::Cpu)
            .forward(&x, &x)
            .double_value(&[])
            .abs()
            < 1e-6
    );
}

/// With pred = g · target the log-magnitude term is |ln g| wherever the magnitude dwarfs ε, and
/// the linear term is (g − 1) times the target's mean magnitude.
#[test]
fn a_known_gain_gives_the_known_loss() {
    let loss = SpectralLoss::new(RATE, Device::Cpu);
    let y = signal(4000, 3.0);
    let g = 2.0f32;
    let x: Vec<f32> = y.iter().map(|v| v * g).collect();
    let got = loss.forward(&tensor(&x), &tensor(&y)).double_value(&[]);
    let mean_mag: f64 = loss
        .fft_sizes()
        .iter()
        .map(|&n| {
            let (n, hop) = (n as usize, n as usize / 4);
            let s = naive_stft(&zero_pad_end(&y, n, hop), n, hop, n);
            s.iter().flatten().sum::<f64>() / s.iter().map(Vec::len).sum::<usize>() as f64
        })
        .sum();
    let want = (g as f64 - 1.0) * mean_mag + 7.0 * (g as f64).ln();
    assert!(
        (got - want).abs() < 2e-3 * want,
        "gain loss {got} vs {want}"
    );
}

#[test]
fn combined_loss_terms_match_a_naive_implementation() {
    let loss = CombinedSpectralLoss::new(RATE, Device::Cpu);
    let (x, y) = (signal(6000, 1.0), signal(6000, 4.0));
    // 1-second STFT: n = hop·10 = RATE, centred with reflection
    let n = RATE as usize;
    let (sx, sy) = (
        naive_stft(&reflect_pad(&x, n / 2), n, n / 10, n),
        naive_stft(&reflect_pad(&y, n / 2), n, n / 10, n),
    );
    let count = sx.iter().map(Vec::len).sum::<usize>() as f64;
    let want = sx
        .iter()
        .flatten()
        .zip(sy.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / count;
    let got = loss.stft_l1(&tensor(&x), &tensor(&y)).double_value(&[]);
    assert!(
        (got - want).abs() < 1e-4 * want,
        "STFT L1 {got} vs naive {want}"
    );
    // the mean term alone: a constant offset changes the clip mean by exactly that offset
    let x_dc: Vec<f32> = x.iter().map(|v| v + 0.25).collect();
    let with_dc = loss.forward(&tensor(&x_dc), &tensor(&x)).double_value(&[]);
    let spectra_only = loss.stft_l1(&tensor(&x_dc), &tensor(&x)).double_value(&[])
        + loss.mel(&tensor(&x_dc), &tensor(&x)).double_value(&[]);
    assert!(
        (with_dc - spectra_only - 0.25).abs() < 1e-5,
        "mean term {}",
        with_dc - spectra_only
    );
}

#[test]
fn slaney_mel_scale_and_filters() {
    // linear below 1 kHz (200/3 Hz per mel), logarithmic above; 1 kHz is mel 15
    assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
    for hz in [50.0, 700.0, 1000.0, 3000.0, 7900.0] {
        assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
    }
    // Slaney area normalisation: each triangle has unit area in Hz (checked on wide bands)
    let (sr, n_fft, mels) = (16_000.0, 2048, 40);
    let bank = mel_filterbank(sr, n_fft, mels);
    let bins = n_fft / 2 + 1;
    for m in 20..mels {
        let area: f64 = bank[m * bins..(m + 1) * bins]
            .iter()
            .map(|&w| w as f64 * sr / n_fft as f64)
            .sum();
        assert!((area - 1.0).abs() < 0.02, "band {m} area {area}");
    }
}

#[test]
fn end_padding_covers_every_sample() {
    let x = Tensor::ones([1, 1000], (Kind::Float, Device::Cpu));
    let padded = pad_to_frames(&x, 256, 64);
    // frames start every 64 samples; the last must reach past sample 999
    let len = padded.size()[1];
    assert_eq!((len - 256) % 64, 0);
    assert!(len >= 1000 && len - 64 < 1000);
}

/// Sine tones on the brightness frames' bin centres, `(bin, amplitude)` each, at 24 kHz; a
/// Hann window spreads each symmetrically (¼, 1, ¼ in power), so a frame's centroid is exactly
/// the tones' power-weighted mean frequency.
fn tones(len: usize, parts: &[(usize, f64)]) -> Vec<f32> {
    let n = BrightnessLoss::SIZE_AT_24K;
    (0..len)
        .map(|i| {
            parts
                .iter()
                .map(|&(bin, a)| a * (2.0 * std::f64::consts::PI * bin as f64 * i as f64 / n).sin())
                .sum::<f64>() as f32
        })
        .collect()
}

/// Whole frames only (2048 + k·512 samples), so no frame is cut by the end padding.
const FRAMED: usize = 2048 + 512 * 30;

#[test]
fn brightness_is_the_centroid_distance_in_octaves_at_any_level() {
    let loss = BrightnessLoss::new(24_000, Device::Cpu);
    let target = tensor(&tones(FRAMED, &[(40, 1.0)]));
    // equal tones on bins 40 and 80: centroid at bin 60, log2(60/40) octaves above
    let bright = tones(FRAMED, &[(40, 1.0), (80, 1.0)]);
    let want = 1.5f64.log2();
    for gain in [1.0f32, 0.01] {
        let pred: Vec<f32> = bright.iter().map(|v| v * gain).collect();
        let got = loss.forward(&tensor(&pred), &target).double_value(&[]);
        assert!((got - want).abs() < 1e-3, "gain {gain}: {got} vs {want}");
    }
    assert!(loss.forward(&target, &target).double_value(&[]).abs() < 1e-6);
}

/// The target's silence is not scored (the release drop is the equalised loss's job), its
/// quiet notes are, as much as its loud ones.
#[test]
fn brightness_scores_the_frames_where_the_target_sounds() {
    let loss = BrightnessLoss::new(24_000, Device::Cpu);
    let half = FRAMED / 2;
    let loud = tones(half, &[(40, 1.0)]);
    let then = |x: Vec<f32>| -> Tensor { tensor(&[loud.clone(), x].concat()) };
    // the prediction plays a brighter tone at -30 dB in the second half
    let pred = then(tones(FRAMED - half, &[(80, 0.03)]));
    let quiet = then(tones(FRAMED - half, &[(40, 0.03)]));
    let silent = then(vec![0.0; FRAMED - half]);
    let heard = loss.forward(&pred, &quiet).double_value(&[]);
    let unheard = loss.forward(&pred, &silent).double_value(&[]);
    // about half the frames one octave apart
    assert!(heard > 0.4 && heard < 0.6, "quiet target: {heard}");
    assert!(
        unheard < 0.25 * heard,
        "silent target: {unheard} vs {heard}"
    );
}

#[test]
fn brightness_has_a_gradient_towards_the_targets_overtones() {
    let loss = BrightnessLoss::new(24_000, Device::Cpu);
    let target = tensor(&tones(FRAMED, &[(40, 1.0), (200, 0.3)]));
    let fundamental = tensor(&tones(FRAMED, &[(40, 1.0)]));
    let overtone = tensor(&tones(FRAMED, &[(200, 1.0)]));
    let a = Tensor::from(0.05f32).set_requires_grad(true);
    let pred = &fundamental + &overtone * &a;
    loss.forward(&pred, &target).backward();
    // more of the overtone moves the prediction's centroid up towards the target's
    assert!(a.grad().double_value(&[]) < 0.0);
}
