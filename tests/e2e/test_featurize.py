"""Stage one end to end: stored AEVs equal TorchANI's, links back, resume, executors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torchani
import zarr

from aevpipe import keys
from aevpipe.ani1 import ANI1File
from aevpipe.config import AEVParams, FeaturizeSettings, SplitSettings
from aevpipe.errors import InputError, StoreError, StoreWriteError
from aevpipe.stages import featurize as stage
from aevpipe.stages.featurize import featurize
from aevpipe.stages.inputs import sha256_file
from aevpipe.store import (
    ShardStore,
    array_checksum,
    done_units,
    finish,
    is_complete,
    read_attrs,
)


def settings(**kw) -> FeaturizeSettings:
    """Small units and chunks; float32 AEVs, which these tests compare with
    TorchANI's to float32 precision (16-bit stores have their own test)."""
    kw = {"block_size": 32, "chunk_rows": 64, "aev_dtype": "float32", **kw}
    return FeaturizeSettings(**kw)


def read_group(store: ShardStore, n_atoms: int):
    """Per-conformation arrays and AEVs rebuilt as (C, A, L) from element rows."""
    cols = {
        k: store.array(n_atoms, k)[:]
        for k in (keys.ENERGY, keys.SPECIES, keys.MOLECULE, keys.INDEX, keys.SPLIT)
    }
    species = cols[keys.SPECIES]
    aev = np.full(species.shape + (store.aev.aev_length,), np.nan, np.float32)
    for e, element in enumerate(store.elements):
        conf, atom = np.nonzero(species == e)
        if len(conf) == 0:
            continue
        rows = store.array(n_atoms, keys.AEV, element)[:]
        assert (store.array(n_atoms, keys.CONFORMATION, element)[:] == conf).all()
        aev[conf, atom] = rows
    return cols, aev


def check_against_torchani(
    store_path, reference: torchani.AEVComputer, sample: int | None = None
):
    """Every stored conformation (or a sample) links back to its source and holds
    the AEVs TorchANI's forward gives it alone, to float32 rounding."""
    store = ShardStore.open(store_path)
    readers = {}
    for layout in store.layouts:
        cols, aev = read_group(store, layout.n_atoms)
        picks = np.arange(len(aev))
        if sample:
            picks = np.random.default_rng(0).choice(len(aev), sample, replace=False)
        for c in picks:
            mol = store.molecules[cols[keys.MOLECULE][c]]
            source = next(
                s for s in store.attrs[keys.ATTR_SOURCES] if s["name"] == mol["file"]
            )
            reader = readers.setdefault(source["path"], ANI1File(source["path"]))
            i = int(cols[keys.INDEX][c])
            block = reader.read(mol["group"], i, i + 1)
            assert block.energies[0] == cols[keys.ENERGY][c]
            elements = list(store.elements)
            species = [elements.index(s) for s in block.symbols[0]]
            assert species == cols[keys.SPECIES][c].tolist()
            with torch.no_grad():
                expected = reference(
                    torch.tensor([species]), torch.from_numpy(block.coordinates)
                )[0].numpy()
            # Float32 rounding differs with the batch a conformation is in (the
            # vectorised kernels' tails), by about one unit in the last place.
            np.testing.assert_allclose(aev[c], expected, rtol=1e-6, atol=1e-12)


def test_aevs_equal_torchani_on_random_molecules(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)
    check_against_torchani(out, torchani.AEVComputer.like_1x(strategy="pyaev"))


def test_aevs_equal_torchani_on_real_s01(real_s01, tmp_path):
    out = tmp_path / "aev"
    featurize(
        [str(real_s01)], out, FeaturizeSettings(aev_dtype="float32"), progress=False
    )
    check_against_torchani(
        out, torchani.AEVComputer.like_1x(strategy="pyaev"), sample=300
    )
    manifest = json.loads((out / keys.MANIFEST).read_text())
    assert manifest["conformations"] == {"train": 8640, "valid": 1080, "test": 1080}
    assert manifest["rows"] == {"H": 36000, "C": 5400, "N": 3600, "O": 1800}


def test_ani2x_and_flat_layout(flat_file, tmp_path):
    out = tmp_path / "aev"
    featurize([str(flat_file)], out, settings(aev=AEVParams.ani2x()), progress=False)
    assert ShardStore.open(out).elements == ("H", "C", "N", "O", "S", "F", "Cl")
    check_against_torchani(out, torchani.AEVComputer.like_2x(strategy="pyaev"))


def test_root_attrs_and_splits(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize([release_file], out, settings(), progress=False)  # a Path will do
    store = ShardStore.open(out)
    attrs = store.attrs
    assert attrs[keys.ATTR_FORMAT_VERSION] == 1
    assert attrs[keys.ATTR_TORCHANI_VERSION] == torchani.__version__
    assert attrs[keys.ATTR_SOURCES][0]["sha256"] == sha256_file(release_file)
    assert attrs[keys.ATTR_SPLIT] == {
        "fractions": [0.8, 0.1, 0.1],
        "seed": 0,
        "by": "conformation",
    }
    assert [m["formula"] for m in attrs[keys.ATTR_MOLECULES]] == [
        "CH4",
        "H3N",
        "H2O",
        "CH4O",
    ]
    for layout in store.layouts:
        split = store.array(layout.n_atoms, keys.SPLIT)[:]
        assert (np.diff(split) >= 0).all()  # ordered train | valid | test
        assert np.bincount(split, minlength=3).tolist() == list(layout.conformations)


def test_split_by_molecule(tmp_path):
    from tests.synthetic import write_release

    src = write_release(
        tmp_path / "x.h5", dict.fromkeys(["CH4", "NH3", "H2O", "CH3OH", "HCN"], 20)
    )
    out = tmp_path / "aev"
    split = SplitSettings(fractions=(0.6, 0.2, 0.2), by="molecule")
    featurize([str(src)], out, settings(split=split), progress=False)
    store = ShardStore.open(out)
    by_molecule = {}
    for layout in store.layouts:
        for m, s in zip(
            store.array(layout.n_atoms, keys.MOLECULE)[:],
            store.array(layout.n_atoms, keys.SPLIT)[:],
            strict=True,
        ):
            by_molecule.setdefault(int(m), set()).add(int(s))
    assert all(len(s) == 1 for s in by_molecule.values())
    assert sorted(next(iter(s)) for s in by_molecule.values()) == [0, 0, 0, 1, 2]


def test_rerun_does_nothing_and_overwrite_redoes(release_file, tmp_path):
    out = tmp_path / "aev"
    first = featurize([str(release_file)], out, settings(), progress=False)
    assert first.status == "written" and first.units_run > 0
    again = featurize([str(release_file)], out, settings(), progress=False)
    assert again.status == "complete already"
    with pytest.raises(StoreError, match="other inputs or settings"):
        featurize(
            [str(release_file)],
            out,
            settings(split=SplitSettings(seed=1)),
            progress=False,
        )
    (out / "stray").write_text("of the old store")
    redo = featurize(
        [str(release_file)], out, settings(), overwrite=True, progress=False
    )
    assert redo.status == "written" and redo.units_run == first.units_run
    assert not (out / "stray").exists()
    ShardStore.open(out)


def test_overwrite_never_deletes_what_is_not_a_store(release_file, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not an aevpipe store"):
            featurize(
                [str(release_file)],
                out,
                settings(),
                overwrite=overwrite,
                progress=False,
            )
    assert (out / "notes.txt").read_text() == "mine"


def test_a_store_cut_off_while_being_created_is_refused(
    release_file, tmp_path, monkeypatch
):
    """Killed before the root's attributes (written last) are: the folder is not
    taken for a store to resume; --overwrite starts it again."""

    def dying(self, attrs):
        raise KeyboardInterrupt("killed")

    out = tmp_path / "aev"
    monkeypatch.setattr(zarr.attrs.Attributes, "put", dying)
    with pytest.raises(KeyboardInterrupt):
        featurize([str(release_file)], out, settings(), progress=False)
    monkeypatch.undo()
    assert list(out.rglob(".zarray"))
    with pytest.raises(StoreError, match="not an aevpipe store"):
        featurize([str(release_file)], out, settings(), progress=False)
    redo = featurize(
        [str(release_file)], out, settings(), overwrite=True, progress=False
    )
    assert redo.status == "written"
    ShardStore.open(out)


def _arrays(path):
    out = {}
    ShardStore.open(path).root.visititems(
        lambda name, v: out.__setitem__(name, v[:]) if hasattr(v, "shape") else None
    )
    return out


def assert_same_store(a, b):
    """Equal arrays, value for value, and equal manifests."""
    x, y = _arrays(a), _arrays(b)
    assert x.keys() == y.keys()
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)
    manifests = [json.loads((s / keys.MANIFEST).read_text()) for s in (a, b)]
    assert manifests[0] == manifests[1]


def test_manifest_checksums_find_a_damaged_chunk(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)
    manifest = json.loads((out / keys.MANIFEST).read_text())
    name = "n005/H/" + keys.AEV
    assert array_checksum(out, name)[0] == manifest["arrays"][name]["crc32"]
    chunk = out / name / "0.0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    assert array_checksum(out, name)[0] != manifest["arrays"][name]["crc32"]


def test_manifest_lists_every_array_and_a_missing_one_is_an_error(
    release_file, tmp_path
):
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)
    manifest = json.loads((out / keys.MANIFEST).read_text())
    arrays = []
    zarr.open_group(str(out), mode="r").visitvalues(
        lambda v: arrays.append(v) if isinstance(v, zarr.Array) else None
    )
    assert sorted(manifest["arrays"]) == sorted(a.path for a in arrays)
    assert manifest["uncompressed_bytes"] == sum(a.nbytes for a in arrays)
    # Every chunk is on disk, also those that hold only zeros.
    assert all(a.nchunks_initialized == a.nchunks for a in arrays)
    name = f"n005/H/{keys.CONFORMATION}"
    shutil.rmtree(out / name)
    with pytest.raises(StoreError, match=f"array {name} is missing"):
        finish(out, read_attrs(out), {})


def test_interrupted_run_is_refused_then_completed(release_file, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    featurize([str(release_file)], fresh, settings(), progress=False)
    out = tmp_path / "aev"
    real_run_unit, calls = stage.run_unit, []

    def dying(task):
        if len(calls) >= 3:  # ">=": threads may pass the check together
            raise KeyboardInterrupt("killed")
        calls.append(task.unit.uid)
        return real_run_unit(task)

    monkeypatch.setattr(stage, "run_unit", dying)
    with pytest.raises(KeyboardInterrupt):
        featurize([str(release_file)], out, settings(threads=1), progress=False)
    with pytest.raises(StoreError, match="incomplete"):
        ShardStore.open(out)
    monkeypatch.undo()
    resumed = featurize([str(release_file)], out, settings(), progress=False)
    assert resumed.status == "resumed" and resumed.units_skipped == 3
    assert_same_store(fresh, out)


KILLED_FEATURIZE = """
import sys
from aevpipe.config import FeaturizeSettings
from aevpipe.stages.featurize import featurize
featurize([sys.argv[1]], sys.argv[2], FeaturizeSettings(block_size=8, chunk_rows=64),
          progress=False)
"""


@pytest.mark.parametrize(
    "after_units",
    [
        pytest.param(1, marks=pytest.mark.slow),
        9,
        pytest.param(25, marks=pytest.mark.slow),
    ],
)
def test_a_killed_run_resumes_to_the_uninterrupted_store(
    release_file, tmp_path, after_units
):
    """SIGKILL once some units are recorded done: the same command completes a
    store equal, value for value, to one that was never interrupted."""
    fresh = tmp_path / "fresh"
    settings_ = FeaturizeSettings(block_size=8, chunk_rows=64)
    featurize([str(release_file)], fresh, settings_, progress=False)
    out = tmp_path / "aev"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_FEATURIZE, str(release_file), str(out)]
    )
    progress, deadline = out / keys.PROGRESS_DIR, time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        if progress.is_dir() and len(os.listdir(progress)) >= after_units:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    child.wait()
    resumed = featurize([str(release_file)], out, settings_, progress=False)
    assert resumed.status in ("resumed", "complete already")
    assert_same_store(fresh, out)


def test_unit_threads_write_the_same_store(release_file, tmp_path):
    """Units share chunks at their edges, written under chunk locks: one thread or
    four, the store is the same."""
    one, many = tmp_path / "one", tmp_path / "many"
    featurize([str(release_file)], one, settings(threads=1), progress=False)
    featurize([str(release_file)], many, settings(threads=4), progress=False)
    assert_same_store(one, many)


def test_block_atoms_cuts_units_not_the_store(release_file, tmp_path):
    """`block_atoms` sizes the work units (100 atoms: 20 of CH4's 120 conformations
    a unit), and the store holds the same conformations in the same places."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    big = featurize(
        [str(release_file)], whole, settings(block_size=None), progress=False
    )
    small = featurize(
        [str(release_file)],
        cut,
        settings(block_size=None, block_atoms=100),
        progress=False,
    )
    assert big.units_run == 4  # one per molecule
    # CH4 120 / 20, NH3 90 / 25, H2O 60 / 33, CH3OH 75 / 16, rounded up
    assert small.units_run == 6 + 4 + 2 + 5
    # AEVs to float32 rounding, which differs with TorchANI's batch of
    # conformations; everything else exactly.
    x, y = _arrays(whole), _arrays(cut)
    assert x.keys() == y.keys()
    for name in x:
        if name.endswith("/" + keys.AEV):
            np.testing.assert_allclose(x[name], y[name], rtol=1e-6, atol=1e-12)
        else:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def test_progress_files_of_earlier_versions_still_count(tmp_path):
    """Earlier versions recorded several units in one file; a store they left
    incomplete resumes with those units done."""
    (tmp_path / keys.PROGRESS_DIR).mkdir()
    (tmp_path / keys.PROGRESS_DIR / "unit-0000007.json").write_text('{"atoms": 5}')
    (tmp_path / keys.PROGRESS_DIR / "done-0000003.json").write_text(
        '{"3": {"atoms": 4}, "9": {"atoms": 6}}'
    )
    assert done_units(tmp_path) == {3: {"atoms": 4}, 7: {"atoms": 5}, 9: {"atoms": 6}}


@pytest.mark.parametrize("threads", [1, 2])
def test_a_full_disk_stops_with_one_error_and_the_same_command_completes(
    release_file, tmp_path, monkeypatch, fill_disk_after, threads
):
    fresh = tmp_path / "fresh"
    featurize([str(release_file)], fresh, settings(), progress=False)
    out = tmp_path / "aev"
    fill_disk_after(12)
    full = (
        r"aev: cannot write n\d{3}/\S+ \(No space left on device\); the units "
        "finished so far are kept: fix that and run the same command"
    )
    with pytest.raises(StoreWriteError, match=full):
        featurize([str(release_file)], out, settings(threads=threads), progress=False)
    assert not is_complete(out)
    monkeypatch.undo()
    resumed = featurize([str(release_file)], out, settings(), progress=False)
    assert resumed.status == "resumed"
    assert_same_store(fresh, out)


def test_dask_executor_writes_the_same_store(release_file, tmp_path):
    """The same values and the same manifest, checksums included."""
    pytest.importorskip("dask.distributed")
    a, b = tmp_path / "a", tmp_path / "b"
    featurize([str(release_file)], a, settings(), progress=False)
    featurize([str(release_file)], b, settings(), workers=2, progress=False)
    assert_same_store(a, b)


@pytest.mark.parametrize("workers", [None, 2])
def test_bad_input_leaves_no_complete_store(release_file, tmp_path, workers):
    import h5py

    if workers:
        pytest.importorskip("dask.distributed")

    with h5py.File(release_file, "a") as f:
        f["gdb11_s01/gdb11_s01-2/energies"][3] = np.inf
    out = tmp_path / "aev"
    # Values are checked as units read them: the run stops with the group, the
    # conformation and what to do, and leaves a store that readers refuse.
    with pytest.raises(
        InputError,
        match=r"gdb11_s01-2: energies has NaN or infinite values \(conformation 3\);"
        r" .* is left incomplete: fix the input, or pass --skip-invalid --overwrite",
    ):
        featurize([str(release_file)], out, settings(), workers=workers, progress=False)
    assert not is_complete(out)
    with pytest.raises(StoreError, match="incomplete"):
        ShardStore.open(out)
    # --skip-invalid checks values up front, before planning, and leaves it out.
    summary = featurize(
        [str(release_file)],
        out,
        settings(skip_invalid=True),
        overwrite=True,
        progress=False,
    )
    assert len(summary.skipped_molecules) == 1
    assert summary.conformations == 120 + 90 + 75


@pytest.mark.slow
def test_existing_scheduler_by_address_writes_the_same_store(release_file, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    a, b = tmp_path / "a", tmp_path / "b"
    featurize([str(release_file)], a, settings(), progress=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        featurize(
            [str(release_file)],
            b,
            settings(),
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert_same_store(a, b)


def test_an_input_given_twice_is_refused(release_file, tmp_path):
    """The same file twice, or a file and its copy: their conformations would be
    in training and test alike."""
    out = tmp_path / "aev"
    with pytest.raises(InputError, match="is given twice"):
        featurize([str(release_file)] * 2, out, settings(), progress=False)
    copy = tmp_path / "copy.h5"
    shutil.copy(release_file, copy)
    with pytest.raises(
        InputError, match=f"copy.h5: holds the same bytes as .*{release_file.name}"
    ):
        featurize([str(release_file), str(copy)], out, settings(), progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("dtype", "stored", "rel"), [("float16", "<f2", 2**-11), ("bfloat16", "<u2", 2**-8)]
)
def test_half_precision_stores_hold_the_float32_aevs_rounded(
    release_file, tmp_path, dtype, stored, rel
):
    """--dtype float16|bfloat16 stores each AEV value in 16 bits, rounded to
    nearest; readers get float32 back, the store verifies and trains."""
    full = tmp_path / "f32"
    half = tmp_path / dtype
    featurize([str(release_file)], full, settings(), progress=False)
    featurize([str(release_file)], half, settings(aev_dtype=dtype), progress=False)
    a, b = ShardStore.open(full), ShardStore.open(half)
    assert b.attrs[keys.ATTR_AEV_DTYPE] == dtype and keys.ATTR_AEV_DTYPE not in a.attrs
    assert (a.attrs["format_version"], b.attrs["format_version"]) == (1, 2)
    for layout in a.layouts:
        for e, element in enumerate(a.elements):
            if not layout.total_rows()[e]:
                continue
            assert b.array(layout.n_atoms, keys.AEV, element).dtype == np.dtype(stored)
            x = a.read(layout.n_atoms, keys.AEV, element, 0, 10**9)
            y = b.read(layout.n_atoms, keys.AEV, element, 0, 10**9)
            assert y.dtype == np.float32 and y.shape == x.shape
            # The loader's path, straight into a window's rows, reads the same.
            for store, expected in ((a, x), (b, y)):
                into = np.full_like(expected, np.nan)
                store.read_aev_into(layout.n_atoms, element, 0, len(into), into)
                np.testing.assert_array_equal(into, expected)
            big = np.abs(x) > 1e-3  # float16 keeps ~3 digits above its subnormals
            np.testing.assert_allclose(y[big], x[big], rtol=rel)
            np.testing.assert_allclose(y, x, atol=rel * max(1.0, np.abs(x).max()))
            # Rounded, not truncated: float32 -> 16 bits -> float32 is the identity.
            if dtype == "float16":
                np.testing.assert_array_equal(
                    y, x.astype(np.float16).astype(np.float32)
                )
            else:
                bf = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
                np.testing.assert_array_equal(y, bf)
    assert sum(p.stat().st_size for p in half.rglob("*")) < 0.75 * sum(
        p.stat().st_size for p in full.rglob("*")
    )
    # Rerunning the same command finds it complete; asking another dtype is refused.
    featurize([str(release_file)], half, settings(aev_dtype=dtype), progress=False)
    with pytest.raises(StoreError, match=f"--dtype: {dtype} there, float32 asked"):
        featurize([str(release_file)], half, settings(), progress=False)
