"""Shared fixtures: small seeded data files and the real ANI-1 subset when present."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from tests.synthetic import write_flat, write_release

REAL_S01 = Path(__file__).resolve().parents[1].parent / "shared/data/ani_gdb_s01.h5"


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
    """Call with N: from then on, chunk writes of in-process featurize writers fail
    after the first N chunk files, as on a full disk (metadata files still go). The
    writes fail where the files are written: in the unit threads, or in the I/O
    threads of direct writes."""
    from aevpipe.chunk_files import ChunkFiles

    def fill(chunk_files: int) -> None:
        real_write, written, lock = ChunkFiles.write, [], threading.Lock()

        def filling(self, file, data):
            with lock:
                full = len(written) >= chunk_files
                if not full:
                    written.append(file)
            if full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(self, file, data)

        monkeypatch.setattr(ChunkFiles, "write", filling)

    return fill


@pytest.fixture
def spy_on_open(monkeypatch):
    """Call with `refuse_direct`: from then on, the flags of every os.open that
    aevpipe.chunk_files makes, call by call, in the list returned; with
    `refuse_direct`, O_DIRECT opens fail as on a file system without it
    (EINVAL)."""
    from aevpipe import chunk_files

    def spy_on(refuse_direct: bool) -> list[int]:
        real_open, flags_seen = os.open, []

        def spy(path, flags, *args, **kwargs):
            flags_seen.append(flags)
            if refuse_direct and flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(chunk_files.os, "open", spy)
        return flags_seen

    return spy_on
