"""Training throughput and accuracy of aevpipe against TorchANI's own loop.

On the s01 file featurized with an 80/10/10 split (the baseline trains on exactly
the same conformations), on this machine, in one run:

- throughput: conformations/s over whole epochs (validation included; the first
  epoch is left out as warm-up) at each batch size, for aevpipe, TorchANI's recipe
  (`simple_ani`) and TorchANI's loop with aevpipe's ANI-1x networks;
- accuracy: aevpipe's default preset and TorchANI's recipe (batch 256) each trained
  for the same wall time: time to validation RMSE < 1 kcal/mol, best validation
  RMSE, and test RMSE of the best-by-validation model.

    python -m benchmarks.train_bench --throughput-seconds 60 --accuracy-seconds 600
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from aevpipe import runs
from aevpipe.config import FeaturizeSettings, load_train_settings
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train
from benchmarks import torchani_baseline as baseline
from benchmarks.common import machine, write_json


def steady_rate(history: list[dict], n_train: int) -> float:
    """Conformations/s over whole epochs after the first."""
    later = history[1:] or history
    return n_train * len(later) / sum(h["epoch_seconds"] for h in later)


def time_to(history: list[dict], threshold: float) -> float | None:
    for h in history:
        if h["valid_rmse_kcal_mol"] < threshold:
            return h["elapsed_s"]
    return None


def run_aevpipe(store: Path, out: Path, seconds: float, **overrides) -> dict:
    settings = load_train_settings(max_time=seconds, **overrides)
    result = train(
        store, out, settings, overwrite=True, progress=False, echo=lambda *_: None
    )
    history = runs.read_history(out)
    return {
        "history": history,
        "n_train": result.metrics["train"]["n"],
        "best_valid_rmse_kcal_mol": min(h["valid_rmse_kcal_mol"] for h in history),
        "test_rmse_kcal_mol": result.metrics["test"]["rmse_kcal_mol"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--batch-sizes", default="256,2560")
    ap.add_argument("--throughput-seconds", type=float, default=60)
    ap.add_argument("--accuracy-seconds", type=float, default=600)
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="extra aevpipe accuracy run with train settings, e.g. "
        "lr_patience=100 (repeatable)",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    results: dict = {"machine": machine(), "throughput": [], "accuracy": {}}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "aev"
        t0 = time.perf_counter()
        featurize([args.src], store, FeaturizeSettings(), progress=False)
        print(f"featurize s01: {time.perf_counter() - t0:.1f} s")
        splits = baseline.load_splits(store, args.src)
        print(
            f"conformations/s, {args.throughput_seconds:.0f} s each; "
            "(x: aevpipe over that baseline)"
        )
        print(
            f"{'batch':>6s} {'aevpipe':>9s} {'recipe as shipped':>20s} "
            f"{'recipe, data in RAM':>20s} {'loop, aevpipe nets':>20s}"
        )
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            ours = run_aevpipe(
                store,
                Path(tmp) / f"run{bs}",
                args.throughput_seconds,
                batch_size=bs,
                early_stop=0,
                schedule="none",
            )
            recipe = baseline.train("recipe", splits, bs, args.throughput_seconds)
            same = baseline.train("ani1x-nets", splits, bs, args.throughput_seconds)
            shipped = baseline.train_shipped(args.src, tmp, bs, args.throughput_seconds)
            row = {
                "batch_size": bs,
                "aevpipe": steady_rate(ours["history"], ours["n_train"]),
                "torchani_recipe_shipped": steady_rate(
                    shipped["history"], shipped["n_train"]
                ),
                "torchani_recipe": steady_rate(recipe["history"], recipe["n_train"]),
                "torchani_ani1x_nets": steady_rate(same["history"], same["n_train"]),
            }
            results["throughput"].append(row)
            cells = [
                f"{row[k]:,.0f} (x{row['aevpipe'] / row[k]:.1f})"
                for k in (
                    "torchani_recipe_shipped",
                    "torchani_recipe",
                    "torchani_ani1x_nets",
                )
            ]
            print(
                f"{bs:6d} {row['aevpipe']:9,.0f} {cells[0]:>20s} {cells[1]:>20s} "
                f"{cells[2]:>20s}"
            )
        if args.accuracy_seconds > 0:
            s = args.accuracy_seconds
            systems = [("aevpipe ani1x", run_aevpipe(store, Path(tmp) / "acc", s))]
            for i, variant in enumerate(args.variant):
                key, value = variant.split("=")
                systems.append(
                    (
                        f"aevpipe {variant}",
                        run_aevpipe(
                            store, Path(tmp) / f"acc{i}", s, **{key: float(value)}
                        ),
                    )
                )
            systems.append(
                ("TorchANI recipe", baseline.train("recipe", splits, 256, s))
            )
            print(
                f"accuracy after {s:.0f} s of training (kcal/mol; valid/test "
                f"{len(splits['valid'])}/{len(splits['test'])} conformations):"
            )
            print(f"{'':26s} {'valid<1 at':>10s} {'best valid':>10s} {'test':>7s}")
            for name, r in systems:
                t1 = time_to(r["history"], 1.0)
                results["accuracy"][name] = {
                    "seconds": s,
                    "time_to_valid_below_1_s": t1,
                    "best_valid_rmse_kcal_mol": r["best_valid_rmse_kcal_mol"],
                    "test_rmse_kcal_mol": r["test_rmse_kcal_mol"],
                    "epochs": len(r["history"]),
                }
                t1s = f"{t1:.1f} s" if t1 is not None else "never"
                print(
                    f"{name:18s} {t1s:>10s} {r['best_valid_rmse_kcal_mol']:10.3f} "
                    f"{r['test_rmse_kcal_mol']:7.3f}"
                )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
