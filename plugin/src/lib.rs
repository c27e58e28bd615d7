//! Piano-SSM as a VST3 / CLAP instrument (and, through `main.rs`, a standalone app).
//!
//! * [`instrument`] — everything the audio thread does, independent of the framework.
//! * [`loader`] — builds engines on a background thread and frees old ones there.
//! * [`catalog`] — the models found in the user model folder.
//! * [`params`] — family, size, head and gain, automatable and saved with the project.
//! * [`editor`] — the egui panel.

pub mod catalog;
pub mod editor;
pub mod instrument;
pub mod loader;
pub mod params;
pub mod shared;

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::prelude::*;
use nice_plug_egui::{EguiEditor, EguiEditorState};
use parking_lot::RwLock;
use ssm_runtime::KeyEvent;

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
        }
    }
}

/// The host's note events as the runtime's key events.
fn key_event(event: NoteEvent<()>) -> Option<(u32, KeyEvent)> {
    let to_7bit = |v: f32| (v * 127.0).round().clamp(0.0, 127.0) as u8;
    match event {
        // a host's velocity that rounds to 0 is still a note-on, not MIDI's note-off
        NoteEvent::NoteOn {
            timing,
            key,
            velocity,
            ..
        } => Some((
            timing,
            KeyEvent::NoteOn {
                note: key.number()?,
                velocity: to_7bit(velocity).max(1),
            },
        )),
        NoteEvent::NoteOff { timing, key, .. } => Some((
            timing,
            KeyEvent::NoteOff {
                note: key.number()?,
            },
        )),
        NoteEvent::MidiCC {
            timing, cc, value, ..
        } => KeyEvent::from_midi(0xB0, cc, to_7bit(value)).map(|e| (timing, e)),
        _ => None,
    }
}

impl Plugin for PianoSsm {
    const NAME: &'static str = "Piano-SSM";
    const VENDOR: &'static str = "Piano-SSM";
    const URL: &'static str = "https://github.com/piano-ssm/piano-ssm";
    const EMAIL: &'static str = "info@piano-ssm.invalid";
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
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = EguiEditor<editor::Panel>;

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
        if !(ssm_runtime::model::MIN_RATE..=ssm_runtime::model::MAX_RATE).contains(&rate) {
            self.shared.set_error(format!(
                "sample rate {rate} Hz is not supported (8 to 192 kHz)"
            ));
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
        while let Some(event) = context.next_event() {
            if let Some((offset, e)) = key_event(event) {
                instrument.push_event(offset, e);
            }
        }
        let channels = buffer.as_slice();
        if let Some((first, rest)) = channels.split_first_mut() {
            instrument.process(&settings, first);
            for ch in rest {
                ch.copy_from_slice(first);
            }
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
