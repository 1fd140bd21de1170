"""What a client is told when the LPs its order was routed to did not take
it: the reasons they gave, whatever the re-routes after them found."""

from __future__ import annotations

import pytest
from test_lp_fault_properties import Harness, PlaceOrder

from lp_adapters.base import DISCONNECTED_REASON
from router.model import Side

# ORDER_KINDS[0]: a market IOC
MARKET_IOC = 0


async def only_lp_a_quotes(harness: Harness) -> None:
    """LP_B and LP_C are down: LP_A alone quotes."""
    for name in ("LP_B", "LP_C"):
        harness.lps[name].drop("down for the test")
    harness.sync()


def last_report(harness: Harness) -> tuple[bytes | None, bytes | None, bytes]:
    harness.sync()
    last = harness.reports[harness.placed[-1].order_id][-1]
    return last.get(150), last.get(14), last.get(58) or b""


@pytest.mark.asyncio
async def test_an_order_the_only_lp_rejects_is_canceled_with_the_lps_reason(
    flow_harness: Harness,
) -> None:
    """The re-route after the reject finds no other LP: the client is told
    the LP's reject, not only that no liquidity was left."""
    harness = flow_harness
    await only_lp_a_quotes(harness)
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=MARKET_IOC, offset=0))
    (kid,) = harness.live()
    assert kid.child.lp == "LP_A"
    harness.end(kid, "reject")
    exec_type, cum_qty, text = last_report(harness)
    assert (exec_type, cum_qty) == (b"4", b"0")  # canceled, nothing filled
    assert b"rejected by the test" in text


@pytest.mark.asyncio
async def test_an_order_whose_only_lp_drops_is_canceled_saying_so(flow_harness: Harness) -> None:
    """Every LP down while the order is out: canceled at once, and the Text
    says the LP's link dropped."""
    harness = flow_harness
    await only_lp_a_quotes(harness)
    await harness.run(PlaceOrder(client=0, side=Side.SELL, lots=3, kind=MARKET_IOC, offset=0))
    (kid,) = harness.live()
    kid.live = False
    harness.lps["LP_A"].drop("link lost")
    exec_type, cum_qty, text = last_report(harness)
    assert (exec_type, cum_qty) == (b"4", b"0")
    assert DISCONNECTED_REASON.encode() in text


@pytest.mark.asyncio
async def test_reasons_of_every_routing_of_an_order_are_told(flow_harness: Harness) -> None:
    """Three LPs reject in turn (the first routing and two re-routes): the
    cancel names each reason once, in order."""
    harness = flow_harness
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=MARKET_IOC, offset=0))
    for _ in range(3):
        (kid,) = harness.live()
        harness.end(kid, "reject")
    exec_type, _, text = last_report(harness)
    assert exec_type == b"4"
    assert text == b"rejected by the test"
