"""Following a batch file another owner appends to (BatchFollower): complete
batches only, in order, never changing the file; a replacement noticed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.storage.batch_file import BatchFile, BatchFollower, WrongMagicError

MAGIC = b"TESTBAT\x01"


def opened(directory: Path) -> BatchFile:
    file = BatchFile(directory, "journal", MAGIC)
    list(file.replay())
    return file


def test_it_reads_what_was_appended_since_the_last_read(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        follower = BatchFollower(file.path, MAGIC)
        assert follower.read() == []
        file.append(b"one")
        file.append(b"two")
        assert follower.read() == [b"one", b"two"]
        assert follower.read() == []
        file.append(b"three")
        assert follower.read() == [b"three"]
        follower.close()


def test_a_batch_still_being_written_waits_for_the_next_read(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        file.append(b"whole")
        size = file.size
        file.append(b"x" * 100)
        full = file.path.read_bytes()
    # the second batch cut short, as a reader may find it mid-write
    path = tmp_path / "partial"
    path.write_bytes(full[: size + 20])
    follower = BatchFollower(path, MAGIC)
    assert follower.read() == [b"whole"]
    assert follower.read() == []
    with open(path, "ab") as f:
        f.write(full[size + 20 :])
    assert follower.read() == [b"x" * 100]
    # nothing was changed
    assert path.read_bytes() == full
    follower.close()


def test_batches_larger_than_a_read_chunk_are_read_whole(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        file.append(b"a" * 5000)
        file.append(b"b" * 10)
        follower = BatchFollower(file.path, MAGIC, chunk=1024)
        assert follower.read() == [b"a" * 5000, b"b" * 10]
        follower.close()


def test_a_read_stops_near_its_limit_and_the_next_goes_on(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        for i in range(10):
            file.append(bytes([65 + i]) * 1000)
        follower = BatchFollower(file.path, MAGIC, chunk=1024)
        first = follower.read(limit=3000)
        assert 0 < len(first) < 10
        rest = follower.read()
        assert first + rest == [bytes([65 + i]) * 1000 for i in range(10)]
        follower.close()


def test_a_replacement_is_noticed_and_the_old_file_read_to_its_end(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        file.append(b"old")
        follower = BatchFollower(file.path, MAGIC)
        assert follower.read() == [b"old"]
        assert not follower.replaced
        keep = tmp_path / "kept"
        os.link(file.path, keep)
        file.append(b"last of the old")
        file.replace([b"state"])
        assert follower.replaced
        # what was appended before the switch is still read through the descriptor
        assert follower.read() == [b"last of the old"]
        follower.close()
        new = BatchFollower(file.path, MAGIC)
        assert new.read() == [b"state"]
        new.close()


def test_another_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other"
    path.write_bytes(b"NOTOURS\x01")
    with pytest.raises(WrongMagicError):
        BatchFollower(path, MAGIC)


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(1, 64))
def test_any_cut_of_the_file_yields_a_prefix_of_its_batches(
    bodies: list[bytes], cut_from_end: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        with opened(directory) as file:
            for body in bodies:
                file.append(body)
            data = file.path.read_bytes()
        cut = directory / "cut"
        cut.write_bytes(data[: max(len(MAGIC), len(data) - cut_from_end)])
        follower = BatchFollower(cut, MAGIC, chunk=97)
        got = follower.read()
        assert got == bodies[: len(got)]
        with open(cut, "ab") as f:
            f.write(data[len(cut.read_bytes()) :])
        assert got + follower.read() == bodies
        follower.close()
