"""What an OrderCancelReject says of the order it refuses to change: its
OrdStatus is the order's after the reject (FIX 4.4: "OrdStatus value after
this cancel reject is applied"), as the client reads it after every report
the same call made (the executions go out first, then the rejects), and its
OrigClOrdID the order's last accepted ClOrdID ("ClOrdID of the previous
accepted order"), whichever of its ids the request named."""

from __future__ import annotations

from matching_helpers import BUY, IOC, SELL, book, cancel, limit, matcher, only, replace

from matcher.orders import CxlRejReason, CxlRejResponseTo, ExecType, OrdStatus


def test_a_replace_refused_as_an_ioc_ends_says_the_order_is_canceled() -> None:
    m = matcher()
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100, IOC), book(asks=((100, 50),))).routes
    only(m.replace(replace("c1", "a2", "a", 8, 100)), ExecType.PENDING_REPLACE)
    m.on_fill(route.order_id, 2, 100, "lp1")
    done = m.on_route_done(route.order_id, 8, "ioc remainder")
    canceled = only(done, ExecType.CANCELED)
    assert (canceled.status, canceled.cum_qty, canceled.leaves_qty) == (OrdStatus.CANCELED, 2, 0)
    (refused,) = done.cancel_rejects
    assert (refused.cl_ord_id, refused.reason) == ("a2", CxlRejReason.TOO_LATE_TO_CANCEL)
    # sent after the cancel: it must not say the order is still working
    assert refused.status is OrdStatus.CANCELED


def test_a_replace_refused_as_the_remainder_crosses_says_the_order_is_filled() -> None:
    m = matcher()
    (route,) = m.submit(limit("c1", "a", BUY, 10, 100), book(asks=((100, 50),))).routes
    only(m.replace(replace("c1", "a2", "a", 3, 100)), ExecType.PENDING_REPLACE)
    m.on_fill(route.order_id, 5, 100, "lp1")  # past the 3 the replace asks for
    m.submit(limit("s1", "s", SELL, 5, 99), None)  # rests: c1 is out at the LP
    done = m.on_route_done(route.order_id, 5, "ioc remainder")
    trades = [e for e in done.executions if e.client == "c1" and e.exec_type is ExecType.TRADE]
    assert [(t.last_qty, t.status) for t in trades] == [(5, OrdStatus.FILLED)]
    (refused,) = done.cancel_rejects
    assert refused.reason is CxlRejReason.TOO_LATE_TO_CANCEL
    assert refused.status is OrdStatus.FILLED


def test_a_replace_over_a_pending_replace_names_the_last_accepted_cl_ord_id() -> None:
    m = matcher()
    m.submit(limit("c1", "x", BUY, 10, 100), book(asks=((100, 50),)))
    only(m.replace(replace("c1", "y", "x", 8, 100)), ExecType.PENDING_REPLACE)
    # the client chains a second replace onto the first, not yet accepted
    (refused,) = m.replace(replace("c1", "z", "y", 7, 100)).cancel_rejects
    assert (refused.cl_ord_id, refused.reason) == ("z", CxlRejReason.ALREADY_PENDING)
    assert refused.response_to is CxlRejResponseTo.REPLACE
    assert refused.orig_cl_ord_id == "x"  # y was never accepted


def test_a_cancel_too_late_names_the_cl_ord_id_that_ended_the_order() -> None:
    m = matcher()
    m.submit(limit("c1", "x", BUY, 10, 100), None)
    only(m.replace(replace("c1", "y", "x", 8, 100)), ExecType.REPLACED)
    only(m.cancel(cancel("c1", "k1", "y")), ExecType.CANCELED)
    # a cancel sent before the client saw those, naming the order's first id
    (refused,) = m.cancel(cancel("c1", "c2", "x")).cancel_rejects
    assert (refused.reason, refused.status) == (CxlRejReason.TOO_LATE_TO_CANCEL, OrdStatus.CANCELED)
    assert refused.orig_cl_ord_id == "k1"
