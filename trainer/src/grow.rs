//! Growing a trained model into a larger size: `--weights` of an L with `--model XL`.
//!
//! The small model's states become the first states of each of the large model's layers; the
//! added states keep the fresh large init's poles, input weights and damper tags, and start
//! with their output weights at zero. So the grown model plays exactly what the small one
//! played, and training starts from there: the added states' output weights have a gradient
//! at once (their states are driven), their input weights as soon as those move. Why: an XL
//! trained from its own init needs several times the CPU of an L to reach the L's sound.

use anyhow::{bail, Result};
use ssm_runtime::model::{Damper, Model};

/// `small` grown into `fresh` (a freshly initialised model of the larger size with the same
/// widths and heads): see the module comment.
pub fn grow(small: &Model, fresh: Model) -> Result<Model> {
    let mut big = fresh;
    if small.widths() != big.widths() || small.head_count() != big.head_count() {
        bail!(
            "cannot grow a model with widths {:?} and {} heads into one with {:?} and {}",
            small.widths(),
            small.head_count(),
            big.widths(),
            big.head_count()
        );
    }
    for (i, (s, b)) in small.layers.iter().zip(&mut big.layers).enumerate() {
        let (p, q, inputs) = (s.state, b.state, s.inputs);
        if p > q {
            bail!("layer {}: {p} states do not fit into {q}", i + 1);
        }
        b.norm[..p].copy_from_slice(&s.norm);
        b.angle[..p].copy_from_slice(&s.angle);
        b.b[..p * inputs * 2].copy_from_slice(&s.b);
        b.b_bias[..p * 2].copy_from_slice(&s.b_bias);
        for o in 0..b.outputs {
            let row = &mut b.c[o * q * 2..(o + 1) * q * 2];
            row[..p * 2].copy_from_slice(&s.c[o * p * 2..(o + 1) * p * 2]);
            row[p * 2..].fill(0.0);
        }
        b.c_bias.copy_from_slice(&s.c_bias);
        b.skip.clone_from(&s.skip);
        b.velocity_exponent = s.velocity_exponent;
        // the added states' touch squares start at zero, like their output weights
        b.b_square = s.b_square.as_ref().map(|square| {
            let mut grown = vec![0.0; b.b.len()];
            grown[..square.len()].copy_from_slice(square);
            grown
        });
        b.damper = match (&s.damper, b.damper.take()) {
            // without a damper a release strikes: keep the small model's behaviour
            (None, _) => None,
            (Some(d), fresh) => {
                let mut grown = fresh.unwrap_or_else(|| Damper::none(&b.norm, &b.angle));
                grown.key[..p].copy_from_slice(&d.key);
                grown.norm[..p].copy_from_slice(&d.norm);
                grown.angle[..p].copy_from_slice(&d.angle);
                (grown.fall_frames, grown.settle_frames) = (d.fall_frames, d.settle_frames);
                Some(grown)
            }
        };
    }
    big.head_weight.clone_from(&small.head_weight);
    big.head_bias.clone_from(&small.head_bias);
    let size = big.info.size.clone();
    big.info = small.info.clone();
    big.info.size = size;
    big.validate()?;
    Ok(big)
}
