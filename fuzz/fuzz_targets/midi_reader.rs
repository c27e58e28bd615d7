//! Any bytes given to the MIDI reader give events or an error, never a panic, and the roll
//! of whatever parses lasts as long as the file says and holds only the keys its notes
//! sound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssm_runtime::MidiFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(midi) = MidiFile::parse(data) {
        // bound the work: fuzzed tempo maps can describe hours of silence
        if midi.duration() < 30.0 {
            let roll = midi.roll(1000, 0.1);
            let frames = (midi.duration() * 1000.0).floor() as usize + 100;
            assert_eq!(roll.frames.len(), frames);
            // every key that sounds has a note-on in the events
            let mut struck = [false; 88];
            for e in midi.events() {
                if let ssm_runtime::KeyEvent::NoteOn { note: n @ 21..=108, velocity: 1.. } = e.event {
                    struck[n as usize - 21] = true;
                }
            }
            assert!(roll.frames.iter().all(|f| (0..88).all(|k| f[k] == 0 || struck[k])));
        }
    }
});
