"""Reading a complete store: its attributes, layouts and arrays.

A damaged store is never read as data: opening it checks that every chunk file is
there at the size the manifest records, and every chunk read is checked against
its CRC-32 in the manifest (a missing one is an error, not Zarr's fill value); a
chunk that does not decode is one error naming the array and rows.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from aevpipe import keys
from aevpipe.config import AEVParams
from aevpipe.errors import AevpipeError, StoreError
from aevpipe.store.files import read_complete
from aevpipe.store.format import (
    aev_dtype_of,
    decode_aev,
    decode_aev_into,
    layout_from_attr,
)
from aevpipe.store.manifest import DAMAGED, check_files


class _CheckedChunks(zarr.DirectoryStore):
    """A directory store for reading in which every chunk is checked: a missing
    one is damage (Zarr would give the fill value, zeros, in its place), and one
    whose CRC-32 differs from the manifest's is damage too, even where it would
    still decode."""

    def __init__(self, path: str, manifest: dict[str, Any]):
        super().__init__(path)
        self.recorded = {
            f"{array}/{name}": crc
            for array, entry in manifest["arrays"].items()
            for name, (crc, _) in entry.get("chunks", {}).items()
        }

    def getitems(self, keys, *, contexts):
        return {key: self._chunk(key) for key in keys}

    def _chunk(self, key: str) -> bytes:
        try:
            data = self[key]
        except KeyError:
            raise StoreError(
                f"{self.path}: chunk file {key} is missing: the store is damaged "
                f"({DAMAGED})"
            ) from None
        crc = self.recorded.get(key)
        if crc is not None and f"{zlib.crc32(data):08x}" != crc:
            raise StoreError(
                f"{self.path}: chunk file {key} does not match its CRC-32 in the "
                f"manifest: the store is damaged ({DAMAGED})"
            )
        return data


class ShardStore:
    """A complete store, opened for reading."""

    def __init__(self, path: Path, attrs: dict[str, Any], manifest: dict[str, Any]):
        self.path = Path(path)
        self.attrs = attrs
        self.manifest = manifest
        self.aev = AEVParams.from_dict(attrs[keys.ATTR_AEV_PARAMS])
        self.elements: tuple[str, ...] = tuple(attrs[keys.ATTR_ELEMENTS])
        self.molecules: list[dict[str, Any]] = attrs[keys.ATTR_MOLECULES]
        self.layouts = layout_from_attr(attrs[keys.ATTR_LAYOUT])
        self.aev_dtype = aev_dtype_of(attrs)
        self._root: zarr.Group | None = None

    @classmethod
    def open(cls, path: Path) -> ShardStore:
        """Open a store; StoreError when missing, incomplete or of another version."""
        path = Path(path)
        attrs, manifest = read_complete(path)
        try:
            check_files(path, attrs, manifest)
            return cls(path, attrs, manifest)
        except StoreError:
            raise
        except (AevpipeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"{path}: its attributes or manifest are damaged ({exc})"
            ) from None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_root": None}

    @property
    def root(self) -> zarr.Group:
        if self._root is None:
            chunks = _CheckedChunks(str(self.path), self.manifest)
            self._root = zarr.open_group(chunks, mode="r")
        return self._root

    def array(self, n_atoms: int, name: str, element: str | None = None) -> zarr.Array:
        """One array of an atom-count group (per element when `element` is
        given); a StoreError naming it when its metadata cannot be read."""
        path = keys.array_path(n_atoms, name, element)
        try:
            return self.root[path]
        except (KeyError, ValueError, TypeError, zarr.errors.MetadataError) as exc:
            raise StoreError(
                f"{self.path}: array {path} cannot be opened ({exc!r}): the store "
                f"is damaged ({DAMAGED})"
            ) from None

    def read(
        self, n_atoms: int, name: str, element: str | None, start: int, stop: int
    ) -> np.ndarray:
        """Rows [start, stop) of one array (AEVs as float32 whatever the store
        holds); a StoreError naming the array and rows when a chunk of them is
        missing or does not decode."""
        with self._decoding(n_atoms, name, element, start, stop):
            values = self.array(n_atoms, name, element)[start:stop]
            return decode_aev(values, self.aev_dtype) if name == keys.AEV else values

    def read_aev_into(
        self, n_atoms: int, element: str, start: int, stop: int, out: np.ndarray
    ) -> None:
        """AEV rows [start, stop) into `out` ((stop - start, L) float32). From a
        float32 store, Zarr decompresses each whole chunk straight into `out`,
        with no array in between; a 16-bit store's rows are read and converted
        into `out`."""
        with self._decoding(n_atoms, keys.AEV, element, start, stop):
            array = self.array(n_atoms, keys.AEV, element)
            if self.aev_dtype == "float32":
                array.get_basic_selection(slice(start, stop), out=out)
            else:
                decode_aev_into(array[start:stop], self.aev_dtype, out)

    @contextlib.contextmanager
    def _decoding(
        self, n_atoms: int, name: str, element: str | None, start: int, stop: int
    ):
        """Blosc's and Zarr's decoding errors as one StoreError naming the array
        and rows being read."""
        try:
            yield
        except (RuntimeError, ValueError) as exc:
            where = keys.array_path(n_atoms, name, element)
            raise StoreError(
                f"{self.path}: {where} rows {start}-{stop} do not decode ({exc}): "
                f"the store is damaged ({DAMAGED})"
            ) from None

    def conformations(self, split: int) -> int:
        """Conformations in `split` over all groups."""
        return sum(g.conformations[split] for g in self.layouts)
