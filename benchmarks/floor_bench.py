"""How fast featurize could be on a small file: its unavoidable work alone, against
TorchANI's AEVComputer alone.

The unavoidable work: read each molecule's conformations (checking values), compute
their element rows with featurize's own AEV path (`aev.compute_element_rows`),
encode every chunk of AEV rows with the store's compressor and store it as a file
(write, then rename, as Zarr does), on featurize's unit threads (one per core),
each run into a new folder, as featurize_bench's runs write new stores (the last
run's output is emptied, not deleted: see `common.file_creation_us`). Nothing else:
no scan, plan, store metadata, per-conformation arrays, progress files or manifest.
Whatever featurize adds to this is bookkeeping; if this alone is below a target
ratio to AEVComputer alone, featurize cannot reach it with this AEV path on this
machine.

Each runs in its own process, once untimed, then `--repeats` times (median), in
`--rounds` interleaved rounds (this machine's speed drifts by minutes), beside
featurize itself (featurize_bench's child: default threads, new stores); the
baseline is featurize_bench's AEVComputer alone at `--batch-atoms` with aevpipe's
allocator.

    python -m benchmarks.floor_bench ../shared/data/ani_gdb_s01.h5
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import empty_files, machine, run_child, write_json


def child_floor(src: str, out: str, repeats: str) -> dict:
    import torch

    from aevpipe.aev import build_aev_computer, compute_element_rows
    from aevpipe.allocator import keep_freed_memory
    from aevpipe.ani1 import ANI1File
    from aevpipe.config import AEVParams, FeaturizeSettings
    from aevpipe.executors import threads_per_worker
    from aevpipe.shards import COMPRESSOR
    from aevpipe.stages.featurize import unit_threads
    from aevpipe.units import species_indices

    keep_freed_memory()
    params = AEVParams.ani1x()
    settings = FeaturizeSettings()
    computer = build_aev_computer(params, torch.device("cpu"))
    reader = ANI1File(src)
    molecules = reader.molecules()
    elements = params.elements
    threads = unit_threads(settings, on_gpu=False)

    def unit(run: Path, index: int) -> None:
        m = molecules[index]
        block = reader.read(m.group, 0, m.n_conformations, check_finite=True)
        species = species_indices(block.symbols, elements, src, m.group)
        rows = compute_element_rows(
            computer,
            torch.from_numpy(species),
            torch.from_numpy(block.coordinates),
            len(elements),
        )
        for e, r in enumerate(rows):
            if r is None:
                continue
            folder = run / f"{index}-{e}"
            folder.mkdir(parents=True, exist_ok=True)
            r = r.numpy()
            for i in range(0, len(r), settings.chunk_rows):
                data = COMPRESSOR.encode(r[i : i + settings.chunk_rows])
                tmp = folder / f".{i}.partial"
                tmp.write_bytes(data)
                os.replace(tmp, folder / str(i))

    # Largest first, as featurize runs them.
    order = sorted(
        range(len(molecules)),
        key=lambda i: -molecules[i].n_conformations * molecules[i].n_atoms,
    )
    times = []
    torch.set_num_threads(threads_per_worker(threads))  # as featurize sets them
    with torch.no_grad(), ThreadPoolExecutor(threads) as pool:
        for i in range(1 + int(repeats)):  # the first run warms up, untimed
            run = Path(out) / f"run-{i}"
            t0 = time.perf_counter()
            list(pool.map(functools.partial(unit, run), order))
            if i:
                times.append(time.perf_counter() - t0)
            empty_files(run)
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "conformations": sum(m.n_conformations for m in molecules),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/data/ani_gdb_s01.h5")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-atoms", type=int, default=32768)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import json

        print(json.dumps(child_floor(*args.child)))
        return
    src, reps = str(Path(args.src).resolve()), str(args.repeats)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            floor = run_child(
                ["-m", "benchmarks.floor_bench", "--child", src, f"{tmp}/floor-{k}"]
                + [reps]
            )
            alone = run_child(
                [
                    *("-m", "benchmarks.featurize_bench", "--child", "aev", src),
                    *("cpu", "aevpipe", str(args.batch_atoms), reps),
                ]
            )
            feat = run_child(
                [
                    *("-m", "benchmarks.featurize_bench", "--child", "featurize"),
                    *(src, f"{tmp}/stores-{k}", "cpu", "0", reps, "fresh"),
                ]
            )
            rounds.append(
                {
                    "floor_seconds": floor["seconds"],
                    "featurize_seconds": feat["seconds"],
                    "aev_alone_seconds": alone["seconds"],
                    "ratio": alone["seconds"] / floor["seconds"],
                    "featurize_ratio": alone["seconds"] / feat["seconds"],
                }
            )
    conformations = floor["conformations"]
    print(
        f"machine: {machine()}; {args.src}: {conformations:,d} conformations; "
        f"median of {args.repeats} repeats, {args.rounds} interleaved rounds"
    )
    for r in rounds:
        print(
            f"  unavoidable work {r['floor_seconds'] * 1e3:.1f} ms "
            f"({conformations / r['floor_seconds']:,.0f} conf/s), featurize "
            f"{r['featurize_seconds'] * 1e3:.1f} ms; AEVComputer alone "
            f"({args.batch_atoms} atoms a call) {r['aev_alone_seconds'] * 1e3:.1f} ms; "
            f"ratios {r['ratio']:.2f} and {r['featurize_ratio']:.2f}"
        )
    for key, what in (("ratio", "unavoidable work"), ("featurize_ratio", "featurize")):
        ratio = statistics.median(r[key] for r in rounds)
        print(f"  {what} / AEVComputer alone, median over rounds: {ratio:.2f}")
    write_json(args.json, {"machine": machine(), "src": args.src, "rounds": rounds})


if __name__ == "__main__":
    main()
