"""The inputs' sha256 in a background thread: the digests, errors, progress, stop."""

from __future__ import annotations

import hashlib
import threading

import pytest

from aevpipe import hashing
from aevpipe.hashing import Cancelled, InputHashes, sha256_file


def _files(tmp_path, sizes):
    out = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        out.append(str(path))
    return out


def test_digests_are_sha256_of_each_file_once(tmp_path):
    files = _files(tmp_path, [0, 1000, 3 * 4096 + 7])
    hashes = InputHashes(files + files[:1])
    for f in files:
        with open(f, "rb") as fh:
            assert hashes.digest(f) == hashlib.sha256(fh.read()).hexdigest()
        assert hashes.digest(f) == sha256_file(f, bufsize=4096)


def test_an_unreadable_file_raises_where_its_digest_is_asked(tmp_path):
    files = _files(tmp_path, [10])
    hashes = InputHashes([str(tmp_path / "missing.h5"), *files])
    with pytest.raises(FileNotFoundError):
        hashes.digest(str(tmp_path / "missing.h5"))
    assert hashes.digest(files[0]) == sha256_file(files[0])


def test_follow_gets_the_bytes_read_before_and_after(tmp_path, monkeypatch):
    monkeypatch.setattr(
        hashing, "sha256_file", lambda p, on_read: sha256_file(p, 1000, on_read)
    )
    files = _files(tmp_path, [2500, 1500])
    hashes = InputHashes(files)
    hashes.digest(files[0])
    seen = []
    hashes.follow(seen.append)
    hashes.digest(files[1])
    hashes.follow(None)
    assert seen[0] >= 2500 and sum(seen) == 4000


def test_stop_ends_the_thread_at_its_next_block(tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow(path, on_read):
        started.set()
        release.wait(5)
        on_read(1)  # the next block: raises Cancelled once stopped
        return "never"

    monkeypatch.setattr(hashing, "sha256_file", slow)
    files = _files(tmp_path, [10, 10])
    hashes = InputHashes(files)
    assert started.wait(5)
    hashes.stop()
    release.set()
    for f in files:
        with pytest.raises(Cancelled):
            hashes.digest(f)
    hashes._thread.join(5)
    assert not hashes._thread.is_alive()
