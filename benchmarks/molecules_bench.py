"""Featurize against the number of molecule groups, and against AEVComputer alone
on a file of many molecules.

The ANI-1 release's larger subsets hold tens of thousands of molecule groups of a
few hundred conformations each, and featurize runs at least one work unit per group,
so what a unit costs beyond its AEVs shows there and not on s01 (3 groups). From the
source file's molecules (`benchmarks.common.many_molecules`: each group a run of
conformations of one molecule, its atoms in a random order, gzip'd as released):

- groups of 4 conformations, at two group counts: featurize's time should grow in
  proportion (seconds per group printed), not faster;
- 2,000 groups of 250 conformations: featurize (default threads) next to TorchANI's
  AEVComputer alone on the same conformations (data in memory, output thrown away;
  the faster of 4,096 and 16,384 atoms per call, aevpipe's allocator).

Each configuration runs in its own process (featurize_bench's children), timed once
after an untimed run on the same file (process start-up, imports, first calls).
featurize's timed run writes a new store, and the warm-up's is emptied, not
deleted, as in featurize_bench; up to session 11 it replaced it, as `--overwrite`
does. This machine's speed drifts over minutes (benchmarks/RESULTS.md): compare
figures from the same run.

    python -m benchmarks.molecules_bench ../shared/data/ani_gdb_s01.h5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import machine, many_molecules, run_child, write_json


def featurize(child: list[str], src: Path, store: str) -> dict:
    """featurize_bench's child: one untimed run on `src`, then one timed run into a
    new store, default threads."""
    return run_child([*child, "featurize", str(src), store, "cpu", "0", "1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--small-groups", default="1000,4000")
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--conformations", type=int, default=250)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    child = ["-m", "benchmarks.featurize_bench", "--child"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for groups in (int(g) for g in args.small_groups.split(",")):
            src = many_molecules(Path(args.src), Path(tmp) / f"g{groups}.h5", groups, 4)
            run = featurize(child, src, f"{tmp}/store-g{groups}")
            rows.append({"groups": groups, "conformations_per_group": 4, **run})
        src = many_molecules(
            Path(args.src), Path(tmp) / "many.h5", args.groups, args.conformations
        )
        run = featurize(child, src, f"{tmp}/store-many")
        alone = {
            atoms: run_child(
                [*child, "aev", str(src), "cpu", "aevpipe", f"{atoms}", "1"]
            )
            for atoms in (4096, 16384)
        }
        best = min(alone, key=lambda k: alone[k]["seconds"])
        rows.append(
            {
                "groups": args.groups,
                "conformations_per_group": args.conformations,
                **run,
                "aev_alone_seconds": {str(k): v["seconds"] for k, v in alone.items()},
                "aev_alone_best_atoms": best,
                "ratio_to_aev_alone": alone[best]["seconds"] / run["seconds"],
            }
        )
    print(f"machine: {machine()}; device cpu; one run each")
    for r in rows:
        line = (
            f"{r['groups']:,d} groups x {r['conformations_per_group']} conformations: "
            f"featurize {r['seconds']:.2f} s ({r['units']:,d} units, "
            f"{1000 * r['seconds'] / r['groups']:.2f} ms a group, "
            f"{r['conformations'] / r['seconds']:,.0f} conf/s, "
            f"{r['atoms'] / r['seconds']:,.0f} atoms/s, "
            f"{r['bytes'] / 1e6 / r['seconds']:.0f} MB/s written)"
        )
        if "ratio_to_aev_alone" in r:
            best = r["aev_alone_best_atoms"]
            line += (
                f"; AEVComputer alone {r['aev_alone_seconds'][str(best)]:.2f} s "
                f"({best} atoms a call); ratio {r['ratio_to_aev_alone']:.2f}"
            )
        print(line)
    write_json(args.json, {"machine": machine(), "device": "cpu", "rows": rows})


if __name__ == "__main__":
    main()
