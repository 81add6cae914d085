"""The bounded-memory loader: whole blocks of shards in, mixed dense batches out.

Each epoch shuffles the blocks, fills a window of blocks up to the memory budget (the
next window loads in a background thread meanwhile), and deals the window's
conformations into batches in a random order, so a batch mixes molecules and atom
counts. When the whole split fits in the budget it is loaded once and kept.

Batches are per-element row blocks plus a row -> conformation index: no padding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from aevpipe import keys
from aevpipe.blocks import BLOCK_CHUNKS, BlockRef, load_block, plan_blocks, share_blocks
from aevpipe.errors import SettingsError
from aevpipe.store import ShardStore


@dataclass
class Batch:
    """One training batch, as torch tensors on the CPU."""

    aev: dict[str, torch.Tensor]  # element -> (rows, L) float32
    conf: dict[str, torch.Tensor]  # element -> (rows,) int64 into the batch
    energy: torch.Tensor  # (B,) float64 Hartree, reference
    target: torch.Tensor  # (B,) float32 Hartree, reference minus self energies
    n_atoms: torch.Tensor  # (B,) float32
    counts: torch.Tensor  # (B, n_elements) float64
    molecule: torch.Tensor  # (B,) int32 index into the store's molecules, on CPU
    key: torch.Tensor  # (B,) int64 conformation key (`blocks.conformation_key`), CPU

    @property
    def size(self) -> int:
        return len(self.energy)

    def to(self, device: torch.device) -> Batch:
        """This batch on `device`. CUDA copies come from pinned memory, so they are
        asynchronous and the host never waits for the GPU per batch."""
        if device.type == "cpu":
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.pin_memory().to(device, non_blocking=True)

        return Batch(
            aev={e: move(t) for e, t in self.aev.items()},
            conf={e: move(t) for e, t in self.conf.items()},
            energy=move(self.energy),
            target=move(self.target),
            n_atoms=move(self.n_atoms),
            counts=move(self.counts),
            molecule=self.molecule,
            key=self.key,
        )


@dataclass
class Window:
    """Several blocks in one set of arrays: the unit that batches are dealt from."""

    energy: np.ndarray
    molecule: np.ndarray
    counts: np.ndarray
    aev: list[np.ndarray | None]
    conf: list[np.ndarray | None]
    key: np.ndarray
    buffer: np.ndarray  # flat float32 memory the `aev` arrays are views of

    @classmethod
    def load(
        cls,
        store: ShardStore,
        refs: list[BlockRef],
        buffer: np.ndarray | None = None,
        capacity: int = 0,
    ) -> Window:
        """Read blocks straight into preallocated window arrays: beyond the window,
        memory holds one block at a time. AEV rows go into `buffer` (an earlier
        window's) when it is large enough, else into a new one of at least
        `capacity` values, so that later windows fit it too: memory touched for
        the first time costs the kernel as much as decompressing the data into
        it."""
        n_el, length = len(store.elements), store.aev.aev_length
        n = sum(r.stop - r.start for r in refs)
        rows = [sum(r.rows[e][1] - r.rows[e][0] for r in refs) for e in range(n_el)]
        if buffer is None or buffer.size < sum(rows) * length:
            buffer = np.empty(max(sum(rows) * length, capacity), np.float32)
        edges = np.cumsum([0, *rows]) * length
        window = cls(
            energy=np.empty(n, np.float64),
            molecule=np.empty(n, np.int32),
            counts=np.empty((n, n_el), np.int64),
            aev=[
                buffer[edges[e] : edges[e + 1]].reshape(k, length) if k else None
                for e, k in enumerate(rows)
            ],
            conf=[np.empty(k, np.int64) if k else None for k in rows],
            key=np.empty(n, np.int64),
            buffer=buffer,
        )
        c, r = 0, [0] * n_el
        for ref in refs:
            # AEV rows decompress straight into their place in the window.
            places = [
                window.aev[e][r[e] : r[e] + ref.rows[e][1] - ref.rows[e][0]]
                if window.aev[e] is not None
                else None
                for e in range(n_el)
            ]
            block = load_block(store, ref, places)
            m = len(block.energy)
            window.energy[c : c + m] = block.energy
            window.key[c : c + m] = block.key
            window.molecule[c : c + m] = block.molecule
            window.counts[c : c + m] = block.counts
            for e in range(n_el):
                if block.aev[e] is None:
                    continue
                k = len(block.aev[e])
                window.conf[e][r[e] : r[e] + k] = block.conf[e] + c
                r[e] += k
            c += m
        return window

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.aev if a is not None)


class ShardLoader:
    """Batches of one split of a store, holding at most `memory_limit` bytes of AEVs.

    `self_energies` (per element, Hartree) are subtracted to make the targets.
    """

    def __init__(
        self,
        store: ShardStore,
        split: int,
        batch_size: int,
        memory_limit: int,
        self_energies: np.ndarray,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise SettingsError(f"batch size must be positive: {batch_size}")
        self.store = store
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.self_energies = np.asarray(self_energies, np.float64)
        self.elements = store.elements
        row_bytes = store.aev.aev_length * 4
        chunk_rows = int(store.attrs.get(keys.ATTR_CHUNK_ROWS, 4096))
        split_rows = sum(
            layout.rows[split][e]
            for layout in store.layouts
            for e in range(len(store.elements))
        )
        # Blocks of BLOCK_CHUNKS chunks where this rank streams its share; where
        # it holds it (read once), blocks of one chunk, which mix better and
        # share out more evenly between ranks. At most 1/8 of the budget, so
        # that windows mix.
        streamed = split_rows * row_bytes > memory_limit * world_size
        chunks = BLOCK_CHUNKS if streamed else 1
        budget_rows = memory_limit // (8 * row_bytes)
        target_rows = max(1, min(chunks * chunk_rows, budget_rows))
        self.blocks = share_blocks(
            plan_blocks(store, split, target_rows), rank, world_size
        )
        self.n_conformations = sum(b.stop - b.start for b in self.blocks)
        total = sum(b.n_rows() for b in self.blocks) * row_bytes
        # Streaming, two windows live at once: the one being dealt and the one
        # loading, each in one of two buffers reused from epoch to epoch.
        self.window_bytes = max(row_bytes, memory_limit // 2)
        self.window_values = self.window_bytes // 4  # float32 AEV values
        self.buffers: list[np.ndarray | None] = [None, None]
        self.resident: Window | None = None
        if total <= memory_limit and self.blocks:
            self.resident = Window.load(store, self.blocks)
        self.peak_window_bytes = 0

    def __len__(self) -> int:
        """Conformations per epoch."""
        return self.n_conformations

    def release(self) -> None:
        """Give back the memory the loader keeps between epochs (its resident split,
        its window buffers); a later epoch streams its windows again."""
        self.buffers = [None, None]
        self.resident = None

    def _windows(self, order: list[BlockRef]) -> Iterator[list[BlockRef]]:
        row_bytes = self.store.aev.aev_length * 4
        window, size = [], 0
        for ref in order:
            nbytes = ref.n_rows() * row_bytes
            if window and size + nbytes > self.window_bytes:
                yield window
                window, size = [], 0
            window.append(ref)
            size += nbytes
        if window:
            yield window

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """All batches of one epoch; every conformation exactly once."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.resident is not None:
            yield from self._deal(self.resident, rng)
            return
        order = list(self.blocks)
        if self.shuffle:
            order = [order[i] for i in rng.permutation(len(order))]
        windows = list(self._windows(order))
        result: dict[int, Window | BaseException] = {}

        def fetch(i: int) -> None:
            # Window i's buffer was window i - 2's, dealt by the time this runs.
            try:
                result[i] = Window.load(
                    self.store, windows[i], self.buffers[i % 2], self.window_values
                )
                self.buffers[i % 2] = result[i].buffer
            except BaseException as exc:  # re-raised in the consumer
                result[i] = exc

        thread = None
        if windows:
            thread = threading.Thread(target=fetch, args=(0,), daemon=True)
            thread.start()
        try:
            for i in range(len(windows)):
                thread.join()
                current = result.pop(i)
                if isinstance(current, BaseException):
                    raise current
                if i + 1 < len(windows):
                    thread = threading.Thread(target=fetch, args=(i + 1,), daemon=True)
                    thread.start()
                self.peak_window_bytes = max(self.peak_window_bytes, current.nbytes())
                yield from self._deal(current, rng)
        finally:  # an epoch left early: no load may still write into a buffer
            if thread is not None:
                thread.join()

    def _deal(self, w: Window, rng: np.random.Generator) -> Iterator[Batch]:
        n = len(w.energy)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        position = np.empty(n, np.int64)
        position[order] = np.arange(n)
        bs = self.batch_size
        n_batches = -(-n // bs)
        per_element = []
        for e in range(len(self.elements)):
            if w.conf[e] is None:
                per_element.append(None)
                continue
            pos = position[w.conf[e]]
            batch_of_row = pos // bs
            rows = np.argsort(batch_of_row, kind="stable")
            bounds = np.concatenate(
                [[0], np.cumsum(np.bincount(batch_of_row, minlength=n_batches))]
            )
            per_element.append(
                (
                    torch.from_numpy(w.aev[e]),
                    torch.from_numpy(rows),
                    torch.from_numpy(pos[rows] % bs),
                    bounds,
                )
            )
        target = w.energy - w.counts @ self.self_energies
        n_atoms = w.counts.sum(1)
        for b in range(n_batches):
            confs = order[b * bs : (b + 1) * bs]
            aev, conf = {}, {}
            for e, element in enumerate(self.elements):
                if per_element[e] is None:
                    continue
                rows_t, row_idx, local, bounds = per_element[e]
                lo, hi = bounds[b], bounds[b + 1]
                if hi == lo:
                    continue
                idx = row_idx[lo:hi]
                aev[element] = rows_t.index_select(0, idx)
                conf[element] = local[lo:hi]
            yield Batch(
                aev=aev,
                conf=conf,
                energy=torch.from_numpy(w.energy[confs]),
                target=torch.from_numpy(target[confs].astype(np.float32)),
                n_atoms=torch.from_numpy(n_atoms[confs].astype(np.float32)),
                counts=torch.from_numpy(w.counts[confs].astype(np.float64)),
                molecule=torch.from_numpy(w.molecule[confs]),
                key=torch.from_numpy(w.key[confs]),
            )
