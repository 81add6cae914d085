"""Output folders (featurize's store, train's run directory): one writer at a
time, and emptied in place.

An exclusive `flock` on the folder itself, held while a command writes there: a
second command on the same folder is refused at once instead of mixing its files
with the first one's. The kernel drops the lock when the process ends, however it
ends, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from aevpipe.errors import AevpipeError, BusyError


@contextlib.contextmanager
def only_writer(folder: Path, command: str, what: str):
    """Hold `folder` (made if absent), the `what` that `command` writes, for this
    process inside the block; a BusyError when another process holds it, an
    AevpipeError naming the folder when it cannot be made."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AevpipeError(f"{folder}: cannot create the {what} ({reason})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{folder}: another {command} is writing here; wait for it to end "
                "or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def clear(folder: Path) -> None:
    """Delete everything inside `folder`, not the folder (its writer holds the
    lock on it)."""
    for entry in Path(folder).iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
