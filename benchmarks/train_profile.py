"""Where a training epoch's CPU time goes, by torch operator.

    python -m benchmarks.train_profile data/aev-s01 --batch-size 2560 --epochs 10

Trains `--epochs` epochs of the default preset (constant learning rate) on a store
under torch's profiler, after a warm-up run, and prints the operators by their own
CPU time, and the networks' arithmetic rate: FLOPs of the epochs' GEMMs (training
rows forward and backward, validation rows forward) over the time spent in them,
beside the rate of one large matmul in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from aevpipe.config import load_train_settings
from aevpipe.store import ShardStore
from benchmarks.common import machine, train_epochs
from benchmarks.ensemble_bench import epoch_flops, gemm_peak

GEMMS = ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", help="a shard store")
    ap.add_argument("--batch-size", type=int, default=2560)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rows", type=int, default=15, help="operators to print")
    args = ap.parse_args()
    common = {"batch_size": args.batch_size, "schedule": "none", "early_stop": 0}
    print(f"machine: {machine()}")
    peak = gemm_peak()
    with tempfile.TemporaryDirectory() as tmp:
        train_epochs(args.store, f"{tmp}/warm", 3, **common)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            n, _, seconds = train_epochs(
                args.store, f"{tmp}/run", args.epochs, **common
            )
    averages = prof.key_averages()
    total = sum(a.self_cpu_time_total for a in averages)
    gemm = sum(a.self_cpu_time_total for a in averages if a.key in GEMMS)
    flops = args.epochs * epoch_flops(
        ShardStore.open(Path(args.store)), load_train_settings().hidden
    )
    print(
        f"{args.epochs} epochs of {n:,} training conformations at batch "
        f"{args.batch_size}: {seconds:.2f} s (final evaluation in)\n"
        f"GEMMs {gemm / total:.0%} of the operators' CPU time, at "
        f"{flops / (gemm / 1e6) / 1e9:.0f} GFLOP/s (one 4096 matmul: {peak:.0f})"
    )
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
