//! Procedurally generated piano performances: what the synthetic dataset plays.
//!
//! A performance is a few overlapping "gestures" (chords, melodies, runs, repeated notes and
//! trills, lone notes anywhere on the keyboard) with velocities over the whole range and
//! sustain-pedal presses, placed on the roll's frame grid so that the SoundFont renderer can
//! apply every event exactly at a frame start.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::roll::KeyEvent;

const LOWEST: i32 = 21;
const HIGHEST: i32 = 108;

/// Events at frame indices, sorted by frame (stable).
#[derive(Debug, Clone, Default)]
pub struct Performance {
    pub events: Vec<(u64, KeyEvent)>,
}

impl Performance {
    /// A performance of `frames` frames at `midi_rate`.
    pub fn generate(rng: &mut ChaCha8Rng, frames: u64, midi_rate: u32) -> Performance {
        let mut g = Generator::new(rng, frames, midi_rate);
        g.fill();
        g.pedal();
        g.finish()
    }

    /// Lone notes of `frames` frames at `midi_rate`: one key at a time, anywhere on the
    /// keyboard, at any velocity, each held for 0.15 s to `longest` seconds (at least 0.3;
    /// `LONE_HOLD` unless a run asks for long notes) and followed by 0.55–0.9 s of silence,
    /// without pedal. Why: in a dense performance a key's attack and release are
    /// masked by its neighbours, so the loss hears little of how a piano's tone changes with
    /// touch (brighter when struck harder) and of the second after a release; here every
    /// note is heard alone from its strike to its damped end.
    /// A long `longest` lets the loss hear a struck string's partials decay for seconds,
    /// which performances (whose notes the next ones mask) and short notes never show.
    pub fn lone_notes(
        rng: &mut ChaCha8Rng,
        frames: u64,
        midi_rate: u32,
        longest: f64,
    ) -> Performance {
        let mut g = Generator::new(rng, frames, midi_rate);
        let mut t = g.seconds(0.0, 0.3);
        while t < g.end {
            let key = g.key(LOWEST, HIGHEST);
            let longest = longest.max(2.0 * LONE_SHORTEST);
            let (len, velocity) = (
                g.seconds(LONE_SHORTEST, longest),
                g.rng.random_range(1..=127),
            );
            g.note(key, t, len, velocity);
            t += len + g.seconds(0.55, 0.9);
        }
        g.finish()
    }
}

/// The shortest hold of a lone note, seconds.
const LONE_SHORTEST: f64 = 0.15;
/// The longest hold of a lone note unless a run asks for longer (`--lone-hold`), seconds.
pub const LONE_HOLD: f64 = 1.2;

/// A note as the generator plays it: key, frames [start, end), velocity.
#[derive(Debug, Clone, Copy)]
struct Note {
    key: i32,
    start: u64,
    end: u64,
    velocity: u8,
}

/// Ends each note where the next note of its key starts, and drops notes struck together
/// with a later one of the same key: one sounding note per key, as a pianist's one string
/// set. Why: the two hands overlap in range and legato lines overlap their notes, and a MIDI
/// file's overlapping notes of one key have no single meaning (the training pipeline adds
/// their velocities); the performances stay clear of it.
fn one_note_per_key(mut notes: Vec<Note>) -> Vec<Note> {
    notes.sort_by_key(|n| (n.key, n.start));
    let mut out: Vec<Note> = Vec::with_capacity(notes.len());
    for n in notes {
        if let Some(prev) = out.last_mut().filter(|p| p.key == n.key) {
            if prev.start == n.start {
                *prev = n;
                continue;
            }
            prev.end = prev.end.min(n.start);
        }
        out.push(n);
    }
    out
}

struct Generator<'a> {
    rng: &'a mut ChaCha8Rng,
    fps: f64,
    end: u64,
    notes: Vec<Note>,
    /// Pedal events.
    events: Vec<(u64, KeyEvent)>,
}

impl Generator<'_> {
    fn new(rng: &mut ChaCha8Rng, frames: u64, midi_rate: u32) -> Generator<'_> {
        Generator {
            rng,
            fps: midi_rate as f64,
            end: frames,
            notes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The events of the notes and pedal played so far, in order.
    fn finish(self) -> Performance {
        let mut events = self.events;
        for n in one_note_per_key(self.notes) {
            let note = n.key as u8;
            events.push((
                n.start,
                KeyEvent::NoteOn {
                    note,
                    velocity: n.velocity,
                },
            ));
            events.push((n.end, KeyEvent::NoteOff { note }));
        }
        // within a frame: note-offs, then the pedal, then note-ons, so a key released and
        // struck again in one frame sounds its new note
        let rank = |e: &KeyEvent| match e {
            KeyEvent::NoteOff { .. } => 0,
            KeyEvent::NoteOn { .. } => 2,
            _ => 1,
        };
        events.sort_by_key(|(frame, e)| (*frame, rank(e)));
        Performance { events }
    }

    fn frames(&self, seconds: f64) -> u64 {
        (seconds * self.fps).round().max(1.0) as u64
    }

    fn seconds(&mut self, lo: f64, hi: f64) -> u64 {
        let s = self.rng.random_range(lo..hi);
        self.frames(s)
    }

    /// Velocities cover 1..=127, most of them in the playing range.
    fn velocity(&mut self) -> u8 {
        if self.rng.random_bool(0.15) {
            self.rng.random_range(1..=127)
        } else {
            self.rng.random_range(25..=115)
        }
    }

    fn key(&mut self, lo: i32, hi: i32) -> i32 {
        self.rng.random_range(lo.max(LOWEST)..=hi.min(HIGHEST))
    }

    fn note(&mut self, key: i32, start: u64, length: u64, velocity: u8) {
        if start >= self.end || !(LOWEST..=HIGHEST).contains(&key) {
            return;
        }
        self.notes.push(Note {
            key,
            start,
            end: start + length.max(1),
            velocity,
        });
    }

    /// Two independent voices (roughly left and right hand), each a chain of gestures and rests.
    fn fill(&mut self) {
        for (lo, hi) in [(LOWEST, 72), (48, HIGHEST)] {
            let mut t = self.seconds(0.0, 0.4);
            while t < self.end {
                t += self.gesture(t, lo, hi);
                t += self.seconds(0.0, 0.6);
            }
        }
    }

    /// Plays one gesture at `t`; returns its length in frames.
    fn gesture(&mut self, t: u64, lo: i32, hi: i32) -> u64 {
        match self.rng.random_range(0..6) {
            0 => self.chord(t, lo, hi),
            1 => self.melody(t, lo, hi),
            2 => self.run(t, lo, hi),
            3 => self.trill(t, lo, hi),
            4 => self.repeated(t, lo, hi),
            _ => {
                let (key, len, vel) = (self.key(lo, hi), self.seconds(0.1, 2.0), self.velocity());
                self.note(key, t, len, vel);
                len
            }
        }
    }

    fn chord(&mut self, t: u64, lo: i32, hi: i32) -> u64 {
        let root = self.key(lo, hi - 12);
        let len = self.seconds(0.2, 1.8);
        let vel = self.velocity();
        let shape: &[i32] = [
            &[0, 4, 7][..],
            &[0, 3, 7],
            &[0, 4, 7, 12],
            &[0, 5, 9],
            &[0, 7, 12, 16],
            &[0, 3, 6, 10],
        ][self.rng.random_range(0..6)];
        for &i in shape {
            // a little spread in timing and velocity, as real hands do
            let d = self.rng.random_range(0..=self.frames(0.015));
            let v = (vel as i32 + self.rng.random_range(-8..=8)).clamp(1, 127) as u8;
            self.note(root + i, t + d, len, v);
        }
        len
    }

    fn melody(&mut self, t: u64, lo: i32, hi: i32) -> u64 {
        let mut key = self.key(lo, hi);
        let mut at = t;
        for _ in 0..self.rng.random_range(3..10) {
            let len = self.seconds(0.1, 0.6);
            let vel = self.velocity();
            // legato: each note overlaps the next a little
            self.note(key, at, len + self.frames(0.03), vel);
            at += len;
            key = (key + self.rng.random_range(-5..=5)).clamp(lo.max(LOWEST), hi.min(HIGHEST));
        }
        at - t
    }

    fn run(&mut self, t: u64, lo: i32, hi: i32) -> u64 {
        let up = self.rng.random_bool(0.5);
        let mut key = self.key(lo, hi);
        let step = self.seconds(0.03, 0.09);
        let vel = self.velocity();
        let count = self.rng.random_range(6..18);
        for i in 0..count {
            self.note(key, t + i * step, step, vel);
            let interval = [1, 2, 2, 1, 2, 2, 2][(i as usize) % 7];
            key += if up { interval } else { -interval };
        }
        count * step
    }

    fn trill(&mut self, t: u64, lo: i32, hi: i32) -> u64 {
        let a = self.key(lo, hi - 2);
        let b = a + self.rng.random_range(1..=2);
        let step = self.seconds(0.05, 0.12);
        let vel = self.velocity();
        let count = self.rng.random_range(6..16);
        for i in 0..count {
            self.note(if i % 2 == 0 { a } else { b }, t + i * step, step, vel);
        }
        count * step
    }

    fn repeated(&mut self, t: u64, lo: i32, hi: i32) -> u64 {
        let key = self.key(lo, hi);
        let step = self.seconds(0.08, 0.3);
        let count = self.rng.random_range(3..8);
        for i in 0..count {
            let vel = self.velocity();
            // released a little before the next strike
            self.note(key, t + i * step, (step * 3 / 4).max(1), vel);
        }
        count * step
    }

    /// Pedal presses over about half of the performance, sometimes half-pedal values.
    fn pedal(&mut self) {
        let mut t = self.seconds(0.0, 1.5);
        while t < self.end {
            let down = self.seconds(0.4, 2.5);
            let value = if self.rng.random_bool(0.8) {
                127
            } else {
                self.rng.random_range(64..127)
            };
            self.events.push((t, KeyEvent::Sustain { value }));
            self.events.push((t + down, KeyEvent::Sustain { value: 0 }));
            t += down + self.seconds(0.2, 2.5);
        }
    }
}

impl Performance {
    /// The performance as a standard MIDI file (format 0, one tick per millisecond), e.g. to
    /// build test datasets or demo files.
    pub fn to_smf(&self, midi_rate: u32) -> Vec<u8> {
        use midly::num::{u28, u4, u7};
        use midly::{
            Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind,
        };
        let tick_of = |frame: u64| (frame as f64 * 1000.0 / midi_rate as f64).round() as u64;
        let mut track = vec![TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(500_000.into())),
        }];
        let mut last = 0u64;
        for &(frame, event) in &self.events {
            let message = match event {
                KeyEvent::NoteOn { note, velocity } => MidiMessage::NoteOn {
                    key: u7::new(note),
                    vel: u7::new(velocity),
                },
                KeyEvent::NoteOff { note } => MidiMessage::NoteOff {
                    key: u7::new(note),
                    vel: u7::new(64),
                },
                KeyEvent::Sustain { value } => MidiMessage::Controller {
                    controller: u7::new(64),
                    value: u7::new(value),
                },
                _ => continue,
            };
            let tick = tick_of(frame);
            track.push(TrackEvent {
                delta: u28::new((tick - last) as u32),
                kind: TrackEventKind::Midi {
                    channel: u4::new(0),
                    message,
                },
            });
            last = tick;
        }
        track.push(TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        });
        // 500 ticks per quarter at 120 bpm: one tick per millisecond
        let smf = Smf {
            header: Header::new(Format::SingleTrack, Timing::Metrical(500.into())),
            tracks: vec![track],
        };
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes)
            .expect("writing to memory cannot fail");
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// (key, on frame, off frame, velocity) of every note, in order.
    fn notes(p: &Performance) -> Vec<(u8, u64, u64, u8)> {
        let mut open = Vec::new();
        let mut done = Vec::new();
        for &(frame, e) in &p.events {
            match e {
                KeyEvent::NoteOn { note, velocity } => open.push((note, frame, velocity)),
                KeyEvent::NoteOff { note } => {
                    let i = open.iter().position(|n| n.0 == note).expect("off after on");
                    let (key, on, velocity) = open.remove(i);
                    done.push((key, on, frame, velocity));
                }
                other => panic!("lone notes play no pedal, got {other:?}"),
            }
        }
        assert!(open.is_empty(), "every note is released");
        done.sort_by_key(|n| n.1);
        done
    }

    #[test]
    fn lone_notes_sound_one_at_a_time_with_silence_between() {
        let rate = 1200;
        let mut all = Vec::new();
        for seed in 0..40 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let p = Performance::lone_notes(&mut rng, 2 * rate as u64, rate, LONE_HOLD);
            let again = Performance::lone_notes(
                &mut ChaCha8Rng::seed_from_u64(seed),
                2 * rate as u64,
                rate,
                LONE_HOLD,
            );
            assert_eq!(p.events, again.events, "deterministic per seed");
            let n = notes(&p);
            assert!(!n.is_empty());
            for pair in n.windows(2) {
                let gap = pair[1].1 as f64 - pair[0].2 as f64;
                assert!(
                    gap >= 0.55 * rate as f64 - 1.0,
                    "{gap} frames of silence: {pair:?}"
                );
            }
            for &(_, on, off, _) in &n {
                let held = (off - on) as f64 / rate as f64;
                assert!((0.14..=1.21).contains(&held), "held {held} s");
            }
            all.extend(n);
        }
        let keys: Vec<u8> = all.iter().map(|n| n.0).collect();
        let velocities: Vec<u8> = all.iter().map(|n| n.3).collect();
        assert!(*keys.iter().min().unwrap() < 40 && *keys.iter().max().unwrap() > 90);
        assert!(*velocities.iter().min().unwrap() < 20 && *velocities.iter().max().unwrap() > 110);
    }

    #[test]
    fn long_lone_notes_hold_up_to_their_longest() {
        let rate = 1200;
        let held: Vec<f64> = (0..30)
            .flat_map(|seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let p = Performance::lone_notes(&mut rng, 8 * rate as u64, rate, 5.0);
                notes(&p)
                    .into_iter()
                    .map(|(_, on, off, _)| (off - on) as f64 / rate as f64)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(held.iter().all(|h| (0.14..=5.01).contains(h)), "{held:?}");
        let long = held.iter().filter(|&&h| h > 3.0).count();
        assert!(
            long * 4 > held.len(),
            "{long} of {} notes over 3 s",
            held.len()
        );
    }
}
