//! Shared helpers for the workspace's integration tests: the reference data beside the
//! repository and the limits the conformance tests hold renders to.

use std::path::PathBuf;

use safetensors::SafeTensors;
use ssm_runtime::checkpoint::{import_pth, ImportOptions};
use ssm_runtime::model::Damper;
use ssm_runtime::{KeyFrame, Model, KEYS};

/// `../shared/reference`, which CI places beside the clone. Its absence is a failure, not a
/// skip: the conformance tests are the point of this crate.
pub fn reference_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference");
    assert!(
        dir.join("README.md").is_file(),
        "reference data not found at {}",
        dir.display()
    );
    dir
}

pub fn checkpoint(name: &str) -> Model {
    import_pth(
        &reference_dir().join("weights").join(name),
        &ImportOptions::default(),
    )
    .expect("published checkpoint imports")
}

/// One float64 reference render.
pub struct Case {
    pub name: String,
    pub checkpoint: String,
    pub midi: String,
    pub sample_rate: u32,
    pub train_rate: u32,
    pub midi_rate: u32,
    pub year: String,
    pub year_index: usize,
    pub velocity: Vec<KeyFrame>,
    pub audio: Vec<f32>,
}

pub fn cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(reference_dir().join("cases"))
        .expect("cases folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no reference cases");
    paths.iter().map(|p| load_case(p)).collect()
}

fn load_case(path: &std::path::Path) -> Case {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let vel = st.tensor("velocity").unwrap();
    assert_eq!(vel.shape()[1], KEYS);
    let velocity = vel
        .data()
        .chunks_exact(KEYS)
        .map(|c| c.try_into().unwrap())
        .collect();
    let audio = st
        .tensor("audio")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let get = |k: &str| {
        meta.get(k)
            .unwrap_or_else(|| panic!("case metadata {k}"))
            .clone()
    };
    Case {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        checkpoint: get("checkpoint"),
        midi: get("midi"),
        sample_rate: get("sample_rate").parse().unwrap(),
        train_rate: get("train_rate").parse().unwrap(),
        midi_rate: get("midi_rate").parse().unwrap(),
        year: get("year"),
        year_index: get("year_index").parse().unwrap(),
        velocity,
        audio,
    }
}

/// ‖out − ref‖ / ‖ref‖ over the reference's length; a length mismatch is a failure.
pub fn relative_l2(out: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(
        out.len(),
        reference.len(),
        "output length differs from the reference"
    );
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&o, &r) in out.iter().zip(reference) {
        num += (o as f64 - r as f64).powi(2);
        den += (r as f64).powi(2);
    }
    (num / den).sqrt()
}

/// The regression limit beside [`tolerance`]: the engine measures 1.4–4.1e-6 on the
/// reference cases (2026-12-07), and a slip the specification's limit lets through — the
/// output offset `norm_mean` dropped (5.7–8.3e-4), a 0.05 % gain error (5e-4) — fails this.
pub const REGRESSION_LIMIT: f64 = 2e-5;

/// Tolerance the issue sets: 1e-3 at the training rate, 2e-3 at another rate.
pub fn tolerance(sample_rate: u32, train_rate: u32) -> f64 {
    if sample_rate == train_rate {
        1e-3
    } else {
        2e-3
    }
}

/// `m` with a key damper for the format tests: its first 88 states tagged with key k, each
/// damped pole 10× as fast as its sounding one, a 5-frame fall and a 4-frame settling fade.
pub fn with_test_damper(mut m: Model) -> Model {
    let first = &mut m.layers[0];
    let mut d = Damper::none(&first.norm, &first.angle);
    for (p, k) in d.key.iter_mut().enumerate().take(KEYS.min(first.state)) {
        *k = Some(p as u8);
    }
    for v in &mut d.norm {
        *v += 10f32.ln();
    }
    d.fall_frames = 5;
    d.settle_frames = 4;
    first.damper = Some(d);
    m
}

/// The `format_version` a model file's metadata states.
pub fn format_version(bytes: &[u8]) -> String {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().as_ref().unwrap()["format_version"].clone()
}

/// The specification's limit and the regression limit.
pub fn within_both_limits(case: &Case, err: f64) {
    assert!(
        err <= tolerance(case.sample_rate, case.train_rate),
        "{}: relative L2 {err:.3e}",
        case.name
    );
    assert!(
        err <= REGRESSION_LIMIT,
        "{}: relative L2 {err:.3e}, within the specification's limit but above today's \
         {REGRESSION_LIMIT:.0e}",
        case.name
    );
}
