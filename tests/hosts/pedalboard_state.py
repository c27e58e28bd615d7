"""A value the host sets is in the state the host saves at once, before the next audio block
(a DAW that saves its session right after a change), and a second instance given that state
plays with it. Runs the built VST3 in pedalboard (JUCE), which keeps the plugin processing
between renders as a DAW with its engine running does.

usage: pedalboard_state.py PLUGIN.vst3
Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on failure.
"""
import sys

import numpy as np
import pedalboard

from report import finish

RATE = 48000


def main():
    path = sys.argv[1]
    plugin = pedalboard.load_plugin(path)
    # a block of audio: the plugin is now processing, as in a running DAW
    plugin([], duration=0.05, sample_rate=RATE, num_channels=2, buffer_size=512)
    checks = {}
    for name, raw in [("gain_db", 0.3), ("velocity_curve", 0.8), ("transpose_st", 0.75)]:
        param = plugin.parameters[name]
        param.raw_value = raw
        wanted = param.raw_value  # as the parameter rounds it (steps)
        state = plugin.raw_state  # saved at once, no audio block in between
        other = pedalboard.load_plugin(path)
        other.raw_state = state
        got = other.parameters[name].raw_value
        checks[f"{name} set to {param.string_value} and saved at once: reloaded {other.parameters[name].string_value}"] = (
            bool(np.isclose(got, wanted, atol=1e-6)))
    finish(checks)


if __name__ == "__main__":
    main()
