//! Training-time edits of a network's weights: the rest it settles to, a deeper first
//! tanh, an opened skip, and the decay limits training is held to.

use super::*;
use ssm_runtime::model::KeyBank;

impl Network {
    /// Sets every layer's input bias so that the zero state is the network's equilibrium for a
    /// silent roll (B_bias = −B·(what the layer's input holds at rest)), and the heads' biases
    /// so that the silent network plays `silence` (the normalised value of digital silence).
    /// Then a render that starts from zero, as the runtime's and every training crop's does,
    /// starts silent, and a released piano falls back to silence: an optimizer step can leave
    /// neither a thump at the start of a render nor an offset where the music stops.
    pub fn settle_rest(&mut self, silence: f64) {
        let _guard = tch::no_grad_guard();
        let sqrt2 = std::f64::consts::SQRT_2;
        // layer 1's input, the roll, is zero at rest
        let mut rest = Tensor::zeros(
            [self.layers[0].b.size()[1]],
            (Kind::Float, self.head_bias.device()),
        );
        for layer in &mut self.layers {
            let b = layer.b.detach(); // (P, in, 2)
            let bias = -(b * rest.view([1, -1, 1])).sum_dim_intlist(1, false, Kind::Float);
            layer.b_bias.copy_(&bias);
            // states at zero: y = Re(C_bias)
            let y = self.activation.apply(&layer.c_bias.select(1, 0));
            rest = match &layer.skip {
                Some(w) => (y + w.matmul(&rest)) / sqrt2,
                None => y / sqrt2,
            };
        }
        let bias = -self.head_weight.matmul(&rest) + silence;
        self.head_bias.copy_(&bias);
    }

    /// Scales the first layer's outputs by `k` and the second layer's inputs (B and the skip)
    /// by `1/k`: for quiet signals, where the tanh is linear, the same network; for loud ones
    /// `k` times deeper into the tanh, whose overtones brighten a loud note as a harder
    /// strike brightens a string. A network trained with its tanh in the linear range has no
    /// gradient towards that (measured: the same spectral centroid at velocity 30 and 110).
    pub fn drive_first_tanh(&mut self, k: f64) {
        let _guard = tch::no_grad_guard();
        let [first, second, ..] = &mut self.layers[..] else {
            return;
        };
        let _ = first.c.g_mul_scalar_(k);
        let _ = first.c_bias.g_mul_scalar_(k);
        let _ = second.b.g_div_scalar_(k);
        if let Some(skip) = &mut second.skip {
            let _ = skip.g_div_scalar_(k);
        }
    }

    /// Keeps the first layer's key bank structured after a step (see [`crate::bank::project`]).
    pub fn project_key_bank(&mut self, bank: &KeyBank) {
        if let Some(first) = self.layers.first_mut() {
            crate::bank::project(
                bank,
                &mut first.b,
                first.b_square.as_mut(),
                &mut first.b_bias,
            );
        }
    }

    /// Multiplies layer 2's skip weights by `gain`: the frequency-flat path from the first
    /// layer's tanh to the output (see `--open-skip`).
    pub fn open_first_skip(&mut self, gain: f64) {
        let _guard = tch::no_grad_guard();
        if let Some(skip) = self.layers.get_mut(1).and_then(|l| l.skip.as_mut()) {
            let _ = skip.g_mul_scalar_(gain);
        }
    }

    /// Shortens every pole of layers 2–4, and every damped pole of layer 1's key damper, whose
    /// 60 dB decay is longer than `t60` samples to that decay (its frequency kept). Why: only
    /// the first layer is gated or damped by the keys, and a spectral loss that wants energy in
    /// every bin will otherwise stretch a later layer's pole, or a damped string's, into a ring
    /// that plays on long after the keys are released (a damped pole reached 20 s in 7 epochs).
    pub fn limit_later_decays(&mut self, t60: f64) {
        let _guard = tch::no_grad_guard();
        let min_decay = 6.9 / t60;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if i > 0 {
                clamp_decay(&mut layer.norm, &mut layer.angle, |re| {
                    re.clamp_max(-min_decay)
                });
            }
            if let Some(d) = &mut layer.damper {
                clamp_decay(&mut d.norm, &mut d.angle, |re| re.clamp_max(-min_decay));
            }
        }
    }

    /// Applies `limits` to a network trained at `train_rate`.
    pub fn limit_decays(&mut self, limits: DecayLimits, train_rate: f64) {
        if let Some(t60) = limits.later_t60 {
            self.limit_later_decays(t60 * train_rate);
        }
        if let Some(t60) = limits.string_t60 {
            self.lengthen_string_decays(t60 * train_rate);
        }
    }

    /// Lengthens every sounding pole of the first layer (the strings, while their keys are
    /// held) whose 60 dB decay is shorter than `t60` samples to that decay, its frequency
    /// kept; the key damper's damped poles are left alone. Why: the spectral loss hears
    /// little of a quiet high string's tail, and training shortened the top keys' strings to
    /// 30–160 ms where the Salamander's ring for seconds; a note that has died before its
    /// release then measures every release as a burst of high frequencies.
    pub fn lengthen_string_decays(&mut self, t60: f64) {
        let _guard = tch::no_grad_guard();
        let max_decay = 6.9 / t60;
        if let Some(first) = self.layers.first_mut() {
            clamp_decay(&mut first.norm, &mut first.angle, |re| {
                re.clamp_min(-max_decay)
            });
        }
    }
}

/// The decay projections `train` (after every step) and `average` (on the mean) apply, in
/// seconds: `--later-t60`, the longest decay of layers 2–4 and of the damper's damped poles,
/// and `--string-t60`, the shortest of layer 1's strings.
#[derive(Debug, Clone, Copy)]
pub struct DecayLimits {
    pub later_t60: Option<f64>,
    pub string_t60: Option<f64>,
}

impl DecayLimits {
    /// Each limit given must be a positive, finite number of seconds.
    pub fn check(&self) -> Result<()> {
        for (flag, seconds) in [
            ("--later-t60", self.later_t60),
            ("--string-t60", self.string_t60),
        ] {
            if let Some(s) = seconds.filter(|s| !(s.is_finite() && *s > 0.0)) {
                bail!("{flag} must be a positive number of seconds, not {s}");
            }
        }
        Ok(())
    }

    pub fn is_none(&self) -> bool {
        self.later_t60.is_none() && self.string_t60.is_none()
    }
}

/// Moves every pole (norm, angle) to the real part `clamp` gives its real part (the decay per
/// sample, negated), its frequency kept, in place.
pub(super) fn clamp_decay(
    norm: &mut Tensor,
    angle: &mut Tensor,
    clamp: impl Fn(&Tensor) -> Tensor,
) {
    let poles = ContinuousPoles::new(norm, angle);
    let re = clamp(&poles.re);
    let im = poles.im;
    let new_norm = (&re * &re + &im * &im).sqrt().log();
    let new_angle = im.atan2(&re);
    let kind = norm.kind();
    norm.copy_(&new_norm.to_kind(kind));
    angle.copy_(&new_angle.to_kind(kind));
}
