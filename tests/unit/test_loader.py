"""The bounded-memory loader: coverage, mixing, memory bound, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from aevpipe import keys
from aevpipe.loader import ShardLoader
from aevpipe.store import ShardStore

MIB = 1 << 20


def epoch_ids(loader: ShardLoader, epoch: int):
    """(energy, n_atoms) of every conformation served, per batch."""
    return [
        list(zip(b.energy.tolist(), b.n_atoms.tolist(), strict=True))
        for b in loader.epoch(epoch)
    ]


def split_energies(store: ShardStore, split: int) -> list[float]:
    out = []
    for layout in store.layouts:
        s = store.array(layout.n_atoms, keys.SPLIT)[:]
        out += store.array(layout.n_atoms, keys.ENERGY)[:][s == split].tolist()
    return sorted(out)


@pytest.mark.parametrize("memory_limit", [64 * MIB, 200_000])
def test_every_training_conformation_exactly_once(store, memory_limit):
    s = ShardStore.open(store)
    loader = ShardLoader(s, 0, 16, memory_limit, np.zeros(4), shuffle=True)
    assert (loader.resident is not None) == (memory_limit == 64 * MIB)
    for epoch in (1, 2):
        served = sorted(e for batch in epoch_ids(loader, epoch) for e, _ in batch)
        assert served == split_energies(s, 0)
    if loader.resident is None:
        assert 0 < loader.peak_window_bytes <= loader.window_bytes


def test_batches_mix_molecules_and_atom_counts(store):
    loader = ShardLoader(ShardStore.open(store), 0, 32, 64 * MIB, np.zeros(4), True)
    mixed = [len({n for _, n in batch}) > 1 for batch in epoch_ids(loader, 1)]
    assert sum(mixed) >= 0.8 * len(mixed)


def test_streaming_batches_mix_too(store):
    loader = ShardLoader(ShardStore.open(store), 0, 32, 200_000, np.zeros(4), True)
    mixed = [len({n for _, n in batch}) > 1 for batch in epoch_ids(loader, 1)]
    assert sum(mixed) >= 0.5 * len(mixed)


def test_order_is_seeded_per_epoch(store):
    s = ShardStore.open(store)
    a = ShardLoader(s, 0, 16, 200_000, np.zeros(4), shuffle=True, seed=5)
    b = ShardLoader(s, 0, 16, 200_000, np.zeros(4), shuffle=True, seed=5)
    assert epoch_ids(a, 3) == epoch_ids(b, 3)
    assert epoch_ids(a, 3) != epoch_ids(a, 4)


def test_batch_rows_belong_to_their_conformations(store):
    """Rows rebuilt into conformations give back each conformation's atom counts."""
    s = ShardStore.open(store)
    sae = np.array([-0.5, -37.8, -54.5, -75.0])
    loader = ShardLoader(s, 1, 8, 200_000, sae, shuffle=True)
    for batch in loader.epoch(1):
        counts = np.zeros((batch.size, 4))
        for e, element in enumerate(s.elements):
            if element in batch.conf:
                counts[:, e] = np.bincount(
                    batch.conf[element].numpy(), minlength=batch.size
                )
                assert batch.aev[element].shape[1] == 384
        assert (counts == batch.counts.numpy()).all()
        assert (counts.sum(1) == batch.n_atoms.numpy()).all()
        expected = batch.energy.numpy() - counts @ sae
        np.testing.assert_allclose(batch.target.numpy(), expected, rtol=1e-6)


def test_rank_shares_partition_the_blocks(store):
    s = ShardStore.open(store)
    shares = [
        ShardLoader(s, 0, 16, 200_000, np.zeros(4), True, rank=r, world_size=2)
        for r in range(2)
    ]
    served = sorted(e for sh in shares for batch in epoch_ids(sh, 1) for e, _ in batch)
    assert served == split_energies(s, 0)


def batches(loader: ShardLoader, epoch: int, stop: int | None = None):
    """Every batch's energies and AEV rows, copied out."""
    out = []
    for i, b in enumerate(loader.epoch(epoch)):
        if stop is not None and i == stop:
            break
        out.append(
            (b.energy.numpy().copy(), {e: a.numpy().copy() for e, a in b.aev.items()})
        )
    return out


def test_streaming_buffers_reused_across_epochs_hold_the_right_rows(store):
    """Windows reuse two buffers from epoch to epoch, also after an epoch left
    early: every epoch equals what a fresh loader serves."""
    s = ShardStore.open(store)

    def loader():
        return ShardLoader(s, 0, 16, 200_000, np.zeros(4), shuffle=True, seed=1)

    reused = loader()
    assert reused.resident is None
    batches(reused, 1, stop=2)  # left early, as a run that hits --max-time is
    for epoch in (2, 3, 4):
        got, want = batches(reused, epoch), batches(loader(), epoch)
        assert len(got) == len(want)
        for (e1, a1), (e2, a2) in zip(got, want, strict=True):
            np.testing.assert_array_equal(e1, e2)
            assert a1.keys() == a2.keys()
            for k in a1:
                np.testing.assert_array_equal(a1[k], a2[k])


def test_a_released_loader_gives_its_memory_back_and_still_serves(store):
    s = ShardStore.open(store)
    for limit in (64 * MIB, 200_000):  # resident, streamed
        loader = ShardLoader(s, 0, 16, limit, np.zeros(4), shuffle=True, seed=2)
        before = batches(loader, 1)
        loader.release()
        assert loader.resident is None and loader.buffers == [None, None]
        after = batches(loader, 1)
        assert sorted(e for b, _ in before for e in b) == sorted(
            e for b, _ in after for e in b
        )
