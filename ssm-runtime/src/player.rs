//! Live playing: MIDI events with sample offsets in, audio out, through the one encoder.
//!
//! A frame's keys take effect at the frame's first sample, exactly as in file rendering,
//! whenever that sample lies in the current block. When the frame began in an earlier block
//! (the event arrived mid-frame) the change takes effect at the start of the current block:
//! the only causal choice without adding latency. Hosts that send events on frame
//! boundaries (or render offline with sample-accurate events) get the file renderer's
//! output sample for sample.

use crate::engine::Engine;
use crate::roll::{frame_of_sample, frame_start, KeyEvent, RollEncoder};

/// An [`Engine`] driven by MIDI events.
pub struct Player {
    engine: Engine,
    encoder: RollEncoder,
    /// Absolute sample index of the next block's first sample.
    position: u64,
    keys_dirty: bool,
}

impl Player {
    pub fn new(engine: Engine) -> Player {
        Player { engine, encoder: RollEncoder::new(), position: 0, keys_dirty: false }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, e.g. to change the head. Changing keys behind the player's back is
    /// undone at its next event.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The encoder: held keys, pedal and the current roll (for displays).
    pub fn encoder(&self) -> &RollEncoder {
        &self.encoder
    }

    /// Replaces the engine (e.g. a new model) and keeps the keys that sound.
    pub fn swap_engine(&mut self, engine: Engine) -> Engine {
        let old = std::mem::replace(&mut self.engine, engine);
        self.engine.set_keys(&self.encoder.roll());
        old
    }

    /// Silence: every key and the pedal up, the model's state cleared, time back to 0.
    pub fn reset(&mut self) {
        self.encoder.reset();
        self.engine.reset();
        self.position = 0;
        self.keys_dirty = false;
    }

    /// Renders one block. `events` are `(sample offset in this block, event)` in time order;
    /// offsets past the block's end count as its last sample. Never allocates.
    pub fn process(&mut self, events: impl IntoIterator<Item = (u32, KeyEvent)>, out: &mut [f32]) {
        let (sr, mr) = (self.engine.sample_rate(), self.engine.midi_rate());
        let len = out.len() as u64;
        let mut cursor = 0u64;
        for (offset, event) in events {
            let at = self.position + (offset as u64).min(len.saturating_sub(1));
            let frame = frame_of_sample(at, sr, mr);
            if frame > self.encoder.frame() {
                // everything before this frame is final: render up to its first sample
                let start = frame_start(frame, sr, mr).saturating_sub(self.position).clamp(cursor, len);
                self.render(&mut out[cursor as usize..start as usize]);
                cursor = start;
                self.encoder.advance_to(frame);
            }
            self.encoder.apply(event, at);
            if event.clears_state() {
                self.engine.reset();
            }
            self.keys_dirty = true;
        }
        self.render(&mut out[cursor as usize..]);
        self.position += len;
    }

    fn render(&mut self, out: &mut [f32]) {
        if self.keys_dirty {
            self.engine.set_keys(&self.encoder.roll());
            self.keys_dirty = false;
        }
        if !out.is_empty() {
            self.engine.process(out);
        }
    }
}
