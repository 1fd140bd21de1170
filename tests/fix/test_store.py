"""The per-session FIX message store: the interface and the memory backend
(gateway.fix.store), the file backend and the factory
(gateway.storage.session_store)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.fix.store import MemoryStore, SessionStore, StoreError
from gateway.storage.session_store import (
    BACKENDS,
    FileStore,
    StoreCorruptError,
    StoreLockedError,
    open_store,
    session_dirname,
)

KEY = "FIX.4.4:GATEWAY->CLIENT1"
DIRNAME = "FIX.4.4-GATEWAY-CLIENT1"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOGGER = "gateway.storage.session_store"

# Sizes from the documented journal format.
HEADER = 9  # crc32 u32, length u32, kind u8
MSG_RECORD_OVERHEAD = HEADER + 8  # plus the u64 sequence number
SEQNUM_RECORD = HEADER + 16

MSG_TEMPLATE = b"8=FIX.4.4\x019=%d\x0135=D\x0134=%d\x0149=GATEWAY\x0156=CLIENT1\x0110=000\x01"


def fix_msg(seq: int) -> bytes:
    return MSG_TEMPLATE % (40 + seq % 7, seq)


def journal_of(store: FileStore) -> Path:
    return store.path / "journal"


def snapshot(store: FileStore, where: Path) -> FileStore:
    """Open a copy of what ``store`` has on disk right now (as after a crash)."""
    target = where / DIRNAME
    target.mkdir(parents=True)
    shutil.copyfile(journal_of(store), target / "journal")
    return FileStore(where, KEY)


def all_sent(store: SessionStore) -> list[tuple[int, bytes]]:
    return store.get_sent(1, 2**63)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    s = open_store(request.param, tmp_path, KEY)
    yield s
    s.close()


class CallCounter:
    """Wraps an ``os`` function and counts the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.calls = 0
        real: Callable[..., object] = getattr(os, name)

        def wrapper(*args: object) -> object:
            self.calls += 1
            return real(*args)

        monkeypatch.setattr(os, name, wrapper)


# --------------------------------------------------------------------------
# Behaviour shared by both backends
# --------------------------------------------------------------------------


def test_fresh_store(store: SessionStore) -> None:
    assert store.next_sender_seq == 1
    assert store.next_target_seq == 1
    assert abs(store.creation_time - time.time()) < 60
    assert all_sent(store) == []


def test_append_advances_sender_seq(store: SessionStore) -> None:
    store.append_sent(1, fix_msg(1))
    assert store.next_sender_seq == 2
    store.set_next_sender_seq(3)  # sequence number 2 used by an unstored message
    store.append_sent(3, fix_msg(3))
    assert store.next_sender_seq == 4
    # Appending with the next number already set ahead does not move it back.
    store.set_next_sender_seq(10)
    store.append_sent(4, fix_msg(4))
    assert store.next_sender_seq == 10
    assert [s for s, _ in all_sent(store)] == [1, 3, 4]


def test_sender_seq_jump_leaves_gap(store: SessionStore) -> None:
    for seq in (1, 2, 3):
        store.append_sent(seq, fix_msg(seq))
    store.flush()
    store.set_next_sender_seq(100)
    store.append_sent(100, fix_msg(100))
    assert store.next_sender_seq == 101
    assert store.get_sent(4, 99) == []
    assert store.get_sent(1, 200) == [(s, fix_msg(s)) for s in (1, 2, 3, 100)]


def test_get_sent_ranges_include_unflushed(store: SessionStore) -> None:
    for seq in range(1, 6):
        store.append_sent(seq, fix_msg(seq))
    store.flush()
    for seq in range(6, 11):
        store.append_sent(seq, fix_msg(seq))  # not flushed

    def seqs(begin: int, end: int) -> list[int]:
        got = store.get_sent(begin, end)
        assert all(msg == fix_msg(seq) for seq, msg in got)
        return [seq for seq, _ in got]

    assert seqs(1, 10) == list(range(1, 11))
    assert seqs(3, 7) == [3, 4, 5, 6, 7]
    assert seqs(5, 5) == [5]
    assert seqs(6, 6) == [6]
    assert seqs(7, 100) == [7, 8, 9, 10]
    assert seqs(-5, 2) == [1, 2]
    assert seqs(11, 20) == []
    assert seqs(8, 3) == []


def test_reused_seq_supersedes_later_messages(store: SessionStore) -> None:
    for seq in range(1, 6):
        store.append_sent(seq, fix_msg(seq))
    store.flush()
    store.append_sent(6, fix_msg(6))
    store.set_next_sender_seq(3)
    store.append_sent(3, b"replacement")
    assert all_sent(store) == [(1, fix_msg(1)), (2, fix_msg(2)), (3, b"replacement")]
    assert store.next_sender_seq == 4


def test_reset(store: SessionStore) -> None:
    for seq in range(1, 4):
        store.append_sent(seq, fix_msg(seq))
    store.set_next_target_seq(7)
    store.flush()
    store.append_sent(4, fix_msg(4))
    new_day = store.creation_time + 86_400
    store.reset(new_day)
    assert store.next_sender_seq == 1
    assert store.next_target_seq == 1
    assert store.creation_time == new_day
    assert all_sent(store) == []
    store.append_sent(1, b"new day")
    assert all_sent(store) == [(1, b"new day")]


def test_memory_store_takes_its_creation_time_from_the_caller() -> None:
    store = MemoryStore()
    assert store.creation_time == 0.0
    store = MemoryStore(created=1_700_000_000.5)
    assert store.creation_time == 1_700_000_000.5
    store.reset()  # no clock to read: the creation time stays
    assert store.creation_time == 1_700_000_000.5
    store.reset(1_700_086_400.0)
    assert store.creation_time == 1_700_086_400.0


def test_file_store_reset_without_a_time_reads_the_clock(tmp_path: Path) -> None:
    with FileStore(tmp_path, KEY) as store:
        store.reset(1.0)
        assert store.creation_time == 1.0
        store.reset()
        assert abs(store.creation_time - time.time()) < 60
    with FileStore(tmp_path, KEY) as store:
        assert abs(store.creation_time - time.time()) < 60


def test_invalid_sequence_numbers(store: SessionStore) -> None:
    with pytest.raises(ValueError, match="sequence number"):
        store.set_next_sender_seq(0)
    with pytest.raises(ValueError, match="sequence number"):
        store.set_next_target_seq(-1)
    with pytest.raises(ValueError, match="sequence number"):
        store.append_sent(0, b"x")
    with pytest.raises(ValueError, match="sequence number"):
        store.append_sent(2**64 - 1, b"x")  # next_sender_seq would not fit in u64
    assert store.next_sender_seq == 1
    assert all_sent(store) == []


def test_closed_store_rejects_use(store: SessionStore) -> None:
    store.append_sent(1, fix_msg(1))
    store.close()
    store.close()  # idempotent
    assert store.next_sender_seq == 2
    with pytest.raises(ValueError, match="closed"):
        store.append_sent(2, fix_msg(2))
    with pytest.raises(ValueError, match="closed"):
        store.get_sent(1, 1)
    with pytest.raises(ValueError, match="closed"):
        store.flush()
    with pytest.raises(ValueError, match="closed"):
        store.reset()


# --------------------------------------------------------------------------
# Factory and naming
# --------------------------------------------------------------------------


def test_open_store_backends(tmp_path: Path) -> None:
    mem = open_store("memory", tmp_path, KEY)
    assert isinstance(mem, MemoryStore)
    mem.close()
    assert list(tmp_path.iterdir()) == []

    store = open_store("file", tmp_path, KEY, fsync=True)
    assert isinstance(store, FileStore)
    assert store.fsync
    assert store.path == tmp_path / DIRNAME
    assert (tmp_path / DIRNAME / "journal").is_file()
    store.close()

    with pytest.raises(ValueError, match="unknown store backend"):
        open_store("sqlite", tmp_path, KEY)


def test_open_store_creates_missing_data_dir(tmp_path: Path) -> None:
    with FileStore(tmp_path / "a" / "b", KEY) as store:
        assert store.path == tmp_path / "a" / "b" / DIRNAME


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("FIX.4.4:GATEWAY->CLIENT1", "FIX.4.4-GATEWAY-CLIENT1"),
        ("FIX.4.4:GW/desk 1->LP_2", "FIX.4.4-GW-desk-1-LP_2"),
        ("FIXT.1.1:A->B:qualifier", "FIXT.1.1-A-B-qualifier"),
        ("../../etc", "..-..-etc"),
    ],
)
def test_session_dirname(key: str, name: str) -> None:
    assert session_dirname(key) == name
    assert "/" not in name


@pytest.mark.parametrize("key", ["", ".", "..", "/", "->", ":.:"])
def test_session_dirname_rejects_unusable_keys(key: str) -> None:
    with pytest.raises(ValueError, match="directory name"):
        session_dirname(key)


# --------------------------------------------------------------------------
# FileStore persistence
# --------------------------------------------------------------------------


def test_round_trip_across_reopen(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    created = store.creation_time
    for seq in range(1, 21):
        store.append_sent(seq, fix_msg(seq))
        if seq % 5 == 0:
            store.flush()
    store.set_next_target_seq(33)
    store.close()  # flushes

    reopened = FileStore(tmp_path, KEY)
    assert reopened.next_sender_seq == 21
    assert reopened.next_target_seq == 33
    assert reopened.creation_time == created
    assert all_sent(reopened) == [(s, fix_msg(s)) for s in range(1, 21)]
    assert reopened.get_sent(7, 9) == [(s, fix_msg(s)) for s in (7, 8, 9)]

    # Carry on where the previous process stopped.
    reopened.append_sent(21, fix_msg(21))
    reopened.close()
    with FileStore(tmp_path, KEY) as third:
        assert third.next_sender_seq == 22
        assert [s for s, _ in all_sent(third)] == list(range(1, 22))


def test_jumps_and_supersede_survive_reopen(tmp_path: Path) -> None:
    with FileStore(tmp_path, KEY) as store:
        for seq in (1, 2, 3):
            store.append_sent(seq, fix_msg(seq))
        store.set_next_sender_seq(50)
        store.append_sent(50, fix_msg(50))
        store.set_next_sender_seq(60)
        store.flush()
        store.set_next_sender_seq(2)
        store.append_sent(2, b"again")
        store.set_next_sender_seq(9)
    with FileStore(tmp_path, KEY) as store:
        assert store.next_sender_seq == 9
        assert all_sent(store) == [(1, fix_msg(1)), (2, b"again")]


def test_unflushed_changes_are_not_on_disk(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    store.append_sent(1, fix_msg(1))
    store.flush()
    store.append_sent(2, fix_msg(2))
    store.set_next_target_seq(5)
    with snapshot(store, tmp_path / "crash1") as copy:
        assert copy.next_sender_seq == 2
        assert copy.next_target_seq == 1
        assert all_sent(copy) == [(1, fix_msg(1))]
    store.flush()
    with snapshot(store, tmp_path / "crash2") as copy:
        assert copy.next_sender_seq == 3
        assert copy.next_target_seq == 5
        assert all_sent(copy) == [(1, fix_msg(1)), (2, fix_msg(2))]
    store.close()


def test_reset_is_durable_at_once_and_compacts(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    fresh_size = journal_of(store).stat().st_size
    for seq in range(1, 101):
        store.append_sent(seq, fix_msg(seq))
        store.flush()
    store.set_next_target_seq(100)
    store.append_sent(101, fix_msg(101))
    store.reset()
    assert journal_of(store).stat().st_size == fresh_size
    assert not (store.path / "journal.tmp").exists()
    with snapshot(store, tmp_path / "crash") as copy:  # reset needs no flush
        assert copy.next_sender_seq == 1
        assert copy.next_target_seq == 1
        assert copy.creation_time == store.creation_time
        assert all_sent(copy) == []

    store.append_sent(1, b"after reset")
    store.close()
    with FileStore(tmp_path, KEY) as store:
        assert all_sent(store) == [(1, b"after reset")]
        assert store.next_sender_seq == 2


def test_journal_format_matches_documentation(tmp_path: Path) -> None:
    with FileStore(tmp_path, KEY) as store:
        store.append_sent(1, b"first")
        store.append_sent(2, b"second")
        store.set_next_target_seq(4)
        created = store.creation_time
    data = (tmp_path / DIRNAME / "journal").read_bytes()
    assert data[:8] == b"FIXJRNL\x01"
    records = []
    pos = 8
    while pos < len(data):
        crc, length, kind = struct.unpack_from("<IIB", data, pos)
        end = pos + HEADER + length
        assert zlib.crc32(data[pos + 4 : end]) == crc
        records.append((kind, data[pos + HEADER : end]))
        pos = end
    assert pos == len(data)
    assert records == [
        (3, struct.pack("<d", created) + KEY.encode()),
        (1, struct.pack("<QQ", 1, 1)),
        (2, struct.pack("<Q", 1) + b"first"),
        (2, struct.pack("<Q", 2) + b"second"),
        (1, struct.pack("<QQ", 3, 4)),
    ]


def test_get_sent_reads_back_in_few_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = b"B" * (3 << 19)  # 1.5 MiB, larger than one read chunk
    expected = {}
    with FileStore(tmp_path, KEY) as store:
        for seq in range(1, 301):
            msg = bytes([seq % 251]) * 10_000
            if seq == 150:
                msg = big
            store.append_sent(seq, msg)
            expected[seq] = msg
        store.flush()
        preads = CallCounter(monkeypatch, "pread")
        got = all_sent(store)
        assert got == sorted(expected.items())
        assert preads.calls <= 6  # ~4.5 MiB in 1 MiB reads, not 300 reads
        assert store.get_sent(149, 151) == [(s, expected[s]) for s in (149, 150, 151)]


# --------------------------------------------------------------------------
# Recovery from torn or corrupt journals
# --------------------------------------------------------------------------


def build_journal(tmp_path: Path) -> tuple[Path, int]:
    """Three flushed messages, then a flush that only changes the target seq.

    Returns the journal path and its size before the last flush.
    """
    with FileStore(tmp_path, KEY) as store:
        for seq in (1, 2, 3):
            store.append_sent(seq, fix_msg(seq))
        store.set_next_target_seq(9)
        store.flush()
        good = journal_of(store).stat().st_size
        store.set_next_target_seq(10)
        store.flush()
        assert journal_of(store).stat().st_size == good + SEQNUM_RECORD
    return tmp_path / DIRNAME / "journal", good


def assert_state(store: FileStore, sender: int, target: int, seqs: list[int]) -> None:
    assert store.next_sender_seq == sender
    assert store.next_target_seq == target
    assert all_sent(store) == [(s, fix_msg(s)) for s in seqs]


def test_torn_tail_recovers_last_good_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal, good = build_journal(tmp_path)
    original = journal.read_bytes()
    for cut in range(good + 1, len(original)):  # every way the last write can be torn
        journal.write_bytes(original[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            store = FileStore(tmp_path, KEY)
        assert_state(store, 4, 9, [1, 2, 3])
        assert journal.stat().st_size == good
        assert [r.name for r in caplog.records if r.levelno == logging.WARNING] == [LOGGER]
        store.close()


def test_truncate_and_garbage_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal, good = build_journal(tmp_path)
    original = journal.read_bytes()
    journal.write_bytes(original[:-3] + b"\x00\xffgarbage\x01\x02")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = FileStore(tmp_path, KEY)
    assert "torn journal tail" in caplog.text
    assert_state(store, 4, 9, [1, 2, 3])
    assert journal.read_bytes() == original[:good]

    # The store writes on from the truncation point and reopens cleanly.
    store.append_sent(4, fix_msg(4))
    store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store = FileStore(tmp_path, KEY)
    assert not caplog.records
    assert_state(store, 5, 9, [1, 2, 3, 4])
    store.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00",
        b"\x00" * 64,
        os.urandom(100),
        struct.pack("<IIB", 0, 2**31, 2),  # header claiming a huge body
        struct.pack("<IIB", 12345, 0, 1),  # empty body with a wrong checksum
    ],
)
def test_garbage_after_last_record_is_dropped(tmp_path: Path, garbage: bytes) -> None:
    journal, _ = build_journal(tmp_path)
    original = journal.read_bytes()
    with journal.open("ab") as f:
        f.write(garbage)
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 4, 10, [1, 2, 3])
    assert journal.read_bytes() == original


def test_bad_checksum_in_last_record(tmp_path: Path) -> None:
    journal, good = build_journal(tmp_path)
    data = bytearray(journal.read_bytes())
    data[-1] ^= 0x01  # flip a bit in the body of the last seqnum record
    journal.write_bytes(bytes(data))
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 4, 9, [1, 2, 3])
    assert journal.stat().st_size == good


def ten_flushes(tmp_path: Path) -> tuple[Path, list[int]]:
    """Ten flushes of one message each: the journal and where each
    message record begins (its sequence-number record follows it)."""
    starts: list[int] = []
    with FileStore(tmp_path, KEY) as store:
        for seq in range(1, 11):
            starts.append(journal_of(store).stat().st_size)
            store.append_sent(seq, fix_msg(seq))
            store.flush()
    return tmp_path / DIRNAME / "journal", starts


def refused(journal: Path, data: bytes, bad: int, later: int) -> None:
    """Opening the store of ``data`` is refused, naming the bad record and
    where the later write begins; the journal is left as it is."""
    journal.write_bytes(data)
    with pytest.raises(StoreCorruptError) as caught:
        FileStore(journal.parent.parent, KEY)
    message = str(caught.value)
    assert str(journal) in message
    assert f"record at offset {bad} is damaged" in message
    assert f"a later write, at offset {later}, is intact" in message
    assert "backup" in message
    assert journal.read_bytes() == data


@pytest.mark.parametrize(
    ("where", "change"),
    [
        (MSG_RECORD_OVERHEAD + 3, 0x01),  # a bit of a message
        (0, 0x80),  # a bit of the checksum
        (HEADER - 1, 0x02),  # the kind (2 becomes 0)
        (HEADER, 0x01),  # the sequence number
    ],
)
def test_a_damaged_record_with_intact_ones_after_it_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: int, change: int
) -> None:
    journal, starts = ten_flushes(tmp_path)
    original = journal.read_bytes()
    for n in (0, 4, 8):  # the first message, one in the middle, the last but one
        data = bytearray(original)
        data[starts[n] + where] ^= change
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            refused(journal, bytes(data), starts[n], starts[n + 1])
        # nothing discarded, nothing said of a tail (what was logged at
        # INFO while the store was written is not this test's)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # the last flush's message bad: the last write torn inside, cut
    data = bytearray(original)
    data[starts[9] + where] ^= change
    journal.write_bytes(bytes(data))
    with FileStore(tmp_path, KEY) as store:
        assert store.next_sender_seq == 10
    assert journal.read_bytes() == original[: starts[9]]
    journal.write_bytes(original)
    # the last sequence-number record alone bad: a torn write's look-alike, cut
    data = bytearray(original)
    data[-1] ^= 0x01
    journal.write_bytes(bytes(data))
    with FileStore(tmp_path, KEY) as store:
        assert store.next_sender_seq == 11
        assert [seq for seq, _ in all_sent(store)] == list(range(1, 11))
    assert journal.read_bytes() == original[:-SEQNUM_RECORD]


@pytest.mark.parametrize("length", [0, 1, 100, 2**31, 2**24 + 3])
def test_a_damaged_record_length_is_seen_through(tmp_path: Path, length: int) -> None:
    journal, starts = ten_flushes(tmp_path)
    data = bytearray(journal.read_bytes())
    struct.pack_into("<I", data, starts[2] + 4, length)
    refused(journal, bytes(data), starts[2], starts[3])


def test_a_last_flush_torn_inside_is_cut_though_records_after_the_tear_are_intact(
    tmp_path: Path,
) -> None:
    """One flush is one write of many records: a power loss that left a
    block inside it unwritten (zeros) and the rest written leaves intact
    records after the bad one, all of the same last write, which ends
    with its sequence-number record: a torn write, cut, not damage."""
    with FileStore(tmp_path, KEY) as store:
        store.append_sent(1, fix_msg(1))
        store.flush()
        start = journal_of(store).stat().st_size
        for seq in range(2, 200):
            store.append_sent(seq, fix_msg(seq))
        store.flush()
    journal = tmp_path / DIRNAME / "journal"
    original = journal.read_bytes()
    hole = start + 4096 - start % 4096  # the first block of the flush's own
    assert len(original) - hole > 2 * 4096
    torn = original[:hole] + bytes(4096) + original[hole + 4096 :]
    journal.write_bytes(torn)
    with FileStore(tmp_path, KEY) as store:
        # the whole records before the hole kept, as for any torn tail
        kept = store.next_sender_seq - 1
        assert 1 < kept < 199
    cut = journal.read_bytes()
    assert start < len(cut) <= hole
    assert original.startswith(cut)


def test_a_torn_last_flush_is_cut_off_zeros_and_all(tmp_path: Path) -> None:
    journal, starts = ten_flushes(tmp_path)
    original = journal.read_bytes()
    last = len(original) - starts[9]
    for tail in (
        original[starts[9] : starts[9] + 7],
        original[starts[9] : starts[9] + HEADER] + bytes(last - HEADER),
        original[starts[9] : starts[9] + 30] + bytes(last - 30),
        bytes(last),
        bytes(last + 8192),
    ):
        journal.write_bytes(original[: starts[9]] + tail)
        with FileStore(tmp_path, KEY) as store:
            assert store.next_sender_seq == 10
        assert journal.read_bytes() == original[: starts[9]]


def test_torn_batch_keeps_complete_message_records(tmp_path: Path) -> None:
    with FileStore(tmp_path, KEY) as store:
        store.append_sent(1, fix_msg(1))
        store.set_next_target_seq(2)
        store.flush()
        start = journal_of(store).stat().st_size
        store.append_sent(2, fix_msg(2))
        store.append_sent(3, fix_msg(3))
        store.set_next_target_seq(3)
    journal = tmp_path / DIRNAME / "journal"
    original = journal.read_bytes()
    after_msg2 = start + MSG_RECORD_OVERHEAD + len(fix_msg(2))
    after_msg3 = after_msg2 + MSG_RECORD_OVERHEAD + len(fix_msg(3))
    assert after_msg3 + SEQNUM_RECORD == len(original)

    # Torn inside message 3: message 2 survives and the sender seq moves past it.
    journal.write_bytes(original[: after_msg2 + 5])
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 3, 2, [1, 2])
    # Torn inside the trailing seqnum record: both messages survive.
    journal.write_bytes(original[: after_msg3 + 20])
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 4, 2, [1, 2, 3])


def test_not_a_journal_is_refused_untouched(tmp_path: Path) -> None:
    journal, _ = build_journal(tmp_path)
    content = b"NOTAJRNL" + journal.read_bytes()[8:]
    journal.write_bytes(content)
    with pytest.raises(StoreCorruptError, match="not a session journal"):
        FileStore(tmp_path, KEY)
    assert journal.read_bytes() == content
    journal.write_bytes(b"FIX")
    with pytest.raises(StoreCorruptError):
        FileStore(tmp_path, KEY)


def test_discard_releases_the_store_without_writing_what_was_not_flushed(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    store.append_sent(1, fix_msg(1))
    store.flush()
    store.append_sent(2, fix_msg(2))
    store.set_next_target_seq(5)
    store.discard()
    store.discard()  # again: nothing
    with FileStore(tmp_path, KEY) as again:  # the lock is released
        assert (again.next_sender_seq, again.next_target_seq) == (2, 1)
        assert [seq for seq, _ in again.get_sent(1, 10)] == [1]


def test_a_journal_of_a_newer_format_is_refused_saying_so_untouched(tmp_path: Path) -> None:
    journal, _ = build_journal(tmp_path)
    content = b"FIXJRNL\x02" + journal.read_bytes()[8:]
    journal.write_bytes(content)
    with pytest.raises(StoreCorruptError) as refused:
        FileStore(tmp_path, KEY)
    assert str(refused.value) == (
        f"{journal} is a session journal of format version 2; this version of fixgw reads "
        "version 1 only: it was written by a newer version of fixgw; start that version "
        "(docs/operations.md, Upgrades)"
    )
    assert journal.read_bytes() == content


def test_valid_record_of_unknown_kind_is_refused(tmp_path: Path) -> None:
    journal, _ = build_journal(tmp_path)
    body = b"from a newer format"
    len_kind = struct.pack("<IB", len(body), 9)
    record = struct.pack("<I", zlib.crc32(len_kind + body)) + len_kind + body
    with journal.open("ab") as f:
        f.write(record)
    content = journal.read_bytes()
    with pytest.raises(StoreCorruptError, match="bad record"):
        FileStore(tmp_path, KEY)
    assert journal.read_bytes() == content
    # The lock was released by the failed open.
    journal.write_bytes(content[: -len(record)])
    FileStore(tmp_path, KEY).close()


def test_stale_temp_file_is_removed(tmp_path: Path) -> None:
    build_journal(tmp_path)
    tmp = tmp_path / DIRNAME / "journal.tmp"
    tmp.write_bytes(b"half-written reset")
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 4, 10, [1, 2, 3])
    assert not tmp.exists()


# --------------------------------------------------------------------------
# Syscall budget and durability policy
# --------------------------------------------------------------------------


def test_flush_without_changes_makes_no_syscall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path, KEY, fsync=True)
    store.append_sent(1, fix_msg(1))
    store.flush()
    size = journal_of(store).stat().st_size
    writes = CallCounter(monkeypatch, "write")
    syncs = CallCounter(monkeypatch, "fdatasync")
    store.flush()
    store.set_next_sender_seq(2)  # unchanged value
    store.set_next_target_seq(1)  # unchanged value
    store.flush()
    assert store.get_sent(1, 1) == [(1, fix_msg(1))]
    assert (writes.calls, syncs.calls) == (0, 0)
    assert journal_of(store).stat().st_size == size
    monkeypatch.undo()
    store.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_one_write_per_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    store = FileStore(tmp_path, KEY, fsync=fsync)
    writes = CallCounter(monkeypatch, "write")
    syncs = CallCounter(monkeypatch, "fdatasync")
    for seq in range(1, 101):
        store.append_sent(seq, fix_msg(seq))
    store.set_next_target_seq(50)
    store.flush()
    assert (writes.calls, syncs.calls) == (1, int(fsync))
    store.set_next_target_seq(51)  # a seqnum-only change is one write too
    store.flush()
    assert (writes.calls, syncs.calls) == (2, 2 * int(fsync))
    monkeypatch.undo()
    store.close()


def test_failed_write_leaves_journal_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path, KEY)
    store.append_sent(1, fix_msg(1))
    store.flush()
    size = journal_of(store).stat().st_size
    store.append_sent(2, fix_msg(2))
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
        store.flush()
    monkeypatch.undo()
    assert journal_of(store).stat().st_size == size
    assert all_sent(store) == [(1, fix_msg(1)), (2, fix_msg(2))]

    store.flush()  # the pending batch is retried
    store.close()
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 3, 1, [1, 2])


def test_a_batch_whose_sync_failed_is_written_and_synced_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path, KEY, fsync=True)
    store.append_sent(1, fix_msg(1))
    store.flush()
    size = journal_of(store).stat().st_size
    store.append_sent(2, fix_msg(2))
    syncs = 0

    def failing(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        store.flush()
    monkeypatch.undo()
    # taken back off the file: not durable, so not flushed yet
    assert (syncs, journal_of(store).stat().st_size) == (1, size)
    synced = 0
    real = os.fdatasync

    def counted(fd: int) -> None:
        nonlocal synced
        synced += 1
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    store.flush()  # written again, and synced this time
    monkeypatch.undo()
    assert synced == 1
    store.close()
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, 3, 1, [1, 2])


def test_second_open_of_same_session_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    with pytest.raises(StoreLockedError, match="in use"):
        FileStore(tmp_path, KEY)
    store.close()
    FileStore(tmp_path, KEY).close()


def test_keys_sharing_a_directory_name_are_refused(tmp_path: Path) -> None:
    assert session_dirname("A:B") == session_dirname("A>B")
    FileStore(tmp_path, "A:B").close()
    with pytest.raises(StoreError, match="belongs to session 'A:B'"):
        FileStore(tmp_path, "A>B")


KILL_SCRIPT = """
import os, signal, sys
from gateway.storage.session_store import open_store

data_dir, count, fsync = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
template = {template!r}
store = open_store("file", data_dir, {key!r}, fsync=fsync)
for seq in range(1, count + 1):
    store.append_sent(seq, template % (40 + seq % 7, seq))
    store.set_next_target_seq(seq + 1)
    if seq % 7 == 0 or seq == count:
        store.flush()
store.append_sent(count + 1, b"never flushed")
store.set_next_target_seq(10_000)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("fsync", [False, True])
def test_kill_9_loses_nothing_flushed(tmp_path: Path, fsync: bool) -> None:
    count = 500
    script = KILL_SCRIPT.format(template=MSG_TEMPLATE, key=KEY)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(count), "1" if fsync else "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    # The lock died with the process.
    with FileStore(tmp_path, KEY) as store:
        assert_state(store, count + 1, count + 1, list(range(1, count + 1)))


# --------------------------------------------------------------------------
# Model-based check: FileStore behaves like MemoryStore, and what is on disk
# matches the state at the last flush
# --------------------------------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just("append"), st.integers(-3, 3)),
    st.tuples(st.just("sender"), st.integers(1, 40)),
    st.tuples(st.just("target"), st.integers(1, 40)),
    st.tuples(st.just("flush"), st.just(0)),
    st.tuples(st.just("reopen"), st.just(0)),
    st.tuples(st.just("crash"), st.just(0)),
    st.tuples(st.just("reset"), st.just(0)),
)

State = tuple[int, int, list[tuple[int, bytes]]]


def state_of(store: SessionStore) -> State:
    return store.next_sender_seq, store.next_target_seq, all_sent(store)


@settings(max_examples=75, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_file_store_matches_memory_model(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        model = MemoryStore()
        durable = state_of(model)
        store = FileStore(data_dir, KEY)
        try:
            for n, (op, arg) in enumerate(ops):
                if op == "append":
                    seq = max(1, model.next_sender_seq + arg)
                    msg = b"msg-%d-%d" % (seq, n)
                    model.append_sent(seq, msg)
                    store.append_sent(seq, msg)
                elif op == "sender":
                    model.set_next_sender_seq(arg)
                    store.set_next_sender_seq(arg)
                elif op == "target":
                    model.set_next_target_seq(arg)
                    store.set_next_target_seq(arg)
                elif op == "flush":
                    store.flush()
                    durable = state_of(model)
                elif op == "reopen":
                    store.close()
                    durable = state_of(model)
                    store = FileStore(data_dir, KEY)
                elif op == "crash":
                    with snapshot(store, data_dir / f"crash{n}") as copy:
                        assert state_of(copy) == durable
                else:
                    model.reset()
                    store.reset()
                    durable = state_of(model)
                assert state_of(store) == state_of(model)
        finally:
            store.close()
