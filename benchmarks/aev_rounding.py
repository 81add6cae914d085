"""Does a model trained on a 16-bit store predict as well from exact AEVs?

    aevpipe featurize ../shared/data/ani_gdb_s0[12].h5 --out /tmp/aev16
    aevpipe train /tmp/aev16 --out /tmp/run16 --max-time 120
    python -m benchmarks.aev_rounding /tmp/run16 ../shared/data/ani_gdb_s0[12].h5

Training sees the store's AEVs, rounded to 16 bits; predict, export and the ASE
calculator compute float32 AEVs from the geometry. For every conformation of the
given files this prints how far the run's energies from the two lie apart, and the
RMSE of each against the reference energies (kcal/mol).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from aevpipe.aev import element_rows
from aevpipe.ani1 import ANI1File
from aevpipe.blocks import element_counts
from aevpipe.inference import Potential
from aevpipe.keys import HARTREE_TO_KCALMOL
from benchmarks.common import machine, write_json

ROUNDINGS = {
    "float32": lambda x: x,
    "float16": lambda x: x.half().float(),
    "bfloat16": lambda x: x.bfloat16().float(),
}


@torch.no_grad()
def energies(potential: Potential, species: np.ndarray, xyz: np.ndarray) -> dict:
    """Members' mean energy (Hartree, self energies included) of conformations of
    one atom count, from their AEVs as float32 and rounded each way."""
    rows = element_rows(
        potential.computer,
        torch.from_numpy(species),
        torch.from_numpy(xyz),
        len(potential.elements),
    )
    present = [(e, r) for e, r in zip(potential.elements, rows, strict=True) if r]
    conf = {e: r[1] for e, r in present}
    shift = element_counts(species, len(potential.elements)) @ potential.self_energies
    out = {}
    for name, rounding in ROUNDINGS.items():
        aev = {e: rounding(r[0]) for e, r in present}
        atomic = potential.model(aev, conf, len(species)).double().mean(0)
        out[name] = atomic.numpy() + shift
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a trained run folder")
    ap.add_argument("src", nargs="+", help="HDF5 files")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    potential = Potential(Path(args.run), torch.device("cpu"))
    index = {e: i for i, e in enumerate(potential.elements)}
    found: dict[str, list[np.ndarray]] = {name: [] for name in ROUNDINGS}
    reference = []
    for path in args.src:
        with ANI1File(path) as f:
            for molecule in f.molecules():
                data = f.read(molecule.group, 0, molecule.n_conformations)
                species = np.vectorize(index.__getitem__, otypes=[np.int64])(
                    data.symbols
                )
                for i in range(0, len(species), 4096):
                    part = slice(i, i + 4096)
                    got = energies(
                        potential,
                        np.ascontiguousarray(species[part]),
                        np.ascontiguousarray(data.coordinates[part]),
                    )
                    for name, values in got.items():
                        found[name].append(values)
                reference.append(data.energies)
    ref = np.concatenate(reference)
    exact = np.concatenate(found["float32"])

    def rms(x: np.ndarray) -> float:
        return math.sqrt(float(np.mean(np.square(x * HARTREE_TO_KCALMOL))))

    results: dict = {"machine": machine(), "conformations": len(ref), "aevs": {}}
    print(f"machine: {machine()}\n{len(ref):,} conformations of {args.src}")
    print(f"{'AEVs as':9s} {'RMSE vs ref':>11s} {'RMS vs float32':>14s} {'max':>7s}")
    for name, parts in found.items():
        values = np.concatenate(parts)
        gap = np.abs(values - exact) * HARTREE_TO_KCALMOL
        row = {
            "rmse_kcal_mol": rms(values - ref),
            "rms_from_float32_kcal_mol": rms(values - exact),
            "max_from_float32_kcal_mol": float(gap.max()),
        }
        results["aevs"][name] = row
        print(
            f"{name:9s} {row['rmse_kcal_mol']:11.4f} "
            f"{row['rms_from_float32_kcal_mol']:14.4f} "
            f"{row['max_from_float32_kcal_mol']:7.4f}"
        )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
