//! Every public reference case, rendered from its MIDI file through the public API, against
//! the float64 reference (the command's renders: `cli/tests/conformance.rs`).

use ssm_runtime::render::render_roll;
use ssm_runtime::{Engine, MidiFile};
use test_support::{
    cases, checkpoint, reference_dir, relative_l2, tolerance, within_both_limits, REGRESSION_LIMIT,
};

#[test]
fn encoder_reproduces_every_reference_roll() {
    for case in cases() {
        let midi = MidiFile::load(&reference_dir().join("midi").join(&case.midi)).unwrap();
        let roll = midi.roll(case.midi_rate, 1.5);
        assert_eq!(
            roll.frames.len(),
            case.velocity.len(),
            "{}: frame count",
            case.name
        );
        for (f, (ours, theirs)) in roll.frames.iter().zip(&case.velocity).enumerate() {
            assert_eq!(ours, theirs, "{}: frame {f} differs", case.name);
        }
    }
}

#[test]
fn api_render_matches_every_reference_case() {
    for case in cases() {
        let model = checkpoint(&case.checkpoint);
        assert_eq!(model.info.heads[case.year_index], case.year);
        let mut engine = Engine::new(&model, case.sample_rate).unwrap();
        engine.set_head(case.year_index).unwrap();
        let midi = MidiFile::load(&reference_dir().join("midi").join(&case.midi)).unwrap();
        let audio = render_roll(
            &mut engine,
            &midi.roll(model.info.midi_rate, 1.5),
            |_, _| {},
        );
        let err = relative_l2(&audio, &case.audio);
        println!("{:40} relative L2 {err:.2e}", case.name);
        within_both_limits(&case, err);
    }
}

/// The regression limit's negative controls: a model whose output offset is dropped, or
/// whose gain is off by 0.05 %, passes the specification's limit and fails the regression
/// limit.
#[test]
fn the_regression_limit_catches_normalisation_and_gain_slips() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "S_16000_at_16000_pedal_y2009")
        .expect("the pedal case");
    let midi = MidiFile::load(&reference_dir().join("midi").join(&case.midi)).unwrap();
    let model = checkpoint(&case.checkpoint);
    let render = |m: &ssm_runtime::Model| {
        let mut engine = Engine::new(m, case.sample_rate).unwrap();
        engine.set_head(case.year_index).unwrap();
        let audio = render_roll(&mut engine, &midi.roll(m.info.midi_rate, 1.5), |_, _| {});
        relative_l2(&audio, &case.audio)
    };
    let mut no_offset = model.clone();
    no_offset.info.norm_mean = 0.0;
    let mut gain = model.clone();
    gain.info.norm_std *= 1.0005;
    gain.info.norm_mean *= 1.0005;
    for (slip, m) in [("no offset", no_offset), ("gain +0.05 %", gain)] {
        let err = render(&m);
        println!("{slip}: relative L2 {err:.2e}");
        assert!(
            err <= tolerance(case.sample_rate, case.train_rate),
            "{slip}: {err:.2e}"
        );
        assert!(
            err > REGRESSION_LIMIT,
            "{slip}: {err:.2e} passes the regression limit"
        );
    }
}
