"""Small file-system steps shared by the on-disk journals (the FIX session
store and the order journal): a directory lock, complete appends, data sync
and an atomic file replacement.

Every function is synchronous and meant for the event loop's thread: the
journals keep their writes to one system call per batch.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["append_all", "datasync", "fsync_dir", "lock_directory", "replace_file"]


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
