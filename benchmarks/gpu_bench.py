"""GPU figures: featurize and training on CUDA, against TorchANI on the same GPU.

    python -m benchmarks.gpu_bench [FILES...] --json benchmarks/results/gpu.json

On the real s01 and s02 by default (`../shared/data/`), in one run:

- featurize: `aevpipe featurize --device cuda` end to end (read, AEVs, store
  written), against TorchANI's AEVComputer forward alone over the same
  conformations on the same GPU (no reading, no writing: the floor);
- training: conformations/s over epochs 2-20, validation included, at batch 256
  and 2560: aevpipe against TorchANI's recipe (`simple_ani`, AEVs recomputed) with
  all its data on the GPU.

Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from aevpipe.config import FeaturizeSettings
from aevpipe.stages.featurize import featurize
from benchmarks import aev_floor
from benchmarks import torchani_baseline as baseline
from benchmarks.common import machine, write_json
from benchmarks.train_bench import run_aevpipe, steady_rate

DEFAULT = ["../shared/data/ani_gdb_s01.h5", "../shared/data/ani_gdb_s02.h5"]


def torchani_forward_rate(files: list[str]) -> dict:
    """TorchANI's AEVComputer (cuAEV where built) over every conformation of
    `files` already on the GPU: the best of three passes after a warm-up."""
    device = torch.device("cuda")
    blocks = aev_floor.load(files, device)
    n = sum(len(c) for _, c in blocks)
    aev_floor.forward_seconds(blocks, device)  # warm-up: kernels, allocator
    seconds = min(aev_floor.forward_seconds(blocks, device) for _ in range(3))
    return {"conformations": n, "seconds": seconds, "per_s": n / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="*", default=DEFAULT, help="HDF5 files")
    ap.add_argument("--batch-sizes", default="256,2560")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench: torch sees no CUDA device; nothing measured")
        return
    gpu = torch.cuda.get_device_name(0)
    print(f"machine: {machine()}; GPU: {gpu}")
    results: dict = {
        "machine": machine(),
        "gpu": gpu,
        "data": [Path(p).name for p in args.src],
        "featurize": {},
        "train": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "aev"
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        summary = featurize(
            args.src, store, FeaturizeSettings(device="cuda"), progress=False
        )
        seconds = time.perf_counter() - t0
        n = summary.conformations
        floor = torchani_forward_rate(args.src)
        results["featurize"] = {
            "aevpipe_seconds": seconds,
            "aevpipe_per_s": n / seconds,
            "torchani_forward": floor,
        }
        print(
            f"featurize {n:,} conformations on CUDA: aevpipe {seconds:.2f} s "
            f"({n / seconds:,.0f}/s, end to end); TorchANI AEVComputer alone "
            f"{floor['seconds']:.2f} s ({floor['per_s']:,.0f}/s)"
        )
        splits = baseline.load_splits(store, args.src)
        print(f"training, epochs 2-{args.epochs}, conformations/s, validation included")
        for bs in (int(b) for b in args.batch_sizes.split(",") if b):
            ours = run_aevpipe(
                store,
                Path(tmp) / f"run{bs}",
                None,
                batch_size=bs,
                max_epochs=args.epochs,
                early_stop=0,
                schedule="none",
                device="cuda",
            )
            theirs = baseline.train(
                "recipe", splits, bs, math.inf, device="cuda", max_epochs=args.epochs
            )
            row = {
                "batch_size": bs,
                "aevpipe": steady_rate(ours["history"], ours["n_train"]),
                "torchani_recipe_gpu": steady_rate(
                    theirs["history"], theirs["n_train"]
                ),
            }
            results["train"].append(row)
            print(
                f"batch {bs:5d}: aevpipe {row['aevpipe']:,.0f}, TorchANI recipe "
                f"{row['torchani_recipe_gpu']:,.0f} "
                f"(x{row['aevpipe'] / row['torchani_recipe_gpu']:.1f})"
            )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
