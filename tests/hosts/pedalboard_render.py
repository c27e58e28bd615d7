"""Render a MIDI file through the built Piano-SSM VST3 inside pedalboard (a JUCE host) and
compare with `piano-ssm render` of the same file, model and rate.

usage: pedalboard_render.py PLUGIN.vst3 IN.mid REFERENCE SAMPLE_RATE BLOCK_SIZE LATENCY [MAX_REL_L2 [FAMILY]]

REFERENCE is a float WAV written by `piano-ssm render` (mono, or stereo: each output channel
against its own), or a reference case (.safetensors from ../shared/reference/cases, its
`audio` tensor, mono).

LATENCY is the plugin's reported latency in samples (one MIDI frame, ceil(rate / 1000)):
pedalboard compensates latency for effects but not for instruments, so this harness does
what a DAW's delay compensation does and drops that many leading samples.
Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on failure.
"""
import sys

import mido
import numpy as np
import pedalboard

from audio_files import read_case_audio, read_float_channels
from report import finish


def messages(path):
    """The file's messages with absolute times in seconds, as pedalboard wants them."""
    t = 0.0
    out = []
    for msg in mido.MidiFile(path):
        t += msg.time
        if not msg.is_meta and msg.type in ("note_on", "note_off", "control_change"):
            out.append(msg.copy(time=t))
    return out


def main():
    plugin_path, midi_path, ref_path, rate, block, latency = sys.argv[1:7]
    limit = float(sys.argv[7]) if len(sys.argv) > 7 else 1e-4
    family = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    rate, block, latency = int(rate), int(block), int(latency)
    if ref_path.endswith(".safetensors"):
        reference = read_case_audio(ref_path)[None, :]
    else:
        reference = read_float_channels(ref_path)
    ref_left, ref_right = reference[0], reference[-1]
    plugin = pedalboard.load_plugin(plugin_path)
    assert plugin.is_instrument, "the bundle loads as an instrument"
    if family:
        # an integer parameter: set its normalised value (index / (steps - 1))
        param = plugin.parameters["model_family"]
        param.raw_value = family / (param.num_steps - 1)
        print(f"model family {family}: {param.string_value}")
    n = len(ref_left)
    audio = plugin(messages(midi_path), duration=(n + latency) / rate, sample_rate=rate,
                   num_channels=2, buffer_size=block, reset=True)
    lead = audio[:, :latency]
    left, right = audio[0][latency:latency + n], audio[1][latency:latency + n]
    mono = bool(np.array_equal(ref_left, ref_right))
    checks = {
        f"the two channels are the same exactly when the reference's are ({mono})":
            bool(np.array_equal(left, right)) == mono,
        f"silent for the {latency} samples of reported latency": bool(np.all(lead == 0.0)),
    }
    for name, ours, theirs in (("left", left, ref_left), ("right", right, ref_right)):
        err = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
        checks[f"{name}: relative L2 {err:.2e} <= {limit:g} at {rate} Hz, block {block}"] = err <= limit
    finish(checks)


if __name__ == "__main__":
    main()
