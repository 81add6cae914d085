"""Run independent work units in-process (default) or on Dask (imported lazily).

Both yield each unit's result as it finishes; the units themselves decide where their
output goes, so the store is the same whichever executor ran them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Protocol


class Executor(Protocol):
    """Runs `fn` over tasks, yielding results in completion order."""

    workers: int

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Iterable[Any]
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """`threads` threads of this process, each running whole units. Torch, Blosc
    and file writes release the GIL, so one thread's AEVs run beside another's
    compression and writing. At most `threads` units are in flight, so memory
    stays bounded by the unit size; on an error, the units running finish and no
    other starts."""

    def __init__(self, threads: int = 1):
        self.workers = max(1, threads)

    def map_unordered(self, fn, tasks):
        tasks = iter(tasks)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="aevpipe") as pool:
            running = set()
            try:
                while True:
                    for task in tasks:
                        running.add(pool.submit(fn, task))
                        if len(running) >= self.workers:
                            break
                    if not running:
                        return
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            finally:
                for future in running:
                    future.cancel()

    def close(self) -> None:
        pass


class DaskExecutor:
    """Dask distributed: a LocalCluster of `workers` processes, or an existing
    scheduler at `address`."""

    def __init__(self, workers: int | None = None, address: str | None = None):
        from dask.distributed import Client

        self._cluster = None
        if address:
            self.client = Client(address)
        else:
            self._cluster = _local_cluster(workers or 1)
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


def _local_cluster(workers: int):
    """One process per worker, one thread each; with GPUs and dask-cuda installed,
    its LocalCUDACluster (one worker per GPU, pinned by CUDA_VISIBLE_DEVICES)."""
    import torch

    if torch.cuda.is_available():
        try:
            from dask_cuda import LocalCUDACluster

            return LocalCUDACluster(
                n_workers=workers, threads_per_worker=1, dashboard_address=None
            )
        except ImportError:
            pass  # workers pick GPUs by their index: see units.worker_device
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )


def make_executor(workers: int | None, address: str | None, threads: int) -> Executor:
    """Dask when `workers` (a local cluster of that many) or a scheduler `address`
    is given, else `threads` threads in this process."""
    if address or workers:
        return DaskExecutor(workers=workers, address=address)
    return InProcessExecutor(threads)


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch threads per worker so that workers do not oversubscribe the cores."""
    return max(1, cpu_cores() // max(1, workers))
