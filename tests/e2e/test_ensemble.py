"""Ensembles: K members trained together, each at its own best epoch; their mean
and spread through metrics, predict, export, ASE and the report."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aevpipe import runs
from aevpipe.ase import Calculator
from aevpipe.cli import cli
from aevpipe.config import load_train_settings
from aevpipe.errors import SettingsError
from aevpipe.inference import Potential
from aevpipe.stages.report import build_report, write_report
from aevpipe.stages.train import train
from tests.e2e.test_ase import methane
from tests.e2e.test_predict_export import run_alone

SMALL = {"hidden": {e: (32, 16) for e in "HCNO"}, "batch_size": 32}


def quiet(*_):
    pass


@pytest.fixture
def ensemble_run(store, tmp_path):
    run = tmp_path / "ens"
    settings = load_train_settings(**SMALL, max_epochs=6, ensemble=3)
    train(store, run, settings, progress=False, echo=quiet)
    return run


def test_members_train_together_and_each_keeps_its_best(ensemble_run, store):
    metrics = runs.read_metrics(ensemble_run)
    history = runs.read_history(ensemble_run)
    scores = np.array([h["member_valid_rmse_kcal_mol"] for h in history])
    assert scores.shape == (6, 3)
    # Members differ by initialisation, so their curves differ.
    assert len({round(s, 6) for s in scores[-1]}) == 3
    best_epochs = metrics["run"]["member_best_epochs"]
    assert best_epochs == [int(np.argmin(scores[:, k])) + 1 for k in range(3)]
    assert metrics["run"]["best_epoch"] == max(best_epochs)
    # best.pt holds each member at its own best epoch: its valid RMSE is the one
    # recorded then.
    for k, rmse in enumerate(metrics["members"]["valid"]):
        assert rmse["rmse_kcal_mol"] == pytest.approx(scores[:, k].min(), rel=1e-6)
    # The mean of members is its own model, scored on the same split.
    assert metrics["valid"]["n"] == metrics["members"]["valid"][0]["n"]
    potential = Potential(ensemble_run, torch.device("cpu"))
    assert potential.members == 3


def test_ensemble_of_one_member_is_a_single_model(store, tmp_path):
    run = tmp_path / "one"
    train(store, run, load_train_settings(**SMALL, max_epochs=2), echo=quiet)
    metrics = runs.read_metrics(run)
    assert "members" not in metrics
    assert "member_valid_rmse_kcal_mol" not in runs.read_history(run)[0]


def test_folds_hold_out_each_members_own_fold(store, tmp_path):
    from aevpipe.loader import ShardLoader
    from aevpipe.objective import fold_of
    from aevpipe.store import ShardStore

    s = ShardStore.open(store)
    keys = np.concatenate(
        [
            b.key.numpy()
            for b in ShardLoader(s, 0, 64, 1 << 30, np.zeros(4), False).epoch(0)
        ]
    )
    folds = fold_of(keys, 4)
    assert sorted(set(folds)) == [0, 1, 2, 3]
    assert np.bincount(folds).min() > len(keys) / 4 * 0.6  # about equal
    run = tmp_path / "folds"
    settings = load_train_settings(
        **SMALL, max_epochs=3, ensemble=2, ensemble_folds=True
    )
    train(store, run, settings, progress=False, echo=quiet)
    history = runs.read_history(run)
    assert len(history[-1]["member_valid_rmse_kcal_mol"]) == 2
    with pytest.raises(SettingsError, match="folds need an ensemble"):
        load_train_settings(ensemble_folds=True)


def test_a_killed_ensemble_resumes_to_the_uninterrupted_run(store, tmp_path):
    settings = load_train_settings(**SMALL, max_epochs=5, ensemble=2)
    full = tmp_path / "full"
    train(store, full, settings, progress=False, echo=quiet)

    def kill(epoch, batch):
        if epoch == 4 and batch == 2:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        train(store, part, settings, progress=False, echo=quiet, on_batch=kill)
    train(store, part, settings, resume=True, progress=False, echo=quiet)
    a, b = runs.read_metrics(full), runs.read_metrics(part)
    for split in ("train", "valid", "test"):  # to rounding: see test_train
        for x, y in zip(a["members"][split], b["members"][split], strict=True):
            assert x == pytest.approx(y, rel=1e-5)
    assert a["run"]["member_best_epochs"] == b["run"]["member_best_epochs"]


def test_predict_export_and_ase_give_the_mean_and_the_spread(
    ensemble_run, release_file, tmp_path
):
    runner = CliRunner()
    out = tmp_path / "p.csv"
    result = runner.invoke(
        cli, ["predict", str(ensemble_run), str(release_file), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header.index("energy_std_hartree") == header.index("energy_pred_hartree") + 1
    spreads = np.array([float(r["energy_std_hartree"]) for r in rows])
    assert (spreads > 0).all()
    # The members' mean and unbiased spread (float32 networks: batches of other
    # sizes round differently, so to 1e-7 Hartree).
    potential = Potential(ensemble_run, torch.device("cpu"))
    from aevpipe.ani1 import ANI1File
    from aevpipe.units import species_indices

    group = "/gdb11_s01/gdb11_s01-3"
    with ANI1File(release_file) as f:
        block = f.read(group, 0, 4)
    species = species_indices(block.symbols, potential.elements, "f", group, range(4))
    members = potential.energies(species, block.coordinates)
    mine = [r for r in rows if r["group"] == group][:4]
    np.testing.assert_allclose(
        [float(r["energy_pred_hartree"]) for r in mine], members.mean(0), atol=1e-7
    )
    np.testing.assert_allclose(
        [float(r["energy_std_hartree"]) for r in mine],
        members.std(0, ddof=1),
        atol=1e-7,
    )

    # TorchScript, loaded without aevpipe or TorchANI: the mean, and the members.
    script = tmp_path / "model.pt"
    assert (
        runner.invoke(
            cli, ["export", str(ensemble_run), "--out", str(script)]
        ).exit_code
        == 0
    )
    from aevpipe.elements import ATOMIC_NUMBER

    numbers = [[ATOMIC_NUMBER[s] for s in row] for row in block.symbols]
    energies, _ = run_alone(script, numbers, block.coordinates)
    np.testing.assert_allclose(energies, members.mean(0), atol=2e-5)
    model = torch.jit.load(str(script))
    xyz = torch.from_numpy(block.coordinates)
    values = model((torch.tensor(numbers), xyz), None, None, 0, False, True).energies
    np.testing.assert_allclose(values.detach().numpy(), members, atol=2e-5)

    # ASE: the mean's energy and forces, the spread in eV.
    atoms = methane()
    atoms.calc = Calculator(ensemble_run)
    energy = atoms.get_potential_energy()
    spread = atoms.calc.get_property("energy_std", atoms)
    assert spread > 0 and np.isfinite(energy)
    same = methane()
    same.calc = Calculator(script)
    assert same.get_potential_energy() == pytest.approx(energy, abs=1e-6)
    assert same.calc.get_property("energy_std", same) == pytest.approx(spread, abs=1e-6)


def test_the_report_ranks_errors_by_spread(ensemble_run, tmp_path):
    report = build_report(ensemble_run, "cpu")
    e = report["ensemble"]
    metrics = runs.read_metrics(ensemble_run)
    assert e["members"] == 3
    for split in ("train", "valid", "test"):
        expected = [m["rmse_kcal_mol"] for m in metrics["members"][split]]
        assert e["member_rmse_kcal_mol"][split] == pytest.approx(expected, rel=1e-9)
    bins = e["test_spread_bins"]
    assert sum(b["n"] for b in bins) == report["splits"]["test"]["n"]
    assert -1 <= e["test_rank_correlation"] <= 1
    spreads = [r["spread_kcal_mol"] for r in e["largest_spread"]]
    assert spreads == sorted(spreads, reverse=True) and len(spreads) == 4
    written = write_report(report, tmp_path / "rep")
    assert tmp_path / "rep" / "spread_vs_error.png" in written
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Ensemble of 3 members" in text and "| member 2 |" in text


def test_cli_ensemble_flags(store, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "train",
            "--shards",
            str(store),
            "--out",
            str(tmp_path / "r"),
            "--max-epochs",
            "1",
            "--ensemble-folds",
            "--no-progress",
        ],
    )
    assert result.exit_code != 0 and "ensemble of 2 or more" in result.output
    assert "Traceback" not in result.output
