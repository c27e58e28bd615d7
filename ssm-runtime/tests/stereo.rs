//! Stereo heads (format version 4): the file keeps them, lying files are refused, a mono
//! model plays the same on both channels, a stereo head whose channels are the mono head
//! plays it bit for bit, and the live player plays a stereo model as the file renderer does.
//! (Each channel against the float64 reference: `format_reference.rs`.)

use std::collections::HashMap;

use safetensors::SafeTensors;
use ssm_runtime::render::{render_channels, render_roll, render_roll_stereo};
use ssm_runtime::{Engine, KeyEvent, MidiFile, Model, Player};
use test_support::{checkpoint, reference_dir};

/// The published S, head 2009 alone, made stereo: left louder than the mono head in the
/// first half of its weights, right in the second (an image that moves with the network's
/// outputs, not a fixed pan).
fn stereo() -> Model {
    let mut m = checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth");
    let head = m.head_index("2009").unwrap();
    let width = *m.widths().last().unwrap();
    let (w, b) = m.head_channel(head, 0);
    let (w, b) = (w.to_vec(), b);
    let tilt = |sign: f32| -> Vec<f32> {
        w.iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + sign * if i < width / 2 { 0.4 } else { -0.4 }))
            .collect()
    };
    m.info.heads = vec!["2009".into()];
    m.channels = 2;
    m.head_weight = [tilt(1.0), tilt(-1.0)].concat();
    m.head_bias = vec![b, b];
    m.validate().unwrap();
    m
}

/// `m`'s bytes with metadata `fields` set to their values (tensors unchanged).
fn with_metadata(m: &Model, fields: &[(&str, &str)]) -> Vec<u8> {
    let bytes = m.to_bytes().unwrap();
    let mut meta = metadata(&bytes);
    for (field, value) in fields {
        meta.insert(field.to_string(), value.to_string());
    }
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    safetensors::serialize(tensors.tensors(), Some(meta)).unwrap()
}

fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().clone().unwrap()
}

#[test]
fn a_stereo_model_round_trips_as_format_version_4() {
    let m = stereo();
    let bytes = m.to_bytes().unwrap();
    let meta = metadata(&bytes);
    assert_eq!(meta["format_version"], "4");
    assert_eq!(meta["channels"], "2");
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.tensor("heads.weight").unwrap().shape(), &[1, 2, 20]);
    assert_eq!(tensors.tensor("heads.bias").unwrap().shape(), &[1, 2]);
    assert_eq!(Model::from_bytes(&bytes).unwrap(), m);
    // with weights on the first layer's states
    let mut read = m.clone();
    let p = read.layers[0].state;
    read.head_state_weight = Some((0..2 * 2 * p).map(|i| (i % 7) as f32 * 1e-3).collect());
    let bytes = read.to_bytes().unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let shape = tensors
        .tensor("heads.state_weight")
        .unwrap()
        .shape()
        .to_vec();
    assert_eq!(shape, [1, 2, p, 2]);
    assert_eq!(Model::from_bytes(&bytes).unwrap(), read);
    // a mono head may read them too (version 4); an older version may not
    let mut mono = m.folded_to_mono();
    mono.head_state_weight = Some(vec![1e-3; 2 * p]);
    assert_eq!(metadata(&mono.to_bytes().unwrap())["format_version"], "4");
    let older = with_metadata(&mono, &[("format_version", "3")]);
    let err = Model::from_bytes(&older).unwrap_err().to_string();
    assert!(err.contains("state_weight"), "{err}");
    // mono models stay in the versions every earlier build reads
    let mono = m.folded_to_mono();
    let meta = metadata(&mono.to_bytes().unwrap());
    assert_eq!(meta["format_version"], "1");
    assert!(!meta.contains_key("channels"));
}

#[test]
fn stereo_files_that_lie_are_refused() {
    let m = stereo();
    let mono = m.folded_to_mono();
    let cases = [
        (
            with_metadata(&m, &[("format_version", "3")]),
            "format version 4",
        ),
        (with_metadata(&m, &[("channels", "3")]), "3 output channels"),
        (with_metadata(&m, &[("channels", "two")]), "channels"),
        // mono heads' tensors in a file that says it is stereo
        (
            with_metadata(&mono, &[("format_version", "4"), ("channels", "2")]),
            "heads.weight",
        ),
    ];
    for (bytes, needle) in &cases {
        let err = Model::from_bytes(bytes).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

#[test]
fn a_mono_model_plays_the_same_on_both_channels_and_a_split_head_plays_it_exactly() {
    let mono = stereo().folded_to_mono();
    let mut split = mono.clone();
    split.channels = 2;
    split.head_weight = [mono.head_weight.clone(), mono.head_weight.clone()].concat();
    split.head_bias = vec![mono.head_bias[0]; 2];
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    let roll = midi.roll(mono.info.midi_rate, 0.5);
    let expected = render_roll(&mut Engine::new(&mono, 44_100).unwrap(), &roll, |_, _| {});
    for model in [&mono, &split] {
        let mut engine = Engine::new(model, 44_100).unwrap();
        let mut both = Vec::new();
        let frames = roll.frames.iter().copied();
        let _ = render_channels(&mut engine, frames, roll.midi_rate, None, 2, |c| {
            both.extend_from_slice(c);
            Ok::<(), ()>(())
        });
        assert_eq!(both.len(), 2 * expected.len());
        for (pair, e) in both.chunks_exact(2).zip(&expected) {
            assert_eq!((pair[0], pair[1]), (*e, *e), "{} channels", model.channels);
        }
    }
}

#[test]
fn the_player_plays_a_stereo_model_as_the_file_renderer_does() {
    let model = stereo();
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    let rate = 48_000;
    let roll = midi.roll(model.info.midi_rate, 1.0);
    let [l, r] = render_roll_stereo(&mut Engine::new(&model, rate).unwrap(), &roll);
    let total = l.len();
    assert!(
        test_support::relative_l2(&l, &r) > 0.05,
        "the two channels differ"
    );
    let events: Vec<(u64, KeyEvent)> = midi
        .events_at_frame_starts(rate, model.info.midi_rate)
        .collect();
    for block in [1, 333, 4096] {
        let mut player = Player::new(Engine::new(&model, rate).unwrap());
        let (mut left, mut right) = (vec![0f32; total], vec![0f32; total]);
        let mut next = 0;
        for start in (0..total).step_by(block) {
            let end = (start + block).min(total);
            let first = next;
            while next < events.len() && events[next].0 < end as u64 {
                next += 1;
            }
            let these = events[first..next]
                .iter()
                .map(|&(at, e)| ((at - start as u64) as u32, e));
            player.process_stereo(these, &mut left[start..end], &mut right[start..end]);
        }
        let worst = left
            .iter()
            .zip(&l)
            .chain(right.iter().zip(&r))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "block {block}: max difference {worst}");
    }
}

#[test]
fn the_hidden_outputs_are_what_the_heads_read() {
    let model = stereo();
    let midi = MidiFile::load(&reference_dir().join("midi/pedal.mid")).unwrap();
    let roll = midi.roll(model.info.midi_rate, 0.3);
    let rate = 32_000;
    let (mut a, mut b) = (
        Engine::new(&model, rate).unwrap(),
        Engine::new(&model, rate).unwrap(),
    );
    let width = a.hidden_width();
    assert_eq!(width, 20);
    let mut worst = 0f32;
    for (k, keys) in roll.frames.iter().enumerate() {
        let n = (roll.frame_start(k as u64 + 1, rate) - roll.frame_start(k as u64, rate)) as usize;
        a.set_keys(keys);
        b.set_keys(keys);
        let (mut left, mut right) = (vec![0f32; n], vec![0f32; n]);
        a.process_stereo(&mut left, &mut right);
        let mut h = vec![0f32; n * width];
        b.process_hidden(&mut h, None);
        for (i, h) in h.chunks_exact(width).enumerate() {
            for (channel, out) in [(0, left[i]), (1, right[i])] {
                let (w, bias) = model.head_channel(0, channel);
                let y = h.iter().zip(w).fold(bias, |acc, (h, w)| h.mul_add(*w, acc));
                let y = (y as f64 * model.info.norm_std + model.info.norm_mean) as f32;
                worst = worst.max((y - out).abs());
            }
        }
    }
    assert!(
        worst <= 1e-6,
        "head over the hidden outputs differs by {worst}"
    );
}
