#!/usr/bin/env bash
# The GPU check in one command, on a machine with an NVIDIA GPU (benchmarks/README.md):
#
#   bash benchmarks/gpu_check.sh prepare      # on a machine with network: lark's wheel into .whl/
#   bash benchmarks/gpu_check.sh [--quick]    # on the GPU machine: install, tests on CuPy, benchmark
#
# 1. dependencies: wheels in .whl/ (for machines that cannot download), else pip: CuPy
#    (cupy-cuda12x, the [gpu] extra; a CUDA 13 machine with cupy-cuda13x already installed keeps it)
#    and lark; ntkdsl itself runs from this checkout (PYTHONPATH);
# 2. the backend-parametrised tests (tests/test_backends.py, tests/test_cupy_backend.py): their
#    "cupy" cases run on the GPU here, and skip on machines without one;
# 3. benchmarks/gpu_check.py: FCN ReLU depth 10 at N = 20000 (float32, float64) and the 21-layer
#    CNN on 32x32x3 (flatten, GAP; float32) in ms per entry against neural-tangents' V100 figures.
# Logs and the table go to $OUT (the device tool's output folder) or benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "prepare" ]; then
    mkdir -p .whl
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "lark==1.3.1" || exit 1
    echo "wheels in .whl/: $(ls .whl | tr '\n' ' ')(keep .whl out of git: echo /.whl/ >> \"\$(git rev-parse --git-path info/exclude)\")"
    exit 0
fi

RESULTS=${OUT:-benchmarks/results}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ntkdsl-site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/ntkdsl-site"
fi
"$PY" -c "import cupy" 2>/dev/null || "$PY" -m pip install -q cupy-cuda12x || { echo "gpu_check: no CuPy"; exit 1; }
"$PY" -c "import lark" 2>/dev/null || "$PY" -m pip install -q "lark>=1.1.5" || { echo "gpu_check: no lark"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null

echo "== tests (backend-parametrised; the cupy cases on the GPU) =="
"$PY" -m pytest -q -p no:cacheprovider -rs tests/test_backends.py tests/test_cupy_backend.py 2>&1 | tee "$RESULTS/gpu_tests.log"
tests=${PIPESTATUS[0]}

echo "== benchmark =="
"$PY" benchmarks/gpu_check.py --json "$RESULTS/gpu_check.json" "$@" 2>&1 | tee "$RESULTS/gpu_check.txt"
bench=${PIPESTATUS[0]}
echo "gpu_check: tests exit $tests, benchmark exit $bench"
exit $(( tests != 0 || bench != 0 ))
