//! WAV input (a region of a file, mixed to mono) and output (32-bit float, mono), and
//! band-limited resampling.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rubato::{FftFixedInOut, Resampler};

/// Sample rate and length (frames) of a WAV file, from its header.
pub fn wav_info(path: &Path) -> Result<(u32, u64)> {
    let reader = hound::WavReader::open(path)
        .with_context(|| format!("cannot read WAV {}", path.display()))?;
    let spec = reader.spec();
    Ok((spec.sample_rate, reader.duration() as u64))
}

/// Writes mono `samples` as a 32-bit float WAV file.
pub fn write_mono(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(())
}

/// `frames` frames from `start` (source frames), mono; short files are zero-padded.
pub fn read_mono(path: &Path, start: u64, frames: usize) -> Result<(Vec<f32>, u32)> {
    let (interleaved, channels, rate) = read_interleaved(path, start, frames)?;
    let mut mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|c| c.iter().sum::<f32>() / channels as f32)
        .collect();
    mono.resize(frames, 0.0);
    Ok((mono, rate))
}

/// Up to `frames` frames from `start` (source frames), interleaved as the file holds them;
/// the channel count and rate.
pub fn read_interleaved(path: &Path, start: u64, frames: usize) -> Result<(Vec<f32>, usize, u32)> {
    let mut reader = hound::WavReader::open(path)
        .with_context(|| format!("cannot read WAV {}", path.display()))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        bail!("{}: WAV header declares no channels", path.display());
    }
    let total = reader.duration() as u64;
    reader
        .seek(start.min(total) as u32)
        .with_context(|| format!("cannot seek in {}", path.display()))?;
    let want = frames.saturating_mul(channels);
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().take(want).collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .take(want)
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
    }
    .with_context(|| format!("corrupt audio data in {}", path.display()))?;
    Ok((interleaved, channels, spec.sample_rate))
}

/// Band-limited resampling of a whole buffer; the output has round(len · to / from) samples
/// and no delay.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(input.to_vec());
    }
    let expected = (input.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    let mut rs = FftFixedInOut::<f32>::new(from as usize, to as usize, 1024, 1)?;
    run(&mut rs, input, expected)
}

/// Band-limited resampling by any ratio (output rate / input rate), e.g. to change pitch and
/// rate at once; the output has round(len · ratio) samples and no delay.
pub fn resample_ratio(input: &[f32], ratio: f64) -> Result<Vec<f32>> {
    use rubato::{SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction};
    if !(ratio > 0.0 && ratio.is_finite()) {
        bail!("resampling ratio {ratio} must be positive");
    }
    let params = SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: 256,
        window: WindowFunction::BlackmanHarris2,
    };
    let mut rs = SincFixedIn::<f32>::new(ratio, 1.0, params, 4096, 1)?;
    let expected = (input.len() as f64 * ratio).round() as usize;
    run(&mut rs, input, expected)
}

/// Feeds `input` and then zeros through `rs` until `expected` samples past its delay are out.
fn run(rs: &mut impl Resampler<f32>, input: &[f32], expected: usize) -> Result<Vec<f32>> {
    let delay = rs.output_delay();
    let mut out = Vec::with_capacity(expected + delay + 8192);
    let mut pos = 0;
    let mut chunk = Vec::new();
    while out.len() < expected + delay {
        let need = rs.input_frames_next();
        chunk.clear();
        chunk.resize(need, 0f32);
        if pos < input.len() {
            let n = need.min(input.len() - pos);
            chunk[..n].copy_from_slice(&input[pos..pos + n]);
        }
        pos += need;
        let res = rs.process(std::slice::from_ref(&chunk), None)?;
        out.extend_from_slice(&res[0]);
    }
    Ok(out[delay..delay + expected].to_vec())
}
