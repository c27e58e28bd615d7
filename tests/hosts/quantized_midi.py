"""Write a quantized MIDI file, as a DAW makes them: every event on a grid of 1/8 s (an eighth
note at 60 bpm, a sixteenth at 120), so every note-on, note-off and pedal change lies exactly
on a MIDI frame boundary of the built-in models (1000 and 1200 Hz frames) and on a sample at
44.1, 48 and 96 kHz.

usage: quantized_midi.py OUT.mid [BPM] [--three-pedals]

BPM is the file's tempo, 60 (the default) or 120 (a DAW session's default tempo, so that a
region of the file plays there as the file says); the events' times in seconds are the same
for both. The tempo and resolution (256 ticks a beat) make every event time a binary
fraction, so pretty_midi's float tick-to-time mapping — which the file renderer follows — puts
each event exactly on its boundary. (With 120 bpm at 220 or 480 ticks a beat, some beats land
a rounding error below their boundary, and pretty_midi then puts them a frame early, where a
host that places the event on its sample cannot: see docs/hosts.md.)
Re-strikes of a sounding key, chords, a one-step note and pedalled and dry passages are in;
the pedal changes on half-seconds, where the host tests start a block. With --three-pedals a
fourth bar adds the sostenuto (CC66: it catches a held chord, not the melody struck after it)
and the soft pedal (CC67: notes struck under it play softer), each change a step away from
any note, so that no host's ordering of a controller and a note at one instant matters.
"""
import sys

import mido

TICKS = 256  # a beat


def events(unit, three_pedals=False):
    """(tick, message) pairs on a grid of `unit` ticks (1/8 s): chords and a melody, the pedal
    on half-seconds (125 frames at 1000 Hz, 150 at 1200 Hz a step)."""
    out = []

    def note(key, start, length, velocity):
        out.append((start * unit, mido.Message("note_on", note=key, velocity=velocity)))
        out.append(((start + length) * unit, mido.Message("note_off", note=key, velocity=0)))

    def pedal(start, down, control=64):
        value = 127 if down else 0
        out.append((start * unit, mido.Message("control_change", control=control, value=value)))

    # bar 1, dry: a C major chord, a melody over it, a key struck again while it sounds
    for key in (48, 55, 64):
        note(key, 0, 8, 70)
    for i, (key, vel) in enumerate([(72, 90), (74, 60), (76, 100), (77, 40)]):
        note(key, 2 * i, 2, vel)
    note(64, 4, 2, 110)       # E4 again, over the chord's E4 (their velocities add)
    note(84, 7, 1, 127)       # one step (1/8 s)
    # bar 2, pedalled: the pedal on half-seconds (a JUCE host hands a VST3 its controller
    # changes at a block's start: the test's blocks start there)
    pedal(8, True)
    for i, key in enumerate([45, 52, 60, 64, 69, 72]):
        note(key, 8 + i, 1, 50 + 12 * i)
    pedal(12, False)
    note(57, 14, 2, 80)
    # bar 3: a low chord under the pedal, released together with it, then silence for the tails
    pedal(16, True)
    for key in (24, 31, 36):
        note(key, 16, 2, 95)
    pedal(20, False)
    if three_pedals:
        # bar 4: a chord held as the sostenuto goes down keeps sounding after its release;
        # the melody struck after it does not; under the soft pedal a note plays softer
        for key in (48, 55, 64):
            note(key, 23, 7, 80)
        pedal(28, True, control=66)
        note(72, 29, 1, 90)
        note(74, 31, 1, 70)
        pedal(32, True, control=67)
        note(79, 33, 2, 100)
        note(77, 35, 1, 100)
        pedal(36, False, control=66)
        pedal(36, False, control=67)
        note(72, 37, 2, 100)
    return sorted(out, key=lambda e: e[0])


def main():
    args = [a for a in sys.argv[1:] if a != "--three-pedals"]
    three_pedals = len(args) < len(sys.argv) - 1
    path = args[0]
    bpm = int(args[1]) if len(args) > 1 else 60
    if bpm not in (60, 120):
        sys.exit("quantized_midi.py: BPM is 60 or 120")
    midi = mido.MidiFile(ticks_per_beat=TICKS)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=60_000_000 // bpm, time=0))
    unit = TICKS * bpm // 480  # 1/8 s
    tick = 0
    for at, msg in events(unit, three_pedals):
        track.append(msg.copy(time=at - tick))
        tick = at
    track.append(mido.MetaMessage("end_of_track", time=4 * unit))
    midi.tracks.append(track)
    midi.save(path)


if __name__ == "__main__":
    main()
