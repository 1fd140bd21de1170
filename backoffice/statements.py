"""LP statements: CSV files of what each LP says it executed, read from one
folder with a column layout per LP (``[backoffice.lps.<LP>]``).

Files are read as they grow: a file that only grew since it was last read is
read from where reading stopped (whole lines only); a file changed in any
other way (a line edited or removed: a corrected statement) is read again
whole and replaces what was read of it before.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from backoffice.records import LpTrade, TradeDay, time_text
from config import StatementColumns

__all__ = ["StatementChange", "StatementError", "StatementFolder", "parse_lines"]


class StatementError(ValueError):
    """A statement line that cannot be read; the message names file and line."""


class StatementChange(msgspec.Struct, frozen=True):
    """What one scan found in one file: ``rows`` to add, or (``replace``)
    the rows that now stand for the whole file."""

    source: str
    lp: str
    replace: bool
    rows: list[LpTrade]
    errors: list[str]


class _Seen(msgspec.Struct):
    size: int
    mtime_ns: int
    offset: int
    digest: bytes  # of the 4 KiB before ``offset``
    header: list[str]
    lines: int  # lines read, the header's included


def _time(value: str, layout: StatementColumns) -> dt.datetime:
    if layout.time_format == "epoch_ms":
        return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(value))
    if layout.time_format == "fix":
        return dt.datetime.strptime(
            value, "%Y%m%d-%H:%M:%S.%f" if "." in value else "%Y%m%d-%H:%M:%S"
        )
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def _decimal(value: str) -> str:
    if not value.isascii():  # digits of other scripts, which Decimal reads and a ledger does not
        raise ValueError(f"not a number: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite() or number.adjusted() >= 10:
        raise ValueError(f"out of range: {value!r}")
    return value.strip()


def parse_lines(
    lines: Iterable[list[str]],
    header: list[str],
    *,
    lp: str,
    source: str,
    layout: StatementColumns,
    days: TradeDay,
    first_line: int,
) -> tuple[list[LpTrade], list[str]]:
    """Rows of CSV ``lines`` under ``header``; a line that cannot be read is
    skipped and named in the errors returned."""
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
    errors: list[str] = []
    for number, fields in enumerate(lines, first_line):
        if not fields:
            continue
        try:
            side = sides.get(fields[i_side])
            if side is None:
                raise ValueError(f"side {fields[i_side]!r}")
            when = time_text(_time(fields[i_time], layout))
            rows.append(
                LpTrade(
                    lp=lp,
                    exec_id=fields[i_exec],
                    cl_ord_id=fields[i_ord],
                    symbol=fields[i_sym],
                    side=side,
                    qty=_decimal(fields[i_qty]),
                    price=_decimal(fields[i_px]),
                    time=when,
                    trade_date=days.of(when),
                    source=source,
                )
            )
        except (ValueError, IndexError, OverflowError) as exc:
            # OverflowError: a time past the calendar (epoch microseconds
            # where milliseconds were meant)
            errors.append(f"{source} line {number}: {exc}")
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
    ) -> None:
        self.folder = Path(folder)
        self.layouts = dict(layouts)
        self.days = days
        self._seen: dict[str, _Seen] = {}
        self._unreadable: dict[str, str] = {}  # file -> the error last said of it
        self.unmatched: set[str] = set()

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
        for gone in set(self._seen) - present:
            # a statement moved away (archived) keeps what was read of it
            del self._seen[gone]
        for gone in set(self._unreadable) - present:
            del self._unreadable[gone]
        return changes

    def _read(self, path: str, lp: str) -> StatementChange | None:
        stat = os.stat(path)
        seen = self._seen.get(path)
        if seen is not None and (stat.st_size, stat.st_mtime_ns) == (seen.size, seen.mtime_ns):
            return None
        layout = self.layouts[lp]
        with open(path, "rb") as f:
            appended = False
            if seen is not None and stat.st_size > seen.offset:
                # grown: taken as appended to when what preceded the last
                # read end is unchanged (its last 4 KiB checked, not all)
                f.seek(max(0, seen.offset - _TAIL))
                appended = _digest(f.read(min(_TAIL, seen.offset))) == seen.digest
            if appended and seen is not None:
                base = seen.offset
                data = f.read()
                start, header, replace = 0, seen.header, False
                first_line = seen.lines + 1
            else:
                f.seek(0)
                base = 0
                data = f.read()
                start, header, replace = 0, [], True
                first_line = 1
        end = data.rfind(b"\n") + 1  # whole lines only
        # a byte order mark (spreadsheets write one) is no part of the first column's name
        text = data[start:end].decode("utf-8-sig" if base == 0 else "utf-8", "replace")
        errors: list[str] = []
        rows: list[LpTrade] = []
        try:
            reader = csv.reader(io.StringIO(text), delimiter=layout.delimiter)
            if not header:
                header = next(reader, [])
                first_line += 1
            if text:  # an empty file (created, not written yet) has no header to miss
                rows, errors = parse_lines(
                    reader,
                    header,
                    lp=lp,
                    source=path,
                    layout=layout,
                    days=self.days,
                    first_line=first_line,
                )
        except csv.Error as exc:
            # a file that is not CSV: nothing of it is taken until it is
            errors = [f"{path}: not readable as CSV: {exc}"]
            rows = []
        offset = base + end
        with open(path, "rb") as f:
            f.seek(max(0, offset - _TAIL))
            tail = f.read(min(_TAIL, offset))
        self._seen[path] = _Seen(
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            offset=offset,
            digest=_digest(tail),
            header=header,
            lines=(seen.lines if appended and seen is not None else 0) + text.count("\n"),
        )
        if not rows and not replace and not errors:
            return None
        return StatementChange(path, lp, replace, rows, errors)


_TAIL = 4096


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
