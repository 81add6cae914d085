#!/usr/bin/env bash
# Main job on data at hand offline: set up, featurize the real ANI-1 subset 1 from
# ../shared/data (or the file given as $1), train for MAX_TIME seconds, show metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data/ani_gdb_s01.h5}
MAX_TIME=${MAX_TIME:-120}
if [ ! -f "$SRC" ]; then
  echo "quickstart: $SRC not found; pass an ANI-1 .h5 file as the first argument" >&2
  exit 2
fi
bash pipelines/setup.sh
.venv/bin/aevpipe featurize "$SRC" --out data/aev/quickstart --no-progress
.venv/bin/aevpipe train --shards data/aev/quickstart --out data/runs/quickstart \
  --max-time "$MAX_TIME" --overwrite --no-progress
.venv/bin/aevpipe report data/runs/quickstart
echo "report: data/runs/quickstart/report/report.md"
