"""The order journal file: batches, torn tails, checkpoints, the lock."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from gateway.orderflow.journal import MAGIC, JournalError, OrderJournal
from gateway.orderflow.journal_entries import (
    Abandoned,
    Ended,
    EndedState,
    Entry,
    Expiring,
    Filled,
    Holdings,
    InFlight,
    OrderState,
    Positions,
    Run,
    Sent,
    Serial,
)
from gateway.orderflow.recovery import HOUSE, Recovery
from matcher.orders import CxlRejResponseTo as To
from matcher.orders import Order, OrdStatus, PendingChange
from risk.accounts import Accounts
from router.exposure import ExposureLedger
from router.model import AssetClass, ChildOrder, Instrument, OrdType, Side, TimeInForce


def an_order(order_id: str = "1O1", **changes: object) -> Order:
    order = Order(
        order_id=order_id,
        client="CLIENT1",
        cl_ord_id="A",
        orig_cl_ord_id=None,
        symbol="EUR/USD",
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.DAY,
        qty=10,
        price=108_500,
        seq=1,
        leaves_qty=10,
    )
    for name, value in changes.items():
        setattr(order, name, value)
    return order


def child(child_id: str = "1O1.1C1", qty: int = 4) -> ChildOrder:
    return ChildOrder(child_id, "1O1", "LP_A", "EUR/USD", Side.BUY, qty, 108_502)


def plain(entries: list[Entry]) -> object:
    """Entries as builtins (an Order compares by identity)."""
    return msgspec.to_builtins(entries)


def read_all(path: Path) -> list[Entry]:
    journal = OrderJournal(path)
    try:
        return list(journal.replay())
    finally:
        journal.close()


def test_entries_come_back_in_order_and_unchanged(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    assert list(journal.replay()) == []
    pending = an_order(pending=PendingChange(To.CANCEL, "B"), aliases=("B",))
    first: list[Entry] = [Run(1), OrderState(pending), Sent(child())]
    second: list[Entry] = [
        Filled("1O1.1C1", "LP-E1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 2, 108_501),
        Ended("1O1.1C1"),
        Abandoned("x"),
        Positions({"LP_A": {"EUR/USD": 2}}, {"CLIENT1": {"EUR/USD": 2}}, {"EUR/USD": 108_501}),
        InFlight(child(), 2, ["LP-E1"], abandoned=True),
        Expiring(["1O1"]),
    ]
    for entry in first:
        journal.add(entry)
    journal.flush()
    for entry in second:
        journal.add(entry)
    journal.flush()
    journal.close()
    entries = read_all(tmp_path)
    assert plain(entries) == plain(first + second)
    state = entries[1]
    assert isinstance(state, OrderState)
    assert state.order.pending == PendingChange(To.CANCEL, "B")
    assert state.order.aliases == ("B",)


def test_an_entry_is_taken_as_it_was_when_added(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    order = an_order()
    journal.add(OrderState(order))
    order.status = OrdStatus.FILLED  # a later change is a later entry
    journal.close()
    (entry,) = read_all(tmp_path)
    assert isinstance(entry, OrderState)
    assert entry.order.status is OrdStatus.NEW


def test_an_entry_that_cannot_be_encoded_leaves_nothing_in_the_batch(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    before, after = Ended("1O1.1C1"), Abandoned("x")
    journal.add(before)
    # fails at its price, after the fields before it were encoded
    bad = Filled("1O1.1C2", "LP-E2", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 2, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        journal.add(bad)
    journal.add(after)
    journal.close()
    assert plain(read_all(tmp_path)) == plain([before, after])


def test_a_torn_last_batch_is_dropped_whole_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(OrderState(an_order("1O1")))
    journal.flush()
    good = journal.size
    journal.add(OrderState(an_order("1O2")))
    journal.add(OrderState(an_order("1O3")))
    journal.close()
    path = tmp_path / "journal"
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 5)
    with caplog.at_level(logging.WARNING, logger="gateway.storage.batch_file"):
        entries = read_all(tmp_path)
    assert [e.order.order_id for e in entries if isinstance(e, OrderState)] == ["1O1"]
    assert "torn" in caplog.text
    assert os.path.getsize(path) == good  # cut where the good part ends


def test_the_file_format_is_unchanged(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(3))
    journal.add(Ended("1O1.1C1"))
    journal.flush()
    journal.close()
    # a batch written while trading starts with its serial (what the drop copy follows)
    body = (
        b"\x93"
        + msgspec.msgpack.encode(Serial(1))
        + msgspec.msgpack.encode(Run(3))
        + msgspec.msgpack.encode(Ended("1O1.1C1"))
    )
    length = struct.pack("<I", len(body))
    crc = struct.pack("<I", zlib.crc32(length + body))
    assert MAGIC == b"ORDJRNL\x01"
    assert (tmp_path / "journal").read_bytes() == MAGIC + crc + length + body


def test_a_damaged_batch_stops_the_replay_there(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(OrderState(an_order("1O1")))
    journal.flush()
    at = journal.size
    journal.add(OrderState(an_order("1O2")))
    journal.close()
    with open(tmp_path / "journal", "r+b") as f:
        f.seek(at + 12)
        byte = f.read(1)
        f.seek(at + 12)
        f.write(bytes([byte[0] ^ 0xFF]))
    entries = read_all(tmp_path)
    assert [e.order.order_id for e in entries if isinstance(e, OrderState)] == ["1O1"]


def _append_batch(path: Path, *entries: list[object]) -> None:
    """A whole batch, its checksum right, of ``entries`` as msgpack arrays."""
    body = bytes([0x90 + len(entries)]) + b"".join(msgspec.msgpack.encode(e) for e in entries)
    length = struct.pack("<I", len(body))
    with open(path, "ab") as f:
        f.write(struct.pack("<I", zlib.crc32(length + body)) + length + body)


def test_a_kind_of_entry_this_version_does_not_know_is_refused_with_that_said(
    tmp_path: Path,
) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Ended("1O1.1C0"))
    journal.close()
    _append_batch(tmp_path / "journal", [99, "an entry of a kind added later"])
    before = (tmp_path / "journal").read_bytes()
    again = OrderJournal(tmp_path)
    with pytest.raises(JournalError) as info:
        list(again.replay())
    again.close()
    assert str(info.value) == (
        f"{tmp_path / 'journal'}: batch 2 holds an entry this version cannot read "
        "(Invalid value 99 - at `$[0][0]`): most likely the journal was written by a "
        "newer version of fixgw; start that version (docs/operations.md, Upgrades)"
    )
    assert (tmp_path / "journal").read_bytes() == before  # left as it was


def test_a_field_added_at_the_end_of_an_entry_is_passed_over(tmp_path: Path) -> None:
    OrderJournal(tmp_path).close()
    _append_batch(tmp_path / "journal", [5, "1O1.1C1", "a field added later"])
    assert read_all(tmp_path) == [Ended("1O1.1C1")]


def test_a_checkpoint_replaces_everything_and_sets_the_run(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    for n in range(5000):  # more than one checkpoint batch
        journal.add(OrderState(an_order(f"1O{n}")))
    journal.flush()
    journal.add(OrderState(an_order("pending, dropped")))
    journal.checkpoint([Run(7), OrderState(an_order("7O1"))] + [Ended(str(n)) for n in range(5000)])
    assert journal.run == 7
    journal.add(Ended("after"))
    journal.close()
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    again.close()
    assert again.run == 7
    assert plain(entries[:2]) == plain([Run(7), OrderState(an_order("7O1"))])
    assert entries[-1] == Ended("after")
    assert len(entries) == 5003
    assert not (tmp_path / "journal.tmp").exists()


def test_one_journal_per_directory(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    with pytest.raises(JournalError, match="in use"):
        OrderJournal(tmp_path)
    journal.close()
    OrderJournal(tmp_path).close()


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal").write_bytes(b"something else entirely")
    journal = OrderJournal(tmp_path)
    with pytest.raises(JournalError, match="not an order journal"):
        list(journal.replay())
    journal.close()
    assert (tmp_path / "journal").read_bytes() == b"something else entirely"


def test_a_journal_of_a_newer_format_is_refused_saying_so(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Ended("C1"))
    journal.close()
    path = tmp_path / "journal"
    content = b"ORDJRNL\x02" + path.read_bytes()[8:]  # its format's version, one more
    path.write_bytes(content)
    journal = OrderJournal(tmp_path)
    with pytest.raises(JournalError) as refused:
        list(journal.replay())
    journal.close()
    assert str(refused.value) == (
        f"{path} is an order journal of format version 2; this version of fixgw reads "
        "version 1 only: it was written by a newer version of fixgw; start that version "
        "(docs/operations.md, Upgrades)"
    )
    assert path.read_bytes() == content


def test_a_fill_a_child_state_written_after_it_counts_is_booked_not_counted_again() -> None:
    """A checkpoint written in slices may write a child's state after a
    fill it already counts, the fill itself copied behind: the ledger takes
    the fill (the positions were taken before it), the child's open lots
    do not go down twice; a later fill does."""
    ledger = ExposureLedger({})
    recovery = Recovery(ledger, Accounts(None, {}, {}))
    for entry in [
        Positions({}, {}, {"EUR/USD": 1}),
        InFlight(child("c1", qty=8), 5, ["E1"]),
        Filled("c1", "E1", "LP_A", "CLIENT1", "EUR/USD", Side.SELL, 3, 108_500),
        Filled("c1", "E2", "LP_A", "CLIENT1", "EUR/USD", Side.SELL, 2, 108_500),
    ]:
        recovery.apply(entry)
    assert recovery.children["c1"].open == 3
    assert recovery.children["c1"].exec_ids == {"E1", "E2"}
    assert ledger.lp_positions() == {"LP_A": {"EUR/USD": -5}}  # the client's side: sold
    assert recovery.duplicate_fills == 0


def test_nothing_is_written_before_the_replay(tmp_path: Path) -> None:
    (tmp_path / "journal").write_bytes(MAGIC)
    journal = OrderJournal(tmp_path)
    journal.add(Ended("x"))
    with pytest.raises(JournalError, match="replayed"):
        journal.flush()
    list(journal.replay())
    journal.close()


def test_recovery_books_each_exec_id_once_and_tracks_children() -> None:
    ledger = ExposureLedger({})
    recovery = Recovery(ledger, Accounts(None, {}, {}))
    fill = Filled("c1", "E1", "LP_A", "CLIENT1", "EUR/USD", Side.SELL, 3, 108_500)
    for entry in [
        Positions({"LP_A": {"EUR/USD": 5}}, {"CLIENT1": {"EUR/USD": 5}}, {"EUR/USD": 1}),
        Sent(child("c1", qty=4)),
        Sent(child("c2", qty=4)),
        fill,
        fill,  # damaged journal: the same ExecID twice
        Ended("c2"),
        OrderState(an_order("1O1")),
        OrderState(an_order("1O2")),
        OrderState(an_order("1O1", status=OrdStatus.FILLED)),
    ]:
        recovery.apply(entry)
    assert ledger.lp_positions() == {"LP_A": {"EUR/USD": 2}}
    assert ledger.client_positions() == {"CLIENT1": {"EUR/USD": 2}}
    assert recovery.duplicate_fills == 1
    assert list(recovery.children) == ["c1"]
    assert recovery.children["c1"].open == 1
    assert recovery.children["c1"].exec_ids == {"E1"}
    # the last state of each order, in the order of their last change
    assert [(o.order_id, o.status) for o in recovery.orders.values()] == [
        ("1O2", OrdStatus.NEW),
        ("1O1", OrdStatus.FILLED),
    ]


def test_recovery_keeps_the_latest_ended_children_with_their_fills() -> None:
    """A child its LP ended is kept as the routing watches it: its lots not
    filled and its ExecIDs, a fill after the end counted once (the same
    ExecID again is a damaged journal's, not booked); those filled in full
    apart from the canceled and rejected ones, the latest ``keep_ended`` of
    each; one given up on stays a child given up on; a checkpoint's ended
    state comes back the same."""
    ledger = ExposureLedger({})
    recovery = Recovery(ledger, Accounts(None, {}, {}), keep_ended=2)
    late = Filled("c1", "L1", "LP_A", HOUSE, "EUR/USD", Side.SELL, 3, 108_500)
    for entry in [
        Positions({}, {}, {"EUR/USD": 1}),
        Sent(child("c1", qty=4)),
        Filled("c1", "E1", "LP_A", "CLIENT1", "EUR/USD", Side.SELL, 1, 108_500),
        Ended("c1"),
        late,
        late,  # the same ExecID again
        Sent(child("c2", qty=4)),
        Abandoned("c2"),
        EndedState(child("c3", qty=2), -1, ["E3", "O3"], True),
    ]:
        recovery.apply(entry)
    assert list(recovery.ended) == ["c1"]
    assert list(recovery.filled_in_full) == ["c3"]
    ended = recovery.ended["c1"]
    assert (ended.open, ended.exec_ids) == (0, {"E1", "L1"})
    assert recovery.duplicate_fills == 1
    assert ledger.lp_positions() == {"LP_A": {"EUR/USD": -4}}
    assert (recovery.filled_in_full["c3"].open, recovery.filled_in_full["c3"].exec_ids) == (
        -1,
        {"E3", "O3"},
    )
    assert recovery.children["c2"].abandoned
    for n in range(4, 9):
        recovery.apply(EndedState(child(f"c{n}"), 0, [], True))
    # past twice the bound, the latest two are kept (then more come); the
    # canceled one stays
    assert list(recovery.filled_in_full) == ["c6", "c7", "c8"]
    assert list(recovery.ended) == ["c1"]


def test_a_late_fill_an_ended_childs_checkpoint_state_counts_is_booked_not_counted_again() -> None:
    """A checkpoint written in slices encodes an ended child as it is when
    its slice is written: a late fill journaled after the checkpoint began
    is in its state and copied behind it.  The ledger takes the fill (the
    positions were taken before it); the child's lots do not go down twice."""
    ledger = ExposureLedger({})
    recovery = Recovery(ledger, Accounts(None, {}, {}))
    late = Filled("c1", "L1", "LP_A", HOUSE, "EUR/USD", Side.BUY, 2, 108_500)
    for entry in [
        Positions({}, {}, {"EUR/USD": 1}),
        EndedState(child("c1", qty=4), 1, ["E1", "L1"], False),
        late,
        late,  # a damaged journal's repeat: booked once
    ]:
        recovery.apply(entry)
    assert recovery.ended["c1"].open == 1
    assert ledger.lp_positions() == {"LP_A": {"EUR/USD": 2}}
    assert recovery.duplicate_fills == 1


def test_the_reversal_of_a_busted_fill_moves_the_lp_not_the_ended_childs_lots() -> None:
    ledger = ExposureLedger({})
    recovery = Recovery(ledger, Accounts(None, {}, {}))
    for entry in [
        Sent(child("c1", qty=4)),
        Filled("c1", "E1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 4, 108_500),
        Ended("c1"),
        Filled("c1", "X1", "LP_A", HOUSE, "EUR/USD", Side.SELL, 4, 108_500, busts="E1"),
    ]:
        recovery.apply(entry)
    (ended,) = recovery.filled_in_full.values()
    assert ended.open == 0  # its fill stands for the child: no lot came back or went
    assert ledger.lp_positions() == {}
    assert ledger.client_positions() == {"CLIENT1": {"EUR/USD": 4}, HOUSE: {"EUR/USD": -4}}


@pytest.mark.parametrize("ends", [True, False])
def test_a_corrected_fill_moves_the_lp_not_the_childs_lots_nor_the_last_price(ends: bool) -> None:
    """A correction's two bookings (the reversal, the corrected fill), read
    back for a child ended or still open: the LP's position as booked, the
    child's lots and fills as the LP's fill left them, and the last price
    the last trade's."""
    ledger = ExposureLedger({})
    recovery = Recovery(ledger, Accounts(None, {}, {}))
    entries = [
        Sent(child("c1", qty=4)),
        Filled("c1", "E1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 3, 108_500),
        Filled("c2", "E7", "LP_B", "CLIENT2", "EUR/USD", Side.SELL, 1, 108_400),
        Filled("c1", "Y1.r", "LP_A", HOUSE, "EUR/USD", Side.SELL, 3, 108_500, busts="E1"),
        Filled("c1", "Y1", "LP_A", HOUSE, "EUR/USD", Side.BUY, 5, 108_300, corrects="E1"),
    ]
    if ends:
        entries.insert(2, Ended("c1"))
    for entry in entries:
        recovery.apply(entry)
    (kept,) = (recovery.ended if ends else recovery.children).values()
    assert kept.open == 1  # 3 of its 4 lots filled, as the client was told
    assert kept.exec_ids == {"E1"}
    assert ledger.lp_positions() == {"LP_A": {"EUR/USD": 5}, "LP_B": {"EUR/USD": -1}}
    assert ledger.client_positions() == {
        "CLIENT1": {"EUR/USD": 3},
        "CLIENT2": {"EUR/USD": -1},
        HOUSE: {"EUR/USD": 2},
    }
    assert ledger.positions()[2] == {"EUR/USD": 108_400}


def test_recovery_keeps_only_the_last_final_orders_it_may_need() -> None:
    recovery = Recovery(ExposureLedger({}), Accounts(None, {}, {}), keep_finished=3)
    recovery.apply(OrderState(an_order("1O0")))  # stays open all along
    for n in range(1, 40):
        recovery.apply(OrderState(an_order(f"1O{n}", status=OrdStatus.CANCELED)))
    kept = list(recovery.orders)
    assert kept[0] == "1O0"
    assert kept[-3:] == ["1O37", "1O38", "1O39"]
    assert len(kept) < 40


def test_a_failed_write_keeps_the_entries_for_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Ended("a"))
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        journal.flush()
    monkeypatch.setattr(os, "write", real_write)
    journal.add(Ended("b"))
    journal.close()
    assert read_all(tmp_path) == [Ended("a"), Ended("b")]


def test_a_batch_whose_sync_failed_is_not_written_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fdatasync fails (a full or failing disk, fsync = "batch") after the
    batch was written: its entries are kept for the next flush, and the
    file holds them once, not a second copy of the batch."""
    journal = OrderJournal(tmp_path, fsync=True)
    list(journal.replay())
    journal.add(Sent(child()))
    journal.add(Filled("1O1.1C1", "LPX1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 4, 108_502))
    journal.add(Ended("1O1.1C1"))
    real_sync = os.fdatasync

    def sync_fails(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", sync_fails)
    with pytest.raises(OSError, match="No space"):
        journal.flush()
    monkeypatch.setattr(os, "fdatasync", real_sync)
    journal.flush()
    journal.close()
    entries = read_all(tmp_path)
    assert sum(1 for e in entries if isinstance(e, Filled)) == 1
    recovery = Recovery(ExposureLedger({}), Accounts(None, {}, {}))
    for entry in entries:
        recovery.apply(entry)
    assert recovery.fills == 1


def test_a_write_failing_at_every_retry_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    journal = OrderJournal(tmp_path, fsync=True)
    list(journal.replay())
    journal.add(Sent(child()))

    def sync_fails(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", sync_fails)
    with caplog.at_level(logging.CRITICAL, logger="gateway.orderflow.journal"):
        for _ in range(5):  # the retries of a full disk, every 0.1 s
            with pytest.raises(OSError, match="No space"):
                journal.flush()
        monkeypatch.undo()
        journal.flush()
        journal.add(Ended("1O1.1C1"))
        monkeypatch.setattr(os, "fdatasync", sync_fails)
        with pytest.raises(OSError, match="No space"):
            journal.flush()  # a new run of failures is said again
        monkeypatch.undo()
    assert len(caplog.records) == 2
    journal.flush()
    journal.close()


def test_a_journal_without_holdings_seeds_the_accounts_from_positions() -> None:
    """A journal written before margin accounts were kept: the accounts take
    the client positions, at the last fill price, and say so."""
    instrument = Instrument(
        "EUR/USD", AssetClass.FX, Decimal("0.00001"), Decimal(1000), 1, 1000, "USD"
    )
    accounts = Accounts(None, {}, {"EUR/USD": instrument})
    recovery = Recovery(ExposureLedger({"EUR/USD": instrument}), accounts)
    recovery.apply(
        Positions({"LP_A": {"EUR/USD": 5}}, {"CLIENT1": {"EUR/USD": 5}}, {"EUR/USD": 108_500})
    )
    assert recovery.finish({"EUR/USD": instrument}) == 1
    assert accounts.holdings() == {"CLIENT1": {"EUR/USD": (5, 1.085, 0.0)}}
    # a journal with holdings is taken as it is
    again = Recovery(ExposureLedger({"EUR/USD": instrument}), Accounts(None, {}, {}))
    again.apply(Holdings({"CLIENT1": {"EUR/USD": (2, 1.1, 3.0)}}))
    assert again.finish({"EUR/USD": instrument}) == 0
    assert again.accounts.holdings() == {"CLIENT1": {"EUR/USD": (2, 1.1, 3.0)}}
