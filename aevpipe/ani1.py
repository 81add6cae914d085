"""Reader of ANI-1-style HDF5 files: the release layout and the flat later layout.

Release layout (ANI-1): /gdb11_sNN/<molecule>/{coordinates (C,A,3) Angstrom,
energies (C,) Hartree, species (A,) bytes}, other datasets ignored. Flat layout
(ANI-1x, ANI-2x): one group per formula, species (A,) symbols or (C,A) atomic numbers.
Any group holding `coordinates`, `energies` or `species` is a molecule group.

The reader opens its file lazily and drops the handle when pickled, so it travels to
worker processes. It imports no torch.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from aevpipe.elements import ATOMIC_NUMBER, formula, symbol_of
from aevpipe.errors import InputError

REQUIRED = ("coordinates", "energies", "species")


@dataclass(frozen=True)
class MoleculeInfo:
    """One molecule group of a file: where it is and its shape."""

    file: str
    group: str
    n_conformations: int
    n_atoms: int
    symbols: tuple[str, ...]  # of the first conformation, source atom order
    formula: str


@dataclass
class Block:
    """Conformations [start, stop) of one molecule group."""

    coordinates: np.ndarray  # (n, A, 3) float32 Angstrom
    energies: np.ndarray  # (n,) float64 Hartree
    symbols: np.ndarray  # (n, A) str, element symbols in source atom order


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _name(raw: bytes) -> str | bytes:
    """A member's name as h5py's `Group.keys` gives it: UTF-8, else the bytes."""
    try:
        return raw.decode("utf8")
    except UnicodeDecodeError:
        return raw


def _member_key(member: tuple[str | bytes, bytes]) -> list:
    name = member[0]
    return _natural_key(name if isinstance(name, str) else name.decode("latin-1"))


def _read_all(dataset: h5py.h5d.DatasetID) -> np.ndarray:
    """A whole dataset, as h5py's `Dataset[()]` reads it: numbers and fixed-length
    strings with the low-level read, anything else (variable-length strings)
    through `Dataset`."""
    dtype = dataset.dtype
    fixed_string = dtype.kind == "S" and h5py.check_vlen_dtype(dtype) is None
    if not (fixed_string or (dtype.kind in "iuf" and not dtype.metadata)):
        return h5py.Dataset(dataset)[()]
    out = np.empty(dataset.shape, dtype=dataset.dtype)
    if out.size:
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _decode_symbols(raw: np.ndarray, file: str, group: str) -> np.ndarray:
    """Species dataset (bytes, str or atomic numbers) as an array of symbols."""
    if raw.dtype.kind in "iu":
        try:
            return np.vectorize(symbol_of, otypes=[object])(raw).astype(str)
        except ValueError as exc:
            raise InputError(file, group, f"species: {exc}") from None
    if raw.dtype.kind in "SO":
        raw = np.array(
            [s.decode() if isinstance(s, bytes) else str(s) for s in raw.ravel()]
        ).reshape(raw.shape)
    symbols = np.char.strip(raw.astype(str))
    unknown = sorted(set(symbols.ravel()) - set(ATOMIC_NUMBER))
    if unknown:
        raise InputError(file, group, f"species: unknown element symbol(s) {unknown}")
    return symbols


class ANI1File:
    """A lazily opened ANI-1-style HDF5 file; use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._h5: h5py.File | None = None

    def _file(self) -> h5py.File:
        if self._h5 is None:
            p = Path(self.path)
            if not p.exists():
                raise InputError(self.path, None, "no such file")
            if p.is_dir():
                raise InputError(self.path, None, "is a directory, not an HDF5 file")
            if not h5py.is_hdf5(self.path):
                raise InputError(self.path, None, "not an HDF5 file")
            with self._damage(None):
                self._h5 = h5py.File(self.path, "r")
        return self._h5

    @contextlib.contextmanager
    def _damage(self, group: str | None):
        """What HDF5 raises for a damaged file (truncated, bytes changed) as an
        InputError naming the file and group."""
        try:
            yield
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(
                self.path, group, f"cannot be read, damaged? ({reason})"
            ) from None

    def close(self) -> None:
        """Close the handle; the reader reopens on next use."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> ANI1File:
        self._file()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "_h5": None}

    def _groups(self) -> Iterator[tuple[str, dict[str, h5py.h5d.DatasetID]]]:
        """Every molecule group's path, with those of its coordinates, energies and
        species datasets that it has, opened: depth first, each group's members in
        natural name order. A group holding a dataset of one of those names is a
        molecule group, and is not looked into; other groups are.

        With h5py's low-level calls, opening rather than asking first: the whole
        release is some 58,000 groups, scanned before any unit starts, and h5py's
        `Group` objects cost most of that time."""

        def visit(
            group: h5py.h5g.GroupID, path: str
        ) -> Iterator[tuple[str, dict[str, h5py.h5d.DatasetID]]]:
            found = {}
            for k in REQUIRED:
                with contextlib.suppress(KeyError):  # no such object, or not a dataset
                    found[k] = h5py.h5d.open(group, k.encode())
            if found:
                yield path or "/", found
                return
            for name, raw in sorted(((_name(n), n) for n in group), key=_member_key):
                try:
                    member = h5py.h5g.open(group, raw)
                except ValueError:  # not a group
                    continue
                if isinstance(name, bytes):  # readers could not name it again
                    yield f"{path}/{name.decode('latin-1')}", {}
                    continue
                yield from visit(member, f"{path}/{name}")

        return visit(h5py.h5g.open(self._file().id, b"/"), "")

    def is_synthetic(self) -> bool:
        """Whether the file says it holds synthetic data (`aevpipe synth` does)."""
        with self._damage(None):
            return bool(self._file().attrs.get("synthetic", False))

    def scan(self) -> Iterator[tuple[str, MoleculeInfo | InputError]]:
        """Each molecule group with its info, or the InputError that rules it out.

        File-level problems (missing, not HDF5, no molecule groups) raise at once.
        """
        found = False
        with self._damage(None):  # the file's structure itself
            for name, datasets in self._groups():
                found = True
                try:
                    if not datasets:
                        raise InputError(self.path, name, "group name is not UTF-8")
                    with self._damage(name):
                        info: MoleculeInfo | InputError = self._inspect(name, datasets)
                except InputError as exc:
                    info = exc
                del datasets  # closed before the next group's open
                yield name, info
        if not found:
            raise InputError(
                self.path,
                None,
                "no molecule groups (coordinates, energies, species) found",
            )

    def molecules(self) -> list[MoleculeInfo]:
        """Every molecule group, checked for structure (not for values)."""
        out = []
        for _, info in self.scan():
            if isinstance(info, InputError):
                raise info
            out.append(info)
        return out

    def _inspect(self, name: str, found: dict[str, h5py.h5d.DatasetID]) -> MoleculeInfo:
        """One group's structure, from the datasets it has (`_groups` opened
        them)."""
        missing = [k for k in REQUIRED if k not in found]
        if missing:
            raise InputError(self.path, name, f"missing dataset(s) {missing}")
        coords, energies, species = (found[k].shape for k in REQUIRED)
        if len(coords) != 3 or coords[2] != 3:
            raise InputError(
                self.path, name, f"coordinates must be (C, A, 3), got {coords}"
            )
        n_conf, n_atoms = coords[:2]
        if n_conf == 0 or n_atoms == 0:
            raise InputError(self.path, name, "empty group (no conformations or atoms)")
        if energies != (n_conf,):
            raise InputError(
                self.path,
                name,
                f"energies shape {energies} disagrees with coordinates {coords}",
            )
        if species not in ((n_atoms,), (n_conf, n_atoms)):
            raise InputError(
                self.path,
                name,
                f"species shape {species} disagrees with coordinates {coords}",
            )
        symbols = _decode_symbols(_read_all(found["species"]), self.path, name)
        if symbols.ndim == 2:
            first = sorted(symbols[0])
            if any(sorted(row) != first for row in symbols):
                raise InputError(
                    self.path, name, "conformations of one group differ in composition"
                )
            symbols = symbols[0]
        return MoleculeInfo(
            file=self.path,
            group=name,
            n_conformations=int(n_conf),
            n_atoms=int(n_atoms),
            symbols=tuple(symbols.tolist()),
            formula=formula(list(symbols)),
        )

    def read(
        self,
        group: str,
        start: int,
        stop: int,
        check_finite: bool = False,
    ) -> Block:
        """Conformations [start, stop) of `group`: coordinates, energies, symbols.
        With `check_finite`, an InputError when any coordinate or energy is NaN or
        infinite.

        Coordinates and energies are read in the file's own types, then converted
        as NumPy converts."""
        with self._damage(group):
            return self._read(group, start, stop, check_finite)

    def _read(self, group: str, start: int, stop: int, check_finite: bool) -> Block:
        coords = np.asarray(
            self._read_rows(f"{group}/coordinates", start, stop), dtype=np.float32
        )
        energies = np.asarray(
            self._read_rows(f"{group}/energies", start, stop), dtype=np.float64
        )
        if check_finite:
            self._require_finite(group, start, coordinates=coords, energies=energies)
        species = self._file()[group]["species"]
        raw = species[()] if species.ndim == 1 else species[start:stop]
        names = _decode_symbols(raw, self.path, group)
        if names.ndim == 1:
            names = np.broadcast_to(names, coords.shape[:2])
        return Block(coordinates=coords, energies=energies, symbols=names)

    def _read_rows(self, path: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) along the first axis of dataset `path`, in its own
        type (as `dataset[start:stop]`)."""
        dataset = h5py.h5d.open(self._file().id, path.encode())
        space = dataset.get_space()
        dims = space.shape
        start, stop = max(0, min(start, dims[0])), max(0, min(stop, dims[0]))
        count = (stop - start, *dims[1:])
        out = np.empty(count, dtype=dataset.dtype)
        if out.size:
            space.select_hyperslab((start,) + (0,) * (len(dims) - 1), count)
            dataset.read(h5py.h5s.create_simple(count), space, out)
        return out

    def check_finite(self, group: str, block_size: int) -> None:
        """InputError when any coordinate or energy of `group` is NaN or infinite."""
        with self._damage(group):
            self._check_finite(group, block_size)

    def _check_finite(self, group: str, block_size: int) -> None:
        g = self._file()[group]
        n = g["energies"].shape[0]
        for start in range(0, n, block_size):
            stop = min(n, start + block_size)
            for key in ("coordinates", "energies"):
                self._require_finite(group, start, **{key: g[key][start:stop]})

    def _require_finite(self, group: str, start: int, **values: np.ndarray) -> None:
        """InputError naming the first conformation (`start` is the first one's
        index) whose values are NaN or infinite."""
        for key, v in values.items():
            finite = np.isfinite(v)
            if not finite.all():
                bad = start + int(np.argwhere(~finite)[0][0])
                raise InputError(
                    self.path,
                    group,
                    f"{key} has NaN or infinite values (conformation {bad})",
                )
