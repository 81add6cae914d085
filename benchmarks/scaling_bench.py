"""Scaling on one machine: featurize with 1 and 2 Dask workers (and in-process),
train with 1 and 2 DistributedDataParallel processes (gloo on CPU).

    python -m benchmarks.scaling_bench --factor 10 --train-epochs 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, replicate, write_json


def featurize_rate(src: Path, out: Path, workers: int | None) -> float:
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize

    t0 = time.perf_counter()
    s = featurize(
        [str(src)],
        out,
        FeaturizeSettings(),
        workers=workers,
        overwrite=True,
        progress=False,
    )
    return s.conformations / (time.perf_counter() - t0)


def train_rate(store: Path, run: Path, nproc: int, epochs: int) -> tuple[float, float]:
    """Conformations/s over epochs after the first, and the final valid RMSE."""
    from aevpipe import runs
    from aevpipe.config import load_train_settings
    from aevpipe.distributed import spawn
    from aevpipe.stages.train import train

    settings = load_train_settings(max_epochs=epochs, early_stop=0, schedule="none")
    if nproc == 1:
        train(
            store, run, settings, overwrite=True, progress=False, echo=lambda *_: None
        )
    else:
        spawn(nproc, train, store, run, settings, False, True, False)
    history = runs.read_history(run)[1:]
    n = json.loads((run / runs.METRICS).read_text())["train"]["n"]
    rate = n * len(history) / sum(h["epoch_seconds"] for h in history)
    return rate, history[-1]["valid_rmse_kcal_mol"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--train-epochs", type=int, default=30)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    out: dict = {"machine": machine(), "featurize": {}, "train": {}}
    with tempfile.TemporaryDirectory() as tmp:
        big = replicate(Path(args.src), Path(tmp) / "big.h5", args.factor)
        for label, workers in (
            ("in-process", None),
            ("dask 1 worker", 1),
            ("dask 2 workers", 2),
        ):
            rate = featurize_rate(big, Path(tmp) / "store", workers)
            out["featurize"][label] = rate
            print(f"featurize s01 x{args.factor}, {label}: {rate:,.0f} conf/s")
        base = out["featurize"]["dask 1 worker"]
        eff = out["featurize"]["dask 2 workers"] / (2 * base)
        print(f"featurize scaling efficiency, 2 Dask workers vs 1: {eff:.0%}")
        out["featurize"]["efficiency_2_vs_1"] = eff
        store = Path(tmp) / "s01"
        featurize_rate(Path(args.src), store, None)
        for nproc in (1, 2):
            rate, rmse = train_rate(
                store, Path(tmp) / f"run{nproc}", nproc, args.train_epochs
            )
            out["train"][nproc] = {"conf_per_s": rate, "valid_rmse_kcal_mol": rmse}
            print(
                f"train s01, {nproc} process(es), batch 256 each: {rate:,.0f} "
                f"conf/s, validation RMSE after {args.train_epochs} epochs "
                f"{rmse:.3f} kcal/mol"
            )
        eff = out["train"][2]["conf_per_s"] / (2 * out["train"][1]["conf_per_s"])
        print(f"train scaling efficiency, 2 processes vs 1: {eff:.0%}")
        out["train"]["efficiency_2_vs_1"] = eff
    write_json(args.json, out)


if __name__ == "__main__":
    main()
