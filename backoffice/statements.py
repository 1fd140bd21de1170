"""LP statements: CSV files of what each LP says it executed, read from one
folder with a column layout per LP (``[backoffice.lps.<LP>]``).

Files are read as they grow: a file that only grew since it was last read is
read from where reading stopped (whole lines only, and, for an end-of-day
statement, the last line without its newline once the file has been left
alone for :data:`QUIET_SECONDS`); a
file changed in any other way (a line edited or removed: a corrected
statement; another file under the same name) is read again whole and
replaces what was read of it before.  What was read is checked whole for
files up to 4 MiB, by its first and last 4 KiB beyond.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

import msgspec

from backoffice.records import (
    LpTrade,
    TradeDay,
    check_year,
    ledger_number,
    ledger_text,
    time_text,
)
from backoffice.settlement import LEDGER_DECIMALS
from config import StatementColumns

__all__ = ["StatementChange", "StatementError", "StatementFolder", "parse_lines"]


class StatementError(ValueError):
    """A statement line that cannot be read; the message names file and line."""


class StatementChange(msgspec.Struct, frozen=True):
    """What one scan found in one file: ``rows`` to add, or (``replace``)
    the rows that now stand for the whole file; or (``gone``) that the file
    was taken out of the folder: what was read of it is kept, but for the
    executions another file of its LP says too, which that file then
    stands for."""

    source: str
    lp: str
    replace: bool
    rows: list[LpTrade]
    errors: list[str]
    gone: bool = False


class _Seen(msgspec.Struct):
    size: int
    mtime_ns: int
    ino: int
    offset: int
    digest: bytes  # of what was read, up to ``offset`` (_prefix_digest)
    header: list[str]
    lines: int  # lines read, the header's included
    open_end: bool = False
    # the last line was read without its newline (a quiet end-of-day file):
    # bytes added later may finish it, so the file is then read again whole
    read_at: float = 0.0  # the wall clock when what was read was last found as it is


def _time(value: str, layout: StatementColumns) -> dt.datetime:
    if layout.time_format == "epoch_ms":
        when = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(value))
    elif layout.time_format == "fix":
        when = dt.datetime.strptime(
            value, "%Y%m%d-%H:%M:%S.%f" if "." in value else "%Y%m%d-%H:%M:%S"
        )
    else:
        when = dt.datetime.fromisoformat(value)
        if when.tzinfo is not None:
            when = when.astimezone(dt.UTC).replace(tzinfo=None)
    check_year(when.year, "time")
    return when


def _decimal(value: str) -> str:
    if not value.isascii():  # digits of other scripts, which Decimal reads and a ledger does not
        raise ValueError(f"not a number: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not ledger_number(number):
        raise ValueError(f"out of range: {value!r}")
    if "e" in value or "E" in value:
        # written with an exponent (1e-5, 12345678901e-3, 1e-1000000): in
        # plain notation at the ledger's decimals, rounded as the ledgers
        # round, which both ledgers take as they take any other number
        return format(number.quantize(_LEDGER_UNIT, rounding=ROUND_HALF_UP), "f")
    return value.strip()


_LEDGER_UNIT = Decimal(1).scaleb(-LEDGER_DECIMALS)


def _csv_rows(
    reader: Iterator[list[str]], first_line: int, source: str, errors: list[str]
) -> Iterator[tuple[int, list[str]]]:
    """The rows of ``reader`` with the number of the line each starts on;
    a line the CSV reader cannot read (a stray carriage return) is named in
    ``errors`` and skipped, and reading goes on with the next."""
    before = getattr(reader, "line_num", 0)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            now = getattr(reader, "line_num", before + 1)
            errors.append(f"{source} line {first_line + before}: not readable as CSV: {exc}")
            before = now
            continue
        yield first_line + before, fields
        before = getattr(reader, "line_num", before + 1)


def parse_lines(
    lines: Iterable[tuple[int, list[str]]],
    header: list[str],
    *,
    lp: str,
    source: str,
    layout: StatementColumns,
    days: TradeDay,
    errors: list[str] | None = None,
) -> tuple[list[LpTrade], list[str]]:
    """Rows of CSV ``lines`` (each with its line number) under ``header``; a
    line that cannot be read is skipped and named in the errors returned.
    A line repeating an execution an earlier line of the read named (the
    LP's order and ExecID) is skipped, and named when its values differ:
    the first stands, as when the lines were read in two parts."""
    try:
        index = {name: header.index(name) for name in _columns(layout)}
    except ValueError:
        missing = [name for name in _columns(layout) if name not in header]
        return [], [f"{source}: no column {', '.join(missing)} in the header {header}"]
    i_exec, i_ord, i_sym, i_side, i_qty, i_px, i_time = (
        index[layout.exec_id],
        index[layout.cl_ord_id],
        index[layout.symbol],
        index[layout.side],
        index[layout.quantity],
        index[layout.price],
        index[layout.exec_time],
    )
    sides = {layout.buy: 1, layout.sell: -1}
    rows: list[LpTrade] = []
    errors = [] if errors is None else errors
    first: dict[tuple[str, str], tuple[int, LpTrade]] = {}
    for number, fields in lines:
        if not fields:
            continue
        try:
            side = sides.get(fields[i_side])
            if side is None:
                raise ValueError(f"side {fields[i_side]!r}")
            when = time_text(_time(fields[i_time], layout))
            row = LpTrade(
                lp=lp,
                exec_id=ledger_text(fields[i_exec]),
                cl_ord_id=ledger_text(fields[i_ord]),
                symbol=ledger_text(fields[i_sym]),
                side=side,
                qty=_decimal(fields[i_qty]),
                price=_decimal(fields[i_px]),
                time=when,
                trade_date=days.of(when),
                source=source,
            )
        except (ValueError, IndexError, OverflowError) as exc:
            # OverflowError: a time past the calendar (epoch microseconds
            # where milliseconds were meant)
            errors.append(f"{source} line {number}: {exc}")
            continue
        key = (row.cl_ord_id, row.exec_id)
        seen = first.get(key)
        if seen is None:
            first[key] = (number, row)
            rows.append(row)
        elif seen[1] != row:
            errors.append(
                f"{source} line {number}: ExecID {row.exec_id!r} of order {row.cl_ord_id!r} "
                f"again, with other values than line {seen[0]}: line {seen[0]} stands"
            )
    return rows, errors


def _columns(layout: StatementColumns) -> tuple[str, ...]:
    return (
        layout.exec_id,
        layout.cl_ord_id,
        layout.symbol,
        layout.side,
        layout.quantity,
        layout.price,
        layout.exec_time,
    )


class StatementFolder:
    """The statement files of every LP in one folder, read as they change."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        layouts: Mapping[str, StatementColumns],
        days: TradeDay,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: the wall clock (epoch seconds) a file's modification
        time is compared with, to tell a file left alone."""
        self.folder = Path(folder)
        self.layouts = dict(layouts)
        self.days = days
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self._unreadable: dict[str, str] = {}  # file -> the error last said of it
        # set aside as it was (size, mtime, inode), until when
        self._aside: dict[str, tuple[int, int, int, float]] = {}
        # read at an earlier start, and not read since (see known)
        self._known: set[str] = set()
        self.unmatched: set[str] = set()

    def known(self, files: Iterable[str]) -> None:
        """Files read before this start (the ledger keeps them until they
        are taken out of the folder): one missing from the folder at a scan
        was taken out while the back office was stopped, and is gone as a
        file taken out while it runs is."""
        self._known.update(files)

    def lp_of(self, name: str) -> str | None:
        """The LP whose statement the file ``name`` is: of the patterns it
        matches, the longest (``LMAX-LD4-*.csv``, not ``LMAX-*.csv``)."""
        found: str | None = None
        longest = -1
        for lp, layout in self.layouts.items():
            pattern = layout.file or f"{lp}-*.csv"
            if len(pattern) > longest and fnmatch.fnmatchcase(name, pattern):
                found, longest = lp, len(pattern)
        return found

    def scan(self) -> list[StatementChange]:
        """What changed in the folder since the last scan."""
        changes: list[StatementChange] = []
        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except FileNotFoundError:
            return changes
        present = set()
        for entry in entries:
            if not entry.is_file():
                continue
            lp = self.lp_of(entry.name)
            if lp is None:
                self.unmatched.add(entry.name)
                continue
            try:
                change = self._read(entry.path, lp)
            except FileNotFoundError:
                continue  # moved away since the folder was listed
            except OSError as exc:
                # read at a later scan; the other files are taken now (the
                # cause said once while it lasts)
                present.add(entry.path)
                error = f"{entry.path}: cannot be read: {exc}"
                if self._unreadable.get(entry.path) != error:
                    self._unreadable[entry.path] = error
                    changes.append(StatementChange(entry.path, lp, False, [], [error]))
                continue
            present.add(entry.path)
            self._unreadable.pop(entry.path, None)
            if change is not None:
                changes.append(change)
        for gone in sorted((self._seen.keys() | self._known) - present):
            # a statement moved away (archived) keeps what was read of it,
            # but for what another file says too (the file that was wrong
            # taken out of the folder)
            self._seen.pop(gone, None)
            lp = self.lp_of(os.path.basename(gone))
            if lp is not None:
                changes.append(StatementChange(gone, lp, False, [], [], gone=True))
        # those in the folder and not read yet (unreadable) are known still
        self._known.intersection_update(present - self._seen.keys())
        for gone in set(self._unreadable) - present:
            del self._unreadable[gone]
        for gone in set(self._aside) - present:
            del self._aside[gone]
        return changes

    def set_aside(self, path: str) -> None:
        """Forget what was read of ``path`` (the ledger refused it); read it
        again whole once it changes, or after :data:`ASIDE_SECONDS`."""
        self._seen.pop(path, None)
        try:
            stat = os.stat(path)
        except OSError:
            return
        until = time.monotonic() + ASIDE_SECONDS
        self._aside[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ino, until)

    def _read(self, path: str, lp: str) -> StatementChange | None:
        stat = os.stat(path)
        aside = self._aside.get(path)
        if aside is not None:
            size, mtime_ns, ino, until = aside
            if (size, mtime_ns, ino) == (
                stat.st_size,
                stat.st_mtime_ns,
                stat.st_ino,
            ) and time.monotonic() < until:
                return None
            del self._aside[path]
        seen = self._seen.get(path)
        layout = self.layouts[lp]
        now = self._clock()
        # an end-of-day statement left alone this long has its last line
        # whole, newline or not (a live one's waits for its newline; a
        # layout that does not say is live, as the simulated LPs' are)
        live = layout.delivery in ("live", None)
        quiet = not live and now - stat.st_mtime >= QUIET_SECONDS
        if (
            seen is not None
            and (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            == (seen.size, seen.mtime_ns, seen.ino)
            and (seen.offset >= stat.st_size or not quiet)
            and not _changed_within_its_tick(path, seen, now)
        ):
            return None
        with open(path, "rb") as f:
            # taken as appended to when it is the same file and what was
            # read of it is unchanged; read again whole otherwise
            appended = (
                seen is not None
                and not seen.open_end
                and stat.st_ino == seen.ino
                and stat.st_size >= seen.offset
                and _prefix_digest(f, seen.offset) == seen.digest
            )
            if appended and seen is not None:
                base = seen.offset
                f.seek(base)
                data = f.read()
                header, replace = seen.header, False
                first_line = seen.lines + 1
            else:
                f.seek(0)
                base = 0
                data = f.read()
                header, replace = [], True
                first_line = 1
        end = data.rfind(b"\n") + 1  # whole lines only
        open_end = False
        if end < len(data) and quiet and base + len(data) == stat.st_size:
            # the last line, without its newline, of a statement written at
            # the end of the day and left alone since; a live one's may be
            # half a line a writer has not finished
            end = len(data)
            open_end = True
        # a byte order mark (spreadsheets write one) is no part of the first column's name
        text = data[:end].decode("utf-8-sig" if base == 0 else "utf-8", "replace")
        errors: list[str] = []
        rows: list[LpTrade] = []
        reader = csv.reader(io.StringIO(text), delimiter=layout.delimiter)
        lines = _csv_rows(reader, first_line, path, errors)
        if not header:
            # the first line holding anything (blank lines are skipped, as
            # they are between rows)
            header = next((fields for _, fields in lines if fields), [])
        if text:  # an empty file (created, not written yet) has no header to miss
            rows, errors = parse_lines(
                lines,
                header,
                lp=lp,
                source=path,
                layout=layout,
                days=self.days,
                errors=errors,
            )
        offset = base + end
        with open(path, "rb") as f:
            digest = _prefix_digest(f, offset)
        self._seen[path] = _Seen(
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            ino=stat.st_ino,
            offset=offset,
            digest=digest,
            header=header,
            lines=(seen.lines if appended and seen is not None else 0) + text.count("\n"),
            open_end=open_end,
            read_at=now,
        )
        if not rows and not replace and not errors:
            return None
        return StatementChange(path, lp, replace, rows, errors)


def _changed_within_its_tick(path: str, seen: _Seen, now: float) -> bool:
    """Whether a file whose size, time and inode are as they were read has
    changed all the same: a file system keeps modification times in ticks
    (milliseconds on Linux, seconds on some), so a file written again, at
    the same size, within :data:`TICK_SECONDS` of its reading may keep the
    time it had.  Such a file is checked by what was read of it, until it
    has been found unchanged that long after its time."""
    if seen.mtime_ns < (seen.read_at - TICK_SECONDS) * 1e9:
        return False
    with open(path, "rb") as f:
        if _prefix_digest(f, seen.offset) != seen.digest:
            return True
    seen.read_at = now
    return False


TICK_SECONDS = 2.0
"""The coarsest tick of a file's modification time this reader allows for
(FAT keeps two seconds)."""

ASIDE_SECONDS = 600.0
"""How long a statement file the ledger refused is left alone, unchanged,
before it is read again whole (the cause may have been mended meanwhile)."""

QUIET_SECONDS = 5.0
"""How long an end-of-day statement file is left alone before its last line
is read without the newline that would end it.  A live one's last line is
read only once ended: a writer may flush half a line and finish it later."""

_TAIL = 4096

_WHOLE = 4 << 20
"""What was read of a file is checked whole, up to this size, before the
file is taken as appended to; beyond it, its first and last 4 KiB."""


def _prefix_digest(f: BinaryIO, size: int) -> bytes:
    """A digest of the first ``size`` bytes of ``f``: all of them up to
    :data:`_WHOLE`, else the first and the last :data:`_TAIL`."""
    h = hashlib.blake2b(digest_size=16)
    f.seek(0)
    if size <= _WHOLE:
        h.update(f.read(size))
    else:
        h.update(f.read(_TAIL))
        f.seek(size - _TAIL)
        h.update(f.read(_TAIL))
    return h.digest()
