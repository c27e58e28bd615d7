//! Where a training step's time goes: `cargo bench -p trainer --bench step`.
//! S at 16 kHz, 4 s crops, batch 8 unless PIANO_SSM_BENCH_BATCH / _SIZE / _RATE say otherwise.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssm_runtime::Activation;
use tch::{Device, Kind};
use trainer::data::{synth::SynthSource, Batch, Norm, Rates, Source};
use trainer::loss::Losses;
use trainer::model::{InitOptions, PianoSsm, PoleInit, Size};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    trainer::train::set_threads(None);
    let batch: usize = env("PIANO_SSM_BENCH_BATCH", 8);
    let rate: u32 = env("PIANO_SSM_BENCH_RATE", 16_000);
    let size =
        <Size as clap::ValueEnum>::from_str(&env("PIANO_SSM_BENCH_SIZE", "S".to_string()), true)
            .expect("PIANO_SSM_BENCH_SIZE: S, L or XL");
    let rates = Rates::new(rate, rate / 16).unwrap();
    let source = SynthSource::open(&trainer::data::synth::Instrument::fluid(), rates, 0)
        .expect("FluidR3_GM.sf2");
    let net = PianoSsm::new(
        Device::Cpu,
        size,
        1,
        Activation::Tanh,
        InitOptions {
            poles: PoleInit::Keyboard,
            sample_rate: rate,
            seed: 0,
            gate: trainer::init::gated_keys::GATE,
        },
    )
    .expect("keyboard init");
    let losses = Losses::new(rate, Device::Cpu);
    let frames = rates.frames(4.0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    println!("| {size:?} {rate} Hz batch {batch} × 4 s | data | forward | loss | backward | total | s audio / s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for round in 0..3 {
        let t0 = Instant::now();
        let clips: Vec<_> = (0..batch)
            .map(|_| source.train_clip(&mut rng, frames).unwrap())
            .collect();
        let b = Batch::new(
            &clips,
            Norm {
                mean: 0.0,
                std: 0.1,
            },
            Device::Cpu,
        );
        let t1 = Instant::now();
        let pred = net.forward(&b.roll, &b.heads, rates.hold() as i64, 1.0);
        let _ = pred.sum(Kind::Float).double_value(&[]);
        let t2 = Instant::now();
        let loss = losses.combined.forward(&pred, &b.audio);
        let _ = loss.double_value(&[]);
        let t3 = Instant::now();
        loss.backward();
        let t4 = Instant::now();
        let total = (t4 - t0).as_secs_f64();
        let s = |a: Instant, b: Instant| format!("{:.2} s", (b - a).as_secs_f64());
        println!(
            "| round {round} | {} | {} | {} | {} | {total:.2} s | {:.2} |",
            s(t0, t1),
            s(t1, t2),
            s(t2, t3),
            s(t3, t4),
            batch as f64 * 4.0 / total
        );
    }
}
