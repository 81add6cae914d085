"""Errors a user can cause. The CLI turns them into one line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class AevpipeError(Exception):
    """Base of the errors caused by input or settings, not by bugs."""


class SettingsError(AevpipeError, ValueError):
    """Settings that cannot work (a flag, a config file, a preset): a ValueError
    too, so that code calling the library directly may catch it as one."""


class InputError(AevpipeError):
    """Bad input data, naming the file and, where known, the HDF5 group."""

    def __init__(self, file: str, group: str | None, message: str):
        self.file, self.group, self.message = file, group, message
        where = f"{file}:{group}" if group else file
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        # Travels back from Dask workers intact.
        return (InputError, (self.file, self.group, self.message))


class StoreError(AevpipeError):
    """A shard store that is missing, incomplete or does not fit the request."""


class StoreWriteError(StoreError):
    """Writing into a store failed (a full disk, no permission); what was written
    before stays, and the store stays incomplete."""


class BusyError(AevpipeError):
    """Another process is writing the same store or run directory."""


class RunError(AevpipeError):
    """A training run directory that does not fit the request."""


def output_folder(out) -> None:
    """An AevpipeError unless the folder `out` is to be written in exists: a
    typo in a path is an error, not a new tree of folders."""
    parent = Path(out).parent
    if not parent.is_dir():
        raise AevpipeError(f"{out}: the folder {parent} does not exist")
