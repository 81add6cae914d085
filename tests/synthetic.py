"""Small, seeded, ANI-1-shaped data for tests: made here, never downloaded.

Geometries are random displacements around rough molecular shapes; energies come
from a smooth pairwise potential plus per-element offsets, so they are finite,
learnable and of ANI-1's magnitude (Hartree).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

# Rough equilibrium geometries (Angstrom).
SHAPES = {
    "CH4": (
        ["C", "H", "H", "H", "H"],
        [
            [0, 0, 0],
            [0.63, 0.63, 0.63],
            [-0.63, -0.63, 0.63],
            [-0.63, 0.63, -0.63],
            [0.63, -0.63, -0.63],
        ],
    ),
    "NH3": (
        ["N", "H", "H", "H"],
        [[0, 0, 0], [0.94, 0, -0.33], [-0.47, 0.81, -0.33], [-0.47, -0.81, -0.33]],
    ),
    "H2O": (["O", "H", "H"], [[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]]),
    "CH3OH": (
        ["C", "O", "H", "H", "H", "H"],
        [
            [0, 0, 0],
            [1.43, 0, 0],
            [-0.36, 1.03, 0],
            [-0.36, -0.51, 0.89],
            [-0.36, -0.51, -0.89],
            [1.75, 0.9, 0],
        ],
    ),
    "HCN": (["H", "C", "N"], [[-1.06, 0, 0], [0, 0, 0], [1.16, 0, 0]]),
}
OFFSETS = {"H": -0.5, "C": -37.8, "N": -54.5, "O": -75.0}


def energies_of(symbols: list[str], coords: np.ndarray) -> np.ndarray:
    """A smooth Morse-like pair energy (Hartree) plus element offsets."""
    diff = coords[:, :, None, :] - coords[:, None, :, :]
    r = np.sqrt((diff**2).sum(-1))
    iu = np.triu_indices(len(symbols), 1)
    d = r[:, iu[0], iu[1]]
    pair = 0.1 * (1 - np.exp(-1.5 * (d - 1.2))) ** 2 - 0.1
    return pair.sum(1) + sum(OFFSETS[s] for s in symbols)


def conformations(
    formula: str, n: int, rng: np.random.Generator, scale: float = 0.08
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`n` displaced conformations of a molecule: symbols, coords, energies."""
    symbols, base = SHAPES[formula]
    coords = np.asarray(base, np.float32)[None] + rng.normal(
        0, scale, (n, len(symbols), 3)
    ).astype(np.float32)
    return symbols, coords, energies_of(symbols, coords.astype(np.float64))


def write_release(
    path: Path, counts: dict[str, int], seed: int = 0, subset: str = "gdb11_s01"
) -> Path:
    """An HDF5 file in the ANI-1 release layout: /subset/subset-i/{...}."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        top = f.create_group(subset)
        for i, (formula, n) in enumerate(counts.items()):
            symbols, coords, energies = conformations(formula, n, rng)
            g = top.create_group(f"{subset}-{i}")
            g["coordinates"] = coords
            g["energies"] = energies
            g["species"] = np.array([s.encode() for s in symbols], dtype="S1")
            g["smiles"] = np.array([b"X"])  # ignored by readers
    return path


def write_flat(path: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """An HDF5 file in the flat layout: one group per formula, species (C, A)
    atomic numbers, atom order shuffled per conformation."""
    numbers = {"H": 1, "C": 6, "N": 7, "O": 8}
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for formula, n in counts.items():
            symbols, coords, energies = conformations(formula, n, rng)
            z = np.array([numbers[s] for s in symbols])
            order = np.array([rng.permutation(len(symbols)) for _ in range(n)])
            g = f.create_group(formula)
            g["coordinates"] = np.take_along_axis(coords, order[:, :, None], 1)
            g["species"] = z[order]
            g["energies"] = energies
            g["forces"] = np.zeros_like(coords)
    return path
