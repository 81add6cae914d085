"""Run independent work units in-process (default) or on Dask (imported lazily).

Both yield each unit's result as it finishes; the units themselves decide where their
output goes, so the store is the same whichever executor ran them.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aevpipe import sharing

_END = object()  # no more tasks, or a thread's last result


class Executor(Protocol):
    """Runs `fn` over tasks, yielding results in completion order."""

    concurrent: bool  # whether units may run at the same time (writers need locks)
    workers: int

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Iterable[Any]
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...


def _both(fn, finish, task):
    return finish(task, fn(task))


class InProcessExecutor:
    """In this process. With `threads` > 1, that many threads each run whole units
    (`fn` then `finish`), at most one unit per thread in flight, so memory stays
    bounded; with one thread, units run one after another, and with `overlap` the
    next unit's `fn` runs while a background thread does the previous unit's
    `finish`.

    Threads pay on the CPU: torch releases the GIL inside its kernels and Blosc and
    file writes release it too, so one thread's AEVs run beside another's
    compression and writing. On this project's 2-core machine two threads of one
    torch thread each featurized s01 x10 in 0.72 of the time of one thread with two
    torch threads, and the synthetic s01-s04 in 0.70 (benchmarks/RESULTS.md).
    Overlap pays where `fn` leaves the CPU free (AEVs on a GPU).
    """

    concurrent = False  # one process: no locks between writers needed

    def __init__(self, overlap: bool = False, threads: int = 1):
        self.overlap = overlap
        self.workers = max(1, threads)

    def map_unordered(self, fn, tasks, finish=None):
        if self.workers > 1:
            yield from self._threaded(fn, tasks, finish)
        elif finish is None or not self.overlap:
            for task in tasks:
                result = fn(task)
                yield result if finish is None else finish(task, result)
        else:
            yield from self._overlapped(fn, tasks, finish)

    def _threaded(self, fn, tasks, finish):
        """Each thread takes its next task itself as soon as it is free: handing
        them out from the calling thread made a free thread wait for that thread to
        get the GIL back from the busy ones (up to its 5 ms switch interval), 1.7-4
        ms between units on s01 (benchmarks/RESULTS.md, session 11). On an error
        (or the caller closing the results), no thread takes another task; the
        units running finish first.

        A thread with no task left helps the others with the jobs they share
        (`aevpipe.sharing`: a unit's chunk writes) until all threads are done."""
        run = fn if finish is None else functools.partial(_both, fn, finish)
        source, lock = iter(tasks), threading.Lock()
        results: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        shared = sharing.SharedJobs(self.workers)

        def work() -> None:
            sharing.bind(shared)
            try:
                while not stop.is_set():
                    with lock:
                        task = next(source, _END)
                    if task is _END:
                        break
                    results.put((True, run(task)))
            except BaseException as exc:  # raised again in the caller
                stop.set()
                results.put((False, exc))
            finally:
                shared.help()
                sharing.bind(None)
                results.put(_END)

        threads = [
            threading.Thread(target=work, name=f"aevpipe-unit-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in threads:
            t.start()
        try:
            ended = 0
            while ended < len(threads):
                item = results.get()
                if item is _END:
                    ended += 1
                    continue
                ok, value = item
                if not ok:
                    raise value
                yield value
        finally:
            stop.set()
            for t in threads:
                t.join()

    def _overlapped(self, fn, tasks, finish):
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for task in tasks:
                intermediate = fn(task)
                if pending is not None:
                    yield pending.result()
                pending = pool.submit(finish, task, intermediate)
            if pending is not None:
                yield pending.result()

    def close(self) -> None:
        pass


class DaskExecutor:
    """Dask distributed: a LocalCluster of `workers` processes, or an existing
    scheduler at `address`."""

    concurrent = True

    def __init__(self, workers: int | None = None, address: str | None = None):
        from dask.distributed import Client

        self._cluster = None
        if address:
            self.client = Client(address)
        else:
            self._cluster = _local_cluster(workers or 1)
            self.client = Client(self._cluster)
        self.workers = max(1, len(self.client.scheduler_info()["workers"]))

    def map_unordered(self, fn, tasks, finish=None):
        from dask.distributed import as_completed

        if finish is not None:
            fn = functools.partial(_both, fn, finish)
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


def make_executor(
    workers: int | None,
    address: str | None,
    overlap: bool = False,
    threads: int = 1,
) -> Executor:
    """Dask when `workers` (a local cluster of that many) or a scheduler `address`
    is given, else in-process (`overlap`, `threads`: see InProcessExecutor)."""
    if address or workers:
        return DaskExecutor(workers=workers, address=address)
    return InProcessExecutor(overlap=overlap, threads=threads)


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch threads per worker so that workers do not oversubscribe the cores."""
    return max(1, cpu_cores() // max(1, workers))
