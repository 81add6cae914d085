"""A store's chunk files: through the page cache, or straight to the device.

Each file is written whole to a temporary name beside it and renamed into place, so
a reader never sees part of one.

By default files go through the page cache, written in the calling thread. With
`direct`, files of MIN_DIRECT bytes or more bypass it (O_DIRECT, from a page-aligned
buffer padded to whole 4 KiB blocks, the file then cut to its size), written by a
pool of I/O threads so that the unit threads go on encoding and computing while the
device takes the bytes; a file system that refuses O_DIRECT gets ordinary writes.

Which is faster depends on the machine's memory. On this project's 2-core VM the
host takes back the memory the guest frees, and a page used again must be backed
anew: a new page-cache page then cost up to 2.5 ms per MB, against 0.2 ms per MB
for memory freed in the last 2 s. With such cold memory, featurize of s01 x10 took
273-319 ms with `direct` against 388-478 ms through the page cache; where the
memory was warm (benchmark children run back to back, each handing its memory
back as it exits), the page cache was faster: in four runs of featurize_bench,
featurize ran at 0.75-0.87 and 1.29-1.37 of AEVComputer alone on s01 and s01 x10
through it, 0.64-0.73 and 1.12-1.27 with `direct`. Writing through the page cache
from I/O threads, too, was slower than from the calling thread (s01 x10: 272
against 253 ms). Bare metal's memory is always warm, so the page cache is the
default (benchmarks/RESULTS.md, session 13).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

BLOCK = 4096  # O_DIRECT writes: whole blocks from a block-aligned buffer
IO_THREADS = 2
# Smaller files go through the page cache: an O_DIRECT file costs its device's
# latency whatever its size (0.3-1.1 ms for a few KB on this project's VM).
MIN_DIRECT = 256 << 10


def finished(error: BaseException | None = None) -> Future:
    """A future already done: with `error`, or with no result."""
    future: Future = Future()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
    return future


class ChunkFiles:
    """Writes whole files, each to a temporary name and then renamed into place."""

    def __init__(self, direct: bool = False, threads: int | None = None):
        self.direct = direct and hasattr(os, "O_DIRECT")
        self._threads = threads or IO_THREADS
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._temp = itertools.count()
        self._local = threading.local()  # each I/O thread's aligned buffer

    def submit(
        self,
        file: str,
        data: memoryview,
        after: Callable[[BaseException | None], BaseException | None] | None = None,
    ) -> Future:
        """Write `data` (not to change until the future is done) as `file`: in an
        I/O thread when it goes straight to the device, else here. The future holds
        the write's OSError, if any. `after(error)` (None once the file is written)
        runs in the writing thread before the future is done, and returns the error
        the future is to hold."""
        if not self._goes_direct(data):
            try:
                self._write_then(file, data, after)
            except BaseException as exc:
                return finished(exc)
            return finished()
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._threads, thread_name_prefix="aevpipe-io"
                )
            return self._pool.submit(self._write_then, file, data, after)

    def _write_then(self, file: str, data: memoryview, after) -> None:
        error = None
        try:
            self.write(file, data)
        except BaseException as exc:
            error = exc
        if after is not None:
            error = after(error)
        if error is not None:
            raise error

    def write(self, file: str, data: memoryview) -> None:
        """Write `data` as `file`, here. A missing folder is made."""
        temp = f"{file}.{os.getpid()}-{next(self._temp)}.partial"
        try:
            try:
                self._write_new(temp, data)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(file), exist_ok=True)
                self._write_new(temp, data)
            os.replace(temp, file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temp)
            raise

    def close(self) -> None:
        """Wait for the writes submitted, and stop the I/O threads."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _goes_direct(self, data: memoryview) -> bool:
        return self.direct and data.nbytes >= MIN_DIRECT

    def _write_new(self, path: str, data: memoryview) -> None:
        if self._goes_direct(data):
            try:
                self._write_direct(path, data)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False  # this file system refuses O_DIRECT
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        with open(path, "xb") as f:
            f.write(data)

    def _write_direct(self, path: str, data: memoryview) -> None:
        size = data.nbytes
        padded = -(-size // BLOCK) * BLOCK
        buffer = self._buffer(padded)
        buffer[:size] = data
        buffer[size:padded] = bytes(padded - size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o666)
        try:
            written = os.write(fd, buffer[:padded])
            if written != padded:  # a regular file's writes are short on no space
                raise OSError(errno.ENOSPC, f"wrote {written} of {padded} bytes", path)
            if padded != size:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _buffer(self, size: int) -> memoryview:
        """This thread's page-aligned buffer of at least `size` bytes (an anonymous
        mapping, kept for the thread's next files)."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < size:
            mapping = mmap.mmap(-1, max(size, 8 << 20))
            buffer = self._local.buffer = memoryview(mapping)
        return buffer
