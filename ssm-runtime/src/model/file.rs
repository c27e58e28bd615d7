//! Reading and writing model files: safetensors with the metadata map, in the lowest format
//! version that holds the model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::validate::{check_architecture, check_info};
use super::*;
use crate::error::ModelError;

/// The bytes of a model file (`.safetensors` or `.pth`): a regular file of at most
/// [`crate::fsutil::MAX_MODEL_BYTES`].
pub(crate) fn read_model_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    crate::fsutil::read_capped(path, crate::fsutil::MAX_MODEL_BYTES).map_err(|source| {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

impl Model {
    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        Model::from_bytes(&read_model_file(path)?)
    }

    /// Parses and validates a model from the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| ModelError::NotSafetensors(e.to_string()))?;
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| ModelError::NotSafetensors(e.to_string()))?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or(ModelError::MissingField("__metadata__"))?;
        let fields = MetaFields(meta);
        let info = fields.info()?;
        let widths: Vec<usize> = fields.json("widths")?;
        let states: Vec<usize> = fields.json("state_sizes")?;
        check_architecture(&widths, &states)?;

        let reader = TensorReader(&tensors);
        let layers = (0..states.len())
            .map(|i| reader.layer(i, widths[i], widths[i + 1], states[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let last = *widths.last().expect("checked non-empty");
        let heads = info.heads.len();
        let channels = fields.channels()?;
        let (head_weight, head_bias) = if channels == 1 {
            (
                reader.f32("heads.weight", &[heads, last])?,
                reader.f32("heads.bias", &[heads])?,
            )
        } else {
            (
                reader.f32("heads.weight", &[heads, channels, last])?,
                reader.f32("heads.bias", &[heads, channels])?,
            )
        };
        let head_state_weight = match tensors.tensor("heads.state_weight") {
            Err(_) => None,
            Ok(_) if fields.parse::<u32>("format_version")? < STEREO_FORMAT_VERSION => {
                return Err(ModelError::UnexpectedTensor(
                    "heads.state_weight (format version 4)".into(),
                ))
            }
            Ok(_) => Some(reader.f32("heads.state_weight", &[heads, channels, states[0], 2])?),
        };
        reader.reject_unknown(states.len())?;

        let model = Model {
            info,
            layers,
            channels,
            head_weight,
            head_bias,
            head_state_weight,
        };
        model.validate()?;
        Ok(model)
    }

    /// Serialises the model to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.validate()?;
        let mut tensors: BTreeMap<String, (Vec<usize>, &[f32])> = BTreeMap::new();
        // the damper's values stored as f32 tensors, kept alive for the borrow below
        let stored: Vec<Option<StoredDamper>> = self
            .layers
            .iter()
            .map(|l| l.damper.as_ref().map(StoredDamper::new))
            .collect();
        for (i, l) in self.layers.iter().enumerate() {
            let (p, n_in, n_out) = (l.state, l.inputs, l.outputs);
            let mut entries: Vec<(&str, Vec<usize>, &[f32])> = vec![
                ("norm", vec![p], &l.norm),
                ("angle", vec![p], &l.angle),
                ("B", vec![p, n_in, 2], &l.b),
                ("B_bias", vec![p, 2], &l.b_bias),
                ("C", vec![n_out, p, 2], &l.c),
                ("C_bias", vec![n_out, 2], &l.c_bias),
            ];
            if let Some(skip) = &l.skip {
                entries.push(("skip", vec![n_out, n_in], skip));
            }
            if let (Some(d), Some(stored)) = (&l.damper, &stored[i]) {
                entries.push(("damper_key", vec![p], &stored.tags));
                entries.push(("damper_fall", vec![1], &stored.fall));
                entries.push(("damper_settle", vec![1], &stored.settle));
                entries.push(("damper_norm", vec![p], &d.norm));
                entries.push(("damper_angle", vec![p], &d.angle));
            }
            if let Some(e) = &l.velocity_exponent {
                entries.push(("velocity_exponent", vec![1], std::slice::from_ref(e)));
            }
            if let Some(b) = &l.b_square {
                entries.push(("B_square", vec![p, n_in, 2], b));
            }
            for (name, shape, data) in entries {
                tensors.insert(format!("layers.{i}.{name}"), (shape, data));
            }
        }
        let last = self.widths().last().copied().unwrap_or(0);
        let (weight_shape, bias_shape) = match self.channels {
            1 => (vec![self.head_count(), last], vec![self.head_count()]),
            c => (vec![self.head_count(), c, last], vec![self.head_count(), c]),
        };
        tensors.insert("heads.weight".into(), (weight_shape, &self.head_weight));
        tensors.insert("heads.bias".into(), (bias_shape, &self.head_bias));
        if let Some(e) = &self.head_state_weight {
            let p = self.layers.first().map_or(0, |l| l.state);
            let shape = vec![self.head_count(), self.channels, p, 2];
            tensors.insert("heads.state_weight".into(), (shape, e));
        }

        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .into_iter()
            .map(|(name, (shape, data))| {
                (
                    name,
                    data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    shape,
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, data, shape)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Serialise(e.to_string()))?;
        safetensors::serialize(views, Some(self.metadata()))
            .map_err(|e| ModelError::Serialise(e.to_string()))
    }

    /// Writes the model atomically (temporary file, then rename), so a crash never leaves
    /// half a model where a good one was.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_bytes()?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|source| ModelError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The lowest format version that holds this model (see the module comment).
    pub fn format_version(&self) -> u32 {
        let any = |has: fn(&SsmLayer) -> bool| self.layers.iter().any(has);
        if self.channels > 1 || self.head_state_weight.is_some() {
            STEREO_FORMAT_VERSION
        } else if any(|l| l.b_square.is_some()) {
            SQUARE_FORMAT_VERSION
        } else if any(|l| l.damper.is_some() || l.velocity_exponent.is_some()) {
            DAMPER_FORMAT_VERSION
        } else {
            PLAIN_FORMAT_VERSION
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let i = &self.info;
        let mut m = HashMap::new();
        m.insert("format".into(), FORMAT_NAME.into());
        m.insert("format_version".into(), self.format_version().to_string());
        m.insert("family".into(), i.family.clone());
        m.insert("size".into(), i.size.clone());
        m.insert("activation".into(), i.activation.name().into());
        m.insert(
            "widths".into(),
            serde_json::to_string(&self.widths()).expect("plain list"),
        );
        m.insert(
            "state_sizes".into(),
            serde_json::to_string(&self.state_sizes()).expect("plain list"),
        );
        m.insert("train_rate".into(), i.train_rate.to_string());
        m.insert("midi_rate".into(), i.midi_rate.to_string());
        // `{:?}` prints the shortest text that parses back to the same f64.
        m.insert("norm_mean".into(), format!("{:?}", i.norm_mean));
        m.insert("norm_std".into(), format!("{:?}", i.norm_std));
        m.insert(
            "heads".into(),
            serde_json::to_string(&i.heads).expect("plain list"),
        );
        if let Some(kind) = &i.head_kind {
            m.insert("head_kind".into(), kind.clone());
        }
        if self.channels > 1 {
            m.insert("channels".into(), self.channels.to_string());
        }
        m.insert("description".into(), i.description.clone());
        m
    }
}

/// The tensors of every layer `layers.i.*` (the skip on every layer but the first).
const LAYER_TENSORS: [&str; 6] = ["norm", "angle", "B", "B_bias", "C", "C_bias"];
/// The key damper's tensors, `layers.0.*` (format version 2).
const DAMPER_TENSORS: [&str; 5] = [
    "damper_key",
    "damper_norm",
    "damper_angle",
    "damper_fall",
    "damper_settle",
];
/// The first layer's other optional tensors, `layers.0.*` (format versions 2 and 3).
const FIRST_LAYER_TENSORS: [&str; 2] = ["velocity_exponent", "B_square"];
/// The heads' tensors.
const HEAD_TENSORS: [&str; 3] = ["heads.weight", "heads.bias", "heads.state_weight"];

/// A damper's key tags and durations as the f32 tensors the file stores.
struct StoredDamper {
    tags: Vec<f32>,
    fall: [f32; 1],
    settle: [f32; 1],
}

impl StoredDamper {
    fn new(d: &Damper) -> StoredDamper {
        StoredDamper {
            tags: d.key_tags(),
            fall: [d.fall_frames as f32],
            settle: [d.settle_frames as f32],
        }
    }
}

/// A stored damper duration (`tensor`): a whole number of frames up to [`MAX_DAMPER_FRAMES`].
fn damper_frames(tensor: &str, v: f32) -> Result<u32, ModelError> {
    if v >= 0.0 && v <= MAX_DAMPER_FRAMES as f32 && v.fract() == 0.0 {
        Ok(v as u32)
    } else {
        Err(ModelError::BadValue {
            name: format!("layers.0.{tensor}"),
            reason: format!("{v} is not a whole number of frames in 0..={MAX_DAMPER_FRAMES}"),
        })
    }
}

/// Typed access to the string-valued metadata map.
struct MetaFields<'a>(&'a HashMap<String, String>);

impl MetaFields<'_> {
    fn text(&self, field: &'static str) -> Result<&str, ModelError> {
        self.0
            .get(field)
            .map(String::as_str)
            .ok_or(ModelError::MissingField(field))
    }

    fn parse<T: std::str::FromStr>(&self, field: &'static str) -> Result<T, ModelError> {
        let text = self.text(field)?;
        text.trim().parse().map_err(|_| ModelError::BadField {
            field,
            reason: format!("cannot parse {text:?}"),
        })
    }

    fn json<T: serde::de::DeserializeOwned>(&self, field: &'static str) -> Result<T, ModelError> {
        serde_json::from_str(self.text(field)?).map_err(|e| ModelError::BadField {
            field,
            reason: e.to_string(),
        })
    }

    /// The heads' output channels: 1 unless a version-4 file says 2.
    fn channels(&self) -> Result<usize, ModelError> {
        if !self.0.contains_key("channels") {
            return Ok(1);
        }
        let channels: usize = self.parse("channels")?;
        let version: u32 = self.parse("format_version")?;
        match channels {
            1 => Ok(1),
            2 if version >= STEREO_FORMAT_VERSION => Ok(2),
            2 => Err(ModelError::BadField {
                field: "channels",
                reason: format!("stereo heads need format version 4, the file says {version}"),
            }),
            c => Err(ModelError::BadField {
                field: "channels",
                reason: format!("{c} output channels; a head has 1 (mono) or {MAX_CHANNELS}"),
            }),
        }
    }

    fn info(&self) -> Result<ModelInfo, ModelError> {
        if self.text("format")? != FORMAT_NAME {
            return Err(ModelError::BadField {
                field: "format",
                reason: format!("{:?} is not {FORMAT_NAME:?}", self.text("format")?),
            });
        }
        let version: u32 = self.parse("format_version")?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(ModelError::BadField {
                field: "format_version",
                reason: format!(
                    "version {version} is not supported (this build reads 1..={FORMAT_VERSION})"
                ),
            });
        }
        let activation_name = self.text("activation")?;
        let activation =
            Activation::parse(activation_name).ok_or_else(|| ModelError::BadField {
                field: "activation",
                reason: format!("unknown activation {activation_name:?}"),
            })?;
        let info = ModelInfo {
            family: self.text("family")?.to_string(),
            size: self.text("size")?.to_string(),
            activation,
            train_rate: self.parse("train_rate")?,
            midi_rate: self.parse("midi_rate")?,
            norm_mean: self.parse("norm_mean")?,
            norm_std: self.parse("norm_std")?,
            heads: self.json("heads")?,
            head_kind: self.0.get("head_kind").cloned(),
            description: self.0.get("description").cloned().unwrap_or_default(),
        };
        check_info(&info)?;
        Ok(info)
    }
}

/// Reads named f32 tensors with an expected shape.
struct TensorReader<'a, 'd>(&'a SafeTensors<'d>);

impl TensorReader<'_, '_> {
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let view = self
            .0
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor(name.into()))?;
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::BadValue {
                name: name.into(),
                reason: format!("dtype {:?}, expected F32", view.dtype()),
            });
        }
        if view.shape() != shape {
            return Err(ModelError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                name: name.into(),
                index,
            });
        }
        Ok(data)
    }

    fn layer(&self, i: usize, n_in: usize, n_out: usize, p: usize) -> Result<SsmLayer, ModelError> {
        let t = |name: &str, shape: &[usize]| self.f32(&format!("layers.{i}.{name}"), shape);
        Ok(SsmLayer {
            inputs: n_in,
            outputs: n_out,
            state: p,
            norm: t("norm", &[p])?,
            angle: t("angle", &[p])?,
            b: t("B", &[p, n_in, 2])?,
            b_bias: t("B_bias", &[p, 2])?,
            c: t("C", &[n_out, p, 2])?,
            c_bias: t("C_bias", &[n_out, 2])?,
            skip: if i == 0 {
                None
            } else {
                Some(t("skip", &[n_out, n_in])?)
            },
            // any one of the damper's tensors means the four required ones must be there
            damper: if i == 0
                && DAMPER_TENSORS
                    .iter()
                    .any(|t| self.0.tensor(&format!("layers.0.{t}")).is_ok())
            {
                Some(Damper {
                    key: Damper::parse_key_tags(&t("damper_key", &[p])?)?,
                    norm: t("damper_norm", &[p])?,
                    angle: t("damper_angle", &[p])?,
                    fall_frames: damper_frames("damper_fall", t("damper_fall", &[1])?[0])?,
                    // files written before the settling fade drop the equilibrium at once
                    settle_frames: match self.0.tensor("layers.0.damper_settle") {
                        Ok(_) => damper_frames("damper_settle", t("damper_settle", &[1])?[0])?,
                        Err(_) => 0,
                    },
                })
            } else {
                None
            },
            velocity_exponent: match self.0.tensor("layers.0.velocity_exponent") {
                Ok(_) if i == 0 => Some(t("velocity_exponent", &[1])?[0]),
                _ => None,
            },
            b_square: match self.0.tensor("layers.0.B_square") {
                Ok(_) if i == 0 => Some(t("B_square", &[p, n_in, 2])?),
                _ => None,
            },
        })
    }

    /// A tensor the format does not define means the file is not what it claims to be.
    fn reject_unknown(&self, layers: usize) -> Result<(), ModelError> {
        for name in self.0.names() {
            let known = match name.strip_prefix("layers.") {
                Some(rest) => rest.split_once('.').is_some_and(|(idx, t)| {
                    idx.parse::<usize>().is_ok_and(|i| {
                        let names: &[&[&str]] = match i {
                            0 => &[&LAYER_TENSORS, &DAMPER_TENSORS, &FIRST_LAYER_TENSORS],
                            i if i < layers => &[&LAYER_TENSORS, &["skip"]],
                            _ => &[],
                        };
                        names.iter().any(|group| group.contains(&t))
                    })
                }),
                None => HEAD_TENSORS.contains(&name),
            };
            if !known {
                return Err(ModelError::UnexpectedTensor(name.to_string()));
            }
        }
        Ok(())
    }
}
