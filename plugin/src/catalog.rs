//! The models the plugin can play: every runtime `.safetensors` model in the user model
//! folder, grouped by family and size.

use std::path::{Path, PathBuf};

use ssm_runtime::Model;

/// Sizes in selector order.
pub const SIZES: [&str; 3] = ["S", "L", "XL"];

/// One playable model file and what the panel shows about it.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub path: PathBuf,
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

/// `$XDG_DATA_HOME/piano-ssm/models`, or `~/.local/share/piano-ssm/models`.
pub fn user_model_dir() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("piano-ssm").join("models"))
}

impl Catalog {
    /// Reads every model in `folder` (a missing folder is an empty catalog, not an error).
    pub fn scan(folder: Option<&Path>) -> Catalog {
        let mut catalog = Catalog { folder: folder.map(Path::to_path_buf), ..Catalog::default() };
        let Some(folder) = folder else { return catalog };
        let Ok(dir) = std::fs::read_dir(folder) else { return catalog };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        paths.sort();
        for path in paths {
            match Model::load(&path) {
                Ok(model) => catalog.add(path, &model),
                Err(e) => catalog.problems.push(format!("{}: {e}", path.display())),
            }
        }
        catalog.families.sort_by(|a, b| a.name.cmp(&b.name));
        catalog
    }

    fn add(&mut self, path: PathBuf, model: &Model) {
        let entry = ModelEntry {
            path,
            size: model.info.size.clone(),
            heads: model.info.heads.clone(),
            head_kind: model.info.head_kind.clone(),
            train_rate: model.info.train_rate,
            midi_rate: model.info.midi_rate,
            parameter_count: model.parameter_count(),
        };
        match self.families.iter_mut().find(|f| f.name == model.info.family) {
            Some(f) => f.models.push(entry),
            None => self.families.push(Family { name: model.info.family.clone(), models: vec![entry] }),
        }
    }

    /// The model for a family index and a size; when the family lacks that size, the
    /// nearest size it has (so a family with only L still plays when S is selected).
    pub fn find(&self, family: usize, size: usize) -> Option<&ModelEntry> {
        let f = self.families.get(family)?;
        let rank = |s: &str| SIZES.iter().position(|&x| x == s).unwrap_or(SIZES.len());
        f.models.iter().min_by_key(|m| rank(&m.size).abs_diff(size))
    }

    /// The slowest MIDI rate of any model (1000 Hz without models): it sets the latency
    /// that makes every model's frames exact.
    pub fn min_midi_rate(&self) -> u32 {
        self.families.iter().flat_map(|f| &f.models).map(|m| m.midi_rate).min().unwrap_or(1000).min(1000)
    }

    pub fn family_name(&self, family: usize) -> Option<&str> {
        self.families.get(family).map(|f| f.name.as_str())
    }
}
