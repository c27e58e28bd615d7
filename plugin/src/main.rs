//! The standalone app: JACK or ALSA audio and MIDI, see `piano-ssm-standalone --help`.

fn main() {
    nice_plug::prelude::nice_export_standalone::<plugin::PianoSsm>();
}
