"""Making a store and writing into it, through Zarr's own API.

One writer serves every executor: in-process threads and Dask worker processes
write into the same store through `StoreWriter`, which takes a file lock per chunk
(`FileLocks`) around each of Zarr's chunk writes. Units share chunks only at their
edges; a shared chunk is read, updated and written back under its lock, so the
store is the same whichever order the units ran in. A unit is recorded as done in
`.progress/` once all its rows are written, so a run killed at any point resumes
by redoing only the units without a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from aevpipe import keys
from aevpipe.config import AEVParams
from aevpipe.errors import StoreError
from aevpipe.folders import clear
from aevpipe.plan import Plan
from aevpipe.store.files import read_attrs, write_json_atomic, writing
from aevpipe.store.format import (
    COMPRESSOR,
    aev_dtype_of,
    array_specs,
    chunk_shape,
    encode_aev,
    layout_to_attr,
)


class FileLocks:
    """A Zarr synchronizer: an exclusive `flock` on one file per chunk key. A lock
    belongs to its open file, so it excludes other threads of this process as well
    as other processes, and the kernel releases it when a killed run's files
    close."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @contextlib.contextmanager
    def __getitem__(self, key: str):
        fd = os.open(self.folder / key.replace("/", "%"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def create(
    path: Path, attrs: dict[str, Any], plan: Plan, aev: AEVParams, chunk_rows: int
) -> None:
    """Make an empty store for `plan` at `path`, where nothing is: every array
    allocated, no data, no manifest. The root's attributes go last, so a folder
    that has them has every array. A folder that cannot be made (a file in the
    way, no permission, a full disk) is a StoreError naming it."""
    path = Path(path)
    try:
        (path / keys.PROGRESS_DIR).mkdir(parents=True)
        (path / keys.LOCKS_DIR).mkdir()
        root = zarr.group(store=zarr.DirectoryStore(str(path)))
        specs = array_specs(
            plan.groups, aev.elements, aev.aev_length, aev_dtype_of(attrs)
        )
        for spec in specs:
            root.create(
                spec.path,
                shape=spec.shape,
                chunks=chunk_shape(spec, chunk_rows),
                dtype=spec.dtype,
                compressor=COMPRESSOR,
                fill_value=0,
                order="C",
            )
        root.attrs.put({**attrs, keys.ATTR_LAYOUT: layout_to_attr(plan.groups)})
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreError(
            f"{path}: cannot create the store ({exc.filename or path}: {reason})"
        ) from exc


def remove(path: Path) -> None:
    """Empty the store at `path` (--overwrite), keeping the folder itself (a
    writer holds its lock on it): only a store, or one that a stopped run left
    half made; anything else is refused, naming what is there."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    made_by_us = read_attrs(path) is not None or (path / keys.PROGRESS_DIR).is_dir()
    if not path.is_dir() or not made_by_us:
        raise StoreError(
            f"{path}: is not an aevpipe store, so --overwrite does not delete it; "
            "choose another --out"
        )
    try:
        clear(path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot remove the old store ({exc})") from exc


class StoreWriter:
    """An incomplete store, open for writing from any thread or process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        locks = FileLocks(self.path / keys.LOCKS_DIR)
        store = zarr.DirectoryStore(str(self.path))
        self.root = zarr.open_group(store, mode="r+", synchronizer=locks)
        self.aev_dtype = aev_dtype_of(self.root.attrs.asdict())

    def write(self, array: str, start: int, values: np.ndarray) -> None:
        """Rows [start, start + len(values)) of `array` (its path in the store);
        AEV rows come as float32 and are stored in the store's AEV dtype."""
        if array.rsplit("/", 1)[-1] == keys.AEV:
            values = encode_aev(values, self.aev_dtype)
        with writing(self.path, array):
            self.root[array][start : start + len(values)] = values

    def mark_done(self, uid: int, stats: dict[str, Any]) -> None:
        """Record that unit `uid` is written, with its counts."""
        name = f"{keys.PROGRESS_DIR}/unit-{uid:07d}.json"
        with writing(self.path, name):
            write_json_atomic(self.path / name, stats)


def done_units(path: Path) -> dict[int, dict[str, Any]]:
    """Finished units of an unfinished store: uid -> counts. Also reads the files
    of several units (`done-*.json`) that earlier versions wrote."""
    folder = Path(path) / keys.PROGRESS_DIR
    if not folder.is_dir():
        return {}
    out = {}
    for f in folder.glob("unit-*.json"):
        out[int(f.stem.split("-")[1])] = json.loads(f.read_text())
    for f in folder.glob("done-*.json"):
        out.update((int(uid), s) for uid, s in json.loads(f.read_text()).items())
    return out
