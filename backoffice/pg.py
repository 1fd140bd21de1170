"""The ledger in PostgreSQL, over asyncpg.

One connection: the back office is the ledger's one writer, and the
temporary tables a run fills (``scope``, ``instruments``, the staging tables
of the writes) live in its session.  Calls take their turn on it.  A
connection the server dropped is replaced at the next call (and a call that
found it dropped is tried once more on the new one: every call is
idempotent); a server that cannot be reached is a :class:`LedgerError`.

Writes copy their rows into a staging table (binary COPY) and insert them
from there, skipping the rows already stored, in one transaction with the
feed's progress: a write that fails leaves nothing of itself behind.

Day exports are written by DuckDB: the day's rows are copied out of
PostgreSQL into an in-memory DuckDB ledger, which writes the same files,
with the same columns and types, as the DuckDB backend.  The copy reads a
snapshot (a repeatable-read transaction) on a connection of its own, beside
the writes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]
import duckdb

from backoffice import ledger as sql
from backoffice.duck import DuckLedger
from backoffice.ledger import (
    Break,
    Covers,
    Hold,
    Ledger,
    LedgerError,
    PinnedDay,
    Position,
    ReconRun,
    SettlementLine,
)
from backoffice.records import INTERNAL_MARKET, ClientTrade, HouseTrade, LpTrade
from backoffice.settlement import Settlement
from backoffice.statements import StatementChange
from config.redact import url_without_secrets

__all__ = ["PgLedger"]

T = TypeVar("T")

CONNECT_TIMEOUT: Final = 10.0

# The reconciliation's queries are short and many-columned: compiling them
# (PostgreSQL's JIT, on by default from version 12) costs more than it saves.
# The exports' CSV copies write dates as ISO whatever the server's default.
_SERVER_SETTINGS: Final = {
    "jit": "off",
    "datestyle": "ISO, YMD",
    "application_name": "fixgw-backoffice",
}

# What a failed call raises: the server's errors, a connection lost or
# refused (or left in a state the client cannot go on from), a value the
# database would not take.
_FAILURES: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    ValueError,
    InvalidOperation,
)

# A failure after which the connection is not to be used again.
_LOST: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

_DATE_INDEXES: Final = tuple(
    (
        "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
        f"AND indexname = '{table}_dates'",
        (
            f"CREATE INDEX IF NOT EXISTS {table}_dates ON {table} "
            "USING brin (trade_date, value_date)",
        ),
    )
    for table in sql.VALUED_TABLES
)
"""A block range index of each dated table's trade and value dates: the
treasury (value dates not passed), the revision of value dates at start
(the last three weeks' trades) and a day's export read the last days of a
ledger whatever its history.  Rows come in roughly in date order, so the
ranges stay narrow; such an index is a few pages per million rows and
costs a write next to nothing.  A ledger from before them has them built
at its next start, in one pass over each table.  (DuckDB's own min-max per
row group does the same for the embedded ledger.)"""
_INGEST_INDEXES: Final = tuple(
    (
        "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
        f"AND indexname = '{table}_ingest'",
        (f"CREATE INDEX IF NOT EXISTS {table}_ingest ON {table} (ingest)",),
    )
    for table in ("client_trades", "house_trades", "lp_trades")
)
"""An index of the ingest batches of the trades and statement lines: the
treasury's reads of the batches stored since its last look and an
incremental reconciliation's of the batches since the last run find their
rows without reading the table.  A B-tree: a block range index would
serve only once its ranges are summarised, which the server does long
after the rows come (its newest ranges, unsummarised, are read whole),
while a batch's rows are read at once.  Its key grows with each batch, so
it is added to at its right edge."""

_SESSION: Final = (
    "CREATE TEMP TABLE scope (rel VARCHAR, k VARCHAR)",
    sql.DUE_TABLE,
    "CREATE TEMP TABLE instruments (symbol VARCHAR, base VARCHAR, quote VARCHAR)",
    sql.CURRENCIES_TABLE,
    # the tables' columns, without their constraints: the rows come without
    # their ingest batch, which the insert from staging adds
    "CREATE TEMP TABLE stage_client ON COMMIT DELETE ROWS "
    "AS SELECT * FROM client_trades WITH NO DATA",
    "CREATE TEMP TABLE stage_house ON COMMIT DELETE ROWS "
    "AS SELECT * FROM house_trades WITH NO DATA",
    "CREATE TEMP TABLE stage_lp ON COMMIT DELETE ROWS AS SELECT * FROM lp_trades WITH NO DATA",
)


def _names(columns: str) -> tuple[str, ...]:
    """The columns a row carries: all of the list but the ingest batch."""
    return tuple(name for name in (c.strip() for c in columns.split(",")) if name != "ingest")


_CLIENT_NAMES: Final = _names(sql.CLIENT_COLUMNS)
_HOUSE_NAMES: Final = _names(sql.HOUSE_COLUMNS)
_LP_NAMES: Final = _names(sql.LP_COLUMNS)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or "no message"
    return f"{type(exc).__name__}: {text}"


def _decimal(text: str) -> Decimal:
    """A quantity or price; ValueError if it is not a finite number (as the
    DuckDB ledger refuses it)."""
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return number


class _Converter:
    """Records as rows of the values binary COPY takes (dates, times,
    decimals), in the order of the ledger's column lists
    (``CLIENT_COLUMNS``, ``HOUSE_COLUMNS``, ``LP_COLUMNS``) less ``ingest``.
    A write's rows are made in a thread: tens of milliseconds for a batch of
    the drop copy, which the event loop does not wait for."""

    def __init__(self, settlement: Settlement) -> None:
        self._value_date = settlement.value_date
        self._dates: dict[str, dt.date] = {}

    def date(self, text: str) -> dt.date:
        day = self._dates.get(text)
        if day is None:
            if len(self._dates) > 10_000:
                self._dates.clear()
            day = self._dates[text] = dt.date.fromisoformat(text)
        return day

    def value_date(self, symbol: str, trade_date: str) -> dt.date:
        return self.date(self._value_date(symbol, trade_date))

    def client(self, c: ClientTrade) -> tuple[object, ...]:
        return (
            c.exec_id,
            c.client,
            c.order_id,
            c.cl_ord_id,
            c.symbol,
            c.side,
            _decimal(c.qty),
            _decimal(c.price),
            c.market,
            dt.datetime.fromisoformat(c.time),
            self.date(c.trade_date),
            self.value_date(c.symbol, c.trade_date),
            c.seq,
            sql.x_key(c.symbol, c.time, c.price) if c.market == INTERNAL_MARKET else "",
        )

    def house(self, h: HouseTrade) -> tuple[object, ...]:
        return (
            h.report_id,
            h.lp,
            h.lp_exec_id,
            h.child_id,
            h.account,
            h.client_exec_id,
            h.symbol,
            h.side,
            _decimal(h.qty),
            _decimal(h.price),
            dt.datetime.fromisoformat(h.time),
            self.date(h.trade_date),
            self.value_date(h.symbol, h.trade_date),
            h.seq,
            sql.hl_key(h.lp, h.child_id, h.lp_exec_id),
        )

    def trades(
        self, clients: Sequence[ClientTrade], houses: Sequence[HouseTrade]
    ) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        """The rows of a write (a trade given twice is written once, as the
        DuckDB ledger writes it: the last given)."""
        return (
            [self.client(c) for c in {c.exec_id: c for c in clients}.values()],
            [self.house(h) for h in {h.report_id: h for h in houses}.values()],
        )

    def statements(
        self, changes: Sequence[StatementChange]
    ) -> list[tuple[StatementChange, list[tuple[object, ...]]]]:
        """Each change with its rows (a line given twice is written once)."""
        return [
            (
                change,
                [self.lp(r) for r in {(r.cl_ord_id, r.exec_id): r for r in change.rows}.values()],
            )
            for change in changes
        ]

    def lp(self, r: LpTrade) -> tuple[object, ...]:
        return (
            r.lp,
            r.exec_id,
            r.cl_ord_id,
            r.symbol,
            r.side,
            _decimal(r.qty),
            _decimal(r.price),
            dt.datetime.fromisoformat(r.time),
            self.date(r.trade_date),
            self.value_date(r.symbol, r.trade_date),
            r.source,
            sql.hl_key(r.lp, r.cl_ord_id, r.exec_id),
        )


class PgLedger(Ledger):
    """The ledger in the PostgreSQL database at ``url``
    (``postgresql://user[:password]@host[:port]/database``)."""

    def __init__(self, url: str, settlement: Settlement) -> None:
        self._dsn = url
        self.url = url_without_secrets(url)
        self._settlement = settlement
        self._convert = _Converter(settlement)
        self._con: Any = None
        # the big tables' rows, kept by the writes once counted (None: to
        # be counted again, at the next call)
        self._counted: dict[str, int] | None = None
        self._open = False
        self._lock = asyncio.Lock()
        self._ingest = 0
        self._pinned: set[_PgDay] = set()  # the days' exports, each on a connection of its own

    # -- the connection ----------------------------------------------------------------

    async def _connect_plain(self) -> Any:
        """A new connection to the ledger's database, as it comes."""
        try:
            return await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, server_settings=_SERVER_SETTINGS
            )
        except TimeoutError as exc:
            raise LedgerError(
                f"cannot connect to the ledger {self.url}: no answer from the server "
                f"within {CONNECT_TIMEOUT:g} s"
            ) from exc
        except (*_FAILURES, asyncpg.ClientConfigurationError) as exc:
            raise LedgerError(f"cannot connect to the ledger {self.url}: {_reason(exc)}") from exc

    async def _connect(self) -> Any:
        """A new connection with the session's temporary tables."""
        con = await self._connect_plain()
        try:
            async with con.transaction():
                for statement in sql.TABLES:
                    await con.execute(statement)
                for done, statements in (*sql.MIGRATIONS, *_DATE_INDEXES, *_INGEST_INDEXES):
                    if not await con.fetchval(done):
                        for statement in statements:
                            await con.execute(statement)
                for statement in _SESSION:
                    await con.execute(statement)
                terms = self._settlement.terms
                if terms:
                    await con.copy_records_to_table(
                        "instruments",
                        records=[(s, t.base, t.quote) for s, t in terms.items()],
                    )
                await con.copy_records_to_table(
                    "currencies", records=list(self._settlement.minor_units.items())
                )
        except _FAILURES as exc:
            await self._discard(con)
            raise LedgerError(f"cannot prepare the ledger {self.url}: {_reason(exc)}") from exc
        return con

    async def _discard(self, con: Any) -> None:
        if con is self._con:
            self._con = None
        if con is not None:
            await _close(con)

    async def _call(self, what: str, job: Callable[[Any], Awaitable[T]]) -> T:
        """``job`` on the connection, in its turn; a dropped connection is
        replaced, and a job that found it dropped is run once more."""
        async with self._lock:
            if not self._open:
                raise LedgerError("the ledger is not open")
            for attempt in (1, 2):
                con = self._con
                if con is None or con.is_closed():
                    await self._discard(con)
                    con = self._con = await self._connect()
                try:
                    return await job(con)
                except _FAILURES as exc:
                    lost = con.is_closed() or isinstance(exc, _LOST)
                    if lost:
                        await self._discard(con)
                    if not lost or attempt == 2:
                        raise LedgerError(f"the ledger {self.url}: {what}: {_reason(exc)}") from exc
            raise AssertionError("unreachable")

    def _next_ingest(self) -> int:
        """The next ingest batch id; taken in the connection's turn, so that
        batches are committed in the order of their ids (a run's watermark
        never passes a batch not committed yet)."""
        self._ingest += 1
        return self._ingest

    # -- open / close ----------------------------------------------------------------

    async def open(self) -> None:
        async with self._lock:
            con = await self._connect()
            try:
                ingest = await con.fetchval(
                    "SELECT max(m) FROM (SELECT max(ingest) AS m FROM client_trades "
                    "UNION ALL SELECT max(ingest) FROM house_trades "
                    "UNION ALL SELECT max(ingest) FROM lp_trades "
                    "UNION ALL SELECT max(watermark) FROM recon_state) AS m"
                )
            except _FAILURES as exc:
                await self._discard(con)
                raise LedgerError(f"cannot open the ledger {self.url}: {_reason(exc)}") from exc
            self._con = con
            self._ingest = int(ingest or 0)
            self._counted = None  # counted afresh after each opening
            self._open = True

    async def close(self) -> None:
        try:
            for pinned in list(self._pinned):
                await pinned.close()
        finally:
            async with self._lock:
                self._open = False
                await self._discard(self._con)

    # -- writes ----------------------------------------------------------------------

    async def last_seq(self, session: str) -> int:
        async def job(con: Any) -> int:
            value = await con.fetchval("SELECT last_seq FROM feed WHERE session = $1", session)
            return int(value or 0)

        return await self._call("reading the feed's progress", job)

    async def booked_on(self, bookings: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        wanted = list(bookings)

        async def job(con: Any) -> dict[tuple[str, str], str]:
            found: dict[tuple[str, str], str] = {}
            for child_id, exec_id in wanted:
                day = await con.fetchval(sql.BOOKED_ON, child_id, exec_id)
                if day is not None:
                    found[(child_id, exec_id)] = day.isoformat()
            return found

        return await self._call("reading the bookings restated", job)

    async def write(
        self,
        session: str,
        last_seq: int,
        clients: Sequence[ClientTrade],
        houses: Sequence[HouseTrade],
    ) -> int:
        try:
            client_rows, house_rows = await asyncio.to_thread(self._convert.trades, clients, houses)
            latest = sql.latest_time([*clients, *houses])
        except (ValueError, ArithmeticError) as exc:  # InvalidOperation, OverflowError
            raise LedgerError(f"the ledger {self.url}: writing trades: {_reason(exc)}") from exc

        async def job(con: Any) -> int:
            ingest = self._next_ingest()
            counted, self._counted = self._counted, None  # not known until it commits
            added = {"client_trades": 0, "house_trades": 0}
            async with con.transaction():
                if client_rows:
                    added["client_trades"] = await _copy_insert(
                        con, "client_trades", _CLIENT_NAMES, client_rows, ingest
                    )
                if house_rows:
                    added["house_trades"] = await _copy_insert(
                        con, "house_trades", _HOUSE_NAMES, house_rows, ingest
                    )
                await con.execute(sql.FEED_WRITE, session, last_seq, latest)
            self._counted = _added(counted, added)
            return ingest

        return await self._call("writing trades", job)

    async def apply_statements(self, changes: Sequence[StatementChange]) -> int:
        try:
            batches = await asyncio.to_thread(self._convert.statements, changes)
        except (ValueError, ArithmeticError) as exc:  # InvalidOperation, OverflowError
            raise LedgerError(f"the ledger {self.url}: writing statements: {_reason(exc)}") from exc

        async def job(con: Any) -> int:
            ingest = self._next_ingest()
            counted, self._counted = self._counted, None  # not known until it commits
            lines = 0  # lines added to lp_trades, less those removed
            differing: list[str] = []
            async with con.transaction():
                for change, rows in batches:
                    if change.replace:
                        await con.execute(sql.FILE_READ, change.source)
                        for statement in sql.statement_replace_sql():
                            status = await con.execute(statement, change.source)
                            if statement == sql.LINES_DELETE and _rows(status):
                                self.lines_removed_at = ingest
                                lines -= _rows(status)
                        if await con.fetchval(sql.HAS_REPEATS):
                            for statement in sql.statement_promote_sql():
                                status = await con.execute(
                                    statement, *([ingest] if "$1" in statement else [])
                                )
                                if statement == sql.LINES_PROMOTE:
                                    lines += _rows(status)
                    elif change.gone:
                        await con.execute(sql.FILE_GONE, change.source)
                        if await con.fetchval(sql.HAS_REPEATS):
                            for statement in sql.statement_gone_sql():
                                status = await con.execute(statement, change.source)
                                if statement == sql.LINES_HANDED_OVER and _rows(status):
                                    self.lines_removed_at = ingest
                                    lines -= _rows(status)
                            for statement in sql.statement_promote_sql():
                                status = await con.execute(
                                    statement, *([ingest] if "$1" in statement else [])
                                )
                                if statement == sql.LINES_PROMOTE:
                                    lines += _rows(status)
                    if rows:
                        await con.copy_records_to_table(
                            "stage_lp", records=rows, columns=list(_LP_NAMES)
                        )
                        stored = _rows(await con.execute(sql.STAGED_LINES_INSERT, ingest))
                        lines += stored
                        if stored < len(rows):
                            await con.execute(sql.STAGED_REPEATS_INSERT, ingest)
                            named = set()
                            if not change.replace:
                                found = await con.fetch(sql.STAGED_DIFFERING)
                                differing.extend(sql.differing_line(*row) for row in found)
                                named = {tuple(row) for row in found}
                            found = await con.fetch(sql.STAGED_DIFFERING_ELSEWHERE)
                            differing.extend(
                                sql.differing_elsewhere_line(*row)
                                for row in found
                                if tuple(row[:3]) not in named  # said of its own file
                            )
                        await con.execute("TRUNCATE stage_lp")
            self._counted = _added(counted, {"lp_trades": lines})
            self.differing_lines = differing
            return ingest

        return await self._call("writing statements", job)

    async def statement_files(self) -> list[str]:
        async def job(con: Any) -> list[str]:
            return [row[0] for row in await con.fetch(sql.STATEMENT_FILES)]

        return await self._call("reading the statement files", job)

    # -- reconciliation ----------------------------------------------------------------

    async def recon(
        self, full: bool, grace: float, now: dt.datetime, covers: Covers | None = None
    ) -> ReconRun:
        async def job(con: Any) -> ReconRun:
            upto = self._ingest
            async with con.transaction():
                watermark = int(
                    await con.fetchval("SELECT watermark FROM recon_state WHERE id = 1") or 0
                )
                for covered in sql.feeds_covered(covers, grace):
                    await con.execute(sql.FEED_COVERED, *covered)
                cover = sql.drop_copy_cover(
                    await con.fetchval(sql.covers_sql(grace)),
                    await con.fetch(sql.feeds_sql(grace)),
                    covers,
                )
                if not full:
                    names, untils = sql.due_covers(
                        cover, await con.fetch(sql.lp_covers_sql(grace)), covers
                    )
                    await con.execute("TRUNCATE due")
                    if names:
                        await con.execute(
                            "INSERT INTO due SELECT * FROM unnest($1::varchar[], $2::timestamp[])",
                            names,
                            untils,
                        )
                for statement in sql.scope_sql(full):
                    if statement == "DELETE FROM scope":
                        # leaves no dead rows (a temporary table is never vacuumed)
                        statement = "TRUNCATE scope"
                    if "$1" in statement:
                        await con.execute(statement, watermark)
                    else:
                        await con.execute(statement)
                await con.execute("ANALYZE scope")
                keys = int(await con.fetchval(sql.keys_sql(full)))
                hl = [tuple(r) for r in await con.fetch(sql.hl_sql(grace, full))]
                ch = [tuple(r) for r in await con.fetch(sql.ch_sql(full))]
                x = [tuple(r) for r in await con.fetch(sql.x_sql(full))]
                found, pending = sql.classify(hl, ch, x, cover, covers)
                if full:
                    old = await con.fetch(
                        "SELECT kind, rel, k, first_seen FROM breaks WHERE rel <> 'pos'"
                    )
                    await con.execute("DELETE FROM breaks WHERE rel <> 'pos'")
                    await con.execute("DELETE FROM pending")
                else:
                    in_scope = (
                        "EXISTS (SELECT 1 FROM scope s WHERE s.rel = {t}.rel AND s.k = {t}.k)"
                    )
                    old = await con.fetch(
                        "SELECT kind, rel, k, first_seen FROM breaks WHERE "
                        + in_scope.format(t="breaks")
                    )
                    await con.execute("DELETE FROM breaks WHERE " + in_scope.format(t="breaks"))
                    await con.execute("DELETE FROM pending WHERE " + in_scope.format(t="pending"))
                seen = {(r[0], r[1], r[2]): r[3] for r in old}
                await _insert_breaks(con, found, seen, now)
                if pending:
                    unique = sql.unique_pending(pending)
                    await con.execute(
                        "INSERT INTO pending (rel, k, waits, t) SELECT * FROM "
                        "unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::timestamp[]) "
                        "ON CONFLICT DO NOTHING",
                        *([p[i] for p in unique] for i in range(4)),
                    )
                await con.execute("DELETE FROM touched")
                await con.execute(
                    "INSERT INTO recon_state VALUES (1, $1) ON CONFLICT (id) DO UPDATE "
                    "SET watermark = excluded.watermark",
                    upto,
                )
            total = await con.fetchval("SELECT count(*) FROM breaks")
            waiting = await con.fetchval("SELECT count(*) FROM pending")
            return ReconRun(
                full=full, keys=keys, breaks=int(total), pending=int(waiting), upto=upto
            )

        return await self._call("reconciling", job)

    async def without_statements(self, lps: Sequence[str]) -> tuple[int, int]:
        async def job(con: Any) -> tuple[int, int]:
            removed = [0, 0]
            async with con.transaction():
                for lp in lps:
                    for i, statement in enumerate(sql.NO_STATEMENT_SQL):
                        removed[i] += _rows(await con.execute(statement, lp))
            return removed[0], removed[1]

        return await self._call("clearing the breaks of LPs without statements", job)

    async def set_position_breaks(self, breaks: Sequence[Break], now: dt.datetime) -> None:
        async def job(con: Any) -> None:
            async with con.transaction():
                old = await con.fetch(
                    "SELECT kind, rel, k, first_seen FROM breaks WHERE rel = 'pos'"
                )
                await con.execute("DELETE FROM breaks WHERE rel = 'pos'")
                seen = {(r[0], r[1], r[2]): r[3] for r in old}
                await _insert_breaks(con, [("pos", b) for b in breaks], seen, now)

        await self._call("writing position breaks", job)

    async def breaks(self) -> list[Break]:
        async def job(con: Any) -> list[Break]:
            rows = await con.fetch(
                "SELECT kind, records, k, ref, lp, client, symbol, ours, theirs, detail, "
                "first_seen FROM breaks"
            )
            # ordered here, by code points as DuckDB orders them, whatever the
            # database's collation
            rows.sort(key=lambda r: (r[10], r[0], r[2]))
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

        return await self._call("reading breaks", job)

    # -- reports -----------------------------------------------------------------------

    async def positions(self) -> dict[str, list[Position]]:
        return await self._positions(sql.POSITIONS, (), "reading positions")

    @property
    def last_ingest(self) -> int:
        return self._ingest

    async def batch_positions(self, after: int, upto: int) -> dict[str, list[Position]]:
        queries = sql.positions_sql(sql.BATCHES)
        return await self._positions(queries, (after, upto), "reading batches' positions")

    async def _positions(
        self, queries: tuple[tuple[str, str], ...], parameters: tuple[object, ...], what: str
    ) -> dict[str, list[Position]]:
        async def job(con: Any) -> dict[str, list[Position]]:
            out = {}
            for name, query in queries:
                rows = await con.fetch(query, *parameters)
                # by code points, as DuckDB orders them, whatever the collation
                listed = [Position(str(a), str(b), str(c)) for a, b, c in rows]
                out[name] = sorted(listed, key=lambda p: (p.holder, p.symbol))
            return out

        return await self._call(what, job)

    async def settlement(self, from_date: dt.date) -> list[SettlementLine]:
        query = sql.settlement_sql("c.value_date >= $1", "h.value_date >= $1")

        async def job(con: Any) -> list[SettlementLine]:
            rows = await con.fetch(query, from_date)
            rows.sort(key=sql.settlement_order)
            return sql.settlement_lines(rows, self._settlement.minor_units)

        return await self._call("reading settlement", job)

    async def settlement_sums(self, from_date: dt.date) -> list[sql.SettlementSum]:
        query = sql.settlement_sql("c.value_date >= $1", "h.value_date >= $1")

        async def job(con: Any) -> list[sql.SettlementSum]:
            return sql.settlement_sums(await con.fetch(query, from_date))

        return await self._call("reading settlement", job)

    async def batch_settlement_sums(self, after: int, upto: int) -> list[sql.SettlementSum]:
        query = sql.settlement_sql(f"c.{sql.BATCHES}", f"h.{sql.BATCHES}")

        async def job(con: Any) -> list[sql.SettlementSum]:
            return sql.settlement_sums(await con.fetch(query, after, upto))

        return await self._call("reading batches' settlement", job)

    async def revalue(self, today: dt.date) -> list[dt.date]:
        async def job(con: Any) -> list[dt.date]:
            changed: set[dt.date] = set()
            ingest = self._next_ingest()  # the trades moved, as a batch (DuckLedger._revalue)
            async with con.transaction():
                for table in sql.VALUED_TABLES:
                    rows = await con.fetch(
                        f"SELECT DISTINCT symbol, trade_date, value_date FROM {table} "
                        "WHERE trade_date >= $1",
                        today - sql.REVALUE_WINDOW,
                    )
                    for symbol, trade_date, stored, new in sql.revalued(
                        [tuple(r) for r in rows],
                        self._settlement.value_date,
                        today,
                        self._settlement.terms,
                    ):
                        status = await con.execute(
                            sql.revalue_sql(table),
                            symbol,
                            trade_date,
                            stored,
                            new,
                            *([ingest] if table in sql.REBATCHED else []),
                        )
                        if int(status.rsplit(" ", 1)[-1]):
                            changed.add(trade_date)
            return sorted(changed)

        return await self._call("revising value dates", job)

    async def counts(self) -> dict[str, int]:
        async def job(con: Any) -> dict[str, int]:
            counted = self._counted
            if counted is None:
                # counted once, then kept by the writes (a count of a
                # million rows takes a tenth of a second, and runs follow
                # each other every second)
                counted = {}
                for table in _KEPT_COUNTS:
                    counted[table] = int(await con.fetchval(f"SELECT count(*) FROM {table}"))
                self._counted = counted
            out = dict(counted)
            for table in ("pending", "breaks"):
                out[table] = int(await con.fetchval(f"SELECT count(*) FROM {table}"))
            return out

        return await self._call("counting", job)

    async def trading_days(self) -> dict[dt.date, int]:
        async def job(con: Any) -> dict[dt.date, int]:
            rows = await con.fetch(sql.TRADING_DAYS)
            return {r[0]: int(r[1] or 0) for r in rows}

        return await self._call("reading trading days", job)

    async def pin_day(self, day: dt.date, hold: Hold | None = None) -> PinnedDay:
        if not self._open:
            raise LedgerError("the ledger is not open")
        con = await self._connect_plain()
        try:
            await con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            async with hold() if hold is not None else contextlib.nullcontext():
                # the snapshot is taken at the transaction's first query
                await con.fetchval("SELECT count(*) FROM feed", timeout=CONNECT_TIMEOUT)
        except BaseException as exc:
            con.terminate()
            if isinstance(exc, (*_FAILURES, TimeoutError)):
                raise LedgerError(
                    f"the ledger {self.url}: pinning {day} for its export: {_reason(exc)}"
                ) from exc
            raise
        pinned = _PgDay(self, con, day)
        self._pinned.add(pinned)
        return pinned


class _PgDay(PinnedDay):
    """The day's rows are copied (CSV) out of the pinned snapshot into an
    in-memory DuckDB ledger, which writes the files."""

    def __init__(self, ledger: PgLedger, con: Any, day: dt.date) -> None:
        self.day = day
        self._ledger = ledger
        self._con: Any = con

    async def write(self, folder: str) -> list[str]:
        con, day, url = self._con, self.day, self._ledger.url
        if con is None:
            raise LedgerError(f"the export of {day} is closed")
        try:
            with tempfile.TemporaryDirectory(prefix="fixgw-export-") as work:
                copies = {
                    "client_trades": Path(work, "client_trades.csv"),
                    "house_trades": Path(work, "house_trades.csv"),
                }
                try:
                    for table, path in copies.items():
                        await con.copy_from_query(
                            f"SELECT * FROM {table} WHERE trade_date = $1",
                            day,
                            output=str(path),
                            format="csv",
                        )
                except _FAILURES as exc:
                    raise LedgerError(f"the ledger {url}: exporting {day}: {_reason(exc)}") from exc
                memory = DuckLedger(":memory:", self._ledger._settlement)
                try:
                    await memory.open()
                    await asyncio.to_thread(_load_csv, memory.con, copies)
                    return await memory.export_day(day, folder)
                finally:
                    await memory.close()
        except LedgerError:
            raise
        except (duckdb.Error, OSError) as exc:
            raise LedgerError(f"cannot export {day} from {url}: {exc}") from exc

    async def close(self) -> None:
        con, self._con = self._con, None
        self._ledger._pinned.discard(self)
        if con is not None:
            await _close(con)  # its transaction rolled back


async def _close(con: Any) -> None:
    """Close ``con``, or cut it off if the server does not answer."""
    if con.is_closed():
        return
    try:
        await asyncio.wait_for(con.close(), timeout=5)
    except _FAILURES:
        con.terminate()
    except asyncio.CancelledError:
        con.terminate()
        raise


async def _copy_insert(
    con: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[object, ...]], ingest: int
) -> int:
    """Copy ``rows`` into the table's staging table, then insert those not
    stored yet, of ingest batch ``ingest``; returns how many were."""
    stage = {"client_trades": "stage_client", "house_trades": "stage_house"}.get(table, "stage_lp")
    await con.copy_records_to_table(stage, records=rows, columns=list(columns))
    names = ", ".join(columns)
    status = await con.execute(
        f"INSERT INTO {table} ({names}, ingest) SELECT {names}, $1 FROM {stage} "
        "ON CONFLICT DO NOTHING",
        ingest,
    )
    return _rows(status)


_KEPT_COUNTS: Final = ("client_trades", "house_trades", "lp_trades")


def _added(counted: dict[str, int] | None, added: dict[str, int]) -> dict[str, int] | None:
    """The row counts kept, with a batch's committed; None while not known."""
    if counted is None:
        return None
    return {table: rows + added.get(table, 0) for table, rows in counted.items()}


def _rows(status: str) -> int:
    """The rows a command's status says it touched (``INSERT 0 5``: 5)."""
    return int(status.rsplit(" ", 1)[-1])


async def _insert_breaks(
    con: Any,
    found: Sequence[tuple[str, Break]],
    seen: dict[tuple[str, str, str], dt.datetime],
    now: dt.datetime,
) -> None:
    if not found:
        return
    await con.execute(
        "INSERT INTO breaks SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], "
        "$4::varchar[], $5::varchar[], $6::varchar[], $7::varchar[], $8::varchar[], "
        "$9::varchar[], $10::varchar[], $11::varchar[], $12::timestamp[]) "
        "ON CONFLICT DO NOTHING",
        *sql.break_columns(found, seen, now),
    )


def _load_csv(con: duckdb.DuckDBPyConnection, copies: dict[str, Path]) -> None:
    """Fill the tables of ``con`` from PostgreSQL's CSV copies of them."""
    for table, path in copies.items():
        types = con.execute(f"DESCRIBE {table}").fetchall()
        columns = ", ".join(f"'{name}': '{kind}'" for name, kind, *_ in types)
        literal = str(path).replace("'", "''")
        con.execute(
            f"INSERT INTO {table} SELECT * FROM read_csv('{literal}', header = false, "
            f"auto_detect = false, columns = {{{columns}}}, delim = ',', quote = '\"', "
            "escape = '\"', allow_quoted_nulls = false)"
        )
        os.remove(path)
