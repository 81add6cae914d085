"""The shard store on disk (Zarr v2, format version 1): create, write, finish, read.

The only module that touches Zarr. A store is complete only when `manifest.json` is
written, last; `ShardStore.open` refuses any other. Layout, documented for users in
README.md:

    <store>/                 root attrs: format version, AEV parameters, elements, ...
      n005/                  conformations of 5 atoms, ordered train | valid | test
        energy species molecule index split      (per conformation)
        H/aev H/conformation C/aev ...            (per element row)
      .progress/done-*.json  finished work units (resume)
      manifest.json          counts, bytes, checksums: written last
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import shutil
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.meta import Metadata2

from aevpipe import keys
from aevpipe.chunk_files import ChunkFiles, finished
from aevpipe.config import AEVParams
from aevpipe.errors import StoreError, StoreWriteError
from aevpipe.plan import GroupLayout, Plan, UnitPart

# lz4 level 1, no shuffle: AEVs hold long runs of exact zeros (cutoffs), which lz4
# finds without help. On one core of this project's machine it compresses real s01
# AEVs 4.8x at ~8 GB/s and the synthetic s01-s04 2.2-3.1x at 5-8 GB/s, decompressing
# at ~4 GB/s; byte shuffle gave a lower ratio at a third of the speed.
COMPRESSOR = Blosc(cname="lz4", clevel=1, shuffle=Blosc.NOSHUFFLE)
CONFORMATION_CHUNK = 65536


def layout_to_attr(groups: tuple[GroupLayout, ...]) -> list[dict[str, Any]]:
    """Group layouts as a JSON-ready list."""
    return [
        {
            "n_atoms": g.n_atoms,
            "conformations": list(g.conformations),
            "rows": [list(r) for r in g.rows],
        }
        for g in groups
    ]


def layout_from_attr(data: list[dict[str, Any]]) -> tuple[GroupLayout, ...]:
    """Inverse of `layout_to_attr`."""
    return tuple(
        GroupLayout(
            n_atoms=d["n_atoms"],
            conformations=tuple(d["conformations"]),
            rows=tuple(tuple(r) for r in d["rows"]),
        )
        for d in data
    )


class ArraySpec(NamedTuple):
    """One array of a store: its path in the store, last name, shape and dtype."""

    path: str
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def chunk_key(self, index: int) -> str:
        """Store key of chunk `index` along the first axis (Zarr v2, "." between
        chunk coordinates; arrays are chunked along their first axis only)."""
        return f"{self.path}/{index}" + ".0" * (len(self.shape) - 1)


def array_specs(
    groups: tuple[GroupLayout, ...], elements: tuple[str, ...], aev_length: int
) -> list[ArraySpec]:
    """Every array a store of these group layouts holds, in path order: `create`
    makes them and `finish` sums them, without opening any."""
    specs = []
    for layout in groups:
        a, c = layout.n_atoms, layout.n_conformations
        per_conformation = (
            (keys.ENERGY, (c,), "f8"),
            (keys.SPECIES, (c, a), "i1"),
            (keys.MOLECULE, (c,), "i4"),
            (keys.INDEX, (c,), "i4"),
            (keys.SPLIT, (c,), "i1"),
        )
        for name, shape, dtype in per_conformation:
            specs.append(ArraySpec(keys.array_path(a, name), name, shape, dtype))
        for element, rows in zip(elements, layout.total_rows(), strict=True):
            if rows:
                for name, shape, dtype in (
                    (keys.AEV, (rows, aev_length), "f4"),
                    (keys.CONFORMATION, (rows,), "i4"),
                ):
                    path = keys.array_path(a, name, element)
                    specs.append(ArraySpec(path, name, shape, dtype))
    return sorted(specs)


def chunk_shape(spec: ArraySpec, chunk_rows: int) -> tuple[int, ...]:
    """Per-conformation arrays: CONFORMATION_CHUNK conformations a chunk; AEVs:
    `chunk_rows` rows; row -> conformation (4 bytes a row): as long as the larger."""
    n = spec.shape[0]
    if spec.name == keys.AEV:
        first = chunk_rows
    elif spec.name == keys.CONFORMATION:
        first = max(chunk_rows, CONFORMATION_CHUNK)
    else:
        first = CONFORMATION_CHUNK
    return (min(first, n), *spec.shape[1:])


def create(
    path: Path, attrs: dict[str, Any], plan: Plan, aev: AEVParams, chunk_rows: int
) -> None:
    """Make an empty store for `plan` at `path`, where nothing is (featurize sets
    any old store aside first): all arrays allocated, no data, no manifest. A
    folder that cannot be made (a file in the way, no permission, a full disk) is a
    StoreError naming it."""
    try:
        _create(Path(path), attrs, plan, aev, chunk_rows)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = exc.filename or path
        raise StoreError(
            f"{path}: cannot create the store ({where}: {reason})"
        ) from exc


# What `set_aside` moves an old store to, beside it: ".<name>.removing-<random>".
SET_ASIDE = ".removing-"


def set_aside(path: Path) -> list[Path]:
    """Move whatever is at `path` (an old store, --overwrite) out of the way with one
    rename, so that the new store can be made at once and the old one removed
    while it is written (`remove`). Returns what to remove: that, and what earlier
    runs set aside and were stopped before removing. A StoreError when it cannot
    be moved.

    Removing s01's old store (111 files and folders) first made the creation take
    17.4 ms instead of 5.6 ms in a timeline, while a finished unit waited 7 ms to
    write (benchmarks/RESULTS.md, session 11); the whole release's store holds
    thousands of files."""
    path = Path(path)
    aside = sorted(path.parent.glob(f".{glob.escape(path.name)}{SET_ASIDE}*"))
    if path.exists() or path.is_symlink():
        target = path.with_name(f".{path.name}{SET_ASIDE}{uuid.uuid4().hex[:12]}")
        try:
            os.rename(path, target)
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot move the old store aside to replace it "
                f"({exc.strerror or exc})"
            ) from exc
        aside.append(target)
    return aside


def remove(paths: Iterable[Path]) -> None:
    """Delete what `set_aside` moved aside; what cannot be deleted stays (a
    later run tries again)."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def _create(
    path: Path, attrs: dict[str, Any], plan: Plan, aev: AEVParams, chunk_rows: int
) -> None:
    # Nothing is at `path`: featurize moved any old store aside (`set_aside`).
    # The metadata is made in memory, then goes to disk in one pass (Zarr's own
    # checks on a directory cost a file-system call each). Zarr's own encoders make
    # what `Group.zeros` writes (a test compares the bytes), without its checks of
    # every prefix of every path that `init_array` makes in memory: 18 us an array
    # against 69 (and 2.4 ms for s01's 27 arrays through `Group.zeros`). That time
    # holds the GIL while the first units compute: s01 featurized 0.5-0.75 ms
    # sooner, a median of 20 alternated pairs, faster in 12 and 13 of them
    # (benchmarks/RESULTS.md, session 13).
    group = Metadata2.encode_group_metadata()
    compressor = COMPRESSOR.get_config()
    memory: dict[str, bytes] = {
        ".zgroup": group,
        ".zattrs": zarr.util.json_dumps(
            {**attrs, keys.ATTR_LAYOUT: layout_to_attr(plan.groups)}
        ),
    }
    for spec in array_specs(plan.groups, aev.elements, aev.aev_length):
        parts = spec.path.split("/")
        for i in range(1, len(parts)):
            memory.setdefault("/".join(parts[:i]) + "/.zgroup", group)
        memory[f"{spec.path}/.zarray"] = Metadata2.encode_array_metadata(
            {
                "zarr_format": 2,
                "shape": spec.shape,
                "chunks": chunk_shape(spec, chunk_rows),
                "dtype": np.dtype(spec.dtype),
                "compressor": compressor,
                "fill_value": 0,
                "order": "C",
                "filters": None,
            }
        )
    (path / keys.PROGRESS_DIR).mkdir(parents=True)
    # The root's own metadata last: a folder that has it has every array.
    for key in sorted(memory, key=lambda k: "/" not in k):
        target = path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(memory[key])


def _specs_of(attrs: dict[str, Any]) -> list[ArraySpec]:
    """`array_specs` of a store, from its root attributes."""
    return array_specs(
        layout_from_attr(attrs[keys.ATTR_LAYOUT]),
        tuple(attrs[keys.ATTR_ELEMENTS]),
        AEVParams.from_dict(attrs[keys.ATTR_AEV_PARAMS]).aev_length,
    )


def _chunked_specs(attrs: dict[str, Any]) -> dict[str, tuple[ArraySpec, int]]:
    """Every array of a store by path, with the rows of its chunks (as `create`
    chunked them, with the store's own `chunk_rows`)."""
    rows = attrs[keys.ATTR_CHUNK_ROWS]
    return {s.path: (s, chunk_shape(s, rows)[0]) for s in _specs_of(attrs)}


@contextlib.contextmanager
def _writing(path: Path, what: str):
    """An OSError while writing `what` into the store at `path` (a full disk, no
    permission) as a StoreWriteError naming both and the reason."""
    try:
        yield
    except OSError as exc:
        raise _write_error(path, what, exc) from exc


def _write_error(path: Path, what: str, exc: OSError) -> StoreWriteError:
    reason = exc.strerror or str(exc)
    return StoreWriteError(f"{path}: cannot write {what} ({reason})")


@dataclass
class PartData:
    """What one unit writes for one split part."""

    energy: np.ndarray  # (n,) float64 Hartree
    species: np.ndarray  # (n, A) int8
    molecule: np.ndarray  # (n,) int32
    index: np.ndarray  # (n,) int32
    aev: dict[str, np.ndarray]  # element -> (rows, L) float32
    conformation: dict[str, np.ndarray]  # element -> (rows,) int32, group positions


@dataclass
class _OpenChunk:
    """A chunk being assembled: its buffer, the row ranges placed, their total."""

    buffer: np.ndarray
    pieces: list[tuple[int, int]]
    filled: int = 0


class _ChunkAssembler:
    """Collects writes to one array into whole chunks, so that each chunk is encoded
    and written once and never read back.

    Only bookkeeping and buffer copies: `place` and `take_open` run under the
    writer's lock and return the chunk writes to make, which the caller makes
    outside it (encoding and file writes run in parallel across threads). A piece
    that covers a whole chunk goes straight out; a chunk written in pieces waits in
    a buffer until its pieces cover it.
    """

    def __init__(self, spec: ArraySpec, chunk: int):
        self.spec = spec
        self.chunk = chunk
        self.open: dict[int, _OpenChunk] = {}

    def is_chunk(self, start: int, stop: int) -> bool:
        """Whether rows [start, stop) are one whole chunk (the last may hold fewer
        rows than the others)."""
        return start % self.chunk == 0 and stop == min(
            self.spec.shape[0], start + self.chunk
        )

    def place(
        self, start: int, values: np.ndarray
    ) -> tuple[list[tuple[int, int, int | None, np.ndarray]], list[int]]:
        """Place `values` at rows [start, ...). Returns the writes now due, as
        (row0, row1, buffered chunk index or None, values), and the chunks that
        still hold some of `values` in a buffer."""
        stop, n = start + len(values), self.spec.shape[0]
        pos, due, waiting = start, [], []
        while pos < stop:
            index = pos // self.chunk
            c0, c1 = index * self.chunk, min(n, (index + 1) * self.chunk)
            hi = min(stop, c1)
            piece = values[pos - start : hi - start]
            if pos == c0 and hi == c1 and index not in self.open:
                due.append((c0, c1, None, piece))
            else:
                chunk = self.open.get(index)
                if chunk is None:
                    buffer = np.empty((c1 - c0,) + values.shape[1:], self.spec.dtype)
                    chunk = self.open[index] = _OpenChunk(buffer, [])
                chunk.buffer[pos - c0 : hi - c0] = piece
                chunk.pieces.append((pos, hi))
                chunk.filled += hi - pos
                if chunk.filled == c1 - c0:
                    due.append((c0, c1, index, chunk.buffer))
                    del self.open[index]
                else:
                    waiting.append(index)
            pos = hi
        return due, waiting

    def take_open(self) -> list[tuple[int, int, int | None, np.ndarray]]:
        """Every buffered piece, as writes (Zarr merges them with what is on disk:
        a resumed run), leaving no buffer."""
        due = []
        for index, chunk in sorted(self.open.items()):
            c0 = index * self.chunk
            for a, b in _merge(chunk.pieces):
                due.append((a, b, index, chunk.buffer[a - c0 : b - c0]))
        self.open.clear()
        return due


def _merge(pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent [a, b) ranges joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(pieces):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


ChunkKey = tuple[str, int]  # (array path, chunk index)


class _ChecksummingStore(zarr.DirectoryStore):
    """A directory store that keeps the CRC-32 and size of every chunk file it
    writes, so the manifest need not read them back. Computed in the encoding
    thread, while the bytes are in cache.

    Chunk files go through `ChunkFiles` (a temporary file renamed into place; large
    ones straight to the device with `direct`, from I/O threads), without Zarr's
    checks that the array's folder exists and nothing is in the way, made for every
    file (five file-system calls and a UUID a chunk, some 4 ms of thread time per
    featurize of s01 under py-spy): `create` made every array's folder."""

    def __init__(self, path: str, direct: bool = False):
        super().__init__(path)
        self.chunks: dict[str, tuple[int, int]] = {}  # file key -> (crc, size)
        self.files = ChunkFiles(direct)

    def __setitem__(self, key, value):
        if key.rsplit("/", 1)[-1].startswith(".z"):
            super().__setitem__(key, value)
            return
        data = self._checksummed(key, value)
        self.files.write(os.path.join(self.path, key), data)

    def submit(self, key: str, value, after=None) -> Future:
        """Write chunk file `key` as `ChunkFiles.submit` does (`value` must not
        change until the future is done)."""
        data = self._checksummed(key, value)
        return self.files.submit(os.path.join(self.path, key), data, after)

    def _checksummed(self, key: str, value) -> memoryview:
        data = memoryview(value).cast("B")
        self.chunks[key] = (zlib.crc32(data), data.nbytes)
        return data


def wait_written(futures: Iterable[Future]) -> None:
    """Wait for every write in `futures`, then raise the first one's error."""
    futures = list(futures)
    wait(futures)
    for future in futures:
        if future.exception() is not None:
            raise future.exception()


class StoreWriter:
    """An open store for writing.

    `locked`: other processes write to the same store, so every write goes straight
    to Zarr under chunk locks and a unit is done as soon as it is written.

    Otherwise this process is the only writer, possibly from several threads: writes
    are assembled into whole chunks (`_ChunkAssembler`) under one lock, and encoded
    and written outside it. Arrays are known from the store's layout attribute, not
    opened, and a whole chunk is encoded and stored as Zarr would store it, without
    Zarr's indexing (`_store_chunk`): the same bytes, without opening every array
    (3.3 ms a run on s01) or Zarr's 0.09 ms a chunk (one thread, cProfile;
    benchmarks/RESULTS.md, session 10). Only rows that join a chunk already on disk
    (a resumed run) go through Zarr. A unit is marked done once none of its rows
    wait in a buffer or in a write still being made. Told how many units of each
    atom-count group a run holds (`expect`), the writer writes a group's leftover
    pieces as soon as the group's last unit is in (only a resumed run has any), so
    at most the groups in flight hold partial chunks in memory.

    With `direct`, large chunk files go straight to the device, written by I/O
    threads (`ChunkFiles`) while the caller goes on; `close` waits for them.
    """

    def __init__(self, path: Path, locked: bool, direct: bool = False):
        self.path = Path(path)
        self.locked = locked
        sync = (
            zarr.ProcessSynchronizer(str(self.path / keys.LOCKS_DIR))
            if locked
            else None
        )
        # CRCs only where `finish` can use them: in this process's writer, not in
        # Dask workers, whose files `finish` reads back.
        self.store = (
            zarr.DirectoryStore(str(path))
            if locked
            else _ChecksummingStore(str(path), direct)
        )
        self.root = zarr.open_group(self.store, mode="r+", synchronizer=sync)
        self._specs = {} if locked else _chunked_specs(dict(self.root.attrs))
        self._lock = threading.Lock()
        self._arrays: dict[str, zarr.Array] = {}
        self._assemblers: dict[str, _ChunkAssembler] = {}
        self._inflight: dict[ChunkKey, int] = {}
        # Units written but not yet on disk: uid -> (stats, the chunks it waits
        # on), and chunk -> the units waiting on it, so that a chunk's write
        # settles only its own units (a list scanned whole on every write made a
        # run of 4,000 one-unit molecules take 119 s, against 6.7 s for 1,000).
        self._waiting: dict[int, tuple[dict[str, Any], set[ChunkKey]]] = {}
        self._waiters: dict[ChunkKey, set[int]] = {}
        self._expected: dict[int, int] = {}
        self._failed: set[ChunkKey] = set()

    def array(self, n_atoms: int, name: str, element: str | None = None) -> zarr.Array:
        """One array as Zarr opens it (kept, so its metadata is read once)."""
        return self._zarr(keys.array_path(n_atoms, name, element))

    def _zarr(self, path: str) -> zarr.Array:
        with self._lock:
            if path not in self._arrays:
                self._arrays[path] = self.root[path]
            return self._arrays[path]

    def expect(self, units_per_group: dict[int, int]) -> None:
        """The number of units of each atom-count group this run will write."""
        with self._lock:
            self._expected = dict(units_per_group)

    def _assembler(self, path: str) -> _ChunkAssembler:
        assembler = self._assemblers.get(path)
        if assembler is None:
            assembler = self._assemblers[path] = _ChunkAssembler(*self._specs[path])
        return assembler

    def _write_out(self, assembler: _ChunkAssembler, due) -> list[Future]:
        """Start the chunk writes `due` (outside the lock); see `_write_item`."""
        return [self._write_item(assembler, item) for item in due]

    def _write_item(self, assembler: _ChunkAssembler, item) -> Future:
        """Encode one chunk write and write its file: here, or with `direct` in an
        I/O thread (rows that join a chunk on disk go through Zarr, here). A
        buffered chunk counts as in flight (not on disk) until its file is written;
        then, before the future is done, the units that wait on it are settled. The
        future holds the write's error, as a StoreWriteError."""
        r0, r1, index, values = item
        path = assembler.spec.path
        key = None if index is None else (path, index)
        try:
            with _writing(self.path, path):
                if assembler.is_chunk(r0, r1):
                    return self._store_chunk(
                        assembler, r0 // assembler.chunk, values, key
                    )
                self._zarr(path)[r0:r1] = values  # joins rows on disk
            error = None
        except BaseException as exc:
            error = exc
        if key is not None:
            self._chunk_written(key, error is None)
        return finished(error)

    def _chunk_written(self, key: ChunkKey, ok: bool) -> None:
        with self._lock:
            self._inflight[key] -= 1
            if not self._inflight[key]:
                del self._inflight[key]
            if not ok:  # never on disk: its units are never done
                self._failed.add(key)
            done = self._settle([key])
        self._mark_done(done)

    def _file_written(
        self, what: str, key: ChunkKey | None, error: BaseException | None
    ) -> BaseException | None:
        """In the I/O thread, once a chunk file is written (or not): the error as a
        StoreWriteError, and the chunk's units settled."""
        if isinstance(error, OSError):
            error, cause = _write_error(self.path, what, error), error
            error.__cause__ = cause
        if key is not None:
            self._chunk_written(key, error is None)
        return error

    def _store_chunk(
        self, assembler: _ChunkAssembler, index: int, values, key: ChunkKey | None
    ) -> Future:
        """Chunk `index` of rows `values`, encoded and stored as Zarr's
        `Array.__setitem__` stores a whole chunk: the array's dtype, C order, the
        array's compressor (`create` gives every array COMPRESSOR), the last chunk
        filled out with the fill value 0 (Zarr makes such a chunk from the fill
        value, then sets the array's rows). Tests compare the bytes with Zarr's.
        Encoded here; the file is written by `ChunkFiles` (here, or with `direct` in
        an I/O thread), which then settles the buffered chunk `key`'s units."""
        spec = assembler.spec
        chunk = np.ascontiguousarray(values, dtype=spec.dtype)
        if len(chunk) < assembler.chunk:
            whole = np.zeros((assembler.chunk, *spec.shape[1:]), spec.dtype)
            whole[: len(chunk)] = chunk
            chunk = whole
        after = functools.partial(self._file_written, spec.path, key)
        return self.store.submit(spec.chunk_key(index), COMPRESSOR.encode(chunk), after)

    def _put(
        self,
        n_atoms: int,
        name: str,
        element: str | None,
        start,
        values,
        touched,
        jobs: list[Callable[[], Future]] | None = None,
    ) -> None:
        path = keys.array_path(n_atoms, name, element)
        if self.locked:
            array = self._zarr(path)
            with _writing(self.path, path):
                array[start : start + len(values)] = values
            return
        with self._lock:
            assembler = self._assembler(path)
            due, waiting = assembler.place(start, values)
            touched.update((path, index) for index in waiting)
            self._start_writes(path, due)
        if jobs is not None:
            jobs += [functools.partial(self._write_item, assembler, d) for d in due]
        elif due:
            wait_written(self._write_out(assembler, due))

    def _start_writes(self, path: str, due) -> None:
        for _, _, index, _ in due:
            if index is not None:
                key = (path, index)
                self._inflight[key] = self._inflight.get(key, 0) + 1

    def write_part(
        self,
        n_atoms: int,
        part: UnitPart,
        data: PartData,
        elements: tuple[str, ...],
        jobs: list[Callable[[], Future]] | None = None,
    ) -> set[ChunkKey]:
        """Write one unit's share of one split at the positions the plan gave it.
        Returns the chunks that hold some of it in a buffer still.

        With `jobs` (not when `locked`), the chunk writes due are appended to it
        instead, one job each, for the caller to do (any thread may do them, in any
        order). Each job returns the future of its file's write: once all are done
        (`wait_written`), the caller calls `unit_written`; until then `data`'s
        arrays must not change."""
        touched: set[ChunkKey] = set()
        c0 = part.conformation_offset
        put = functools.partial(self._put, n_atoms, touched=touched, jobs=jobs)
        put(keys.ENERGY, None, c0, data.energy)
        put(keys.SPECIES, None, c0, data.species)
        put(keys.MOLECULE, None, c0, data.molecule)
        put(keys.INDEX, None, c0, data.index)
        put(keys.SPLIT, None, c0, np.full(part.count, part.split, dtype=np.int8))
        for element, r0 in zip(elements, part.row_offsets, strict=True):
            rows = data.aev.get(element)
            if rows is None or len(rows) == 0:
                continue
            put(keys.AEV, element, r0, rows)
            put(keys.CONFORMATION, element, r0, data.conformation[element])
        return touched

    def unit_written(
        self,
        uid: int,
        n_atoms: int,
        stats: dict[str, Any],
        touched: set[ChunkKey] = frozenset(),
    ) -> None:
        """All of unit `uid` went through `write_part` (`touched`: what those calls
        returned): mark it done now, or once its buffered chunks are written. The
        last expected unit of a group writes out the group's leftover pieces."""
        with self._lock:
            busy = {key for key in touched if self._busy(key)}
            done = [] if busy else [(uid, stats)]
            if busy:
                self._waiting[uid] = (stats, busy)
                for key in busy:
                    self._waiters.setdefault(key, set()).add(uid)
            left = self._expected.get(n_atoms)
            if left is not None:
                self._expected[n_atoms] = left - 1
        self._mark_done(done)
        if left == 1:
            self.flush(keys.group_name(n_atoms) + "/")

    def flush(self, prefix: str = "") -> None:
        """Write every buffered piece of arrays whose path starts with `prefix`;
        all units given so far are then done, unless others are still writing."""
        with self._lock:
            work = [
                (a, a.take_open())
                for path, a in self._assemblers.items()
                if path.startswith(prefix)
            ]
            for assembler, due in work:
                self._start_writes(assembler.spec.path, due)
        wait_written([f for a, due in work for f in self._write_out(a, due)])
        with self._lock:
            done = self._settle(list(self._waiters))
        self._mark_done(done)

    def close(self) -> None:
        """Wait for the chunk files still being written; stop the I/O threads."""
        files = getattr(self.store, "files", None)
        if files is not None:
            files.close()

    def chunk_checksums(self) -> dict[str, tuple[int, int]]:
        """CRC-32 and size of every chunk file this writer wrote, by file key (for
        `finish`; other writers' files it reads back). Empty when `locked`."""
        return dict(getattr(self.store, "chunks", {}))

    def _busy(self, key: ChunkKey) -> bool:
        """Whether a chunk is not on disk yet: buffered, being written, or failed."""
        assembler = self._assemblers.get(key[0])
        return (
            key in self._inflight
            or key in self._failed
            or (assembler is not None and key[1] in assembler.open)
        )

    def _settle(self, chunks: list[ChunkKey]) -> list[tuple[int, dict[str, Any]]]:
        """Of the units waiting on `chunks` (whose writes just returned), take those
        with no chunk left to wait on: they are on disk. A chunk that is not busy
        now was written with the buffer that held their rows. Called under the
        lock; the caller marks them done outside it."""
        done = []
        for key in chunks:
            if key not in self._waiters or self._busy(key):
                continue
            for uid in self._waiters.pop(key):
                stats, busy = self._waiting[uid]
                busy.discard(key)
                if not busy:
                    del self._waiting[uid]
                    done.append((uid, stats))
        return done

    def _mark_done(self, done: list[tuple[int, dict[str, Any]]]) -> None:
        if done:
            mark_done(self.path, done)


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def mark_done(path: Path, done: list[tuple[int, dict[str, Any]]]) -> None:
    """Record that units are written, with their counts: one file for all of
    `done` (units that one chunk write settles), named by its first uid (a unit is
    settled once, so names never clash). File creation is what costs here: on this
    project's machine 0.04 ms a small file on a quiet disk, 0.7-0.8 ms while it
    writes back a large store, and a run over many small molecule groups settles
    units by the hundred at each chunk write (benchmarks/RESULTS.md, session 10)."""
    name = f"{keys.PROGRESS_DIR}/done-{min(uid for uid, _ in done):07d}.json"
    with _writing(path, name):
        _write_json_atomic(Path(path) / name, {str(uid): s for uid, s in done})


def done_units(path: Path) -> dict[int, dict[str, Any]]:
    """Finished units of an unfinished store: uid -> counts. Also reads the one
    file per unit (`unit-<uid>.json`) that earlier versions wrote."""
    folder = Path(path) / keys.PROGRESS_DIR
    if not folder.is_dir():
        return {}
    out = {}
    for f in folder.glob("unit-*.json"):
        out[int(f.stem.split("-")[1])] = json.loads(f.read_text())
    for f in folder.glob("done-*.json"):
        out.update((int(uid), s) for uid, s in json.loads(f.read_text()).items())
    return out


def read_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of a store, complete or not; None where there is none."""
    try:
        return dict(zarr.open_group(zarr.DirectoryStore(str(path)), mode="r").attrs)
    except (zarr.errors.GroupNotFoundError, ValueError, KeyError):
        return None


def is_complete(path: Path) -> bool:
    """Whether the store's manifest is written."""
    return (Path(path) / keys.MANIFEST).is_file()


def _checksum(
    path: Path, array: str, known: dict[str, tuple[int, int]]
) -> tuple[str, int]:
    """An array's checksum and size on disk: the CRC-32 of one line per chunk file,
    in name order, "<name> <its CRC-32, 8 hex digits> <its size>". CRC-32, not a
    cryptographic hash: it is for finding damaged or incomplete copies. Files whose
    CRC this run computed when writing them (`known`, by file key) are not read
    back; the size on disk must agree, or the file is read."""
    lines, size = [], 0
    # os.scandir, not Path.iterdir: the file type comes with the name, without a
    # stat of its own. s01's 27 arrays, the CRCs known: 0.32 ms against 0.54 ms
    # (benchmarks/RESULTS.md, session 12).
    with os.scandir(path / array) as listing:
        files = sorted(
            (f for f in listing if f.is_file() and not f.name.startswith(".z")),
            key=lambda f: f.name,
        )
    for f in files:
        crc_size = known.get(f"{array}/{f.name}")
        if crc_size is None or crc_size[1] != f.stat().st_size:
            data = Path(f.path).read_bytes()
            crc_size = (zlib.crc32(data), len(data))
        lines.append(f"{f.name} {crc_size[0]:08x} {crc_size[1]}\n")
        size += crc_size[1]
    return f"{zlib.crc32(''.join(lines).encode()):08x}", size


def finish(
    path: Path,
    extra: dict[str, Any],
    known: dict[str, tuple[int, int]] | None = None,
    on_array: Callable[[], Any] | None = None,
    attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the manifest (counts, bytes, checksums), which makes the store complete.
    `known`: chunk files' CRC-32 and size computed when writing them (see
    `StoreWriter.chunk_checksums`); others are read back (Dask workers' files: the
    whole store). `on_array()` is called after each array's checksum. `attrs`: the
    store's root attributes where the caller has them (featurize made them), else
    they are read (0.2 ms for s01's)."""
    path = Path(path)
    if attrs is None:
        root = zarr.open_group(zarr.DirectoryStore(str(path)), mode="r")
        attrs = dict(root.attrs)
    layouts = layout_from_attr(attrs[keys.ATTR_LAYOUT])
    elements = attrs[keys.ATTR_ELEMENTS]
    arrays, total_bytes, raw_bytes = {}, 0, 0
    for spec in _specs_of(attrs):
        try:
            checksum, size = _checksum(path, spec.path, known or {})
        except FileNotFoundError:
            raise StoreError(
                f"{path}: array {spec.path} is missing; featurize again with "
                "--overwrite"
            ) from None
        arrays[spec.path] = {"crc32": checksum, "bytes": size}
        total_bytes += size
        raw_bytes += spec.nbytes
        if on_array is not None:
            on_array()
    manifest = {
        keys.ATTR_FORMAT_VERSION: keys.FORMAT_VERSION,
        "conformations": {
            name: sum(g.conformations[s] for g in layouts)
            for s, name in enumerate(keys.SPLIT_NAMES)
        },
        "atoms": sum(g.n_atoms * g.n_conformations for g in layouts),
        "rows": {
            e: sum(g.total_rows()[i] for g in layouts) for i, e in enumerate(elements)
        },
        "groups": {keys.group_name(g.n_atoms): g.n_conformations for g in layouts},
        "bytes": total_bytes,
        "uncompressed_bytes": raw_bytes,
        "arrays": arrays,
        **extra,
    }
    with _writing(path, keys.MANIFEST):
        _write_json_atomic(path / keys.MANIFEST, manifest)
    shutil.rmtree(path / keys.PROGRESS_DIR, ignore_errors=True)
    shutil.rmtree(path / keys.LOCKS_DIR, ignore_errors=True)
    return manifest


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
        if attrs is None or keys.ATTR_FORMAT_VERSION not in attrs:
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
