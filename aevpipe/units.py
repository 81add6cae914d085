"""One featurize work unit: read a block of conformations, compute AEVs, write them.

A `UnitTask` is small and picklable, so the same function runs in-process or on a
Dask worker; the positions it writes to come from the plan.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aevpipe import sharing
from aevpipe.aev import build_aev_computer, compute_element_rows, resolve_device
from aevpipe.allocator import keep_freed_memory
from aevpipe.ani1 import ANI1File
from aevpipe.config import AEVParams, SplitSettings
from aevpipe.errors import InputError
from aevpipe.plan import Unit, conformation_splits
from aevpipe.shards import PartData, StoreWriter, wait_written


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to run one unit."""

    store: str
    plan: str  # the store's plan fingerprint: cached writers follow it
    unit: Unit
    file: str
    group: str
    aev: AEVParams
    split: SplitSettings
    molecule_code: int | None  # split code of the whole molecule, when split by it
    n_conformations_of_molecule: int
    device: str
    locked: bool  # other processes write to the same store
    direct_writes: bool = False  # large chunk files beside the page cache
    threads: int = 0  # torch threads in this worker; 0 leaves torch's default
    # Every conformation's element symbols, where the scan found them shared (the
    # release layout): the unit then does not read them again.
    symbols: tuple[str, ...] | None = None


@functools.lru_cache(maxsize=4)
def _computer(aev: AEVParams, device: str):
    return build_aev_computer(aev, resolve_device(device))


def worker_device(device: str) -> str:
    """On a Dask worker of a machine with several visible GPUs, the GPU given by
    the worker's index (LocalCluster names workers 0, 1, ...); else `device`."""
    if device not in ("auto", "cuda") or torch.cuda.device_count() < 2:
        return device
    try:
        from dask.distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    if not isinstance(name, int):
        return device
    return f"cuda:{name % torch.cuda.device_count()}"


@functools.lru_cache(maxsize=8)
def _molecule_splits(
    split: SplitSettings, molecule: int, n_conformations: int, code: int | None
) -> np.ndarray:
    """A molecule's split codes, kept for its next units (a unit needs only its
    slice, but the whole molecule's permutation makes it)."""
    codes = conformation_splits(split, molecule, n_conformations, code)
    codes.flags.writeable = False
    return codes


@functools.lru_cache(maxsize=2)
def _writer(store: str, plan: str, locked: bool, direct: bool) -> StoreWriter:
    return StoreWriter(Path(store), locked, direct)


@functools.lru_cache(maxsize=8)
def _cached_reader(path: str, stamp: tuple[int, int]) -> ANI1File:
    return ANI1File(path)


def _reader(path: str) -> ANI1File:
    """A reader kept open per process; a file replaced on disk gets a new one."""
    st = os.stat(path)
    return _cached_reader(path, (st.st_mtime_ns, st.st_size))


def species_indices(
    symbols: np.ndarray,
    elements: tuple[str, ...],
    file: str,
    group: str,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """Symbols (n, A) as int8 indices into `elements`; InputError for others,
    naming the first offending row's position when `positions` (n,) is given."""
    if symbols.ndim == 2 and len(symbols) > 1 and symbols.strides[0] == 0:
        # One atom order broadcast to every conformation (the release layout).
        where = None if positions is None else positions[:1]
        first = species_indices(symbols[:1], elements, file, group, where)
        return np.repeat(first, len(symbols), axis=0)
    lookup = {e: i for i, e in enumerate(elements)}
    unknown = sorted(str(u) for u in set(np.unique(symbols)) - set(lookup))
    if unknown:
        where = group
        if positions is not None:
            bad = np.isin(symbols, unknown).reshape(len(symbols), -1).any(1)
            where = f"{group} {int(positions[np.argmax(bad)])}"
        raise InputError(
            file,
            where,
            f"element(s) {unknown} not covered by the AEV "
            f"parameters (elements {list(elements)})",
        )
    uniq, inverse = np.unique(symbols, return_inverse=True)
    table = np.array([lookup[u] for u in uniq], dtype=np.int8)
    return table[inverse].reshape(symbols.shape)


@dataclass
class ComputedUnit:
    """A unit's AEVs and source data, conformations in split order (the order of
    `unit.parts`), between computing and writing."""

    rows: list[np.ndarray | None]  # per element: (n * k_e, L) float32, or None
    species: np.ndarray  # (n, A) int8
    energies: np.ndarray  # (n,) float64
    index: np.ndarray  # (n,) int32 conformation index in the source group
    seconds: float


def compute_unit(task: UnitTask) -> ComputedUnit:
    """Read the unit's conformations (an InputError when a value is NaN or
    infinite), sort them by split, compute their AEVs.

    Sorting the inputs (small) rather than the AEVs (large) makes each split part
    a contiguous range of every element's rows.
    """
    if task.threads:
        torch.set_num_threads(task.threads)
    keep_freed_memory()
    unit = task.unit
    block = _reader(task.file).read(
        task.group, unit.start, unit.stop, check_finite=True, symbols=task.symbols
    )
    species = species_indices(block.symbols, task.aev.elements, task.file, task.group)
    codes = _molecule_splits(
        task.split, unit.molecule, task.n_conformations_of_molecule, task.molecule_code
    )[unit.start : unit.stop]
    order = np.argsort(codes, kind="stable")  # split order, source order within
    species = species[order]
    t0 = time.perf_counter()
    rows = compute_element_rows(
        _computer(task.aev, worker_device(task.device)),
        torch.from_numpy(species),
        torch.from_numpy(block.coordinates[order]),
        len(task.aev.elements),
    )
    seconds = time.perf_counter() - t0
    index = (unit.start + order).astype(np.int32)
    return ComputedUnit(
        [None if r is None else r.numpy() for r in rows],
        species,
        block.energies[order],
        index,
        seconds,
    )


def write_unit(task: UnitTask, computed: ComputedUnit) -> dict[str, Any]:
    """Write a computed unit at its planned positions; the writer marks it done
    once all of it is on disk."""
    unit, elements = task.unit, task.aev.elements
    writer = _writer(task.store, task.plan, task.locked, task.direct_writes)
    per_conformation = [
        0 if r is None else len(r) // unit.n_conformations for r in computed.rows
    ]
    start, touched, jobs = 0, set(), []
    for part in unit.parts:
        stop = start + part.count
        aev_rows, conf_rows = {}, {}
        for element, k, rows in zip(
            elements, per_conformation, computed.rows, strict=True
        ):
            if not k:
                continue
            aev_rows[element] = rows[start * k : stop * k]
            conf_rows[element] = np.repeat(
                np.arange(
                    part.conformation_offset,
                    part.conformation_offset + part.count,
                    dtype=np.int32,
                ),
                k,
            )
        data = PartData(
            energy=computed.energies[start:stop],
            species=computed.species[start:stop],
            molecule=np.full(part.count, unit.molecule, dtype=np.int32),
            index=computed.index[start:stop],
            aev=aev_rows,
            conformation=conf_rows,
        )
        touched |= writer.write_part(unit.n_atoms, part, data, elements, jobs)
        start = stop
    # Encoding and starting each chunk file's write, with the help of idle unit
    # threads; then the unit waits for its files.
    wait_written(sharing.run(jobs))
    stats = {
        "conformations": unit.n_conformations,
        "atoms": unit.n_conformations * unit.n_atoms,
        "rows": {
            e: k * unit.n_conformations
            for e, k in zip(elements, per_conformation, strict=True)
        },
        "aev_seconds": computed.seconds,
    }
    writer.unit_written(unit.uid, unit.n_atoms, stats, touched)
    return stats


def expect_writes(
    store: str, plan: str, direct: bool, units_per_group: dict[int, int]
) -> None:
    """Tell this process's in-process writer how many units of each atom-count
    group the run will write (it writes a group's leftovers after the last)."""
    _writer(store, plan, False, direct).expect(units_per_group)


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch's intra-op threads set to `n` (0: left alone) inside the block."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def flush_writes(store: str, plan: str, direct: bool) -> dict[str, tuple[int, int]]:
    """Write out whatever this process's in-process writer still holds, and mark
    the units it completes done (end of a run, or an interrupted one). Returns the
    CRC-32 and size of the chunk files it wrote (see `shards.finish`)."""
    writer = None
    try:
        writer = _writer(store, plan, False, direct)
        writer.flush()
        return writer.chunk_checksums()
    finally:
        if writer is not None:
            writer.close()
        _writer.cache_clear()  # the next run starts with empty buffers


def run_unit(task: UnitTask) -> dict[str, Any]:
    """Compute and write one unit; returns its counts and AEV time."""
    return write_unit(task, compute_unit(task))
