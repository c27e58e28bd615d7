//! The piano-roll encoder: MIDI events in, the 88-key velocity frame the model hears out.
//!
//! One state machine serves live playing (events with sample offsets, see
//! [`crate::player::Player`]) and whole files ([`crate::midi_file`]), so the plugin, the
//! renderer and the trainer all feed the model exactly what the checkpoints were trained on:
//!
//! * A key's value is its note-on velocity from frame `floor(t_on · midi_rate)` up to, not
//!   including, frame `floor(t_off · midi_rate)`. A frame's value is the state after every
//!   event of that frame, so a note shorter than a frame may never sound (as in training).
//! * While the sustain pedal (CC64 ≥ 64) is down, each key keeps the running maximum of its
//!   value since the frame the pedal went down; at pedal up the roll returns to the keys
//!   actually held.
//! * A note-off at the same timestamp as its note-on does not end that note (pretty_midi's
//!   rule, which the training data went through): simultaneous off/on pairs re-strike.

use crate::model::{KEYS, LOWEST_NOTE};

/// One 88-key frame of velocities (0 = silent), A0 first.
pub type KeyFrame = [u8; KEYS];

/// The MIDI messages the encoder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEvent {
    /// Note-on; velocity 0 is a note-off, as MIDI running status uses it.
    NoteOn {
        note: u8,
        velocity: u8,
    },
    NoteOff {
        note: u8,
    },
    /// Sustain pedal (CC64) value.
    Sustain {
        value: u8,
    },
    /// CC123 (and the mode messages CC124–127): release every key; the pedal still holds.
    AllNotesOff,
    /// CC120: silence now, pedal included.
    AllSoundOff,
    /// CC121: controllers to their defaults, i.e. pedal up.
    ResetControllers,
    /// System reset (0xFF) or a host's panic: everything off and the model's state cleared.
    Reset,
}

impl KeyEvent {
    /// Decodes a channel voice message (status byte with any channel, two data bytes).
    pub fn from_midi(status: u8, data1: u8, data2: u8) -> Option<KeyEvent> {
        match (status & 0xF0, data1) {
            (0x90, note) => Some(KeyEvent::NoteOn {
                note,
                velocity: data2,
            }),
            (0x80, note) => Some(KeyEvent::NoteOff { note }),
            (0xB0, 64) => Some(KeyEvent::Sustain { value: data2 }),
            (0xB0, 120) => Some(KeyEvent::AllSoundOff),
            (0xB0, 121) => Some(KeyEvent::ResetControllers),
            (0xB0, 123..=127) => Some(KeyEvent::AllNotesOff),
            _ if status == 0xFF => Some(KeyEvent::Reset),
            _ => None,
        }
    }

    /// True for the events after which the model's state must be cleared (instant silence).
    pub fn clears_state(self) -> bool {
        matches!(self, KeyEvent::AllSoundOff | KeyEvent::Reset)
    }
}

fn key_index(note: u8) -> Option<usize> {
    let k = note.checked_sub(LOWEST_NOTE)? as usize;
    (k < KEYS).then_some(k)
}

/// Streaming encoder state.
#[derive(Debug, Clone)]
pub struct RollEncoder {
    /// Velocity of each key that is physically held.
    held: KeyFrame,
    /// Timestamp of each held key's note-on (see the same-timestamp rule above).
    onset: [u64; KEYS],
    pedal: bool,
    /// The pedal went down during the current frame: the running maximum restarts here.
    restart: bool,
    /// The roll of the previous frame, which the pedal's running maximum continues from.
    base: KeyFrame,
    frame: u64,
}

impl Default for RollEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RollEncoder {
    pub fn new() -> Self {
        RollEncoder {
            held: [0; KEYS],
            onset: [0; KEYS],
            pedal: false,
            restart: false,
            base: [0; KEYS],
            frame: 0,
        }
    }

    /// Back to silence at frame 0, pedal up.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The frame the encoder is in.
    pub fn frame(&self) -> u64 {
        self.frame
    }

    pub fn pedal_down(&self) -> bool {
        self.pedal
    }

    /// Keys physically held (without the pedal's sustain).
    pub fn held(&self) -> &KeyFrame {
        &self.held
    }

    /// Moves on to frame `frame`; earlier frames are final. Moving backwards is ignored.
    pub fn advance_to(&mut self, frame: u64) {
        if frame > self.frame {
            self.base = self.roll();
            self.restart = false;
            self.frame = frame;
        }
    }

    /// Renames the current frame (e.g. after a switch to a model with another MIDI rate)
    /// without touching any key or the pedal.
    pub fn rebase(&mut self, frame: u64) {
        self.frame = frame;
    }

    /// Applies one event in the current frame; `stamp` is the event's time in any unit that
    /// only grows (samples when streaming, ticks for files).
    pub fn apply(&mut self, event: KeyEvent, stamp: u64) {
        match event {
            KeyEvent::NoteOn { note, velocity: 0 } | KeyEvent::NoteOff { note } => {
                if let Some(k) = key_index(note) {
                    if !(self.held[k] > 0 && self.onset[k] == stamp) {
                        self.held[k] = 0;
                    }
                }
            }
            KeyEvent::NoteOn { note, velocity } => {
                if let Some(k) = key_index(note) {
                    self.held[k] = velocity.min(127);
                    self.onset[k] = stamp;
                }
            }
            KeyEvent::Sustain { value } => self.set_pedal(value >= 64),
            KeyEvent::ResetControllers => self.set_pedal(false),
            KeyEvent::AllNotesOff => self.held = [0; KEYS],
            KeyEvent::AllSoundOff | KeyEvent::Reset => {
                let frame = self.frame;
                *self = Self::new();
                self.frame = frame;
            }
        }
    }

    fn set_pedal(&mut self, down: bool) {
        if down && !self.pedal {
            self.restart = true;
        }
        self.pedal = down;
    }

    /// The current frame's roll.
    pub fn roll(&self) -> KeyFrame {
        if !self.pedal || self.restart {
            return self.held;
        }
        let mut r = self.held;
        for (v, b) in r.iter_mut().zip(&self.base) {
            *v = (*v).max(*b);
        }
        r
    }
}

/// A whole piano roll at the MIDI rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Roll {
    pub midi_rate: u32,
    pub frames: Vec<KeyFrame>,
}

impl Roll {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames.len() as f64 / self.midi_rate as f64
    }

    /// First output sample of frame `k` at `sample_rate`: `floor(k · sample_rate / midi_rate)`.
    pub fn frame_start(&self, k: u64, sample_rate: u32) -> u64 {
        frame_start(k, sample_rate, self.midi_rate)
    }

    /// Number of output samples the whole roll lasts at `sample_rate`.
    pub fn samples(&self, sample_rate: u32) -> u64 {
        self.frame_start(self.frames.len() as u64, sample_rate)
    }

    /// Runs of identical frames as `(first frame, end frame, keys)`: the engine only needs
    /// to hear about changes.
    pub fn segments(&self) -> impl Iterator<Item = (u64, u64, &KeyFrame)> + '_ {
        let mut start = 0usize;
        std::iter::from_fn(move || {
            let first = self.frames.get(start)?;
            let len = self.frames[start..]
                .iter()
                .take_while(|f| *f == first)
                .count();
            let seg = (start as u64, (start + len) as u64, first);
            start += len;
            Some(seg)
        })
    }
}

/// First output sample of MIDI frame `k`: `floor(k · sample_rate / midi_rate)`, exact.
pub fn frame_start(k: u64, sample_rate: u32, midi_rate: u32) -> u64 {
    ((k as u128 * sample_rate as u128) / midi_rate as u128) as u64
}

/// The MIDI frame whose samples include output sample `s`: the last `k` with
/// `frame_start(k) <= s`, exact. This inverts [`frame_start`], so a host that places an event
/// at the sample where its frame starts (`floor(t · sample_rate)` for a time on the frame grid)
/// gets the frame the file renderer gives that time, at 44.1 kHz too.
pub fn frame_of_sample(s: u64, sample_rate: u32, midi_rate: u32) -> u64 {
    // frame_start(k) <= s  ⇔  k · sr < (s + 1) · mr
    (((s as u128 + 1) * midi_rate as u128 - 1) / sample_rate as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const C4: u8 = 60;
    const K: usize = (C4 - LOWEST_NOTE) as usize;

    fn on(note: u8, velocity: u8) -> KeyEvent {
        KeyEvent::NoteOn { note, velocity }
    }

    #[test]
    fn note_on_off_and_velocity_zero() {
        let mut e = RollEncoder::new();
        e.apply(on(C4, 90), 0);
        assert_eq!(e.roll()[K], 90);
        e.advance_to(1);
        e.apply(on(C4, 0), 10);
        assert_eq!(e.roll()[K], 0);
        e.apply(on(C4, 50), 11);
        e.apply(KeyEvent::NoteOff { note: C4 }, 12);
        assert_eq!(e.roll()[K], 0);
    }

    #[test]
    fn out_of_range_notes_are_ignored() {
        let mut e = RollEncoder::new();
        e.apply(on(20, 90), 0);
        e.apply(on(109, 90), 0);
        assert_eq!(e.roll(), [0; KEYS]);
        e.apply(on(21, 1), 0);
        e.apply(on(108, 127), 0);
        assert_eq!((e.roll()[0], e.roll()[87]), (1, 127));
    }

    #[test]
    fn pedal_keeps_running_maximum_and_releases() {
        let mut e = RollEncoder::new();
        e.apply(KeyEvent::Sustain { value: 127 }, 0);
        e.apply(on(C4, 40), 0);
        e.advance_to(1);
        e.apply(KeyEvent::NoteOff { note: C4 }, 1);
        assert_eq!(e.roll()[K], 40, "released key sustained");
        e.advance_to(2);
        e.apply(on(C4, 20), 2);
        assert_eq!(e.roll()[K], 40, "softer repeat keeps the louder value");
        e.advance_to(3);
        e.apply(on(C4, 100), 3);
        assert_eq!(e.roll()[K], 100);
        e.advance_to(4);
        e.apply(KeyEvent::NoteOff { note: C4 }, 4);
        e.apply(KeyEvent::Sustain { value: 10 }, 4);
        assert_eq!(e.roll()[K], 0, "pedal up returns to held keys");
    }

    #[test]
    fn pedal_running_maximum_restarts_at_a_new_press() {
        let mut e = RollEncoder::new();
        e.apply(KeyEvent::Sustain { value: 127 }, 0);
        e.apply(on(C4, 100), 0);
        e.advance_to(1);
        e.apply(KeyEvent::NoteOff { note: C4 }, 1);
        // pedal up and down again within the same frame: a new interval starts here
        e.advance_to(5);
        e.apply(KeyEvent::Sustain { value: 0 }, 5);
        e.apply(KeyEvent::Sustain { value: 127 }, 5);
        assert_eq!(e.roll()[K], 0);
        // a note released in the frame where the pedal comes back is not caught either
        e.advance_to(6);
        assert_eq!(e.roll()[K], 0);
    }

    #[test]
    fn same_stamp_note_off_does_not_end_the_new_note() {
        let mut e = RollEncoder::new();
        e.apply(on(C4, 60), 0);
        e.advance_to(3);
        e.apply(on(C4, 70), 30); // re-strike, note-off of the old note comes after it
        e.apply(KeyEvent::NoteOff { note: C4 }, 30);
        assert_eq!(e.roll()[K], 70);
    }

    #[test]
    fn all_notes_off_respects_pedal_and_sound_off_does_not() {
        let mut e = RollEncoder::new();
        e.apply(KeyEvent::Sustain { value: 127 }, 0);
        e.apply(on(C4, 60), 0);
        e.advance_to(1);
        e.apply(KeyEvent::AllNotesOff, 1);
        assert_eq!(e.roll()[K], 60);
        e.apply(KeyEvent::AllSoundOff, 1);
        assert_eq!(e.roll(), [0; KEYS]);
        assert!(!e.pedal_down());
        assert_eq!(e.frame(), 1);
    }

    #[test]
    fn decodes_raw_midi() {
        assert_eq!(KeyEvent::from_midi(0x93, 60, 10), Some(on(60, 10)));
        assert_eq!(
            KeyEvent::from_midi(0x80, 60, 10),
            Some(KeyEvent::NoteOff { note: 60 })
        );
        assert_eq!(
            KeyEvent::from_midi(0xB0, 64, 64),
            Some(KeyEvent::Sustain { value: 64 })
        );
        assert_eq!(
            KeyEvent::from_midi(0xB5, 123, 0),
            Some(KeyEvent::AllNotesOff)
        );
        assert_eq!(KeyEvent::from_midi(0xB0, 7, 100), None);
    }

    #[test]
    fn frame_starts_round_down() {
        // 48 kHz with a 1764 Hz MIDI rate: 27.21 samples per frame
        assert_eq!(frame_start(1, 48_000, 1764), 27);
        assert_eq!(frame_start(1764, 48_000, 1764), 48_000);
        // every sample belongs to exactly the frame whose span holds it, at any rate pair
        for (sr, mr) in [
            (48_000, 1764),
            (44_100, 1000),
            (48_000, 1000),
            (22_050, 1200),
            (192_000, 1764),
        ] {
            for s in 0..5000 {
                let f = frame_of_sample(s, sr, mr);
                assert!(
                    frame_start(f, sr, mr) <= s && s < frame_start(f + 1, sr, mr),
                    "{sr}/{mr}: sample {s} in frame {f}"
                );
            }
        }
        // sample 27 is the first of frame 1 (27.21 rounded down), as the renderer plays it
        assert_eq!(frame_of_sample(27, 48_000, 1764), 1);
        assert_eq!(frame_of_sample(26, 48_000, 1764), 0);
    }
}
