#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need
# (idempotently), builds everything, runs every test and a short fuzzing pass.
# Needs ../shared/reference beside the repository (the published checkpoints and
# float64 reference renders the conformance tests compare against).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

step() { printf '\n==> %s\n' "$*"; }

step "checking ../shared/reference"
test -f ../shared/reference/README.md || { echo "error: ../shared/reference is missing (clone beside shared/)" >&2; exit 1; }

step "building"
cargo test --workspace --locked --no-run

step "unit, conformance and command tests"
cargo test --workspace --locked

step "benchmark compiles (run it with: taskset -c 1 cargo bench -p ssm-runtime)"
cargo bench -p ssm-runtime --no-run --locked

step "fuzzing the model loader, checkpoint importer and MIDI reader (${FUZZ_SECONDS} s each)"
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for target in model_loader checkpoint_import midi_reader; do
    corpus="target/fuzz-corpus/$target"
    mkdir -p "$corpus"
    case "$target" in
        model_loader) target/debug/piano-ssm import ../shared/reference/weights/PianoSSM_S_MH_maestro_all_16000_model.pth "$corpus/s.safetensors" ;;
        checkpoint_import) cp ../shared/reference/weights/PianoSSM_S_MH_maestro_all_16000_model.pth "$corpus/" ;;
        midi_reader) cp ../shared/reference/midi/*.mid "$corpus/" ;;
    esac
    (cd fuzz && cargo fuzz run "$target" "../$corpus" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 2>&1 | tail -n 3)
done
echo "fuzzing found no crash"
