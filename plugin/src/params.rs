//! The host-automatable parameters, saved with the project.

use std::sync::Arc;

use nice_plug::prelude::*;
use parking_lot::RwLock;

use ssm_runtime::engine::{A4_RANGE, STANDARD_A4};
use ssm_runtime::notes::{
    DEFAULT_SOFT_PEDAL, SOFT_PEDAL_RANGE, TRANSPOSE_RANGE, VELOCITY_CURVE_RANGE,
};
use ssm_runtime::Size;

use crate::catalog::Catalog;
use crate::saved_family::SavedFamily;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSize {
    // saved by label (projects from before the ids saved the index, which still loads)
    #[id = "S"]
    S,
    #[id = "L"]
    L,
    #[id = "XL"]
    #[name = "XL"]
    Xl,
}

impl ModelSize {
    /// Position in [`Size::ALL`], the catalog's size order.
    pub fn index(self) -> usize {
        Size::from(self).index()
    }
}

impl From<ModelSize> for Size {
    fn from(size: ModelSize) -> Size {
        match size {
            ModelSize::S => Size::S,
            ModelSize::L => Size::L,
            ModelSize::Xl => Size::XL,
        }
    }
}

/// Room for this many families and heads; hosts need a fixed parameter range.
pub const MAX_FAMILIES: i32 = 32;
pub const MAX_HEADS: i32 = 32;

#[derive(Params)]
pub struct PianoParams {
    /// Model family: an index into the model catalog (built-in first, then the user folder).
    /// Projects also save the family's name (`saved_family`), which decides on load.
    #[id = "family"]
    pub family: IntParam,
    // the key is saved_family::FIELD (an attribute takes no constant)
    #[persist = "family_name"]
    pub saved_family: SavedFamily,
    #[id = "size"]
    pub size: EnumParam<ModelSize>,
    /// Output head, e.g. the MAESTRO year.
    #[id = "head"]
    pub head: IntParam,
    #[id = "gain"]
    pub gain: FloatParam,
    /// Master tuning: A4 in Hz.
    #[id = "tune"]
    pub tune: FloatParam,
    /// Semitones every key is moved by.
    #[id = "transpose"]
    pub transpose: IntParam,
    /// Velocity curve: velocity' = 127·(velocity/127)^gamma.
    #[id = "velocity_curve"]
    pub velocity_curve: FloatParam,
    /// Soft pedal (CC67): the share of its velocity a note struck under it keeps.
    #[id = "soft_pedal"]
    pub soft_pedal: FloatParam,
}

impl PianoParams {
    pub fn new(catalog: Arc<RwLock<Catalog>>) -> PianoParams {
        let families = catalog.clone();
        let heads = catalog.clone();
        let saved_family = SavedFamily::new(catalog);
        let (mirror, selected) = (saved_family.clone(), saved_family.clone());
        PianoParams {
            family: IntParam::new(
                "Model family",
                0,
                IntRange::Linear {
                    min: 0,
                    max: MAX_FAMILIES - 1,
                },
            )
            .with_value_to_string(Arc::new(move |v| {
                families
                    .read()
                    .family_name(v as usize)
                    .map_or_else(|| format!("{v} (none)"), str::to_string)
            }))
            .with_callback(Arc::new(move |v| mirror.chosen(v))),
            saved_family,
            size: EnumParam::new("Model size", ModelSize::L),
            head: IntParam::new(
                "Head",
                3,
                IntRange::Linear {
                    min: 0,
                    max: MAX_HEADS - 1,
                },
            )
            .with_value_to_string(Arc::new(move |v| {
                // the label the selected family gives this head (e.g. a MAESTRO year)
                let c = heads.read();
                let label = c
                    .families
                    .get(selected.index())
                    .and_then(|f| f.models.iter().find_map(|m| m.heads.get(v as usize)))
                    .cloned();
                label.unwrap_or_else(|| v.to_string())
            })),
            gain: FloatParam::new(
                "Gain",
                util::db_to_gain(0.0),
                FloatRange::Skewed {
                    min: util::db_to_gain(-36.0),
                    max: util::db_to_gain(12.0),
                    factor: FloatRange::gain_skew_factor(-36.0, 12.0),
                },
            )
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            tune: FloatParam::new(
                "Tuning (A4)",
                STANDARD_A4 as f32,
                FloatRange::Linear {
                    min: *A4_RANGE.start() as f32,
                    max: *A4_RANGE.end() as f32,
                },
            )
            .with_unit(" Hz")
            .with_step_size(0.1)
            .with_value_to_string(formatters::v2s_f32_rounded(1)),
            transpose: IntParam::new(
                "Transpose",
                0,
                IntRange::Linear {
                    min: *TRANSPOSE_RANGE.start(),
                    max: *TRANSPOSE_RANGE.end(),
                },
            )
            .with_unit(" st"),
            velocity_curve: FloatParam::new(
                "Velocity curve",
                1.0,
                // 1 (notes as played) in the middle of the control
                FloatRange::SymmetricalSkewed {
                    min: *VELOCITY_CURVE_RANGE.start() as f32,
                    max: *VELOCITY_CURVE_RANGE.end() as f32,
                    factor: 1.0,
                    center: 1.0,
                },
            )
            .with_step_size(0.01)
            .with_value_to_string(formatters::v2s_f32_rounded(2)),
            soft_pedal: FloatParam::new(
                "Soft pedal",
                DEFAULT_SOFT_PEDAL as f32,
                FloatRange::Linear {
                    min: *SOFT_PEDAL_RANGE.start() as f32,
                    max: *SOFT_PEDAL_RANGE.end() as f32,
                },
            )
            .with_unit(" %")
            .with_step_size(0.01)
            .with_value_to_string(Arc::new(|v| format!("{:.0}", v * 100.0)))
            .with_string_to_value(Arc::new(|s| {
                s.trim_end_matches(['%', ' '])
                    .parse::<f32>()
                    .ok()
                    .map(|p| p / 100.0)
            })),
        }
    }
}
