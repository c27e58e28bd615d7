//! Does it sound like a piano? Five listening checks turned into measurements: pitch,
//! dynamics, onset timing, silence after release and the sustain pedal.
//!
//! They take any [`Renderer`] (a model through the engine, or the SoundFont the synthetic set is
//! rendered with), so the same measures score the training target (which must pass them, or the
//! checks ask for something the data does not teach), models during training (`trainer check`)
//! and the built-in models in `cargo test`.

use num_complex::Complex64;

use crate::midi_file::{MidiFile, TimedEvent};
use crate::roll::{KeyEvent, Roll};
use crate::{Engine, Model};

/// Keys are tested from A0 to C8 in steps of three: 30 keys.
pub const PITCH_KEYS: std::ops::RangeInclusive<u8> = 21..=108;
/// Share of [`PITCH_KEYS`] whose fundamental must lie within [`PITCH_CENTS`].
pub const PITCH_SHARE: f64 = 0.9;
pub const PITCH_CENTS: f64 = 25.0;
/// How far (dB) a key's strongest partial must stand above the strongest peak where a wrong
/// note's partials would be (½, ¾, ³⁄₂, ⁵⁄₂ of its frequency: an octave below, a fifth above,
/// a fourth below).
pub const PITCH_SERIES_DB: f64 = 12.0;
/// How far (dB) the odd partials may lie below the even ones: a note an octave up has none.
pub const PITCH_ODD_DB: f64 = 20.0;
/// Middle C from velocity 20 to 120 must span at least this many dB ...
pub const DYNAMICS_SPAN_DB: f64 = 20.0;
/// ... and rise at least this much from each step of 20 to the next.
pub const DYNAMICS_STEP_DB: f64 = 1.0;
/// The onset of each note of a scale must lie this close to its note-on (seconds).
pub const ONSET_TOLERANCE: f64 = 0.010;
/// Peak level 2 s after all keys and the pedal are released (−60 dBFS) ...
pub const SILENCE_PEAK: f64 = 1e-3;
/// ... and at least this far below the chord's peak (60 dB): a quiet model must fall as far.
pub const SILENCE_DROP: f64 = 1e-3;
/// How much louder a key released under the pedal must be than without the pedal (dB).
pub const PEDAL_GAIN_DB: f64 = 20.0;

/// Something that plays timed events: `render(events, seconds)` returns `seconds` of mono
/// audio at [`Renderer::sample_rate`], starting from silence.
pub trait Renderer {
    fn sample_rate(&self) -> u32;
    fn render(&mut self, events: &[(f64, KeyEvent)], seconds: f64) -> Vec<f32>;
}

/// A model through the runtime engine, at `sample_rate`, with 1 kHz roll frames.
pub struct ModelRenderer<'a> {
    pub model: &'a Model,
    pub sample_rate: u32,
}

/// Roll frame rate the checks' events are encoded at.
pub const CHECK_MIDI_RATE: u32 = 1_000;

impl Renderer for ModelRenderer<'_> {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn render(&mut self, events: &[(f64, KeyEvent)], seconds: f64) -> Vec<f32> {
        let mut engine = match Engine::new(self.model, self.sample_rate) {
            Ok(e) => e,
            // a model the engine refuses plays nothing: every check then fails with a figure
            Err(_) => return vec![0.0; (seconds * self.sample_rate as f64) as usize],
        };
        crate::render::render_roll(&mut engine, &roll(events, seconds), |_, _| {})
    }
}

/// The roll of `events`, exactly `seconds` long. Events are nudged a microsecond later so that
/// one at an exact frame time lands in that frame whatever the float rounding.
pub fn roll(events: &[(f64, KeyEvent)], seconds: f64) -> Roll {
    let file = MidiFile::from_events(
        events
            .iter()
            .enumerate()
            .map(|(i, &(t, event))| TimedEvent {
                seconds: t + 1e-6,
                tick: i as u64,
                instrument: 0,
                event,
            })
            .collect(),
    );
    file.roll_frames(
        CHECK_MIDI_RATE,
        (seconds * CHECK_MIDI_RATE as f64).round() as usize,
    )
}

/// One check's outcome, with the figure it was decided on.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub passed: bool,
    /// The check's headline figure, for regression limits: pitch the share of keys in tune,
    /// dynamics the span (dB), onsets the worst error (s), silence the tail's peak (dBFS),
    /// pedal the gain (dB).
    pub figure: f64,
    pub detail: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.passed { "pass" } else { "FAIL" };
        write!(f, "{mark}  {:<9} {}", self.name, self.detail)
    }
}

/// All five checks.
pub fn all(r: &mut dyn Renderer) -> Vec<Outcome> {
    vec![pitch(r), dynamics(r), onsets(r), silence(r), pedal(r)]
}

fn on(note: u8, velocity: u8) -> KeyEvent {
    KeyEvent::NoteOn { note, velocity }
}

fn off(note: u8) -> KeyEvent {
    KeyEvent::NoteOff { note }
}

/// Root mean square (0 for no samples).
pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.max(1e-12).log10()
}

/// Equal-temperament frequency of MIDI key `key`.
pub fn key_hz(key: u8) -> f64 {
    440.0 * 2f64.powf((key as f64 - 69.0) / 12.0)
}

/// Single notes at velocity 80 for every third key, 1 s each: for at least 90 % of the keys
/// the fundamental estimated from the output lies within 25 cents of the key's frequency, and
/// the output is that key's note, not another's: its strongest partial stands
/// [`PITCH_SERIES_DB`] above where a note an octave below, a fifth above or a fourth below
/// has partials of its own, and its odd partials lie no more than [`PITCH_ODD_DB`] below its
/// even ones (a note an octave above has none).
pub fn pitch(r: &mut dyn Renderer) -> Outcome {
    let rate = r.sample_rate();
    let keys: Vec<u8> = PITCH_KEYS.step_by(3).collect();
    let mut good = 0;
    let mut report = Vec::new();
    for &key in &keys {
        let out = r.render(&[(0.0, on(key, 80)), (1.0, off(key))], 1.0);
        let expected = key_hz(key);
        let spec = spectrum(&out);
        let c = cents(fundamental(&spec, expected, rate), expected);
        let series = Series::measure(&spec, expected, rate);
        let wrong = if c.abs() > PITCH_CENTS {
            Some(format!("{c:+.0} cents"))
        } else if series.between_db() > -PITCH_SERIES_DB {
            Some(format!("{:+.0} dB off its series", series.between_db()))
        } else if series.odd_db() < -PITCH_ODD_DB {
            Some(format!("odd partials {:+.0} dB", series.odd_db()))
        } else {
            None
        };
        match wrong {
            None => good += 1,
            Some(why) => report.push(format!("{key}: {why}")),
        }
    }
    let share = good as f64 / keys.len() as f64;
    Outcome {
        name: "pitch",
        passed: share >= PITCH_SHARE,
        figure: share,
        detail: format!(
            "{good}/{} keys in tune and on their series (need {:.0}){}{}",
            keys.len(),
            (PITCH_SHARE * keys.len() as f64).ceil(),
            if report.is_empty() { "" } else { "; off: " },
            report.join(", ")
        ),
    }
}

/// Middle C at velocities 20, 40, …, 120: the RMS of the first 0.5 s rises at least
/// [`DYNAMICS_STEP_DB`] from each velocity to the next and spans at least
/// [`DYNAMICS_SPAN_DB`] (a grand spans about 30 dB).
pub fn dynamics(r: &mut dyn Renderer) -> Outcome {
    let levels: Vec<f64> = (1..=6)
        .map(|i| db(rms(&r.render(&[(0.0, on(60, 20 * i))], 0.5))))
        .collect();
    let steps = levels.windows(2).all(|w| w[1] - w[0] >= DYNAMICS_STEP_DB);
    let top = levels.iter().copied().fold(f64::MIN, f64::max);
    let span = top - levels[0];
    Outcome {
        name: "dynamics",
        passed: steps && span >= DYNAMICS_SPAN_DB,
        figure: span,
        detail: format!(
            "RMS at velocity 20..120 relative to the loudest: {} dB (need a span of {:.0} dB \
             and {:.0} dB a step)",
            levels
                .iter()
                .map(|l| format!("{:.1}", l - top))
                .collect::<Vec<_>>()
                .join(" "),
            DYNAMICS_SPAN_DB,
            DYNAMICS_STEP_DB
        ),
    }
}

/// A C major scale, 0.3 s notes every 0.4 s: the onset lies within 10 ms of each note-on.
///
/// The onset is where the 2 ms RMS envelope, rising from its quietest point in the 50 ms before
/// the note-on, first climbs a tenth of the way to the note's peak (within 100 ms after the
/// note-on). Starting from the trough matters: the previous note's release tail is still
/// falling 50 ms before the next note-on, and a level measured there is not this note's rise.
pub fn onsets(r: &mut dyn Renderer) -> Outcome {
    let rate = r.sample_rate() as usize;
    let scale = [60u8, 62, 64, 65, 67, 69, 71, 72];
    let note_on = |i: usize| 0.2 + i as f64 * 0.4;
    let events: Vec<(f64, KeyEvent)> = scale
        .iter()
        .enumerate()
        .flat_map(|(i, &k)| [(note_on(i), on(k, 90)), (note_on(i) + 0.3, off(k))])
        .collect();
    let out = r.render(&events, 3.6);
    // 2 ms windows: 500 per second
    let env: Vec<f64> = out.chunks(rate / 500).map(rms).collect();
    let errors: Vec<f64> = (0..scale.len())
        .map(|i| {
            let centre = (note_on(i) * 500.0).round() as usize;
            let trough = (centre - 25..=centre)
                .min_by(|&a, &b| env[a].total_cmp(&env[b]))
                .unwrap_or(centre);
            let peak = env[centre..centre + 50].iter().copied().fold(0.0, f64::max);
            let threshold = env[trough] + 0.1 * (peak - env[trough]);
            let rise = (trough..centre + 50)
                .find(|&w| env[w] > threshold)
                .unwrap_or(centre + 50);
            (rise as f64 - centre as f64) / 500.0
        })
        .collect();
    let worst = errors.iter().copied().fold(0.0, |m: f64, e| m.max(e.abs()));
    Outcome {
        name: "onsets",
        passed: worst <= ONSET_TOLERANCE,
        figure: worst,
        detail: format!(
            "worst onset {:.1} ms from its note-on (limit {:.0} ms): {} ms",
            worst * 1e3,
            ONSET_TOLERANCE * 1e3,
            errors
                .iter()
                .map(|e| format!("{:+.0}", e * 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// A pedalled chord whose keys are released at 0.6 s and the pedal at 1.0 s: the peak from
/// 3.0 s (2 s after the last release) to 3.5 s is below −60 dBFS and 60 dB below the chord's
/// peak.
pub fn silence(r: &mut dyn Renderer) -> Outcome {
    let rate = r.sample_rate() as f64;
    let events = [
        (0.0, KeyEvent::Sustain { value: 127 }),
        (0.0, on(48, 110)),
        (0.0, on(60, 110)),
        (0.0, on(67, 110)),
        (0.6, off(48)),
        (0.6, off(60)),
        (0.6, off(67)),
        (1.0, KeyEvent::Sustain { value: 0 }),
    ];
    let out = r.render(&events, 3.5);
    let held = out[..(0.6 * rate) as usize]
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()));
    let tail = &out[(3.0 * rate) as usize..];
    let peak = tail.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let limit = SILENCE_PEAK.min(SILENCE_DROP * held as f64);
    Outcome {
        name: "silence",
        passed: peak < limit,
        figure: db(peak),
        detail: format!(
            "peak {:.1} dBFS 2 s after release (limit {:.0}: −60 dBFS and 60 dB below the \
             chord, which peaks at {:.1} dBFS)",
            db(peak),
            db(limit),
            db(held as f64)
        ),
    }
}

/// Middle C struck and released at 0.3 s, with and without the pedal held to 2.0 s: over
/// 0.8–1.8 s the pedalled version is at least 20 dB louder.
pub fn pedal(r: &mut dyn Renderer) -> Outcome {
    let rate = r.sample_rate() as f64;
    let notes = [(0.0, on(60, 100)), (0.3, off(60))];
    let with: Vec<(f64, KeyEvent)> = [(0.0, KeyEvent::Sustain { value: 127 })]
        .into_iter()
        .chain(notes)
        .chain([(2.0, KeyEvent::Sustain { value: 0 })])
        .collect();
    let (a, b) = (r.render(&with, 2.0), r.render(&notes, 2.0));
    let stretch = (0.8 * rate) as usize..(1.8 * rate) as usize;
    let gain = db(rms(&a[stretch.clone()]) / rms(&b[stretch]).max(1e-12));
    Outcome {
        name: "pedal",
        passed: gain >= PEDAL_GAIN_DB,
        figure: gain,
        detail: format!("the pedal adds {gain:.1} dB to a released key (need {PEDAL_GAIN_DB:.0})"),
    }
}

/// In-place radix-2 FFT.
fn fft(a: &mut [Complex64]) {
    let n = a.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            a.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let w = Complex64::from_polar(1.0, -2.0 * std::f64::consts::PI / len as f64);
        for chunk in a.chunks_mut(len) {
            let mut wk = Complex64::new(1.0, 0.0);
            for k in 0..len / 2 {
                let (u, v) = (chunk[k], chunk[k + len / 2] * wk);
                chunk[k] = u + v;
                chunk[k + len / 2] = u - v;
                wk *= w;
            }
        }
        len <<= 1;
    }
}

/// Hann-windowed magnitude spectrum, zero-padded to 2^19 points (0.09 Hz bins at 48 kHz).
fn spectrum(x: &[f32]) -> Vec<f64> {
    let n = (1usize << 19).max(x.len().next_power_of_two());
    let mut buf = vec![Complex64::new(0.0, 0.0); n];
    for (i, &v) in x.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / x.len() as f64).cos();
        buf[i] = Complex64::new(v as f64 * w, 0.0);
    }
    fft(&mut buf);
    buf[..n / 2].iter().map(|c| c.norm()).collect()
}

/// The fundamental within ±60 cents of `expected` that best explains the first harmonics
/// (summed magnitudes at n·f): for low keys, where the fundamental itself is weak, the
/// harmonic spacing decides.
fn fundamental(spec: &[f64], expected: f64, rate: u32) -> f64 {
    let bin = rate as f64 / (2 * spec.len()) as f64;
    let at = |f: f64| spec.get((f / bin).round() as usize).copied().unwrap_or(0.0);
    let harmonics = if expected < 100.0 { 8 } else { 4 };
    (-600..=600)
        .map(|c| expected * 2f64.powf(c as f64 / 12_000.0))
        .max_by(|&a, &b| {
            let score = |f: f64| (1..=harmonics).map(|n| at(n as f64 * f)).sum::<f64>();
            score(a).total_cmp(&score(b))
        })
        .unwrap()
}

/// A note's spectrum read against the harmonic series of the frequency it should have: its
/// first four partials, and the places where a wrong note puts its strongest partials (¹⁄₂ f
/// and ³⁄₂ f for the octave below, ³⁄₂ f for the fifth above, ³⁄₄ f and ³⁄₂ f for the fourth
/// below, ⁵⁄₂ f), where a piano's stretched series has not yet drifted.
struct Series {
    /// summed peak magnitudes at the partials n·f, odd and even n apart
    odd: f64,
    even: f64,
    /// the strongest of them
    strongest: f64,
    /// the strongest peak at ½, ¾, ³⁄₂ and ⁵⁄₂ of f
    between: f64,
}

impl Series {
    fn measure(spec: &[f64], f: f64, rate: u32) -> Series {
        let bin = rate as f64 / (2 * spec.len()) as f64;
        // the largest magnitude within ±40 cents of `at`
        let peak = |at: f64| {
            let lo = (at * 2f64.powf(-40.0 / 1200.0) / bin).floor() as usize;
            let hi = (at * 2f64.powf(40.0 / 1200.0) / bin).ceil() as usize;
            spec.get(lo..=hi.min(spec.len().saturating_sub(1)))
                .map_or(0.0, |s| s.iter().copied().fold(0.0, f64::max))
        };
        let partials: Vec<f64> = (1..=4).map(|n| peak(n as f64 * f)).collect();
        Series {
            odd: partials[0] + partials[2],
            even: partials[1] + partials[3],
            strongest: partials.iter().copied().fold(0.0, f64::max),
            between: [0.5, 0.75, 1.5, 2.5]
                .iter()
                .map(|j| peak(j * f))
                .fold(0.0, f64::max),
        }
    }

    /// The strongest peak where a wrong note's partials would be, against the strongest
    /// partial, dB.
    fn between_db(&self) -> f64 {
        db(self.between / self.strongest.max(1e-30))
    }

    /// The odd partials against the even ones, dB.
    fn odd_db(&self) -> f64 {
        db(self.odd / self.even.max(1e-30))
    }
}

fn cents(f: f64, reference: f64) -> f64 {
    1200.0 * (f / reference).log2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KEYS;

    /// A test instrument: a decaying tone per held key (pitch `detune` cents off; its first
    /// `partials` harmonics at 1/n amplitude, or a sine), amplitude proportional to velocity to
    /// the power `touch`, silent at once when released, sustained by the pedal as the roll
    /// encodes it.
    struct Sines {
        detune: f64,
        damped: bool,
        partials: usize,
        touch: f64,
    }

    impl Sines {
        fn new(detune: f64, damped: bool) -> Sines {
            Sines {
                detune,
                damped,
                partials: 1,
                touch: 2.0,
            }
        }
    }

    impl Renderer for Sines {
        fn sample_rate(&self) -> u32 {
            16_000
        }

        fn render(&mut self, events: &[(f64, KeyEvent)], seconds: f64) -> Vec<f32> {
            let roll = roll(events, seconds);
            let hold = (self.sample_rate() / CHECK_MIDI_RATE) as usize;
            // per key: (first sample, velocity) of the sounding note
            let mut sounding = [None::<(usize, u8)>; KEYS];
            let mut out = vec![0f32; roll.frames.len() * hold];
            for (f, frame) in roll.frames.iter().enumerate() {
                for (k, &v) in frame.iter().enumerate() {
                    if v == 0 && self.damped {
                        sounding[k] = None;
                    } else if v > 0 && sounding[k].is_none() {
                        sounding[k] = Some((f * hold, v));
                    }
                    let Some((start, velocity)) = sounding[k] else {
                        continue;
                    };
                    let hz = key_hz(k as u8 + 21) * 2f64.powf(self.detune / 1200.0);
                    let gain = (velocity as f64 / 127.0).powf(self.touch) / 3.0;
                    for (i, s) in out[f * hold..(f + 1) * hold].iter_mut().enumerate() {
                        let t = (f * hold + i - start) as f64 / self.sample_rate() as f64;
                        let tone: f64 = (1..=self.partials)
                            .map(|n| n as f64 * hz)
                            .take_while(|&p| p < self.sample_rate() as f64 / 2.0)
                            .enumerate()
                            .map(|(n, p)| {
                                (2.0 * std::f64::consts::PI * p * t).sin() / (n + 1) as f64
                            })
                            .sum();
                        *s += (gain * (-t).exp() * tone) as f32;
                    }
                }
            }
            out
        }
    }

    #[test]
    fn an_ideal_damped_instrument_passes() {
        for partials in [1, 8] {
            let outcomes = all(&mut Sines {
                partials,
                ..Sines::new(0.0, true)
            });
            for o in &outcomes {
                assert!(o.passed, "{partials} partials: {o}");
            }
        }
    }

    /// Every key played as another key's note fails: an octave down or up, a fifth up, a
    /// fourth down, as a sine and as a tone with eight partials.
    #[test]
    fn a_wrong_note_fails_pitch() {
        for (interval, cents) in [
            ("an octave down", -1200.0),
            ("an octave up", 1200.0),
            ("a fifth up", 702.0),
            ("a fourth down", -498.0),
        ] {
            for partials in [1, 8] {
                let o = pitch(&mut Sines {
                    partials,
                    ..Sines::new(cents, true)
                });
                assert!(!o.passed, "{interval}, {partials} partials: {o}");
            }
        }
    }

    /// Dynamics fail below a 20 dB span (amplitude ∝ velocity spans 15.6 dB) and where a step
    /// rises less than 1 dB; the square of the velocity (31 dB) passes.
    #[test]
    fn a_narrow_or_flat_velocity_response_fails_dynamics() {
        let with = |touch: f64| {
            dynamics(&mut Sines {
                touch,
                ..Sines::new(0.0, true)
            })
        };
        assert!(with(2.0).passed, "{}", with(2.0));
        assert!(!with(1.0).passed, "{}", with(1.0));
        assert!(!with(0.05).passed, "{}", with(0.05));
    }

    #[test]
    fn detuned_keys_fail_pitch() {
        let o = pitch(&mut Sines::new(40.0, true));
        assert!(!o.passed, "{o}");
        assert!(o.detail.starts_with("0/30"), "{o}");
    }

    #[test]
    fn undamped_keys_fail_silence_and_pedal() {
        let mut r = Sines::new(0.0, false);
        assert!(!silence(&mut r).passed);
        assert!(!pedal(&mut r).passed);
    }
}
