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
    that the same fill is never booked twice, before or after a restart.
``Message``
    A copy of an application message stored for a client session (what the
    client is told: ExecutionReports, cancel rejects).  The journal is
    written before the session stores, so a crash between the two writes
    can leave a store behind the journal; on restart the store is completed
    from these copies, and the client is told everything the journal says
    happened.
``Positions``, ``InFlight``, ``Expiring``
    Checkpoint-only: the ledger's positions, a child in flight with what it
    has filled so far, the DAY orders to expire when their routing ends.

File format
-----------
``orders/journal`` under the data directory: the 8-byte magic
``b"ORDJRNL\\x01"``, then batch records ``crc32 (u32) | length (u32) | body``,
little-endian, the checksum covering length and body.  A body is one
msgpack array of entries.  A batch is written with one ``write(2)``; a crash
that tears it leaves a short or bad-checksum tail, which the next open
discards (with a warning) as a whole: no batch is ever half applied.

Durability
----------
The journal follows the session store's policy (``[store] fsync``).  Every
batch reaches the operating system before any byte that depends on it
leaves the process: sessions call :meth:`OrderJournal.flush` (their write
barrier) before flushing their own store, and the batch is flushed at the
end of the loop iteration anyway.  So after ``kill -9`` the journal holds
at least everything a client or an LP was told; with ``fsync = "batch"``
that holds after a power loss too.

Checkpoints
-----------
:meth:`OrderJournal.checkpoint` replaces the file atomically with the
current state only (written to ``journal.tmp``, fsynced, renamed, directory
fsynced).  The order path takes one after recovering at start and one at
the end of each trading day; between checkpoints the journal grows with
the day's traffic.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from gateway.storage.durable import append_all, datasync, lock_directory, replace_file
from gateway.orderflow.journal_entries import Entry, Run

__all__ = [
    "JournalError",
    "OrderJournal",
]

logger = logging.getLogger("gateway.orderflow.journal")

MAGIC: Final = b"ORDJRNL\x01"
JOURNAL_NAME: Final = "journal"

_HEAD: Final = struct.Struct("<II")  # crc32, length
_LEN: Final = struct.Struct("<I")
_ARRAY16: Final = struct.Struct(">BH")
_ARRAY32: Final = struct.Struct(">BI")
_CHECKPOINT_BATCH: Final = 4096


class JournalError(Exception):
    """The journal cannot be opened: in use by another process, or damaged
    in a way a crash does not explain."""


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return _ARRAY16.pack(0xDC, n)
    return _ARRAY32.pack(0xDD, n)


def _batch(body: bytes) -> bytes:
    length = _LEN.pack(len(body))
    return _LEN.pack(zlib.crc32(body, zlib.crc32(length))) + length + body


class OrderJournal:
    """The journal file of one gateway (see the module documentation).

    ``OrderJournal(directory)`` locks and opens (or creates) the journal in
    ``directory``; :meth:`replay` must be read to the end before anything
    is written.  ``on_dirty`` is called when the first entry after a flush
    is added, to have :meth:`flush` run soon.
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self._dir = Path(directory)
        self._path = self._dir / JOURNAL_NAME
        self._fsync = fsync
        self._pending: list[bytes] = []
        self._encode = msgspec.msgpack.Encoder().encode
        self._replayed = False
        self._size = 0
        self._fd = -1
        self.run = 0
        """The run number of the last checkpoint read or written."""
        self.on_dirty: Callable[[], None] | None = None
        self._dir.mkdir(parents=True, exist_ok=True)
        lock = lock_directory(self._dir)
        if lock is None:
            raise JournalError(f"order journal {self._dir} is in use by another process")
        self._lock_fd = lock
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            self._fd = replace_file(self._path, MAGIC)
            self._size = len(MAGIC)
        except BaseException:
            os.close(self._lock_fd)
            raise

    @property
    def path(self) -> Path:
        return self._path

    @property
    def size(self) -> int:
        """Bytes in the file after the last flush."""
        return self._size

    # --- reading ------------------------------------------------------------------

    def replay(self) -> Iterator[Entry]:
        """Every entry of every complete batch, oldest first.  A torn tail is
        logged and cut off once the last good batch has been read."""
        fd = self._fd
        size = os.fstat(fd).st_size
        if size < len(MAGIC) or os.pread(fd, len(MAGIC), 0) != MAGIC:
            raise JournalError(f"{self._path} is not an order journal")
        decode = msgspec.msgpack.Decoder(list[Entry]).decode
        pos = len(MAGIC)
        batches = 0
        if size > pos:
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
                while size - pos >= _HEAD.size:
                    crc, length = _HEAD.unpack_from(mm, pos)
                    end = pos + _HEAD.size + length
                    if end > size or zlib.crc32(view[pos + 4 : end]) != crc:
                        break
                    try:
                        entries = decode(view[pos + _HEAD.size : end])
                    except msgspec.DecodeError as exc:
                        raise JournalError(
                            f"{self._path}: unreadable batch at offset {pos}: {exc}"
                        ) from None
                    for entry in entries:
                        if isinstance(entry, Run):
                            self.run = entry.run
                        yield entry
                    batches += 1
                    pos = end
        if pos < size:
            logger.warning(
                "order journal %s: discarding %d bytes of torn journal tail at offset %d",
                self._path,
                size - pos,
                pos,
            )
            os.ftruncate(fd, pos)
            os.fsync(fd)
        self._size = pos
        self._replayed = True
        logger.info("order journal %s: %d batches read, run %d", self._path, batches, self.run)

    # --- writing ------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        """Add one entry to the next batch (encoded now: a later change to
        the objects it names does not alter it)."""
        pending = self._pending
        if not pending and self.on_dirty is not None:
            self.on_dirty()
        pending.append(self._encode(entry))

    def flush(self) -> None:
        """Write the pending entries as one batch; nothing if there are none."""
        pending = self._pending
        if not pending:
            return
        if not self._replayed:
            raise JournalError("the journal must be replayed before it is written")
        batch = _batch(_array_header(len(pending)) + b"".join(pending))
        try:
            append_all(self._fd, batch)
        except OSError:
            # never leave a partial batch in front of the next one; keep the
            # entries for the next flush (nothing that depends on them leaves
            # meanwhile: the write barrier raised too)
            logger.critical("order journal %s: write failed, will retry", self._path)
            os.ftruncate(self._fd, self._size)
            raise
        pending.clear()
        self._size += len(batch)
        if self._fsync:
            datasync(self._fd)

    def checkpoint(self, entries: Iterable[Entry]) -> None:
        """Replace the journal with ``entries`` (the whole state now); what
        is pending is dropped, as the state supersedes it."""
        encode = self._encode
        parts = [MAGIC]
        chunk: list[bytes] = []
        for entry in entries:
            if isinstance(entry, Run):
                self.run = entry.run
            chunk.append(encode(entry))
            if len(chunk) == _CHECKPOINT_BATCH:
                parts.append(_batch(_array_header(len(chunk)) + b"".join(chunk)))
                chunk = []
        if chunk:
            parts.append(_batch(_array_header(len(chunk)) + b"".join(chunk)))
        data = b"".join(parts)
        fd = replace_file(self._path, data)
        os.close(self._fd)
        self._fd = fd
        self._size = len(data)
        self._pending.clear()
        self._replayed = True

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._replayed:
                self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)
            self._lock_fd = -1
