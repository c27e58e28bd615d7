//! The key bank: a first layer's last `88·K` states, `K` per key in key order, each tagged
//! with its key's damper and reading only that key (`B`, `B_square` zero outside its column,
//! `B_bias` zero). A convention over plain layer-0 states, not a format version: every
//! reader plays a bank as it plays any state. What the structure promises is that a bank
//! state moves only with its own key, so the engine may leave a silent key's bank at zero
//! once it has decayed (`docs/model-format.md`, "Key bank").

use super::{SsmLayer, KEYS};

/// The most states a key a bank is looked for with.
pub const MAX_PER_KEY: usize = 16;

/// Where a first layer's key bank lies: its last `KEYS · per_key` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBank {
    /// the first bank state
    pub first: usize,
    /// states per key
    pub per_key: usize,
}

impl KeyBank {
    /// The bank of `per_key` states a key `layer` ends in, if it has one.
    pub fn find(layer: &SsmLayer, per_key: usize) -> Option<KeyBank> {
        let bank = KeyBank {
            first: layer.state.checked_sub(KEYS * per_key)?,
            per_key,
        };
        let damper = layer.damper.as_ref()?;
        if per_key == 0 || layer.inputs != KEYS {
            return None;
        }
        let structured = (bank.first..layer.state).all(|i| {
            let key = bank.key_of(i);
            let row = i * KEYS * 2..(i + 1) * KEYS * 2;
            let own_only = |m: &[f32]| {
                m[row.clone()]
                    .chunks(2)
                    .enumerate()
                    .all(|(j, w)| j == key || w == [0.0, 0.0])
            };
            damper.key[i] == Some(key as u8)
                && own_only(&layer.b)
                && layer.b_square.as_deref().is_none_or(own_only)
                && layer.b_bias[i * 2..i * 2 + 2] == [0.0, 0.0]
        });
        structured.then_some(bank)
    }

    /// The largest bank (up to [`MAX_PER_KEY`] a key) `layer` ends in.
    pub fn detect(layer: &SsmLayer) -> Option<KeyBank> {
        (1..=MAX_PER_KEY)
            .rev()
            .find_map(|k| KeyBank::find(layer, k))
    }

    /// The key (0 = A0) bank state `i` belongs to.
    pub fn key_of(&self, i: usize) -> usize {
        (i - self.first) / self.per_key
    }

    /// Key `k`'s states.
    pub fn states_of(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.first + k * self.per_key;
        start..start + self.per_key
    }
}
