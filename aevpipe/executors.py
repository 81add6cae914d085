"""Run independent work units in-process (default) or on Dask (imported lazily).

Both yield each unit's result as it finishes; the units themselves decide where their
output goes, so the store is the same whichever executor ran them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol


class Executor(Protocol):
    """Runs `fn` over tasks, yielding results in completion order."""

    concurrent: bool  # whether units may run at the same time (writers need locks)
    workers: int

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Iterable[Any]
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Plain Python: one unit after another, in this process."""

    concurrent = False
    workers = 1

    def map_unordered(self, fn, tasks):
        for task in tasks:
            yield fn(task)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Dask distributed: a LocalCluster of `workers` processes, or an existing
    scheduler at `address`."""

    concurrent = True

    def __init__(self, workers: int | None = None, address: str | None = None):
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if address:
            self.client = Client(address)
        else:
            self._cluster = LocalCluster(
                n_workers=workers or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            self.client = Client(self._cluster)
        self.workers = max(1, len(self.client.scheduler_info()["workers"]))

    def map_unordered(self, fn, tasks):
        from dask.distributed import as_completed

        futures = self.client.map(fn, list(tasks), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(workers: int | None, address: str | None) -> Executor:
    """In-process unless workers > 1 or a scheduler address is given."""
    if address or (workers and workers > 1):
        return DaskExecutor(workers=workers, address=address)
    return InProcessExecutor()


def threads_per_worker(workers: int) -> int:
    """Torch threads per worker so that workers do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
