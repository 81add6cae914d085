"""A damaged store is never read as data: each kind of damage is one line naming
the file, from opening, reading, training, featurize's rerun and `verify`."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from aevpipe import keys
from aevpipe.cli import cli
from aevpipe.config import FeaturizeSettings
from aevpipe.errors import StoreError
from aevpipe.stages.featurize import featurize
from aevpipe.store import ShardStore, verify

AEV_CHUNK = f"n005/H/{keys.AEV}/0.0"
ENERGY_CHUNK = f"n005/{keys.ENERGY}/0"


@pytest.fixture
def made(release_file, tmp_path):
    """A store of `release_file` (small chunks, so many files) and its settings."""
    settings = FeaturizeSettings(block_size=40, chunk_rows=64)
    out = tmp_path / "aev"
    featurize([str(release_file)], out, settings, progress=False)
    return out, settings


def flip(path, offset=-1):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def read_everything(store: ShardStore) -> None:
    for layout in store.layouts:
        for name in (keys.ENERGY, keys.SPECIES, keys.MOLECULE, keys.INDEX):
            store.read(layout.n_atoms, name, None, 0, layout.n_conformations)
        for e, element in enumerate(store.elements):
            rows = layout.total_rows()[e]
            if rows:
                store.read(layout.n_atoms, keys.AEV, element, 0, rows)


def test_a_whole_store_verifies_and_reads(made):
    out, _ = made
    assert verify(out) == []
    read_everything(ShardStore.open(out))
    result = CliRunner().invoke(cli, ["verify", str(out)])
    assert result.exit_code == 0 and "whole" in result.output


@pytest.mark.parametrize("chunk", [AEV_CHUNK, ENERGY_CHUNK])
def test_a_missing_chunk_is_refused_everywhere(made, release_file, tmp_path, chunk):
    out, settings = made
    (out / chunk).unlink()
    with pytest.raises(StoreError, match=f"chunk file {chunk} is missing"):
        ShardStore.open(out)
    assert verify(out) == [f"{chunk}: missing"]
    runner = CliRunner()
    result = runner.invoke(cli, ["verify", str(out)])
    assert result.exit_code == 2 and f"{chunk}: missing" in result.output
    args = ["train", "--shards", str(out), "--out", str(tmp_path / "run")]
    result = runner.invoke(cli, [*args, "--no-progress", "--max-epochs", "1"])
    assert result.exit_code == 2, result.output
    assert f"chunk file {chunk} is missing" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(StoreError, match="missing"):  # not "complete already"
        featurize([str(release_file)], out, settings, progress=False)


def test_a_truncated_chunk_is_refused_on_open(made):
    out, _ = made
    data = (out / AEV_CHUNK).read_bytes()
    (out / AEV_CHUNK).write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=f"{AEV_CHUNK} is {len(data) // 2} bytes"):
        ShardStore.open(out)
    (problem,) = verify(out)
    assert problem.startswith(f"{AEV_CHUNK}: CRC-32")


@pytest.mark.parametrize("offset", [-1, 20, 100])
def test_flipped_bytes_are_found_when_read(made, offset):
    """The same size, other bytes: the store opens (its files are all there), and
    reading the chunk is one error naming it, whether or not it would decode."""
    out, _ = made
    flip(out / AEV_CHUNK, offset)
    store = ShardStore.open(out)
    with pytest.raises(StoreError, match=f"{AEV_CHUNK} does not match its CRC-32"):
        read_everything(store)
    assert [p.split(":")[0] for p in verify(out)] == [AEV_CHUNK]


def test_a_deleted_array_and_a_bad_manifest_are_one_line(made):
    out, _ = made
    manifest = out / keys.MANIFEST
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.raises(StoreError, match="manifest.json: cannot be read"):
        ShardStore.open(out)
    manifest.write_text(good)
    shutil.rmtree(out / "n005/C")
    with pytest.raises(StoreError, match="n005/C/aev/.zarray is missing"):
        ShardStore.open(out)
    assert "n005/C/aev: the array's folder is missing" in verify(out)


def test_identical_runs_record_identical_checksums(release_file, tmp_path):
    """Checksums are of the bytes as written, and two runs write the same bytes."""
    manifests = []
    for name in ("a", "b"):
        featurize(
            [str(release_file)], tmp_path / name, FeaturizeSettings(), progress=False
        )
        manifests.append(json.loads((tmp_path / name / keys.MANIFEST).read_text()))
    assert manifests[0]["arrays"] == manifests[1]["arrays"]


def test_damaged_metadata_is_one_line(made, tmp_path):
    """A deleted or garbled .zarray, an edited `elements` attribute: errors that
    name what is wrong, from opening or from training, never a KeyError."""
    out, _ = made
    zarray = out / "n005" / "H" / keys.AEV / ".zarray"
    good = zarray.read_text()
    zarray.unlink()
    with pytest.raises(StoreError, match="n005/H/aev/.zarray is missing"):
        ShardStore.open(out)
    zarray.write_text(good[:20])
    store = ShardStore.open(out)
    with pytest.raises(StoreError, match="array n005/H/aev cannot be opened"):
        read_everything(store)
    zarray.write_text(good)
    attrs = json.loads((out / ".zattrs").read_text())
    attrs[keys.ATTR_ELEMENTS] = ["H", "C", "N", "F"]
    (out / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(StoreError, match="n005/F/aev/.zarray is missing|F/aev"):
        ShardStore.open(out)
    result = CliRunner().invoke(
        cli, ["train", "--shards", str(out), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
