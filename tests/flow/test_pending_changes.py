"""A cancel or replace a client sends while its order is out at LPs: it
waits for the children out there, and the order is not sent to any LP
again on the terms the client asked to change."""

from __future__ import annotations

import time

import pytest
from test_lp_fault_properties import (
    BEST_ASK,
    LOT,
    SYMBOL,
    TICK,
    ClientCancel,
    Harness,
    PlaceOrder,
)

from gateway.fix import codec
from router.model import Side

LIMIT_IOC = 2
LIMIT_DAY = 4


@pytest.mark.asyncio
async def test_a_cancel_pending_while_a_child_is_out_routes_nothing_more(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=2))
    (kid,) = harness.kids.values()
    harness.client_cancel(ClientCancel(pick=0))
    (placed,) = harness.placed
    assert harness.reports[placed.order_id][-1].get(39) == b"6"  # pending cancel
    # the LP turns the child down: the client asked to cancel, nothing is
    # sent to another LP
    harness.end(kid, "reject")
    assert list(harness.kids) == [kid.child.child_id]
    last = harness.reports[placed.order_id][-1]
    assert (last.get(150), last.get(39), last.get(14)) == (b"4", b"4", b"0")
    for lp in harness.lps:
        assert flow.ledger.reserved(lp, SYMBOL) == 0


@pytest.mark.asyncio
async def test_a_replace_pending_while_a_child_is_out_is_applied_before_routing_again(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=4, kind=LIMIT_DAY, offset=2))
    (kid,) = harness.kids.values()
    (placed,) = harness.placed
    body = [
        (11, b"R1"),
        (38, str(1 * LOT).encode()),
        (40, b"2"),
        (41, placed.cl_ord_id.encode()),
        (44, str((BEST_ASK + 2) * TICK).encode()),
        (54, b"1"),
        (55, SYMBOL.encode()),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message("CLIENT1", b"G", body)
    assert harness.reports[placed.order_id][-1].get(39) == b"E"  # pending replace
    # the LP turns the 4 lots down: the order is 1 lot now, not 4 to route
    harness.end(kid, "reject")
    last = harness.reports[placed.order_id][-1]
    assert (last.get(150), last.get(39), last.get(11)) == (b"5", b"0", b"R1")
    assert (last.get(38), last.get(151)) == (b"1000", b"1000")
    routed_again = [k for k in harness.kids.values() if k is not kid]
    assert sum(k.child.qty for k in routed_again) <= 1
    for lp in harness.lps:
        assert flow.ledger.reserved(lp, SYMBOL) == sum(
            k.child.qty for k in routed_again if k.child.lp == lp
        )


@pytest.mark.asyncio
async def test_a_replace_of_an_ioc_refused_when_it_ends_leaves_the_client_seeing_it_canceled(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=4, kind=LIMIT_IOC, offset=2))
    (kid,) = harness.kids.values()
    (placed,) = harness.placed
    body = [
        (11, b"R1"),
        (38, str(2 * LOT).encode()),
        (40, b"2"),
        (41, placed.cl_ord_id.encode()),
        (44, str((BEST_ASK + 2) * TICK).encode()),
        (54, b"1"),
        (55, SYMBOL.encode()),
        (59, b"3"),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message("CLIENT1", b"G", body)
    assert harness.reports[placed.order_id][-1].get(39) == b"E"  # pending replace
    harness.fill(kid, 1)
    while live := harness.live():  # every LP it is routed to turns the rest down
        harness.end(live[0], "reject")
    sent = [
        codec.parse_frame(raw)
        for _, raw in harness.sessions["CLIENT1"].store.get_sent(1, 2**31 - 1)
    ]
    about = [m for m in sent if m.get(37) == placed.order_id.encode()]
    canceled, refused = about[-2:]
    assert (canceled.msg_type, canceled.get(150), canceled.get(39)) == (b"8", b"4", b"4")
    assert (refused.msg_type, refused.get(11), refused.get(434)) == (b"9", b"R1", b"2")
    # the last word on the order: it is canceled, not working
    assert refused.get(39) == b"4"
