#!/usr/bin/env bash
# Make .venv with aevpipe and its test tools. PyTorch 2.13.0 (CPU build) is
# installed first so that TorchANI's torch<=2.13 pin is met without a CUDA download.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import aevpipe, torch, torchani; print('aevpipe ready: torch', torch.__version__, 'torchani', torchani.__version__)"
