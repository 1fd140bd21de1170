"""The ledger: every trade of record, and the reconciliation over it.

:class:`Ledger` is the interface a backend implements (one class per
database: :mod:`backoffice.duck` for DuckDB, :mod:`backoffice.pg` for
PostgreSQL).  The SQL here is written once for both: tables, the
reconciliation queries and the reports.

Reconciliation compares three records (see :mod:`backoffice.records`) in
three relations, each keyed so that its two sides meet:

* ``hl``: the house's bookings of an LP fill against the LP's statement line
  of it (key: LP and the LP's ExecID; a fill split between a client and the
  house is summed);
* ``ch``: a client's fill against the house's booking of the same lots (key:
  the client's ExecID, which the booking carries);
* ``x``: the two clients' fills of an internal cross (key: symbol, time and
  price; bought and sold must be equal).

A record whose counterpart has not come is *pending* until its counterpart
is overdue: when the other record has moved ``grace`` past it (the LP's
statement has lines later than the house's fill by the grace, or the drop
copy has trades later than the LP's line by the grace).  Then it is a break.
A run looks at the keys touched since the last run and at those pending
that have become due (the record each waits for has moved past it: a key
pending on the drop copy is not looked at again while the drop copy is
behind it); a full run looks at every key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Context, Decimal
from typing import Any, Final, Literal

import msgspec

from backoffice.records import HOUSE_ACCOUNT, INTERNAL_MARKET, ClientTrade, HouseTrade
from backoffice.settlement import LEDGER_DECIMALS
from backoffice.statements import StatementChange

__all__ = [
    "BREAK_KINDS",
    "Break",
    "Covers",
    "Ledger",
    "LedgerError",
    "LedgerLost",
    "Position",
    "ReconRun",
    "SettlementLine",
]

BreakKind = Literal[
    "missing_at_lp",
    "missing_in_house",
    "qty_mismatch",
    "price_mismatch",
    "side_mismatch",
    "symbol_mismatch",
    "uncovered_client_fill",
    "unreported_house_fill",
    "unpaired_cross",
    "client_position_mismatch",
    "lp_position_mismatch",
]
BREAK_KINDS: Final[tuple[str, ...]] = BreakKind.__args__  # type: ignore[attr-defined]


class LedgerError(Exception):
    """The ledger cannot be opened or written; the message names why."""


class LedgerLost(LedgerError):
    """The ledger's ``file`` was deleted or replaced while open: what would
    be written to it is lost at the next start, so nothing is tried again;
    the process stops, and started again it rebuilds the ledger from the
    drop copy."""

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


class Break(msgspec.Struct, frozen=True, kw_only=True):
    """One reconciliation break.  ``records`` names the two records that
    disagree (``house/lp``, ``client/house``, ``client/client`` for a cross,
    ``gateway/ledger`` for a position); ``ref`` the trade (an ExecID) or the
    position; ``ours`` and ``theirs`` the two values where one differs."""

    kind: str
    records: str
    key: str
    ref: str
    lp: str = ""
    client: str = ""
    symbol: str = ""
    ours: str = ""
    theirs: str = ""
    detail: str = ""
    first_seen: dt.datetime | None = None


class Position(msgspec.Struct, frozen=True):
    holder: str
    symbol: str
    qty: str


class SettlementLine(msgspec.Struct, frozen=True):
    counterparty: str
    kind: str  # "client" or "lp"
    currency: str
    value_date: dt.date
    amount: str


def settlement_lines(
    rows: Iterable[Sequence[Any]], minor_units: Mapping[str, int]
) -> list[SettlementLine]:
    """The rows of :func:`settlement_sql` as lines, each amount written with
    its currency's minor units (``1125.60`` USD, ``-150506`` JPY; a code
    with none known as the ledger keeps it)."""
    out = []
    for counterparty, kind, currency, value_date, amount in rows:
        text = str(amount)
        minor = minor_units.get(currency)
        if minor is not None:
            text = str(Decimal(text).quantize(_UNITS[minor], context=_WIDE))
        out.append(SettlementLine(str(counterparty), str(kind), str(currency), value_date, text))
    return out


SettlementSum = tuple[str, str, str, dt.date, Decimal]
"""A row of :func:`settlement_sql` read: counterparty, kind (``client`` or
``lp``), currency, value date, and the net amount (the sum of its legs,
each rounded to its currency's minor units)."""


def settlement_sums(rows: Iterable[Sequence[Any]]) -> list[SettlementSum]:
    """The rows of :func:`settlement_sql` with their amounts as decimals."""
    return [
        (str(counterparty), str(kind), str(currency), value_date, Decimal(str(amount)))
        for counterparty, kind, currency, value_date, amount in rows
    ]


class SettlementBook:
    """The net amounts to settle per counterparty, kind, currency and value
    date, brought up to the ledger's last batch when looked at: the sums of
    the batches stored since (their legs rounded one by one, as the
    ledger's query rounds them) are added to those the book holds, so it
    holds what :func:`settlement_sql` would sum over the ledger, to the
    last digit, without reading every trade again.  The back office is the
    ledger's one writer (docs/backoffice.md): no row comes but in a batch."""

    def __init__(self, sums: Iterable[SettlementSum] = (), upto: int = 0) -> None:
        self._sums: dict[tuple[str, str, str, dt.date], Decimal] = {}
        self.upto = upto
        """The last ingest batch the book holds (and every one before)."""
        self.add(sums)

    def add(self, sums: Iterable[SettlementSum]) -> None:
        held = self._sums
        for counterparty, kind, currency, value_date, amount in sums:
            key = (counterparty, kind, currency, value_date)
            before = held.get(key)
            held[key] = amount if before is None else _WIDE.add(before, amount)

    def lines(self, from_date: dt.date, minor_units: Mapping[str, int]) -> list[SettlementLine]:
        """The lines from ``from_date`` on, ordered as :func:`settlement_sql`
        orders them (kind, counterparty, value date, currency), by the
        code points of the texts (a database's collation may order them
        otherwise); the amounts of earlier value dates, settled, are let
        go of (``from_date`` never goes back)."""
        held = self._sums
        for key in [k for k in held if k[3] < from_date]:
            del held[key]
        keys = sorted(held, key=settlement_order)
        rows = ((*key, format(held[key], "f")) for key in keys)
        return settlement_lines(rows, minor_units)


class PositionBook:
    """The positions of :meth:`Ledger.positions`, brought up as the
    settlement's are (:class:`SettlementBook`).  A statement file read
    whole may take lines away: the book is then read whole again."""

    def __init__(self, positions: Mapping[str, Iterable[Position]], upto: int = 0) -> None:
        self._held: dict[str, dict[tuple[str, str], Decimal]] = {}
        self.upto = upto
        """The last ingest batch the book holds (and every one before)."""
        self.add(positions)

    def add(self, positions: Mapping[str, Iterable[Position]]) -> None:
        for kind, rows in positions.items():
            held = self._held.setdefault(kind, {})
            for p in rows:
                key = (p.holder, p.symbol)
                qty = Decimal(p.qty)
                before = held.get(key)
                held[key] = qty if before is None else _WIDE.add(before, qty)

    def positions(self) -> dict[str, list[Position]]:
        """As :meth:`Ledger.positions` gives them, each kind by holder and
        symbol (by the code points of the texts, as for the settlement)."""
        return {
            kind: [Position(h, s, format(held[(h, s)], "f")) for h, s in sorted(held)]
            for kind, held in self._held.items()
        }


class Covers(msgspec.Struct, frozen=True, kw_only=True):
    """How far each record is known to be complete, when the caller knows
    better than the records' latest times: ``feed``, the drop copy (logged
    on with nothing waiting: up to now less the grace); ``feeds``, each
    drop copy followed, by its session (logged on with nothing waiting: now
    less the grace; None: as far as its latest trade less the grace), the
    drop copy as a whole as far as the least of them; ``lps``, each LP's
    statement (written as it trades: now less the grace; None: the LP sends
    no statement, so nothing is missing from one; an LP left out: its latest
    line less the grace, and until it has one, its house fills wait)."""

    feed: dt.datetime | None = None
    feeds: dict[str, dt.datetime | None] = {}
    lps: dict[str, dt.datetime | None] = {}


class ReconRun(msgspec.Struct, frozen=True):
    full: bool
    keys: int
    breaks: int
    pending: int
    upto: int  # the ingest batch the run covered


def _ms(seconds: float) -> str:
    return f"INTERVAL '{round(seconds * 1000)} milliseconds'"


# -- schema -------------------------------------------------------------------------

# the columns of an LP's statement line, as stored (lp_trades) and as kept
# for a line another file of the LP repeats (lp_repeats)
_LP_LINE: Final = (
    "lp VARCHAR NOT NULL, exec_id VARCHAR NOT NULL, cl_ord_id VARCHAR NOT NULL, "
    "symbol VARCHAR NOT NULL, side SMALLINT NOT NULL, qty DECIMAL(18, 8) NOT NULL, "
    "price DECIMAL(18, 8) NOT NULL, exec_time TIMESTAMP NOT NULL, trade_date DATE NOT NULL, "
    "value_date DATE NOT NULL, source VARCHAR NOT NULL, ingest BIGINT NOT NULL, "
    "hl_key VARCHAR NOT NULL"
)

TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS client_trades (
        exec_id VARCHAR PRIMARY KEY,
        client VARCHAR NOT NULL,
        order_id VARCHAR NOT NULL,
        cl_ord_id VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        side SMALLINT NOT NULL,
        qty DECIMAL(18, 8) NOT NULL,
        price DECIMAL(18, 8) NOT NULL,
        market VARCHAR NOT NULL,
        transact_time TIMESTAMP NOT NULL,
        trade_date DATE NOT NULL,
        value_date DATE NOT NULL,
        seq BIGINT NOT NULL,
        ingest BIGINT NOT NULL,
        x_key VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS house_trades (
        report_id VARCHAR PRIMARY KEY,
        lp VARCHAR NOT NULL,
        lp_exec_id VARCHAR NOT NULL,
        child_id VARCHAR NOT NULL,
        account VARCHAR NOT NULL,
        client_exec_id VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        side SMALLINT NOT NULL,
        qty DECIMAL(18, 8) NOT NULL,
        price DECIMAL(18, 8) NOT NULL,
        transact_time TIMESTAMP NOT NULL,
        trade_date DATE NOT NULL,
        value_date DATE NOT NULL,
        seq BIGINT NOT NULL,
        ingest BIGINT NOT NULL,
        hl_key VARCHAR NOT NULL)""",
    f"CREATE TABLE IF NOT EXISTS lp_trades ({_LP_LINE}, PRIMARY KEY (lp, cl_ord_id, exec_id))",
    # a statement line whose key a line of another file already stands
    # for in lp_trades (the same execution on two files of one LP): kept to
    # stand for it when that file is corrected without it
    f"CREATE TABLE IF NOT EXISTS lp_repeats ({_LP_LINE}, "
    "PRIMARY KEY (lp, cl_ord_id, exec_id, source))",
    # a drop copy's progress: the last MsgSeqNum stored, and the latest
    # time of a trade it delivered
    """CREATE TABLE IF NOT EXISTS feed (
        session VARCHAR PRIMARY KEY,
        last_seq BIGINT NOT NULL,
        latest TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS breaks (
        kind VARCHAR NOT NULL,
        rel VARCHAR NOT NULL,
        k VARCHAR NOT NULL,
        records VARCHAR NOT NULL,
        ref VARCHAR NOT NULL,
        lp VARCHAR NOT NULL,
        client VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        ours VARCHAR NOT NULL,
        theirs VARCHAR NOT NULL,
        detail VARCHAR NOT NULL,
        first_seen TIMESTAMP NOT NULL,
        PRIMARY KEY (kind, rel, k))""",
    # a key without its counterpart: ``waits`` names the record whose cover
    # must pass ``t`` before it is looked at again ('' the drop copy, else
    # the LP of the statement)
    """CREATE TABLE IF NOT EXISTS pending (
        rel VARCHAR NOT NULL,
        k VARCHAR NOT NULL,
        waits VARCHAR NOT NULL DEFAULT '',
        t TIMESTAMP,
        PRIMARY KEY (rel, k))""",
    """CREATE TABLE IF NOT EXISTS touched (
        rel VARCHAR NOT NULL,
        k VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS recon_state (
        id INTEGER PRIMARY KEY,
        watermark BIGINT NOT NULL)""",
    # the statement files read whole and not taken out of the folder since:
    # one missing from the folder at a start was taken out while the back
    # office was stopped
    "CREATE TABLE IF NOT EXISTS statement_files (source VARCHAR PRIMARY KEY)",
)

MIGRATIONS: Final = (
    # (a query answering 0 while the change is to be made, its statements),
    # run at open after TABLES; the query first, so that an up-to-date
    # ledger takes no lock on the tables
    (
        # a ledger from before the pending keys' times: its pending keys (t
        # NULL) are looked at in the next run, which writes them again with both
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'pending' AND column_name = 't'",
        (
            "ALTER TABLE pending ADD COLUMN IF NOT EXISTS waits VARCHAR DEFAULT ''",
            "ALTER TABLE pending ADD COLUMN IF NOT EXISTS t TIMESTAMP",
        ),
    ),
    (
        # a ledger from before each drop copy's latest trade time: known
        # from its next batch with a trade (or once it is caught up)
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'feed' AND column_name = 'latest'",
        ("ALTER TABLE feed ADD COLUMN IF NOT EXISTS latest TIMESTAMP",),
    ),
)

FEED_WRITE: Final = (
    "INSERT INTO feed (session, last_seq, latest) VALUES ($1, $2, $3) "
    "ON CONFLICT (session) DO UPDATE SET last_seq = greatest(feed.last_seq, excluded.last_seq), "
    "latest = greatest(feed.latest, excluded.latest)"
)
"""A drop copy's progress, written with the trades of a batch (``$3``:
the latest time of a trade in it, NULL when it has none)."""


FEED_COVERED: Final = (
    "INSERT INTO feed (session, last_seq, latest) VALUES ($1, 0, $2) "
    "ON CONFLICT (session) DO UPDATE SET latest = greatest(feed.latest, excluded.latest)"
)
"""A drop copy (``$1``) known complete up to ``$2`` less the grace (caught
up), kept as if it had delivered a trade at ``$2`` (:func:`feeds_covered`)."""


def feeds_covered(covers: Covers | None, grace: float) -> list[tuple[str, dt.datetime]]:
    """The rows of :data:`FEED_COVERED` a run writes: each drop copy the
    caller knows complete up to a time.  What it had delivered by then
    stays all it had once it is away (a gateway restarting), so a run made
    then, a full one, finds the breaks the runs made while it was caught
    up found, instead of taking them back to pending."""
    if covers is None:
        return []
    after = dt.timedelta(seconds=grace)
    return [(session, t + after) for session, t in covers.feeds.items() if t is not None]


def latest_time(trades: Sequence[ClientTrade | HouseTrade]) -> dt.datetime | None:
    """The latest time of the trades of a batch (None: no trade)."""
    if not trades:
        return None
    return dt.datetime.fromisoformat(max(t.time for t in trades))


CLIENT_COLUMNS: Final = (
    "exec_id, client, order_id, cl_ord_id, symbol, side, qty, price, market, "
    "transact_time, trade_date, value_date, seq, x_key, ingest"
)
HOUSE_COLUMNS: Final = (
    "report_id, lp, lp_exec_id, child_id, account, client_exec_id, symbol, side, qty, "
    "price, transact_time, trade_date, value_date, seq, hl_key, ingest"
)
LP_COLUMNS: Final = (
    "lp, exec_id, cl_ord_id, symbol, side, qty, price, exec_time, trade_date, value_date, "
    "source, hl_key, ingest"
)


_LP_NAMES: Final = LP_COLUMNS.replace(", ingest", "")
_SAME_LINE: Final = "t.lp = {r}.lp AND t.cl_ord_id = {r}.cl_ord_id AND t.exec_id = {r}.exec_id"


LINES_DELETE: Final = "DELETE FROM lp_trades WHERE source = $1"
"""The last of :func:`statement_replace_sql`: the lines a file had."""


def statement_replace_sql() -> list[str]:
    """Statements removing what was read of one statement file (``$1``)
    before its new reading is stored: its keys are looked at again in the
    next run, and so are the fills of its LP found missing from its
    statement: the lines it had may have been the latest of the LP's, which
    an end-of-day statement is complete up to, so that without them it may
    no longer reach those fills.  :func:`statement_promote_sql` follows them."""
    return [
        "INSERT INTO touched SELECT rel, k FROM breaks WHERE rel = 'hl' "
        "AND kind = 'missing_at_lp' AND lp IN (SELECT lp FROM lp_trades WHERE source = $1)",
        "INSERT INTO touched SELECT 'hl', hl_key FROM lp_trades WHERE source = $1",
        "DELETE FROM lp_repeats WHERE source = $1",
        LINES_DELETE,
    ]


LINES_PROMOTE: Final = (
    f"INSERT INTO lp_trades ({_LP_NAMES}, ingest) SELECT {_LP_NAMES}, $1 FROM lp_repeats r "
    f"WHERE NOT EXISTS (SELECT 1 FROM lp_trades t WHERE {_SAME_LINE.format(r='r')}) "
    "AND r.source = (SELECT min(o.source) FROM lp_repeats o WHERE o.lp = r.lp "
    "AND o.cl_ord_id = r.cl_ord_id AND o.exec_id = r.exec_id)"
)
"""The first of :func:`statement_promote_sql`: the lines it adds."""


LINES_HANDED_OVER: Final = (
    "DELETE FROM lp_trades WHERE source = $1 AND EXISTS (SELECT 1 FROM lp_repeats r "
    "WHERE r.lp = lp_trades.lp AND r.cl_ord_id = lp_trades.cl_ord_id "
    "AND r.exec_id = lp_trades.exec_id AND r.source <> $1)"
)
"""The last of :func:`statement_gone_sql`: the lines it hands over."""


def statement_gone_sql() -> list[str]:
    """Statements handing the lines of one statement file taken out of the
    folder (``$1``) that a line of another file of its LP repeats
    (``lp_repeats``) over to that file; the file's other lines stay, as an
    archived statement's do.  :func:`statement_promote_sql` follows them."""
    return [
        "INSERT INTO touched SELECT 'hl', t.hl_key FROM lp_trades t WHERE t.source = $1 "
        "AND EXISTS (SELECT 1 FROM lp_repeats r WHERE "
        f"{_SAME_LINE.format(r='r')} AND r.source <> $1)",
        LINES_HANDED_OVER,
    ]


def statement_promote_sql() -> list[str]:
    """Statements making a line another file shares (``lp_repeats``) stand
    for a key no line in ``lp_trades`` stands for any more (its file was
    corrected without it), as ingest batch ``$1``."""
    return [
        LINES_PROMOTE,
        "DELETE FROM lp_repeats WHERE EXISTS (SELECT 1 FROM lp_trades t WHERE "
        f"{_SAME_LINE.format(r='lp_repeats')} AND t.source = lp_repeats.source)",
    ]


STAGED_LINES_INSERT: Final = (
    f"INSERT INTO lp_trades ({_LP_NAMES}, ingest) SELECT {_LP_NAMES}, $1 FROM stage_lp "
    "ON CONFLICT DO NOTHING"
)
"""Store the lines of ``stage_lp`` as ingest batch ``$1``; a line stored
already is left as it is (:data:`STAGED_REPEATS_INSERT` then, when some
were)."""

STAGED_REPEATS_INSERT: Final = (
    f"INSERT INTO lp_repeats ({_LP_NAMES}, ingest) SELECT {_LP_NAMES}, $1 FROM stage_lp s "
    f"WHERE EXISTS (SELECT 1 FROM lp_trades t WHERE {_SAME_LINE.format(r='s')} "
    "AND t.source <> s.source) ON CONFLICT DO NOTHING"
)
"""Keep the lines of ``stage_lp`` that a line of another file stands for
(one read again from its own file is stored once)."""

_DIFFERING_FROM: Final = (
    "SELECT s.source, s.cl_ord_id, s.exec_id FROM stage_lp s JOIN {table} t ON "
    f"{_SAME_LINE.format(r='s')} AND t.source = s.source "
    "WHERE t.symbol <> s.symbol OR t.side <> s.side OR t.qty <> s.qty "
    "OR t.price <> s.price OR t.exec_time <> s.exec_time"
)

STAGED_DIFFERING: Final = (
    f"{_DIFFERING_FROM.format(table='lp_trades')} UNION "
    f"{_DIFFERING_FROM.format(table='lp_repeats')} ORDER BY 2, 3"
)
"""The lines of ``stage_lp``, appended to their file, that repeat an
execution an earlier line of the same file stored with other values (the
stored line stands, as on a whole read of the file): in ``lp_trades``, or
in ``lp_repeats`` when a line of another file stands for it."""


def differing_line(source: str, cl_ord_id: str, exec_id: str) -> str:
    """How a line of :data:`STAGED_DIFFERING` is named."""
    return (
        f"{source}: ExecID {exec_id!r} of order {cl_ord_id!r} again, in lines appended, "
        "with other values than the line stored: the stored line stands"
    )


STAGED_DIFFERING_ELSEWHERE: Final = (
    "SELECT s.source, s.cl_ord_id, s.exec_id, t.source FROM stage_lp s JOIN lp_trades t ON "
    f"{_SAME_LINE.format(r='s')} AND t.source <> s.source "
    "WHERE t.symbol <> s.symbol OR t.side <> s.side OR t.qty <> s.qty "
    "OR t.price <> s.price OR t.exec_time <> s.exec_time ORDER BY 2, 3"
)
"""The lines of ``stage_lp`` that repeat an execution a line of another
file of the LP stored with other values (a statement issued again with
the execution changed): not one execution twice, and named; the line
stored stands until its own file goes."""


def differing_elsewhere_line(source: str, cl_ord_id: str, exec_id: str, other: str) -> str:
    """How a line of :data:`STAGED_DIFFERING_ELSEWHERE` is named."""
    return (
        f"{source}: ExecID {exec_id!r} of order {cl_ord_id!r} is on {other} too, with other "
        f"values: the line of {other} stands (take the file that is wrong out of the folder)"
    )


FILE_READ: Final = "INSERT INTO statement_files (source) VALUES ($1) ON CONFLICT DO NOTHING"
"""A statement file read whole (``$1``): in the folder until :data:`FILE_GONE`."""

FILE_GONE: Final = "DELETE FROM statement_files WHERE source = $1"
"""A statement file (``$1``) taken out of the folder."""

STATEMENT_FILES: Final = "SELECT source FROM statement_files ORDER BY source"

HAS_REPEATS: Final = "SELECT count(*) FROM (SELECT 1 FROM lp_repeats LIMIT 1) AS r"


NO_STATEMENT_SQL: Final = (
    "DELETE FROM breaks WHERE rel = 'hl' AND kind = 'missing_at_lp' AND lp = $1",
    "DELETE FROM pending WHERE rel = 'hl' AND waits = $1",
)
"""What an LP that sends no statement (``$1``) has no more: its fills found
missing from its statement, and those waiting for it (:func:`classify`
finds neither of an LP whose cover is None).  Those of an LP declared so
since they were found are never looked at again by an incremental run:
the first a break, not in its scope; the second never due."""


def hl_key(lp: str, order_id: str, exec_id: str) -> str:
    """The key of the house/LP relation: the LP, the order the house gave it
    (the gateway's child order id, unique across runs) and the LP's ExecID
    (an LP may start its ExecIDs again each day or run)."""
    return f"{lp}|{order_id}|{exec_id}"


def x_key(symbol: str, time: str, price: str) -> str:
    """The key of an internal cross: symbol, time and price as the drop copy wrote them."""
    return f"{symbol}|{time}|{price}"


def scope_sql(full: bool) -> list[str]:
    """Statements filling the temporary table ``scope (rel, k)`` with the
    keys a run looks at: every key in a full run; otherwise those of rows
    ingested after the watermark (parameter ``$1``), the keys left pending
    and those touched by a replaced statement."""
    if full:
        # a full run reads every row and needs no list of keys
        return ["DELETE FROM scope"]
    since = "ingest > $1"
    cross = f"market = '{INTERNAL_MARKET}'"
    statements = [
        "DELETE FROM scope",
        f"INSERT INTO scope SELECT DISTINCT 'hl', hl_key FROM house_trades WHERE {since}",
        f"INSERT INTO scope SELECT DISTINCT 'hl', hl_key FROM lp_trades WHERE {since}",
        f"INSERT INTO scope SELECT DISTINCT 'ch', exec_id FROM client_trades "
        f"WHERE {since} AND NOT {cross}",
        f"INSERT INTO scope SELECT DISTINCT 'ch', client_exec_id FROM house_trades "
        f"WHERE {since} AND client_exec_id <> ''",
        f"INSERT INTO scope SELECT DISTINCT 'x', x_key FROM client_trades "
        f"WHERE {since} AND {cross}",
    ]
    statements += [
        # pending keys whose cover has passed them (``due``: one row per
        # record, filled by the run from :func:`due_covers`)
        "INSERT INTO scope SELECT p.rel, p.k FROM pending p "
        "LEFT JOIN due d ON d.waits = p.waits WHERE p.t IS NULL OR p.t < d.until",
        "INSERT INTO scope SELECT rel, k FROM touched",
    ]
    return statements


DUE_TABLE: Final = "CREATE TEMP TABLE due (waits VARCHAR, until TIMESTAMP)"
"""The covers a run compares pending keys with (a temporary table of the
run's connection)."""


def lp_covers_sql(grace: float) -> str:
    """Rows (LP, how far its statement has come less the grace)."""
    return f"SELECT lp, max(exec_time) - {_ms(grace)} FROM lp_trades GROUP BY lp"


def feed_cover(cover: dt.datetime | None, covers: Covers | None) -> dt.datetime | None:
    """How far the drop copy has come: ``cover`` from the records
    (:func:`covers_sql`), unless ``covers`` knows better."""
    known = covers.feed if covers is not None else None
    if known is not None and (cover is None or known > cover):
        return known
    return cover


def feeds_sql(grace: float) -> str:
    """Rows (drop-copy session, its latest trade time less the grace)."""
    return f"SELECT session, latest - {_ms(grace)} FROM feed"


def drop_copy_cover(
    cover: dt.datetime | None, feed_rows: Sequence[Sequence[Any]], covers: Covers | None
) -> dt.datetime | None:
    """How far the drop copy has come, over every drop copy the caller
    follows (``covers.feeds``): the least of how far each has come, by its
    own latest trade (``feed_rows``, :func:`feeds_sql`) or by what the
    caller knows of it; None while one of them is known to have come
    nowhere.  A caller naming none: ``cover``, the latest trade of all
    (:func:`covers_sql`)."""
    if covers is None or not covers.feeds:
        return cover
    latest: dict[str, Any] = {str(session): t for session, t in feed_rows}
    least: dt.datetime | None = None
    for session, known in covers.feeds.items():
        until = latest.get(session)
        if known is not None and (until is None or known > until):
            until = known
        if until is None:
            return None
        if least is None or until < least:
            least = until
    return least


def due_covers(
    cover: dt.datetime | None,
    lp_rows: Sequence[Sequence[Any]],
    covers: Covers | None,
) -> tuple[list[str], list[dt.datetime]]:
    """The rows of ``due`` (record, cover): the drop copy's ('') and each
    LP statement's, the caller's knowledge before the records'; a record
    with no cover is left out (nothing pending on it is due)."""
    until: dict[str, dt.datetime | None] = {str(lp): t for lp, t in lp_rows}
    if covers is not None:
        until.update(covers.lps)
    until[""] = feed_cover(cover, covers)
    names: list[str] = []
    times: list[dt.datetime] = []
    for name, t in until.items():
        if t is not None:
            names.append(name)
            times.append(t)
    return names, times


def keys_sql(full: bool) -> str:
    """One row: how many keys a run looks at (rows, in a full run)."""
    if not full:
        return "SELECT count(*) FROM scope"
    return (
        "SELECT (SELECT count(*) FROM house_trades) + (SELECT count(*) FROM lp_trades) "
        "+ (SELECT count(*) FROM client_trades)"
    )


def covers_sql(grace: float) -> str:
    """One row: how far the drop copy has come (the latest trade time less
    the grace)."""
    return (
        f"SELECT max(t) - {_ms(grace)} FROM ("
        "SELECT max(transact_time) AS t FROM client_trades "
        "UNION ALL SELECT max(transact_time) FROM house_trades) AS times"
    )


def _in_scope(full: bool, rel: str, column: str) -> str:
    """The condition keeping rows whose key is in scope (none in a full run)."""
    if full:
        return "TRUE"
    return f"{column} IN (SELECT k FROM scope WHERE rel = '{rel}')"


def hl_sql(grace: float, full: bool = False) -> str:
    """The house/LP keys in scope that do not agree (or are one-sided).
    The account of a fill split between a client and the house is the
    client's (not the least of the two, which a database's collation may
    make either)."""
    return f"""
    WITH h AS (
        SELECT hl_key AS k, min(lp) AS lp,
            min(lp_exec_id) AS exec_id, sum(qty) AS qty, min(price) AS price,
            max(price) AS price_hi, min(side) AS side, max(side) AS side_hi,
            min(symbol) AS symbol, min(transact_time) AS t,
            coalesce(min(CASE WHEN account <> '{HOUSE_ACCOUNT}' THEN account END),
                min(account)) AS account
        FROM house_trades
        WHERE {_in_scope(full, "hl", "hl_key")}
        GROUP BY hl_key),
    l AS (
        SELECT hl_key AS k, lp, exec_id, qty, price, side,
            symbol, exec_time AS t
        FROM lp_trades WHERE {_in_scope(full, "hl", "hl_key")}),
    lc AS (SELECT lp, max(exec_time) - {_ms(grace)} AS until FROM lp_trades GROUP BY lp)
    SELECT coalesce(h.k, l.k), coalesce(h.lp, l.lp), coalesce(h.exec_id, l.exec_id),
        CAST(h.qty AS VARCHAR), CAST(h.price AS VARCHAR), CAST(h.price_hi AS VARCHAR),
        h.side, h.side_hi, h.symbol, h.t, h.account,
        CAST(l.qty AS VARCHAR), CAST(l.price AS VARCHAR), l.side, l.symbol, l.t,
        lc.until
    FROM h FULL OUTER JOIN l ON h.k = l.k
    LEFT JOIN lc ON lc.lp = coalesce(h.lp, l.lp)
    WHERE h.k IS NULL OR l.k IS NULL OR h.qty <> l.qty OR h.price <> l.price
        OR h.price_hi <> l.price OR h.side <> l.side OR h.side_hi <> l.side
        OR h.symbol <> l.symbol
    """


def ch_sql(full: bool = False) -> str:
    """The client/house keys in scope that do not agree (or are one-sided)."""
    return f"""
    WITH c AS (
        SELECT exec_id AS k, client, symbol, side, qty, price, transact_time AS t
        FROM client_trades
        WHERE market <> '{INTERNAL_MARKET}' AND {_in_scope(full, "ch", "exec_id")}),
    h AS (
        SELECT client_exec_id AS k, min(account) AS account, min(lp) AS lp,
            min(symbol) AS symbol, min(side) AS side, sum(qty) AS qty,
            min(price) AS price, min(transact_time) AS t
        FROM house_trades
        WHERE client_exec_id <> '' AND {_in_scope(full, "ch", "client_exec_id")}
        GROUP BY client_exec_id)
    SELECT coalesce(c.k, h.k), c.client, c.symbol, c.side, CAST(c.qty AS VARCHAR),
        CAST(c.price AS VARCHAR), c.t,
        h.account, h.lp, h.symbol, h.side, CAST(h.qty AS VARCHAR),
        CAST(h.price AS VARCHAR), h.t
    FROM c FULL OUTER JOIN h ON c.k = h.k
    WHERE c.k IS NULL OR h.k IS NULL OR c.qty <> h.qty OR c.price <> h.price
        OR c.side <> h.side OR c.symbol <> h.symbol OR c.client <> h.account
    """


def x_sql(full: bool = False) -> str:
    """The internal crosses in scope whose two sides do not balance."""
    return f"""
    SELECT x_key AS k, min(symbol), min(transact_time),
        CAST(sum(CASE WHEN side = 1 THEN qty ELSE CAST(0 AS DECIMAL(18, 8)) END) AS VARCHAR),
        CAST(sum(CASE WHEN side = -1 THEN qty ELSE CAST(0 AS DECIMAL(18, 8)) END) AS VARCHAR),
        string_agg(exec_id, ' '), string_agg(client, ' ')
    FROM client_trades
    WHERE market = '{INTERNAL_MARKET}' AND {_in_scope(full, "x", "x_key")}
    GROUP BY x_key
    HAVING sum(CASE WHEN side = 1 THEN qty ELSE 0 END)
        <> sum(CASE WHEN side = -1 THEN qty ELSE 0 END)
    """


def unique_pending(pending: Sequence[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, Any]]:
    """One row per pending key (relation, key), the earliest: two records
    may share a key (an id holding the key's separator)."""
    first: dict[tuple[str, str], tuple[str, str, str, Any]] = {}
    for row in pending:
        seen = first.get((row[0], row[1]))
        if seen is None or row[3] < seen[3]:
            first[(row[0], row[1])] = row
    return sorted(first.values(), key=lambda row: (row[0], row[1]))


def classify(
    hl: Sequence[Sequence[object]],
    ch: Sequence[Sequence[object]],
    x: Sequence[Sequence[object]],
    cover: dt.datetime | None,
    covers: Covers | None = None,
) -> tuple[list[tuple[str, Break]], list[tuple[str, str, str, Any]]]:
    """Breaks (relation, break) and pending keys (relation, key, the record
    it waits for, its time) of the rows the three queries returned;
    ``cover`` is how far the drop copy has come (:func:`covers_sql`),
    unless ``covers`` knows better."""
    cover = feed_cover(cover, covers)
    lp_covers = covers.lps if covers is not None else {}
    breaks: list[tuple[str, Break]] = []
    pending: list[tuple[str, str, str, Any]] = []

    def one_sided(rel: str, when: object, until: object, missing: Break, waits: str = "") -> None:
        """A record without its counterpart: a break once ``until`` (how
        far the other record, ``waits``, has come, less the grace) is past
        it; pending until then."""
        if until is not None and when < until:  # type: ignore[operator]
            breaks.append((rel, missing))
        else:
            pending.append((rel, missing.key, waits, when))

    for row in hl:
        (k, lp, exec_id, h_qty, h_px, h_px_hi, h_side, h_side_hi, h_sym, h_t, account) = row[:11]
        l_qty, l_px, l_side, l_sym, l_t, until = row[11:]
        if lp in lp_covers:
            until = lp_covers[str(lp)]
        key = str(k)
        common = Break(kind="", records="house/lp", key=key, ref=str(exec_id), lp=str(lp))
        if l_qty is None:
            if until is None:
                if lp in lp_covers:
                    continue  # the LP sends no statement: nothing is missing from one
                # nothing says yet how far its statement has come (none read
                # yet): pending on it, looked at once its statement passes it
                pending.append(("hl", key, str(lp), h_t))
                continue
            one_sided(
                "hl",
                h_t,
                until,
                _with(
                    common,
                    kind="missing_at_lp",
                    symbol=str(h_sym),
                    client=str(account),
                    ours=f"{_side(h_side)} {h_qty} @ {h_px}",
                    detail="booked from the LP; not on its statement",
                ),
                waits=str(lp),
            )
            continue
        if h_qty is None:
            one_sided(
                "hl",
                l_t,
                cover,
                _with(
                    common,
                    kind="missing_in_house",
                    symbol=str(l_sym),
                    theirs=f"{_side(l_side)} {l_qty} @ {l_px}",
                    detail="on the LP's statement; never booked by the house",
                ),
            )
            continue
        symbol = str(l_sym)
        if _dec(h_qty) < _dec(l_qty) and (cover is None or not h_t < cover):  # type: ignore[operator]
            # the house's bookings of the fill sum short of the LP's line
            # while the drop copy has not come past them: a fill split
            # between a client and the house comes as two reports, which
            # may come in two batches; pending on the drop copy until then
            pending.append(("hl", key, "", h_t))
        elif _dec(h_qty) != _dec(l_qty):
            breaks.append(
                (
                    "hl",
                    _with(
                        common,
                        kind="qty_mismatch",
                        symbol=symbol,
                        ours=str(h_qty),
                        theirs=str(l_qty),
                    ),
                )
            )
        if _dec(h_px) != _dec(l_px) or _dec(h_px_hi) != _dec(l_px):
            breaks.append(
                (
                    "hl",
                    _with(
                        common,
                        kind="price_mismatch",
                        symbol=symbol,
                        ours=str(h_px),
                        theirs=str(l_px),
                    ),
                )
            )
        if h_side != l_side or h_side_hi != l_side:
            breaks.append(
                (
                    "hl",
                    _with(
                        common,
                        kind="side_mismatch",
                        symbol=symbol,
                        ours=_side(h_side),
                        theirs=_side(l_side),
                    ),
                )
            )
        if h_sym != l_sym:
            breaks.append(
                (
                    "hl",
                    _with(
                        common,
                        kind="symbol_mismatch",
                        symbol=symbol,
                        ours=str(h_sym),
                        theirs=symbol,
                    ),
                )
            )
    for row in ch:
        k, client, c_sym, c_side, c_qty, c_px, c_t, account, lp, h_sym, h_side, h_qty, h_px, h_t = (
            row
        )
        key = str(k)
        if h_qty is None:
            one_sided(
                "ch",
                c_t,
                cover,
                Break(
                    kind="uncovered_client_fill",
                    records="client/house",
                    key=key,
                    ref=key,
                    client=str(client),
                    symbol=str(c_sym),
                    ours=f"{_side(c_side)} {c_qty} @ {c_px}",
                    detail="the client was told of this fill; the house booked no LP fill for it",
                ),
            )
            continue
        if c_qty is None:
            one_sided(
                "ch",
                h_t,
                cover,
                Break(
                    kind="unreported_house_fill",
                    records="client/house",
                    key=key,
                    ref=key,
                    lp=str(lp),
                    client=str(account),
                    symbol=str(h_sym),
                    ours=f"{_side(h_side)} {h_qty} @ {h_px}",
                    detail="booked to the client from an LP; no report of it to the client",
                ),
            )
            continue
        common2 = Break(
            kind="",
            records="client/house",
            key=key,
            ref=key,
            lp=str(lp),
            client=str(client),
            symbol=str(c_sym),
        )
        if _dec(c_qty) != _dec(h_qty):
            breaks.append(
                ("ch", _with(common2, kind="qty_mismatch", ours=str(h_qty), theirs=str(c_qty)))
            )
        if _dec(c_px) != _dec(h_px):
            breaks.append(
                ("ch", _with(common2, kind="price_mismatch", ours=str(h_px), theirs=str(c_px)))
            )
        if c_side != h_side:
            breaks.append(
                (
                    "ch",
                    _with(common2, kind="side_mismatch", ours=_side(h_side), theirs=_side(c_side)),
                )
            )
        if c_sym != h_sym or client != account:
            breaks.append(
                (
                    "ch",
                    _with(
                        common2,
                        kind="symbol_mismatch" if c_sym != h_sym else "uncovered_client_fill",
                        ours=f"{account} {h_sym}",
                        theirs=f"{client} {c_sym}",
                        detail=""
                        if c_sym != h_sym
                        else "the house booked the fill to another account",
                    ),
                )
            )
    for row in x:
        k, x_symbol, t, bought, sold, exec_ids, clients = row
        one_sided(
            "x",
            t,
            cover,
            Break(
                kind="unpaired_cross",
                records="client/client",
                key=str(k),
                ref=str(exec_ids),
                client=str(clients),
                symbol=str(x_symbol),
                ours=f"bought {bought}",
                theirs=f"sold {sold}",
                detail="an internal cross whose two clients' fills do not pair",
            ),
        )
    return breaks, pending


def break_columns(
    found: Sequence[tuple[str, Break]],
    seen: dict[tuple[str, str, str], dt.datetime],
    now: dt.datetime,
) -> list[list[Any]]:
    """The ``breaks`` table's columns of ``found`` (relation, break), each
    break once, keeping the first-seen time of one already known."""
    rows = list({(b.kind, rel, b.key): (rel, b) for rel, b in found}.values())
    return [
        [b.kind for _, b in rows],
        [rel for rel, _ in rows],
        [b.key for _, b in rows],
        [b.records for _, b in rows],
        [b.ref for _, b in rows],
        [b.lp for _, b in rows],
        [b.client for _, b in rows],
        [b.symbol for _, b in rows],
        [b.ours for _, b in rows],
        [b.theirs for _, b in rows],
        [b.detail for _, b in rows],
        [seen.get((b.kind, rel, b.key), now) for rel, b in rows],
    ]


def _with(template: Break, **fields: Any) -> Break:
    return msgspec.structs.replace(template, **fields)


def _side(side: object) -> str:
    return "buy" if side == 1 else "sell" if side == -1 else str(side)


def _dec(value: object) -> object:
    from decimal import Decimal

    return None if value is None else Decimal(str(value))


# -- reports ------------------------------------------------------------------------


TRADING_DAYS: Final = (
    "SELECT trade_date, max(ingest) FROM (SELECT trade_date, ingest FROM client_trades "
    "UNION ALL SELECT trade_date, ingest FROM house_trades) AS t GROUP BY trade_date ORDER BY 1"
)
"""Each trading day of the trades, with the last ingest batch that stored
one of them (:meth:`Ledger.trading_days`)."""

BATCHES: Final = "ingest > $1 AND ingest <= $2"
"""The rows of the ingest batches after ``$1`` up to ``$2``."""


def positions_sql(where: str = "") -> tuple[tuple[str, str], ...]:
    """The queries of each kind of position (``clients``, ``lps``,
    ``lp_statements``): the sums of the fills, per holder and symbol, of
    the rows ``where`` selects (none: every row)."""
    and_where = f" AND {where}" if where else ""
    where = f" WHERE {where}" if where else ""
    return (
        (
            "clients",
            "SELECT client, symbol, CAST(sum(side * qty) AS VARCHAR) FROM client_trades"
            f"{where} GROUP BY client, symbol "
            "UNION ALL SELECT account, symbol, CAST(sum(side * qty) AS VARCHAR) FROM house_trades "
            f"WHERE account = '(house)'{and_where} GROUP BY account, symbol ORDER BY 1, 2",
        ),
        (
            "lps",
            "SELECT lp, symbol, CAST(sum(side * qty) AS VARCHAR) FROM house_trades"
            f"{where} GROUP BY lp, symbol ORDER BY 1, 2",
        ),
        (
            "lp_statements",
            "SELECT lp, symbol, CAST(sum(side * qty) AS VARCHAR) FROM lp_trades"
            f"{where} GROUP BY lp, symbol ORDER BY 1, 2",
        ),
    )


POSITIONS: Final = positions_sql()


# the currencies of a trade in a symbol the config does not list: those of
# its name (GBP/JPY: GBP and JPY; US500: US500, quoted in USD), as
# Settlement.currencies says
_BASE: Final = "coalesce(i.base, split_part({t}.symbol, '/', 1))"
_QUOTE: Final = (
    "coalesce(i.quote, CASE WHEN strpos({t}.symbol, '/') > 0 "
    "THEN split_part({t}.symbol, '/', 2) ELSE 'USD' END)"
)


_UNITS: Final = tuple(Decimal(1).scaleb(-d) for d in range(LEDGER_DECIMALS + 1))
_WIDE: Final = Context(prec=40)
"""Room for every digit of a DECIMAL(38, 8) sum (the default context keeps 28)."""

CURRENCIES_TABLE: Final = "CREATE TEMP TABLE currencies (currency VARCHAR, minor INTEGER)"
"""The decimals each currency's amounts are rounded to, filled from
:attr:`backoffice.settlement.Settlement.minor_units` when a ledger opens."""

# a leg rounded once, from its exact amount (a quantity and a price of 8
# decimals each make one of up to 16), to its currency's minor units
# (round's decimals must be a constant in DuckDB: one branch each); a code
# not listed keeps 8 decimals
_ROUNDED: Final = (
    "CASE m.minor "
    + " ".join(
        f"WHEN {d} THEN CAST(round(l.amount, {d}) AS DECIMAL(38, 8))"
        for d in range(LEDGER_DECIMALS)
    )
    + " ELSE CAST(l.amount AS DECIMAL(38, 8)) END"
)
_LEG: Final = "DECIMAL(38, 16)"
"""A leg's exact amount: 16 decimals, up to 22 digits before them (a
quantity and a price each have 10 at most)."""


def settlement_order(row: Sequence[Any]) -> tuple[Any, ...]:
    """The order of :func:`settlement_sql`'s rows (kind, counterparty, value
    date, currency), by the texts' code points: a PostgreSQL ledger sorts
    its rows with it, as its database's collation may order text otherwise
    (``en_US`` puts ``(house)`` after ``C1``)."""
    return (row[1], row[0], row[3], row[2])


def settlement_sql(where_client: str, where_lp: str) -> str:
    """Net amounts the house receives (+) or pays (-) per counterparty,
    currency and value date, over the client and house trades the two
    conditions select (``instruments (symbol, base, quote)`` must exist; a
    trade in a symbol it lacks settles in the currencies of its name).
    Each leg is rounded to its currency's minor units (``currencies
    (currency, minor)`` must exist) before the legs are summed."""
    c_base, c_quote = _BASE.format(t="c"), _QUOTE.format(t="c")
    h_base, h_quote = _BASE.format(t="h"), _QUOTE.format(t="h")
    return f"""
    SELECT counterparty, kind, currency, value_date, CAST(sum(amount) AS VARCHAR)
    FROM (
      SELECT l.counterparty, l.kind, l.currency, l.value_date, {_ROUNDED} AS amount
      FROM (
        SELECT c.client AS counterparty, 'client' AS kind, {c_base} AS currency,
            c.value_date,
            CAST(-c.side * c.qty AS {_LEG}) AS amount
        FROM client_trades c LEFT JOIN instruments i ON i.symbol = c.symbol
        WHERE {where_client}
        UNION ALL
        SELECT c.client, 'client', {c_quote}, c.value_date,
            CAST(CAST(c.side * c.qty AS DECIMAL(38, 8)) * c.price AS {_LEG})
        FROM client_trades c LEFT JOIN instruments i ON i.symbol = c.symbol
        WHERE {where_client}
        UNION ALL
        SELECT h.lp, 'lp', {h_base}, h.value_date, CAST(h.side * h.qty AS {_LEG})
        FROM house_trades h LEFT JOIN instruments i ON i.symbol = h.symbol WHERE {where_lp}
        UNION ALL
        SELECT h.lp, 'lp', {h_quote}, h.value_date,
            CAST(CAST(-h.side * h.qty AS DECIMAL(38, 8)) * h.price AS {_LEG})
        FROM house_trades h LEFT JOIN instruments i ON i.symbol = h.symbol WHERE {where_lp}
      ) AS l LEFT JOIN currencies m ON m.currency = l.currency
    ) AS legs
    GROUP BY counterparty, kind, currency, value_date
    ORDER BY kind, counterparty, value_date, currency
    """


VALUED_TABLES: Final = ("client_trades", "house_trades", "lp_trades", "lp_repeats")
"""The tables whose rows carry a value date."""

REVALUE_WINDOW: Final = dt.timedelta(days=21)
"""How far before the trading day the trades whose value dates may not have
passed go back (ten business days, the most an instrument may say, are at
most fourteen calendar days)."""


BOOKED_ON: Final = (
    "SELECT min(trade_date) FROM house_trades WHERE child_id = $1 AND lp_exec_id = $2"
)
"""The trade date of the booking ``$2`` of child ``$1`` (NULL: none)."""


def restated(houses: Sequence[HouseTrade]) -> set[tuple[str, str]]:
    """The bookings (child, LP ExecID) that the restatements among
    ``houses`` (an LP's Trade Cancel or Correct) reverse or correct, and
    that are not in ``houses`` themselves."""
    own = {(h.child_id, h.lp_exec_id) for h in houses}
    return {(h.child_id, h.restates) for h in houses if h.restates} - own


def booked_as_of(
    houses: Sequence[HouseTrade], stored: Mapping[tuple[str, str], str]
) -> list[HouseTrade]:
    """``houses`` with each restatement given the trade date of the booking
    it reverses or corrects (as the ledger holds it, ``stored``, or as
    ``houses`` has it before), when that is earlier: a trade busted or
    corrected on a later day is reversed as of its own day, so the two
    settle on one value date and net to nothing.  One unknown keeps its
    own date."""
    days: dict[tuple[str, str], str] = dict(stored)
    out: list[HouseTrade] = []
    for h in houses:
        if h.restates:
            day = days.get((h.child_id, h.restates))
            if day is not None and day < h.trade_date:
                h = msgspec.structs.replace(h, trade_date=day)
        days.setdefault((h.child_id, h.lp_exec_id), h.trade_date)
        out.append(h)
    return out


REBATCHED: Final = ("client_trades", "house_trades")
"""The tables whose rows a revision of value dates gives a new ingest batch."""


def revalue_sql(table: str) -> str:
    """Give the rows of ``table`` in symbol ``$1`` of trade date ``$2``
    valued ``$3`` the value date ``$4``; a trade's row (:data:`REBATCHED`)
    also the ingest batch ``$5``, so that a day whose manifest names an
    earlier batch is written again at start, should the process stop
    before it wrote the day again (the revision is not found again)."""
    batch = ", ingest = $5" if table in REBATCHED else ""
    return (
        f"UPDATE {table} SET value_date = $4{batch} "
        "WHERE symbol = $1 AND trade_date = $2 AND value_date = $3"
    )


def revalued(
    rows: Iterable[tuple[str, dt.date, dt.date]],
    value_date: Callable[[str, str], str],
    today: dt.date,
    listed: Container[str],
) -> list[tuple[str, dt.date, dt.date, dt.date]]:
    """Of the stored ``(symbol, trade date, value date)`` of a table, those
    whose value date by the current terms differs, where either date has
    not passed by ``today``: ``(symbol, trade date, stored, new)``.  Only
    symbols ``listed`` in the config have terms: a symbol taken out of it
    keeps the value dates its trades have."""
    out = []
    for symbol, trade_date, stored in rows:
        if symbol not in listed:
            continue
        new = dt.date.fromisoformat(value_date(symbol, trade_date.isoformat()))
        if new != stored and max(new, stored) >= today:
            out.append((symbol, trade_date, stored, new))
    return out


class Ledger:
    """What a ledger backend does.  Every method is a coroutine; a backend
    never holds the event loop (DuckDB's calls run in a thread of its own)."""

    url: str

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def last_seq(self, session: str) -> int:
        """The MsgSeqNum of the last drop-copy message whose trades are stored."""
        raise NotImplementedError

    async def booked_on(self, bookings: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The trade date (ISO) of each booking (child, LP ExecID) stored."""
        raise NotImplementedError

    async def write(
        self,
        session: str,
        last_seq: int,
        clients: Sequence[ClientTrade],
        houses: Sequence[HouseTrade],
    ) -> int:
        """Store trades (a trade already stored is left as it is) and the
        feed's progress, in one transaction; returns the ingest batch id."""
        raise NotImplementedError

    async def apply_statements(self, changes: Sequence[StatementChange]) -> int:
        """Store what statement files added or now say; returns the batch id."""
        raise NotImplementedError

    async def statement_files(self) -> list[str]:
        """The statement files read whole (:data:`FILE_READ`) and not taken
        out of the folder since (:data:`FILE_GONE`)."""
        raise NotImplementedError

    async def recon(
        self, full: bool, grace: float, now: dt.datetime, covers: Covers | None = None
    ) -> ReconRun:
        """One run (see the module docs); ``covers`` as :func:`classify` takes it."""
        raise NotImplementedError

    async def without_statements(self, lps: Sequence[str]) -> tuple[int, int]:
        """Take out the breaks and pending keys of the fills of ``lps``,
        which send no statement (``delivery = "none"``), that say their
        statement misses them or is awaited (:data:`NO_STATEMENT_SQL`);
        returns how many of each went."""
        raise NotImplementedError

    async def breaks(self) -> list[Break]:
        raise NotImplementedError

    async def set_position_breaks(self, breaks: Sequence[Break], now: dt.datetime) -> None:
        """Replace the position breaks with ``breaks``."""
        raise NotImplementedError

    async def positions(self) -> dict[str, list[Position]]:
        """``clients``, ``lps`` (the house's at each LP, by its bookings) and
        ``lp_statements`` (by the LPs' statements)."""
        raise NotImplementedError

    async def settlement(self, from_date: dt.date) -> list[SettlementLine]:
        """Net amounts of trades with value dates on or after ``from_date``."""
        raise NotImplementedError

    @property
    def last_ingest(self) -> int:
        """The last ingest batch id handed out: no row has a later one."""
        raise NotImplementedError

    differing_lines: list[str] = []  # noqa: RUF012 (replaced, never changed in place)
    """What the last :meth:`apply_statements` found appended to a file
    repeating an execution stored from it before, with other values
    (:func:`differing_line`); those lines are not stored."""

    lines_removed_at: int = 0
    """The last ingest batch that removed statement lines stored before (a
    file read again whole, without some of them); 0: none since the ledger
    was opened.  Set before the batch commits: a batch that fails after it
    may have removed none."""

    async def batch_positions(self, after: int, upto: int) -> dict[str, list[Position]]:
        """What the fills and statement lines stored by the ingest batches
        after ``after`` up to ``upto`` add to :meth:`positions` (a fill one
        of them brought again, stored before, is not among them)."""
        raise NotImplementedError

    async def settlement_sums(self, from_date: dt.date) -> list[SettlementSum]:
        """The sums of :func:`settlement_sql` over the trades whose value
        date is ``from_date`` or later."""
        raise NotImplementedError

    async def batch_settlement_sums(self, after: int, upto: int) -> list[SettlementSum]:
        """The sums of :func:`settlement_sql` over the trades stored by the
        ingest batches after ``after`` up to ``upto`` (a trade one of them
        brought again, stored before, is not among them), whatever their
        value dates."""
        raise NotImplementedError

    async def revalue(self, today: dt.date) -> list[dt.date]:
        """Give the trades whose value dates have not passed by ``today``
        (the trading day) the value dates of the current terms: a symbol
        listed since they were stored (they settled on their trade dates),
        or one whose settlement days changed.  Returns the trade dates of
        the trades changed."""
        raise NotImplementedError

    async def counts(self) -> dict[str, int]:
        raise NotImplementedError

    async def trading_days(self) -> dict[dt.date, int]:
        """Each trading day of the trades, in order, with the last ingest
        batch that stored a trade of it: a day's files exported from a
        snapshot that held that batch hold every trade of the day."""
        raise NotImplementedError

    async def pin_day(self, day: dt.date, hold: Hold | None = None) -> PinnedDay:
        """Pin the ledger's rows as they are now for ``day``'s export (a
        snapshot of the database's own), inside ``hold()`` when given: the
        caller's guard against its own writes, entered only for the moment
        the snapshot is taken (a connection is made before).  The export
        itself, :meth:`PinnedDay.write`, reads the pinned rows beside the
        writes that follow and does not hold them up."""
        raise NotImplementedError

    async def export_day(self, day: dt.date, folder: str) -> list[str]:
        """Write the day's client and LP trades and its settlement report
        to Parquet and CSV files in ``folder``; returns their paths."""
        pinned = await self.pin_day(day)
        try:
            return await pinned.write(folder)
        finally:
            await pinned.close()


Hold = Callable[[], AbstractAsyncContextManager[None]]
"""What :meth:`Ledger.pin_day` enters around the snapshot it takes."""


class PinnedDay:
    """A trading day's rows as the ledger held them when pinned
    (:meth:`Ledger.pin_day`); what is stored later is not in its files."""

    day: dt.date

    async def write(self, folder: str) -> list[str]:
        """Write the day's client and LP trades and its settlement report
        to Parquet and CSV files in ``folder`` (each written to a temporary
        name, then renamed); returns their paths."""
        raise NotImplementedError

    async def close(self) -> None:
        """Let the snapshot go; closing twice is closing once."""
        raise NotImplementedError
