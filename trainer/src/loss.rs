//! The paper's two training criteria, on (B, L) audio.
//!
//! * [`SpectralLoss`] (MSSL): for FFT sizes [192 … 12288]·sr/48000, hop = size/4 (75 % overlap),
//!   Hann window, the signal zero-padded at the end to whole frames:
//!   mean |S_x − S_y| + mean |log(S_x + ε) − log(S_y + ε)|, summed over the sizes.
//! * [`CombinedSpectralLoss`]: a 1-second STFT magnitude L1 (n_fft = sr, hop = sr/10), plus
//!   auraloss's `MelSTFTLoss` (spectral convergence + log-magnitude L1 on a 128-band Slaney mel
//!   spectrogram, fft 2048·sr/44100, window 1024·sr/44100, hop 256·sr/44100), plus the L1
//!   distance of the clips' means (keeps the DC offset in check).
//! * [`EqualisedLoss`] (ours): the SpectralLoss of both signals divided by the target's own
//!   short-time level, so the quiet parts a listener hears as clearly as the loud ones — the
//!   seconds after a release, soft notes — weigh as much as fortissimo chords.
//! * [`BrightnessLoss`] (ours): each frame's spectral centroid against the target's, in
//!   octaves, so that a hard strike is heard to be brighter than a soft one.

use tch::{Device, Kind, Tensor};

/// Magnitudes below this are floored before taking logs (auraloss uses 1e-8 on the power).
const LOG_EPS: f64 = 1e-7;
/// auraloss clamps the power spectrum at this before the square root.
const POWER_EPS: f64 = 1e-8;

/// Which criterion: the CLI's `--criterion`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Criterion {
    CombinedSpectral,
    Spectral,
    /// The SpectralLoss on level-equalised audio (see [`EqualisedLoss`]).
    Equalised,
    /// Frame-by-frame spectral centroid (see [`BrightnessLoss`]).
    Brightness,
}

impl Criterion {
    pub fn name(self) -> &'static str {
        match self {
            Criterion::CombinedSpectral => "combined-spectral",
            Criterion::Spectral => "spectral",
            Criterion::Equalised => "equalised",
            Criterion::Brightness => "brightness",
        }
    }
}

/// Both criteria for one sample rate, with their windows and mel filters built once.
pub struct Losses {
    pub spectral: SpectralLoss,
    pub combined: CombinedSpectralLoss,
    pub equalised: EqualisedLoss,
    pub brightness: BrightnessLoss,
    /// The brightness criterion's factor (octaves are small beside the spectral sums).
    pub brightness_weight: f64,
}

impl Losses {
    pub fn new(sample_rate: u32, device: Device) -> Losses {
        Losses {
            spectral: SpectralLoss::new(sample_rate, device),
            combined: CombinedSpectralLoss::new(sample_rate, device),
            equalised: EqualisedLoss::new(sample_rate),
            brightness: BrightnessLoss::new(sample_rate, device),
            brightness_weight: BrightnessLoss::WEIGHT,
        }
    }

    pub fn get(&self, c: Criterion, pred: &Tensor, target: &Tensor) -> Tensor {
        match c {
            Criterion::CombinedSpectral => self.combined.forward(pred, target),
            Criterion::Spectral => self.spectral.forward(pred, target),
            Criterion::Equalised => {
                let w = self.equalised.weight(target);
                self.spectral.forward(&(pred * &w), &(target * &w))
            }
            Criterion::Brightness => self.brightness.forward(pred, target) * self.brightness_weight,
        }
    }
}

/// Scales a size given at `reference` Hz to `sample_rate`, at least 4 samples.
fn scaled(size: f64, sample_rate: u32, reference: f64) -> i64 {
    ((size * sample_rate as f64 / reference).round() as i64).max(4)
}

/// |STFT| without centring: frames start at 0, hop apart; (B, bins, frames).
fn magnitude(x: &Tensor, n_fft: i64, hop: i64, win: i64, window: &Tensor) -> Tensor {
    power(x, n_fft, hop, win, window).sqrt()
}

/// |STFT|², floored at [`POWER_EPS`]; framed as [`magnitude`].
fn power(x: &Tensor, n_fft: i64, hop: i64, win: i64, window: &Tensor) -> Tensor {
    let spec = x.stft(n_fft, hop, win, Some(window), false, true, true, false);
    // |z|² from (re, im): complex abs() has no usable gradient at 0
    spec.view_as_real()
        .square()
        .sum_dim_intlist(-1, false, Kind::Float)
        .clamp_min(POWER_EPS)
}

pub struct SpectralLoss {
    scales: Vec<(i64, Tensor)>,
}

impl SpectralLoss {
    pub const SIZES_AT_48K: [f64; 7] = [192.0, 384.0, 768.0, 1526.0, 3072.0, 6144.0, 12288.0];

    pub fn new(sample_rate: u32, device: Device) -> SpectralLoss {
        let scales = Self::SIZES_AT_48K
            .iter()
            .map(|&s| {
                let n = scaled(s, sample_rate, 48_000.0);
                (n, Tensor::hann_window(n, (Kind::Float, device)))
            })
            .collect();
        SpectralLoss { scales }
    }

    pub fn fft_sizes(&self) -> Vec<i64> {
        self.scales.iter().map(|(n, _)| *n).collect()
    }

    pub fn forward(&self, pred: &Tensor, target: &Tensor) -> Tensor {
        let mut total = Tensor::zeros([], (Kind::Float, pred.device()));
        for (n, window) in &self.scales {
            let hop = n / 4;
            let (x, y) = (pad_to_frames(pred, *n, hop), pad_to_frames(target, *n, hop));
            let (mx, my) = (
                magnitude(&x, *n, hop, *n, window),
                magnitude(&y, *n, hop, *n, window),
            );
            let lin = (&mx - &my).abs().mean(Kind::Float);
            let log = ((mx + LOG_EPS).log() - (my + LOG_EPS).log())
                .abs()
                .mean(Kind::Float);
            total = total + lin + log;
        }
        total
    }
}

/// Level equalisation for [`Criterion::Equalised`].
///
/// Why: a spectral loss is dominated by loud frames. A key that rings on 40 dB under the note
/// after its release, or a soft note that is half noise, costs almost nothing, and that is
/// what the SpectralLoss-trained models did. Dividing both signals by the target's envelope
/// (its RMS over 10 ms, peak-held over 10 ms more so it does not dip between partials' beats)
/// makes every moment of the target about as loud as every other; the floor, 40 dB under
/// the clip's RMS, bounds the weight where the target is silent, so a model that plays
/// there is penalised as if it played 40 dB louder than it does.
pub struct EqualisedLoss {
    window: i64,
}

impl EqualisedLoss {
    /// The floor's level below the clip's RMS (amplitude ratio).
    pub const FLOOR: f64 = 0.01;

    pub fn new(sample_rate: u32) -> EqualisedLoss {
        EqualisedLoss {
            window: (sample_rate as i64 / 100).max(1) | 1,
        }
    }

    /// 1 / (envelope + floor) of `target` (B, L), without gradient.
    pub fn weight(&self, target: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let (w, len) = (self.window, target.size()[target.dim() - 1]);
        let power = target.square().unsqueeze(1);
        let rms = power
            .avg_pool1d([w], [1], [w / 2], false, true)
            .sqrt()
            .max_pool1d([w], [1], [w / 2], [1], false)
            .squeeze_dim(1)
            .narrow(-1, 0, len);
        let floor = target
            .square()
            .mean_dim(-1, true, Kind::Float)
            .sqrt()
            .clamp_min(1e-6)
            * Self::FLOOR;
        (rms + floor).reciprocal()
    }
}

/// Brightness for [`Criterion::Brightness`]: the mean distance, in octaves, between each
/// frame's spectral centroid (power-weighted, above 20 Hz) and the target's, over the frames
/// where the target sounds (within 40 dB of the clip's loudest frame).
///
/// Why: a hard strike sounds brighter than a soft one because its upper partials, from the
/// 8th to the 40th, rise (the Salamander's centroid is 1.22 times higher at velocity 110
/// than at 30 in `trainer check --listen`, and 1.01 from its first three partials alone). Those partials are a few
/// quiet bins to the spectral losses, and models trained on them kept the same tone at
/// every velocity. The centroid hears them as a listener does, as the tone's height, and
/// weighs a soft note's frames as much as a loud one's.
pub struct BrightnessLoss {
    n: i64,
    window: Tensor,
    /// Each bin's frequency, 0 below 20 Hz; (bins, 1).
    freqs: Tensor,
    /// 1 from 20 Hz up, 0 below (the held keys' DC is not tone); (bins, 1).
    audible: Tensor,
}

impl BrightnessLoss {
    /// The default factor in [`Losses`]: an octave weighs as much as a quarter of a
    /// freshly trained model's spectral losses.
    pub const WEIGHT: f64 = 10.0;
    /// Frames of 2048 samples at 24 kHz (85 ms), scaled with the rate.
    pub const SIZE_AT_24K: f64 = 2048.0;
    /// Frames quieter than this, relative to the clip's loudest, are not scored (−40 dB).
    pub const FLOOR: f64 = 1e-4;
    /// Lowest centroid (Hz) taken to the log, so silence in the prediction has a gradient.
    const LOWEST: f64 = 20.0;

    pub fn new(sample_rate: u32, device: Device) -> BrightnessLoss {
        let n = scaled(Self::SIZE_AT_24K, sample_rate, 24_000.0);
        let df = sample_rate as f64 / n as f64;
        let audible: Vec<f32> = (0..=n / 2)
            .map(|k| f32::from(k as f64 * df >= Self::LOWEST))
            .collect();
        let audible = Tensor::from_slice(&audible).view([-1, 1]).to_device(device);
        let freqs = Tensor::arange(n / 2 + 1, (Kind::Float, device)).view([-1, 1]) * df * &audible;
        BrightnessLoss {
            n,
            window: Tensor::hann_window(n, (Kind::Float, device)),
            freqs,
            audible,
        }
    }

    /// Each frame's centroid in octaves above 1 Hz and its audible power; (B, frames) each.
    fn centroids(&self, x: &Tensor) -> (Tensor, Tensor) {
        let hop = self.n / 4;
        let p = power(
            &pad_to_frames(x, self.n, hop),
            self.n,
            hop,
            self.n,
            &self.window,
        );
        let level = (&p * &self.audible).sum_dim_intlist(1, false, Kind::Float);
        let centroid = (&p * &self.freqs).sum_dim_intlist(1, false, Kind::Float) / &level;
        (centroid.clamp_min(Self::LOWEST).log2(), level)
    }

    pub fn forward(&self, pred: &Tensor, target: &Tensor) -> Tensor {
        let (cx, _) = self.centroids(pred);
        let (cy, level) = tch::no_grad(|| self.centroids(target));
        let loudest = level.amax([-1], true);
        let sounding = level
            .gt_tensor(&(loudest * Self::FLOOR))
            .to_kind(Kind::Float);
        ((cx - cy).abs() * &sounding).sum(Kind::Float) / sounding.sum(Kind::Float).clamp_min(1.0)
    }
}

/// Zero-pads the end so that frames of `n` with `hop` cover every sample (at least one frame).
pub fn pad_to_frames(x: &Tensor, n: i64, hop: i64) -> Tensor {
    let len = x.size()[x.dim() - 1];
    let frames = if len <= n {
        1
    } else {
        (len - n + hop - 1) / hop + 1
    };
    let padded = (frames - 1) * hop + n;
    x.constant_pad_nd([0, padded - len])
}

pub struct CombinedSpectralLoss {
    sample_rate: i64,
    window: Tensor,
    mel_fft: i64,
    mel_win: i64,
    mel_hop: i64,
    mel_window: Tensor,
    /// (128, mel_fft/2 + 1)
    mel_bank: Tensor,
}

impl CombinedSpectralLoss {
    pub fn new(sample_rate: u32, device: Device) -> CombinedSpectralLoss {
        let sr = sample_rate as i64;
        let mel_fft = scaled(2048.0, sample_rate, 44_100.0);
        let mel_win = scaled(1024.0, sample_rate, 44_100.0);
        let mel_hop = scaled(256.0, sample_rate, 44_100.0);
        let bank = mel_filterbank(sample_rate as f64, mel_fft as usize, 128);
        let mel_bank = Tensor::from_slice(&bank)
            .reshape([128, mel_fft / 2 + 1])
            .to_device(device);
        CombinedSpectralLoss {
            sample_rate: sr,
            window: Tensor::hann_window(sr, (Kind::Float, device)),
            mel_fft,
            mel_win,
            mel_hop,
            mel_window: Tensor::hann_window(mel_win, (Kind::Float, device)),
            mel_bank,
        }
    }

    pub fn forward(&self, pred: &Tensor, target: &Tensor) -> Tensor {
        self.stft_l1(pred, target)
            + self.mel(pred, target)
            + (pred.mean_dim(-1, false, Kind::Float) - target.mean_dim(-1, false, Kind::Float))
                .abs()
                .mean(Kind::Float)
    }

    /// One-second STFT magnitude L1, centred like torch.stft's default.
    pub fn stft_l1(&self, pred: &Tensor, target: &Tensor) -> Tensor {
        let (n, hop) = (self.sample_rate, self.sample_rate / 10);
        let mx = magnitude(&center(pred, n), n, hop, n, &self.window);
        let my = magnitude(&center(target, n), n, hop, n, &self.window);
        (mx - my).abs().mean(Kind::Float)
    }

    /// auraloss MelSTFTLoss: spectral convergence + mean |log mel_x − log mel_y|.
    pub fn mel(&self, pred: &Tensor, target: &Tensor) -> Tensor {
        let mel = |x: &Tensor| {
            let m = magnitude(
                &center(x, self.mel_fft),
                self.mel_fft,
                self.mel_hop,
                self.mel_win,
                &self.mel_window,
            );
            self.mel_bank.matmul(&m)
        };
        let (mx, my) = (mel(pred), mel(target));
        let sc = (&my - &mx).square().sum(Kind::Float).sqrt() / my.square().sum(Kind::Float).sqrt();
        // mel bands narrower than one FFT bin are empty; floor them rather than take log(0)
        let log = (mx.clamp_min(POWER_EPS).log() - my.clamp_min(POWER_EPS).log())
            .abs()
            .mean(Kind::Float);
        sc + log
    }
}

/// torch.stft(center=True) framing: reflect-pad n/2 both sides (zero-pad when too short to reflect).
fn center(x: &Tensor, n: i64) -> Tensor {
    let pad = n / 2;
    let len = x.size()[x.dim() - 1];
    if len > pad {
        x.unsqueeze(1).reflection_pad1d([pad, pad]).squeeze_dim(1)
    } else {
        x.constant_pad_nd([pad, pad])
    }
}

/// librosa.filters.mel(sr, n_fft, n_mels) with its defaults: Slaney mel scale, Slaney
/// area normalisation, 0 Hz to sr/2. Row-major (n_mels, n_fft/2 + 1).
pub fn mel_filterbank(sr: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins).map(|k| k as f64 * sr / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut bank = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let (f0, f1, f2) = (mel_freqs[m], mel_freqs[m + 1], mel_freqs[m + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - f0) / (f1 - f0);
            let upper = (f2 - f) / (f2 - f1);
            bank[m * bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    bank
}

/// Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa htk=False).
pub fn hz_to_mel(hz: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

pub fn mel_to_hz(mel: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}
