"""Featurize throughput against TorchANI's AEVComputer alone, on the same data.

For the s01 file and a file N times larger made from it: the whole `featurize`
(reading, checking, AEVs, compression, writing) in conformations/s, atoms/s and MB/s
written, and TorchANI's AEVComputer alone on the same conformations in the same
blocks, data already in memory. Each measurement runs in its own process so its peak
memory is its own.

    python -m benchmarks.featurize_bench ../shared/data/ani_gdb_s01.h5 --factor 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, peak_rss_mib, replicate, run_child, write_json


def child_featurize(src: str, out: str, device: str) -> dict:
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize

    t0 = time.perf_counter()
    s = featurize(
        [src],
        Path(out),
        FeaturizeSettings(device=device),
        overwrite=True,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "conformations": s.conformations,
        "atoms": s.atoms,
        "bytes": s.bytes_written,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_aev_alone(src: str, device: str) -> dict:
    import torch

    from aevpipe.aev import BATCH_ATOMS, build_aev_computer, resolve_device
    from aevpipe.ani1 import ANI1File
    from aevpipe.config import AEVParams
    from aevpipe.plan import unit_size
    from aevpipe.units import species_indices

    params = AEVParams.ani1x()
    dev = resolve_device(device)
    computer = build_aev_computer(params, dev)
    batches = []
    with ANI1File(src) as f:
        for m in f.molecules():
            # AEVComputer alone at the batch size featurize itself calls it with.
            block = unit_size(m.n_atoms, None, BATCH_ATOMS)
            for start in range(0, m.n_conformations, block):
                b = f.read(m.group, start, min(m.n_conformations, start + block))
                s = species_indices(b.symbols, params.elements, src, m.group)
                batches.append(
                    (
                        torch.from_numpy(s).long().to(dev),
                        torch.from_numpy(b.coordinates).to(dev),
                    )
                )
    n = sum(len(s) for s, _ in batches)
    atoms = sum(s.numel() for s, _ in batches)
    with torch.no_grad():
        computer(*batches[0])  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s, c in batches:
            computer(s, c).cpu()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "conformations": n,
        "atoms": atoms,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (
            child_featurize(*rest) if kind == "featurize" else child_aev_alone(*rest)
        )
        print(json.dumps(result))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        big = replicate(Path(args.src), Path(tmp) / f"x{args.factor}.h5", args.factor)
        for label, src in (("s01", args.src), (f"s01 x{args.factor}", str(big))):
            me = ["-m", "benchmarks.featurize_bench"]
            alone = run_child([*me, "--child", "aev", src, args.device])
            feat = run_child(
                [*me, "--child", "featurize", src, f"{tmp}/store", args.device]
            )
            row = {
                "data": label,
                "conformations": feat["conformations"],
                "featurize_conf_per_s": feat["conformations"] / feat["seconds"],
                "featurize_atoms_per_s": feat["atoms"] / feat["seconds"],
                "featurize_mb_per_s": feat["bytes"] / 1e6 / feat["seconds"],
                "featurize_peak_rss_mib": feat["peak_rss_mib"],
                "aev_alone_conf_per_s": alone["conformations"] / alone["seconds"],
                "aev_alone_peak_rss_mib": alone["peak_rss_mib"],
            }
            row["ratio"] = row["featurize_conf_per_s"] / row["aev_alone_conf_per_s"]
            rows.append(row)
    print(f"machine: {machine()}; device {args.device}")
    print(
        f"{'data':12s} {'conf':>9s} {'featurize conf/s':>17s} {'atoms/s':>10s} "
        f"{'MB/s':>6s} {'AEVComputer alone conf/s':>25s} {'ratio':>6s} "
        f"{'peak MiB':>9s}"
    )
    for r in rows:
        print(
            f"{r['data']:12s} {r['conformations']:9,d} "
            f"{r['featurize_conf_per_s']:17,.0f} {r['featurize_atoms_per_s']:10,.0f} "
            f"{r['featurize_mb_per_s']:6.1f} {r['aev_alone_conf_per_s']:25,.0f} "
            f"{r['ratio']:6.2f} {r['featurize_peak_rss_mib']:9.0f}"
        )
    write_json(args.json, {"machine": machine(), "device": args.device, "rows": rows})


if __name__ == "__main__":
    main()
