"""Quotes of LPs an order cannot be routed to (disabled by a reload, or at
their hard limit) do not make it marketable, and do not count towards a
fill-or-kill order's quantity; the quotes of a disabled LP are not shown in
clients' market data either."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import cast

import pytest
from test_lp_fault_properties import (
    BEST_ASK,
    BEST_BID,
    LEVEL_LOTS,
    LEVELS,
    LOT,
    QUOTES,
    SYMBOL,
    TICK,
    Harness,
    PlaceOrder,
)

from gateway.fix import codec
from gateway.fix.session import Session
from gateway.orderflow.market_data import MarketDataService
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


class Subscriber:
    """CLIENT1's session, subscribed to the whole book of EUR/USD with full
    refreshes on a market data service the flow is given: what it is sent
    is recorded (it is also the service's feed: no connection, every
    message taken at once), and the loop turns the service defers to are
    run by :meth:`view`."""

    session_id = "FIX.4.4:GATEWAY->CLIENT1"
    is_logged_on = True

    def __init__(self, harness: Harness) -> None:
        flow = harness.flow
        self.sent: list[tuple[bytes, bytes]] = []
        self.owed: list[Callable[[], None]] = []
        self.service = MarketDataService(
            flow.instruments,
            flow.book,
            lambda session, msg_type, body, now: self.sent.append((msg_type, body)),
            self,
            lambda: 0.0,
            refresh_interval=0.0,
            defer=lambda delay, callback: self.owed.append(callback),
        )
        flow.routing.market_data = self.service

    def subscribe(self) -> None:
        fields = [(146, b"1"), (55, SYMBOL.encode()), (262, b"MD1"), (263, b"1")]
        fields += [(264, b"0"), (265, b"0"), (267, b"2"), (269, b"0"), (269, b"1")]
        raw = codec.encode_message(
            b"FIX.4.4",
            b"V",
            [(34, b"2"), (49, b"CLIENT1"), (52, b"20261125-10:00:00.000"), (56, b"GATEWAY")],
            codec.encode_fields(fields),
        )
        self.service.on_request(cast(Session, self), codec.parse_frame(raw), 0.0)

    # the feed: every message is taken at once
    def send_transient(self, session: Session, msg_type: bytes, body: bytes, now: float) -> bool:
        self.sent.append((msg_type, body))
        return True

    def backlog(self, session: Session) -> int | None:
        return 0

    def view(self) -> dict[tuple[bytes, int], int] | None:
        """Run the turns owed; the book (entry type, price in ticks) -> lots
        of the last full refresh the client got, None when it got none."""
        for _ in range(100):
            if not self.owed:
                break
            self.owed.pop(0)()
        assert not self.owed, "market data still owed"
        refreshes = [body for msg_type, body in self.sent if msg_type == b"W"]
        self.sent.clear()
        if not refreshes:
            return None
        fields = [f.partition(b"=") for f in refreshes[-1].split(b"\x01") if f]
        values = [(int(tag), value) for tag, _, value in fields]
        assert values[:3] == [
            (55, SYMBOL.encode()),
            (262, b"MD1"),
            (268, b"%d" % ((len(values) - 3) // 3)),
        ]
        book: dict[tuple[bytes, int], int] = {}
        for i in range(3, len(values), 3):
            (_, entry_type), (_, px), (_, size) = values[i : i + 3]
            book[(entry_type, int(Decimal(px.decode()) / TICK))] = int(Decimal(size.decode()) / LOT)
        return book


def merged(*lps: str) -> dict[tuple[bytes, int], int]:
    """The book the quotes of ``lps`` make: each quotes LEVELS levels of
    LEVEL_LOTS a side from its best bid and ask."""
    book: dict[tuple[bytes, int], int] = {}
    for lp in lps:
        bid, ask = QUOTES[lp]
        for i in range(LEVELS):
            book[(b"0", bid - i)] = book.get((b"0", bid - i), 0) + LEVEL_LOTS
            book[(b"1", ask + i)] = book.get((b"1", ask + i), 0) + LEVEL_LOTS
    return book


@pytest.mark.asyncio
async def test_clients_market_data_leaves_a_disabled_lps_quotes_out(
    flow_harness: Harness,
) -> None:
    """A client is shown only prices it can trade on: disabling LP_A takes
    its levels out of what subscribed clients are shown at once (LP_A's
    best bid is the book's best), without waiting for another quote; LP_A
    quoting on while disabled sends nothing; enabled again, its levels are
    back at once."""
    harness = flow_harness
    client = Subscriber(harness)
    client.subscribe()
    assert client.view() == merged("LP_A", "LP_B", "LP_C")
    with_lp(harness, "LP_A", enabled=False)
    assert client.view() == merged("LP_B", "LP_C")
    for _ in range(3):
        harness.lps["LP_A"].publish()
    assert client.view() is None  # nothing the client is shown changed
    harness.lps["LP_B"].publish()  # the same levels again: the same book shown
    assert client.view() is None
    with_lp(harness, "LP_A", enabled=True)
    assert client.view() == merged("LP_A", "LP_B", "LP_C")


@pytest.mark.asyncio
async def test_a_snapshot_while_an_lp_is_disabled_leaves_its_quotes_out(
    flow_harness: Harness,
) -> None:
    """The snapshot answering a subscription made while LP_A is disabled
    leaves LP_A's quotes out; an LP only at its hard limit stays shown (it
    is routed to again once it has room)."""
    harness = flow_harness
    client = Subscriber(harness)
    with_lp(harness, "LP_A", enabled=False)
    harness.lps["LP_A"].publish()
    client.subscribe()
    assert client.view() == merged("LP_B", "LP_C")
    at_hard_limit(harness, "LP_B")
    assert client.view() is None


@pytest.mark.asyncio
async def test_a_limit_only_an_lp_at_its_hard_limit_reaches_is_not_routed_at_every_quote(
    flow_harness: Harness,
) -> None:
    """LP_A alone offers at the order's limit, and it is at its hard limit:
    the routing comes back empty and the order rests.  LP_A's quotes keep
    coming; the order is tried again at most once per ``retry_empty`` (0.1 s)
    (not at each quote: each try is a routing, two journaled states and a
    log line); a better price from another LP routes it at once."""
    harness = flow_harness
    flow = harness.flow
    flow.routing.retry_empty = 3600.0  # no pause ends while the quotes come
    at_hard_limit(harness, "LP_A")
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=0))
    assert last_report(harness) == (b"0", b"0", b"0")

    def routings() -> int:
        return sum(stats.routings for stats in flow.stats.policies.values())

    tried = routings()
    for _ in range(5):
        harness.lps["LP_A"].publish()
    harness.sync()
    assert harness.kids == {}
    assert routings() == tried  # not tried again within the pause
    # once the pause is over, the next quote tries it again (still empty)
    (order_id,) = flow.routing.paused
    _, price = flow.routing.paused[order_id]
    assert price == BEST_ASK
    flow.routing.paused[order_id] = (0.0, price)
    harness.lps["LP_A"].publish()
    assert routings() == tried + 1
    assert harness.kids == {}
    # LP_B offers a better price: routed there at once, paused or not
    lp_b = harness.lps["LP_B"]
    lp_b.ask = BEST_ASK - 1
    lp_b.publish()
    harness.sync()
    (kid,) = harness.kids.values()
    assert (kid.child.lp, kid.child.price) == ("LP_B", BEST_ASK - 1)
    assert order_id not in flow.routing.paused


@pytest.mark.asyncio
async def test_a_reload_or_a_link_change_ends_every_wait_after_an_empty_routing(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    flow.routing.retry_empty = 3600.0
    at_hard_limit(harness, "LP_A")
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=0))
    assert len(flow.routing.paused) == 1
    # a reload lifts LP_A's limit: the wait ends, its next quote routes it
    with_lp(harness, "LP_A", soft_limit_usd=Decimal(10**9), hard_limit_usd=Decimal(10**9))
    assert flow.routing.paused == {}
    harness.lps["LP_A"].publish()
    harness.sync()
    (kid,) = harness.kids.values()
    assert (kid.child.lp, kid.child.price) == ("LP_A", BEST_ASK)
    # an IOC routed empty is not kept waiting (it does not rest)
    at_hard_limit(harness, "LP_A")
    await harness.run(PlaceOrder(client=1, side=Side.BUY, lots=2, kind=LIMIT_IOC, offset=0))
    assert flow.routing.paused == {}
    # a link going down (or up) ends every wait
    await harness.run(PlaceOrder(client=1, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=0))
    assert len(flow.routing.paused) == 1
    harness.lps["LP_C"].drop("disconnected")
    assert flow.routing.paused == {}
