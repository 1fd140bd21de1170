"""How long the back office's ledger takes to load trades and to reconcile
them all: N client fills, the house's N bookings of them and the LPs' N
statement lines, every one matching, then one full reconciliation run.

The drop copy's trades are written as the back office writes them (batches
of ``--batch``, the feed's progress with each); the statement lines as one
file per LP, read in chunks of ``--batch``.  Then a full run
(``recon(full=True)``) and, after one more small batch of trades, an
incremental one.  Printed: the load time and rate, and the time of each
run with what it found (a correct run finds no break).

``--ledger duckdb`` writes a DuckDB file in a temporary folder (or
``--path``); ``--ledger postgres`` uses the database at ``--url``, or when
none is given a throwaway PostgreSQL server (``tests/pgkit.py``: the
server binaries are needed, and installed with apt-get when missing and
run as root).  A database given with ``--url`` must be empty.

    .venv/bin/python bench/recon_bench.py --ledger duckdb|postgres [--trades N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sized
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # pgkit

from backoffice.duck import DuckLedger
from backoffice.ledger import Ledger, SettlementBook
from backoffice.pg import PgLedger
from backoffice.records import ClientTrade, HouseTrade, LpTrade, time_text
from backoffice.settlement import Settlement
from backoffice.statements import StatementChange
from config import default_config_path, load_config

SESSION = "BACKOFFICE-GATEWAY"
START = dt.datetime(2026, 3, 2, 0, 0, 0)
SYMBOLS = (("EUR/USD", "1.1"), ("GBP/USD", "1.27"), ("USD/JPY", "151.2"))
LPS = ("LP_A", "LP_B", "LP_C")
GRACE = 5.0


def trades(
    n: int, first: int = 0, spacing_ms: int = 10
) -> Iterator[tuple[ClientTrade, HouseTrade, LpTrade]]:
    """Trade ``i``: a client's fill, the house's booking of it at an LP and
    the LP's line, all agreeing; ``spacing_ms`` apart."""
    for i in range(first, first + n):
        when = time_text(START + dt.timedelta(milliseconds=spacing_ms * i))
        day = when[:10]
        symbol, price = SYMBOLS[i % len(SYMBOLS)]
        lp = LPS[i % len(LPS)]
        side = 1 if i % 2 else -1
        qty = str(1000 * (1 + i % 50))
        client = f"C{i % 50}"
        exec_id = f"E{i}"
        lp_exec = f"{lp}-X{i}"
        yield (
            ClientTrade(
                exec_id, client, f"O{i}", f"K{i}", symbol, side, qty, price, lp, when, day, i + 1
            ),
            HouseTrade(
                f"R{i}",
                lp,
                lp_exec,
                f"CH{i}",
                client,
                exec_id,
                symbol,
                side,
                qty,
                price,
                when,
                day,
                i + 1,
            ),
            LpTrade(lp, lp_exec, f"CH{i}", symbol, side, qty, price, when, day, f"/{lp}-1.csv"),
        )


async def load(ledger: Ledger, n: int, first: int, batch: int, spacing_ms: int) -> int:
    """Store ``n`` matched trades from number ``first`` on, ``batch`` a
    write; returns the last write's ingest batch."""
    made = 0
    ingest = 0
    while made < n:
        size = min(batch, n - made)
        chunk = list(trades(size, first + made, spacing_ms))
        made += size
        ingest = await ledger.write(
            SESSION, first + made, [c for c, _, _ in chunk], [h for _, h, _ in chunk]
        )
        by_lp: dict[str, list[LpTrade]] = {}
        for _, _, line in chunk:
            by_lp.setdefault(line.lp, []).append(line)
        await ledger.apply_statements(
            [StatementChange(f"/{lp}-1.csv", lp, False, rows, []) for lp, rows in by_lp.items()]
        )
    return ingest


async def run(args: argparse.Namespace, target: str) -> None:
    settlement = Settlement(load_config(default_config_path()).instruments)
    ledger: Ledger = (
        DuckLedger(target, settlement, memory_mb=args.memory_mb)
        if args.ledger == "duckdb"
        else PgLedger(target, settlement)
    )
    await ledger.open()
    try:
        counts = await ledger.counts()
        if counts["client_trades"]:
            raise SystemExit(f"the ledger {ledger.url} is not empty: {counts}")
        print(f"ledger: {ledger.url}")
        started = time.perf_counter()
        await load(ledger, args.trades, 0, args.batch, args.spacing_ms)
        loaded = time.perf_counter() - started
        total = 3 * args.trades
        print(
            f"load: {args.trades:,} client trades + {args.trades:,} house trades + "
            f"{args.trades:,} LP lines in {loaded:.1f} s ({total / loaded:,.0f} rows/s)"
        )
        last = START + dt.timedelta(milliseconds=args.spacing_ms * args.trades)
        now = last + dt.timedelta(days=1)
        for label, full in (("full recon", True), ("full recon again", True)):
            started = time.perf_counter()
            result = await ledger.recon(full, GRACE, now)
            elapsed = time.perf_counter() - started
            print(
                f"{label}: {elapsed:.2f} s ({result.keys:,} keys, "
                f"{result.breaks} breaks, {result.pending} pending)"
            )
        before = ledger.last_ingest
        await load(ledger, args.batch, args.trades, args.batch, args.spacing_ms)
        ingest = ledger.last_ingest  # the trades' batch and their statement lines'
        started = time.perf_counter()
        sums = await ledger.batch_settlement_sums(before, ingest)
        print(
            f"the settlement of the last {args.batch:,} trades, kept by the treasury: "
            f"{time.perf_counter() - started:.3f} s ({len(sums):,} sums)"
        )
        started = time.perf_counter()
        held = await ledger.batch_positions(before, ingest)
        print(
            f"the positions of the last {args.batch:,} trades and lines, kept as well: "
            f"{time.perf_counter() - started:.3f} s ({sum(map(len, held.values())):,} sums)"
        )
        started = time.perf_counter()
        result = await ledger.recon(False, GRACE, now)
        elapsed = time.perf_counter() - started
        print(
            f"incremental recon after {args.batch:,} more: {elapsed:.2f} s "
            f"({result.keys:,} keys, {result.breaks} breaks, {result.pending} pending)"
        )
        await day_reads(
            ledger, last + dt.timedelta(milliseconds=args.spacing_ms * args.batch), settlement
        )
        await export_beside_writes(ledger, last.date(), args.trades + args.batch, args.spacing_ms)
    finally:
        await ledger.close()


async def day_reads(ledger: Ledger, last: dt.datetime, settlement: Settlement) -> None:
    """The reads of a day's end and of the treasury over the ledger just
    loaded: they look at the last days only, however long its history."""
    day = last.date()
    with tempfile.TemporaryDirectory(prefix="recon-bench-export-") as folder:
        steps: tuple[tuple[str, Callable[[], Awaitable[Sized]]], ...] = (
            (
                "the settlement read whole (value dates from the last day on: at start)",
                lambda: ledger.settlement(day),
            ),
            ("value dates revised at start", lambda: ledger.revalue(day)),
            (
                "the positions read whole (at start, and after a corrected statement file)",
                lambda: ledger.positions(),
            ),
            ("the last day exported", lambda: ledger.export_day(day, folder)),
            ("trading days listed", ledger.trading_days),
            ("the tables' rows counted (each reconciliation run)", ledger.counts),
        )
        for label, step in steps:
            started = time.perf_counter()
            answer = await step()
            print(f"{label}: {time.perf_counter() - started:.3f} s ({len(answer):,} items)")
    book = SettlementBook(await ledger.settlement_sums(day))
    started = time.perf_counter()
    lines = book.lines(day, settlement.minor_units)
    print(
        f"the treasury's settlement, from the amounts kept: "
        f"{time.perf_counter() - started:.6f} s ({len(lines):,} items)"
    )


async def export_beside_writes(ledger: Ledger, day: dt.date, first: int, spacing_ms: int) -> None:
    """A day's export as the back office runs it: the day pinned under its
    lock, then the files written while the intake goes on storing (writes
    of 1,000 trades, one after the other, until the files are written)."""
    size = 1000
    started = time.perf_counter()
    await load(ledger, size, first, size, spacing_ms)
    alone = time.perf_counter() - started
    first += size
    with tempfile.TemporaryDirectory(prefix="recon-bench-export-") as folder:
        held: list[float] = []

        @contextlib.asynccontextmanager
        async def timed() -> AsyncIterator[None]:
            entered = time.perf_counter()
            yield
            held.append(time.perf_counter() - entered)

        started = time.perf_counter()
        pinned = await ledger.pin_day(day, timed)
        pinned_in = time.perf_counter() - started
        started = time.perf_counter()
        export = asyncio.create_task(pinned.write(folder))
        ended: list[float] = []
        export.add_done_callback(lambda _: ended.append(time.perf_counter()))
        writes: list[float] = []
        try:
            while not export.done():
                began = time.perf_counter()
                await load(ledger, size, first, size, spacing_ms)
                writes.append(time.perf_counter() - began)
                first += size
            await export
        finally:
            export.cancel()
            await asyncio.gather(export, return_exceptions=True)
            await pinned.close()
        written_in = ended[0] - started
    slowest = max(writes, default=0.0)
    print(
        f"the last day pinned for its export: the back office's lock held {held[0]:.4f} s "
        f"(the pin {pinned_in:.4f} s in all); its files written in {written_in:.3f} s, beside "
        f"{len(writes)} writes of {size:,} trades (slowest {slowest:.3f} s; one alone "
        f"before: {alone:.3f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Time loading and reconciling N trades.")
    parser.add_argument("--ledger", choices=("duckdb", "postgres"), required=True)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000, help="trades per write")
    parser.add_argument(
        "--spacing-ms",
        type=int,
        default=10,
        help="time between two trades (20000: a million trades over 231 days)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=1024,
        help="DuckDB's memory bound in MiB, as [backoffice] duckdb_memory_mb (0: DuckDB's own)",
    )
    parser.add_argument("--url", help="postgresql://... (an empty database)")
    parser.add_argument("--path", help="the DuckDB file (a new one in a temporary folder)")
    args = parser.parse_args()
    if args.ledger == "duckdb":
        with tempfile.TemporaryDirectory(prefix="recon-bench-") as folder:
            asyncio.run(run(args, args.path or str(Path(folder) / "ledger.duckdb")))
        return
    if args.url:
        asyncio.run(run(args, args.url))
        return
    from pgkit import PgServer

    server = PgServer.create()
    try:
        asyncio.run(run(args, server.url))
    finally:
        server.remove()


if __name__ == "__main__":
    main()
