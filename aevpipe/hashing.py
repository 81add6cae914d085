"""The input files' sha256, computed in a background thread while a run scans them.

A store's `sources` name each input file with its sha256, and so does the job
fingerprint that tells a resumed run from another. Hashing reads every byte of
every input: for the whole ANI-1 release some GB, for s01 0.45 ms that came before
the first unit, serially, after the scan (benchmarks/RESULTS.md, session 14).
`InputHashes` starts on the files at once, in one daemon thread that reads them
block by block (file reads and `hashlib` release the GIL), so hashing overlaps with
the scan, which reads the same files' structure. It stops at the next block when
the run is done with it (an error in the scan, say), so a failed run does not wait
for it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable

BLOCK = 1 << 22


class Cancelled(Exception):
    """Hashing was stopped before the file's end."""


def sha256_file(
    path: str, bufsize: int = BLOCK, on_read: Callable[[int], object] | None = None
) -> str:
    """Hex sha256 of a file, read in blocks (`on_read(n)` after each)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            digest.update(chunk)
            if on_read is not None:
                on_read(len(chunk))
    return digest.hexdigest()


class InputHashes:
    """sha256 of each of `files` (duplicates once), one after another in a
    background thread started here. `digest(file)` waits for one; errors (a
    missing file, say, which the scan reports in its own words) are raised there.
    `follow(update)` passes on the bytes read from then on, with those read so far
    first (a progress bar). `stop()` ends the thread at its next block."""

    def __init__(self, files: Iterable[str | os.PathLike]):
        self._files = list(dict.fromkeys(str(f) for f in files))
        self._results: dict[str, str | BaseException] = {}
        self._done = {f: threading.Event() for f in self._files}
        self._lock = threading.Lock()
        self._read = 0
        self._update: Callable[[int], object] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="aevpipe-sha256", daemon=True
        )
        self._thread.start()

    def digest(self, file: str | os.PathLike) -> str:
        """The file's hex sha256, once computed."""
        file = str(file)
        self._done[file].wait()
        result = self._results[file]
        if isinstance(result, BaseException):
            raise result
        return result

    def follow(self, update: Callable[[int], object] | None) -> None:
        """Call `update(n)` with the bytes read so far, then as they are read;
        None stops that."""
        with self._lock:
            self._update = update
            if update is not None and self._read:
                update(self._read)

    def stop(self) -> None:
        """Stop hashing at the next block; digests not yet computed raise
        Cancelled."""
        self._stopped.set()

    def _on_read(self, n: int) -> None:
        if self._stopped.is_set():
            raise Cancelled
        with self._lock:
            self._read += n
            if self._update is not None:
                self._update(n)

    def _run(self) -> None:
        for file in self._files:
            try:
                if self._stopped.is_set():
                    raise Cancelled
                self._results[file] = sha256_file(file, on_read=self._on_read)
            except BaseException as exc:  # raised again by digest()
                self._results[file] = exc
            self._done[file].set()
