"""What featurize does before its first unit, on a file of many molecule groups.

Before any unit starts, featurize scans every group of every input (structure,
shapes, species), plans the units and hashes the plan (the store's fingerprint):
serial work that grows with the number of groups. The whole ANI-1 release is some
58,000 groups. On a file of `--groups` groups of `--conformations` conformations
(`benchmarks.common.many_molecules`: s01's molecules in random atom orders, gzip'd
as released), each step is timed here in one process, median of `--repeats`, with
the microseconds it takes a group.

    python -m benchmarks.scan_bench ../shared/data/ani_gdb_s01.h5 --groups 20000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, many_molecules, write_json


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(path: Path, repeats: int) -> dict:
    """Scan, plan and plan fingerprint of the file `path`: seconds each (median of
    `repeats`), groups and units."""
    from aevpipe.config import FeaturizeSettings
    from aevpipe.plan import make_plan
    from aevpipe.stages.featurize import _shape, scan_inputs

    settings = FeaturizeSettings()
    scan_s, found = _timed(lambda: scan_inputs([str(path)], settings), repeats)
    molecules = found[0]  # the molecules; then what was skipped, ...
    shapes = [_shape(m, settings.aev.elements) for m in molecules]
    plan_s, plan = _timed(
        lambda: make_plan(
            shapes, settings.block_size, settings.split, settings.block_atoms
        ),
        repeats,
    )
    hash_s, _ = _timed(plan.fingerprint, repeats)
    return {
        "groups": len(molecules),
        "units": len(plan.units),
        "seconds": {"scan": scan_s, "plan": plan_s, "plan fingerprint": hash_s},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--groups", type=int, default=20000)
    ap.add_argument("--conformations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = many_molecules(
            Path(args.src), Path(tmp) / "many.h5", args.groups, args.conformations
        )
        result = measure(path, args.repeats)
    groups = result["groups"]
    print(
        f"machine: {machine()}; {groups:,d} groups of {args.conformations} "
        f"conformations, {result['units']:,d} units; median of {args.repeats}"
    )
    for name, seconds in result["seconds"].items():
        per_group = 1e6 * seconds / groups
        print(f"    {name:18s} {seconds:7.3f} s  ({per_group:6.1f} us a group)")
    print(f"    {'together':18s} {sum(result['seconds'].values()):7.3f} s")
    write_json(
        args.json,
        {"machine": machine(), "conformations_per_group": args.conformations, **result},
    )


if __name__ == "__main__":
    main()
