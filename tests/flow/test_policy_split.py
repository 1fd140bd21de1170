"""Traffic shared between two routing policies: an order is routed by one
policy for all of its life, whatever ClOrdIDs its replaces give it."""

from __future__ import annotations

import dataclasses
import time

import pytest
from test_lp_fault_properties import BEST_ASK, LOT, SYMBOL, TICK, Harness, PlaceOrder

from gateway.fix import codec
from gateway.orderflow.rules import SHARE_SCALE
from router.model import Side
from router.policy import build_policy

LIMIT_DAY = 4
CANDIDATE = "best_price"


def replace(harness: Harness, cl_ord_id: str, orig: str, lots: int) -> None:
    """The client replaces its buy at the best ask with a smaller one (the
    order keeps its place and is not worked again by the replace)."""
    body = [
        (11, cl_ord_id.encode()),
        (38, str(lots * LOT).encode()),
        (40, b"2"),
        (41, orig.encode()),
        (44, str(BEST_ASK * TICK).encode()),
        (54, b"1"),
        (55, SYMBOL.encode()),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message("CLIENT1", b"G", body)


@pytest.mark.asyncio
async def test_a_replaced_order_is_routed_again_by_the_policy_it_began_with(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    primary = flow.rules.primary
    assert primary != CANDIDATE
    policies = {primary: flow.rules.policies[primary], CANDIDATE: build_policy(CANDIDATE)}
    flow.apply_rules(
        dataclasses.replace(
            flow.rules, policies=policies, candidate=CANDIDATE, candidate_share=SHARE_SCALE // 2
        )
    )
    # a buy at the best ask, more than the LP there shows: routed, then
    # (the LPs cancel what they do not fill) it rests
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=20, kind=LIMIT_DAY, offset=0))
    (placed,) = harness.placed
    harness.settle_all_but(None, by_fill=False)
    assert not harness.live()
    routed = {name: stats.routings for name, stats in flow.stats.policies.items()}
    ((first, routings),) = ((name, n) for name, n in routed.items() if n)
    # a new ClOrdID that a split keyed on the ClOrdID sends to the other policy
    other = CANDIDATE if first == primary else primary
    new_id = next(
        f"R{i}" for i in range(1000) if flow.rules.policy_for("CLIENT1", f"R{i}") == other
    )
    replace(harness, new_id, placed.cl_ord_id, 19)
    (order,) = flow.matcher.open_of("CLIENT1")
    assert order.cl_ord_id == new_id
    assert not order.routing_qty
    # the LP quotes again: the resting order is marketable and routed
    harness.lps["LP_A"].publish()
    harness.sync()
    assert harness.live()
    assert flow.stats.policy(first).routings == routings + 1
    assert flow.stats.policy(other).routings == 0
