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
//! instrument, give the same roll. A file's events are read from its bytes as they are asked
//! for ([`smf`]: a file costs about its size), a list's from memory; [`clock`] maps ticks to
//! seconds, [`container`] checks the chunks midly would misread.

use std::path::Path;
use std::sync::Arc;

use crate::error::MidiError;
use crate::notes::NoteMap;
use crate::roll::{frame_start, KeyEvent, KeyFrame, Roll, RollEncoder};

mod clock;
mod container;
mod smf;

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

/// The piano-relevant content of a MIDI file, or of a performance made as a list of events.
#[derive(Debug, Clone, PartialEq)]
pub struct MidiFile {
    source: Source,
    /// Where the roll ends (seconds).
    end: f64,
    /// What every event of a file goes through on its way out ([`MidiFile::with_notes`]).
    notes: Option<NoteMap>,
}

/// Where the events come from: a list in memory, or a file's bytes, read as they are played
/// (a file costs its own size, not tens of bytes an event).
#[derive(Debug, Clone, PartialEq)]
enum Source {
    List {
        events: Vec<TimedEvent>,
        instruments: usize,
    },
    /// shared: a mapped copy ([`MidiFile::with_notes`]) does not copy the bytes
    File(Arc<smf::SmfFile>),
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
        MidiFile::from_bytes(bytes)
    }

    /// A standard MIDI file (format 0 or 1, bare or in an RMID wrapper) from its bytes.
    pub fn parse(bytes: &[u8]) -> Result<MidiFile, MidiError> {
        MidiFile::from_bytes(bytes.to_vec())
    }

    /// As [`MidiFile::parse`], keeping `bytes` (the events are read from them as they play).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<MidiFile, MidiError> {
        let file = smf::SmfFile::open(bytes)?;
        Ok(MidiFile {
            end: file.end(),
            source: Source::File(Arc::new(file)),
            notes: None,
        })
    }

    /// Events that make up a performance by themselves (one instrument per distinct
    /// `instrument`), in time order, ending with the last of them.
    pub fn from_events(events: Vec<TimedEvent>) -> MidiFile {
        let end = events.last().map_or(0.0, |e| e.seconds);
        MidiFile::from_events_until(events, end)
    }

    /// As [`MidiFile::from_events`], the roll ending at `end` seconds.
    pub fn from_events_until(events: Vec<TimedEvent>, end: f64) -> MidiFile {
        let instruments = events.iter().map(|e| e.instrument as usize + 1).max();
        MidiFile {
            source: Source::List {
                events,
                instruments: instruments.unwrap_or(1),
            },
            end,
            notes: None,
        }
    }

    /// The events in time order (stable: file order within a tick and instrument; the
    /// notes of a tick before its pedals).
    pub fn events(&self) -> Events<'_> {
        let inner = match &self.source {
            Source::List { events, .. } => Inner::List(events.iter()),
            Source::File(file) => Inner::File(Box::new(file.events())),
        };
        Events {
            inner,
            notes: self.notes.clone(),
        }
    }

    /// How many encoder channels the events use.
    fn instruments(&self) -> usize {
        match &self.source {
            Source::List { instruments, .. } => *instruments,
            Source::File(file) => file.instruments().max(1),
        }
    }

    /// Where the roll ends, in seconds (0 for a file without notes).
    pub fn duration(&self) -> f64 {
        self.end
    }

    /// The same performance with every event through `map` (transposed, its velocities
    /// curved, softened under the soft pedal); notes the map drops are gone, and the roll
    /// keeps its length.
    pub fn with_notes(&self, map: &NoteMap) -> MidiFile {
        match (&self.source, &self.notes) {
            // a file is mapped as it plays
            (Source::File(_), None) => MidiFile {
                notes: Some(map.clone()),
                ..self.clone()
            },
            _ => {
                let mut map = map.clone();
                let events = self
                    .events()
                    .filter_map(|e| {
                        let event = map.apply(Some(e.instrument as usize), e.event)?;
                        Some(TimedEvent { event, ..e })
                    })
                    .collect();
                MidiFile::from_events_until(events, self.end)
            }
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
        self.events().map(move |e| {
            let frame = frame_of(e.seconds, midi_rate);
            (frame_start(frame, sample_rate, midi_rate), e.event)
        })
    }

    /// The roll's frames one after another, [`MidiFile::frame_count`] of them: a render
    /// streams them instead of holding 88 bytes a frame for the whole piece.
    pub fn frames(&self, midi_rate: u32, tail_seconds: f64) -> Frames<'_> {
        Frames {
            events: self.events().peekable(),
            encoder: RollEncoder::with_instruments(self.instruments()),
            frame: 0,
            total: self.frame_count(midi_rate, tail_seconds),
            midi_rate,
        }
    }
}

/// A [`MidiFile`]'s events in time order ([`MidiFile::events`]).
pub struct Events<'a> {
    inner: Inner<'a>,
    notes: Option<NoteMap>,
}

enum Inner<'a> {
    List(std::slice::Iter<'a, TimedEvent>),
    File(Box<smf::Playback<'a>>),
}

impl Iterator for Events<'_> {
    type Item = TimedEvent;

    fn next(&mut self) -> Option<TimedEvent> {
        loop {
            let e = match &mut self.inner {
                Inner::List(events) => *events.next()?,
                Inner::File(events) => events.next()?,
            };
            let Some(map) = &mut self.notes else {
                return Some(e);
            };
            if let Some(event) = map.apply(Some(e.instrument as usize), e.event) {
                return Some(TimedEvent { event, ..e });
            }
        }
    }
}

/// The frame an event at `seconds` falls in, as pretty_midi's roll puts it.
fn frame_of(seconds: f64, midi_rate: u32) -> u64 {
    (seconds * midi_rate as f64).floor().max(0.0) as u64
}

/// The frames of a [`MidiFile`]'s roll, encoded as they are asked for.
pub struct Frames<'a> {
    events: std::iter::Peekable<Events<'a>>,
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
        while let Some(e) = self
            .events
            .next_if(|e| frame_of(e.seconds, self.midi_rate) <= self.frame)
        {
            self.encoder
                .apply_on(e.instrument as usize, e.event, e.tick);
        }
        self.frame += 1;
        Some(self.encoder.roll())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.total - self.frame) as usize;
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KEYS;
    use midly::num::{u15, u24, u28, u4, u7};
    use midly::{
        Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind,
    };

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
        let instruments = f.events().map(|e| e.instrument).max().unwrap() + 1;
        assert_eq!(instruments, 960);
        // the roll is the notes' sum, frame by frame, and silence after them
        let roll = f.roll(1000, 0.5).frames;
        let mut expected = vec![[0u32; KEYS]; roll.len()];
        let mut open = [0u32; KEYS];
        let mut frame = 0usize;
        for e in f.events() {
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
        let times: Vec<f64> = f.events().map(|e| e.seconds).collect();
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
            .events()
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
        assert_eq!(f.events().count(), 0);
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
        let events: Vec<_> = MidiFile::parse(&rmid(&good)).unwrap().events().collect();
        assert_eq!(
            events,
            MidiFile::parse(&good).unwrap().events().collect::<Vec<_>>()
        );
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
