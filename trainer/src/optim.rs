//! Adam with L2 weight decay (torch.optim.Adam's `weight_decay`, as the paper trains) and the
//! paper's learning-rate schedule. Written here rather than taken from tch because tch's
//! optimizers cannot save their moment estimates, and `--resume` must continue exactly.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken so far.
    pub step: i64,
    /// Learning-rate factor for the poles (`norm`, `angle`): Adam moves every parameter by
    /// about the rate per step, which for a pole's angle is a large change of its decay time.
    pub pole_lr: f64,
    /// Learning-rate factor for the first layer's touch square (`layers.0.B_square`): it is
    /// added at zero to a trained model and has to grow to B's size within a fine-tuning run.
    pub square_lr: f64,
    /// First and second moments by parameter name.
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl Adam {
    pub fn new(weight_decay: f64) -> Adam {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            pole_lr: 1.0,
            square_lr: 1.0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One update of every parameter with a gradient, at learning rate `lr`.
    pub fn step(&mut self, params: &BTreeMap<String, Tensor>, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let (bc1, bc2) = (
            1.0 - self.beta1.powi(self.step as i32),
            1.0 - self.beta2.powi(self.step as i32),
        );
        for (name, p) in params {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let g = &grad + p * self.weight_decay;
            let m = self.m.entry(name.clone()).or_insert_with(|| p.zeros_like());
            let v = self.v.entry(name.clone()).or_insert_with(|| p.zeros_like());
            let _ = m
                .g_mul_scalar_(self.beta1)
                .g_add_(&(&g * (1.0 - self.beta1)));
            let _ = v
                .g_mul_scalar_(self.beta2)
                .g_add_(&(g.square() * (1.0 - self.beta2)));
            let denom = (&*v / bc2).sqrt() + self.eps;
            let mut update = &*m / &denom * (lr / bc1);
            if is_pole(name) {
                update *= self.pole_lr;
            }
            if name.ends_with(".B_square") {
                update *= self.square_lr;
            }
            if let Some(magnitude) = input_row_scale(params, name) {
                update *= magnitude;
            }
            let mut p = p.shallow_clone();
            let _ = p.g_sub_(&update);
        }
    }

    pub fn zero_grad(params: &BTreeMap<String, Tensor>) {
        for p in params.values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Global gradient norm (for the log), in float64.
    pub fn grad_norm(params: &BTreeMap<String, Tensor>) -> f64 {
        params
            .values()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.square().sum(Kind::Double).double_value(&[]))
            .sum::<f64>()
            .sqrt()
    }
}

/// For a layer's input weights (`layers.i.B`, `layers.0.B_square`, `layers.i.B_bias`): each
/// state's pole magnitude |λ| = exp(norm), shaped to scale that state's row of the update.
///
/// Why: a state answers a constant input with B/|λ|, so B's natural scale is |λ|, 0.003 for
/// a bass resonance at 16 kHz and 0.5 for a fast transient. Adam moves every parameter by
/// about the learning rate whatever its scale, which would wipe out the slow states' B in a
/// step; scaled by |λ|, every state's gain moves by about the learning rate.
fn input_row_scale(params: &BTreeMap<String, Tensor>, name: &str) -> Option<Tensor> {
    let (layer, shape): (&str, &[i64]) = if let Some(layer) = name.strip_suffix(".B_bias") {
        (layer, &[-1, 1]) // (P, 2)
    } else {
        let layer = name
            .strip_suffix(".B")
            .or_else(|| name.strip_suffix(".B_square"))?;
        (layer, &[-1, 1, 1]) // (P, in, 2)
    };
    let norm = params.get(&format!("{layer}.norm"))?;
    let magnitude = norm.exp();
    Some(magnitude.view(shape))
}

/// Whether a parameter is a layer's pole (`layers.i.norm` or `layers.i.angle`).
fn is_pole(name: &str) -> bool {
    name.ends_with(".norm") || name.ends_with(".angle")
}

/// Cosine annealing with linear warm-up and warm restarts (the paper's
/// CosineAnnealingWarmupRestarts): peaks at `max_lr`, decays to `min_lr` within each cycle,
/// each cycle's peak multiplied by `gamma`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub max_lr: f64,
    pub min_lr: f64,
    pub cycle_steps: f64,
    pub warmup_steps: f64,
    pub gamma: f64,
}

impl Schedule {
    /// The paper's settings for base rate `lr` over `total_steps`: max 5·lr, min lr/10, first
    /// cycle 40 % of the run, warm-up 25 % of a cycle, and gamma such that the peak has decayed
    /// to the minimum by the end of the run.
    pub fn paper(lr: f64, total_steps: u64) -> Schedule {
        let total = total_steps.max(1) as f64;
        let cycle_steps = (0.4 * total).max(1.0);
        let (max_lr, min_lr) = (5.0 * lr, lr / 10.0);
        let gamma = (min_lr / max_lr).powf(cycle_steps / total);
        Schedule {
            max_lr,
            min_lr,
            cycle_steps,
            warmup_steps: 0.25 * cycle_steps,
            gamma,
        }
    }

    /// A constant rate (no `--scheduler`).
    pub fn constant(lr: f64) -> Schedule {
        Schedule {
            max_lr: lr,
            min_lr: lr,
            cycle_steps: f64::INFINITY,
            warmup_steps: 0.0,
            gamma: 1.0,
        }
    }

    pub fn lr(&self, step: u64) -> f64 {
        if self.max_lr == self.min_lr {
            return self.max_lr;
        }
        let s = step as f64;
        let cycle = (s / self.cycle_steps).floor();
        let t = s - cycle * self.cycle_steps;
        let peak = self.min_lr + (self.max_lr - self.min_lr) * self.gamma.powf(cycle);
        if t < self.warmup_steps {
            self.min_lr + (peak - self.min_lr) * t / self.warmup_steps
        } else {
            let x = (t - self.warmup_steps) / (self.cycle_steps - self.warmup_steps);
            self.min_lr + (peak - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the same gradient, a slow state's B moves by |λ| times what a fast one's does, the
    /// touch square `square_lr` times that, and the poles move by `pole_lr` times the rate.
    #[test]
    fn input_weights_step_in_units_of_their_pole() {
        let magnitudes = [0.002f32, 0.5];
        let mut params = BTreeMap::new();
        let norm = Tensor::from_slice(&magnitudes.map(f32::ln)).set_requires_grad(true);
        let b = Tensor::zeros([2, 3, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let square =
            Tensor::zeros([2, 3, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let c = Tensor::zeros([4, 2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        ((&b + 1.0).sum(Kind::Float)
            + (&square + 1.0).sum(Kind::Float)
            + (&c + 1.0).sum(Kind::Float)
            + norm.sum(Kind::Float))
        .backward();
        let before = norm.detach().copy();
        params.insert("layers.0.B".to_string(), b.shallow_clone());
        params.insert("layers.0.B_square".to_string(), square.shallow_clone());
        params.insert("layers.0.C".to_string(), c.shallow_clone());
        params.insert("layers.0.norm".to_string(), norm.shallow_clone());
        let mut adam = Adam::new(0.0);
        adam.pole_lr = 0.25;
        adam.square_lr = 3.0;
        adam.step(&params, 1e-3);
        // Adam's first step is the rate itself, whatever the gradient's size
        let step = |t: &Tensor| -> Vec<f32> { Vec::try_from(t.detach().flatten(0, -1)).unwrap() };
        for (name, input, factor) in [("B", &b, 1.0), ("B_square", &square, 3.0)] {
            let steps = step(input);
            for (row, m) in magnitudes.iter().enumerate() {
                for v in &steps[row * 6..(row + 1) * 6] {
                    assert!(
                        (v + 1e-3 * m * factor).abs() < 1e-9,
                        "{name} row {row}: {v}"
                    );
                }
            }
        }
        assert!(step(&c).iter().all(|v| (v + 1e-3).abs() < 1e-9));
        let moved = step(&(norm.detach() - before));
        assert!(moved.iter().all(|v| (v + 2.5e-4).abs() < 1e-6), "{moved:?}");
    }
}
