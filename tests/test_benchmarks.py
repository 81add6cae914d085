"""The benchmark suite's own helpers: data subsets and the generated RESULTS section."""

from __future__ import annotations

import math

import h5py
import numpy as np

from aevpipe.ani1 import ANI1File
from benchmarks.common import many_molecules, replicate
from benchmarks.scale_bench import count, subsample
from benchmarks.suite import BEGIN, END, write_section


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


def test_many_molecules_are_runs_of_conformations_in_new_atom_orders(
    release_file, tmp_path
):
    out = many_molecules(release_file, tmp_path / "many.h5", 12, 5)
    with ANI1File(release_file) as src:
        sources = src.molecules()
        blocks = [src.read(m.group, 0, m.n_conformations) for m in sources]
    with ANI1File(out) as f:
        made = f.molecules()
        assert len(made) == 12 and all(m.n_conformations == 5 for m in made)
        for i, m in enumerate(made):
            block = f.read(m.group, 0, 5)
            base = blocks[i % len(sources)]
            assert sorted(m.symbols) == sorted(sources[i % len(sources)].symbols)
            # each conformation is a source conformation with its atoms reordered
            key = np.sort(block.coordinates[0].round(4), axis=0)
            assert any(
                np.array_equal(key, np.sort(c.round(4), axis=0))
                for c in base.coordinates
            )


def test_floor_bench_runs_the_unavoidable_work(release_file, tmp_path):
    from benchmarks.floor_bench import child_floor

    out = tmp_path / "floor"
    result = child_floor(str(release_file), str(out), "1")
    molecules = ANI1File(release_file).molecules()
    assert result["conformations"] == sum(m.n_conformations for m in molecules)
    assert len(result["all_seconds"]) == 1
    # Each run in a new folder, emptied after: one folder of encoded AEV chunks
    # per molecule and element present.
    assert sorted(p.name for p in out.iterdir()) == ["run-0", "run-1"]
    elements = {(i, s) for i, m in enumerate(molecules) for s in set(m.symbols)}
    assert len(list((out / "run-1").iterdir())) == len(elements)


def test_scan_bench_times_the_steps_before_the_first_unit(release_file, tmp_path):
    from benchmarks.scan_bench import measure

    path = many_molecules(release_file, tmp_path / "many.h5", 30, 5)
    result = measure(path, 1)
    assert result["groups"] == 30 and result["units"] == 30
    assert set(result["seconds"]) == {"scan", "plan", "plan fingerprint"}
    assert all(s > 0 for s in result["seconds"].values())


def test_empty_files_frees_the_data_and_keeps_the_files(tmp_path):
    from benchmarks.common import empty_files, file_creation_us

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "0.0").write_bytes(b"x" * 5000)
    (tmp_path / "top.json").write_text("{}")
    empty_files(tmp_path)
    files = sorted(f for f in tmp_path.rglob("*") if f.is_file())
    assert [f.name for f in files] == ["0.0", "top.json"]
    assert all(f.stat().st_size == 0 for f in files)
    assert file_creation_us(tmp_path, n=5) > 0
    (probe,) = tmp_path.glob("probe-*")
    assert len(list(probe.iterdir())) == 5  # left in place: deleting is the cost


def test_featurize_bench_writes_a_new_store_each_run(release_file, tmp_path):
    from benchmarks.featurize_bench import child_featurize

    out = tmp_path / "stores"
    result = child_featurize(str(release_file), str(out), "cpu", "1", "2", "fresh")
    assert len(result["all_seconds"]) == 2 and result["conformations"] > 0
    stores = sorted(p.name for p in out.iterdir())
    assert stores == ["run-0", "run-1", "run-2"]
    for store in stores:  # emptied, not deleted
        files = [f for f in (out / store).rglob("*") if f.is_file()]
        assert files and all(f.stat().st_size == 0 for f in files)


def test_suite_says_how_featurize_bench_wrote_its_stores():
    from benchmarks.suite import _store_line

    assert _store_line({"rows": []}) == []  # a run before the stores were said
    fresh = {"store": "fresh", "file_creation_us": {"before": 86.2, "after": 24.0}}
    (line, _) = _store_line(fresh)
    assert "a new store each run" in line and "86 us before" in line
    (line, _) = _store_line({**fresh, "store": "overwrite"})
    assert "--overwrite back to back" in line
    paged = {**fresh, "new_page_write_mb_s": {"before": 412.3, "after": 4998.0}}
    (line, _) = _store_line(paged)
    assert "412 MB/s before and 4,998 MB/s after" in line


def test_new_page_probe_gives_a_speed_and_leaves_its_file(tmp_path):
    from benchmarks.common import new_page_write_mb_s

    assert new_page_write_mb_s(tmp_path, mb=4) > 0
    (probe,) = tmp_path.glob("pages-*")
    assert probe.stat().st_size == 4 << 20


def test_featurize_bench_writes_direct_when_asked(release_file, tmp_path):
    from benchmarks.featurize_bench import child_featurize

    out = tmp_path / "stores"
    result = child_featurize(
        str(release_file), str(out), "cpu", "1", "1", "fresh", "direct"
    )
    assert result["conformations"] > 0 and len(result["all_seconds"]) == 1
