"""Shared fixtures: small seeded data files and the real ANI-1 subset when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import write_flat, write_release

REAL_S01 = Path(__file__).resolve().parents[1].parent / "shared/data/ani_gdb_s01.h5"


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ is marked `e2e` (`pytest -m "not e2e"` runs the
    unit tests alone)."""
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def release_file(tmp_path: Path) -> Path:
    """Four molecules, 3 to 6 atoms, in the ANI-1 release layout."""
    counts = {"CH4": 120, "NH3": 90, "H2O": 60, "CH3OH": 75}
    return write_release(tmp_path / "ani_gdb_s01.h5", counts, seed=1)


@pytest.fixture
def flat_file(tmp_path: Path) -> Path:
    """Three formulas in the flat (ANI-1x-like) layout."""
    return write_flat(tmp_path / "flat.h5", {"CH4": 40, "HCN": 30, "H2O": 20}, seed=2)


@pytest.fixture
def real_s01() -> Path:
    """The real ANI-1 subset 1, or a skip saying where it was looked for."""
    if not REAL_S01.is_file():
        pytest.skip(f"real ANI-1 subset not found at {REAL_S01}")
    return REAL_S01


@pytest.fixture
def store(release_file, tmp_path) -> Path:
    """A complete shard store of `release_file`, small chunks so blocks are many."""
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize

    out = tmp_path / "aev"
    featurize(
        [str(release_file)],
        out,
        FeaturizeSettings(block_size=40, chunk_rows=64),
        progress=False,
    )
    return out


@pytest.fixture
def fill_disk_after(monkeypatch):
    """Call with N: from then on, chunk files written into Zarr directory stores
    fail after the first N, as on a full disk (metadata files still go)."""
    import errno
    import os
    import threading

    import zarr

    def fill(chunk_files: int) -> None:
        real, written, lock = zarr.DirectoryStore.__setitem__, [], threading.Lock()

        def filling(self, key, value):
            if not key.rsplit("/", 1)[-1].startswith(".z"):
                with lock:
                    if len(written) >= chunk_files:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    written.append(key)
            return real(self, key, value)

        monkeypatch.setattr(zarr.DirectoryStore, "__setitem__", filling)

    return fill
