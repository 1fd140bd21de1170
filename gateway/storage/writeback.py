"""Writing back what the stores and the journal hand to the kernel, a little
at a time.

Appends reach the page cache at once; the kernel writes them to the disk
later, by default every five seconds, in one burst of everything written
meanwhile.  On a virtual machine such a burst can hold the whole machine
for tens of milliseconds, the gateway's loop with it.  :class:`Writeback`
asks the kernel every ``interval`` seconds to start writing back what the
given files hold (``sync_file_range(2)`` with ``SYNC_FILE_RANGE_WRITE``:
the writes are started, not waited for), from a thread of its own, so that
the disk sees a steady trickle instead of bursts.  It changes nothing of
what is durable when: the order of writes before bytes leave, and the
``fsync`` policy, stay as they are.

Linux only; elsewhere :func:`available` is False and nothing is started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Final

__all__ = ["Writeback", "available", "start_writeback"]

SYNC_FILE_RANGE_WRITE: Final = 2

_sync_file_range: Callable[[int, int, int, int], int] | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _function = _libc.sync_file_range
        _function.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
        _function.restype = ctypes.c_int
        _sync_file_range = _function
    except (OSError, AttributeError):  # pragma: no cover - a C library without it
        _sync_file_range = None


def available() -> bool:
    """Whether this platform can start writeback of a file's range."""
    return _sync_file_range is not None


def start_write(fd: int) -> None:
    """Start writing back every dirty page of ``fd``; errors (a descriptor
    closed meanwhile) are ignored: the kernel writes it back anyway."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


class Writeback:
    """Every ``interval`` seconds, start writing back the files whose
    descriptors ``files()`` gives (read each time: files are replaced)."""

    def __init__(
        self,
        files: Callable[[], Iterable[int]],
        interval: float,
        start: Callable[[int], None] = start_write,
    ) -> None:
        self._files = files
        self._interval = interval
        self._start = start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for fd in list(self._files()):
                if fd >= 0:
                    self._start(fd)
            self.rounds += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def start_writeback(files: Callable[[], Iterable[int]], interval_ms: int) -> Writeback | None:
    """A running :class:`Writeback` of ``files``, or None when
    ``interval_ms`` is 0 or the platform has no ``sync_file_range``."""
    if not interval_ms or not available():
        return None
    writeback = Writeback(files, interval_ms / 1000)
    writeback.start()
    return writeback
