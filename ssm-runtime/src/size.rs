//! The paper's architecture: its channel widths and its model sizes, S, L and XL (every
//! layer's state size). The one definition the command, the trainer, the plugin and the
//! checkpoint importer share (labels, state sizes, order), parsed and printed as `S`, `L`,
//! `XL`.

use std::fmt;
use std::str::FromStr;

use crate::limits::KEYS;

/// The paper's channel widths from the keys to the last layer (every size has them).
pub const WIDTHS: [usize; 5] = [KEYS, 88, 60, 40, 20];

/// A model size: 64, 128 or 256 complex states in every layer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Size {
    S,
    L,
    XL,
}

impl Size {
    /// Smallest first: the order of the plugin's size selector.
    pub const ALL: [Size; 3] = [Size::S, Size::L, Size::XL];

    /// The state size of every layer.
    pub fn state(self) -> usize {
        match self {
            Size::S => 64,
            Size::L => 128,
            Size::XL => 256,
        }
    }

    /// `S`, `L` or `XL`, as model files label themselves.
    pub fn label(self) -> &'static str {
        match self {
            Size::S => "S",
            Size::L => "L",
            Size::XL => "XL",
        }
    }

    /// The size whose layers have `state` states, if it is one of the paper's.
    pub fn of_state(state: usize) -> Option<Size> {
        Size::ALL.into_iter().find(|s| s.state() == state)
    }

    /// The size a model's label names (`S`, `L`, `XL`, any case).
    pub fn of_label(label: &str) -> Option<Size> {
        Size::ALL
            .into_iter()
            .find(|s| s.label().eq_ignore_ascii_case(label))
    }

    /// Position in [`Size::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        Size::of_label(s).ok_or_else(|| format!("unknown model size {s:?}: use S, L or XL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_states_and_order_agree() {
        for (i, size) in Size::ALL.into_iter().enumerate() {
            assert_eq!(size.index(), i);
            assert_eq!(Size::of_state(size.state()), Some(size));
            assert_eq!(size.label().parse::<Size>(), Ok(size));
            assert_eq!(size.label().to_lowercase().parse::<Size>(), Ok(size));
            assert_eq!(size.to_string(), size.label());
        }
        assert_eq!(Size::ALL.map(Size::state), [64, 128, 256]);
        assert_eq!(Size::of_state(100), None);
        assert!("M".parse::<Size>().unwrap_err().contains("S, L or XL"));
    }
}
