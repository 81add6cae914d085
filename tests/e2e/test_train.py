"""Stage two: training learns, writes its run, resumes exactly, refuses bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from aevpipe import keys, runs
from aevpipe.cli import cli
from aevpipe.config import FeaturizeSettings, SplitSettings, load_train_settings
from aevpipe.errors import RunError, SettingsError, StoreError
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train

SMALL = {"hidden": {e: (32, 16) for e in "HCNO"}, "batch_size": 32}


def settings(**kw):
    return load_train_settings(**{**SMALL, **kw})


def quiet(*_):
    pass


def test_training_learns_and_writes_its_run(store, tmp_path):
    run = tmp_path / "run"
    result = train(store, run, settings(max_epochs=12), progress=False, echo=quiet)
    history = runs.read_history(run)
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert history[-1]["train_rmse_kcal_mol"] < history[0]["train_rmse_kcal_mol"] / 3
    metrics = json.loads((run / runs.METRICS).read_text())
    for split, n in (("train", 276), ("valid", 35), ("test", 34)):
        assert metrics[split]["n"] == n
        assert metrics[split]["rmse_kcal_mol"] >= metrics[split]["mae_kcal_mol"] > 0
    assert result.metrics["valid"] == metrics["valid"]
    best = min(h["valid_rmse_kcal_mol"] for h in history)
    assert metrics["valid"]["rmse_kcal_mol"] == pytest.approx(best, rel=1e-6)
    config = json.loads((run / runs.CONFIG).read_text())
    assert config["settings"]["batch_size"] == 32 and config["elements"] == list("HCNO")


def test_resume_after_a_kill_mid_epoch_lands_where_a_full_run_does(store, tmp_path):
    full = tmp_path / "full"
    train(store, full, settings(max_epochs=6), progress=False, echo=quiet)

    def kill(epoch, batch):
        if epoch == 4 and batch == 3:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        train(
            store,
            part,
            settings(max_epochs=6),
            progress=False,
            echo=quiet,
            on_batch=kill,
        )
    assert len(runs.read_history(part)) == 3
    train(store, part, settings(max_epochs=6), resume=True, progress=False, echo=quiet)
    a, b = runs.read_history(full), runs.read_history(part)
    assert [h["epoch"] for h in b] == list(range(1, 7))
    for x, y in zip(a, b, strict=True):
        assert x["valid_rmse_kcal_mol"] == pytest.approx(
            y["valid_rmse_kcal_mol"], rel=1e-5
        )


def test_a_history_line_torn_by_a_crash_is_dropped(tmp_path):
    runs.append_history(tmp_path, {"epoch": 1})
    runs.append_history(tmp_path, {"epoch": 2})
    with open(tmp_path / runs.HISTORY, "a") as fh:
        fh.write('{"epoch": 3, "train_rm')  # a full disk or a kill mid-append
    assert [h["epoch"] for h in runs.read_history(tmp_path)] == [1, 2]
    runs.truncate_history(tmp_path, 2)
    assert (tmp_path / runs.HISTORY).read_text().endswith('{"epoch": 2}\n')
    with open(tmp_path / runs.HISTORY, "a") as fh:  # damage elsewhere is an error
        fh.write('{"epoch": \n{"epoch": 4}\n')
    with pytest.raises(RunError, match="history.jsonl: cannot be read"):
        runs.read_history(tmp_path)


def test_refusals(store, release_file, tmp_path):
    run = tmp_path / "run"
    train(store, run, settings(max_epochs=1), progress=False, echo=quiet)
    with pytest.raises(RunError, match="already holds a run"):
        train(store, run, settings(max_epochs=1), progress=False, echo=quiet)
    with pytest.raises(RunError, match="settings differ"):
        train(
            store,
            run,
            settings(max_epochs=2, lr=0.1),
            resume=True,
            progress=False,
            echo=quiet,
        )
    other = tmp_path / "other"
    featurize(
        [str(release_file)],
        other,
        FeaturizeSettings(split=SplitSettings(seed=9)),
        progress=False,
    )
    with pytest.raises(RunError, match="another shard store"):
        train(
            other, run, settings(max_epochs=2), resume=True, progress=False, echo=quiet
        )
    (store / keys.MANIFEST).unlink()
    with pytest.raises(StoreError, match="incomplete"):
        train(store, tmp_path / "r2", settings(), progress=False, echo=quiet)


def test_empty_training_split(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize(
        [str(release_file)],
        out,
        FeaturizeSettings(split=SplitSettings(fractions=(0.0, 0.5, 0.5))),
        progress=False,
    )
    with pytest.raises(StoreError, match="training split is empty"):
        train(out, tmp_path / "run", settings(), progress=False, echo=quiet)


def test_cli_train_and_errors(store, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    args = [
        "train",
        "--shards",
        str(store),
        "--out",
        str(run),
        "--max-epochs",
        "2",
        "--no-progress",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "test  RMSE" in result.output
    again = runner.invoke(cli, args)
    assert again.exit_code == 2 and "already holds a run" in again.output
    resumed = runner.invoke(cli, [*args[:-2], "3", "--resume", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output
    assert len(runs.read_history(run)) == 3
    shutil.rmtree(store / "n005")
    (store / keys.MANIFEST).unlink()
    bad = runner.invoke(
        cli, ["train", "--shards", str(store), "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "incomplete store" in bad.output


def test_real_s01_reaches_chemical_accuracy_fast(real_s01, tmp_path):
    """The seed project's failure, guarded: on real ANI-1 data a short run gets
    validation RMSE under 1.5 kcal/mol. Bounded by epochs, not seconds, so a busy
    machine cannot fail it (CPU training is deterministic; ~10 s on 2 cores)."""
    store = tmp_path / "aev"
    featurize([str(real_s01)], store, FeaturizeSettings(), progress=False)
    result = train(
        store,
        tmp_path / "run",
        load_train_settings(max_epochs=60),
        progress=False,
        echo=quiet,
    )
    assert result.metrics["valid"]["rmse_kcal_mol"] < 1.5
    assert result.metrics["test"]["n"] == 1080


def test_resume_of_a_run_that_stopped_adds_no_epoch(store, tmp_path):
    """A run that ended on --max-time or early stopping has ended: --resume with
    the same limits trains nothing more, and the history is unchanged."""
    run = tmp_path / "run"
    train(store, run, settings(max_time=0.5), progress=False, echo=quiet)
    before = (run / runs.HISTORY).read_text()
    result = train(
        store, run, settings(max_time=0.5), resume=True, progress=False, echo=quiet
    )
    assert result.stop_reason == "max time"
    assert (run / runs.HISTORY).read_text() == before
    run2 = tmp_path / "run2"
    stopped = settings(max_epochs=60, early_stop=1)
    first = train(store, run2, stopped, progress=False, echo=quiet)
    assert first.stop_reason.startswith("no better validation")
    again = train(store, run2, stopped, resume=True, progress=False, echo=quiet)
    assert again.epochs == first.epochs and again.stop_reason == first.stop_reason


@pytest.mark.parametrize("name", [runs.CHECKPOINT, runs.BEST])
def test_a_damaged_run_file_is_one_line(store, tmp_path, name):
    run = tmp_path / "run"
    train(store, run, settings(max_epochs=2), progress=False, echo=quiet)
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match=f"{name}: does not match its CRC-32"):
        if name == runs.BEST:
            runs.load_best(run, torch.device("cpu"))
        else:
            train(
                store,
                run,
                settings(max_epochs=3),
                resume=True,
                progress=False,
                echo=quiet,
            )


def test_run_files_load_without_unpickling_code(store, tmp_path):
    """A pickle that would run code on load is refused: run files load as
    tensors and plain values only."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    run = tmp_path / "run"
    train(store, run, settings(max_epochs=1), progress=False, echo=quiet)
    torch.save(
        {"model": Evil()}, run / runs.BEST, pickle_protocol=pickle.HIGHEST_PROTOCOL
    )
    (run / (runs.BEST + ".crc32")).unlink()  # as a file from elsewhere would be
    with pytest.raises(RunError, match="damaged or not written by aevpipe"):
        runs.load_best(run, torch.device("cpu"))


def test_overwrite_replaces_a_run_and_refuses_other_folders(store, tmp_path):
    run = tmp_path / "run"
    train(store, run, settings(max_epochs=1), progress=False, echo=quiet)
    train(
        store, run, settings(max_epochs=1), overwrite=True, progress=False, echo=quiet
    )
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(RunError, match="not an aevpipe run"):
        train(
            store,
            other,
            settings(max_epochs=1),
            overwrite=True,
            progress=False,
            echo=quiet,
        )
    assert (other / "mine.txt").read_text() == "keep"


def test_a_memory_limit_below_a_few_chunks_is_refused(store, tmp_path):
    """The `store` fixture's AEV chunks are 64 rows of 384 float32: 98,304 bytes,
    393,216 for four of them."""
    with pytest.raises(SettingsError, match="needs at least 393,216"):
        train(
            store,
            tmp_path / "run",
            settings(memory_limit=1000),
            progress=False,
            echo=quiet,
        )
    train(
        store,
        tmp_path / "run",
        settings(memory_limit=393_216, max_epochs=1),
        progress=False,
        echo=quiet,
    )


def test_an_empty_split_is_null_in_metrics_json(release_file, tmp_path):
    """An error over no conformations is NaN in memory and null on disk, so
    metrics.json stays valid JSON (json.loads refuses NaN with parse_constant)."""
    out = tmp_path / "aev"
    split = SplitSettings(fractions=(0.9, 0.1, 0.0))
    featurize([str(release_file)], out, FeaturizeSettings(split=split), progress=False)
    run = tmp_path / "run"
    train(out, run, settings(max_epochs=1), progress=False, echo=quiet)

    def refuse(name):
        raise ValueError(name)

    metrics = json.loads((run / runs.METRICS).read_text(), parse_constant=refuse)
    assert metrics["test"] == {"rmse_kcal_mol": None, "mae_kcal_mol": None, "n": 0}


KILLED_TRAIN = """
import sys
from aevpipe.config import load_train_settings
from aevpipe.stages.train import train
settings = load_train_settings(hidden={e: (32, 16) for e in "HCNO"}, batch_size=32,
                               max_epochs=8)
train(sys.argv[1], sys.argv[2], settings, progress=False, echo=lambda *_: None)
"""


@pytest.mark.parametrize(
    "after_epochs,delay",
    [
        pytest.param(0, 0.0, marks=pytest.mark.slow),
        (2, 0.0),
        (3, 0.05),
        pytest.param(6, 0.0, marks=pytest.mark.slow),
    ],
)
def test_a_killed_train_resumes_to_the_uninterrupted_run(
    store, tmp_path, after_epochs, delay
):
    """SIGKILL once `after_epochs` epochs are in history.jsonl (plus `delay`, to
    land mid-epoch or mid-checkpoint): --resume loses and repeats no epoch, and
    ends with the uninterrupted run's history and metrics."""
    import signal
    import subprocess
    import sys
    import time

    full = tmp_path / "full"
    train(store, full, settings(max_epochs=8), progress=False, echo=quiet)
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", KILLED_TRAIN, str(store), str(run)])
    history, deadline = run / runs.HISTORY, time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if history.is_file() and history.read_text().count("\n") >= after_epochs:
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    child.wait()
    train(store, run, settings(max_epochs=8), resume=True, progress=False, echo=quiet)
    a, b = runs.read_history(full), runs.read_history(run)
    assert [h["epoch"] for h in b] == list(range(1, 9))
    # float32 GEMMs in another process may round differently (BLAS kernels chosen
    # by memory alignment): equal to 1e-5, where a lost or repeated epoch moves
    # the errors by percents.
    for x, y in zip(a, b, strict=True):
        assert x["valid_rmse_kcal_mol"] == pytest.approx(
            y["valid_rmse_kcal_mol"], rel=1e-5
        )
    metrics = [json.loads((r / runs.METRICS).read_text()) for r in (full, run)]
    for split in ("train", "valid", "test"):
        assert metrics[0][split] == pytest.approx(metrics[1][split], rel=1e-5)


def test_a_refused_train_leaves_no_run_directory(release_file, tmp_path):
    """Refused before its first epoch (here: an incomplete store), a train that
    made its run directory removes it again."""
    out = tmp_path / "aev"
    out.mkdir()
    run = tmp_path / "run"
    with pytest.raises(StoreError):
        train(out, run, settings(max_epochs=1), progress=False, echo=quiet)
    assert not run.exists()


def test_a_timed_run_anneals_its_learning_rate_within_the_time(store, tmp_path):
    """With --max-time the rate falls along a cosine of the time spent: each epoch's
    rate is the cosine at the clock when it began, and no early stop cuts it."""
    from aevpipe.trainer import cosine_lr

    s = settings(max_time=3.0, early_stop=1)
    result = train(store, tmp_path / "run", s, progress=False, echo=quiet)
    history = runs.read_history(tmp_path / "run")
    assert result.stop_reason == "max time" and len(history) > 2
    clock = [0.0] + [h["elapsed_s"] for h in history[:-1]]
    assert [h["lr"] for h in history] == pytest.approx([cosine_lr(s, t) for t in clock])
    assert history[-1]["lr"] < s.lr / 2
