"""Metrics from sums and counts, self energies by least squares, the model's sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aevpipe import keys
from aevpipe.keys import HARTREE_TO_KCALMOL
from aevpipe.metrics import ErrorSums
from aevpipe.model import ElementNetworks
from aevpipe.sae import SelfEnergies, fit_self_energies, reference_energies, solve
from aevpipe.store import ShardStore


def test_error_sums_are_not_averages_of_averages():
    rng = np.random.default_rng(0)
    pred, ref = rng.normal(size=1000), rng.normal(size=1000)
    sums = ErrorSums()
    for lo, hi in [(0, 3), (3, 900), (900, 1000)]:  # very uneven batches
        sums.add(torch.tensor(pred[lo:hi]), torch.tensor(ref[lo:hi]))
    err = (pred - ref) * HARTREE_TO_KCALMOL
    result = sums.result()
    assert result["n"] == 1000
    np.testing.assert_allclose(result["rmse_kcal_mol"], np.sqrt((err**2).mean()))
    np.testing.assert_allclose(result["mae_kcal_mol"], np.abs(err).mean())


def test_empty_error_sums():
    assert ErrorSums().result()["n"] == 0


def test_self_energies_are_the_least_squares_fit_on_train(store):
    s = ShardStore.open(store)
    counts, energies = [], []
    for layout in s.layouts:
        train = s.array(layout.n_atoms, keys.SPLIT)[:] == 0
        species = s.array(layout.n_atoms, keys.SPECIES)[:][train]
        counts.append(np.stack([(species == e).sum(1) for e in range(4)], 1))
        energies.append(s.array(layout.n_atoms, keys.ENERGY)[:][train])
    x, y = np.concatenate(counts).astype(float), np.concatenate(energies)
    expected = np.linalg.lstsq(x, y, rcond=None)[0]
    fit = fit_self_energies(s)
    assert fit.determined and fit.absent == ()
    np.testing.assert_allclose(fit.values, expected, rtol=1e-8)
    assert not fit.outside(x).any()


ELEMENTS = ("H", "C", "N", "O")
# Atom counts (H, C, N, O) of the real s01's molecules: CH4, NH3, H2O.
S01 = np.array([[4, 1, 0, 0], [3, 0, 1, 0], [2, 0, 0, 1]], float)


def normal_equations(x, y):
    return x.T @ x, x.T @ y


def test_undetermined_self_energies_fit_the_data_and_take_the_rest_from_the_reference():
    rng = np.random.default_rng(0)
    x = S01[rng.integers(0, 3, 300)]
    true = np.array([-0.6, -38.08, -54.71, -75.19])
    y = x @ true + rng.normal(0, 1e-3, len(x))
    fit = solve(*normal_equations(x, y), ELEMENTS)
    assert not fit.determined and len(fit.basis) == 3 and fit.absent == ()
    # Every training composition gets the least-squares energy ...
    best = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(x @ fit.values, x @ best, atol=1e-9)
    # ... and the direction the data leave free is the reference's.
    free = np.array([1.0, -4.0, -3.0, -2.0]) / np.sqrt(30)
    reference = reference_energies(ELEMENTS)
    assert np.isclose(free @ fit.values, free @ reference, atol=1e-9)
    # Ethane (C2H6) is outside what was fitted; methane twice over is not.
    assert fit.outside(
        np.array([[6, 2, 0, 0], [8, 2, 0, 0], [4, 1, 0, 0]])
    ).tolist() == [
        True,
        False,
        False,
    ]
    assert "determine 3 of 4" in fit.summary()


def test_an_element_absent_from_training_is_named_and_flagged():
    x = S01[[0, 1, 0, 1]]  # no O
    y = x @ np.array([-0.6, -38.08, -54.71, -75.19])
    fit = solve(*normal_equations(x, y), ELEMENTS)
    assert fit.absent == ("O",)
    assert fit.values[3] == reference_energies(ELEMENTS)[3]
    assert fit.outside(S01[2:]).all()
    assert "absent from training: O" in fit.summary()


def test_self_energies_survive_the_round_trip_through_a_payload():
    x = S01[[0, 1, 2, 0]]
    fit = solve(*normal_equations(x, x @ np.arange(4.0)), ELEMENTS)
    back = SelfEnergies.from_payload(
        {"elements": list(ELEMENTS), "self_energy_fit": fit.to_dict()}
    )
    np.testing.assert_array_equal(back.values, fit.values)
    np.testing.assert_array_equal(back.basis, fit.basis)
    assert back.method == fit.method
    # A model saved before the fit was recorded: nothing is flagged.
    old = SelfEnergies.from_payload(
        {"elements": list(ELEMENTS), "self_energies": [0.0] * 4}
    )
    assert old.determined and not old.outside(np.eye(4)).any()


def test_model_sums_atomic_energies():
    torch.manual_seed(0)
    model = ElementNetworks(("H", "C"), 8, {"H": (4,), "C": (5, 3)})
    aev = {"H": torch.randn(5, 8), "C": torch.randn(2, 8)}
    conf = {"H": torch.tensor([0, 0, 1, 1, 1]), "C": torch.tensor([0, 1])}
    out = model(aev, conf, 2)
    h, c = model.nets["H"](aev["H"]).squeeze(-1), model.nets["C"](aev["C"]).squeeze(-1)
    expected = torch.stack([h[:2].sum() + c[0], h[2:].sum() + c[1]])
    torch.testing.assert_close(out, expected)


def test_an_ensemble_computes_each_member_as_a_model_of_its_own():
    from aevpipe.model import ElementEnsemble

    torch.manual_seed(0)
    ensemble = ElementEnsemble(("H", "C"), 8, {"H": (4,), "C": (5, 3)}, members=3)
    aev = {"H": torch.randn(7, 8), "C": torch.randn(3, 8)}
    conf = {"H": torch.tensor([0, 0, 1, 1, 2, 2, 2]), "C": torch.tensor([0, 1, 2])}
    out = ensemble(aev, conf, 3)
    assert out.shape == (3, 3)
    members = [ensemble.member(k) for k in range(3)]
    for k, member in enumerate(members):
        torch.testing.assert_close(member(aev, conf, 3), out[k])
    # Members differ; rebuilt from its members, in another order, it is the same.
    assert not torch.allclose(out[0], out[1])
    again = ElementEnsemble.of_members([members[2], members[0]])
    torch.testing.assert_close(again(aev, conf, 3), out[[2, 0]])


def test_the_loss_is_each_members_own_on_its_own_conformations():
    from aevpipe.objective import fold_of, loss_fn

    predicted = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target, atoms = torch.zeros(3), torch.tensor([1.0, 4.0, 1.0])
    per = torch.tensor([[1.0, 2.0, 9.0], [0.0, 0.0, 0.0]])  # squared / sqrt(atoms)
    torch.testing.assert_close(loss_fn(predicted, target, atoms), per.mean(1).sum())
    mask = torch.tensor([[True, False, True], [True, True, True]])
    torch.testing.assert_close(
        loss_fn(predicted, target, atoms, mask), torch.tensor(5.0)
    )
    keys = np.arange(10_000, dtype=np.int64) + (np.int64(7) << np.int64(32))
    folds = fold_of(keys, 5)
    assert (fold_of(keys, 5) == folds).all()  # the same every time
    assert np.bincount(folds, minlength=5).min() > 1800  # about 2,000 each


def test_spread_statistics():
    from aevpipe.uncertainty import rank_correlation, spread, spread_bins

    energies = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]])
    np.testing.assert_allclose(spread(energies), [np.sqrt(2), 0, 0])
    x = np.arange(100.0)
    assert rank_correlation(x, x**3) == pytest.approx(1.0)
    assert rank_correlation(x, -x) == pytest.approx(-1.0)
    bins = spread_bins(x, 2 * x, bins=4)
    assert [b["n"] for b in bins] == [25] * 4
    assert bins[0]["spread_from"] == 0 and bins[-1]["spread_to"] == 99
    assert bins[1]["mae"] == pytest.approx(2 * np.mean(np.arange(25, 50)))
