//! Material unlike training, for judging a model as a listener would (issue: training's
//! performances come from [`crate::data::performance`]; none of this does): single notes
//! over the whole keyboard at three velocities, long held notes, chords under the pedal,
//! fast repeated notes, and music written as scores — `assets/demo.mid`, the first bars of
//! Bach's Prelude in C (BWV 846) and of Satie's first Gymnopédie.

use std::path::Path;

use anyhow::{Context, Result};
use ssm_runtime::{KeyEvent, MidiFile};

use crate::listen;

/// Events at their times (seconds).
pub type Events = Vec<(f64, KeyEvent)>;

/// One piece of material: what is played and how long the render lasts.
#[derive(Debug, Clone)]
pub struct Piece {
    pub name: &'static str,
    pub events: Events,
    pub seconds: f64,
}

/// Single notes: the keys and velocities of [`listen`]'s note measures (A0 to C8 in steps of
/// three; 30, 70, 110), struck at [`SINGLE_ONSET`], held [`SINGLE_HELD`] seconds (longer than
/// there), rendered [`SINGLE_SECONDS`].
pub const SINGLE_ONSET: f64 = 0.1;
pub const SINGLE_HELD: f64 = 1.6;
pub const SINGLE_SECONDS: f64 = 2.3;

/// One single note.
#[derive(Debug, Clone, Copy)]
pub struct Single {
    pub key: u8,
    pub velocity: u8,
}

impl Single {
    pub fn all() -> Vec<Single> {
        listen::KEYS
            .step_by(listen::KEY_STEP)
            .flat_map(|key| listen::VELOCITIES.map(|velocity| Single { key, velocity }))
            .collect()
    }

    pub fn piece(self) -> Piece {
        let held = [(
            SINGLE_ONSET,
            SINGLE_ONSET + SINGLE_HELD,
            self.key,
            self.velocity,
        )];
        Piece {
            name: "single notes",
            events: notes(&held),
            seconds: SINGLE_SECONDS,
        }
    }

    /// When the key is released (seconds).
    pub fn release() -> f64 {
        SINGLE_ONSET + SINGLE_HELD
    }
}

/// (start, end, key, velocity) as note-on and note-off events, in time order.
fn notes(notes: &[(f64, f64, u8, u8)]) -> Events {
    let mut events: Events = notes
        .iter()
        .flat_map(|&(start, end, note, velocity)| {
            [
                (start, KeyEvent::NoteOn { note, velocity }),
                (end, KeyEvent::NoteOff { note }),
            ]
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events
}

fn with_pedal(mut events: Events, pedal: &[(f64, bool)]) -> Events {
    events.extend(pedal.iter().map(|&(t, down)| {
        let value = if down { 127 } else { 0 };
        (t, KeyEvent::Sustain { value })
    }));
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events
}

/// Five notes from C2 to C6, each held 6.5 s: a piano's long decay.
pub fn long_notes() -> Vec<Piece> {
    [36u8, 48, 60, 72, 84]
        .into_iter()
        .map(|key| Piece {
            name: "long notes",
            events: notes(&[(0.1, 6.6, key, 80)]),
            seconds: 7.5,
        })
        .collect()
}

/// Three chords struck and let go under the pedal, the pedal changed between them.
pub fn chords_under_pedal() -> Piece {
    let chords: [(f64, &[u8], u8); 3] = [
        (0.1, &[36, 48, 55, 64, 67, 72], 70),
        (3.1, &[41, 53, 57, 60, 65, 69], 95),
        (6.1, &[43, 55, 59, 62, 65, 71], 55),
    ];
    let held: Vec<(f64, f64, u8, u8)> = chords
        .iter()
        .flat_map(|&(t, keys, v)| keys.iter().map(move |&k| (t, t + 0.4, k, v)))
        .collect();
    let pedal = [
        (0.05, true),
        (3.05, false),
        (3.15, true),
        (6.05, false),
        (6.15, true),
        (8.6, false),
    ];
    Piece {
        name: "chords under the pedal",
        events: with_pedal(notes(&held), &pedal),
        seconds: 9.5,
    }
}

/// Repeated notes at 10 a second, loud and soft alternately, then a trill.
pub fn repeated_notes() -> Piece {
    let mut held = Vec::new();
    for i in 0..30 {
        let t = 0.1 + 0.1 * i as f64;
        held.push((t, t + 0.07, 60, if i % 2 == 0 { 95 } else { 55 }));
    }
    for i in 0..24 {
        let t = 3.3 + 0.08 * i as f64;
        held.push((t, t + 0.07, if i % 2 == 0 { 76 } else { 78 }, 70));
    }
    Piece {
        name: "repeated notes",
        events: notes(&held),
        seconds: 6.5,
    }
}

/// The first eight bars of Bach's Prelude in C major (BWV 846): each half bar holds its first
/// two notes under a broken chord in sixteenths; a sixteenth lasts 0.2 s.
pub fn prelude() -> Piece {
    const BARS: [[u8; 5]; 8] = [
        [60, 64, 67, 72, 76],
        [60, 62, 69, 74, 77],
        [59, 62, 67, 74, 77],
        [60, 64, 67, 72, 76],
        [60, 64, 69, 76, 81],
        [60, 62, 66, 69, 74],
        [59, 62, 67, 74, 79],
        [59, 60, 64, 67, 72],
    ];
    let s = 0.2;
    let mut held = Vec::new();
    for (b, chord) in BARS.iter().enumerate() {
        for half in 0..2 {
            let t0 = 0.1 + (16 * b + 8 * half) as f64 * s;
            let swell = 52 + (b as u8 % 4) * 6;
            held.push((t0, t0 + 8.0 * s, chord[0], swell));
            held.push((t0 + s, t0 + 8.0 * s, chord[1], swell - 6));
            for (i, &k) in chord[2..].iter().cycle().take(6).enumerate() {
                let t = t0 + (2 + i) as f64 * s;
                held.push((t, t + s, k, swell + 4 - (i as u8 % 3) * 3));
            }
        }
    }
    Piece {
        name: "Bach, Prelude in C",
        events: notes(&held),
        seconds: 0.1 + 8.0 * 16.0 * s + 2.0,
    }
}

/// The first twelve bars of Satie's Gymnopédie No. 1 in 3/4, a beat of 0.75 s: a low bass
/// note on the first beat, a chord on the second held through the bar, the pedal changed
/// each bar; the melody from bar 5.
pub fn gymnopedie() -> Piece {
    let beat = 0.75;
    let bar = 3.0 * beat;
    let at = |b: usize, beat_in: f64| 0.1 + b as f64 * bar + beat_in * beat;
    let mut held = Vec::new();
    let mut pedal = Vec::new();
    for b in 0..12 {
        let (bass, chord): (u8, [u8; 3]) = if b % 2 == 0 {
            (43, [59, 62, 66])
        } else {
            (38, [57, 61, 66])
        };
        held.push((at(b, 0.0), at(b, 0.9), bass, 60));
        for k in chord {
            held.push((at(b, 1.0), at(b, 2.9), k, 45));
        }
        pedal.push((at(b, 0.0) - 0.02, false));
        pedal.push((at(b, 0.0) + 0.08, true));
    }
    // (bar, beat, beats held, key)
    let melody: [(usize, f64, f64, u8); 11] = [
        (4, 1.0, 1.0, 78),
        (4, 2.0, 1.0, 81),
        (5, 0.0, 1.0, 79),
        (5, 1.0, 1.0, 78),
        (5, 2.0, 1.0, 73),
        (6, 0.0, 1.0, 71),
        (6, 1.0, 1.0, 73),
        (6, 2.0, 1.0, 74),
        (7, 0.0, 3.0, 69),
        (8, 0.0, 6.0, 66),
        (10, 0.0, 5.5, 66),
    ];
    for (b, start, beats, key) in melody {
        held.push((at(b, start), at(b, start + beats) - 0.05, key, 62));
    }
    pedal.push((at(12, 0.0), false));
    Piece {
        name: "Satie, Gymnopédie No. 1",
        events: with_pedal(notes(&held), &pedal),
        seconds: at(12, 0.0) + 1.5,
    }
}

/// `assets/demo.mid` (all its instruments as one).
pub fn demo(assets: &Path) -> Result<Piece> {
    let path = assets.join("demo.mid");
    let midi = MidiFile::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Piece {
        name: "assets/demo.mid",
        events: midi.events().map(|e| (e.seconds, e.event)).collect(),
        seconds: midi.duration() + 1.5,
    })
}

/// The pieces of real music (the Fréchet distance's material).
pub fn music(assets: &Path) -> Result<Vec<Piece>> {
    Ok(vec![demo(assets)?, prelude(), gymnopedie()])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every note-on has its note-off later, inside the render; the pieces are what they say.
    #[test]
    fn pieces_are_well_formed() {
        let mut pieces = vec![
            chords_under_pedal(),
            repeated_notes(),
            prelude(),
            gymnopedie(),
        ];
        pieces.extend(long_notes());
        pieces.push(Single::all()[0].piece());
        for p in &pieces {
            let mut open = std::collections::HashMap::new();
            for &(t, e) in &p.events {
                assert!(t >= 0.0 && t < p.seconds, "{}: event at {t}", p.name);
                match e {
                    KeyEvent::NoteOn { note, .. } => *open.entry(note).or_insert(0) += 1,
                    KeyEvent::NoteOff { note } => *open.entry(note).or_insert(0) -= 1,
                    _ => {}
                }
            }
            assert!(
                open.values().all(|&n| n == 0),
                "{}: unbalanced notes",
                p.name
            );
        }
        assert_eq!(Single::all().len(), 30 * 3);
        assert!(prelude().seconds > 25.0 && gymnopedie().seconds > 25.0);
    }
}
