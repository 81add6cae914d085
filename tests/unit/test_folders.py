"""Output folders: one writer at a time, a killed writer's lock gone with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from aevpipe.errors import AevpipeError, BusyError
from aevpipe.folders import clear, only_writer

HOLD = """
import sys, time
from aevpipe.folders import only_writer
with only_writer(sys.argv[1], "featurize", "store"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "aev"
    busy = pytest.raises(BusyError, match="another featurize is writing here")
    with (
        only_writer(out, "featurize", "store"),
        busy,
        only_writer(out, "featurize", "store"),
    ):
        pass
    with only_writer(out, "featurize", "store"):  # free again
        pass


def test_a_killed_writer_leaves_no_lock(tmp_path):
    out = tmp_path / "aev"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(BusyError), only_writer(out, "featurize", "store"):
            pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            with only_writer(out, "featurize", "store"):
                break
        except BusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_folder_that_cannot_be_made_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    refused = pytest.raises(AevpipeError, match="file/aev: cannot create the store")
    with refused, only_writer(tmp_path / "file" / "aev", "featurize", "store"):
        pass


def test_clear_empties_the_folder_and_keeps_it(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    (tmp_path / "g").write_text("y")
    clear(tmp_path)
    assert tmp_path.is_dir() and not list(tmp_path.iterdir())
