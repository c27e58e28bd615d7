//! A project keeps its model family by name: a family added to the model folder (which sorts
//! the list anew) does not change what an old project plays, a missing family plays the
//! built-in one and is saved again under its name, and projects from before names keep their
//! index. The state goes through the same calls the framework makes on save and load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nice_plug::params::{InternalParamMut, Param, Params};
use nice_plug::plugin::{ParamValue, PluginState};
use parking_lot::RwLock;
use plugin::catalog::{Catalog, ModelSource};
use plugin::params::PianoParams;
use plugin::saved_family::{point_at_saved_name, FIELD, PARAM};
use ssm_runtime::checkpoint::{import_pth, ImportOptions};

const MAESTRO: &str = "Piano-SSM MAESTRO";

/// The published S checkpoint, imported into `folder` under `family`.
fn add_model(folder: &Path, family: &str, file: &str) -> PathBuf {
    let pth =
        test_support::reference_dir().join("weights/PianoSSM_S_MH_maestro_all_16000_model.pth");
    let mut model = import_pth(&pth, &ImportOptions::default()).unwrap();
    model.info.family = family.to_string();
    let path = folder.join(file);
    model.save(&path).unwrap();
    path
}

fn params_for(folder: &Path) -> (Arc<RwLock<Catalog>>, PianoParams) {
    let catalog = Arc::new(RwLock::new(Catalog::scan(Some(folder))));
    (catalog.clone(), PianoParams::new(catalog))
}

/// Sets the family parameter as a host or the panel does (its callback runs).
fn choose_family(params: &PianoParams, index: i32) {
    // the call the framework's wrappers make for a host's or the panel's change
    unsafe { params.family._internal_set_plain_value(index) };
}

/// What the framework saves.
fn save(params: &PianoParams) -> PluginState {
    let mut state = PluginState {
        version: String::new(),
        params: BTreeMap::new(),
        fields: params.serialize_fields(),
    };
    state.params.insert(
        PARAM.to_string(),
        ParamValue::I32(params.family.unmodulated_plain_value()),
    );
    state
}

/// What the framework loads: the plugin's filter, the parameters, then the persisted fields.
fn load(state: &mut PluginState, catalog: &Catalog, params: &PianoParams) {
    point_at_saved_name(state, catalog);
    if let Some(ParamValue::I32(i)) = state.params.get(PARAM) {
        choose_family(params, *i);
    }
    params.deserialize_fields(&state.fields);
}

fn playing_file(catalog: &Catalog, params: &PianoParams) -> Option<PathBuf> {
    match &catalog.find(params.family.value() as usize, 0)?.source {
        ModelSource::File(path) => Some(path.clone()),
        ModelSource::Builtin(_) => None,
    }
}

#[test]
fn a_family_that_sorts_first_does_not_change_an_old_project() {
    let dir = tempfile::tempdir().unwrap();
    let maestro = add_model(dir.path(), MAESTRO, "maestro-s.safetensors");
    let (catalog, params) = params_for(dir.path());
    assert_eq!(catalog.read().family_name(1), Some(MAESTRO));
    choose_family(&params, 1);
    let mut state = save(&params);
    assert_eq!(state.fields[FIELD], format!("\"{MAESTRO}\""));

    // a family that sorts before it: the saved index 1 now names that one
    add_model(dir.path(), "A first family", "first.safetensors");
    let (catalog, reopened) = params_for(dir.path());
    assert_eq!(catalog.read().family_name(1), Some("A first family"));
    load(&mut state, &catalog.read(), &reopened);
    assert_eq!(reopened.family.value(), 2);
    assert_eq!(playing_file(&catalog.read(), &reopened), Some(maestro));
    assert_eq!(reopened.saved_family.missing(), None);
    assert_eq!(save(&reopened).fields[FIELD], format!("\"{MAESTRO}\""));
}

#[test]
fn a_missing_family_plays_the_built_in_one_and_keeps_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let maestro = add_model(dir.path(), MAESTRO, "maestro-s.safetensors");
    let (_, params) = params_for(dir.path());
    choose_family(&params, 1);
    let mut state = save(&params);

    std::fs::rename(&maestro, dir.path().join("elsewhere.bak")).unwrap();
    let (catalog, reopened) = params_for(dir.path());
    load(&mut state, &catalog.read(), &reopened);
    assert_eq!(reopened.family.value(), 0, "the built-in family plays");
    assert_eq!(playing_file(&catalog.read(), &reopened), None);
    assert_eq!(reopened.saved_family.missing().as_deref(), Some(MAESTRO));
    // saved again while missing: still the missing family's name
    let mut again = save(&reopened);
    assert_eq!(again.fields[FIELD], format!("\"{MAESTRO}\""));

    // the model is back: the project plays it again
    std::fs::rename(dir.path().join("elsewhere.bak"), &maestro).unwrap();
    let (catalog, back) = params_for(dir.path());
    load(&mut again, &catalog.read(), &back);
    assert_eq!(playing_file(&catalog.read(), &back), Some(maestro));

    // choosing a family forgets the missing one
    choose_family(&reopened, 1);
    assert_eq!(reopened.saved_family.missing(), None);
}

#[test]
fn a_project_from_before_names_keeps_its_index() {
    let dir = tempfile::tempdir().unwrap();
    add_model(dir.path(), MAESTRO, "maestro-s.safetensors");
    let (catalog, params) = params_for(dir.path());
    let mut old = PluginState {
        version: String::new(),
        params: BTreeMap::from([(PARAM.to_string(), ParamValue::I32(1))]),
        fields: BTreeMap::new(),
    };
    load(&mut old, &catalog.read(), &params);
    assert_eq!(params.family.value(), 1);
    assert_eq!(params.saved_family.missing(), None);
}
