//! What a model must satisfy before the engine plays it: shapes, finite values within
//! bounds, a known architecture, sane metadata.

use super::*;
use crate::error::ModelError;

impl Model {
    /// Checks every invariant the engine relies on.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_info(&self.info)?;
        check_architecture(&self.widths(), &self.state_sizes())?;
        for (i, l) in self.layers.iter().enumerate() {
            let name = |t: &str| format!("layers.{i}.{t}");
            let (p, n_in, n_out) = (l.state, l.inputs, l.outputs);
            check_len(&name("norm"), &l.norm, p)?;
            check_len(&name("angle"), &l.angle, p)?;
            check_weights(&name("B"), &l.b, p * n_in * 2)?;
            check_weights(&name("B_bias"), &l.b_bias, p * 2)?;
            check_weights(&name("C"), &l.c, n_out * p * 2)?;
            check_weights(&name("C_bias"), &l.c_bias, n_out * 2)?;
            match (&l.skip, i) {
                (None, 0) => {}
                (Some(s), i) if i > 0 => check_weights(&name("skip"), s, n_out * n_in)?,
                (Some(_), _) => return Err(ModelError::UnexpectedTensor(name("skip"))),
                (None, _) => return Err(ModelError::MissingTensor(name("skip"))),
            }
            match (&l.damper, i) {
                (None, _) => {}
                (Some(d), 0) => {
                    if d.key.len() != p {
                        return Err(ModelError::BadValue {
                            name: name("damper_key"),
                            reason: format!("holds {} values, expected {p}", d.key.len()),
                        });
                    }
                    if let Some(k) = d.key.iter().flatten().find(|&&k| k as usize >= KEYS) {
                        return Err(ModelError::BadValue {
                            name: name("damper_key"),
                            reason: format!("key {k} is not one of the {KEYS} keys"),
                        });
                    }
                    check_len(&name("damper_norm"), &d.norm, p)?;
                    check_len(&name("damper_angle"), &d.angle, p)?;
                    check_norms(&name("damper_norm"), &d.norm)?;
                    for (tensor, frames) in [
                        ("damper_fall", d.fall_frames),
                        ("damper_settle", d.settle_frames),
                    ] {
                        if frames > MAX_DAMPER_FRAMES {
                            return Err(ModelError::BadValue {
                                name: name(tensor),
                                reason: format!(
                                    "{frames} frames is longer than {MAX_DAMPER_FRAMES}"
                                ),
                            });
                        }
                    }
                }
                (Some(_), _) => return Err(ModelError::UnexpectedTensor(name("damper_key"))),
            }
            match (l.velocity_exponent, i) {
                (None, _) => {}
                (Some(e), 0) if VELOCITY_EXPONENTS.contains(&e) => {}
                (Some(e), 0) => {
                    return Err(ModelError::BadValue {
                        name: name("velocity_exponent"),
                        reason: format!(
                            "{e} is outside {}..={}",
                            VELOCITY_EXPONENTS.start(),
                            VELOCITY_EXPONENTS.end()
                        ),
                    })
                }
                (Some(_), _) => {
                    return Err(ModelError::UnexpectedTensor(name("velocity_exponent")))
                }
            }
            match (&l.b_square, i) {
                (None, _) => {}
                (Some(b), 0) => check_weights(&name("B_square"), b, p * n_in * 2)?,
                (Some(_), _) => return Err(ModelError::UnexpectedTensor(name("B_square"))),
            }
            check_norms(&name("norm"), &l.norm)?;
        }
        let heads = self.info.heads.len();
        let last = self.widths().last().copied().unwrap_or(0);
        if !(1..=MAX_CHANNELS).contains(&self.channels) {
            return Err(ModelError::BadField {
                field: "channels",
                reason: format!(
                    "{} output channels; a head has 1 (mono) or {MAX_CHANNELS}",
                    self.channels
                ),
            });
        }
        let rows = heads * self.channels;
        check_weights("heads.weight", &self.head_weight, rows * last)?;
        check_weights("heads.bias", &self.head_bias, rows)?;
        if let Some(e) = &self.head_state_weight {
            let p = self.layers.first().map_or(0, |l| l.state);
            check_weights("heads.state_weight", e, rows * p * 2)?;
        }
        Ok(())
    }
}

/// Pole norms outside [`NORMS`] are no model's: a corrupt or crafted file.
fn check_norms(name: &str, norm: &[f32]) -> Result<(), ModelError> {
    match norm.iter().position(|v| !NORMS.contains(v)) {
        Some(k) => Err(ModelError::BadValue {
            name: name.into(),
            reason: format!(
                "pole magnitude exp({}) at index {k} is outside exp({})..=exp({})",
                norm[k],
                NORMS.start(),
                NORMS.end()
            ),
        }),
        None => Ok(()),
    }
}

/// [`check_len`], and every value within ±[`MAX_WEIGHT`].
fn check_weights(name: &str, data: &[f32], expected: usize) -> Result<(), ModelError> {
    check_len(name, data, expected)?;
    match data.iter().position(|v| v.abs() > MAX_WEIGHT) {
        Some(k) => Err(ModelError::BadValue {
            name: name.into(),
            reason: format!("{} at index {k} is beyond ±{MAX_WEIGHT:e}", data[k]),
        }),
        None => Ok(()),
    }
}

fn check_len(name: &str, data: &[f32], expected: usize) -> Result<(), ModelError> {
    if data.len() != expected {
        return Err(ModelError::BadValue {
            name: name.into(),
            reason: format!("holds {} values, expected {expected}", data.len()),
        });
    }
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFinite {
            name: name.into(),
            index,
        });
    }
    Ok(())
}

pub(super) fn check_info(info: &ModelInfo) -> Result<(), ModelError> {
    let bad = |field: &'static str, reason: String| Err(ModelError::BadField { field, reason });
    if !(MIN_RATE..=MAX_RATE).contains(&info.train_rate) {
        return bad(
            "train_rate",
            format!(
                "{} Hz is outside {MIN_RATE}..={MAX_RATE} Hz",
                info.train_rate
            ),
        );
    }
    if info.midi_rate == 0 || !info.train_rate.is_multiple_of(info.midi_rate) {
        return bad(
            "midi_rate",
            format!(
                "{} Hz does not divide the training rate {} Hz",
                info.midi_rate, info.train_rate
            ),
        );
    }
    let max = MAX_WEIGHT as f64;
    if !(info.norm_std > 0.0 && info.norm_std.is_finite() && info.norm_std <= max) {
        return bad(
            "norm_std",
            format!("{} is not a positive number up to {max:e}", info.norm_std),
        );
    }
    if !info.norm_mean.is_finite() || info.norm_mean.abs() > max {
        return bad(
            "norm_mean",
            format!("{} is not a number within ±{max:e}", info.norm_mean),
        );
    }
    if info.heads.is_empty() {
        return bad("heads", "the model needs at least one output head".into());
    }
    Ok(())
}

pub(super) fn check_architecture(widths: &[usize], states: &[usize]) -> Result<(), ModelError> {
    let bad = |field: &'static str, reason: String| Err(ModelError::BadField { field, reason });
    if states.is_empty() {
        return bad("state_sizes", "the model needs at least one layer".into());
    }
    if widths.len() != states.len() + 1 {
        return bad(
            "widths",
            format!(
                "{} widths for {} layers (expected one more than layers)",
                widths.len(),
                states.len()
            ),
        );
    }
    if widths[0] != KEYS {
        return bad(
            "widths",
            format!("input width is {}, expected {KEYS} keys", widths[0]),
        );
    }
    if let Some(w) = widths.iter().find(|&&w| w == 0 || w > 4096) {
        return bad("widths", format!("width {w} is outside 1..=4096"));
    }
    if let Some(p) = states.iter().find(|&&p| p == 0 || p > 8192) {
        return bad("state_sizes", format!("state size {p} is outside 1..=8192"));
    }
    Ok(())
}
