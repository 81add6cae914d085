"""Training throughput and accuracy of aevpipe against TorchANI's own loop.

On the s01 file featurized with an 80/10/10 split (the baseline trains on exactly
the same conformations), on this machine, in one run:

- throughput: conformations/s over whole epochs (validation included; the first
  epoch is left out as warm-up) at each batch size, for aevpipe, TorchANI's recipe
  (`simple_ani`) and TorchANI's loop with aevpipe's ANI-1x networks; with
  `--rounds N` the three take turns N times (this machine's speed drifts by up
  to a third within minutes) and each one's rate pools its rounds' epochs;
- accuracy: aevpipe's default preset and TorchANI's recipe (batch 256) each trained
  for the same wall time: time to validation RMSE < 1 kcal/mol, best validation
  RMSE, and test RMSE of the best-by-validation model.

    python -m benchmarks.train_bench --throughput-seconds 60 --accuracy-seconds 600
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from aevpipe import runs
from aevpipe.config import FeaturizeSettings, load_train_settings
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train
from benchmarks import torchani_baseline as baseline
from benchmarks.common import machine, write_json


def steady_epochs(history: list[dict], n_train: int) -> list[dict]:
    """Whole epochs after the first. An aevpipe epoch that `max_time` cut short
    (it records fewer than `n_train` conformations) is left out: it trained on
    part of the split but validated on all of it."""
    whole = [
        h
        for h in history
        if "conformations_per_s" not in h
        or h["conformations_per_s"] * h["epoch_seconds"] > n_train - 0.5
    ]
    return whole[1:] or whole


def steady_rate(history: list[dict], n_train: int) -> float:
    """Conformations/s over `steady_epochs`."""
    return pooled_rate([history], n_train)


def pooled_rate(histories: list[list[dict]], n_train: int) -> float:
    """Conformations/s over the steady epochs of several runs: their
    conformations over their seconds."""
    epochs = [h for history in histories for h in steady_epochs(history, n_train)]
    return n_train * len(epochs) / sum(h["epoch_seconds"] for h in epochs)


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
    ap.add_argument(
        "src", nargs="*", default=["../shared/data/ani_gdb_s01.h5"], help="HDF5 files"
    )
    ap.add_argument(
        "--batch-sizes", default="256,2560", help="throughput runs; '' for none"
    )
    ap.add_argument("--throughput-seconds", type=float, default=60)
    ap.add_argument(
        "--epochs", type=int, default=0, help="throughput runs of this many epochs"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="throughput runs of each system, taking turns; rates pooled",
    )
    ap.add_argument("--accuracy-seconds", type=float, default=600)
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="extra aevpipe accuracy run with train settings, e.g. "
        "lr_patience=100 (repeatable)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="aevpipe default-preset accuracy runs (split seed 0, model seeds 0..)",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    results: dict = {
        "machine": machine(),
        "data": [Path(p).name for p in args.src],
        "throughput": [],
        "accuracy": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "aev"
        t0 = time.perf_counter()
        featurize(args.src, store, FeaturizeSettings(), progress=False)
        names = ", ".join(Path(p).name for p in args.src)
        print(f"featurize {names}: {time.perf_counter() - t0:.1f} s")
        splits = baseline.load_splits(store, args.src)
        # Each throughput run: `--epochs` epochs, or `--throughput-seconds`.
        seconds = math.inf if args.epochs else args.throughput_seconds
        limit = {"max_epochs": args.epochs} if args.epochs else {}
        per = f"{args.epochs} epochs" if args.epochs else f"{seconds:.0f} s"
        print(f"conformations/s, {per} each; (x: aevpipe over that baseline)")
        print(
            f"{'batch':>6s} {'aevpipe':>9s} {'recipe as shipped':>20s} "
            f"{'recipe, data in RAM':>20s} {'loop, aevpipe nets':>20s}"
        )
        for bs in (int(b) for b in args.batch_sizes.split(",") if b):
            # The systems take turns, round by round, so that this machine's
            # slow and fast spells fall on each of them alike.
            turns: dict[str, list[dict]] = {
                "aevpipe": [],
                "torchani_recipe": [],
                "torchani_ani1x_nets": [],
            }
            for r in range(args.rounds):
                turns["aevpipe"].append(
                    run_aevpipe(
                        store,
                        Path(tmp) / f"run{bs}-{r}",
                        None if args.epochs else seconds,
                        batch_size=bs,
                        early_stop=0,
                        schedule="none",
                        **limit,
                    )
                )
                for kind, name in (
                    ("recipe", "torchani_recipe"),
                    ("ani1x-nets", "torchani_ani1x_nets"),
                ):
                    turns[name].append(
                        baseline.train(kind, splits, bs, seconds, **limit)
                    )
            row = {"batch_size": bs, "rounds": args.rounds}
            for name, done in turns.items():
                histories = [x["history"] for x in done]
                row[name] = pooled_rate(histories, done[0]["n_train"])
            if len(args.src) == 1 and not args.epochs:  # the example reads one file
                shipped = baseline.train_shipped(args.src[0], tmp, bs, seconds)
                row["torchani_recipe_shipped"] = steady_rate(
                    shipped["history"], shipped["n_train"]
                )
            results["throughput"].append(row)
            cells = [
                f"{row[k]:,.0f} (x{row['aevpipe'] / row[k]:.1f})" if k in row else "-"
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
            systems = [
                (
                    f"aevpipe ani1x seed {k}" if args.repeats > 1 else "aevpipe ani1x",
                    run_aevpipe(store, Path(tmp) / f"acc-{k}", s, seed=k),
                )
                for k in range(args.repeats)
            ]
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
            print(
                f"{'':22s} {'valid<1 at':>10s} {'best valid':>10s} {'test':>7s} "
                f"{'epochs':>7s}"
            )
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
                    f"{name:22s} {t1s:>10s} {r['best_valid_rmse_kcal_mol']:10.3f} "
                    f"{r['test_rmse_kcal_mol']:7.3f} {len(r['history']):7d}"
                )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
