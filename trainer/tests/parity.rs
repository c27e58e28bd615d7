//! The trainer's network against the float64 reference renders and against the runtime.

#[path = "../../ssm-runtime/tests/common/mod.rs"]
mod common;

use tch::{Device, Kind, Tensor};
use trainer::model::PianoSsm;

fn render(
    model: &PianoSsm,
    frames: &[ssm_runtime::KeyFrame],
    head: i64,
    hold: i64,
    step: f64,
) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let roll = trainer::roll_tensor(frames, Device::Cpu);
    let heads = Tensor::from_slice(&[head]);
    let out = model
        .forward(&roll, &heads, hold, step)
        .squeeze_dim(0)
        .to_kind(Kind::Float);
    Vec::<f32>::try_from(out).unwrap()
}

/// Every published checkpoint loaded into the trainer renders its reference cases within 1e-3.
#[test]
fn published_checkpoints_match_reference_renders() {
    for case in common::cases() {
        let model = common::checkpoint(&case.checkpoint);
        let net = PianoSsm::from_runtime(Device::Cpu, &model).unwrap();
        let hold = (case.sample_rate / case.midi_rate) as i64;
        let step = case.train_rate as f64 / case.sample_rate as f64;
        let out: Vec<f32> = render(&net, &case.velocity, case.year_index as i64, hold, step)
            .iter()
            .map(|&y| (y as f64 * model.info.norm_std + model.info.norm_mean) as f32)
            .collect();
        let err = common::relative_l2(&out, &case.audio);
        eprintln!("{}: relative L2 {err:.2e}", case.name);
        assert!(err <= 1e-3, "{}: relative L2 {err:.3e} > 1e-3", case.name);
    }
}
