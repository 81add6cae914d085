"""The floor under featurize: TorchANI's AEVComputer forward alone, nothing read or
written, over every conformation of some ANI-1 files.

    python -m benchmarks.aev_floor data/synth-full/ani_gdb_s0*.h5 --threads 2

Featurize calls this same forward (aevpipe.aev.build_aev_computer) in batches of
about 4,096 atoms; here the conformations are in memory beforehand, and on the
CPU `--threads` Python threads each run the forward on their share of molecules
with one torch thread each, as featurize's unit threads do.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from aevpipe.aev import BATCH_ATOMS, batch_conformations, build_aev_computer
from aevpipe.ani1 import ANI1File
from aevpipe.config import AEVParams


def load(files: list[str], device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """(species (C, A), coordinates (C, A, 3)) per molecule, on `device`."""
    elements = AEVParams.ani1x().elements
    blocks = []
    for path in files:
        with ANI1File(path) as f:
            for m in f.molecules():
                b = f.read(m.group, 0, m.n_conformations)
                row = torch.tensor([elements.index(s) for s in b.symbols[0]])
                species = row.expand(len(b.coordinates), -1).contiguous()
                coords = torch.from_numpy(b.coordinates)
                blocks.append((species.to(device), coords.to(device)))
    return blocks


def forward_seconds(
    blocks: list[tuple[torch.Tensor, ...]], device: torch.device, threads: int = 1
) -> float:
    """Wall seconds of the forward over every block, in batches of BATCH_ATOMS."""
    computer = build_aev_computer(AEVParams.ani1x(), device)

    def run(share) -> None:
        with torch.no_grad():
            for species, coords in share:
                step = batch_conformations(species.shape[1], BATCH_ATOMS)
                for i in range(0, len(coords), step):
                    computer(species[i : i + step], coords[i : i + step])

    shares = [blocks[k::threads] for k in range(threads)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if threads == 1:
        run(blocks)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, shares))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="+", help="HDF5 files")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    blocks = load(args.src, device)
    n = sum(len(c) for _, c in blocks)
    forward_seconds(blocks[:3], device, 1)  # warm-up
    seconds = forward_seconds(blocks, device, args.threads)
    print(
        f"TorchANI AEVComputer forward, {n:,} conformations, {args.threads} "
        f"thread(s) on {device}: {seconds:.1f} s ({n / seconds:,.0f} conformations/s)"
    )


if __name__ == "__main__":
    main()
