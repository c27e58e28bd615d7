# Sourced by the test script (and usable by hand: `source scripts/libtorch.sh`): installs
# libtorch from PyPI's torch==2.13.0 wheel into target/torch-venv, idempotently, and points
# tch's build at it. Lean install: the wheel without its Python dependencies, plus the two
# small CUDA runtime wheels libtorch_cpu links against (it runs on CPU without a GPU).
# On a CUDA machine use the full `pip install torch==2.13.0` and build with --features cuda.
torch_venv="${TORCH_VENV:-$PWD/target/torch-venv}"
if [ ! -f "$torch_venv/.piano-ssm-torch-2.13.0" ]; then
    python3 -m venv "$torch_venv"
    "$torch_venv/bin/pip" install -q --no-deps torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    touch "$torch_venv/.piano-ssm-torch-2.13.0"
fi
LIBTORCH="$("$torch_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch"
export LIBTORCH
unset LIBTORCH_USE_PYTORCH
