"""AEVs per element are TorchANI's AEVComputer forward, gathered into rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aevpipe.aev import batch_conformations, build_aev_computer, element_rows
from aevpipe.config import AEVParams

PARAMS = AEVParams.ani1x()
# C H H C O H H H H: element runs that are not contiguous in the atom order.
ORDER = [1, 0, 0, 1, 3, 0, 0, 0, 0]


@pytest.fixture(scope="module", params=["ani1x", "ani2x", "ani1x-smooth"])
def any_computer(request):
    name, _, cutoff = request.param.partition("-")
    params = getattr(AEVParams, name)()
    if cutoff:
        params = dataclasses.replace(params, cutoff_fn=cutoff)
    return build_aev_computer(params, torch.device("cpu")), len(params.elements)


def conformations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, len(ORDER), 3), generator=g) * 4.0


@pytest.mark.parametrize("fixed_order", [True, False])
@pytest.mark.parametrize("batch_atoms", [9, 90, 1 << 20])
def test_element_rows_are_the_forward_rows(any_computer, fixed_order, batch_atoms):
    """Rows in (conformation, atom) order, each the forward's AEV of that atom (to
    float32 rounding, which differs with the batch), and each row's conformation;
    atom orders the same in every conformation or not, batches of any size."""
    computer, n_elements = any_computer
    n = 23
    species = torch.tensor([ORDER] * n)
    if not fixed_order:
        g = torch.Generator().manual_seed(1)
        species = torch.stack(
            [s[torch.randperm(len(ORDER), generator=g)] for s in species]
        )
    coordinates = conformations(n)
    rows = element_rows(computer, species, coordinates, n_elements, batch_atoms)
    with torch.no_grad():
        expected = computer(species, coordinates)
    for e, got in enumerate(rows):
        mask = species == e
        if not mask.any():
            assert got is None
            continue
        aev, conformation = got
        np.testing.assert_allclose(aev, expected[mask], rtol=1e-6, atol=1e-12)
        assert conformation.tolist() == mask.nonzero()[:, 0].tolist()


def test_the_same_batch_gives_the_same_bits(any_computer):
    """Featurize and predict call `element_rows`: the same conformations in the
    same batches give the same bits, run after run."""
    computer, n_elements = any_computer
    species, coordinates = torch.tensor([ORDER] * 40), conformations(40, seed=3)
    first = element_rows(computer, species, coordinates, n_elements)
    second = element_rows(computer, species, coordinates, n_elements)
    for a, b in zip(first, second, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_subnormal_terms_are_flushed_to_zero(any_computer):
    """Far atoms' exponentials fall below float32's normal range: they come out
    as 0, not as subnormal numbers that are slow to compute with (on the calling
    thread; torch's own threads take the setting when they start)."""
    computer, n_elements = any_computer
    species = torch.tensor([ORDER] * 50)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in featurize's unit threads
    try:
        rows = element_rows(computer, species, conformations(50) * 1.3, n_elements)
    finally:
        torch.set_num_threads(threads)
    values = torch.cat([r[0].flatten() for r in rows if r is not None])
    tiny = (values != 0) & (values.abs() < torch.finfo(torch.float32).tiny)
    assert not tiny.any()


def test_batches_hold_about_batch_atoms():
    assert batch_conformations(5) == 4096 // 5
    assert batch_conformations(1) == 4096
    assert batch_conformations(5000) == 1
    assert batch_conformations(9, batch_atoms=45) == 5
