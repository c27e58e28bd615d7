//! Where a training step's time goes, for both kernels in one run:
//! `cargo bench -p trainer --bench step` (run it on an idle machine; `taskset -c 1` pins it).
//!
//! Rows: S keyboard 16 kHz (a fresh keyboard-initialised S, the FluidR3 piano, the combined
//! spectral loss), L and XL damped-keys 24 kHz (the built-in Grand L and XL, the Salamander
//! sampler when `scripts/fetch-salamander.sh` has fetched it, else FluidR3, and the built-in
//! family's criteria: combined-spectral, equalised and brightness). Batch 2 × 2 s crops, one
//! thread unless PIANO_SSM_BENCH_THREADS says otherwise. The sampler decodes each recorded
//! note once and keeps it: 64 crops are drawn first so the data column shows a run's steady
//! state rather than its first epochs. Then one warm-up step, and the mean of
//! PIANO_SSM_BENCH_ROUNDS (2) steps. PIANO_SSM_BENCH_KERNEL=scan (or fft) runs one kernel only
//! and PIANO_SSM_BENCH_ROW=TEXT the rows whose label starts with TEXT, e.g. under a profiler.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::{Activation, Model};
use tch::{Device, Kind, Tensor};
use trainer::data::synth::{ReferencePiano, SynthSource};
use trainer::data::{salamander, Batch, Norm, Rates, Source};
use trainer::loss::{Criterion, Losses};
use trainer::model::{InitOptions, Kernel, Network, PoleInit, Size};

const BATCH: usize = 2;
const SECONDS: f64 = 2.0;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    label: &'static str,
    net: Box<dyn Fn() -> Network>,
    rates: Rates,
    source: Box<dyn Source>,
    criteria: Vec<Criterion>,
}

/// Seconds spent in each part of a step.
#[derive(Default, Clone, Copy)]
struct Times {
    data: f64,
    forward: f64,
    loss: f64,
    backward: f64,
}

impl Times {
    fn total(&self) -> f64 {
        self.data + self.forward + self.loss + self.backward
    }
}

fn step(row: &Row, net: &Network, losses: &Losses, rng: &mut ChaCha8Rng) -> Times {
    let t0 = Instant::now();
    let frames = row.rates.frames(SECONDS);
    let clips: Vec<_> = (0..BATCH)
        .map(|_| row.source.train_clip(rng, frames).unwrap())
        .collect();
    let norm = Norm {
        mean: 0.0,
        std: 0.1,
    };
    let b = Batch::new(&clips, norm, Device::Cpu);
    let t1 = Instant::now();
    let pred = net.forward_train(&b.roll, &b.heads, row.rates.hold() as i64, 1.0);
    let _ = pred.audio.sum(Kind::Float).double_value(&[]);
    let t2 = Instant::now();
    let loss = row
        .criteria
        .iter()
        .map(|&c| losses.get(c, &pred.audio, &b.audio))
        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, l| a + l);
    let _ = loss.double_value(&[]);
    let t3 = Instant::now();
    pred.backward(&loss);
    let t4 = Instant::now();
    for (_, p) in net.vs.variables() {
        let mut p = p;
        p.zero_grad();
    }
    let s = |a: Instant, b: Instant| (b - a).as_secs_f64();
    Times {
        data: s(t0, t1),
        forward: s(t1, t2),
        loss: s(t2, t3),
        backward: s(t3, t4),
    }
}

fn builtin(size: &str) -> impl Fn() -> Network {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/models")
        .join(format!("grand-{size}.safetensors"));
    let model = Model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    move || Network::from_runtime(Device::Cpu, &model).unwrap()
}

fn keyboard_s() -> Network {
    Network::new(
        Device::Cpu,
        Size::S,
        1,
        Activation::Tanh,
        InitOptions::new(PoleInit::Keyboard, 16_000, 0),
    )
    .unwrap()
}

/// The Salamander sampler when its library is complete, else FluidR3.
fn piano(rates: Rates) -> Box<dyn Source> {
    let dir = salamander::default_dir();
    let complete = salamander::Library::open(&dir).is_ok_and(|l| l.is_complete());
    let instrument = if complete {
        ReferencePiano::Salamander(dir)
    } else {
        ReferencePiano::fluid()
    };
    Box::new(SynthSource::open(&instrument, rates, 0).expect("the training piano"))
}

fn main() {
    let threads: usize = env("PIANO_SSM_BENCH_THREADS", 1);
    let rounds: usize = env("PIANO_SSM_BENCH_ROUNDS", 2).max(1);
    trainer::keep_freed_memory();
    trainer::train::set_threads(Some(threads));
    let only: Option<String> = std::env::var("PIANO_SSM_BENCH_KERNEL").ok();
    let built_in = [
        Criterion::CombinedSpectral,
        Criterion::Equalised,
        Criterion::Brightness,
    ];
    let (s_rates, l_rates) = (
        Rates::new(16_000, 1_000).unwrap(),
        Rates::new(24_000, 1_200).unwrap(),
    );
    let rows = [
        Row {
            label: "S keyboard 16 kHz",
            net: Box::new(keyboard_s),
            rates: s_rates,
            source: Box::new(
                SynthSource::open(&ReferencePiano::fluid(), s_rates, 0).expect("FluidR3_GM.sf2"),
            ),
            criteria: vec![Criterion::CombinedSpectral],
        },
        Row {
            label: "L damped-keys 24 kHz",
            net: Box::new(builtin("L")),
            rates: l_rates,
            source: piano(l_rates),
            criteria: built_in.to_vec(),
        },
        Row {
            label: "XL damped-keys 24 kHz",
            net: Box::new(builtin("XL")),
            rates: l_rates,
            source: piano(l_rates),
            criteria: built_in.to_vec(),
        },
    ];
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "batch {BATCH} × {SECONDS} s crops, {threads} thread(s), mean of {rounds} steps after one; {cpu}; L/XL data: {}",
        rows[1].source.describe()
    );
    println!();
    println!("| row | kernel | data | forward | loss | backward | total | s audio per s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let row_filter = std::env::var("PIANO_SSM_BENCH_ROW").unwrap_or_default();
    for row in rows.iter().filter(|r| r.label.starts_with(&row_filter)) {
        let losses = Losses {
            brightness_weight: 30.0,
            ..Losses::new(row.rates.sample_rate, Device::Cpu)
        };
        let mut warm = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..64 {
            row.source
                .train_clip(&mut warm, row.rates.frames(SECONDS))
                .unwrap();
        }
        for kernel in [Kernel::Fft, Kernel::Scan] {
            let name = format!("{kernel:?}").to_lowercase();
            if only.as_ref().is_some_and(|k| *k != name) {
                continue;
            }
            let mut net = (row.net)();
            net.kernel = kernel;
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let _ = step(row, &net, &losses, &mut rng);
            let mut sum = Times::default();
            for _ in 0..rounds {
                let t = step(row, &net, &losses, &mut rng);
                sum.data += t.data / rounds as f64;
                sum.forward += t.forward / rounds as f64;
                sum.loss += t.loss / rounds as f64;
                sum.backward += t.backward / rounds as f64;
            }
            let s = |x: f64| format!("{x:.3} s");
            println!(
                "| {} | {kernel:?} | {} | {} | {} | {} | {} | {:.2} |",
                row.label,
                s(sum.data),
                s(sum.forward),
                s(sum.loss),
                s(sum.backward),
                s(sum.total()),
                BATCH as f64 * SECONDS / sum.total()
            );
        }
    }
}
