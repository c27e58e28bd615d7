//! Does each built-in model sound like a piano? Pitch, dynamics, timing, silence after release
//! and the sustain pedal, measured on the embedded models at 48 kHz.

use num_complex::Complex64;
use ssm_runtime::roll::KeyEvent;
use ssm_runtime::{builtin, Engine, KeyFrame, Model, Roll, KEYS};

const RATE: u32 = 48_000;
const FPS: u32 = 1_000;

fn models() -> Vec<Model> {
    builtin::MODELS
        .iter()
        .map(|m| Model::from_bytes(m.bytes).expect("built-in model loads"))
        .collect()
}

/// A roll from (time in s, event) pairs, `seconds` long.
fn roll(events: &[(f64, KeyEvent)], seconds: f64) -> Roll {
    let file = ssm_runtime::MidiFile {
        events: events
            .iter()
            .enumerate()
            .map(|(i, &(t, event))| ssm_runtime::midi_file::TimedEvent {
                seconds: t + 1e-6,
                tick: i as u64,
                event,
            })
            .collect(),
    };
    let mut r = file.roll(FPS, seconds);
    r.frames
        .resize((seconds * FPS as f64) as usize, [0u8; KEYS] as KeyFrame);
    r
}

fn render(model: &Model, r: &Roll) -> Vec<f32> {
    let mut engine = Engine::new(model, RATE).unwrap();
    ssm_runtime::render::render_roll(&mut engine, r, |_, _| {})
}

fn on(note: u8, velocity: u8) -> KeyEvent {
    KeyEvent::NoteOn { note, velocity }
}

fn off(note: u8) -> KeyEvent {
    KeyEvent::NoteOff { note }
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
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
    let n = 1 << 19;
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
fn fundamental(spec: &[f64], expected: f64) -> f64 {
    let bin = RATE as f64 / (2 * spec.len()) as f64;
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

fn cents(f: f64, reference: f64) -> f64 {
    1200.0 * (f / reference).log2()
}

// The shipped models are still in training (see assets/README.md): the checks marked ignored
// do not pass yet, so they run on request
// (`cargo test -p ssm-runtime --test builtin_sound -- --ignored`).

#[test]
#[ignore = "issue 5: Grand S has 26 of 30 keys within 25 cents (27 needed)"]
fn pitch_of_every_third_key() {
    for model in models() {
        let keys: Vec<u8> = (21..=108).step_by(3).collect();
        let mut good = 0;
        let mut report = Vec::new();
        for &key in &keys {
            let out = render(&model, &roll(&[(0.0, on(key, 80)), (1.0, off(key))], 1.0));
            let expected = 440.0 * 2f64.powf((key as f64 - 69.0) / 12.0);
            let f = fundamental(&spectrum(&out), expected);
            let c = cents(f, expected);
            if c.abs() <= 25.0 {
                good += 1;
            }
            report.push(format!("{key}: {c:+.0}"));
        }
        let share = good as f64 / keys.len() as f64;
        assert!(
            share >= 0.9,
            "{} {}: {good}/{} keys within 25 cents ({})",
            model.info.family,
            model.info.size,
            keys.len(),
            report.join(", ")
        );
    }
}

#[test]
fn louder_with_velocity() {
    for model in models() {
        let levels: Vec<f64> = (1..=6)
            .map(|i| {
                let out = render(&model, &roll(&[(0.0, on(60, 20 * i))], 0.5));
                rms(&out)
            })
            .collect();
        assert!(
            levels.windows(2).all(|w| w[1] > w[0]),
            "{}: RMS by velocity {levels:?}",
            model.info.size
        );
    }
}

#[test]
#[ignore = "issue 5: a Grand S onset lands 48 ms early (the note before has not decayed)"]
fn onsets_follow_note_ons() {
    for model in models() {
        let scale = [60u8, 62, 64, 65, 67, 69, 71, 72];
        let events: Vec<(f64, KeyEvent)> = scale
            .iter()
            .enumerate()
            .flat_map(|(i, &k)| {
                [
                    (0.2 + i as f64 * 0.4, on(k, 90)),
                    (0.5 + i as f64 * 0.4, off(k)),
                ]
            })
            .collect();
        let out = render(&model, &roll(&events, 3.6));
        // 2 ms RMS envelope; the onset is where it first climbs a tenth of the way from the
        // level before the note-on to the note's peak
        let hop = (RATE / 500) as usize;
        let env: Vec<f64> = out.chunks(hop).map(rms).collect();
        for (i, _) in scale.iter().enumerate() {
            let t = 0.2 + i as f64 * 0.4;
            let centre = (t * 500.0) as usize;
            let before = env[centre - 10..centre - 5].iter().sum::<f64>() / 5.0;
            let peak = env[centre..centre + 50].iter().copied().fold(0.0, f64::max);
            let rise = (centre - 25..centre + 50)
                .find(|&w| env[w] > before + 0.1 * (peak - before))
                .unwrap_or(0);
            let onset = rise as f64 / 500.0;
            assert!(
                (onset - t).abs() <= 0.010,
                "{}: note {i} onset at {onset:.3} s, note-on at {t:.3} s",
                model.info.size
            );
        }
    }
}

#[test]
#[ignore = "issue 5: Grand S still rings at -53 dBFS 2 s after release"]
fn silent_two_seconds_after_release() {
    for model in models() {
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
        let out = render(&model, &roll(&events, 3.5));
        let tail = &out[(3.0 * RATE as f64) as usize..];
        let peak = tail.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            peak < 1e-3,
            "{}: {:.1} dBFS 2 s after release",
            model.info.size,
            20.0 * (peak as f64).log10()
        );
    }
}

#[test]
#[ignore = "issue 5: Grand S does not yet damp a released key (pedal adds 0 dB)"]
fn pedal_sustains_released_keys() {
    for model in models() {
        let notes = [(0.0, on(60, 100)), (0.3, off(60))];
        let with: Vec<(f64, KeyEvent)> = [(0.0, KeyEvent::Sustain { value: 127 })]
            .into_iter()
            .chain(notes)
            .chain([(2.0, KeyEvent::Sustain { value: 0 })])
            .collect();
        let (a, b) = (
            render(&model, &roll(&with, 2.0)),
            render(&model, &roll(&notes, 2.0)),
        );
        // the stretch after the key is released while the pedal holds it
        let stretch = (0.8 * RATE as f64) as usize..(1.8 * RATE as f64) as usize;
        let gain = 20.0 * (rms(&a[stretch.clone()]) / rms(&b[stretch]).max(1e-12)).log10();
        assert!(
            gain >= 20.0,
            "{}: pedal adds only {gain:.1} dB",
            model.info.size
        );
    }
}
