"""A damaged batch followed by one longer than the scan for an intact
record reaches (16 MiB: a day's end expiring every open DAY order of a
large book is one batch): still damage, never taken for a torn tail and
cut, with what follows it lost."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gateway.orderflow.journal import MAGIC, JournalError, OrderJournal
from gateway.orderflow.journal_entries import Ended
from gateway.storage.durable import SCAN_LIMIT


def test_a_damaged_batch_before_a_long_one_stops_the_replay(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    for name in ("A", "B"):
        journal.add(Ended(name))
        journal.flush()
    for n in range(17):  # one batch of 17 MiB and more
        journal.add(Ended(f"{n}-" + "X" * (1 << 20)))
    journal.flush()
    journal.close()
    path = tmp_path / "journal"
    data = bytearray(path.read_bytes())
    first = len(MAGIC)
    (length,) = struct.unpack_from("<I", data, first + 4)
    second = first + 8 + length
    (length,) = struct.unpack_from("<I", data, second + 4)
    third = second + 8 + length
    assert struct.unpack_from("<I", data, third + 4)[0] > SCAN_LIMIT
    data[second + 8 + length - 1] ^= 0x01  # a bit of B
    path.write_bytes(bytes(data))
    size = len(data)
    journal = OrderJournal(tmp_path)
    with pytest.raises(JournalError, match=f"the batch at offset {second} is damaged"):
        list(journal.replay())
    journal.close()
    assert path.stat().st_size == size  # nothing cut
