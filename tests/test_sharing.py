"""Shared jobs: each done once, an idle thread helps, the owner returns only when
all of its jobs are done, errors reach the owner, helpers leave when all are idle."""

from __future__ import annotations

import threading

import pytest

from aevpipe import sharing
from aevpipe.executors import InProcessExecutor

WAIT = 10.0  # seconds: a test that would hang fails instead


def _waiting_pair(log: list):
    """Two jobs: the first waits until the second has run, so the second must be
    done by another thread (the first holds its thread)."""
    second_done = threading.Event()

    def first() -> None:
        assert second_done.wait(WAIT), "no other thread took the second job"
        log.append(("first", threading.current_thread().name))

    def second() -> None:
        log.append(("second", threading.current_thread().name))
        second_done.set()

    return [first, second]


def test_without_a_queue_jobs_run_here_in_order():
    done = []
    sharing.run([lambda i=i: done.append(i) for i in range(5)])
    assert done == list(range(5))


def test_an_idle_thread_does_some_of_the_jobs_and_run_waits_for_them():
    shared, log = sharing.SharedJobs(threads=2), []
    helper = threading.Thread(target=shared.help, name="helper")
    helper.start()
    shared.run(_waiting_pair(log))
    assert sorted(log) == [
        ("first", threading.current_thread().name),
        ("second", "helper"),
    ]
    shared.help()  # the owner is idle too: the helper leaves
    helper.join(WAIT)
    assert not helper.is_alive()


def test_a_job_error_reaches_the_owner_after_all_its_jobs_are_done():
    shared, log = sharing.SharedJobs(threads=2), []
    helper = threading.Thread(target=shared.help)
    helper.start()
    first, second = _waiting_pair(log)

    def failing() -> None:
        second()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        shared.run([first, failing])
    assert [name for name, _ in log] == ["second", "first"]
    shared.help()
    helper.join(WAIT)
    assert not helper.is_alive()


def test_helpers_leave_once_every_thread_is_idle():
    shared = sharing.SharedJobs(threads=3)
    helpers = [threading.Thread(target=shared.help) for _ in range(2)]
    for h in helpers:
        h.start()
    assert all(h.is_alive() for h in helpers)
    shared.help()
    for h in helpers:
        h.join(WAIT)
        assert not h.is_alive()


def test_executor_threads_with_no_unit_left_help_the_others():
    log = []

    def finish(task, value):
        if task == 0:  # the other thread ends its one unit and helps with these
            sharing.run(_waiting_pair(log))
        return value

    results = list(
        InProcessExecutor(threads=2).map_unordered(lambda t: t, [0, 1], finish)
    )
    assert sorted(results) == [0, 1]
    (_, owner), (_, helper) = sorted(log)
    assert owner != helper and {owner, helper} <= {"aevpipe-unit-0", "aevpipe-unit-1"}
