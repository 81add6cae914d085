"""Report: numbers that add up to the training metrics, figures, the CLI."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from aevpipe import runs
from aevpipe.cli import cli
from aevpipe.config import load_train_settings
from aevpipe.report_markdown import html
from aevpipe.stages.report import build_report, write_report
from aevpipe.stages.train import train


@pytest.fixture
def run(store, tmp_path):
    out = tmp_path / "runs" / "r1"
    settings = load_train_settings(
        hidden={e: (32, 16) for e in "HCNO"}, batch_size=32, max_epochs=5
    )
    train(store, out, settings, progress=False, echo=lambda *_: None)
    return out


def test_report_numbers_add_up(run, tmp_path):
    report = build_report(run, "cpu")
    metrics = json.loads((run / runs.METRICS).read_text())
    for split in ("train", "valid", "test"):
        ours, theirs = report["splits"][split], metrics[split]
        assert ours["n"] == theirs["n"]
        assert ours["rmse_kcal_mol"] == pytest.approx(theirs["rmse_kcal_mol"], 1e-9)
        mols = report["molecules"][split]
        assert sum(m["n"] for m in mols) == ours["n"]
        pooled = math.sqrt(
            sum(m["rmse_kcal_mol"] ** 2 * m["n"] for m in mols) / ours["n"]
        )
        assert pooled == pytest.approx(ours["rmse_kcal_mol"], 1e-9)
        rmses = [m["rmse_kcal_mol"] for m in mols]
        assert rmses == sorted(rmses, reverse=True)  # worst first
        files = report["files"][split]
        assert sum(f["n"] for f in files.values()) == ours["n"]
    assert "seed_project" in report["comparison"]
    assert "torchani_recipe" not in report["comparison"]  # synthetic data here
    written = write_report(report, tmp_path / "rep")
    for path in written:
        assert path.stat().st_size > 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| test |" in text and "474" in text
    assert "## Provenance" in text and "by conformation" in text
    assert "32-16" in text  # the hidden layers of this run
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    assert '<img alt="parity" src="parity.png"' in page
    assert report["provenance"]["recipe"]["batch_size"] == 32


def test_cli_report_latest_and_json(run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "report",
            "--runs",
            str(run.parent),
            "--format",
            "json",
            "--out",
            str(tmp_path / "rep"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["run"] == str(run)
    assert (tmp_path / "rep" / "parity.png").is_file()


def test_html_title_is_escaped():
    page = html("text", "runs/a&b<c")
    assert "<title>aevpipe report: runs/a&amp;b&lt;c</title>" in page


def test_cli_report_bad_run(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a finished aevpipe run" in result.output
    result = runner.invoke(cli, ["report", "--runs", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no runs under" in result.output


def test_report_of_a_run_stopped_before_its_metrics(run, tmp_path):
    """metrics.json is written last: a run killed before it still reports (the
    report evaluates the best model itself); a garbled one is one line."""
    (run / runs.METRICS).unlink()
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    (run / runs.METRICS).write_text("{not json")
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 2 and "metrics.json: cannot be read" in result.output


def test_report_of_a_run_with_a_damaged_config_is_one_line(run):
    (run / runs.CONFIG).write_text('{"store": ')
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 2 and "config.json: cannot be read" in result.output
    (run / runs.CONFIG).write_text("[]")
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert (
        result.exit_code == 2 and "config.json: not a run's settings" in result.output
    )


def test_torchanis_figure_is_compared_only_on_its_own_data_and_split(
    real_s01, tmp_path
):
    from aevpipe.config import FeaturizeSettings, SplitSettings
    from aevpipe.stages.featurize import featurize

    settings = load_train_settings(max_epochs=1)
    found = {}
    for seed in (0, 1):
        store = tmp_path / f"aev{seed}"
        split = FeaturizeSettings(split=SplitSettings(seed=seed))
        featurize([str(real_s01)], store, split, progress=False)
        run = tmp_path / f"run{seed}"
        train(store, run, settings, progress=False, echo=lambda *_: None)
        found[seed] = build_report(run, "cpu")["comparison"].get("torchani_recipe")
    assert found[0]["test_rmse_kcal_mol"] == 0.213
    assert found[1] is None  # another split: TorchANI's figure does not apply
