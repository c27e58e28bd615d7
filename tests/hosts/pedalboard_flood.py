"""A host's flood of events in one block, through the built VST3 in pedalboard (JUCE): every
MIDI controller on all 16 channels, twice (JUCE hands a VST3 its controllers as changes of the
framework's 2080 MIDI-controller parameters, as Ardour does) and 600 notes, all in the first
512-sample block, then a second of quiet. The plugin must play on with finite output; the test
script also fails if the framework logs that its event buffer filled up (an allocation on the
audio thread), which it writes to stderr.

usage: pedalboard_flood.py PLUGIN.vst3
Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on failure.
"""
import sys

import mido
import numpy as np
import pedalboard

from report import finish

RATE, BLOCK = 48000, 512
CCS, NOTES = 2 * 16 * 128, 400


def flood():
    """The messages, all inside the first block, with times in seconds."""
    span = (BLOCK - 1) / RATE
    out = []
    for j in range(CCS):
        # every controller on every channel, twice: all 2048 controller parameters change
        out.append(mido.Message("control_change", channel=j // 128 % 16, control=j % 128,
                                value=j % 128, time=span * j / CCS))
    for j in range(NOTES):
        key, ch = 21 + j % 88, j % 16
        out.append(mido.Message("note_on", channel=ch, note=key, velocity=20 + j % 100,
                                time=span * j / (2 * NOTES)))
        if j % 2 == 0:
            out.append(mido.Message("note_off", channel=ch, note=key,
                                    time=span / 2 + span * j / (2 * NOTES)))
    return sorted(out, key=lambda m: m.time)


def main():
    plugin = pedalboard.load_plugin(sys.argv[1])
    messages = flood()
    audio = plugin(messages, duration=1.0, sample_rate=RATE, num_channels=2, buffer_size=BLOCK,
                   reset=True)
    peak = float(np.max(np.abs(audio)))
    checks = {
        f"{len(messages)} messages in one {BLOCK}-sample block: finite output, peak {peak:.3f}":
            bool(np.all(np.isfinite(audio))) and peak > 0.0,
    }
    finish(checks)


if __name__ == "__main__":
    main()
