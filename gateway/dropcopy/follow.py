"""Following the order journal: each batch the gateway writes while trading
becomes the drop copies of what it records, in the journal's order.

The journal (:mod:`gateway.orderflow.journal`) starts every batch written
while trading with a :class:`~gateway.orderflow.journal_entries.Serial`, one
more than the batch before; a checkpoint's own batches carry none.  What a
batch holds for the drop copy:

* ``Message``: a message stored for a client session.  An ExecutionReport
  to a client a drop-copy session covers is copied to it
  (:func:`~gateway.dropcopy.copies.copy_body`: the client's body with
  Account, LastMkt for a fill, CopyMsgIndicator = Y);
* ``Filled``: lots of an LP fill booked to a client or the house, which
  become a TradeCaptureReport (:func:`~gateway.dropcopy.copies.trade_capture_body`)
  to the drop copies covering that client (the house's: those covering
  every client).

Where it is kept
----------------
``<data_dir>/dropcopy/cursor`` holds the serial of the last batch whose
copies are stored (8 bytes), written after the drop-copy session stores
are flushed.  A checkpoint links the journal file it replaces into
``orders/segments/`` first (named by the last serial written before it),
so batches written while this process was down are still there when it
comes back; a segment is removed once read through and the cursor on disk
is past its batches.  Segments are read
oldest first, then the live journal; when the journal's path names a new
file, the one being read is read to its end (nothing is appended to it any
more) before the next.

After a crash between a store's flush and the cursor's write, the batches
after the cursor are copied again: a session whose last stored copy is one
of them skips the copies up to and including it, so nothing is stored
twice.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Final

import msgspec
import structlog

from gateway.dropcopy.copies import DropCopies, copy_body, trade_capture_body
from gateway.fix import codec, spec44
from gateway.fix.session import Session
from gateway.orderflow.journal import JOURNAL_NAME, MAGIC, SEGMENTS_NAME
from gateway.orderflow.journal_entries import DayEndMoved, Filled, Grid, Message, Run, Serial
from gateway.orderflow.recovery import HOUSE
from gateway.storage.batch_file import BatchFollower
from gateway.storage.durable import datasync, make_dir, write_file
from router.model import AssetClass, Instrument

__all__ = ["Cursor", "JournalCopier", "message_body"]

_log = structlog.get_logger("gateway.dropcopy.follow")


def _tag_of(kind: type[msgspec.Struct]) -> int:
    """The tag an entry of ``kind`` is written with (:func:`_tag` reads it)."""
    tag = kind.__struct_config__.tag
    assert isinstance(tag, int)
    return tag


_SERIAL_TAG: Final = _tag_of(Serial)
_MESSAGE_TAG: Final = _tag_of(Message)
_FILLED_TAG: Final = _tag_of(Filled)
_GRID_TAG: Final = _tag_of(Grid)
_RUN_TAG: Final = _tag_of(Run)
_DAY_END_MOVED_TAG: Final = _tag_of(DayEndMoved)
_PAIR: Final = struct.Struct("<QQ")

_HEADER: Final = frozenset(spec44.HEADER)


def message_body(raw: bytes) -> tuple[bytes, bytes]:
    """``(MsgType, body)`` of a whole FIX message as stored: the fields
    between the standard header and the CheckSum (``(b"", b"")`` for one
    whose header cannot be read plainly)."""
    scanned = codec.scan_header(raw, _HEADER)
    if scanned is None:
        return b"", b""
    msg_type, _, start = scanned
    return msg_type, raw[start : len(raw) - codec.CHECKSUM_FIELD]


def _target_of(raw: bytes) -> str | None:
    """The TargetCompID of a whole FIX message as stored (None for one whose
    header cannot be read plainly)."""
    scanned = codec.scan_header(raw, _HEADER)
    if scanned is None:
        return None
    for tag, value in scanned[1]:
        if tag == 56:
            return value.decode("latin-1")
    return None


def _tag(raw: msgspec.Raw) -> int:
    """The tag of an entry as msgpack encodes it (an array, the tag first)."""
    entry = memoryview(raw)
    head = entry[0]
    if 0x90 <= head <= 0x9F:
        return entry[1]
    return entry[3] if head == 0xDC else entry[5]


PAUSE_AFTER: Final = 0.0005
"""Seconds of copying between two pauses.  At idle priority the process
gets the gateway's core when the scheduler finds the gateway ahead of its
share, and keeps it until it sleeps, yields or the next tick (4 ms on a
250 Hz kernel) while the gateway waits: a yield this often gives it back
within half a millisecond."""

CUT_STEP: Final = 4 << 20
"""Bytes a segment read through is cut by at a time before it is deleted."""


class Cursor:
    """Where the copies stand: ``serial``, the last journal batch whose
    copies are stored; ``pending``, the last one whose copies were being
    stored when the process stopped (more than ``serial`` only after a
    crash between a store's flush and the cursor's write)."""

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        make_dir(directory)
        self.path = directory / "cursor"
        self._fsync = fsync
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        if len(data) == _PAIR.size:
            self.serial, self.pending = _PAIR.unpack(data)
        else:
            self.serial = self.pending = 0
        self._fd = -1

    def _write(self, serial: int, pending: int) -> None:
        if self._fd < 0:
            if not self.path.exists():
                write_file(self.path, _PAIR.pack(self.serial, self.pending))
            self._fd = os.open(self.path, os.O_WRONLY)
        os.pwrite(self._fd, _PAIR.pack(serial, pending), 0)
        if self._fsync:
            datasync(self._fd)

    def begin(self, pending: int) -> None:
        """The copies of the batches up to ``pending`` are about to be stored."""
        self._write(self.serial, pending)
        self.pending = pending

    def save(self, serial: int) -> None:
        """They are."""
        self._write(serial, serial)
        self.serial = self.pending = serial

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class JournalCopier:
    """Makes the drop copies of the journal in ``orders`` (see the module
    documentation): :meth:`poll` reads what was written since and records
    the copies on the drop-copy sessions (``wake`` has each one written);
    ``flush`` writes the stores, and is called before the cursor moves."""

    def __init__(
        self,
        orders: Path,
        cursor: Cursor,
        drop_copies: DropCopies,
        clients: dict[str, str],
        instruments: dict[str, Instrument],
        flush: Callable[[], None],
        wake: Callable[[Session], None],
        clock: Callable[[], float],
        trading_day_end: str = "00:00",
        pause: Callable[[], None] | None = None,
    ) -> None:
        """``clients``: client session id -> the client's CompID;
        ``trading_day_end``: when the trading day ends (``HH:MM`` UTC),
        which names the TradeDate of the trade captures; ``pause``, when
        given, is called after every ``pause_after`` seconds of copying
        (the process gives its core back to anything else ready on it)."""
        self.orders = orders
        self._pause = pause
        self.pause_after = PAUSE_AFTER
        self.cut_step = CUT_STEP
        self.cursor = cursor
        self._drop_copies = drop_copies
        self._clients = clients
        self._instruments = instruments
        self._flush = flush
        self._wake = wake
        self._clock = clock
        hours, minutes = trading_day_end.split(":")
        self._day_end = int(hours) * 3600 + int(minutes) * 60
        self._follower: BatchFollower | None = None
        self._decode_message = msgspec.msgpack.Decoder(Message).decode
        self._decode_filled = msgspec.msgpack.Decoder(Filled).decode
        self._decode_serial = msgspec.msgpack.Decoder(Serial).decode
        self._decode_grid = msgspec.msgpack.Decoder(Grid).decode
        self._decode_day_end = msgspec.msgpack.Decoder(DayEndMoved).decode
        self._on_grid: dict[str, Instrument] = {}
        """The instruments whose ticks and lots the file being read counts
        on another grid than the config's, or that the config no longer
        lists (from the Grid entry at the head of its checkpoint)."""
        self._split = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
        self.copied = 0
        """Copies recorded since the start."""
        self.journal_serial = cursor.serial
        """The serial of the last batch read (copied or not)."""
        # after a crash between a flush and the cursor's write: the copies
        # of the batches up to cursor.pending are made again and held, per
        # session, until it is known whether its store has them already
        self._held: dict[Session, list[tuple[bytes, bytes]]] | None = (
            {} if cursor.pending > cursor.serial else None
        )
        # segments read through while copies are held: the cursor on disk
        # does not cover them yet, so they stay until it does
        self._read_through: list[Path] = []
        # the file and offset of the damage said last (said once)
        self._damage_said: tuple[int, int] | None = None

    @property
    def segments(self) -> Path:
        return self.orders / SEGMENTS_NAME

    def _segment_files(self) -> list[Path]:
        try:
            names = sorted(p for p in os.listdir(self.segments) if p.isdigit())
        except FileNotFoundError:
            return []
        return [self.segments / n for n in names]

    def _open_next(self) -> BatchFollower | None:
        """The oldest segment not known to be read through, or the live journal.

        The live journal is opened before the segments are listed: a
        checkpoint links the file it replaces before it renames the new one
        over it, so a file replaced in between is listed as a segment, and
        read from there (listing first could open the new file and miss the
        old one's last batches)."""
        try:
            live: BatchFollower | None = BatchFollower(self.orders / JOURNAL_NAME, MAGIC)
        except FileNotFoundError:
            live = None
        segments = [s for s in self._segment_files() if s not in self._read_through]
        cursor = self.cursor.serial
        # a segment is read through when the next one was linked at or
        # before the cursor (all its batches come before that one's name)
        while len(segments) > 1 and int(segments[1].name) <= cursor:
            self._remove(segments.pop(0))
        if not segments:
            return live
        if live is not None:
            live.close()
        try:
            return BatchFollower(segments[0], MAGIC)
        except FileNotFoundError:
            return None

    def poll(self, limit: int = 1 << 22) -> int:
        """Copy what the journal holds beyond the cursor (about ``limit``
        bytes of batches at most); returns the batches read (0: nothing
        new), copied or not (``copied`` counts the copies)."""
        follower = self._follower
        if follower is None:
            follower = self._follower = self._open_next()
            if follower is None:
                return 0
        bodies = follower.read(limit)
        if not bodies:
            live = follower.inode == self._live_inode()
            if not live:
                # no longer appended to: anything written before the switch is read now
                bodies = follower.read(limit)
            if not bodies:
                if (not live or follower.checksum_wrong) and self._damaged(follower):
                    return 0  # held here: the copies after it are not skipped
                if not live:
                    self._finished(follower)
                    return self.poll(limit)
        if bodies:
            self._copy(bodies)
        return len(bodies)

    def _damaged(self, follower: BatchFollower) -> bool:
        """Whether a file read as far as it reads holds an intact batch
        past what could not be read: damage (a bad disk block), not the
        torn tail of a crash.  The copies stop there, the file is kept,
        and the cause is said once: the lag then grows until the file is
        put right (docs/operations.md, "Damaged journal or store")."""
        intact = follower.damage()
        if intact < 0:
            return False
        if not self._named(follower):
            # moved away by hand: its copies after the damage are given up
            _log.error(
                "drop_copy_journal_damage_skipped",
                path=str(follower.path),
                offset=follower.offset,
                serial=self.journal_serial,
                hint="the copies of the batches after the damage are not sent",
            )
            return False
        if self._damage_said != (follower.inode, follower.offset):
            self._damage_said = (follower.inode, follower.offset)
            _log.error(
                "drop_copy_journal_damaged",
                path=str(follower.path),
                offset=follower.offset,
                intact_offset=intact,
                serial=self.journal_serial,
                hint="copies stop here; restore the file from a copy, or move it away "
                "to go on without the copies in it",
            )
        return True

    def _named(self, follower: BatchFollower) -> bool:
        """Whether the file read is still the live journal or a segment."""
        return follower.inode == self._live_inode() or bool(self._segments_of(follower.inode))

    def _live_inode(self) -> int:
        try:
            return os.stat(self.orders / JOURNAL_NAME).st_ino
        except FileNotFoundError:
            return -1

    def _finished(self, follower: BatchFollower) -> None:
        """A file read through: its segment goes, once the cursor on disk
        is past its batches (while copies are held after a crash, it is
        not: a crash then would find the cursor where it was, and the
        batches must still be there)."""
        follower.close()
        self._follower = None
        for segment in self._segments_of(follower.inode):
            if self._held is None:
                self._remove(segment)
            else:
                self._read_through.append(segment)

    def _segments_of(self, inode: int) -> list[Path]:
        """The segments that name the file ``inode`` (one, or none)."""
        named = []
        for segment in self._segment_files():
            try:
                if os.stat(segment).st_ino == inode:
                    named.append(segment)
            except FileNotFoundError:
                continue
        return named

    def _remove(self, segment: Path) -> None:
        """Delete a segment read through.  The kernel frees a file's blocks
        and cached pages at once when its last name goes (milliseconds for
        a segment of tens of MB, on whichever core this process is on,
        which may be the gateway's): when no other name refers to it, it is
        cut down ``cut_step`` bytes at a time first, with a pause after
        each cut."""
        try:
            fd = os.open(segment, os.O_WRONLY)
        except FileNotFoundError:
            return
        except OSError:  # not writable here (a restored file): deleted whole
            segment.unlink(missing_ok=True)
            return
        try:
            stat = os.fstat(fd)
            if stat.st_nlink == 1:  # not the live journal, nor another segment
                size = stat.st_size
                pause = self._pause
                # its first bytes stay until the unlink: one left by a
                # crash meanwhile still opens as a journal, read through
                while size - self.cut_step >= len(MAGIC):
                    size -= self.cut_step
                    os.ftruncate(fd, size)
                    if pause is not None:
                        pause()
        finally:
            os.close(fd)
        segment.unlink(missing_ok=True)

    def _copy(self, bodies: Iterable[bytes]) -> int:
        made = 0
        last = self.cursor.serial
        if self._held is not None:
            # the cursor stays while copies are held: the batches held
            # already are not held again when the next file repeats them
            # (a checkpoint's copy of the batches written while it was taken)
            last = max(last, self.journal_serial)
        split = self._split
        now = self._clock()
        pause = self._pause
        due = time.perf_counter() + self.pause_after
        for body in bodies:
            if pause is not None and time.perf_counter() >= due:
                pause()
                due = time.perf_counter() + self.pause_after
            entries = split(body)
            if not entries or _tag(entries[0]) != _SERIAL_TAG:
                # a checkpoint's batch: the state, nothing new but the grid
                # its file counts ticks and lots on (at its head: Run,
                # Serial, Grid)
                if entries and _tag(entries[0]) == _RUN_TAG:
                    grids = [e for e in entries[1:3] if _tag(e) == _GRID_TAG]
                    self._regrid(self._decode_grid(grids[0]).sizes if grids else {})
                continue
            serial = self._decode_serial(entries[0]).serial
            self.journal_serial = max(self.journal_serial, serial)
            if serial <= last:
                continue  # copied before
            if self._held is not None and serial > self.cursor.pending:
                made += self._settle_held(now)
            for entry in entries[1:]:
                tag = _tag(entry)
                if tag == _MESSAGE_TAG:
                    made += self._copy_message(self._decode_message(entry), now)
                elif tag == _FILLED_TAG:
                    made += self._capture(self._decode_filled(entry), now)
                elif tag == _DAY_END_MOVED_TAG:
                    # a reload moved orders.trading_day_end: the captures
                    # that follow name their trading day by the new end
                    self._day_end = round(self._decode_day_end(entry).at) % 86400
            last = serial
        if self._held is not None and last >= self.cursor.pending:
            made += self._settle_held(now)
        if last != self.cursor.serial and self._held is None:
            self.cursor.begin(last)
            if made:
                self._flush()
            self.cursor.save(last)
            while self._read_through:
                self._remove(self._read_through.pop(0))
        self.copied += made
        return made

    def _regrid(self, sizes: dict[str, tuple[str, str]]) -> None:
        """The grid of the batches that follow, as their journal says it:
        an instrument whose sizes the config changed since, or that it no
        longer lists, is written on the journal's."""
        on_grid: dict[str, Instrument] = {}
        for symbol, (tick, lot) in sizes.items():
            tick_size, lot_size = Decimal(tick), Decimal(lot)
            configured = self._instruments.get(symbol)
            if configured is None:
                configured = Instrument(symbol, AssetClass.FX, tick_size, lot_size, 1, 1, "")
            elif configured.tick_size == tick_size and configured.lot_size == lot_size:
                continue
            on_grid[symbol] = dataclasses.replace(
                configured, tick_size=tick_size, lot_size=lot_size
            )
        self._on_grid = on_grid

    def _settle_held(self, now: float) -> int:
        """The copies made again after a crash, up to ``cursor.pending``:
        a session's store holds those up to its last stored copy, if that
        is one of them; it gets the ones after it (all, if it is none)."""
        held, self._held = self._held or {}, None
        made = 0
        for session, copies in held.items():
            last = _last_copy(session)
            start = 0
            for i in range(len(copies) - 1, -1, -1):
                if copies[i][1] == last:
                    start = i + 1
                    break
            for msg_type, body in copies[start:]:
                session.send_recorded(msg_type, body, now)
                made += 1
            if start < len(copies):
                self._wake(session)
        return made

    def _record(self, session: Session, msg_type: bytes, body: bytes, now: float) -> int:
        held = self._held
        if held is not None:
            held.setdefault(session, []).append((msg_type, body))
            return 0
        session.send_recorded(msg_type, body, now)
        self._wake(session)
        return 1

    def _copy_message(self, message: Message, now: float) -> int:
        client = self._clients.get(message.session)
        if client is None:
            # a session the config no longer lists (removed at a restart
            # while this process was behind): the client is the report's
            # own TargetCompID
            client = _target_of(message.raw)
            if client is None:
                return 0
            self._clients[message.session] = client
        sessions = self._drop_copies.covering(client)
        if not sessions:
            return 0
        msg_type, body = message_body(message.raw)
        if msg_type != b"8":
            return 0
        copied = copy_body(body, client.encode("latin-1", "replace"), message.market)
        return sum(self._record(s, b"8", copied, now) for s in sessions)

    def _capture(self, c: Filled, now: float) -> int:
        house = c.account == HOUSE
        drop_copies = self._drop_copies
        sessions = drop_copies.all if house else drop_copies.covering(c.account)
        if not sessions:
            return 0
        instrument = self._on_grid.get(c.symbol) or self._instruments.get(c.symbol)
        if instrument is None:
            _log.error(
                "drop_copy_capture_unknown_instrument",
                symbol=c.symbol,
                child_id=c.child_id,
                exec_id=c.exec_id,
            )
            return 0
        body = trade_capture_body(
            child_id=c.child_id,
            exec_id=c.exec_id,
            lp=c.lp,
            account=c.account,
            house=house,
            instrument=instrument,
            side=c.side,
            lots=c.qty,
            price=c.price,
            now=c.time or now,
            client_exec_id=c.client_exec_id,
            day_end=self._day_end,
            restates=c.busts or c.corrects,
        )
        return sum(self._record(s, b"AE", body, now) for s in sessions)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
            self._follower = None
        self.cursor.close()


def _last_copy(session: Session) -> bytes:
    """The body of the last application message stored for ``session``
    ("" when there is none)."""
    store = session.store
    last = store.next_sender_seq - 1
    if last < 1:
        return b""
    for _, raw in reversed(store.get_sent(max(1, last - 63), last)):
        msg_type, body = message_body(raw)
        if msg_type in (b"8", b"AE"):
            return body
    return b""
