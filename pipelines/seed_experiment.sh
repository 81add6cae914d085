#!/usr/bin/env bash
# The seed project's experiment redone: ANI-1 subsets 1-4, both training presets
# (the seed's recipe and ani1x), a report per run and one comparison, report.md.
#
#   bash pipelines/seed_experiment.sh                      # real s01, s02 + synthetic s03, s04
#   bash pipelines/seed_experiment.sh ani_gdb_s0[1-4].h5   # the real files
#
# Without arguments, the real s01 and s02 of ../shared/data are used where present,
# and synthetic files (MMFF94 energies) stand in for the rest, at the seed's scale;
# each report says which source files were real.
#
# Settings by environment: OUT (data/seed-experiment), MAX_TIME per run in seconds
# (1800), CONFORMATIONS (synthetic total, default the seed's scale).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-data/seed-experiment}
MAX_TIME=${MAX_TIME:-1800}
bash pipelines/setup.sh
if [ $# -eq 0 ]; then
  .venv/bin/aevpipe synth --out "$OUT/data" --preset ani1-s01-s04 --no-progress \
    ${CONFORMATIONS:+--conformations "$CONFORMATIONS"}
  for n in 1 2 3 4; do
    real=../shared/data/ani_gdb_s0$n.h5
    if [ -f "$real" ]; then set -- "$@" "$real"; else set -- "$@" "$OUT/data/ani_gdb_s0$n.h5"; fi
  done
fi
.venv/bin/aevpipe featurize "$@" --out "$OUT/aev" --no-progress
for preset in seed ani1x; do
  .venv/bin/aevpipe train "$OUT/aev" --out "$OUT/runs/$preset" \
    --preset "$preset" --max-time "$MAX_TIME" --overwrite --no-progress | tail -5
  .venv/bin/aevpipe report "$OUT/runs/$preset" --format json > /dev/null
done
.venv/bin/python pipelines/compare_runs.py "$OUT/runs/seed" "$OUT/runs/ani1x" \
  > "$OUT/report.md"
cat "$OUT/report.md"
