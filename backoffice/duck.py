"""The embedded ledger: one DuckDB file, no server.

DuckDB's calls block, so every one of them runs in one thread of the
ledger's own, in the order they were made: the event loop never waits on
the database, and the database sees one writer.  A day's export reads a
snapshot on a connection and in a thread of its own, beside the writes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from backoffice import ledger as sql
from backoffice.ledger import (
    Break,
    Covers,
    Hold,
    Ledger,
    LedgerError,
    LedgerLost,
    PinnedDay,
    Position,
    ReconRun,
    SettlementLine,
)
from backoffice.records import INTERNAL_MARKET, ClientTrade, HouseTrade, day_stamp
from backoffice.settlement import Settlement
from backoffice.statements import StatementChange

__all__ = ["DuckLedger"]

T = TypeVar("T")

# Rows travel to DuckDB as one string each, fields joined by SOH (which no
# FIX value and no statement field holds) and split in SQL: an order of
# magnitude cheaper than a parameter per field.
SEP = "\x01"


def _insert(table: str, columns: str, types: Sequence[str], conflicts: bool = True) -> str:
    fields = []
    for n, kind in enumerate(types, 1):
        fields.append(f"r[{n}]" if kind == "VARCHAR" else f"CAST(r[{n}] AS {kind})")
    return (
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(fields)}, $2 "
        "FROM (SELECT string_split(unnest($1), chr(1)) AS r) AS rows"
        + (" ON CONFLICT DO NOTHING" if conflicts else "")
    )


_V, _I, _D, _T, _DT = "VARCHAR", "BIGINT", "DECIMAL(18, 8)", "TIMESTAMP", "DATE"
_CLIENT_INSERT = _insert(
    "client_trades",
    sql.CLIENT_COLUMNS,
    [_V, _V, _V, _V, _V, _I, _D, _D, _V, _T, _DT, _DT, _I, _V],
)
_HOUSE_INSERT = _insert(
    "house_trades",
    sql.HOUSE_COLUMNS,
    [_V, _V, _V, _V, _V, _V, _V, _I, _D, _D, _T, _DT, _DT, _I, _V],
)
# statement lines are staged first (sql.STAGED_LINES_INSERT stores them)
_LP_INSERT = _insert(
    "stage_lp", sql.LP_COLUMNS, [_V, _V, _V, _V, _I, _D, _D, _T, _DT, _DT, _V, _V], conflicts=False
)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Undo the transaction a write failed in.  A COMMIT that failed (a full
    disk) has ended it already, and DuckDB refuses a ROLLBACK then: the
    error raised is the one that says why the write failed."""
    with contextlib.suppress(duckdb.TransactionException):
        con.rollback()


class DuckLedger(Ledger):
    """The ledger in the DuckDB file at ``path``."""

    def __init__(
        self, path: str | os.PathLike[str], settlement: Settlement, *, memory_mb: int = 0
    ) -> None:
        self.path = Path(path)
        self.memory_mb = memory_mb
        self.url = f"duckdb:{self.path}"
        self._settlement = settlement
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ledger")
        # the days' exports, each on a snapshot of its own
        self._exports = ThreadPoolExecutor(1, thread_name_prefix="ledger-export")
        self._pinned: set[_DuckDay] = set()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ingest = 0
        self._file: tuple[int, int] | None = None  # the file opened: device, inode

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in the ledger's thread; a database error is a LedgerError
        (a write that fails has been rolled back)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except duckdb.Error as exc:
            raise LedgerError(f"the ledger {self.url}: {exc}") from exc

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise LedgerError("the ledger is not open")
        return self._con

    # -- open / close ----------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path))
        except (OSError, duckdb.Error) as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        self._con = con
        self._file = None
        with contextlib.suppress(OSError):
            stat = os.stat(self.path)
            self._file = (stat.st_dev, stat.st_ino)
        # one core at most: the back office shares the machine with the gateway
        con.execute("SET threads = 1")
        if self.memory_mb:
            # the machine is the gateway's too: a bound, past which work spills to disk
            con.execute(f"SET memory_limit = '{int(self.memory_mb)}MiB'")
        for statement in sql.TABLES:
            con.execute(statement)
        for done, statements in sql.MIGRATIONS:
            row = con.execute(done).fetchone()
            if not row or not row[0]:
                for statement in statements:
                    con.execute(statement)
        con.execute("CREATE TEMP TABLE scope (rel VARCHAR, k VARCHAR)")
        con.execute(sql.DUE_TABLE)
        con.execute("CREATE TEMP TABLE stage_lp AS SELECT * FROM lp_trades LIMIT 0")
        _terms(con, self._settlement)
        row = con.execute(
            "SELECT max(m) FROM (SELECT max(ingest) AS m FROM client_trades "
            "UNION ALL SELECT max(ingest) FROM house_trades "
            "UNION ALL SELECT max(ingest) FROM lp_trades "
            "UNION ALL SELECT max(watermark) FROM recon_state) AS m"
        ).fetchone()
        self._ingest = int(row[0] or 0) if row else 0

    async def close(self) -> None:
        pinned = list(self._pinned)
        for day in pinned:
            day.interrupt()  # an export's statement ends at once
        try:
            for day in pinned:
                await day.close()
            await asyncio.to_thread(self._exports.shutdown, True)
        finally:
            if self._con is not None:
                await self._run(self._close)
            self._pool.shutdown(wait=True)

    def _check_file(self) -> None:
        """Before a write: the path still names the file opened.  One
        deleted or replaced while open takes what DuckDB writes on into
        the file that went, which the next start does not see: LedgerLost."""
        if self._file is None:
            return
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if stat is None or (stat.st_dev, stat.st_ino) != self._file:
            raise LedgerLost(
                f"the ledger file {self.path} was {'deleted' if stat is None else 'replaced'} "
                "while open: what is written to it now would be lost",
                file=str(self.path),
            )

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- writes ----------------------------------------------------------------------

    async def last_seq(self, session: str) -> int:
        return await self._run(self._last_seq, session)

    def _last_seq(self, session: str) -> int:
        row = self.con.execute("SELECT last_seq FROM feed WHERE session = $1", [session]).fetchone()
        return int(row[0]) if row else 0

    async def booked_on(self, bookings: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return await self._run(self._booked_on, list(bookings))

    def _booked_on(self, bookings: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for child_id, exec_id in bookings:
            row = self.con.execute(sql.BOOKED_ON, [child_id, exec_id]).fetchone()
            if row and row[0] is not None:
                found[(child_id, exec_id)] = row[0].isoformat()
        return found

    async def write(
        self,
        session: str,
        last_seq: int,
        clients: Sequence[ClientTrade],
        houses: Sequence[HouseTrade],
    ) -> int:
        return await self._run(self._write, session, last_seq, clients, houses)

    def _write(
        self,
        session: str,
        last_seq: int,
        clients: Sequence[ClientTrade],
        houses: Sequence[HouseTrade],
    ) -> int:
        con = self.con
        self._check_file()
        value_date = self._settlement.value_date
        self._ingest += 1
        ingest = self._ingest
        con.begin()
        try:
            if clients:
                con.execute(
                    _CLIENT_INSERT,
                    [
                        [
                            SEP.join(
                                (
                                    c.exec_id,
                                    c.client,
                                    c.order_id,
                                    c.cl_ord_id,
                                    c.symbol,
                                    str(c.side),
                                    c.qty,
                                    c.price,
                                    c.market,
                                    c.time,
                                    c.trade_date,
                                    value_date(c.symbol, c.trade_date),
                                    str(c.seq),
                                    sql.x_key(c.symbol, c.time, c.price)
                                    if c.market == INTERNAL_MARKET
                                    else "",
                                )
                            )
                            for c in {c.exec_id: c for c in clients}.values()
                        ],
                        ingest,
                    ],
                )
            if houses:
                con.execute(
                    _HOUSE_INSERT,
                    [
                        [
                            SEP.join(
                                (
                                    h.report_id,
                                    h.lp,
                                    h.lp_exec_id,
                                    h.child_id,
                                    h.account,
                                    h.client_exec_id,
                                    h.symbol,
                                    str(h.side),
                                    h.qty,
                                    h.price,
                                    h.time,
                                    h.trade_date,
                                    value_date(h.symbol, h.trade_date),
                                    str(h.seq),
                                    sql.hl_key(h.lp, h.child_id, h.lp_exec_id),
                                )
                            )
                            for h in {h.report_id: h for h in houses}.values()
                        ],
                        ingest,
                    ],
                )
            con.execute(sql.FEED_WRITE, [session, last_seq, sql.latest_time([*clients, *houses])])
            con.commit()
        except BaseException:
            _rollback(con)
            raise
        return ingest

    async def apply_statements(self, changes: Sequence[StatementChange]) -> int:
        return await self._run(self._apply_statements, changes)

    def _apply_statements(self, changes: Sequence[StatementChange]) -> int:
        con = self.con
        self._check_file()
        value_date = self._settlement.value_date
        self._ingest += 1
        ingest = self._ingest
        differing: list[str] = []
        con.begin()
        try:
            for change in changes:
                if change.replace:
                    con.execute(sql.FILE_READ, [change.source])
                    for statement in sql.statement_replace_sql():
                        done = con.execute(statement, [change.source]).fetchone()
                        if statement == sql.LINES_DELETE and done and done[0]:
                            self.lines_removed_at = ingest
                    repeats = con.execute(sql.HAS_REPEATS).fetchone()
                    for statement in sql.statement_promote_sql() if repeats and repeats[0] else ():
                        con.execute(statement, [ingest] if "$1" in statement else [])
                elif change.gone:
                    con.execute(sql.FILE_GONE, [change.source])
                    repeats = con.execute(sql.HAS_REPEATS).fetchone()
                    if repeats and repeats[0]:
                        for statement in sql.statement_gone_sql():
                            done = con.execute(statement, [change.source]).fetchone()
                            if statement == sql.LINES_HANDED_OVER and done and done[0]:
                                self.lines_removed_at = ingest
                        for statement in sql.statement_promote_sql():
                            con.execute(statement, [ingest] if "$1" in statement else [])
                if change.rows:
                    con.execute(
                        _LP_INSERT,
                        [
                            [
                                SEP.join(
                                    (
                                        r.lp,
                                        r.exec_id.replace(SEP, " "),
                                        r.cl_ord_id.replace(SEP, " "),
                                        r.symbol.replace(SEP, " "),
                                        str(r.side),
                                        r.qty,
                                        r.price,
                                        r.time,
                                        r.trade_date,
                                        value_date(r.symbol, r.trade_date),
                                        r.source,
                                        sql.hl_key(r.lp, r.cl_ord_id, r.exec_id).replace(SEP, " "),
                                    )
                                )
                                for r in {(r.cl_ord_id, r.exec_id): r for r in change.rows}.values()
                            ],
                            ingest,
                        ],
                    )
                    stored = con.execute(sql.STAGED_LINES_INSERT, [ingest]).fetchone()
                    staged = con.execute("SELECT count(*) FROM stage_lp").fetchone()
                    if stored and staged and stored[0] < staged[0]:
                        con.execute(sql.STAGED_REPEATS_INSERT, [ingest])
                        named = set()
                        if not change.replace:
                            found = con.execute(sql.STAGED_DIFFERING).fetchall()
                            differing.extend(sql.differing_line(*row) for row in found)
                            named = {tuple(row) for row in found}
                        found = con.execute(sql.STAGED_DIFFERING_ELSEWHERE).fetchall()
                        differing.extend(
                            sql.differing_elsewhere_line(*row)
                            for row in found
                            if tuple(row[:3]) not in named  # said of its own file
                        )
                    con.execute("DELETE FROM stage_lp")
            con.commit()
        except BaseException:
            _rollback(con)
            raise
        self.differing_lines = differing
        return ingest

    async def statement_files(self) -> list[str]:
        return await self._run(self._statement_files)

    def _statement_files(self) -> list[str]:
        return [row[0] for row in self.con.execute(sql.STATEMENT_FILES).fetchall()]

    # -- reconciliation ----------------------------------------------------------------

    async def recon(
        self, full: bool, grace: float, now: dt.datetime, covers: Covers | None = None
    ) -> ReconRun:
        return await self._run(self._recon, full, grace, now, covers)

    def _recon(self, full: bool, grace: float, now: dt.datetime, covers: Covers | None) -> ReconRun:
        con = self.con
        self._check_file()
        con.begin()
        try:
            row = con.execute("SELECT watermark FROM recon_state WHERE id = 1").fetchone()
            watermark = int(row[0]) if row else 0
            upto = self._ingest
            for covered in sql.feeds_covered(covers, grace):
                con.execute(sql.FEED_COVERED, list(covered))
            cover_row = con.execute(sql.covers_sql(grace)).fetchone()
            cover = sql.drop_copy_cover(
                cover_row[0] if cover_row else None,
                con.execute(sql.feeds_sql(grace)).fetchall(),
                covers,
            )
            if not full:
                names, untils = sql.due_covers(
                    cover, con.execute(sql.lp_covers_sql(grace)).fetchall(), covers
                )
                con.execute("DELETE FROM due")
                if names:
                    con.execute("INSERT INTO due SELECT unnest($1), unnest($2)", [names, untils])
            for statement in sql.scope_sql(full):
                if "$1" in statement:
                    con.execute(statement, [watermark])
                else:
                    con.execute(statement)
            keys_row = con.execute(sql.keys_sql(full)).fetchone()
            keys = int(keys_row[0]) if keys_row else 0
            hl = con.execute(sql.hl_sql(grace, full)).fetchall()
            ch = con.execute(sql.ch_sql(full)).fetchall()
            x = con.execute(sql.x_sql(full)).fetchall()
            found, pending = sql.classify(hl, ch, x, cover, covers)
            if full:
                old = con.execute(
                    "SELECT kind, rel, k, first_seen FROM breaks WHERE rel <> 'pos'"
                ).fetchall()
                con.execute("DELETE FROM breaks WHERE rel <> 'pos'")
                con.execute("DELETE FROM pending")
            else:
                in_scope = "EXISTS (SELECT 1 FROM scope s WHERE s.rel = {t}.rel AND s.k = {t}.k)"
                old = con.execute(
                    "SELECT kind, rel, k, first_seen FROM breaks WHERE "
                    + in_scope.format(t="breaks")
                ).fetchall()
                con.execute("DELETE FROM breaks WHERE " + in_scope.format(t="breaks"))
                con.execute("DELETE FROM pending WHERE " + in_scope.format(t="pending"))
            seen = {(kind, rel, k): first for kind, rel, k, first in old}
            self._insert_breaks(found, seen, now)
            if pending:
                unique = sql.unique_pending(pending)
                con.execute(
                    "INSERT INTO pending (rel, k, waits, t) "
                    "SELECT unnest($1), unnest($2), unnest($3), unnest($4) ON CONFLICT DO NOTHING",
                    [[p[i] for p in unique] for i in range(4)],
                )
            con.execute("DELETE FROM touched")
            con.execute(
                "INSERT INTO recon_state VALUES (1, $1) ON CONFLICT (id) DO UPDATE "
                "SET watermark = excluded.watermark",
                [upto],
            )
            con.commit()
        except BaseException:
            _rollback(con)
            raise
        total = con.execute("SELECT count(*) FROM breaks").fetchone()
        waiting = con.execute("SELECT count(*) FROM pending").fetchone()
        return ReconRun(
            full=full,
            keys=keys,
            breaks=int(total[0]) if total else 0,
            pending=int(waiting[0]) if waiting else 0,
            upto=upto,
        )

    def _insert_breaks(
        self,
        found: Sequence[tuple[str, Break]],
        seen: dict[tuple[str, str, str], dt.datetime],
        now: dt.datetime,
    ) -> None:
        if not found:
            return
        self.con.execute(
            "INSERT INTO breaks SELECT unnest($1), unnest($2), unnest($3), unnest($4), "
            "unnest($5), unnest($6), unnest($7), unnest($8), unnest($9), unnest($10), "
            "unnest($11), unnest($12) ON CONFLICT DO NOTHING",
            sql.break_columns(found, seen, now),
        )

    async def without_statements(self, lps: Sequence[str]) -> tuple[int, int]:
        return await self._run(self._without_statements, lps)

    def _without_statements(self, lps: Sequence[str]) -> tuple[int, int]:
        con = self.con
        removed = [0, 0]
        con.begin()
        try:
            for lp in lps:
                for i, statement in enumerate(sql.NO_STATEMENT_SQL):
                    done = con.execute(statement, [lp]).fetchone()
                    removed[i] += int(done[0]) if done else 0
            con.commit()
        except BaseException:
            _rollback(con)
            raise
        return removed[0], removed[1]

    async def set_position_breaks(self, breaks: Sequence[Break], now: dt.datetime) -> None:
        await self._run(self._set_position_breaks, breaks, now)

    def _set_position_breaks(self, breaks: Sequence[Break], now: dt.datetime) -> None:
        con = self.con
        con.begin()
        try:
            old = con.execute(
                "SELECT kind, rel, k, first_seen FROM breaks WHERE rel = 'pos'"
            ).fetchall()
            con.execute("DELETE FROM breaks WHERE rel = 'pos'")
            seen = {(kind, rel, k): first for kind, rel, k, first in old}
            self._insert_breaks([("pos", b) for b in breaks], seen, now)
            con.commit()
        except BaseException:
            _rollback(con)
            raise

    async def breaks(self) -> list[Break]:
        return await self._run(self._breaks)

    def _breaks(self) -> list[Break]:
        rows = self.con.execute(
            "SELECT kind, records, k, ref, lp, client, symbol, ours, theirs, detail, first_seen "
            "FROM breaks ORDER BY first_seen, kind, k"
        ).fetchall()
        return [
            Break(
                kind=r[0],
                records=r[1],
                key=r[2],
                ref=r[3],
                lp=r[4],
                client=r[5],
                symbol=r[6],
                ours=r[7],
                theirs=r[8],
                detail=r[9],
                first_seen=r[10],
            )
            for r in rows
        ]

    # -- reports -----------------------------------------------------------------------

    async def positions(self) -> dict[str, list[Position]]:
        return await self._run(self._positions, sql.POSITIONS, ())

    @property
    def last_ingest(self) -> int:
        return self._ingest

    async def batch_positions(self, after: int, upto: int) -> dict[str, list[Position]]:
        queries = sql.positions_sql(sql.BATCHES)
        return await self._run(self._positions, queries, (after, upto))

    def _positions(
        self, queries: tuple[tuple[str, str], ...], parameters: tuple[object, ...]
    ) -> dict[str, list[Position]]:
        con = self.con
        return {
            name: [
                Position(str(a), str(b), str(c))
                for a, b, c in con.execute(query, list(parameters)).fetchall()
            ]
            for name, query in queries
        }

    async def settlement(self, from_date: dt.date) -> list[SettlementLine]:
        return await self._run(self._settlement_lines, from_date)

    def _settlement_lines(self, from_date: dt.date) -> list[SettlementLine]:
        query = sql.settlement_sql("c.value_date >= $1", "h.value_date >= $1")
        rows = self.con.execute(query, [from_date]).fetchall()
        return sql.settlement_lines(rows, self._settlement.minor_units)

    async def settlement_sums(self, from_date: dt.date) -> list[sql.SettlementSum]:
        query = sql.settlement_sql("c.value_date >= $1", "h.value_date >= $1")
        return await self._run(self._sums, query, from_date)

    async def batch_settlement_sums(self, after: int, upto: int) -> list[sql.SettlementSum]:
        query = sql.settlement_sql(f"c.{sql.BATCHES}", f"h.{sql.BATCHES}")
        return await self._run(self._sums, query, after, upto)

    def _sums(self, query: str, *parameters: object) -> list[sql.SettlementSum]:
        return sql.settlement_sums(self.con.execute(query, list(parameters)).fetchall())

    async def revalue(self, today: dt.date) -> list[dt.date]:
        return await self._run(self._revalue, today)

    def _revalue(self, today: dt.date) -> list[dt.date]:
        con = self.con
        changed: set[dt.date] = set()
        # the trades moved are stored again, as a batch of their own: a
        # day's manifest older than it has its files written again at the
        # next start, should this process stop before it writes them
        self._ingest += 1
        ingest = self._ingest
        con.execute("BEGIN TRANSACTION")
        try:
            for table in sql.VALUED_TABLES:
                rows = con.execute(
                    f"SELECT DISTINCT symbol, trade_date, value_date FROM {table} "
                    "WHERE trade_date >= $1",
                    [today - sql.REVALUE_WINDOW],
                ).fetchall()
                for symbol, trade_date, stored, new in sql.revalued(
                    rows, self._settlement.value_date, today, self._settlement.terms
                ):
                    row = con.execute(
                        sql.revalue_sql(table),
                        [symbol, trade_date, stored, new]
                        + ([ingest] if table in sql.REBATCHED else []),
                    ).fetchone()
                    if row and row[0]:
                        changed.add(trade_date)
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        return sorted(changed)

    async def counts(self) -> dict[str, int]:
        return await self._run(self._counts)

    def _counts(self) -> dict[str, int]:
        con = self.con
        out = {}
        for table in ("client_trades", "house_trades", "lp_trades", "pending", "breaks"):
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            out[table] = int(row[0]) if row else 0
        return out

    async def trading_days(self) -> dict[dt.date, int]:
        return await self._run(self._trading_days)

    def _trading_days(self) -> dict[dt.date, int]:
        rows = self.con.execute(sql.TRADING_DAYS).fetchall()
        return {r[0]: int(r[1] or 0) for r in rows}

    async def pin_day(self, day: dt.date, hold: Hold | None = None) -> PinnedDay:
        cursor = await self._run(self._export_cursor)
        pinned = _DuckDay(self, cursor, day)
        self._pinned.add(pinned)
        try:
            async with hold() if hold is not None else contextlib.nullcontext():
                await self._run(_snapshot, cursor)
        except BaseException:
            # closed in the ledger's thread, after the statement it may
            # still be running
            pinned._cursor = None
            self._pinned.discard(pinned)
            await self._run(cursor.close)
            raise
        return pinned

    def _export_cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the same database, with its own
        temporary tables, for a day's export."""
        cursor = self.con.cursor()
        try:
            _terms(cursor, self._settlement)
        except duckdb.Error:
            cursor.close()
            raise
        return cursor


def _snapshot(cursor: duckdb.DuckDBPyConnection) -> None:
    cursor.execute("BEGIN TRANSACTION")
    cursor.execute("SELECT count(*) FROM feed").fetchall()  # taken at the first read


class _DuckDay(PinnedDay):
    def __init__(self, ledger: DuckLedger, cursor: duckdb.DuckDBPyConnection, day: dt.date) -> None:
        self.day = day
        self._ledger = ledger
        self._cursor: duckdb.DuckDBPyConnection | None = cursor
        self._stop = threading.Event()

    async def write(self, folder: str) -> list[str]:
        cursor = self._cursor
        if cursor is None:
            raise LedgerError(f"the export of {self.day} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._ledger._exports, _export_day, cursor, self.day, folder, self._stop
            )
        except (duckdb.Error, OSError) as exc:  # the folder cannot be made or written
            raise LedgerError(f"cannot export {self.day} to {folder}: {exc}") from exc
        except asyncio.CancelledError:
            self.interrupt()  # the thread goes on with the statement otherwise
            raise

    def interrupt(self) -> None:
        """End the export: the statement it runs, and the ones it would run
        next (the export cancelled, the ledger closed)."""
        self._stop.set()
        if self._cursor is not None:
            self._cursor.interrupt()

    async def close(self) -> None:
        cursor, self._cursor = self._cursor, None
        self._ledger._pinned.discard(self)
        if cursor is not None:  # closed after the statement it may still run
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._ledger._exports, cursor.close)  # rolled back


def _terms(con: duckdb.DuckDBPyConnection, settlement: Settlement) -> None:
    """The connection's temporary tables of the instruments' currencies and
    the currencies' minor units, which the settlement's queries read."""
    con.execute("CREATE TEMP TABLE instruments (symbol VARCHAR, base VARCHAR, quote VARCHAR)")
    terms = settlement.terms
    if terms:
        con.execute(
            "INSERT INTO instruments SELECT unnest($1), unnest($2), unnest($3)",
            [list(terms), [t.base for t in terms.values()], [t.quote for t in terms.values()]],
        )
    con.execute(sql.CURRENCIES_TABLE)
    minor = settlement.minor_units
    con.execute(
        "INSERT INTO currencies SELECT unnest($1), unnest($2)",
        [list(minor), list(minor.values())],
    )


def _export_day(
    con: duckdb.DuckDBPyConnection, day: dt.date, folder: str, stop: threading.Event
) -> list[str]:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stamp = day_stamp(day)
    reports = {
        f"client-trades-{stamp}": (
            f"SELECT {sql.CLIENT_COLUMNS} FROM client_trades "
            f"WHERE trade_date = DATE '{day.isoformat()}' ORDER BY transact_time, exec_id"
        ),
        f"lp-trades-{stamp}": (
            f"SELECT {sql.HOUSE_COLUMNS} FROM house_trades "
            f"WHERE trade_date = DATE '{day.isoformat()}' ORDER BY transact_time, report_id"
        ),
        f"settlement-{stamp}": sql.settlement_sql(
            f"c.trade_date = DATE '{day.isoformat()}'",
            f"h.trade_date = DATE '{day.isoformat()}'",
        ).replace("CAST(sum(amount) AS VARCHAR)", "sum(amount) AS amount"),
    }
    written = []
    for name, query in reports.items():
        for fmt, suffix in (("PARQUET", "parquet"), ("CSV, HEADER", "csv")):
            path = out / f"{name}.{suffix}"
            tmp = out / f".{name}.{suffix}.tmp"
            literal = str(tmp).replace("'", "''")  # a folder named with a quote
            if stop.is_set():
                raise LedgerError(f"the export of {day} was interrupted")
            con.execute(f"COPY ({query}) TO '{literal}' (FORMAT {fmt})")
            os.replace(tmp, path)
            written.append(str(path))
    return written
