//! State the audio thread publishes for the panel, and the status the panel shows.
//! The audio thread only touches atomics; the status text is written by the loader and
//! the panel.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use parking_lot::Mutex;
use ssm_runtime::KEYS;

#[derive(Default)]
pub struct Shared {
    /// Peak output level of the last block (f32 bits).
    peak: AtomicU32,
    /// Time spent in the last process call as a fraction of the block's duration (f32 bits).
    cpu_load: AtomicU32,
    /// Keys physically held and keys sounding (held or sustained), 88 bits each.
    held: [AtomicU64; 2],
    sounding: [AtomicU64; 2],
    /// The pedals as [`Pedals::bits`].
    pedals: AtomicU8,
    /// Blocks silenced because the model produced NaN or infinity.
    pub non_finite_blocks: AtomicU64,
    /// Index of the playing model in the catalog (family, size) + 1; 0 when none plays.
    pub playing_family: AtomicU32,
    pub playing_size: AtomicU32,
    status: Mutex<Status>,
}

/// Which pedals are down, on any channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pedals {
    pub sustain: bool,
    pub sostenuto: bool,
    pub soft: bool,
}

impl Pedals {
    fn bits(self) -> u8 {
        self.sustain as u8 | (self.sostenuto as u8) << 1 | (self.soft as u8) << 2
    }

    fn from_bits(bits: u8) -> Pedals {
        Pedals {
            sustain: bits & 1 != 0,
            sostenuto: bits & 2 != 0,
            soft: bits & 4 != 0,
        }
    }
}

/// What the panel prints under the selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub message: String,
    pub is_error: bool,
}

fn store_f32(a: &AtomicU32, v: f32) {
    a.store(v.to_bits(), Ordering::Relaxed);
}

fn load_f32(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Ordering::Relaxed))
}

fn pack(keys: &[u8; KEYS], bits: &[AtomicU64; 2]) {
    let mut words = [0u64; 2];
    for (k, &v) in keys.iter().enumerate() {
        if v > 0 {
            words[k / 64] |= 1 << (k % 64);
        }
    }
    bits[0].store(words[0], Ordering::Relaxed);
    bits[1].store(words[1], Ordering::Relaxed);
}

fn unpack(bits: &[AtomicU64; 2]) -> [bool; KEYS] {
    let words = [
        bits[0].load(Ordering::Relaxed),
        bits[1].load(Ordering::Relaxed),
    ];
    std::array::from_fn(|k| words[k / 64] & (1 << (k % 64)) != 0)
}

impl Shared {
    pub fn publish_block(
        &self,
        peak: f32,
        cpu_load: f32,
        held: &[u8; KEYS],
        sounding: &[u8; KEYS],
        pedals: Pedals,
    ) {
        store_f32(&self.peak, peak);
        store_f32(&self.cpu_load, cpu_load);
        pack(held, &self.held);
        pack(sounding, &self.sounding);
        self.pedals.store(pedals.bits(), Ordering::Relaxed);
    }

    pub fn pedals(&self) -> Pedals {
        Pedals::from_bits(self.pedals.load(Ordering::Relaxed))
    }

    pub fn peak(&self) -> f32 {
        load_f32(&self.peak)
    }

    pub fn cpu_load(&self) -> f32 {
        load_f32(&self.cpu_load)
    }

    pub fn held_keys(&self) -> [bool; KEYS] {
        unpack(&self.held)
    }

    pub fn sounding_keys(&self) -> [bool; KEYS] {
        unpack(&self.sounding)
    }

    /// Never called from the audio thread.
    pub fn set_status(&self, message: String) {
        *self.status.lock() = Status {
            message,
            is_error: false,
        };
    }

    /// Never called from the audio thread.
    pub fn set_error(&self, message: String) {
        *self.status.lock() = Status {
            message,
            is_error: true,
        };
    }

    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }
}
