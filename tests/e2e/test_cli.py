"""The command line as a user meets it: through click's CliRunner."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aevpipe import store
from aevpipe.cli import cli
from aevpipe.store import ShardStore


@pytest.fixture
def runner():
    return CliRunner()


def test_featurize_then_rerun(runner, release_file, tmp_path):
    out = tmp_path / "aev"
    args = [
        "featurize",
        str(release_file),
        "--out",
        str(out),
        "--no-progress",
        "--block-size",
        "50",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "conformations 345" in result.output
    assert "compression ratio" in result.output
    assert store.is_complete(out)
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "complete already" in again.output


def test_featurize_aev_flags(runner, release_file, tmp_path):
    out = tmp_path / "aev"
    result = runner.invoke(
        cli,
        [
            "featurize",
            str(release_file),
            "--out",
            str(out),
            "--no-progress",
            "--Rcr",
            "5.0",
            "--ShfZ",
            "0.5,1.5",
        ],
    )
    assert result.exit_code == 0, result.output
    store = ShardStore.open(out)
    assert store.aev.Rcr == 5.0 and store.aev.aev_length == 64 + 4 * 2 * 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.h5"], "missing.h5: no such file"),
        (["{release}", "--split", "0.5,0.6,0.1"], "sum to 1"),
        (["{release}", "--elements", "H,C,N"], "not covered by the AEV"),
        (["{release}", "--Rca", "9"], "Rca < Rcr"),
        (["{release}", "--device", "tpu"], "unknown device"),
    ],
)
def test_featurize_bad_input_is_one_clean_line(
    runner, release_file, tmp_path, args, message
):
    out = tmp_path / "aev"
    args = [a.format(release=release_file) for a in args]
    result = runner.invoke(
        cli, ["featurize", *args, "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not store.is_complete(out)


def test_not_hdf5(runner, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    result = runner.invoke(cli, ["featurize", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not an HDF5 file" in result.output


def test_an_out_that_cannot_be_made_is_one_clean_line(runner, release_file, tmp_path):
    """A store folder that cannot be made is one line naming it."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "aev"
    result = runner.invoke(
        cli, ["featurize", str(release_file), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 2
    assert f"{out}: cannot create the store" in result.output
    assert "Not a directory" in result.output
    assert "Traceback" not in result.output


def test_ctrl_c_in_featurize_says_how_to_go_on(
    runner, release_file, tmp_path, monkeypatch
):
    import aevpipe.stages.featurize as stage

    real_run_unit, calls = stage.run_unit, []

    def interrupted(task):
        if len(calls) >= 2:  # ">=": threads may pass the check together
            raise KeyboardInterrupt
        calls.append(task.unit.uid)
        return real_run_unit(task)

    out = tmp_path / "aev"
    args = ["featurize", str(release_file), "--out", str(out), "--no-progress"]
    args += ["--block-size", "50"]
    monkeypatch.setattr(stage, "run_unit", interrupted)
    result = runner.invoke(cli, args)
    assert result.exit_code == 130
    assert result.output.startswith("aevpipe: interrupted: the units finished so far")
    assert f"kept in {out}, which readers refuse" in result.output
    assert "run the same command to complete it" in result.output
    assert "Aborted" not in result.output and "Traceback" not in result.output
    assert not store.is_complete(out)
    monkeypatch.setattr(stage, "run_unit", real_run_unit)
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "resumed" in again.output
    assert "already done 2" in again.output


def test_ctrl_c_in_train_says_how_to_go_on(runner, store, tmp_path, monkeypatch):
    from aevpipe import runs
    from aevpipe.trainer import Trainer

    real_epoch = Trainer.train_epoch

    def interrupted(self, epoch, t0):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch, t0)

    run = tmp_path / "run"
    args = ["train", "--shards", str(store), "--out", str(run), "--no-progress"]
    args += ["--max-epochs", "2", "--batch-size", "32"]
    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    result = runner.invoke(cli, args)
    assert result.exit_code == 130
    assert f"aevpipe: interrupted: {run} keeps" in result.output
    assert "with --resume to continue" in result.output
    assert "Aborted" not in result.output and "Traceback" not in result.output
    assert len(runs.read_history(run)) == 1
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    again = runner.invoke(cli, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert [h["epoch"] for h in runs.read_history(run)] == [1, 2]


def test_a_full_disk_is_one_clean_line(
    runner, release_file, tmp_path, monkeypatch, fill_disk_after
):
    out = tmp_path / "aev"
    args = ["featurize", str(release_file), "--out", str(out), "--no-progress"]
    fill_disk_after(10)
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.startswith(f"aevpipe: error: {out}: cannot write n0")
    assert "(No space left on device); the units finished so far are kept" in (
        result.output
    )
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    monkeypatch.undo()
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "resumed" in again.output


def test_a_full_disk_in_train_is_one_clean_line_and_resume_goes_on(
    runner, store, tmp_path, monkeypatch
):
    from aevpipe import runs

    real_write_bytes, checkpoints = Path.write_bytes, []

    def filling(self, data):
        if self.name == runs.CHECKPOINT + ".tmp":
            checkpoints.append(self)
            if len(checkpoints) == 2:  # the second checkpoint: the disk is full
                real_write_bytes(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_bytes(self, data)

    run = tmp_path / "run"
    args = ["train", "--shards", str(store), "--out", str(run), "--no-progress"]
    args += ["--max-epochs", "3", "--batch-size", "32"]
    monkeypatch.setattr(Path, "write_bytes", filling)
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert (
        f"aevpipe: error: {run / runs.CHECKPOINT}: No space left on device; {run} "
        "keeps its last checkpoint: fix that and run the same command with --resume"
    ) in result.output
    assert "Traceback" not in result.output
    assert not list(run.glob("*.tmp"))  # the half-written checkpoint is gone
    monkeypatch.undo()
    again = runner.invoke(cli, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert [h["epoch"] for h in runs.read_history(run)] == [1, 2, 3]


def test_python_m_and_help():
    done = subprocess.run(
        [sys.executable, "-m", "aevpipe", "featurize", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Example:" in done.stdout


def test_demo_end_to_end(runner, tmp_path):
    pytest.importorskip("rdkit")
    result = runner.invoke(
        cli, ["demo", "--out", str(tmp_path), "--max-time", "3", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "test  RMSE" in result.output
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "Synthetic data" in report
    assert (tmp_path / "run" / "report" / "parity.png").is_file()


def test_a_second_writer_on_one_folder_is_refused(
    runner, store, release_file, tmp_path
):
    """While a featurize (or a train) writes a folder, another one on it is one
    line, and the folder is left to the first."""
    from aevpipe.folders import only_writer

    out, run = tmp_path / "held-aev", tmp_path / "held-run"
    with only_writer(out, "featurize", "store"):
        args = ["featurize", str(release_file), "--out", str(out), "--no-progress"]
        result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert f"{out}: another featurize is writing here" in result.output
    assert not any(out.iterdir())
    with only_writer(run, "train", "run directory"):
        args = ["train", "--shards", str(store), "--out", str(run), "--no-progress"]
        result = runner.invoke(cli, [*args, "--max-epochs", "1"])
    assert result.exit_code == 2
    assert f"{run}: another train is writing here" in result.output
    assert not any(run.iterdir())


def test_the_command_line_reads_in_workflow_order_with_tuning_apart(runner):
    top = runner.invoke(cli, ["--help"]).output
    listed = [
        line.split()[0]
        for line in top.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("    ")
    ]
    assert listed == [
        "featurize",
        "verify",
        "train",
        "report",
        "predict",
        "export",
        "synth",
        "demo",
    ]
    assert "..." not in top.split("Commands:")[1]  # whole descriptions
    for command, tuning in (("train", "--memory-limit"), ("featurize", "--threads")):
        text = runner.invoke(cli, [command, "--help"]).output
        everyday, rest = text.split("\nTuning:\n")
        assert "--preset" in everyday and "[ani1x|ani2x|seed]" in everyday
        assert tuning in rest and tuning not in everyday
    for command in cli.commands.values():
        unhelped = [
            p.name
            for p in command.params
            if isinstance(p, click.Option) and not p.help and p.name != "help"
        ]
        assert not unhelped, (command.name, unhelped)


def test_train_takes_its_store_positionally_or_as_shards(runner, store, tmp_path):
    run = tmp_path / "run"
    args = ["--out", str(run), "--max-epochs", "1", "--no-progress"]
    result = runner.invoke(cli, ["train", str(store), *args, "--preset", "ani2x"])
    assert result.exit_code == 0, result.output
    assert "per epoch: RMSE" in result.output and "RMSE train" in result.output
    import json

    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["hidden"]["H"] == [256, 192, 160]
    again = runner.invoke(cli, ["train", "--shards", str(store), *args, "--overwrite"])
    assert again.exit_code == 0, again.output
    both = runner.invoke(cli, ["train", str(store), "--shards", str(tmp_path), *args])
    assert both.exit_code == 2 and "two stores given" in both.output
