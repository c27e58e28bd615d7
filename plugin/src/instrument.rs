//! The instrument without the plugin framework: events and settings in, mono audio out.
//! Everything the audio thread does lives here, so tests can drive it directly (and count
//! its allocations) without a host.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use ssm_runtime::engine::{Outputs, STANDARD_A4};
use ssm_runtime::notes::{NoteMap, DEFAULT_SOFT_PEDAL};
use ssm_runtime::{ChannelEvent, KeyEvent, Player};

use crate::catalog::Catalog;
use crate::loader::{build_engine, LoaderHandle, ModelKey};
use crate::shared::{Pedals, Shared};
use crate::slot::Slot;

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
    /// The share of its velocity a note struck under the soft pedal keeps.
    pub soft_pedal: f64,
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
        soft_pedal: DEFAULT_SOFT_PEDAL,
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
    /// The engine hand-over: the previous engine fading out after a switch.
    slot: Slot,
    loader: LoaderHandle,
    shared: Arc<Shared>,
    sample_rate: u32,
    /// A new transposition releases every key before the block's events (see
    /// [`Instrument::follow_notes`]).
    release_all: bool,
    scratch: Vec<f32>,
    /// The gain applied to the last sample, gliding towards the setting.
    gain: f32,
    /// Per-sample smoothing coefficient for `GAIN_SECONDS`.
    gain_coef: f32,
    /// The transposition and velocity curve events go through, and the settings it is for.
    notes: NoteMap,
    notes_for: (i32, f64, f64),
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
            slot: Slot::new((FADE_SECONDS * sample_rate as f32) as usize),
            gain: settings.gain,
            gain_coef: 1.0 - (-1.0 / (GAIN_SECONDS * sample_rate as f32)).exp(),
            loader: LoaderHandle::start(catalog, shared.clone()),
            shared,
            sample_rate,
            release_all: false,
            // the outgoing engine's two channels during a crossfade
            scratch: vec![0.0; 2 * max_block.max(1)],
            notes: NoteMap::default(),
            notes_for: (0, 1.0, DEFAULT_SOFT_PEDAL),
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

    /// Counts samples on the host's timeline (see [`Player::align`]) while its transport
    /// plays. `position` is where the host says the transport is at the block's start: the
    /// time at which the block's *output* is heard, so a host that compensates the reported
    /// latency sends the events of `latency` samples later on the timeline (Ardour does: it
    /// starts a bounce with a block at −latency that holds the events at 0).
    pub fn align_to_transport(&mut self, position: i64) {
        let timeline = position.saturating_add(self.latency() as i64).max(0) as u64;
        // a position the framework derives from seconds or beats (when the host gives no
        // sample count) may round a sample either way: only a larger step is a move
        if timeline.abs_diff(self.player.position()) > 1 {
            self.player.align(timeline);
        }
    }

    /// Clears every state (the host's reset).
    pub fn reset(&mut self) {
        self.player.reset();
        let loader = &self.loader;
        self.slot.finish(|old| loader.dispose(old));
    }

    /// Renders one block into `out`, playing `events` — `(sample offset in this block,
    /// event)` in time order, straight from the host — through the transposition and velocity
    /// curve into the player (which keeps what waits for a later frame, up to its capacity).
    /// Mono: a stereo model's channels folded to their mean. Never allocates, locks or does
    /// I/O.
    pub fn process<E: Into<ChannelEvent>>(
        &mut self,
        settings: &Settings,
        events: impl IntoIterator<Item = (u32, E)>,
        out: &mut [f32],
    ) {
        self.process_outputs(settings, events, Outputs::Mono(out));
    }

    /// As [`Instrument::process`] into a stereo pair: a stereo model's two channels, a mono
    /// model's one in both.
    pub fn process_stereo<E: Into<ChannelEvent>>(
        &mut self,
        settings: &Settings,
        events: impl IntoIterator<Item = (u32, E)>,
        left: &mut [f32],
        right: &mut [f32],
    ) {
        self.process_outputs(settings, events, Outputs::stereo(left, right));
    }

    /// As [`Instrument::process`] into one channel or a stereo pair.
    pub fn process_outputs<E: Into<ChannelEvent>>(
        &mut self,
        settings: &Settings,
        events: impl IntoIterator<Item = (u32, E)>,
        mut out: Outputs<'_>,
    ) {
        let started = Instant::now();
        self.follow_settings(settings);
        self.follow_notes(settings);
        let release = std::mem::take(&mut self.release_all).then_some((
            0,
            ChannelEvent {
                channel: None,
                event: KeyEvent::AllNotesOff,
            },
        ));
        let mut events = release
            .into_iter()
            .chain(events.into_iter().map(|(at, e)| (at, e.into())))
            .peekable();
        // blocks longer than the prepared size are split, each part with its own events
        let chunk = self.scratch.len() / 2;
        let total = out.len();
        for from in (0..total).step_by(chunk) {
            let to = (from + chunk).min(total);
            let last = to == total;
            let notes = &mut self.notes;
            let this_part =
                std::iter::from_fn(|| events.next_if(|(at, _)| (*at as usize) < to || last))
                    .filter_map(|(at, e)| {
                        let event = notes.apply(e.channel.map(usize::from), e.event)?;
                        Some((at.saturating_sub(from as u32), ChannelEvent { event, ..e }))
                    });
            let mut part = out.part(from..to);
            self.player.process_outputs(this_part, part.reborrow());
            let loader = &self.loader;
            let keys = self.player.encoder().roll();
            self.slot
                .fade(&keys, part, &mut self.scratch, |old| loader.dispose(old));
        }
        self.guard_and_gain(settings.gain, &mut out);
        let seconds = total as f32 / self.sample_rate as f32;
        let load = if seconds > 0.0 {
            started.elapsed().as_secs_f32() / seconds
        } else {
            0.0
        };
        let peak = out
            .channels()
            .flat_map(|c| c.iter())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        let enc = self.player.encoder();
        let pedals = Pedals {
            sustain: enc.pedal_down(),
            sostenuto: enc.sostenuto_down(),
            soft: self.notes.soft_pedal_down(),
        };
        self.shared
            .publish_block(peak, load, &enc.held(), &enc.roll(), pedals);
    }

    /// Takes up a new transposition or velocity curve. A new transposition first releases
    /// every key (the pedal still holds): the keys' note-offs would arrive transposed anew and
    /// miss the notes they started.
    fn follow_notes(&mut self, settings: &Settings) {
        let wanted = (
            settings.transpose,
            settings.velocity_curve,
            settings.soft_pedal,
        );
        if wanted == self.notes_for {
            return;
        }
        if let Some(map) = NoteMap::new(wanted.0, wanted.1, wanted.2) {
            self.release_all |= wanted.0 != self.notes_for.0;
            self.notes.retune(&map);
        }
        self.notes_for = wanted;
    }

    /// Asks for the model the settings name, installs one that has arrived, sets the head.
    fn follow_settings(&mut self, settings: &Settings) {
        let key = settings.model_key(self.sample_rate);
        if self.requested != Some(key) && self.loader.request(key) {
            self.requested = Some(key);
        }
        let loader = &self.loader;
        self.slot.collect(|old| loader.dispose(old));
        // only a free slot takes a new engine (it is free here, so `install` takes it)
        if self.slot.is_free() {
            if let Some((ready_key, engine)) = self.loader.take_ready() {
                if self.slot.install(&mut self.player, engine).is_ok() {
                    self.playing = Some(ready_key);
                    self.publish_playing();
                }
            }
        }
        self.apply_head(settings.head);
    }

    fn apply_head(&mut self, head: usize) {
        if let Some(e) = self.player.engine_mut() {
            let head = head.min(e.head_count() - 1);
            if e.head() != head {
                let _ = e.set_head(head);
            }
        }
    }

    /// Applies the gain setting, gliding to a new one sample by sample alike on every
    /// channel. Output is always finite: a NaN or infinity resets the model and silences the
    /// block.
    fn guard_and_gain(&mut self, target: f32, out: &mut Outputs<'_>) {
        if out.channels().all(|c| c.iter().all(|v| v.is_finite())) {
            if self.gain == target {
                out.channels()
                    .for_each(|c| c.iter_mut().for_each(|v| *v *= target));
                return;
            }
            let start = self.gain;
            for c in out.channels() {
                self.gain = start;
                for v in c.iter_mut() {
                    self.gain += (target - self.gain) * self.gain_coef;
                    *v *= self.gain;
                }
            }
            // within 0.001 dB: stop gliding and be exact again (in f32 the glide itself would
            // stall a few ulps short)
            if (self.gain - target).abs() <= 1e-4 * target.abs().max(1e-6) {
                self.gain = target;
            }
            return;
        }
        out.channels().for_each(|c| c.fill(0.0));
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
