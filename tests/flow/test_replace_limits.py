"""A replace that raises an order's quantity is held to the client's
pre-trade limits as a new order of that quantity would be; one that lowers
it never is."""

from __future__ import annotations

import dataclasses
import time

import pytest
from test_lp_fault_properties import (
    BEST_ASK,
    LOT,
    SYMBOL,
    TICK,
    Harness,
    PlaceOrder,
)

from gateway.fix import codec
from risk.limits import ClientLimits
from router.model import Side

LIMIT_DAY = 4


def replace(harness: Harness, cl_ord_id: str, orig: str, lots: int) -> None:
    body = [
        (11, cl_ord_id.encode()),
        (38, str(lots * LOT).encode()),
        (40, b"2"),
        (41, orig.encode()),
        (44, str((BEST_ASK - 1) * TICK).encode()),
        (54, b"1"),
        (55, SYMBOL.encode()),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message("CLIENT1", b"G", body)


def last_message(harness: Harness) -> codec.FixMessage:
    session = harness.sessions["CLIENT1"]
    ((_, raw),) = session.store.get_sent(session.store.next_sender_seq - 1, 2**31 - 1)
    return codec.parse_frame(raw)


@pytest.mark.asyncio
async def test_a_replace_past_the_clients_order_limit_is_refused(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    limits = ClientLimits(max_order_qty_by_symbol={SYMBOL: 5})
    flow.apply_rules(dataclasses.replace(flow.rules, client_limits={"CLIENT1": limits}))
    # a buy resting one tick under the best ask: nothing is routed
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=-1))
    (placed,) = harness.placed
    replace(harness, "R1", placed.cl_ord_id, 50)
    refused = last_message(harness)
    assert refused.msg_type == b"9"
    assert b"max order quantity exceeded: 50 > 5" in (refused.get(58) or b"")
    (order,) = flow.matcher.open_of("CLIENT1")
    assert (order.cl_ord_id, order.qty) == (placed.cl_ord_id, 2)
    # within the limit, or lower: taken
    replace(harness, "R2", placed.cl_ord_id, 5)
    assert last_message(harness).get(150) == b"5"
    flow.apply_rules(
        dataclasses.replace(
            flow.rules, client_limits={"CLIENT1": ClientLimits(max_order_qty_by_symbol={SYMBOL: 1})}
        )
    )
    replace(harness, "R3", "R2", 3)
    assert last_message(harness).get(150) == b"5"
    assert flow.matcher.open_of("CLIENT1")[0].qty == 3
