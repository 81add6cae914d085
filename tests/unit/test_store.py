"""The store package's pieces: chunk locks, chunk files, what --overwrite removes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zarr

from aevpipe.errors import StoreError
from aevpipe.store import remove
from aevpipe.store.manifest import chunk_files
from aevpipe.store.writer import FileLocks


def test_file_locks_exclude_threads_of_one_process(tmp_path):
    """flock locks belong to open files, so two threads of one process exclude each
    other (POSIX record locks, which Zarr's ProcessSynchronizer uses, would not)."""
    locks, inside, most = FileLocks(tmp_path), [0], [0]

    def hold():
        for _ in range(20):
            with locks["n005/H/aev/0.0"]:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["n005%H%aev%0.0"]


def test_writers_sharing_a_chunk_keep_each_others_rows(tmp_path):
    """Threads writing disjoint rows of one chunk through Zarr under the locks:
    every row is kept (Zarr reads, updates and writes the chunk back)."""
    store = zarr.DirectoryStore(str(tmp_path / "s"))
    locks = FileLocks(tmp_path)
    root = zarr.group(store=store)
    root.zeros("a", shape=(400,), chunks=(400,), dtype="i4")
    array = zarr.open_group(store, mode="r+", synchronizer=locks)["a"]

    def write(k):
        for i in range(k, 400, 8):
            array[i : i + 1] = i

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(array[:], np.arange(400))


def test_chunk_files_leave_out_metadata_and_temporary_files(tmp_path):
    folder = tmp_path / "n005" / "energy"
    folder.mkdir(parents=True)
    for name in (".zarray", "0", "1", "10", "2.0", "0.5c39a2.partial"):
        (folder / name).write_bytes(b"x")
    assert chunk_files(tmp_path, "n005/energy") == ["0", "1", "10", "2.0"]
    with pytest.raises(StoreError, match="array n005/missing is missing"):
        chunk_files(tmp_path, "n005/missing")


def test_remove_refuses_what_is_not_a_store(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(StoreError, match="not an aevpipe store"):
        remove(mine)
    assert (mine / "notes.txt").exists()
    a_file = tmp_path / "file"
    a_file.write_text("keep")
    with pytest.raises(StoreError, match="not an aevpipe store"):
        remove(a_file)
    remove(tmp_path / "nothing here")  # nothing to do
