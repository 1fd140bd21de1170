"""Writeback a little at a time (gateway.storage.writeback): the files given
are asked to be written back every interval, from a thread, and a closed
descriptor is harmless."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.storage.writeback import Writeback, available, start_write, start_writeback


def test_every_interval_each_open_file_is_asked_to_be_written_back() -> None:
    asked: list[int] = []
    three_rounds = threading.Event()

    def start(fd: int) -> None:
        asked.append(fd)
        if len(asked) >= 6:
            three_rounds.set()

    files = [7, -1, 9]
    writeback = Writeback(lambda: files, 0.001, start)
    writeback.start()
    assert three_rounds.wait(10)
    writeback.stop()
    assert -1 not in asked
    assert asked[:6] == [7, 9, 7, 9, 7, 9]
    # stopped: its thread has ended, so no round comes after
    assert not any(t.name == "writeback" for t in threading.enumerate())


def test_nothing_is_started_when_off() -> None:
    assert start_writeback(lambda: [], 0) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_a_real_file_and_a_closed_descriptor_are_both_fine(tmp_path: Path) -> None:
    assert available()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"x" * 10_000)
    start_write(fd)
    os.close(fd)
    start_write(fd)  # closed meanwhile: the kernel writes it back anyway
    # the daemon's way: a round runs on a closed descriptor without harm
    writeback = start_writeback(lambda: [fd], 1)
    assert writeback is not None
    deadline = time.monotonic() + 10
    while writeback.rounds == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling, with the deadline above
    writeback.stop()
    assert writeback.rounds > 0
