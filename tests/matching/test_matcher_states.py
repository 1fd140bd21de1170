"""Order state transitions of the matcher, following the FIX 4.4 order state
change matrices: new, partial fill, fill, cancel, replace, reject, expire."""

from __future__ import annotations

from fractions import Fraction

import pytest
from matching_helpers import (
    BUY,
    DAY,
    FOK,
    GTC,
    IOC,
    SELL,
    SYMBOL,
    book,
    cancel,
    limit,
    market,
    matcher,
    only,
    replace,
)

from matcher.engine import MatcherError, NewOrder
from matcher.orders import (
    CxlRejReason,
    CxlRejResponseTo,
    ExecType,
    OrdRejReason,
    OrdStatus,
)
from router.model import OrdType


def test_resting_limit_order_is_new_and_rests() -> None:
    m = matcher()
    result = m.submit(limit("c1", "a", BUY, 10, 100), book(asks=((105, 50),)))
    new = only(result, ExecType.NEW)
    assert new.status is OrdStatus.NEW
    assert (new.cum_qty, new.leaves_qty, new.notional) == (0, 10, 0)
    assert new.cl_ord_id == "a"
    assert new.orig_cl_ord_id is None
    assert result.routes == []
    assert [e.cl_ord_id for e in m.open_orders()] == ["a"]


def test_partial_fill_then_fill_from_lp() -> None:
    m = matcher()
    result = m.submit(market("c1", "a", BUY, 10), book(asks=((100, 50),)))
    (route,) = result.routes
    assert (route.qty, route.price, route.tif) == (10, None, IOC)
    partial = only(m.on_fill(route.order_id, 4, 100, "lp1"), ExecType.TRADE)
    assert partial.status is OrdStatus.PARTIALLY_FILLED
    assert (partial.cum_qty, partial.leaves_qty, partial.last_qty, partial.last_px) == (
        4,
        6,
        4,
        100,
    )
    assert partial.counterparty == "lp1"
    filled = only(m.on_fill(route.order_id, 6, 101, "lp2"), ExecType.TRADE)
    assert filled.status is OrdStatus.FILLED
    assert (filled.cum_qty, filled.leaves_qty, filled.notional) == (10, 0, 4 * 100 + 6 * 101)
    assert filled.avg_px == Fraction(1006, 10)
    done = m.on_route_done(route.order_id, 0, "")
    assert done.executions == []
    assert m.open_orders() == []


def test_cancel_resting_order() -> None:
    m = matcher()
    m.submit(limit("c1", "a", BUY, 10, 100), None)
    result = m.cancel(cancel("c1", "b", "a"))
    canceled = only(result, ExecType.CANCELED)
    assert canceled.status is OrdStatus.CANCELED
    assert (canceled.cl_ord_id, canceled.orig_cl_ord_id) == ("b", "a")
    assert (canceled.cum_qty, canceled.leaves_qty) == (0, 0)
    assert m.open_orders() == []
    status = m.status("c1", "a")
    assert status is not None
    assert status.status is OrdStatus.CANCELED


def test_cancel_final_order_is_too_late() -> None:
    m = matcher()
    m.submit(limit("c1", "a", BUY, 10, 100), None)
    m.cancel(cancel("c1", "b", "a"))
    result = m.cancel(cancel("c1", "c", "a"))
    (reject,) = result.cancel_rejects
    assert reject.reason is CxlRejReason.TOO_LATE_TO_CANCEL
    assert reject.status is OrdStatus.CANCELED
    assert reject.response_to is CxlRejResponseTo.CANCEL
    assert reject.order_id is not None
    assert result.executions == []


def test_cancel_unknown_order() -> None:
    m = matcher()
    (reject,) = m.cancel(cancel("c1", "b", "nope")).cancel_rejects
    assert reject.reason is CxlRejReason.UNKNOWN_ORDER
    assert reject.order_id is None
    assert reject.status is OrdStatus.REJECTED
    assert (reject.cl_ord_id, reject.orig_cl_ord_id) == ("b", "nope")


def test_cancel_with_used_cl_ord_id_is_duplicate() -> None:
    m = matcher()
    m.submit(limit("c1", "a", BUY, 10, 100), None)
    m.submit(limit("c1", "b", BUY, 10, 99), None)
    (reject,) = m.cancel(cancel("c1", "b", "a")).cancel_rejects
    assert reject.reason is CxlRejReason.DUPLICATE_CL_ORD_ID
    assert len(m.open_orders()) == 2


def test_replace_quantity_down_keeps_priority() -> None:
    m = matcher()
    m.submit(limit("c1", "a", SELL, 10, 100), None)
    m.submit(limit("c2", "b", SELL, 10, 100), None)
    replaced = only(m.replace(replace("c1", "a2", "a", 5)), ExecType.REPLACED)
    assert (replaced.cl_ord_id, replaced.orig_cl_ord_id) == ("a2", "a")
    assert (replaced.qty, replaced.leaves_qty, replaced.price) == (5, 5, 100)
    assert replaced.status is OrdStatus.NEW
    trade = m.submit(limit("c3", "x", BUY, 5, 100), None)
    makers = [e.client for e in trade.executions if e.exec_type is ExecType.TRADE]
    assert makers == ["c3", "c1"]


def test_replace_quantity_up_loses_priority() -> None:
    m = matcher()
    m.submit(limit("c1", "a", SELL, 10, 100), None)
    m.submit(limit("c2", "b", SELL, 10, 100), None)
    m.replace(replace("c1", "a2", "a", 12))
    trade = m.submit(limit("c3", "x", BUY, 5, 100), None)
    makers = [e.client for e in trade.executions if e.exec_type is ExecType.TRADE]
    assert makers == ["c3", "c2"]


def test_replace_after_partial_fill() -> None:
    m = matcher()
    m.submit(limit("c1", "a", SELL, 10, 100), None)
    m.submit(limit("c2", "x", BUY, 4, 100), None)
    replaced = only(m.replace(replace("c1", "a2", "a", 6, 101)), ExecType.REPLACED)
    assert replaced.status is OrdStatus.PARTIALLY_FILLED
    assert (replaced.qty, replaced.cum_qty, replaced.leaves_qty, replaced.price) == (6, 4, 2, 101)


def test_replace_to_filled_quantity_fills_the_order() -> None:
    m = matcher()
    m.submit(limit("c1", "a", SELL, 10, 100), None)
    m.submit(limit("c2", "x", BUY, 4, 100), None)
    replaced = only(m.replace(replace("c1", "a2", "a", 4)), ExecType.REPLACED)
    assert replaced.status is OrdStatus.FILLED
    assert replaced.leaves_qty == 0
    assert m.open_orders("c1") == []


def test_replace_below_filled_quantity_is_refused() -> None:
    m = matcher()
    m.submit(limit("c1", "a", SELL, 10, 100), None)
    m.submit(limit("c2", "x", BUY, 4, 100), None)
    result = m.replace(replace("c1", "a2", "a", 3))
    (reject,) = result.cancel_rejects
    assert reject.response_to is CxlRejResponseTo.REPLACE
    assert reject.status is OrdStatus.PARTIALLY_FILLED
    assert result.executions == []
    # The refused ClOrdID was not consumed.
    assert only(m.replace(replace("c1", "a2", "a", 5)), ExecType.REPLACED).qty == 5


def test_replace_making_order_marketable_routes_it() -> None:
    m = matcher()
    lp = book(asks=((105, 50),))
    m.submit(limit("c1", "a", BUY, 10, 100), lp)
    result = m.replace(replace("c1", "a2", "a", 10, 105), lp)
    assert only(result, ExecType.REPLACED).price == 105
    (route,) = result.routes
    assert (route.qty, route.price) == (10, 105)


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (limit("c1", "a", BUY, 10, 100, symbol="XAU/USD"), OrdRejReason.UNKNOWN_SYMBOL),
        (limit("c1", "a", BUY, 0, 100), OrdRejReason.INCORRECT_QUANTITY),
        (limit("c1", "a", BUY, 1001, 100), OrdRejReason.INCORRECT_QUANTITY),
        (limit("c1", "a", BUY, 10, 0), OrdRejReason.OTHER),
        (NewOrder("c1", "a", SYMBOL, BUY, OrdType.LIMIT, DAY, 10), OrdRejReason.OTHER),
        (market("c1", "a", BUY, 10, GTC), OrdRejReason.OTHER),
    ],
)
def test_invalid_orders_are_rejected(cmd: NewOrder, reason: OrdRejReason) -> None:
    m = matcher()
    result = m.submit(cmd, book(asks=((100, 50),)))
    rejected = only(result, ExecType.REJECTED)
    assert rejected.status is OrdStatus.REJECTED
    assert rejected.ord_rej_reason is reason
    assert (rejected.cum_qty, rejected.leaves_qty) == (0, 0)
    assert len(result.executions) == 1
    assert result.routes == []
    assert m.open_orders() == []


def test_day_market_order_is_treated_as_ioc() -> None:
    m = matcher()
    result = m.submit(market("c1", "a", BUY, 10, DAY), book(asks=((100, 5),)))
    assert only(result, ExecType.NEW).tif is IOC
    (route,) = result.routes
    assert route.tif is IOC
    m.on_fill(route.order_id, 5, 100, "lp1")
    canceled = only(m.on_route_done(route.order_id, 5, "no more liquidity"), ExecType.CANCELED)
    assert canceled.text == "no more liquidity"
    assert (canceled.cum_qty, canceled.leaves_qty) == (5, 0)


def test_ioc_limit_not_marketable_is_canceled_at_once() -> None:
    m = matcher()
    result = m.submit(limit("c1", "a", BUY, 10, 100, IOC), book(asks=((101, 50),)))
    assert [e.exec_type for e in result.executions] == [ExecType.NEW, ExecType.CANCELED]
    assert result.routes == []
    assert m.open_orders() == []


def test_fok_without_liquidity_expires_with_no_fill() -> None:
    m = matcher()
    m.submit(limit("c2", "s", SELL, 3, 100), None)
    result = m.submit(limit("c1", "a", BUY, 10, 100, FOK), book(asks=((100, 5), (101, 50))))
    assert [e.exec_type for e in result.executions] == [ExecType.NEW, ExecType.EXPIRED]
    assert result.executions[-1].status is OrdStatus.EXPIRED
    assert result.routes == []
    # The resting sell was not touched.
    (resting,) = m.open_orders("c2")
    assert resting.leaves_qty == 3


def test_fok_covered_by_client_book_and_lps_crosses_then_routes() -> None:
    m = matcher()
    m.submit(limit("c2", "s", SELL, 3, 99), None)
    result = m.submit(limit("c1", "a", BUY, 10, 100, FOK), book(asks=((100, 7),)))
    trade = [e for e in result.executions if e.client == "c1" and e.exec_type is ExecType.TRADE]
    assert [(t.last_qty, t.last_px) for t in trade] == [(3, 99)]
    (route,) = result.routes
    assert (route.qty, route.price, route.tif) == (7, 100, FOK)


def test_fok_covered_by_client_book_behind_a_better_lp_price_is_worked() -> None:
    # The LPs show 3 lots at a better price than the client book's 10: the
    # two together hold the order, so it is not killed for the LPs' 3.
    m = matcher()
    m.submit(limit("c2", "s", SELL, 10, 101), None)
    result = m.submit(limit("c1", "a", BUY, 10, 102, FOK), book(asks=((100, 3),)))
    assert [e.exec_type for e in result.executions] == [ExecType.NEW]
    (route,) = result.routes
    m.on_fill(route.order_id, 3, 100, "lp1")
    done = m.on_route_done(route.order_id, route.qty - 3, "no liquidity")
    fills = [e for e in done.executions if e.client == "c1"]
    assert [(e.last_qty, e.last_px) for e in fills] == [(7, 101)]
    assert (fills[-1].status, fills[-1].cum_qty) == (OrdStatus.FILLED, 10)


def test_gtc_remainder_rests_after_routing() -> None:
    m = matcher()
    result = m.submit(limit("c1", "a", BUY, 10, 100, GTC), book(asks=((100, 4),)))
    (route,) = result.routes
    m.on_fill(route.order_id, 4, 100, "lp1")
    done = m.on_route_done(route.order_id, 6, "no liquidity")
    assert done.executions == []
    (resting,) = m.open_orders()
    assert (resting.status, resting.cum_qty, resting.leaves_qty) == (
        OrdStatus.PARTIALLY_FILLED,
        4,
        6,
    )


def test_fill_larger_than_routed_quantity_is_an_error() -> None:
    m = matcher()
    (route,) = m.submit(market("c1", "a", BUY, 10), book(asks=((100, 50),))).routes
    with pytest.raises(MatcherError):
        m.on_fill(route.order_id, 11, 100, "lp1")
    with pytest.raises(MatcherError):
        m.on_fill("unknown", 1, 100, "lp1")
