"""The order journal: what the order path must find again after a crash.

The matcher, the exposure ledger and the routings in flight live in memory.
Everything that changes them is also written here, so that a daemon killed
at any moment (``kill -9`` included) comes back with every order a client
was told about, every fill booked once, and every child order that may
still be at an LP.

What is written
---------------
Entries (:data:`~gateway.orderflow.journal_entries.Entry`, msgspec Structs defined in
:mod:`gateway.orderflow.journal_entries`), grouped into one batch per flush:

``Run``
    The first entry of a checkpoint: the run number (one more each start),
    which prefixes OrderIDs, ExecIDs and child order ids so that they never
    repeat across restarts.
``OrderState``
    An order as the matcher holds it, after a change.  The last one wins.
``Sent`` / ``Ended`` / ``Abandoned``
    A child order handed to an LP adapter; its end (filled, canceled,
    rejected); or given up after timeouts (a late fill is still booked).
``Filled``
    One LP fill as booked to the exposure ledger, with the LP's ExecID so
    that the same fill is never booked twice, before or after a restart;
    and when it was booked and the ExecID of the client's report of it,
    for the drop copy's TradeCaptureReport.
``Message``
    A copy of an application message stored for a client session (what the
    client is told: ExecutionReports, cancel rejects), with the LP that made
    the fill an ExecutionReport reports (for the drop copy).  The journal is
    written before the session stores, so a crash between the two writes
    can leave a store behind the journal; on restart the store is completed
    from these copies, and the client is told everything the journal says
    happened.
``Serial``
    The first entry of every batch written while trading, one more than the
    batch before, across checkpoints and restarts (a checkpoint carries the
    last one on, after its ``Run``).  The drop-copy process
    (:mod:`gateway.dropcopy.follow`) follows the journal by it.
``ClientState`` / ``Dropped``
    In a cluster: a client's positions and holdings as the gateway that
    took its session over found them in the session's copy; open orders it
    held no more then (the copy's took their place, each journaled as an
    ``OrderState``).
``DayEnds``
    When the trading day of the orders journaled ends: at the head of each
    checkpoint and when a day ends.  A gateway started after that moment
    (it was down when the day ended) ends the day at start.
``DayEndMoved``
    When the trading day in force ends, after a reload moved
    ``orders.trading_day_end``: no day ended, the next end is later or
    earlier.
``RetainFinished``
    The bound on the final orders the matcher keeps
    (``orders.retain_finished``): at the head of each checkpoint, and when a
    reload changes it.  A restart keeps the final orders the matcher kept
    under the bound in force as each ended.
``Grid``
    Each instrument's tick size and lot size, the grid every tick and lot
    in the journal is counted on: at the head of each checkpoint (so
    written at every start).  A start whose config changed the grid of an
    instrument the journal holds orders, children or positions in is
    refused (:meth:`gateway.orderflow.recovery.Recovery.regrid`).
``Positions``, ``InFlight``, ``EndedState``, ``Expiring``
    Checkpoint-only: the ledger's positions, a child in flight with what it
    has filled so far, a child its LP ended that is still watched for a
    fill after the end (with the lots and ExecIDs counted), the DAY orders
    to expire when their routing ends.

File format
-----------
``orders/journal`` under the data directory, a
:class:`~gateway.storage.batch_file.BatchFile` with the 8-byte magic
``b"ORDJRNL\\x01"``: batch records ``crc32 (u32) | length (u32) | body``,
little-endian, the checksum covering length and body.  A body is one
msgpack array of entries.  A batch is written with one ``write(2)``; a crash
that tears it leaves a short or bad-checksum tail, which the next open
discards (with a warning) as a whole: no batch is ever half applied.  A
bad batch with an intact one after it is damage, not a crash's doing:
:meth:`OrderJournal.replay` raises :class:`JournalError` naming both
offsets and leaves the file as it is.

Durability
----------
The journal follows the session store's policy (``[store] fsync``).  Every
batch reaches the operating system before any byte that depends on it
leaves the process: the asyncio edge's outbox (``gateway.net``) calls
:meth:`OrderJournal.flush` before it flushes any session store and writes
any socket, and the batch is flushed at the end of the loop iteration
anyway.  So after ``kill -9`` the journal holds
at least everything a client or an LP was told; with ``fsync = "batch"``
that holds after a power loss too.

Checkpoints
-----------
:meth:`OrderJournal.checkpoint` replaces the file atomically with the
current state only (written to ``journal.tmp``, fsynced, renamed, directory
fsynced).  The order path takes one after recovering at start and one at
the end of each trading day; between checkpoints the journal grows with
the day's traffic.  When it has grown past its bound while trading, the
order flow takes the checkpoint a slice at a time instead
(:meth:`OrderJournal.start_sliced_checkpoint`, :meth:`BatchFile.replace_sliced`):
each loop turn encodes and writes a few kilobytes of the state to
``journal.next`` while the live file goes on taking entries; the entries
added since the start are then copied behind the state before the new file
takes the old one's place.  The state is read as the slices are written,
not as it was at the start: each order's and child's entry is its whole
state, and what was journaled about it meanwhile, copied behind, supersedes
it or (a fill) adds to the aggregates taken at the start; see
:func:`gateway.orderflow.restore.sliced_checkpoint_entries`.  (A forked
child writing the state as it was at the fork was the way before: the fork
held the loop 2-4 ms on a gateway of 80-150 MB.)

With a drop copy, the file a checkpoint replaces is first linked into
``orders/segments/`` (named by the last serial written), so that batches the
drop-copy process has not read yet outlive the replacement; it removes a
segment once it has read it through.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from gateway.orderflow.journal_entries import Entry, Run, Serial
from gateway.storage.batch_file import (
    BackgroundReplace,
    BatchFile,
    BatchFileLockedError,
    DamagedError,
    WrongMagicError,
)
from gateway.storage.durable import fsync_dir, make_dir, other_format, write_file

__all__ = [
    "JournalError",
    "OrderJournal",
]

logger = logging.getLogger("gateway.orderflow.journal")

MAGIC: Final = b"ORDJRNL\x01"
JOURNAL_NAME: Final = "journal"
SEGMENTS_NAME: Final = "segments"
"""The folder, beside the journal, of the files a checkpoint replaced while
the drop copy may not have read them yet (see :class:`OrderJournal`)."""

_ARRAY16: Final = struct.Struct(">BH")
_ARRAY32: Final = struct.Struct(">BI")
_CHECKPOINT_BATCH: Final = 4096

_SLICED_BATCH: Final = 64
"""Entries per batch of a checkpoint written in slices: a slice ends on a
batch's end, so batches are small (a few kilobytes)."""


RUN_MARK_NAME: Final = "run"
"""The file beside the journal that keeps the latest run started."""


class JournalError(Exception):
    """The journal cannot be opened: in use by another process, or damaged
    in a way a crash does not explain."""


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return _ARRAY16.pack(0xDC, n)
    return _ARRAY32.pack(0xDD, n)


def _body(encoded: list[bytes]) -> bytes:
    """One batch body: the msgpack array of the entries ``encoded``."""
    return _array_header(len(encoded)) + b"".join(encoded)


class OrderJournal:
    """The journal file of one gateway (see the module documentation).

    ``OrderJournal(directory)`` locks and opens (or creates) the journal in
    ``directory``; :meth:`replay` must be read to the end before anything
    is written.  ``on_dirty`` is called when the first entry after a flush
    is added, to have :meth:`flush` run soon.

    Every batch written while trading starts with a :class:`Serial`, one
    more than the last one written or read.  With ``keep_segments``, a
    checkpoint first links the file it replaces into ``segments/`` (named
    by the last serial written before it), so that a reader following the
    journal (the drop copy) finds every batch even if it was stopped while
    the checkpoint happened; that reader removes a segment once it has read
    it through.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = False,
        keep_segments: bool = False,
    ) -> None:
        self._pending = bytearray()
        """The entries of the next batch, encoded one after another."""
        self._pending_count = 0
        self._unwritten: bytes | None = None
        """A batch whose write failed, written again at the next flush."""
        encoder = msgspec.msgpack.Encoder()
        self._encode = encoder.encode
        self._encode_into = encoder.encode_into
        self.run = 0
        """The run number of the last checkpoint read or written."""
        self.serial = 0
        """The serial of the last batch read or written (or to be written
        again, :meth:`flush`)."""
        self.on_dirty: Callable[[], None] | None = None
        self.keep_segments = keep_segments
        if keep_segments:
            # made (durably) now rather than by a checkpoint on the loop
            make_dir(Path(directory) / SEGMENTS_NAME)
        try:
            self._file = BatchFile(directory, JOURNAL_NAME, MAGIC, fsync=fsync)
        except BatchFileLockedError:
            raise JournalError(f"order journal {directory} is in use by another process") from None

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._file.path

    @property
    def next_path(self) -> Path:
        """Where a checkpoint taken beside the loop is written before it
        replaces the journal."""
        return self._file.next_path

    def fileno(self) -> int:
        """The descriptor of the live journal file (-1 once closed)."""
        return self._file.fileno()

    @property
    def size(self) -> int:
        """Bytes in the file after the last flush."""
        return self._file.size

    # --- reading ------------------------------------------------------------------

    def replay(self) -> Iterator[Entry]:
        """Every entry of every complete batch, oldest first.  A torn tail is
        logged and cut off once the last good batch has been read; a
        damaged batch (an intact one after it) raises :class:`JournalError`
        and leaves the file as it is."""
        decode = msgspec.msgpack.Decoder(list[Entry]).decode
        batches = 0
        try:
            for body in self._file.replay():
                try:
                    entries = decode(body)
                except msgspec.ValidationError as unknown:
                    # its checksum is right: an entry, or a field of one,
                    # that this version does not know
                    raise JournalError(
                        f"{self.path}: batch {batches + 1} holds an entry this version "
                        f"cannot read ({unknown}): most likely the journal was written by a "
                        "newer version of fixgw; start that version "
                        "(docs/operations.md, Upgrades)"
                    ) from None
                except msgspec.DecodeError as exc:
                    raise JournalError(
                        f"{self.path}: unreadable batch {batches + 1}: {exc}"
                    ) from None
                for entry in entries:
                    if isinstance(entry, Run):
                        self.run = entry.run
                    elif isinstance(entry, Serial):
                        self.serial = entry.serial
                        continue
                    yield entry
                batches += 1
        except WrongMagicError as wrong:
            raise JournalError(
                other_format(self.path, wrong.found, MAGIC, "an order journal")
            ) from None
        except DamagedError as damaged:
            raise JournalError(
                f"{self.path}: the batch at offset {damaged.offset} is damaged and the batch "
                f"at offset {damaged.intact} after it is intact: not a torn write a "
                "crash leaves; the journal is left as it is: restore it from a backup (fixgw "
                "has no way to start past it; docs/operations.md, Damaged journal or store)"
            ) from None
        # a segment kept for the drop copy is named by the serial of its last
        # batch: the batches written from now on come after every one (a
        # journal restored from an older copy is behind them)
        self.serial = max(self.serial, self._kept_serial())
        marked = self._run_mark()
        if marked > self.run:
            # the journal is older than runs started before it (restored
            # from a copy): the IDs go on after the latest run, never again
            logger.warning(
                {
                    "event": "order_journal_older_than_its_runs",
                    "path": str(self.path),
                    "journal_run": self.run,
                    "latest_run": marked,
                }
            )
            self.run = marked
        logger.info(
            {
                "event": "order_journal_read",
                "path": str(self.path),
                "batches": batches,
                "run": self.run,
            }
        )

    def _kept_serial(self) -> int:
        try:
            names = os.listdir(self.path.parent / SEGMENTS_NAME)
        except OSError:
            return 0
        return max((int(name) for name in names if name.isdigit()), default=0)

    def _run_mark(self) -> int:
        try:
            text = (self.path.parent / RUN_MARK_NAME).read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            mark = self.path.parent / RUN_MARK_NAME
            raise JournalError(f"{mark}: cannot be read: {exc}") from None
        try:
            return int(text.strip())
        except ValueError:
            raise JournalError(
                f"{self.path.parent / RUN_MARK_NAME} holds {text[:40]!r}, not a run number:"
                " put the latest run started in it, or delete it"
            ) from None

    def mark_run(self, run: int) -> None:
        """Keep ``run`` as the latest run started, durably, beside the
        journal, before it hands out an ID: a journal restored from an
        older copy then goes on after it (:meth:`replay`)."""
        write_file(self.path.parent / RUN_MARK_NAME, b"%d\n" % run)

    # --- writing ------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        """Add one entry to the next batch (encoded now: a later change to
        the objects it names does not alter it)."""
        if not self._pending_count and self.on_dirty is not None:
            self.on_dirty()
        pending = self._pending
        end = len(pending)
        try:
            self._encode_into(entry, pending, -1)
        except BaseException:
            del pending[end:]  # no part of an entry that failed to encode
            raise
        self._pending_count += 1

    def flush(self) -> None:
        """Write the pending entries as one batch; nothing if there are none.
        A batch that could not be written is written again first, as it was:
        its serial and entries (a reader may have read it whole before a
        failed sync took it back)."""
        unwritten = self._unwritten
        if unwritten is not None:
            self._append(unwritten)
            self._unwritten = None
        count = self._pending_count
        if not count:
            return
        if not self._file.replayed:
            raise JournalError("the journal must be replayed before it is written")
        serial = self.serial + 1
        pending = self._pending
        body = b"".join((_array_header(count + 1), self._encode(Serial(serial)), pending))
        self.serial = serial
        pending.clear()
        self._pending_count = 0
        self._append(body)

    def _append(self, body: bytes) -> None:
        try:
            self._file.append(body)
        except OSError:
            # no partial batch stays in front of the next one; keep the
            # batch for the next flush (nothing that depends on it leaves
            # meanwhile: the write barrier raised too)
            if self._unwritten is None:  # said once, not at every retry
                logger.critical({"event": "order_journal_write_failed", "path": str(self.path)})
            self._unwritten = body
            raise

    def checkpoint(self, entries: Iterable[Entry]) -> None:
        """Replace the journal with ``entries`` (the whole state now); what
        is pending is dropped, as the state supersedes it."""
        folder = self._keep_segment()
        if folder is not None:
            fsync_dir(folder)
        self._file.replace(self._checkpoint_bodies(entries))
        self._pending.clear()
        self._pending_count = 0
        self._unwritten = None

    def start_sliced_checkpoint(self, entries: Iterable[Entry]) -> BackgroundReplace:
        """Start a checkpoint written on the loop a slice at a time (see
        :meth:`BatchFile.replace_sliced`): what is pending is written first;
        ``entries`` are encoded as the slices are written, so they may be
        read from the live state as it changes, provided each entity's
        entry is its whole state and what is journaled from the start on
        (copied behind them) supersedes or adds to it."""
        self.flush()
        folder = self._keep_segment()
        # the segment's entry is made durable with the new file, by the
        # thread that syncs it, before the file replaces the journal: an
        # fsync of a directory can hold the loop for tens of milliseconds
        return self._file.replace_sliced(
            self._checkpoint_bodies(entries, _SLICED_BATCH), sync_dir=folder
        )

    def _keep_segment(self) -> Path | None:
        """With ``keep_segments``: link the file about to be replaced into
        ``segments/``, unless it holds no batch written while trading.
        The folder whose entries the caller must make durable before the
        file is replaced: with ``fsync`` only, as for the journal's own
        writes (a link made survives a crash of the process; only a power
        loss can take it back), and None when no link was made."""
        if not self.keep_segments or self.serial == 0:
            return None
        folder = self.path.parent / SEGMENTS_NAME
        make_dir(folder)
        link = folder / f"{self.serial:020d}"
        try:
            os.link(self.path, link)
        except FileExistsError:
            # the same file, replaced again before another batch was written
            # (a checkpoint given up before its link was synced: synced now)
            pass
        return folder if self._file.fsync else None

    def _checkpoint_bodies(self, entries: Iterable[Entry], batch: int = 0) -> Iterator[bytes]:
        encode = self._encode
        size = batch or _CHECKPOINT_BATCH
        chunk: list[bytes] = []
        for entry in entries:
            chunk.append(encode(entry))
            if isinstance(entry, Run):
                self.run = entry.run
                # the serial goes on across checkpoints (not first in its
                # batch: a batch starting with one is a batch of trading)
                chunk.append(encode(Serial(self.serial)))
            if len(chunk) >= size:
                yield _body(chunk)
                chunk = []
        if chunk:
            yield _body(chunk)

    def close(self) -> None:
        """Write what is pending (once the journal was read) and release the file."""
        file = self._file
        if file.closed:
            return
        try:
            if file.replayed:
                self.flush()
        finally:
            file.close()
