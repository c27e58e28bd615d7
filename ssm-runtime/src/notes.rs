//! What a player may change about the notes before they reach the encoder: a transposition
//! and a velocity curve (`piano-ssm render --transpose`, `--velocity-curve`).

use crate::roll::KeyEvent;

/// Semitones a performance may be transposed by.
pub const TRANSPOSE_RANGE: std::ops::RangeInclusive<i32> = -24..=24;
/// Exponents a velocity curve may have: below 1 soft notes play louder, above 1 softer.
pub const VELOCITY_CURVE_RANGE: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// A transposition and a velocity curve, applied to each key event.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteMap {
    transpose: i32,
    /// velocity′ for each velocity 0..=127
    velocity: [u8; 128],
}

impl Default for NoteMap {
    /// Notes as played.
    fn default() -> NoteMap {
        NoteMap::new(0, 1.0).expect("in range")
    }
}

impl NoteMap {
    /// Keys moved by `transpose` semitones; velocities through
    /// `velocity′ = round(127 · (velocity/127)^gamma)`, at least 1 (0 stays a note-off).
    /// `None` outside [`TRANSPOSE_RANGE`] or [`VELOCITY_CURVE_RANGE`].
    pub fn new(transpose: i32, gamma: f64) -> Option<NoteMap> {
        if !TRANSPOSE_RANGE.contains(&transpose) || !VELOCITY_CURVE_RANGE.contains(&gamma) {
            return None;
        }
        let velocity = std::array::from_fn(|v| match v {
            0 => 0,
            v => ((127.0 * (v as f64 / 127.0).powf(gamma)).round() as u8).max(1),
        });
        Some(NoteMap {
            transpose,
            velocity,
        })
    }

    /// `event` as this map plays it: `None` for a note pushed off the MIDI range (the
    /// encoder already ignores notes beyond the piano's 88 keys). Pedal and the other
    /// controllers pass unchanged.
    pub fn apply(&self, event: KeyEvent) -> Option<KeyEvent> {
        let shift = |note: u8| {
            u8::try_from(note as i32 + self.transpose)
                .ok()
                .filter(|n| *n < 128)
        };
        Some(match event {
            KeyEvent::NoteOn { note, velocity } => KeyEvent::NoteOn {
                note: shift(note)?,
                velocity: self.velocity[velocity.min(127) as usize],
            },
            KeyEvent::NoteOff { note } => KeyEvent::NoteOff { note: shift(note)? },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocities_follow_the_curve_and_stay_sounding() {
        let soft = NoteMap::new(0, 2.0).unwrap();
        let on = |v| {
            soft.apply(KeyEvent::NoteOn {
                note: 60,
                velocity: v,
            })
        };
        assert_eq!(
            on(127),
            Some(KeyEvent::NoteOn {
                note: 60,
                velocity: 127
            })
        );
        // 127 · (64/127)² = 32.25
        assert_eq!(
            on(64),
            Some(KeyEvent::NoteOn {
                note: 60,
                velocity: 32
            })
        );
        assert_eq!(
            on(1),
            Some(KeyEvent::NoteOn {
                note: 60,
                velocity: 1
            })
        );
        assert_eq!(
            on(0),
            Some(KeyEvent::NoteOn {
                note: 60,
                velocity: 0
            })
        );
        let loud = NoteMap::new(0, 0.5).unwrap();
        // 127 · √(32/127) = 63.75
        let v = loud.apply(KeyEvent::NoteOn {
            note: 60,
            velocity: 32,
        });
        assert_eq!(
            v,
            Some(KeyEvent::NoteOn {
                note: 60,
                velocity: 64
            })
        );
    }

    #[test]
    fn transposition_moves_notes_drops_those_pushed_out_and_keeps_the_pedal() {
        let up = NoteMap::new(24, 1.0).unwrap();
        assert_eq!(
            up.apply(KeyEvent::NoteOff { note: 60 }),
            Some(KeyEvent::NoteOff { note: 84 })
        );
        assert_eq!(
            up.apply(KeyEvent::NoteOn {
                note: 110,
                velocity: 9
            }),
            None
        );
        assert_eq!(
            up.apply(KeyEvent::Sustain { value: 100 }),
            Some(KeyEvent::Sustain { value: 100 })
        );
        let down = NoteMap::new(-24, 1.0).unwrap();
        assert_eq!(down.apply(KeyEvent::NoteOff { note: 10 }), None);
        assert!(NoteMap::new(25, 1.0).is_none() && NoteMap::new(0, 2.5).is_none());
        assert!(NoteMap::new(0, f64::NAN).is_none());
    }
}
