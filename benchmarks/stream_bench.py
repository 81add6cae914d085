"""Streamed against resident: training epochs of one store under the default 1 GiB
memory limit (windows read from disk every epoch) and with the store held in RAM.

    python -m benchmarks.stream_bench --data data/synth-full --fraction 0.25

The store is made from a share of the synthetic s01-s04 (each molecule's first
`--fraction` of conformations): the whole of it, about 17 GB of float32 AEVs, does
not fit resident in this machine's 24 GiB beside the training. Each mode trains
`--epochs` epochs at batch 256 in a fresh process, the two modes alternated
`--rounds` times; conformations/s over epochs 2 onward, validation included.
`--dtype` sets how the store holds its AEVs (default: featurize's default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from aevpipe.config import FeaturizeSettings
from benchmarks.common import (
    machine,
    peak_rss_mib,
    run_child,
    train_epochs,
    write_json,
)
from benchmarks.scale_bench import subsample

ME = ["-m", "benchmarks.stream_bench", "--child"]


def child(store: str, run: str, epochs: int, memory_limit: int) -> dict:
    from benchmarks.train_bench import steady_rate

    n_train, history, _ = train_epochs(
        store, run, epochs, schedule="none", early_stop=0, memory_limit=memory_limit
    )
    return {
        "n_train": n_train,
        "conf_per_s": steady_rate(history, n_train),
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth-full")
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--resident-limit", type=int, default=12 << 30)
    ap.add_argument(
        "--dtype",
        default=FeaturizeSettings().aev_dtype,
        help="how the store holds its AEVs (default: featurize's)",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        store, run, epochs, limit = args.child
        print(json.dumps(child(store, run, int(epochs), int(limit))))
        return
    from aevpipe.stages.featurize import featurize
    from aevpipe.store import ShardStore

    print(f"machine: {machine()}")
    files = sorted(Path(args.data).glob("ani_gdb_s0*.h5"))
    if not files:
        sys.exit(f"no ani_gdb_s0*.h5 in {args.data}: run `aevpipe synth` first")
    modes = {"streamed (1 GiB)": 1 << 30, "resident": args.resident_limit}
    results: dict = {
        "machine": machine(),
        "fraction": args.fraction,
        "dtype": args.dtype,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        part = subsample(files, args.fraction, Path(tmp) / "h5")
        store = Path(tmp) / "aev"
        settings = FeaturizeSettings(aev_dtype=args.dtype)
        featurize([str(p) for p in part], store, settings, progress=False)
        s = ShardStore.open(store)
        n = sum(g.n_conformations for g in s.layouts)
        gib = s.manifest["uncompressed_bytes"] / 2**30
        results["conformations"] = n
        results["uncompressed_gib"] = gib
        print(f"store: {n:,} conformations, {gib:.1f} GiB uncompressed")
        for r in range(args.rounds):
            for name, limit in modes.items():
                got = run_child(
                    [
                        *ME,
                        str(store),
                        str(Path(tmp) / "run"),
                        str(args.epochs),
                        str(limit),
                    ]
                )
                results["runs"].append({"round": r, "mode": name, **got})
                print(
                    f"round {r} {name:17s} {got['conf_per_s']:9,.0f} conf/s  "
                    f"peak RSS {got['peak_rss_mib']:,.0f} MiB"
                )
    for name in modes:  # pooled: conformations over seconds, epochs 2 onward
        runs = [x for x in results["runs"] if x["mode"] == name]
        done = sum(x["n_train"] * (len(x["epoch_seconds"]) - 1) for x in runs)
        results[name] = done / sum(sum(x["epoch_seconds"][1:]) for x in runs)
        print(f"{name}: {results[name]:,.0f} conf/s over {len(runs)} runs")
    ratio = results["streamed (1 GiB)"] / results["resident"]
    results["streamed_over_resident"] = ratio
    print(f"streamed / resident: {ratio:.2f}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
