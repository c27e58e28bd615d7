# Installs libtorch from PyPI's torch==2.13.0 wheel into target/torch-venv, idempotently, and
# links it at target/libtorch, where .cargo/config.toml points tch's build (LIBTORCH), so
# `cargo run -p trainer` works from any shell afterwards. Run it once (`bash
# scripts/libtorch.sh`); the test script sources it, which also exports LIBTORCH.
# Lean install: the wheel without its Python dependencies, plus the two small CUDA runtime
# wheels libtorch_cpu links against (it runs on CPU without a GPU).
# On a CUDA machine use the full `pip install torch==2.13.0` and build with --features cuda.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$repo_root/target"
torch_venv="${TORCH_VENV:-$repo_root/target/torch-venv}"
if [ ! -f "$torch_venv/.piano-ssm-torch-2.13.0" ]; then
    python3 -m venv "$torch_venv"
    "$torch_venv/bin/pip" install -q --no-deps torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    touch "$torch_venv/.piano-ssm-torch-2.13.0"
fi
LIBTORCH="$("$torch_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch"
export LIBTORCH
ln -sfn "$LIBTORCH" "$repo_root/target/libtorch"
unset LIBTORCH_USE_PYTORCH
