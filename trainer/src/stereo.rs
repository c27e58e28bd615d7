//! `trainer stereo`: a stereo head for a trained network, and the stereo image a piano plays.
//!
//! The network trains mono heads. A stereo head is fitted afterwards, on the Salamander's
//! stereo recordings (a spaced pair: the bass on one side, the treble on the other):
//! * every key is struck alone at three velocities; the recording's left–right balance of
//!   each note gives its pan `p` (`L = (1 + p)·M`, `R = (1 − p)·M` has the recording's
//!   level ratio of left to right);
//! * the network plays the same notes; on its last layer's outputs `h` a side head `d` is
//!   fitted by least squares to `p` times the network's own mono output `m = w·h + b`, and
//!   the stereo head is `left = w + d`, `right = w − d`.
//!
//! Why the side is fitted to the network's own sound and not to the recording's side
//! channel: the network is trained on magnitude spectra, so its waveform's phase is not the
//! recording's, and a least-squares fit to the recording's waveform would fit mostly noise.
//! And the mean of the two channels is the mono head exactly: the tone the network was
//! trained for is kept, a mono render of the stereo model is the mono model's.
//!
//! The image is judged on the unseen material's single notes ([`crate::material::Single`]):
//! per key, the left–right level difference, against the Salamander's (Pearson r).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ssm_runtime::render::render_channels;
use ssm_runtime::roll::frame_start;
use ssm_runtime::soundcheck::{self, CHECK_MIDI_RATE};
use ssm_runtime::{Engine, KeyEvent, Model};

use crate::data::performance::Performance;
use crate::data::salamander::{self, Channel, Library};
use crate::material::{Piece, Single};

#[derive(Debug, Clone, clap::Args)]
pub struct StereoArgs {
    /// The trained model (.safetensors); a stereo model gets its head fitted anew from its
    /// mono fold.
    pub model: PathBuf,
    /// Where the stereo model goes (not the input).
    #[arg(long)]
    pub out: PathBuf,
    /// The Salamander sample folder (default: where scripts/fetch-salamander.sh puts it).
    #[arg(long)]
    pub salamander: Option<PathBuf>,
    /// Velocities every key is struck at for the fit.
    #[arg(long, value_delimiter = ',', default_values_t = FIT_VELOCITIES)]
    pub velocities: Vec<u8>,
    /// Ridge of the least-squares fit, relative to the features' mean power.
    #[arg(long, default_value_t = 1e-4)]
    pub ridge: f64,
}

/// The fit's notes: every key at these velocities, held `FIT_HELD` s, rendered `FIT_SECONDS`.
const FIT_VELOCITIES: [u8; 3] = [40, 80, 110];
const FIT_ONSET: f64 = 0.05;
const FIT_HELD: f64 = 1.0;
const FIT_SECONDS: f64 = 1.5;
/// The image is measured at this rate (the listening checks').
const IMAGE_RATE: u32 = 48_000;

/// What `trainer stereo` made and how its image compares.
pub struct Fitted {
    pub model: Model,
    /// per single-note key: (key, the Salamander's balance, the model's), dB left over right
    pub image: Vec<(u8, f64, f64)>,
    /// Pearson r of the two balances over the keys
    pub r: f64,
}

pub fn run(args: &StereoArgs) -> Result<Fitted> {
    if args.velocities.is_empty() || args.velocities.iter().any(|v| !(1..=127).contains(v)) {
        bail!("--velocities are 1 to 127, at least one");
    }
    if !(args.ridge.is_finite() && args.ridge >= 0.0) {
        bail!("--ridge must be 0 or more, not {}", args.ridge);
    }
    let same = std::fs::canonicalize(&args.model).ok() == std::fs::canonicalize(&args.out).ok();
    if same {
        bail!("--out must not be the input model");
    }
    let model = Model::load(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?
        .folded_to_mono();
    let dir = args
        .salamander
        .clone()
        .unwrap_or_else(salamander::default_dir);
    let lib = Library::open(&dir)?;
    let stereo = fit(&model, &lib, &args.velocities, args.ridge)?;
    let image = key_image(&stereo, &lib)?;
    let r = pearson(
        &image.iter().map(|i| i.1).collect::<Vec<_>>(),
        &image.iter().map(|i| i.2).collect::<Vec<_>>(),
    );
    stereo
        .save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(Fitted {
        model: stereo,
        image,
        r,
    })
}

/// `mono` with a stereo head fitted to the Salamander's per-note balance (module comment).
pub fn fit(mono: &Model, lib: &Library, velocities: &[u8], ridge: f64) -> Result<Model> {
    let rate = mono.info.train_rate;
    let notes: Vec<Piece> = (21..=108u8)
        .flat_map(|key| velocities.iter().map(move |&v| note(key, v)))
        .collect();
    let mut out = mono.clone();
    out.channels = 2;
    let (mut weight, mut bias) = (Vec::new(), Vec::new());
    for head in 0..mono.head_count() {
        let (w, b) = mono.head_channel(head, 0);
        let mut normal = Normal::new(w.len() + 1);
        for piece in &notes {
            let [left, right] = recorded(lib, piece, rate)?;
            let pan = pan(&left, &right);
            let mut engine = Engine::new(mono, rate)?;
            engine.set_head(head)?;
            let h = hidden(&mut engine, piece);
            for h in h.chunks_exact(w.len()) {
                let m = b as f64 + h.iter().zip(w).map(|(h, w)| (h * w) as f64).sum::<f64>();
                normal.add(h, pan * m);
            }
        }
        let d = normal.solve(ridge)?;
        let (d, db) = d.split_at(w.len());
        weight.extend(w.iter().zip(d).map(|(w, d)| w + *d as f32));
        weight.extend(w.iter().zip(d).map(|(w, d)| w - *d as f32));
        bias.extend([b + db[0] as f32, b - db[0] as f32]);
    }
    out.head_weight = weight;
    out.head_bias = bias;
    out.info.description = format!(
        "{} Stereo head fitted to the Salamander's left-right balance of every key \
         (trainer stereo, velocities {velocities:?}).",
        mono.info.description
    );
    out.validate()
        .context("the stereo model does not validate")?;
    Ok(out)
}

/// One fitting note: `key` at `velocity`, alone.
fn note(key: u8, velocity: u8) -> Piece {
    Piece {
        name: "fit note",
        events: vec![
            (
                FIT_ONSET,
                KeyEvent::NoteOn {
                    note: key,
                    velocity,
                },
            ),
            (FIT_ONSET + FIT_HELD, KeyEvent::NoteOff { note: key }),
        ],
        seconds: FIT_SECONDS,
    }
}

/// The Salamander's left and right channels of `piece` at `rate`, on the checks' frames.
fn recorded(lib: &Library, piece: &Piece, rate: u32) -> Result<[Vec<f32>; 2]> {
    let hold = rate / CHECK_MIDI_RATE;
    if hold * CHECK_MIDI_RATE != rate {
        bail!("{rate} Hz is not a whole number of samples a {CHECK_MIDI_RATE} Hz frame");
    }
    let frame = |t: f64| ((t + 1e-6) * CHECK_MIDI_RATE as f64).floor() as u64;
    let perf = Performance {
        events: piece.events.iter().map(|&(t, e)| (frame(t), e)).collect(),
    };
    let frames = (piece.seconds * CHECK_MIDI_RATE as f64).round() as usize;
    let play = |c| lib.render_channel(&perf, (rate, c), hold as usize, frames);
    Ok([play(Channel::Left)?, play(Channel::Right)?])
}

/// The pan whose `(1 ± p)` gains give the level ratio of `left` to `right`.
fn pan(left: &[f32], right: &[f32]) -> f64 {
    let g = (power(left) / power(right).max(1e-30)).sqrt();
    (g - 1.0) / (g + 1.0)
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum()
}

/// The left–right level difference, dB (positive: louder on the left).
pub fn balance_db(left: &[f32], right: &[f32]) -> f64 {
    10.0 * (power(left).max(1e-30) / power(right).max(1e-30)).log10()
}

/// The engine's last-layer outputs over `piece`, as the checks frame it.
fn hidden(engine: &mut Engine, piece: &Piece) -> Vec<f32> {
    let width = engine.hidden_width();
    let rate = engine.sample_rate();
    let roll = soundcheck::roll(&piece.events, piece.seconds);
    let total = roll.samples(rate) as usize;
    let mut out = vec![0f32; total * width];
    let mut done = 0;
    for (k, keys) in roll.frames.iter().enumerate() {
        let end = frame_start(k as u64 + 1, rate, roll.midi_rate) as usize;
        engine.set_keys(keys);
        engine.process_hidden(&mut out[done * width..end.min(total) * width]);
        done = end.min(total);
    }
    out
}

/// Per key of the single notes, the Salamander's and `model`'s left–right balance (dB, the
/// mean over the velocities), at the checks' rate.
pub fn key_image(model: &Model, lib: &Library) -> Result<Vec<(u8, f64, f64)>> {
    let mut per_key: Vec<(u8, f64, f64, usize)> = Vec::new();
    for single in Single::all() {
        let piece = single.piece();
        let [l, r] = recorded(lib, &piece, IMAGE_RATE)?;
        let [ml, mr] = played(model, &piece)?;
        let (theirs, ours) = (balance_db(&l, &r), balance_db(&ml, &mr));
        match per_key.last_mut() {
            Some(k) if k.0 == single.key => {
                k.1 += theirs;
                k.2 += ours;
                k.3 += 1;
            }
            _ => per_key.push((single.key, theirs, ours, 1)),
        }
    }
    Ok(per_key
        .into_iter()
        .map(|(key, a, b, n)| (key, a / n as f64, b / n as f64))
        .collect())
}

/// `model`'s two channels of `piece` at the checks' rate.
fn played(model: &Model, piece: &Piece) -> Result<[Vec<f32>; 2]> {
    let mut engine = Engine::new(model, IMAGE_RATE)?;
    let roll = soundcheck::roll(&piece.events, piece.seconds);
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let frames = roll.frames.iter().copied();
    let _ = render_channels(&mut engine, frames, roll.midi_rate, None, 2, |c| {
        for pair in c.chunks_exact(2) {
            left.push(pair[0]);
            right.push(pair[1]);
        }
        Ok::<(), ()>(())
    });
    Ok([left, right])
}

/// Pearson's correlation of `a` and `b` (0 when either is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

/// The normal equations of a least-squares fit of `y ≈ d·h + c`, accumulated in f64.
struct Normal {
    /// (n, n): Σ x xᵀ with x = (h, 1)
    a: Vec<f64>,
    /// Σ x y
    r: Vec<f64>,
    n: usize,
}

impl Normal {
    fn new(n: usize) -> Normal {
        Normal {
            a: vec![0.0; n * n],
            r: vec![0.0; n],
            n,
        }
    }

    fn add(&mut self, h: &[f32], y: f64) {
        let n = self.n;
        let x = |i: usize| if i + 1 == n { 1.0 } else { h[i] as f64 };
        for i in 0..n {
            let xi = x(i);
            self.r[i] += xi * y;
            for j in i..n {
                self.a[i * n + j] += xi * x(j);
            }
        }
    }

    /// The fit `(d, c)`, with `ridge` times the features' mean power added to the diagonal
    /// (not the constant's).
    fn solve(&self, ridge: f64) -> Result<Vec<f64>> {
        let n = self.n;
        let mut a = self.a.clone();
        for i in 0..n {
            for j in 0..i {
                a[i * n + j] = a[j * n + i];
            }
        }
        let mean = (0..n - 1).map(|i| a[i * n + i]).sum::<f64>() / (n - 1).max(1) as f64;
        for i in 0..n - 1 {
            a[i * n + i] += ridge * mean;
        }
        solve(a, self.r.clone(), n).context("the stereo fit is singular: the network is silent")
    }
}

/// `A x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for col in 0..n {
        let pivot =
            (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[pivot * n + col].abs() < 1e-300 {
            return None;
        }
        for k in 0..n {
            a.swap(col * n + k, pivot * n + k);
        }
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row * n + col] / a[col * n + col];
            for k in col..n {
                a[row * n + k] -= f * a[col * n + k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row * n + row];
    }
    Some(x)
}

/// A table of the image: per key, the two balances.
pub fn report(fitted: &Fitted) -> String {
    let mut s = String::from("key  Salamander  model   (left-right balance, dB)\n");
    for (key, theirs, ours) in &fitted.image {
        s += &format!("{key:>3}  {theirs:>+10.2}  {ours:>+6.2}\n");
    }
    s += &format!("Pearson r over the keys: {:.3}\n", fitted.r);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_equations_recover_a_linear_map() {
        let d = [0.5, -1.25, 2.0];
        let mut normal = Normal::new(4);
        let mut s = 1u64;
        for _ in 0..500 {
            let h: Vec<f32> = (0..3)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let y = 0.3 + h.iter().zip(d).map(|(h, d)| *h as f64 * d).sum::<f64>();
            normal.add(&h, y);
        }
        let x = normal.solve(0.0).unwrap();
        for (got, want) in x.iter().zip([0.5, -1.25, 2.0, 0.3]) {
            assert!((got - want).abs() < 1e-9, "{x:?}");
        }
    }

    #[test]
    fn pan_gives_the_level_ratio_and_pearson_the_correlation() {
        let m: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.1).sin()).collect();
        let p = 0.2;
        let (l, r): (Vec<f32>, Vec<f32>) = m.iter().map(|v| ((1.0 + p) * v, (1.0 - p) * v)).unzip();
        assert!((pan(&l, &r) - p as f64).abs() < 1e-6);
        assert!((balance_db(&l, &r) - 20.0 * (1.2f64 / 0.8).log10()).abs() < 1e-4);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.9986).abs() < 1e-3);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }
}
