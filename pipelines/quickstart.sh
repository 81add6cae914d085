#!/usr/bin/env bash
# Main job on real data at hand offline: set up, featurize the real ANI-1 subsets 1
# and 2 from ../shared/data (or the files given as arguments), train for MAX_TIME
# seconds, write the report.
#
#   bash pipelines/quickstart.sh                     # ../shared/data/ani_gdb_s0{1,2}.h5
#   bash pipelines/quickstart.sh ani_gdb_s01.h5      # any ANI-1 files
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_TIME=${MAX_TIME:-120}
if [ $# -eq 0 ]; then
  for f in ../shared/data/ani_gdb_s01.h5 ../shared/data/ani_gdb_s02.h5; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
fi
if [ $# -eq 0 ]; then
  echo "quickstart: no ANI-1 files in ../shared/data; pass .h5 files as arguments" >&2
  exit 2
fi
for f in "$@"; do
  if [ ! -f "$f" ]; then
    echo "quickstart: $f not found" >&2
    exit 2
  fi
done
bash pipelines/setup.sh
.venv/bin/aevpipe featurize "$@" --out data/aev/quickstart --overwrite --no-progress
.venv/bin/aevpipe train data/aev/quickstart --out data/runs/quickstart \
  --max-time "$MAX_TIME" --overwrite --no-progress
.venv/bin/aevpipe report data/runs/quickstart > /dev/null
echo "report: data/runs/quickstart/report/report.md"
