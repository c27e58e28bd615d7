//! Datasets of recorded (MIDI, WAV) pairs: random crops weighted by length, test segments,
//! and skipping of missing or corrupt files. MAESTRO and MAPS only differ in how they list pairs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::MidiFile;

use super::audio::{read_mono, resample, wav_info};
use super::{segments, Clip, Rates, Source, Split};

/// One performance: its MIDI, its recording and the head it trains.
#[derive(Debug, Clone)]
pub struct Pair {
    pub midi: PathBuf,
    pub wav: PathBuf,
    pub head: usize,
}

/// A pair whose files were found and whose WAV header was readable.
#[derive(Debug, Clone)]
struct Entry {
    pair: Pair,
    /// the recording's sample rate, read once from its header
    rate: u32,
    seconds: f64,
}

pub struct PairedFiles {
    name: String,
    train: Vec<Entry>,
    validation: Vec<Entry>,
    test: Vec<Entry>,
    /// cumulative training seconds, for length-weighted file choice
    cumulative: Vec<f64>,
    rates: Rates,
    heads: Vec<String>,
    head_kind: String,
    skipped: AtomicUsize,
}

/// Crops attempted before giving up on a dataset whose files keep failing.
const MAX_ATTEMPTS: usize = 32;

impl PairedFiles {
    /// Checks each pair's files, skipping (with a warning) the missing and unreadable ones.
    pub fn new(
        name: &str,
        train: Vec<Pair>,
        validation: Vec<Pair>,
        test: Vec<Pair>,
        rates: Rates,
        heads: Vec<String>,
        head_kind: &str,
    ) -> Result<PairedFiles> {
        let mut skipped = 0;
        let mut check = |pairs: Vec<Pair>| -> Vec<Entry> {
            pairs
                .into_iter()
                .filter_map(|pair| match Self::entry(&pair) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        eprintln!("warning: skipping {}: {e:#}", pair.wav.display());
                        skipped += 1;
                        None
                    }
                })
                .collect()
        };
        let (train, validation, test) = (check(train), check(validation), check(test));
        if train.is_empty() {
            bail!("{name}: no usable training files ({skipped} skipped)");
        }
        let cumulative = train
            .iter()
            .scan(0.0, |acc, e| {
                *acc += e.seconds;
                Some(*acc)
            })
            .collect();
        Ok(PairedFiles {
            name: name.into(),
            train,
            validation,
            test,
            cumulative,
            rates,
            heads,
            head_kind: head_kind.into(),
            skipped: AtomicUsize::new(skipped),
        })
    }

    fn entry(pair: &Pair) -> Result<Entry> {
        if !pair.midi.is_file() {
            bail!("MIDI file {} is missing", pair.midi.display());
        }
        let (rate, frames) = wav_info(&pair.wav)?;
        if rate == 0 || frames == 0 {
            bail!("empty audio");
        }
        Ok(Entry {
            pair: pair.clone(),
            rate,
            seconds: frames as f64 / rate as f64,
        })
    }

    /// `frames` roll frames and the matching audio, starting at roll frame `start`.
    fn crop(&self, entry: &Entry, start: usize, frames: usize) -> Result<Clip> {
        let midi = MidiFile::load(&entry.pair.midi)
            .with_context(|| format!("corrupt MIDI {}", entry.pair.midi.display()))?;
        let mut roll = midi
            .roll_frames(self.rates.midi_rate, start + frames)
            .frames;
        let roll = roll.split_off(start);
        let audio = self.audio(
            entry,
            start as f64 / self.rates.midi_rate as f64,
            frames * self.rates.hold(),
        )?;
        Ok(Clip {
            frames: roll,
            audio,
            head: entry.pair.head,
        })
    }

    /// `samples` samples at the model rate from `seconds` into the recording.
    fn audio(&self, entry: &Entry, seconds: f64, samples: usize) -> Result<Vec<f32>> {
        let from = (seconds * entry.rate as f64).round() as u64;
        let count = (samples as u64 * entry.rate as u64).div_ceil(self.rates.sample_rate as u64)
            as usize
            + 1;
        let (mono, rate) = read_mono(&entry.pair.wav, from, count)?;
        if rate != entry.rate {
            bail!(
                "its sample rate changed from {} to {rate} Hz while training",
                entry.rate
            );
        }
        let mut out = resample(&mono, entry.rate, self.rates.sample_rate)?;
        out.resize(samples, 0.0);
        Ok(out)
    }

    fn skip(&self, entry: &Entry, e: anyhow::Error) {
        eprintln!(
            "warning: skipping a crop of {}: {e:#}",
            entry.pair.wav.display()
        );
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Source for PairedFiles {
    fn heads(&self) -> Vec<String> {
        self.heads.clone()
    }

    fn head_kind(&self) -> Option<String> {
        Some(self.head_kind.clone())
    }

    fn train_clip(&self, rng: &mut ChaCha8Rng, frames: usize) -> Result<Clip> {
        let total = *self.cumulative.last().unwrap();
        for _ in 0..MAX_ATTEMPTS {
            let pick = rng.random_range(0.0..total);
            let index = self
                .cumulative
                .partition_point(|&c| c <= pick)
                .min(self.train.len() - 1);
            let entry = &self.train[index];
            let available = (entry.seconds * self.rates.midi_rate as f64) as usize;
            let start = rng.random_range(0..=available.saturating_sub(frames));
            match self.crop(entry, start, frames) {
                Ok(clip) => return Ok(clip),
                Err(e) => self.skip(entry, e),
            }
        }
        bail!(
            "{}: {MAX_ATTEMPTS} crops in a row failed; see the warnings above",
            self.name
        )
    }

    fn held_out(&self, split: Split, frames: usize, limit: usize) -> Result<Vec<Clip>> {
        let entries = match split {
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        };
        if entries.is_empty() {
            bail!("{}: the {split:?} split has no usable files", self.name);
        }
        let mut clips = Vec::new();
        for entry in entries {
            if clips.len() >= limit {
                break;
            }
            let whole = (entry.seconds * self.rates.midi_rate as f64).ceil() as usize;
            match self.crop(entry, 0, whole) {
                Ok(c) => clips.extend(segments(
                    &c.frames,
                    &c.audio,
                    self.rates.hold(),
                    c.head,
                    frames,
                )),
                Err(e) => self.skip(entry, e),
            }
        }
        clips.truncate(limit);
        Ok(clips)
    }

    fn describe(&self) -> String {
        format!("{} ({} training files)", self.name, self.train.len())
    }

    fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }
}
