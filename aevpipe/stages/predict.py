"""Predict: energies of new geometries from a trained run, as CSV (an ensemble's
members' mean, and their spread).

Inputs are ANI-1-style HDF5 files (both layouts featurize reads) and XYZ files
(single or multi-frame, Angstrom). Conformations go through the model in batches
of about `batch_atoms` atoms, so memory stays bounded; the CSV is written to a
temporary file and moved into place at the end.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from aevpipe.aev import resolve_device
from aevpipe.ani1 import ANI1File
from aevpipe.elements import formula
from aevpipe.errors import InputError, output_folder
from aevpipe.inference import Potential
from aevpipe.units import species_indices
from aevpipe.xyz import read_frames

COLUMNS = [
    "source",
    "group",
    "index",
    "formula",
    "n_atoms",
    "energy_pred_hartree",
    "outside_fit",  # 1: composition outside those the self energies were fitted on
]
SPREAD = "energy_std_hartree"  # an ensemble's: its members' standard deviation
REFERENCE = "energy_ref_hartree"


@dataclass
class Chunk:
    """Conformations of one atom count from one source, ready for the model."""

    source: str
    group: str
    index: np.ndarray  # (n,) position in the source group or frame number
    symbols: list[list[str]]  # (n, A)
    coordinates: np.ndarray  # (n, A, 3)
    energies: np.ndarray | None  # (n,) Hartree, when the source carries them


def _is_xyz(path: str) -> bool:
    return Path(path).suffix.lower() == ".xyz" or (
        Path(path).is_file() and not h5py.is_hdf5(path)
    )


def _hdf5_chunks(path: str, batch_atoms: int) -> Iterator[Chunk]:
    with ANI1File(path) as f:
        for m in f.molecules():
            step = max(1, batch_atoms // m.n_atoms)
            for start in range(0, m.n_conformations, step):
                stop = min(m.n_conformations, start + step)
                b = f.read(m.group, start, stop)
                yield Chunk(
                    Path(path).name,
                    m.group,
                    np.arange(start, stop),
                    b.symbols.tolist(),
                    b.coordinates,
                    b.energies,
                )


def _xyz_chunks(path: str, batch_atoms: int) -> Iterator[Chunk]:
    pending: list = []

    def flush() -> Chunk:
        return Chunk(
            Path(path).name,
            "",
            np.array([f.index for f in pending]),
            [f.symbols for f in pending],
            np.stack([f.coordinates for f in pending]),
            None,
        )

    for frame in read_frames(path):
        if pending and (
            len(frame.symbols) != len(pending[0].symbols)
            or len(pending) * len(frame.symbols) >= batch_atoms
        ):
            yield flush()
            pending = []
        pending.append(frame)
    if pending:
        yield flush()


@dataclass
class Predicted:
    """What predict wrote: rows, and how many are flagged `outside_fit`."""

    rows: int = 0
    outside_fit: int = 0


def predict(
    run: Path,
    files: list[str],
    out: Path,
    device: str = "auto",
    batch_atoms: int = 65536,
) -> Predicted:
    """Write predictions for every conformation of `files` to `out`."""
    potential = Potential(Path(run), resolve_device(device))
    for path in files:
        if not Path(path).is_file():
            raise InputError(path, None, "no such file")
    with_reference = any(not _is_xyz(p) for p in files)
    out = Path(out)
    output_folder(out)
    tmp = out.with_name(out.name + ".tmp")
    done = Predicted()
    try:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            spread = [SPREAD] if potential.members > 1 else []
            writer.writerow(
                COLUMNS[:6]
                + spread
                + COLUMNS[6:]
                + ([REFERENCE] if with_reference else [])
            )
            for path in files:
                chunks = (_xyz_chunks if _is_xyz(path) else _hdf5_chunks)(
                    path, batch_atoms
                )
                before = done.rows
                for chunk in chunks:
                    _write_chunk(writer, potential, path, chunk, with_reference, done)
                if done.rows == before:
                    raise InputError(path, None, "holds no conformations")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return done


def _write_chunk(
    writer,
    potential: Potential,
    path: str,
    chunk: Chunk,
    with_reference: bool,
    done: Predicted,
) -> None:
    symbols = np.asarray(chunk.symbols)
    species = species_indices(
        symbols, potential.elements, path, chunk.group or "frame", chunk.index
    )
    members = potential.energies(species, chunk.coordinates)
    energies = members.mean(0)
    # Unbiased, as TorchANI's query-by-committee spread.
    spread = members.std(0, ddof=1) if len(members) > 1 else None
    outside = potential.outside_fit(species)
    n_atoms = symbols.shape[1]
    for k in range(len(energies)):
        row = [
            chunk.source,
            chunk.group,
            int(chunk.index[k]),
            formula(chunk.symbols[k]),
            n_atoms,
            f"{energies[k]:.10f}",
            *([] if spread is None else [f"{spread[k]:.10f}"]),
            int(outside[k]),
        ]
        if with_reference:
            row.append("" if chunk.energies is None else f"{chunk.energies[k]:.10f}")
        writer.writerow(row)
    done.rows += len(energies)
    done.outside_fit += int(outside.sum())
