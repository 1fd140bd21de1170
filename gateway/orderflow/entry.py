"""Order entry: the client's requests, from a FIX message to a matcher call.

:class:`OrderEntry` takes each in-sequence application message of a client
session: a request resent with PossDupFlag that was worked already is
ignored, the client's message rate is held to its limit, a NewOrderSingle is
decoded, checked against the client's limits (open orders, size, notional,
position with its open orders on the same side filled) and submitted;
cancels, replaces and status requests go to the matcher; MarketDataRequests
to the market data service; CollateralInquiry and RequestForPositions are
answered from the client's margin account; anything else gets a
BusinessMessageReject.
What the matcher answers is published and routed through
:class:`~gateway.orderflow.routing.ChildRouting`.

Ids longer than ``[orders] max_id_length`` are refused as they are decoded,
and every reject echoes the client's ids cut to that length; log lines
repeat only an excerpt of a client-supplied string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final

import structlog

from config.schema import MOST_ID_LENGTH
from gateway.fix.codec import FixMessage
from gateway.fix.session import BusinessRejectReason, Session
from gateway.orderflow.collateral import (
    COLL_INQUIRY_OTHER,
    POS_REQ_OTHER,
    SNAPSHOT_AND_UPDATES,
    UNSUBSCRIBE,
    CollateralRefusal,
    PositionRefusal,
    answer_collateral_inquiry,
    answer_position_request,
    collateral_refusal_body,
    collateral_report_body,
    decode_collateral_inquiry,
    decode_position_request,
    position_refusal_body,
    refuse_collateral_inquiry,
    refuse_position_request,
    utc_business_date,
)
from gateway.orderflow.mapping import (
    Refusal,
    decode_cancel,
    decode_new_order,
    decode_replace,
    excerpt,
)
from gateway.orderflow.market_data import INSUFFICIENT_BANDWIDTH, MarketDataService
from gateway.orderflow.publish import Reports, refusal_reason
from gateway.orderflow.routing import ChildRouting
from gateway.orderflow.rules import Rules
from gateway.orderflow.stats import FlowStats
from matcher.engine import Matcher, NewOrder
from matcher.members import STATUS_REJECTED
from matcher.orders import (
    CancelReject,
    CxlRejReason,
    CxlRejResponseTo,
    Order,
    OrdRejReason,
)
from risk.accounts import Marks
from risk.limits import check
from router.book import AggregatedBook
from router.exposure import ExposureLedger, ExposureSnapshot
from router.members import BUY, FOK
from router.model import Instrument

_log = structlog.get_logger("gateway.orderflow.entry")

# NewOrderSingle, OrderCancelRequest, OrderCancelReplaceRequest
_ORDER_REQUESTS = frozenset((b"D", b"F", b"G"))

MAX_COLLATERAL_SUBSCRIPTIONS: Final = 16
"""CollateralInquiry subscriptions (263=1) one client may hold; one more is
refused with a CollateralInquiryAck (CollInquiryStatus 4)."""


class OrderEntry:
    """The requests of client sessions (see the module documentation)."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        matcher: Matcher,
        book: AggregatedBook,
        ledger: ExposureLedger,
        market_data: MarketDataService,
        reports: Reports,
        routing: ChildRouting,
        stats: FlowStats,
        rules: Rules,
    ) -> None:
        self.instruments: dict[str, Instrument] = dict(instruments)
        self.matcher = matcher
        self.book = book
        self.ledger = ledger
        self.market_data = market_data
        self.stats = stats
        self.rules = rules
        self._reports = reports
        self._routing = routing
        # per client: [tokens, time of the last refill] (max_messages_per_second)
        self._buckets: dict[str, list[float]] = {}
        # orders shed since the last log line about it, and when that was
        self._shed_count = 0
        self._shed_logged = 0.0
        # the valuation the margin accounts were last marked with
        self._marked: object = None
        self._report_seq = 0
        # per client: CollInquiryID -> the session subscribed under it
        self.collateral_subscribers: dict[str, dict[str, Session]] = {}
        self.refused_unseen: dict[str, set[str]] = {}
        """Per client, the ClOrdIDs of new orders refused before the matcher
        whose rejects a restart put in the client's store (the crash came
        before they were stored): the client may send them again with
        PossDupFlag, and they are not worked then (:meth:`_seen_before`)."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        client = session.settings.TargetCompID
        mt = msg.msg_type
        if mt in _ORDER_REQUESTS and _resent(msg) and self._seen_before(session, client, msg, now):
            # resent (PossDupFlag: by the session; PossResend: by the
            # client's application) and worked already: its answers are
            # the first time's
            return
        limits = self.rules.client_limits.get(client)
        id_limit = self.rules.config.orders.max_id_length
        rate = None if limits is None else limits.max_messages_per_second
        if rate is not None and not self._within_rate(client, rate, now):
            self._throttled(session, client, msg, rate, now, id_limit)
            return
        if mt == b"D":
            shed_after = self.rules.config.orders.shed_after_ms
            if shed_after and session.waited * 1000.0 > shed_after:
                self._shed(session, client, msg, now, id_limit)
                return
            self._new_order(session, client, msg, now, id_limit)
        elif mt == b"F":
            self._cancel(client, msg, now, id_limit)
        elif mt == b"G":
            self._replace(client, msg, now, id_limit)
        elif mt == b"H":
            status = self.matcher.status(client, (msg.get(11) or b"").decode("latin-1"))
            if status is None:
                self._reports.unknown_order_status(session, msg, now, id_limit)
            else:
                req_id = (msg.get(790) or b"")[:id_limit]
                self._reports.execution(status.client, status, now, req_id)
        elif mt == b"V":
            self.market_data.on_request(session, msg, now, id_limit)
        elif mt == b"BB":
            self._collateral_inquiry(session, client, msg, now, id_limit)
        elif mt == b"AN":
            self._position_request(session, client, msg, now, id_limit)
        else:
            self._business_reject(
                session, msg, BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE, now, id_limit
            )

    def _business_reject(
        self,
        session: Session,
        msg: FixMessage,
        reason: int,
        now: float,
        id_limit: int,
        text: bytes | None = None,
    ) -> None:
        """BusinessMessageReject (j) of ``msg``, its business-level id
        (ClOrdID, MDReqID...) echoed cut to ``id_limit``."""
        self._reports.business_reject(session, msg, reason, now, text, id_limit)

    # -- collateral and positions --------------------------------------------------

    def _report_id(self, now: float) -> str:
        self._report_seq += 1
        return f"M{int(now * 1000):x}-{self._report_seq}"

    def _collateral_inquiry(
        self, session: Session, client: str, msg: FixMessage, now: float, id_limit: int
    ) -> None:
        """CollateralInquiry (BB): the client's CollateralReport (BA) now;
        with SubscriptionRequestType 1, one more whenever a margin call is
        raised on the account, until 263=2 or the session ends."""
        limit = id_limit
        raw_id = msg.get(909)
        held = self.collateral_subscribers.get(client)
        if (
            held
            and raw_id is not None
            and msg.get(263) == b"2"
            and len(raw_id) <= MOST_ID_LENGTH
            and raw_id.decode("latin-1") in held
        ):
            # ends a subscription by its own id, whatever the limit is now
            # (it may have been made before a reload lowered it)
            limit = MOST_ID_LENGTH
        inquiry = decode_collateral_inquiry(msg, client, updates=True, max_length=limit)
        if isinstance(inquiry, CollateralRefusal):
            self._reports.send(session, b"BG", collateral_refusal_body(inquiry), now)
            return
        accounts = self._reports.accounts
        self.mark_accounts(self._routing.exposure(now))
        view = accounts.view(client)
        subscribers = self.collateral_subscribers.setdefault(client, {})
        key = inquiry.inquiry_id or ""
        if inquiry.subscription == UNSUBSCRIBE:
            subscribers.pop(key, None)
        elif inquiry.subscription == SNAPSHOT_AND_UPDATES and view is not None:
            if key not in subscribers and len(subscribers) >= MAX_COLLATERAL_SUBSCRIPTIONS:
                # each margin call answers every subscription: their number
                # is what one client may make the loop repeat
                refusal = CollateralRefusal(
                    client,
                    key,
                    COLL_INQUIRY_OTHER,
                    f"too many collateral subscriptions ({MAX_COLLATERAL_SUBSCRIPTIONS} at"
                    " most): end one (263=2) first",
                )
                self._reports.send(session, b"BG", collateral_refusal_body(refusal), now)
                return
            subscribers[key] = session
        answers = answer_collateral_inquiry(
            inquiry, view, report_id=self._report_id(now), business_date=utc_business_date(now)
        )
        for msg_type, body in answers:
            self._reports.send(session, msg_type, body, now)

    def collateral_update(self, client: str, now: float) -> None:
        """An unsolicited CollateralReport (BA) of the client's account to
        each of its subscriptions (a margin call was raised)."""
        subscribers = self.collateral_subscribers.get(client)
        view = self._reports.accounts.view(client) if subscribers else None
        if not subscribers or view is None:
            return
        date = utc_business_date(now)
        for inquiry_id, session in list(subscribers.items()):
            if not session.is_logged_on:
                del subscribers[inquiry_id]
                continue
            body = collateral_report_body(
                view,
                report_id=self._report_id(now),
                inquiry_id=inquiry_id or None,
                business_date=date,
            )
            self._reports.send(session, b"BA", body, now)

    def drop_session(self, session: Session) -> None:
        """The session ended: its collateral subscriptions end with it."""
        for subscribers in self.collateral_subscribers.values():
            for inquiry_id in [i for i, s in subscribers.items() if s is session]:
                del subscribers[inquiry_id]

    def _position_request(
        self, session: Session, client: str, msg: FixMessage, now: float, id_limit: int
    ) -> None:
        """RequestForPositions (AN): RequestForPositionsAck (AO), then a
        PositionReport (AP) per position of the client's margin account."""
        date = utc_business_date(now)
        request = decode_position_request(msg, client, current_date=date, max_length=id_limit)
        if isinstance(request, PositionRefusal):
            body = position_refusal_body(request, report_id=self._report_id(now))
            self._reports.send(session, b"AO", body, now)
            return
        accounts = self._reports.accounts
        self.mark_accounts(self._routing.exposure(now))
        answers = answer_position_request(
            request,
            accounts.view(client),
            accounts.marks,
            self.instruments,
            next_id=lambda: self._report_id(now),
            business_date=date,
        )
        for msg_type, body in answers:
            self._reports.send(session, msg_type, body, now)

    def _seen_before(self, session: Session, client: str, msg: FixMessage, now: float) -> bool:
        """A request resent with PossDupFlag (after a crash, on the peer's
        ResendRequest) or PossResend (by the client's application, under a
        new MsgSeqNum) whose ClOrdID the client has used already: it was
        worked on the first time, and its answers were sent then (or reach
        the client through the resend of ours).  Worked again, it would only
        earn a duplicate ClOrdID reject, which the client would take for
        the order's."""
        cl_ord_id = (msg.get(11) or b"").decode("latin-1")
        if self.matcher.order_of(client, cl_ord_id) is None and cl_ord_id not in (
            self.refused_unseen.get(client) or ()
        ):
            return False
        # a line a second at most (the session's, which counts those not
        # written on its end)
        session.paced.info(
            "possible_duplicate_ignored",
            now,
            client=client,
            cl_ord_id=excerpt(cl_ord_id),
            msg_type=msg.msg_type.decode("latin-1"),
        )
        return True

    def _new_order(
        self, session: Session, client: str, msg: FixMessage, now: float, id_limit: int
    ) -> None:
        stats = self.stats
        stats.orders_received[client] = stats.orders_received.get(client, 0) + 1
        order = decode_new_order(msg, client, self.instruments, id_limit)
        if isinstance(order, Refusal):
            reason = refusal_reason(order.ord_rej_reason)
            self._reports.order_reject(session, msg, order, reason, now, id_limit)
            return
        limits = self.rules.client_limits.get(client)
        exposure: ExposureSnapshot | None = None
        if limits is not None:
            cap = limits.max_open_orders
            if cap is not None and self._reports.open_by_client.get(client, 0) >= cap:
                text = f"max open orders reached: {cap} open (limit max_open_orders)"
                refusal = Refusal(text, OrdRejReason.ORDER_EXCEEDS_LIMIT)
                self._reports.order_reject(
                    session, msg, refusal, "risk_max_open_orders", now, id_limit
                )
                return
            exposure = self._routing.exposure(now)
            symbol = order.symbol
            breach = check(
                order,
                self.ledger.client_position(client, symbol),
                limits,
                exposure.usd_per_lot.get(symbol),
                self._reports.accounts.open_lots(client, symbol, order.side),
            )
            if breach is not None:
                refusal = Refusal(breach.text, OrdRejReason.ORDER_EXCEEDS_LIMIT)
                reason = f"risk_{breach.limit}"
                self._reports.order_reject(session, msg, refusal, reason, now, id_limit)
                return
        accounts = self._reports.accounts
        if accounts.params is not None:
            self.mark_accounts(exposure or self._routing.exposure(now))
            breach = accounts.check(client, order.symbol, order.side, order.qty)
            if breach is not None:
                refusal = Refusal(breach.text, OrdRejReason.ORDER_EXCEEDS_LIMIT)
                self._reports.order_reject(session, msg, refusal, "risk_margin", now, id_limit)
                return
        routing = self._routing
        book = routing.snapshot(order.symbol, now)
        # a FOK counts the lots the LPs can take as its routing would place
        # them, not every lot the book shows (an LP at its hard limit)
        lp_lots = routing.fok_lots(order, book, now) if order.tif is FOK else None
        result = self.matcher.submit(order, book, lp_lots)
        if result.executions:
            self._reports.started[result.executions[0].order_id] = [now, ""]
            self._reports.open_by_client[client] = self._reports.open_by_client.get(client, 0) + 1
        self._routing.publish(result, now)

    def mark_accounts(self, exposure: ExposureSnapshot) -> None:
        """Mark the margin accounts at the valuation of ``exposure`` if it is
        newer than the one they have (a new one is made at most every
        ``_EXPOSURE_MARK_INTERVAL``): O(instruments), no account rescanned."""
        per_lot = exposure.usd_per_lot
        if per_lot is self._marked:
            return
        self._marked = per_lot
        book = self.book
        ledger = self.ledger
        accounts = self._reports.accounts
        accounts.mark(
            margin_marks(self.instruments, lambda s: ledger.quoted_price(s, book), accounts.marks)
        )

    def _within_rate(self, client: str, rate: int, now: float) -> bool:
        """Take a token from the client's bucket (``rate`` per second, one
        second's worth at most); False when it is empty.  ``now`` is the
        wall clock: should it step back, the bucket refills from the new
        time on, neither drained by the step nor waiting for the clock to
        come back to where it was."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = [float(rate), now]
        elapsed = now - bucket[1]
        if elapsed < 0.0:
            elapsed = 0.0
        tokens = min(float(rate), bucket[0] + elapsed * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _shed(
        self, session: Session, client: str, msg: FixMessage, now: float, id_limit: int
    ) -> None:
        """Refuse a NewOrderSingle that waited too long behind others: the
        gateway is past its capacity.  Logged once a second at most, with
        the count refused meanwhile."""
        waited_ms = session.waited * 1000.0
        text = (
            f"gateway busy: the order waited {waited_ms:.0f} ms behind others "
            f"(limit shed_after_ms {self.rules.config.orders.shed_after_ms}); not accepted"
        )
        self.stats.received(client)
        refusal = Refusal(text, OrdRejReason.OTHER)
        self._reports.order_reject(session, msg, refusal, "shed", now, id_limit, log=False)
        self._shed_count += 1
        if now - self._shed_logged >= 1.0 or now < self._shed_logged:
            _log.warning(
                "orders_shed",
                session=session.session_id,
                count=self._shed_count,
                waited_ms=round(waited_ms, 1),
            )
            self._shed_logged = now
            self._shed_count = 0

    def _throttled(
        self,
        session: Session,
        client: str,
        msg: FixMessage,
        rate: int,
        now: float,
        id_limit: int,
    ) -> None:
        """Reject a message over the client's rate, in the form its type asks
        for: an order an ExecutionReport, a cancel or replace an
        OrderCancelReject, a MarketDataRequest a MarketDataRequestReject, a
        CollateralInquiry a CollateralInquiryAck and a RequestForPositions a
        RequestForPositionsAck (both rejected, result 99 other), anything
        else a BusinessMessageReject.  Logged as one ``messages_throttled``
        line a second at most by the client's session, with the count of
        those not logged, on the next line or the session's end (a client
        over its rate would write the log at that rate)."""
        text = f"throttled: more than {rate} messages per second (limit max_messages_per_second)"
        mt = msg.msg_type
        session.paced.warning(
            "messages_throttled",
            now,
            client=client,
            msg_type=mt.decode("latin-1"),
            limit=rate,
        )
        if mt == b"D":
            self.stats.received(client)
            refusal = Refusal(text, OrdRejReason.OTHER)
            self._reports.order_reject(session, msg, refusal, "throttled", now, id_limit, log=False)
        elif mt in (b"F", b"G"):
            to = CxlRejResponseTo.CANCEL if mt == b"F" else CxlRejResponseTo.REPLACE
            self._refuse_change(client, msg, to, text, now, id_limit, log=False)
        elif mt == b"V":
            refuse = self.market_data.refuse
            refuse(session, msg, INSUFFICIENT_BANDWIDTH, text.encode(), now, id_limit)
        elif mt == b"BB":
            inquiry = refuse_collateral_inquiry(
                msg, client, COLL_INQUIRY_OTHER, text, max_length=id_limit
            )
            self._reports.send(session, b"BG", collateral_refusal_body(inquiry), now)
        elif mt == b"AN":
            request = refuse_position_request(msg, client, POS_REQ_OTHER, text, max_length=id_limit)
            body = position_refusal_body(request, report_id=self._report_id(now))
            self._reports.send(session, b"AO", body, now)
        else:
            reason = BusinessRejectReason.OTHER
            self._business_reject(session, msg, reason, now, id_limit, text.encode())

    def _refuse_change(
        self,
        client: str,
        msg: FixMessage,
        response_to: CxlRejResponseTo,
        text: str,
        now: float,
        id_limit: int,
        log: bool = True,
    ) -> None:
        """OrderCancelReject for a cancel or replace refused before it
        reached the matcher.  The order it names, when the client has one by
        that id, is reported as it stands (its OrderID and OrdStatus, which
        the reject leaves as they were, and its last accepted ClOrdID as the
        OrigClOrdID); otherwise OrderID NONE and OrdStatus Rejected, as FIX
        4.4 asks for an unknown order.  ``log`` False leaves the log line to
        the caller."""
        # ClOrdID and OrigClOrdID are required on the OrderCancelReject: one
        # over the limit (the Text says so) is echoed cut to it, never in full.
        orig = msg.get(41) or b""
        order_id: str | None = None
        status = STATUS_REJECTED
        echoed = orig[:id_limit]
        if len(orig) <= MOST_ID_LENGTH:
            current = self.matcher.order_of(client, orig.decode("latin-1"))
            if current is not None:
                order_id, status = current.order_id, current.status
                # its last accepted ClOrdID, whatever the limit is now and
                # whichever of its ids the request gave
                echoed = current.cl_ord_id.encode("latin-1")
        reject = CancelReject(
            client=client,
            cl_ord_id=(msg.get(11) or b"")[:id_limit].decode("latin-1"),
            orig_cl_ord_id=echoed.decode("latin-1"),
            order_id=order_id,
            status=status,
            reason=CxlRejReason.OTHER,
            response_to=response_to,
            text=text,
        )
        self._reports.cancel_reject(reject, now, log)

    def _cancel(self, client: str, msg: FixMessage, now: float, id_limit: int) -> None:
        cancel = decode_cancel(msg, client, id_limit)
        if isinstance(cancel, Refusal):
            to = CxlRejResponseTo.CANCEL
            self._refuse_change(client, msg, to, cancel.text, now, id_limit)
            return
        current = self.matcher.order_of(client, cancel.orig_cl_ord_id)
        text = _differs(msg, current, _CANCEL_KEPT)
        if text is not None:
            self._refuse_change(client, msg, CxlRejResponseTo.CANCEL, text, now, id_limit)
            return
        self._routing.publish(self.matcher.cancel(cancel), now)

    def _replace(self, client: str, msg: FixMessage, now: float, id_limit: int) -> None:
        replace = decode_replace(msg, client, self.instruments, id_limit)
        if isinstance(replace, Refusal):
            to = CxlRejResponseTo.REPLACE
            self._refuse_change(client, msg, to, replace.text, now, id_limit)
            return
        symbol = (msg.get(55) or b"").decode("latin-1")
        current = self.matcher.order_of(client, replace.orig_cl_ord_id)
        if current is not None and current.symbol != symbol:
            # its quantity and price were read in another instrument's units
            text = f"Symbol {excerpt(symbol)} is not the order's ({current.symbol})"
            self._refuse_change(client, msg, CxlRejResponseTo.REPLACE, text, now, id_limit)
            return
        # a replace changes the quantity and the price; what else it names
        # is the order's, or the client meant another order (or a change
        # this gateway does not make) and is told so
        other = _differs(msg, current, _REPLACE_KEPT)
        if other is not None:
            self._refuse_change(client, msg, CxlRejResponseTo.REPLACE, other, now, id_limit)
            return
        if current is not None and replace.qty > current.qty and not current.is_final:
            # more than the order had: held to the client's limits and margin
            # as a new order (anything else the matcher answers as it would)
            breach = self._replace_limits(client, current, replace.qty, now)
            if breach is None and self._reports.accounts.params is not None:
                breach = self._replace_margin(client, current, replace.qty, now)
            if breach is not None:
                to = CxlRejResponseTo.REPLACE
                self._refuse_change(client, msg, to, breach, now, id_limit)
                return
        self._routing.publish(
            self.matcher.replace(replace, self._routing.snapshot(symbol, now)), now
        )

    def _replace_limits(self, client: str, current: Order, qty: int, now: float) -> str | None:
        """The client's limit a replace raising ``current`` to ``qty``
        breaks, checked as the order would be, new, with its new quantity
        (from the position before its fills, beside the client's other open
        orders); None if it fits."""
        limits = self.rules.client_limits.get(client)
        if limits is None:
            return None
        filled = current.cum_qty if current.side is BUY else -current.cum_qty
        resized = NewOrder(
            client,
            current.cl_ord_id,
            current.symbol,
            current.side,
            current.ord_type,
            current.tif,
            qty,
            current.price,
        )
        others = self._reports.accounts.open_lots(client, current.symbol, current.side)
        breach = check(
            resized,
            self.ledger.client_position(client, current.symbol) - filled,
            limits,
            self._routing.exposure(now).usd_per_lot.get(current.symbol),
            others - current.open_qty,
        )
        return None if breach is None else breach.text

    def _replace_margin(self, client: str, current: Order, qty: int, now: float) -> str | None:
        """The margin breach of a replace raising ``current`` to ``qty``,
        checked as a new order for the lots it adds; None if it fits."""
        self.mark_accounts(self._routing.exposure(now))
        accounts = self._reports.accounts
        breach = accounts.check(client, current.symbol, current.side, qty - current.qty)
        return None if breach is None else breach.text


def _resent(msg: FixMessage) -> bool:
    """Whether PossDupFlag (43) or PossResend (97) is Y: both read in one
    pass over the fields, as every order asks (a second ``get`` would scan
    them all again for a tag most orders do not carry)."""
    return any((tag == 43 or tag == 97) and value == b"Y" for tag, value in msg.fields)


_CANCEL_KEPT: Final = ((54, "Side"), (55, "Symbol"))
_REPLACE_KEPT: Final = ((54, "Side"), (40, "OrdType"), (59, "TimeInForce"))


def _differs(
    msg: FixMessage, current: Order | None, tags: tuple[tuple[int, str], ...]
) -> str | None:
    """Why a cancel or replace names another order than ``current`` (a
    field it carries that is not the order's), None if it does not.  A
    final order is left to the matcher's answer (too late)."""
    if current is None or current.is_final:
        return None
    for tag, name in tags:
        value = msg.get(tag)
        if value is None:
            continue  # not given: TimeInForce may be left out
        if tag == 55:
            ours = current.symbol
        elif tag == 54:
            ours = current.side.value
        elif tag == 40:
            ours = current.ord_type.value
        else:
            ours = current.tif.value
        said = value.decode("latin-1")
        if said != ours:
            return f"{name} {excerpt(said)} is not the order's ({ours})"
    return None


def margin_marks(
    instruments: Mapping[str, Instrument],
    quoted: Callable[[str], Decimal | None],
    kept: Marks,
) -> Marks:
    """The margin accounts' marks: each symbol's price and the USD value of
    one unit, for the symbols ``quoted`` gives a live price of.  One with
    none (its quotes stale, its LPs away) is left out, so it keeps its last
    mark: the last fill's price may be hours old and another client's.

    A symbol whose quote currency is converted through another (EUR/GBP
    through GBP/USD) is valued at that symbol's live price, else at its
    mark as ``kept`` holds it (the marks in place), never at its last fill
    (which the exposure ledger falls back to for the LPs' exposure); with
    neither, the symbol is left out too."""
    prices: dict[str, float] = {}
    unit_usd: dict[str, float] = {}
    for symbol, instrument in instruments.items():
        mid = quoted(symbol)
        if mid is None:
            continue
        conversion = instrument.usd_conversion
        if conversion == "quote":
            value = float(mid)
        elif conversion == "base":
            value = 1.0
        else:
            converted = _converted(mid, instruments.get(conversion), quoted, kept)
            if converted is None:
                continue
            value = converted
        prices[symbol] = float(mid)
        unit_usd[symbol] = abs(value)
    return Marks(prices, unit_usd)


def _converted(
    mid: Decimal,
    via: Instrument | None,
    quoted: Callable[[str], Decimal | None],
    kept: Marks,
) -> float | None:
    """USD value of one unit of a symbol priced ``mid`` whose quote currency
    ``via`` converts: ``mid x via`` where USD is ``via``'s quote (GBP/USD
    for EUR/GBP), ``mid / via`` where USD is its base (USD/JPY for
    EUR/JPY); ``via`` at its live price, else at its kept mark; None with
    neither."""
    if via is None or via.usd_conversion not in ("quote", "base"):
        return None
    live = quoted(via.symbol)
    if live is not None:
        if via.usd_conversion == "quote":
            return float(mid * live)
        return float(mid / live) if live else None
    rate = kept.price.get(via.symbol)
    if not rate:
        return None
    return float(mid) * rate if via.usd_conversion == "quote" else float(mid) / rate
