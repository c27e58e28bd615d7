//! Ticks to seconds, as pretty_midi maps them, read from the file as time goes on: a tempo
//! map is never held whole (a track of tempo changes is as long as the file).

use midly::{EventIter, MetaMessage, Timing, TrackEventKind};

use crate::error::MidiError;

/// How a file counts time: its header's division.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Timebase {
    /// Ticks per quarter note; the tempo comes from track 0.
    Metrical(f64),
    /// SMPTE: ticks per second.
    Timecode(f64),
}

impl Timebase {
    pub(super) fn of(timing: Timing) -> Result<Timebase, MidiError> {
        match timing {
            Timing::Metrical(ppq) if ppq.as_int() > 0 => {
                Ok(Timebase::Metrical(ppq.as_int() as f64))
            }
            Timing::Metrical(_) => Err(MidiError::Timing("zero ticks per quarter note".into())),
            Timing::Timecode(fps, sub) if sub > 0 => {
                Ok(Timebase::Timecode(fps.as_f32() as f64 * sub as f64))
            }
            Timing::Timecode(..) => Err(MidiError::Timing("zero ticks per SMPTE frame".into())),
        }
    }
}

/// pretty_midi's tick-to-time mapping, float for float.
#[derive(Debug, Clone)]
pub(super) enum Clock<'a> {
    /// SMPTE: ticks per second.
    Timecode(f64),
    Metrical(TempoMap<'a>),
}

impl<'a> Clock<'a> {
    /// The clock of a file with `timebase` whose first track is `track0`.
    pub(super) fn new(timebase: Timebase, track0: Option<EventIter<'a>>) -> Clock<'a> {
        match timebase {
            Timebase::Timecode(per_second) => Clock::Timecode(per_second),
            Timebase::Metrical(ppq) => Clock::Metrical(TempoMap::new(ppq, track0)),
        }
    }

    /// The time of `tick`, in seconds; `tick` never less than the last one asked for.
    pub(super) fn seconds(&mut self, tick: u64) -> f64 {
        match self {
            Clock::Timecode(per_second) => tick as f64 / *per_second,
            Clock::Metrical(map) => map.seconds(tick),
        }
    }
}

/// Tempo changes from track 0 only (format 1 keeps them there; a tempo elsewhere did not move
/// the training rolls either), `tick_scale = 60 / (bpm · ppq)` per segment, `bpm = 6e7 /
/// tempo`, 120 bpm until the first change; a change to the scale already in force starts no
/// segment. Asked for ticks that never go back, it reads track 0 only as far as they reach.
#[derive(Debug, Clone)]
pub(super) struct TempoMap<'a> {
    ppq: f64,
    /// The segment in force: start tick, seconds at its start, seconds per tick.
    segment: (u64, f64, f64),
    /// The next segment's start tick and scale, read ahead.
    next: Option<(u64, f64)>,
    /// Track 0 after `next`, and the tick it has reached.
    track: EventIter<'a>,
    tick: u64,
}

impl<'a> TempoMap<'a> {
    fn new(ppq: f64, track0: Option<EventIter<'a>>) -> TempoMap<'a> {
        let mut map = TempoMap {
            ppq,
            segment: (0, 0.0, 60.0 / (120.0 * ppq)),
            next: None,
            track: track0.unwrap_or_else(|| EventIter::new(&[])),
            tick: 0,
        };
        // tempi at tick 0 replace the default (the last of them counts)
        while let Some((tick, scale)) = map.read_tempo() {
            if tick > 0 {
                if scale != map.segment.2 {
                    map.next = Some((tick, scale));
                } else {
                    map.find_next();
                }
                break;
            }
            map.segment.2 = scale;
        }
        map
    }

    /// The next tempo change in track 0: its tick and scale.
    fn read_tempo(&mut self) -> Option<(u64, f64)> {
        for event in self.track.by_ref() {
            let Ok(event) = event else { return None };
            self.tick += event.delta.as_int() as u64;
            if let TrackEventKind::Meta(MetaMessage::Tempo(t)) = event.kind {
                let bpm = 6e7 / t.as_int().max(1) as f64;
                return Some((self.tick, 60.0 / (bpm * self.ppq)));
            }
        }
        None
    }

    /// Reads ahead to the next change of the scale in force.
    fn find_next(&mut self) {
        self.next = None;
        while let Some((tick, scale)) = self.read_tempo() {
            if scale != self.segment.2 {
                self.next = Some((tick, scale));
                return;
            }
        }
    }

    fn seconds(&mut self, tick: u64) -> f64 {
        while let Some((start, scale)) = self.next.filter(|&(start, _)| start <= tick) {
            let (prev, time, prev_scale) = self.segment;
            self.segment = (start, time + prev_scale * (start - prev) as f64, scale);
            self.find_next();
        }
        let (start, time, scale) = self.segment;
        time + scale * (tick - start) as f64
    }
}
