"""The training pipeline's piano roll of MIDI files, for the differential test
(pretty_midi_roll.rs): for every FILE.mid in DIR and each rate, FILE.RATE.roll holds
u32 frames, u32 keys (88), then frames x 88 little-endian u16 values: pretty_midi's
get_piano_roll(fs=rate), rows 21..108 (A0..C8), before the pipeline's uint8 cast.
A file pretty_midi cannot read gets FILE.err with the reason instead.

    python pretty_midi_roll.py DIR 1000 1200 1764
"""
import pathlib
import sys
import warnings

import numpy as np
import pretty_midi


def main():
    folder = pathlib.Path(sys.argv[1])
    rates = [int(r) for r in sys.argv[2:]]
    warnings.simplefilter("ignore")
    for path in sorted(folder.glob("*.mid")):
        try:
            pm = pretty_midi.PrettyMIDI(str(path))
        except Exception as e:  # the test counts these and needs enough readable files
            path.with_suffix(".err").write_text(f"{type(e).__name__}: {e}")
            continue
        for fs in rates:
            roll = pm.get_piano_roll(fs=fs)[21:109].T
            values = np.clip(roll, 0, 65535).astype("<u2")
            header = np.array([values.shape[0], 88], dtype="<u4")
            with open(path.with_suffix(f".{fs}.roll"), "wb") as f:
                f.write(header.tobytes())
                f.write(np.ascontiguousarray(values).tobytes())


if __name__ == "__main__":
    main()
