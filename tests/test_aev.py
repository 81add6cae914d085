"""AEVs per element equal TorchANI's AEVComputer output bit for bit."""

from __future__ import annotations

import pytest
import torch

from aevpipe.aev import (
    _rows_by_copy,
    _rows_by_scatter,
    _scatter_widths,
    aev_parts,
    batch_conformations,
    build_aev_computer,
    compute_aevs,
    compute_element_rows,
)
from aevpipe.config import AEVParams

PARAMS = AEVParams.ani1x()
# C H H C O H H H H: element runs that are not contiguous in the atom order.
ORDER = [1, 0, 0, 1, 3, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def computer():
    return build_aev_computer(PARAMS, torch.device("cpu"))


@pytest.fixture(scope="module", params=["ani1x", "ani2x"])
def any_computer(request):
    params = getattr(AEVParams, request.param)()
    return build_aev_computer(params, torch.device("cpu")), len(params.elements)


def conformations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, len(ORDER), 3), generator=g) * 4.0


def test_parts_are_the_forward_halves(computer):
    species = torch.tensor([ORDER] * 7)
    coordinates = conformations(7)
    radial, angular = aev_parts(computer, species, coordinates)
    assert torch.equal(
        torch.cat([radial, angular], dim=-1), computer(species, coordinates)
    )


@pytest.mark.parametrize("batch_atoms", [9 * 5, 1 << 20])
def test_element_rows_are_the_forward_rows(computer, batch_atoms):
    n = 23
    species = torch.tensor([ORDER] * n, dtype=torch.int8)
    coordinates = conformations(n)
    rows = compute_element_rows(computer, species, coordinates, 4, batch_atoms)
    # Same batches through the plain forward: TorchANI's last bits depend on them.
    expected = compute_aevs(computer, species, coordinates, batch_atoms)
    for e in range(4):
        mask = species == e
        if not mask.any():
            assert rows[e] is None
            continue
        assert torch.equal(rows[e], expected[mask])


def test_element_rows_with_atom_order_varying_by_conformation(computer):
    n = 11
    g = torch.Generator().manual_seed(1)
    species = torch.stack(
        [torch.tensor(ORDER)[torch.randperm(len(ORDER), generator=g)] for _ in range(n)]
    ).to(torch.int8)
    coordinates = conformations(n, seed=2)
    rows = compute_element_rows(computer, species, coordinates, 4, 1 << 20)
    expected = computer(species.long(), coordinates)
    for e in range(4):
        mask = species == e
        if mask.any():
            assert torch.equal(rows[e], expected[mask])


@pytest.mark.parametrize("fixed_order", [True, False])
@pytest.mark.parametrize("way", ["scatter", "copy"])
def test_both_ways_give_the_forward_rows(any_computer, fixed_order, way):
    """ANI-1x and ANI-2x (whose angular terms do not tile its 1,008-value rows in
    32s: added in halves); several batches, one order or an order per conformation."""
    computer, n_elements = any_computer
    n, step = 13, 5
    g = torch.Generator().manual_seed(3)
    order = [torch.tensor(ORDER)] * n
    if not fixed_order:
        order = [o[torch.randperm(len(ORDER), generator=g)] for o in order]
    species = torch.stack(order).to(torch.int8)
    coordinates = conformations(n, seed=4)
    counts = [ORDER.count(e) for e in range(n_elements)]
    if way == "scatter":
        widths = _scatter_widths(computer)
        assert widths == ((16, 32) if n_elements == 4 else (16, 16))
        rows = _rows_by_scatter(computer, species, coordinates, counts, step, widths)
    else:
        rows = _rows_by_copy(computer, species, coordinates, counts, step)
    expected = compute_aevs(computer, species, coordinates, step * len(ORDER))
    for e in range(n_elements):
        mask = species == e
        assert (rows[e] is None) == (not mask.any())
        if mask.any():
            assert torch.equal(rows[e], expected[mask])


def test_composition_must_match(computer):
    species = torch.tensor([ORDER, [0] * len(ORDER)], dtype=torch.int8)
    with pytest.raises(ValueError, match="composition"):
        compute_element_rows(computer, species, conformations(2), 4)


def test_batches_follow_atoms_then_triples():
    assert batch_conformations(5) == 16384 // 5  # CH4: by atoms
    assert batch_conformations(1) == 16384
    assert batch_conformations(10) == 320_000 // (10 * 9 * 8 // 2)  # by triples
    assert batch_conformations(15) == 4096 // 15  # never fewer atoms than 4,096
    assert batch_conformations(26) == 4096 // 26
    assert batch_conformations(5000) == 1
    assert batch_conformations(9, batch_atoms=45) == 5
