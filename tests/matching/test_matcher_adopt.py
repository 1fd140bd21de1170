"""Open orders moved between matchers (a client of a cluster served by
another gateway): parked out of one, adopted by another, as copied."""

from __future__ import annotations

import msgspec
from matching_helpers import (
    BUY,
    GTC,
    INSTRUMENTS,
    SELL,
    book,
    cancel,
    limit,
    market,
)

from matcher.engine import Matcher
from matcher.orders import ExecType, Order, OrdStatus

LP = book(bids=((100_000, 50),), asks=((100_010, 50),))


def copied(orders: list[Order]) -> list[Order]:
    """Orders as another gateway's copy carries them (encoded)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(orders), type=list[Order])


def test_park_takes_a_clients_open_orders_out_without_a_report() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="A")
    m.submit(limit("C1", "B1", BUY, 5, 100_004), LP)
    m.submit(limit("C2", "B2", BUY, 3, 100_003), LP)
    m.submit(limit("C1", "S1", SELL, 2, 100_020, GTC), LP)
    m.submit(limit("C1", "S2", SELL, 1, 100_021), LP)
    m.cancel(cancel("C1", "S2x", "S2"))  # final: stays known
    parked = m.park("C1")
    assert [o.cl_ord_id for o in parked] == ["B1", "S1"]
    assert m.open_count == 1
    assert m.open_of("C1") == []
    # unknown to the client's requests, out of the book
    assert m.status("C1", "B1") is None
    assert m.status("C1", "S2x") is not None
    rejected = m.cancel(cancel("C1", "X1", "B1"))
    assert rejected.cancel_rejects[0].text == "unknown order"
    # another client's sell does not cross with a parked buy
    crossed = m.submit(limit("C3", "S3", SELL, 5, 100_004), LP)
    assert [ex.exec_type for ex in crossed.executions] == [ExecType.NEW]
    assert m.park("C1") == []


def test_adopted_orders_are_indexed_and_rest_behind_with_new_priority_in_order() -> None:
    a = Matcher(INSTRUMENTS, id_prefix="A")
    a.submit(limit("C1", "B1", BUY, 5, 100_004), LP)
    a.submit(limit("C1", "B2", BUY, 3, 100_004), LP)
    a.submit(market("C1", "M1", BUY, 2), LP)  # out at an LP
    a.submit(limit("C1", "S1", SELL, 2, 100_030), LP)
    a.cancel(cancel("C1", "S1x", "S1"))  # final: not adopted
    orders = copied([*a.open_of("C1"), *(o for o in a.orders() if o.is_final)])

    b = Matcher(INSTRUMENTS, id_prefix="B")
    b.submit(limit("C2", "B9", BUY, 1, 100_004), LP)  # rests here first
    taken = b.adopt(orders)
    assert [o.cl_ord_id for o in taken] == ["B1", "B2", "M1"]
    assert b.open_count == 4
    seqs = [o.seq for o in taken]
    assert seqs == sorted(seqs)
    # same OrderID, answered for any ClOrdID it had
    status = b.status("C1", "B1")
    assert status is not None
    assert status.order_id == orders[0].order_id
    assert status.status is OrdStatus.NEW
    # price-time: the order resting here first is crossed first, then B1, B2
    crossed = b.submit(limit("C3", "S9", SELL, 7, 100_004), LP)
    fills = [
        (ex.client, ex.cl_ord_id, ex.last_qty)
        for ex in crossed.executions
        if ex.exec_type is ExecType.TRADE and ex.client != "C3"
    ]
    assert fills == [("C2", "B9", 1), ("C1", "B1", 5), ("C1", "B2", 1)]
    # the market order's lots out at the dead gateway's LP come back: canceled
    market_order = b.order_of("C1", "M1")
    assert market_order is not None
    assert market_order.routing_qty == 2
    done = b.on_route_done(market_order.order_id, 2, "its gateway failed")
    (ex,) = done.executions
    assert (ex.exec_type, ex.status, ex.text) == (
        ExecType.CANCELED,
        OrdStatus.CANCELED,
        "its gateway failed",
    )
    # a cancel of an adopted resting order is accepted
    canceled = b.cancel(cancel("C1", "B2x", "B2"))
    assert [ex.exec_type for ex in canceled.executions] == [ExecType.CANCELED]


def test_adopt_replaces_an_open_order_of_the_same_id_and_parked_orders_come_back() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="A")
    m.submit(limit("C1", "B1", BUY, 5, 100_004), LP)
    m.submit(limit("C1", "B2", BUY, 4, 100_003), LP)
    stale = copied(m.open_of("C1"))
    parked = m.park("C1")
    assert m.adopt(parked) == parked
    assert [o.cl_ord_id for o in m.open_of("C1")] == ["B1", "B2"]
    # the copy of B1 (a partial fill elsewhere) takes the place of the one held
    newer = stale[0]
    newer.cum_qty, newer.leaves_qty, newer.status = 2, 3, OrdStatus.PARTIALLY_FILLED
    m.adopt([newer])
    assert m.open_count == 2
    held = m.order_of("C1", "B1")
    assert held is newer
    crossed = m.submit(limit("C2", "S1", SELL, 9, 100_003), LP)
    fills = [
        (ex.cl_ord_id, ex.last_qty)
        for ex in crossed.executions
        if ex.exec_type is ExecType.TRADE and ex.client == "C1"
    ]
    # one B1 in the book (its 3 lots left, the one held here gone), at its
    # better price first
    assert fills == [("B1", 3), ("B2", 4)]


def test_taken_orders_cross_what_came_in_while_they_were_parked() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="A")
    m.submit(limit("C1", "B1", BUY, 5, 100_004), LP)
    m.submit(limit("C1", "S1", SELL, 2, 100_030), LP)
    parked = m.park("C1")
    # while C1 is served elsewhere, C2's sell at C1's bid has to rest
    m.submit(limit("C2", "S2", SELL, 3, 100_002), LP)
    taken = m.adopt(parked)
    crossed = m.cross_taken(taken)
    assert [(ex.client, ex.cl_ord_id, ex.last_qty, ex.last_px) for ex in crossed.executions] == [
        ("C1", "B1", 3, 100_002),
        ("C2", "S2", 3, 100_002),
    ]
    assert [(ex.cl_ord_id, ex.leaves_qty) for ex in m.open_orders()] == [("B1", 2), ("S1", 2)]
    assert m.cross_taken(taken).executions == []
