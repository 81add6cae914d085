"""Small file operations of the store: its root attributes and completeness, and
writes that are whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import zarr

from aevpipe import keys
from aevpipe.errors import StoreError, StoreWriteError


def read_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of a store, complete or not; None where there is none."""
    try:
        attrs = dict(zarr.open_group(zarr.DirectoryStore(str(path)), mode="r").attrs)
    except (zarr.errors.GroupNotFoundError, zarr.errors.MetadataError):
        return None
    except (ValueError, KeyError, TypeError):  # metadata that is not JSON or not Zarr's
        return None
    return attrs if keys.ATTR_FORMAT_VERSION in attrs else None


def is_complete(path: Path) -> bool:
    """Whether the store's manifest is written."""
    return (Path(path) / keys.MANIFEST).is_file()


def read_complete(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The root attributes and manifest of a complete store of this format
    version; a StoreError saying what `path` is instead."""
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
    if version not in keys.FORMAT_VERSIONS:
        raise StoreError(
            f"{path}: format version {version}, this aevpipe reads "
            + " and ".join(str(v) for v in keys.FORMAT_VERSIONS)
        )
    try:
        manifest = json.loads((path / keys.MANIFEST).read_text())
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON
        raise StoreError(f"{path / keys.MANIFEST}: cannot be read ({exc})") from None
    return attrs, manifest


@contextlib.contextmanager
def writing(path: Path, what: str):
    """An OSError while writing `what` into the store at `path` (a full disk, no
    permission) as a StoreWriteError naming both and the reason."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreWriteError(f"{path}: cannot write {what} ({reason})") from exc


def write_json_atomic(path: Path, payload: Any) -> None:
    """`payload` as JSON at `path`, whole or not at all: written beside it, then
    renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
