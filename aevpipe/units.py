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
from aevpipe.plan import Segment, Unit, conformation_splits
from aevpipe.store import StoreWriter


@dataclass(frozen=True)
class SegmentSource:
    """Where a unit's segment comes from, and how its molecule is split."""

    file: str
    group: str
    n_conformations_of_molecule: int
    molecule_code: int | None  # split code of the whole molecule, when split by it


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to run one unit."""

    store: str
    unit: Unit
    sources: tuple[SegmentSource, ...]  # one per segment of the unit
    aev: AEVParams
    split: SplitSettings
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


@dataclass
class ComputedSegment:
    """A segment's source data and AEV rows, conformations in split order."""

    counts: tuple[int, ...]  # conformations in each split
    molecule: np.ndarray  # (n,) int32 the molecule's index, repeated
    species: np.ndarray  # (n, A) int8
    energies: np.ndarray  # (n,) float64 Hartree
    index: np.ndarray  # (n,) int32 conformation index in the source group
    rows: list[np.ndarray | None]  # per element: (n * k_e, L) float32, or None
    per_conformation: list[int]  # k_e: atoms of each element in a conformation

    def split_range(self, split: int) -> tuple[int, int]:
        """[start, stop) of the conformations of `split`."""
        start = sum(self.counts[:split])
        return start, start + self.counts[split]


def compute_segment(
    task: UnitTask, segment: Segment, source: SegmentSource
) -> ComputedSegment:
    """Read a segment's conformations (an InputError when a value is NaN or
    infinite), sort them by split and compute their AEV rows.

    Sorting the inputs (small) rather than the AEVs (large) makes each split a
    contiguous range of every element's rows: every conformation of a molecule
    holds k_e atoms of each element (the scan checks), so conformations [i, j) own
    rows [i * k_e, j * k_e).
    """
    elements = task.aev.elements
    block = _reader(source.file).read(source.group, segment.start, segment.stop, True)
    species = species_indices(block.symbols, elements, source.file, source.group)
    codes = conformation_splits(
        task.split,
        segment.molecule,
        source.n_conformations_of_molecule,
        source.molecule_code,
    )[segment.start : segment.stop]
    order = np.argsort(codes, kind="stable")  # split order, source order within
    species = species[order]
    rows = element_rows(
        _computer(task.aev, worker_device(task.device)),
        torch.from_numpy(species),
        torch.from_numpy(block.coordinates[order]),
        len(elements),
    )
    return ComputedSegment(
        counts=segment.counts,
        molecule=np.full(len(order), segment.molecule, np.int32),
        species=species,
        energies=block.energies[order],
        index=(segment.start + order).astype(np.int32),
        rows=[None if r is None else r[0].numpy() for r in rows],
        per_conformation=[0 if r is None else len(r[0]) // len(order) for r in rows],
    )


def write_unit(task: UnitTask, computed: list[ComputedSegment]) -> dict[str, Any]:
    """Write a computed unit at the plan's positions, each split's conformations
    of all its segments as one range, and record the unit as done; returns its
    counts."""
    unit, elements, writer = task.unit, task.aev.elements, _writer(task.store)
    put = functools.partial(_put, writer, unit.n_atoms)
    for part in unit.parts:
        c0 = part.conformation_offset
        pieces = [(g, *g.split_range(part.split)) for g in computed]
        put(keys.ENERGY, None, c0, _joined(pieces, "energies"))
        put(keys.SPECIES, None, c0, _joined(pieces, "species"))
        put(keys.MOLECULE, None, c0, _joined(pieces, "molecule"))
        put(keys.INDEX, None, c0, _joined(pieces, "index"))
        put(keys.SPLIT, None, c0, np.full(part.count, part.split, np.int8))
        # Each conformation's place in the group, and its element rows.
        places = np.arange(c0, c0 + part.count, dtype=np.int32)
        first = np.cumsum([0] + [j - i for _, i, j in pieces])
        for e, (element, r0) in enumerate(zip(elements, part.row_offsets, strict=True)):
            aev, conformation = [], []
            for (g, i, j), f in zip(pieces, first, strict=False):
                k = g.per_conformation[e]
                if k and j > i:
                    aev.append(g.rows[e][i * k : j * k])
                    conformation.append(np.repeat(places[f : f + j - i], k))
            if aev:
                put(keys.AEV, element, r0, np.concatenate(aev))
                put(keys.CONFORMATION, element, r0, np.concatenate(conformation))
    stats = {
        "conformations": unit.n_conformations,
        "atoms": unit.n_conformations * unit.n_atoms,
        "rows": {
            element: sum(g.per_conformation[e] * sum(g.counts) for g in computed)
            for e, element in enumerate(elements)
        },
    }
    writer.mark_done(unit.uid, stats)
    return stats


def run_unit(task: UnitTask) -> dict[str, Any]:
    """Compute and write one unit; returns its counts."""
    if task.threads:
        torch.set_num_threads(task.threads)
    computed = [
        compute_segment(task, segment, source)
        for segment, source in zip(task.unit.segments, task.sources, strict=True)
    ]
    return write_unit(task, computed)


def _joined(pieces: list[tuple[ComputedSegment, int, int]], column: str) -> np.ndarray:
    """Conformations [i, j) of each segment's `column`, one after another."""
    return np.concatenate([getattr(g, column)[i:j] for g, i, j in pieces])


def _put(writer: StoreWriter, n_atoms: int, name: str, element, start, values):
    writer.write(keys.array_path(n_atoms, name, element), start, values)
