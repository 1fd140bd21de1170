"""An append-only file of checksummed batches, the stuff journals are made of.

A :class:`BatchFile` knows nothing of what it holds: its owner encodes
records into a batch body, appends the body with one write, and gets the
bodies back, oldest first, when the file is opened again.

File format
-----------
The magic its owner chooses (it names the kind of file and its format
version), then batches, each::

    offset  size  field
    0       4     crc32   zlib.crc32 of bytes 4 .. end of the batch
    4       4     length  number of body bytes
    8       n     body

Integers are little-endian; the checksum covers the length as well as the
body, so a damaged length is caught too.

Writing and reading back
------------------------
:meth:`BatchFile.append` writes one batch with one ``write(2)`` on a
descriptor opened with ``O_APPEND`` (and ``fdatasync(2)`` with
``fsync=True``).  A crash in the middle of that write leaves a short batch,
or one whose checksum does not match, at the end of the file.
:meth:`BatchFile.replay` yields the body of every complete batch and stops
at the first one that is not; once the last good batch has been read it
logs a warning, cuts the file there and syncs it, so no batch is ever half
applied.  A crash tears the last write only: a bad batch with an intact
one after it is damage, not a crash's doing (:func:`~gateway.storage.durable.intact_after`
tells them apart, looking at the rest of the file only past a bad
batch), and raises :class:`DamagedError` with the file left as it is.  A
file that does not start with the magic is someone else's and is left
untouched.

The file must be read to its end before anything is appended: appending
after a torn tail would bury good batches behind it.

:meth:`BatchFile.replace` swaps the whole file for a new set of batches,
durable at once (written to ``<name>.tmp``, fsynced, renamed, directory
fsynced), so a crash leaves either the old file or the new one.

Replacing while appending
-------------------------
:meth:`BatchFile.replace_sliced` does the same without holding its caller
for the time it takes to encode and write a large state: the caller writes
the new batches to ``<name>.next`` itself, a slice at a time
(:meth:`BackgroundReplace.write_some`), going on appending to the live file
between the slices, and syncs it (:meth:`BackgroundReplace.syncer`, for a
thread).  Then what was appended since the start is copied behind the new
batches, a bounded slice per call (:meth:`BackgroundReplace.copy_tail`),
and the new file is renamed over the old one in the call that copies the
last bytes.  The live file is complete all along: a crash at any point
leaves either the old file, whole, or the new one, whole (a stale
``<name>.next`` is removed when the file is opened again).  With
``fsync=True`` the copied tail is synced before the rename and the
directory after it, so a machine crash leaves a whole file too (without,
appends are not promised past a machine crash anyway).

One owner per directory
-----------------------
An open file holds an exclusive ``flock(2)`` on ``lock`` in its directory
until :meth:`BatchFile.close`; a second opener, in this process or another,
gets :class:`BatchFileLockedError`.  The lock dies with the process,
``kill -9`` included.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from gateway.storage.durable import (
    append_all,
    datasync,
    fsync_dir,
    intact_after,
    lock_directory,
    make_dir,
    replace_file,
)

__all__ = [
    "BackgroundReplace",
    "BatchFile",
    "BatchFileError",
    "BatchFileLockedError",
    "BatchFollower",
    "DamagedError",
    "WrongMagicError",
]

# Records carry their event name and fields as the message, a mapping:
# gateway.ops.logs renders them as named events, other handlers as they are.
logger = logging.getLogger("gateway.storage.batch_file")

_HEAD: Final = struct.Struct("<II")  # crc32, length
_LEN: Final = struct.Struct("<I")
_MAX_BODY: Final = 2**32 - 1
NEXT_SUFFIX: Final = ".next"
"""The new file a replacement while appending writes, beside the live one."""


class BatchFileError(Exception):
    """A batch file cannot be opened or used."""


class BatchFileLockedError(BatchFileError):
    """Another open batch file already owns the directory."""


class WrongMagicError(BatchFileError):
    """The file does not start with the expected magic: it is some other
    file, or another format of the same kind (``found``, its first bytes,
    differ from the magic in the last byte only, where a magic says its
    format's version)."""

    def __init__(self, message: str, found: bytes = b"") -> None:
        super().__init__(message)
        self.found = found


class DamagedError(BatchFileError):
    """A batch whose checksum is wrong with an intact batch after it: damage
    (a bad disk block, a file edited or copied wrong), not the torn last
    write a crash leaves.  ``offset``: where the bad batch begins;
    ``intact``: where the intact one after it does."""

    def __init__(self, path: Path, offset: int, intact: int) -> None:
        super().__init__(
            f"{path}: the batch at offset {offset} is damaged and the batch at offset "
            f"{intact} after it is intact: damage, not a torn write"
        )
        self.path = path
        self.offset = offset
        self.intact = intact


def _frame(body: bytes) -> bytes:
    """``body`` as one batch: checksum, length, body."""
    if len(body) > _MAX_BODY:
        raise ValueError(f"batch too large: {len(body)} bytes")
    length = _LEN.pack(len(body))
    return _LEN.pack(zlib.crc32(body, zlib.crc32(length))) + length + body


class BatchFile:
    """The batch file ``directory / name`` (see the module documentation).

    Opening locks ``directory`` (created if missing) and opens the file, or
    creates it holding only ``magic``.  :meth:`replay` must be read to the
    end before the first :meth:`append`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str,
        magic: bytes,
        *,
        fsync: bool = False,
    ) -> None:
        self._dir = Path(directory)
        self._path = self._dir / name
        self._magic = bytes(magic)
        self._fsync = fsync
        self._size = 0
        self._replayed = False
        self._needs_truncate = False
        self._fd = -1
        self._background: BackgroundReplace | None = None
        make_dir(self._dir)
        lock = lock_directory(self._dir)
        if lock is None:
            raise BatchFileLockedError(f"{self._dir} is in use by another process")
        self._lock_fd = lock
        try:
            # what a replacement left when the process died: beside the
            # loop, or at once (replace_file's temporary file)
            self.next_path.unlink(missing_ok=True)
            self._path.with_name(self._path.name + ".tmp").unlink(missing_ok=True)
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                self._fd = replace_file(self._path, self._magic)
                self._size = len(self._magic)
        except BaseException:
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
        return f"BatchFile({str(self._path)!r}, fsync={self._fsync})"

    @property
    def path(self) -> Path:
        """The file."""
        return self._path

    @property
    def next_path(self) -> Path:
        """Where :meth:`replace_sliced` writes the new file."""
        return self._path.with_name(self._path.name + NEXT_SUFFIX)

    @property
    def size(self) -> int:
        """Bytes in the file after the last good batch read, appended or replaced."""
        return self._size

    @property
    def fsync(self) -> bool:
        """Whether every append is followed by ``fdatasync``."""
        return self._fsync

    @property
    def replayed(self) -> bool:
        """Whether the file was read to its end (or replaced), so it may be appended to."""
        return self._replayed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd < 0

    def fileno(self) -> int:
        """The descriptor of the live file (-1 once closed)."""
        return self._fd

    def replay(self) -> Iterator[bytes]:
        """The body of every complete batch, oldest first.

        A torn tail is logged, cut off and synced once the last good batch
        has been read; a bad batch with an intact one after it raises
        :class:`DamagedError` once the batches before it have been read, a
        file without the magic :class:`WrongMagicError`, and the file is
        left as it is.
        """
        self._check_open()
        fd = self._fd
        magic = self._magic
        size = os.fstat(fd).st_size
        head = os.pread(fd, len(magic), 0)
        if head != magic:
            raise WrongMagicError(f"{self._path} does not start with {magic!r}", head)
        pos = len(magic)
        head_size = _HEAD.size
        if size > pos:
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
                while size - pos >= head_size:
                    crc, length = _HEAD.unpack_from(mm, pos)
                    end = pos + head_size + length
                    if end > size or zlib.crc32(view[pos + 4 : end]) != crc:
                        break
                    # a copy: a view still held by the reader would keep the map open
                    yield mm[pos + head_size : end]
                    pos = end
                good = intact_after(mm, pos, head_size) if pos < size else -1
            if good >= 0:
                raise DamagedError(self._path, pos, good)
        if pos < size:
            logger.warning(
                {
                    "event": "batch_file_tail_discarded",
                    "path": str(self._path),
                    "reason": "torn tail",
                    "discarded_bytes": size - pos,
                    "offset": pos,
                    "file_size": size,
                }
            )
            os.ftruncate(fd, pos)
            os.fsync(fd)
        self._size = pos
        self._replayed = True

    def append(self, body: bytes) -> None:
        """Append ``body`` as one batch with one write; if that fails, the
        file is left as it was and OSError raised."""
        self._check_open()
        if not self._replayed:
            raise BatchFileError(f"{self._path} must be replayed before it is written")
        batch = _frame(body)
        fd = self._fd
        if self._needs_truncate:
            os.ftruncate(fd, self._size)
            self._needs_truncate = False
        try:
            append_all(fd, batch)
            if self._fsync:
                # a batch not synced is taken back too: its owner writes it again
                datasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                # Never append after a partial batch: cut it before the next one.
                self._needs_truncate = True
            raise
        self._size += len(batch)

    def replace(self, bodies: Iterable[bytes]) -> None:
        """Replace the whole file, atomically and durably, by the magic and
        one batch per body; appending may follow at once."""
        self._check_open()
        if self._background is not None:
            self._background.abandon()
        parts = [self._magic]
        parts.extend(_frame(body) for body in bodies)
        data = b"".join(parts)
        fd = replace_file(self._path, data)
        os.close(self._fd)
        self._fd = fd
        self._size = len(data)
        self._needs_truncate = False
        self._replayed = True

    def close(self) -> None:
        """Close the file and release the lock.  Calling it again does nothing."""
        if self._fd < 0:
            return
        try:
            if self._background is not None:
                self._background.abandon()
            os.close(self._fd)
        finally:
            self._fd = -1
            os.close(self._lock_fd)
            self._lock_fd = -1

    def replace_sliced(
        self, bodies: Iterator[bytes], sync_dir: Path | None = None
    ) -> BackgroundReplace:
        """Start replacing the file by the magic and one batch per body of
        ``bodies``, written by the caller a slice at a time
        (:meth:`BackgroundReplace.write_some`, on its own loop); what is
        appended meanwhile is copied behind, and the new file renamed over
        the old (see the module documentation).  At most one runs at a
        time; :meth:`replace` and :meth:`close` abandon it.  ``sync_dir``:
        a directory whose entries must be durable before the new file
        takes the old one's place, synced with the new file, off the loop
        (:meth:`BackgroundReplace.syncer`)."""
        self._check_open()
        if not self._replayed:
            raise BatchFileError(f"{self._path} must be replayed before it is replaced")
        if self._background is not None:
            raise BatchFileError(f"{self._path} is already being replaced")
        self._background = BackgroundReplace(self, bodies, sync_dir)
        return self._background

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError(f"operation on a closed batch file {self._path}")


class BackgroundReplace:
    """A replacement of a :class:`BatchFile` written while it is appended
    to (see the module documentation).  Its owner calls :meth:`write_some`
    until it returns True, runs :meth:`syncer` in a thread, then calls
    :meth:`copy_tail` until it returns True; or :meth:`abandon`."""

    def __init__(
        self, file: BatchFile, bodies: Iterator[bytes], sync_dir: Path | None = None
    ) -> None:
        self._file = file
        self._sync_dir = sync_dir
        self.path = file.next_path
        self.tail_from = file.size
        """Where the batches appended since the start begin in the live file."""
        self._copied_to = file.size
        self._out = -1
        self._base = 0
        self.done = False
        self._bodies: Iterator[bytes] | None = bodies
        self._writer = -1
        self.written = 0
        """Bytes of the new file written so far."""
        try:
            self._writer = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            append_all(self._writer, file._magic)
        except OSError:
            self.abandon()
            raise
        self.written = len(file._magic)

    def write_some(self, limit: int) -> bool:
        """Write batches of the new file until ``limit`` bytes are
        written or the bodies are all written (True, the file then ready
        for :meth:`syncer` and :meth:`copy_tail`).  OSError (a full
        disk) abandons the replacement, as anything ``bodies`` raises."""
        bodies, writer = self._bodies, self._writer
        if bodies is None or writer < 0:
            raise BatchFileError("nothing to write: the new file is written")
        try:
            chunk: list[bytes] = []
            size = 0
            for body in bodies:
                framed = _frame(body)
                chunk.append(framed)
                size += len(framed)
                if size >= limit:
                    break
            else:
                if chunk:
                    append_all(writer, b"".join(chunk))
                    self.written += size
                os.close(writer)
                self._writer = -1
                self._bodies = None
                self._out = os.open(self.path, os.O_RDWR | os.O_APPEND)
                self._base = os.fstat(self._out).st_size
                return True
            append_all(writer, b"".join(chunk))
            self.written += size
            return False
        except BaseException:
            self.abandon()
            raise

    def syncer(self) -> Callable[[], None]:
        """Once written: a function that makes the new file's batches
        durable (and the entries of the ``sync_dir`` given), for a thread
        (it may take a while on a large file; the copy of the tail waits
        for it).  It syncs a descriptor of
        its own, so that an :meth:`abandon` meanwhile closes nothing it
        uses."""
        if self._out < 0:
            raise BatchFileError("nothing to sync: the new file is not written")
        fd = os.dup(self._out)
        folder = self._sync_dir

        def sync() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if folder is not None:
                fsync_dir(folder)

        return sync

    @property
    def tail_copied(self) -> int:
        """Bytes appended since the start and copied to the new file so far."""
        return self._copied_to - self.tail_from

    def copy_tail(self, limit: int) -> bool:
        """Copy at most ``limit`` bytes of what was appended since the start
        to the new file; once all of it is there (in the same call), the
        new file takes the old one's place and True is returned.  OSError
        (a full disk) abandons the replacement and leaves the old file."""
        file = self._file
        if self._out < 0 or self.done:
            raise BatchFileError("nothing to copy: the new file is not written")
        try:
            end = file._size
            while self._copied_to < end and limit > 0:
                data = os.pread(file._fd, min(end - self._copied_to, limit), self._copied_to)
                if not data:
                    raise OSError(0, f"{file.path} is shorter than written")
                append_all(self._out, data)
                self._copied_to += len(data)
                limit -= len(data)
            if self._copied_to < end:
                return False
            if file._fsync:
                datasync(self._out)
            os.replace(self.path, file.path)
        except OSError:
            self.abandon()
            raise
        old = file._fd
        file._fd = self._out  # the new file, open for appending
        file._size = self._base + end - self.tail_from
        file._needs_truncate = False
        file._background = None
        self._out = -1
        self.done = True
        os.close(old)
        if file._fsync:
            fsync_dir(file.path.parent)
        return True

    def abandon(self) -> None:
        """Stop: the new file removed; the live file is left as it is."""
        self._bodies = None
        if self._writer >= 0:
            os.close(self._writer)
            self._writer = -1
        if self._out >= 0:
            os.close(self._out)
            self._out = -1
        if not self.done:
            self.path.unlink(missing_ok=True)
        if self._file._background is self:
            self._file._background = None


class BatchFollower:
    """Reads a batch file another process appends to, without a lock and
    without ever changing it: :meth:`read` returns the bodies of the
    complete batches written since the last call.  A batch still being
    written (short, or its checksum not yet matching) is left for the next
    call.  ``replaced`` tells whether the path now names another file (a
    replacement renamed over it); what was appended to this one before is
    still read through the descriptor held."""

    def __init__(self, path: str | os.PathLike[str], magic: bytes, chunk: int = 1 << 20) -> None:
        self.path = Path(path)
        self._chunk = chunk
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            head = os.pread(self._fd, len(magic), 0)
            if head != magic:
                raise WrongMagicError(f"{self.path} does not start with {magic!r}")
            self.inode = os.fstat(self._fd).st_ino
        except BaseException:
            os.close(self._fd)
            raise
        self.offset = len(magic)
        self.checksum_wrong = False
        """Whether the last :meth:`read` stopped at a whole batch whose
        checksum is wrong (being written, torn, or damaged: see
        :meth:`damage`)."""

    def read(self, limit: int = 1 << 22) -> list[bytes]:
        """The bodies of the complete batches after the last one read, up to
        the one that makes ``limit`` bytes of them.  What follows them is
        read again next time (a torn tail may be cut and written over by
        the owner)."""
        bodies: list[bytes] = []
        head_size = _HEAD.size
        buffer = b""
        taken = 0
        self.checksum_wrong = False
        while taken < limit:
            data = os.pread(self._fd, self._chunk, self.offset + len(buffer))
            buffer += data
            pos = 0
            while len(buffer) - pos >= head_size:
                crc, length = _HEAD.unpack_from(buffer, pos)
                end = pos + head_size + length
                if end > len(buffer):
                    break
                if zlib.crc32(memoryview(buffer)[pos + 4 : end]) != crc:
                    # being written, or torn by a crash: read again later
                    self.checksum_wrong = True
                    break
                bodies.append(buffer[pos + head_size : end])
                pos = end
                if taken + pos >= limit:
                    break
            self.offset += pos
            buffer = buffer[pos:]
            taken += pos
            if len(data) < self._chunk:
                break
        return bodies

    def damage(self) -> int:
        """For a file no longer written to, read as far as :meth:`read`
        goes: the offset of an intact batch after the bytes it could not
        read (damage, not a torn tail: see :class:`DamagedError`), or -1
        (none, or nothing left unread)."""
        size = os.fstat(self._fd).st_size
        if size <= self.offset:
            return -1
        with mmap.mmap(self._fd, size, access=mmap.ACCESS_READ) as mm:
            return intact_after(mm, self.offset, _HEAD.size)

    @property
    def replaced(self) -> bool:
        """Whether the path names another file than the one being read (or none)."""
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
