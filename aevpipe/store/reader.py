"""Reading a complete store: its attributes, layouts and arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zarr

from aevpipe import keys
from aevpipe.config import AEVParams
from aevpipe.errors import StoreError
from aevpipe.store.format import layout_from_attr


def read_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of a store, complete or not; None where there is none."""
    try:
        attrs = dict(zarr.open_group(zarr.DirectoryStore(str(path)), mode="r").attrs)
    except (zarr.errors.GroupNotFoundError, ValueError, KeyError):
        return None
    return attrs if keys.ATTR_FORMAT_VERSION in attrs else None


def is_complete(path: Path) -> bool:
    """Whether the store's manifest is written."""
    return (Path(path) / keys.MANIFEST).is_file()


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
        self._root: zarr.Group | None = None

    @classmethod
    def open(cls, path: Path) -> ShardStore:
        """Open a store; StoreError when missing, incomplete or of another version."""
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"{path}: no shard store here")
        attrs = read_attrs(path)
        if attrs is None:
            raise StoreError(f"{path}: not an aevpipe shard store")
        if not is_complete(path):
            raise StoreError(
                f"{path}: incomplete store (no {keys.MANIFEST}); run "
                "`aevpipe featurize` again to complete it"
            )
        version = attrs[keys.ATTR_FORMAT_VERSION]
        if version != keys.FORMAT_VERSION:
            raise StoreError(
                f"{path}: format version {version}, this aevpipe reads "
                f"{keys.FORMAT_VERSION}"
            )
        manifest = json.loads((path / keys.MANIFEST).read_text())
        return cls(path, attrs, manifest)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_root": None}

    @property
    def root(self) -> zarr.Group:
        if self._root is None:
            self._root = zarr.open_group(zarr.DirectoryStore(str(self.path)), mode="r")
        return self._root

    def array(self, n_atoms: int, name: str, element: str | None = None) -> zarr.Array:
        """One array of an atom-count group (per element when `element` is given)."""
        return self.root[keys.array_path(n_atoms, name, element)]

    def conformations(self, split: int) -> int:
        """Conformations in `split` over all groups."""
        return sum(g.conformations[split] for g in self.layouts)
