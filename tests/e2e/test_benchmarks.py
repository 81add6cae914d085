"""The benchmark suite's own helpers: data subsets and the generated RESULTS section."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from aevpipe.ani1 import ANI1File
from benchmarks.common import replicate
from benchmarks.scale_bench import count, subsample
from benchmarks.suite import BEGIN, END, write_section
from benchmarks.train_bench import steady_rate


def test_subsample_keeps_each_molecules_first_share(release_file, tmp_path):
    (made,) = subsample([release_file], 0.25, tmp_path / "sub")
    full = {m.group: m for m in ANI1File(release_file).molecules()}
    part = ANI1File(made).molecules()
    assert {m.group for m in part} == set(full)
    for m in part:
        assert m.n_conformations == math.ceil(0.25 * full[m.group].n_conformations)
        assert m.symbols == full[m.group].symbols
        with h5py.File(release_file) as a, h5py.File(made) as b:
            n = m.n_conformations
            assert (
                a[m.group]["coordinates"][:n] == b[m.group]["coordinates"][()]
            ).all()
    assert count([made]) == sum(m.n_conformations for m in part)


def test_steady_rate_leaves_out_the_first_and_a_cut_short_epoch():
    def epoch(n, seconds):
        return {"conformations_per_s": n / seconds, "epoch_seconds": seconds}

    history = [epoch(100, 5.0), epoch(100, 1.0), epoch(100, 1.0), epoch(30, 0.5)]
    assert steady_rate(history, 100) == pytest.approx(100.0)
    baseline = [{"epoch_seconds": s} for s in (5.0, 1.0, 2.0)]  # whole epochs
    assert steady_rate(baseline, 100) == pytest.approx(200 / 3)


def test_generated_section_is_appended_then_replaced(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nhand-written\n")
    write_section(results, f"{BEGIN}\nfirst\n{END}")
    write_section(results, f"{BEGIN}\nsecond\n{END}")
    text = results.read_text()
    assert "hand-written" in text and "second" in text and "first" not in text
    assert text.count(BEGIN) == 1


def test_replicate_gzip_holds_the_same_values_compressed(release_file, tmp_path):
    plain = replicate(release_file, tmp_path / "plain.h5", 3)
    packed = replicate(release_file, tmp_path / "packed.h5", 3, gzip=True)
    with h5py.File(release_file) as src, h5py.File(plain) as a, h5py.File(packed) as b:
        for m in ANI1File(release_file).molecules():
            for key in ("coordinates", "energies"):
                assert a[m.group][key].compression is None
                assert b[m.group][key].compression == "gzip"
                assert len(b[m.group][key]) == 3 * len(src[m.group][key])
                assert (a[m.group][key][()] == b[m.group][key][()]).all()


def test_featurize_compare_finds_equal_and_differing_stores(release_file, tmp_path):
    from aevpipe.config import FeaturizeSettings, SplitSettings
    from aevpipe.stages.featurize import featurize
    from benchmarks.featurize_compare import compare_stores

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        settings = FeaturizeSettings(split=SplitSettings(seed=seed))
        featurize([str(release_file)], out, settings, progress=False)
    assert compare_stores(a, b).startswith("same")
    assert compare_stores(a, c).startswith("root attributes differ")


def test_gpu_check_without_cuda_says_so_and_succeeds(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: pipelines/gpu_check.sh would run the checks")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["bash", str(root / "pipelines/gpu_check.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
