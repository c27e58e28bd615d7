//! The first layer's input: the key frame, constant between roll changes, and the key damper
//! (format version 2, see [`Damper`]).
//!
//! The projection `g ⊙ (B t + B_square t² + B_bias)` (`t` each key's touch) is recomputed
//! only when the keys change, over the keys that sound. A released key never excites a state: at the change every state keeps its
//! deviation from equilibrium and moves to the equilibrium of the keys that stay, the pole it
//! now rests at; the output lets go of the equilibrium it leaves along the settling fade.
//! Only a damper's fall (a few ms) and the fade (tens of ms) cost anything per sample.

use std::ops::Range;

use num_complex::Complex64;

use super::recurrence::{Input, Recurrence};
use super::{discretise, split};
use crate::model::{stable_pole, Damper, KeyBank, SsmLayer, KEYS};
use crate::roll::KeyFrame;

/// The first layer's input and its key damper, discretised for one rate.
pub(super) struct KeyInput {
    p: usize,
    /// what each key adds to the input at each roll value
    keys: KeyColumns,
    /// `g ⊙ B_bias`
    bias: Vec<f64>,
    /// the input for the current keys with every state's sounding gain
    sounding: Vec<f64>,
    /// what the recurrence reads: `sounding` with a damped state's gain where its key is up
    u: Vec<f64>,
    /// per state, `x* = rest · sounding input`: the equilibrium factor of the pole the state
    /// rests at now (`1/(1 − λ̄)`, or `(g_d/g)/(1 − λ̄_d)` while damped)
    rest: Vec<Complex64>,
    dampers: Vec<DampedState>,
    /// indices into `dampers` of the states whose damper is falling (capacity for all)
    falling: Vec<usize>,
    /// the fall's length in samples at this rate
    fall: u32,
    settling: Settling,
    /// scratch: the input of the keys that stay down through a change (2P)
    kept: Vec<f64>,
    /// whether the layer has a damper: without one (format version 1, the published
    /// checkpoints) a released key drives the states like any input change
    damped: bool,
    /// the states the recurrence and the output run over: all, or with a key bank the
    /// layer's own and the awake keys' banks
    awake: AwakeStates,
}

/// Which of the first layer's states run. Without a key bank, all; with one
/// ([`KeyBank`]), the states before it and the banks of the keys that sound or still ring:
/// a bank state moves only with its own key, so a silent key's bank, once decayed, stays at
/// exactly zero and costs nothing.
struct AwakeStates {
    p: usize,
    bank: Option<KeyBank>,
    /// per key: whether its bank runs
    awake: [bool; KEYS],
    /// per key: whether it sounds (its bank may not sleep)
    held: [bool; KEYS],
    /// the state ranges that run (capacity for every key: no allocation when it changes)
    states: Vec<Range<usize>>,
    /// the same as rows of the `[re; im]` state the output product reads
    rows: Vec<Range<usize>>,
}

/// One state that its key damps: both discretised poles and equilibrium factors, the ratio
/// of the damped input gain to the sounding one, and where its damper's fall is.
struct DampedState {
    state: usize,
    key: usize,
    sounding: Complex64,
    damped: Complex64,
    gain_ratio: Complex64,
    rest_sounding: Complex64,
    rest_damped: Complex64,
    /// per-sample factor of the falling pole: `exp((λ_d − λ)·s / R)`
    fall_factor: Complex64,
    /// samples into the fall (0 when not falling)
    fallen: u32,
    /// while falling: the current discretised pole, the input with the sounding gain, and
    /// the state before a sample
    pole: Complex64,
    input: Complex64,
    before: Complex64,
}

/// The outputs' fading offsets: what the states' equilibria were before the last key changes,
/// fading along [`Damper::settle_fade`].
struct Settling {
    /// per-sample pole ρ
    pole: f64,
    /// samples from a change until the fade is cut; 0 when the damper does not settle
    len: u32,
    /// samples left until the cut
    left: u32,
    /// the visible offset and the fade's first stage, `[re; im]` (2P)
    offset: Vec<f64>,
    drive: Vec<f64>,
}

impl KeyInput {
    /// `layer` (the first) discretised: poles `lam` and gains `g` for `step`, `frame` samples
    /// per MIDI frame.
    pub(super) fn new(
        layer: &SsmLayer,
        lam: &[Complex64],
        g: &[Complex64],
        step: f64,
        frame: f64,
    ) -> KeyInput {
        let p = layer.state;
        let column = |w: &dyn Fn(usize) -> Complex64| -> Vec<f64> {
            split(&(0..p).map(|q| g[q] * w(q)).collect::<Vec<_>>())
        };
        let cplx = |v: &[f32], i: usize| Complex64::new(v[2 * i] as f64, v[2 * i + 1] as f64);
        let columns = |b: &[f32]| -> Vec<f64> {
            (0..layer.inputs)
                .flat_map(|k| column(&|q| cplx(b, q * layer.inputs + k)))
                .collect()
        };
        let keys = KeyColumns {
            linear: columns(&layer.b),
            square: layer.b_square.as_deref().map(columns),
            touch: Touch::new(layer.velocity_exponent),
        };
        let bias = column(&|q| cplx(&layer.b_bias, q));
        let (dampers, fall, settling) = match &layer.damper {
            Some(d) => {
                let fall = (d.fall_frames as f64 * frame).round() as u32;
                let dampers = DampedState::all(layer, d, lam, g, step, fall);
                (dampers, fall, Settling::new(d, frame, p))
            }
            None => (Vec::new(), 0, Settling::none()),
        };
        KeyInput {
            p,
            keys,
            sounding: bias.clone(),
            u: bias.clone(),
            bias,
            rest: lam.iter().map(|l| 1.0 / (1.0 - l)).collect(),
            dampers,
            falling: Vec::with_capacity(p),
            fall,
            settling,
            kept: vec![0.0; 2 * p],
            damped: layer.damper.is_some(),
            awake: AwakeStates::new(p, KeyBank::detect(layer)),
        }
    }

    /// How many keys' banks run now.
    pub(super) fn awake_banks(&self) -> usize {
        match self.awake.bank {
            Some(_) => self.awake.awake.iter().filter(|&&a| a).count(),
            None => 0,
        }
    }

    /// The rows of the `[re; im]` state the output product reads now.
    pub(super) fn state_rows(&self) -> &[Range<usize>] {
        &self.awake.rows
    }

    /// Puts to sleep, at exactly zero, the bank of every silent key whose states are within
    /// `limit` of zero (each weighted by `weight`, what it moves the outputs): the engine's
    /// rest rule, per key. Not while a damper falls or an offset fades (they write states
    /// outside the recurrence).
    pub(super) fn sleep_banks(&mut self, rec: &mut Recurrence, weight: &[f64], limit: f64) {
        if !self.is_steady() {
            return;
        }
        self.awake.sleep(rec, weight, limit);
    }

    /// Moves from key frame `before` to `keys`: the released keys' equilibria leave the
    /// states (into the fading offsets), the dampers of released keys fall and those of
    /// struck keys lift, and the input becomes the new keys'.
    pub(super) fn set_keys(&mut self, before: &KeyFrame, keys: &KeyFrame, rec: &mut Recurrence) {
        let repoled = |k: usize| (before[k] > 0) != (keys[k] > 0);
        if self.damped
            && ((0..KEYS).any(|k| released(before, keys, k))
                || self.dampers.iter().any(|d| repoled(d.key)))
        {
            self.move_equilibria(before, keys, rec);
        }
        self.sounding.copy_from_slice(&self.bias);
        for (k, &v) in keys.iter().enumerate().filter(|(_, &v)| v > 0) {
            self.keys.add(&mut self.sounding, k, v, 1.0);
        }
        self.u.copy_from_slice(&self.sounding);
        let p = self.p;
        for (i, d) in self.dampers.iter_mut().enumerate() {
            let q = d.state;
            let input = Complex64::new(self.sounding[q], self.sounding[p + q]);
            if keys[d.key] > 0 {
                // a key struck while its damper falls lifts it at once
                d.fallen = 0;
                (rec.lam_re[q], rec.lam_im[q]) = (d.sounding.re, d.sounding.im);
                continue;
            }
            let damped_input = input * d.gain_ratio;
            (self.u[q], self.u[p + q]) = (damped_input.re, damped_input.im);
            (rec.lam_re[q], rec.lam_im[q]) = (d.damped.re, d.damped.im);
            if before[d.key] > 0 && self.fall > 0 {
                d.fallen = 0;
                d.pole = d.sounding;
                self.falling.push(i);
            }
            d.input = input;
        }
        // the states whose key came back stop falling (no allocation: removal only)
        let dampers = &self.dampers;
        self.falling.retain(|&i| keys[dampers[i].key] == 0);
        self.awake.wake(keys);
    }

    /// The jump of a key change: each state goes from the equilibrium of the old keys at its
    /// old resting pole to that of the keys that stay down at its new one, keeping its
    /// deviation (the vibration); the output keeps reading the old equilibrium, fading.
    fn move_equilibria(&mut self, before: &KeyFrame, keys: &KeyFrame, rec: &mut Recurrence) {
        let p = self.p;
        self.kept.copy_from_slice(&self.sounding);
        for k in (0..KEYS).filter(|&k| released(before, keys, k)) {
            self.keys.add(&mut self.kept, k, before[k], -1.0);
        }
        let at = |v: &[f64], q: usize| Complex64::new(v[q], v[p + q]);
        for q in 0..p {
            let jump = self.rest[q] * (at(&self.kept, q) - at(&self.sounding, q));
            self.apply_jump(q, jump, rec);
        }
        for i in 0..self.dampers.len() {
            let d = &self.dampers[i];
            let new_rest = if keys[d.key] > 0 {
                d.rest_sounding
            } else {
                d.rest_damped
            };
            let q = d.state;
            let jump = (new_rest - self.rest[q]) * at(&self.kept, q);
            self.rest[q] = new_rest;
            self.apply_jump(q, jump, rec);
        }
    }

    fn apply_jump(&mut self, q: usize, jump: Complex64, rec: &mut Recurrence) {
        if jump == Complex64::new(0.0, 0.0) {
            return;
        }
        rec.x_re[q] += jump.re;
        rec.x_im[q] += jump.im;
        self.settling.add(q, self.p, -jump);
    }

    /// [`Recurrence::run`] for `rows` samples of the current keys. While dampers fall or
    /// offsets fade it goes sample by sample: the falling states are recomputed with their
    /// falling pole and gain, and the output rows read the offsets beside the state; a
    /// finished fall leaves the list (its state then plays the damped pole and input the
    /// vectorised loop already holds).
    pub(super) fn run(&mut self, rec: &mut Recurrence, rows: usize, x: &mut [f32]) {
        let p = self.p;
        let states = &self.awake.states;
        if self.falling.is_empty() && self.settling.left == 0 {
            rec.run(states, p, rows, Input::Constant(&self.u), x);
            return;
        }
        for n in 0..rows {
            for &i in &self.falling {
                let q = self.dampers[i].state;
                self.dampers[i].before = Complex64::new(rec.x_re[q], rec.x_im[q]);
            }
            let row = &mut x[n * 2 * p..(n + 1) * 2 * p];
            rec.run(states, p, 1, Input::Constant(&self.u), row);
            for &i in &self.falling {
                let d = &mut self.dampers[i];
                let v = d.fall_step(self.fall);
                (rec.x_re[d.state], rec.x_im[d.state]) = (v.re, v.im);
                (row[d.state], row[p + d.state]) = (v.re as f32, v.im as f32);
            }
            let (dampers, fall) = (&self.dampers, self.fall);
            self.falling.retain(|&i| dampers[i].fallen < fall);
            self.settling.step(row);
        }
    }

    /// Whether the layer's input is constant from here on: no damper falls, no offset fades.
    pub(super) fn is_steady(&self) -> bool {
        self.falling.is_empty() && self.settling.left == 0
    }

    /// The constant input the recurrence reads while [`KeyInput::is_steady`].
    pub(super) fn steady_input(&self) -> &[f64] {
        &self.u
    }

    /// Ends every fall and fade and puts every key bank to sleep (a reset, which then
    /// clears the states).
    pub(super) fn stop(&mut self) {
        self.falling.clear();
        self.settling.stop();
        self.awake.stop();
    }
}

/// What the first layer reads for each roll value (0..=255): `v/127`, as the training
/// pipeline divides it (sums of overlapping notes go past 1), raised to the model's velocity
/// exponent if it has one. A table, so a key change costs no `powf`.
struct Touch(Vec<f64>);

impl Touch {
    fn new(exponent: Option<f32>) -> Touch {
        let e = exponent.map_or(1.0, f64::from);
        Touch((0..=255u8).map(|v| (v as f64 / 127.0).powf(e)).collect())
    }

    fn of(&self, value: u8) -> f64 {
        self.0[value as usize]
    }
}

/// Whether key `k` goes from sounding in `before` to silent in `keys`.
fn released(before: &KeyFrame, keys: &KeyFrame, k: usize) -> bool {
    before[k] > 0 && keys[k] == 0
}

/// Each key's input columns: `g ⊙ B[:, k]` and, on a format-version-3 layer, `g ⊙ B_square[:, k]`,
/// as `[re; im]` (2P values, f64) with the sounding gain; and the touch that weights them.
struct KeyColumns {
    linear: Vec<f64>,
    square: Option<Vec<f64>>,
    touch: Touch,
}

impl KeyColumns {
    /// Adds `sign` times what key `k` at roll value `v` puts into the input: `t·B + t²·B_square`.
    fn add(&self, input: &mut [f64], k: usize, v: u8, sign: f64) {
        let t = self.touch.of(v);
        add_column(input, &self.linear, k, sign * t);
        if let Some(square) = &self.square {
            add_column(input, square, k, sign * t * t);
        }
    }
}

/// Adds `scale` times key `k`'s column of `cols` (`input.len()` values each) to `input`.
fn add_column(input: &mut [f64], cols: &[f64], k: usize, scale: f64) {
    let width = input.len();
    for (s, c) in input.iter_mut().zip(&cols[k * width..(k + 1) * width]) {
        *s += scale * c;
    }
}

impl DampedState {
    /// The tagged states of `layer`'s damper, discretised for `step` with a fall of `fall`
    /// samples; `lam`/`g` are the sounding ones.
    fn all(
        layer: &SsmLayer,
        damper: &Damper,
        lam: &[Complex64],
        g: &[Complex64],
        step: f64,
        fall: u32,
    ) -> Vec<DampedState> {
        let zero = Complex64::new(0.0, 0.0);
        damper
            .key
            .iter()
            .enumerate()
            .filter_map(|(state, key)| {
                let key = (*key)? as usize;
                let (damped, g_damped) = discretise(damper.norm[state], damper.angle[state], step);
                // the continuous poles' difference, spread over the fall
                let shift = stable_pole(damper.norm[state], damper.angle[state])
                    - stable_pole(layer.norm[state], layer.angle[state]);
                let gain_ratio = g_damped / g[state];
                Some(DampedState {
                    state,
                    key,
                    sounding: lam[state],
                    damped,
                    gain_ratio,
                    rest_sounding: 1.0 / (1.0 - lam[state]),
                    rest_damped: gain_ratio / (1.0 - damped),
                    fall_factor: (shift * step / fall.max(1) as f64).exp(),
                    fallen: 0,
                    pole: lam[state],
                    input: zero,
                    before: zero,
                })
            })
            .collect()
    }

    /// One sample of the fall, from the state before it: `x = λ̄_n x + (g_n/g)·u`.
    fn fall_step(&mut self, fall: u32) -> Complex64 {
        self.fallen += 1;
        self.pole *= self.fall_factor;
        let ratio = 1.0 + (self.gain_ratio - 1.0) * (self.fallen as f64 / fall as f64);
        self.pole * self.before + ratio * self.input
    }
}

impl Settling {
    fn new(damper: &Damper, frame: f64, p: usize) -> Settling {
        Settling {
            pole: Damper::settle_pole(damper.settle_frames, frame),
            len: Damper::settle_fade(damper.settle_frames, frame).count() as u32,
            left: 0,
            offset: vec![0.0; 2 * p],
            drive: vec![0.0; 2 * p],
        }
    }

    /// No damper: equilibria are dropped at once (no layer without a damper jumps anyway).
    fn none() -> Settling {
        Settling {
            pole: 0.0,
            len: 0,
            left: 0,
            offset: Vec::new(),
            drive: Vec::new(),
        }
    }

    /// Starts (or adds to) state `q`'s fade from `offset`.
    fn add(&mut self, q: usize, p: usize, offset: Complex64) {
        if self.len == 0 {
            return;
        }
        for (v, part) in [(q, offset.re), (p + q, offset.im)] {
            self.offset[v] += part;
            self.drive[v] += part;
        }
        self.left = self.len;
    }

    /// Adds the offsets to one output row, then takes one step of the fade.
    fn step(&mut self, row: &mut [f32]) {
        if self.left == 0 {
            return;
        }
        let rho = self.pole;
        for ((r, o), d) in row.iter_mut().zip(&mut self.offset).zip(&mut self.drive) {
            *r += *o as f32;
            *o = rho * *o + (1.0 - rho) * *d;
            *d *= rho;
        }
        self.left -= 1;
        if self.left == 0 {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.offset.fill(0.0);
        self.drive.fill(0.0);
        self.left = 0;
    }
}

impl AwakeStates {
    fn new(p: usize, bank: Option<KeyBank>) -> AwakeStates {
        let mut a = AwakeStates {
            p,
            bank,
            awake: [false; KEYS],
            held: [false; KEYS],
            states: Vec::with_capacity(KEYS + 1),
            rows: Vec::with_capacity(2 * (KEYS + 1)),
        };
        a.update();
        a
    }

    /// Wakes the bank of every key that sounds in `keys` (without a bank, all states run).
    fn wake(&mut self, keys: &KeyFrame) {
        if self.bank.is_none() {
            return;
        }
        let mut changed = false;
        for (k, &v) in keys.iter().enumerate() {
            self.held[k] = v > 0;
            changed |= self.held[k] && !std::mem::replace(&mut self.awake[k], true);
        }
        if changed {
            self.update();
        }
    }

    fn sleep(&mut self, rec: &mut Recurrence, weight: &[f64], limit: f64) {
        let Some(bank) = self.bank else {
            return;
        };
        let mut changed = false;
        for k in 0..KEYS {
            if !self.awake[k] || self.held[k] {
                continue;
            }
            let states = bank.states_of(k);
            let distance: f64 = states
                .clone()
                .map(|q| weight[q] * rec.x_re[q].hypot(rec.x_im[q]))
                .sum();
            if distance < limit {
                rec.clear_range(states);
                self.awake[k] = false;
                changed = true;
            }
        }
        if changed {
            self.update();
        }
    }

    fn stop(&mut self) {
        self.awake = [false; KEYS];
        self.held = [false; KEYS];
        self.update();
    }

    /// Rebuilds the ranges from `awake`, neighbours merged (within the capacity).
    fn update(&mut self) {
        let p = self.p;
        self.states.clear();
        match self.bank {
            None => self.states.push(0..p),
            Some(bank) => {
                self.states.push(0..bank.first);
                for k in (0..KEYS).filter(|&k| self.awake[k]) {
                    let next = bank.states_of(k);
                    match self.states.last_mut() {
                        Some(last) if last.end == next.start => last.end = next.end,
                        _ => self.states.push(next),
                    }
                }
            }
        }
        self.rows.clear();
        let imaginary = self.states.iter().map(|r| p + r.start..p + r.end);
        for r in self.states.iter().cloned().chain(imaginary) {
            match self.rows.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => self.rows.push(r),
            }
        }
    }
}
