"""Reading the test suite's audio: float WAVs from `piano-ssm render` and reference cases."""
import json

import numpy as np


def read_float_wav(path):
    """Samples of a 32-bit float WAV (format 3, which the wave module cannot read), as the
    file holds them (interleaved when it has several channels)."""
    data = open(path, "rb").read()
    i = data.find(b"data")
    n = int.from_bytes(data[i + 4:i + 8], "little")
    return np.frombuffer(data[i + 8:i + 8 + n], dtype="<f4")


def read_float_channels(path):
    """A 32-bit float WAV's channels, shape (channels, frames)."""
    data = open(path, "rb").read()
    i = data.find(b"fmt ")
    channels = int.from_bytes(data[i + 10:i + 12], "little")
    return read_float_wav(path).reshape(-1, channels).T


def read_case_audio(path):
    """The `audio` tensor (f32) of a safetensors reference case."""
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    start, end = header["audio"]["data_offsets"]
    assert header["audio"]["dtype"] == "F32", header["audio"]["dtype"]
    return np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4")
