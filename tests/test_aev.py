"""AEVs per element equal TorchANI's AEVComputer output: bit for bit where they are
TorchANI's own sums (scatter and copy), within 1e-5 where the dense path adds the
same terms in another order."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torchani

from aevpipe import ani_terms, dense_aev
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
    expected = compute_aevs(computer, species, coordinates, batch_atoms)
    for e in range(4):
        mask = species == e
        if not mask.any():
            assert rows[e] is None
            continue
        torch.testing.assert_close(rows[e], expected[mask], rtol=0, atol=1e-5)


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


@pytest.mark.parametrize(
    "way,fixed_order",
    [
        ("scatter", True),
        ("scatter", False),
        ("copy", True),
        ("copy", False),
        ("dense", True),
    ],
)
def test_every_way_gives_the_forward_rows(any_computer, fixed_order, way):
    """ANI-1x and ANI-2x (whose angular terms do not tile its 1,008-value rows in
    32s: added in halves); several batches, one order or an order per conformation.
    Scatter and copy make TorchANI's own sums; dense adds in another order."""
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
    elif way == "copy":
        rows = _rows_by_copy(computer, species, coordinates, counts, step)
    else:
        rows = dense_aev.element_rows(
            computer, species, coordinates, counts, step, _scatter_widths(computer)
        )
    expected = compute_aevs(computer, species, coordinates, step * len(ORDER))
    for e in range(n_elements):
        mask = species == e
        assert (rows[e] is None) == (not mask.any())
        if not mask.any():
            continue
        if way == "dense":
            torch.testing.assert_close(rows[e], expected[mask], rtol=0, atol=1e-5)
        else:
            assert torch.equal(rows[e], expected[mask])


@pytest.mark.parametrize("n_atoms", [1, 2, 3, 6, 14, 26, dense_aev.MAX_ATOMS])
@pytest.mark.parametrize("spread", [0.3, 1.0, 3.0])
def test_dense_rows_at_every_size_and_spread(any_computer, n_atoms, spread):
    """From one atom up to the largest the dense path takes; atoms at about bond
    distances (0.3), in loose clusters, and mostly beyond both cutoffs (3.0), where
    whole triples drop out of a batch and pairs beyond a cutoff must add nothing."""
    computer, n_elements = any_computer
    g = torch.Generator().manual_seed(n_atoms)
    order = torch.randint(0, n_elements, (n_atoms,), generator=g)
    n = 17
    species = order.expand(n, -1).to(torch.int8)
    side = spread * 4.0 * n_atoms ** (1 / 3)
    coordinates = torch.rand((n, n_atoms, 3), generator=g, dtype=torch.float64) * side
    counts = [int((order == e).sum()) for e in range(n_elements)]
    widths = _scatter_widths(computer)
    rows = dense_aev.element_rows(computer, species, coordinates, counts, 5, widths)
    expected = computer(species.long(), coordinates.float())
    for e in range(n_elements):
        mask = species == e
        assert (rows[e] is None) == (not mask.any())
        if mask.any():
            torch.testing.assert_close(rows[e], expected[mask], rtol=0, atol=1e-5)


def test_dense_path_takes_one_order_up_to_its_size(computer, monkeypatch):
    taken = []
    real = dense_aev.element_rows
    monkeypatch.setattr(
        dense_aev,
        "element_rows",
        lambda *args: taken.append(args[1].shape[1]) or real(*args),
    )
    g = torch.Generator().manual_seed(5)
    for n_atoms in (5, dense_aev.MAX_ATOMS, dense_aev.MAX_ATOMS + 1):
        order = torch.tensor([1] + [0] * (n_atoms - 1), dtype=torch.int8)
        species = torch.stack([order, order.flip(0)])
        coordinates = torch.rand((2, n_atoms, 3), generator=g) * 6.0
        compute_element_rows(computer, species[:1], coordinates[:1], 4)
        compute_element_rows(computer, species, coordinates, 4)  # two orders
    assert taken == [5, dense_aev.MAX_ATOMS]


def test_dense_path_needs_terms_that_vanish_at_the_cutoff():
    assert dense_aev.usable(build_aev_computer(PARAMS, torch.device("cpu")))
    smooth = dataclasses.replace(PARAMS, cutoff_fn="smooth")
    assert dense_aev.usable(build_aev_computer(smooth, torch.device("cpu")))
    flat = torchani.AEVComputer.like_1x(cutoff_fn="dummy")
    assert not dense_aev.usable(flat)


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


def test_conformations_of_differing_composition_are_refused(computer):
    species = torch.tensor([ORDER, ORDER[::-1], ORDER])  # one atom order reversed
    n_elements = len(PARAMS.elements)
    compute_element_rows(computer, species, conformations(3), n_elements)
    species[1, 0] = 2  # a hydrogen of the second conformation made nitrogen
    with pytest.raises(ValueError, match="differ in composition"):
        compute_element_rows(computer, species, conformations(3), n_elements)


def _sides(n: int, cutoff: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (2, n) up to `cutoff` and the matching side vectors (2, n, 3)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(
        torch.randn((2, n, 3), generator=g), dim=-1
    )
    distances = 0.5 + torch.rand((2, n), generator=g) * (cutoff - 0.5)
    return distances, directions * distances.unsqueeze(-1)


def test_standard_terms_are_torchanis_terms(any_computer):
    """Every radial and angular feature of TorchANI's modules, feature-major for
    the angular ones, to float32 rounding; at the cutoffs exactly 0."""
    computer, _ = any_computer
    terms = ani_terms.terms_of(computer)
    assert isinstance(terms, ani_terms.StandardTerms)
    rc, ac = computer.radial.cutoff, computer.angular.cutoff
    d = torch.linspace(0.3, rc, 4001)
    torch.testing.assert_close(
        terms.radial(d), computer.radial(d), rtol=1e-5, atol=1e-7
    )
    distances, vectors = _sides(5000, ac, seed=6)
    distances[1, :10] = ac
    got = terms.angular(distances, vectors)
    assert got.shape == (computer.angular.num_feats, 5000)
    expected = computer.angular(distances, vectors).t()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert (got[:, :10] == 0).all() and (terms.radial(torch.tensor([rc])) == 0).all()


def test_standard_terms_skip_the_slow_subnormal_exponentials(computer):
    """Radial terms far from a shift are below float32's normal range in TorchANI
    (0 or subnormal, where torch's CPU exp is slow). Here each exponential stays
    normal, and is set to 0 up to 3.3e-38: within 1e-38 of TorchANI's terms (angular
    ones within 1e-37), exactly 0 where TorchANI's are, never negative."""
    terms = ani_terms.terms_of(computer)
    d = torch.linspace(3.0, computer.radial.cutoff - 0.01, 500)
    theirs = computer.radial(d)
    assert (theirs < 1.18e-38).any() and (theirs == 0).any()
    ours = terms.radial(d)
    assert (ours >= 0).all() and (ours[theirs == 0] == 0).all()
    assert (ours - theirs).abs().max() < 1e-38
    distances, vectors = _sides(2000, computer.angular.cutoff, seed=7)
    ours = terms.angular(distances, vectors)
    theirs = computer.angular(distances, vectors).t()
    tiny = theirs < 1e-30
    assert tiny.any() and (theirs == 0).any()
    assert (ours >= 0).all() and (ours[theirs == 0] == 0).all()
    torch.testing.assert_close(ours[tiny], theirs[tiny], rtol=1e-5, atol=1e-37)


def test_powers_of_two_by_squaring_are_as_close_as_pow():
    """A zeta of 2^k is k squarings in float64, rounded once to float32: within
    float32's rounding of the exact power, as torch's float32 pow is. Other zetas
    go through pow. Bases from where the terms clamp them (results stay normal)."""
    assert [ani_terms.squarings_of(z) for z in (2.0, 32.0, 1024.0)] == [1, 5, 10]
    for zeta in (1.0, 14.1, 24.0, 0.0, -2.0):
        assert ani_terms.squarings_of(zeta) is None
    g = torch.Generator().manual_seed(9)
    terms = ani_terms.StandardTerms.__new__(ani_terms.StandardTerms)
    for zeta in (32.0, 14.1):
        terms.zeta, terms.squarings = zeta, ani_terms.squarings_of(zeta)
        low = math.exp(ani_terms.LOWEST_EXPONENT / zeta)
        base = low + torch.rand(100_000, generator=g) * (1 - low)
        got = terms._power(base.clone())
        if terms.squarings is None:
            assert torch.equal(got, base.clone().pow_(zeta))
            continue
        assert got.dtype == torch.float32
        exact = base.double() ** zeta
        for value in (got, base.clone().pow_(zeta)):
            assert ((value.double() - exact) / exact).abs().max() < 1.2e-7


def test_other_term_classes_go_through_their_modules(computer):
    other = build_aev_computer(PARAMS, torch.device("cpu"))

    class Angular(type(other.angular)):
        pass

    other.angular.__class__ = Angular
    terms = ani_terms.terms_of(other)
    assert isinstance(terms, ani_terms.ModuleTerms)
    distances, vectors = _sides(100, other.angular.cutoff, seed=8)
    assert torch.equal(
        terms.angular(distances, vectors), other.angular(distances, vectors).t()
    )
    species = torch.tensor([ORDER] * 4, dtype=torch.int8)
    coordinates = conformations(4)
    counts = [ORDER.count(e) for e in range(4)]
    rows = dense_aev.element_rows(
        other, species, coordinates, counts, 3, _scatter_widths(other)
    )
    expected = computer(species.long(), coordinates)
    for e in range(4):
        mask = species == e
        if mask.any():
            torch.testing.assert_close(rows[e], expected[mask], rtol=0, atol=1e-5)
