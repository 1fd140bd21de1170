"""The append-only batch file (gateway.storage.batch_file)."""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.storage.batch_file import (
    BatchFile,
    BatchFileError,
    BatchFileLockedError,
    DamagedError,
    WrongMagicError,
)

MAGIC = b"TESTBAT\x01"
NAME = "journal"
LOGGER = "gateway.storage.batch_file"
HEAD = 8  # crc32 u32, length u32


def opened(directory: Path, **kw: bool) -> BatchFile:
    """The batch file in ``directory``, read to its end."""
    file = BatchFile(directory, NAME, MAGIC, **kw)
    list(file.replay())
    return file


def bodies_in(directory: Path) -> list[bytes]:
    with BatchFile(directory, NAME, MAGIC) as file:
        return list(file.replay())


def batch(body: bytes) -> bytes:
    """One batch as the module documentation describes it."""
    length = struct.pack("<I", len(body))
    return struct.pack("<I", zlib.crc32(length + body)) + length + body


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Counts the calls of ``os.<name>`` (one list item per call)."""
    calls: list[int] = []
    real: Callable[..., object] = getattr(os, name)

    def wrapper(*args: object) -> object:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(os, name, wrapper)
    return calls


def test_a_new_file_holds_only_the_magic(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    with BatchFile(directory, NAME, MAGIC) as file:
        assert file.path == directory / NAME
        assert file.size == len(MAGIC)
        before = file.replayed
        bodies = list(file.replay())
        assert (before, bodies, file.replayed) == (False, [], True)
    assert (directory / NAME).read_bytes() == MAGIC


def test_what_a_replacement_cut_short_left_is_removed_at_open(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        file.append(b"kept")
    # a process that died while replacing the file, at once or beside the loop
    (tmp_path / f"{NAME}.tmp").write_bytes(MAGIC + b"half")
    (tmp_path / f"{NAME}.next").write_bytes(MAGIC + b"half")
    assert bodies_in(tmp_path) == [b"kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME, "lock"]


def test_bodies_come_back_in_order_and_unchanged(tmp_path: Path) -> None:
    sent = [b"first", b"", b"\x00" * 1000, bytes(range(256))]
    with opened(tmp_path) as file:
        for body in sent:
            file.append(body)
        assert file.size == (tmp_path / NAME).stat().st_size
    assert bodies_in(tmp_path) == sent
    with opened(tmp_path) as file:  # appending goes on after a reopen
        file.append(b"later")
    assert bodies_in(tmp_path) == [*sent, b"later"]


def test_the_file_is_as_documented(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        file.append(b"one")
        file.append(b"two!")
    assert (tmp_path / NAME).read_bytes() == MAGIC + batch(b"one") + batch(b"two!")


def test_a_torn_tail_is_cut_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with opened(tmp_path) as file:
        file.append(b"kept")
        good = file.size
        file.append(b"torn by a crash")
    path = tmp_path / NAME
    whole = path.read_bytes()
    for cut in range(good + 1, len(whole)):  # every way the last write can be torn
        path.write_bytes(whole[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert bodies_in(tmp_path) == [b"kept"]
        assert [r.name for r in caplog.records] == [LOGGER]
        assert "torn" in caplog.text
        assert path.stat().st_size == good
    caplog.clear()
    with opened(tmp_path) as file:  # writes on from the cut, and reads back clean
        assert file.size == good
        file.append(b"after")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert bodies_in(tmp_path) == [b"kept", b"after"]
    assert not caplog.records


def five_batches(directory: Path) -> tuple[bytes, list[int]]:
    """A file of five batches: its bytes and where each batch begins."""
    starts: list[int] = []
    with opened(directory) as file:
        for n in range(5):
            starts.append(file.size)
            file.append(b"batch %d " % n + bytes(range(n, 40 + n)))
    return (directory / NAME).read_bytes(), starts


def damaged(directory: Path, data: bytes) -> tuple[DamagedError, list[bytes]]:
    """The error replaying ``data`` raises, and the bodies read before it."""
    (directory / NAME).write_bytes(data)
    read: list[bytes] = []
    with BatchFile(directory, NAME, MAGIC) as file:
        with pytest.raises(DamagedError) as caught:
            read.extend(file.replay())
        assert not file.replayed
        with pytest.raises(BatchFileError, match="replayed"):
            file.append(b"after the damage")
    assert (directory / NAME).read_bytes() == data, "a damaged file is left as it is"
    return caught.value, read


@pytest.mark.parametrize(
    ("where", "change"),
    [
        (HEAD + 3, 0x01),  # a bit of the body
        (0, 0x80),  # a bit of the checksum
        (HEAD, 0xFF),  # the body's first byte
    ],
)
def test_a_damaged_batch_with_intact_ones_after_it_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: int, change: int
) -> None:
    data, starts = five_batches(tmp_path)
    for bad in range(4):  # the last batch damaged is a torn write's look-alike
        changed = bytearray(data)
        changed[starts[bad] + where] ^= change
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            error, read = damaged(tmp_path, bytes(changed))
        said = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not said, "nothing is cut, so nothing is said to be"
        assert (error.offset, error.intact) == (starts[bad], starts[bad + 1])
        assert read == [b"batch %d " % n + bytes(range(n, 40 + n)) for n in range(bad)]
        assert error.path == tmp_path / NAME
        assert f"offset {starts[bad]}" in str(error)
        assert f"offset {starts[bad + 1]}" in str(error)


@pytest.mark.parametrize(
    "length",
    [
        0,  # points at the bad batch's own body
        3,
        60,  # inside the next batch
        2**31,  # past the end of the file
        2**24 + 5,  # past the longest batch looked for
    ],
)
def test_a_damaged_length_is_seen_through(tmp_path: Path, length: int) -> None:
    """The next batch is where no header says it is: it is looked for."""
    data, starts = five_batches(tmp_path)
    changed = bytearray(data)
    struct.pack_into("<I", changed, starts[1] + 4, length)
    error, _ = damaged(tmp_path, bytes(changed))
    assert (error.offset, error.intact) == (starts[1], starts[2])


def test_a_zeroed_block_in_the_middle_is_damage(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        for n in range(200):
            file.append(b"%d" % n * 20)
    data = bytearray((tmp_path / NAME).read_bytes())
    data[4096:8192] = bytes(4096)  # one block of the disk lost
    error, _ = damaged(tmp_path, bytes(data))
    assert error.offset < 4096 < 8192 <= error.intact
    assert error.intact < 8192 + 100


def test_a_second_damage_further_on_does_not_hide_the_first(tmp_path: Path) -> None:
    data, starts = five_batches(tmp_path)
    changed = bytearray(data)
    changed[starts[1] + HEAD] ^= 1
    changed[starts[3] + HEAD] ^= 1
    changed += batch(b"torn")[:-3]  # and a torn write at the end
    error, _ = damaged(tmp_path, bytes(changed))
    assert (error.offset, error.intact) == (starts[1], starts[2])


@pytest.mark.parametrize(
    "tail",
    [
        lambda last: last[:-1],  # short
        lambda last: last[:5],  # a part of the header
        lambda last: last[:HEAD] + bytes(len(last) - HEAD),  # its body never written
        lambda last: last[:HEAD] + last[HEAD:20] + bytes(len(last) - 20),  # written in part
        lambda last: bytes(len(last)),  # the file extended, no block written
        lambda last: bytes(len(last) + 4096),  # and more zeros than the batch
        lambda last: last[:-1] + bytes((last[-1] ^ 1,)),  # whole, a bit wrong
    ],
)
def test_a_torn_last_write_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tail: Callable[[bytes], bytes]
) -> None:
    data, starts = five_batches(tmp_path)
    path = tmp_path / NAME
    path.write_bytes(data[: starts[4]] + tail(data[starts[4] :]))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert len(bodies_in(tmp_path)) == 4
    assert "torn" in caplog.text
    assert path.read_bytes() == data[: starts[4]]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00",
        b"\x00" * 64,
        struct.pack("<II", 0, 2**31),  # a header claiming a huge body
        struct.pack("<II", 12345, 0),  # an empty body with a wrong checksum
    ],
)
def test_garbage_after_the_last_batch_is_dropped(tmp_path: Path, garbage: bytes) -> None:
    with opened(tmp_path) as file:
        file.append(b"kept")
    path = tmp_path / NAME
    before = path.read_bytes()
    with path.open("ab") as f:
        f.write(garbage)
    assert bodies_in(tmp_path) == [b"kept"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"TEST", b"OTHERMAG" + batch(b"x")])
def test_a_file_without_the_magic_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / NAME
    path.write_bytes(content)
    with BatchFile(tmp_path, NAME, MAGIC) as file, pytest.raises(WrongMagicError):
        list(file.replay())
    assert path.read_bytes() == content


def test_a_second_opener_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    first = BatchFile(tmp_path, NAME, MAGIC)
    with pytest.raises(BatchFileLockedError, match="in use"):
        BatchFile(tmp_path, NAME, MAGIC)
    with pytest.raises(BatchFileLockedError):
        BatchFile(tmp_path, "another", b"OTHER\x01")  # the lock is the directory's
    first.close()
    first.close()  # closing again does nothing
    assert first.closed
    BatchFile(tmp_path, NAME, MAGIC).close()


def test_nothing_is_appended_before_the_replay(tmp_path: Path) -> None:
    with BatchFile(tmp_path, NAME, MAGIC) as file, pytest.raises(BatchFileError, match="replayed"):
        file.append(b"too early")
    assert (tmp_path / NAME).read_bytes() == MAGIC


def test_replace_swaps_every_batch_atomically(tmp_path: Path) -> None:
    with opened(tmp_path) as file:
        for n in range(10):
            file.append(b"old %d" % n)
        file.replace(iter([b"new 1", b"new 2"]))
        assert file.size == len(MAGIC) + len(batch(b"new 1")) + len(batch(b"new 2"))
        file.append(b"after")
    assert bodies_in(tmp_path) == [b"new 1", b"new 2", b"after"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal", "lock"]


def test_replace_may_come_instead_of_the_replay(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(MAGIC + batch(b"old") + b"torn")
    with BatchFile(tmp_path, NAME, MAGIC) as file:
        file.replace([])
        assert file.replayed
        file.append(b"new")
    assert (tmp_path / NAME).read_bytes() == MAGIC + batch(b"new")


@pytest.mark.parametrize("fsync", [False, True])
def test_one_write_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    file = opened(tmp_path, fsync=fsync)
    writes = counting(monkeypatch, "write")
    syncs = counting(monkeypatch, "fdatasync")
    file.append(b"x" * 100_000)
    file.append(b"y")
    assert (len(writes), len(syncs)) == (2, 2 * fsync)
    monkeypatch.undo()
    file.close()


def test_a_failed_write_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = opened(tmp_path)
    file.append(b"before")
    size = file.size
    real_write = os.write
    calls = 0

    def short_then_full_disk(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        file.append(b"lost" * 100)
    monkeypatch.undo()
    assert file.size == size
    assert (tmp_path / NAME).stat().st_size == size
    file.append(b"retried")
    file.close()
    assert bodies_in(tmp_path) == [b"before", b"retried"]


def test_a_partial_batch_that_could_not_be_cut_is_cut_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = opened(tmp_path)
    file.append(b"before")
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def cannot_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", half_then_fail)
    monkeypatch.setattr(os, "ftruncate", cannot_truncate)
    with pytest.raises(OSError, match="Input/output"):
        file.append(b"half written" * 10)
    monkeypatch.undo()
    file.append(b"next")
    file.close()
    assert bodies_in(tmp_path) == [b"before", b"next"]


def test_a_closed_file_refuses_use(tmp_path: Path) -> None:
    file = opened(tmp_path)
    file.close()
    with pytest.raises(ValueError, match="closed"):
        file.append(b"x")
    with pytest.raises(ValueError, match="closed"):
        list(file.replay())
    with pytest.raises(ValueError, match="closed"):
        file.replace([b"x"])
