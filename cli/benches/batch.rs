//! Batch rendering speed: `piano-ssm render DIR --out-dir OUT --jobs N` over the same folder
//! of MIDI files with N = 1, 2, … up to the available cores, wall-clock time and the speed-up
//! over one job. The files are copies of `assets/demo.mid` (one file per job slot and more,
//! so every thread stays busy until the end); the built-in model plays at 48 kHz.
//!
//! Run with nothing else on the machine: `cargo bench -p piano-ssm-cli --bench batch`.
//! `PIANO_SSM_BENCH_FILES` sets how many files (default 8).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn render(dir: &Path, out: &Path, jobs: usize) -> f64 {
    let t = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_piano-ssm"))
        .arg("render")
        .arg(dir)
        .arg("--out-dir")
        .arg(out)
        .args(["--jobs", &jobs.to_string(), "--force"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("piano-ssm runs");
    assert!(status.success(), "piano-ssm render failed");
    t.elapsed().as_secs_f64()
}

fn main() {
    let files: usize = std::env::var("PIANO_SSM_BENCH_FILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/demo.mid");
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let (dir, out) = (tmp.path().join("midi"), tmp.path().join("wav"));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..files {
        std::fs::copy(&demo, dir.join(format!("demo-{i:02}.mid"))).expect("assets/demo.mid");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "piano-ssm render of {files} copies of assets/demo.mid (built-in L, 48 kHz), {cores} cores"
    );
    println!("| jobs | wall time | speed-up over 1 job |");
    println!("|---|---|---|");
    // the first pass warms the page cache and the binary
    render(&dir, &out, cores);
    let one = render(&dir, &out, 1);
    println!("| 1 | {one:.2} s | 1.00× |");
    for jobs in 2..=cores {
        let t = render(&dir, &out, jobs);
        println!("| {jobs} | {t:.2} s | {:.2}× |", one / t);
    }
}
