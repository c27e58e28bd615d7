//! Structure-aware fuzzing of the MIDI reader and encoder: well-formed files of many tracks,
//! channels and programs (so, many instruments), notes, pedals and tempo changes. Each
//! parses to events whose roll has the file's length, or ends in an error (the instrument
//! cap), never a panic.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use ssm_runtime::MidiFile;

#[derive(Arbitrary, Debug)]
enum Event {
    Note { key: u8, velocity: u8 },
    Program(u8),
    Pedal(u8),
    Tempo(u16),
}

#[derive(Arbitrary, Debug)]
struct Step {
    delta: u8,
    channel: u8,
    event: Event,
    /// repeat the step over this many channels × programs: instruments in bulk
    spread: u8,
}

fn kind(channel: u8, event: &Event) -> TrackEventKind<'static> {
    let midi = |message| TrackEventKind::Midi {
        channel: u4::new(channel % 16),
        message,
    };
    match *event {
        Event::Note { key, velocity } => midi(MidiMessage::NoteOn {
            key: u7::new(key % 128),
            vel: u7::new(velocity % 128),
        }),
        Event::Program(p) => midi(MidiMessage::ProgramChange {
            program: u7::new(p % 128),
        }),
        Event::Pedal(v) => midi(MidiMessage::Controller {
            controller: u7::new(64),
            value: u7::new(v % 128),
        }),
        Event::Tempo(t) => TrackEventKind::Meta(MetaMessage::Tempo(u24::new(
            100_000 + t as u32 * 16,
        ))),
    }
}

fuzz_target!(|tracks: Vec<Vec<Step>>| {
    let tracks: Vec<Vec<TrackEvent>> = tracks
        .iter()
        .take(64)
        .map(|steps| {
            let mut events = Vec::new();
            for s in steps {
                for i in 0..=s.spread as u16 % 64 {
                    let channel = s.channel.wrapping_add(i as u8);
                    if i > 0 {
                        let program = Event::Program((i / 16) as u8);
                        events.push(TrackEvent { delta: u28::new(0), kind: kind(channel, &program) });
                    }
                    let delta = if i == 0 { s.delta as u32 } else { 0 };
                    events.push(TrackEvent { delta: u28::new(delta), kind: kind(channel, &s.event) });
                }
            }
            events
        })
        .collect();
    let smf = Smf {
        header: Header::new(Format::Parallel, Timing::Metrical(u15::new(96))),
        tracks,
    };
    let mut bytes = Vec::new();
    if smf.write_std(&mut bytes).is_err() {
        return;
    }
    if let Ok(midi) = MidiFile::parse(&bytes) {
        if midi.duration() < 30.0 {
            let roll = midi.roll(1000, 0.1);
            let frames = (midi.duration() * 1000.0).floor() as usize + 100;
            assert_eq!(roll.frames.len(), frames);
        }
    }
});
