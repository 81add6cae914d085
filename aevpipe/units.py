"""One featurize work unit: read a block of conformations, compute AEVs, write them.

A `UnitTask` is small and picklable, so the same function runs in-process or on a
Dask worker; the positions it writes to come from the plan.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aevpipe.aev import build_aev_computer, compute_aevs, resolve_device
from aevpipe.ani1 import ANI1File
from aevpipe.config import AEVParams, SplitSettings
from aevpipe.errors import InputError
from aevpipe.plan import Unit, conformation_splits
from aevpipe.shards import PartData, mark_done, open_writer, write_part


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
    locked: bool  # other processes write to the same store
    threads: int = 0  # torch threads in this worker; 0 leaves torch's default


@functools.lru_cache(maxsize=4)
def _computer(aev: AEVParams, device: str):
    return build_aev_computer(aev, resolve_device(device))


@functools.lru_cache(maxsize=8)
def _reader(path: str) -> ANI1File:
    return ANI1File(path)


def species_indices(
    symbols: np.ndarray, elements: tuple[str, ...], file: str, group: str
) -> np.ndarray:
    """Symbols (n, A) as int8 indices into `elements`; InputError for others."""
    lookup = {e: i for i, e in enumerate(elements)}
    unknown = sorted(set(np.unique(symbols)) - set(lookup))
    if unknown:
        raise InputError(
            file,
            group,
            f"element(s) {unknown} not covered by the AEV "
            f"parameters (elements {list(elements)})",
        )
    uniq, inverse = np.unique(symbols, return_inverse=True)
    table = np.array([lookup[u] for u in uniq], dtype=np.int8)
    return table[inverse].reshape(symbols.shape)


def run_unit(task: UnitTask) -> dict[str, Any]:
    """Run one unit and mark it done; returns its counts and compute time."""
    if task.threads:
        torch.set_num_threads(task.threads)
    unit, elements = task.unit, task.aev.elements
    block = _reader(task.file).read(task.group, unit.start, unit.stop)
    species = species_indices(block.symbols, elements, task.file, task.group)
    t0 = time.perf_counter()
    aevs = (
        compute_aevs(
            _computer(task.aev, task.device),
            torch.from_numpy(species),
            torch.from_numpy(block.coordinates),
        )
        .cpu()
        .numpy()
    )  # (n, A, L)
    seconds = time.perf_counter() - t0
    codes = conformation_splits(
        task.split, unit.molecule, task.n_conformations_of_molecule, task.molecule_code
    )[unit.start : unit.stop]
    root = open_writer(Path(task.store), task.locked)
    rows = dict.fromkeys(elements, 0)
    for part in unit.parts:
        local = np.flatnonzero(codes == part.split)  # source order
        part_species = species[local]
        aev_rows, conf_rows = {}, {}
        for e, element in enumerate(elements):
            conf_idx, atom_idx = np.nonzero(part_species == e)  # (conformation, atom)
            if len(conf_idx) == 0:
                continue
            aev_rows[element] = aevs[local[conf_idx], atom_idx]
            conf_rows[element] = (part.conformation_offset + conf_idx).astype(np.int32)
            rows[element] += len(conf_idx)
        data = PartData(
            energy=block.energies[local],
            species=part_species,
            molecule=np.full(part.count, unit.molecule, dtype=np.int32),
            index=(unit.start + local).astype(np.int32),
            aev=aev_rows,
            conformation=conf_rows,
        )
        write_part(root, unit.n_atoms, part, data, elements)
    stats = {
        "conformations": unit.n_conformations,
        "atoms": unit.n_conformations * unit.n_atoms,
        "rows": rows,
        "aev_seconds": seconds,
    }
    mark_done(Path(task.store), unit.uid, stats)
    return stats
