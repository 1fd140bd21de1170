"""Replacing a batch file beside the loop: a forked child writes the new
batches while the parent goes on appending, and nothing appended is lost
whatever dies when (gateway.storage.batch_file.BackgroundReplace)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.storage.batch_file import NEXT_SUFFIX, BackgroundReplace, BatchFile, BatchFileError

MAGIC = b"TESTBAT\x01"
NAME = "journal"


def opened(directory: Path, fsync: bool = False) -> BatchFile:
    file = BatchFile(directory, NAME, MAGIC, fsync=fsync)
    list(file.replay())
    return file


def bodies_in(directory: Path) -> list[bytes]:
    with BatchFile(directory, NAME, MAGIC) as file:
        return list(file.replay())


def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def wait_ended(job: BackgroundReplace, timeout: float = 20.0) -> None:
    """Block until the child has ended, as the event loop's reader would."""
    deadline = time.monotonic() + timeout
    while not job.ended():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the child did not end")
        select.select([job.fd], [], [], left)


def stalled(marker: Path, first: list[bytes]) -> Callable[[], Iterator[bytes]]:
    """Bodies that, in the child, yield ``first``, say so with ``marker``,
    then never finish (the child is ended from outside)."""

    def bodies() -> Iterator[bytes]:
        yield from first
        marker.write_bytes(b"")
        while True:
            time.sleep(1)  # the child's, not the test's: it waits to be killed
            yield b"never written"

    return bodies


@pytest.mark.parametrize("fsync", [False, True])
def test_what_is_appended_while_the_child_writes_is_kept_behind_its_batches(
    tmp_path: Path, fsync: bool
) -> None:
    file = opened(tmp_path, fsync=fsync)
    for body in (b"old-1", b"old-2", b"old-3"):
        file.append(body)
    job = file.replace_in_background(lambda: iter([b"state-1", b"state-2"]))
    file.append(b"during-1")
    file.append(b"during-2" * 50)
    wait_ended(job)
    assert job.result() is None
    file.append(b"during-3")  # after the child, before the tail is all copied
    steps = 1
    while not job.copy_tail(64):  # a slice at a time
        steps += 1
    assert steps > 3
    file.append(b"after")
    file.close()
    assert bodies_in(tmp_path) == [
        b"state-1",
        b"state-2",
        b"during-1",
        b"during-2" * 50,
        b"during-3",
        b"after",
    ]
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


def test_the_size_after_the_swap_is_the_new_files(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"x" * 10_000)
    job = file.replace_in_background(lambda: iter([b"s"]))
    file.append(b"tail")
    wait_ended(job)
    assert job.result() is None
    assert job.copy_tail(1 << 20)
    assert file.size == os.path.getsize(tmp_path / NAME) < 10_000
    assert job.tail_copied == 8 + 4
    file.close()


def test_a_child_that_fails_leaves_the_live_file_as_it_was(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"kept")

    def failing() -> Iterator[bytes]:
        yield b"s"
        raise RuntimeError("state unreadable")

    job = file.replace_in_background(failing)
    file.append(b"during")
    wait_ended(job)
    assert "state unreadable" in (job.result() or "")
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()
    file.append(b"appendable")
    # and another replacement may start
    again = file.replace_in_background(lambda: iter([b"state"]))
    file.append(b"after")
    wait_ended(again)
    assert again.result() is None
    assert again.copy_tail(1 << 20)
    file.close()
    assert bodies_in(tmp_path) == [b"state", b"after"]


def test_a_child_killed_while_it_writes_changes_nothing(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"kept")
    marker = tmp_path / "writing"
    job = file.replace_in_background(stalled(marker, [b"s1", b"s2"]))
    until(marker.exists, "the child to write")
    os.kill(job.pid, signal.SIGKILL)
    wait_ended(job)
    assert "status -9" in (job.result() or "")
    file.append(b"after")
    file.close()
    assert bodies_in(tmp_path) == [b"kept", b"after"]
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


def test_the_child_holds_nothing_of_the_parents(tmp_path: Path) -> None:
    file = opened(tmp_path)
    marker = tmp_path / "writing"
    listener = socket.socket()  # a socket the parent holds across the fork
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    job = file.replace_in_background(stalled(marker, [b"s"]))
    try:
        assert any(
            os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
        )
        until(marker.exists, "the child to write")
        held = {os.readlink(f"/proc/{job.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{job.pid}/fd")}
        # stdio, its status pipe and the file it writes: no lock, no socket, no journal
        assert str(tmp_path / (NAME + NEXT_SUFFIX)) in held
        assert str(tmp_path / "lock") not in held
        assert str(tmp_path / NAME) not in held
        assert not [h for h in held if h.startswith("socket:")]
    finally:
        job.abandon()
        listener.close()
    file.close()


def test_abandon_and_close_end_the_child_and_remove_its_file(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"kept")
    marker = tmp_path / "writing"
    job = file.replace_in_background(stalled(marker, [b"s"]))
    until(marker.exists, "the child to write")
    pid = job.pid
    with pytest.raises(BatchFileError, match="already being replaced"):
        file.replace_in_background(lambda: iter([b"s"]))
    file.close()  # abandons it
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()
    assert bodies_in(tmp_path) == [b"kept"]


def test_a_plain_replace_abandons_a_replacement_under_way(tmp_path: Path) -> None:
    file = opened(tmp_path)
    marker = tmp_path / "writing"
    job = file.replace_in_background(stalled(marker, [b"s"]))
    until(marker.exists, "the child to write")
    file.replace([b"now"])
    assert job.pid == 0
    file.append(b"after")
    file.close()
    assert bodies_in(tmp_path) == [b"now", b"after"]


def test_a_stale_next_file_is_removed_on_open(tmp_path: Path) -> None:
    opened(tmp_path).close()
    (tmp_path / (NAME + NEXT_SUFFIX)).write_bytes(b"half written")
    opened(tmp_path).close()
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


_PARENT = """
import os, sys, time
from pathlib import Path
from gateway.storage.batch_file import BatchFile

directory = Path(sys.argv[1])
file = BatchFile(directory, "journal", b"TESTBAT\\x01")
list(file.replay())
file.append(b"kept")

def bodies():
    (directory / "writing").write_bytes(b"")
    while True:  # the child's: a state that takes long to write
        time.sleep(0.001)
        yield b"x" * 100

job = file.replace_in_background(bodies)
print(job.pid, flush=True)
sys.stdin.read()  # until killed
"""


def test_a_parent_killed_mid_replacement_leaves_its_file_whole_and_unlocked(
    tmp_path: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    ) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            until((tmp_path / "writing").exists, "the child to write")
        finally:
            parent.kill()  # kill -9 of the parent while its child writes
            parent.wait()
    # the child sees its parent gone and ends on its own
    until(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), "the child to end")
    # nothing holds the lock: the file opens at once, whole, the stale file gone
    assert bodies_in(tmp_path) == [b"kept"]
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
