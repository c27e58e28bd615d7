//! Rates, heads, master tunings and clips the reference cases do not cover, checked against a second,
//! deliberately naive implementation of the model's equations in float64 (complex
//! arithmetic, one sample at a time, written from the reference README).

use ssm_runtime::render::render_roll;
use ssm_runtime::{Engine, MidiFile, Model, Roll};
use test_support::{checkpoint, reference_dir, relative_l2};

type C = (f64, f64);

fn mul(a: C, b: C) -> C {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn cexp(a: C) -> C {
    let m = a.0.exp();
    (m * a.1.cos(), m * a.1.sin())
}

fn div(a: C, b: C) -> C {
    let d = b.0 * b.0 + b.1 * b.1;
    ((a.0 * b.0 + a.1 * b.1) / d, (a.1 * b.0 - a.0 * b.1) / d)
}

/// Straight from the equations: per layer, per sample, every product in f64.
fn naive_render(model: &Model, roll: &Roll, sample_rate: u32, head: usize) -> Vec<f32> {
    naive_tuned(model, roll, sample_rate, head, 1.0)
}

/// The same with the model's time running `ratio` times as fast (master tuning A4 = 440·ratio).
fn naive_tuned(model: &Model, roll: &Roll, sample_rate: u32, head: usize, ratio: f64) -> Vec<f32> {
    let step = ratio * model.info.train_rate as f64 / sample_rate as f64;
    let mut layers: Vec<(Vec<C>, Vec<C>, Vec<C>)> = model
        .layers
        .iter()
        .map(|l| {
            let mut lam_bar = Vec::new();
            let mut g = Vec::new();
            for (&n, &a) in l.norm.iter().zip(&l.angle) {
                let ev = cexp((n as f64, a as f64));
                let ev = (-ev.0.abs(), ev.1);
                let angle = ev.1.atan2(ev.0);
                let lambda = cexp((n as f64, angle));
                let lb = cexp((lambda.0 * step, lambda.1 * step));
                lam_bar.push(lb);
                g.push(div((lb.0 - 1.0, lb.1), lambda));
            }
            (lam_bar, g, vec![(0.0, 0.0); l.state])
        })
        .collect();
    let total = roll.samples(sample_rate) as usize;
    let mut out = Vec::with_capacity(total);
    let mut frame = 0usize;
    for t in 0..total {
        while roll.frame_start(frame as u64 + 1, sample_rate) as usize <= t {
            frame += 1;
        }
        let mut h: Vec<f64> = roll.frames[frame]
            .iter()
            .map(|&v| v as f64 / 127.0)
            .collect();
        for (l, (lam_bar, g, x)) in model.layers.iter().zip(&mut layers) {
            let p = l.state;
            for q in 0..p {
                let mut bu = (l.b_bias[2 * q] as f64, l.b_bias[2 * q + 1] as f64);
                for (k, &hk) in h.iter().enumerate() {
                    bu.0 += l.b[2 * (q * l.inputs + k)] as f64 * hk;
                    bu.1 += l.b[2 * (q * l.inputs + k) + 1] as f64 * hk;
                }
                let lx = mul(lam_bar[q], x[q]);
                let gu = mul(g[q], bu);
                x[q] = (lx.0 + gu.0, lx.1 + gu.1);
            }
            let mut next = Vec::with_capacity(l.outputs);
            for o in 0..l.outputs {
                let mut y = l.c_bias[2 * o] as f64;
                for (q, &xq) in x.iter().enumerate().take(p) {
                    let c = (l.c[2 * (o * p + q)] as f64, l.c[2 * (o * p + q) + 1] as f64);
                    y += mul(c, xq).0;
                }
                let skip = l.skip.as_ref().map_or(0.0, |s| {
                    (0..l.inputs)
                        .map(|k| s[o * l.inputs + k] as f64 * h[k])
                        .sum()
                });
                next.push((y.tanh() + skip) / 2f64.sqrt());
            }
            h = next;
        }
        let w = &model.head_weight[head * h.len()..(head + 1) * h.len()];
        let y: f64 =
            model.head_bias[head] as f64 + h.iter().zip(w).map(|(a, b)| a * *b as f64).sum::<f64>();
        out.push((y * model.info.norm_std + model.info.norm_mean) as f32);
    }
    out
}

/// The first `seconds` of a clip's roll.
fn clip(name: &str, midi_rate: u32, seconds: f64) -> Roll {
    let mut roll = MidiFile::load(&reference_dir().join("midi").join(name))
        .unwrap()
        .roll(midi_rate, 1.5);
    roll.frames.truncate((seconds * midi_rate as f64) as usize);
    roll
}

#[test]
fn engine_matches_naive_float64_at_other_rates_and_heads() {
    let model = checkpoint("PianoSSM_S_MH_maestro_all_24000_model.pth");
    // (clip, start offset into the clip, rate, head)
    for (name, rate, head) in [
        ("pedal.mid", 8_000, 9),
        ("extremes.mid", 22_050, 1),
        ("scale.mid", 44_100, 6),
        ("pedal.mid", 96_000, 4),
    ] {
        let roll = clip(name, model.info.midi_rate, 1.2);
        let expected = naive_render(&model, &roll, rate, head);
        let mut engine = Engine::new(&model, rate).unwrap();
        engine.set_head(head).unwrap();
        let audio = render_roll(&mut engine, &roll, |_, _| {});
        let err = relative_l2(&audio, &expected);
        println!("{name} at {rate} Hz head {head}: relative L2 {err:.2e}");
        assert!(
            err <= 2e-4,
            "{name} at {rate} Hz, head {head}: relative L2 {err:.3e}"
        );
    }
}

#[test]
fn non_integer_frame_length_rounds_frame_starts_down() {
    // 44.1 kHz-trained model (MIDI rate 1764) at 48 kHz: 27.21 samples per frame
    let model = checkpoint("PianoSSM_S_MH_maestro_all_44100_model.pth");
    let roll = clip("extremes.mid", model.info.midi_rate, 0.6);
    let expected = naive_render(&model, &roll, 48_000, 3);
    let mut engine = Engine::new(&model, 48_000).unwrap();
    engine.set_head(3).unwrap();
    let audio = render_roll(&mut engine, &roll, |_, _| {});
    assert_eq!(
        audio.len(),
        (roll.frames.len() as u64 * 48_000 / 1764) as usize
    );
    let err = relative_l2(&audio, &expected);
    assert!(err <= 2e-4, "relative L2 {err:.3e}");
}

#[test]
fn a_tuned_engine_matches_naive_float64_with_the_step_scaled() {
    let model = checkpoint("PianoSSM_S_MH_maestro_all_24000_model.pth");
    let roll = clip("scale.mid", model.info.midi_rate, 1.2);
    let untuned = naive_render(&model, &roll, 48_000, 2);
    for a4 in [432.0, 446.0] {
        let expected = naive_tuned(&model, &roll, 48_000, 2, a4 / 440.0);
        let mut engine = Engine::tuned(&model, 48_000, a4).unwrap();
        engine.set_head(2).unwrap();
        let audio = render_roll(&mut engine, &roll, |_, _| {});
        let err = relative_l2(&audio, &expected);
        // and the tuning is heard: the untuned render is far from it
        let moved = relative_l2(&untuned, &expected);
        println!("A4 = {a4} Hz: relative L2 {err:.2e} (untuned {moved:.2e})");
        assert!(err <= 1e-3, "A4 = {a4} Hz: relative L2 {err:.3e}");
        assert!(
            moved > 0.1,
            "A4 = {a4} Hz: the tuning changed little ({moved:.3e})"
        );
    }
    for bad in [399.0, 481.0, f64::NAN] {
        let err = Engine::tuned(&model, 48_000, bad).err().expect("refused");
        assert!(err.to_string().contains("400 to 480"), "{err}");
    }
}
