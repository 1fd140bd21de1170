"""The ledger's behaviour, the same over both backends: DuckDB (a file in the
test's folder) and PostgreSQL (a fresh database on the session's server).

Trades are built as the drop copy and the statements deliver them; times
are seconds after ``T0`` (a Monday), the grace is 5 s."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import msgspec
import pytest
import pytest_asyncio
from netkit import free_port
from pgkit import PgServer

from backoffice import ledger as sql
from backoffice.duck import DuckLedger
from backoffice.ledger import (
    Break,
    Covers,
    Ledger,
    LedgerError,
    LedgerLost,
    Position,
    PositionBook,
    SettlementBook,
    booked_as_of,
    restated,
)
from backoffice.pg import PgLedger
from backoffice.records import (
    HOUSE_ACCOUNT,
    INTERNAL_MARKET,
    ClientTrade,
    HouseTrade,
    LpTrade,
    TradeDay,
    time_text,
)
from backoffice.settlement import Settlement
from backoffice.statements import StatementChange, StatementFolder
from config import InstrumentSettings, StatementColumns
from config.redact import url_without_secrets

T0 = dt.datetime(2026, 3, 2, 10, 0, 0)  # a Monday
DAY = "2026-03-02"
GRACE = 5.0
SESSION = "BACKOFFICE-GATEWAY"
STATEMENT = "/statements/LP_A-20260302.csv"


def _instrument(symbol: str, asset_class: str, **extra: Any) -> InstrumentSettings:
    fields = {
        "symbol": symbol,
        "asset_class": asset_class,
        "tick_size": "0.00001",
        "lot_size": "0.001",
        "min_qty": "0.001",
        "max_qty": "10000000",
        "quote_currency": symbol.partition("/")[2] or "USD",
        **extra,
    }
    return msgspec.convert(fields, InstrumentSettings, strict=False)


SETTLEMENT = Settlement(
    [
        _instrument("EUR/USD", "fx"),
        _instrument("USD/CAD", "fx", settlement_days=1),
        _instrument("BTC/USD", "crypto"),
    ]
)


def at(seconds: float, start: dt.datetime = T0) -> str:
    return time_text(start + dt.timedelta(seconds=seconds))


def client(
    exec_id: str,
    t: float = 0.0,
    *,
    account: str = "C1",
    symbol: str = "EUR/USD",
    side: int = 1,
    qty: str = "1000",
    price: str = "1.1",
    market: str = "LP_A",
    seq: int = 1,
    start: dt.datetime = T0,
) -> ClientTrade:
    when = at(t, start)
    return ClientTrade(
        exec_id=exec_id,
        client=account,
        order_id=f"O-{exec_id}",
        cl_ord_id=f"K-{exec_id}",
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
        market=market,
        time=when,
        trade_date=when[:10],
        seq=seq,
    )


def house(
    report_id: str,
    lp_exec_id: str,
    t: float = 0.0,
    *,
    client_exec_id: str = "",
    account: str = "C1",
    lp: str = "LP_A",
    symbol: str = "EUR/USD",
    side: int = 1,
    qty: str = "1000",
    price: str = "1.1",
    seq: int = 1,
    start: dt.datetime = T0,
) -> HouseTrade:
    when = at(t, start)
    return HouseTrade(
        report_id=report_id,
        lp=lp,
        lp_exec_id=lp_exec_id,
        child_id=f"CH-{lp_exec_id}",
        account=account,
        client_exec_id=client_exec_id,
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
        time=when,
        trade_date=when[:10],
        seq=seq,
    )


def line(
    exec_id: str,
    t: float = 0.0,
    *,
    lp: str = "LP_A",
    symbol: str = "EUR/USD",
    side: int = 1,
    qty: str = "1000",
    price: str = "1.1",
    source: str = STATEMENT,
) -> LpTrade:
    when = at(t)
    return LpTrade(
        lp=lp,
        exec_id=exec_id,
        cl_ord_id=f"CH-{exec_id}",
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
        time=when,
        trade_date=when[:10],
        source=source,
    )


def statement(
    rows: Iterable[LpTrade], *, replace: bool = False, source: str = STATEMENT
) -> StatementChange:
    return StatementChange(source, "LP_A", replace, list(rows), [])


def matched(n: int, t: float) -> tuple[ClientTrade, HouseTrade, LpTrade]:
    """A client fill, the house's booking of it and the LP's line: all agree."""
    return (
        client(f"C{n}", t, seq=n),
        house(f"R{n}", f"L{n}", t, client_exec_id=f"C{n}", seq=n),
        line(f"L{n}", t),
    )


def found(breaks: Iterable[Break]) -> set[tuple[str, str, str]]:
    return {(b.kind, b.records, b.ref) for b in breaks}


# -- the ledgers --------------------------------------------------------------------


def make_ledger(url: str) -> Ledger:
    if url.startswith("duckdb:"):
        return DuckLedger(url.removeprefix("duckdb:"), SETTLEMENT)
    return PgLedger(url, SETTLEMENT)


@pytest.fixture(params=["duckdb", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:{tmp_path / 'ledger.duckdb'}"
    url: str = request.getfixturevalue("postgres_db")
    return url


@pytest_asyncio.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    opened = make_ledger(ledger_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def write(ledger: Ledger, *trades: ClientTrade | HouseTrade, last_seq: int = 0) -> int:
    clients = [t for t in trades if isinstance(t, ClientTrade)]
    houses = [t for t in trades if isinstance(t, HouseTrade)]
    seq = max([last_seq, *(t.seq for t in trades)])
    return await ledger.write(SESSION, seq, clients, houses)


async def recon(ledger: Ledger, full: bool = False, covers: Covers | None = None) -> list[Break]:
    await ledger.recon(full, GRACE, dt.datetime(2026, 3, 2, 12), covers)
    return await ledger.breaks()


# -- writes -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_write_is_stored_once_and_the_feed_keeps_its_greatest_seq(ledger: Ledger) -> None:
    clients = [client("C1", 0, seq=3), client("C2", 1, seq=4)]
    houses = [house("R1", "L1", 0, seq=5)]
    first = await ledger.write(SESSION, 10, clients, houses)
    again = await ledger.write(SESSION, 7, clients, houses)
    assert again > first
    counts = await ledger.counts()
    assert (counts["client_trades"], counts["house_trades"]) == (2, 1)
    assert await ledger.last_seq(SESSION) == 10
    await ledger.write(SESSION, 12, [client("C1", 0), client("C1", 0)], [])
    assert (await ledger.counts())["client_trades"] == 2
    assert await ledger.last_seq(SESSION) == 12
    assert await ledger.last_seq("ANOTHER-SESSION") == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "bad",
    [
        client("BAD", 2, qty="12345678901234567890"),  # beyond DECIMAL(18, 8)
        client("BAD", 2, price="not a price"),
        client("BAD", 2, qty="NaN"),
    ],
    ids=["overflow", "not-a-number", "nan"],
)
async def test_a_write_that_fails_leaves_nothing(ledger: Ledger, bad: ClientTrade) -> None:
    await write(ledger, client("C1", 0), last_seq=5)
    with pytest.raises(LedgerError):
        await write(ledger, client("C2", 1), house("R2", "L2", 1), bad, last_seq=9)
    counts = await ledger.counts()
    assert (counts["client_trades"], counts["house_trades"]) == (1, 0)
    assert await ledger.last_seq(SESSION) == 5
    await write(ledger, client("C2", 1), house("R2", "L2", 1), last_seq=9)
    counts = await ledger.counts()
    assert (counts["client_trades"], counts["house_trades"]) == (2, 1)
    assert await ledger.last_seq(SESSION) == 9


@pytest.mark.asyncio
async def test_the_ledger_reopens_where_it_was(ledger_url: str) -> None:
    first = make_ledger(ledger_url)
    await first.open()
    await write(first, *matched(1, 0)[:2], last_seq=4)
    await first.apply_statements([statement([line("L1", 0)])])
    await first.recon(False, GRACE, T0)
    last = await write(first, client("C9", 1, seq=9))
    await first.close()
    second = make_ledger(ledger_url)
    await second.open()
    try:
        assert await second.last_seq(SESSION) == 9
        assert await write(second, client("C10", 2, seq=10)) > last
        run = await second.recon(False, GRACE, T0)
        assert run.upto > last
        assert (await second.counts())["client_trades"] == 3
    finally:
        await second.close()


@pytest.mark.asyncio
async def test_statements_append_then_replace(ledger: Ledger) -> None:
    await ledger.apply_statements([statement([line("L1", 0), line("L2", 1), line("L2", 1)])])
    await ledger.apply_statements([statement([line("L3", 2)])])
    assert (await ledger.counts())["lp_trades"] == 3
    await ledger.apply_statements([statement([line("L3", 2)])])  # read again: stored once
    assert (await ledger.counts())["lp_trades"] == 3
    other = "/statements/LP_A-other.csv"
    await ledger.apply_statements([statement([line("L9", 0, side=-1, source=other)], source=other)])
    # the file now says L1 and L3 only; the other file is untouched
    await ledger.apply_statements([statement([line("L1", 0), line("L3", 2)], replace=True)])
    assert (await ledger.counts())["lp_trades"] == 3
    positions = await ledger.positions()
    assert positions["lp_statements"] == [Position("LP_A", "EUR/USD", "1000.00000000")]
    await ledger.apply_statements([statement([], replace=True, source=other)])  # removed
    positions = await ledger.positions()
    assert positions["lp_statements"] == [Position("LP_A", "EUR/USD", "2000.00000000")]


@pytest.mark.asyncio
async def test_an_appended_line_repeating_a_stored_one_with_other_values_is_named(
    ledger: Ledger,
) -> None:
    trades = [matched(1, 0), matched(2, 1), matched(3, 2)]
    await write(ledger, *(t for c, h, _ in trades for t in (c, h)))
    await ledger.apply_statements([statement([line("L1", 0), line("L2", 1)])])
    assert ledger.differing_lines == []
    # appended: L1 again as it was (nothing to say), L2 again at another price
    await ledger.apply_statements(
        [statement([line("L1", 0), line("L2", 1, price="1.2"), line("L3", 2)])]
    )
    (named,) = ledger.differing_lines
    assert "ExecID 'L2' of order 'CH-L2' again" in named
    assert named.startswith(STATEMENT)
    assert (await ledger.counts())["lp_trades"] == 3
    assert await recon(ledger, full=True) == []  # the stored line stands: no price break
    # a whole read is not an append: its repeats are the reader's to name
    await ledger.apply_statements([statement([line("L2", 1, price="1.3")], replace=True)])
    assert ledger.differing_lines == []
    # L2 on a second file too (kept as a repeat of the first file's line),
    # then appended to the second file again at another price
    second = "/statements/LP_A-2.csv"
    await ledger.apply_statements(
        [statement([line("L2", 1, source=second, price="1.3")], source=second)]
    )
    assert ledger.differing_lines == []
    await ledger.apply_statements(
        [statement([line("L2", 1, source=second, price="1.2")], source=second)]
    )
    (named,) = ledger.differing_lines
    assert named.startswith(second)
    assert "ExecID 'L2'" in named


@pytest.mark.asyncio
async def test_a_file_issued_again_with_an_execution_changed_is_named(ledger: Ledger) -> None:
    first, again = "/statements/LP_A-20260302.csv", "/statements/LP_A-20260302-v2.csv"
    await write(ledger, house("R1", "L1", 0, qty="2000"))
    await ledger.apply_statements([statement([line("L1", 0, source=first)], source=first)])
    assert ledger.differing_lines == []
    # the LP sends the day again, the execution at another quantity: not
    # one execution on two files, and said so (appended or read whole)
    for replace in (False, True):
        await ledger.apply_statements(
            [statement([line("L1", 0, qty="2000", source=again)], source=again, replace=replace)]
        )
        (named,) = ledger.differing_lines
        assert named.startswith(again)
        assert "ExecID 'L1'" in named
        assert f"on {first} too" in named
    # the wrong file taken out of the folder, the other stands for it
    await ledger.apply_statements([statement([], replace=True, source=first)])
    positions = await ledger.positions()
    assert positions["lp_statements"] == [Position("LP_A", "EUR/USD", "2000.00000000")]


@pytest.mark.asyncio
async def test_a_line_on_two_files_outlives_the_correction_of_either(ledger: Ledger) -> None:
    first, second = "/statements/LP_A-1.csv", "/statements/LP_A-2.csv"
    trades = [matched(1, 0), matched(2, 1)]
    await write(ledger, *(t for c, h, _ in trades for t in (c, h)))
    # L2 is on both files (a day's statement repeating the last line of the
    # one before); it is one execution
    await ledger.apply_statements(
        [
            statement([line("L1", 0, source=first), line("L2", 1, source=first)], source=first),
            statement([line("L2", 1, source=second)], source=second),
        ]
    )
    assert (await ledger.counts())["lp_trades"] == 2
    assert await recon(ledger, full=True) == []
    # the first file is corrected: L2 is no longer on it, and still on the second
    await ledger.apply_statements(
        [statement([line("L1", 0, source=first)], replace=True, source=first)]
    )
    assert (await ledger.counts())["lp_trades"] == 2
    positions = await ledger.positions()
    assert positions["lp_statements"] == [Position("LP_A", "EUR/USD", "2000.00000000")]
    assert await recon(ledger) == []
    assert await recon(ledger, full=True) == []
    # the first file says it again, then the second drops it: still on the first
    await ledger.apply_statements(
        [
            statement(
                [line("L1", 0, source=first), line("L2", 1, source=first)],
                replace=True,
                source=first,
            ),
            statement([], replace=True, source=second),
        ]
    )
    assert (await ledger.counts())["lp_trades"] == 2
    assert await recon(ledger, full=True) == []
    # on neither file any more: gone, and a break once looked at
    await ledger.apply_statements(
        [statement([line("L1", 0, source=first)], replace=True, source=first)]
    )
    assert (await ledger.counts())["lp_trades"] == 1
    await ledger.apply_statements([statement([line("L9", 30)])])
    assert found(await recon(ledger)) == {("missing_at_lp", "house/lp", "L2")}


# -- reconciliation -----------------------------------------------------------------

EXPECTED = {
    ("missing_at_lp", "house/lp", "L2"),
    ("missing_in_house", "house/lp", "L3"),
    ("qty_mismatch", "house/lp", "L4"),
    ("price_mismatch", "house/lp", "L5"),
    ("side_mismatch", "house/lp", "L6"),
    ("uncovered_client_fill", "client/house", "C7"),
    ("unreported_house_fill", "client/house", "C8"),
    ("unpaired_cross", "client/client", "X1"),
}


async def load_every_break(ledger: Ledger) -> None:
    """One trade of each kind of break, and trades that agree around them;
    the drop copy and the statement both reach t=100."""
    c1, h1, l1 = matched(1, 0)
    c9, h9, l9 = matched(9, 100)
    await write(
        ledger,
        c1,
        h1,
        c9,
        h9,
        # booked, not on the statement
        client("C2", 10, seq=2),
        house("R2", "L2", 10, client_exec_id="C2", seq=2),
        # booked with another quantity, price or side than the statement's
        client("C4", 11, seq=4),
        house("R4", "L4", 11, client_exec_id="C4", seq=4),
        client("C5", 12, seq=5),
        house("R5", "L5", 12, client_exec_id="C5", seq=5),
        client("C6", 13, seq=6),
        house("R6", "L6", 13, client_exec_id="C6", seq=6),
        # a client fill from an LP with no booking, a booking with no client fill
        client("C7", 30, seq=7),
        house("R8", "L8", 31, client_exec_id="C8", seq=8),
        # the house's own fill: nothing to report to a client
        house("R10", "L10", 32, account=HOUSE_ACCOUNT, seq=10),
        # internal crosses: one paired, one not
        client("X1", 40, market=INTERNAL_MARKET, seq=11),
        client("X2", 41, market=INTERNAL_MARKET, seq=12),
        client("X3", 41, account="C2", side=-1, market=INTERNAL_MARKET, seq=13),
    )
    await ledger.apply_statements(
        [
            statement(
                [
                    l1,
                    l9,
                    line("L3", 20),  # never booked
                    line("L4", 11, qty="2000"),
                    line("L5", 12, price="1.2"),
                    line("L6", 13, side=-1),
                    line("L8", 31),
                    line("L10", 32),
                ]
            )
        ]
    )


@pytest.mark.asyncio
async def test_recon_finds_each_break_exactly(ledger: Ledger) -> None:
    await load_every_break(ledger)
    run = await ledger.recon(False, GRACE, T0)
    breaks = await ledger.breaks()
    assert found(breaks) == EXPECTED
    assert (run.breaks, run.pending) == (len(EXPECTED), 0)
    by_kind = {b.kind: b for b in breaks}
    assert by_kind["qty_mismatch"].ours == "1000.00000000"
    assert by_kind["qty_mismatch"].theirs == "2000.00000000"
    assert by_kind["price_mismatch"].theirs == "1.20000000"
    assert (by_kind["side_mismatch"].ours, by_kind["side_mismatch"].theirs) == ("buy", "sell")
    assert by_kind["missing_at_lp"].key == "LP_A|CH-L2|L2"
    assert by_kind["missing_at_lp"].client == "C1"
    assert by_kind["uncovered_client_fill"].key == "C7"
    assert by_kind["unreported_house_fill"].lp == "LP_A"
    assert by_kind["unpaired_cross"].ours == "bought 1000.00000000"
    assert Decimal(by_kind["unpaired_cross"].theirs.removeprefix("sold ")) == 0
    assert {b.first_seen for b in breaks} == {T0}


@pytest.mark.asyncio
async def test_an_incremental_run_keeps_untouched_breaks_and_a_full_run_agrees(
    ledger: Ledger,
) -> None:
    await load_every_break(ledger)
    first = await ledger.recon(False, GRACE, T0)
    before = {(b.kind, b.key): b for b in await ledger.breaks()}
    c20, h20, l20 = matched(20, 101)
    await write(ledger, c20, h20)
    await ledger.apply_statements([statement([l20])])
    later = T0 + dt.timedelta(minutes=5)
    run = await ledger.recon(False, GRACE, later)
    assert run.keys < first.keys  # only what came since
    assert {(b.kind, b.key): b for b in await ledger.breaks()} == before
    full = await ledger.recon(True, GRACE, later + dt.timedelta(minutes=1))
    assert full.keys > run.keys
    assert {(b.kind, b.key): b for b in await ledger.breaks()} == before  # first_seen kept
    assert (full.breaks, full.pending) == (len(EXPECTED), 0)


@pytest.mark.asyncio
async def test_records_within_the_grace_are_pending_until_the_other_side_moves_on(
    ledger: Ledger,
) -> None:
    # a house fill at t=0 and a statement only 3 s further: not missing yet
    await write(ledger, client("C1", 0, seq=1), house("R1", "L1", 0, client_exec_id="C1", seq=1))
    await ledger.apply_statements([statement([line("L2", 3)])])
    # a client fill from an LP, an LP line never booked and a half cross, all
    # within the grace of the drop copy's latest trade
    await write(ledger, client("C3", 2, seq=2), client("X1", 2, market=INTERNAL_MARKET, seq=3))
    run = await ledger.recon(False, GRACE, T0)
    assert run.breaks == 0
    assert run.pending == 4  # LP_A|CH-L1|L1, LP_A|CH-L2|L2, C3 and the cross
    assert await ledger.breaks() == []
    # the LP's line of the house fill comes, and the statement moves on: the
    # other three are still within the grace of the drop copy's latest trade
    await ledger.apply_statements([statement([line("L1", 0), line("L4", 6)])])
    await write(ledger, house("R4", "L4", 6, account=HOUSE_ACCOUNT, seq=4))
    run = await ledger.recon(False, GRACE, T0)
    assert (run.breaks, run.pending) == (0, 3)
    # the drop copy moves on past the client fill, the LP line and the cross
    await write(ledger, *matched(5, 20)[:2])
    await ledger.apply_statements([statement([matched(5, 20)[2]])])
    assert found(await recon(ledger)) == {
        ("missing_in_house", "house/lp", "L2"),
        ("uncovered_client_fill", "client/house", "C3"),
        ("unpaired_cross", "client/client", "X1"),
    }
    assert (await ledger.recon(False, GRACE, T0)).pending == 0


@pytest.mark.asyncio
async def test_a_house_fill_becomes_missing_at_lp_once_the_statement_moves_past_it(
    ledger: Ledger,
) -> None:
    await write(ledger, *matched(1, 0)[:2], *matched(2, 10)[:2])
    await ledger.apply_statements([statement([line("L1", 0), line("X9", 3)])])
    await write(ledger, house("R9", "X9", 3, account=HOUSE_ACCOUNT, seq=3))
    assert await recon(ledger) == []  # L2 at t=10 is after the statement's end
    await ledger.apply_statements([statement([line("X10", 14)])])
    await write(ledger, house("R10", "X10", 14, account=HOUSE_ACCOUNT, seq=4))
    assert await recon(ledger) == []  # 14 - 5 = 9: still within the grace of t=10
    await ledger.apply_statements([statement([line("X11", 16)])])
    await write(ledger, house("R11", "X11", 16, account=HOUSE_ACCOUNT, seq=5))
    assert found(await recon(ledger)) == {("missing_at_lp", "house/lp", "L2")}


@pytest.mark.asyncio
async def test_a_pending_key_is_looked_at_again_only_once_its_record_has_moved_past_it(
    ledger: Ledger,
) -> None:
    # a statement far ahead of the drop copy: its lines wait for the drop copy
    await write(ledger, *matched(1, 0)[:2])
    ahead = [line(f"A{i}", 10 + i) for i in range(50)]
    await ledger.apply_statements([statement([line("L1", 0), *ahead])])
    run = await ledger.recon(False, GRACE, T0)
    assert (run.breaks, run.pending) == (0, 50)
    # nothing new, the drop copy no further: no key is looked at again
    run = await ledger.recon(False, GRACE, T0)
    assert (run.keys, run.pending) == (0, 50)
    # the house books A0-A4 and the drop copy reaches t=25, less the grace
    # t=20: the five bookings, C99 and the lines due (A0-A9, t=10-19) are
    # looked at, A10-A49 are not
    bookings = [
        house(f"RA{i}", f"A{i}", 10 + i, account=HOUSE_ACCOUNT, seq=10 + i) for i in range(5)
    ]
    await write(ledger, *bookings, client("C99", 25, seq=99))
    run = await ledger.recon(False, GRACE, T0)
    assert run.keys == 5 + 1 + 10
    assert found(await ledger.breaks()) == {
        ("missing_in_house", "house/lp", f"A{i}") for i in range(5, 10)
    }
    assert run.pending == 40 + 1  # A10-A49 as they were, and C99 (within the grace)


@pytest.mark.asyncio
async def test_a_house_fill_before_any_statement_line_waits_for_the_statement(
    ledger: Ledger,
) -> None:
    # nothing from LP_A's statement yet: the booking waits on it
    await write(ledger, house("R1", "L1", 0, account=HOUSE_ACCOUNT, seq=1))
    run = await ledger.recon(False, GRACE, T0)
    assert (run.breaks, run.pending) == (0, 1)
    # its statement comes, without that line and later by more than the
    # grace: missing, found by an incremental run
    await ledger.apply_statements([statement([line("L2", 10)])])
    await write(ledger, house("R2", "L2", 10, account=HOUSE_ACCOUNT, seq=2))
    assert found(await recon(ledger)) == {("missing_at_lp", "house/lp", "L1")}
    # an LP that sends no statement: its bookings wait for nothing
    await write(ledger, house("R3", "L3", 20, account=HOUSE_ACCOUNT, lp="LP_B", seq=3))
    run = await ledger.recon(False, GRACE, T0, Covers(lps={"LP_B": None}))
    assert run.pending == 0


@pytest.mark.asyncio
async def test_what_the_caller_knows_covers(ledger: Ledger) -> None:
    await write(ledger, house("R1", "L1", 0, account=HOUSE_ACCOUNT, seq=1))
    await ledger.apply_statements([statement([line("L2", 1)])])
    # nothing later on either side: both pending by the records alone
    assert await recon(ledger) == []
    # the caller knows the feed and the statement complete up to t=10
    covers = Covers(feed=T0 + dt.timedelta(seconds=10), lps={"LP_A": T0 + dt.timedelta(seconds=10)})
    assert found(await recon(ledger, covers=covers)) == {
        ("missing_at_lp", "house/lp", "L1"),
        ("missing_in_house", "house/lp", "L2"),
    }
    # an LP that sends no statement: none of its fills is missing from one
    covers = Covers(feed=T0 + dt.timedelta(seconds=10), lps={"LP_A": None})
    assert found(await recon(ledger, full=True, covers=covers)) == {
        ("missing_in_house", "house/lp", "L2"),
    }


@pytest.mark.asyncio
async def test_an_lp_without_statements_loses_what_waits_for_or_misses_from_one(
    ledger: Ledger,
) -> None:
    # LP_A's statement misses L1 and has M1, which no fill was booked for;
    # L3 comes after its last line; LP_B's statement misses B1
    await write(ledger, house("R1", "L1", 0, account=HOUSE_ACCOUNT, seq=1))
    await write(ledger, house("B1", "B1", 0, account=HOUSE_ACCOUNT, lp="LP_B", seq=2))
    await write(ledger, house("R3", "L3", 30, account=HOUSE_ACCOUNT, seq=3))
    await ledger.apply_statements(
        [
            statement([line("M1", 10), line("L2", 20)]),
            StatementChange("/statements/LP_B.csv", "LP_B", False, [line("B2", 20, lp="LP_B")], []),
        ]
    )
    await write(ledger, house("R2", "L2", 20, account=HOUSE_ACCOUNT, seq=4))
    await write(ledger, house("RB2", "B2", 20, account=HOUSE_ACCOUNT, lp="LP_B", seq=5))
    run = await ledger.recon(False, GRACE, T0)
    expected = {
        ("missing_in_house", "house/lp", "M1"),
        ("missing_at_lp", "house/lp", "B1"),
    }
    assert found(await ledger.breaks()) == expected | {("missing_at_lp", "house/lp", "L1")}
    assert run.pending == 1  # L3, on LP_A's statement
    # LP_A declared to send no statement
    assert await ledger.without_statements(["LP_A"]) == (1, 1)
    assert found(await ledger.breaks()) == expected
    assert (await ledger.counts())["pending"] == 0
    # as a full run finds
    covers = Covers(lps={"LP_A": None})
    assert found(await recon(ledger, full=True, covers=covers)) == expected
    assert await ledger.without_statements(["LP_A"]) == (0, 0)


@pytest.mark.asyncio
async def test_each_drop_copy_covers_as_far_as_its_own_latest_trade(ledger: Ledger) -> None:
    gw1, gw2 = f"{SESSION}.gw1", f"{SESSION}.gw2"
    c1, h1, l1 = matched(1, 0)
    c3, h3, l3 = matched(3, 100)
    await ledger.write(gw1, 3, [c1, c3], [h1, h3])
    c2, h2, l2 = matched(2, 10)
    await ledger.write(gw2, 2, [c2], [h2])
    # a fill gw2 booked at t=50, on the statement, not delivered by gw2 yet;
    # and a client's fill gw2 delivered with no booking of it yet
    await ledger.write(gw2, 4, [client("C7", 8, seq=4)], [])
    await ledger.apply_statements([statement([l1, l2, line("L50", 50), l3])])
    behind = Covers(feeds={gw1: None, gw2: None})
    run = await ledger.recon(False, GRACE, T0, behind)
    assert (run.breaks, run.pending) == (0, 2)
    assert await recon(ledger, full=True, covers=behind) == []
    # the caller knows gw2 caught up to t=30: the client's fill is a break,
    # the LP's line at t=50 is not yet
    gw2_at_30 = Covers(feeds={gw1: None, gw2: T0 + dt.timedelta(seconds=30)})
    assert found(await recon(ledger, covers=gw2_at_30)) == {
        ("uncovered_client_fill", "client/house", "C7"),
    }
    # gw2 delivers up to t=60, without the booking: missing in the house
    c8, h8, l8 = matched(8, 60)
    await ledger.write(gw2, 9, [c8], [h8])
    await ledger.apply_statements([statement([l8])])
    assert found(await recon(ledger, covers=behind)) == {
        ("uncovered_client_fill", "client/house", "C7"),
        ("missing_in_house", "house/lp", "L50"),
    }
    # a feed the ledger has never heard of holds everything that waits on the drop copy
    assert (
        found(await recon(ledger, full=True, covers=Covers(feeds={gw1: None, "new": None})))
        == set()
    )


@pytest.mark.asyncio
async def test_a_replaced_statement_reexamines_the_removed_line_and_a_correction_clears_it(
    ledger: Ledger,
) -> None:
    trades = [matched(1, 0), matched(2, 1), matched(3, 20)]
    await write(ledger, *(t for c, h, _ in trades for t in (c, h)))
    await ledger.apply_statements([statement([t[2] for t in trades])])
    assert await recon(ledger) == []
    # the LP corrects its statement: L2 is no longer on it
    await ledger.apply_statements([statement([trades[0][2], trades[2][2]], replace=True)])
    breaks = await recon(ledger)
    assert found(breaks) == {("missing_at_lp", "house/lp", "L2")}
    assert breaks[0].key == "LP_A|CH-L2|L2"
    # and restores it
    await ledger.apply_statements([statement([t[2] for t in trades], replace=True)])
    assert await recon(ledger) == []
    assert await recon(ledger, full=True) == []


@pytest.mark.asyncio
async def test_position_breaks_are_replaced_and_keep_their_first_seen(ledger: Ledger) -> None:
    await load_every_break(ledger)
    await ledger.recon(False, GRACE, T0)
    pos = Break(
        kind="client_position_mismatch",
        records="gateway/ledger",
        key="C1|EUR/USD",
        ref="C1 EUR/USD",
        ours="1000",
        theirs="2000",
    )
    later = T0 + dt.timedelta(hours=1)
    await ledger.set_position_breaks([pos], later)
    await ledger.set_position_breaks([pos], later + dt.timedelta(hours=1))
    breaks = await ledger.breaks()
    assert [b.first_seen for b in breaks if b.kind == pos.kind] == [later]
    await ledger.recon(True, GRACE, later)  # a full run leaves position breaks alone
    assert len(await ledger.breaks()) == len(EXPECTED) + 1
    await ledger.set_position_breaks([], later)
    assert found(await ledger.breaks()) == EXPECTED


# -- reports ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_lp_correction_of_a_fill_reconciles_with_its_statement(ledger: Ledger) -> None:
    """An LP's Trade Correct (ExecID Y1) of a fill (L1, 3,000 at 1.1) as the
    gateway books it: the client's fill stands, the house reverses the fill
    at the LP (Y1.reversal) and books the corrected one (Y1, 5,000 at
    1.09).  A statement listing the fill, its reversing line and the
    corrected line matches line for line; one that lists the corrected line
    alone leaves the fill and its reversal missing at the LP, a pair that
    nets to nothing, and the positions agree either way."""

    def of_l1(trade: HouseTrade) -> HouseTrade:
        return msgspec.structs.replace(trade, child_id="CH-L1")

    def on_l1(trade: LpTrade) -> LpTrade:
        return msgspec.structs.replace(trade, cl_ord_id="CH-L1")

    await write(
        ledger,
        client("C1", 0, qty="3000"),
        house("CH-L1/L1", "L1", 0, client_exec_id="C1", qty="3000"),
        of_l1(
            house(
                "CH-L1/Y1.reversal/house",
                "Y1.reversal",
                20,
                account=HOUSE_ACCOUNT,
                side=-1,
                qty="3000",
            )
        ),
        of_l1(house("CH-L1/Y1/house", "Y1", 20, account=HOUSE_ACCOUNT, qty="5000", price="1.09")),
    )
    await ledger.apply_statements(
        [
            statement(
                [
                    line("L1", 0, qty="3000"),
                    on_l1(line("Y1.reversal", 20, side=-1, qty="3000")),
                    on_l1(line("Y1", 20, qty="5000", price="1.09")),
                    line("L9", 40),
                ]
            )
        ]
    )
    await write(ledger, house("CH-L9/L9", "L9", 40, account=HOUSE_ACCOUNT, seq=2))
    assert await recon(ledger, full=True) == []
    positions = await ledger.positions()
    assert positions["lps"] == positions["lp_statements"]
    assert positions["lps"] == [Position("LP_A", "EUR/USD", "6000.00000000")]
    # the statement read again whole, the fill and its reversal left out
    await ledger.apply_statements(
        [
            statement(
                [on_l1(line("Y1", 20, qty="5000", price="1.09")), line("L9", 40)],
                replace=True,
            )
        ]
    )
    assert found(await recon(ledger, full=True)) == {
        ("missing_at_lp", "house/lp", "L1"),
        ("missing_at_lp", "house/lp", "Y1.reversal"),
    }
    positions = await ledger.positions()
    assert positions["lps"] == positions["lp_statements"]


@pytest.mark.asyncio
async def test_positions_of_clients_the_house_and_the_lps(ledger: Ledger) -> None:
    await write(
        ledger,
        client("C1", 0, qty="1000", seq=1),
        house("R1", "L1", 0, client_exec_id="C1", qty="1000", seq=1),
        client("C2", 1, account="C2", side=-1, qty="500", market="LP_B", seq=2),
        house("R2", "M2", 1, lp="LP_B", account="C2", client_exec_id="C2", side=-1, qty="500"),
        house("R3", "M3", 2, lp="LP_B", account=HOUSE_ACCOUNT, qty="200", seq=3),
        client("C4", 3, symbol="BTC/USD", qty="0.5", price="60000", seq=4),
        house("R4", "L4", 3, client_exec_id="C4", symbol="BTC/USD", qty="0.5", price="60000"),
    )
    await ledger.apply_statements(
        [statement([line("L1", 0), line("L4", 3, symbol="BTC/USD", qty="0.25", price="60000")])]
    )
    positions = await ledger.positions()
    assert positions["clients"] == [
        Position(HOUSE_ACCOUNT, "EUR/USD", "200.00000000"),
        Position("C1", "BTC/USD", "0.50000000"),
        Position("C1", "EUR/USD", "1000.00000000"),
        Position("C2", "EUR/USD", "-500.00000000"),
    ]
    assert positions["lps"] == [
        Position("LP_A", "BTC/USD", "0.50000000"),
        Position("LP_A", "EUR/USD", "1000.00000000"),
        Position("LP_B", "EUR/USD", "-300.00000000"),
    ]
    assert positions["lp_statements"] == [
        Position("LP_A", "BTC/USD", "0.25000000"),
        Position("LP_A", "EUR/USD", "1000.00000000"),
    ]


@pytest.fixture(params=["duckdb", "postgres-icu"])
def collated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A DuckDB ledger, or a PostgreSQL database whose collation is ICU's
    ``en-US`` (which orders ``(house)`` after ``C1``, and ``alpha`` before
    ``Beta``), not the tests' usual ``C``."""
    if request.param == "duckdb":
        yield f"duckdb:{tmp_path / 'ledger.duckdb'}"
        return
    postgres: PgServer = request.getfixturevalue("postgres")
    name = f"icu_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _sql(
            postgres.url,
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C'",
        )
    )
    yield postgres.url_of(name)
    asyncio.run(_sql(postgres.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.mark.asyncio
async def test_reports_are_ordered_by_code_points_whatever_the_databases_collation(
    collated_url: str,
) -> None:
    """Positions, settlement lines and breaks come in the order of their
    texts' code points on both ledgers, as the books kept beside them order
    them, even where the database's collation would order them otherwise."""
    ledger = make_ledger(collated_url)
    await ledger.open()
    try:
        accounts = ("alpha", "Beta", HOUSE_ACCOUNT, "C1", "c_2", "_z")
        trades: list[ClientTrade | HouseTrade] = []
        for n, account in enumerate(accounts, 1):
            symbol = "EUR/USD" if n % 2 else "BTC/USD"
            price = "1.1" if n % 2 else "60000"
            if account != HOUSE_ACCOUNT:
                trades.append(client(f"C{n}", n, account=account, symbol=symbol, price=price))
            lp = "lp_b" if n % 3 else "LP_A"
            trades.append(
                house(f"R{n}", f"L{n}", n, account=account, lp=lp, symbol=symbol, price=price)
            )
        await write(ledger, *trades)
        positions = await ledger.positions()
        for kind in ("clients", "lps"):
            listed = [(p.holder, p.symbol) for p in positions[kind]]
            assert listed == sorted(listed), kind
        assert [p.holder for p in positions["clients"]][:2] == [HOUSE_ACCOUNT, "Beta"]
        assert PositionBook(positions).positions() == positions
        lines = await ledger.settlement(dt.date(2026, 3, 1))
        keys = [(x.kind, x.counterparty, x.value_date, x.currency) for x in lines]
        assert keys == sorted(keys)
        assert [x.counterparty for x in lines][:1] == ["Beta"]
        book = SettlementBook(await ledger.settlement_sums(dt.date(2026, 3, 1)))
        assert book.lines(dt.date(2026, 3, 1), SETTLEMENT.minor_units) == lines
        # breaks of one moment: by kind, then key
        await ledger.set_position_breaks(
            [
                Break(
                    kind="client_position_mismatch",
                    records="gateway/ledger",
                    key=f"{account}|EUR/USD",
                    ref=f"{account} EUR/USD",
                    ours="1",
                    theirs="2",
                )
                for account in accounts
            ],
            T0,
        )
        listed = [b.key for b in await ledger.breaks()]
        assert listed == sorted(listed)
        assert listed[0].startswith(HOUSE_ACCOUNT)
    finally:
        await ledger.close()


@pytest.fixture(params=["duckdb", "postgres-icu-shifted"])
def punctuation_blind_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A DuckDB ledger, or a PostgreSQL database whose collation passes
    over punctuation, as glibc's ``en_US.UTF-8`` does (``(house)`` after
    ``C1``)."""
    if request.param == "duckdb":
        yield f"duckdb:{tmp_path / 'ledger.duckdb'}"
        return
    postgres: PgServer = request.getfixturevalue("postgres")
    name = f"icu_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _sql(
            postgres.url,
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US-u-ka-shifted' LOCALE 'C'",
        )
    )
    yield postgres.url_of(name)
    asyncio.run(_sql(postgres.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.mark.asyncio
async def test_a_fill_split_with_the_house_missing_at_lp_names_its_client_on_both_ledgers(
    punctuation_blind_url: str,
) -> None:
    ledger = make_ledger(punctuation_blind_url)
    await ledger.open()
    try:
        # 600 of an LP fill booked to C1, 400 to the house; not on the
        # statement, which has come past it
        await write(
            ledger,
            client("C1", 0, qty="600", seq=1),
            house("CH-L1/L1", "L1", 0, client_exec_id="C1", qty="600", seq=2),
            house("CH-L1/L1/house", "L1", 0, account=HOUSE_ACCOUNT, qty="400", seq=3),
            house("R9", "L9", 30, account=HOUSE_ACCOUNT, seq=4),
        )
        await ledger.apply_statements([statement([line("L9", 30)])])
        (missing,) = await recon(ledger, full=True)
        assert (missing.kind, missing.ref, missing.ours) == (
            "missing_at_lp",
            "L1",
            "buy 1000.00000000 @ 1.10000000",
        )
        assert missing.client == "C1"
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_positions_kept_batch_by_batch_are_the_ledgers(ledger: Ledger) -> None:
    book = PositionBook(await ledger.positions())
    assert (
        book.positions()
        == await ledger.positions()
        == {
            "clients": [],
            "lps": [],
            "lp_statements": [],
        }
    )
    batches: list[list[ClientTrade | HouseTrade] | StatementChange] = [
        [
            client("C1", 0, qty="1000", seq=1),
            house("R1", "L1", 0, client_exec_id="C1", qty="1000", seq=1),
            house("R3", "M3", 2, lp="LP_B", account=HOUSE_ACCOUNT, qty="200.5", seq=2),
        ],
        statement([line("L1", 0)]),
        # C1 and its booking again, as a resend brings them: stored once
        [
            client("C1", 0, qty="1000", seq=1),
            house("R1", "L1", 0, client_exec_id="C1", qty="1000", seq=1),
            client("C2", 1, account="C2", side=-1, qty="0.001", market="LP_B", seq=3),
            house(
                "R2", "M2", 1, lp="LP_B", account="C2", client_exec_id="C2", side=-1, qty="0.001"
            ),
            client("C5", 4, side=-1, qty="1000", seq=4),  # C1 flat again: a position of 0
        ],
        statement([line("L4", 3, symbol="BTC/USD", qty="0.25", price="60000")]),
    ]
    last = ledger.last_ingest
    for batch in batches:
        if isinstance(batch, StatementChange):
            ingest = await ledger.apply_statements([batch])
        else:
            ingest = await write(ledger, *batch)
        assert ingest == ledger.last_ingest
        book.add(await ledger.batch_positions(last, ingest))
        last = ingest
        assert book.positions() == await ledger.positions()
    # a file read again whole: the lines it no longer has are removed, and
    # the ledger says by which batch (the book is then read whole)
    assert ledger.lines_removed_at == 0  # none removed yet
    again = await ledger.apply_statements([statement([line("L1", 0)], replace=True)])
    assert ledger.lines_removed_at == again
    assert PositionBook(await ledger.positions()).positions()["lp_statements"] == [
        Position("LP_A", "EUR/USD", "1000.00000000")
    ]
    last = again
    # two batches read at once: the same as one at a time
    two = PositionBook(await ledger.positions())
    first = await write(ledger, client("C6", 5, qty="7", seq=5))
    second = await ledger.apply_statements([statement([line("L6", 5, qty="7")])])
    two.add(await ledger.batch_positions(last, second))
    assert first == last + 1
    assert two.positions() == await ledger.positions()
    assert book.positions()["clients"] == [
        Position(HOUSE_ACCOUNT, "EUR/USD", "200.50000000"),
        Position("C1", "EUR/USD", "0.00000000"),
        Position("C2", "EUR/USD", "-0.00100000"),
    ]


def _amounts(lines: Iterable[Any]) -> dict[tuple[str, str, str, dt.date], Decimal]:
    return {(x.counterparty, x.kind, x.currency, x.value_date): Decimal(x.amount) for x in lines}


@pytest.mark.asyncio
async def test_settlement_amounts_and_value_dates(ledger: Ledger) -> None:
    friday = dt.datetime(2026, 3, 6, 10)
    saturday = dt.datetime(2026, 3, 7, 10)
    await write(
        ledger,
        # a client buys 1,000 EUR/USD at 1.1 on Monday; the house buys it from LP_A
        client("C1", 0, qty="1000", price="1.1", seq=1),
        house("R1", "L1", 0, client_exec_id="C1", qty="1000", price="1.1", seq=1),
        # T+1: USD/CAD
        client("C2", 1, symbol="USD/CAD", side=-1, qty="2000", price="1.35", seq=2),
        # Friday: T+2 is Tuesday
        client("C3", 0, qty="3000", price="1.2", start=friday, seq=3),
        # crypto settles on calendar days, T+0, Saturday too
        client("C4", 0, symbol="BTC/USD", qty="0.5", price="60000", start=saturday, seq=4),
    )
    lines = await ledger.settlement(dt.date(2026, 3, 1))
    assert _amounts(lines) == {
        ("C1", "client", "EUR", dt.date(2026, 3, 4)): Decimal("-1000"),
        ("C1", "client", "USD", dt.date(2026, 3, 4)): Decimal("1100"),
        ("LP_A", "lp", "EUR", dt.date(2026, 3, 4)): Decimal("1000"),
        ("LP_A", "lp", "USD", dt.date(2026, 3, 4)): Decimal("-1100"),
        ("C1", "client", "USD", dt.date(2026, 3, 3)): Decimal("2000"),
        ("C1", "client", "CAD", dt.date(2026, 3, 3)): Decimal("-2700"),
        ("C1", "client", "EUR", dt.date(2026, 3, 10)): Decimal("-3000"),
        ("C1", "client", "USD", dt.date(2026, 3, 10)): Decimal("3600"),
        ("C1", "client", "BTC", dt.date(2026, 3, 7)): Decimal("-0.5"),
        ("C1", "client", "USD", dt.date(2026, 3, 7)): Decimal("30000"),
    }
    for x in lines:
        assert x.value_date.isoformat() in {
            SETTLEMENT.value_date(s, d)
            for s, d in (
                ("EUR/USD", DAY),
                ("USD/CAD", DAY),
                ("EUR/USD", "2026-03-06"),
                ("BTC/USD", "2026-03-07"),
            )
        }
    # the report is sorted: kind, counterparty, value date, currency
    keys = [(x.kind, x.counterparty, x.value_date, x.currency) for x in lines]
    assert keys == sorted(keys)
    later = await ledger.settlement(dt.date(2026, 3, 5))
    assert {x.value_date for x in later} == {dt.date(2026, 3, 7), dt.date(2026, 3, 10)}
    first = ledger.last_ingest
    days = {dt.date(2026, 3, 2): first, dt.date(2026, 3, 6): first, dt.date(2026, 3, 7): first}
    assert await ledger.trading_days() == days
    # each day with the last batch that stored one of its trades
    await write(ledger, house("R9", "L9", 5, account=HOUSE_ACCOUNT, start=friday, seq=9))
    assert ledger.last_ingest > first
    assert await ledger.trading_days() == {**days, dt.date(2026, 3, 6): ledger.last_ingest}


@pytest.mark.asyncio
async def test_trades_in_a_symbol_not_listed_settle_in_its_names_currencies(
    ledger: Ledger,
) -> None:
    await write(
        ledger,
        # GBP/JPY and UK100 are in no [[instruments]] of this config
        client("C1", 0, symbol="GBP/JPY", qty="1000", price="190.5", seq=1),
        house("R1", "L1", 0, client_exec_id="C1", symbol="GBP/JPY", price="190.5", seq=1),
        client("C2", 1, symbol="UK100", side=-1, qty="2", price="8000", seq=2),
    )
    monday = dt.date(2026, 3, 2)  # settled on the trade date
    assert _amounts(await ledger.settlement(monday)) == {
        ("C1", "client", "GBP", monday): Decimal("-1000"),
        ("C1", "client", "JPY", monday): Decimal("190500"),
        ("LP_A", "lp", "GBP", monday): Decimal("1000"),
        ("LP_A", "lp", "JPY", monday): Decimal("-190500"),
        ("C1", "client", "UK100", monday): Decimal("2"),
        ("C1", "client", "USD", monday): Decimal("-16000"),
    }


@pytest.mark.asyncio
async def test_a_pair_written_without_a_slash_settles_in_its_two_currencies(
    ledger_url: str,
) -> None:
    url = ledger_url.removeprefix("duckdb:")
    terms = Settlement([_instrument("EURUSD", "fx", quote_currency="USD")])
    ledger = DuckLedger(url, terms) if ledger_url.startswith("duckdb:") else PgLedger(url, terms)
    await ledger.open()
    try:
        await write(
            ledger,
            client("C1", 0, symbol="EURUSD", qty="1000", price="1.1", seq=1),
            house("R1", "L1", 0, client_exec_id="C1", symbol="EURUSD", price="1.1", seq=1),
        )
        wednesday = dt.date(2026, 3, 4)
        assert _amounts(await ledger.settlement(dt.date(2026, 3, 2))) == {
            ("C1", "client", "EUR", wednesday): Decimal("-1000"),
            ("C1", "client", "USD", wednesday): Decimal("1100"),
            ("LP_A", "lp", "EUR", wednesday): Decimal("1000"),
            ("LP_A", "lp", "USD", wednesday): Decimal("-1100"),
        }
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_each_leg_is_rounded_to_its_currencys_minor_units_before_netting(
    ledger_url: str,
) -> None:
    url = ledger_url.removeprefix("duckdb:")
    # ABC is known to no table unless the config names it
    terms = Settlement([_instrument("EUR/USD", "fx")], {"ABC": 2, "EUR": 3})
    ledger = DuckLedger(url, terms) if ledger_url.startswith("duckdb:") else PgLedger(url, terms)
    await ledger.open()
    try:
        await write(
            ledger,
            # 1,123.456 USD: 1,123.46; the house's cover the opposite
            client("C1", 0, qty="1000", price="1.123456", seq=1),
            house("R1", "L1", 0, client_exec_id="C1", qty="1000", price="1.123456", seq=1),
            # two fills of 1.005 USD each: 1.01 each, 2.02 netted (not 2.01)
            client("C2", 1, qty="1", price="1.005", seq=2),
            client("C3", 2, qty="1", price="1.005", seq=3),
            # JPY has no decimals: the house pays 150,505.5, rounded away from zero
            client("C4", 3, symbol="USD/JPY", side=-1, qty="1000", price="150.5055", seq=4),
            # KWD has three: 307.0555 is 307.056
            client("C5", 4, symbol="USD/KWD", qty="1000", price="0.3070555", seq=5),
            # a code in no table keeps 8 decimals; the config's ABC two
            client("C6", 5, symbol="XYZ/ABC", qty="1", price="1.23456789", seq=6),
            # EUR overridden to three decimals: the base leg -0.1235 is -0.124
            client("C7", 6, qty="0.1235", price="1", seq=7),
        )
        wednesday, monday = dt.date(2026, 3, 4), dt.date(2026, 3, 2)
        lines = await ledger.settlement(monday)
        # written with the currency's decimals (a code with none known: the ledger's 8)
        assert {(x.counterparty, x.currency, x.value_date): x.amount for x in lines} == {
            ("C1", "EUR", wednesday): "-1002.124",
            ("C1", "USD", wednesday): "1125.60",
            ("LP_A", "EUR", wednesday): "1000.000",
            ("LP_A", "USD", wednesday): "-1123.46",
            ("C1", "USD", monday): "0.00",
            ("C1", "JPY", monday): "-150506",
            ("C1", "KWD", monday): "307.056",
            ("C1", "XYZ", monday): "-1.00000000",
            ("C1", "ABC", monday): "1.23",
        }
        assert _amounts(lines) == {
            ("C1", "client", "EUR", wednesday): Decimal("-1002.124"),
            ("C1", "client", "USD", wednesday): Decimal("1125.60"),  # 1,123.46 + 2.02 + 0.12
            ("LP_A", "lp", "EUR", wednesday): Decimal("1000"),
            ("LP_A", "lp", "USD", wednesday): Decimal("-1123.46"),
            ("C1", "client", "USD", monday): Decimal("-1000") + Decimal("1000"),
            ("C1", "client", "JPY", monday): Decimal("-150506"),
            ("C1", "client", "KWD", monday): Decimal("307.056"),
            ("C1", "client", "XYZ", monday): Decimal("-1"),
            ("C1", "client", "ABC", monday): Decimal("1.23"),
        }
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_a_leg_is_rounded_once_from_its_exact_amount(ledger_url: str, tmp_path: Path) -> None:
    """A quantity and a price of eight decimals each make an amount of up
    to sixteen: 2,647.035 DOGE at 0.123457 USD is 326.794999995 USD, which
    the confirmation states as 326.79.  Rounded to the ledger's 8 decimals
    first (326.79500000), it would round up to 326.80."""
    url = ledger_url.removeprefix("duckdb:")
    doge = _instrument("DOGE/USD", "crypto", tick_size="0.000001", lot_size="0.001")
    terms = Settlement([doge])
    ledger = DuckLedger(url, terms) if ledger_url.startswith("duckdb:") else PgLedger(url, terms)
    await ledger.open()
    try:
        await write(
            ledger,
            client("C1", 0, symbol="DOGE/USD", qty="2647.035", price="0.123457", seq=1),
            house(
                "R1",
                "L1",
                0,
                client_exec_id="C1",
                symbol="DOGE/USD",
                qty="2647.035",
                price="0.123457",
                seq=1,
            ),
            # sold: the house pays 105.564999995, 105.56
            client(
                "C2",
                1,
                account="C2",
                symbol="DOGE/USD",
                side=-1,
                qty="1055.555",
                price="0.100009",
                seq=2,
            ),
        )
        monday = dt.date(2026, 3, 2)
        usd = {
            (x.counterparty, x.currency): x.amount
            for x in await ledger.settlement(monday)
            if x.currency == "USD"
        }
        assert usd == {
            ("C1", "USD"): "326.79",
            ("C2", "USD"): "-105.56",
            ("LP_A", "USD"): "-326.79",
        }
        book = SettlementBook(await ledger.settlement_sums(monday))
        assert book.lines(monday, terms.minor_units) == await ledger.settlement(monday)
        folder = tmp_path / "exports"
        await ledger.export_day(monday, str(folder))
        con = duckdb.connect()
        try:
            for suffix in ("parquet", "csv"):
                rows = con.execute(
                    "SELECT counterparty, CAST(CAST(amount AS DECIMAL(38, 2)) AS VARCHAR) "
                    f"FROM '{folder}/settlement-20260302.{suffix}' WHERE currency = 'USD'"
                ).fetchall()
                assert rows == [("C1", "326.79"), ("C2", "-105.56"), ("LP_A", "-326.79")]
        finally:
            con.close()
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_the_settlement_kept_batch_by_batch_is_the_ledgers_to_the_last_digit(
    ledger_url: str,
) -> None:
    url = ledger_url.removeprefix("duckdb:")
    terms = Settlement(
        [_instrument("EUR/USD", "fx"), _instrument("USD/CAD", "fx", settlement_days=1)],
        {"ABC": 2, "EUR": 3},
    )
    ledger = DuckLedger(url, terms) if ledger_url.startswith("duckdb:") else PgLedger(url, terms)
    await ledger.open()
    monday, tuesday, wednesday = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 4)
    friday = dt.datetime(2026, 3, 6, 10)
    minor = terms.minor_units
    try:
        book = SettlementBook(await ledger.settlement_sums(monday))
        assert book.lines(monday, minor) == []
        cover = house("R1", "L1", 2, client_exec_id="C1", qty="1", price="1.005", seq=3)
        batches = [
            # 1.005 USD twice: each leg 1.01, 2.02 netted (not 2.01)
            [
                client("C1", 0, qty="1", price="1.005", seq=1),
                client("C2", 1, qty="1", price="1.005"),
            ],
            # the house's cover, a T+1 pair, a code in no table (8 decimals), one the config names
            [
                cover,
                client("C3", 3, symbol="USD/CAD", side=-1, qty="2000", price="1.35", seq=4),
                client("C4", 4, symbol="XYZ/ABC", qty="1", price="1.23456789", seq=5),
            ],
            # C1 and its cover again, as a resend after an outage brings them: stored once
            [client("C1", 0, qty="1", price="1.005", seq=1), cover],
            [client("C1", 0, qty="1", price="1.005", seq=1), client("C5", 5, side=-1, qty="2")],
            # Friday's: settles next Tuesday; EUR has three decimals here
            [client("C6", 0, qty="0.1235", price="1", start=friday, seq=7)],
        ]
        last = ledger.last_ingest
        for batch in batches:
            ingest = await write(ledger, *batch)
            sums = await ledger.batch_settlement_sums(last, ingest)
            last = ingest
            if batch == batches[2]:
                assert sums == []  # nothing new in it
            book.add(sums)
            assert book.lines(monday, minor) == await ledger.settlement(monday)
        lines = await ledger.settlement(monday)
        amounts = {(x.counterparty, x.currency, x.value_date): x.amount for x in lines}
        assert (
            amounts.items()
            >= {
                ("C1", "USD", wednesday): "-0.18",  # 1.01 + 1.01 - 2.20
                ("C1", "EUR", wednesday): "0.000",  # bought 2, sold 2: a line of nothing
                ("LP_A", "USD", wednesday): "-1.01",
                ("C1", "CAD", tuesday): "-2700.00",
                ("C1", "XYZ", monday): "-1.00000000",
                ("C1", "ABC", monday): "1.23",
                ("C1", "EUR", dt.date(2026, 3, 10)): "-0.124",
            }.items()
        )
        # later days, in turn: the settled amounts let go of, the rest the same
        for day in (tuesday, wednesday, dt.date(2026, 3, 5)):
            assert book.lines(day, minor) == await ledger.settlement(day)
        # a book started from the ledger later holds the same
        later = SettlementBook(await ledger.settlement_sums(wednesday))
        assert later.lines(wednesday, minor) == await ledger.settlement(wednesday)
    finally:
        await ledger.close()


# the exported columns' types, the same whichever the backend
TYPES = {
    "exec_id": "VARCHAR",
    "client": "VARCHAR",
    "order_id": "VARCHAR",
    "cl_ord_id": "VARCHAR",
    "symbol": "VARCHAR",
    "side": "SMALLINT",
    "qty": "DECIMAL(18,8)",
    "price": "DECIMAL(18,8)",
    "market": "VARCHAR",
    "transact_time": "TIMESTAMP",
    "trade_date": "DATE",
    "value_date": "DATE",
    "seq": "BIGINT",
    "ingest": "BIGINT",
    "report_id": "VARCHAR",
    "lp": "VARCHAR",
    "lp_exec_id": "VARCHAR",
    "child_id": "VARCHAR",
    "account": "VARCHAR",
    "client_exec_id": "VARCHAR",
    "x_key": "VARCHAR",
    "hl_key": "VARCHAR",
    "counterparty": "VARCHAR",
    "kind": "VARCHAR",
    "currency": "VARCHAR",
    "amount": "DECIMAL(38,8)",
}
EXPORTS = {
    "client-trades": [c.strip() for c in sql.CLIENT_COLUMNS.split(",")],
    "lp-trades": [c.strip() for c in sql.HOUSE_COLUMNS.split(",")],
    "settlement": ["counterparty", "kind", "currency", "value_date", "amount"],
}


@pytest.mark.asyncio
async def test_export_day_writes_six_files_of_the_days_rows(ledger: Ledger, tmp_path: Path) -> None:
    await write(
        ledger,
        client("C1", 0, qty="1000", price="1.1", seq=1),
        house("R1", "L1", 0, client_exec_id="C1", qty="1000", price="1.1", seq=1),
        house("R2", "L2", 1, account=HOUSE_ACCOUNT, side=-1, qty="250", price="1.10001", seq=2),
        client('C,"3"', 2, account="C2", market="LP_B", seq=3),  # quoted in CSV
        client("C5", 0, start=T0 + dt.timedelta(days=1), seq=5),  # another day
    )
    folder = tmp_path / "exports"
    files = await ledger.export_day(dt.date(2026, 3, 2), str(folder))
    names = sorted(Path(f).name for f in files)
    assert names == sorted(
        f"{kind}-20260302.{suffix}"
        for kind in ("client-trades", "lp-trades", "settlement")
        for suffix in ("parquet", "csv")
    )
    assert sorted(p.name for p in folder.iterdir()) == names  # no temporary file left
    con = duckdb.connect()

    def table(name: str, suffix: str) -> str:
        path = f"'{folder}/{name}-20260302.{suffix}'"
        if suffix == "parquet":
            return f"read_parquet({path})"
        return f"read_csv({path}, header = true, allow_quoted_nulls = false)"

    for name, columns in EXPORTS.items():
        described = con.execute(f"DESCRIBE SELECT * FROM {table(name, 'parquet')}").fetchall()
        assert [(r[0], r[1]) for r in described] == [(c, TYPES[c]) for c in columns]
        header = (folder / f"{name}-20260302.csv").read_text().splitlines()[0]
        assert header.split(",") == columns
    for suffix in ("parquet", "csv"):
        rows = con.execute(
            "SELECT exec_id, client, CAST(qty AS DECIMAL(18, 8)), value_date "
            f"FROM {table('client-trades', suffix)}"
        ).fetchall()
        assert rows == [
            ("C1", "C1", Decimal("1000"), dt.date(2026, 3, 4)),
            ('C,"3"', "C2", Decimal("1000"), dt.date(2026, 3, 4)),
        ]
        houses = con.execute(
            "SELECT report_id, account, client_exec_id, side, "
            "CAST(CAST(price AS DECIMAL(18, 8)) AS VARCHAR) "
            f"FROM {table('lp-trades', suffix)}"
        ).fetchall()
        assert houses == [
            ("R1", "C1", "C1", 1, "1.10000000"),
            ("R2", HOUSE_ACCOUNT, "", -1, "1.10001000"),
        ]
        amounts = con.execute(
            "SELECT counterparty, kind, currency, value_date, CAST(amount AS DECIMAL(38, 8)) "
            f"FROM {table('settlement', suffix)}"
        ).fetchall()
        assert amounts == [
            ("C1", "client", "EUR", dt.date(2026, 3, 4), Decimal("-1000")),
            ("C1", "client", "USD", dt.date(2026, 3, 4), Decimal("1100")),
            ("C2", "client", "EUR", dt.date(2026, 3, 4), Decimal("-1000")),
            ("C2", "client", "USD", dt.date(2026, 3, 4), Decimal("1100")),
            ("LP_A", "lp", "EUR", dt.date(2026, 3, 4), Decimal("750")),
            # -1,100 and +275.0025 rounded to cents
            ("LP_A", "lp", "USD", dt.date(2026, 3, 4), Decimal("-825")),
        ]
    con.close()


@pytest.mark.asyncio
async def test_export_to_a_folder_named_with_a_quote(ledger: Ledger, tmp_path: Path) -> None:
    await write(ledger, client("C1", 0, seq=1), house("R1", "L1", 0, client_exec_id="C1", seq=1))
    folder = tmp_path / "treasury's exports"
    files = await ledger.export_day(dt.date(2026, 3, 2), str(folder))
    assert len(files) == 6
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(f).name for f in files)
    rows = (folder / "client-trades-20260302.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["exec_id", "C1"]


def _csv_ids(path: Path) -> list[str]:
    return [row.split(",")[0] for row in path.read_text().splitlines()[1:]]


@pytest.mark.asyncio
async def test_a_pinned_day_is_exported_as_it_was_while_trades_are_stored_beside_it(
    ledger: Ledger, tmp_path: Path
) -> None:
    await write(ledger, client("C1", 0, seq=1), house("R1", "L1", 0, client_exec_id="C1", seq=1))
    pinned = await ledger.pin_day(dt.date(2026, 3, 2))
    try:
        assert pinned.day == dt.date(2026, 3, 2)
        # stored after the pin: not in this export (the service marks the
        # day to be exported again)
        await write(
            ledger, client("C2", 1, seq=2), house("R2", "L2", 1, client_exec_id="C2", seq=2)
        )
        folder = tmp_path / "exports"
        # and stored while the files are written: the writes are not held
        files, _ = await asyncio.gather(
            pinned.write(str(folder)),
            write(ledger, client("C3", 2, seq=3), house("R3", "L3", 2, client_exec_id="C3", seq=3)),
        )
    finally:
        await pinned.close()
    await pinned.close()  # closing twice is closing once
    assert len(files) == 6
    assert _csv_ids(folder / "client-trades-20260302.csv") == ["C1"]
    assert _csv_ids(folder / "lp-trades-20260302.csv") == ["R1"]
    con = duckdb.connect()
    amounts = con.execute(
        f"SELECT counterparty, currency, CAST(amount AS DECIMAL(38, 8)) "
        f"FROM read_parquet('{folder}/settlement-20260302.parquet') ORDER BY 1, 2"
    ).fetchall()
    con.close()
    assert amounts == [
        ("C1", "EUR", Decimal("-1000")),
        ("C1", "USD", Decimal("1100")),
        ("LP_A", "EUR", Decimal("1000")),
        ("LP_A", "USD", Decimal("-1100")),
    ]
    # the ledger itself has all three, and a new export has them
    assert (await ledger.counts())["client_trades"] == 3
    await ledger.export_day(dt.date(2026, 3, 2), str(folder))
    assert _csv_ids(folder / "client-trades-20260302.csv") == ["C1", "C2", "C3"]
    with pytest.raises(LedgerError, match="closed"):
        await pinned.write(str(folder))


async def _export_sessions(url: str) -> int:
    """The back office's connections open on the database at ``url``."""
    con = await asyncpg.connect(url)
    try:
        return int(
            await con.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'fixgw-backoffice' AND datname = current_database()"
            )
        )
    finally:
        await con.close()


@pytest.mark.asyncio
async def test_a_ledger_closed_with_a_day_pinned_lets_the_snapshot_go(
    ledger_url: str, tmp_path: Path
) -> None:
    opened = make_ledger(ledger_url)
    await opened.open()
    await write(opened, client("C1", 0, seq=1))
    pinned = await opened.pin_day(dt.date(2026, 3, 2))
    postgres = ledger_url.startswith("postgresql")
    if postgres:
        assert await _export_sessions(ledger_url) == 2  # the ledger's and the export's
    await opened.close()
    assert opened._pinned == set()  # type: ignore[attr-defined]
    if postgres:
        assert await _export_sessions(ledger_url) == 0
    with pytest.raises(LedgerError, match="is closed"):
        await pinned.write(str(tmp_path / "exports"))
    assert not (tmp_path / "exports").exists()
    await pinned.close()


@pytest.mark.asyncio
async def test_a_pin_that_fails_leaves_nothing_open(ledger_url: str) -> None:
    opened = make_ledger(ledger_url)
    await opened.open()
    try:

        @contextlib.asynccontextmanager
        async def refused() -> AsyncIterator[None]:
            raise RuntimeError("the caller's guard failed")
            yield  # an async generator

        with pytest.raises(RuntimeError, match="guard failed"):
            await opened.pin_day(dt.date(2026, 3, 2), refused)
        assert opened._pinned == set()  # type: ignore[attr-defined]
        if ledger_url.startswith("postgresql"):
            assert await _export_sessions(ledger_url) == 1  # the ledger's own
    finally:
        await opened.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_duckdb_file_deleted_or_replaced_while_open_refuses_every_write(
    tmp_path: Path, how: str
) -> None:
    """DuckDB writes on into the file it opened, which a deletion or a file
    moved over it has taken from the path: what it writes then is not in
    the file the next start opens.  Each write says so, naming the file."""
    path = tmp_path / "ledger.duckdb"
    opened = DuckLedger(path, SETTLEMENT)
    await opened.open()
    try:
        await write(opened, client("C1", 0, seq=1))
        await opened.apply_statements([])
        await opened.recon(False, GRACE, dt.datetime(2026, 3, 2, 12))
        if how == "deleted":
            path.unlink()
        else:
            (tmp_path / "other.duckdb").write_bytes(path.read_bytes())
            (tmp_path / "other.duckdb").replace(path)
        for attempt in (
            lambda: write(opened, client("C2", 1, seq=2)),
            lambda: opened.apply_statements([]),
            lambda: opened.recon(False, GRACE, dt.datetime(2026, 3, 2, 12)),
        ):
            with pytest.raises(LedgerLost, match=f"ledger file {path} was {how}") as lost:
                await attempt()
            assert lost.value.file == str(path)
    finally:
        await opened.close()


@pytest.mark.asyncio
async def test_duckdb_writes_go_on_while_the_exports_thread_is_busy(tmp_path: Path) -> None:
    opened = DuckLedger(tmp_path / "ledger.duckdb", SETTLEMENT)
    await opened.open()
    busy = threading.Event()
    try:
        await write(opened, client("C1", 0, seq=1))
        pinned = await opened.pin_day(dt.date(2026, 3, 2))
        # the exports' thread held (as by a long export): the writer is not
        opened._exports.submit(busy.wait, 10)
        export = asyncio.create_task(pinned.write(str(tmp_path / "exports")))
        await write(opened, client("C2", 1, seq=2))
        assert (await opened.counts())["client_trades"] == 2
        assert not export.done()
        # cancelled while it waits: it stops before its first statement
        export.cancel()
        busy.set()
        with pytest.raises(asyncio.CancelledError):
            await export
        await pinned.close()
        assert not (tmp_path / "exports" / "client-trades-20260302.csv").exists()
    finally:
        busy.set()
        await opened.close()


# -- PostgreSQL: the server away ------------------------------------------------------


@pytest.mark.asyncio
async def test_postgres_away_mid_run_fails_writes_and_loses_nothing(
    postgres: PgServer, postgres_db: str
) -> None:
    ledger = PgLedger(postgres_db, SETTLEMENT)
    await ledger.open()
    try:
        await write(ledger, *matched(1, 0)[:2], last_seq=1)
        assert (await ledger.counts())["client_trades"] == 1  # counted: kept from now on
        batch = [*matched(2, 1)[:2], client("C3", 2, seq=3)]
        postgres.stop()
        try:
            with pytest.raises(LedgerError) as failed:
                await write(ledger, *batch)
            assert url_without_secrets(postgres_db) in str(failed.value)
            with pytest.raises(LedgerError):
                await ledger.apply_statements([statement([line("L1", 0)])])
        finally:
            postgres.start()
        # the same write again: stored once, nothing of the first lost
        await write(ledger, *batch)
        await write(ledger, *batch)
        await ledger.apply_statements([statement([line("L1", 0), line("L2", 1)])])
        counts = await ledger.counts()
        assert (counts["client_trades"], counts["house_trades"], counts["lp_trades"]) == (3, 2, 2)
        assert await ledger.last_seq(SESSION) == 3
        assert found(await recon(ledger, full=True)) == set()  # C3 is within the grace
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_postgres_keeps_its_row_counts_through_every_kind_of_write(postgres_db: str) -> None:
    ledger = PgLedger(postgres_db, SETTLEMENT)
    await ledger.open()
    watcher = await asyncpg.connect(postgres_db)

    async def counted_now() -> dict[str, int]:
        return {
            table: int(await watcher.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("client_trades", "house_trades", "lp_trades", "pending", "breaks")
        }

    try:
        assert await ledger.counts() == await counted_now()
        other = "/statements/LP_A-other.csv"
        steps = [
            lambda: write(ledger, *matched(1, 0)[:2], client("C9", 1, seq=9)),
            lambda: write(ledger, *matched(1, 0)[:2], *matched(2, 1)[:2]),  # one again
            lambda: ledger.apply_statements([statement([line("L1", 0), line("L2", 1)])]),
            # the same line in a second file: kept aside, not counted twice
            lambda: ledger.apply_statements(
                [statement([line("L2", 1, source=other)], source=other)]
            ),
            # the first file corrected without L2: the other file's stands for it
            lambda: ledger.apply_statements([statement([line("L1", 0)], replace=True)]),
            # and without L1: removed
            lambda: ledger.apply_statements([statement([], replace=True)]),
        ]
        for step in steps:
            await step()
            assert await ledger.counts() == await counted_now()
        assert (await ledger.counts())["lp_trades"] == 1
    finally:
        await watcher.close()
        await ledger.close()


async def _until_busy(url: str, task: asyncio.Task[Any], timeout: float = 10.0) -> None:
    """Until the ledger's connection runs a statement (or ``task`` ends)."""
    watcher = await asyncpg.connect(url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not task.done() and asyncio.get_running_loop().time() < deadline:
            busy = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'fixgw-backoffice' AND state = 'active'"
            )
            if busy:
                return
            await asyncio.sleep(0.002)  # polling, with the deadline above
    finally:
        await watcher.close()


@pytest.mark.asyncio
async def test_postgres_stopped_during_a_write_keeps_all_of_it_or_none(
    postgres: PgServer, postgres_db: str
) -> None:
    ledger = PgLedger(postgres_db, SETTLEMENT)
    await ledger.open()
    try:
        await write(ledger, *matched(0, 0)[:2], last_seq=1)
        n = 30_000
        clients = [client(f"C{i}", i / 1000, seq=i) for i in range(1, n + 1)]
        houses = [
            house(f"R{i}", f"L{i}", i / 1000, client_exec_id=f"C{i}", seq=i)
            for i in range(1, n + 1)
        ]
        writing = asyncio.create_task(ledger.write(SESSION, n, clients, houses))
        await _until_busy(postgres.url, writing)
        try:
            await asyncio.to_thread(postgres.stop)
            outcome = await asyncio.gather(writing, return_exceptions=True)
        finally:
            postgres.start()
        counts = await ledger.counts()
        stored = (counts["client_trades"], counts["house_trades"])
        if isinstance(outcome[0], LedgerError):  # the whole batch, or nothing of it
            assert stored in {(1, 1), (n + 1, n + 1)}
        else:
            assert not isinstance(outcome[0], BaseException), outcome[0]
            assert stored == (n + 1, n + 1)
        await ledger.write(SESSION, n, clients, houses)
        counts = await ledger.counts()
        assert (counts["client_trades"], counts["house_trades"]) == (n + 1, n + 1)
        assert await ledger.last_seq(SESSION) == n
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_postgres_that_cannot_be_reached_is_named_without_its_password(
    postgres: PgServer,
) -> None:
    url = f"postgresql://fixgw:s3cret@127.0.0.1:{free_port()}/ledger"
    ledger = PgLedger(url, SETTLEMENT)
    assert ledger.url == url.replace(":s3cret", ":(redacted)")
    with pytest.raises(LedgerError) as refused:
        await ledger.open()
    message = str(refused.value)
    assert "s3cret" not in message
    assert ledger.url in message
    assert "refused" in message.lower() or "connect call failed" in message.lower()
    missing = PgLedger(postgres.url_of("no_such_database"), SETTLEMENT)
    with pytest.raises(LedgerError, match=r"no_such_database.*does not exist"):
        await missing.open()
    with pytest.raises(LedgerError, match="not open"):
        await missing.counts()


@pytest.mark.asyncio
async def test_a_server_that_never_answers_is_named_with_the_time_waited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port that accepts and says nothing (a wrong service, a hung
    server): the error says how long it waited, not 'TimeoutError'."""
    import backoffice.pg as pg

    monkeypatch.setattr(pg, "CONNECT_TIMEOUT", 0.3)
    accepted: list[asyncio.StreamWriter] = []

    def say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        with pytest.raises(LedgerError) as waited:
            await PgLedger(f"postgresql://fixgw@127.0.0.1:{port}/ledger", SETTLEMENT).open()
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert str(waited.value) == (
        f"cannot connect to the ledger postgresql://fixgw@127.0.0.1:{port}/ledger: "
        "no answer from the server within 0.3 s"
    )


def test_a_ledger_url_is_named_without_its_password() -> None:
    assert (
        url_without_secrets("postgresql://u:p@h:5432/db") == "postgresql://u:(redacted)@h:5432/db"
    )
    assert url_without_secrets("postgresql://u@h/db") == "postgresql://u@h/db"
    assert url_without_secrets("postgresql://h/db?user=u&password=p") == (
        "postgresql://h/db?user=u&password=(redacted)"
    )


async def _sql(url: str, *statements: str) -> None:
    """Statements run on the ledger's database by hand, the ledger closed."""
    if url.startswith("duckdb:"):
        con = duckdb.connect(url.removeprefix("duckdb:"))
        try:
            for statement in statements:
                con.execute(statement)
        finally:
            con.close()
        return
    pg = await asyncpg.connect(url)
    try:
        for statement in statements:
            await pg.execute(statement)
    finally:
        await pg.close()


@pytest.mark.asyncio
async def test_pending_keys_of_a_ledger_from_before_their_times_are_looked_at_once(
    ledger_url: str,
) -> None:
    first = make_ledger(ledger_url)
    await first.open()
    await write(first, *matched(1, 0)[:2])
    await first.apply_statements([statement([line("L1", 0), line("A1", 30)])])
    assert (await first.recon(False, GRACE, T0)).pending == 1
    await first.close()
    # the table as it was: a key and its relation only
    await _sql(
        ledger_url,
        "ALTER TABLE pending DROP COLUMN t",
        "ALTER TABLE pending DROP COLUMN waits",
    )
    second = make_ledger(ledger_url)
    await second.open()
    try:
        run = await second.recon(False, GRACE, T0)
        assert (run.keys, run.pending) == (1, 1)  # looked at, still pending
        run = await second.recon(False, GRACE, T0)
        assert (run.keys, run.pending) == (0, 1)  # now with its time: not due
    finally:
        await second.close()


@pytest.mark.asyncio
async def test_a_ledger_from_before_each_feeds_latest_trade_learns_it_from_the_next_batch(
    ledger_url: str,
) -> None:
    first = make_ledger(ledger_url)
    await first.open()
    await write(first, client("C1", 0, seq=1))
    await first.close()
    await _sql(ledger_url, "ALTER TABLE feed DROP COLUMN latest")
    second = make_ledger(ledger_url)
    await second.open()
    try:
        assert await second.last_seq(SESSION) == 1
        await second.apply_statements([statement([line("L9", 5)])])
        feeds = Covers(feeds={SESSION: None})
        # how far the feed had come is not known: what waits on it waits
        assert await recon(second, full=True, covers=feeds) == []
        await write(second, client("C2", 30, seq=2))
        assert found(await recon(second, covers=feeds)) == {
            ("missing_in_house", "house/lp", "L9"),
            ("uncovered_client_fill", "client/house", "C1"),
        }
    finally:
        await second.close()


@pytest.mark.asyncio
async def test_a_postgres_ledger_indexes_its_dates_and_one_from_before_gets_them(
    postgres_db: str,
) -> None:
    query = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexdef LIKE '%USING brin (trade_date, value_date)' ORDER BY 1"
    )
    expected = [f"{table}_dates" for table in sorted(sql.VALUED_TABLES)]

    async def indexes() -> list[str]:
        pg = await asyncpg.connect(postgres_db)
        try:
            return [r[0] for r in await pg.fetch(query)]
        finally:
            await pg.close()

    first = PgLedger(postgres_db, SETTLEMENT)
    await first.open()
    await write(first, client("C1", 0, seq=1))
    await first.close()
    assert await indexes() == expected
    await _sql(postgres_db, *(f"DROP INDEX {table}_dates" for table in sql.VALUED_TABLES))
    second = PgLedger(postgres_db, SETTLEMENT)
    await second.open()
    try:
        assert await indexes() == expected
        lines = await second.settlement(dt.date(2026, 3, 4))
        assert [x.amount for x in lines] == ["-1000.00", "1100.00"]
    finally:
        await second.close()


def test_settlement_lines_carry_every_digit_the_ledger_can_sum() -> None:
    wide = "123456789012345678901234567890.00000000"  # 30 digits, DECIMAL(38, 8)
    day = dt.date(2026, 3, 4)
    lines = sql.settlement_lines(
        [("C1", "client", "USD", day, wide), ("C1", "client", "ZZZ", day, "1.50000000")],
        {"USD": 2},
    )
    assert [x.amount for x in lines] == ["123456789012345678901234567890.00", "1.50000000"]


def test_one_pending_row_per_key_the_earliest() -> None:
    early, late = T0, T0 + dt.timedelta(seconds=3)
    rows = [("hl", "K", "LP_A", late), ("ch", "C1", "", late), ("hl", "K", "LP_A", early)]
    assert sql.unique_pending(rows) == [("ch", "C1", "", late), ("hl", "K", "LP_A", early)]


@pytest.mark.asyncio
async def test_trades_not_settled_yet_take_the_terms_of_a_symbol_listed_since(
    ledger_url: str,
) -> None:
    wednesday = dt.datetime(2026, 3, 4, 10)
    before = make_ledger(ledger_url)
    await before.open()
    try:
        # GBP/JPY is in no [[instruments]]: its trades settle on their trade dates
        await write(
            before,
            client("C1", 0, symbol="GBP/JPY", qty="1000", price="190.5", seq=1),
            house("R1", "L1", 0, client_exec_id="C1", symbol="GBP/JPY", price="190.5", seq=1),
            client("C2", 0, symbol="GBP/JPY", qty="1000", price="191", start=wednesday, seq=2),
            client("C3", 0, symbol="USD/CAD", side=-1, qty="100", price="1.35", seq=3),
        )
        await before.apply_statements([statement([line("L1", 0, symbol="GBP/JPY", price="190.5")])])
    finally:
        await before.close()
    # listed since, T+2, and USD/CAD's T+1 corrected to T+2
    listed = Settlement(
        [
            _instrument("EUR/USD", "fx"),
            _instrument("USD/CAD", "fx"),
            _instrument("BTC/USD", "crypto"),
            _instrument("GBP/JPY", "fx"),
        ]
    )
    url = ledger_url.removeprefix("duckdb:")
    after = DuckLedger(url, listed) if ledger_url.startswith("duckdb:") else PgLedger(url, listed)
    await after.open()
    try:
        # on Wednesday 2026-03-04: Monday's trades settle today, Wednesday's
        # on Friday; nothing has settled yet
        assert await after.revalue(dt.date(2026, 3, 4)) == [
            dt.date(2026, 3, 2),
            dt.date(2026, 3, 4),
        ]
        monday = dt.date(2026, 3, 2)
        amounts = _amounts(await after.settlement(monday))
        assert amounts == {
            ("C1", "client", "GBP", dt.date(2026, 3, 4)): Decimal("-1000"),
            ("C1", "client", "JPY", dt.date(2026, 3, 4)): Decimal("190500"),
            ("LP_A", "lp", "GBP", dt.date(2026, 3, 4)): Decimal("1000"),
            ("LP_A", "lp", "JPY", dt.date(2026, 3, 4)): Decimal("-190500"),
            ("C1", "client", "USD", dt.date(2026, 3, 4)): Decimal("100"),
            ("C1", "client", "CAD", dt.date(2026, 3, 4)): Decimal("-135"),
            ("C1", "client", "GBP", dt.date(2026, 3, 6)): Decimal("-1000"),
            ("C1", "client", "JPY", dt.date(2026, 3, 6)): Decimal("191000"),
        }
        assert await after.revalue(dt.date(2026, 3, 4)) == []  # done once
    finally:
        await after.close()


def test_value_dates_are_revised_only_where_one_has_not_passed() -> None:
    listed = Settlement([_instrument("GBP/JPY", "fx")])
    monday, tuesday, wednesday, thursday = (dt.date(2026, 3, d) for d in (2, 3, 4, 5))
    rows = [
        ("GBP/JPY", monday, monday),  # settles Wednesday now
        ("GBP/JPY", tuesday, thursday),  # as stored
        ("NZD/USD", monday, monday),  # still not listed: on its trade date
    ]
    assert sql.revalued(rows, listed.value_date, wednesday, listed.terms) == [
        ("GBP/JPY", monday, monday, wednesday)
    ]
    # on Thursday, Monday's trade settled on either date: left as it was
    assert sql.revalued(rows, listed.value_date, thursday, listed.terms) == []


def test_a_symbol_taken_out_of_the_config_keeps_its_trades_value_dates() -> None:
    """EUR/USD traded on Friday settles on Tuesday; the back office starts
    on Monday with EUR/USD no longer listed (a halt, a mistake): its trades
    are not moved to their trade date, which has passed."""
    unlisted = Settlement([_instrument("GBP/JPY", "fx")])
    friday, monday, tuesday = dt.date(2026, 3, 6), dt.date(2026, 3, 9), dt.date(2026, 3, 10)
    rows = [("EUR/USD", friday, tuesday)]
    assert sql.revalued(rows, unlisted.value_date, monday, unlisted.terms) == []


@pytest.mark.asyncio
async def test_a_fill_busted_or_corrected_on_a_later_day_is_reversed_as_of_its_own(
    ledger: Ledger,
) -> None:
    """An LP's Trade Cancel or Correct comes as a booking to the house at
    the LP naming the one it restates (TradeReportRefID).  Sent on a later
    trading day, it is booked as of the fill's own: the fill and its
    reversal settle on one value date and net to nothing with the LP,
    instead of paying for a cancelled trade on one day and being paid back
    on the next."""
    tuesday = dt.datetime(2026, 3, 3, 10)
    await write(
        ledger,
        client("C1", 0, seq=1),
        house("R1", "L1", 0, client_exec_id="C1", seq=1),
        client("C2", 1, seq=2),
        house("R2", "L2", 1, client_exec_id="C2", seq=2),
    )

    def restating(exec_id: str, of: str, side: int, price: str, seq: int) -> HouseTrade:
        booking = house(
            f"CH-{of}/{exec_id}/house",
            of,
            0,
            account=HOUSE_ACCOUNT,
            side=side,
            price=price,
            seq=seq,
            start=tuesday,
        )
        return msgspec.structs.replace(booking, lp_exec_id=exec_id, restates=of)

    # Tuesday: L1 busted (its reversal); L2 corrected to 1.2 (its reversal,
    # then the corrected fill, which restates it as well)
    houses = [
        restating("B1", "L1", -1, "1.1", 3),
        restating("G2.reversal", "L2", -1, "1.1", 4),
        restating("G2", "L2", 1, "1.2", 4),
    ]
    wanted = restated(houses)
    assert wanted == {("CH-L1", "L1"), ("CH-L2", "L2")}
    stored = await ledger.booked_on(wanted)
    assert stored == {("CH-L1", "L1"): "2026-03-02", ("CH-L2", "L2"): "2026-03-02"}
    booked = booked_as_of(houses, stored)
    assert {h.trade_date for h in booked} == {"2026-03-02"}
    assert {h.time[:10] for h in booked} == {"2026-03-03"}  # done on Tuesday all the same
    await write(ledger, *booked)
    lp_lines = {
        key: amount
        for key, amount in _amounts(await ledger.settlement(dt.date(2026, 3, 1))).items()
        if key[1] == "lp"
    }
    # one value date with the LP: L1 nets to nothing, L2 to its correction
    assert lp_lines == {
        ("LP_A", "lp", "EUR", dt.date(2026, 3, 4)): Decimal("1000.00"),
        ("LP_A", "lp", "USD", dt.date(2026, 3, 4)): Decimal("-1200.00"),
    }


def test_a_restatement_of_a_booking_unknown_or_in_its_own_batch() -> None:
    """The booking restated may come in the same batch (taken before it),
    or not be in the ledger at all (its own date is kept)."""
    fill = house("R1", "L1", 0)
    bust = msgspec.structs.replace(
        house("R9", "B1", 0, start=dt.datetime(2026, 3, 3, 10)),
        child_id="CH-L1",
        restates="L1",
    )
    assert restated([fill, bust]) == set()
    assert [h.trade_date for h in booked_as_of([fill, bust], {})] == ["2026-03-02"] * 2
    assert [h.trade_date for h in booked_as_of([bust], {})] == ["2026-03-03"]


@pytest.mark.asyncio
async def test_a_fill_split_between_a_client_and_the_house_in_two_batches_is_no_break(
    ledger: Ledger,
) -> None:
    # an LP fill of 1000, 600 booked to the client and 400 to the house (an
    # overfill): two TradeCaptureReports, which the drop copy may deliver in
    # two batches; the LP's line of the whole fill is on its statement
    await ledger.apply_statements([statement([line("L1", 0, qty="1000")])])
    await write(
        ledger,
        client("C1", 0, qty="600", seq=1),
        house("CH-L1/L1", "L1", 0, client_exec_id="C1", qty="600", seq=2),
    )
    # the drop copy has come only as far as the fill itself: its other
    # booking may be on its way, as a client's fill's booking may
    assert await recon(ledger) == []
    await write(ledger, house("CH-L1/L1/house", "L1", 0, account=HOUSE_ACCOUNT, qty="400", seq=3))
    assert await recon(ledger) == []
    # a booking that stays short once the drop copy is past it is a break
    await ledger.apply_statements([statement([line("L2", 1, qty="1000"), line("L9", 30)])])
    await write(
        ledger,
        client("C2", 1, qty="600", seq=4),
        house("CH-L2/L2", "L2", 1, client_exec_id="C2", qty="600", seq=5),
    )
    assert await recon(ledger) == []
    await write(ledger, house("R9", "L9", 30, account=HOUSE_ACCOUNT, seq=6))
    assert found(await recon(ledger)) == {("qty_mismatch", "house/lp", "L2")}
    assert found(await recon(ledger, full=True)) == {("qty_mismatch", "house/lp", "L2")}


@pytest.mark.asyncio
async def test_statement_numbers_written_with_an_exponent_are_stored_alike_on_both_ledgers(
    ledger: Ledger, tmp_path: Path
) -> None:
    # an LP's statement writing its numbers as a spreadsheet or a float
    # formatter may: each is a number the ledger holds (1,234,567,890.12;
    # 0.00001; a quantity too small to be anything but 0 at 8 decimals)
    folder = tmp_path / "statements"
    folder.mkdir()
    (folder / "LP_A-20260302.csv").write_text(
        "ExecID,ClOrdID,Symbol,Side,Quantity,Price,ExecTime\n"
        "L1,CH-L1,EUR/USD,BUY,123456789012e-2,1.1,2026-03-02T10:00:00Z\n"
        "L2,CH-L2,EUR/USD,BUY,1e-5,11E-1,2026-03-02T10:00:01Z\n"
        "L3,CH-L3,EUR/USD,BUY,1e-1000000,1.1,2026-03-02T10:00:02Z\n"
    )
    statements = StatementFolder(folder, {"LP_A": StatementColumns()}, TradeDay(dt.time(21, 0)))
    (change,) = statements.scan()
    assert change.errors == []
    await ledger.apply_statements([change])
    assert (await ledger.positions())["lp_statements"] == [
        Position("LP_A", "EUR/USD", "1234567890.12001000")
    ]
    await write(ledger, house("R2", "L2", 1, account=HOUSE_ACCOUNT, qty="0.00001"))
    await write(ledger, house("R1", "L1", 0, account=HOUSE_ACCOUNT, qty="1234567890.12"))
    await write(ledger, house("R3", "L3", 2, account=HOUSE_ACCOUNT, qty="0"))
    assert await recon(ledger, full=True) == []


@pytest.mark.asyncio
async def test_a_full_run_while_a_drop_copy_is_away_keeps_the_breaks_found_while_it_was_caught_up(
    ledger: Ledger,
) -> None:
    # the drop copy caught up to t=30: a client's fill at t=8 with no booking
    # of it, and an LP's line at t=9 never booked, are breaks
    await write(ledger, *matched(1, 0)[:2], client("C7", 8, seq=7))
    await ledger.apply_statements([statement([line("L1", 0), line("L9", 9)])])
    caught_up = Covers(feeds={SESSION: T0 + dt.timedelta(seconds=30)})
    expected = {
        ("uncovered_client_fill", "client/house", "C7"),
        ("missing_in_house", "house/lp", "L9"),
    }
    assert found(await recon(ledger, covers=caught_up)) == expected
    # the gateway restarts (its drop copy logged off): what it had delivered
    # by then is still all it had; a full run finds what the runs found
    away = Covers(feeds={SESSION: None})
    assert found(await recon(ledger, covers=away)) == expected
    assert found(await recon(ledger, full=True, covers=away)) == expected
    run = await ledger.recon(True, GRACE, T0, away)
    assert (run.breaks, run.pending) == (2, 0)
