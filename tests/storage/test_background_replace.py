"""Replacing a batch file while it is appended to: the owner writes the new
batches a slice at a time and goes on appending between the slices; what
was appended meanwhile is copied behind, and nothing appended is lost
whatever fails or dies when (gateway.storage.batch_file.BackgroundReplace)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
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


def write_all(job: BackgroundReplace, limit: int = 64) -> int:
    """Write the new file a slice at a time and sync it; the slices taken."""
    slices = 1
    while not job.write_some(limit):
        slices += 1
    job.syncer()()
    return slices


@pytest.mark.parametrize("fsync", [False, True])
def test_what_is_appended_while_the_new_file_is_written_is_kept_behind_it(
    tmp_path: Path, fsync: bool
) -> None:
    file = opened(tmp_path, fsync=fsync)
    for body in (b"old-1", b"old-2", b"old-3"):
        file.append(body)
    job = file.replace_sliced(iter([b"state-1" * 10, b"state-2" * 10, b"state-3" * 10]))
    assert not job.write_some(64)  # one slice
    file.append(b"during-1")
    file.append(b"during-2" * 50)
    assert write_all(job) > 1
    file.append(b"during-3")  # written, before the tail is all copied
    steps = 1
    while not job.copy_tail(64):  # a slice at a time
        steps += 1
    assert steps > 3
    file.append(b"after")
    file.close()
    assert bodies_in(tmp_path) == [
        b"state-1" * 10,
        b"state-2" * 10,
        b"state-3" * 10,
        b"during-1",
        b"during-2" * 50,
        b"during-3",
        b"after",
    ]
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


def test_the_size_after_the_swap_is_the_new_files(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"x" * 10_000)
    job = file.replace_sliced(iter([b"s"]))
    file.append(b"tail")
    write_all(job)
    assert job.written == len(MAGIC) + 8 + 1
    assert job.copy_tail(1 << 20)
    assert file.size == os.path.getsize(tmp_path / NAME) < 10_000
    assert job.tail_copied == 8 + 4
    file.close()


def test_state_that_cannot_be_read_leaves_the_live_file_as_it_was(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"kept")

    def failing() -> Iterator[bytes]:
        yield b"s" * 100
        raise RuntimeError("state unreadable")

    job = file.replace_sliced(failing())
    assert not job.write_some(50)
    file.append(b"during")
    with pytest.raises(RuntimeError, match="state unreadable"):
        job.write_some(50)
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()
    with pytest.raises(BatchFileError, match="the new file is written"):
        job.write_some(50)
    file.append(b"appendable")
    # and another replacement may start
    again = file.replace_sliced(iter([b"state"]))
    file.append(b"after")
    write_all(again)
    assert again.copy_tail(1 << 20)
    file.close()
    assert bodies_in(tmp_path) == [b"state", b"after"]


_FULL = """
import os, resource, signal, sys
from pathlib import Path
from gateway.storage.batch_file import BatchFile

directory, stage = Path(sys.argv[1]), sys.argv[2]
file = BatchFile(directory, "journal", b"TESTBAT\\x01")
list(file.replay())
file.append(b"kept")
state = [b"s" * 1000] * (200 if stage == "writing" else 30)
job = file.replace_sliced(iter(state))
file.append(b"during" * 6000)  # 36 KB behind the state
# no file may grow past 50 KB from here: the new one will (a disk that is full)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
try:
    while not job.write_some(4096):
        pass
    job.syncer()()
    while not job.copy_tail(4096):
        pass
    print("no error")
except OSError as exc:
    print("refused:", exc.strerror)
file.append(b"after")
file.close()
"""


@pytest.mark.parametrize("stage", ["writing", "copying"])
def test_a_full_disk_while_replacing_leaves_the_old_file(tmp_path: Path, stage: str) -> None:
    # run apart: the size limit that stands for a full disk is the process's
    done = subprocess.run(
        [sys.executable, "-c", _FULL, str(tmp_path), stage],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert done.stdout.strip() == "refused: File too large"
    assert bodies_in(tmp_path) == [b"kept", b"during" * 6000, b"after"]
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


def test_each_step_is_refused_out_of_turn(tmp_path: Path) -> None:
    file = opened(tmp_path)
    job = file.replace_sliced(iter([b"s"] * 100))
    with pytest.raises(BatchFileError, match="the new file is not written"):
        job.syncer()
    with pytest.raises(BatchFileError, match="the new file is not written"):
        job.copy_tail(1 << 20)
    with pytest.raises(BatchFileError, match="already being replaced"):
        file.replace_sliced(iter([b"other"]))
    write_all(job, 1 << 20)
    assert job.copy_tail(1 << 20)
    with pytest.raises(BatchFileError, match="the new file is written"):
        job.write_some(64)
    with pytest.raises(BatchFileError, match="the new file is not written"):
        job.copy_tail(64)
    file.close()
    assert bodies_in(tmp_path) == [b"s"] * 100


def test_a_file_not_read_to_its_end_is_not_replaced(tmp_path: Path) -> None:
    opened(tmp_path).close()
    with (
        BatchFile(tmp_path, NAME, MAGIC) as file,
        pytest.raises(BatchFileError, match="must be replayed"),
    ):
        file.replace_sliced(iter([b"s"]))


def test_close_abandons_a_replacement_and_removes_its_file(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.append(b"kept")
    job = file.replace_sliced(iter([b"s"] * 100))
    assert not job.write_some(64)
    assert (tmp_path / (NAME + NEXT_SUFFIX)).exists()
    file.close()
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()
    assert bodies_in(tmp_path) == [b"kept"]


def test_an_abandon_while_the_sync_runs_closes_nothing_it_uses(tmp_path: Path) -> None:
    file = opened(tmp_path)
    job = file.replace_sliced(iter([b"s"]))
    while not job.write_some(64):
        pass
    sync = job.syncer()
    job.abandon()
    sync()  # its own descriptor: still open
    file.append(b"after")
    file.close()
    assert bodies_in(tmp_path) == [b"after"]


def test_a_plain_replace_abandons_a_replacement_under_way(tmp_path: Path) -> None:
    file = opened(tmp_path)
    job = file.replace_sliced(iter([b"s"] * 100))
    assert not job.write_some(64)
    file.replace([b"now"])
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()
    with pytest.raises(BatchFileError):
        job.write_some(64)
    file.append(b"after")
    file.close()
    assert bodies_in(tmp_path) == [b"now", b"after"]


def test_a_stale_next_file_is_removed_on_open(tmp_path: Path) -> None:
    opened(tmp_path).close()
    (tmp_path / (NAME + NEXT_SUFFIX)).write_bytes(b"half written")
    opened(tmp_path).close()
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()


_WRITER = """
import sys
from pathlib import Path
from gateway.storage.batch_file import BatchFile

directory, stage = Path(sys.argv[1]), sys.argv[2]
file = BatchFile(directory, "journal", b"TESTBAT\\x01")
list(file.replay())
file.append(b"kept")
job = file.replace_sliced(iter([b"x" * 100] * 1000))
if stage in ("writing", "copying"):
    job.write_some(1000)
    file.append(b"during")
if stage == "copying":
    while not job.write_some(1000):
        pass
    job.syncer()()
    job.copy_tail(3)
print("ready", flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.parametrize("stage", ["started", "writing", "copying"])
def test_a_process_killed_mid_replacement_leaves_its_file_whole_and_unlocked(
    tmp_path: Path, stage: str
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), stage],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    ) as writer:
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline() == b"ready\n"
            assert (tmp_path / (NAME + NEXT_SUFFIX)).exists()
        finally:
            writer.kill()  # kill -9 in the middle
            writer.wait()
    # nothing holds the lock: the file opens at once, whole, the stale file gone
    expected = [b"kept"] if stage == "started" else [b"kept", b"during"]
    assert bodies_in(tmp_path) == expected
    assert not (tmp_path / (NAME + NEXT_SUFFIX)).exists()
