//! `trainer stereo`: a stereo head for a trained network, and the stereo image a piano plays.
//!
//! The network trains mono heads. A stereo head is fitted afterwards, on the Salamander's
//! stereo recordings (a spaced pair: each string heard from where it lies under the lid):
//! * every key is struck alone at three velocities; the recording's left–right balance of
//!   each note gives its pan `p` (`L = (1 + p)·M`, `R = (1 − p)·M` has the recording's
//!   level ratio of left to right);
//! * the network plays the same notes; a side signal `s = Re(Σ_q E_q x_q)` read from the
//!   first layer's states of that key (its damper's tags: the key's strings, its bank) is
//!   fitted by least squares to `p` times the network's own mono output `m`, key by key;
//!   the stereo head is `left = m + s`, `right = m − s` (`heads.state_weight` `±E`).
//!
//! Why the first layer's states: they belong to keys, the later layers mix every key. A side
//! head on the last layer's 20 outputs, fitted the same way, follows the recording's per-key
//! balance with r = 0.14 on the built-in L (its outputs do not separate keys); a key's own
//! states can only sound when that key does. Why the side is fitted to the network's own
//! sound and not to the recording's side channel: the network is trained on magnitude
//! spectra, so its waveform's phase is not the recording's, and a least-squares fit to the
//! recording's waveform would fit mostly noise. And the mean of the two channels is the mono
//! head exactly: the tone the network was trained for is kept, a mono render of the stereo
//! model is the mono model's.
//!
//! The image is judged on the material unlike training ([`crate::unseen`]): per key of its
//! single notes, the left–right level difference against the Salamander's (Pearson r); and
//! each channel's spectral distance to the Salamander's, beside the mono render's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use num_complex::Complex64;
use ssm_runtime::model::{stable_pole, SsmLayer, LOWEST_NOTE};
use ssm_runtime::render::render_roll_stereo;
use ssm_runtime::roll::frame_start;
use ssm_runtime::soundcheck::{self, CHECK_MIDI_RATE};
use ssm_runtime::{Engine, KeyEvent, Model, KEYS};

use crate::data::performance::Performance;
use crate::data::salamander::{self, Channel, Library};
use crate::listen;
use crate::material::{Piece, Single};
use crate::unseen::{self, Renders};

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
    /// Ridge of the least-squares fit, relative to the features' mean power (0.1: on the
    /// built-in L, r 0.842 and left / right distances 25.71 / 25.80 on the single notes,
    /// against 0.835 and 25.93 / 25.97 at 0.01).
    #[arg(long, default_value_t = 0.1)]
    pub ridge: f64,
    /// Also draw the per-key balance, the Salamander's beside the model's, to this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Description written into the stereo model (default: the model's, and how its stereo
    /// head was fitted).
    #[arg(long)]
    pub description: Option<String>,
}

/// The fit's notes: every key at these velocities, held `FIT_HELD` s, rendered `FIT_SECONDS`.
const FIT_VELOCITIES: [u8; 3] = [40, 80, 110];
const FIT_ONSET: f64 = 0.05;
const FIT_HELD: f64 = 1.0;
const FIT_SECONDS: f64 = 1.5;
/// The image is measured at this rate (the listening checks' default).
const IMAGE_RATE: u32 = 48_000;

/// What `trainer stereo` made and how its image compares.
pub struct Fitted {
    pub model: Model,
    pub image: Image,
}

/// A stereo model's image on the unseen single notes, against the Salamander's.
#[derive(Debug, Clone)]
pub struct Image {
    /// per key: (key, the Salamander's balance, the model's), dB left over right, the mean
    /// over the velocities
    pub keys: Vec<(u8, f64, f64)>,
    /// Pearson r of the two balances over the keys
    pub r: f64,
    /// the multi-scale spectral distance of the model's left and right channels to the
    /// Salamander's, over the material unlike training (as `trainer check --listen`)
    pub stereo_distance: [f64; 2],
    /// the same of the model's mono output (its channels' mean) to each of them
    pub mono_distance: [f64; 2],
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
    let mut stereo = fit(&model, &lib, &args.velocities, args.ridge)?;
    if let Some(d) = &args.description {
        stereo.info.description.clone_from(d);
    }
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
    let image = image(&stereo, &lib, &assets)?;
    stereo
        .save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(png) = &args.plot {
        let name = format!("{} {}", stereo.info.family, stereo.info.size);
        crate::plots::balance(png, &image.keys, &name)?;
    }
    Ok(Fitted {
        model: stereo,
        image,
    })
}

/// `mono` with a stereo head fitted to the Salamander's per-note balance (module comment).
pub fn fit(mono: &Model, lib: &Library, velocities: &[u8], ridge: f64) -> Result<Model> {
    let rate = mono.info.train_rate;
    let first = mono.layers.first().context("the model has no layers")?;
    let Some(damper) = &first.damper else {
        bail!("the model's first layer has no key damper: its states belong to no key");
    };
    let p = first.state;
    let heads = mono.head_count();
    // per head: the side's complex weights on the first layer's states
    let mut side = vec![0f64; heads * 2 * p];
    for key in 0..KEYS as u8 {
        let states: Vec<usize> = (0..p).filter(|&q| damper.key[q] == Some(key)).collect();
        if states.is_empty() {
            continue;
        }
        // the recording's pan of each note, whichever head is fitted
        let notes = velocities
            .iter()
            .map(|&velocity| {
                let piece = note(LOWEST_NOTE + key, velocity);
                let [left, right] = recorded(lib, &piece, rate)?;
                Ok((piece, pan(&left, &right)))
            })
            .collect::<Result<Vec<_>>>()?;
        for head in 0..heads {
            let (w, b) = mono.head_channel(head, 0);
            let mut normal = Normal::new(2 * states.len());
            let mut features = vec![0f64; 2 * states.len()];
            for (piece, pan) in &notes {
                let mut engine = Engine::new(mono, rate)?;
                engine.set_head(head)?;
                each_sample(&mut engine, piece, |h, x| {
                    let m = b as f64 + h.iter().zip(w).map(|(h, w)| (h * w) as f64).sum::<f64>();
                    for (f, &q) in features.chunks_exact_mut(2).zip(&states) {
                        f.copy_from_slice(&[x[q] as f64, x[p + q] as f64]);
                    }
                    normal.add(&features, pan * m);
                });
            }
            let a = normal.solve(ridge, &held_directions(first, key, &states))?;
            // Re(E x) = Re E · Re x − Im E · Im x
            for (&q, a) in states.iter().zip(a.chunks_exact(2)) {
                side[head * 2 * p + 2 * q] = a[0];
                side[head * 2 * p + 2 * q + 1] = -a[1];
            }
        }
    }
    let mut out = mono.clone();
    out.channels = 2;
    out.head_weight.clear();
    out.head_bias.clear();
    let mut reads = Vec::with_capacity(heads * 2 * 2 * p);
    for head in 0..heads {
        let (w, b) = mono.head_channel(head, 0);
        out.head_weight.extend(w.iter().chain(w));
        out.head_bias.extend([b, b]);
        let e = &side[head * 2 * p..(head + 1) * 2 * p];
        reads.extend(e.iter().map(|&v| v as f32));
        reads.extend(e.iter().map(|&v| -v as f32));
    }
    out.head_state_weight = Some(reads);
    out.info.description = format!(
        "{} Stereo: each key's strings placed at the Salamander's left-right balance of that \
         key (trainer stereo, velocities {velocities:?}).",
        mono.info.description
    );
    out.validate()
        .context("the stereo model does not validate")?;
    Ok(out)
}

/// The directions, in the fit's features (`re, im` of each of `states`), of those states'
/// equilibrium while `key` is held: per unit of touch (`B`) and of its square (`B_square`).
/// Why the side must not read them: a held key's states sit at that equilibrium on top of
/// their vibration, and a side reading it would step at every strike and release (a click,
/// and a low-frequency offset under every note), on each channel with opposite signs.
fn held_directions(first: &SsmLayer, key: u8, states: &[usize]) -> Vec<Vec<f64>> {
    let k = key as usize;
    let column = |m: &[f32], q: usize| {
        let at = 2 * (q * first.inputs + k);
        Complex64::new(m[at] as f64, m[at + 1] as f64)
    };
    let mut out = Vec::new();
    for matrix in [Some(&first.b), first.b_square.as_ref()]
        .into_iter()
        .flatten()
    {
        let direction: Vec<f64> = states
            .iter()
            .flat_map(|&q| {
                let x = -column(matrix, q) / stable_pole(first.norm[q], first.angle[q]);
                [x.re, x.im]
            })
            .collect();
        if let Some(d) = orthonormal(direction, &out) {
            out.push(d);
        }
    }
    out
}

/// `v` less its projections on the orthonormal `basis`, normalised; `None` when nothing of it
/// is left (a direction the basis already holds adds no constraint).
fn orthonormal(mut v: Vec<f64>, basis: &[Vec<f64>]) -> Option<Vec<f64>> {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let before = norm(&v);
    for b in basis {
        let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
        v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
    }
    let after = norm(&v);
    (after > 1e-9 * before && after > 0.0).then(|| v.iter().map(|x| x / after).collect())
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

/// Plays `piece` as the checks frame it and hands `sample` each sample's last-layer outputs
/// and first-layer states, a frame at a time (a note's states are hundreds of megabytes).
fn each_sample(engine: &mut Engine, piece: &Piece, mut sample: impl FnMut(&[f32], &[f32])) {
    let width = engine.hidden_width();
    let p2 = 2 * engine.state_sizes()[0];
    let rate = engine.sample_rate();
    let roll = soundcheck::roll(&piece.events, piece.seconds);
    let (mut h, mut x) = (Vec::new(), Vec::new());
    for (k, keys) in roll.frames.iter().enumerate() {
        let [from, to] = [k as u64, k as u64 + 1].map(|f| frame_start(f, rate, roll.midi_rate));
        let n = (to - from) as usize;
        h.resize(n * width, 0.0);
        x.resize(n * p2, 0.0);
        engine.set_keys(keys);
        engine.process_hidden(&mut h, Some(&mut x));
        for (h, x) in h.chunks_exact(width).zip(x.chunks_exact(p2)) {
            sample(h, x);
        }
    }
}

/// `model`'s image against the Salamander's ([`Image`]) on the material unlike training
/// ([`unseen::pieces`]; `assets` holds its music), at the checks' rate.
pub fn image(model: &Model, lib: &Library, assets: &Path) -> Result<Image> {
    let groups = unseen::pieces(assets)?;
    // per group and piece: the Salamander's left and right, the model's
    let mut theirs: [Vec<[Vec<f32>; 2]>; 4] = Default::default();
    let mut ours: [Vec<[Vec<f32>; 2]>; 4] = Default::default();
    for (g, pieces) in groups.iter().enumerate() {
        for piece in pieces {
            theirs[g].push(recorded(lib, piece, IMAGE_RATE)?);
            ours[g].push(played(model, piece)?);
        }
    }
    let keys = per_key(&Single::all(), &theirs[0], &ours[0]);
    // one channel (0, 1) or the mean of the model's two (2) as unseen renders
    let renders = |of: &[Vec<[Vec<f32>; 2]>; 4], c: usize| {
        Renders::from_groups(std::array::from_fn(|g| {
            of[g]
                .iter()
                .map(|[l, r]| match c {
                    2 => l.iter().zip(r).map(|(l, r)| 0.5 * (l + r)).collect(),
                    c => [l, r][c].clone(),
                })
                .collect()
        }))
    };
    let distance = |c_ours: usize, c_theirs: usize| {
        let target = renders(&theirs, c_theirs);
        let mut x = renders(&ours, c_ours);
        x.match_levels(&target);
        listen::spectral_distance(&x.files(), &target.files(), IMAGE_RATE)
    };
    Ok(Image {
        r: balance_r(&keys),
        stereo_distance: [0, 1].map(|c| distance(c, c)),
        mono_distance: [0, 1].map(|c| distance(2, c)),
        keys,
    })
}

/// Per key of `singles`, the recording's and the model's left–right balance (dB), the mean
/// over its velocities; `theirs` and `ours` the singles' left and right channels.
fn per_key(
    singles: &[Single],
    theirs: &[[Vec<f32>; 2]],
    ours: &[[Vec<f32>; 2]],
) -> Vec<(u8, f64, f64)> {
    let mut keys: Vec<(u8, f64, f64, usize)> = Vec::new();
    for ((single, [l, r]), [ml, mr]) in singles.iter().zip(theirs).zip(ours) {
        let (a, b) = (balance_db(l, r), balance_db(ml, mr));
        match keys.last_mut() {
            Some(k) if k.0 == single.key => {
                k.1 += a;
                k.2 += b;
                k.3 += 1;
            }
            _ => keys.push((single.key, a, b, 1)),
        }
    }
    keys.into_iter()
        .map(|(key, a, b, n)| (key, a / n as f64, b / n as f64))
        .collect()
}

/// Pearson r of the recording's and the model's per-key balance.
pub fn balance_r(keys: &[(u8, f64, f64)]) -> f64 {
    let column = |i: usize| keys.iter().map(|k| [k.1, k.2][i]).collect::<Vec<_>>();
    pearson(&column(0), &column(1))
}

/// The per-key balance of the single notes at `velocity` alone ([`Image::keys`]): a quicker
/// look at the image than [`image`].
pub fn key_balance(model: &Model, lib: &Library, velocity: u8) -> Result<Vec<(u8, f64, f64)>> {
    let singles: Vec<Single> = Single::all()
        .into_iter()
        .filter(|s| s.velocity == velocity)
        .collect();
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    for single in &singles {
        let piece = single.piece();
        theirs.push(recorded(lib, &piece, IMAGE_RATE)?);
        ours.push(played(model, &piece)?);
    }
    Ok(per_key(&singles, &theirs, &ours))
}

/// `model`'s two channels of `piece` at the checks' rate.
fn played(model: &Model, piece: &Piece) -> Result<[Vec<f32>; 2]> {
    let mut engine = Engine::new(model, IMAGE_RATE)?;
    let roll = soundcheck::roll(&piece.events, piece.seconds);
    Ok(render_roll_stereo(&mut engine, &roll))
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

/// The normal equations of a least-squares fit of `y ≈ a·x`, accumulated in f64.
struct Normal {
    /// (n, n): Σ x xᵀ, its upper triangle
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

    fn add(&mut self, x: &[f64], y: f64) {
        let n = self.n;
        for i in 0..n {
            self.r[i] += x[i] * y;
            for j in i..n {
                self.a[i * n + j] += x[i] * x[j];
            }
        }
    }

    /// The fit `a`, with `ridge` times the features' mean power added to the diagonal, and
    /// `a · c = 0` for every `c` of `constraints` (by the KKT system of the constrained
    /// least squares).
    fn solve(&self, ridge: f64, constraints: &[Vec<f64>]) -> Result<Vec<f64>> {
        let (n, k) = (self.n, constraints.len());
        let m = n + k;
        let mut a = vec![0.0; m * m];
        for i in 0..n {
            for j in i..n {
                (a[i * m + j], a[j * m + i]) = (self.a[i * n + j], self.a[i * n + j]);
            }
        }
        let mean = (0..n).map(|i| a[i * m + i]).sum::<f64>() / n.max(1) as f64;
        for i in 0..n {
            a[i * m + i] += ridge * mean;
        }
        for (c, row) in constraints.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                (a[(n + c) * m + i], a[i * m + n + c]) = (v, v);
            }
        }
        let mut r = self.r.clone();
        r.resize(m, 0.0);
        let x = solve(a, r, m).context("the stereo fit is singular: the key is silent")?;
        Ok(x[..n].to_vec())
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

/// The image as text: per key the two balances, then r and the distances.
pub fn report(image: &Image) -> String {
    let mut s = String::from("key  Salamander  model   (left-right balance, dB)\n");
    for (key, theirs, ours) in &image.keys {
        s += &format!("{key:>3}  {theirs:>+10.2}  {ours:>+6.2}\n");
    }
    s += &summary(image);
    s
}

/// r and the per-channel distances, one line each.
pub fn summary(image: &Image) -> String {
    let [sl, sr] = image.stereo_distance;
    let [ml, mr] = image.mono_distance;
    format!(
        "Pearson r of the per-key balance: {:.3}\n\
         spectral distance to the Salamander's left / right: stereo {sl:.2} / {sr:.2}, \
         mono {ml:.2} / {mr:.2}\n",
        image.r
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_equations_recover_a_linear_map() {
        let d = [0.5, -1.25, 2.0, 0.3];
        let mut normal = Normal::new(4);
        let mut s = 1u64;
        for _ in 0..500 {
            let mut x: Vec<f64> = (0..3)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f64 / (1u64 << 24) as f64 - 0.5
                })
                .collect();
            x.push(1.0);
            let y = x.iter().zip(d).map(|(x, d)| x * d).sum::<f64>();
            normal.add(&x, y);
        }
        let x = normal.solve(0.0, &[]).unwrap();
        for (got, want) in x.iter().zip(d) {
            assert!((got - want).abs() < 1e-9, "{x:?}");
        }
    }

    #[test]
    fn a_constrained_fit_keeps_its_constraint() {
        // y = x0 + x1 fitted under a0 = a1: a = (1, 1) meets it; under a0 + a1 = 0 the
        // best is (0, 0) when x0 and x1 are uncorrelated with equal power
        let mut normal = Normal::new(2);
        for i in 0..400 {
            let x = [((i % 2) as f64) - 0.5, ((i / 2 % 2) as f64) - 0.5];
            normal.add(&x, x[0] + x[1]);
        }
        let c = orthonormal(vec![1.0, -1.0], &[]).unwrap();
        let a = normal.solve(0.0, &[c]).unwrap();
        assert!(
            (a[0] - 1.0).abs() < 1e-9 && (a[1] - 1.0).abs() < 1e-9,
            "{a:?}"
        );
        let c = orthonormal(vec![1.0, 1.0], &[]).unwrap();
        let a = normal.solve(0.0, std::slice::from_ref(&c)).unwrap();
        assert!(a[0].abs() < 1e-9 && a[1].abs() < 1e-9, "{a:?}");
        assert!(
            orthonormal(vec![2.0, 2.0], &[c]).is_none(),
            "a dependent direction adds nothing"
        );
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
