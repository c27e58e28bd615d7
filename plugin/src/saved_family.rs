//! The model family a project plays, saved by name instead of by its place in the catalog:
//! adding a family to the user model folder sorts the list anew, and must not make an old
//! project play another model.
//!
//! The family stays the automatable `family` parameter (an index: hosts need a fixed range).
//! On save the name of the family that index plays goes beside it (the persisted field
//! [`FIELD`]); on load, [`point_at_saved_name`] (the plugin's `filter_state`, run before the
//! host's values are applied) moves the index to that name in today's catalog. When no family
//! has the name, the built-in family plays, the panel says so, and the name is kept and saved
//! again, so the project plays right once the model is back; choosing a family forgets it.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use nice_plug::params::persist::PersistentField;
use nice_plug::plugin::{ParamValue, PluginState};
use parking_lot::RwLock;

use crate::catalog::Catalog;

/// The persisted field's key in the plugin state, and the family parameter's id.
pub const FIELD: &str = "family_name";
pub const PARAM: &str = "family";

/// The family name saved with the project: a handle, shared with the family parameter's
/// callback (clones are the same saved family).
#[derive(Clone)]
pub struct SavedFamily(Arc<Inner>);

struct Inner {
    catalog: Arc<RwLock<Catalog>>,
    /// the family parameter's value, mirrored by its callback (lock-free: a host may
    /// automate the parameter on the audio thread)
    index: AtomicI32,
    /// set when the loaded name was not in the catalog; cleared when a family is chosen
    missing: AtomicBool,
    missing_name: RwLock<String>,
}

impl SavedFamily {
    pub fn new(catalog: Arc<RwLock<Catalog>>) -> SavedFamily {
        SavedFamily(Arc::new(Inner {
            catalog,
            index: AtomicI32::new(0),
            missing: AtomicBool::new(false),
            missing_name: RwLock::new(String::new()),
        }))
    }

    /// What the family parameter's callback calls with each new value.
    pub fn chosen(&self, index: i32) {
        self.0.index.store(index, Ordering::Relaxed);
        self.0.missing.store(false, Ordering::Relaxed);
    }

    /// The family parameter's value.
    pub fn index(&self) -> usize {
        self.0.index.load(Ordering::Relaxed).max(0) as usize
    }

    /// The saved family that the catalog lacks, while the built-in one plays in its place.
    pub fn missing(&self) -> Option<String> {
        self.0
            .missing
            .load(Ordering::Relaxed)
            .then(|| self.0.missing_name.read().clone())
    }

    /// The name to save: the missing family's while it is missing, else the playing one's.
    fn name(&self) -> String {
        self.missing().unwrap_or_else(|| {
            self.0
                .catalog
                .read()
                .family_name(self.index())
                .unwrap_or_default()
                .to_string()
        })
    }
}

impl PersistentField<'_, String> for SavedFamily {
    /// Runs after the parameters are loaded (and moved by [`point_at_saved_name`]).
    fn set(&self, name: String) {
        let found = self
            .0
            .catalog
            .read()
            .families
            .iter()
            .any(|f| f.name == name);
        *self.0.missing_name.write() = name;
        self.0.missing.store(!found, Ordering::Relaxed);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&String) -> R,
    {
        f(&self.name())
    }
}

/// Points the saved family parameter at the saved family name in `catalog` (the built-in
/// family, 0, when no family has the name). States saved before names were (no field) keep
/// their index.
pub fn point_at_saved_name(state: &mut PluginState, catalog: &Catalog) {
    let Some(name) = state
        .fields
        .get(FIELD)
        .and_then(|json| serde_json::from_str::<String>(json).ok())
    else {
        return;
    };
    let index = catalog.families.iter().position(|f| f.name == name);
    state.params.insert(
        PARAM.to_string(),
        ParamValue::I32(index.unwrap_or(0) as i32),
    );
}
