"""The end of the trading day and how long final orders are remembered."""

from __future__ import annotations

from matching_helpers import (
    BUY,
    DAY,
    GTC,
    INSTRUMENTS,
    IOC,
    SELL,
    book,
    cancel,
    limit,
    market,
    only,
    replace,
)

from matcher.engine import DAY_ENDED, Matcher
from matcher.orders import CxlRejResponseTo, ExecType, OrdRejReason, OrdStatus

LPS = book(bids=((100, 50),), asks=((110, 50),))


def test_day_orders_expire_gtc_orders_stay() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    m.submit(limit("c1", "d1", BUY, 5, 101, DAY), LPS)
    m.submit(limit("c1", "g1", BUY, 5, 102, GTC), LPS)
    m.submit(limit("c2", "d2", SELL, 5, 109, DAY), LPS)
    result = m.expire_day()
    expired = [(e.client, e.cl_ord_id) for e in result.executions]
    assert expired == [("c1", "d1"), ("c2", "d2")]
    assert all(e.exec_type is ExecType.EXPIRED for e in result.executions)
    assert all(e.status is OrdStatus.EXPIRED and e.leaves_qty == 0 for e in result.executions)
    assert {e.text for e in result.executions} == {DAY_ENDED}
    assert [o.cl_ord_id for o in m.open_orders()] == ["g1"]
    # the expired order still answers a status request on the new day
    status = m.status("c1", "d1")
    assert status is not None
    assert status.status is OrdStatus.EXPIRED


def test_day_orders_expire_late_when_named_and_nothing_is_forgotten() -> None:
    """A day that ended while orders were worked nowhere (their gateway
    down, their session held by none): the DAY ones named expire now."""
    m = Matcher(INSTRUMENTS, id_prefix="T")
    m.submit(limit("c1", "d1", BUY, 5, 101, DAY), LPS)
    m.submit(limit("c1", "g1", BUY, 5, 102, GTC), LPS)
    m.submit(limit("c2", "d2", SELL, 5, 109, DAY), LPS)
    m.submit(limit("c1", "x1", BUY, 5, 101, GTC), LPS)
    m.cancel(cancel("c1", "x1-c", "x1"))
    ids = {o.cl_ord_id: o.order_id for o in m.open_orders()}
    result = m.expire_late([ids["d1"], ids["g1"], "no such order"])
    assert [(e.cl_ord_id, e.exec_type, e.text) for e in result.executions] == [
        ("d1", ExecType.EXPIRED, DAY_ENDED)
    ]
    assert [o.cl_ord_id for o in m.open_orders()] == ["g1", "d2"]
    # not a day end: the final orders are still known
    assert m.status("c1", "x1-c") is not None


def test_a_new_day_forgets_the_final_orders_of_the_last_one() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    m.submit(market("c1", "m1", BUY, 5), LPS)
    m.submit(limit("c1", "g1", BUY, 5, 101, GTC), LPS)
    m.submit(limit("c1", "d1", BUY, 5, 101, DAY), LPS)
    m.cancel(cancel("c1", "g1-c", "g1"))  # g1 canceled: final, under both ClOrdIDs
    m.expire_day()
    assert m.status("c1", "g1") is None
    assert m.status("c1", "g1-c") is None
    # m1 is still routing, so still open and known; d1 expired today
    assert m.status("c1", "m1") is not None
    assert m.status("c1", "d1") is not None
    m.expire_day()
    assert m.status("c1", "d1") is None
    # a forgotten ClOrdID may be used again
    again = m.submit(limit("c1", "g1", BUY, 5, 101, GTC), LPS)
    assert only(again, ExecType.NEW).cl_ord_id == "g1"


def test_a_day_order_out_at_lps_expires_when_its_routing_is_done() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    (route,) = m.submit(limit("c1", "d1", BUY, 10, 110, DAY), LPS).routes
    m.cancel(cancel("c1", "d1-c", "d1"))  # waits for the routing: PENDING_CANCEL
    assert not m.expire_day().executions
    m.on_fill(route.order_id, 4, 110, "lp1")
    result = m.on_route_done(route.order_id, 6, "no more liquidity")
    expired = only(result, ExecType.EXPIRED)
    assert (expired.cum_qty, expired.leaves_qty, expired.status) == (4, 0, OrdStatus.EXPIRED)
    (reject,) = result.cancel_rejects
    assert reject.response_to is CxlRejResponseTo.CANCEL
    assert DAY_ENDED in reject.text
    assert m.open_orders() == []


def test_a_day_order_the_lps_fill_in_full_after_the_day_end_is_expiring_no_more() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    (route,) = m.submit(limit("c1", "d1", BUY, 10, 110, DAY), LPS).routes
    m.expire_day()
    assert m.expiring == {route.order_id}
    filled = m.on_fill(route.order_id, 10, 110, "lp1")
    assert only(filled, ExecType.TRADE).status is OrdStatus.FILLED
    assert not m.on_route_done(route.order_id, 0, "filled").executions
    assert m.expiring == frozenset()


def test_a_day_order_out_at_lps_when_the_day_ends_is_routed_no_more() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    (route,) = m.submit(limit("c1", "d1", BUY, 10, 110, DAY), LPS).routes
    (gtc,) = m.submit(limit("c1", "g1", BUY, 10, 110, GTC), LPS).routes
    assert not m.routes_no_more(route.order_id)
    m.expire_day()
    assert m.routes_no_more(route.order_id)  # what comes back expires
    assert not m.routes_no_more(gtc.order_id)


def test_final_orders_beyond_the_bound_are_forgotten_oldest_first() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=3)
    for i in range(5):
        m.submit(limit("c1", f"x{i}", BUY, 5, 101, GTC), LPS)
        m.cancel(cancel("c1", f"x{i}-c", f"x{i}"))
    known = [i for i in range(5) if m.status("c1", f"x{i}") is not None]
    assert known == [2, 3, 4]
    assert m.status("c1", "x1-c") is None
    assert m.status("c1", "x2-c") is not None
    # open orders are never forgotten, however many finish after them
    m.submit(limit("c1", "keep", BUY, 5, 101, GTC), LPS)
    m.submit(limit("c1", "r", BUY, 5, 101, GTC), LPS)
    m.replace(replace("c1", "r2", "r", 6, 101))
    for i in range(10):
        m.submit(limit("c2", f"y{i}", SELL, 5, 200, IOC), LPS)  # not marketable: canceled
    assert m.status("c1", "keep") is not None
    assert m.status("c1", "r") is not None
    assert m.status("c1", "r2") is not None
    dup = m.submit(limit("c1", "keep", BUY, 5, 101, GTC), LPS)
    assert only(dup, ExecType.REJECTED).ord_rej_reason is OrdRejReason.DUPLICATE_ORDER


def test_a_day_end_forgets_at_once_and_frees_a_slice_at_a_time() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    for i in range(20):
        m.submit(limit("c1", f"f{i}", BUY, 5, 101, GTC), LPS)
        m.cancel(cancel("c1", f"f{i}-c", f"f{i}"))  # final, under two ClOrdIDs
    m.submit(limit("c1", "g1", BUY, 5, 101, GTC), LPS)
    m.replace(replace("c1", "g2", "g1", qty=6, price=102))  # open, known as g1 and g2
    m.submit(limit("c2", "d1", SELL, 5, 109, DAY), LPS)
    m.expire_day()
    # the day's final orders are unknown at once, before anything is freed
    assert m.status("c1", "f3") is None
    assert m.status("c1", "f3-c") is None
    again = m.submit(limit("c1", "f3", BUY, 5, 101, GTC), LPS)
    assert only(again, ExecType.NEW).cl_ord_id == "f3"
    # the open order is known by both its ClOrdIDs; the one that expired today too
    assert m.status("c1", "g1") is not None
    assert m.status("c1", "g2") is not None
    assert m.status("c2", "d1") is not None
    slices = 0
    while m.release_forgotten(7):
        slices += 1
        assert m.status("c1", "g2") is not None
    assert slices >= 20 * 2 // 7  # each final order is an entry twice over, or more
    assert not m.release_forgotten(7)
    assert m.status("c1", "g1") is not None
    assert m.status("c2", "d1") is not None
    assert m.status("c1", "f4") is None
    assert [o.cl_ord_id for o in m.open_orders()] == ["g2", "f3"]
