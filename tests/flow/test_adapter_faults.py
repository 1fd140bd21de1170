"""LP adapters that break their contract: one that raises, one that fills
more than it was asked.  The order flow answers its client either way and
its exposure stays what the LPs did."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from test_lp_fault_properties import (
    CLIENTS,
    SYMBOL,
    Harness,
    Kid,
    PlaceOrder,
    ScriptedLp,
    make_config,
)

from config import SessionSettings
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Filled
from gateway.orderflow.recovery import HOUSE
from router.model import ChildBust, ChildCorrection, ChildFill, ChildOrder, Side
from router.policy import RoutingLimits


class Broken(Exception):
    pass


@pytest.mark.asyncio
async def test_an_adapter_that_raises_on_send_counts_as_that_lps_reject(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    raised: list[str] = []

    def broken_send(child: ChildOrder) -> None:
        raised.append(child.child_id)
        raise Broken("adapter bug")

    # every LP's adapter is broken: the order is rejected at each, then
    # comes back to the client as canceled with the reasons
    for lp in harness.lps.values():
        lp.send = broken_send  # type: ignore[method-assign]
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    # the rejects come back from the adapters on later loop turns: polled
    # one turn at a time until the client's order is done, with a bound
    for _ in range(1000):
        harness.sync()
        if any(r[-1].get(39) in (b"2", b"4", b"8") for r in harness.reports.values()):
            break
        await asyncio.sleep(0)  # polling, one turn at a time
    assert raised
    (placed,) = harness.placed
    last = harness.reports[placed.order_id][-1]
    assert last.get(39) == b"4"  # canceled
    assert b"LP adapter error" in (last.get(58) or b"")
    for lp in harness.lps:
        assert flow.ledger.reserved(lp, SYMBOL) == 0
    assert flow.ledger.client_positions() == {}


@pytest.mark.asyncio
async def test_an_overfill_is_booked_in_full_the_excess_to_the_house(flow_harness: Harness) -> None:
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    harness.sync()
    (kid,) = harness.kids.values()
    lp = harness.lps[kid.child.lp]
    assert isinstance(lp, ScriptedLp)
    # the LP reports 5 lots filled on a child of 2
    lp.open[kid.child.child_id] = 5
    lp.fill(kid.child.child_id, 5, kid.child.price)
    harness.sync()
    assert flow.ledger.lp_position(kid.child.lp, SYMBOL) == 5
    assert flow.ledger.client_position("CLIENT1", SYMBOL) == 2
    assert flow.ledger.client_position(HOUSE, SYMBOL) == 3
    assert flow.ledger.reserved(kid.child.lp, SYMBOL) == 0
    (placed,) = harness.placed
    last = harness.reports[placed.order_id][-1]
    assert (last.get(39), last.get(14)) == (b"2", b"2000")


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["cancel", "reject"])
async def test_a_fill_an_lp_reports_after_it_ended_the_child_goes_to_the_house(
    flow_harness: Harness, end: str
) -> None:
    """An LP cancels the rest of a child (or rejects it), then reports a
    fill for it: it broke "a terminal answer is final", but the position it
    reports is the LP's; the fill is booked to the house (the client was
    told those lots did not fill), once, and logged."""
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=3, kind=0, offset=0))
    (kid,) = harness.kids.values()
    lp = harness.lps[kid.child.lp]
    child_id = kid.child.child_id
    if end == "cancel":
        harness.answer(kid, "partial", 0)  # 1 lot, the client's
        harness.answer(kid, "cancel", 0)
        client_lots = 1
    else:
        harness.answer(kid, "reject", 0)
        client_lots = 0
    # what the end left is routed again: the new children stay open
    held = sum(flow.ledger.reserved(name, SYMBOL) for name in harness.lps)
    assert held == 3 - client_lots
    with capture_logs() as logs:
        late = ChildFill(child_id, "LATE-1", 2, kid.child.price, 0)
        lp.report(late)
        lp.report(late)  # again: booked once
        for fill in kid.fills:  # a fill it made before the end, again
            lp.report(fill)
    ledger = flow.ledger
    assert ledger.client_position(HOUSE, SYMBOL) == 2
    assert ledger.client_position("CLIENT1", SYMBOL) == client_lots
    assert ledger.lp_position(kid.child.lp, SYMBOL) == client_lots + 2
    assert sum(ledger.reserved(name, SYMBOL) for name in harness.lps) == held
    (logged,) = [e for e in logs if e["event"] == "late_fill_after_end"]
    assert (logged["lp"], logged["child_id"], logged["qty"]) == (kid.child.lp, child_id, 2)
    (placed,) = harness.placed
    harness.sync()
    trades = [r for r in harness.reports[placed.order_id] if r.get(150) == b"F"]
    assert len(trades) == client_lots


@pytest.mark.asyncio
async def test_children_filled_in_full_do_not_push_the_canceled_ones_out(
    flow_harness: Harness,
) -> None:
    """The children an LP canceled or rejected are watched for a late fill
    in a window of their own: the many filled in full (one an order) are
    kept apart, and do not make a late fill after a cancel go unbooked
    sooner than before."""
    harness = flow_harness
    routing = harness.flow.routing
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    (kid,) = harness.kids.values()
    harness.answer(kid, "fill", 0)
    child_id = kid.child.child_id
    assert routing.filled_in_full.get(child_id) is not None
    assert routing.ended.get(child_id) is None


@pytest.mark.asyncio
async def test_a_fill_for_a_child_already_filled_in_full_goes_to_the_house(
    flow_harness: Harness,
) -> None:
    """An LP fills a child in full, then reports one more fill for it under
    a new ExecID (it executed more than it was asked, or reported a fill
    twice under two ExecIDs): the position it reports is the LP's, so the
    lots are booked, to the house (the client is never told more than it
    ordered), once per ExecID, and logged."""
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    (kid,) = harness.kids.values()
    lp = harness.lps[kid.child.lp]
    child_id = kid.child.child_id
    harness.answer(kid, "fill", 0)  # the 2 lots, the client's
    with capture_logs() as logs:
        over = ChildFill(child_id, "OVER-1", 3, kid.child.price, 0)
        lp.report(over)
        lp.report(over)  # again: booked once
        lp.report(kid.fills[0])  # the fill that completed it, again: booked before
    ledger = flow.ledger
    assert ledger.client_position(HOUSE, SYMBOL) == 3
    assert ledger.client_position("CLIENT1", SYMBOL) == 2
    assert ledger.lp_position(kid.child.lp, SYMBOL) == 5
    assert ledger.reserved(kid.child.lp, SYMBOL) == 0
    (logged,) = [e for e in logs if e["event"] == "lp_overfill"]
    assert logged["log_level"] in ("warning", "error")
    assert (logged["lp"], logged["child_id"], logged["exec_id"], logged["beyond"]) == (
        kid.child.lp,
        child_id,
        "OVER-1",
        3,
    )
    (placed,) = harness.placed
    harness.sync()
    trades = [r for r in harness.reports[placed.order_id] if r.get(150) == b"F"]
    assert len(trades) == 1
    assert (trades[-1].get(39), trades[-1].get(14)) == (b"2", b"2000")


@pytest.mark.asyncio
async def test_a_fill_beyond_the_child_logs_the_lots_beyond_it(flow_harness: Harness) -> None:
    harness = flow_harness
    await harness.run(PlaceOrder(client=0, side=Side.SELL, lots=2, kind=0, offset=0))
    (kid,) = harness.kids.values()
    lp = harness.lps[kid.child.lp]
    with capture_logs() as logs:
        lp.report(ChildFill(kid.child.child_id, "OVER-2", 5, kid.child.price, 0))
    (logged,) = [e for e in logs if e["event"] == "lp_overfill"]
    assert (logged["lp"], logged["exec_id"], logged["qty"], logged["beyond"]) == (
        kid.child.lp,
        "OVER-2",
        5,
        3,
    )
    assert harness.flow.ledger.client_position(HOUSE, SYMBOL) == -3


def journaled_harness(path: Path) -> Harness:
    """A fresh flow (not started) writing its journal in ``path``, after
    taking back what an earlier one left there."""
    sessions = {
        client: Session(SessionSettings(SenderCompID="GATEWAY", TargetCompID=client), MemoryStore())
        for client in CLIENTS
    }
    flow = build_order_flow(make_config(), sessions, OrderJournal(path), Outbox(), time.time)
    return Harness(flow, sessions, lambda line: None)


@asynccontextmanager
async def running(harness: Harness) -> AsyncIterator[Harness]:
    """The harness's flow started; when the block is done its journal is
    flushed (if the block ran through), the flow stopped and the journal
    closed."""
    journal = harness.flow.journal
    assert journal is not None
    await harness.flow.start()
    try:
        yield harness
        journal.flush()
    finally:
        await harness.flow.stop()
        journal.close()


async def a_buy_and_a_sell(harness: Harness, buy_lots: int, sell_lots: int) -> list[Kid]:
    """Client 0 buys and client 1 sells at market: their children (not
    answered yet), the buy's first."""
    harness.sync()
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=buy_lots, kind=0, offset=0))
    await harness.run(PlaceOrder(client=1, side=Side.SELL, lots=sell_lots, kind=0, offset=0))
    return list(harness.kids.values())[:2]


@pytest.mark.asyncio
async def test_fills_beyond_children_come_back_the_same_after_a_restart(tmp_path: Path) -> None:
    """Both kinds of fill beyond a child (beyond its open lots, and after it
    was filled in full) are journaled as they are booked: a gateway
    restarted from its journal holds the same positions."""
    async with running(journaled_harness(tmp_path)) as harness:
        buy, sell = await a_buy_and_a_sell(harness, 2, 3)
        assert len(harness.kids) == 2
        harness.answer(buy, "fill", 0)
        harness.lps[buy.child.lp].report(
            ChildFill(buy.child.child_id, "OVER-1", 4, buy.child.price, 0)
        )
        harness.lps[sell.child.lp].report(
            ChildFill(sell.child.child_id, "OVER-2", 5, sell.child.price, 0)
        )
        before = harness.flow.ledger.positions()
        assert before[1][HOUSE] == {SYMBOL: 4 - 2}
    assert_restarted_with(tmp_path, before)


def assert_restarted_with(tmp_path: Path, positions: object) -> None:
    """A gateway restarted from the journal in ``tmp_path`` holds ``positions``."""
    again = journaled_harness(tmp_path)
    try:
        assert again.flow.ledger.positions() == positions
    finally:
        assert again.flow.journal is not None
        again.flow.journal.close()


@pytest.mark.asyncio
async def test_a_fill_the_lp_busts_is_reversed_at_the_lp_to_the_house_and_after_a_restart(
    tmp_path: Path,
) -> None:
    """An LP's Trade Cancel of a fill: the client keeps its fill, the LP's
    position is what the LP says (the fill reversed there), and the house
    holds the client's side uncovered; a restart from the journal holds the
    same."""
    async with running(journaled_harness(tmp_path)) as harness:
        buy, sell = await a_buy_and_a_sell(harness, 2, 3)
        harness.answer(buy, "fill", 0)
        harness.answer(sell, "fill", 0)
        (fill,) = buy.fills
        lp = buy.child.lp
        ledger = harness.flow.ledger
        before = ledger.lp_position(lp, SYMBOL)
        # the sell's fill was the last trade: busting the buy's leaves its price
        last_price = ledger.positions()[2]
        assert last_price == {SYMBOL: sell.fills[0].price}
        bust = ChildBust(
            buy.child.child_id, "BUST-1", fill.exec_id, lp, SYMBOL, Side.BUY, 2, fill.price
        )
        with capture_logs() as logs:
            harness.lps[lp].report(bust)
        assert ledger.lp_position(lp, SYMBOL) == before - 2
        assert ledger.client_position("CLIENT1", SYMBOL) == 2
        assert ledger.client_position(HOUSE, SYMBOL) == -2
        (booked,) = [e for e in logs if e["event"] == "lp_trade_bust_booked"]
        assert (booked["exec_ref_id"], booked["side"], booked["qty"]) == (fill.exec_id, "sell", 2)
        positions = ledger.positions()
        assert positions[2] == last_price  # a reversal is no trade: the last price stays
        # the gateway reverses only a fill it booked, under an ExecID of no
        # fill, once, whatever an adapter passes on
        child_id, price = buy.child.child_id, fill.price
        with capture_logs() as logs:
            cases = (("BUST-1", fill.exec_id), ("BUST-2", "E0"), (fill.exec_id, fill.exec_id))
            for exec_id, ref in cases:
                harness.lps[lp].report(
                    ChildBust(child_id, exec_id, ref, lp, SYMBOL, Side.BUY, 1, price)
                )
        reasons = [e["reason"] for e in logs if e["event"] == "lp_trade_bust_refused"]
        assert reasons == [
            "its ExecID was booked already",
            "the gateway booked no fill under its ExecRefID for the child",
            "its ExecID is that of a fill booked",
        ]
        assert ledger.positions() == positions
    assert_restarted_with(tmp_path, positions)


@pytest.mark.asyncio
async def test_a_fill_the_lp_corrects_is_booked_again_at_the_lp_to_the_house_and_after_a_restart(
    tmp_path: Path,
) -> None:
    """An LP's Trade Correct of a fill it had busted in part: the lots
    standing are reversed at the price they were booked at and the
    correction's lots booked at its price, both at the LP to the house, so
    the LP's position is what the LP says; a correction of the correction
    does the same with the first correction's booking.  The client keeps
    its fill, the last price stays the last trade's, each correction is
    booked once, the journal has every booking (with what it restates) for
    the drop copy, and a restart holds the same."""
    async with running(journaled_harness(tmp_path)) as harness:
        buy, sell = await a_buy_and_a_sell(harness, 2, 3)
        harness.answer(buy, "fill", 0)
        harness.answer(sell, "fill", 0)
        (fill,) = buy.fills
        child_id, lp, price = buy.child.child_id, buy.child.lp, fill.price
        ledger = harness.flow.ledger
        before = ledger.lp_position(lp, SYMBOL)
        last_price = ledger.positions()[2]

        def correction(exec_id: str, ref: str, standing: tuple[int, int], lots: int, px: int):
            return ChildCorrection(
                child_id, exec_id, ref, lp, SYMBOL, Side.BUY, *standing, lots, px
            )

        with capture_logs() as logs:
            harness.lps[lp].report(
                ChildBust(child_id, "BUST-1", fill.exec_id, lp, SYMBOL, Side.BUY, 1, price)
            )
            harness.lps[lp].report(correction("CORR-1", fill.exec_id, (1, price), 3, price - 5))
            assert ledger.lp_position(lp, SYMBOL) == before - 2 + 3
            assert ledger.client_position(HOUSE, SYMBOL) == -2 + 3
            harness.lps[lp].report(correction("CORR-2", "CORR-1", (3, price - 5), 2, price - 7))
        assert ledger.lp_position(lp, SYMBOL) == before - 2 + 2
        assert ledger.client_position("CLIENT1", SYMBOL) == 2
        assert ledger.client_position(HOUSE, SYMBOL) == 0
        positions = ledger.positions()
        assert positions[2] == last_price
        booked = [e for e in logs if e["event"] == "lp_trade_correction_booked"]
        assert [
            (e["exec_id"], e["exec_ref_id"], e["reversal_exec_id"], e["reversed_qty"], e["qty"])
            for e in booked
        ] == [
            ("CORR-1", fill.exec_id, "CORR-1.reversal", 1, 3),
            ("CORR-2", "CORR-1", "CORR-2.reversal", 3, 2),
        ]
        assert {e["log_level"] for e in booked} == {"error"}
        # booked only for a fill or correction booked, under an ExecID of
        # neither, once, whatever an adapter passes on
        with capture_logs() as logs:
            for exec_id, ref in (
                ("CORR-1", fill.exec_id),
                ("CORR-3", "E0"),
                ("CORR-3", "BUST-1"),  # a bust books no fill to correct
                (fill.exec_id, "CORR-2"),
            ):
                harness.lps[lp].report(correction(exec_id, ref, (1, price), 1, price))
        refused = [e for e in logs if e["event"] == "lp_trade_correction_refused"]
        assert [(e["reason"], e["log_level"]) for e in refused] == [
            ("its ExecID was booked already", "warning"),
            ("the gateway booked no fill under its ExecRefID for the child", "error"),
            ("the gateway booked no fill under its ExecRefID for the child", "error"),
            ("its ExecID is that of a fill booked", "error"),
        ]
        assert ledger.positions() == positions
    journal = OrderJournal(tmp_path)
    try:
        restated = [
            (e.exec_id, e.account, e.side, e.qty, e.price, e.busts, e.corrects)
            for e in journal.replay()
            if isinstance(e, Filled) and (e.busts or e.corrects)
        ]
    finally:
        journal.close()
    assert restated == [
        ("BUST-1", HOUSE, Side.SELL, 1, price, fill.exec_id, ""),
        ("CORR-1.reversal", HOUSE, Side.SELL, 1, price, fill.exec_id, ""),
        ("CORR-1", HOUSE, Side.BUY, 3, price - 5, "", fill.exec_id),
        ("CORR-2.reversal", HOUSE, Side.SELL, 3, price - 5, "CORR-1", ""),
        ("CORR-2", HOUSE, Side.BUY, 2, price - 7, "", "CORR-1"),
    ]
    assert_restarted_with(tmp_path, positions)


@pytest.mark.asyncio
async def test_children_ended_before_a_restart_are_still_watched_after_it(
    tmp_path: Path,
) -> None:
    """A child canceled with lots open and one filled in full, then the
    gateway restarted (the start writes a checkpoint): a fill the LP reports
    for either afterwards is booked to the house, once per ExecID; one it
    counted before the restart is not booked again.  A second restart
    (reading that checkpoint) keeps watching them, with what the first
    counted."""
    async with running(journaled_harness(tmp_path)) as harness:
        canceled, filled = await a_buy_and_a_sell(harness, 3, 2)
        harness.answer(canceled, "partial", 0)  # 1 lot of 3, the client's
        harness.answer(canceled, "cancel", 0)
        harness.answer(filled, "fill", 0)
        before = harness.flow.ledger.positions()
    price = canceled.child.price

    def restarted() -> Harness:
        again = journaled_harness(tmp_path)
        assert again.flow.ledger.positions() == before
        return again

    late = ChildFill(canceled.child.child_id, "LATE-1", 2, price, 0)
    over = ChildFill(filled.child.child_id, "OVER-1", 1, filled.child.price, 0)
    async with running(restarted()) as again:
        # handed to their adapters too (a FIX LP's keeps its own watch)
        handed = {
            (record.order.child_id, record.filled, in_full)
            for lp in again.lps.values()
            for record, in_full in lp.ended_handed
        }
        assert handed == {
            (canceled.child.child_id, 1, False),
            (filled.child.child_id, 2, True),
        }
        with capture_logs() as logs:
            for _ in range(2):  # each reported twice: booked once
                again.lps[canceled.child.lp].report(late)
                again.lps[filled.child.lp].report(over)
            # the fills counted before the restart, reported again
            for kid in (canceled, filled):
                for fill in kid.fills:
                    again.lps[kid.child.lp].report(fill)
        events = sorted(e["event"] for e in logs if e["log_level"] == "error")
        assert events == ["late_fill_after_end", "lp_overfill"]
        ledger = again.flow.ledger
        # the house: bought 2 at the canceled child's LP, sold 1 at the other
        assert ledger.client_position(HOUSE, SYMBOL) == 2 - 1
        before = ledger.positions()
    async with running(restarted()) as third:
        with capture_logs() as logs:
            third.lps[canceled.child.lp].report(late)  # counted by the run before
            third.lps[canceled.child.lp].report(
                ChildFill(canceled.child.child_id, "LATE-2", 1, price, 0)
            )
        (logged,) = [e for e in logs if e["log_level"] == "error"]
        # 1 + 2 lots of 3 filled before it: all of this one is beyond the child
        assert (logged["event"], logged["exec_id"], logged["beyond"]) == (
            "lp_overfill",
            "LATE-2",
            1,
        )
        assert third.flow.ledger.client_position(HOUSE, SYMBOL) == 2


@pytest.mark.asyncio
async def test_a_re_route_after_a_reload_lowered_a_hard_limit_keeps_to_it(
    flow_harness: Harness,
) -> None:
    """A routing under way keeps the rules it began with, but not the LPs'
    limits: a hard limit lowered by a reload (an LP in trouble) holds for
    what is re-routed after it."""
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=4, kind=0, offset=0))
    (kid,) = harness.kids.values()
    old = flow.rules.limits
    lps = {
        name: limits
        if name == kid.child.lp
        else dataclasses.replace(limits, soft_limit_usd=Decimal(0), hard_limit_usd=Decimal(1))
        for name, limits in old.lps.items()
    }
    lowered = RoutingLimits(lps=lps, max_child_orders=old.max_child_orders)
    flow.apply_rules(dataclasses.replace(flow.rules, limits=lowered))
    harness.answer(kid, "reject", 0)  # the remainder is re-routed
    harness.sync()
    rerouted = [k.child for k in harness.kids.values() if k is not kid]
    assert rerouted == []  # every other LP is at its 1 USD limit now
    (placed,) = harness.placed
    last = harness.reports[placed.order_id][-1]
    assert last.get(39) == b"4"
    assert b"hard limit" in (last.get(58) or b"")
