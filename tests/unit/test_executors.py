"""The in-process executor's threads: every result once, errors in the caller, and
no new unit started after an error or once the caller stops."""

from __future__ import annotations

import threading
import time

import pytest

from aevpipe.executors import InProcessExecutor


def test_threads_run_every_task_once_and_finish_each():
    names = set()

    def fn(task):
        names.add(threading.current_thread().name)
        time.sleep(0.001 * (task % 3))
        return task * 10

    results = list(InProcessExecutor(threads=3).map_unordered(fn, range(40)))
    assert sorted(results) == [t * 10 for t in range(40)]
    assert len(names) > 1 and threading.current_thread().name not in names


def test_an_error_stops_the_other_threads_taking_tasks():
    started = []
    lock = threading.Lock()

    def fn(task):
        with lock:
            started.append(task)
        if task == 2:
            raise ValueError("bad unit")
        time.sleep(0.02)
        return task

    with pytest.raises(ValueError, match="bad unit"):
        list(InProcessExecutor(threads=2).map_unordered(fn, range(100)))
    # The error's thread and the other one's running unit, and not many more.
    assert len(started) < 10
    assert not [t for t in threading.enumerate() if t.name.startswith("aevpipe_")]


def test_closing_the_results_waits_for_running_units_and_starts_no_more():
    started, finished = [], []

    def fn(task):
        started.append(task)
        time.sleep(0.02)
        finished.append(task)
        return task

    results = InProcessExecutor(threads=2).map_unordered(fn, range(100))
    next(results)
    results.close()
    assert sorted(started) == sorted(finished)  # none left half-done
    assert len(started) < 10
