//! Live playing: MIDI events with sample offsets in, audio out, through the one encoder.
//!
//! A frame's keys take effect at the frame's first sample, as in file rendering. That sample
//! can lie before the event (an event mid-frame belongs to the frame it falls in), so a
//! player without latency applies a change at the start of the current block when its frame
//! began in an earlier one. With a latency of at least one frame
//! ([`Player::frame_latency`]) every change lands exactly on its frame's first sample and the
//! output is the file renderer's, sample for sample, delayed by that latency, whatever the
//! block sizes: hosts compensate a latency the plugin reports.
//!
//! The engine is boxed and optional so a plugin can hand engines in and out without the
//! audio thread ever allocating or freeing: without one the player stays silent but still
//! follows the keys, so a model that arrives later plays the notes already held.

use std::collections::VecDeque;

use crate::engine::{Engine, Outputs};
use crate::roll::{frame_of_event, frame_of_sample, frame_start, ChannelEvent, RollEncoder};

/// Events that can wait for their frame at once; more in one block are dropped, not
/// allocated for.
pub const EVENT_CAPACITY: usize = 8192;

/// An [`Engine`] driven by MIDI events.
pub struct Player {
    engine: Option<Box<Engine>>,
    encoder: RollEncoder,
    /// Host sample index of the next block's first sample.
    position: u64,
    /// Output delay in samples: model sample `t` is output at host sample `t + latency`.
    latency: u64,
    /// Events (host sample, event) whose frame has not started yet.
    pending: VecDeque<(u64, ChannelEvent)>,
    keys_dirty: bool,
}

/// The latency that makes live playing exact for MIDI rates of at least `min_midi_rate`:
/// the longest frame, `ceil(sample_rate / min_midi_rate)` samples.
pub fn frame_latency(sample_rate: u32, min_midi_rate: u32) -> u64 {
    (sample_rate as u64).div_ceil(min_midi_rate.max(1) as u64)
}

impl Player {
    pub fn new(engine: Engine) -> Player {
        let mut p = Player::silent();
        p.engine = Some(Box::new(engine));
        p
    }

    /// A player without an engine: silent, but it tracks keys and pedal.
    pub fn silent() -> Player {
        Player {
            engine: None,
            encoder: RollEncoder::new(),
            position: 0,
            latency: 0,
            pending: VecDeque::with_capacity(EVENT_CAPACITY),
            keys_dirty: true,
        }
    }

    /// Delays the output by `samples` (see [`frame_latency`]); takes effect after a reset.
    pub fn set_latency(&mut self, samples: u64) {
        self.latency = samples;
        self.reset();
    }

    pub fn latency(&self) -> u64 {
        self.latency
    }

    /// The host sample the next block starts at, as the player counts (see [`Player::align`]).
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_deref()
    }

    /// The engine, e.g. to change the head. Keys set behind the player's back are
    /// overwritten at its next event.
    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        self.engine.as_deref_mut()
    }

    /// The encoder: held keys, pedal and the current roll (for displays).
    pub fn encoder(&self) -> &RollEncoder {
        &self.encoder
    }

    /// Exchanges the playing engine with `slot` (e.g. a new model prepared on another
    /// thread; the old one comes back in `slot`) and keeps the keys that sound. Only
    /// pointers move: nothing is allocated or freed.
    pub fn swap_engine(&mut self, slot: &mut Option<Box<Engine>>) {
        std::mem::swap(&mut self.engine, slot);
        // frames are counted at the new model's MIDI rate from here on
        self.recount_frames();
        self.keys_dirty = true;
    }

    /// Sets the encoder's frame to the one the next model sample falls in, at the engine's
    /// MIDI rate (after the engine or the sample count changed).
    fn recount_frames(&mut self) {
        if let Some(e) = &self.engine {
            let model_position = self.position.saturating_sub(self.latency);
            self.encoder.rebase(frame_of_sample(
                model_position,
                e.sample_rate(),
                e.midi_rate(),
            ));
        }
    }

    /// Counts host samples on the host's timeline from here on: the next block's first sample
    /// is `position` (where the host's transport is). Why: the frame grid is anchored at the
    /// player's own sample 0, and a host that runs the plugin before its transport starts
    /// (Ardour processes from the moment its engine runs) would otherwise put every frame
    /// boundary some samples off the timeline's, so a bounce would come out shifted against
    /// the file render by that much (measured in Ardour at 48 kHz: 8 samples with 1200 Hz
    /// frames; 16 or 32 with 1000 Hz frames, by the host's block size). Events waiting for
    /// their frame move with the count; the keys stay, and frames are counted from there.
    /// Never allocates.
    pub fn align(&mut self, position: u64) {
        if position == self.position {
            return;
        }
        for (at, _) in self.pending.iter_mut() {
            *at = (*at + position).saturating_sub(self.position);
        }
        self.position = position;
        self.recount_frames();
    }

    /// Silence: every key and the pedal up, the model's state cleared, time back to 0.
    pub fn reset(&mut self) {
        self.encoder.reset();
        if let Some(e) = &mut self.engine {
            e.reset();
        }
        self.position = 0;
        self.pending.clear();
        self.keys_dirty = false;
    }

    /// Renders one block. `events` are `(sample offset in this block, event)` in time order,
    /// each a [`ChannelEvent`] or a `KeyEvent` (channel 1); offsets past the block's end count
    /// as its last sample. Mono: a stereo model's channels folded to their mean. Never
    /// allocates.
    pub fn process<E: Into<ChannelEvent>>(
        &mut self,
        events: impl IntoIterator<Item = (u32, E)>,
        out: &mut [f32],
    ) {
        self.process_outputs(events, Outputs::Mono(out));
    }

    /// As [`Player::process`] into a stereo pair: a stereo model's two channels, a mono
    /// model's one in both. Never allocates.
    pub fn process_stereo<E: Into<ChannelEvent>>(
        &mut self,
        events: impl IntoIterator<Item = (u32, E)>,
        left: &mut [f32],
        right: &mut [f32],
    ) {
        self.process_outputs(events, Outputs::stereo(left, right));
    }

    /// As [`Player::process`] into one channel or a stereo pair. Never allocates.
    pub fn process_outputs<E: Into<ChannelEvent>>(
        &mut self,
        events: impl IntoIterator<Item = (u32, E)>,
        mut out: Outputs<'_>,
    ) {
        let len = out.len() as u64;
        for (offset, event) in events {
            if self.pending.len() < self.pending.capacity() {
                self.pending.push_back((
                    self.position + (offset as u64).min(len.saturating_sub(1)),
                    event.into(),
                ));
            }
        }
        // output sample i is model sample `first + i`; model time starts `latency` late
        let first = self.position as i64 - self.latency as i64;
        let silent_lead = (-first).clamp(0, len as i64) as usize;
        out.part(0..silent_lead)
            .channels()
            .for_each(|c| c.fill(0.0));
        let (start, end) = ((first.max(0)) as u64, (first + len as i64).max(0) as u64);
        let at = |sample: u64| silent_lead + (sample - start) as usize;
        let mut cursor = start;
        let rates = self
            .engine
            .as_ref()
            .map(|e| (e.sample_rate(), e.midi_rate()));
        while let Some(&(at_sample, event)) = self.pending.front() {
            if let Some((sr, mr)) = rates {
                let frame = frame_of_event(at_sample, sr, mr);
                let frame_begins = frame_start(frame, sr, mr);
                if frame_begins >= end {
                    break; // its frame starts in a later block
                }
                if frame > self.encoder.frame() {
                    // everything before this frame is final: render up to its first sample
                    let stop = frame_begins.clamp(cursor, end);
                    self.render(out.part(at(cursor)..at(stop)));
                    cursor = stop;
                    self.encoder.advance_to(frame);
                }
            }
            self.pending.pop_front();
            self.encoder.apply_live(event, at_sample);
            if event.event.clears_state() {
                if let Some(e) = &mut self.engine {
                    e.reset();
                }
            }
            self.keys_dirty = true;
        }
        self.render(out.part(at(cursor)..len as usize));
        self.position += len;
    }

    fn render(&mut self, mut out: Outputs<'_>) {
        let Some(engine) = &mut self.engine else {
            out.channels().for_each(|c| c.fill(0.0));
            return;
        };
        if self.keys_dirty {
            engine.set_keys(&self.encoder.roll());
            self.keys_dirty = false;
        }
        if !out.is_empty() {
            engine.process_outputs(out);
        }
    }
}
