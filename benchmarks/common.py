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


def train_epochs(
    store: str, run: str, epochs: int, **overrides
) -> tuple[int, list[dict], float]:
    """`aevpipe train` of `store` into `run` for `epochs` epochs at batch 256 (train
    settings `overrides` on top), quiet: training conformations, per-epoch history,
    wall seconds (final evaluation in)."""
    import time

    from aevpipe import runs
    from aevpipe.config import load_train_settings
    from aevpipe.stages.train import train

    settings = load_train_settings(
        **{"max_epochs": int(epochs), "batch_size": 256, **overrides}
    )
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


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))
