//! Piano-SSM as a VST3 / CLAP instrument (and, through `main.rs`, a standalone app).
//!
//! * [`instrument`] — everything the audio thread does, independent of the framework.
//! * [`slot`] — the engine hand-over: install, crossfade, hand the old engine back.
//! * [`loader`] — builds engines on a background thread and frees old ones there.
//! * [`catalog`] — the models found in the user model folder.
//! * [`params`] — family, size, head, gain, tuning, transposition and velocity curve,
//!   automatable and saved with the project.
//! * [`saved_family`] — the family saved by name, so new models do not change old projects.
//! * [`editor`] — the egui panel.

pub mod catalog;
pub mod editor;
pub mod instrument;
pub mod loader;
pub mod params;
pub mod saved_family;
pub mod shared;
pub mod slot;

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::midi::Channel;
use nice_plug::prelude::*;
use nice_plug_egui::{EguiEditor, EguiEditorState};
use parking_lot::RwLock;
use ssm_runtime::engine::check_rate;
use ssm_runtime::{ChannelEvent, KeyEvent};

use catalog::{user_model_dir, Catalog};
use instrument::{Instrument, Settings};
use params::PianoParams;
use shared::Shared;

pub struct PianoSsm {
    params: Arc<PianoParams>,
    catalog: Arc<RwLock<Catalog>>,
    shared: Arc<Shared>,
    instrument: Option<Instrument>,
    editor_state: Arc<EguiEditorState>,
}

impl Default for PianoSsm {
    fn default() -> Self {
        let catalog = Arc::new(RwLock::new(Catalog::scan(user_model_dir().as_deref())));
        PianoSsm {
            params: Arc::new(PianoParams::new(catalog.clone())),
            catalog,
            shared: Arc::new(Shared::default()),
            instrument: None,
            editor_state: editor::default_state(),
        }
    }
}

impl PianoSsm {
    fn settings(&self) -> Settings {
        Settings {
            family: self.params.family.value() as usize,
            size: self.params.size.value().index(),
            head: self.params.head.value() as usize,
            gain: self.params.gain.value(),
            a4: self.params.tune.value() as f64,
            transpose: self.params.transpose.value(),
            velocity_curve: self.params.velocity_curve.value() as f64,
            soft_pedal: self.params.soft_pedal.value() as f64,
        }
    }
}

/// The host's note events as the runtime's key events, each on its MIDI channel (the
/// encoder plays one instrument per channel, as pretty_midi does for files).
fn key_event(event: NoteEvent<()>) -> Option<(u32, ChannelEvent)> {
    let to_7bit = |v: f32| (v * 127.0).round().clamp(0.0, 127.0) as u8;
    let on = |channel: Channel, event| ChannelEvent {
        channel: channel.number(),
        event,
    };
    match event {
        // a host's velocity that rounds to 0 is still a note-on, not MIDI's note-off
        NoteEvent::NoteOn {
            timing,
            channel,
            key,
            velocity,
            ..
        } => Some((
            timing,
            on(
                channel,
                KeyEvent::NoteOn {
                    note: key.number()?,
                    velocity: to_7bit(velocity).max(1),
                },
            ),
        )),
        NoteEvent::NoteOff {
            timing,
            channel,
            key,
            ..
        } => Some((
            timing,
            on(
                channel,
                // a note-off for any key (a CLAP wildcard) ends every note of the channel
                match key.number() {
                    Some(note) => KeyEvent::NoteOff { note },
                    None => KeyEvent::AllNotesOff,
                },
            ),
        )),
        NoteEvent::MidiCC {
            timing,
            channel,
            cc,
            value,
        } => ChannelEvent::from_midi(0xB0 | (channel & 0x0F), cc, to_7bit(value))
            .map(|e| (timing, e)),
        _ => None,
    }
}

impl Plugin for PianoSsm {
    const NAME: &'static str = "Piano-SSM";
    const VENDOR: &'static str = "Piano-SSM";
    // no public home page or support address yet: empty rather than made up
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    const MIDI_INPUT: MidiConfig = MidiConfig::MidiCCs;
    /// Room for a host's flood in one block, so the framework's event queues never grow on
    /// the audio thread (the default, 1024, filled up in Ardour): a VST3 host sees 2080
    /// MIDI-controller parameters beside ours and may send them all at once, plus the notes;
    /// twice the player's queue, as the framework also holds events the player never gets.
    /// `clap-render flood` sends 8600 events in one block and the test script fails on the
    /// framework's "filled up" warning.
    const INPUT_EVENT_CAPACITY: usize = 2 * ssm_runtime::player::EVENT_CAPACITY;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = EguiEditor<editor::Panel>;

    /// A saved project names its model family: point the family parameter at that name in
    /// the folder as it is now (families sort by name, so their indices move).
    fn filter_state(state: &mut PluginState) {
        let catalog = Catalog::scan(user_model_dir().as_deref());
        saved_family::point_at_saved_name(state, &catalog);
    }

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(
            self.editor_state.clone(),
            self.params.clone(),
            self.shared.clone(),
            self.catalog.clone(),
        )
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let rate = config.sample_rate.round() as u32;
        if let Err(e) = check_rate(rate) {
            self.shared.set_error(e.to_string());
            return false;
        }
        // the model is discretised for the host's rate here, off the audio thread
        let max_block = config.max_buffer_size.max(1) as usize;
        let instrument = Instrument::new(
            self.catalog.clone(),
            self.shared.clone(),
            rate,
            max_block,
            &self.settings(),
        );
        // about one MIDI frame (0.6 to 1 ms): the price of exact, block-size-independent timing
        context.set_latency_samples(instrument.latency());
        self.instrument = Some(instrument);
        true
    }

    fn reset(&mut self) {
        if let Some(i) = &mut self.instrument {
            i.reset();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let settings = self.settings();
        let Some(instrument) = &mut self.instrument else {
            return ProcessStatus::Normal;
        };
        // frames on the host's timeline, so a bounce lines up with the file render
        let transport = context.transport();
        if let (true, Some(position)) = (transport.playing, transport.pos_samples()) {
            instrument.align_to_transport(position);
        }
        // the host's events go straight to the player, in time order
        let events = std::iter::from_fn(|| loop {
            if let Some(e) = key_event(context.next_event()?) {
                return Some(e);
            }
        });
        // a stereo layout plays the model's two channels (a mono model's one on both)
        match buffer.as_slice() {
            [left, right, ..] => instrument.process_stereo(&settings, events, left, right),
            [mono] => instrument.process(&settings, events, mono),
            [] => {}
        }
        ProcessStatus::KeepAlive
    }
}

impl ClapPlugin for PianoSsm {
    const CLAP_ID: &'static str = "org.piano-ssm.piano-ssm";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Neural piano: diagonal state-space models from MIDI to audio");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::Instrument,
        ClapFeature::Synthesizer,
        ClapFeature::Mono,
    ];
}

impl Vst3Plugin for PianoSsm {
    const VST3_CLASS_ID: [u8; 16] = *b"PianoSSMNeuralPn";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Piano];
}

nice_export_clap!(PianoSsm);
nice_export_vst3!(PianoSsm);

#[cfg(test)]
mod tests {
    use super::*;
    use nice_plug::midi::{Key, VoiceID};

    #[test]
    fn host_events_keep_their_channel() {
        let on = NoteEvent::NoteOn {
            timing: 7,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(3),
            key: Key::Number(60),
            velocity: 0.5,
        };
        let (timing, e) = key_event(on).unwrap();
        assert_eq!((timing, e.channel), (7, Some(3)));
        assert_eq!(
            e.event,
            KeyEvent::NoteOn {
                note: 60,
                velocity: 64
            }
        );
        let cc = NoteEvent::MidiCC {
            timing: 0,
            channel: 9,
            cc: 64,
            value: 1.0,
        };
        assert_eq!(key_event(cc).unwrap().1.channel, Some(9));
        // a CLAP wildcard: any channel, any key
        let off = NoteEvent::NoteOff {
            timing: 0,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Wildcard,
            key: Key::Wildcard,
            velocity: 0.0,
        };
        let (_, e) = key_event(off).unwrap();
        assert_eq!((e.channel, e.event), (None, KeyEvent::AllNotesOff));
    }
}
