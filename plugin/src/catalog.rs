//! The models the plugin can play: the built-in Piano-SSM Grand family first, then every
//! runtime `.safetensors` model in the user model folder, grouped by family and size.

use std::path::{Path, PathBuf};

use ssm_runtime::{EngineError, Model, ModelError, Size};

/// Where a model's bytes come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// Compiled into the plugin.
    Builtin(&'static [u8]),
    File(PathBuf),
}

/// Why the plugin cannot play the model it was asked for (shown on the panel).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("built-in model: {0}")]
    Builtin(ModelError),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: ModelError },
    #[error("no model for this family and size")]
    NoModel,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl ModelSource {
    pub fn load(&self) -> Result<Model, LoadError> {
        match self {
            ModelSource::Builtin(bytes) => Model::from_bytes(bytes).map_err(LoadError::Builtin),
            ModelSource::File(path) => Model::load(path).map_err(|source| LoadError::File {
                path: path.clone(),
                source,
            }),
        }
    }
}

/// One playable model and what the panel shows about it.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub source: ModelSource,
    pub size: String,
    pub heads: Vec<String>,
    pub head_kind: Option<String>,
    pub train_rate: u32,
    pub midi_rate: u32,
    pub parameter_count: usize,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub models: Vec<ModelEntry>,
}

/// Families found in the model folder, sorted by name, plus what could not be read.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub folder: Option<PathBuf>,
    pub families: Vec<Family>,
    /// One line per file that was skipped, naming it and why.
    pub problems: Vec<String>,
}

/// The user model folder, `piano-ssm/models` in the OS's per-user data folder: Linux
/// `$XDG_DATA_HOME/piano-ssm/models` (`~/.local/share/…` by default), macOS
/// `~/Library/Application Support/piano-ssm/models`, Windows `%APPDATA%\piano-ssm\models`.
pub fn user_model_dir() -> Option<PathBuf> {
    let base = directories::BaseDirs::new()?;
    Some(base.data_dir().join("piano-ssm").join("models"))
}

impl Catalog {
    /// The built-in models, then every model in `folder` (a missing folder adds nothing).
    pub fn scan(folder: Option<&Path>) -> Catalog {
        // the built-in family goes in first: it is family 0, the default
        let mut catalog = Catalog::default();
        for m in ssm_runtime::builtin::MODELS {
            match Model::from_bytes(m.bytes) {
                Ok(model) => catalog.add(ModelSource::Builtin(m.bytes), &model),
                Err(e) => catalog
                    .problems
                    .push(format!("built-in {} model: {e}", m.size)),
            }
        }
        let user = Catalog::user_models(folder);
        catalog.folder = user.folder;
        catalog.families.extend(user.families);
        catalog.problems.extend(user.problems);
        catalog
    }

    /// Only the models in `folder`, without the built-in ones.
    pub fn user_models(folder: Option<&Path>) -> Catalog {
        let mut catalog = Catalog {
            folder: folder.map(Path::to_path_buf),
            ..Catalog::default()
        };
        let Some(folder) = folder else { return catalog };
        let Ok(dir) = std::fs::read_dir(folder) else {
            return catalog;
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        paths.sort();
        for path in paths {
            match Model::load(&path) {
                Ok(model) => catalog.add(ModelSource::File(path), &model),
                Err(e) => catalog.problems.push(format!("{}: {e}", path.display())),
            }
        }
        catalog.families.sort_by(|a, b| a.name.cmp(&b.name));
        catalog
    }

    fn add(&mut self, source: ModelSource, model: &Model) {
        let entry = ModelEntry {
            source,
            size: model.info.size.clone(),
            heads: model.info.heads.clone(),
            head_kind: model.info.head_kind.clone(),
            train_rate: model.info.train_rate,
            midi_rate: model.info.midi_rate,
            parameter_count: model.parameter_count(),
        };
        match self
            .families
            .iter_mut()
            .find(|f| f.name == model.info.family)
        {
            Some(f) => f.models.push(entry),
            None => self.families.push(Family {
                name: model.info.family.clone(),
                models: vec![entry],
            }),
        }
    }

    /// The model for a family index and a size; when the family lacks that size, the
    /// nearest size it has (so a family with only L still plays when S is selected).
    pub fn find(&self, family: usize, size: usize) -> Option<&ModelEntry> {
        let f = self.families.get(family)?;
        let rank = |s: &str| Size::of_label(s).map_or(Size::ALL.len(), Size::index);
        f.models.iter().min_by_key(|m| rank(&m.size).abs_diff(size))
    }

    /// The slowest MIDI rate of any model (1000 Hz without models): it sets the latency
    /// that makes every model's frames exact.
    pub fn min_midi_rate(&self) -> u32 {
        self.families
            .iter()
            .flat_map(|f| &f.models)
            .map(|m| m.midi_rate)
            .min()
            .unwrap_or(1000)
            .min(1000)
    }

    pub fn family_name(&self, family: usize) -> Option<&str> {
        self.families.get(family).map(|f| f.name.as_str())
    }
}
