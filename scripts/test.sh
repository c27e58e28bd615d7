#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need
# (idempotently), builds everything, runs every test and a short fuzzing pass.
# Needs ../shared/reference beside the repository (the published checkpoints and
# float64 reference renders the conformance tests compare against).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
# one clean build: incremental caches would only take disk (1.6 GB)
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "checking ../shared/reference"
test -f ../shared/reference/README.md || { echo "error: ../shared/reference is missing (clone beside shared/)" >&2; exit 1; }

step "style gate: cargo fmt --check (fails fast, before anything is installed)"
cargo fmt --all --check

step "system packages (ALSA/JACK headers; Xvfb, xdotool, imagemagick for the panel screenshot; SoundFonts and npm for the trainer)"
missing=()
for pkg in libasound2-dev libjack-jackd2-dev xvfb xdotool imagemagick fluid-soundfont-gm timgm6mb-soundfont; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# npm fetches the Salamander samples; the machine's own Node.js usually brings it
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

step "libtorch for the trainer (PyPI torch==2.13.0, lean CPU install into target/torch-venv)"
source scripts/libtorch.sh

step "Salamander test subset (velocity layer 8 and the releases, 5.4 MB) for the sampler's tests"
bash scripts/fetch-salamander.sh --test target/salamander-test

step "pretty_midi for the roll encoder's differential test (target/midi-venv)"
if ! target/midi-venv/bin/python -c "import pretty_midi" 2>/dev/null; then
    python3 -m venv target/midi-venv
    target/midi-venv/bin/pip install -q pretty_midi==0.2.11.post0 mido==1.3.3 numpy
fi

step "lint gate: cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building"
cargo test --workspace --locked --no-run

step "unit, conformance and command tests"
cargo test --workspace --locked

step "benchmarks compile (run them with: taskset -c 1 cargo bench -p ssm-runtime; cargo bench -p trainer)"
cargo bench -p ssm-runtime -p piano-ssm-cli -p trainer --no-run --locked

step "plugin bundles (cargo xtask bundle plugin --release)"
cargo xtask bundle plugin --release

step "the VST3 in a real host: pedalboard (JUCE) against piano-ssm render"
venv=target/host-venv
if ! "$venv/bin/python" -c "import pedalboard, mido, numpy" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pedalboard==0.9.26 mido numpy
fi
host_tmp=$(mktemp -d)
trap 'rm -rf "$host_tmp"' EXIT
# a user model folder holding only the imported XL checkpoint (family 1, after the built-in
# family 0): the plugin's default size (L) falls back to the nearest size the family has, and
# its default head is 2009
models="$host_tmp/data/piano-ssm/models"
mkdir -p "$models"
xl=../shared/reference/weights/PianoSSM_XL_MH_maestro_all_44100_model.pth
cargo build --release --locked --bin piano-ssm
target/release/piano-ssm import "$xl" "$models/xl.safetensors"
# JUCE hands a VST3 MIDI CCs (the sustain pedal) as parameter changes at the start of the
# block, so the blocks here start on pedal.mid's pedal changes (multiples of 0.5 s); notes are
# sample-accurate at any block size (the scale case below, 512), and the CLAP host further down
# is sample-accurate for the pedal too
for rate_block in 44100:441 48000:64 48000:1000; do
    rate=${rate_block%%:*}; block=${rate_block##*:}
    ref="$host_tmp/ref-$rate.wav"
    [ -f "$ref" ] || target/release/piano-ssm render ../shared/reference/midi/pedal.mid "$ref" \
        --model "$models/xl.safetensors" --year 2009 --sample-rate "$rate"
    XDG_DATA_HOME="$host_tmp/data" "$venv/bin/python" tests/hosts/pedalboard_render.py \
        "$PWD/target/bundled/Piano-SSM.vst3" ../shared/reference/midi/pedal.mid "$ref" "$rate" "$block" \
        $(( (rate + 999) / 1000 )) 1e-4 1
done
# and against the float64 reference render of the published XL at its own 44.1 kHz
XDG_DATA_HOME="$host_tmp/data" "$venv/bin/python" tests/hosts/pedalboard_render.py \
    "$PWD/target/bundled/Piano-SSM.vst3" ../shared/reference/midi/scale.mid \
    ../shared/reference/cases/XL_44100_at_44100_scale_y2009.safetensors 44100 512 45 1e-3 1

# the built-in Grand (family 0, 1200 Hz frames) on quantized MIDI, every event on a frame
# boundary: a host's rounding to the sample must not move a note by a frame; with the three
# pedals (sustain, sostenuto CC66, soft CC67), each equal to the file render
"$venv/bin/python" tests/hosts/quantized_midi.py "$host_tmp/quantized.mid" 60 --three-pedals
for rate_block in 44100:441 48000:64 96000:128; do
    rate=${rate_block%%:*}; block=${rate_block##*:}
    target/release/piano-ssm render "$host_tmp/quantized.mid" "$host_tmp/quantized-$rate.wav" \
        --sample-rate "$rate"
    XDG_DATA_HOME="$host_tmp/data" "$venv/bin/python" tests/hosts/pedalboard_render.py \
        "$PWD/target/bundled/Piano-SSM.vst3" "$host_tmp/quantized.mid" "$host_tmp/quantized-$rate.wav" \
        "$rate" "$block" $(( (rate + 999) / 1000 )) 1e-4 0
done

# a value the host sets is in the state it saves at once, while the plugin is processing
XDG_DATA_HOME="$host_tmp/data" "$venv/bin/python" tests/hosts/pedalboard_state.py \
    "$PWD/target/bundled/Piano-SSM.vst3"
# a host's event flood in one block (every MIDI-controller parameter, hundreds of notes): the
# framework must not grow its event queues on the audio thread (it says so in its log)
no_event_buffer_growth() {
    if grep -q "filled up" "$1"; then
        grep "filled up" "$1" >&2
        echo "error: the plugin framework allocated on the audio thread ($1)" >&2
        exit 1
    fi
}
XDG_DATA_HOME="$host_tmp/data" "$venv/bin/python" tests/hosts/pedalboard_flood.py \
    "$PWD/target/bundled/Piano-SSM.vst3" 2>&1 | tee "$host_tmp/vst3-flood.log"
no_event_buffer_growth "$host_tmp/vst3-flood.log"

step "the VST3 in Ardour 7 (headless ardour7-lua, Dummy backend): bounces against piano-ssm render, a saved session"
if ! command -v ardour7-lua >/dev/null && ! command -v ardour8-lua >/dev/null; then
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends ardour
fi
# the built-in Grand XL on quantized MIDI at three rates: each bounce equals the file render,
# and a gain set and saved at once survives closing and reopening (tests/hosts/ardour_session.py)
"$venv/bin/python" tests/hosts/ardour_session.py "$PWD/target/bundled/Piano-SSM.vst3" \
    target/release/piano-ssm "$host_tmp/ardour" 44100 48000 96000

step "the CLAP in a CLAP host (tests/clap-host, on clack-host): host checks and renders"
cargo build --release --locked -p clap-host
for rate_block in 44100:512 48000:64 48000:1000; do
    rate=${rate_block%%:*}; block=${rate_block##*:}
    XDG_DATA_HOME="$host_tmp/data" target/release/clap-render target/bundled/Piano-SSM.clap \
        ../shared/reference/midi/pedal.mid "$host_tmp/ref-$rate.wav" "$rate" "$block" 1e-4 1
done
XDG_DATA_HOME="$host_tmp/data" target/release/clap-render target/bundled/Piano-SSM.clap \
    ../shared/reference/midi/scale.mid ../shared/reference/cases/XL_44100_at_44100_scale_y2009.safetensors 44100 512 1e-3 1
# the three pedals through the CLAP, sample-accurate (the quantized file rendered above)
for rate_block in 44100:64 44100:512 48000:64 96000:1000; do
    rate=${rate_block%%:*}; block=${rate_block##*:}
    XDG_DATA_HOME="$host_tmp/data" target/release/clap-render target/bundled/Piano-SSM.clap \
        "$host_tmp/quantized.mid" "$host_tmp/quantized-$rate.wav" "$rate" "$block" 1e-4 0
done

# a project keeps its model family when a family that sorts first is added to the folder
XDG_DATA_HOME="$host_tmp/data" target/release/clap-render catalog target/bundled/Piano-SSM.clap "$models"
XDG_DATA_HOME="$host_tmp/data" target/release/clap-render flood target/bundled/Piano-SSM.clap \
    48000 512 2>&1 | tee "$host_tmp/clap-flood.log"
no_event_buffer_growth "$host_tmp/clap-flood.log"
# positive control: more controllers in one block than the plugin's event capacity (16384)
# must make the framework say so, or the two checks above could not see it
XDG_DATA_HOME="$host_tmp/data" target/release/clap-render flood target/bundled/Piano-SSM.clap \
    48000 512 20000 > "$host_tmp/clap-overflow.log" 2>&1
grep -q "filled up" "$host_tmp/clap-overflow.log" || {
    echo "error: 20000 controllers in one block did not make the framework warn; the flood checks cannot see its warning" >&2
    exit 1
}

# the CPU-load table of docs/hosts.md (informative: CI machines are shared), for the published
# S, L and XL imported as one family
for size in S L; do
    target/release/piano-ssm import "../shared/reference/weights/PianoSSM_${size}_MH_maestro_all_44100_model.pth" "$models/$size.safetensors"
done
XDG_DATA_HOME="$host_tmp/data" target/release/clap-render cpu target/bundled/Piano-SSM.clap \
    ../shared/reference/midi/pedal.mid 48000 128 1
# and for the built-in Grand (family 0), whose engine sleeps in silence
XDG_DATA_HOME="$host_tmp/data" target/release/clap-render cpu target/bundled/Piano-SSM.clap \
    ../shared/reference/midi/pedal.mid 48000 128 0

step "the panel under Xvfb (screenshot kept as target/artefacts/panel.png)"
cargo build --release --locked -p plugin --bin piano-ssm-standalone
mkdir -p target/artefacts
bash scripts/screenshot.sh target/artefacts/panel.png "$host_tmp/data"
# a blank or failed capture is a few kilobytes; the drawn panel is far larger
size=$(stat -c %s target/artefacts/panel.png)
[ "$size" -gt 10000 ] || { echo "error: the panel screenshot is only $size bytes" >&2; exit 1; }

step "the standalone played live through JACK (dummy driver), against piano-ssm render"
dpkg -s jackd2 >/dev/null 2>&1 || {
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends jackd2
}
"$venv/bin/python" -c "import jack" 2>/dev/null || "$venv/bin/pip" install -q JACK-Client==0.5.7
# the built-in model plays: timing, correlation and pitch lines are all enforced
bash scripts/live-jack.sh "$PWD/$venv/bin/python" "$host_tmp/live"

step "fuzzing: bytes and structure-aware inputs for the model loader, checkpoint importer and MIDI reader (${FUZZ_SECONDS} s each)"
FUZZ_SECONDS="$FUZZ_SECONDS" bash scripts/fuzz.sh
