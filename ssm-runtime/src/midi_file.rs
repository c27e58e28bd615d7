//! Standard MIDI files (format 0 and 1) to timed key events and piano rolls, read the way
//! the checkpoints' training data was: pretty_midi's `PrettyMIDI(path).get_piano_roll()`.
//!
//! * Event times follow pretty_midi's tick-to-time mapping, float for float (tempo changes
//!   from track 0 only, `tick_scale = 60 / (bpm · ppq)` per tempo segment, `bpm = 6e7 /
//!   tempo`), because an event on a frame boundary must land in the same frame.
//! * Notes are built as pretty_midi builds them (see [`crate::roll`] for the rules) into
//!   instruments keyed by (program at the note-off, channel, track); each instrument has its
//!   own sustain pedal. Notes never ended are dropped, and so is a pedal still down at the
//!   end (pretty_midi applies a pedal at its release). Channel 10 (General MIDI percussion)
//!   sounds no keys. The sostenuto (CC66) and soft (CC67) pedals, which pretty_midi ignores,
//!   act as live (every value, in file order, after the notes of the same tick; a file
//!   without them reads exactly as pretty_midi's). Other controllers do nothing (CC123 in a file ends no
//!   note), and pitch bends are ignored (pretty_midi would shift the roll's rows: a piano
//!   has no pitch wheel).
//! * The roll lasts `floor(end · midi_rate)` frames, `end` being the latest note-off,
//!   controller or pitch bend of an instrument that has notes (percussion included).
//!
//! The events this gives, played live through the same [`RollEncoder`] on one channel per
//! instrument, give the same roll.

use std::collections::HashMap;
use std::path::Path;

use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};

use crate::error::MidiError;
use crate::notes::NoteMap;
use crate::roll::{frame_start, KeyEvent, KeyFrame, Roll, RollEncoder};

/// General MIDI percussion channel (10, zero-based 9): drum hits are not piano keys.
const PERCUSSION_CHANNEL: u8 = 9;
/// MIDI controller number of the sustain pedal.
const SUSTAIN_CC: u8 = 64;
const SOSTENUTO_CC: u8 = 66;
const SOFT_CC: u8 = 67;

pub use crate::limits::MAX_INSTRUMENTS;

/// A key event at its time in the file, on one of the file's instruments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedEvent {
    pub seconds: f64,
    pub tick: u64,
    /// Which instrument (a channel of the encoder) the event belongs to.
    pub instrument: u16,
    pub event: KeyEvent,
}

/// The piano-relevant content of a MIDI file.
#[derive(Debug, Clone, PartialEq)]
pub struct MidiFile {
    /// Events in time order (stable: file order within a tick).
    pub events: Vec<TimedEvent>,
    /// Where the roll ends (seconds).
    pub end: f64,
}

impl MidiFile {
    pub fn load(path: &Path) -> Result<MidiFile, MidiError> {
        let bytes =
            crate::fsutil::read_capped(path, crate::fsutil::MAX_MIDI_BYTES).map_err(|source| {
                MidiError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        MidiFile::parse(&bytes)
    }

    /// Events that make up a performance by themselves (one instrument per distinct
    /// `instrument`), ending with the last of them.
    pub fn from_events(events: Vec<TimedEvent>) -> MidiFile {
        MidiFile {
            end: events.last().map_or(0.0, |e| e.seconds),
            events,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<MidiFile, MidiError> {
        check_smpte_division(bytes)?;
        let smf = Smf::parse(bytes).map_err(|e| MidiError::Parse(e.to_string()))?;
        let clock = Clock::new(&smf)?;
        let mut notes = NoteBuilder::default();
        for (index, track) in smf.tracks.iter().enumerate() {
            let mut tick = 0u64;
            let mut track_notes = TrackNotes::default();
            for ev in track {
                tick += ev.delta.as_int() as u64;
                if let TrackEventKind::Midi { channel, message } = ev.kind {
                    notes.message(&mut track_notes, index, channel.as_int(), message, tick);
                }
            }
        }
        notes.finish(&clock)
    }

    /// Where the roll ends, in seconds (0 for a file without notes).
    pub fn duration(&self) -> f64 {
        self.end
    }

    /// The same performance with every event through `map` (transposed, its velocities
    /// curved, softened under the soft pedal); notes the map drops are gone, and the roll
    /// keeps its length.
    pub fn with_notes(&self, map: &NoteMap) -> MidiFile {
        let mut map = map.clone();
        let mut play = |e: &TimedEvent| map.apply(Some(e.instrument as usize), e.event);
        MidiFile {
            events: self
                .events
                .iter()
                .filter_map(|e| play(e).map(|event| TimedEvent { event, ..*e }))
                .collect(),
            end: self.end,
        }
    }

    /// How many frames the roll at `midi_rate` lasts: `floor(end · midi_rate)` plus
    /// `tail_seconds`.
    pub fn frame_count(&self, midi_rate: u32, tail_seconds: f64) -> u64 {
        frame_of(self.end, midi_rate) + (tail_seconds.max(0.0) * midi_rate as f64).round() as u64
    }

    /// The piano roll at `midi_rate` (see [`MidiFile::frames`]), in memory.
    pub fn roll(&self, midi_rate: u32, tail_seconds: f64) -> Roll {
        Roll {
            midi_rate,
            frames: self.frames(midi_rate, tail_seconds).collect(),
        }
    }

    /// Exactly `frames` frames of the roll at `midi_rate`, for a crop, a check or a clip of a
    /// given length: cut where the file is longer, continued past its end where it is shorter,
    /// as a render's tail continues it (in silence: the pipeline ends every note at the file's
    /// end, even one the pedal holds).
    pub fn roll_frames(&self, midi_rate: u32, frames: usize) -> Roll {
        // a tail as long as the roll asked for leaves at least `frames` frames to take
        let tail = frames as f64 / midi_rate as f64;
        Roll {
            midi_rate,
            frames: self.frames(midi_rate, tail).take(frames).collect(),
        }
    }

    /// Every event at the first sample (at `sample_rate`) of the frame its roll puts it in at
    /// `midi_rate`: where a live player must receive it to play as the file render does
    /// (as a DAW plays a region quantized to the frame grid).
    pub fn events_at_frame_starts(
        &self,
        sample_rate: u32,
        midi_rate: u32,
    ) -> impl Iterator<Item = (u64, KeyEvent)> + '_ {
        self.events.iter().map(move |e| {
            let frame = frame_of(e.seconds, midi_rate);
            (frame_start(frame, sample_rate, midi_rate), e.event)
        })
    }

    /// The roll's frames one after another, [`MidiFile::frame_count`] of them: a render
    /// streams them instead of holding 88 bytes a frame for the whole piece.
    pub fn frames(&self, midi_rate: u32, tail_seconds: f64) -> Frames<'_> {
        let instruments = self.events.iter().map(|e| e.instrument as usize + 1).max();
        Frames {
            events: &self.events,
            next: 0,
            encoder: RollEncoder::with_instruments(instruments.unwrap_or(1)),
            frame: 0,
            total: self.frame_count(midi_rate, tail_seconds),
            midi_rate,
        }
    }
}

/// The frame an event at `seconds` falls in, as pretty_midi's roll puts it.
fn frame_of(seconds: f64, midi_rate: u32) -> u64 {
    (seconds * midi_rate as f64).floor().max(0.0) as u64
}

/// The frames of a [`MidiFile`]'s roll, encoded as they are asked for.
pub struct Frames<'a> {
    events: &'a [TimedEvent],
    /// the first event not yet applied
    next: usize,
    encoder: RollEncoder,
    /// the frame the next call returns
    frame: u64,
    total: u64,
    midi_rate: u32,
}

impl Iterator for Frames<'_> {
    type Item = KeyFrame;

    fn next(&mut self) -> Option<KeyFrame> {
        if self.frame >= self.total {
            return None;
        }
        self.encoder.advance_to(self.frame);
        // the events of this frame (every earlier frame is complete)
        while let Some(e) = self.events.get(self.next) {
            if frame_of(e.seconds, self.midi_rate) > self.frame {
                break;
            }
            self.encoder
                .apply_on(e.instrument as usize, e.event, e.tick);
            self.next += 1;
        }
        self.frame += 1;
        Some(self.encoder.roll())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.total - self.frame) as usize;
        (left, Some(left))
    }
}

/// A note as pretty_midi keeps it: ticks, key, velocity.
#[derive(Debug, Clone, Copy)]
struct Note {
    start: u64,
    end: u64,
    key: u8,
    velocity: u8,
}

/// One of pretty_midi's instruments.
#[derive(Debug)]
struct Instrument {
    drum: bool,
    notes: Vec<Note>,
    /// Its controller and pitch-bend list (shared with a straggler's, as pretty_midi shares
    /// the list objects).
    list: usize,
}

/// Controllers and pitch bends: (tick, Some((controller, value))) or (tick, None) for a bend.
type EventList = Vec<(u64, Option<(u8, u8)>)>;

/// Per track: the open notes of each (channel, key) and each channel's program.
#[derive(Default)]
struct TrackNotes {
    open: HashMap<(u8, u8), Vec<(u64, u8)>>,
    program: [u8; 16],
}

/// pretty_midi's `_load_instruments`, step by step.
#[derive(Default)]
struct NoteBuilder {
    instruments: Vec<Instrument>,
    by_key: HashMap<(u8, u8, usize), usize>,
    /// (channel, track) → list of controllers seen before that channel had an instrument.
    stragglers: HashMap<(u8, usize), usize>,
    lists: Vec<EventList>,
}

impl NoteBuilder {
    /// The instrument notes ended now go to, created if need be (taking over the channel's
    /// straggler list, as pretty_midi does).
    fn instrument(&mut self, program: u8, channel: u8, track: usize) -> usize {
        if let Some(&i) = self.by_key.get(&(program, channel, track)) {
            return i;
        }
        let list = match self.stragglers.get(&(channel, track)) {
            Some(&l) => l,
            None => self.new_list(),
        };
        self.instruments.push(Instrument {
            drum: channel == PERCUSSION_CHANNEL,
            notes: Vec::new(),
            list,
        });
        self.by_key
            .insert((program, channel, track), self.instruments.len() - 1);
        self.instruments.len() - 1
    }

    /// The list a controller goes to: its instrument's, else the channel's straggler list.
    fn list_of(&mut self, program: u8, channel: u8, track: usize) -> usize {
        if let Some(&i) = self.by_key.get(&(program, channel, track)) {
            return self.instruments[i].list;
        }
        if let Some(&l) = self.stragglers.get(&(channel, track)) {
            return l;
        }
        let l = self.new_list();
        self.stragglers.insert((channel, track), l);
        l
    }

    fn new_list(&mut self) -> usize {
        self.lists.push(Vec::new());
        self.lists.len() - 1
    }

    fn message(
        &mut self,
        t: &mut TrackNotes,
        track: usize,
        channel: u8,
        m: MidiMessage,
        tick: u64,
    ) {
        let ch = channel as usize & 15;
        match m {
            MidiMessage::ProgramChange { program } => t.program[ch] = program.as_int(),
            MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                t.open
                    .entry((channel, key.as_int()))
                    .or_default()
                    .push((tick, vel.as_int()));
            }
            MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                let Some(open) = t.open.remove(&(channel, key.as_int())) else {
                    return;
                };
                let (keep, close): (Vec<_>, Vec<_>) =
                    open.into_iter().partition(|&(s, _)| s == tick);
                if !close.is_empty() {
                    let i = self.instrument(t.program[ch], channel, track);
                    let notes = close.iter().map(|&(start, velocity)| Note {
                        start,
                        end: tick,
                        key: key.as_int(),
                        velocity,
                    });
                    self.instruments[i].notes.extend(notes);
                    if !keep.is_empty() {
                        t.open.insert((channel, key.as_int()), keep);
                    }
                }
            }
            MidiMessage::Controller { controller, value } => {
                let l = self.list_of(t.program[ch], channel, track);
                self.lists[l].push((tick, Some((controller.as_int(), value.as_int()))));
            }
            MidiMessage::PitchBend { .. } => {
                let l = self.list_of(t.program[ch], channel, track);
                self.lists[l].push((tick, None));
            }
            _ => {}
        }
    }

    /// The instruments' notes and pedals as timed events, one encoder channel per sounding
    /// instrument.
    fn finish(self, clock: &Clock) -> Result<MidiFile, MidiError> {
        let sounding = self.instruments.iter().filter(|i| !i.drum).count();
        if sounding > MAX_INSTRUMENTS {
            return Err(MidiError::TooManyInstruments(sounding));
        }
        let mut raw: Vec<(u64, usize, u16, KeyEvent)> = Vec::new();
        let mut end_tick: Option<u64> = None;
        let mut sounding = 0u16;
        for inst in &self.instruments {
            let list = &self.lists[inst.list];
            let last = inst
                .notes
                .iter()
                .map(|n| n.end)
                .chain(list.iter().map(|e| e.0))
                .max();
            end_tick = end_tick.max(last);
            if inst.drum {
                continue;
            }
            let id = sounding;
            sounding += 1;
            for n in &inst.notes {
                raw.push((
                    n.start,
                    raw.len(),
                    id,
                    KeyEvent::NoteOn {
                        note: n.key,
                        velocity: n.velocity,
                    },
                ));
                raw.push((n.end, raw.len(), id, KeyEvent::NoteOff { note: n.key }));
            }
            for (tick, value) in applied_pedal(list) {
                raw.push((tick, raw.len(), id, KeyEvent::Sustain { value }));
            }
            // the sostenuto and soft pedals, which pretty_midi ignores, as the file has them
            for &(tick, e) in list {
                let event = match e {
                    Some((SOSTENUTO_CC, value)) => KeyEvent::Sostenuto { value },
                    Some((SOFT_CC, value)) => KeyEvent::SoftPedal { value },
                    _ => continue,
                };
                raw.push((tick, raw.len(), id, event));
            }
        }
        raw.sort_by_key(|&(tick, order, _, _)| (tick, order));
        let events = raw
            .into_iter()
            .map(|(tick, _, instrument, event)| TimedEvent {
                seconds: clock.seconds(tick),
                tick,
                instrument,
                event,
            })
            .collect();
        Ok(MidiFile {
            events,
            end: end_tick.map_or(0.0, |t| clock.seconds(t)),
        })
    }
}

/// An instrument's pedal values that take effect: all of them up to its last release; a
/// press never released does nothing (pretty_midi sustains at the release).
fn applied_pedal(list: &EventList) -> Vec<(u64, u8)> {
    let pedal: Vec<(u64, u8)> = list
        .iter()
        .filter_map(|&(tick, e)| match e {
            Some((SUSTAIN_CC, value)) => Some((tick, value)),
            _ => None,
        })
        .collect();
    let mut down = false;
    let mut last_release = 0;
    for (i, &(_, value)) in pedal.iter().enumerate() {
        if down && value < 64 {
            last_release = i + 1;
        }
        down = value >= 64;
    }
    pedal[..last_release].to_vec()
}

/// midly 0.5 negates the SMPTE frame-rate byte of every header chunk it meets, which
/// overflows (a panic in debug builds) for -128. Only -24, -25, -29 and -30 are valid, so each
/// header chunk midly would read (the first and any duplicate, bare or inside an RMID
/// wrapper) is checked here first, walking the chunks the way midly does.
fn check_smpte_division(bytes: &[u8]) -> Result<(), MidiError> {
    let smf = if bytes.starts_with(b"RIFF") {
        match rmid_data(bytes) {
            Some(data) => data,
            None => return Ok(()), // midly rejects the wrapper itself
        }
    } else {
        bytes
    };
    let mut rest = smf;
    while rest.len() >= 8 {
        let (id, len) = (
            &rest[..4],
            u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        );
        let body = &rest[8..];
        // like midly, a chunk running past the end takes the remainder of the file
        let (chunk, next) = body.split_at((len as usize).min(body.len()));
        if id == b"MThd" && chunk.len() >= 6 && chunk[4] & 0x80 != 0 {
            let fps = chunk[4] as i8;
            if !matches!(fps, -24 | -25 | -29 | -30) {
                let offset = smf.len() - rest.len();
                return Err(MidiError::Timing(format!(
                    "SMPTE frame rate {} in the header chunk at byte {offset} is not 24, 25, \
                     29.97 or 30",
                    -(fps as i16)
                )));
            }
        }
        rest = next;
    }
    Ok(())
}

/// The SMF inside an RMID file, found as midly finds it; `None` where midly would reject
/// the wrapper.
fn rmid_data(bytes: &[u8]) -> Option<&[u8]> {
    let (id, riff) = riff_chunks(bytes).next()?;
    if id != b"RIFF" || riff.get(..4)? != b"RMID" {
        return None;
    }
    riff_chunks(&riff[4..])
        .find(|(id, _)| *id == b"data")
        .map(|(_, data)| data)
}

/// RIFF chunks as (id, data): little-endian lengths, odd-sized chunks padded to even.
fn riff_chunks(mut rest: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let id = &rest[..4];
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let body = &rest[8..];
        let (data, after) = body.split_at(len.min(body.len()));
        rest = if len % 2 == 1 && !after.is_empty() {
            &after[1..]
        } else {
            after
        };
        Some((id, data))
    })
}

/// Tick-to-seconds conversion.
enum Clock {
    /// pretty_midi's segments: (start tick, seconds at start tick, seconds per tick)
    Metrical(Vec<(u64, f64, f64)>),
    /// SMPTE: ticks per second
    Timecode(f64),
}

impl Clock {
    fn new(smf: &Smf) -> Result<Clock, MidiError> {
        let ppq = match smf.header.timing {
            Timing::Metrical(ppq) if ppq.as_int() > 0 => ppq.as_int() as f64,
            Timing::Metrical(_) => {
                return Err(MidiError::Timing("zero ticks per quarter note".into()))
            }
            Timing::Timecode(fps, sub) if sub > 0 => {
                return Ok(Clock::Timecode(fps.as_f32() as f64 * sub as f64))
            }
            Timing::Timecode(..) => {
                return Err(MidiError::Timing("zero ticks per SMPTE frame".into()))
            }
        };
        let scale_of = |tempo: u32| 60.0 / ((6e7 / tempo.max(1) as f64) * ppq);
        // tempo changes from track 0 only, as pretty_midi reads them (format 1 keeps them
        // there; a tempo elsewhere does not move the training rolls either)
        let mut tempos: Vec<(u64, u32)> = Vec::new();
        let mut tick = 0u64;
        for ev in smf.tracks.first().into_iter().flatten() {
            tick += ev.delta.as_int() as u64;
            if let TrackEventKind::Meta(MetaMessage::Tempo(t)) = ev.kind {
                tempos.push((tick, t.as_int()));
            }
        }
        let mut scales: Vec<(u64, f64)> = vec![(0, 60.0 / (120.0 * ppq))];
        for (tick, tempo) in tempos {
            let scale = scale_of(tempo);
            if tick == 0 {
                scales[0] = (0, scale);
            } else if scales.last().is_some_and(|&(_, s)| s != scale) {
                scales.push((tick, scale));
            }
        }
        let mut segments = Vec::with_capacity(scales.len());
        let mut start_time = 0.0;
        for (i, &(tick, scale)) in scales.iter().enumerate() {
            if i > 0 {
                let (prev_tick, prev_time, prev_scale) = segments[i - 1];
                start_time = prev_time + prev_scale * (tick - prev_tick) as f64;
            }
            segments.push((tick, start_time, scale));
        }
        Ok(Clock::Metrical(segments))
    }

    fn seconds(&self, tick: u64) -> f64 {
        match self {
            Clock::Timecode(per_second) => tick as f64 / per_second,
            Clock::Metrical(segments) => {
                let i = segments
                    .partition_point(|&(start, _, _)| start <= tick)
                    .saturating_sub(1);
                let (start, time, scale) = segments[i];
                time + scale * (tick - start) as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KEYS;
    use midly::num::{u15, u24, u28, u4, u7};
    use midly::{Format, Header, TrackEvent};

    fn ev(delta: u32, kind: TrackEventKind<'static>) -> TrackEvent<'static> {
        TrackEvent {
            delta: u28::new(delta),
            kind,
        }
    }

    fn note(delta: u32, ch: u8, key: u8, vel: u8) -> TrackEvent<'static> {
        let message = MidiMessage::NoteOn {
            key: u7::new(key),
            vel: u7::new(vel),
        };
        ev(
            delta,
            TrackEventKind::Midi {
                channel: u4::new(ch),
                message,
            },
        )
    }

    fn write(tracks: Vec<Vec<TrackEvent<'static>>>, ppq: u16) -> Vec<u8> {
        let smf = Smf {
            header: Header::new(Format::Parallel, Timing::Metrical(u15::new(ppq))),
            tracks,
        };
        let mut out = Vec::new();
        smf.write_std(&mut out).unwrap();
        out
    }

    #[test]
    fn roll_frames_cuts_or_continues_the_roll() {
        // 100 ticks a quarter at 120 bpm: C4 from 0 to 0.25 s under the pedal, which stays down
        let pedal = ev(
            0,
            TrackEventKind::Midi {
                channel: u4::new(0),
                message: MidiMessage::Controller {
                    controller: u7::new(64),
                    value: u7::new(127),
                },
            },
        );
        let bytes = write(
            vec![vec![pedal, note(0, 0, 60, 80), note(50, 0, 60, 0)]],
            100,
        );
        let f = MidiFile::parse(&bytes).unwrap();
        let full = f.roll(1000, 1.0).frames;
        // shorter than the file: its first frames
        assert_eq!(f.roll_frames(1000, 100).frames, full[..100]);
        // longer: the file's end (0.25 s) continued as a render's tail continues it: the
        // pipeline ends every note at the file's end, even one the pedal still holds
        let long = f.roll_frames(1000, 900).frames;
        assert_eq!(long.len(), 900);
        assert_eq!(long, full[..900]);
        assert_eq!(long[200][60 - crate::model::LOWEST_NOTE as usize], 80);
        assert!(long[250..].iter().all(|frame| frame == &[0; crate::KEYS]));
    }

    fn program(delta: u32, ch: u8, program: u8) -> TrackEvent<'static> {
        let message = MidiMessage::ProgramChange {
            program: u7::new(program),
        };
        ev(
            delta,
            TrackEventKind::Midi {
                channel: u4::new(ch),
                message,
            },
        )
    }

    /// `tracks` tracks, each playing one short note on each of 8 programs × 15 channels (no
    /// drums): 120 instruments a track, each silent after its note.
    fn many_instruments(tracks: usize) -> Vec<u8> {
        let track = |t: usize| {
            let mut events = Vec::new();
            for p in 0..8u8 {
                for ch in (0..16u8).filter(|&c| c != 9) {
                    let key = 30 + ((t * 7 + p as usize * 3 + ch as usize) % 60) as u8;
                    events.push(program(0, ch, p));
                    events.push(note(0, ch, key, 40));
                    events.push(note(10, ch, key, 0));
                }
            }
            events
        };
        write((0..tracks).map(track).collect(), 100)
    }

    /// A file's cost: the instruments once their notes end add nothing to the roll, and
    /// their count is capped with an error that says so.
    #[test]
    fn instruments_are_capped_and_silent_ones_left_out() {
        let f = MidiFile::parse(&many_instruments(8)).unwrap();
        let instruments = f.events.iter().map(|e| e.instrument).max().unwrap() + 1;
        assert_eq!(instruments, 960);
        // the roll is the notes' sum, frame by frame, and silence after them
        let roll = f.roll(1000, 0.5).frames;
        let mut expected = vec![[0u32; KEYS]; roll.len()];
        let mut open = [0u32; KEYS];
        let mut frame = 0usize;
        for e in &f.events {
            let at = (e.seconds * 1000.0).floor() as usize;
            while frame < at {
                expected[frame] = open;
                frame += 1;
            }
            let k = |note: u8| (note - crate::model::LOWEST_NOTE) as usize;
            match e.event {
                KeyEvent::NoteOn { note, velocity } => open[k(note)] += velocity as u32,
                KeyEvent::NoteOff { note } => open[k(note)] = 0,
                _ => {}
            }
        }
        assert!(roll.iter().any(|fr| fr.iter().any(|&v| v > 0)));
        for (i, fr) in roll.iter().enumerate() {
            let want: [u8; KEYS] = std::array::from_fn(|k| expected[i][k].min(255) as u8);
            assert_eq!(fr, &want, "frame {i}");
        }
        match MidiFile::parse(&many_instruments(9)) {
            Err(MidiError::TooManyInstruments(1080)) => {}
            other => panic!("expected the instrument cap, got {other:?}"),
        }
    }

    fn cc(delta: u32, controller: u8, value: u8) -> TrackEvent<'static> {
        let message = MidiMessage::Controller {
            controller: u7::new(controller),
            value: u7::new(value),
        };
        ev(
            delta,
            TrackEventKind::Midi {
                channel: u4::new(0),
                message,
            },
        )
    }

    /// A file's sostenuto holds C4, held as it goes down, and not E4, struck after; its soft
    /// pedal plays G4 at 70 % through the NoteMap. (100 ticks a beat at 120 bpm: 5 ms a tick.)
    #[test]
    fn a_files_sostenuto_and_soft_pedal_act() {
        let track = vec![
            note(0, 0, 60, 80),
            cc(10, 66, 127),
            note(10, 0, 64, 100),
            note(10, 0, 60, 0),
            note(0, 0, 64, 0),
            cc(30, 66, 0),
            cc(10, 67, 127),
            note(10, 0, 67, 100),
            note(10, 0, 67, 0),
            cc(10, 67, 0),
        ];
        let f = MidiFile::parse(&write(vec![track], 100)).unwrap();
        let key = |n: u8| (n - crate::model::LOWEST_NOTE) as usize;
        let roll = f.roll(1000, 0.1).frames;
        assert_eq!((roll[120][key(60)], roll[120][key(64)]), (80, 100));
        assert_eq!((roll[200][key(60)], roll[200][key(64)]), (80, 0));
        assert_eq!(roll[350][key(60)], 0, "the sostenuto lifted at tick 60");
        assert_eq!(
            roll[420][key(67)],
            100,
            "the roll keeps the velocity struck"
        );
        let soft = f.with_notes(&NoteMap::default()).roll(1000, 0.1).frames;
        assert_eq!(soft[420][key(67)], 70);
        assert_eq!(
            soft[200], roll[200],
            "the soft pedal alone changes nothing else"
        );
    }

    #[test]
    fn tempo_change_moves_later_events() {
        // 100 ticks per quarter: first quarter at 120 bpm (0.5 s), then 60 bpm (1 s per quarter)
        let tempo = |d, t| ev(d, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(t))));
        let bytes = write(
            vec![
                vec![tempo(0, 500_000), tempo(100, 1_000_000)],
                vec![note(50, 0, 60, 80), note(100, 0, 60, 0)],
            ],
            100,
        );
        let f = MidiFile::parse(&bytes).unwrap();
        let times: Vec<f64> = f.events.iter().map(|e| e.seconds).collect();
        assert!(
            (times[0] - 0.25).abs() < 1e-12 && (times[1] - 1.0).abs() < 1e-12,
            "{times:?}"
        );
    }

    #[test]
    fn tracks_merge_and_percussion_is_ignored() {
        let bytes = write(
            vec![
                vec![note(0, 0, 60, 80), note(10, 0, 60, 0)],
                vec![
                    note(5, 9, 62, 80),
                    note(5, 1, 64, 70),
                    note(5, 9, 62, 0),
                    note(5, 1, 64, 0),
                ],
            ],
            100,
        );
        let f = MidiFile::parse(&bytes).unwrap();
        let notes: Vec<u8> = f
            .events
            .iter()
            .filter_map(|e| match e.event {
                KeyEvent::NoteOn { note, velocity } if velocity > 0 => Some(note),
                _ => None,
            })
            .collect();
        assert_eq!(notes, vec![60, 64]);
    }

    #[test]
    fn dangling_notes_and_an_unreleased_pedal_do_nothing() {
        // as in pretty_midi: a note never ended is no note, a pedal never lifted holds nothing
        let end = ev(400, TrackEventKind::Meta(MetaMessage::EndOfTrack));
        let bytes = write(vec![vec![note(0, 0, 60, 80), end]], 100);
        let f = MidiFile::parse(&bytes).unwrap();
        assert!(f.events.is_empty());
        assert_eq!(f.roll(1000, 0.0).frames.len(), 0);
        let pedal = |d, v| {
            ev(
                d,
                TrackEventKind::Midi {
                    channel: u4::new(0),
                    message: MidiMessage::Controller {
                        controller: u7::new(64),
                        value: u7::new(v),
                    },
                },
            )
        };
        let bytes = write(
            vec![vec![
                pedal(0, 127),
                note(0, 0, 60, 80),
                note(100, 0, 60, 0),
                pedal(100, 100),
            ]],
            100,
        );
        let roll = MidiFile::parse(&bytes).unwrap().roll(1000, 0.0);
        // 200 ticks at 120 bpm, 100 ppq: 1 s, the note sounding for its 0.5 s only
        assert_eq!(roll.frames.len(), 1000);
        assert_eq!((roll.frames[499][39], roll.frames[500][39]), (80, 0));
    }

    #[test]
    fn overlapping_notes_add_across_tracks_and_within_one() {
        let bytes = write(
            vec![
                vec![note(0, 0, 60, 80), note(100, 0, 60, 0)],
                vec![note(50, 1, 60, 30), note(0, 1, 60, 20), note(100, 1, 60, 0)],
            ],
            100,
        );
        let roll = MidiFile::parse(&bytes).unwrap().roll(1000, 0.0);
        // 80 alone, then 80 + 30 + 20 (two open notes of track 2), then 50 after track 1 ends
        assert_eq!(
            (
                roll.frames[100][39],
                roll.frames[300][39],
                roll.frames[600][39]
            ),
            (80, 130, 50)
        );
        assert_eq!(roll.frames.len(), 750);
    }

    #[test]
    fn invalid_smpte_rate_is_an_error_not_a_panic() {
        // found by the fuzzer: division 0x80xx (fps byte -128)
        let bytes = b"MThd\0\0\0\x06\0\0\0\x01\x80\x04MTrk\0\0\0\x04\0\xff\x2f\0";
        assert!(matches!(MidiFile::parse(bytes), Err(MidiError::Timing(_))));
    }

    #[test]
    fn smpte_division_in_a_later_header_is_an_error_not_a_panic() {
        // found by the fuzzer: a first header with metrical timing, then a second header
        // whose division is SMPTE with fps byte -128; midly reads the later one
        let bytes = b"MThd\0\0\0\x06\0\x01\0\x02\0\xdcMThd\0\0\0\x06\0\x01\0\x02\x80\xdc\
                      MTrk\0\0\0\x13\0MTrk\0\0\xff\0\x13\0";
        assert_eq!(bytes.len(), 47);
        let err = MidiFile::parse(bytes).unwrap_err();
        assert!(
            matches!(&err, MidiError::Timing(m) if m.contains("128") && m.contains("byte 14")),
            "{err}"
        );
    }

    /// `smf` in an RMID wrapper (RIFF, little-endian lengths, odd chunks padded).
    fn rmid(smf: &[u8]) -> Vec<u8> {
        let mut data = b"RMIDdata".to_vec();
        data.extend((smf.len() as u32).to_le_bytes());
        data.extend(smf);
        if smf.len() % 2 == 1 {
            data.push(0);
        }
        let mut out = b"RIFF".to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn rmid_wrapped_files_are_read_and_checked() {
        let good = write(vec![vec![note(0, 0, 60, 80), note(100, 0, 60, 0)]], 100);
        let events = MidiFile::parse(&rmid(&good)).unwrap().events;
        assert_eq!(events, MidiFile::parse(&good).unwrap().events);
        assert_eq!(events.len(), 2);
        let bad = b"MThd\0\0\0\x06\0\0\0\x01\x80\x04MTrk\0\0\0\x04\0\xff\x2f\0";
        assert!(matches!(
            MidiFile::parse(&rmid(bad)),
            Err(MidiError::Timing(_))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(MidiFile::parse(b"RIFF....WAVEfmt ").is_err());
        assert!(MidiFile::parse(&[]).is_err());
    }
}
