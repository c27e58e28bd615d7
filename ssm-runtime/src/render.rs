//! Whole-file rendering and WAV output (what `piano-ssm render` does).

use std::path::Path;

use crate::engine::Engine;
use crate::roll::Roll;

/// Renders a whole roll; `progress(done, total)` is called as samples are written.
pub fn render_roll(
    engine: &mut Engine,
    roll: &Roll,
    mut progress: impl FnMut(u64, u64),
) -> Vec<f32> {
    let sr = engine.sample_rate();
    let total = roll.samples(sr);
    let mut out = vec![0.0f32; total as usize];
    for (first, end, keys) in roll.segments() {
        let (a, b) = (
            roll.frame_start(first, sr) as usize,
            roll.frame_start(end, sr) as usize,
        );
        engine.set_keys(keys);
        // chunks keep the progress bar moving through long held chords
        for chunk in out[a..b].chunks_mut(sr as usize) {
            engine.process(chunk);
        }
        progress(b as u64, total);
    }
    out
}

/// WAV sample formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    F32,
    S16,
    S24,
}

impl WavFormat {
    pub fn parse(s: &str) -> Option<WavFormat> {
        match s {
            "f32" => Some(WavFormat::F32),
            "s16" => Some(WavFormat::S16),
            "s24" => Some(WavFormat::S24),
            _ => None,
        }
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
) -> std::io::Result<usize> {
    let (bits, sample_format) = match format {
        WavFormat::F32 => (32, hound::SampleFormat::Float),
        WavFormat::S16 => (16, hound::SampleFormat::Int),
        WavFormat::S24 => (24, hound::SampleFormat::Int),
    };
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: bits,
        sample_format,
    };
    let tmp = crate::fsutil::temp_path(path);
    let mut clipped = 0;
    let result = (|| -> Result<(), hound::Error> {
        let mut w = hound::WavWriter::create(&tmp, spec)?;
        let full = match format {
            WavFormat::F32 => 1.0,
            WavFormat::S16 => 32767.0,
            WavFormat::S24 => 8_388_607.0,
        };
        for &s in samples {
            for _ in 0..channels {
                match format {
                    WavFormat::F32 => w.write_sample(s)?,
                    _ => {
                        if !(-1.0..=1.0).contains(&s) {
                            clipped += 1;
                        }
                        w.write_sample((s.clamp(-1.0, 1.0) * full).round() as i32)?
                    }
                }
            }
        }
        w.finalize()
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map(|_| clipped / channels as usize),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(match e {
                hound::Error::IoError(io) => io,
                other => std::io::Error::other(other.to_string()),
            })
        }
    }
}
