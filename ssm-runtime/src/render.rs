//! Rendering key frames to audio and writing WAV files, streamed: a render holds one buffer
//! of audio, never the whole piece, so a file of any length renders in constant memory.

use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::roll::{frame_start, KeyFrame, Roll};

/// Samples rendered between two calls of a render's sink.
const CHUNK: usize = 8192;

/// Renders `frames` (at `midi_rate`) frame by frame, each from its first sample
/// (`floor(k · sample_rate / midi_rate)`), and hands the audio to `sink` in chunks; stops
/// after `limit` samples if given. Returns how many samples were rendered.
pub fn render_frames<E>(
    engine: &mut Engine,
    frames: impl IntoIterator<Item = KeyFrame>,
    midi_rate: u32,
    limit: Option<u64>,
    mut sink: impl FnMut(&[f32]) -> Result<(), E>,
) -> Result<u64, E> {
    let sr = engine.sample_rate();
    let limit = limit.unwrap_or(u64::MAX);
    let mut buf = vec![0.0f32; CHUNK];
    let (mut filled, mut done) = (0usize, 0u64);
    for (k, keys) in frames.into_iter().enumerate() {
        let end = frame_start(k as u64 + 1, sr, midi_rate).min(limit);
        engine.set_keys(&keys);
        while done < end {
            let n = ((end - done) as usize).min(CHUNK - filled);
            engine.process(&mut buf[filled..filled + n]);
            (filled, done) = (filled + n, done + n as u64);
            if filled == CHUNK {
                sink(&buf)?;
                filled = 0;
            }
        }
        if done >= limit {
            break;
        }
    }
    sink(&buf[..filled])?;
    Ok(done)
}

/// Renders a whole roll into memory; `progress(done, total)` is called as samples are written.
pub fn render_roll(
    engine: &mut Engine,
    roll: &Roll,
    mut progress: impl FnMut(u64, u64),
) -> Vec<f32> {
    let total = roll.samples(engine.sample_rate());
    let mut out = Vec::with_capacity(total as usize);
    let frames = roll.frames.iter().copied();
    let _ = render_frames(engine, frames, roll.midi_rate, None, |chunk| {
        out.extend_from_slice(chunk);
        progress(out.len() as u64, total);
        Ok::<(), std::convert::Infallible>(())
    });
    out
}

/// WAV sample formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WavFormat {
    /// 32-bit float (keeps peaks above full scale)
    F32,
    /// 16-bit integer
    S16,
    /// 24-bit integer
    S24,
}

impl WavFormat {
    fn spec(self, sample_rate: u32, channels: u16) -> hound::WavSpec {
        let (bits, sample_format) = match self {
            WavFormat::F32 => (32, hound::SampleFormat::Float),
            WavFormat::S16 => (16, hound::SampleFormat::Int),
            WavFormat::S24 => (24, hound::SampleFormat::Int),
        };
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format,
        }
    }

    /// Full scale of an integer format.
    fn full_scale(self) -> Option<f32> {
        match self {
            WavFormat::F32 => None,
            WavFormat::S16 => Some(32767.0),
            WavFormat::S24 => Some(8_388_607.0),
        }
    }
}

/// A WAV file written as audio arrives, mono samples repeated on every channel. It goes to a
/// temporary file beside the target and replaces the target only when finished and synced,
/// so a failed or interrupted render never leaves half a file where a good one was.
pub struct WavFile {
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    /// the temporary file again, to sync it once the writer is done
    file: std::fs::File,
    tmp: PathBuf,
    path: PathBuf,
    format: WavFormat,
    channels: u16,
    clipped: u64,
}

impl WavFile {
    pub fn create(
        path: &Path,
        sample_rate: u32,
        format: WavFormat,
        channels: u16,
    ) -> std::io::Result<WavFile> {
        let tmp = crate::fsutil::temp_path(path);
        let file = std::fs::File::create(&tmp)?;
        let sync = file.try_clone()?;
        let buffered = std::io::BufWriter::new(file);
        let writer = match hound::WavWriter::new(buffered, format.spec(sample_rate, channels)) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_error(e));
            }
        };
        Ok(WavFile {
            writer: Some(writer),
            file: sync,
            tmp,
            path: path.to_path_buf(),
            format,
            channels,
            clipped: 0,
        })
    }

    /// Appends mono samples.
    pub fn write(&mut self, samples: &[f32]) -> std::io::Result<()> {
        let w = self.writer.as_mut().expect("written after finish");
        for &s in samples {
            for _ in 0..self.channels {
                match self.format.full_scale() {
                    None => w.write_sample(s),
                    Some(full) => {
                        self.clipped += u64::from(!(-1.0..=1.0).contains(&s));
                        w.write_sample((s.clamp(-1.0, 1.0) * full).round() as i32)
                    }
                }
                .map_err(io_error)?;
            }
        }
        Ok(())
    }

    /// Completes the file, syncs it and moves it over the target. Returns how many samples
    /// had to be clipped (integer formats only).
    pub fn finish(mut self) -> std::io::Result<u64> {
        let writer = self.writer.take().expect("finished once");
        let done = writer
            .finalize()
            .map_err(io_error)
            .and_then(|()| self.file.sync_all())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        done.map(|()| self.clipped)
    }
}

impl Drop for WavFile {
    /// An unfinished file is removed: the target keeps what it held.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn io_error(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Writes mono `samples` as a WAV file with `channels` identical channels, atomically.
/// Returns how many samples had to be clipped (integer formats only).
pub fn write_wav(
    path: &Path,
    samples: &[f32],
    sample_rate: u32,
    format: WavFormat,
    channels: u16,
) -> std::io::Result<u64> {
    let mut file = WavFile::create(path, sample_rate, format, channels)?;
    file.write(samples)?;
    file.finish()
}
