"""Blocks of a store: the unit the loader reads.

A block is a run of conformations of one atom-count group and one split, with the
matching contiguous rows of every element array, sized to a few AEV chunks. This
module cuts a split into blocks, shares them between ranks and reads one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aevpipe import keys
from aevpipe.store import ShardStore

# Rows of a streamed block, in AEV chunks. A block's rows of each element start
# and end inside chunks, which are decompressed whole: a block of one chunk's rows
# decompressed about five chunks (one more per element), a block of four about
# eight.
BLOCK_CHUNKS = 4


@dataclass(frozen=True)
class BlockRef:
    """Conformations [start, stop) of one group's split region, and their rows."""

    n_atoms: int
    start: int
    stop: int
    rows: tuple[tuple[int, int], ...]  # per element: [row start, row stop)

    def n_rows(self) -> int:
        return sum(b - a for a, b in self.rows)


@dataclass
class LoadedBlock:
    """A block in memory."""

    energy: np.ndarray  # (n,) float64 Hartree
    molecule: np.ndarray  # (n,) int32 index into the store's molecules
    counts: np.ndarray  # (n, n_elements) atoms of each element per conformation
    aev: list[np.ndarray | None]  # per element (rows, L) float32
    conf: list[np.ndarray | None]  # per element (rows,) int64, local conformation
    key: np.ndarray  # (n,) int64 conformation key (see `conformation_key`)


def element_counts(species: np.ndarray, n_elements: int) -> np.ndarray:
    """(C, A) element indices -> (C, n_elements) atom counts."""
    return np.stack([(species == e).sum(1) for e in range(n_elements)], axis=1)


def plan_blocks(store: ShardStore, split: int, target_rows: int) -> list[BlockRef]:
    """Cut `split`'s region of every group into blocks of about `target_rows` rows.

    Row ranges at block boundaries come from streaming the species array once.
    """
    n_el = len(store.elements)
    blocks = []
    for layout in store.layouts:
        c0, c1 = layout.conformation_range(split)
        if c1 == c0:
            continue
        per_block = max(1, target_rows // layout.n_atoms)
        row = [layout.row_range(split, e)[0] for e in range(n_el)]
        step = store.array(layout.n_atoms, keys.SPECIES).chunks[0]
        for a in range(c0, c1, step):
            b = min(c1, a + step)
            species = store.read(layout.n_atoms, keys.SPECIES, None, a, b)
            counts = element_counts(species, n_el)
            for s in range(a, b, per_block):
                t = min(b, s + per_block)
                n = counts[s - a : t - a].sum(0)
                rows = tuple((row[e], row[e] + int(n[e])) for e in range(n_el))
                row = [r1 for _, r1 in rows]
                blocks.append(BlockRef(layout.n_atoms, s, t, rows))
    return blocks


def share_blocks(blocks: list[BlockRef], rank: int, world_size: int) -> list[BlockRef]:
    """This rank's blocks: largest first to whichever rank has the fewest
    conformations so far, so shares differ by at most about one block."""
    if world_size == 1:
        return blocks
    sizes = [0] * world_size
    mine = []
    order = sorted(
        range(len(blocks)), key=lambda i: -(blocks[i].stop - blocks[i].start)
    )
    for i in order:
        r = sizes.index(min(sizes))
        sizes[r] += blocks[i].stop - blocks[i].start
        if r == rank:
            mine.append(i)
    return [blocks[i] for i in sorted(mine)]


def conformation_key(n_atoms: int, index: np.ndarray) -> np.ndarray:
    """Keys of conformations `index` of the group of `n_atoms` atoms: where they
    are in the store, in one int64 each."""
    return (np.int64(n_atoms) << np.int64(32)) + index.astype(np.int64)


def key_parts(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `conformation_key`: (atom counts, indices in their group)."""
    return key >> np.int64(32), key & np.int64(0xFFFFFFFF)


def load_block(
    store: ShardStore, ref: BlockRef, aev_out: list[np.ndarray | None] | None = None
) -> LoadedBlock:
    """Read one block: whole row ranges of each element array, decompressed.
    AEV rows go into `aev_out` (per element, views of the right shape) when given,
    and the block's `aev` are those views."""
    a = ref.n_atoms
    n = ref.stop - ref.start
    aevs: list[np.ndarray | None] = []
    confs: list[np.ndarray | None] = []
    counts = np.zeros((n, len(store.elements)), np.int64)
    for e, element in enumerate(store.elements):
        r0, r1 = ref.rows[e]
        if r1 == r0:
            aevs.append(None)
            confs.append(None)
            continue
        if aev_out is None:
            aevs.append(store.read(a, keys.AEV, element, r0, r1))
        else:
            store.read_aev_into(a, element, r0, r1, aev_out[e])
            aevs.append(aev_out[e])
        conf = store.read(a, keys.CONFORMATION, element, r0, r1).astype(np.int64)
        conf -= ref.start
        confs.append(conf)
        counts[:, e] = np.bincount(conf, minlength=n)
    energy = store.read(a, keys.ENERGY, None, ref.start, ref.stop)
    molecule = store.read(a, keys.MOLECULE, None, ref.start, ref.stop)
    key = conformation_key(a, np.arange(ref.start, ref.stop))
    return LoadedBlock(
        energy=energy, molecule=molecule, counts=counts, aev=aevs, conf=confs, key=key
    )
