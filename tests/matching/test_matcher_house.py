"""What the house does in a client's name (a stop-out): its orders' ClOrdIDs
are kept apart from the client's own, and its cancels take no ClOrdID."""

from __future__ import annotations

import msgspec
from matching_helpers import (
    BUY,
    GTC,
    INSTRUMENTS,
    IOC,
    SELL,
    SYMBOL,
    book,
    cancel,
    limit,
    matcher,
    only,
    replace,
)

from matcher.engine import Matcher, NewOrder
from matcher.orders import CxlRejResponseTo, ExecType, Order, OrdStatus
from router.model import OrdType


def house_market(client: str, cl_ord_id: str, qty: int) -> NewOrder:
    """A market sell the house enters in ``client``'s name."""
    return NewOrder(client, cl_ord_id, SYMBOL, SELL, OrdType.MARKET, IOC, qty, house=True)


def test_the_house_and_the_client_each_have_their_own_clordids() -> None:
    m = matcher()
    lp = book(bids=((100, 50),))
    (route,) = m.submit(house_market("c1", "SO-1", 2), lp).routes
    assert route.cl_ord_id == "SO-1"
    # the client can neither reach the house's order by its id ...
    assert m.status("c1", "SO-1") is None
    (refused,) = m.cancel(cancel("c1", "X1", "SO-1")).cancel_rejects
    assert (refused.order_id, refused.text) == (None, "unknown order")
    # ... nor is the id taken from it; the house's next is checked among
    # the house's only
    assert only(m.submit(limit("c1", "SO-1", BUY, 1, 90, GTC), lp), ExecType.NEW)
    again = m.submit(house_market("c1", "SO-1", 1), lp)
    assert only(again, ExecType.REJECTED).text == "Duplicate ClOrdID"
    mine = m.status("c1", "SO-1")
    assert mine is not None
    assert mine.price == 90
    # the house finds its order, open or final
    assert m.find(route.order_id, "c1", "SO-1") is not None
    m.on_route_done(route.order_id, 2, "no fill")
    final = m.find(route.order_id, "c1", "SO-1")
    assert final is not None
    assert (final.house, final.status) == (True, OrdStatus.CANCELED)


def test_an_unsolicited_cancel_is_reported_under_the_orders_own_clordid() -> None:
    m = matcher()
    (ack,) = m.submit(limit("c1", "a", BUY, 5, 90, GTC), None).executions
    m.replace(replace("c1", "a2", "a", 4))
    canceled = only(m.cancel_unsolicited(ack.order_id), ExecType.CANCELED)
    assert (canceled.cl_ord_id, canceled.orig_cl_ord_id) == ("a2", "a")
    assert canceled.status is OrdStatus.CANCELED
    assert m.cancel_unsolicited(ack.order_id).executions == []  # final: nothing more
    # no ClOrdID was taken: the client's next may be anything it has not used
    assert only(m.submit(limit("c1", "b", BUY, 1, 90), None), ExecType.NEW)


def test_an_unsolicited_cancel_waits_for_the_routing_and_is_never_refused() -> None:
    m = matcher()
    lp = book(asks=((100, 50),))
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100), lp).routes
    only(m.replace(replace("c1", "a2", "a", 8, 99)), ExecType.PENDING_REPLACE)
    result = m.cancel_unsolicited(route.order_id)
    pending = only(result, ExecType.PENDING_CANCEL)
    assert (pending.cl_ord_id, pending.status) == ("a", OrdStatus.PENDING_CANCEL)
    (superseded,) = result.cancel_rejects  # the client's replace never applies
    assert (superseded.cl_ord_id, superseded.response_to) == ("a2", CxlRejResponseTo.REPLACE)
    assert m.routes_no_more(route.order_id)
    m.on_fill(route.order_id, 3, 100, "lp1")
    done = only(m.on_route_done(route.order_id, 7, "done"), ExecType.CANCELED)
    assert (done.cl_ord_id, done.orig_cl_ord_id, done.cum_qty) == ("a", None, 3)
    order = m.order_of("c1", "a")
    assert order is not None
    assert order.aliases == ("a2",)
    # filled in full meanwhile: the cancel the client never sent is not refused to it
    (route,) = m.submit(limit("c1", "b", BUY, 10, 100), lp).routes
    m.cancel_unsolicited(route.order_id)
    filled = m.on_fill(route.order_id, 10, 100, "lp1")
    assert only(filled, ExecType.TRADE).status is OrdStatus.FILLED
    assert filled.cancel_rejects == []


def test_the_house_keeps_its_clordids_apart_across_a_restart_and_a_day() -> None:
    m = matcher()
    lp = book(bids=((100, 50),))
    (route,) = m.submit(house_market("c1", "SO-1", 2), lp).routes
    m.on_route_done(route.order_id, 2, "no fill")
    copies = msgspec.msgpack.decode(msgspec.msgpack.encode(list(m.orders())), type=list[Order])
    again = Matcher(INSTRUMENTS, id_prefix="R")
    again.restore(copies)
    assert again.status("c1", "SO-1") is None
    assert again.find(route.order_id, "c1", "SO-1") is not None
    assert only(again.submit(limit("c1", "SO-1", BUY, 1, 90), None), ExecType.NEW)
    refused = again.submit(house_market("c1", "SO-1", 1), lp)
    assert only(refused, ExecType.REJECTED).text == "Duplicate ClOrdID"
    # the day's end lets the house's ids go as it does the client's
    again.expire_day()
    assert again.find(route.order_id, "c1", "SO-1") is None
    assert only(again.submit(house_market("c1", "SO-1", 1), lp), ExecType.NEW)
