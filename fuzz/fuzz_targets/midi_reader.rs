//! Any bytes given to the MIDI reader give events or an error, never a panic, and the roll
//! of whatever parses stays within the velocity range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssm_runtime::MidiFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(midi) = MidiFile::parse(data) {
        // bound the work: fuzzed tempo maps can describe hours of silence
        if midi.duration() < 30.0 {
            let roll = midi.roll(1000, 0.1);
            assert!(roll.frames.iter().all(|f| f.iter().all(|&v| v <= 127)));
        }
    }
});
