"""A simulated LP's end-of-day statement: every execution it made, as the
LP's own record for a back office to reconcile against.

One CSV file per LP per UTC date of execution, ``<directory>/<lp>-<YYYYMMDD>.csv``,
a header line then one line per fill::

    TradeDate,ExecTime,ExecID,ClOrdID,OrderID,Symbol,Side,Quantity,Price
    2026-12-03,2026-12-03T18:20:01.123Z,LPX1-19a2b-E7,C-17,LPX1-19a2b-3,EUR/USD,BUY,500000,1.085

Lines end with ``\\n``; a field holding a comma, a quote or a line break is
quoted as CSV does it.  :meth:`StatementWriter.record` only buffers the line:
the buffer is written (and the file created, with its header, if it is new or
empty) at most :data:`FLUSH_INTERVAL` seconds later, by a timer on the
running loop, and by :meth:`StatementWriter.flush` / :meth:`StatementWriter.close`.
Each write appends whole lines only; an existing file is appended to (a
restart continues the day's file without a second header; a last line
without its newline, what a write cut short by a kill left, is cut first),
and a line goes to the file of its own date, so the statement rolls over
at midnight UTC.

A write that fails (a missing permission, a full disk) is logged as one
error naming the file and the cause, and its lines are dropped: the LP goes
on trading.  Further failures on the same file are counted, not logged, until
a write to it succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Final

import structlog

from router.model import Side

__all__ = ["FLUSH_INTERVAL", "HEADER", "StatementWriter"]

_log = structlog.get_logger("lp_adapters.simulated.statement")

HEADER: Final = "TradeDate,ExecTime,ExecID,ClOrdID,OrderID,Symbol,Side,Quantity,Price"
"""The first line of every statement file."""

FLUSH_INTERVAL: Final = 0.5
"""Longest time, in seconds, a recorded line waits in memory."""

_SPECIAL: Final = frozenset(',"\r\n')
_MILLIS: Final = tuple(f".{millis:03d}Z," for millis in range(1000))
"""The end of ExecTime, and its comma, for each millisecond."""
_SIDE_NAMES: Final = {side: side.name for side in Side}


def _field(text: str) -> str:
    """``text`` as a CSV field: quoted (quotes doubled) only when it must be."""
    if _SPECIAL.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


class StatementWriter:
    """The statement files of the LP ``lp`` in ``directory`` (created when
    first written to).  Called on the event loop thread only."""

    def __init__(self, directory: Path, lp: str, *, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.directory = directory
        self.lp = lp
        self.flush_interval = flush_interval
        self._pending: dict[str, list[str]] = {}  # lines by date (YYYYMMDD)
        self._timer: asyncio.TimerHandle | None = None
        self._dropped: dict[Path, int] = {}  # lines lost, by file failing now
        self._second = -1  # the UTC second the two strings below are of
        self._stamp = ""  # TradeDate and ExecTime to the second, as written
        self._file_date = ""

    def path(self, date: str) -> Path:
        """The file of the UTC date ``date`` (``YYYYMMDD``)."""
        return self.directory / f"{self.lp}-{date}.csv"

    def record(
        self,
        now: float,
        *,
        exec_id: str,
        cl_ord_id: str,
        order_id: str,
        symbol: str,
        side: Side,
        qty: str,
        price: str,
    ) -> None:
        """Buffer the line of one fill made at ``now`` (epoch seconds, kept
        to the millisecond as FIX timestamps are); ``qty`` and ``price`` are
        written as given.  Arms the flush timer when a loop is running
        (otherwise the line waits for :meth:`flush`)."""
        # truncated to the millisecond as gateway.fix.codec.format_utc_timestamp does
        second, millis = divmod(int(now * 1000.0 + 0.001), 1000)
        if second != self._second:  # dates formatted once a second, not once a fill
            utc = time.gmtime(second)
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d,%Y-%m-%dT%H:%M:%S", utc)
            self._file_date = time.strftime("%Y%m%d", utc)
        fields = (exec_id, cl_ord_id, order_id, symbol, _SIDE_NAMES[side], qty, price)
        rest = ",".join(fields)
        # a field holds a character of _SPECIAL (beyond the six separating commas)
        if rest.count(",") != 6 or '"' in rest or "\n" in rest or "\r" in rest:
            rest = ",".join([_field(field) for field in fields])  # one must be quoted
        line = self._stamp + _MILLIS[millis] + rest + "\n"
        self._pending.setdefault(self._file_date, []).append(line)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.flush_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Write every buffered line now, each to the file of its date."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for date, lines in pending.items():
            self._append(self.path(date), lines)

    def close(self) -> None:
        """The last :meth:`flush` (recording again later arms a new timer)."""
        self.flush()

    def _cut_torn_line(self, fd: int, path: Path, size: int) -> int:
        """Cut the last line of the file ``fd`` (``size`` bytes), which has
        no newline: only whole lines are written, so it is the part a write
        cut short left (the process killed in the middle of it), not a line
        to complete with a quantity or price of its own.  Returns the size
        left; the text cut is logged."""
        end = size
        while end:
            start = max(0, end - 4096)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        torn = os.pread(fd, size - end, end)
        os.ftruncate(fd, end)
        _log.warning(
            "lp_statement_torn_line_cut",
            lp=self.lp,
            file=str(path),
            text=torn.decode("utf-8", "replace"),
        )
        return end

    def _append(self, path: Path, lines: list[str]) -> None:
        data = "".join(lines).encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    size = self._cut_torn_line(fd, path, size)
                if size == 0:
                    data = (HEADER + "\n").encode() + data
                try:
                    view = memoryview(data)
                    while view:
                        # not inside the slice: compiled, a slice's bound
                        # may be evaluated twice (the bytes written twice)
                        written = os.write(fd, view)
                        view = view[written:]
                except OSError:
                    with contextlib.suppress(OSError):  # leave no part of a line behind
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            dropped = self._dropped.get(path)
            self._dropped[path] = (dropped or 0) + len(lines)
            if dropped is None:
                _log.error(
                    "lp_statement_write_failed",
                    lp=self.lp,
                    file=str(path),
                    error=str(exc),
                    lines_dropped=len(lines),
                )
            return
        dropped = self._dropped.pop(path, None)
        if dropped is not None:
            _log.info(
                "lp_statement_write_resumed", lp=self.lp, file=str(path), lines_dropped=dropped
            )
