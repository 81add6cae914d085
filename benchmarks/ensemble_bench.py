"""Ensembles: the cost of K members against one, and what their spread is worth.

    python -m benchmarks.ensemble_bench --json benchmarks/results/ensemble.json

On the real s01 and s02 by default, in one run:
- epoch time (validation included, epochs 2 onward) of K = 8 against K = 1 at
  batch 256 and 2560, and the rate of the networks' math against this machine's
  fp32 GEMM peak (a 4096 x 4096 matmul, measured here);
- an 80/10/10 split (seed 0), K = 8 trained `--seconds` (cosine schedule over
  that time): the test RMSE of the members' mean against the mean of the members'
  test RMSEs;
- a split by molecule (held-out molecules in test), K = 8 trained `--seconds`:
  the rank correlation between |error| and spread on the held-out molecules, and
  the spread of held-out molecules against that of trained ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aevpipe import keys
from aevpipe.config import FeaturizeSettings, SplitSettings, load_train_settings
from aevpipe.loader import ShardLoader
from aevpipe.objective import evaluate
from aevpipe.runs import load_best
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train
from aevpipe.store import ShardStore
from aevpipe.uncertainty import rank_correlation, spread
from benchmarks.common import machine, train_epochs, write_json
from benchmarks.train_bench import steady_rate

DEFAULT = ["../shared/data/ani_gdb_s01.h5", "../shared/data/ani_gdb_s02.h5"]


def gemm_peak(size: int = 4096, repeats: int = 5) -> float:
    """fp32 GFLOP/s of one large square matmul on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * size**3 / (time.perf_counter() - t0) / 1e9


def epoch_flops(store: ShardStore, hidden: dict) -> float:
    """FLOPs of one model's epoch: training rows forward and backward (the first
    layer's input needs no gradient: 4 FLOPs a weight, 6 for the others) and
    validation rows forward (2)."""
    total = 0.0
    for layout in store.layouts:
        for e, element in enumerate(store.elements):
            sizes = (store.aev.aev_length, *hidden[element], 1)
            weights = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
            train_rows = layout.rows[0][e]
            valid_rows = layout.rows[1][e]
            total += train_rows * (4 * weights[0] + 6 * sum(weights[1:]))
            total += valid_rows * 2 * sum(weights)
    return total


def spreads_and_errors(run: Path, store: ShardStore, split: int):
    """Per conformation of `split`: the members' spread and the |error| of their
    mean (kcal/mol)."""
    model, payload = load_best(run, torch.device("cpu"))
    sae = np.asarray(payload["self_energies"])
    out = {"spread": [], "error": []}

    def collect(batch, energies):
        e = energies.numpy()
        out["spread"].append(spread(e) * keys.HARTREE_TO_KCALMOL)
        err = (e.mean(0) - batch.energy.numpy()) * keys.HARTREE_TO_KCALMOL
        out["error"].append(np.abs(err))

    loader = ShardLoader(store, split, 4096, 1 << 30, sae, shuffle=False)
    evaluate(model, loader, torch.device("cpu"), torch.tensor(sae), collect)
    return np.concatenate(out["spread"]), np.concatenate(out["error"])


def throughput(store: Path, tmp: Path, k: int, epochs: int, sizes, peak: float):
    """Epochs of K = 1 and K = k at each batch size: conformations/s and GFLOP/s."""
    flops = epoch_flops(ShardStore.open(store), load_train_settings().hidden)
    rows = []
    print(f"{'batch':>6s} {'K':>3s} {'conf/s':>9s} {'epoch s':>8s} {'GFLOP/s':>8s}")
    for bs in sizes:
        rates = {}
        for members in (1, k):
            n, history, _ = train_epochs(
                store,
                tmp / f"t{bs}-{members}",
                epochs,
                batch_size=bs,
                ensemble=members,
                schedule="none",
                early_stop=0,
            )
            rate = steady_rate(history, n)
            seconds = n / rate
            gflops = members * flops / seconds / 1e9
            rates[members] = rate
            rows.append(
                {
                    "batch_size": bs,
                    "members": members,
                    "conformations_per_s": rate,
                    "epoch_seconds": seconds,
                    "gflops": gflops,
                    "fraction_of_peak": gflops / peak,
                }
            )
            print(
                f"{bs:6d} {members:3d} {rate:9,.0f} {seconds:8.2f} "
                f"{gflops:8.0f} ({gflops / peak:.0%} of peak)"
            )
        print(f"       epoch time K={k} / K=1: {rates[1] / rates[k]:.2f}x")
    return rows


def accuracy(store: Path, run: Path, settings) -> dict:
    """Test RMSE of the members' mean against the mean of the members'."""
    result = train(store, run, settings, progress=False, echo=lambda *_: None)
    members = [m["rmse_kcal_mol"] for m in result.metrics["members"]["test"]]
    mean = result.metrics["test"]["rmse_kcal_mol"]
    out = {
        "seconds": settings.max_time,
        "folds": settings.ensemble_folds,
        "epochs": result.epochs,
        "ensemble_test_rmse_kcal_mol": mean,
        "member_test_rmse_kcal_mol": members,
        "ratio_to_members_mean": mean / float(np.mean(members)),
    }
    print(
        f"80/10/10, K={settings.ensemble}"
        + (" with folds" if settings.ensemble_folds else "")
        + f", {settings.max_time:.0f} s ({result.epochs} epochs): test RMSE of "
        f"the mean {mean:.3f} kcal/mol; members {min(members):.3f}-"
        f"{max(members):.3f}, their mean {np.mean(members):.3f}; ratio "
        f"{out['ratio_to_members_mean']:.2f}"
    )
    return out


def held_out_molecules(src: list[str], tmp: Path, settings) -> dict:
    """Split by molecule: does the spread single out the held-out molecules?"""
    store = tmp / "aev-mol"
    split = FeaturizeSettings(split=SplitSettings(by="molecule"))
    featurize(src, store, split, progress=False)
    result = train(store, tmp / "mol", settings, progress=False, echo=lambda *_: None)
    opened = ShardStore.open(store)
    held = spreads_and_errors(tmp / "mol", opened, keys.SPLIT_CODES["test"])
    trained = spreads_and_errors(tmp / "mol", opened, keys.SPLIT_CODES["train"])
    out = {
        "epochs": result.epochs,
        "test_rmse_kcal_mol": result.metrics["test"]["rmse_kcal_mol"],
        "train_rmse_kcal_mol": result.metrics["train"]["rmse_kcal_mol"],
        "test_rank_correlation": rank_correlation(*held),
        "median_spread_held_out_kcal_mol": float(np.median(held[0])),
        "median_spread_trained_kcal_mol": float(np.median(trained[0])),
        "held_out_above_trained_p99": float(
            (held[0] > np.percentile(trained[0], 99)).mean()
        ),
    }
    print(
        f"split by molecule, K={settings.ensemble}, {settings.max_time:.0f} s "
        f"({result.epochs} epochs): held-out test RMSE "
        f"{out['test_rmse_kcal_mol']:.1f} kcal/mol; rank correlation |error| vs "
        f"spread {out['test_rank_correlation']:.2f}; median spread held-out "
        f"{out['median_spread_held_out_kcal_mol']:.2f} against trained "
        f"{out['median_spread_trained_kcal_mol']:.2f} kcal/mol; "
        f"{out['held_out_above_trained_p99']:.0%} of held-out conformations above "
        "the trained ones' 99th percentile"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="*", default=DEFAULT, help="HDF5 files")
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4, help="throughput runs")
    ap.add_argument("--batch-sizes", default="256,2560")
    ap.add_argument("--seconds", type=float, default=300, help="accuracy runs")
    ap.add_argument(
        "--parts",
        default="throughput,accuracy,molecule",
        help="which of throughput, accuracy, molecule to run (comma-separated)",
    )
    ap.add_argument(
        "--folds", action="store_true", help="accuracy runs with --ensemble-folds"
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    parts = args.parts.split(",")
    print(f"machine: {machine()}")
    peak = gemm_peak()
    print(f"fp32 GEMM peak (4096 matmul): {peak:.0f} GFLOP/s")
    results: dict = {
        "machine": machine(),
        "data": [Path(p).name for p in args.src],
        "members": args.members,
        "gemm_peak_gflops": peak,
    }
    settings = load_train_settings(
        max_time=args.seconds, ensemble=args.members, ensemble_folds=args.folds
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "aev"
        featurize(args.src, store, FeaturizeSettings(), progress=False)
        if "throughput" in parts:
            sizes = [int(b) for b in args.batch_sizes.split(",") if b]
            results["throughput"] = throughput(
                store, tmp, args.members, args.epochs, sizes, peak
            )
        if "accuracy" in parts:
            results["accuracy"] = accuracy(store, tmp / "acc", settings)
        if "molecule" in parts:
            results["by_molecule"] = held_out_molecules(args.src, tmp, settings)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
