//! Piano-SSM trainer: the network in libtorch, its losses, datasets and training loop.
//!
//! * [`model`] — the network, its FFT and scan kernels, import/export of runtime models.
//! * [`recurrence`] — the scan kernel's recurrences and their adjoints, in Rust.
//! * [`init`] — where a fresh network starts (keyboard poles, gated key resonators).
//! * [`bank`] — a key bank in the first layer: more ringing string partials per key.
//! * [`loss`] — SpectralLoss (MSSL), CombinedSpectralLoss and the level-equalised loss.
//! * [`listen`] — what a listener hears: release drop and burst, harmonic-to-noise,
//!   brightness against velocity, spectral distance.
//! * [`material`] / [`unseen`] — material unlike training (single notes, long notes, chords
//!   under the pedal, repeated notes, music written as scores) and the figures a piano earns
//!   on it against the Salamander: partials ringing, harmonic-to-noise, the two distances.
//! * [`data`] — MAESTRO, MAPS and the synthetic SoundFont dataset, as batches of rolls + audio.
//! * [`optim`] — Adam and the paper's learning-rate schedule, with state that checkpoints.
//! * [`stereo`] — a stereo head fitted to a trained network; the stereo image of a piano.
//! * [`train`] / [`eval`] / [`compare`] / [`check`] / [`average`] / [`stereo`] — the `train`,
//!   `eval`, `compare`, `check`, `average` and `stereo` commands.

pub mod average;
pub mod bank;
pub mod check;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod eval;
pub mod grow;
pub mod init;
pub mod listen;
pub mod loss;
pub mod material;
pub mod model;
pub mod optim;
pub mod plots;
pub mod recurrence;
pub mod stereo;
pub mod train;
pub mod unseen;

use tch::{Device, Kind, Tensor};

/// Makes glibc's malloc, which libtorch allocates through, keep freed memory for reuse.
///
/// Why: a training step allocates and frees tensors of 10–200 MB. glibc serves blocks above
/// its mmap threshold (at most 32 MB) with fresh mmaps and returns them on free, so every
/// operation faulted its output in page by page, zeroed by the kernel: measured on a 2 s-crop
/// L run, 150 000 page faults a second and two thirds of the CPU time in the kernel. From the
/// heap, with trimming off, freed blocks are reused and the faults stop (0 a second).
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Parses `cpu`, `cuda`, `cuda:N`; `None` picks CUDA when available.
pub fn parse_device(spec: Option<&str>) -> anyhow::Result<Device> {
    match spec {
        None => Ok(Device::cuda_if_available()),
        Some("cpu") => Ok(Device::Cpu),
        Some(s) if s == "cuda" || s.starts_with("cuda:") => {
            let index = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("bad device {s:?}: expected cuda:N"))?,
                None => 0,
            };
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                anyhow::bail!(
                    "device {s} requested but {count} CUDA device(s) are visible to libtorch"
                );
            }
            Ok(Device::Cuda(index))
        }
        Some(s) => anyhow::bail!("unknown device {s:?}: use cpu, cuda or cuda:N"),
    }
}

/// Roll frames (frames × 88 velocities) as a (1, 88, frames) float tensor of velocity / 127.
pub fn roll_tensor(frames: &[ssm_runtime::KeyFrame], device: Device) -> Tensor {
    let flat: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    Tensor::from_slice(&flat)
        .to_device(device)
        .to_kind(Kind::Float)
        .reshape([1, frames.len() as i64, ssm_runtime::KEYS as i64])
        .transpose(1, 2)
        / 127.0
}
