"""Metrics from sums and counts, self energies by least squares, the model's sum."""

from __future__ import annotations

import numpy as np
import torch

from aevpipe import keys
from aevpipe.keys import HARTREE_TO_KCALMOL
from aevpipe.metrics import ErrorSums
from aevpipe.model import ElementNetworks
from aevpipe.sae import fit_self_energies
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
    np.testing.assert_allclose(fit_self_energies(s), expected, rtol=1e-8)


def test_model_sums_atomic_energies():
    torch.manual_seed(0)
    model = ElementNetworks(("H", "C"), 8, {"H": (4,), "C": (5, 3)})
    aev = {"H": torch.randn(5, 8), "C": torch.randn(2, 8)}
    conf = {"H": torch.tensor([0, 0, 1, 1, 1]), "C": torch.tensor([0, 1])}
    out = model(aev, conf, 2)
    h, c = model.nets["H"](aev["H"]).squeeze(-1), model.nets["C"](aev["C"]).squeeze(-1)
    expected = torch.stack([h[:2].sum() + c[0], h[2:].sum() + c[1]])
    torch.testing.assert_close(out, expected)
