//! Live playing: MIDI events with sample offsets in, audio out, through the one encoder.
//!
//! A frame's keys take effect at the frame's first sample, exactly as in file rendering,
//! whenever that sample lies in the current block. When the frame began in an earlier block
//! (the event arrived mid-frame) the change takes effect at the start of the current block:
//! the only causal choice without adding latency. Hosts that send events on frame
//! boundaries (or render offline with sample-accurate events) get the file renderer's
//! output sample for sample.
//!
//! The engine is boxed and optional so a plugin can hand engines in and out without the
//! audio thread ever allocating or freeing: without one the player stays silent but still
//! follows the keys, so a model that arrives later plays the notes already held.

use crate::engine::Engine;
use crate::roll::{frame_of_sample, frame_start, KeyEvent, RollEncoder};

/// An [`Engine`] driven by MIDI events.
pub struct Player {
    engine: Option<Box<Engine>>,
    encoder: RollEncoder,
    /// Absolute sample index of the next block's first sample.
    position: u64,
    keys_dirty: bool,
}

impl Player {
    pub fn new(engine: Engine) -> Player {
        let mut p = Player::silent();
        p.engine = Some(Box::new(engine));
        p
    }

    /// A player without an engine: silent, but it tracks keys and pedal.
    pub fn silent() -> Player {
        Player { engine: None, encoder: RollEncoder::new(), position: 0, keys_dirty: true }
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
        if let Some(e) = &self.engine {
            // frames are counted at the new model's MIDI rate from here on
            self.encoder.rebase(frame_of_sample(self.position, e.sample_rate(), e.midi_rate()));
        }
        self.keys_dirty = true;
    }

    /// Silence: every key and the pedal up, the model's state cleared, time back to 0.
    pub fn reset(&mut self) {
        self.encoder.reset();
        if let Some(e) = &mut self.engine {
            e.reset();
        }
        self.position = 0;
        self.keys_dirty = false;
    }

    /// Renders one block. `events` are `(sample offset in this block, event)` in time order;
    /// offsets past the block's end count as its last sample. Never allocates.
    pub fn process(&mut self, events: impl IntoIterator<Item = (u32, KeyEvent)>, out: &mut [f32]) {
        let rates = self.engine.as_ref().map(|e| (e.sample_rate(), e.midi_rate()));
        let len = out.len() as u64;
        let mut cursor = 0u64;
        for (offset, event) in events {
            let at = self.position + (offset as u64).min(len.saturating_sub(1));
            if let Some((sr, mr)) = rates {
                let frame = frame_of_sample(at, sr, mr);
                if frame > self.encoder.frame() {
                    // everything before this frame is final: render up to its first sample
                    let start = frame_start(frame, sr, mr).saturating_sub(self.position).clamp(cursor, len);
                    self.render(&mut out[cursor as usize..start as usize]);
                    cursor = start;
                    self.encoder.advance_to(frame);
                }
            }
            self.encoder.apply(event, at);
            if event.clears_state() {
                if let Some(e) = &mut self.engine {
                    e.reset();
                }
            }
            self.keys_dirty = true;
        }
        self.render(&mut out[cursor as usize..]);
        self.position += len;
    }

    fn render(&mut self, out: &mut [f32]) {
        let Some(engine) = &mut self.engine else {
            out.fill(0.0);
            return;
        };
        if self.keys_dirty {
            engine.set_keys(&self.encoder.roll());
            self.keys_dirty = false;
        }
        if !out.is_empty() {
            engine.process(out);
        }
    }
}
