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
            let update = &*m / &denom * (lr / bc1);
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
