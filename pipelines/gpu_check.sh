#!/usr/bin/env bash
# One command for a machine with a GPU: the gpu tests, then featurize and training
# on CUDA against TorchANI on the same GPU (benchmarks/gpu_bench.py), figures
# written to $OUT/gpu_check (or benchmarks/results/gpu_check). Without CUDA it says
# so and exits 0.
#
#   bash pipelines/gpu_check.sh [FILES...]     # default: ../shared/data/ani_gdb_s0{1,2}.h5
#
# Python: $PYTHON, else .venv/bin/python, else python3. Packages missing there (no
# network) may be carried as wheels in .whl/: they are installed into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA device here; nothing to check"
  exit 0
fi
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEST=${OUT:-benchmarks/results}/gpu_check
mkdir -p "$DEST"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$DEST/gpu.txt" || true
status=0
"$PY" -m pytest -p no:cacheprovider -m gpu tests/e2e/test_gpu.py -q 2>&1 | tee "$DEST/tests.txt" || status=1
if [ $# -eq 0 ]; then
  set -- ../shared/data/ani_gdb_s01.h5 ../shared/data/ani_gdb_s02.h5
fi
"$PY" -m benchmarks.gpu_bench "$@" --json "$DEST/gpu_bench.json" 2>&1 | tee "$DEST/bench.txt" || status=1
echo "gpu_check: figures in $DEST"
exit $status
