"""AEVs on disk in float32, float16 and bfloat16: bytes, epoch speed and accuracy.

    python -m benchmarks.dtype_bench --seconds 300 --json benchmarks/results/dtype.json

On the real s01 and s02 by default, 80/10/10 split seed 0, in one run, per dtype:
the store's bytes on disk and featurize time; training conformations/s at batch
256 with the store held resident (a 4 GiB memory limit) and streamed
(`--stream-limit`, a memory limit that makes the loader read windows from disk
every epoch), epochs 2 onward,
validation included; and the test RMSE of the default preset after `--seconds`
of training (cosine schedule over that time) for each model seed of `--seeds`,
the dtypes alternated within each seed so that the machine's drift falls on all
of them alike.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from aevpipe.config import FeaturizeSettings, load_train_settings
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train
from benchmarks.common import machine, train_epochs, write_json
from benchmarks.train_bench import steady_rate

DEFAULT = ["../shared/data/ani_gdb_s01.h5", "../shared/data/ani_gdb_s02.h5"]
DTYPES = ("float32", "float16", "bfloat16")


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rate(store: Path, run: Path, epochs: int, memory_limit: int) -> float:
    n_train, history, _ = train_epochs(
        store, run, epochs, schedule="none", early_stop=0, memory_limit=memory_limit
    )
    return steady_rate(history, n_train)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="*", default=DEFAULT, help="HDF5 files")
    ap.add_argument("--seconds", type=float, default=300, help="accuracy runs")
    ap.add_argument("--epochs", type=int, default=6, help="throughput runs")
    ap.add_argument("--stream-limit", default=32 << 20, type=int, help="bytes")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--seeds", default="0", help="model seeds of the accuracy runs")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    results: dict = {
        "machine": machine(),
        "data": [Path(p).name for p in args.src],
        "seconds": args.seconds,
        "stream_limit": args.stream_limit,
        "dtypes": {},
    }
    dtypes = args.dtypes.split(",")
    seeds = [int(x) for x in args.seeds.split(",")]
    print(
        f"{'dtype':9s} {'store MB':>9s} {'featurize':>9s} {'resident':>9s} "
        f"{'streamed':>9s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        stores = {d: Path(tmp) / f"aev-{d}" for d in dtypes}
        for dtype, store in stores.items():
            t0 = time.perf_counter()
            featurize(
                args.src, store, FeaturizeSettings(aev_dtype=dtype), progress=False
            )
            seconds = time.perf_counter() - t0
            resident = rate(store, Path(tmp) / "r", args.epochs, 4 << 30)
            streamed = rate(store, Path(tmp) / "s", args.epochs, args.stream_limit)
            row = {
                "store_bytes": store_bytes(store),
                "featurize_seconds": seconds,
                "resident_conf_per_s": resident,
                "streamed_conf_per_s": streamed,
                "runs": [],
            }
            results["dtypes"][dtype] = row
            print(
                f"{dtype:9s} {row['store_bytes'] / 1e6:9.1f} {seconds:8.1f}s "
                f"{resident:9,.0f} {streamed:9,.0f}"
            )
        print(f"{'seed':>4s} {'dtype':9s} {'test RMSE':>9s} {'epochs':>6s}")
        for seed in seeds:
            for dtype, store in stores.items():
                acc = train(
                    store,
                    Path(tmp) / f"acc-{dtype}-{seed}",
                    load_train_settings(max_time=args.seconds, seed=seed),
                    progress=False,
                    echo=lambda *_: None,
                )
                test = acc.metrics["test"]["rmse_kcal_mol"]
                results["dtypes"][dtype]["runs"].append(
                    {"seed": seed, "test_rmse_kcal_mol": test, "epochs": acc.epochs}
                )
                print(f"{seed:4d} {dtype:9s} {test:9.3f} {acc.epochs:6d}", flush=True)
    for dtype, row in results["dtypes"].items():
        # Every run scores the same test split, so the pooled RMSE is the root
        # of the mean of the runs' squared RMSEs.
        squares = [r["test_rmse_kcal_mol"] ** 2 for r in row["runs"]]
        row["pooled_test_rmse_kcal_mol"] = math.sqrt(sum(squares) / len(squares))
        print(f"{dtype:9s} pooled test RMSE {row['pooled_test_rmse_kcal_mol']:.3f}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
