//! What a player may change about the notes before they reach the encoder: a transposition,
//! a velocity curve and how much the soft pedal softens (`piano-ssm render --transpose`,
//! `--velocity-curve`, `--soft-pedal`; the plugin's parameters of the same names).

use crate::midi_file::MAX_INSTRUMENTS;
use crate::roll::KeyEvent;

/// Semitones a performance may be transposed by.
pub const TRANSPOSE_RANGE: std::ops::RangeInclusive<i32> = -24..=24;
/// Exponents a velocity curve may have: below 1 soft notes play louder, above 1 softer.
pub const VELOCITY_CURVE_RANGE: std::ops::RangeInclusive<f64> = 0.5..=2.0;
/// The share of its velocity a note struck under the soft pedal keeps.
pub const SOFT_PEDAL_RANGE: std::ops::RangeInclusive<f64> = 0.3..=1.0;
/// As a typical digital piano's soft pedal: 70 % of the velocity.
pub const DEFAULT_SOFT_PEDAL: f64 = 0.7;

/// A transposition, a velocity curve and the soft pedal, applied to each key event of an
/// instrument (a MIDI channel live, a file's instrument in a file). It remembers which
/// instruments hold the soft pedal (CC67 ≥ 64): a note struck there keeps
/// [`SOFT_PEDAL_RANGE`]'s share of its velocity before the curve. Fixed size: the audio
/// thread may build and use one.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteMap {
    transpose: i32,
    /// velocity′ for each velocity 0..=127
    velocity: [u8; 128],
    soft: f64,
    /// one bit per instrument: its soft pedal is down
    soft_down: [u64; MAX_INSTRUMENTS / 64],
}

impl Default for NoteMap {
    /// Notes as played, the soft pedal at [`DEFAULT_SOFT_PEDAL`].
    fn default() -> NoteMap {
        NoteMap::new(0, 1.0, DEFAULT_SOFT_PEDAL).expect("in range")
    }
}

impl NoteMap {
    /// Keys moved by `transpose` semitones; velocities through
    /// `velocity′ = round(127 · (velocity/127)^gamma)`, at least 1 (0 stays a note-off);
    /// under the soft pedal the velocity is first `max(1, round(soft · velocity))`.
    /// `None` outside [`TRANSPOSE_RANGE`], [`VELOCITY_CURVE_RANGE`] or [`SOFT_PEDAL_RANGE`].
    pub fn new(transpose: i32, gamma: f64, soft: f64) -> Option<NoteMap> {
        if !TRANSPOSE_RANGE.contains(&transpose)
            || !VELOCITY_CURVE_RANGE.contains(&gamma)
            || !SOFT_PEDAL_RANGE.contains(&soft)
        {
            return None;
        }
        let velocity = std::array::from_fn(|v| match v {
            0 => 0,
            v => ((127.0 * (v as f64 / 127.0).powf(gamma)).round() as u8).max(1),
        });
        Some(NoteMap {
            transpose,
            velocity,
            soft,
            soft_down: [0; MAX_INSTRUMENTS / 64],
        })
    }

    /// Takes `other`'s settings and keeps which soft pedals are down.
    pub fn retune(&mut self, other: &NoteMap) {
        let soft_down = self.soft_down;
        *self = other.clone();
        self.soft_down = soft_down;
    }

    /// `event` of `instrument` (`None`: every instrument, a host's wildcard) as this map
    /// plays it: `None` for a note pushed off the MIDI range (the encoder already ignores
    /// notes beyond the piano's 88 keys). The pedals and the other controllers pass
    /// unchanged (the soft pedal is also remembered; instruments beyond [`MAX_INSTRUMENTS`]
    /// share the last one's).
    pub fn apply(&mut self, instrument: Option<usize>, event: KeyEvent) -> Option<KeyEvent> {
        let shift = |note: u8| {
            u8::try_from(note as i32 + self.transpose)
                .ok()
                .filter(|n| *n < 128)
        };
        let i = instrument.map(|i| i.min(MAX_INSTRUMENTS - 1));
        Some(match event {
            KeyEvent::NoteOn { note, velocity } => {
                let mut v = velocity.min(127);
                if v > 0 && i.is_some_and(|i| self.soft_down[i / 64] >> (i % 64) & 1 == 1) {
                    v = ((self.soft * v as f64).round() as u8).max(1);
                }
                KeyEvent::NoteOn {
                    note: shift(note)?,
                    velocity: self.velocity[v as usize],
                }
            }
            KeyEvent::NoteOff { note } => KeyEvent::NoteOff { note: shift(note)? },
            KeyEvent::SoftPedal { value } => {
                self.set_soft(i, value >= 64);
                event
            }
            KeyEvent::ResetControllers | KeyEvent::AllSoundOff | KeyEvent::Reset => {
                self.set_soft(i, false);
                event
            }
            other => other,
        })
    }

    fn set_soft(&mut self, instrument: Option<usize>, down: bool) {
        let fill = if down { u64::MAX } else { 0 };
        match instrument {
            None => self.soft_down = [fill; MAX_INSTRUMENTS / 64],
            Some(i) => {
                let bit = 1u64 << (i % 64);
                match down {
                    true => self.soft_down[i / 64] |= bit,
                    false => self.soft_down[i / 64] &= !bit,
                }
            }
        }
    }

    /// Whether any instrument holds the soft pedal (for a panel to show).
    pub fn soft_pedal_down(&self) -> bool {
        self.soft_down.iter().any(|&w| w != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocities_follow_the_curve_and_stay_sounding() {
        let mut soft = NoteMap::new(0, 2.0, DEFAULT_SOFT_PEDAL).unwrap();
        let mut on = |v| {
            soft.apply(
                Some(0),
                KeyEvent::NoteOn {
                    note: 60,
                    velocity: v,
                },
            )
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
        let mut loud = NoteMap::new(0, 0.5, DEFAULT_SOFT_PEDAL).unwrap();
        // 127 · √(32/127) = 63.75
        let v = loud.apply(
            Some(0),
            KeyEvent::NoteOn {
                note: 60,
                velocity: 32,
            },
        );
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
        let mut up = NoteMap::new(24, 1.0, DEFAULT_SOFT_PEDAL).unwrap();
        assert_eq!(
            up.apply(Some(0), KeyEvent::NoteOff { note: 60 }),
            Some(KeyEvent::NoteOff { note: 84 })
        );
        assert_eq!(
            up.apply(
                Some(0),
                KeyEvent::NoteOn {
                    note: 110,
                    velocity: 9
                }
            ),
            None
        );
        assert_eq!(
            up.apply(Some(0), KeyEvent::Sustain { value: 100 }),
            Some(KeyEvent::Sustain { value: 100 })
        );
        let mut down = NoteMap::new(-24, 1.0, DEFAULT_SOFT_PEDAL).unwrap();
        assert_eq!(down.apply(Some(0), KeyEvent::NoteOff { note: 10 }), None);
        assert!(NoteMap::new(25, 1.0, 0.7).is_none() && NoteMap::new(0, 2.5, 0.7).is_none());
        assert!(NoteMap::new(0, 1.0, 0.2).is_none() && NoteMap::new(0, 1.0, 1.1).is_none());
        assert!(NoteMap::new(0, f64::NAN, 0.7).is_none());
    }

    /// Under the soft pedal a note keeps 70 % of its velocity (then the curve); on its own
    /// channel only; lifted, or reset, notes play as struck again.
    #[test]
    fn the_soft_pedal_softens_notes_struck_under_it() {
        let mut map = NoteMap::default();
        let on = |velocity| KeyEvent::NoteOn { note: 60, velocity };
        let velocity = |e: Option<KeyEvent>| match e {
            Some(KeyEvent::NoteOn { velocity, .. }) => velocity,
            other => panic!("{other:?}"),
        };
        assert_eq!(velocity(map.apply(Some(2), on(100))), 100);
        map.apply(Some(2), KeyEvent::SoftPedal { value: 127 });
        assert!(map.soft_pedal_down());
        assert_eq!(velocity(map.apply(Some(2), on(100))), 70);
        assert_eq!(
            velocity(map.apply(Some(2), on(1))),
            1,
            "a note stays a note"
        );
        assert_eq!(
            velocity(map.apply(Some(3), on(100))),
            100,
            "another channel"
        );
        assert_eq!(
            map.apply(Some(2), on(0)),
            Some(on(0)),
            "a note-off stays one"
        );
        // a new curve keeps the pedal down: 127·(70/127)² = 38.6
        map.retune(&NoteMap::new(0, 2.0, 0.7).unwrap());
        assert_eq!(velocity(map.apply(Some(2), on(100))), 39);
        map.apply(Some(2), KeyEvent::SoftPedal { value: 10 });
        assert!(!map.soft_pedal_down());
        assert_eq!(velocity(map.apply(Some(2), on(100))), 79);
        // a wildcard press reaches every channel; a controllers' reset lifts it
        map.apply(None, KeyEvent::SoftPedal { value: 64 });
        // 127 · 0.7 = 88.9 → 89, then the curve: 127·(89/127)² = 62.4
        assert_eq!(velocity(map.apply(Some(9), on(127))), 62);
        map.apply(Some(9), KeyEvent::ResetControllers);
        assert_eq!(velocity(map.apply(Some(9), on(127))), 127);
    }
}
