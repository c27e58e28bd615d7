//! Prepares engines off the audio thread and takes old ones back to drop them there.
//!
//! The audio thread sends a small `Request` (indices and a rate, nothing that allocates)
//! through a bounded channel; the loader thread reads the model file, builds the engine for
//! the rate and sends it back boxed. Old engines travel back the same way to be freed here.
//! Failures are written to the shared status for the panel; the audio thread keeps playing
//! what it has.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::RwLock;
use ssm_runtime::Engine;

use crate::catalog::{Catalog, LoadError};
use crate::shared::Shared;

/// Which model, at which rate and tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelKey {
    pub family: usize,
    pub size: usize,
    pub sample_rate: u32,
    /// master tuning, A4 in hundredths of a Hz (the engine's poles depend on it)
    pub a4_centihertz: u32,
}

impl ModelKey {
    pub fn a4(&self) -> f64 {
        self.a4_centihertz as f64 / 100.0
    }
}

enum Task {
    Load(ModelKey),
    Drop(Box<Engine>),
}

/// The audio thread's end.
pub struct LoaderHandle {
    jobs: Sender<Task>,
    ready: Receiver<(ModelKey, Box<Engine>)>,
}

/// Builds the engine for `key` (on the calling thread).
pub fn build_engine(catalog: &Catalog, key: ModelKey) -> Result<Box<Engine>, LoadError> {
    let entry = catalog
        .find(key.family, key.size)
        .ok_or(LoadError::NoModel)?;
    let model = entry.source.load()?;
    Ok(Box::new(Engine::tuned(&model, key.sample_rate, key.a4())?))
}

impl LoaderHandle {
    /// Starts the loader thread; it ends when the handle is dropped.
    pub fn start(catalog: Arc<RwLock<Catalog>>, shared: Arc<Shared>) -> LoaderHandle {
        let (jobs_tx, jobs_rx) = bounded::<Task>(16);
        let (ready_tx, ready_rx) = bounded(4);
        std::thread::Builder::new()
            .name("piano-ssm loader".into())
            .spawn(move || {
                while let Ok(job) = jobs_rx.recv() {
                    match job {
                        Task::Drop(engine) => drop(engine),
                        Task::Load(key) => {
                            shared
                                .set_status(format!("loading {}…", describe(&catalog.read(), key)));
                            let built = build_engine(&catalog.read(), key);
                            match built {
                                Ok(engine) => {
                                    shared.set_status(String::new());
                                    // the audio thread takes it at its next block
                                    let _ = ready_tx.send((key, engine));
                                }
                                Err(e) => shared.set_error(format!(
                                    "cannot load the model: {e}; the previous model keeps playing"
                                )),
                            }
                        }
                    }
                }
            })
            .expect("spawn loader thread");
        LoaderHandle {
            jobs: jobs_tx,
            ready: ready_rx,
        }
    }

    /// Asks for a model; false when the queue is full (ask again next block). Never blocks.
    pub fn request(&self, key: ModelKey) -> bool {
        self.jobs.try_send(Task::Load(key)).is_ok()
    }

    /// Hands an engine back to be freed off the audio thread; gives it back when the queue
    /// is full so the caller can retry instead of freeing it here.
    pub fn dispose(&self, engine: Box<Engine>) -> Result<(), Box<Engine>> {
        self.jobs
            .try_send(Task::Drop(engine))
            .map_err(|e| match e.into_inner() {
                Task::Drop(engine) => engine,
                Task::Load(_) => unreachable!("sent a drop job"),
            })
    }

    /// A finished engine, if one is waiting. Never blocks.
    pub fn take_ready(&self) -> Option<(ModelKey, Box<Engine>)> {
        self.ready.try_recv().ok()
    }
}

fn describe(catalog: &Catalog, key: ModelKey) -> String {
    let family = catalog.family_name(key.family).unwrap_or("?");
    let size = ssm_runtime::Size::ALL
        .get(key.size)
        .map_or("?", |s| s.label());
    format!("{family} {size} at {} Hz", key.sample_rate)
}
