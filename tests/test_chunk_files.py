"""Chunk files: the exact bytes under their name, whatever the size, through the
page cache here or straight to the device from an I/O thread (or, where that is
refused, through the page cache); nothing half-written left on an error."""

from __future__ import annotations

import os

import pytest

from aevpipe import chunk_files
from aevpipe.chunk_files import ChunkFiles

BIG = chunk_files.MIN_DIRECT  # from this size on, files go straight to the device
SIZES = [0, 1, 4095, 4096, 4097, BIG - 1, BIG, BIG + 1, 3 * (1 << 20) + 5]


def _payload(size: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(size))


@pytest.mark.parametrize("direct", [True, False])
def test_files_hold_exactly_their_bytes_and_nothing_else_is_left(tmp_path, direct):
    files = ChunkFiles(direct=direct)
    futures = []
    for size in SIZES:
        data = memoryview(_payload(size))
        futures.append(files.submit(str(tmp_path / f"s{size}"), data))
        files.write(str(tmp_path / f"w{size}"), data)
    files.close()
    assert all(f.result() is None for f in futures)
    for size in SIZES:
        for prefix in "sw":
            assert (tmp_path / f"{prefix}{size}").read_bytes() == _payload(size)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{p}{s}" for s in SIZES for p in "sw"
    )


def test_large_files_go_beside_the_page_cache_here_small_ones_not(
    tmp_path, spy_on_open
):
    """This project's machines (ext4) take O_DIRECT: the writer keeps using it, for
    files of MIN_DIRECT bytes or more."""
    flags_seen = spy_on_open(refuse_direct=False)
    files = ChunkFiles(direct=True)
    files.write(str(tmp_path / "big"), memoryview(_payload(BIG + 100)))
    files.write(str(tmp_path / "small"), memoryview(_payload(BIG - 1)))
    assert files.direct
    assert [bool(f & os.O_DIRECT) for f in flags_seen] == [True]  # small: open()
    assert (tmp_path / "big").read_bytes() == _payload(BIG + 100)


def test_a_file_system_refusing_o_direct_gets_ordinary_writes(tmp_path, spy_on_open):
    flags_seen = spy_on_open(refuse_direct=True)
    files = ChunkFiles(direct=True)
    files.write(str(tmp_path / "a"), memoryview(_payload(BIG)))
    files.write(str(tmp_path / "b"), memoryview(_payload(BIG + 7)))
    assert not files.direct
    assert (tmp_path / "a").read_bytes() == _payload(BIG)
    assert (tmp_path / "b").read_bytes() == _payload(BIG + 7)
    assert sum(1 for f in flags_seen if f & os.O_DIRECT) == 1  # asked once only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_missing_folder_is_made(tmp_path):
    files = ChunkFiles(direct=True)
    files.write(str(tmp_path / "n005" / "H" / "aev" / "0.0"), memoryview(b"xyz"))
    assert (tmp_path / "n005" / "H" / "aev" / "0.0").read_bytes() == b"xyz"


def test_an_error_is_the_futures_and_leaves_no_partial_file(tmp_path):
    (tmp_path / "blocked").write_text("a file where a folder should be")
    files = ChunkFiles(direct=True)
    future = files.submit(str(tmp_path / "blocked" / "0.0"), memoryview(b"abc"))
    with pytest.raises(OSError):
        future.result()
    files.close()
    assert [p.name for p in tmp_path.iterdir()] == ["blocked"]
