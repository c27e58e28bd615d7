//! Engine speed: `cargo bench -p ssm-runtime` prints a table of the real-time factor (seconds
//! of compute per second of audio) for S, L and XL at 44.1 and 48 kHz on 60 s of music
//! (chords, melody, pedal) played in 64-sample blocks into two channels (as the plugin plays),
//! the p99.9 and worst block time, and
//! the real-time factor over 120 s of silence after the music (denormals must not slow it;
//! the issue that asked for sleeping measured one chord then 120 s of silence), with the time
//! from the last release until the engine sleeps.
//! At 48 kHz each size plays once more with a key damper (format version 2: falls and
//! settling fades after every release), to show what the damper costs, and the built-in
//! Grand L and XL play at 48 kHz with the engine asleep in silence and without (sleep off),
//! so the silence column compares the two in one run.
//!
//! Run it on one core for numbers comparable with the paper's: `taskset -c 1 cargo bench -p ssm-runtime`.
//! Set `PIANO_SSM_BENCH_SECONDS` to shorten the music and `PIANO_SSM_BENCH_SIZES=XL` to pick sizes.
//! `PIANO_SSM_BENCH_MODELS=A.safetensors,B.safetensors` plays those models too, at 48 kHz, after
//! the built-in ones: a candidate against the shipped models in one run.

use std::time::Instant;

use ssm_runtime::checkpoint::{import_pth, ImportOptions};
use ssm_runtime::model::Damper;
use ssm_runtime::{builtin, Engine, Isa, KeyEvent, Model, Player, KEYS};

const BLOCK: usize = 64;

/// A deterministic minute of piano: left-hand chords every half note, an eighth-note melody,
/// the pedal changed every bar, at 120 bpm.
fn performance(seconds: f64, sample_rate: u32) -> Vec<(u64, KeyEvent)> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let at = |beat: f64| (beat * 0.5 * sample_rate as f64) as u64;
    let mut ev = Vec::new();
    let beats = (seconds * 2.0) as u64;
    let chords: [[u8; 3]; 4] = [[48, 52, 55], [45, 48, 52], [41, 45, 48], [43, 47, 50]];
    for bar in 0..beats / 4 {
        let b = bar as f64 * 4.0;
        ev.push((at(b), KeyEvent::Sustain { value: 0 }));
        ev.push((at(b + 0.05), KeyEvent::Sustain { value: 127 }));
        for half in 0..2 {
            let chord = chords[((bar * 2 + half) % 4) as usize];
            let t = b + half as f64 * 2.0;
            for &n in &chord {
                ev.push((
                    at(t),
                    KeyEvent::NoteOn {
                        note: n,
                        velocity: 50 + rand(30) as u8,
                    },
                ));
                ev.push((at(t + 1.9), KeyEvent::NoteOff { note: n }));
            }
        }
        for eighth in 0..8 {
            let t = b + eighth as f64 * 0.5;
            let note = 64 + [0u8, 2, 4, 5, 7, 9, 11, 12][rand(8) as usize];
            ev.push((
                at(t),
                KeyEvent::NoteOn {
                    note,
                    velocity: 60 + rand(60) as u8,
                },
            ));
            ev.push((at(t + 0.45), KeyEvent::NoteOff { note }));
        }
    }
    ev.push((at(beats as f64), KeyEvent::Sustain { value: 0 }));
    ev.sort_by_key(|e| e.0);
    ev
}

/// `model` with a key damper as `--init damped-keys` builds it: up to 88 first-layer states
/// tagged with a key, damped poles, a 12-frame fall and a 6-frame settling fade.
fn with_damper(mut model: Model) -> Model {
    let first = &mut model.layers[0];
    let mut d = Damper::none(&first.norm, &first.angle);
    for (p, k) in d.key.iter_mut().enumerate().take(KEYS) {
        *k = Some(p as u8);
    }
    d.norm.iter_mut().for_each(|v| *v += 2.0);
    (d.fall_frames, d.settle_frames) = (12, 6);
    first.damper = Some(d);
    model
}

struct Stats {
    rtf: f64,
    p999_pct: f64,
    worst_pct: f64,
    silence_rtf: f64,
    /// seconds from the last release until the engine slept (None: it never did)
    to_sleep: Option<f64>,
}

/// The silence after the music, in seconds.
const SILENCE: u64 = 120;

fn run(model: &Model, sample_rate: u32, isa: Isa, seconds: f64, sleep: bool) -> Stats {
    let mut engine = Engine::with_isa(model, sample_rate, isa).unwrap();
    engine.set_sleep(sleep);
    let mut player = Player::new(engine);
    let events = performance(seconds, sample_rate);
    let total = (seconds * sample_rate as f64) as u64;
    // two channels, as the plugin plays (a mono model's one channel on both)
    let (mut out, mut right) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    let mut times = Vec::with_capacity((total as usize) / BLOCK + 1);
    let mut next = 0;
    let mut block_events: Vec<(u32, KeyEvent)> = Vec::with_capacity(64);
    let start_all = Instant::now();
    let mut pos = 0u64;
    while pos < total {
        block_events.clear();
        while next < events.len() && events[next].0 < pos + BLOCK as u64 {
            block_events.push(((events[next].0 - pos) as u32, events[next].1));
            next += 1;
        }
        let t = Instant::now();
        player.process_stereo(block_events.iter().copied(), &mut out, &mut right);
        times.push(t.elapsed().as_secs_f64());
        pos += BLOCK as u64;
    }
    let music = start_all.elapsed().as_secs_f64();
    // the silence after the music: every key and the pedal up
    player.process_stereo(
        [
            (0, KeyEvent::AllNotesOff),
            (0, KeyEvent::Sustain { value: 0 }),
        ],
        &mut out,
        &mut right,
    );
    let silence_samples = SILENCE * sample_rate as u64;
    let t = Instant::now();
    let mut done = BLOCK as u64;
    let mut slept_at = None;
    while done < silence_samples {
        player.process_stereo(std::iter::empty::<(u32, KeyEvent)>(), &mut out, &mut right);
        done += BLOCK as u64;
        if slept_at.is_none() && player.engine().is_some_and(Engine::is_asleep) {
            slept_at = Some(done);
        }
    }
    let silence = t.elapsed().as_secs_f64();
    std::hint::black_box((&out, &right));
    times.sort_by(f64::total_cmp);
    let block_seconds = BLOCK as f64 / sample_rate as f64;
    let p999 = times[((times.len() as f64 * 0.999) as usize).min(times.len() - 1)];
    Stats {
        rtf: music / seconds,
        p999_pct: 100.0 * p999 / block_seconds,
        worst_pct: 100.0 * times.last().unwrap() / block_seconds,
        silence_rtf: silence / SILENCE as f64,
        to_sleep: slept_at.map(|n| n as f64 / sample_rate as f64),
    }
}

fn main() {
    let weights = test_support::reference_dir().join("weights");
    let seconds: f64 = std::env::var("PIANO_SSM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    let isas = Isa::available();
    println!("Piano-SSM engine, {BLOCK}-sample blocks, {seconds} s of music then {SILENCE} s of silence, ISA {}", isas[0].name());
    println!(
        "| model | rate | ISA | RTF | p99.9 block | worst block | RTF in silence | asleep after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let sizes = std::env::var("PIANO_SSM_BENCH_SIZES").unwrap_or_else(|_| "S,L,XL".into());
    for size in sizes.split(',') {
        let path = weights.join(format!("PianoSSM_{size}_MH_maestro_all_44100_model.pth"));
        let model = import_pth(&path, &ImportOptions::default())
            .expect("published checkpoint in ../shared/reference");
        for rate in [44_100, 48_000] {
            // the fastest ISA for every model; the others for XL at 48 kHz, to compare in one run
            let variants: &[Isa] = if size == "XL" && rate == 48_000 {
                &isas
            } else {
                &isas[..1]
            };
            let mut rows: Vec<(String, &Model, Isa, bool)> = variants
                .iter()
                .map(|&isa| (size.to_string(), &model, isa, true))
                .collect();
            let damped = with_damper(model.clone());
            let grand = size
                .parse()
                .ok()
                .and_then(builtin::load)
                .and_then(Result::ok);
            if rate == 48_000 {
                rows.push((format!("{size} + damper"), &damped, isas[0], true));
                if let Some(grand) = &grand {
                    rows.push((format!("Grand {size} (built-in)"), grand, isas[0], true));
                    rows.push((format!("Grand {size}, sleep off"), grand, isas[0], false));
                }
            }
            for (label, model, isa, sleep) in rows {
                print_row(&label, model, rate, isa, seconds, sleep);
            }
        }
    }
    let models = std::env::var("PIANO_SSM_BENCH_MODELS").unwrap_or_default();
    for path in models.split(',').filter(|p| !p.is_empty()) {
        let model = Model::load(std::path::Path::new(path)).expect("a model to benchmark");
        print_row(path, &model, 48_000, isas[0], seconds, true);
    }
}

fn print_row(label: &str, model: &Model, rate: u32, isa: Isa, seconds: f64, sleep: bool) {
    let s = run(model, rate, isa, seconds, sleep);
    let to_sleep = s.to_sleep.map_or("never".into(), |t| format!("{t:.2} s"));
    println!(
        "| {label} | {:.1} kHz | {} | {:.3} | {:.1} % | {:.1} % | {:.4} | {to_sleep} |",
        rate as f64 / 1000.0,
        isa.name(),
        s.rtf,
        s.p999_pct,
        s.worst_pct,
        s.silence_rtf
    );
}
