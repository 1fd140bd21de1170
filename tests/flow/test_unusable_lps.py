"""Quotes of LPs an order cannot be routed to (disabled by a reload, or at
their hard limit) do not make it marketable, and do not count towards a
fill-or-kill order's quantity."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from test_lp_fault_properties import (
    BEST_ASK,
    BEST_BID,
    LEVEL_LOTS,
    LEVELS,
    Harness,
    PlaceOrder,
)

from router.model import Side
from router.policy import RoutingLimits

# ORDER_KINDS: a FOK limit, a DAY limit, an IOC limit
LIMIT_FOK = 3
LIMIT_DAY = 4
LIMIT_IOC = 2
EXPIRED = b"C"


def with_lp(harness: Harness, lp: str, **change: object) -> None:
    """The rules in force, with ``lp``'s limits changed (a reload)."""
    flow = harness.flow
    rules = flow.rules
    lps = dict(rules.limits.lps)
    lps[lp] = dataclasses.replace(lps[lp], **change)  # type: ignore[arg-type]
    limits = RoutingLimits(lps=lps, max_child_orders=rules.limits.max_child_orders)
    flow.apply_rules(dataclasses.replace(rules, limits=limits))


def at_hard_limit(harness: Harness, lp: str) -> None:
    with_lp(harness, lp, soft_limit_usd=Decimal(0), hard_limit_usd=Decimal(0))


def last_report(harness: Harness) -> tuple[bytes | None, bytes | None, bytes | None]:
    harness.sync()
    placed = harness.placed[-1]
    last = harness.reports[placed.order_id][-1]
    return last.get(150), last.get(39), last.get(14)


# A buy up to two ticks through the best ask reaches all three LEVELS of
# LP_A (the best), two of LP_B and one of LP_C: 24 lots, 12 of them LP_A's.
THROUGH = 2
REACHED = 6 * LEVEL_LOTS
WITHOUT_LP_A = REACHED - LEVELS * LEVEL_LOTS


@pytest.mark.asyncio
@pytest.mark.parametrize("unusable", ["disabled", "at_hard_limit"])
async def test_a_fok_that_only_an_unusable_lp_makes_fillable_expires_unfilled(
    flow_harness: Harness, unusable: str
) -> None:
    harness = flow_harness
    if unusable == "disabled":
        with_lp(harness, "LP_A", enabled=False)
    else:
        at_hard_limit(harness, "LP_A")
    lots = WITHOUT_LP_A + 1
    await harness.run(
        PlaceOrder(client=0, side=Side.BUY, lots=lots, kind=LIMIT_FOK, offset=THROUGH)
    )
    assert harness.kids == {}  # nothing routed
    assert last_report(harness) == (EXPIRED, EXPIRED, b"0")
    # what the other LPs can take is worked
    await harness.run(
        PlaceOrder(client=0, side=Side.BUY, lots=lots - 1, kind=LIMIT_FOK, offset=THROUGH)
    )
    assert {kid.child.lp for kid in harness.kids.values()} == {"LP_B", "LP_C"}
    assert sum(kid.child.qty for kid in harness.kids.values()) == lots - 1


@pytest.mark.asyncio
async def test_a_limit_only_a_disabled_lp_reaches_rests_without_being_routed(
    flow_harness: Harness,
) -> None:
    """LP_A alone offers at the order's limit, and a reload disabled it:
    the order rests (and is not routed again at each of LP_A's quotes);
    an IOC at that limit is canceled as not marketable."""
    harness = flow_harness
    flow = harness.flow
    with_lp(harness, "LP_A", enabled=False)
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=0))
    assert last_report(harness) == (b"0", b"0", b"0")
    for _ in range(3):
        harness.lps["LP_A"].publish()
    harness.sync()
    assert harness.kids == {}
    assert sum(stats.routings for stats in flow.stats.policies.values()) == 0
    await harness.run(PlaceOrder(client=1, side=Side.BUY, lots=2, kind=LIMIT_IOC, offset=0))
    assert last_report(harness) == (b"4", b"4", b"0")
    assert harness.reports[harness.placed[-1].order_id][-1].get(58) == b"not marketable"
    # enabled again: the resting order is routed at LP_A's next quote
    with_lp(harness, "LP_A", enabled=True)
    harness.lps["LP_A"].publish()
    harness.sync()
    (kid,) = harness.kids.values()
    assert (kid.child.lp, kid.child.price) == ("LP_A", BEST_ASK)


@pytest.mark.asyncio
async def test_an_internal_cross_is_not_held_back_by_a_disabled_lps_better_price(
    flow_harness: Harness,
) -> None:
    """A client order is crossed with another's at prices at least as good
    as the best an LP offers; a disabled LP's better price does not count."""
    harness = flow_harness
    flow = harness.flow
    with_lp(harness, "LP_A", enabled=False)
    flow.matcher.internal_crossing = True  # (the rules apply their own: off)
    # CLIENT2 offers at LP_B's best ask, one tick above disabled LP_A's (a
    # sell's offset counts from the best bid)
    offer = BEST_ASK + 1
    await harness.run(
        PlaceOrder(client=1, side=Side.SELL, lots=2, kind=LIMIT_DAY, offset=BEST_BID - offer)
    )
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_IOC, offset=1))
    assert harness.kids == {}
    assert last_report(harness) == (b"F", b"2", b"2000")
