#!/usr/bin/env bash
# The main job, offline: set up, then synth (SYNTHETIC demo data) -> featurize ->
# train -> report into data/demo, in a few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash pipelines/setup.sh
.venv/bin/aevpipe demo --out data/demo --no-progress "$@"
