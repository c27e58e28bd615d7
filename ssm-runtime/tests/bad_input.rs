//! Broken model files and bad engine settings give clear errors that name the problem, never
//! a panic (the command's own: `cli/tests/bad_input.rs`).

use ssm_runtime::{Engine, EngineError, Model, ModelError};
use test_support::checkpoint;

fn small() -> Model {
    checkpoint("PianoSSM_S_MH_maestro_all_16000_model.pth")
}

#[test]
fn model_round_trips_through_safetensors() {
    let model = small();
    let back = Model::from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(back, model);
    assert_eq!(back.parameter_count(), 72_082);
    assert_eq!(back.widths(), vec![88, 88, 60, 40, 20]);
    assert_eq!(back.state_sizes(), vec![64; 4]);
}

#[test]
fn truncated_and_foreign_files_are_rejected() {
    let bytes = small().to_bytes().unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = Model::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, ModelError::NotSafetensors(_)),
            "cut at {cut}: {err}"
        );
    }
    let err = Model::from_bytes(b"MThd\0\0\0\x06\0\x01\0\x02\0\xdc").unwrap_err();
    assert!(matches!(err, ModelError::NotSafetensors(_)));
}

#[test]
fn non_finite_weights_name_the_tensor() {
    let mut model = small();
    model.layers[2].c[17] = f32::NAN;
    let err = model.to_bytes().unwrap_err();
    assert!(
        matches!(&err, ModelError::NonFinite { name, index: 17 } if name == "layers.2.C"),
        "{err}"
    );
    // and a file written by someone else with a NaN inside is caught on load
    let mut good = small();
    good.head_bias[3] = 1234.5;
    let mut bytes = good.to_bytes().unwrap();
    let pattern = 1234.5f32.to_le_bytes();
    let at = bytes.windows(4).position(|w| w == pattern).unwrap();
    bytes[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let err = Model::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(&err, ModelError::NonFinite { name, index: 3 } if name == "heads.bias"),
        "{err}"
    );
}

#[test]
fn wrong_shapes_and_missing_tensors_are_named() {
    let mut model = small();
    model.layers[1].skip = None;
    assert!(
        matches!(model.to_bytes().unwrap_err(), ModelError::MissingTensor(n) if n == "layers.1.skip")
    );
    let mut model = small();
    model.layers[0].norm.pop();
    let err = model.to_bytes().unwrap_err();
    assert!(err.to_string().contains("layers.0.norm"), "{err}");
}

#[test]
fn bad_metadata_is_named() {
    let mut model = small();
    model.info.midi_rate = 7;
    let err = model.validate().unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::BadField {
                field: "midi_rate",
                ..
            }
        ),
        "{err}"
    );
    let mut model = small();
    model.info.train_rate = 1_000_000;
    assert!(matches!(
        model.validate().unwrap_err(),
        ModelError::BadField {
            field: "train_rate",
            ..
        }
    ));
    let mut model = small();
    model.info.heads.pop();
    assert!(model.validate().is_err(), "10 head weights but 9 labels");
}

#[test]
fn unsupported_rates_and_heads_are_errors() {
    let model = small();
    assert_eq!(
        Engine::new(&model, 7_999).err(),
        Some(EngineError::UnsupportedRate(7_999))
    );
    assert_eq!(
        Engine::new(&model, 192_001).err(),
        Some(EngineError::UnsupportedRate(192_001))
    );
    let mut engine = Engine::new(&model, 192_000).unwrap();
    assert_eq!(
        engine.set_head(10),
        Err(EngineError::NoSuchHead {
            index: 10,
            count: 10
        })
    );
    assert_eq!(engine.head(), 0);
}

/// A `torch.save` archive holding `pkl` as `archive/data.pkl` and `storage` (deflated) as
/// the storage `archive/data/0`.
fn archive(pkl: &[u8], storage: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pkl).unwrap();
    let deflated = stored.compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("archive/data/0", deflated).unwrap();
    zip.write_all(storage).unwrap();
    zip.finish().unwrap().into_inner()
}

/// The pickle of `{"w": tensor}`: a float tensor of `numel` values at `offset` (elements)
/// into storage `0`, as `torch.save` writes it.
fn one_tensor_pickle(offset: u64, numel: u8) -> Vec<u8> {
    let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
    p.extend_from_slice(
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK",
    );
    p.extend_from_slice(&[numel, b't', b'Q', 0x8a, 8]);
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&[b'K', numel, 0x85, b'K', 1, 0x85, b't', b'R', b's', b'.']);
    p
}

#[test]
fn crafted_checkpoints_fail_cleanly() {
    use ssm_runtime::checkpoint::import_pth_bytes;
    let message = |bytes: &[u8]| {
        import_pth_bytes(bytes, 16_000, 1_000)
            .unwrap_err()
            .to_string()
    };
    // the archive is read: a well-formed tensor is found, and the model then lacks the rest
    let fine = message(&archive(&one_tensor_pickle(0, 4), &[0; 16]));
    assert!(fine.contains("missing tensor"), "{fine}");
    // an offset near 2^62 once panicked on an unchecked addition
    let far = message(&archive(&one_tensor_pickle(1 << 62, 4), &[0; 16]));
    assert!(far.contains("reaches past the end of its storage"), "{far}");
    let beyond = message(&archive(&one_tensor_pickle(3, 4), &[0; 16]));
    assert!(
        beyond.contains("reaches past the end of its storage"),
        "{beyond}"
    );
    // 80 MB of zeros deflate to 80 kB: refused at the cap, not inflated into memory
    let bomb = archive(&one_tensor_pickle(0, 4), &vec![0; 80 << 20]);
    assert!(bomb.len() < 1 << 20);
    let inflated = message(&bomb);
    assert!(inflated.contains("inflates past 64 MB"), "{inflated}");
}

/// Finite but absurd values (a pole norm of −1e30, a weight of 3e38, an output scale of
/// 1e308) once rendered all-NaN or all-infinite audio; validation now names them.
#[test]
fn extreme_values_are_refused_by_name() {
    let mut m = small();
    m.layers[2].norm[5] = -1e30;
    let err = m.validate().unwrap_err().to_string();
    assert!(
        err.contains("layers.2.norm") && err.contains("outside"),
        "{err}"
    );
    let mut m = small();
    m.layers[1].c[7] = 3e38;
    let err = m.validate().unwrap_err().to_string();
    assert!(
        err.contains("layers.1.C") && err.contains("beyond"),
        "{err}"
    );
    let mut m = small();
    m.head_weight[0] = -2e4;
    assert!(m
        .validate()
        .unwrap_err()
        .to_string()
        .contains("heads.weight"));
    let mut m = small();
    m.info.norm_std = 1e308;
    assert!(m.validate().unwrap_err().to_string().contains("norm_std"));
}

/// The bounds are enough: a model with every weight at ±[`MAX_WEIGHT`] and poles at both
/// ends of [`NORMS`], half of them on the edge of stability, plays finite audio.
#[test]
fn a_model_at_every_bound_plays_finite_audio() {
    use ssm_runtime::model::{MAX_WEIGHT, NORMS};
    use ssm_runtime::render::render_roll;
    let mut m = small();
    let extreme = |v: &mut Vec<f32>| {
        for (i, x) in v.iter_mut().enumerate() {
            *x = if i % 3 == 0 { -MAX_WEIGHT } else { MAX_WEIGHT };
        }
    };
    for l in &mut m.layers {
        for (i, (n, a)) in l.norm.iter_mut().zip(&mut l.angle).enumerate() {
            *n = if i % 2 == 0 {
                *NORMS.start()
            } else {
                *NORMS.end()
            };
            *a = if i % 4 < 2 {
                std::f32::consts::FRAC_PI_2
            } else {
                3.0
            };
        }
        for v in [&mut l.b, &mut l.b_bias, &mut l.c, &mut l.c_bias] {
            extreme(v);
        }
        if let Some(skip) = &mut l.skip {
            extreme(skip);
        }
    }
    extreme(&mut m.head_weight);
    extreme(&mut m.head_bias);
    m.info.norm_std = MAX_WEIGHT as f64;
    m.info.norm_mean = -MAX_WEIGHT as f64;
    m.validate().expect("every value on its bound is valid");
    let midi =
        ssm_runtime::MidiFile::load(&test_support::reference_dir().join("midi/extremes.mid"))
            .unwrap();
    for rate in [8_000, 192_000] {
        let mut engine = Engine::new(&m, rate).unwrap();
        let audio = render_roll(&mut engine, &midi.roll(m.info.midi_rate, 0.5), |_, _| {});
        let bad = audio.iter().position(|v| !v.is_finite());
        assert_eq!(
            bad,
            None,
            "at {rate} Hz, layer {:?}",
            engine.first_non_finite_layer()
        );
    }
}

/// The engine says where a NaN or an infinity began, for a render that meets one (a model
/// built in code can skip validation): here layer 2's input weights overflow its state.
#[test]
fn the_engine_names_the_layer_a_non_finite_value_began_in() {
    use ssm_runtime::render::render_roll;
    let mut m = small();
    m.layers[1].b.fill(3e38);
    let midi =
        ssm_runtime::MidiFile::load(&test_support::reference_dir().join("midi/scale.mid")).unwrap();
    let mut engine = Engine::new(&m, 16_000).unwrap();
    assert_eq!(engine.first_non_finite_layer(), None);
    let audio = render_roll(&mut engine, &midi.roll(m.info.midi_rate, 0.1), |_, _| {});
    assert!(audio.iter().any(|v| !v.is_finite()));
    assert_eq!(engine.first_non_finite_layer(), Some(1));
}
