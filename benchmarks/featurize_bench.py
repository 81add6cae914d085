"""Featurize throughput against TorchANI's AEVComputer alone, on the same data.

For the s01 file and a file N times larger made from it (twice: uncompressed, and
gzip'd as the ANI-1 release is): the whole `featurize` (reading, checking, AEVs,
compression, writing, manifest) in conformations/s, atoms/s and MB/s written, next
to TorchANI's AEVComputer alone on the same conformations, data already in memory,
output thrown away. The AEVComputer-alone baseline is measured in several
configurations and the fastest is the one compared against: glibc's default
allocator and aevpipe's allocator setting (aevpipe.allocator), from 4,096 to 65,536
atoms per call, one calling loop with torch's default threads. Featurize runs with
its default threads and, for comparison, with one unit thread and with its large
chunk files written straight to the device (`--direct-writes`; the output gives
how fast new page-cache pages were, before and after: see `new_page_write_mb_s`).

Each configuration runs in its own process (so its peak memory is its own), once
untimed (the process's heap grows, caches fill: the first featurize of s01 x10 took
0.52-0.65 s against 0.43-0.55 s for the next) and then `--repeats` times, median
time. This machine's speed drifts by up to 1.5x over minutes (other tenants), so
configurations are run in `--rounds` interleaved rounds and each ratio is taken
within a round; the median over rounds is reported.

Each featurize writes a new store, as a user's first run does; nothing is deleted
until the benchmark ends. On ext4 without a journal (this project's machine), files
deleted in the last minutes slow every new file of their block group, so a store
replaced back to back (`--store overwrite`, what this benchmark did up to session
11) measures the last run's deletions too: see `common.file_creation_us`, whose
probe of the work folder the output gives before and after.

    python -m benchmarks.featurize_bench ../shared/data/ani_gdb_s01.h5 --factor 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    empty_files,
    file_creation_us,
    machine,
    new_page_write_mb_s,
    peak_rss_mib,
    replicate,
    run_child,
    write_json,
)

FEATURIZE_RUNS = [  # name, unit threads (0: default), chunk file writes
    ("featurize", "0", "buffered"),
    ("featurize, 1 thread", "1", "buffered"),
    ("featurize, direct writes", "0", "direct"),
]
DIRECT = "featurize, direct writes"

BASELINES = [
    ("default", 4096),
    ("default", 8192),
    ("default", 16384),
    ("aevpipe", 4096),
    ("aevpipe", 8192),
    ("aevpipe", 16384),
    ("aevpipe", 32768),
    ("aevpipe", 65536),
]


def child_featurize(
    src: str,
    out: str,
    device: str,
    threads: str,
    repeats: str,
    mode: str = "fresh",
    writes: str = "buffered",
) -> dict:
    """`mode` "fresh": each run writes a new store in the folder `out`, as a first
    featurize does, and the store is then emptied, not deleted (see
    `file_creation_us`). "overwrite": every run replaces the store `out`
    (--overwrite back to back), deleting the last one's files. `writes`:
    "buffered" (the default) or "direct" (--direct-writes)."""
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize

    times = []
    for i in range(1 + int(repeats)):  # the first run warms up, untimed
        store = Path(out) / f"run-{i}" if mode == "fresh" else Path(out)
        t0 = time.perf_counter()
        s = featurize(
            [src],
            store,
            FeaturizeSettings(
                device=device, threads=int(threads), direct_writes=writes == "direct"
            ),
            overwrite=mode == "overwrite",
            progress=False,
        )
        if i:
            times.append(time.perf_counter() - t0)
        if mode == "fresh":
            empty_files(store)
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "conformations": s.conformations,
        "atoms": s.atoms,
        "bytes": s.bytes_written,
        "units": s.units_run,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_aev_alone(
    src: str, device: str, malloc: str, batch_atoms: str, repeats: str
) -> dict:
    import torch

    from aevpipe.aev import build_aev_computer, resolve_device
    from aevpipe.allocator import keep_freed_memory
    from aevpipe.ani1 import ANI1File
    from aevpipe.config import AEVParams
    from aevpipe.units import species_indices

    if malloc == "aevpipe":
        assert keep_freed_memory()
    params = AEVParams.ani1x()
    dev = resolve_device(device)
    computer = build_aev_computer(params, dev)
    batches = []
    with ANI1File(src) as f:
        for m in f.molecules():
            step = max(1, int(batch_atoms) // m.n_atoms)
            b = f.read(m.group, 0, m.n_conformations)
            s = species_indices(b.symbols, params.elements, src, m.group)
            for i in range(0, m.n_conformations, step):
                batches.append(
                    (
                        torch.from_numpy(s[i : i + step]).long().to(dev),
                        torch.from_numpy(b.coordinates[i : i + step]).to(dev),
                    )
                )
    n = sum(len(s) for s, _ in batches)
    atoms = sum(s.numel() for s, _ in batches)
    times = []
    with torch.no_grad():
        for s, c in batches:  # a whole untimed pass warms up, as featurize's does
            computer(s, c).cpu()
        for _ in range(int(repeats)):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for s, c in batches:
                computer(s, c).cpu()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "conformations": n,
        "atoms": atoms,
        "peak_rss_mib": peak_rss_mib(),
    }


def _rates(runs: dict) -> tuple[dict[str, float], str]:
    """Conformations/s of every configuration, and the fastest AEVComputer alone."""
    rate = {k: v["conformations"] / v["seconds"] for k, v in runs.items()}
    return rate, max((k for k in runs if "malloc" in k), key=rate.get)


def _median_rows(rounds: list[dict]) -> dict:
    """Per configuration: the median over rounds of each round's median time."""
    out = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        seconds = statistics.median(r["seconds"] for r in runs)
        out[name] = {
            **runs[0],
            "seconds": seconds,
            "round_seconds": [r["seconds"] for r in runs],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--store",
        choices=("fresh", "overwrite"),
        default="fresh",
        help="fresh: each featurize writes a new store, as a first run does "
        "(default); overwrite: each replaces the last (--overwrite back to back), "
        "which on ext4 without a journal also measures the deletions' aftermath",
    )
    ap.add_argument(
        "--workdir", help="folder for the data and stores (default: a temporary one)"
    )
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
    me = ["-m", "benchmarks.featurize_bench", "--child"]
    reps = str(args.repeats)
    plain = "default malloc, 8192 atoms"
    probes, pages = {}, {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        probes["before"] = file_creation_us(Path(tmp))
        pages["before"] = new_page_write_mb_s(Path(tmp))
        x = f"x{args.factor}"
        big = replicate(Path(args.src), Path(tmp) / f"{x}.h5", args.factor)
        big_gz = replicate(
            Path(args.src), Path(tmp) / f"{x}-gzip.h5", args.factor, gzip=True
        )
        for label, src in (
            ("s01", args.src),
            (f"s01 {x}", str(big)),
            (f"s01 {x}, gzip as released", str(big_gz)),
        ):
            rounds, ratios, ratios_plain, ratios_one = [], [], [], []
            ratios_direct = []
            for k in range(args.rounds):
                runs = {
                    f"{malloc} malloc, {atoms} atoms": run_child(
                        [*me, "aev", src, args.device, malloc, str(atoms), reps]
                    )
                    for malloc, atoms in BASELINES
                }
                for name, threads, writes in FEATURIZE_RUNS:
                    store = f"{tmp}/stores/{len(rows)}-{k}-{threads}-{writes}"
                    runs[name] = run_child(
                        [*me, "featurize", src, store, args.device, threads, reps]
                        + [args.store, writes]
                    )
                rounds.append(runs)
                rate, best = _rates(runs)
                ratios.append(rate["featurize"] / rate[best])
                ratios_plain.append(rate["featurize"] / rate[plain])
                ratios_one.append(rate["featurize, 1 thread"] / rate[best])
                ratios_direct.append(rate[DIRECT] / rate[best])
            runs = _median_rows(rounds)
            feat = runs["featurize"]
            rate, best = _rates(runs)
            rate = {k: v for k, v in rate.items() if "malloc" in k}
            row = {
                "data": label,
                "conformations": feat["conformations"],
                "featurize_seconds": feat["seconds"],
                "featurize_round_seconds": feat["round_seconds"],
                "featurize_conf_per_s": feat["conformations"] / feat["seconds"],
                "featurize_atoms_per_s": feat["atoms"] / feat["seconds"],
                "featurize_mb_per_s": feat["bytes"] / 1e6 / feat["seconds"],
                "featurize_peak_rss_mib": feat["peak_rss_mib"],
                "featurize_1_thread_conf_per_s": feat["conformations"]
                / runs["featurize, 1 thread"]["seconds"],
                "featurize_1_thread_peak_rss_mib": runs["featurize, 1 thread"][
                    "peak_rss_mib"
                ],
                "aev_alone_conf_per_s": rate,
                "aev_alone_round_seconds": {
                    k: v["round_seconds"] for k, v in runs.items() if "malloc" in k
                },
                "aev_alone_best": best,
                "aev_alone_peak_rss_mib": runs[best]["peak_rss_mib"],
                "ratio_to_best": statistics.median(ratios),
                "ratio_to_best_rounds": ratios,
                "ratio_to_plain": statistics.median(ratios_plain),
                "ratio_to_plain_rounds": ratios_plain,
                "ratio_1_thread_to_best": statistics.median(ratios_one),
                "featurize_direct_conf_per_s": feat["conformations"]
                / runs[DIRECT]["seconds"],
                "featurize_direct_round_seconds": runs[DIRECT]["round_seconds"],
                "ratio_direct_to_best": statistics.median(ratios_direct),
                "ratio_direct_to_best_rounds": ratios_direct,
            }
            rows.append(row)
        probes["after"] = file_creation_us(Path(tmp))
        pages["after"] = new_page_write_mb_s(Path(tmp))
    print(
        f"machine: {machine()}; device {args.device}; median of {args.repeats} "
        f"repeats, median over {args.rounds} interleaved rounds; stores: "
        f"{args.store}; one new file in the work folder took "
        f"{probes['before']:.0f} us before and {probes['after']:.0f} us after; "
        f"new page-cache pages were written at {pages['before']:,.0f} MB/s before and "
        f"{pages['after']:,.0f} MB/s after"
    )
    for r in rows:
        print(
            f"{r['data']}: {r['conformations']:,d} conformations; featurize "
            f"{r['featurize_conf_per_s']:,.0f} conf/s, "
            f"{r['featurize_atoms_per_s']:,.0f} atoms/s, "
            f"{r['featurize_mb_per_s']:.1f} MB/s written, "
            f"peak {r['featurize_peak_rss_mib']:.0f} MiB; with 1 unit thread "
            f"{r['featurize_1_thread_conf_per_s']:,.0f} conf/s, "
            f"peak {r['featurize_1_thread_peak_rss_mib']:.0f} MiB"
        )
        for name, value in r["aev_alone_conf_per_s"].items():
            mark = "  <- best" if name == r["aev_alone_best"] else ""
            print(f"    AEVComputer alone, {name:28s} {value:10,.0f} conf/s{mark}")
        rounds = ", ".join(f"{x:.2f}" for x in r["ratio_to_best_rounds"])
        print(
            f"    ratio featurize / best AEVComputer alone {r['ratio_to_best']:.2f} "
            f"(rounds {rounds}); 1 unit thread {r['ratio_1_thread_to_best']:.2f}; "
            f"/ default malloc at 8192 atoms {r['ratio_to_plain']:.2f}"
        )
        rounds = ", ".join(f"{x:.2f}" for x in r["ratio_direct_to_best_rounds"])
        print(
            f"    with --direct-writes {r['featurize_direct_conf_per_s']:,.0f} "
            f"conf/s, ratio {r['ratio_direct_to_best']:.2f} (rounds {rounds})"
        )
    write_json(
        args.json,
        {
            "machine": machine(),
            "device": args.device,
            "store": args.store,
            "file_creation_us": probes,
            "new_page_write_mb_s": pages,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
