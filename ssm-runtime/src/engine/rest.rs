//! Sleeping in silence. With every key up, the network's input is constant, so every state
//! falls towards one fixed point (per layer `x* = u/(1 − λ̄)` of its rest input) and the output
//! towards one value. Once every state is within [`SLEEP_TOLERANCE`] of that point (weighted
//! by how much it moves its layer's outputs), the engine puts the states there, stops
//! computing and writes the rest output until a key change or a reset wakes it. An instrument
//! idling in a DAW project then costs next to nothing.

/// How far from rest the states may be when the engine falls asleep: the weighted distance
/// (see [`Rest::weight`]) times the head's and the output scale's gain, in full-scale units.
/// The jump to rest changes the output by about this much (measured: below 1e-7 of full scale
/// after a chord with the shipped models), far under what a 24-bit file resolves.
pub const SLEEP_TOLERANCE: f64 = 1e-8;

/// The network at rest and whether the engine sleeps there.
pub(super) struct Rest {
    /// per layer, the states at rest as `[re; im]`
    pub(super) x: Vec<Vec<f64>>,
    /// per layer and state: `Σ_o |C_oq|`, what a unit of the state moves the layer's outputs
    pub(super) weight: Vec<Vec<f64>>,
    /// the last layer's output at rest, before the head
    pub(super) h: Vec<f32>,
    /// the head channels' reads of the first layer's states at rest
    pub(super) reads: Vec<f32>,
    /// the weighted distance under which the engine may sleep
    pub(super) limit: f64,
    pub(super) asleep: bool,
    /// whether the engine may sleep at all (tests and benchmarks compare both)
    pub(super) enabled: bool,
}

impl Rest {
    /// Room for a network of `states` per layer and `width` last outputs; the point itself is
    /// found by the engine's rest pass.
    pub(super) fn new(
        states: &[usize],
        weight: Vec<Vec<f64>>,
        width: usize,
        limit: f64,
        reads: usize,
    ) -> Rest {
        Rest {
            x: states.iter().map(|&p| vec![0.0; 2 * p]).collect(),
            weight,
            h: vec![0.0; width],
            reads: vec![0.0; reads],
            limit,
            asleep: false,
            enabled: true,
        }
    }
}
