"""Peak memory at a million conformations: featurize and train stay bounded.

Builds an ANI-1-layout file of >= 1,000,000 conformations from s01 (its conformations
repeated with 0.001 Angstrom jitter), featurizes it, trains on it with the default
1 GiB memory limit, and reports each step's peak resident memory (each step in its
own process), beside the size of the AEV data and TorchANI's cached loader (its
`ANIBatchedDataset.cache()`, which holds the whole data set) on the same file.

    python -m benchmarks.memory_bench --factor 93 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    machine,
    peak_rss_mib,
    replicate,
    run_child,
    train_epochs,
    write_json,
)

ME = ["-m", "benchmarks.memory_bench", "--child"]


def child_featurize(src: str, store: str) -> dict:
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize

    t0 = time.perf_counter()
    s = featurize(
        [src], Path(store), FeaturizeSettings(), overwrite=True, progress=False
    )
    return {
        "seconds": time.perf_counter() - t0,
        "conformations": s.conformations,
        "atoms": s.atoms,
        "bytes": s.bytes_written,
        "uncompressed_bytes": s.uncompressed_bytes,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_train(store: str, run: str, epochs: str) -> dict:
    n, history, seconds = train_epochs(store, run, int(epochs))
    return {
        "seconds": seconds,
        "n_train": n,
        "epoch_conf_per_s": [n / h["epoch_seconds"] for h in history],
        "valid_rmse_kcal_mol": [h["valid_rmse_kcal_mol"] for h in history],
        "peak_rss_mib": peak_rss_mib(),
    }


def child_torchani_cache(src: str, workdir: str) -> dict:
    import os

    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    from torchani.datasets import ANIBatchedDataset, ANIDataset, create_batched_dataset

    path = os.path.join(workdir, "batched")
    t0 = time.perf_counter()
    create_batched_dataset(
        ANIDataset(src),
        dest_path=path,
        batch_size=256,
        splits={"training": 0.8, "validation": 0.2},
    )
    ANIBatchedDataset(path, split="training").cache()
    return {"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--factor", type=int, default=93)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        fn = {
            "featurize": child_featurize,
            "train": child_train,
            "torchani": child_torchani_cache,
        }[kind]
        print(json.dumps(fn(*rest)))
        return
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        big = replicate(Path(args.src), Path(tmp) / "big.h5", args.factor)
        feat = run_child([*ME, "featurize", str(big), f"{tmp}/store"])
        fit = run_child([*ME, "train", f"{tmp}/store", f"{tmp}/run", str(args.epochs)])
        tani = run_child([*ME, "torchani", str(big), tmp])
    print(
        f"data: {feat['conformations']:,} conformations, {feat['atoms']:,} atoms; "
        f"AEVs {feat['uncompressed_bytes'] / 2**30:.2f} GiB uncompressed, "
        f"store {feat['bytes'] / 2**30:.2f} GiB on disk"
    )
    print(
        f"featurize: {feat['seconds']:.0f} s "
        f"({feat['conformations'] / feat['seconds']:,.0f} conf/s), "
        f"peak RSS {feat['peak_rss_mib']:,.0f} MiB"
    )
    rates = ", ".join(f"{r:,.0f}" for r in fit["epoch_conf_per_s"])
    print(
        f"train ({args.epochs} epochs, {fit['n_train']:,} training conformations, "
        f"memory limit 1 GiB): peak RSS {fit['peak_rss_mib']:,.0f} MiB; "
        f"conf/s per epoch {rates}; valid RMSE "
        + ", ".join(f"{v:.2f}" for v in fit["valid_rmse_kcal_mol"])
        + " kcal/mol"
    )
    print(
        f"TorchANI cached loader (training split of the same file): peak RSS "
        f"{tani['peak_rss_mib']:,.0f} MiB"
    )
    write_json(
        args.json,
        {"machine": machine(), "featurize": feat, "train": fit, "torchani_cache": tani},
    )


if __name__ == "__main__":
    main()
