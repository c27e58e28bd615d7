//! Import of the published Piano-SSM checkpoints (`torch.save(state_dict)` zip archives)
//! into the runtime's [`Model`], in pure Rust.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::ModelError;
use crate::model::{Activation, Model, ModelInfo, SsmLayer, KEYS};
use crate::pickle::{self, StorageKind, TensorRef};
use crate::size::Size;

/// The MAESTRO years of the published multi-head checkpoints, in head order.
pub const MAESTRO_YEARS: [&str; 10] = [
    "2004", "2006", "2008", "2009", "2011", "2013", "2014", "2015", "2017", "2018",
];
/// Audio normalisation the published checkpoints were trained with (MAESTRO statistics).
pub const MAESTRO_NORM_MEAN: f64 = -2.1367119188653305e-05;
pub const MAESTRO_NORM_STD: f64 = 0.060498714447021484;

/// MIDI rate of the published checkpoints for each training rate.
pub fn published_midi_rate(train_rate: u32) -> Option<u32> {
    match train_rate {
        16_000 => Some(1_000),
        24_000 => Some(1_200),
        44_100 => Some(1_764),
        _ => None,
    }
}

/// Reads the training rate from a published file name such as
/// `PianoSSM_XL_MH_maestro_all_44100_model.pth`: the last underscore-separated number
/// that is a plausible sample rate.
pub fn train_rate_from_name(path: &Path) -> Option<u32> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    stem.split(['_', '-', '.'])
        .filter_map(|t| t.parse::<u32>().ok())
        .rfind(|r| (8_000..=192_000).contains(r))
}

/// Options that cannot be read from the tensors themselves.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Training sample rate; taken from the file name when `None`.
    pub train_rate: Option<u32>,
    /// MIDI rate; the published value for the training rate when `None`.
    pub midi_rate: Option<u32>,
}

/// Loads a published `.pth` checkpoint as a runtime model.
pub fn import_pth(path: &Path, options: &ImportOptions) -> Result<Model, ModelError> {
    let bytes = crate::model::read_model_file(path)?;
    let train_rate = options
        .train_rate
        .or_else(|| train_rate_from_name(path))
        .ok_or_else(|| {
            ModelError::Checkpoint(format!(
                "cannot tell the training rate from the name {:?}: name the file with it, as \
                 the published ones are (…_24000_model.pth), or import it with \
                 `piano-ssm import --train-rate HZ`",
                path.file_name().unwrap_or_default()
            ))
        })?;
    let midi_rate = options
        .midi_rate
        .or_else(|| published_midi_rate(train_rate))
        .ok_or_else(|| {
            ModelError::Checkpoint(format!(
                "no published MIDI rate for {train_rate} Hz: import it with \
                 `piano-ssm import --midi-rate HZ`"
            ))
        })?;
    let mut model = import_pth_bytes(&bytes, train_rate, midi_rate)?;
    model.info.description = format!(
        "Published Piano-SSM checkpoint {} (Piano-SSM authors, CC BY-NC-SA 4.0), imported by piano-ssm",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    model.validate()?;
    Ok(model)
}

/// Loads a checkpoint from its bytes, with the rates given.
pub fn import_pth_bytes(
    bytes: &[u8],
    train_rate: u32,
    midi_rate: u32,
) -> Result<Model, ModelError> {
    let tensors = read_archive(bytes)?;
    let model = assemble(&tensors, train_rate, midi_rate)?;
    model.validate()?;
    Ok(model)
}

/// A tensor read out of the archive: its shape and f32 values (complex as pairs).
struct Loaded {
    shape: Vec<usize>,
    kind: StorageKind,
    values: Vec<f32>,
}

fn ck(msg: impl Into<String>) -> ModelError {
    ModelError::Checkpoint(msg.into())
}

fn read_archive(bytes: &[u8]) -> Result<HashMap<String, Loaded>, ModelError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ck(format!("not a PyTorch zip checkpoint: {e}")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .map(str::to_string)
        .ok_or_else(|| ck("archive has no data.pkl"))?;
    let prefix = pkl_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    // what the entries may inflate to, all together: what a model file may hold
    let mut budget = crate::fsutil::MAX_MODEL_BYTES;
    let order_name = format!("{prefix}byteorder");
    if zip.index_for_name(&order_name).is_some() {
        let order = read_entry(&mut zip, &order_name, &mut budget)?;
        if order.trim_ascii() != b"little" {
            let order = String::from_utf8_lossy(&order);
            return Err(ck(format!("byte order {order:?} is not supported")));
        }
    }
    let pkl = read_entry(&mut zip, &pkl_name, &mut budget)?;
    let refs = pickle::read_state_dict(&pkl).map_err(ck)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = HashMap::new();
    for (name, r) in refs {
        if !storages.contains_key(&r.storage) {
            let entry = format!("{prefix}data/{}", r.storage);
            let data = read_entry(&mut zip, &entry, &mut budget)?;
            storages.insert(r.storage.clone(), data);
        }
        let values = gather(&name, &r, &storages[&r.storage])?;
        // tensors may view one storage many times over: their copies share the budget
        budget = budget
            .checked_sub(4 * values.len() as u64)
            .ok_or_else(|| ck("the tensors hold more values than a model has"))?;
        out.insert(
            name,
            Loaded {
                shape: r.shape.clone(),
                kind: r.kind,
                values,
            },
        );
    }
    Ok(out)
}

/// Inflates one archive entry within what is left of `budget` (bytes), and takes it from
/// the budget: a small zip can declare, or hold, entries that inflate to gigabytes.
fn read_entry(
    zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    budget: &mut u64,
) -> Result<Vec<u8>, ModelError> {
    let cap = *budget;
    let f = zip
        .by_name(name)
        .map_err(|e| ck(format!("archive entry {name}: {e}")))?;
    let too_large = || {
        ck(format!(
            "archive entry {name} inflates past {} MB, more than a model holds",
            crate::fsutil::MAX_MODEL_BYTES >> 20
        ))
    };
    if f.size() > cap {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(f.size() as usize);
    f.take(cap + 1)
        .read_to_end(&mut data)
        .map_err(|e| ck(format!("archive entry {name}: {e}")))?;
    if data.len() as u64 > cap {
        return Err(too_large());
    }
    *budget -= data.len() as u64;
    Ok(data)
}

/// Copies a (contiguous, row-major) tensor out of its storage as f32 values. Every size
/// and offset is computed with checked arithmetic: the pickle may state any of them.
fn gather(name: &str, r: &TensorRef, storage: &[u8]) -> Result<Vec<f32>, ModelError> {
    let past_end = || ck(format!("tensor {name} reaches past the end of its storage"));
    if r.shape.len() != r.stride.len() {
        return Err(ck(format!(
            "tensor {name} has {} sizes but {} strides",
            r.shape.len(),
            r.stride.len()
        )));
    }
    let mut expected: usize = 1;
    for (dim, stride) in r.shape.iter().zip(&r.stride).rev() {
        if *dim > 1 && *stride != expected {
            return Err(ck(format!("tensor {name} is not contiguous")));
        }
        expected = expected.checked_mul(*dim).ok_or_else(past_end)?;
    }
    let elem = r.kind.element_bytes();
    let start = r.offset.checked_mul(elem).ok_or_else(past_end)?;
    let end = expected
        .checked_mul(elem)
        .and_then(|n| start.checked_add(n))
        .filter(|&e| e <= storage.len())
        .ok_or_else(past_end)?;
    Ok(storage[start..end]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Maps the published tensor names onto the runtime's layers and heads.
fn assemble(
    t: &HashMap<String, Loaded>,
    train_rate: u32,
    midi_rate: u32,
) -> Result<Model, ModelError> {
    let get = |name: &str, kind: StorageKind, rank: usize| -> Result<&Loaded, ModelError> {
        let l = t
            .get(name)
            .ok_or_else(|| ck(format!("missing tensor {name}")))?;
        if l.kind != kind || l.shape.len() != rank {
            return Err(ck(format!(
                "tensor {name} has shape {:?} / {:?}, not what Piano-SSM uses",
                l.shape, l.kind
            )));
        }
        Ok(l)
    };
    let prefixes = [
        "seq_midi.1.seq.0.seq",
        "seq_midi.2.s5.seq",
        "seq_midi.3.s5.seq",
        "seq_midi.4.s5.seq",
    ];
    let mut layers = Vec::new();
    let mut inputs = KEYS;
    for (i, prefix) in prefixes.iter().enumerate() {
        let norm = get(&format!("{prefix}.norm"), StorageKind::Float, 1)?;
        let p = norm.shape[0];
        let b = get(&format!("{prefix}.B2"), StorageKind::ComplexFloat, 2)?;
        let c = get(&format!("{prefix}.C"), StorageKind::Float, 3)?;
        let outputs = c.shape[0];
        if b.shape != [p, inputs] || c.shape != [outputs, p, 2] {
            return Err(ck(format!(
                "layer {i}: B2 {:?} / C {:?} do not chain from {inputs} inputs",
                b.shape, c.shape
            )));
        }
        let skip = if i == 0 {
            None
        } else {
            let name = format!("seq_midi.{}.skipLayer.weight", i + 1);
            let s = get(&name, StorageKind::Float, 2)?;
            if s.shape != [outputs, inputs] {
                return Err(ck(format!("{name} has shape {:?}", s.shape)));
            }
            Some(s.values.clone())
        };
        layers.push(SsmLayer {
            inputs,
            outputs,
            state: p,
            norm: norm.values.clone(),
            angle: get(&format!("{prefix}.angle"), StorageKind::Float, 1)?
                .values
                .clone(),
            b: b.values.clone(),
            b_bias: get(&format!("{prefix}.B2_bias"), StorageKind::ComplexFloat, 1)?
                .values
                .clone(),
            c: c.values.clone(),
            c_bias: get(&format!("{prefix}.C_bias"), StorageKind::Float, 2)?
                .values
                .clone(),
            skip,
            damper: None,
            velocity_exponent: None,
            b_square: None,
        });
        inputs = outputs;
    }
    let heads = (0..)
        .take_while(|h| t.contains_key(&format!("year_linear.{h}.weight")))
        .count();
    if heads == 0 {
        return Err(ck("no output heads (year_linear.N) found"));
    }
    let mut head_weight = Vec::new();
    let mut head_bias = Vec::new();
    for h in 0..heads {
        head_weight.extend_from_slice(
            &get(&format!("year_linear.{h}.weight"), StorageKind::Float, 2)?.values,
        );
        head_bias.extend_from_slice(
            &get(&format!("year_linear.{h}.bias"), StorageKind::Float, 1)?.values,
        );
    }
    if head_weight.len() != heads * inputs || head_bias.len() != heads {
        return Err(ck("output heads do not match the last layer's width"));
    }
    let labels: Vec<String> = if heads == MAESTRO_YEARS.len() {
        MAESTRO_YEARS.iter().map(|y| y.to_string()).collect()
    } else {
        (0..heads).map(|h| format!("head {h}")).collect()
    };
    let size = Size::of_state(layers[0].state).map_or("custom", Size::label);
    Ok(Model {
        info: ModelInfo {
            family: "Piano-SSM MAESTRO".into(),
            size: size.into(),
            activation: Activation::Tanh,
            train_rate,
            midi_rate,
            norm_mean: MAESTRO_NORM_MEAN,
            norm_std: MAESTRO_NORM_STD,
            head_kind: (heads == MAESTRO_YEARS.len()).then(|| "year".to_string()),
            heads: labels,
            description: String::new(),
        },
        layers,
        channels: 1,
        head_weight,
        head_bias,
        head_state_weight: None,
    })
}
