//! Standard MIDI files (format 0 and 1) to timed key events and piano rolls.
//!
//! Event times follow pretty_midi's tick-to-time mapping, float for float
//! (`tick_scale = 60 / (bpm · ppq)` per tempo segment, `bpm = 6e7 / tempo`), because the
//! checkpoints' training rolls were made that way and an event on a frame boundary must land
//! in the same frame. All tracks and channels are merged into one piano, except channel 10
//! (General MIDI percussion).

use std::path::Path;

use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};

use crate::error::MidiError;
use crate::roll::{KeyEvent, Roll, RollEncoder};

/// General MIDI percussion channel (10, zero-based 9): drum hits are not piano keys.
const PERCUSSION_CHANNEL: u8 = 9;

/// A key event at its time in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedEvent {
    pub seconds: f64,
    pub tick: u64,
    pub event: KeyEvent,
}

/// The piano-relevant content of a MIDI file.
#[derive(Debug, Clone, PartialEq)]
pub struct MidiFile {
    /// Events in time order (stable: file order within a tick).
    pub events: Vec<TimedEvent>,
}

impl MidiFile {
    pub fn load(path: &Path) -> Result<MidiFile, MidiError> {
        let bytes = std::fs::read(path).map_err(|source| MidiError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        MidiFile::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<MidiFile, MidiError> {
        check_smpte_division(bytes)?;
        let smf = Smf::parse(bytes).map_err(|e| MidiError::Parse(e.to_string()))?;
        let clock = Clock::new(&smf)?;
        let mut raw: Vec<(u64, usize, KeyEvent)> = Vec::new();
        let mut last_tick = 0u64;
        for track in &smf.tracks {
            let mut tick = 0u64;
            for ev in track {
                tick += ev.delta.as_int() as u64;
                if let Some(event) = key_event(&ev.kind) {
                    raw.push((tick, raw.len(), event));
                }
            }
            last_tick = last_tick.max(tick);
        }
        raw.sort_by_key(|&(tick, order, _)| (tick, order));
        close_dangling(&mut raw, last_tick);
        let events = raw
            .into_iter()
            .map(|(tick, _, event)| TimedEvent {
                seconds: clock.seconds(tick),
                tick,
                event,
            })
            .collect();
        Ok(MidiFile { events })
    }

    /// Time of the last event in seconds (0 for a file without notes).
    pub fn duration(&self) -> f64 {
        self.events.last().map_or(0.0, |e| e.seconds)
    }

    /// The piano roll at `midi_rate`, through the end of the last event plus `tail_seconds`.
    pub fn roll(&self, midi_rate: u32, tail_seconds: f64) -> Roll {
        let frame_of = |seconds: f64| (seconds * midi_rate as f64).floor().max(0.0) as u64;
        let end = self.events.last().map_or(0, |e| frame_of(e.seconds));
        let total = end + (tail_seconds.max(0.0) * midi_rate as f64).round() as u64;
        let mut encoder = RollEncoder::new();
        let mut frames = Vec::with_capacity(total as usize);
        for e in &self.events {
            let f = frame_of(e.seconds);
            // every frame before this event's frame is complete
            while (frames.len() as u64) < f {
                encoder.advance_to(frames.len() as u64);
                frames.push(encoder.roll());
            }
            encoder.advance_to(f);
            encoder.apply(e.event, e.tick);
        }
        while (frames.len() as u64) < total {
            encoder.advance_to(frames.len() as u64);
            frames.push(encoder.roll());
        }
        frames.truncate(total as usize);
        Roll { midi_rate, frames }
    }
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

fn key_event(kind: &TrackEventKind) -> Option<KeyEvent> {
    let TrackEventKind::Midi { channel, message } = kind else {
        return None;
    };
    if channel.as_int() == PERCUSSION_CHANNEL {
        return None;
    }
    match *message {
        MidiMessage::NoteOn { key, vel } => Some(KeyEvent::NoteOn {
            note: key.as_int(),
            velocity: vel.as_int(),
        }),
        MidiMessage::NoteOff { key, .. } => Some(KeyEvent::NoteOff { note: key.as_int() }),
        MidiMessage::Controller { controller, value } => {
            KeyEvent::from_midi(0xB0, controller.as_int(), value.as_int())
        }
        _ => None,
    }
}

/// Notes still held and a pedal still down at the end of the file are released at its last
/// tick, so a truncated file still ends.
fn close_dangling(raw: &mut Vec<(u64, usize, KeyEvent)>, last_tick: u64) {
    let mut encoder = RollEncoder::new();
    for &(tick, _, event) in raw.iter() {
        encoder.apply(event, tick);
    }
    let order = raw.len();
    if encoder.pedal_down() {
        raw.push((last_tick, order, KeyEvent::Sustain { value: 0 }));
    }
    for (k, &v) in encoder.held().iter().enumerate() {
        if v > 0 {
            let note = crate::model::LOWEST_NOTE + k as u8;
            raw.push((last_tick, order + 1 + k, KeyEvent::NoteOff { note }));
        }
    }
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
        // Tempo changes from every track (format 1 files keep them in track 0; some files don't).
        let mut tempos: Vec<(u64, u32)> = Vec::new();
        for track in &smf.tracks {
            let mut tick = 0u64;
            for ev in track {
                tick += ev.delta.as_int() as u64;
                if let TrackEventKind::Meta(MetaMessage::Tempo(t)) = ev.kind {
                    tempos.push((tick, t.as_int()));
                }
            }
        }
        tempos.sort_by_key(|&(tick, _)| tick);
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
                vec![note(5, 9, 62, 80), note(5, 1, 64, 70)],
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
    fn dangling_notes_end_at_the_last_tick() {
        let end = ev(400, TrackEventKind::Meta(MetaMessage::EndOfTrack));
        let bytes = write(vec![vec![note(0, 0, 60, 80), end]], 100);
        let roll = MidiFile::parse(&bytes).unwrap().roll(1000, 0.0);
        // 400 ticks at 120 bpm, 100 ppq = 2 s
        assert_eq!(roll.frames.len(), 2000);
        assert_eq!(roll.frames[1999][39], 80);
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
