//! The instrument without the plugin framework: events and settings in, mono audio out.
//! Everything the audio thread does lives here, so tests can drive it directly (and count
//! its allocations) without a host.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use ssm_runtime::engine::STANDARD_A4;
use ssm_runtime::notes::NoteMap;
use ssm_runtime::player::EVENT_CAPACITY;
use ssm_runtime::{ChannelEvent, Engine, KeyEvent, Player};

use crate::catalog::Catalog;
use crate::loader::{build_engine, LoaderHandle, ModelKey};
use crate::shared::Shared;

/// Length of the crossfade when the model changes.
const FADE_SECONDS: f32 = 0.02;
/// Time constant of the output gain's smoothing: a gain change (automation, a dragged knob)
/// glides instead of stepping, which would click.
const GAIN_SECONDS: f32 = 0.005;

/// What the host's parameters ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub family: usize,
    pub size: usize,
    pub head: usize,
    /// Linear output gain.
    pub gain: f32,
    /// Master tuning, A4 in Hz.
    pub a4: f64,
    /// Semitones every key is moved by.
    pub transpose: i32,
    /// The velocity curve's exponent (1: as played).
    pub velocity_curve: f64,
}

impl Settings {
    /// The first model at unity gain, standard pitch, notes as played.
    pub const DEFAULT: Settings = Settings {
        family: 0,
        size: 0,
        head: 0,
        gain: 1.0,
        a4: STANDARD_A4,
        transpose: 0,
        velocity_curve: 1.0,
    };

    fn model_key(&self, sample_rate: u32) -> ModelKey {
        ModelKey {
            family: self.family,
            size: self.size,
            sample_rate,
            a4_centihertz: (self.a4 * 100.0).round() as u32,
        }
    }
}

pub struct Instrument {
    player: Player,
    playing: Option<ModelKey>,
    /// The last model asked of the loader, so a failing model is asked for only once.
    requested: Option<ModelKey>,
    /// The previous engine, fading out after a switch.
    fading: Option<Box<Engine>>,
    fade_done: usize,
    fade_len: usize,
    /// Engines waiting to go back to the loader (its queue was full).
    garbage: Option<Box<Engine>>,
    loader: LoaderHandle,
    shared: Arc<Shared>,
    sample_rate: u32,
    events: Vec<(u32, ChannelEvent)>,
    scratch: Vec<f32>,
    /// The gain applied to the last sample, gliding towards the setting.
    gain: f32,
    /// Per-sample smoothing coefficient for `GAIN_SECONDS`.
    gain_coef: f32,
    /// The transposition and velocity curve events go through, and the settings it is for.
    notes: NoteMap,
    notes_for: (i32, f64),
}

impl Instrument {
    /// Prepares for `sample_rate` and blocks of up to `max_block` samples. Loads the model
    /// the settings ask for right here (this is not the audio thread).
    pub fn new(
        catalog: Arc<RwLock<Catalog>>,
        shared: Arc<Shared>,
        sample_rate: u32,
        max_block: usize,
        settings: &Settings,
    ) -> Instrument {
        let key = settings.model_key(sample_rate);
        let engine = match build_engine(&catalog.read(), key) {
            Ok(engine) => Some(engine),
            Err(e) => {
                let empty = catalog.read().families.is_empty();
                shared.set_error(if empty {
                    format!(
                        "no models found in {}: import one with `piano-ssm import` — silent until then",
                        catalog.read().folder.as_ref().map_or("the model folder".into(), |p| p.display().to_string())
                    )
                } else {
                    format!("cannot load the model: {e}")
                });
                None
            }
        };
        let mut player = Player::silent();
        // one frame of latency puts every key change exactly on its frame (see Player)
        player.set_latency(ssm_runtime::player::frame_latency(
            sample_rate,
            catalog.read().min_midi_rate(),
        ));
        let mut slot = engine;
        let playing = slot.as_ref().map(|_| key);
        player.swap_engine(&mut slot);
        let mut instrument = Instrument {
            player,
            playing,
            requested: Some(key),
            fading: None,
            fade_done: 0,
            fade_len: (FADE_SECONDS * sample_rate as f32) as usize,
            gain: settings.gain,
            gain_coef: 1.0 - (-1.0 / (GAIN_SECONDS * sample_rate as f32)).exp(),
            garbage: None,
            loader: LoaderHandle::start(catalog, shared.clone()),
            shared,
            sample_rate,
            events: Vec::with_capacity(EVENT_CAPACITY),
            scratch: vec![0.0; max_block.max(1)],
            notes: NoteMap::default(),
            notes_for: (0, 1.0),
        };
        instrument.follow_notes(settings);
        instrument.publish_playing();
        instrument.apply_head(settings.head);
        instrument
    }

    /// Output latency in samples, to report to the host.
    pub fn latency(&self) -> u32 {
        self.player.latency() as u32
    }

    /// Clears every state (the host's reset).
    pub fn reset(&mut self) {
        self.player.reset();
        self.fading_finished();
    }

    /// Queues an event at `offset` samples into the coming block; events beyond the queue's
    /// capacity (the player's, [`EVENT_CAPACITY`] per block) are dropped rather than
    /// allocated for.
    pub fn push_event(&mut self, offset: u32, event: impl Into<ChannelEvent>) {
        if self.events.len() < self.events.capacity() {
            self.events.push((offset, event.into()));
        }
    }

    /// Renders one block into `out` from the queued events. Never allocates, locks or
    /// does I/O.
    pub fn process(&mut self, settings: &Settings, out: &mut [f32]) {
        let started = Instant::now();
        self.follow_settings(settings);
        self.follow_notes(settings);
        // blocks longer than the prepared size are split, each part with its own events
        let chunk = self.scratch.len();
        let total = out.len();
        for (i, part) in out.chunks_mut(chunk).enumerate() {
            let (from, to) = ((i * chunk) as u32, (i * chunk + part.len()) as u32);
            let last = to as usize == total;
            let notes = &self.notes;
            let events = self
                .events
                .iter()
                .filter(|(at, _)| *at >= from && (*at < to || last))
                .filter_map(|&(at, e)| {
                    let event = notes.apply(e.event)?;
                    Some((at - from, ChannelEvent { event, ..e }))
                });
            self.player.process(events, part);
            self.fade(part);
        }
        self.events.clear();
        self.guard_and_gain(settings.gain, out);
        let seconds = out.len() as f32 / self.sample_rate as f32;
        let load = if seconds > 0.0 {
            started.elapsed().as_secs_f32() / seconds
        } else {
            0.0
        };
        let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let enc = self.player.encoder();
        self.shared
            .publish_block(peak, load, &enc.held(), &enc.roll(), enc.pedal_down());
    }

    /// Takes up a new transposition or velocity curve. A new transposition first releases
    /// every key (the pedal still holds): the keys' note-offs would arrive transposed anew and
    /// miss the notes they started.
    fn follow_notes(&mut self, settings: &Settings) {
        let wanted = (settings.transpose, settings.velocity_curve);
        if wanted == self.notes_for {
            return;
        }
        if let Some(map) = NoteMap::new(wanted.0, wanted.1) {
            if wanted.0 != self.notes_for.0 && self.events.len() < self.events.capacity() {
                let release = ChannelEvent {
                    channel: None,
                    event: KeyEvent::AllNotesOff,
                };
                self.events.insert(0, (0, release));
            }
            self.notes = map;
        }
        self.notes_for = wanted;
    }

    /// Asks for the model the settings name, installs one that has arrived, sets the head.
    fn follow_settings(&mut self, settings: &Settings) {
        let key = settings.model_key(self.sample_rate);
        if self.requested != Some(key) && self.loader.request(key) {
            self.requested = Some(key);
        }
        if let Some(old) = self.garbage.take() {
            self.garbage = self.loader.dispose(old).err();
        }
        if self.fading.is_none() && self.garbage.is_none() {
            if let Some((ready_key, engine)) = self.loader.take_ready() {
                self.install(ready_key, engine);
            }
        }
        self.apply_head(settings.head);
    }

    fn install(&mut self, key: ModelKey, engine: Box<Engine>) {
        let mut slot = Some(engine);
        self.player.swap_engine(&mut slot);
        self.fading = slot;
        self.fade_done = 0;
        self.playing = Some(key);
        self.publish_playing();
    }

    fn apply_head(&mut self, head: usize) {
        if let Some(e) = self.player.engine_mut() {
            let head = head.min(e.head_count() - 1);
            if e.head() != head {
                let _ = e.set_head(head);
            }
        }
    }

    /// Mixes the outgoing engine into `out` with a linear crossfade, then lets it go.
    fn fade(&mut self, out: &mut [f32]) {
        let Some(old) = &mut self.fading else { return };
        let n = out.len().min(self.scratch.len());
        let scratch = &mut self.scratch[..n];
        old.set_keys(&self.player.encoder().roll());
        old.process(scratch);
        for (i, (o, s)) in out.iter_mut().zip(scratch.iter()).enumerate() {
            let t = ((self.fade_done + i) as f32 / self.fade_len.max(1) as f32).min(1.0);
            *o = *o * t + *s * (1.0 - t);
        }
        self.fade_done += n;
        if self.fade_done >= self.fade_len {
            self.fading_finished();
        }
    }

    fn fading_finished(&mut self) {
        if let Some(old) = self.fading.take() {
            self.garbage = self.loader.dispose(old).err();
        }
    }

    /// Output is always finite: a NaN or infinity resets the model and silences the block.
    fn guard_and_gain(&mut self, target: f32, out: &mut [f32]) {
        if out.iter().all(|v| v.is_finite()) {
            if self.gain == target {
                out.iter_mut().for_each(|v| *v *= target);
                return;
            }
            for v in out.iter_mut() {
                self.gain += (target - self.gain) * self.gain_coef;
                *v *= self.gain;
            }
            // within 0.001 dB: stop gliding and be exact again (in f32 the glide itself would
            // stall a few ulps short)
            if (self.gain - target).abs() <= 1e-4 * target.abs().max(1e-6) {
                self.gain = target;
            }
            return;
        }
        out.fill(0.0);
        if let Some(e) = self.player.engine_mut() {
            e.reset();
        }
        self.shared
            .non_finite_blocks
            .fetch_add(1, Ordering::Relaxed);
    }

    fn publish_playing(&self) {
        let (family, size) = match (self.playing, self.player.engine()) {
            (Some(k), Some(_)) => (k.family as u32 + 1, k.size as u32),
            _ => (0, 0),
        };
        self.shared.playing_family.store(family, Ordering::Relaxed);
        self.shared.playing_size.store(size, Ordering::Relaxed);
    }
}
