//! The first layer's key damper on the FFT path: the fall schedules, the release jumps
//! and the settling fade, as the format's equations define them.

use super::*;

impl NetworkLayer {
    /// The first layer with its key damper, for `roll` (B, 88, F) held `hold` samples a frame:
    /// (out, B, F·hold).
    ///
    /// Why not the FFT: a damped state's pole switches with its key, so the layer is not one
    /// convolution. But its input is constant within a frame and its pole follows one of a few
    /// schedules per frame (sounding, the damper's n-th frame of falling, damped), so the state
    /// `i` samples into frame f is exactly `x = P[i] X_{f−1} + G[i] w_f`, with the schedule's
    /// tables P, G — what the engine's per-sample recurrence computes — and the frame ends
    /// are a first-order recurrence over frames, solved by a parallel prefix scan (log₂ F
    /// steps of tensor products). Where keys are released the states jump to the kept keys'
    /// equilibrium ([`NetworkLayer::release_jump`]) and the output reads what they left along the
    /// settling fade (an FFT convolution of per-frame impulses, [`settle`]).
    pub(super) fn forward_damped(
        &self,
        damper: &KeyDamper,
        roll: &Tensor,
        hold: i64,
        s: f64,
    ) -> Tensor {
        let (batch, frames) = (roll.size()[0], roll.size()[2]);
        let device = roll.device();
        let kind = self.norm.kind();
        let keys = roll.permute([1, 0, 2]); // (88, B, F)
        let w_now = self.key_input(&keys);
        let schedules = FallSchedules::new(&self.norm, &self.angle, damper, hold, s, kind);
        let (phase, untagged) = damper.state_phases(roll);
        let (pow, gain) = schedules.pick(&phase);
        let jump = self.release_jump(&schedules, &w_now, &keys, &phase, &untagged);
        let zero = Tensor::zeros([self.state, batch, 1], (kind, device));
        let shift = |t: &Tensor| previous(t, &zero);
        let w = Cx::new(w_now.re.unsqueeze(3), w_now.im.unsqueeze(3));
        // frame ends: X_f = A_f (X_{f−1} + jump_f) + c_f
        let last = |t: &Tensor| t.select(3, hold - 1);
        let a = Cx::new(last(&pow.re), last(&pow.im));
        let c = gain.select_last(hold).mul(&w.squeeze3()).add(&a.mul(&jump));
        let ends = prefix_scan(a, c, frames);
        // X_{f−1} (zero before the first frame) after the frame's jump
        let before = Cx::new(
            (shift(&ends.re) + &jump.re).unsqueeze(3),
            (shift(&ends.im) + &jump.im).unsqueeze(3),
        );
        let x = pow.mul(&before).add(&gain.mul(&w));
        let flat = |t: Tensor| t.reshape([self.state, batch, frames * hold]);
        let (x_re, x_im) = (flat(x.re), flat(x.im));
        // Re(C x) = C_re x_re − C_im x_im
        let c = Tensor::cat(&[self.c.select(2, 0), -self.c.select(2, 1)], 1); // (out, 2P)
        let y = channel_matmul(&c, &Tensor::cat(&[x_re, x_im], 0))
            + self.c_bias.select(1, 0).view([-1, 1, 1]);
        // the output lets go of the equilibria the jumps left, along the settling fade
        let fade: Vec<f64> = Damper::settle_fade(damper.settle_frames, hold as f64).collect();
        if fade.is_empty() {
            return y;
        }
        let left = -channel_matmul(&c, &Tensor::cat(&[jump.re, jump.im], 0)); // (out, B, F)
        y + settle(&left, &fade, hold)
    }

    /// The jump of every state at every frame (P, B, F): a released key never excites, so
    /// each state keeps its deviation from equilibrium and moves from the equilibrium of the
    /// previous frame's keys at its previous resting pole to that of the keys still down at
    /// its new one (the engine's rule; zero where no key is released and no damper moves).
    /// `w_now` is the layer input per frame for `keys` (88, B, F), `phase` each state's
    /// schedule, `untagged` (P, 1, 1) marks the states no key damps. Each frame's predecessor
    /// is read with [`previous`]; the one before the first is silence.
    pub(super) fn release_jump(
        &self,
        schedules: &FallSchedules,
        w_now: &Cx,
        keys: &Tensor,
        phase: &Tensor,
        untagged: &Tensor,
    ) -> Cx {
        let bias = |part: i64| self.b_bias.select(1, part).view([-1, 1, 1]);
        let w_before = Cx::new(previous(&w_now.re, &bias(0)), previous(&w_now.im, &bias(1)));
        // the previous frame's keys that stay down
        let held_keys = previous(keys, &keys.zeros_like().narrow(2, 0, 1));
        let w_kept = self.key_input(&(held_keys * keys.gt(0.0).to_kind(keys.kind())));
        // −1/λ of the pole each state rests at: sounding in phase 0, damped otherwise; in
        // silence a tagged state is damped
        let (up, down) = (&schedules.sounding_inverse, &schedules.damped_inverse);
        let damped = phase.ne(0);
        let rest = |u: &Tensor, d: &Tensor, at: &Tensor| d.where_self(at, u);
        let rest_now = Cx::new(
            rest(&up.re, &down.re, &damped),
            rest(&up.im, &down.im, &damped),
        );
        let tagged = untagged.logical_not();
        let rest_before = Cx::new(
            previous(&rest_now.re, &rest(&up.re, &down.re, &tagged)),
            previous(&rest_now.im, &rest(&up.im, &down.im, &tagged)),
        );
        let after = rest_now.mul(&w_kept);
        let held = rest_before.mul(&w_before);
        Cx::new(after.re - held.re, after.im - held.im)
    }
}

/// The first layer's key damper as tensors (see `ssm_runtime::model::Damper`).
pub(super) struct KeyDamper {
    /// per state: the key whose silence damps it
    pub(super) key: Vec<Option<u8>>,
    /// (P) the damped poles, trainable like `norm` and `angle`
    pub(super) norm: Tensor,
    pub(super) angle: Tensor,
    /// frames the damper takes to fall (fixed)
    pub(super) fall_frames: u32,
    /// time constant of the held equilibrium's fade out of the output, frames (fixed)
    pub(super) settle_frames: u32,
}

impl KeyDamper {
    /// Each state's schedule per frame for `roll` (B, 88, F): (P, B, F) int64, untagged states
    /// always sounding (0); and which states are untagged, (P, 1, 1).
    pub(super) fn state_phases(&self, roll: &Tensor) -> (Tensor, Tensor) {
        let device = roll.device();
        let phase = fall_phases(roll, self.fall_frames).to_device(device); // (88, B, F)
        let tagged: Vec<i64> = self.key.iter().map(|k| k.map_or(0, i64::from)).collect();
        let untagged: Vec<bool> = self.key.iter().map(Option::is_none).collect();
        let untagged = Tensor::from_slice(&untagged)
            .to_device(device)
            .view([-1, 1, 1]);
        let phase = phase
            .index_select(0, &Tensor::from_slice(&tagged).to_device(device))
            .masked_fill(&untagged, 0);
        (phase, untagged)
    }
}

/// Each frame's predecessor along dimension 2 of `t`, `first` (broadcast to one frame)
/// before the first.
pub(super) fn previous(t: &Tensor, first: &Tensor) -> Tensor {
    let frames = t.size()[2];
    let first = first.expand_as(&t.narrow(2, 0, 1));
    Tensor::cat(&[&first, &t.narrow(2, 0, frames - 1)], 2)
}

/// `left` (out, B, F), each frame's value read from the frame's first sample on along the
/// settling `fade`, the frames' fades added: (out, B, F·hold). An FFT convolution of the
/// frames' impulses with the fade.
pub(super) fn settle(left: &Tensor, fade: &[f64], hold: i64) -> Tensor {
    let size = left.size();
    let (out, batch, frames) = (size[0], size[1], size[2]);
    let len = frames * hold;
    let opts = (left.kind(), left.device());
    let gaps = Tensor::zeros([out, batch, frames, hold - 1], opts);
    let impulses = Tensor::cat(&[&left.unsqueeze(3), &gaps], 3).reshape([out, batch, len]);
    let taps = fade.len().min(len as usize);
    let kernel = Tensor::from_slice(&fade[..taps])
        .to_kind(opts.0)
        .to_device(opts.1);
    let n_fft = fft_length(len + taps as i64 - 1);
    let spec = impulses.fft_rfft(n_fft, -1, "backward") * kernel.fft_rfft(n_fft, -1, "backward");
    spec.fft_irfft(n_fft, -1, "backward").narrow(2, 0, len)
}

/// Where each key's damper is, frame by frame, for `roll` (B, 88, F): 0 while the key sounds,
/// n = 1..=fall in the n-th frame of its fall, fall + 1 once down (also before the key was
/// ever struck: the rest). (88, B, F) int64.
pub(super) fn fall_phases(roll: &Tensor, fall: u32) -> Tensor {
    let size = roll.size();
    let (batch, frames) = (size[0] as usize, size[2] as usize);
    let values = Vec::<f32>::try_from(
        roll.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )
    .expect("a float roll");
    let down = fall as i64 + 1;
    let mut phase = vec![0i64; values.len()];
    for row in 0..batch * KEYS {
        let mut prev = down;
        for f in 0..frames {
            let at = row * frames + f;
            prev = if values[at] > 0.0 {
                0
            } else {
                (prev + 1).min(down)
            };
            phase[at] = prev;
        }
    }
    Tensor::from_slice(&phase)
        .view([batch as i64, KEYS as i64, frames as i64])
        .permute([1, 0, 2])
}

/// The first layer's per-frame tables `P[i]`, `G[i]` (i = 0..hold) for every schedule a
/// state's frame can follow: 0 sounding, 1..=fall the damper's frames of falling, fall + 1
/// damped. Built in float64 from the poles (so gradients reach both), returned as `kind`.
pub(super) struct FallSchedules {
    /// (P, fall + 2, hold) each
    pub(super) pow: Cx,
    pub(super) gain: Cx,
    /// −1/λ for the sounding and the damped pole, (P, 1, 1)
    pub(super) sounding_inverse: Cx,
    pub(super) damped_inverse: Cx,
    pub(super) schedules: i64,
    pub(super) hold: i64,
}

impl FallSchedules {
    pub(super) fn new(
        norm: &Tensor,
        angle: &Tensor,
        d: &KeyDamper,
        hold: i64,
        s: f64,
        kind: Kind,
    ) -> Self {
        let up = ContinuousPoles::new(norm, angle);
        let down = ContinuousPoles::new(&d.norm, &d.angle);
        let p = up.re.size()[0];
        let fall = d.fall_frames as i64;
        let device = norm.device();
        let opts = (Kind::Double, device);
        // per-sample fractions n/R of the fall, n = 1..=R, as (fall, hold)
        let r = (fall * hold).max(1) as f64;
        let n = Tensor::arange_start(1, fall * hold + 1, opts).view([fall, hold]) / r;
        // a schedule row per frame: (P, fall + 2, hold), fraction 0 = sounding, 1 = damped
        let frac = Tensor::cat(
            &[
                Tensor::zeros([1, hold], opts),
                n,
                Tensor::ones([1, hold], opts),
            ],
            0,
        )
        .unsqueeze(0);
        let lerp = |a: &Tensor, b: &Tensor| a.view([p, 1, 1]) + (b - a).view([p, 1, 1]) * &frac;
        let (re, im) = (lerp(&up.re, &down.re), lerp(&up.im, &down.im));
        // per sample: λ̄_n = e^{λ_n s} and the gain g_n, interpolated like the pole (the
        // engine's rule); outside the fall both are constant and give the ZOH tables
        let decay = (&re * s).exp();
        let a = Cx::new(&decay * (&im * s).cos(), decay * (&im * s).sin());
        let g_up = up.zoh_gain(s);
        let g_down = down.zoh_gain(s);
        let g = Cx::new(lerp(&g_up.re, &g_down.re), lerp(&g_up.im, &g_down.im));
        // P_i = a_i P_{i−1}, G_i = a_i G_{i−1} + g_i, from P_{−1} = 1, G_{−1} = 0
        let (mut pw, mut gn) = (Vec::new(), Vec::new());
        let mut prev: Option<(Cx, Cx)> = None;
        for i in 0..hold {
            let ai = Cx::new(a.re.select(2, i), a.im.select(2, i));
            let gi = Cx::new(g.re.select(2, i), g.im.select(2, i));
            let next = match &prev {
                None => (ai.clone_cx(), gi),
                Some((pp, gp)) => (ai.mul(pp), ai.mul(gp).add(&gi)),
            };
            pw.push(next.0.clone_cx());
            gn.push(next.1.clone_cx());
            prev = Some(next);
        }
        let stack = |v: &[Cx], re: bool| {
            let parts: Vec<&Tensor> = v.iter().map(|c| if re { &c.re } else { &c.im }).collect();
            Tensor::stack(&parts, 2).to_kind(kind)
        };
        FallSchedules {
            pow: Cx::new(stack(&pw, true), stack(&pw, false)),
            gain: Cx::new(stack(&gn, true), stack(&gn, false)),
            sounding_inverse: up.negative_inverse(kind),
            damped_inverse: down.negative_inverse(kind),
            schedules: fall + 2,
            hold,
        }
    }

    /// The tables for each state's schedule `phase` (P, B, F): (P, B, F, hold) each.
    pub(super) fn pick(&self, phase: &Tensor) -> (Cx, Cx) {
        let size = phase.size();
        let p = size[0];
        let rows =
            Tensor::arange(p, (Kind::Int64, phase.device())).view([-1, 1, 1]) * self.schedules;
        let index = (phase + rows).flatten(0, -1);
        let mut shape = size.clone();
        shape.push(self.hold);
        let take = |t: &Tensor| {
            t.reshape([p * self.schedules, self.hold])
                .index_select(0, &index)
                .view(shape.as_slice())
        };
        (
            Cx::new(take(&self.pow.re), take(&self.pow.im)),
            Cx::new(take(&self.gain.re), take(&self.gain.im)),
        )
    }
}
