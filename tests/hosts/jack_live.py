"""Play the standalone app live through JACK and record it.

usage: jack_live.py OUT_DIR

Needs a running JACK server and `piano-ssm-standalone --backend jack` connected to it. A JACK
client sends a short phrase to the standalone's MIDI input in real time (each event at its
exact frame inside a JACK cycle), records the standalone's left output, and writes:
  OUT_DIR/phrase.mid   the phrase as a MIDI file (1 tick = 1 ms), for `piano-ssm render`
  OUT_DIR/live.npy     the recording (float32), starting at the phrase's time zero
Then `jack_check.py` compares the recording with the offline render.
"""
import sys
import threading
import time

import jack
import mido
import numpy as np

# (start ms, key, velocity, length ms) and the pedal (ms, value): a C major arpeggio, a chord
# held by the pedal, a fast repeated note
NOTES = [(0, 60, 90, 300), (400, 64, 80, 300), (800, 67, 85, 300), (1200, 72, 100, 300),
         (1700, 48, 70, 200), (1700, 55, 70, 200), (1700, 64, 70, 200),
         (2500, 76, 60, 100), (2650, 76, 75, 100), (2800, 76, 90, 100)]
PEDAL = [(1650, 127), (2300, 0)]
# a second of silence first: the file render starts the model from rest, the live plugin has
# been running, and both should have settled before the first note
START_MS = 1000
LEAD_SECONDS = 0.5  # JACK time between the recording's start and the phrase's time zero
TAIL_SECONDS = 2.0


def events():
    """(ms, raw MIDI bytes) in time order."""
    out = []
    for start, key, vel, length in NOTES:
        out.append((START_MS + start, (0x90, key, vel)))
        out.append((START_MS + start + length, (0x80, key, 0)))
    out += [(START_MS + ms, (0xB0, 64, value)) for ms, value in PEDAL]
    return sorted(out, key=lambda e: e[0])


def write_midi(path):
    midi = mido.MidiFile(ticks_per_beat=500)  # 120 bpm: 500 ticks per 0.5 s beat = 1 ms
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    now = 0
    for ms, (status, a, b) in events():
        track.append(mido.Message.from_bytes([status, a, b]).copy(time=ms - now))
        now = ms
    midi.save(path)


def main():
    out_dir = sys.argv[1]
    write_midi(f"{out_dir}/phrase.mid")
    client = jack.Client("piano-ssm-live-test", no_start_server=True)
    rate = client.samplerate
    phrase = [(int(round(ms * rate / 1000)), bytes(msg)) for ms, msg in events()]
    total = int((LEAD_SECONDS + phrase[-1][0] / rate + TAIL_SECONDS) * rate)
    midi_out = client.midi_outports.register("phrase")
    rec = client.inports.register("rec")
    recording = np.zeros(total + 8192, dtype=np.float32)
    state = {"zero": None, "next": 0, "done": threading.Event()}

    @client.set_process_callback
    def process(frames):
        midi_out.clear_buffer()
        now = client.last_frame_time
        if state["zero"] is None:
            state["zero"] = now + int(LEAD_SECONDS * rate)
        zero = state["zero"]
        while state["next"] < len(phrase):
            at = zero + phrase[state["next"]][0]
            if at >= now + frames:
                break
            midi_out.write_midi_event(max(at - now, 0), phrase[state["next"]][1])
            state["next"] += 1
        # the recording is indexed from the phrase's time zero (earlier samples dropped)
        begin = now - (zero - int(LEAD_SECONDS * rate))
        data = rec.get_array()
        if 0 <= begin < total:
            n = min(frames, total - begin)
            recording[begin:begin + n] = data[:n]
        elif begin >= total:
            state["done"].set()

    with client:
        targets = [p for p in client.get_ports(is_midi=True, is_input=True) if not p.name.startswith("piano-ssm-live-test")]
        outputs = [p for p in client.get_ports(is_audio=True, is_output=True) if not p.name.startswith("system")]
        if not targets or not outputs:
            sys.exit(f"no standalone on the JACK graph (MIDI inputs {targets}, audio outputs {outputs})")
        print(f"sending to {targets[0].name}, recording {outputs[0].name} at {rate} Hz")
        client.connect(midi_out, targets[0])
        client.connect(outputs[0], rec)
        if not state["done"].wait(timeout=total / rate + 30):
            sys.exit("the JACK graph stopped running before the phrase ended")
    lead = int(LEAD_SECONDS * rate)
    np.save(f"{out_dir}/live.npy", recording[lead:total])
    print(f"recorded {(total - lead) / rate:.2f} s")


if __name__ == "__main__":
    main()
