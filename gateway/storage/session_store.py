"""The session store on disk: one append-only journal per FIX session.

:class:`FileStore` is the :class:`~gateway.fix.store.SessionStore` that
production sessions use (the interface, its semantics and the in-memory
backend are in :mod:`gateway.fix.store`).  :func:`open_store` opens a store
by backend name, ``"file"`` or ``"memory"``.

Layout
------
Each session gets one directory under the data directory, named after the
session key with every run of characters outside ``[A-Za-z0-9._]`` replaced by
a single ``-`` (``FIX.4.4:GATEWAY->CLIENT1`` becomes
``FIX.4.4-GATEWAY-CLIENT1``).  It holds:

``journal``
    The append-only journal described below.
``lock``
    An empty file holding an exclusive ``flock(2)`` while the store is open,
    so two processes (or two stores in one process) cannot write the same
    journal.  The lock dies with the process, including on ``kill -9``.
``journal.tmp``
    Exists only briefly while :meth:`FileStore.reset` writes a new journal; a
    leftover one is deleted on open.

Journal format
--------------
The journal starts with the 8-byte magic ``b"FIXJRNL\\x01"`` (the last byte is
the format version) followed by records.  Every record is::

    offset  size  field
    0       4     crc32   zlib.crc32 of bytes 4 .. end of the record
    4       4     length  number of body bytes
    8       1     kind
    9       n     body

All integers are little-endian.  The checksum covers the length and kind as
well as the body, so a damaged length field is caught too.  Record kinds:

``1`` sequence numbers
    body: ``next_sender_seq`` (u64), ``next_target_seq`` (u64); 16 bytes.
``2`` sent message
    body: MsgSeqNum (u64) followed by the message's wire bytes.
``3`` reset marker
    body: creation time (f64, epoch seconds) followed by the UTF-8 session
    key.  Opening checks it and fails with :class:`StoreError` on a mismatch,
    so two keys that map to the same directory name cannot share a journal.

Writing
-------
Messages appended with ``append_sent`` and changed sequence numbers wait in
memory.  ``flush()`` does nothing -- not even a system call -- if nothing
changed.  Otherwise it encodes the pending message records followed by ONE
sequence-number record with the current numbers into a single buffer and
hands it to the kernel with one ``os.write`` on a descriptor opened with
``O_APPEND``.  With ``fsync=True`` it then calls ``fdatasync(2)``.

After a flush the store keeps only an index of the messages (sequence number,
file offset and length, in compact arrays); ``get_sent`` reads the bytes back
with ``os.pread``, coalescing neighbouring messages into reads of up to 1 MiB.

Durability policy
-----------------
Data reaches the operating system (the page cache) at every flush, and the
store is flushed before the bytes of a batch are written to the socket (by
the asyncio edge's outbox, :mod:`gateway.net`).  A
process crash, including ``kill -9``, therefore loses nothing that was sent:
the kernel still writes the page cache out.  Changes that were not flushed
yet are lost, but none of them reached the peer.

With ``fsync=True`` every flush is also forced to stable storage, so the
store survives power loss or a kernel crash as well, at the cost of one
``fdatasync`` per batch; a batch whose sync fails is taken back off the file
and written again at the next flush, as one whose write fails (nothing that
depends on it leaves meanwhile).  With ``fsync=False`` a power loss can lose the most
recent batches; on restart the session then sees a lower sequence number than
the peer expects, and the FIX session-level recovery (or an operator) has to
resolve it.  Such a loss may also leave an earlier batch unwritten and a later
one written: that is refused as damage (below).

Creating a journal and ``reset()`` are always durable at once, whatever the
policy: the new journal is written to ``journal.tmp``, fsynced, and moved over
``journal`` with ``os.replace``, and the directory is fsynced, so a crash
leaves either the complete old journal or the complete new one.

Recovery on open
----------------
Opening replays the journal from the start: message records rebuild the
index, a reset marker clears it, and the last sequence-number record wins.
A crash in the middle of a write can leave a short record or one whose
checksum does not match at the end of the file (or zeros, where the file was
extended before its blocks were written).  Replay stops at the first such
record, logs a warning on the ``gateway.storage.session_store`` logger,
truncates the file there, and keeps everything before it.  Complete message
records that precede a torn sequence-number record are kept and move
``next_sender_seq`` past themselves, so the numbers stay consistent with the
stored messages.  A record with a valid checksum but an unknown kind or an
impossible body, or a journal without the magic or without a reset marker,
is not a crash artefact; opening then fails with :class:`StoreCorruptError`
and leaves the file untouched.

Nor is a bad record followed by a later write: a crash tears the last
write only.  A flush is one write of its message records and the
sequence-number record that ends it, so records after a bad one may be
the rest of that same write, torn inside; the bad record is damage when
an intact sequence-number record follows it with more of the file after
that (a later write).  Past the first bad record replay looks for intact
records (where the bad one says the next begins, then up to
:data:`~gateway.storage.durable.SCAN_LIMIT` further,
:func:`~gateway.storage.durable.intact_after`) and reads on from each;
finding a later write, opening fails with :class:`StoreCorruptError`
naming both offsets, and the file is left as it is.

Compaction
----------
The journal only grows during a session day (one 25-byte sequence-number
record per flush plus the messages).  ``reset()``, done at the start of each
session day, writes a new journal holding just a reset marker and a
sequence-number record, which is the natural compaction point; no other
compaction is performed.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import struct
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from gateway.fix.store import MAX_SEQ, MemoryStore, SessionStore, StoreError, check_seq
from gateway.storage.durable import (
    append_all,
    datasync,
    fsync_dir,
    intact_after,
    lock_directory,
    make_dir,
    other_format,
    replace_file,
)

__all__ = [
    "BACKENDS",
    "FileStore",
    "StoreCorruptError",
    "StoreLockedError",
    "open_store",
    "session_dirname",
]

# Records carry their event name and fields as the message, a mapping:
# gateway.ops.logs renders them as named events, other handlers as they are.
logger = logging.getLogger("gateway.storage.session_store")

BACKENDS: Final = ("file", "memory")

MAGIC: Final = b"FIXJRNL\x01"
JOURNAL_NAME: Final = "journal"
TEMP_NAME: Final = "journal.tmp"
LOCK_NAME: Final = "lock"

KIND_SEQNUMS: Final = 1
KIND_MESSAGE: Final = 2
KIND_RESET: Final = 3
_KINDS: Final = bytes((KIND_SEQNUMS, KIND_MESSAGE, KIND_RESET))

_MAX_BODY: Final = 2**32 - 1
_READ_CHUNK: Final = 1 << 20

# crc32, length, kind
_HEAD: Final = struct.Struct("<IIB")
_CRC: Final = struct.Struct("<I")
# The part of a header the checksum covers: length, kind.
_LEN_KIND: Final = struct.Struct("<IB")
# length, kind and the leading u64 sequence number of a message record.
_MSG_PREFIX: Final = struct.Struct("<IBQ")
_SEQNUMS: Final = struct.Struct("<QQ")
_U64: Final = struct.Struct("<Q")
_F64: Final = struct.Struct("<d")

_MSG_DATA_OFFSET: Final = _CRC.size + _MSG_PREFIX.size  # record start -> message bytes
_SEQ_SIZE: Final = _U64.size  # the sequence number that opens a message record's body

# bound once: a flush calls them per message
_pack_crc: Final = _CRC.pack
_pack_len_kind: Final = _LEN_KIND.pack
_pack_msg_prefix: Final = _MSG_PREFIX.pack
_pack_seqnums: Final = _SEQNUMS.pack
_crc32: Final = zlib.crc32

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._]+")


class StoreLockedError(StoreError):
    """Another open store already owns this session's directory."""


class StoreCorruptError(StoreError):
    """The journal holds data that a crash cannot explain."""


def session_dirname(session_key: str) -> str:
    """Return the directory name used for ``session_key``.

    Every run of characters outside ``[A-Za-z0-9._]`` becomes one ``-``, so
    ``"FIX.4.4:GATEWAY->CLIENT1"`` maps to ``"FIX.4.4-GATEWAY-CLIENT1"``.
    """
    name = _UNSAFE_RUN.sub("-", session_key)
    if not name.strip(".-"):
        raise ValueError(f"session key {session_key!r} gives no usable directory name")
    return name


def _record(kind: int, body: bytes) -> bytes:
    """Encode one journal record."""
    len_kind = _pack_len_kind(len(body), kind)
    return _pack_crc(_crc32(body, _crc32(len_kind))) + len_kind + body


def _seqnums_record(sender: int, target: int) -> bytes:
    return _record(KIND_SEQNUMS, _pack_seqnums(sender, target))


def _reset_record(creation_time: float, session_key: str) -> bytes:
    return _record(KIND_RESET, _F64.pack(creation_time) + session_key.encode())


class FileStore(SessionStore):
    """A :class:`SessionStore` backed by a journal file (see the module documentation).

    ``FileStore(data_dir, session_key)`` opens, or creates, the store in
    ``data_dir / session_dirname(session_key)`` and holds its lock until
    :meth:`close`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        session_key: str,
        *,
        fsync: bool = False,
    ) -> None:
        self._key = session_key
        self._dir = Path(data_dir) / session_dirname(session_key)
        self._journal = self._dir / JOURNAL_NAME
        self._fsync = fsync

        self._sender = 1
        self._target = 1
        self._created = 0.0
        # Index of flushed messages: sequence number, offset and length of
        # the message bytes in the journal.  Arrays keep it small.
        self._seqs = array("Q")
        self._offsets = array("q")
        self._lengths = array("q")
        # Appended but not yet flushed; every number here is above _seqs[-1].
        self._pend_seqs: list[int] = []
        self._pend_msgs: list[bytes] = []
        self._dirty = False
        self._size = 0  # end of the last good record == end of the file
        self._needs_truncate = False
        self._fd = -1
        self._lock_fd = -1

        make_dir(self._dir)
        self._lock_fd = self._acquire_lock()
        try:
            try:
                os.unlink(self._dir / TEMP_NAME)
            except FileNotFoundError:
                pass
            try:
                self._fd = os.open(self._journal, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                self._create_fresh(time.time())
                fsync_dir(self._dir.parent)
                logger.info({"event": "session_store_created", "path": str(self._dir)})
            else:
                self._replay()
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileStore({str(self._dir)!r}, fsync={self._fsync})"

    # -- properties ---------------------------------------------------------

    @property
    def path(self) -> Path:
        """The session's directory."""
        return self._dir

    def fileno(self) -> int:
        """The descriptor of its journal file (-1 once closed)."""
        return self._fd

    @property
    def fsync(self) -> bool:
        """Whether every flush is followed by ``fdatasync``."""
        return self._fsync

    @property
    def next_sender_seq(self) -> int:
        return self._sender

    @property
    def next_target_seq(self) -> int:
        return self._target

    @property
    def creation_time(self) -> float:
        return self._created

    # -- session API ----------------------------------------------------------

    def set_next_sender_seq(self, seq: int) -> None:
        self._check_open()
        if check_seq(seq) != self._sender:
            self._sender = seq
            self._dirty = True

    def set_next_target_seq(self, seq: int) -> None:
        self._check_open()
        if check_seq(seq) != self._target:
            self._target = seq
            self._dirty = True

    def append_sent(self, seq: int, message: bytes) -> None:
        self._check_open()
        check_seq(seq, MAX_SEQ - 1)  # next_sender_seq moves to seq + 1
        message = bytes(message)
        if len(message) > _MAX_BODY - _U64.size:
            raise ValueError(f"message too large: {len(message)} bytes")
        pend = self._pend_seqs
        if (pend and seq <= pend[-1]) or (not pend and self._seqs and seq <= self._seqs[-1]):
            self._supersede(seq)
        pend.append(seq)
        self._pend_msgs.append(message)
        if self._sender <= seq:
            self._sender = seq + 1
        self._dirty = True

    def get_sent(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        self._check_open()
        out: list[tuple[int, bytes]] = []
        if begin > end:
            return out
        seqs, offsets, lengths = self._seqs, self._offsets, self._lengths
        i = bisect_left(seqs, begin)
        hi = bisect_right(seqs, end)
        while i < hi:
            # Read neighbouring messages with one pread, up to _READ_CHUNK.
            start = offsets[i]
            j = i + 1
            while j < hi and offsets[j] + lengths[j] - start <= _READ_CHUNK:
                j += 1
            stop = offsets[j - 1] + lengths[j - 1]
            data = os.pread(self._fd, stop - start, start)
            if len(data) != stop - start:
                raise StoreError(f"journal {self._journal} is shorter than its index")
            for k in range(i, j):
                rel = offsets[k] - start
                out.append((seqs[k], data[rel : rel + lengths[k]]))
            i = j
        pend = self._pend_seqs
        lo = bisect_left(pend, begin)
        hi = bisect_right(pend, end)
        out.extend(zip(pend[lo:hi], self._pend_msgs[lo:hi], strict=True))
        return out

    def reset(self, now: float | None = None) -> None:
        self._check_open()
        old_fd = self._fd
        self._create_fresh(time.time() if now is None else now)
        os.close(old_fd)
        self._needs_truncate = False
        logger.info({"event": "session_store_reset", "path": str(self._dir)})

    def flush(self) -> None:
        self._check_open()
        if not self._dirty:
            return
        if self._needs_truncate:
            os.ftruncate(self._fd, self._size)
            self._needs_truncate = False

        pos = self._size
        parts: list[bytes] = []
        new_offsets: list[int] = []
        new_lengths: list[int] = []
        pend_msgs = self._pend_msgs
        for i, seq in enumerate(self._pend_seqs):
            msg = pend_msgs[i]
            size = len(msg)
            prefix = _pack_msg_prefix(_SEQ_SIZE + size, KIND_MESSAGE, seq)
            parts.append(_pack_crc(_crc32(msg, _crc32(prefix))))
            parts.append(prefix)
            parts.append(msg)
            new_offsets.append(pos + _MSG_DATA_OFFSET)
            new_lengths.append(size)
            pos += _MSG_DATA_OFFSET + size
        parts.append(_seqnums_record(self._sender, self._target))
        batch = b"".join(parts)

        self._write_batch(batch)

        self._seqs.extend(self._pend_seqs)
        self._offsets.extend(new_offsets)
        self._lengths.extend(new_lengths)
        self._pend_seqs.clear()
        pend_msgs.clear()
        self._size += len(batch)
        self._dirty = False

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)
            self._lock_fd = -1

    def discard(self) -> None:
        if self._fd < 0:
            return
        self._pend_seqs.clear()
        self._pend_msgs.clear()
        self._dirty = False
        self.close()

    # -- internals ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError("operation on a closed store")

    def _acquire_lock(self) -> int:
        fd = lock_directory(self._dir, LOCK_NAME)
        if fd is None:
            raise StoreLockedError(f"session store {self._dir} is in use")
        return fd

    def _supersede(self, seq: int) -> None:
        """Drop stored messages numbered ``seq`` and above."""
        pend = self._pend_seqs
        cut = bisect_left(pend, seq)
        del pend[cut:]
        del self._pend_msgs[cut:]
        if not pend:
            self._truncate_index(seq)

    def _truncate_index(self, seq: int) -> None:
        cut = bisect_left(self._seqs, seq)
        del self._seqs[cut:]
        del self._offsets[cut:]
        del self._lengths[cut:]

    def _write_batch(self, batch: bytes) -> None:
        """Append ``batch`` to the journal (and sync it, with ``fsync``); on
        failure leave the file as before: the batch stays pending, written
        again at the next flush (a sync that failed once may not fail again
        without the data being on the disk)."""
        try:
            append_all(self._fd, batch)
            if self._fsync:
                datasync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                # Never append after a partial record; retry at the next flush.
                self._needs_truncate = True
            raise

    def _create_fresh(self, created: float) -> None:
        """Atomically replace the journal with an empty one created at
        ``created`` and adopt it."""
        data = MAGIC + _reset_record(created, self._key) + _seqnums_record(1, 1)
        fd = replace_file(self._journal, data)

        self._fd = fd
        self._size = len(data)
        self._sender = 1
        self._target = 1
        self._created = created
        self._clear_index()
        self._pend_seqs.clear()
        self._pend_msgs.clear()
        self._dirty = False

    def _clear_index(self) -> None:
        del self._seqs[:]
        del self._offsets[:]
        del self._lengths[:]

    def _replay(self) -> None:
        fd = self._fd
        size = os.fstat(fd).st_size
        head = os.pread(fd, len(MAGIC), 0)
        if head != MAGIC:
            raise StoreCorruptError(other_format(self._journal, head, MAGIC, "a session journal"))

        pos = len(MAGIC)
        seen_reset = False
        head_size = _HEAD.size
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
            while size - pos >= head_size:
                crc, length, kind = _HEAD.unpack_from(mm, pos)
                body = pos + head_size
                end = body + length
                if end > size or zlib.crc32(view[pos + 4 : end]) != crc:
                    break
                if kind == KIND_MESSAGE and length >= _U64.size:
                    (seq,) = _U64.unpack_from(mm, body)
                    self._replay_message(seq, body + _U64.size, length - _U64.size)
                elif kind == KIND_SEQNUMS and length == _SEQNUMS.size:
                    self._sender, self._target = _SEQNUMS.unpack_from(mm, body)
                elif kind == KIND_RESET and length >= _F64.size:
                    key = bytes(view[body + _F64.size : end]).decode("utf-8", "replace")
                    if key != self._key:
                        raise StoreError(
                            f"{self._journal} belongs to session {key!r}, not {self._key!r}"
                        )
                    (self._created,) = _F64.unpack_from(mm, body)
                    self._sender = self._target = 1
                    self._clear_index()
                    seen_reset = True
                else:
                    raise StoreCorruptError(
                        f"{self._journal}: bad record (kind {kind}, {length} bytes) at offset {pos}"
                    )
                pos = end
            good = _later_write(mm, view, pos) if pos < size else -1
        if good >= 0:
            raise StoreCorruptError(
                f"{self._journal}: the record at offset {pos} is damaged and a later write, "
                f"at offset {good}, is intact: not a torn write a crash leaves; the journal "
                "is left as it is: restore it from a backup (fixgw has no way to start past it; "
                "docs/operations.md, Damaged journal or store)"
            )

        if not seen_reset:
            raise StoreCorruptError(f"{self._journal} has no reset marker")
        if pos < size:
            logger.warning(
                {
                    "event": "session_store_tail_discarded",
                    "path": str(self._dir),
                    "reason": "torn journal tail",
                    "discarded_bytes": size - pos,
                    "offset": pos,
                    "file_size": size,
                }
            )
            os.ftruncate(fd, pos)
            os.fsync(fd)
        self._size = pos
        logger.info(
            {
                "event": "session_store_opened",
                "path": str(self._dir),
                "next_sender_seq": self._sender,
                "next_target_seq": self._target,
                "messages": len(self._seqs),
            }
        )

    def _replay_message(self, seq: int, offset: int, length: int) -> None:
        if seq < 1:
            raise StoreCorruptError(f"{self._journal}: message with sequence number 0")
        if self._seqs and seq <= self._seqs[-1]:
            self._truncate_index(seq)
        self._seqs.append(seq)
        self._offsets.append(offset)
        self._lengths.append(length)
        if self._sender <= seq:
            self._sender = seq + 1


def _later_write(data: mmap.mmap, view: memoryview, bad: int) -> int:
    """Where a write after the one holding the bad record at ``bad``
    begins, intact, or -1 (the bad record is in the file's last write,
    torn).  Every flush ends with its sequence-number record: an intact
    one with more of the file after it closes a write that another
    followed."""
    size = len(data)
    head_size = _HEAD.size
    at = intact_after(data, bad, head_size, _KINDS)
    while at >= 0:
        pos = at
        while size - pos >= head_size:
            crc, length, kind = _HEAD.unpack_from(data, pos)
            end: int = pos + head_size + length
            if end > size or zlib.crc32(view[pos + 4 : end]) != crc:
                break
            if kind == KIND_SEQNUMS and end < size:
                return end
            pos = end
        if size - pos < head_size:
            return -1
        at = intact_after(data, pos, head_size, _KINDS)
    return -1


def open_store(
    backend: str,
    data_dir: str | os.PathLike[str],
    session_key: str,
    *,
    fsync: bool = False,
) -> SessionStore:
    """Open the store of one session.

    ``backend`` is ``"file"`` (a :class:`FileStore` under ``data_dir``) or
    ``"memory"`` (a :class:`~gateway.fix.store.MemoryStore` created now;
    ``data_dir`` and ``fsync`` are ignored).
    """
    if backend == "file":
        return FileStore(data_dir, session_key, fsync=fsync)
    if backend == "memory":
        return MemoryStore(created=time.time())
    raise ValueError(f"unknown store backend {backend!r}; expected one of {', '.join(BACKENDS)}")
