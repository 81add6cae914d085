"""One featurize work unit: read a block of conformations, compute AEVs, write them.

A `UnitTask` is small and picklable, so the same function runs in-process or on a
Dask worker; the positions it writes to come from the plan, so the store is the
same whichever executor ran the units, in any order.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aevpipe import keys
from aevpipe.aev import build_aev_computer, element_rows, resolve_device
from aevpipe.ani1 import ANI1File
from aevpipe.config import AEVParams, SplitSettings
from aevpipe.errors import InputError
from aevpipe.plan import Unit, conformation_splits
from aevpipe.store import StoreWriter


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to run one unit."""

    store: str
    unit: Unit
    file: str
    group: str
    aev: AEVParams
    split: SplitSettings
    molecule_code: int | None  # split code of the whole molecule, when split by it
    n_conformations_of_molecule: int
    device: str
    threads: int = 0  # torch threads in this worker; 0 leaves torch's setting


@functools.lru_cache(maxsize=4)
def _computer(aev: AEVParams, device: str):
    return build_aev_computer(aev, resolve_device(device))


@functools.lru_cache(maxsize=4)
def _writer(store: str) -> StoreWriter:
    return StoreWriter(Path(store))


@functools.lru_cache(maxsize=8)
def _cached_reader(path: str, stamp: tuple[int, int]) -> ANI1File:
    return ANI1File(path)


def _reader(path: str) -> ANI1File:
    """A reader kept open per process; a file replaced on disk gets a new one."""
    st = os.stat(path)
    return _cached_reader(path, (st.st_mtime_ns, st.st_size))


def close_readers() -> None:
    """Forget this process's open readers and writers (the end of a run)."""
    _cached_reader.cache_clear()
    _writer.cache_clear()


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


def species_indices(
    symbols: np.ndarray,
    elements: tuple[str, ...],
    file: str,
    group: str,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """Element symbols (n, A) as int8 indices into `elements`; an InputError
    naming the file and group (and, given `positions` (n,), the first offending
    conformation's) for symbols the AEV parameters do not cover."""
    lookup = {e: i for i, e in enumerate(elements)}
    uniq, inverse = np.unique(symbols, return_inverse=True)
    unknown = sorted(str(u) for u in uniq if u not in lookup)
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
    table = np.array([lookup[u] for u in uniq], dtype=np.int8)
    return table[inverse].reshape(symbols.shape)


def run_unit(task: UnitTask) -> dict[str, Any]:
    """Read the unit's conformations (an InputError when a value is NaN or
    infinite), sort them by split, compute their AEVs, write them at the plan's
    positions and record the unit as done. Returns its counts.

    Sorting the inputs (small) rather than the AEVs (large) makes each split part a
    contiguous range of every element's rows.
    """
    if task.threads:
        torch.set_num_threads(task.threads)
    unit, elements = task.unit, task.aev.elements
    block = _reader(task.file).read(task.group, unit.start, unit.stop, True)
    species = species_indices(block.symbols, elements, task.file, task.group)
    codes = conformation_splits(
        task.split, unit.molecule, task.n_conformations_of_molecule, task.molecule_code
    )[unit.start : unit.stop]
    order = np.argsort(codes, kind="stable")  # split order, source order within
    species = species[order]
    rows = element_rows(
        _computer(task.aev, worker_device(task.device)),
        torch.from_numpy(species),
        torch.from_numpy(block.coordinates[order]),
        len(elements),
    )
    # Every conformation of a molecule holds k atoms of each element (the scan
    # checks), so conformations [i, j) own rows [i * k, j * k).
    per_conformation = [0 if r is None else len(r[0]) // len(order) for r in rows]
    writer, start = _writer(task.store), 0
    for part in unit.parts:
        stop, c0 = start + part.count, part.conformation_offset
        put = functools.partial(_put, writer, unit.n_atoms)
        put(keys.ENERGY, None, c0, block.energies[order[start:stop]])
        put(keys.SPECIES, None, c0, species[start:stop])
        put(keys.MOLECULE, None, c0, np.full(part.count, unit.molecule, np.int32))
        put(keys.INDEX, None, c0, (unit.start + order[start:stop]).astype(np.int32))
        put(keys.SPLIT, None, c0, np.full(part.count, part.split, np.int8))
        for element, k, r, r0 in zip(
            elements, per_conformation, rows, part.row_offsets, strict=True
        ):
            if k:
                put(keys.AEV, element, r0, r[0][start * k : stop * k].numpy())
                conformation = np.arange(c0, c0 + part.count, dtype=np.int32)
                put(keys.CONFORMATION, element, r0, np.repeat(conformation, k))
        start = stop
    stats = {
        "conformations": unit.n_conformations,
        "atoms": unit.n_conformations * unit.n_atoms,
        "rows": {
            e: k * unit.n_conformations
            for e, k in zip(elements, per_conformation, strict=True)
        },
    }
    writer.mark_done(unit.uid, stats)
    return stats


def _put(writer: StoreWriter, n_atoms: int, name: str, element, start, values):
    writer.write(keys.array_path(n_atoms, name, element), start, values)
