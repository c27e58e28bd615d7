#!/usr/bin/env bash
# Plays the standalone app live through a dummy JACK server: a JACK client sends a phrase to
# its MIDI input and records its output, which is checked against `piano-ssm render` of the
# same phrase (tests/hosts/jack_live.py, jack_check.py).
# usage: scripts/live-jack.sh PYTHON OUT_DIR [jack_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
python="$1"; out="$2"; shift 2
mkdir -p "$out"
# a server of our own, so a JACK server the user runs is left alone
export JACK_DEFAULT_SERVER="piano-ssm-test-$$" JACK_NO_AUDIO_RESERVATION=1
display=":$(( 80 + RANDOM % 9 ))"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
jackd --no-realtime -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 >"$out/jackd.log" 2>&1 &
pids+=($!)
timeout 30 jack_wait -w >/dev/null
# the standalone opens its panel, so it gets a display
Xvfb "$display" -screen 0 1024x768x24 >/dev/null 2>&1 &
pids+=($!)
sleep 1
DISPLAY="$display" XDG_DATA_HOME="$out/data" target/release/piano-ssm-standalone --backend jack >"$out/standalone.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
    jack_lsp 2>/dev/null | grep -q "piano-ssm:midi_input" && break
    sleep 0.5
done
jack_lsp | grep -q "piano-ssm:midi_input" || { echo "error: the standalone did not join JACK:" >&2; cat "$out/standalone.log" >&2; exit 1; }
(cd tests/hosts && "$python" jack_live.py "$out")
# the standalone starts on the built-in L, the render command's default too; named to keep them paired
target/release/piano-ssm render "$out/phrase.mid" "$out/render.wav" --sample-rate 48000 --size L
(cd tests/hosts && "$python" jack_check.py "$out/live.npy" "$out/render.wav" 48000 "$@")
