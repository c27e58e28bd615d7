//! Rendering key frames to audio, streamed: a render holds one buffer of audio, never the
//! whole piece, so a file of any length renders in constant memory.

use crate::engine::Engine;
use crate::roll::{frame_start, KeyFrame, Roll};

/// Samples rendered between two calls of a render's sink.
const CHUNK: usize = 8192;

/// Renders `frames` (at `midi_rate`) frame by frame, each from its first sample
/// (`floor(k · sample_rate / midi_rate)`), and hands the audio to `sink` in chunks; stops
/// after `limit` samples if given. Returns how many samples were rendered. Mono: a stereo
/// model's channels folded to their mean ([`Engine::process`]).
pub fn render_frames<E>(
    engine: &mut Engine,
    frames: impl IntoIterator<Item = KeyFrame>,
    midi_rate: u32,
    limit: Option<u64>,
    sink: impl FnMut(&[f32]) -> Result<(), E>,
) -> Result<u64, E> {
    render_channels(engine, frames, midi_rate, limit, 1, sink)
}

/// As [`render_frames`] in `channels` (1 or 2) channels, the chunks interleaved (left,
/// right, left, …): two are a stereo model's two channels, or a mono model's one in both
/// ([`Engine::process_stereo`]).
pub fn render_channels<E>(
    engine: &mut Engine,
    frames: impl IntoIterator<Item = KeyFrame>,
    midi_rate: u32,
    limit: Option<u64>,
    channels: usize,
    mut sink: impl FnMut(&[f32]) -> Result<(), E>,
) -> Result<u64, E> {
    assert!(
        (1..=2).contains(&channels),
        "a render has 1 or 2 channels, not {channels}"
    );
    let sr = engine.sample_rate();
    let limit = limit.unwrap_or(u64::MAX);
    let mut buf = vec![0.0f32; CHUNK * channels];
    // stereo: the two channels before they are interleaved into `buf`
    let mut pair = vec![0.0f32; if channels == 2 { 2 * CHUNK } else { 0 }];
    let (mut filled, mut done) = (0usize, 0u64);
    for (k, keys) in frames.into_iter().enumerate() {
        let end = frame_start(k as u64 + 1, sr, midi_rate).min(limit);
        engine.set_keys(&keys);
        while done < end {
            let n = ((end - done) as usize).min(CHUNK - filled);
            if channels == 1 {
                engine.process(&mut buf[filled..filled + n]);
            } else {
                let (left, right) = pair.split_at_mut(CHUNK);
                engine.process_stereo(&mut left[..n], &mut right[..n]);
                let frames = buf[2 * filled..2 * (filled + n)].chunks_exact_mut(2);
                for (i, f) in frames.enumerate() {
                    f.copy_from_slice(&[left[i], right[i]]);
                }
            }
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
    sink(&buf[..filled * channels])?;
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

/// Renders a whole roll into memory in two channels: `[left, right]` (a mono model's one
/// channel in both).
pub fn render_roll_stereo(engine: &mut Engine, roll: &Roll) -> [Vec<f32>; 2] {
    let total = roll.samples(engine.sample_rate()) as usize;
    let (mut left, mut right) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let frames = roll.frames.iter().copied();
    let _ = render_channels(engine, frames, roll.midi_rate, None, 2, |chunk| {
        for pair in chunk.chunks_exact(2) {
            left.push(pair[0]);
            right.push(pair[1]);
        }
        Ok::<(), std::convert::Infallible>(())
    });
    [left, right]
}
