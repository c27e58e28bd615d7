//! The synthetic dataset: generated performances rendered by a sampled grand piano — the
//! Salamander Grand Piano V3 through our sampler ([`super::salamander`]) or a SoundFont's
//! piano through rustysynth.
//!
//! Each clip is a fresh performance starting from silence, so the model's zero initial state
//! matches the target exactly. Clips are deterministic in (seed, index); the test split uses a
//! different seed stream from training.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};
use ssm_runtime::midi_file::{MidiFile, TimedEvent};
use ssm_runtime::roll::KeyEvent;

use super::performance::{Performance, LONE_HOLD};
use super::salamander::{self, Library};
use super::{Clip, Rates, Source, Split};

/// Debian's `fluid-soundfont-gm` (MIT licence): bank 0 program 0 is "Yamaha Grand Piano".
pub const DEFAULT_SOUNDFONT: &str = "/usr/share/sounds/sf2/FluidR3_GM.sf2";
/// Another General MIDI piano, the second "other piano" the listening measures compare with
/// (Debian: timgm6mb-soundfont).
pub const OTHER_SOUNDFONT: &str = "/usr/share/sounds/sf2/TimGM6mb.sf2";
/// The held-out splits' seed streams are this far from the training seed.
const TEST_SEED_OFFSET: u64 = 0x7E57_0000_0000;
const VALIDATION_SEED_OFFSET: u64 = 0x0BAD_0000_0000;

/// Which piano renders the performances: `salamander`, `salamander:DIR` or `FILE.sf2`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ReferencePiano {
    /// The Salamander Grand Piano library in this folder.
    Salamander(PathBuf),
    /// Bank 0 program 0 of this SoundFont.
    SoundFont(PathBuf),
}

impl ReferencePiano {
    pub fn parse(spec: &str) -> Result<ReferencePiano, String> {
        match spec.split_once(':') {
            _ if spec == "salamander" => Ok(ReferencePiano::Salamander(salamander::default_dir())),
            Some(("salamander", dir)) if !dir.is_empty() => {
                Ok(ReferencePiano::Salamander(dir.into()))
            }
            _ if spec.to_ascii_lowercase().ends_with(".sf2") => {
                Ok(ReferencePiano::SoundFont(spec.into()))
            }
            _ => Err(format!(
                "{spec:?}: expected salamander, salamander:DIR or a SoundFont FILE.sf2"
            )),
        }
    }

    /// The default SoundFont (Debian's FluidR3_GM).
    pub fn fluid() -> ReferencePiano {
        ReferencePiano::SoundFont(DEFAULT_SOUNDFONT.into())
    }
}

impl std::fmt::Display for ReferencePiano {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReferencePiano::Salamander(dir) => write!(f, "salamander:{}", dir.display()),
            ReferencePiano::SoundFont(path) => write!(f, "{}", path.display()),
        }
    }
}

/// An opened instrument.
enum Piano {
    Salamander(Arc<Library>),
    SoundFont { font: Arc<SoundFont>, path: PathBuf },
}

pub struct SynthSource {
    piano: Piano,
    rates: Rates,
    seed: u64,
    /// the share of training clips that are lone notes (`Performance::lone_notes`)
    lone_notes: f64,
    /// the longest hold of a lone note, seconds
    lone_hold: f64,
}

impl SynthSource {
    pub fn open(instrument: &ReferencePiano, rates: Rates, seed: u64) -> Result<SynthSource> {
        let piano = match instrument {
            ReferencePiano::Salamander(dir) => {
                let lib = Library::open(dir)?;
                if !lib.is_complete() {
                    eprintln!("warning: incomplete sample library: {}", lib.describe());
                }
                Piano::Salamander(Arc::new(lib))
            }
            ReferencePiano::SoundFont(path) => {
                let mut file = std::fs::File::open(path).with_context(|| {
                    format!("SoundFont {} not found (Debian: apt-get install fluid-soundfont-gm, or pass --instrument FILE.sf2)", path.display())
                })?;
                let font = SoundFont::new(&mut file).map_err(|e| {
                    anyhow::anyhow!("{} is not a usable SoundFont: {e:?}", path.display())
                })?;
                if rates.hold() < 8 || rates.hold() > 1024 {
                    bail!("the SoundFont renderer applies events at frame starts and needs 8..=1024 samples per MIDI frame, not {}", rates.hold());
                }
                Piano::SoundFont {
                    font: Arc::new(font),
                    path: path.clone(),
                }
            }
        };
        Ok(SynthSource {
            piano,
            rates,
            seed,
            lone_notes: 0.0,
            lone_hold: LONE_HOLD,
        })
    }

    /// Makes `share` (0..=1) of the training clips lone notes; the held-out sets stay
    /// performances, so validation losses compare with runs without them.
    pub fn with_lone_notes(mut self, share: f64) -> SynthSource {
        self.lone_notes = share.clamp(0.0, 1.0);
        self
    }

    /// Holds lone notes up to `seconds` (`LONE_HOLD` unless set).
    pub fn with_lone_hold(mut self, seconds: f64) -> SynthSource {
        self.lone_hold = seconds;
        self
    }

    /// The clip for one seed: a performance of `frames` frames and its rendering.
    pub fn clip(&self, seed: u64, frames: usize) -> Result<Clip> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let perf = Performance::generate(&mut rng, frames as u64, self.rates.midi_rate);
        self.clip_of(&perf, frames)
    }

    /// The clip of a performance.
    fn clip_of(&self, perf: &Performance, frames: usize) -> Result<Clip> {
        let roll = roll_of(perf, self.rates.midi_rate)
            .roll_frames(self.rates.midi_rate, frames)
            .frames;
        let audio = self.render(perf, frames)?;
        Ok(Clip {
            frames: roll,
            audio,
            head: 0,
        })
    }

    /// Renders a performance: each event lands exactly at its frame's first sample.
    pub fn render(&self, perf: &Performance, frames: usize) -> Result<Vec<f32>> {
        match &self.piano {
            Piano::Salamander(lib) => {
                lib.render(perf, self.rates.sample_rate, self.rates.hold(), frames)
            }
            Piano::SoundFont { font, .. } => self.render_soundfont(font, perf, frames),
        }
    }

    /// The SoundFont: the synthesizer's block size is the frame length and rendering stops at
    /// frame starts. rustysynth starts a voice one block after its note-on, so one block is
    /// rendered ahead and dropped.
    fn render_soundfont(
        &self,
        font: &Arc<SoundFont>,
        perf: &Performance,
        frames: usize,
    ) -> Result<Vec<f32>> {
        let hold = self.rates.hold();
        let mut audio = self.render_blocks(font, perf, frames + 1)?;
        audio.drain(..hold);
        Ok(audio)
    }

    fn render_blocks(
        &self,
        font: &Arc<SoundFont>,
        perf: &Performance,
        frames: usize,
    ) -> Result<Vec<f32>> {
        let hold = self.rates.hold();
        let mut settings = SynthesizerSettings::new(self.rates.sample_rate as i32);
        settings.block_size = hold;
        settings.maximum_polyphony = 256;
        settings.enable_reverb_and_chorus = false;
        let mut synth = Synthesizer::new(font, &settings)
            .map_err(|e| anyhow::anyhow!("SoundFont synthesizer: {e:?}"))?;
        let total = frames * hold;
        let (mut left, mut right) = (vec![0f32; total], vec![0f32; total]);
        let mut done = 0usize;
        for &(frame, event) in &perf.events {
            let at = (frame as usize * hold).min(total);
            synth.render(&mut left[done..at], &mut right[done..at]);
            done = at;
            if done == total {
                break;
            }
            apply(&mut synth, event);
        }
        synth.render(&mut left[done..], &mut right[done..]);
        Ok(left
            .iter()
            .zip(&right)
            .map(|(l, r)| (l + r) * 0.5)
            .collect())
    }
}

fn apply(synth: &mut Synthesizer, event: KeyEvent) {
    match event {
        KeyEvent::NoteOn { note, velocity } => synth.note_on(0, note as i32, velocity as i32),
        KeyEvent::NoteOff { note } => synth.note_off(0, note as i32),
        KeyEvent::Sustain { value } => synth.process_midi_message(0, 0xB0, 64, value as i32),
        _ => {}
    }
}

/// The performance as timed events, each in the middle of its frame so the encoder's
/// floor(t · rate) lands on that frame whatever the rounding.
pub fn roll_of(perf: &Performance, midi_rate: u32) -> MidiFile {
    let events = perf
        .events
        .iter()
        .enumerate()
        .map(|(i, &(frame, event))| TimedEvent {
            seconds: (frame as f64 + 0.5) / midi_rate as f64,
            tick: i as u64,
            instrument: 0,
            event,
        })
        .collect();
    MidiFile::from_events(events)
}

/// Mixes the seed and a clip index into a clip seed (splitmix64).
pub fn clip_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SynthSource {
    /// The head's label: the piano's name.
    fn label(&self) -> String {
        match &self.piano {
            Piano::Salamander(_) => "Salamander".into(),
            Piano::SoundFont { path, .. } => font_label(path),
        }
    }
}

impl Source for SynthSource {
    fn heads(&self) -> Vec<String> {
        vec![self.label()]
    }

    fn head_kind(&self) -> Option<String> {
        Some("piano".into())
    }

    fn train_clip(&self, rng: &mut ChaCha8Rng, frames: usize) -> Result<Clip> {
        use rand::Rng;
        // decided before the clip's seed is drawn, so that a run without lone notes draws
        // the same clips as before they existed
        if self.lone_notes > 0.0 && rng.random_bool(self.lone_notes) {
            let mut notes = ChaCha8Rng::seed_from_u64(rng.random());
            let perf = Performance::lone_notes(
                &mut notes,
                frames as u64,
                self.rates.midi_rate,
                self.lone_hold,
            );
            return self.clip_of(&perf, frames);
        }
        self.clip(rng.random(), frames)
    }

    fn held_out(&self, split: Split, frames: usize, limit: usize) -> Result<Vec<Clip>> {
        let offset = match split {
            Split::Validation => VALIDATION_SEED_OFFSET,
            Split::Test => TEST_SEED_OFFSET,
        };
        (0..limit as u64)
            .map(|i| self.clip(clip_seed(self.seed.wrapping_add(offset), i), frames))
            .collect()
    }

    fn describe(&self) -> String {
        match &self.piano {
            Piano::Salamander(lib) => format!(
                "synthetic performances rendered by our sampler from the {}, seed {}",
                lib.describe(),
                self.seed
            ),
            Piano::SoundFont { path, .. } => format!(
                "synthetic performances rendered by {} (bank 0, program 0) with rustysynth, seed {}",
                font_label(path),
                self.seed
            ),
        }
    }

    fn skipped(&self) -> usize {
        0
    }
}

fn font_label(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "SoundFont".into(), |s| s.to_string_lossy().into_owned())
}
