#!/usr/bin/env bash
# Fuzzes the readers of untrusted files: byte-level (model loader, checkpoint importer, MIDI
# reader) and structure-aware (pickle programs in zip containers, MIDI files of many
# instruments). The test command runs each for 20 s; for a longer hunt:
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh                 # every target, 10 minutes each
#   FUZZ_SECONDS=3600 bash scripts/fuzz.sh midi_structure # one target, an hour
# Corpora grow in target/fuzz-corpus/<target>; a crash is saved in fuzz/artifacts/<target>.
# Needs target/debug/piano-ssm (cargo build) for the model loader's seed.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(model_loader checkpoint_import midi_reader checkpoint_structure midi_structure)

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
    corpus="target/fuzz-corpus/$target"
    mkdir -p "$corpus"
    case "$target" in
        model_loader) target/debug/piano-ssm import ../shared/reference/weights/PianoSSM_S_MH_maestro_all_16000_model.pth "$corpus/s.safetensors" ;;
        checkpoint_import) cp ../shared/reference/weights/PianoSSM_S_MH_maestro_all_16000_model.pth "$corpus/" ;;
        midi_reader) cp ../shared/reference/midi/*.mid "$corpus/" ;;
    esac
    # 2 GB: the importer's budget is 64 MB, a MIDI file's 8 MB; more is a leak to report
    (cd fuzz && cargo fuzz run "$target" "../$corpus" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 2>&1 | tail -n 3)
done
echo "fuzzing found no crash"
