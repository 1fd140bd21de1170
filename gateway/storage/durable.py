"""Small file-system steps shared by the on-disk journals (the FIX session
store and the order journal): a directory lock, complete appends, data sync,
durable new folders, an atomic file replacement, and the look past a record
with a bad checksum that tells a torn write from damage (:func:`intact_after`).

Every function is synchronous and meant for the event loop's thread: the
journals keep their writes to one system call per batch.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Final

__all__ = [
    "SCAN_LIMIT",
    "append_all",
    "datasync",
    "fsync_dir",
    "intact_after",
    "lock_directory",
    "make_dir",
    "other_format",
    "replace_file",
]

SCAN_LIMIT: Final = 1 << 24
"""How far past a record with a bad checksum :func:`intact_after` looks
for an intact one (16 MiB), and the longest record it takes for one.

The next record begins one record's length after the bad one, so the
bound must be above the longest record a writer makes: an order journal
batch is one flush (a loop turn's entries) or a checkpoint batch of at
most 4096 entries, each a few hundred bytes (an order, a child, a fill,
a copy of an ExecutionReport): a few MiB at the very most; a session
store record is one FIX message (the listeners take 64 KiB at most by
default) or a 16- to 30-byte marker.  A length under 2**24 also has its
top byte zero, which is what keeps the look cheap: only the places where
a zero byte stands are tried, found by ``find``."""

_CRC_LEN: Final = struct.Struct("<II")  # crc32, length: how both formats' records start
_ZEROS: Final = bytes(_CRC_LEN.size)
_RUN_CHUNK: Final = 1 << 16


def lock_directory(directory: Path, name: str = "lock") -> int | None:
    """Take an exclusive ``flock(2)`` on ``directory / name`` (created if
    missing) and return its descriptor, or None if another holder has it.
    The lock dies with the process, ``kill -9`` included."""
    fd = os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (opened with ``O_APPEND``), finishing
    a short write (a disk running full); raises OSError if it cannot."""
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)
    while written < len(data):
        n = os.write(fd, view[written:])
        if n == 0:
            raise OSError(errno.EIO, "journal write made no progress")
        written += n


def datasync(fd: int) -> None:
    """fdatasync(2) where available: it skips metadata not needed to read the data."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - e.g. macOS
        os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make the directory entries of ``path`` (a file created, renamed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path) -> None:
    """Create the folder ``path`` and the missing ones above it, as
    ``path.mkdir(parents=True, exist_ok=True)`` does, each made durable: the
    folder holding it is fsynced once it is made, so that a power loss
    cannot take back a folder (and with it the files written and synced in
    it since)."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_dir(path.parent)
        make_dir(path)  # in its folder, there now
        return
    except FileExistsError:
        if path.is_dir():
            return
        raise
    fsync_dir(path.parent)


def replace_file(path: Path, data: bytes) -> int:
    """Atomically replace ``path`` with a file holding ``data``, durable at
    once: it is written to ``<path>.tmp``, fsynced and renamed over ``path``,
    and the directory is fsynced, so a crash leaves either the old file or
    the new one.  Returns a descriptor of the new file open for appending."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        append_all(fd, data)
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return fd


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with a file holding ``data``, atomically and durably
    (:func:`replace_file`, its descriptor closed)."""
    os.close(replace_file(path, data))


def other_format(path: Path, found: bytes, magic: bytes, kind: str) -> str:
    """Why the file ``path``, which starts with ``found`` and not with its
    ``magic``, is refused: another format version of ``kind`` (a magic's
    last byte is its format's version; a newer one is a newer fixgw's), or
    not one at all."""
    if len(found) == len(magic) and found[:-1] == magic[:-1]:
        version, known = found[-1], magic[-1]
        said = (
            f"{path} is {kind} of format version {version}; this version of fixgw reads "
            f"version {known} only"
        )
        if version > known:
            said += (
                ": it was written by a newer version of fixgw; start that version "
                "(docs/operations.md, Upgrades)"
            )
        return said
    return f"{path} is not {kind}"


def intact_after(data: mmap.mmap, bad: int, head_size: int, kinds: bytes = b"") -> int:
    """The offset of the first intact record after the one at ``bad``
    whose checksum is wrong, or -1 if nothing after it reads as one.

    ``data`` is the whole file, its records ``crc32 (u32) | length (u32)
    | ...``, the header ``head_size`` bytes, the checksum covering the
    record from its length on; ``kinds``, when given, the bytes the one
    after the length (a record's kind) may be.  A record is intact when
    it lies within the file, is shorter than :data:`SCAN_LIMIT`, its
    checksum matches and what follows it is the end of the file or the
    start of a plausible record.

    The place where the bad record says the next one begins is tried
    first: a damaged body or checksum is told from a torn write at once.
    Then every offset up to :data:`SCAN_LIMIT` past ``bad`` (a damaged
    length hides the next record) where a record's length could begin
    with a zero top byte.  A crash tears the last write only, so where
    each write is one record (the order journal's batches) an intact
    record after a bad one means damage; a torn tail (short, zeroed, or a
    write's first part) has none after it.  A file whose writes hold
    several records reads on from it (the session stores' flushes)."""
    size = len(data)
    view = memoryview(data)
    try:
        if size - bad >= _CRC_LEN.size:
            length: int = _CRC_LEN.unpack_from(data, bad)[1]
            following = bad + head_size + length
            # one checksum, of a record of any length (a day's end can
            # write a batch longer than the scan below looks for)
            if following < size and _intact(data, view, following, head_size, kinds, True):
                return following
        stop = min(size - head_size, bad + SCAN_LIMIT)  # the last offset tried
        at = bad + 1
        while at <= stop:
            top = data.find(b"\0", at + 7, stop + 8)
            if top < 0:
                return -1
            start = top - 7  # the record whose length ends in this zero byte
            if data[start : start + _CRC_LEN.size] == _ZEROS:
                # zeros (an extended file whose blocks were never written):
                # no record starts inside them (a zero length's checksum is
                # not zero), so the look goes on where they end
                at = max(start + 1, _zeros_end(data, top, size) - 7)
                continue
            if _intact(data, view, start, head_size, kinds):
                return start
            at = start + 1
        return -1
    finally:
        view.release()


def _intact(
    data: mmap.mmap,
    view: memoryview,
    at: int,
    head_size: int,
    kinds: bytes,
    any_length: bool = False,
) -> bool:
    """Whether an intact record begins at ``at`` (see :func:`intact_after`);
    with ``any_length``, one of :data:`SCAN_LIMIT` or more counts too (a
    place where a record is known to begin, not one the scan tries)."""
    size = len(data)
    if size - at < head_size:
        return False
    crc: int
    length: int
    crc, length = _CRC_LEN.unpack_from(data, at)
    end = at + head_size + length
    if (length >= SCAN_LIMIT and not any_length) or end > size:
        return False
    if kinds and data[at + _CRC_LEN.size] not in kinds:
        return False
    # the next one, unless the file ends first, must look like a record too
    # (a cheap test that spares most checksums of chance lengths)
    if (
        not any_length
        and size - end >= _CRC_LEN.size
        and _CRC_LEN.unpack_from(data, end)[1] >= SCAN_LIMIT
    ):
        return False
    return zlib.crc32(view[at + 4 : end]) == crc


def _zeros_end(data: mmap.mmap, at: int, size: int) -> int:
    """Where the run of zero bytes at ``at`` ends (``size`` at the end of the file)."""
    while at < size:
        chunk = data[at : at + _RUN_CHUNK]
        rest = len(chunk.lstrip(b"\0"))
        at += len(chunk) - rest
        if rest:
            return at
    return size
