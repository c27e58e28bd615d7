//! The piano-roll encoder: MIDI events in, the 88-key velocity frame the model hears out.
//!
//! One state machine serves live playing (events with sample offsets, see
//! [`crate::player::Player`]) and whole files ([`crate::midi_file`]), so the plugin, the
//! renderer and the trainer all feed the model exactly what the checkpoints were trained on:
//! pretty_midi's `get_piano_roll(fs = midi_rate)` (the authors' dataset code), whose rules are
//! these (the differential test `ssm-runtime/tests/pretty_midi_roll.rs` holds us to them):
//!
//! * Notes are kept per instrument (a MIDI channel when live; pretty_midi's (program, channel,
//!   track) for files) and key. A note-on opens a note, also when one is open already. A
//!   note-off (or note-on with velocity 0) ends every open note of its key and instrument that
//!   started at an earlier timestamp; notes that started at the note-off's own timestamp stay
//!   open — unless nothing earlier was open, in which case they are dropped with it.
//! * A note sounds its velocity from frame `floor(t_on · midi_rate)` up to, not including,
//!   frame `floor(t_off · midi_rate)`; a frame's value is the state after every event of that
//!   frame, so a note shorter than a frame may never sound. Notes of one key that overlap
//!   *add*: within an instrument and across instruments.
//! * While an instrument's sustain pedal (CC64 ≥ 64) is down, each of its keys keeps the
//!   running maximum of that instrument's sum since the frame the pedal went down; at pedal up
//!   the roll returns to the notes still open. The instruments' rolls then add.
//! * Values are sums of velocities, clamped to 255 (the pipeline cast its sums to `uint8`,
//!   which wrapped above 255; no real performance gets there).
//!
//! Beyond pretty_midi (which ignores them; a file without them encodes exactly as it says):
//! the **sostenuto pedal** (CC66 ≥ 64) catches the keys of its instrument that sound at the
//! moment it goes down (held, or held by the sustain pedal); each caught key keeps the running
//! maximum of its value, as under the sustain pedal, until the sostenuto lifts. Keys struck
//! later are not caught; a caught key struck again sounds as under the sustain pedal. The
//! **soft pedal** (CC67) passes the encoder by: it changes how hard notes are struck
//! ([`crate::notes::NoteMap`]), not the roll's rules.
//!
//! What live input adds (a file never needs it): CC123 and the mode messages end every open
//! note of their channel, the pedal still holding them; CC120, a system reset or a host's
//! panic clear everything, pedals included; CC121 lifts the channel's pedal. A note-off with
//! no open note does nothing; a note-on for a key the pedal holds opens a new note, which the
//! running maximum compares with what the pedal holds.

use crate::limits::{KEYS, LOWEST_NOTE};

/// One 88-key frame of velocities (0 = silent), A0 first.
pub type KeyFrame = [u8; KEYS];

/// Instruments of a live stream: the 16 MIDI channels.
pub const CHANNELS: usize = 16;

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
    /// Sostenuto pedal (CC66) value.
    Sostenuto {
        value: u8,
    },
    /// Soft pedal, una corda (CC67) value.
    SoftPedal {
        value: u8,
    },
    /// CC123 (and the mode messages CC124–127): release every key; the pedal still holds.
    AllNotesOff,
    /// CC120: silence now, pedal included.
    AllSoundOff,
    /// CC121: controllers to their defaults, i.e. every pedal up.
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
            (0xB0, 66) => Some(KeyEvent::Sostenuto { value: data2 }),
            (0xB0, 67) => Some(KeyEvent::SoftPedal { value: data2 }),
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

/// A key event and the MIDI channel (0..16) it came on. Live input plays one instrument per
/// channel, as a file plays one per channel and track: a note-off on one channel does not end
/// a note of the same key on another, and each channel's pedal holds its own notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelEvent {
    /// `None`: any channel (a CLAP host's wildcard). Such an event applies to every channel,
    /// except a note-on, which opens its note on the first (one note, not sixteen).
    pub channel: Option<u8>,
    pub event: KeyEvent,
}

impl ChannelEvent {
    /// Decodes a channel voice message (status byte with its channel, two data bytes).
    pub fn from_midi(status: u8, data1: u8, data2: u8) -> Option<ChannelEvent> {
        KeyEvent::from_midi(status, data1, data2).map(|event| ChannelEvent {
            channel: Some(status & 0x0F),
            event,
        })
    }
}

/// An event without a channel is on the first.
impl From<KeyEvent> for ChannelEvent {
    fn from(event: KeyEvent) -> ChannelEvent {
        ChannelEvent {
            channel: Some(0),
            event,
        }
    }
}

fn key_index(note: u8) -> Option<usize> {
    let k = note.checked_sub(LOWEST_NOTE)? as usize;
    (k < KEYS).then_some(k)
}

/// The open notes of one key of one instrument: all that the rules above need of them.
#[derive(Debug, Clone, Copy, Default)]
struct OpenNotes {
    /// Sum of their velocities.
    total: u16,
    /// Timestamp of the latest note-on, and the velocities opened at it.
    latest: u64,
    at_latest: u16,
}

/// One instrument's keys and pedal.
#[derive(Debug, Clone)]
struct InstrumentKeys {
    open: [OpenNotes; KEYS],
    pedal: bool,
    /// The pedal went down during the current frame: the running maximum restarts here.
    restart: bool,
    /// This instrument's roll in the previous frame, which the running maximum continues.
    base: [u16; KEYS],
    /// The sostenuto pedal is down.
    sostenuto: bool,
    /// The keys the sostenuto caught when it went down.
    caught: [bool; KEYS],
    /// Listed in the encoder's `active`.
    active: bool,
}

impl InstrumentKeys {
    const SILENT: InstrumentKeys = InstrumentKeys {
        open: [OpenNotes {
            total: 0,
            latest: 0,
            at_latest: 0,
        }; KEYS],
        pedal: false,
        restart: false,
        base: [0; KEYS],
        sostenuto: false,
        caught: [false; KEYS],
        active: false,
    };

    /// Nothing open, the pedal up, nothing held over from the last frame: it adds 0 to
    /// every key until its next event.
    fn is_silent(&self) -> bool {
        !self.pedal
            && !self.caught.contains(&true)
            && self.open.iter().all(|o| o.total == 0)
            && self.base.iter().all(|&b| b == 0)
    }

    fn note_on(&mut self, k: usize, velocity: u8, stamp: u64) {
        let o = &mut self.open[k];
        if o.total > 0 && o.latest == stamp {
            o.at_latest = o.at_latest.saturating_add(velocity as u16);
        } else {
            (o.latest, o.at_latest) = (stamp, velocity as u16);
        }
        o.total = o.total.saturating_add(velocity as u16);
    }

    fn note_off(&mut self, k: usize, stamp: u64) {
        let o = &mut self.open[k];
        let keep = if o.latest == stamp {
            o.at_latest.min(o.total)
        } else {
            0
        };
        let closed = o.total - keep;
        // notes of this very timestamp outlive it only beside earlier ones that it ends
        o.total = if closed > 0 { keep } else { 0 };
        if o.total == 0 {
            o.at_latest = 0;
        }
    }

    /// Every event but the two that clear all instruments.
    fn apply(&mut self, event: KeyEvent, stamp: u64) {
        match event {
            KeyEvent::NoteOn { note, velocity: 0 } | KeyEvent::NoteOff { note } => {
                if let Some(k) = key_index(note) {
                    self.note_off(k, stamp);
                }
            }
            KeyEvent::NoteOn { note, velocity } => {
                if let Some(k) = key_index(note) {
                    self.note_on(k, velocity.min(127), stamp);
                }
            }
            KeyEvent::Sustain { value } => self.set_pedal(value >= 64),
            KeyEvent::Sostenuto { value } => self.set_sostenuto(value >= 64),
            KeyEvent::ResetControllers => {
                self.set_pedal(false);
                self.set_sostenuto(false);
            }
            KeyEvent::AllNotesOff => self.open = [OpenNotes::default(); KEYS],
            KeyEvent::SoftPedal { .. } | KeyEvent::AllSoundOff | KeyEvent::Reset => {}
        }
    }

    fn set_pedal(&mut self, down: bool) {
        if down && !self.pedal {
            self.restart = true;
        }
        self.pedal = down;
    }

    /// Catches the keys sounding now as the sostenuto goes down; lets them go as it lifts.
    fn set_sostenuto(&mut self, down: bool) {
        if down && !self.sostenuto {
            self.caught = std::array::from_fn(|k| self.value(k) > 0);
        } else if !down {
            self.caught = [false; KEYS];
        }
        self.sostenuto = down;
    }

    fn value(&self, k: usize) -> u16 {
        let held = self.open[k].total;
        if (self.pedal && !self.restart) || self.caught[k] {
            held.max(self.base[k])
        } else {
            held
        }
    }
}

/// Streaming encoder state: a fixed set of instruments, allocated up front (the audio thread
/// never allocates). A frame costs in proportion to the instruments that sound, not to all
/// a file has: the silent ones are left out until their next event.
#[derive(Debug, Clone)]
pub struct RollEncoder {
    instruments: Vec<InstrumentKeys>,
    /// The instruments that may sound (each once; capacity for all of them).
    active: Vec<usize>,
    frame: u64,
}

impl Default for RollEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RollEncoder {
    /// An encoder for live input: one instrument per MIDI channel.
    pub fn new() -> Self {
        Self::with_instruments(CHANNELS)
    }

    /// An encoder for `count` instruments (a file's, see [`crate::midi_file`]).
    pub fn with_instruments(count: usize) -> Self {
        let count = count.max(1);
        RollEncoder {
            instruments: vec![InstrumentKeys::SILENT; count],
            active: Vec::with_capacity(count),
            frame: 0,
        }
    }

    /// Back to silence at frame 0, pedals up.
    pub fn reset(&mut self) {
        self.silence();
        self.frame = 0;
    }

    fn silence(&mut self) {
        for &i in &self.active {
            self.instruments[i] = InstrumentKeys::SILENT;
        }
        self.active.clear();
    }

    fn sounding(&self) -> impl Iterator<Item = &InstrumentKeys> + '_ {
        self.active.iter().map(|&i| &self.instruments[i])
    }

    /// The frame the encoder is in.
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// Whether any instrument's sustain pedal is down.
    pub fn pedal_down(&self) -> bool {
        self.sounding().any(|i| i.pedal)
    }

    /// Whether any instrument's sostenuto pedal is down.
    pub fn sostenuto_down(&self) -> bool {
        self.instruments.iter().any(|i| i.sostenuto)
    }

    /// Keys with open notes (without the pedal's sustain): their velocity sums.
    pub fn held(&self) -> KeyFrame {
        std::array::from_fn(|k| {
            let sum: u32 = self.sounding().map(|i| i.open[k].total as u32).sum();
            sum.min(255) as u8
        })
    }

    /// Moves on to frame `frame`; earlier frames are final. Moving backwards is ignored.
    pub fn advance_to(&mut self, frame: u64) {
        if frame > self.frame {
            let instruments = &mut self.instruments;
            self.active.retain(|&i| {
                let inst = &mut instruments[i];
                inst.base = std::array::from_fn(|k| inst.value(k));
                inst.restart = false;
                inst.active = !inst.is_silent();
                inst.active
            });
            self.frame = frame;
        }
    }

    /// Renames the current frame (e.g. after a switch to a model with another MIDI rate)
    /// without touching any key or the pedal.
    pub fn rebase(&mut self, frame: u64) {
        self.frame = frame;
    }

    /// Applies one event on instrument 0 (see [`RollEncoder::apply_on`]).
    pub fn apply(&mut self, event: KeyEvent, stamp: u64) {
        self.apply_on(0, event, stamp);
    }

    /// Applies one event of `instrument` (a MIDI channel when live) in the current frame;
    /// `stamp` is the event's time in any unit that only grows (samples when streaming, ticks
    /// for files). Instruments beyond the encoder's count are ignored.
    pub fn apply_on(&mut self, instrument: usize, event: KeyEvent, stamp: u64) {
        if event.clears_state() {
            self.silence();
        } else if let Some(inst) = self.instruments.get_mut(instrument) {
            inst.apply(event, stamp);
            if !inst.active {
                inst.active = true;
                self.active.push(instrument);
            }
        }
    }

    /// Applies a live event on its channel's instrument (see [`ChannelEvent`]).
    pub fn apply_live(&mut self, e: ChannelEvent, stamp: u64) {
        match (e.channel, e.event) {
            (Some(channel), event) => self.apply_on(channel as usize, event, stamp),
            (None, KeyEvent::NoteOn { velocity, .. }) if velocity > 0 => {
                self.apply_on(0, e.event, stamp)
            }
            (None, event) => {
                for channel in 0..self.instruments.len() {
                    self.apply_on(channel, event, stamp);
                }
            }
        }
    }

    /// The current frame's roll: the instruments' values added, clamped to 255.
    pub fn roll(&self) -> KeyFrame {
        std::array::from_fn(|k| {
            let sum: u32 = self.sounding().map(|i| i.value(k) as u32).sum();
            sum.min(255) as u8
        })
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

/// The frame a live event at host sample `s` belongs to: the frame holding `s`, or the next
/// one when that starts at `s + 1`. Hosts round an event's time to a sample, and an event on
/// a frame boundary (quantized MIDI: every beat at 120 bpm lies on a 1 ms frame boundary) can
/// arrive one sample early; without this it would sound a whole frame early. An event inside
/// a frame moves at most one sample.
pub fn frame_of_event(s: u64, sample_rate: u32, midi_rate: u32) -> u64 {
    frame_of_sample(s + 1, sample_rate, midi_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C4: u8 = 60;
    const K: usize = (C4 - LOWEST_NOTE) as usize;

    #[test]
    fn an_event_a_sample_before_a_frame_belongs_to_it() {
        // 48 samples a frame: frame 900 starts at 43200
        assert_eq!(frame_of_event(43_199, 48_000, 1000), 900);
        assert_eq!(frame_of_event(43_200, 48_000, 1000), 900);
        assert_eq!(frame_of_event(43_198, 48_000, 1000), 899);
        // 27.2 samples a frame (1764 Hz at 48 kHz): frame 3 starts at 81, frame 4 at 108
        assert_eq!(frame_of_event(80, 48_000, 1764), 3);
        assert_eq!(frame_of_event(106, 48_000, 1764), 3);
        assert_eq!(frame_of_event(107, 48_000, 1764), 4);
    }

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
        assert_eq!(
            e.roll()[K],
            120,
            "the softer note is still open: the two add"
        );
        e.advance_to(4);
        e.apply(KeyEvent::NoteOff { note: C4 }, 4);
        e.apply(KeyEvent::Sustain { value: 10 }, 4);
        assert_eq!(e.roll()[K], 0, "pedal up returns to held keys");
    }

    const E4: u8 = 64;
    const G4: u8 = 67;
    const KE: usize = (E4 - LOWEST_NOTE) as usize;
    const KG: usize = (G4 - LOWEST_NOTE) as usize;

    fn sostenuto(value: u8) -> KeyEvent {
        KeyEvent::Sostenuto { value }
    }

    fn sustain(value: u8) -> KeyEvent {
        KeyEvent::Sustain { value }
    }

    fn off(note: u8) -> KeyEvent {
        KeyEvent::NoteOff { note }
    }

    /// C4 and E4 held as the sostenuto goes down are caught; G4, struck after, is not.
    #[test]
    fn sostenuto_holds_the_keys_down_when_it_goes_down() {
        let mut e = RollEncoder::new();
        e.apply(on(C4, 80), 0);
        e.apply(on(E4, 50), 0);
        e.advance_to(1);
        e.apply(sostenuto(127), 1);
        e.apply(on(G4, 90), 1);
        e.advance_to(2);
        for key in [C4, E4, G4] {
            e.apply(off(key), 2);
        }
        assert_eq!((e.roll()[K], e.roll()[KE], e.roll()[KG]), (80, 50, 0));
        e.advance_to(3);
        // struck again later and released: not caught, though the pedal is down
        e.apply(on(G4, 70), 3);
        e.advance_to(4);
        e.apply(off(G4), 4);
        assert_eq!((e.roll()[K], e.roll()[KE], e.roll()[KG]), (80, 50, 0));
        e.advance_to(5);
        e.apply(sostenuto(0), 5);
        assert_eq!(e.roll(), [0; KEYS], "lifted: nothing holds the keys");
    }

    /// Over the sustain: keys the sustain holds when the sostenuto goes down are caught and
    /// outlast the sustain; a caught key struck again keeps the running maximum.
    #[test]
    fn sostenuto_over_the_sustain_keeps_what_the_sustain_held() {
        let mut e = RollEncoder::new();
        e.apply(sustain(127), 0);
        e.apply(on(C4, 60), 0);
        e.advance_to(1);
        e.apply(off(C4), 1);
        e.advance_to(2);
        e.apply(sostenuto(100), 2);
        e.apply(on(E4, 40), 2);
        e.advance_to(3);
        e.apply(off(E4), 3);
        e.apply(sustain(0), 3);
        assert_eq!((e.roll()[K], e.roll()[KE]), (60, 0));
        e.advance_to(4);
        e.apply(on(C4, 100), 4);
        assert_eq!(e.roll()[K], 100);
        e.advance_to(5);
        e.apply(off(C4), 5);
        e.apply(on(C4, 30), 5);
        e.apply(off(C4), 5);
        assert_eq!(
            e.roll()[K],
            100,
            "the running maximum, as under the sustain"
        );
        e.advance_to(6);
        e.apply(sostenuto(0), 6);
        assert_eq!(e.roll()[K], 0);
    }

    /// Under the sustain: a sostenuto down with nothing sounding catches nothing, and the
    /// sustain goes on holding what is struck after it; lifting both in one frame leaves the
    /// keys still pressed.
    #[test]
    fn sostenuto_under_the_sustain_and_both_lifted_at_once() {
        let mut e = RollEncoder::new();
        e.apply(sostenuto(127), 0);
        e.apply(sustain(127), 0);
        e.apply(on(C4, 70), 0);
        e.advance_to(1);
        e.apply(off(C4), 1);
        assert_eq!(e.roll()[K], 70, "the sustain holds it");
        e.advance_to(2);
        e.apply(sustain(0), 2);
        assert_eq!(e.roll()[K], 0, "the sostenuto never caught it");
        // now both down over a held and a released key, both lifted in one frame
        e.advance_to(3);
        e.apply(on(E4, 90), 3);
        e.apply(on(G4, 45), 3);
        e.apply(sostenuto(0), 3);
        e.advance_to(4);
        e.apply(sostenuto(127), 4);
        e.apply(sustain(127), 4);
        e.advance_to(5);
        e.apply(off(G4), 5);
        assert_eq!((e.roll()[KE], e.roll()[KG]), (90, 45));
        e.advance_to(6);
        e.apply(sostenuto(0), 6);
        e.apply(sustain(0), 6);
        assert_eq!((e.roll()[KE], e.roll()[KG]), (90, 0), "E4 is still pressed");
        // and the controllers' reset lifts the sostenuto too
        e.advance_to(7);
        e.apply(sostenuto(127), 7);
        e.advance_to(8);
        e.apply(off(E4), 8);
        assert_eq!(e.roll()[KE], 90);
        e.advance_to(9);
        e.apply(KeyEvent::ResetControllers, 9);
        assert_eq!(e.roll()[KE], 0);
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
    fn a_note_ended_at_its_own_timestamp_is_dropped_unless_it_ends_an_earlier_one() {
        // pretty_midi's rule: alone, an on/off pair of one timestamp is no note at all …
        let mut e = RollEncoder::new();
        e.apply(on(C4, 60), 5);
        e.apply(KeyEvent::NoteOff { note: C4 }, 5);
        assert_eq!(e.roll()[K], 0);
        e.apply(KeyEvent::NoteOff { note: C4 }, 9);
        assert_eq!(e.roll()[K], 0);
        // … beside an earlier note that the note-off ends, the new note stays open
        e.apply(on(C4, 40), 10);
        e.apply(on(C4, 70), 20);
        e.apply(KeyEvent::NoteOff { note: C4 }, 20);
        assert_eq!(e.roll()[K], 70);
    }

    #[test]
    fn channels_add_and_pedal_their_own_notes() {
        let mut e = RollEncoder::new();
        e.apply_on(0, on(C4, 50), 0);
        e.apply_on(3, on(C4, 60), 0);
        e.apply_on(3, KeyEvent::Sustain { value: 127 }, 0);
        assert_eq!(e.roll()[K], 110);
        e.advance_to(1);
        e.apply_on(0, KeyEvent::NoteOff { note: C4 }, 1);
        e.apply_on(3, KeyEvent::NoteOff { note: C4 }, 1);
        // channel 3's pedal holds its note, not channel 0's
        assert_eq!(e.roll()[K], 60);
        // values add up to 255 and clamp there
        for ch in 0..5 {
            e.apply_on(ch, on(C4, 127), 2);
        }
        assert_eq!(e.roll()[K], 255);
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
