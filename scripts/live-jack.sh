#!/usr/bin/env bash
# Plays the standalone app live through a dummy JACK server: a JACK client sends a phrase to
# its MIDI input and records its output, which is checked against `piano-ssm render` of the
# same phrase (tests/hosts/jack_live.py, jack_check.py).
# usage: scripts/live-jack.sh PYTHON OUT_DIR [jack_check.py options]
#
# JACK runs without realtime scheduling here, so on a loaded machine (a shared 2-core CI
# runner: the panel's software rendering, Xvfb, jackd and the recording client beside the
# audio thread) a cycle can miss its deadline. JACK then logs an xrun and the recording has a
# gap, which says nothing about the plugin. So: a 1024-frame period (21 ms of slack per
# cycle), and a failed attempt whose recording saw xruns is run again, up to three times; a
# failure without xruns fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
python="$1"; out="$2"; shift 2
period="${JACK_PERIOD:-1024}"
mkdir -p "$out"

# one attempt: server, display, standalone, recording; returns jack_check's status
attempt() {
    local dir="$1"
    mkdir -p "$dir"
    # a server of our own, so a JACK server the user runs is left alone
    export JACK_DEFAULT_SERVER="piano-ssm-test-$$-$RANDOM" JACK_NO_AUDIO_RESERVATION=1
    local display=":$(( 80 + RANDOM % 9 ))"
    pids=()
    jackd --no-realtime -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p "$period" >"$dir/jackd.log" 2>&1 &
    pids+=($!)
    timeout 30 jack_wait -w >/dev/null
    # the standalone opens its panel, so it gets a display
    Xvfb "$display" -screen 0 1024x768x24 >/dev/null 2>&1 &
    pids+=($!)
    sleep 1
    DISPLAY="$display" XDG_DATA_HOME="$dir/data" target/release/piano-ssm-standalone --backend jack >"$dir/standalone.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 60); do
        jack_lsp 2>/dev/null | grep -q "piano-ssm:midi_input" && break
        sleep 0.5
    done
    jack_lsp | grep -q "piano-ssm:midi_input" || { echo "error: the standalone did not join JACK:" >&2; cat "$dir/standalone.log" >&2; return 2; }
    # xruns while the standalone starts (its model loads, its panel opens) are not the test's
    local before; before=$(grep -c XRun "$dir/jackd.log" || true)
    (cd tests/hosts && "$python" jack_live.py "$dir")
    xruns=$(( $(grep -c XRun "$dir/jackd.log" || true) - before ))
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
    # the standalone starts on the built-in L, the render command's default too; named to keep them paired
    target/release/piano-ssm render "$dir/phrase.mid" "$dir/render.wav" --sample-rate 48000 --size L
    echo "JACK reported $xruns xruns during the recording (period $period frames)"
    (cd tests/hosts && "$python" jack_check.py "$dir/live.npy" "$dir/render.wav" 48000 --period "$period" "$@")
}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for try in 1 2 3; do
    xruns=0
    if attempt "$out/attempt-$try" "$@"; then
        exit 0
    fi
    if [ "$xruns" -eq 0 ]; then
        echo "error: the live recording differs from the render, with no xrun to explain it" >&2
        exit 1
    fi
    echo "attempt $try: the machine missed $xruns JACK deadlines; trying again" >&2
done
echo "error: every attempt had xruns: this machine cannot run the standalone in real time now" >&2
exit 1
