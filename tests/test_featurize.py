"""Stage one end to end: stored AEVs equal TorchANI's, links back, resume, executors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
import torchani
import zarr

from aevpipe import chunk_files, keys, shards
from aevpipe.ani1 import ANI1File
from aevpipe.chunk_files import ChunkFiles
from aevpipe.config import AEVParams, FeaturizeSettings, SplitSettings
from aevpipe.errors import InputError, StoreError, StoreWriteError
from aevpipe.hashing import sha256_file
from aevpipe.stages import featurize as stage
from aevpipe.stages.featurize import featurize


def settings(**kw) -> FeaturizeSettings:
    return FeaturizeSettings(**{"block_size": 32, "chunk_rows": 64, **kw})


def read_group(store: shards.ShardStore, n_atoms: int):
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
    store = shards.ShardStore.open(store_path)
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
            expected = reference(
                torch.tensor([species]), torch.from_numpy(block.coordinates)
            )[0].numpy()
            np.testing.assert_allclose(aev[c], expected, rtol=0, atol=1e-5)


def test_aevs_equal_torchani_on_random_molecules(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)
    check_against_torchani(out, torchani.AEVComputer.like_1x())


def test_aevs_equal_torchani_on_real_s01(real_s01, tmp_path):
    out = tmp_path / "aev"
    featurize([str(real_s01)], out, FeaturizeSettings(), progress=False)
    check_against_torchani(out, torchani.AEVComputer.like_1x(), sample=300)
    manifest = json.loads((out / keys.MANIFEST).read_text())
    assert manifest["conformations"] == {"train": 8640, "valid": 1080, "test": 1080}
    assert manifest["rows"] == {"H": 36000, "C": 5400, "N": 3600, "O": 1800}


def test_ani2x_and_flat_layout(flat_file, tmp_path):
    out = tmp_path / "aev"
    featurize([str(flat_file)], out, settings(aev=AEVParams.ani2x()), progress=False)
    store = shards.ShardStore.open(out)
    assert store.elements == ("H", "C", "N", "O", "S", "F", "Cl")
    check_against_torchani(out, torchani.AEVComputer.like_2x())


def test_root_attrs_and_splits(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize([release_file], out, settings(), progress=False)  # a Path will do
    store = shards.ShardStore.open(out)
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
    store = shards.ShardStore.open(out)
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
    # The old store was moved aside, then removed while the new one was written.
    assert not (out / "stray").exists()
    assert [p.name for p in out.parent.iterdir() if "aev" in p.name] == ["aev"]
    shards.ShardStore.open(out)


def test_old_stores_left_aside_by_a_stopped_run_are_removed(release_file, tmp_path):
    out = tmp_path / "aev"
    left = tmp_path / ".aev.removing-0123456789ab"  # a run killed while removing it
    (left / "n005").mkdir(parents=True)
    (left / "n005" / "0.0").write_bytes(b"old chunk")
    (tmp_path / ".aevx.removing-0123456789ab").mkdir()  # another store's: kept
    featurize([str(release_file)], out, settings(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if "aev" in p.name) == [
        ".aevx.removing-0123456789ab",
        "aev",
    ]


def test_an_old_store_that_cannot_be_moved_aside_is_one_error(
    release_file, tmp_path, monkeypatch
):
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)

    def refused(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(shards.os, "rename", refused)
    with pytest.raises(StoreError, match="aev: cannot move the old store aside"):
        featurize([str(release_file)], out, settings(), overwrite=True, progress=False)
    monkeypatch.undo()
    shards.ShardStore.open(out)  # untouched


def test_a_store_cut_off_while_being_created_is_refused(
    release_file, tmp_path, monkeypatch
):
    """Killed while writing the store's metadata: the root's comes last, so the
    folder is not taken for a store to resume; --overwrite starts it again."""
    out, written = tmp_path / "aev", []

    def dying(self, data):
        if self.name == ".zgroup" and self.parent == out:
            raise KeyboardInterrupt("killed")
        written.append(self)
        return real(self, data)

    real = shards.Path.write_bytes
    monkeypatch.setattr(shards.Path, "write_bytes", dying)
    with pytest.raises(KeyboardInterrupt):
        featurize([str(release_file)], out, settings(), progress=False)
    monkeypatch.undo()
    assert any(p.name == ".zarray" for p in written)
    with pytest.raises(StoreError, match="not an aevpipe store.*--overwrite"):
        featurize([str(release_file)], out, settings(), progress=False)
    redo = featurize(
        [str(release_file)], out, settings(), overwrite=True, progress=False
    )
    assert redo.status == "written"
    shards.ShardStore.open(out)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failed_creation_is_the_runs_error(
    release_file, tmp_path, monkeypatch, threads
):
    """The store is created while the first units compute their AEVs: its error
    is the one raised, and nothing is written."""

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards, "create", failing)
    out = tmp_path / "aev"
    with pytest.raises(OSError, match="disk full"):
        featurize([str(release_file)], out, settings(threads=threads), progress=False)
    assert not out.exists()


def _arrays(path):
    store = shards.ShardStore.open(path)
    out = {}
    store.root.visititems(
        lambda name, v: out.__setitem__(name, v[:]) if hasattr(v, "shape") else None
    )
    return out


def assert_same_store(a, b):
    x, y = _arrays(a), _arrays(b)
    assert x.keys() == y.keys()
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)
    assert_checksums(b)


def assert_checksums(store):
    """The manifest's checksums (from CRCs taken while writing) are the files'."""
    manifest = json.loads((store / keys.MANIFEST).read_text())
    assert manifest["arrays"]
    for name, entry in manifest["arrays"].items():
        assert shards._checksum(store, name, {}) == (entry["crc32"], entry["bytes"])


def test_store_metadata_is_what_zarr_groups_write(release_file, tmp_path):
    """`create` writes each file of metadata as Zarr's Group API would."""
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)
    attrs = shards.read_attrs(out)
    memory = zarr.MemoryStore()
    root = zarr.open_group(memory, mode="w")
    root.attrs.put(attrs)
    for spec in shards._specs_of(attrs):
        root.zeros(
            spec.path,
            shape=spec.shape,
            chunks=shards.chunk_shape(spec, attrs[keys.ATTR_CHUNK_ROWS]),
            dtype=spec.dtype,
            compressor=shards.COMPRESSOR,
        )
    on_disk = {
        str(f.relative_to(out))
        for pattern in (".zgroup", ".zarray", ".zattrs")
        for f in out.rglob(pattern)
    }
    assert on_disk == set(memory)
    for key in memory:
        assert (out / key).read_bytes() == memory[key], key


def test_manifest_checksums_find_a_damaged_chunk(release_file, tmp_path):
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings(), progress=False)
    assert_checksums(out)
    manifest = json.loads((out / keys.MANIFEST).read_text())
    chunk = out / "n005" / "H" / keys.AEV / "0.0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    name = "n005/H/" + keys.AEV
    assert shards._checksum(out, name, {})[0] != manifest["arrays"][name]["crc32"]
    # A CRC known from writing is not trusted for a file of another size.
    chunk.write_bytes(bytes(data[:-1]))
    known = {f"{name}/0.0": (0, len(data))}
    assert shards._checksum(out, name, known) == shards._checksum(out, name, {})


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
    name = f"n005/H/{keys.CONFORMATION}"
    shutil.rmtree(out / name)
    with pytest.raises(StoreError, match=f"array {name} is missing"):
        shards.finish(out, {})


@pytest.mark.parametrize("threads", [1, 3])
def test_interrupted_run_is_refused_then_completed(
    release_file, tmp_path, monkeypatch, threads
):
    fresh = tmp_path / "fresh"
    featurize([str(release_file)], fresh, settings(), progress=False)
    out = tmp_path / "aev"
    real_write_unit, calls = stage.write_unit, []

    def dying(task, computed):
        if len(calls) >= 3:  # ">=": threads may pass the check together
            raise KeyboardInterrupt("killed")
        calls.append(task.unit.uid)
        return real_write_unit(task, computed)

    monkeypatch.setattr(stage, "write_unit", dying)
    with pytest.raises(KeyboardInterrupt):
        featurize([str(release_file)], out, settings(threads=threads), progress=False)
    with pytest.raises(StoreError, match="incomplete"):
        shards.ShardStore.open(out)
    monkeypatch.setattr(stage, "write_unit", real_write_unit)
    resumed = featurize([str(release_file)], out, settings(), progress=False)
    assert resumed.status == "resumed" and resumed.units_skipped == 3
    assert_same_store(fresh, out)


@pytest.mark.parametrize("threads", [1, 3])
def test_units_in_lost_buffers_are_redone(release_file, tmp_path, monkeypatch, threads):
    """A hard kill loses the writer's buffers: only units wholly on disk count as
    done, and the resumed store equals an uninterrupted one (units written by one
    thread, or by several in any order)."""
    from aevpipe import units

    fresh = tmp_path / "fresh"
    featurize([str(release_file)], fresh, settings(), progress=False)
    out = tmp_path / "aev"
    real_write_unit, calls = stage.write_unit, []

    def dying(task, computed):
        if len(calls) >= 4:  # one thread: CH3OH's first, H2O's two, NH3's first
            raise SystemExit("killed")
        calls.append(task.unit.uid)
        return real_write_unit(task, computed)

    monkeypatch.setattr(stage, "write_unit", dying)
    monkeypatch.setattr(  # a kill: nothing buffered reaches the disk
        stage, "flush_writes", lambda *a: units._writer.cache_clear()
    )
    with pytest.raises(SystemExit):
        featurize([str(release_file)], out, settings(threads=threads), progress=False)
    done = shards.done_units(out)
    assert len(done) < 4
    if threads == 1:  # several threads may not have completed a chunk before the kill
        assert done
    monkeypatch.undo()
    resumed = featurize([str(release_file)], out, settings(), progress=False)
    assert resumed.units_skipped == len(done)
    assert_same_store(fresh, out)


def test_unit_threads_write_the_same_store(release_file, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    featurize([str(release_file)], one, settings(threads=1), progress=False)
    featurize([str(release_file)], many, settings(threads=4), progress=False)
    assert_same_store(one, many)
    check_against_torchani(many, torchani.AEVComputer.like_1x())


def test_direct_and_buffered_writes_make_the_same_store(
    release_file, tmp_path, monkeypatch, spy_on_open
):
    """With this small input's chunks straight to the device (MIN_DIRECT lowered),
    the store is the one written through the page cache."""
    direct, buffered = tmp_path / "direct", tmp_path / "buffered"
    featurize([str(release_file)], buffered, settings(threads=2), progress=False)
    monkeypatch.setattr(chunk_files, "MIN_DIRECT", 4096)
    flags_seen = spy_on_open(refuse_direct=False)
    featurize(
        [str(release_file)],
        direct,
        settings(threads=2, direct_writes=True),
        progress=False,
    )
    assert sum(1 for f in flags_seen if f & os.O_DIRECT) > 10
    assert_same_store(direct, buffered)
    assert not list(direct.rglob("*.partial"))


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
    # AEVs to TorchANI's float32 rounding, which differs with its batch of
    # conformations; everything else exactly.
    x, y = _arrays(whole), _arrays(cut)
    assert x.keys() == y.keys()
    for name in x:
        if name.endswith("/" + keys.AEV):
            np.testing.assert_allclose(x[name], y[name], rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def test_units_sharing_a_chunk_are_done_when_it_is_written(release_file, tmp_path):
    """Many units, one row each, in the same chunk: none is done while the chunk
    is a buffer, all of them once the unit completing it has written it."""
    store = tmp_path / "aev"
    featurize([str(release_file)], store, settings(), progress=False)
    a = shards.ShardStore.open(store).layouts[0].n_atoms
    (store / keys.PROGRESS_DIR).mkdir()
    writer = shards.StoreWriter(store, locked=False)
    n = writer.array(a, keys.ENERGY).chunks[0]
    for uid in range(n - 1):
        touched = set()
        writer._put(a, keys.ENERGY, None, uid, np.full(1, float(uid)), touched)
        writer.unit_written(uid, a, {}, touched)
    assert shards.done_units(store) == {}
    writer._put(a, keys.ENERGY, None, n - 1, np.full(1, n - 1.0), set())
    writer.unit_written(n - 1, a, {}, set())
    assert sorted(shards.done_units(store)) == list(range(n))
    # The chunk's write settled all but the last together: one marker file for them.
    assert len(list((store / keys.PROGRESS_DIR).iterdir())) == 2
    written = zarr.open_array(str(store / keys.array_path(a, keys.ENERGY)), mode="r")
    np.testing.assert_array_equal(written[:n], np.arange(n, dtype=float))


def test_progress_files_of_earlier_versions_still_count(tmp_path):
    """Earlier versions wrote one marker per unit; a store they left incomplete
    resumes with those units done."""
    (tmp_path / keys.PROGRESS_DIR).mkdir()
    (tmp_path / keys.PROGRESS_DIR / "unit-0000007.json").write_text('{"atoms": 5}')
    shards.mark_done(tmp_path, [(3, {"atoms": 4}), (9, {"atoms": 6})])
    assert shards.done_units(tmp_path) == {
        3: {"atoms": 4},
        7: {"atoms": 5},
        9: {"atoms": 6},
    }


def test_a_failed_chunk_write_leaves_its_units_undone(
    release_file, tmp_path, monkeypatch
):
    """Units whose rows wait in a chunk that never reaches the disk stay undone."""
    store = tmp_path / "aev"
    featurize([str(release_file)], store, settings(), progress=False)
    a = shards.ShardStore.open(store).layouts[0].n_atoms
    (store / keys.PROGRESS_DIR).mkdir()
    writer = shards.StoreWriter(store, locked=False)
    array = writer.array(a, keys.ENERGY)
    n = array.chunks[0]
    touched = set()
    writer._put(a, keys.ENERGY, None, 0, np.zeros(n - 1), touched)
    writer.unit_written(900, a, {}, touched)
    assert 900 not in shards.done_units(store)  # its chunk is still a buffer

    def broken(*_, **__):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ChunkFiles, "write", broken)
    full = f"cannot write n{a:03d}/energy \\(No space left on device\\)"
    with pytest.raises(StoreWriteError, match=full):  # the unit completing the chunk
        writer._put(a, keys.ENERGY, None, n - 1, np.zeros(1), set())
    writer.unit_written(901, a, {}, set())
    writer.close()
    assert sorted(shards.done_units(store)) == [901]


@pytest.mark.parametrize("threads,direct", [(1, False), (2, False), (2, True)])
def test_a_full_disk_stops_with_one_error_and_the_same_command_completes(
    release_file, tmp_path, monkeypatch, fill_disk_after, threads, direct
):
    """Also where the files are written by I/O threads (direct writes, MIN_DIRECT
    lowered so that this small input's chunks go that way)."""
    fresh = tmp_path / "fresh"
    featurize([str(release_file)], fresh, settings(), progress=False)
    out = tmp_path / "aev"
    if direct:
        monkeypatch.setattr(chunk_files, "MIN_DIRECT", 4096)
    fill_disk_after(12)
    full = (
        r"aev: cannot write n\d{3}/\S+ \(No space left on device\); the units "
        "finished so far are kept: fix that and run the same command"
    )
    with pytest.raises(StoreWriteError, match=full):
        featurize(
            [str(release_file)],
            out,
            settings(threads=threads, direct_writes=direct),
            progress=False,
        )
    assert not shards.is_complete(out)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.partial*"))
    monkeypatch.undo()
    resumed = featurize([str(release_file)], out, settings(), progress=False)
    assert resumed.status == "resumed"
    assert_same_store(fresh, out)


def test_dask_executor_writes_the_same_store(release_file, tmp_path):
    """The same values, and the same bytes: Dask workers store every chunk through
    Zarr, the in-process writer encodes whole chunks itself."""
    pytest.importorskip("dask.distributed")
    a, b = tmp_path / "a", tmp_path / "b"
    featurize([str(release_file)], a, settings(), progress=False)
    featurize([str(release_file)], b, settings(), workers=2, progress=False)
    assert_same_store(a, b)
    arrays = [json.loads((s / keys.MANIFEST).read_text())["arrays"] for s in (a, b)]
    assert arrays[0] == arrays[1]


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
    assert not shards.is_complete(out)
    with pytest.raises(StoreError, match="incomplete"):
        shards.ShardStore.open(out)
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


def test_a_failed_scan_stops_hashing_the_inputs(release_file, tmp_path, monkeypatch):
    """The inputs are hashed while the scan runs; a bad input ends the run at once
    and the hashing thread with it, at its next block."""
    import threading

    from aevpipe import hashing

    blocks = []

    def slow_sha256(path, on_read):
        for _ in range(200):
            time.sleep(0.01)
            blocks.append(path)
            on_read(1)
        return "never"

    monkeypatch.setattr(hashing, "sha256_file", slow_sha256)
    missing = str(tmp_path / "missing.h5")
    with pytest.raises(InputError, match="no such file"):
        featurize(
            [str(release_file), missing], tmp_path / "aev", settings(), progress=False
        )
    hashers = [t for t in threading.enumerate() if t.name == "aevpipe-sha256"]
    for t in hashers:
        t.join(2)
    assert not any(t.is_alive() for t in hashers)
    assert len(blocks) < 200 and not (tmp_path / "aev").exists()


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
