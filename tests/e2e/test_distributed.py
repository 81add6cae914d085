"""DistributedDataParallel training: two gloo processes on the CPU."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aevpipe import runs
from aevpipe.cli import cli
from aevpipe.config import load_train_settings
from aevpipe.distributed import spawn
from aevpipe.stages.train import train

SMALL = {"hidden": {e: (32, 16) for e in "HCNO"}, "batch_size": 16, "max_epochs": 15}


def test_two_processes_reach_the_same_band_as_one(store, tmp_path):
    settings = load_train_settings(**SMALL)
    one = train(
        store, tmp_path / "one", settings, progress=False, echo=lambda *_: None
    ).metrics
    spawn(2, train, store, tmp_path / "two", settings, False, False, False)
    two = json.loads((tmp_path / "two" / runs.METRICS).read_text())
    assert two["run"]["processes"] == 2
    for split in ("train", "valid", "test"):
        assert two[split]["n"] == one[split]["n"]  # shares reduced as sums
    history = runs.read_history(tmp_path / "two")
    assert [h["epoch"] for h in history] == list(range(1, 16))  # rank 0 alone wrote
    assert history[-1]["valid_rmse_kcal_mol"] < history[0]["valid_rmse_kcal_mol"] / 3
    ratio = two["valid"]["rmse_kcal_mol"] / one["valid"]["rmse_kcal_mol"]
    assert 0.4 < ratio < 2.5, (one["valid"], two["valid"])


def test_an_ensemble_with_folds_trains_under_two_processes(store, tmp_path):
    settings = load_train_settings(
        **{**SMALL, "max_epochs": 3}, ensemble=2, ensemble_folds=True
    )
    spawn(2, train, store, tmp_path / "two", settings, False, False, False)
    metrics = json.loads((tmp_path / "two" / runs.METRICS).read_text())
    for split in ("train", "valid", "test"):
        members = metrics["members"][split]
        assert [m["n"] for m in members] == [metrics[split]["n"]] * 2
    history = runs.read_history(tmp_path / "two")
    assert all(len(h["member_valid_rmse_kcal_mol"]) == 2 for h in history)


def test_cli_nproc_error_is_one_line(store, tmp_path):
    run = tmp_path / "run"
    train(
        store,
        run,
        load_train_settings(**{**SMALL, "max_epochs": 1}),
        progress=False,
        echo=lambda *_: None,
    )
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--shards",
            str(store),
            "--out",
            str(run),
            "--nproc",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "already holds a run" in result.output
