//! One MIDI file to one WAV file, streamed: the roll's frames are encoded as the engine needs
//! them and the audio goes to disk as it is rendered, so memory does not grow with the
//! piece. Loudness or peak normalisation takes a second pass over a float copy on disk.

use std::path::{Path, PathBuf};

use ssm_runtime::fsutil::check_target;
use ssm_runtime::notes::NoteMap;
use ssm_runtime::render::render_channels;

use crate::wav::{WavFile, WavFormat};
use ssm_runtime::roll::frame_start;
use ssm_runtime::{Engine, MidiFile, Model};

/// A WAV file's data chunk holds at most 4 GiB (its size field is 32 bits).
const WAV_MAX_BYTES: u64 = u32::MAX as u64 - 64;

/// The render options every file of a batch shares.
pub struct RenderSettings<'a> {
    pub model: &'a Model,
    pub head: usize,
    pub sample_rate: u32,
    pub tail: f64,
    pub duration: Option<f64>,
    pub level: Option<Level>,
    pub format: WavFormat,
    pub channels: u16,
    /// master tuning, A4 in Hz
    pub a4: f64,
    pub notes: NoteMap,
}

/// What a render is scaled to.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// integrated loudness, LUFS (EBU R128)
    Loudness(f64),
    /// sample peak, dBFS
    Peak(f64),
}

/// What a finished render reports.
pub struct Rendered {
    pub seconds: f64,
    pub clipped: u64,
    /// the gain normalisation applied, in dB
    pub gain_db: Option<f64>,
}

impl RenderSettings<'_> {
    /// How many samples `midi` renders to: the roll with its tail, cut at `--duration`.
    pub fn samples(&self, midi: &MidiFile) -> u64 {
        let frames = midi.frame_count(self.model.info.midi_rate, self.tail);
        let all = frame_start(frames, self.sample_rate, self.model.info.midi_rate);
        match self.duration {
            Some(d) => all.min((d * self.sample_rate as f64).round() as u64),
            None => all,
        }
    }

    /// Renders `midi` to `output`; `progress(samples)` is told how many samples were added.
    pub fn render(
        &self,
        midi: &MidiFile,
        output: &Path,
        progress: &dyn Fn(u64),
    ) -> Result<Rendered, String> {
        let total = self.samples(midi);
        self.check_size(total)?;
        let write_error = |e: std::io::Error| format!("cannot write {}: {e}", output.display());
        // a device, FIFO or directory is refused before the render time is spent
        check_target(output).map_err(write_error)?;
        let mut engine =
            Engine::tuned(self.model, self.sample_rate, self.a4).map_err(|e| e.to_string())?;
        engine.set_head(self.head).map_err(|e| e.to_string())?;
        let midi = midi.with_notes(&self.notes);
        let frames = midi.frames(self.model.info.midi_rate, self.tail);
        let limit = Some(total);
        let midi_rate = self.model.info.midi_rate;
        let channels = self.channels as usize;
        let stop = |e: Stop, engine: &Engine| match e {
            Stop::Write(e) => write_error(e),
            Stop::NonFinite => non_finite(engine),
        };
        let Some(level) = self.level else {
            let mut wav = WavFile::create(output, self.sample_rate, self.format, self.channels)
                .map_err(write_error)?;
            let rendered =
                render_channels(&mut engine, frames, midi_rate, limit, channels, |chunk| {
                    progress((chunk.len() / channels) as u64);
                    finite(chunk)?;
                    Ok(wav.write(chunk)?)
                });
            rendered.map_err(|e| stop(e, &engine))?;
            let clipped = wav.finish().map_err(write_error)?;
            return Ok(self.rendered(total, clipped, None));
        };
        // first pass: a float copy beside the output, measured as it is written
        let mut meter = Meter::new(level, self.channels, self.sample_rate)?;
        let draft = draft_target(output);
        let mut wav = WavFile::create(&draft, self.sample_rate, WavFormat::F32, self.channels)
            .map_err(write_error)?;
        let rendered = render_channels(&mut engine, frames, midi_rate, limit, channels, |chunk| {
            progress((chunk.len() / channels) as u64);
            finite(chunk)?;
            meter.add(chunk);
            Ok(wav.write(chunk)?)
        });
        rendered.map_err(|e| stop(e, &engine))?;
        // the draft is removed when dropped, whatever the second pass does
        let draft = wav.finish_draft().map_err(write_error)?;
        let (clipped, gain_db) = self.scale(draft.path(), output, meter.gain_db())?;
        Ok(self.rendered(total, clipped, gain_db))
    }

    fn rendered(&self, samples: u64, clipped: u64, gain_db: Option<f64>) -> Rendered {
        Rendered {
            seconds: samples as f64 / self.sample_rate as f64,
            clipped,
            gain_db,
        }
    }

    /// Second pass: the float draft times the gain, in the output's format.
    fn scale(
        &self,
        draft: &Path,
        output: &Path,
        gain_db: Option<f64>,
    ) -> Result<(u64, Option<f64>), String> {
        let read_error = |e: hound::Error| format!("cannot read back {}: {e}", draft.display());
        let write_error = |e: std::io::Error| format!("cannot write {}: {e}", output.display());
        let gain = gain_db.map_or(1.0, |db| 10f64.powf(db / 20.0)) as f32;
        let mut reader = hound::WavReader::open(draft).map_err(read_error)?;
        let mut wav = WavFile::create(output, self.sample_rate, self.format, self.channels)
            .map_err(write_error)?;
        let mut chunk = Vec::with_capacity(8192);
        for sample in reader.samples::<f32>() {
            chunk.push(sample.map_err(read_error)? * gain);
            if chunk.len() == chunk.capacity() {
                wav.write(&chunk).map_err(write_error)?;
                chunk.clear();
            }
        }
        wav.write(&chunk).map_err(write_error)?;
        Ok((wav.finish().map_err(write_error)?, gain_db))
    }

    /// WAV's 4 GiB limit, checked before the render time is spent.
    fn check_size(&self, samples: u64) -> Result<(), String> {
        let bytes_per_sample: u64 = match self.format {
            WavFormat::F32 => 4,
            WavFormat::S24 => 3,
            WavFormat::S16 => 2,
        };
        let bytes = samples * self.channels as u64 * bytes_per_sample;
        if bytes > WAV_MAX_BYTES {
            let hours = WAV_MAX_BYTES
                / (self.channels as u64 * bytes_per_sample)
                / self.sample_rate as u64
                / 3600;
            return Err(format!(
                "the render lasts {:.1} hours; a WAV file holds about {hours} hours at this \
                 rate, format and channel count (try --duration, --format s16 or a lower \
                 --sample-rate)",
                samples as f64 / self.sample_rate as f64 / 3600.0
            ));
        }
        Ok(())
    }
}

/// The first pass's float file: hidden, beside the output (the same file system).
/// Why a render stopped before its end.
enum Stop {
    Write(std::io::Error),
    /// the model played a NaN or an infinity
    NonFinite,
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Write(e)
    }
}

/// A model that validates cannot overflow on a valid roll; should one still play a NaN or
/// an infinity, the render stops rather than write it (as silence or clipping).
fn finite(chunk: &[f32]) -> Result<(), Stop> {
    match chunk.iter().all(|v| v.is_finite()) {
        true => Ok(()),
        false => Err(Stop::NonFinite),
    }
}

fn non_finite(engine: &Engine) -> String {
    let at = match engine.first_non_finite_layer() {
        Some(layer) => format!("first in layer {}'s state", layer + 1),
        None => "in its output head".into(),
    };
    format!("the model played a NaN or an infinity ({at}); nothing was written")
}

/// The name the first pass's draft is made beside: `out.wav.draft`, itself never created
/// (the draft is a temporary file, `.out.wav.draft.tmp<pid>`, read back, then removed).
fn draft_target(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".draft");
    output.with_file_name(name)
}

/// Measures the first pass for the gain that meets the level asked for.
struct Meter {
    level: Level,
    loudness: ebur128::EbuR128,
    peak: f32,
}

impl Meter {
    fn new(level: Level, channels: u16, sample_rate: u32) -> Result<Meter, String> {
        let loudness = ebur128::EbuR128::new(channels as u32, sample_rate, ebur128::Mode::I)
            .map_err(|e| format!("loudness meter: {e}"))?;
        Ok(Meter {
            level,
            loudness,
            peak: 0.0,
        })
    }

    /// Adds frames interleaved as the file holds them.
    fn add(&mut self, chunk: &[f32]) {
        self.peak = chunk.iter().fold(self.peak, |m, v| m.max(v.abs()));
        if let Level::Loudness(_) = self.level {
            // a meter made for this channel count and rate accepts whole frames
            let _ = self.loudness.add_frames_f32(chunk);
        }
    }

    /// The gain in dB, or `None` for a silent render (nothing to scale).
    fn gain_db(&self) -> Option<f64> {
        match self.level {
            Level::Peak(target) => {
                (self.peak > 0.0).then(|| target - 20.0 * (self.peak as f64).log10())
            }
            Level::Loudness(target) => self
                .loudness
                .loudness_global()
                .ok()
                .filter(|l| l.is_finite())
                .map(|l| target - l),
        }
    }
}
