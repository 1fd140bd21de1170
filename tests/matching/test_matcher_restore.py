"""A matcher rebuilt from another's orders (a restart) behaves as the
original would have: same books, time priority, ClOrdIDs and pending
changes."""

from __future__ import annotations

import msgspec
import pytest
from matching_helpers import (
    BUY,
    GTC,
    INSTRUMENTS,
    SELL,
    book,
    cancel,
    limit,
    market,
    replace,
)

from matcher.engine import Matcher, MatcherError
from matcher.orders import ExecType, Order, OrdStatus


def restored(original: Matcher, prefix: str = "R") -> Matcher:
    """A new matcher with the original's orders, taken through the journal's
    encoding as a restart takes them."""
    copies = msgspec.msgpack.decode(
        msgspec.msgpack.encode(list(original.orders())), type=list[Order]
    )
    again = Matcher(INSTRUMENTS, id_prefix=prefix)
    again.restore(copies, original.expiring)
    return again


def outcome(m: Matcher, *results: object) -> list[tuple[object, ...]]:
    """What a matcher did, without the ids that differ between runs."""
    out = []
    for result in results:
        for ex in result.executions:  # type: ignore[attr-defined]
            out.append((ex.exec_type, ex.client, ex.cl_ord_id, ex.status, ex.last_qty, ex.last_px))
        for route in result.routes:  # type: ignore[attr-defined]
            out.append(("route", route.client, route.cl_ord_id, route.qty, route.price))
    return out


def a_busy_matcher() -> Matcher:
    m = Matcher(INSTRUMENTS, id_prefix="1")
    lp = book(bids=((100_000, 50),), asks=((100_010, 50),))
    m.submit(limit("C1", "B1", BUY, 5, 100_004), lp)
    m.submit(limit("C2", "B2", BUY, 3, 100_004), lp)  # same price, later
    m.submit(limit("C2", "B3", BUY, 4, 100_002, GTC), lp)
    m.submit(limit("C3", "S1", SELL, 6, 100_008), lp)
    m.submit(limit("C1", "S2", SELL, 2, 100_007), lp)
    m.replace(replace("C1", "S2b", "S2", 3), lp)  # less quantity: keeps priority
    m.cancel(cancel("C3", "S1x", "S1"))  # final, known by both ClOrdIDs
    # an order out at LPs with a partial fill and a cancel waiting
    routed = m.submit(limit("C3", "B4", BUY, 10, 100_012), lp)
    (need,) = routed.routes
    m.on_fill(need.order_id, 4, 100_010, "LP_A")
    m.cancel(cancel("C3", "B4x", "B4"))
    m.submit(market("C2", "M1", SELL, 1), None)  # refused or canceled: final
    return m


def test_open_orders_and_their_states_come_back() -> None:
    original = a_busy_matcher()
    again = restored(original)
    assert again.open_count == original.open_count
    # every field but the ExecID (fields()[0]), which is new
    plain = [ex.fields()[1:] for ex in original.open_orders()]
    back = [ex.fields()[1:] for ex in again.open_orders()]
    assert back == plain


def test_every_clordid_still_answers_and_is_still_taken() -> None:
    again = restored(a_busy_matcher())
    for client, cl_ord_id, status in [
        ("C3", "S1", OrdStatus.CANCELED),
        ("C3", "S1x", OrdStatus.CANCELED),
        ("C1", "S2", OrdStatus.FILLED),  # crossed by B4
        ("C1", "S2b", OrdStatus.FILLED),
        ("C3", "B4", OrdStatus.PENDING_CANCEL),
        ("C3", "B4x", OrdStatus.PENDING_CANCEL),
    ]:
        answer = again.status(client, cl_ord_id)
        assert answer is not None, cl_ord_id
        assert answer.status is status, cl_ord_id
    duplicate = again.submit(limit("C3", "S1", SELL, 1, 100_100), None)
    assert duplicate.executions[0].exec_type is ExecType.REJECTED
    assert again.status("C1", "S1") is None  # another client's ClOrdID


def test_crossing_after_a_restart_follows_the_same_priority() -> None:
    original = a_busy_matcher()
    again = restored(original)
    lp = book(bids=((99_000, 50),), asks=((101_000, 50),))
    taker = market("C9", "T1", SELL, 10)
    assert outcome(again, again.submit(taker, lp)) == outcome(original, original.submit(taker, lp))
    # the pending cancel still applies when the routing comes back
    (order,) = [o for o in again.orders() if o.cl_ord_id == "B4"]
    result = again.on_route_done(order.order_id, order.routing_qty, "lp done")
    assert [ex.exec_type for ex in result.executions] == [ExecType.CANCELED]
    assert result.executions[0].cl_ord_id == "B4x"


def test_new_orders_after_a_restart_get_new_ids_and_later_priority() -> None:
    original = a_busy_matcher()
    again = restored(original, prefix="2")
    old_ids = {o.order_id for o in original.orders()}
    lp = book(bids=((100_000, 50),), asks=((100_010, 50),))
    late = again.submit(limit("C5", "B9", BUY, 1, 100_004), lp)
    assert late.executions[0].order_id not in old_ids
    taker = again.submit(limit("C9", "T2", SELL, 9, 100_004), None)
    crossed = [ex.cl_ord_id for ex in taker.executions if ex.client != "C9"]
    assert crossed == ["B1", "B2", "B9"]


def test_day_orders_out_at_lps_at_day_end_still_expire_on_return() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="1")
    routed = m.submit(limit("C1", "D1", BUY, 5, 100_012), book(asks=((100_010, 50),)))
    m.expire_day()
    again = restored(m)
    (need,) = routed.routes
    result = again.on_route_done(need.order_id, 5, "lp done")
    assert [ex.exec_type for ex in result.executions] == [ExecType.EXPIRED]


def test_restore_only_into_an_empty_matcher() -> None:
    m = a_busy_matcher()
    with pytest.raises(MatcherError):
        m.restore(list(m.orders()))
