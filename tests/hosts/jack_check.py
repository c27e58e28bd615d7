"""Compare a live JACK recording of the standalone (jack_live.py) with `piano-ssm render` of
the same phrase and model.

usage: jack_check.py LIVE.npy REFERENCE.wav SAMPLE_RATE [--period FRAMES] [--pitch-informative]

The live output is the offline render delayed by the plugin's latency plus whatever the JACK
graph adds (a cycle of --period frames, 256 unless given), so the checks are: that delay is
under one cycle plus 20 ms; after removing it the
recording correlates with the render; and note by note, the recording's onset lies within
20 ms of the render's and its pitch (near the key) within 25 cents of the render's. The
render is the reference for what the model plays; whether that is a good piano is checked
by the model's own sound tests (ssm-runtime/tests/builtin_sound.rs). With
--pitch-informative the correlation and pitch lines are printed but do not fail the run: a
model without clear pitches (an untrained one) gives them nothing to lock onto.
Prints one line per check; exits non-zero on failure.
"""
import sys

import numpy as np

from audio_files import read_float_channels
from jack_live import NOTES, START_MS


def best_lag(live, ref, max_lag):
    """The delay of `live` against `ref` (0..max_lag samples) by cross-correlation."""
    n = len(ref) + max_lag
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(live[:n], size) * np.conj(np.fft.rfft(ref, size)), size)
    return int(np.argmax(corr[:max_lag + 1]))


def highpass(x, rate, hz=20.0):
    """Removes content below `hz` (sub-audio drift says nothing about notes or timing)."""
    spec = np.fft.rfft(x)
    spec[:int(hz * len(x) / rate)] = 0
    return np.fft.irfft(spec, len(x))


def envelope(x, rate):
    """RMS per 1 ms."""
    hop = rate // 1000
    return np.sqrt(np.mean(x[:len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))


def onset_level(env, t):
    """A tenth of the way from the envelope's level just before note-on time `t` to the note's
    peak, or None where the note does not rise (its peak under 1.25 times the level before
    it, 2 dB, or under -80 dBFS): then there is no onset to time, and the check fails rather
    than compare two flat envelopes. (A key struck again while its last strike still rings
    rises by less than 2x: 1.7x for the built-in L's third repeated E5.)"""
    i = int(round(t * 1000))
    before = env[max(i - 60, 0):max(i - 10, 1)].mean()
    peak = env[i:i + 100].max()
    if peak < max(1.25 * before, 1e-4):
        return None
    return before + 0.1 * (peak - before)


def onset(env, t, level):
    """Where the envelope first reaches `level`, searched from 25 ms before `t` to 100 ms
    after; None if it does not."""
    i = int(round(t * 1000))
    rise = np.nonzero(env[max(i - 25, 0):i + 100] >= level)[0]
    return (max(i - 25, 0) + rise[0]) / 1000 if len(rise) else None


def pitch(x, rate, t, key):
    """The strongest spectral peak within a semitone of `key` in the note's first 200 ms."""
    seg = x[int(t * rate):int((t + 0.2) * rate)]
    size = 1 << 18
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), size))
    f = 440.0 * 2 ** ((key - 69) / 12)
    lo, hi = int(f * 2 ** (-1 / 12) * size / rate), int(f * 2 ** (1 / 12) * size / rate) + 1
    return (lo + int(np.argmax(spec[lo:hi]))) * rate / size


def main():
    live_path, ref_path, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options = sys.argv[4:]
    informative = "--pitch-informative" in options
    period = int(options[options.index("--period") + 1]) if "--period" in options else 256
    # the recording is the standalone's first (left) output
    live, ref = np.load(live_path).astype(np.float64), read_float_channels(ref_path)[0].astype(np.float64)
    live, ref = highpass(live, rate), highpass(ref, rate)
    checks = []
    lag = best_lag(live, ref, int(0.1 * rate) + period)
    limit = period + int(0.02 * rate)
    checks.append((lag <= limit, True, f"live output {lag} samples ({1000 * lag / rate:.1f} ms) behind the render (at most {limit})"))
    n = min(len(ref), len(live) - lag)
    aligned, ref = live[lag:lag + n], ref[:n]
    # not sample-identical: live, the plugin's 1 ms key frames are counted from when it
    # started, not from the phrase, and its state has been running since then
    corr = float(np.dot(aligned, ref) / (np.linalg.norm(aligned) * np.linalg.norm(ref)))
    checks.append((corr >= 0.9, not informative, f"after that delay, correlation {corr:.3f} >= 0.9 with the render"))
    live_env, ref_env = envelope(aligned, rate), envelope(ref, rate)
    for start, key, _, _ in NOTES:
        t = (START_MS + start) / 1000
        # the same threshold on both, set on the render
        level = onset_level(ref_env, t)
        if level is None:
            checks.append((False, True, f"key {key} at {t:.2f} s: the render does not rise there, no onset to time"))
            continue
        a, b = onset(live_env, t, level), onset(ref_env, t, level)
        if a is None:
            checks.append((False, True, f"key {key} at {t:.2f} s: the live recording never reaches the render's onset level"))
            continue
        checks.append((abs(a - b) <= 0.02, True, f"key {key} at {t:.2f} s: live onset {a:.3f} s (after the delay), render {b:.3f} s"))
        fa, fb = pitch(aligned, rate, a, key), pitch(ref, rate, b, key)
        cents = 1200 * np.log2(fa / fb)
        checks.append((abs(cents) <= 25, not informative, f"key {key} at {t:.2f} s: live {fa:.1f} Hz, render {fb:.1f} Hz ({cents:+.0f} cents)"))
    passed = failed = 0
    for ok, enforced, what in checks:
        print(("ok   " if ok else "FAIL " if enforced else "info ") + what)
        passed += ok
        failed += enforced and not ok
    print(f"{passed} passed, {failed} failed, {len(checks) - passed - failed} informational")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
