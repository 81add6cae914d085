"""Predict: energies (and forces) of new geometries from a trained run.

Inputs are ANI-1-style HDF5 files (both layouts featurize reads), XYZ files
(single or multi-frame, Angstrom; aevpipe's own reader, which keeps the comment
line as it is and takes atomic numbers too) and anything else `ase.io` reads
(extended XYZ, PDB, ...). An ensemble gives its members' mean and their spread.
Conformations go through the model in batches of about `batch_atoms` atoms, so
memory stays bounded. Output is CSV or extended XYZ, to a file (written to a
temporary file and moved into place at the end) or to standard output.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from aevpipe.aev import resolve_device
from aevpipe.ani1 import ANI1File
from aevpipe.elements import formula
from aevpipe.errors import InputError, SettingsError, output_folder
from aevpipe.inference import Potential
from aevpipe.keys import HARTREE_TO_EV, HARTREE_TO_KCALMOL
from aevpipe.units import species_indices
from aevpipe.xyz import Frame, read_frames

# Energy unit -> (column suffix, factor from Hartree). Forces are that unit per
# Angstrom.
UNITS = {
    "hartree": ("hartree", 1.0),
    "kcal/mol": ("kcal_mol", HARTREE_TO_KCALMOL),
    "eV": ("ev", HARTREE_TO_EV),
}
FORMATS = ("csv", "extxyz")
STDOUT = "-"


@dataclass
class Chunk:
    """Conformations of one atom count from one source, ready for the model."""

    source: str
    group: str
    index: np.ndarray  # (n,) position in the source group or frame number
    symbols: list[list[str]]  # (n, A)
    coordinates: np.ndarray  # (n, A, 3)
    energies: np.ndarray | None  # (n,) Hartree, when the source carries them
    comments: list[str] | None = None  # per frame, XYZ and ASE inputs


def _kind(path: str) -> str:
    """ "hdf5", "xyz" (aevpipe's reader) or "ase"."""
    if Path(path).suffix.lower() == ".xyz":
        return "xyz"
    return "hdf5" if h5py.is_hdf5(path) else "ase"


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


def _ase_frames(path: str) -> Iterator[Frame]:
    """Frames that `ase.io` reads from `path`; the comment is ASE's info."""
    import ase.io

    try:
        for i, atoms in enumerate(ase.io.iread(path, index=":")):
            if atoms.pbc.any():
                raise InputError(path, f"frame {i}", "periodic cells are not supported")
            comment = " ".join(f"{k}={v}" for k, v in atoms.info.items())
            positions = atoms.positions.astype(np.float32)
            if not np.isfinite(positions).all():
                raise InputError(path, f"frame {i}", "coordinates are NaN or infinite")
            yield Frame(i, atoms.get_chemical_symbols(), positions, comment)
    except InputError:
        raise
    except Exception as exc:  # ASE raises many kinds for files it cannot read
        text = str(exc).strip().splitlines()
        raise InputError(
            path, None, f"ase.io cannot read it ({text[-1] if text else exc!r})"
        ) from None


def _frame_chunks(path: str, batch_atoms: int, frames) -> Iterator[Chunk]:
    pending: list = []

    def flush() -> Chunk:
        return Chunk(
            Path(path).name,
            "",
            np.array([f.index for f in pending]),
            [f.symbols for f in pending],
            np.stack([f.coordinates for f in pending]),
            None,
            [f.comment for f in pending],
        )

    for frame in frames:
        if pending and (
            len(frame.symbols) != len(pending[0].symbols)
            or len(pending) * len(frame.symbols) >= batch_atoms
        ):
            yield flush()
            pending = []
        pending.append(frame)
    if pending:
        yield flush()


def read_chunks(path: str, batch_atoms: int) -> Iterator[Chunk]:
    """Conformations of one input file, in chunks of one atom count."""
    kind = _kind(path)
    if kind == "hdf5":
        return _hdf5_chunks(path, batch_atoms)
    frames = read_frames(path) if kind == "xyz" else _ase_frames(path)
    return _frame_chunks(path, batch_atoms, frames)


@dataclass
class Predicted:
    """What predict wrote: rows, and how many are flagged `outside_fit`."""

    rows: int = 0
    outside_fit: int = 0


def predict(
    run: Path,
    files: list[str],
    out: Path | str,
    device: str = "auto",
    batch_atoms: int = 65536,
    forces: bool = False,
    units: str = "hartree",
    fmt: str | None = None,
) -> Predicted:
    """Write predictions for every conformation of `files` to `out` (a path, or
    "-" for standard output), as `fmt` (csv or extxyz; by default from the
    suffix of `out`: .xyz and .extxyz are extended XYZ, anything else CSV)."""
    if units not in UNITS:
        raise SettingsError(f"unknown unit {units!r}; choose from {list(UNITS)}")
    fmt = fmt or (
        "extxyz" if Path(str(out)).suffix.lower() in (".xyz", ".extxyz") else "csv"
    )
    if fmt not in FORMATS:
        raise SettingsError(f"unknown output format {fmt!r}; choose from {FORMATS}")
    for path in files:
        if not Path(path).is_file():
            raise InputError(path, None, "no such file")
    potential = Potential(Path(run), resolve_device(device))
    columns = Columns(
        units,
        spread=potential.members > 1,
        reference=any(_kind(p) == "hdf5" for p in files),
        comment=any(_kind(p) != "hdf5" for p in files),
        forces=forces,
    )
    done = Predicted()
    with _output(out) as fh:
        writer = (CsvRows if fmt == "csv" else ExtxyzFrames)(fh, columns)
        for path in files:
            before = done.rows
            for chunk in read_chunks(path, batch_atoms):
                _predict_chunk(writer, potential, path, chunk, columns, done)
            if done.rows == before:
                raise InputError(path, None, "holds no conformations")
    return done


@contextlib.contextmanager
def _output(out: Path | str) -> Iterator[TextIO]:
    """Standard output, or a temporary file moved to `out` once complete."""
    if str(out) == STDOUT:
        yield sys.stdout
        sys.stdout.flush()
        return
    out = Path(out)
    output_folder(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as fh:
            yield fh
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Columns:
    """What each prediction holds, and its names in the chosen unit."""

    units: str
    spread: bool  # an ensemble: its members' standard deviation
    reference: bool  # inputs that carry energies
    comment: bool  # inputs with comment lines
    forces: bool

    @property
    def suffix(self) -> str:
        return UNITS[self.units][0]

    def names(self) -> list[str]:
        u = self.suffix
        return [
            "source",
            "group",
            "index",
            "formula",
            "n_atoms",
            f"energy_pred_{u}",
            *([f"energy_std_{u}"] if self.spread else []),
            "outside_fit",  # 1: composition outside the self energies' fit
            *([f"energy_ref_{u}"] if self.reference else []),
            *(["comment"] if self.comment else []),
            *([f"forces_{u}_per_angstrom"] if self.forces else []),
        ]


def _predict_chunk(
    writer, potential: Potential, path: str, chunk: Chunk, columns: Columns, done
) -> None:
    symbols = np.asarray(chunk.symbols)
    species = species_indices(
        symbols, potential.elements, path, chunk.group or "frame", chunk.index
    )
    factor = UNITS[columns.units][1]
    forces = None
    if columns.forces:
        members, forces = potential.energies_and_forces(species, chunk.coordinates)
        forces *= factor
    else:
        members = potential.energies(species, chunk.coordinates)
    members *= factor
    # Unbiased, as TorchANI's query-by-committee spread.
    spread = members.std(0, ddof=1) if len(members) > 1 else None
    outside = potential.outside_fit(species)
    u = columns.suffix
    for k in range(len(species)):
        row: dict[str, Any] = {
            "source": chunk.source,
            "group": chunk.group,
            "index": int(chunk.index[k]),
            "formula": formula(chunk.symbols[k]),
            "n_atoms": symbols.shape[1],
            f"energy_pred_{u}": float(members[:, k].mean()),
            "outside_fit": int(outside[k]),
        }
        if spread is not None:
            row[f"energy_std_{u}"] = float(spread[k])
        if columns.reference:
            ref = chunk.energies
            row[f"energy_ref_{u}"] = None if ref is None else float(ref[k]) * factor
        if columns.comment:
            row["comment"] = chunk.comments[k] if chunk.comments else ""
        if forces is not None:
            row[f"forces_{u}_per_angstrom"] = forces[k]
        writer.write(row, chunk.symbols[k], chunk.coordinates[k])
    done.rows += len(species)
    done.outside_fit += int(outside.sum())


class CsvRows:
    """One CSV row a conformation; forces as 3 x atoms numbers, space-separated."""

    def __init__(self, fh: TextIO, columns: Columns):
        self.names = columns.names()
        self.writer = csv.writer(fh)
        self.writer.writerow(self.names)

    def write(self, row: dict[str, Any], symbols, coordinates) -> None:
        self.writer.writerow([_text(row.get(name)) for name in self.names])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10f}"
    if isinstance(value, np.ndarray):
        return " ".join(f"{x:.8f}" for x in value.ravel())
    return str(value)


class ExtxyzFrames:
    """One extended-XYZ frame a conformation: the row's values in its comment
    line (key=value), forces as per-atom columns."""

    def __init__(self, fh: TextIO, columns: Columns):
        self.fh = fh
        self.forces = f"forces_{columns.suffix}_per_angstrom"

    def write(self, row: dict[str, Any], symbols, coordinates) -> None:
        from ase import Atoms
        from ase.io.extxyz import write_xyz

        atoms = Atoms(symbols=symbols, positions=np.asarray(coordinates, np.float64))
        forces = row.pop(self.forces, None)
        if forces is not None:
            atoms.arrays[self.forces] = np.asarray(forces, np.float64)
        atoms.info.update({k: v for k, v in row.items() if v is not None})
        write_xyz(self.fh, atoms)
