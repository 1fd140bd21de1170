"""Internal crossing, routing flow, pending cancel/replace, market updates and
client isolation."""

from __future__ import annotations

from matching_helpers import (
    BUY,
    GTC,
    IOC,
    SELL,
    book,
    cancel,
    kinds,
    limit,
    market,
    matcher,
    only,
    replace,
)

from matcher.orders import (
    INTERNAL,
    CxlRejReason,
    CxlRejResponseTo,
    ExecType,
    OrdRejReason,
    OrdStatus,
)


def test_cross_price_time_priority_at_resting_prices() -> None:
    m = matcher()
    m.submit(limit("s1", "a", SELL, 5, 101), None)
    m.submit(limit("s2", "b", SELL, 5, 100), None)
    m.submit(limit("s3", "c", SELL, 5, 100), None)
    result = m.submit(limit("b1", "x", BUY, 12, 101), None)
    trades = [e for e in result.executions if e.exec_type is ExecType.TRADE]
    # Best price first (100), earliest first at a price (s2 then s3), then 101.
    assert [(t.client, t.last_qty, t.last_px) for t in trades] == [
        ("b1", 5, 100),
        ("s2", 5, 100),
        ("b1", 5, 100),
        ("s3", 5, 100),
        ("b1", 2, 101),
        ("s1", 2, 101),
    ]
    assert all(t.counterparty == INTERNAL for t in trades)
    buyer = trades[-2]
    assert (buyer.status, buyer.cum_qty, buyer.leaves_qty) == (OrdStatus.FILLED, 12, 0)
    assert buyer.notional == 10 * 100 + 2 * 101
    assert trades[1].status is OrdStatus.FILLED
    assert trades[-1].status is OrdStatus.PARTIALLY_FILLED
    assert (trades[-1].cum_qty, trades[-1].leaves_qty) == (2, 3)
    assert [o.client for o in m.open_orders()] == ["s1"]


def test_cross_respects_the_taker_limit_and_rests_the_rest() -> None:
    m = matcher()
    m.submit(limit("s1", "a", SELL, 5, 99), None)
    m.submit(limit("s2", "b", SELL, 5, 102), None)
    result = m.submit(limit("b1", "x", BUY, 8, 100), None)
    assert kinds(result) == [("b1", ExecType.NEW), ("b1", ExecType.TRADE), ("s1", ExecType.TRADE)]
    assert result.executions[1].last_px == 99
    resting = m.status("b1", "x")
    assert resting is not None
    assert (resting.status, resting.leaves_qty) == (OrdStatus.PARTIALLY_FILLED, 3)


def test_sell_taker_crosses_best_bid_first() -> None:
    m = matcher()
    m.submit(limit("b1", "a", BUY, 5, 99), None)
    m.submit(limit("b2", "b", BUY, 5, 100), None)
    result = m.submit(market("s1", "x", SELL, 7), None)
    trades = [e for e in result.executions if e.exec_type is ExecType.TRADE and e.client != "s1"]
    assert [(t.client, t.last_qty, t.last_px) for t in trades] == [("b2", 5, 100), ("b1", 2, 99)]


def test_a_better_lp_price_is_taken_at_the_lp_not_crossed_internally() -> None:
    m = matcher()
    m.submit(limit("s1", "a", SELL, 5, 107), book(bids=((100, 50),), asks=((110, 50),)))
    m.submit(limit("s2", "b", SELL, 5, 105), book(bids=((100, 50),), asks=((110, 50),)))
    # the LPs offer at 106: s2's 105 crosses, s1's 107 does not; the rest goes to the LPs
    result = m.submit(market("b1", "x", BUY, 8), book(bids=((100, 50),), asks=((106, 50),)))
    trades = [e for e in result.executions if e.exec_type is ExecType.TRADE and e.client == "b1"]
    assert [(t.last_qty, t.last_px) for t in trades] == [(5, 105)]
    (route,) = result.routes
    assert route.qty == 3
    # what the LPs did not fill comes back and may then cross at 107
    back = m.on_route_done(route.order_id, 3, "no liquidity")
    trades = [e for e in back.executions if e.exec_type is ExecType.TRADE and e.client == "b1"]
    assert [(t.last_qty, t.last_px) for t in trades] == [(3, 107)]


def test_an_equal_lp_price_leaves_the_internal_cross_first() -> None:
    m = matcher()
    m.submit(limit("b1", "a", BUY, 5, 100), None)
    result = m.submit(limit("s1", "x", SELL, 5, 99), book(bids=((100, 50),), asks=((101, 50),)))
    trades = [e for e in result.executions if e.exec_type is ExecType.TRADE]
    assert [(t.client, t.last_px) for t in trades] == [("s1", 100), ("b1", 100)]
    assert not result.routes


def test_crossing_off_routes_everything() -> None:
    m = matcher(internal_crossing=False)
    m.submit(limit("s1", "a", SELL, 5, 100), None)
    result = m.submit(limit("b1", "x", BUY, 5, 100), book(asks=((100, 50),)))
    assert kinds(result) == [("b1", ExecType.NEW)]
    (route,) = result.routes
    assert route.qty == 5
    # Without a marketable LP book, two crossing client orders both rest.
    m.submit(limit("b2", "y", BUY, 5, 101), None)
    assert len(m.open_orders()) == 3


def test_same_client_orders_never_cross() -> None:
    m = matcher()
    m.submit(limit("c1", "a", SELL, 5, 100), None)
    result = m.submit(limit("c1", "b", BUY, 5, 100), None)
    assert kinds(result) == [("c1", ExecType.NEW)]


def test_duplicate_cl_ord_id_is_rejected_open_or_not() -> None:
    m = matcher()
    m.submit(limit("c1", "a", BUY, 5, 100), None)
    dup = only(m.submit(limit("c1", "a", BUY, 5, 100), None), ExecType.REJECTED)
    assert dup.text == "Duplicate ClOrdID"
    assert dup.ord_rej_reason is OrdRejReason.DUPLICATE_ORDER
    m.cancel(cancel("c1", "b", "a"))
    for used in ("a", "b"):
        again = only(m.submit(limit("c1", used, BUY, 5, 100), None), ExecType.REJECTED)
        assert again.text == "Duplicate ClOrdID"
    # The original order is still the one known as "a".
    status = m.status("c1", "a")
    assert status is not None
    assert status.status is OrdStatus.CANCELED
    # Another client may use the same ClOrdID.
    assert only(m.submit(limit("c2", "a", BUY, 5, 100), None), ExecType.NEW).client == "c2"


def test_routing_flow_submit_route_fills_done() -> None:
    m = matcher()
    result = m.submit(limit("c1", "a", BUY, 10, 101, IOC), book(asks=((100, 6), (101, 2))))
    (route,) = result.routes
    assert (route.client, route.side, route.qty, route.price, route.tif) == (
        "c1",
        BUY,
        10,
        101,
        IOC,
    )
    first = only(m.on_fill(route.order_id, 6, 100, "lp1"), ExecType.TRADE)
    second = only(m.on_fill(route.order_id, 2, 101, "lp1"), ExecType.TRADE)
    assert (first.status, second.status) == (OrdStatus.PARTIALLY_FILLED,) * 2
    canceled = only(m.on_route_done(route.order_id, 2, "insufficient liquidity"), ExecType.CANCELED)
    assert canceled.text == "insufficient liquidity"
    assert (canceled.cum_qty, canceled.leaves_qty, canceled.notional) == (8, 0, 6 * 100 + 2 * 101)


def test_pending_cancel_during_routing_completes_at_route_done() -> None:
    m = matcher()
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100), book(asks=((100, 50),))).routes
    pending = only(m.cancel(cancel("c1", "b", "a")), ExecType.PENDING_CANCEL)
    assert pending.status is OrdStatus.PENDING_CANCEL
    assert (pending.cl_ord_id, pending.orig_cl_ord_id) == ("b", "a")
    # A second cancel while one is pending.
    (reject,) = m.cancel(cancel("c1", "c", "a")).cancel_rejects
    assert reject.reason is CxlRejReason.ALREADY_PENDING
    fill = only(m.on_fill(route.order_id, 3, 100, "lp1"), ExecType.TRADE)
    assert fill.status is OrdStatus.PENDING_CANCEL
    done = only(m.on_route_done(route.order_id, 7, "ioc remainder"), ExecType.CANCELED)
    assert (done.cl_ord_id, done.orig_cl_ord_id) == ("b", "a")
    assert (done.status, done.cum_qty, done.leaves_qty) == (OrdStatus.CANCELED, 3, 0)
    assert m.open_orders() == []


def test_pending_cancel_filled_meanwhile_is_too_late() -> None:
    m = matcher()
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100), book(asks=((100, 50),))).routes
    m.cancel(cancel("c1", "b", "a"))
    result = m.on_fill(route.order_id, 10, 100, "lp1")
    assert only(result, ExecType.TRADE).status is OrdStatus.FILLED
    (reject,) = result.cancel_rejects
    assert reject.reason is CxlRejReason.TOO_LATE_TO_CANCEL
    assert reject.status is OrdStatus.FILLED
    assert m.on_route_done(route.order_id, 0, "").executions == []


def test_a_cancel_comes_over_a_pending_replace_which_is_refused() -> None:
    m = matcher()
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100), book(asks=((100, 50),))).routes
    only(m.replace(replace("c1", "a2", "a", 8, 99)), ExecType.PENDING_REPLACE)
    result = m.cancel(cancel("c1", "c", "a"))
    pending = only(result, ExecType.PENDING_CANCEL)
    assert (pending.cl_ord_id, pending.orig_cl_ord_id, pending.status) == (
        "c",
        "a",
        OrdStatus.PENDING_CANCEL,
    )
    (refused,) = result.cancel_rejects
    assert (refused.cl_ord_id, refused.orig_cl_ord_id) == ("a2", "a")
    assert refused.response_to is CxlRejResponseTo.REPLACE
    assert refused.status is OrdStatus.PENDING_CANCEL
    # a replace over the pending cancel, and a second cancel, are refused
    (again,) = m.replace(replace("c1", "a3", "a", 5, 99)).cancel_rejects
    assert again.reason is CxlRejReason.ALREADY_PENDING
    m.on_fill(route.order_id, 2, 100, "lp1")
    done = only(m.on_route_done(route.order_id, 8, "done"), ExecType.CANCELED)
    assert (done.cl_ord_id, done.cum_qty, done.leaves_qty, done.qty) == ("c", 2, 0, 10)
    assert m.open_orders() == []


def test_pending_replace_during_routing() -> None:
    m = matcher()
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100), book(asks=((100, 50),))).routes
    pending = only(m.replace(replace("c1", "a2", "a", 8, 99)), ExecType.PENDING_REPLACE)
    assert pending.status is OrdStatus.PENDING_REPLACE
    m.on_fill(route.order_id, 2, 100, "lp1")
    done = m.on_route_done(route.order_id, 8, "done", book(asks=((101, 50),)))
    replaced = only(done, ExecType.REPLACED)
    assert (replaced.cl_ord_id, replaced.orig_cl_ord_id) == ("a2", "a")
    assert (replaced.qty, replaced.price, replaced.cum_qty, replaced.leaves_qty) == (8, 99, 2, 6)
    assert replaced.status is OrdStatus.PARTIALLY_FILLED
    assert done.routes == []


def test_pending_replace_on_ioc_is_too_late() -> None:
    m = matcher()
    (route,) = m.submit(market("c1", "a", BUY, 10), book(asks=((100, 50),))).routes
    m.replace(replace("c1", "a2", "a", 8))
    done = m.on_route_done(route.order_id, 10, "no fill")
    (reject,) = done.cancel_rejects
    assert reject.response_to is CxlRejResponseTo.REPLACE
    assert only(done, ExecType.CANCELED).status is OrdStatus.CANCELED


def test_returning_remainder_crosses_client_book() -> None:
    m = matcher()
    (route,) = m.submit(limit("b1", "a", BUY, 10, 100), book(asks=((100, 50),))).routes
    # While b1 is out at LPs a crossable sell arrives and has to rest.
    assert m.submit(limit("s1", "s", SELL, 4, 99), None).executions[-1].exec_type is ExecType.NEW
    done = m.on_route_done(route.order_id, 10, "lp rejected")
    assert [(e.client, e.last_qty, e.last_px) for e in done.executions] == [
        ("b1", 4, 99),
        ("s1", 4, 99),
    ]


def test_on_market_routes_resting_orders_best_price_then_time() -> None:
    m = matcher()
    m.submit(limit("c1", "a", BUY, 1, 100), None)
    m.submit(limit("c2", "b", BUY, 2, 102), None)
    m.submit(limit("c3", "c", BUY, 3, 100), None)
    m.submit(limit("c4", "d", BUY, 4, 99), None)
    m.submit(limit("c5", "e", SELL, 5, 110), None)
    assert m.on_market("EUR/USD", book(bids=((98, 10),), asks=((103, 10),))).routes == []
    result = m.on_market("EUR/USD", book(bids=((110, 10),), asks=((100, 10),)))
    assert [(r.client, r.qty, r.price) for r in result.routes] == [
        ("c2", 2, 102),
        ("c1", 1, 100),
        ("c3", 3, 100),
        ("c5", 5, 110),
    ]
    # Orders already routing are not routed twice.
    assert m.on_market("EUR/USD", book(bids=((110, 10),), asks=((100, 10),))).routes == []
    assert m.on_market("XAU/USD", book(asks=((100, 10),))).routes == []


def test_clients_cannot_see_or_touch_each_others_orders() -> None:
    m = matcher()
    m.submit(limit("c1", "a", BUY, 5, 100), None)
    assert m.status("c2", "a") is None
    (reject,) = m.cancel(cancel("c2", "x", "a")).cancel_rejects
    assert reject.reason is CxlRejReason.UNKNOWN_ORDER
    (reject,) = m.replace(replace("c2", "y", "a", 6)).cancel_rejects
    assert reject.reason is CxlRejReason.UNKNOWN_ORDER
    assert m.open_orders("c2") == []
    (mine,) = m.open_orders("c1")
    assert mine.qty == 5


def test_exec_ids_are_unique() -> None:
    m1 = matcher()
    m2 = matcher()
    ids: list[str] = []
    for m in (m1, m2):
        for i in range(20):
            side = BUY if i % 2 else SELL
            result = m.submit(limit(f"c{i % 3}", f"o{i}", side, 5, 100, GTC), None)
            ids += [e.exec_id for e in result.executions]
        status = m.status("c0", "o0")
        assert status is not None
        ids.append(status.exec_id)
    assert len(ids) == len(set(ids))
