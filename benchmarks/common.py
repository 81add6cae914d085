"""Helpers shared by the benchmarks: bigger files made from a real one, peak memory,
machine description, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np


def replicate(
    src: Path,
    dst: Path,
    factor: int,
    noise: float = 1e-3,
    seed: int = 0,
    gzip: bool = False,
) -> Path:
    """`dst`: every molecule group of `src` with its conformations repeated `factor`
    times, coordinates jittered by `noise` Angstrom (energies kept), written block by
    block so memory stays small. Uncompressed and contiguous; with `gzip`, stored as
    the ANI-1 release is (pyanitools: gzip level 6, h5py's own chunk shapes, such as
    (1350, 2, 1) for s01's CH4 coordinates)."""
    rng = np.random.default_rng(seed)
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:

        def copy(name, item):
            if not (isinstance(item, h5py.Group) and "coordinates" in item):
                return
            coords, energies = item["coordinates"], item["energies"]
            c, a = coords.shape[:2]
            g = fout.create_group(name)
            g["species"] = item["species"][()]
            opts = {"compression": "gzip", "compression_opts": 6} if gzip else {}
            out_c = g.create_dataset("coordinates", (c * factor, a, 3), "f4", **opts)
            out_e = g.create_dataset("energies", (c * factor,), "f8", **opts)
            base_c, base_e = coords[()], energies[()]
            for k in range(factor):
                jitter = rng.normal(0, noise, base_c.shape).astype(np.float32)
                out_c[k * c : (k + 1) * c] = base_c + jitter
                out_e[k * c : (k + 1) * c] = base_e

        fin.visititems(copy)
    return dst


def many_molecules(
    src: Path, dst: Path, groups: int, conformations: int, seed: int = 0
) -> Path:
    """`dst`: `groups` molecule groups in the release layout, gzip'd as the release
    is, each `conformations` consecutive conformations of one of `src`'s molecules
    (taken in turn, from a random start) with its atoms in a random order. The
    ANI-1 release's larger subsets hold tens of thousands of groups of a few hundred
    conformations each; featurize runs one unit or more per group."""
    rng = np.random.default_rng(seed)
    with h5py.File(src, "r") as fin:
        sources: list[str] = []

        def find(name, item):
            if isinstance(item, h5py.Group) and "coordinates" in item:
                sources.append(name)

        fin.visititems(find)
        with h5py.File(dst, "w") as fout:
            top = fout.create_group("gdb11_many")
            opts = {"compression": "gzip", "compression_opts": 6}
            for i in range(groups):
                item = fin[sources[i % len(sources)]]
                coords = item["coordinates"]
                n, a = coords.shape[:2]
                k = min(conformations, n)
                start = int(rng.integers(0, n - k + 1))
                order = rng.permutation(a)
                g = top.create_group(f"gdb11_many-{i}")
                g.create_dataset(
                    "coordinates", data=coords[start : start + k][:, order], **opts
                )
                g.create_dataset(
                    "energies", data=item["energies"][start : start + k], **opts
                )
                g["species"] = item["species"][()][order]
    return dst


def machine() -> str:
    """One line: CPU model, cores, memory, Python, torch."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: list[str]) -> dict:
    """Run `python -m benchmarks.<...> args` in a fresh process; its last stdout line
    is a JSON result (so each measurement has its own peak memory)."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_epochs(store: str, run: str, epochs: int) -> tuple[int, list[dict], float]:
    """`aevpipe train` of `store` into `run` for `epochs` epochs at batch 256, quiet:
    training conformations, per-epoch history, wall seconds (final evaluation in)."""
    import time

    from aevpipe import runs
    from aevpipe.config import load_train_settings
    from aevpipe.stages.train import train

    settings = load_train_settings(max_epochs=int(epochs), batch_size=256)
    t0 = time.perf_counter()
    result = train(
        Path(store),
        Path(run),
        settings,
        overwrite=True,
        progress=False,
        echo=lambda *_: None,
    )
    seconds = time.perf_counter() - t0
    return result.metrics["train"]["n"], runs.read_history(Path(run)), seconds


def empty_files(folder: Path) -> None:
    """Truncate every file under `folder` to nothing: its disk space is freed, while
    its files stay (see `file_creation_us` for why a benchmark keeps them until it
    ends)."""
    for root, _, names in os.walk(folder):
        for name in names:
            os.truncate(os.path.join(root, name), 0)


def file_creation_us(folder: Path, n: int = 50) -> float:
    """Microseconds to create one empty file in a new subfolder of `folder`, median
    of `n` (the files stay).

    This project's machine has ext4 without a journal. There a new file skips every
    free inode of its folder's block group that was deleted in the last 60 s (6
    min while that inode's table block is unwritten), and each skip looks the block
    up in the buffer cache (`recently_deleted` in `find_inode_bit`, perf). A new
    file took 13 us in a fresh folder and 620-810 us in /tmp after a few thousand
    deletions there (benchmarks/RESULTS.md, session 12). Benchmarks that delete
    their outputs between runs measure that, not the code."""
    import statistics
    import time
    import uuid

    probe = Path(folder) / f"probe-{uuid.uuid4().hex[:8]}"
    probe.mkdir(parents=True)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        (probe / f"f{i}").touch()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def new_page_write_mb_s(folder: Path, mb: int = 64) -> float:
    """MB/s of writing a new file of `mb` MB through the page cache, in 2 MB writes
    (the file stays).

    On this project's VM the host takes back the memory the guest frees (free page
    reporting, 2 MB blocks after 2 s), and a page the guest uses again must be
    backed anew: a new page-cache page then cost up to 2.5 ms per MB, against
    0.2 ms per MB for memory freed less than 2 s before (benchmarks/RESULTS.md,
    session 13). Featurize writes its store through new pages (the default) or
    beside them (`--direct-writes`); AEVComputer alone needs none."""
    import os
    import time
    import uuid

    block = os.urandom(2 << 20)
    path = Path(folder) / f"pages-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(max(1, mb // 2)):
            f.write(block)
    return max(1, mb // 2) * 2 / (time.perf_counter() - t0)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))
