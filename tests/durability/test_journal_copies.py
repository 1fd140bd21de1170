"""The drop copy follows the order journal: batch serials that go on across
checkpoints and restarts, segments kept for a follower that was away, and
the copies made from them exactly once (gateway.dropcopy.follow)."""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from config import SessionSettings
from gateway.dropcopy.copies import DropCopies, copy_body
from gateway.dropcopy.follow import Cursor, JournalCopier, message_body
from gateway.fix.codec import parse_frame
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.orderflow.journal import MAGIC, SEGMENTS_NAME, OrderJournal
from gateway.orderflow.journal_entries import DayEndMoved, Filled, Grid, Message, Run, Serial
from gateway.storage.batch_file import BatchFollower
from gateway.storage.session_store import open_store
from router.model import AssetClass, Instrument, Side

EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal(1000),
    min_lots=1,
    max_lots=10_000,
    quote_currency="USD",
)
CLIENT_SESSION = "FIX.4.4:GATEWAY->CLIENT1"


def journal(directory: Path, keep: bool = True) -> OrderJournal:
    j = OrderJournal(directory, keep_segments=keep)
    list(j.replay())
    return j


def client_report(seq: int, exec_id: str) -> bytes:
    """A client's ExecutionReport as its session stores it."""
    sender = Session(SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"), MemoryStore())
    sender.store.set_next_sender_seq(seq)
    body = b"37=O1\x0111=A\x0117=%b\x01150=F\x0139=2\x0155=EUR/USD\x0154=1\x01" % exec_id.encode()
    return sender.send_recorded(b"8", body, 1_700_000_000.0)[1]


def add_report(j: OrderJournal, seq: int, exec_id: str, market: str = "LP_A") -> None:
    j.add(Message(CLIENT_SESSION, 1.0, seq, client_report(seq, exec_id), market))


def add_capture(j: OrderJournal, exec_id: str, account: str = "CLIENT1") -> None:
    j.add(Filled("1O1.1C1", exec_id, "LP_A", account, "EUR/USD", Side.BUY, 1000, 108_500, 5.0))


class Office:
    """One drop-copy session and a copier on ``data``'s journal, as the
    drop-copy process has them (a file store, so a restart finds them)."""

    def __init__(
        self,
        data: Path,
        trading_day_end: str = "00:00",
        pause: Callable[[], None] | None = None,
    ) -> None:
        settings = SessionSettings(
            SenderCompID="GATEWAY", TargetCompID="BACKOFFICE", Application="dropcopy"
        )
        self.store = open_store("file", data / "sessions", settings.session_id)
        self.session = Session(settings, self.store)
        self.flushes = 0
        self.copier = JournalCopier(
            data / "orders",
            Cursor(data / "dropcopy"),
            DropCopies([self.session]),
            {CLIENT_SESSION: "CLIENT1"},
            {"EUR/USD": EURUSD},
            flush=self._flush,
            wake=lambda s: None,
            clock=lambda: 1_700_000_100.0,
            trading_day_end=trading_day_end,
            pause=pause,
        )

    def _flush(self) -> None:
        self.flushes += 1
        self.store.flush()

    def poll_all(self) -> None:
        while self.copier.poll():
            pass

    def stored(self) -> list[tuple[bytes, bytes]]:
        """(MsgType, ExecID) of every copy stored, in sequence order."""
        last = self.store.next_sender_seq - 1
        got = []
        for _, raw in self.store.get_sent(1, last) if last else []:
            msg = parse_frame(raw)
            got.append((msg.msg_type, msg.get(17) or b""))
        return got

    def close(self) -> None:
        self.copier.close()
        self.store.close()


def test_batches_carry_serials_across_checkpoints_and_restarts(tmp_path: Path) -> None:
    j = journal(tmp_path)
    add_report(j, 2, "E1")
    j.flush()
    add_report(j, 3, "E2")
    j.flush()
    assert j.serial == 2
    j.checkpoint([Run(1)])
    add_report(j, 4, "E3")
    j.flush()
    assert j.serial == 3
    j.close()
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    # Serial entries are the journal's own: a reader of entries never sees them
    assert not any(isinstance(e, Serial) for e in entries)
    assert again.serial == 3
    again.close()
    # the checkpoint alone (no batch after it) still carries the serial on
    j = journal(tmp_path)
    j.checkpoint([Run(2)])
    j.close()
    again = OrderJournal(tmp_path)
    list(again.replay())
    assert again.serial == 3
    again.close()


def test_a_checkpoint_keeps_the_file_it_replaces_as_a_segment(tmp_path: Path) -> None:
    j = journal(tmp_path)
    add_report(j, 2, "E1")
    j.flush()
    j.checkpoint([Run(1)])
    segments = sorted((tmp_path / SEGMENTS_NAME).iterdir())
    assert [s.name for s in segments] == [f"{1:020d}"]
    follower = BatchFollower(segments[0], b"ORDJRNL\x01")
    assert len(follower.read()) == 1
    follower.close()
    # without a drop copy nothing is kept
    other = journal(tmp_path / "plain", keep=False)
    add_report(other, 2, "E1")
    other.flush()
    other.checkpoint([Run(1)])
    assert not (tmp_path / "plain" / SEGMENTS_NAME).exists()
    other.close()
    j.close()


@pytest.mark.parametrize("fsync", [True, False])
def test_a_sliced_checkpoint_syncs_the_segments_folder_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """The segment's directory entry is made durable by the thread that
    syncs the new file, before it replaces the journal, never as the
    checkpoint starts on the loop (an fsync of a directory could hold the
    loop for tens of milliseconds); without fsync, as for the journal's own
    writes, not at all (a link survives a crash of the process)."""
    synced: list[Path] = []  # what os.fsync was called on (the compiled
    # build calls os's function through the module, so it is seen too)
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    j = OrderJournal(tmp_path, keep_segments=True, fsync=fsync)
    list(j.replay())
    add_report(j, 2, "E1")
    j.flush()
    synced.clear()
    job = j.start_sliced_checkpoint([Run(1)])
    folder = tmp_path / SEGMENTS_NAME
    assert [s.name for s in folder.iterdir()] == [f"{1:020d}"]
    assert folder not in synced  # not as it starts
    while not job.write_some(1 << 16):
        pass
    job.syncer()()  # what the order flow runs in a thread
    assert (folder in synced) is fsync
    while not job.copy_tail(1 << 16):
        pass
    j.close()


def test_reports_and_captures_become_copies_in_journal_order(tmp_path: Path) -> None:
    j = journal(tmp_path / "orders")
    add_report(j, 2, "E1")
    add_capture(j, "LPX1")
    j.flush()
    add_report(j, 3, "E2", market="internal")
    j.flush()
    office = Office(tmp_path)
    office.poll_all()
    assert office.stored() == [(b"8", b"E1"), (b"AE", b"LPX1"), (b"8", b"E2")]
    raw = office.store.get_sent(1, 1)[0][1]
    copy = parse_frame(raw)
    assert (copy.get(1), copy.get(30), copy.get(797)) == (b"CLIENT1", b"LP_A", b"Y")
    _, body = message_body(client_report(2, "E1"))
    assert message_body(raw)[1] == copy_body(body, b"CLIENT1", "LP_A")
    assert office.copier.cursor.serial == 2
    office.close()
    j.close()


def test_a_long_copy_pauses_between_batches_and_copies_the_same(tmp_path: Path) -> None:
    """Copying gives the core back every ``pause_after`` seconds (here at
    every batch), between batches: what is copied does not change."""
    j = journal(tmp_path / "orders")
    for seq in range(2, 7):
        add_report(j, seq, f"E{seq}")
        j.flush()
    paused: list[None] = []
    office = Office(tmp_path, pause=lambda: paused.append(None))
    office.copier.pause_after = 0.0
    office.poll_all()
    assert office.stored() == [(b"8", b"E%d" % seq) for seq in range(2, 7)]
    assert len(paused) == 5  # once before each batch
    assert office.copier.cursor.serial == 5
    office.close()
    j.close()


def test_a_trade_capture_names_the_trading_day_it_belongs_to(tmp_path: Path) -> None:
    j = journal(tmp_path / "orders")
    monday_20h = datetime(2026, 3, 2, 20, tzinfo=UTC).timestamp()
    for exec_id, booked in (("LPX1", monday_20h), ("LPX2", monday_20h + 2 * 3600)):
        j.add(
            Filled("1O1.1C1", exec_id, "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 1, 108_500, booked)
        )
    j.flush()
    office = Office(tmp_path, trading_day_end="21:00")
    office.poll_all()
    dates = [parse_frame(raw).get(75) for _, raw in office.store.get_sent(1, 2)]
    # the day ending at 21:00 UTC on Monday, then the one ending on Tuesday
    assert dates == [b"20260302", b"20260303"]
    office.close()
    j.close()


def test_a_trade_capture_follows_a_day_end_moved_by_a_reload(tmp_path: Path) -> None:
    # the gateway reloaded orders.trading_day_end from 21:00 to 23:00: the
    # day then ends at 23:00, and a fill at 22:00 belongs to the day ending
    # that evening, not to the next one as the drop copy's start-time
    # config would name it
    j = journal(tmp_path / "orders")
    monday_20h = datetime(2026, 3, 2, 20, tzinfo=UTC).timestamp()
    j.add(Filled("1O1.1C1", "LPX1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 1, 108_500, monday_20h))
    j.add(DayEndMoved(monday_20h + 3 * 3600))
    j.add(
        Filled(
            "1O1.1C1", "LPX2", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 1, 108_500, monday_20h + 7200
        )
    )
    j.flush()
    office = Office(tmp_path, trading_day_end="21:00")
    office.poll_all()
    dates = [parse_frame(raw).get(75) for _, raw in office.store.get_sent(1, 2)]
    assert dates == [b"20260302", b"20260302"]
    office.close()
    j.close()


def test_the_capture_of_a_bust_or_correction_names_the_booking_it_restates(
    tmp_path: Path,
) -> None:
    j = journal(tmp_path / "orders")
    fill = Filled("1O1.1C1", "LPX1", "LP_A", "HOUSE", "EUR/USD", Side.BUY, 1, 108_500, 5.0)
    j.add(fill)
    j.add(msgspec.structs.replace(fill, exec_id="B1", side=Side.SELL, busts="LPX1"))
    j.add(msgspec.structs.replace(fill, exec_id="G1", corrects="LPX1"))
    j.flush()
    office = Office(tmp_path)
    office.poll_all()
    refs = [parse_frame(raw).get(572) for _, raw in office.store.get_sent(1, 3)]
    assert refs == [None, b"1O1.1C1/LPX1", b"1O1.1C1/LPX1"]
    office.close()
    j.close()


def copied_then_away(data: Path) -> OrderJournal:
    """A journal in ``data/orders`` whose report E1 a drop copy copied
    before it stopped; then E2 (batch 2), kept in a segment by a
    checkpoint, and E3 (batch 3) in the live file."""
    j = journal(data / "orders")
    add_report(j, 2, "E1")
    j.flush()
    office = Office(data)
    office.poll_all()
    office.close()
    add_report(j, 3, "E2")
    j.flush()
    j.checkpoint([Run(1)])
    add_report(j, 4, "E3")
    j.flush()
    return j


def test_a_follower_away_across_checkpoints_finds_every_batch(tmp_path: Path) -> None:
    # away: two checkpoints, trading between and after
    j = copied_then_away(tmp_path)
    j.checkpoint([Run(2)])
    add_report(j, 5, "E4")
    j.flush()
    office = Office(tmp_path)
    office.poll_all()
    assert [e for _, e in office.stored()] == [b"E1", b"E2", b"E3", b"E4"]
    # segments read through are gone
    assert list((tmp_path / "orders" / SEGMENTS_NAME).iterdir()) == []
    office.close()
    j.close()


def segment_then_live(directory: Path) -> OrderJournal:
    """A journal whose reports E2-E39 are in a segment (a checkpoint kept
    them) and E40 in the live file after it."""
    j = journal(directory)
    for seq in range(2, 40):
        add_report(j, seq, f"E{seq}")
    j.flush()
    j.checkpoint([Run(1)])
    add_report(j, 40, "E40")
    j.flush()
    return j


def test_a_segment_read_through_is_cut_down_before_it_goes_unless_named_elsewhere(
    tmp_path: Path,
) -> None:
    """Its blocks are freed a step at a time, with a pause after each; a
    file another name still refers to (the live journal, another segment)
    is only unlinked, its bytes untouched."""
    j = segment_then_live(tmp_path / "orders")
    j.checkpoint([Run(2)])
    segments = sorted((tmp_path / "orders" / SEGMENTS_NAME).iterdir())
    assert len(segments) == 2
    kept = tmp_path / "kept"
    os.link(segments[1], kept)  # the second is also named elsewhere
    size = kept.stat().st_size
    paused: list[None] = []
    office = Office(tmp_path, pause=lambda: paused.append(None))
    office.copier.cut_step = 256
    office.copier.pause_after = 3600.0  # no pause while copying: the cuts' alone
    first = segments[0].stat().st_size
    office.poll_all()
    assert [e for _, e in office.stored()] == [b"E%d" % seq for seq in range(2, 41)]
    assert list((tmp_path / "orders" / SEGMENTS_NAME).iterdir()) == []
    assert kept.stat().st_size == size  # not cut
    # down to its first bytes at most one step long, then unlinked; the
    # other file only unlinked
    assert len(paused) == (first - len(MAGIC)) // 256 > 3
    office.close()
    j.close()


def test_a_segment_left_cut_by_a_crash_is_read_through_and_goes(tmp_path: Path) -> None:
    """The process died between a cut and the unlink: the next one opens
    what is left (its first bytes, a torn batch), copies nothing twice,
    and deletes it."""
    j = segment_then_live(tmp_path / "orders")
    office = Office(tmp_path)
    office.poll_all()
    office.close()
    j.checkpoint([Run(2)])  # the live file kept as a second segment, read through
    (segment,) = sorted((tmp_path / "orders" / SEGMENTS_NAME).iterdir())[-1:]
    with open(segment, "r+b") as cut:
        cut.truncate(len(MAGIC) + 5)  # as a cut interrupted
    add_report(j, 41, "E41")
    j.flush()
    office = Office(tmp_path)
    office.poll_all()
    assert [e for _, e in office.stored()] == [b"E%d" % seq for seq in range(2, 42)]
    assert list((tmp_path / "orders" / SEGMENTS_NAME).iterdir()) == []
    office.close()
    j.close()


def test_a_damaged_segment_holds_the_copies_until_it_is_put_right(tmp_path: Path) -> None:
    """A batch with a wrong checksum and intact ones after it, in a
    segment, is damage, not a crash's torn tail: the copies stop before
    it, the segment stays, and the cause is said once; moved away by
    hand, the copies after it are given up, said, and the live file's
    follow."""
    orders = tmp_path / "orders"
    j = journal(orders)
    for seq in range(2, 8):
        add_report(j, seq, f"E{seq}")
        j.flush()  # a batch each
    j.checkpoint([Run(1)])
    add_report(j, 8, "E8")
    j.flush()
    (segment,) = (orders / SEGMENTS_NAME).iterdir()
    batches = BatchFollower(segment, MAGIC).read(1 << 20)
    fourth = len(MAGIC) + sum(8 + len(b) for b in batches[:3])
    with open(segment, "r+b") as damaged:
        damaged.seek(fourth + 20)  # in the batch of E5
        byte = damaged.read(1)
        damaged.seek(fourth + 20)
        damaged.write(bytes([byte[0] ^ 0x10]))
    office = Office(tmp_path)
    with capture_logs() as logs:
        office.poll_all()
        office.poll_all()
    assert [e for _, e in office.stored()] == [b"E2", b"E3", b"E4"]
    assert segment.exists()
    said = [e for e in logs if e["event"] == "drop_copy_journal_damaged"]
    assert len(said) == 1
    assert said[0]["offset"] == fourth
    assert said[0]["intact_offset"] == fourth + 8 + len(batches[3])
    # the operator moves it away, knowing its later copies are lost
    segment.rename(tmp_path / "damaged-segment")
    with capture_logs() as logs:
        office.poll_all()
    assert [e for _, e in office.stored()] == [b"E2", b"E3", b"E4", b"E8"]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "drop_copy_journal_damage_skipped"
    ]
    office.close()
    j.close()


def test_a_checkpoint_while_following_loses_and_repeats_nothing(tmp_path: Path) -> None:
    j = journal(tmp_path / "orders")
    office = Office(tmp_path)
    for i in range(20):
        add_report(j, i + 2, f"E{i}")
        j.flush()
        if i % 3 == 0:
            office.copier.poll()
        if i % 7 == 6:
            j.checkpoint([Run(i)])
    office.poll_all()
    assert [e for _, e in office.stored()] == [f"E{i}".encode() for i in range(20)]
    office.close()
    j.close()


@pytest.mark.parametrize("stored_before_crash", ["all", "the first batch", "none"])
def test_a_crash_between_the_stores_and_the_cursor_stores_nothing_twice(
    tmp_path: Path, stored_before_crash: str
) -> None:
    j = journal(tmp_path / "orders")
    add_report(j, 2, "E1")
    j.flush()
    office = Office(tmp_path)
    office.poll_all()
    add_report(j, 3, "E2")
    add_capture(j, "LPX2")
    j.flush()
    # the copier dies once batches 2 and 3 are marked pending: after its
    # store took the copies of both, of the first alone, or of neither
    if stored_before_crash == "the first batch":
        office.poll_all()
    add_report(j, 4, "E3")
    j.flush()
    if stored_before_crash == "all":
        office.poll_all()
        assert len(office.stored()) == 4
    # the cursor as the crash left it: marked pending, not moved
    office.close()
    (tmp_path / "dropcopy" / "cursor").write_bytes(struct.pack("<QQ", 1, 3))
    office = Office(tmp_path)
    assert (office.copier.cursor.pending, office.copier.cursor.serial) == (3, 1)
    office.poll_all()
    assert office.stored() == [(b"8", b"E1"), (b"8", b"E2"), (b"AE", b"LPX2"), (b"8", b"E3")]
    assert office.copier.cursor.serial == 3 == office.copier.cursor.pending
    office.close()
    j.close()


class Crash(Exception):
    """The process killed at that point."""


def test_a_second_crash_while_copies_are_held_loses_no_batch(tmp_path: Path) -> None:
    """After a crash between the stores and the cursor, the batches marked
    pending span a segment and the live file.  The copier reads the
    segment through (its copies held, the cursor on disk not moved) and
    dies: the segment must still be there for the next one."""
    j = copied_then_away(tmp_path)
    (tmp_path / "dropcopy" / "cursor").write_bytes(struct.pack("<QQ", 1, 3))
    (segment,) = (tmp_path / "orders" / SEGMENTS_NAME).iterdir()
    reader = BatchFollower(segment, MAGIC)
    in_segment = len(reader.read(1 << 20))
    reader.close()
    pauses: list[None] = []

    def pause_then_die() -> None:
        # a pause comes before every batch: the one after the segment's is
        # the live file's first, read once the segment is read through
        pauses.append(None)
        if len(pauses) == in_segment + 1:
            raise Crash

    office = Office(tmp_path, pause=pause_then_die)
    office.copier.pause_after = 0.0
    with pytest.raises(Crash):
        office.poll_all()
    assert len(list((tmp_path / "orders" / SEGMENTS_NAME).iterdir())) == 1
    office.close()
    office = Office(tmp_path)
    office.poll_all()
    assert [e for _, e in office.stored()] == [b"E1", b"E2", b"E3"]
    # once the cursor is past it, the segment goes
    assert office.copier.cursor.serial == 3
    assert list((tmp_path / "orders" / SEGMENTS_NAME).iterdir()) == []
    office.close()
    j.close()


def test_a_batch_written_again_after_its_sync_failed_loses_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drop copy reads a batch whose fdatasync then fails (it is taken
    back); written again with what was added meanwhile, all of it is copied."""
    j = OrderJournal(tmp_path / "orders", fsync=True, keep_segments=True)
    list(j.replay())
    office = Office(tmp_path)
    real_sync = os.fdatasync

    def read_then_fail(fd: int) -> None:
        office.copier.poll()
        raise OSError(28, "No space left on device")

    add_report(j, 2, "E1")
    monkeypatch.setattr(os, "fdatasync", read_then_fail)
    with pytest.raises(OSError, match="No space"):
        j.flush()
    monkeypatch.setattr(os, "fdatasync", real_sync)
    add_report(j, 3, "E2")
    j.flush()
    office.poll_all()
    assert [e for _, e in office.stored()] == [b"E1", b"E2"]
    office.close()
    j.close()


def test_a_fill_journaled_before_a_restart_on_a_new_grid_is_reported_on_its_own(
    tmp_path: Path,
) -> None:
    """A fill of 3 lots of 1,000 EUR/USD at 108,500 ticks of 0.00001
    (1.085) is journaled; the gateway is stopped before the drop copy has
    read it (killed, or its drop copy behind) and started again with the
    instrument flat and its tick and lot sizes changed, which the start
    allows.  The drop copy, started with the new config, reads the fill in
    the segment kept for it: its TradeCaptureReport must say what was
    traded, 3,000 at 1.085, not the ticks and lots read on the new grid."""
    j = journal(tmp_path / "orders")
    # the checkpoint of the gateway's start records the grid (as the journal
    # writes it: Run, then Grid, at its head)
    j.checkpoint([Run(1), Grid({"EUR/USD": ("0.00001", "1000")})])
    j.add(Filled("1O1.1C1", "LPX1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 3, 108_500, 5.0))
    j.flush()
    # restarted on the new grid: the start's checkpoint keeps the old file
    # as a segment, and records the new grid
    j.checkpoint([Run(2), Grid({"EUR/USD": ("0.000001", "100")})])
    j.close()
    office = Office(tmp_path)
    new_grid = dataclasses.replace(EURUSD, tick_size=Decimal("0.000001"), lot_size=Decimal(100))
    office.copier._instruments["EUR/USD"] = new_grid
    office.poll_all()
    (raw,) = [raw for _, raw in office.store.get_sent(1, office.store.next_sender_seq - 1)]
    capture = parse_frame(raw)
    assert capture.msg_type == b"AE"
    assert (capture.get(31), capture.get(32)) == (b"1.085", b"3000")
    office.close()


def test_a_fill_in_an_instrument_no_longer_configured_still_gets_its_capture(
    tmp_path: Path,
) -> None:
    """As above, the instrument removed from the config at the restart
    (allowed with no open order in it): the client's ExecutionReport of the
    fill is copied, but its TradeCaptureReport must not vanish without a
    word; the journal's grid still says how to write it."""
    j = journal(tmp_path / "orders")
    j.checkpoint([Run(1), Grid({"EUR/USD": ("0.00001", "1000")})])
    j.add(Filled("1O1.1C1", "LPX1", "LP_A", "CLIENT1", "EUR/USD", Side.BUY, 3, 108_500, 5.0))
    j.flush()
    j.checkpoint([Run(2), Grid({"EUR/USD": ("0.00001", "1000")})])
    j.close()
    office = Office(tmp_path)
    del office.copier._instruments["EUR/USD"]
    office.poll_all()
    assert [t for t, _ in office.stored()] == [b"AE"]
    office.close()


def test_a_report_to_a_session_removed_from_the_config_is_still_copied(
    tmp_path: Path,
) -> None:
    """A client's session removed from the config at a restart while the
    drop copy was behind: the reports journaled for it before are copied
    all the same (the client is the report's own TargetCompID), as their
    TradeCaptureReports are; else the back office sees house fills no
    client was told of."""
    j = journal(tmp_path / "orders")
    add_report(j, 2, "E1")
    add_capture(j, "LPX1")
    j.flush()
    j.close()
    office = Office(tmp_path)
    office.copier._clients.clear()
    office.poll_all()
    assert [t for t, _ in office.stored()] == [b"8", b"AE"]
    last = office.store.next_sender_seq - 1
    report = parse_frame(office.store.get_sent(1, last)[0][1])
    assert report.get(1) == b"CLIENT1"
    office.close()


def test_copies_held_after_a_crash_are_not_made_twice_from_a_checkpoints_copied_tail(
    tmp_path: Path,
) -> None:
    """A checkpoint taken a slice at a time copies the batches written
    meanwhile behind the state in the new file, so they are in the segment
    and in the live file both.  After a crash between the stores and the
    cursor, the copier holds the copies of the batches pending while it
    reads the segment, then the live file: the batches it read in the
    segment are not held a second time from the copied tail."""
    j = journal(tmp_path / "orders")
    add_report(j, 2, "E1")
    j.flush()
    office = Office(tmp_path)
    office.poll_all()
    office.close()
    add_report(j, 3, "E2")
    j.flush()
    job = j.start_sliced_checkpoint([Run(1)])
    add_report(j, 4, "E3")  # written while the checkpoint is under way
    j.flush()
    while not job.write_some(1 << 16):
        pass
    job.syncer()()
    while not job.copy_tail(1 << 16):
        pass
    add_report(j, 5, "E4")
    j.flush()
    # the crash: batches 2-4 marked pending, none of their copies stored
    (tmp_path / "dropcopy" / "cursor").write_bytes(struct.pack("<QQ", 1, 4))
    office = Office(tmp_path)
    office.poll_all()
    assert [e for _, e in office.stored()] == [b"E1", b"E2", b"E3", b"E4"]
    assert office.copier.cursor.serial == 4 == office.copier.cursor.pending
    office.close()
    j.close()
