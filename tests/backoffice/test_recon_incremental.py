"""An incremental reconciliation finds what a full one finds: the keys it
looks at again after any sequence of arrivals (drop-copy batches in any
order, statement lines appended, statement files corrected) are enough.
Times are seconds after ``T0``, the grace is 5 s (as in test_ledger)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger import (  # noqa: F401 (fixtures)
    GRACE,
    SESSION,
    SETTLEMENT,
    T0,
    at,
    client,
    found,
    house,
    ledger,
    ledger_url,
    line,
    recon,
    statement,
    write,
)

from backoffice.duck import DuckLedger
from backoffice.ledger import Break, Covers, Ledger
from backoffice.records import HOUSE_ACCOUNT, INTERNAL_MARKET, ClientTrade, HouseTrade, LpTrade
from backoffice.statements import StatementChange

NOW = dt.datetime(2026, 3, 2, 12)
FILES = ("/statements/LP_A-1.csv", "/statements/LP_A-2.csv")


@pytest.mark.asyncio
async def test_a_statement_corrected_without_its_latest_lines_no_longer_covers_later_fills(
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    # an end-of-day statement up to t=30: the house's fill at t=10 is not on
    # it (its line at t=30 waits for the drop copy, at t=10)
    await write(
        ledger,
        house("R1", "L1", 0, account=HOUSE_ACCOUNT, seq=1),
        house("R2", "L2", 10, account=HOUSE_ACCOUNT, seq=2),
    )
    await ledger.apply_statements([statement([line("L1", 0), line("L3", 30)])])
    assert found(await recon(ledger)) == {("missing_at_lp", "house/lp", "L2")}
    # the LP corrects its statement: L3, its latest line, was not its. The
    # statement now comes no further than t=0: the fill at t=10 waits for it
    # again, in an incremental run as in a full one
    await ledger.apply_statements([statement([line("L1", 0)], replace=True)])
    assert await recon(ledger) == []
    run = await ledger.recon(False, GRACE, NOW)
    assert (run.breaks, run.pending) == (0, 1)
    assert await recon(ledger, full=True) == []
    # the statement moves on without it: missing again
    await ledger.apply_statements([statement([line("L4", 20)])])
    await write(ledger, house("R4", "L4", 20, account=HOUSE_ACCOUNT, seq=4))
    assert found(await recon(ledger)) == {("missing_at_lp", "house/lp", "L2")}
    assert found(await recon(ledger, full=True)) == {("missing_at_lp", "house/lp", "L2")}


# -- incremental against full, over random arrivals ---------------------------------

Arrival = tuple[str, object]  # ("trades", [...]), ("statement", StatementChange), ("run", None)


def arrivals(rng: random.Random) -> list[Arrival]:
    """Fills of clients at LP_A (some split between the client and the
    house, some disagreeing with the LP's line), internal crosses (some
    unpaired), their records arriving in any order or never, the LP's lines
    on two statement files (some on both), appended, and files corrected
    (a line removed, the latest often, or a price changed); runs between."""
    out: list[Arrival] = []
    files: dict[str, list[LpTrade]] = {f: [] for f in FILES}
    unread: dict[str, list[LpTrade]] = {f: [] for f in FILES}
    held: list[list[ClientTrade | HouseTrade]] = []
    t, seq = 0.0, 0

    def add(source: str, lp_line: LpTrade) -> None:
        lp_line = msgspec.structs.replace(lp_line, source=source)
        files[source].append(lp_line)
        unread[source].append(lp_line)

    def append(source: str) -> None:
        if unread[source]:
            out.append(("statement", statement(unread[source], source=source)))
            unread[source] = []

    def correct(source: str) -> None:
        out.append(("statement", statement(files[source], replace=True, source=source)))
        unread[source] = []

    for n in range(rng.randint(3, 12)):
        t += rng.choice([0, 0.5, 1, 3, 7, 20])
        seq += 1
        qty = rng.choice(["1000", "2000"])
        if rng.random() < 0.15:
            bought = client(f"X{n}a", t, market=INTERNAL_MARKET, qty=qty, seq=seq)
            sold = client(
                f"X{n}b",
                t,
                account="C2",
                side=-1,
                market=INTERNAL_MARKET,
                qty=rng.choice([qty, qty, "500"]),
                seq=seq,
            )
            out.append(("trades", [bought]))
            held.append([sold])
        else:
            bookings = [
                house(f"CH-L{n}/L{n}", f"L{n}", t, client_exec_id=f"C{n}", qty=qty, seq=seq)
            ]
            lp_qty = qty
            if rng.random() < 0.25:  # split: the rest booked to the house
                bookings.append(
                    house(
                        f"CH-L{n}/L{n}/house", f"L{n}", t, account=HOUSE_ACCOUNT, qty="500", seq=seq
                    )
                )
                lp_qty = str(int(qty) + 500)
            if rng.random() < 0.1:
                lp_qty = "777"
            lp_line = line(f"L{n}", t, qty=lp_qty, price="1.1" if rng.random() < 0.9 else "1.2")
            for record in ([client(f"C{n}", t, qty=qty, seq=seq)], *([b] for b in bookings)):
                if rng.random() < 0.08:
                    continue  # never comes
                if rng.random() < 0.4:
                    held.append(record)  # comes later
                else:
                    out.append(("trades", record))
            if rng.random() < 0.92:
                source = rng.choice(FILES)
                add(source, lp_line)
                if rng.random() < 0.2:
                    add(FILES[1 - FILES.index(source)], lp_line)
        if rng.random() < 0.5:
            append(rng.choice(FILES))
        if held and rng.random() < 0.3:
            out.append(("trades", held.pop(rng.randrange(len(held)))))
        if rng.random() < 0.15:
            source = rng.choice(FILES)
            if files[source]:
                i = (
                    len(files[source]) - 1
                    if rng.random() < 0.5
                    else rng.randrange(len(files[source]))
                )
                if rng.random() < 0.6:
                    files[source].pop(i)
                else:
                    files[source][i] = msgspec.structs.replace(
                        files[source][i], price=rng.choice(["1.1", "1.3"])
                    )
                correct(source)
        if rng.random() < 0.5:
            out.append(("run", None))
    while held:
        out.append(("trades", held.pop(rng.randrange(len(held)))))
        if rng.random() < 0.5:
            out.append(("run", None))
    for source in FILES:
        append(source)
    out.append(("run", None))
    # both records move on far past everything
    t += 100
    seq += 1
    out.append(
        (
            "trades",
            [client("Z", t, seq=seq), house("CH-LZ/LZ", "LZ", t, client_exec_id="Z", seq=seq)],
        )
    )
    add(FILES[0], line("LZ", t))
    append(FILES[0])
    out.append(("run", None))
    return out


def _listed(breaks: list[Break]) -> list[tuple[str, ...]]:
    return sorted(
        (b.kind, b.records, b.key, b.ref, b.lp, b.client, b.symbol, b.ours, b.theirs, b.detail)
        for b in breaks
    )


async def _compare(folder: Path, seed: int) -> None:
    incremental = DuckLedger(folder / f"incremental-{seed}.duckdb", SETTLEMENT)
    full = DuckLedger(folder / f"full-{seed}.duckdb", SETTLEMENT)
    await incremental.open()
    await full.open()
    try:
        for step, (what, arrival) in enumerate(arrivals(random.Random(seed))):
            for ledger_ in (incremental, full):
                if what == "trades":
                    assert isinstance(arrival, list)
                    await write(ledger_, *arrival)
                elif what == "statement":
                    assert isinstance(arrival, StatementChange)
                    await ledger_.apply_statements([arrival])
            if what == "run":
                a = await incremental.recon(False, GRACE, NOW)
                b = await full.recon(True, GRACE, NOW)
                assert (_listed(await incremental.breaks()), a.pending) == (
                    _listed(await full.breaks()),
                    b.pending,
                ), f"seed {seed}, step {step}"
    finally:
        await incremental.close()
        await full.close()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_incremental_runs_find_what_full_runs_find_over_random_arrivals(
    tmp_path: Path, seed: int
) -> None:
    asyncio.run(_compare(tmp_path, seed))


# -- and over busts, resends, files taken out and the drop copy coming and going ----

MORE_FILES = (*FILES, "/statements/LP_A-3.csv")
AWAY = Covers(feeds={SESSION: None})


def more_arrivals(rng: random.Random) -> list[tuple[str, object, Covers]]:
    """As :func:`arrivals`, and: LP fills busted (the reversal booked to the
    house), trades given twice in a batch and sent again later, a line on
    two files with other values (another time or quantity), files taken out
    of the folder, and runs made while the drop copy is caught up to some
    time (logged on with nothing waiting) or away."""
    out: list[tuple[str, object, Covers]] = []
    files: dict[str, list[LpTrade]] = {f: [] for f in MORE_FILES}
    present = dict.fromkeys(MORE_FILES, False)
    sent: list[list[ClientTrade | HouseTrade]] = []
    held: list[list[ClientTrade | HouseTrade]] = []
    t, seq = 0.0, 0

    def put(source: str, lp_line: LpTrade) -> None:
        key = (lp_line.cl_ord_id, lp_line.exec_id)
        kept = [x for x in files[source] if (x.cl_ord_id, x.exec_id) != key]
        files[source] = [*kept, msgspec.structs.replace(lp_line, source=source)]

    def read_whole(source: str) -> None:
        out.append(("statement", statement(files[source], replace=True, source=source), AWAY))
        present[source] = True

    def send(record: list[ClientTrade | HouseTrade]) -> None:
        out.append(("trades", record, AWAY))
        sent.append(record)

    for n in range(rng.randint(3, 14)):
        t += rng.choice([0, 0.5, 1, 3, 7, 20])
        seq += 1
        qty = rng.choice(["1000", "2000"])
        records: list[list[ClientTrade | HouseTrade]]
        if rng.random() < 0.15:
            records = [
                [client(f"X{n}a", t, market=INTERNAL_MARKET, qty=qty, seq=seq)],
                [
                    client(
                        f"X{n}b",
                        t,
                        account="C2",
                        side=-1,
                        market=INTERNAL_MARKET,
                        qty=rng.choice([qty, qty, "500"]),
                        seq=seq,
                    )
                ],
            ]
        else:
            bookings = [
                house(f"CH-L{n}/L{n}", f"L{n}", t, client_exec_id=f"C{n}", qty=qty, seq=seq)
            ]
            lp_qty = qty
            if rng.random() < 0.25:
                bookings.append(
                    house(
                        f"CH-L{n}/L{n}/house", f"L{n}", t, account=HOUSE_ACCOUNT, qty="500", seq=seq
                    )
                )
                lp_qty = str(int(qty) + 500)
            if rng.random() < 0.1:
                lp_qty = "777"
            lp_line = line(
                f"L{n}",
                t,
                qty=lp_qty,
                price="1.1" if rng.random() < 0.9 else "1.2",
                side=1 if rng.random() < 0.95 else -1,
            )
            records = [[client(f"C{n}", t, qty=qty, seq=seq)], *([b] for b in bookings)]
            if rng.random() < 0.15:  # busted: the reversal, booked to the house
                reversal = house(
                    f"CH-L{n}/B{n}", f"B{n}", t + 1, account=HOUSE_ACCOUNT, side=-1, seq=seq
                )
                records.append(
                    [msgspec.structs.replace(reversal, child_id=f"CH-L{n}", restates=f"L{n}")]
                )
                if rng.random() < 0.5:  # the LP's statement lists the bust
                    put(rng.choice(MORE_FILES), line(f"B{n}", t + 1, side=-1))
            if rng.random() < 0.92:
                source = rng.choice(MORE_FILES)
                put(source, lp_line)
                if rng.random() < 0.25:  # on another file too, the same or not
                    again = lp_line
                    if rng.random() < 0.5:
                        again = msgspec.structs.replace(
                            lp_line,
                            time=at(t + rng.choice([-30, 0, 30])),
                            qty=rng.choice([lp_qty, "3000"]),
                        )
                    put(rng.choice([f for f in MORE_FILES if f != source]), again)
        for record in records:
            if rng.random() < 0.08:
                continue  # never comes
            if rng.random() < 0.15:
                record = record + record  # twice in one batch
            (held.append if rng.random() < 0.4 else send)(record)
        if rng.random() < 0.5:
            read_whole(rng.choice(MORE_FILES))
        if held and rng.random() < 0.3:
            send(held.pop(rng.randrange(len(held))))
        if sent and rng.random() < 0.1:
            out.append(("trades", rng.choice(sent), AWAY))  # sent again
        if rng.random() < 0.15:
            source = rng.choice(MORE_FILES)
            if files[source]:
                i = rng.randrange(len(files[source]))
                if rng.random() < 0.5:
                    files[source].pop(i)
                else:
                    files[source][i] = msgspec.structs.replace(
                        files[source][i], price=rng.choice(["1.1", "1.3"])
                    )
                read_whole(source)
        if rng.random() < 0.08:
            source = rng.choice(MORE_FILES)
            if present[source]:
                out.append(
                    ("statement", StatementChange(source, "LP_A", False, [], [], gone=True), AWAY)
                )
                present[source] = False
                files[source] = []
        if rng.random() < 0.5:
            caught_up = T0 + dt.timedelta(seconds=t - GRACE + rng.choice([0, 10]))
            covers = rng.choice([AWAY, Covers(feeds={SESSION: caught_up})])
            out.append(("run", None, covers))
    while held:
        send(held.pop(rng.randrange(len(held))))
        if rng.random() < 0.5:
            out.append(("run", None, AWAY))
    for source in MORE_FILES:
        if files[source]:
            read_whole(source)
    out.append(("run", None, AWAY))
    return out


async def _compare_more(folder: Path, seed: int) -> None:
    incremental = DuckLedger(folder / f"incremental-{seed}.duckdb", SETTLEMENT)
    full = DuckLedger(folder / f"full-{seed}.duckdb", SETTLEMENT)
    await incremental.open()
    await full.open()
    try:
        for step, (what, arrival, covers) in enumerate(more_arrivals(random.Random(seed))):
            for ledger_ in (incremental, full):
                if what == "trades":
                    assert isinstance(arrival, list)
                    await write(ledger_, *arrival)
                elif what == "statement":
                    assert isinstance(arrival, StatementChange)
                    await ledger_.apply_statements([arrival])
            if what == "run":
                a = await incremental.recon(False, GRACE, NOW, covers)
                b = await full.recon(True, GRACE, NOW, covers)
                assert (_listed(await incremental.breaks()), a.pending) == (
                    _listed(await full.breaks()),
                    b.pending,
                ), f"seed {seed}, step {step}"
    finally:
        await incremental.close()
        await full.close()


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_incremental_runs_find_what_full_runs_find_with_busts_resends_and_the_drop_copy_away(
    tmp_path: Path, seed: int
) -> None:
    asyncio.run(_compare_more(tmp_path, seed))
