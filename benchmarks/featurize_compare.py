"""Featurize of one aevpipe checkout against another, side by side in one run.

Each featurize runs in a fresh process (its own peak memory), writing a new store
that is removed after the run; the checkouts alternate, round by round, so that
drift of the machine's speed falls on both. Reports wall time (the whole command:
scan, hash, AEVs, write, manifest), conformations/s, peak RSS and store bytes, and
checks that the two stores hold the same arrays, attributes and values (AEVs to
1e-5, the other arrays exactly; the work plan's fingerprint may differ), so that
the format is unchanged.

    python -m benchmarks.featurize_compare --baseline ../baseline \\
        --data data/synth-full --rounds 2 --json benchmarks/results/compare.json

`--baseline` is a checkout of the code to compare with (e.g. a `git worktree`);
`--env NAME=VALUE` adds a run of this checkout with that environment variable set;
`--env AEV_DTYPE=float32` one that stores its AEVs in that dtype. Every run of this
checkout in the first round is compared with the baseline's store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

from benchmarks.common import machine, write_json

CHILD = """
import json, os, resource, sys, time
from pathlib import Path
from aevpipe.config import FeaturizeSettings
from aevpipe.stages.featurize import featurize
out, files = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
dtype = {"aev_dtype": os.environ["AEV_DTYPE"]} if "AEV_DTYPE" in os.environ else {}
s = featurize(files, Path(out), FeaturizeSettings(**dtype), progress=False)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mib": peak,
                  "conformations": s.conformations, "bytes": s.bytes_written}))
"""


def run(src: Path, files: list[str], out: Path, env: dict[str, str]) -> dict:
    """One featurize of `files` into `out` with the aevpipe of checkout `src`."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), *files],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "PYTHONPATH": str(src), **env},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"featurize with {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Attributes that may differ between versions without the store differing: the
# sources' absolute paths, and the fingerprint of the work units that made it.
NOT_COMPARED = ("sources", "plan", "plan_hash")


def compare_stores(a: Path, b: Path) -> str:
    """'same' when both stores hold the same arrays (shape, dtype, chunks,
    compressor), root attributes (but NOT_COMPARED) and values; else what
    differs first."""
    ra, rb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    attrs = [
        {k: v for k, v in r.attrs.asdict().items() if k not in NOT_COMPARED}
        for r in (ra, rb)
    ]
    if attrs[0] != attrs[1]:
        keys = sorted(k for k in attrs[0] if attrs[0].get(k) != attrs[1].get(k))
        return f"root attributes differ: {keys}"
    arrays = {}
    ra.visitvalues(
        lambda v: arrays.setdefault(v.path, v) if hasattr(v, "shape") else None
    )
    worst = 0.0
    for path, x in arrays.items():
        y = rb[path]
        if (x.shape, x.dtype, x.chunks, x.compressor) != (
            y.shape,
            y.dtype,
            y.chunks,
            y.compressor,
        ):
            return f"{path}: shape, dtype, chunks or compressor differ"
        for start in range(0, x.shape[0], x.chunks[0]):
            u, v = x[start : start + x.chunks[0]], y[start : start + x.chunks[0]]
            if path.endswith("/aev"):
                worst = max(worst, float(np.abs(u - v).max(initial=0)))
            elif not np.array_equal(u, v):
                return f"{path}: values differ"
    if worst > 1e-5:
        return f"AEVs differ by up to {worst:.2e}"
    plans = "same" if ra.attrs.get("plan") == rb.attrs.get("plan") else "other"
    return f"same (AEVs within {worst:.1e}; {plans} work plan)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--data", default="data/synth-full")
    parser.add_argument("--pattern", default="ani_gdb_s0*.h5")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json")
    args = parser.parse_args()
    files = sorted(str(p.resolve()) for p in Path(args.data).glob(args.pattern))
    if not files:
        sys.exit(f"no {args.pattern} in {args.data}")
    here = Path(__file__).resolve().parents[1]
    variants = {"baseline": (args.baseline.resolve(), {}), "this": (here, {})}
    for pair in args.env:
        name, _, value = pair.partition("=")
        variants[f"this, {pair}"] = (here, {name: value})
    work = Path(tempfile.mkdtemp(prefix="aevpipe-compare-", dir=args.workdir))
    results: dict[str, list[dict]] = {name: [] for name in variants}
    verdicts: dict[str, str] = {}
    try:
        for r in range(args.rounds):
            for name, (src, env) in variants.items():
                out = work / f"{r}-{len(results[name])}-{name.split(',')[0]}"
                results[name].append(run(src, files, out, env))
                print(name, results[name][-1], flush=True)
                if r == 0 and name != "baseline":
                    verdicts[name] = compare_stores(work / "0-0-baseline", out)
                    print("stores:", verdicts[name], flush=True)
                if not (r == 0 and name == "baseline"):
                    shutil.rmtree(out)
            shutil.rmtree(work / "0-0-baseline", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = np.median([x["seconds"] for x in results["baseline"]])
    summary = {
        "machine": machine(),
        "files": files,
        "stores": verdicts,
        "runs": results,
    }
    for name, runs in results.items():
        seconds = float(np.median([x["seconds"] for x in runs]))
        conf = runs[0]["conformations"]
        line = {
            "seconds": seconds,
            "conformations_per_s": conf / seconds,
            "throughput_vs_baseline": base / seconds,
            "peak_rss_mib": max(x["peak_rss_mib"] for x in runs),
            "store_bytes": runs[0]["bytes"],
        }
        summary[name] = line
        print(f"{name}: {json.dumps(line)}")
    write_json(args.json, summary)


if __name__ == "__main__":
    main()
