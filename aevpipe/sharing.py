"""Jobs a thread of an in-process run shares with the run's idle threads.

A unit thread that has computed its unit hands the unit's chunk writes to `run`,
which does them itself and lets every thread of the run that has no unit left to
take (`SharedJobs.help`) do some of them, and returns once all are done. Without it
the run's last unit is written by one thread while the others wait: on s01, CH4's
unit (60% of the atoms) wrote for 11-12 ms with the other core idle for 8-10 ms of
it (benchmarks/RESULTS.md, session 13).

Outside the threads of an `InProcessExecutor` (one thread, Dask workers, the
caller's own thread), `run` does the jobs one after another, in order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

Job = Callable[[], Any]

_bound = threading.local()


class _Batch:
    """One `run` call's jobs: those not started (with their places), how many are
    not done, the first error, the results."""

    __slots__ = ("jobs", "left", "error", "results")

    def __init__(self, jobs: list[Job]):
        self.jobs = deque(enumerate(jobs))
        self.left = len(jobs)
        self.error: BaseException | None = None
        self.results: list[Any] = [None] * len(jobs)


class SharedJobs:
    """Jobs shared among `threads` threads. Each of them calls `help` once it has
    no more work of its own, and until then may `run` jobs of its own.

    A thread in `run` does only its own batch's jobs, from the front, and then
    waits for those that helpers took; it goes on to its next unit as soon as it
    can. Helpers take from the back of the oldest batch with jobs left."""

    def __init__(self, threads: int):
        self._cond = threading.Condition()
        self._batches: deque[_Batch] = deque()  # those with jobs not started
        self._working = threads  # threads that have not called `help`: may add jobs

    def run(self, jobs: Iterable[Job]) -> list[Any]:
        """Do `jobs`, with the idle threads' help; return their results, in order,
        when all are done. The first job's error is raised then, once none of the
        jobs is still running."""
        batch = _Batch(list(jobs))
        if not batch.left:
            return []
        with self._cond:
            self._batches.append(batch)
            self._cond.notify_all()
        while True:
            with self._cond:
                if not batch.jobs:
                    while batch.left:
                        self._cond.wait()  # the last of ours are being done by others
                    break
                job = batch.jobs.popleft()
                if not batch.jobs:
                    self._batches.remove(batch)
            self._do(batch, job)
        if batch.error is not None:
            raise batch.error
        return batch.results

    def help(self) -> None:
        """Do other threads' jobs until every thread has called `help` and none is
        left to do."""
        with self._cond:
            self._working -= 1
            self._cond.notify_all()
        while True:
            with self._cond:
                while not self._batches and self._working:
                    self._cond.wait()
                if not self._batches:
                    return
                batch = self._batches[0]
                job = batch.jobs.pop()
                if not batch.jobs:
                    self._batches.popleft()
            self._do(batch, job)

    def _do(self, batch: _Batch, job: tuple[int, Job]) -> None:
        error = None
        try:
            batch.results[job[0]] = job[1]()
        except BaseException as exc:  # raised in the thread that ran the batch
            error = exc
        with self._cond:
            batch.left -= 1
            if error is not None and batch.error is None:
                batch.error = error
            self._cond.notify_all()


def bind(shared: SharedJobs | None) -> None:
    """Make `shared` this thread's queue for `run` (None: no sharing)."""
    _bound.shared = shared


def run(jobs: Iterable[Job]) -> list[Any]:
    """Do `jobs`: shared with the idle threads of this thread's run when it has a
    queue (see `bind`), else here, in order (the first error stops them). Returns
    their results, in order, when all are done."""
    shared = getattr(_bound, "shared", None)
    if shared is not None:
        return shared.run(jobs)
    return [job() for job in jobs]
