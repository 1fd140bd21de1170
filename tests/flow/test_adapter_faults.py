"""LP adapters that break their contract: one that raises, one that fills
more than it was asked.  The order flow answers its client either way and
its exposure stays what the LPs did."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs
from test_lp_fault_properties import (
    SYMBOL,
    Harness,
    PlaceOrder,
    ScriptedLp,
)

from gateway.orderflow.recovery import HOUSE
from router.model import ChildFill, ChildOrder, Side


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
