//! A standard MIDI file played from its bytes, in two readings, without holding its events.
//!
//! The first reading ([`Plan::read_track`]) builds pretty_midi's instruments as its
//! `_load_instruments` does, note by note, but keeps only what the second needs: each
//! note-on's fate (dropped, or the program of the instrument its note ends in: a note belongs
//! to the program in force at its note-off), each instrument's controller list (whose sustain
//! values apply up to its last release), and where the roll ends. The second ([`Playback`])
//! walks the tracks side by side in time order and hands out their events one by one.
//! A file costs its own size and a byte a note, not tens of bytes an event (issue 27).
//!
//! The order of the events differs from pretty_midi's note list (file order, not note-off
//! order, within a tick) in ways the encoder cannot tell apart: instruments are independent,
//! and within one, at one tick, the notes come first, then the sustain values, then the
//! sostenuto and soft pedals, as the module [`super`] says.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ops::Range;

use midly::{EventIter, MidiMessage, TrackEventKind};

use super::clock::{Clock, Timebase};
use super::TimedEvent;
use crate::error::MidiError;
use crate::limits::MAX_INSTRUMENTS;
use crate::roll::KeyEvent;

/// General MIDI percussion channel (10, zero-based 9): drum hits are not piano keys.
const PERCUSSION_CHANNEL: u8 = 9;
const SUSTAIN_CC: u8 = 64;
const SOSTENUTO_CC: u8 = 66;
const SOFT_CC: u8 = 67;

/// Instruments of any kind, percussion included, a file may make: beyond this many (and
/// beyond [`MAX_INSTRUMENTS`] that sound) it is refused; it bounds the plan's size.
const MAX_ALL_INSTRUMENTS: usize = 16 * MAX_INSTRUMENTS;

/// A note-on's fate, a byte a note-on: dropped (never ended, or ended at its own tick with
/// nothing else), or `1 + the program` its note ended in.
const DROPPED: u8 = 0;

/// A file's bytes and its plan: [`SmfFile::events`] plays it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SmfFile {
    bytes: Vec<u8>,
    timebase: Timebase,
    /// Track 0, which holds the tempo map.
    first_track: Option<Range<usize>>,
    plan: Plan,
    /// Where the roll ends (seconds).
    end: f64,
}

impl SmfFile {
    /// Reads `bytes` once through: an error for a file midly cannot read, an unsupported
    /// timing or too many instruments.
    pub(crate) fn open(bytes: Vec<u8>) -> Result<SmfFile, MidiError> {
        super::container::check_smpte_division(&bytes)?;
        let (header, tracks) = midly::parse(&bytes).map_err(|e| MidiError::Parse(e.to_string()))?;
        let timebase = Timebase::of(header.timing)?;
        // tracks as ranges of `bytes`, which the file keeps
        let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
        let mut plan = Plan::default();
        let mut first_track = None;
        for (index, track) in tracks.enumerate() {
            let events = track.map_err(|e| MidiError::Parse(e.to_string()))?;
            let start = offset(events.unread());
            let range = start..start + events.unread().len();
            first_track.get_or_insert(range.clone());
            let index =
                u32::try_from(index).map_err(|_| MidiError::Parse("too many tracks".into()))?;
            plan.read_track(index, range, events)?;
        }
        plan.finish()?;
        let mut file = SmfFile {
            bytes,
            timebase,
            first_track,
            plan,
            end: 0.0,
        };
        file.end = file.plan.end_tick.map_or(0.0, |t| file.clock().seconds(t));
        Ok(file)
    }

    fn clock(&self) -> Clock<'_> {
        let track0 = self
            .first_track
            .clone()
            .map(|r| EventIter::new(&self.bytes[r]));
        Clock::new(self.timebase, track0)
    }

    /// Where the roll ends, in seconds: the latest note-off, controller or pitch bend of an
    /// instrument that has notes (percussion included).
    pub(crate) fn end(&self) -> f64 {
        self.end
    }

    /// How many encoder channels its events use (one per sounding instrument).
    pub(crate) fn instruments(&self) -> usize {
        self.plan.sounding as usize
    }

    /// Its events in time order.
    pub(crate) fn events(&self) -> Playback<'_> {
        let cursors: Vec<Cursor> = (self.plan.tracks.iter())
            .map(|t| Cursor::new(EventIter::new(&self.bytes[t.bytes.clone()])))
            .collect();
        let queue = (cursors.iter().enumerate())
            .filter_map(|(i, c)| c.next.map(|(tick, _)| Reverse((tick, i))))
            .collect();
        Playback {
            plan: &self.plan,
            clock: self.clock(),
            cursors,
            queue,
            group: None,
            sustains: vec![0; self.plan.lists.len()],
            out: VecDeque::new(),
        }
    }
}

/// What the first reading keeps.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plan {
    /// pretty_midi's instruments, in the order it makes them.
    instruments: Vec<Planned>,
    /// (program, channel, track) → instrument.
    by_key: HashMap<(u8, u8, u32), usize>,
    /// (channel, track) → the list of the controllers met before that channel had an
    /// instrument, where an instrument took it over (pretty_midi's "stragglers").
    stragglers: HashMap<(u8, u32), usize>,
    lists: Vec<List>,
    /// The tracks with an instrument that sounds, in file order.
    tracks: Vec<TrackPlan>,
    /// Instruments that sound (not percussion).
    sounding: u16,
    end_tick: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Planned {
    list: usize,
    /// The index, in its track, of the note-off that made it: a controller after it goes to
    /// its list, one before it to the channel's straggler list.
    made_at: u64,
    /// Its encoder channel; `None` for percussion.
    channel: Option<u16>,
    /// The latest of its notes' ends.
    last_end: u64,
}

/// An instrument's controllers and pitch bends, as far as the events need them.
#[derive(Debug, Clone, Default, PartialEq)]
struct List {
    /// Sustain values met, and how many of them apply: all up to the last release (a press
    /// never released does nothing: pretty_midi sustains at the release).
    sustains: u64,
    applied: u64,
    down: bool,
    last_tick: Option<u64>,
    /// The sounding instruments that own it (several may share a straggler list).
    members: Vec<u16>,
}

impl List {
    fn add(&mut self, tick: u64, controller: Option<(u8, u8)>) {
        self.last_tick = Some(tick);
        if let Some((SUSTAIN_CC, value)) = controller {
            self.sustains += 1;
            if self.down && value < 64 {
                self.applied = self.sustains;
            }
            self.down = value >= 64;
        }
    }
}

/// A track the second reading plays.
#[derive(Debug, Clone, PartialEq)]
struct TrackPlan {
    index: u32,
    bytes: Range<usize>,
    /// Each note-on's fate ([`DROPPED`]).
    fates: Vec<u8>,
}

/// The open notes of one key of one channel while a track is read, oldest first: their
/// note-on numbers as LEB128 steps from the one before (a byte or two a note, where a
/// hostile file holds millions open).
#[derive(Default)]
struct Open {
    steps: Vec<u8>,
    count: usize,
    last: usize,
    /// The tick of the latest note-on, and how many were opened at it.
    latest: u64,
    at_latest: usize,
}

impl Open {
    fn push(&mut self, n: usize) {
        let mut step = n - self.last;
        while step >= 0x80 {
            self.steps.push(step as u8 | 0x80);
            step >>= 7;
        }
        self.steps.push(step as u8);
        (self.last, self.count) = (n, self.count + 1);
    }

    /// The note-on numbers, oldest first.
    fn numbers(&self) -> impl Iterator<Item = usize> + '_ {
        let mut bytes = self.steps.iter();
        let mut n = 0usize;
        std::iter::from_fn(move || {
            let (mut step, mut shift) = (0usize, 0);
            loop {
                let b = *bytes.next()?;
                step |= ((b & 0x7F) as usize) << shift;
                shift += 7;
                if b < 0x80 {
                    n += step;
                    return Some(n);
                }
            }
        })
    }
}

/// One track's reading state.
struct TrackReading {
    index: u32,
    program: [u8; 16],
    open: HashMap<(u8, u8), Open>,
    /// Straggler lists not taken over yet: dropped with the track if none is.
    loose: HashMap<u8, List>,
    plan: TrackPlan,
}

impl Plan {
    /// pretty_midi's `_load_instruments` over one track.
    fn read_track(
        &mut self,
        index: u32,
        bytes: Range<usize>,
        events: EventIter,
    ) -> Result<(), MidiError> {
        let mut t = TrackReading {
            index,
            program: [0; 16],
            open: HashMap::new(),
            loose: HashMap::new(),
            plan: TrackPlan {
                index,
                bytes,
                fates: Vec::new(),
            },
        };
        let sounding_before = self.sounding;
        let mut tick = 0u64;
        for (position, event) in events.enumerate() {
            let Ok(event) = event else { break };
            tick += event.delta.as_int() as u64;
            let TrackEventKind::Midi { channel, message } = event.kind else {
                continue;
            };
            let ch = channel.as_int();
            match message {
                MidiMessage::ProgramChange { program } => t.program[ch as usize] = program.as_int(),
                MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                    let open = t.open.entry((ch, key.as_int())).or_default();
                    if open.count == 0 || open.latest != tick {
                        (open.latest, open.at_latest) = (tick, 0);
                    }
                    open.at_latest += 1;
                    open.push(t.plan.fates.len());
                    t.plan.fates.push(DROPPED);
                }
                MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                    self.note_off(&mut t, ch, key.as_int(), tick, position as u64)?;
                }
                MidiMessage::Controller { controller, value } => {
                    let cc = Some((controller.as_int(), value.as_int()));
                    self.list_of(&mut t, ch).add(tick, cc);
                }
                MidiMessage::PitchBend { .. } => self.list_of(&mut t, ch).add(tick, None),
                _ => {}
            }
        }
        if self.sounding > sounding_before {
            self.tracks.push(t.plan);
        }
        Ok(())
    }

    /// A note-off of `key` at `tick` (the track's event `position`): every open note of the key
    /// that began earlier ends in the instrument of the channel's program now; notes that
    /// began at this tick stay open beside them, or are dropped when nothing else ended.
    fn note_off(
        &mut self,
        t: &mut TrackReading,
        ch: u8,
        key: u8,
        tick: u64,
        position: u64,
    ) -> Result<(), MidiError> {
        let Some(open) = t.open.remove(&(ch, key)) else {
            return Ok(());
        };
        let keep = if open.latest == tick {
            open.at_latest
        } else {
            0
        };
        let close = open.count - keep;
        if close == 0 {
            return Ok(());
        }
        let program = t.program[ch as usize];
        let i = self.instrument(t, program, ch, position)?;
        self.instruments[i].last_end = tick;
        let mut kept = Open {
            latest: open.latest,
            at_latest: keep,
            ..Open::default()
        };
        for (k, n) in open.numbers().enumerate() {
            if k < close {
                t.plan.fates[n] = 1 + program;
            } else {
                kept.push(n);
            }
        }
        if keep > 0 {
            t.open.insert((ch, key), kept);
        }
        Ok(())
    }

    /// The instrument notes ended now go to, made if need be (taking over the channel's
    /// straggler list, as pretty_midi does).
    fn instrument(
        &mut self,
        t: &mut TrackReading,
        program: u8,
        ch: u8,
        position: u64,
    ) -> Result<usize, MidiError> {
        if let Some(&i) = self.by_key.get(&(program, ch, t.index)) {
            return Ok(i);
        }
        if self.instruments.len() == MAX_ALL_INSTRUMENTS {
            return Err(MidiError::TooManyInstruments(MAX_ALL_INSTRUMENTS + 1));
        }
        let list = match self.stragglers.get(&(ch, t.index)) {
            Some(&l) => l,
            None => {
                self.lists.push(t.loose.remove(&ch).unwrap_or_default());
                let l = self.lists.len() - 1;
                if self.lists[l].last_tick.is_some() {
                    // a straggler list, taken over now (and by the channel's later instruments)
                    self.stragglers.insert((ch, t.index), l);
                }
                l
            }
        };
        let channel = (ch != PERCUSSION_CHANNEL).then(|| {
            self.sounding += 1;
            self.sounding - 1
        });
        self.instruments.push(Planned {
            list,
            made_at: position,
            channel,
            last_end: 0,
        });
        self.by_key
            .insert((program, ch, t.index), self.instruments.len() - 1);
        Ok(self.instruments.len() - 1)
    }

    /// The list a controller goes to: its instrument's, else the channel's straggler list.
    fn list_of<'a>(&'a mut self, t: &'a mut TrackReading, ch: u8) -> &'a mut List {
        let program = t.program[ch as usize];
        if let Some(&i) = self.by_key.get(&(program, ch, t.index)) {
            return &mut self.lists[self.instruments[i].list];
        }
        match self.stragglers.get(&(ch, t.index)) {
            Some(&l) => &mut self.lists[l],
            None => t.loose.entry(ch).or_default(),
        }
    }

    /// Where the roll ends, which lists each sounding instrument takes; the instrument cap.
    fn finish(&mut self) -> Result<(), MidiError> {
        if self.sounding as usize > MAX_INSTRUMENTS {
            return Err(MidiError::TooManyInstruments(self.sounding as usize));
        }
        for inst in &self.instruments {
            let list = &mut self.lists[inst.list];
            self.end_tick = self.end_tick.max(Some(inst.last_end)).max(list.last_tick);
            list.members.extend(inst.channel);
        }
        Ok(())
    }

    /// The list of a controller at `position` in `track`, on `ch` under `program`: as the
    /// first reading routed it; `None` for a list no sounding instrument took.
    fn route(&self, program: u8, ch: u8, track: u32, position: u64) -> Option<usize> {
        let own = (self.by_key.get(&(program, ch, track)))
            .map(|&i| &self.instruments[i])
            .filter(|i| i.made_at < position);
        match own {
            Some(i) => Some(i.list),
            None => self.stragglers.get(&(ch, track)).copied(),
        }
    }

    /// The encoder channel of the sounding instrument (`program`, `ch`, `track`).
    fn channel(&self, program: u8, ch: u8, track: u32) -> Option<u16> {
        let &i = self.by_key.get(&(program, ch, track))?;
        self.instruments[i].channel
    }
}

/// Where a track's reading is.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    events: EventIter<'a>,
    /// The next event, its tick and its index in the track; `None` at the track's end.
    next: Option<(u64, TrackEventKind<'a>)>,
    position: u64,
    tick: u64,
    program: [u8; 16],
    /// The number of the next note-on.
    note_ons: usize,
}

impl<'a> Cursor<'a> {
    fn new(events: EventIter<'a>) -> Cursor<'a> {
        let mut c = Cursor {
            events,
            next: None,
            position: 0,
            tick: 0,
            program: [0; 16],
            note_ons: 0,
        };
        c.read();
        c.position = 0;
        c
    }

    fn read(&mut self) {
        self.next = match self.events.next() {
            Some(Ok(event)) => {
                self.tick += event.delta.as_int() as u64;
                Some((self.tick, event.kind))
            }
            _ => None,
        };
    }

    fn advance(&mut self) {
        self.read();
        self.position += 1;
    }
}

/// Which events of a tick a track's pass hands out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Notes,
    Sustain,
    Pedals,
}

/// One track at one tick: played three times over, once a phase.
struct Group<'a> {
    cursor: usize,
    tick: u64,
    phase: Phase,
    /// The track as the tick began, and a copy going through it again.
    start: Cursor<'a>,
    replay: Cursor<'a>,
}

/// A file's events in time order ([`SmfFile::events`]).
pub(crate) struct Playback<'a> {
    plan: &'a Plan,
    clock: Clock<'a>,
    cursors: Vec<Cursor<'a>>,
    /// (next tick, cursor) of every track not at its end and not in `group`.
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    group: Option<Group<'a>>,
    /// Per list: the sustain values met so far.
    sustains: Vec<u64>,
    /// Events of the latest controller (one per instrument sharing its list).
    out: VecDeque<TimedEvent>,
}

impl Iterator for Playback<'_> {
    type Item = TimedEvent;

    fn next(&mut self) -> Option<TimedEvent> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            if !self.step() {
                return None;
            }
        }
    }
}

impl Playback<'_> {
    /// Reads one event into `out` (or none); false at the end of the file.
    fn step(&mut self) -> bool {
        let Playback {
            plan,
            clock,
            cursors,
            queue,
            group,
            sustains,
            out,
        } = self;
        if group.is_none() {
            let Some(Reverse((tick, cursor))) = queue.pop() else {
                return false;
            };
            let start = cursors[cursor].clone();
            *group = Some(Group {
                cursor,
                tick,
                phase: Phase::Notes,
                replay: start.clone(),
                start,
            });
        }
        let Some(g) = group.as_mut() else {
            return false;
        };
        let track = &plan.tracks[g.cursor];
        let c = match g.phase {
            Phase::Notes => &mut cursors[g.cursor],
            Phase::Sustain | Phase::Pedals => &mut g.replay,
        };
        let Some((tick, kind)) = c.next.filter(|&(tick, _)| tick == g.tick) else {
            // this phase is over
            match g.phase {
                Phase::Notes => g.phase = Phase::Sustain,
                Phase::Sustain => {
                    g.phase = Phase::Pedals;
                    g.replay = g.start.clone();
                }
                Phase::Pedals => {
                    if let Some((tick, _)) = cursors[g.cursor].next {
                        queue.push(Reverse((tick, g.cursor)));
                    }
                    *group = None;
                }
            }
            return true;
        };
        if let TrackEventKind::Midi { channel, message } = kind {
            let ch = channel.as_int();
            let (instruments, event) = match (g.phase, message) {
                (_, MidiMessage::ProgramChange { program }) => {
                    c.program[ch as usize] = program.as_int();
                    (None, None)
                }
                (Phase::Notes, MidiMessage::NoteOn { key, vel }) if vel.as_int() > 0 => {
                    let (note, velocity) = (key.as_int(), vel.as_int());
                    let i = note_on(plan, track, c, ch);
                    (
                        i.map(Members::One),
                        Some(KeyEvent::NoteOn { note, velocity }),
                    )
                }
                (
                    Phase::Notes,
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. },
                ) => {
                    let i = plan.channel(c.program[ch as usize], ch, track.index);
                    (
                        i.map(Members::One),
                        Some(KeyEvent::NoteOff { note: key.as_int() }),
                    )
                }
                (Phase::Sustain | Phase::Pedals, MidiMessage::Controller { controller, value }) => {
                    let l = plan.route(c.program[ch as usize], ch, track.index, c.position);
                    let value = value.as_int();
                    let event = match (g.phase, controller.as_int(), l) {
                        (Phase::Sustain, SUSTAIN_CC, Some(l)) => {
                            sustains[l] += 1;
                            (sustains[l] <= plan.lists[l].applied)
                                .then_some(KeyEvent::Sustain { value })
                        }
                        (Phase::Pedals, SOSTENUTO_CC, _) => Some(KeyEvent::Sostenuto { value }),
                        (Phase::Pedals, SOFT_CC, _) => Some(KeyEvent::SoftPedal { value }),
                        _ => None,
                    };
                    (l.map(|l| Members::List(&plan.lists[l].members)), event)
                }
                _ => (None, None),
            };
            if let (Some(instruments), Some(event)) = (instruments, event) {
                let seconds = clock.seconds(tick);
                let timed = |instrument| TimedEvent {
                    seconds,
                    tick,
                    instrument,
                    event,
                };
                match instruments {
                    Members::One(i) => out.push_back(timed(i)),
                    Members::List(members) => out.extend(members.iter().map(|&i| timed(i))),
                }
            }
        }
        c.advance();
        true
    }
}

/// Who an event goes to: one instrument, or every instrument sharing a controller list.
enum Members<'a> {
    One(u16),
    List(&'a [u16]),
}

/// The encoder channel a note-on at `c` plays on, as its fate says; `None` if it is dropped
/// or percussion.
fn note_on(plan: &Plan, track: &TrackPlan, c: &mut Cursor, ch: u8) -> Option<u16> {
    let fate = *track.fates.get(c.note_ons)?;
    c.note_ons += 1;
    let program = fate.checked_sub(1)?;
    plan.channel(program, ch, track.index)
}
