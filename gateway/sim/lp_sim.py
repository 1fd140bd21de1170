"""``fixgw lp-sim``: a simulated liquidity provider behind a FIX 4.4 acceptor.

One process is one LP.  It wraps a single :class:`~lp_adapters.simulated.adapter.SimulatedLp`
(random-walk quotes, last look, latency, partial fills) and serves it over FIX 4.4
to the gateways named in its ``[[sessions]]``, with the acceptor side of the
project's own session layer (:class:`~gateway.net.server.FixServer`, file stores
under ``lp.data_dir``, so sequence numbers and sent messages survive a
restart).  The gateway reaches it with the ``fix`` LP adapter, so the whole
system can be tried against real FIX LP endpoints on one machine.

Configuration (TOML; every problem is reported as ``path: message``)::

    [lp]
    name = "LPX1"                 # logs; prefix of OrderID (37) and ExecID (17)
    data_dir = "var/lp-sim/LPX1"  # session stores (overridden by --data-dir)
    statement_dir = ""            # the statement (--statements); "": <data_dir>/statements
    price_tolerance_ticks = 0     # last look, see below
    host = "0.0.0.0"              # listening address; the port is on the command line
    fsync = "never"               # or "batch", as the gateway's [store].fsync
    log_level = "info"
    log_format = "json"

    [[sessions]]                  # as the gateway's [[sessions]]: SenderCompID is the LP
    SenderCompID = "LPX1"
    TargetCompID = "GATEWAY"

    [[instruments]]               # as the gateway's [[instruments]]
    ...

    [simulated]                   # lp_adapters.simulated.settings.SimulatedLpSettings
    seed = 11
    ...

The ``Application`` key of a session is accepted and ignored: every session
is served by the LP.

Messages accepted (application level)
-------------------------------------
MarketDataRequest (V)
    Served by :class:`gateway.orderflow.market_data.MarketDataService` from the LP's
    own book: SubscriptionRequestType (263) 0 snapshot, 1 snapshot plus
    updates, 2 unsubscribe (by MDReqID); MarketDepth (264), 0 = full book;
    MDUpdateType (265) 1 incremental (X) or 0 full refreshes (W);
    MDEntryType (269) 0 bid and/or 1 offer; Symbol (55) in NoRelatedSym.
    Answers:

    * W: ``55=<symbol> 262=<MDReqID> 268=<n>`` then n entries of
      ``269=<0|1> 270=<price> 271=<size in units>``, bids best first then
      offers best first (one W per requested symbol);
    * X: ``262=<MDReqID> 268=<n>`` then n entries of
      ``279=<0 new|1 change|2 delete> 269=<0|1> 55=<symbol> 270=<price>``
      and ``271=<size>`` (not on a delete), sent only when the subscribed
      levels change;
    * Y (reject): ``58=<text> 262=<MDReqID> 281=<MDReqRejReason>`` (0 unknown
      symbol, 1 duplicate MDReqID, 4/5/6/8 unsupported request type, depth,
      update type, entry type; 281 is left out for an unknown MDReqID on
      unsubscribe).

NewOrderSingle (D)
    ClOrdID (11), Symbol (55), Side (54: 1 buy, 2 sell), OrderQty (38, units:
    a whole number of lots within the instrument's min_qty..max_qty),
    OrdType (40: 1 market, 2 limit with Price 44 on the tick grid),
    TimeInForce (59: 0, 1, 3 or 4, every order is executed as IOC; other
    values are refused), TransactTime (60).  What cannot be decoded is
    rejected with the texts and OrdRejReasons of :mod:`gateway.orderflow.mapping`
    (e.g. ``Unknown symbol X`` 103=1, ``quantity ... is not a multiple of the
    lot size ...`` 103=13, ``Unsupported time in force`` 103=11).

    Last look: a limit order whose price is worse for the LP than the LP's
    current best price on that side (best offer for a buy, best bid for a
    sell) by more than ``price_tolerance_ticks`` is rejected (ExecType 8,
    Text ``price moved``).  Within the tolerance the LP fills levels up to
    that many ticks beyond the limit, reporting them at the limit (the LP
    gives up the difference); with the default 0 fills are at the LP's level
    prices, never worse than the limit.  A market order takes whatever the
    book offers.  A ClOrdID still open on the session is rejected with Text
    ``Duplicate ClOrdID`` (OrdRejReason 6), leaving the open order alone.
    Everything else goes to the SimulatedLp as a
    :class:`~router.model.ChildOrder`; it answers after ``latency_ms``.

OrderCancelRequest (F)
    OrigClOrdID (41) names an open order of the session and ClOrdID (11) is
    the cancel's own id.  An order not yet answered by the SimulatedLp is
    canceled for its whole quantity (ER 150=4 with the cancel's ClOrdID and
    41=OrigClOrdID).  Otherwise an OrderCancelReject (9) ``11 37 39 41 58 60
    102 434=1``: 102=1 (unknown order) for an id that is unknown or finished
    (37=NONE, 39=8), 102=3 when a cancel is already pending, 102=0 (too late)
    when the answer is already on its way.

Anything else gets a BusinessMessageReject (j, 380=3 unsupported message type).

ExecutionReports sent
---------------------
Every report carries AvgPx (6), ClOrdID (11), CumQty (14), ExecID (17,
unique: ``<name>-<run>-E<n>`` where ``run`` is the process start in
milliseconds, hex), OrderID (37, ``<name>-<run>-<n>``, one per order),
OrderQty (38), OrdStatus (39), OrdType (40), Side (54), Symbol (55),
ExecType (150) and LeavesQty (151); reports of accepted orders also carry
Price (44, limit orders), TimeInForce (59=3) and TransactTime (60).
Quantities are in units and prices are decimals (``qty_bytes``/``price_bytes``).

* New (ack): ``150=0 39=0``, CumQty 0, LeavesQty = OrderQty.
* Fill: ``150=F 39=1`` (partially filled) or ``39=2`` (filled), with
  LastPx (31), LastQty (32), CumQty, LeavesQty and AvgPx so far; one report
  per level taken.
* Reject: ``150=8 39=8``, CumQty 0, LeavesQty 0, Text (58) and OrdRejReason
  (103): the decoding texts above, ``price moved`` and ``Duplicate ClOrdID``
  (sent before anything else for the order), or the SimulatedLp's ``last
  look`` / ``lp down`` (OrdRejReason 0).
* Canceled: ``150=4 39=4``, LeavesQty 0, CumQty = what was filled before,
  Text: ``ioc remainder`` (the IOC rest after fills), ``price moved`` (the
  book moved beyond the limit during the latency: acked, nothing filled),
  ``canceled`` (an OrderCancelRequest; then ClOrdID is the cancel's and
  OrigClOrdID (41) the order's), ``cancel on disconnect`` or
  ``lp disconnected`` (see below).

An order ends with exactly one of: a fill with LeavesQty 0, a reject, or a
cancel; filled plus canceled quantities add up to OrderQty.

When a gateway disconnects
--------------------------
Cancel on disconnect, as most LPs do: when a session logs out or its
connection drops, its market data subscriptions end and every order it left
open is canceled at the SimulatedLp (orders whose answer is already under
way still get it).  The reports (150=4, Text ``cancel on disconnect``) are
written with ``Session.send`` while the session is down: they are stored
and numbered, and the gateway gets them through its ResendRequest after the
next Logon, like anything else sent meanwhile.  On shutdown (SIGTERM or
SIGINT) the SimulatedLp is stopped first, so the gateways still logged on
receive a cancel (Text ``lp disconnected``) for every open order and the
withdrawal of the quotes (X deletes), then every session is logged out.

ClOrdIDs are remembered only while their order is open: after it ends the
id may be used again, and a cancel naming it is answered as unknown.

The statement
-------------
Every fill sent is also a line of the LP's statement, a CSV file per UTC
day in ``lp.statement_dir`` (:mod:`lp_adapters.simulated.statement`): the
fill's ExecID (17), ClOrdID (11), OrderID (37), Symbol (55), Side, LastQty
(32) and LastPx (31) as sent, at its TransactTime (60).  Acks, cancels and
rejects are not in it.  ``[simulated]`` takes no ``statement_dir``: the
SimulatedLp inside writes none of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import structlog

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import BusinessRejectReason, Session, business_reject_body
from gateway.net.transport import Outbox
from gateway.orderflow.mapping import (
    REJ_BROKER_OPTION,
    REJ_DUPLICATE_ORDER,
    Refusal,
    cancel_reject_body,
    decode_new_order,
    new_order_reject_body,
    unknown_order_status_body,
    wire_value,
)
from gateway.orderflow.market_data import MarketDataService
from gateway.sim.lp_sim_config import (
    LpSimConfig,
    LpSimSettings,
    instruments_of,
    load_lp_sim_config,
    parse_lp_sim_config,
    simulated_settings,
    validate_lp_sim_raw,
)
from lp_adapters.simulated.adapter import SimulatedLp
from lp_adapters.simulated.statement import StatementWriter
from matcher.members import (
    STATUS_CANCELED,
    STATUS_FILLED,
    STATUS_NEW,
    STATUS_PARTIALLY_FILLED,
    STATUS_PENDING_NEW,
    STATUS_REJECTED,
)
from matcher.orders import CancelReject, CxlRejReason, CxlRejResponseTo
from router.book import AggregatedBook
from router.members import BUY
from router.model import (
    ChildAck,
    ChildCanceled,
    ChildFill,
    ChildOrder,
    ChildReject,
    Instrument,
    LpEvent,
    LpStatus,
    OrdType,
    Quote,
    Side,
)
from router.units import avg_px_bytes, price_bytes, qty_bytes

__all__ = [
    "LpSimApplication",
    "LpSimConfig",
    "LpSimSettings",
    "load_lp_sim_config",
    "parse_lp_sim_config",
    "validate_lp_sim_raw",
]

_log = structlog.get_logger("gateway.sim.lp_sim")

PRICE_MOVED_TEXT: Final = "price moved"
DUPLICATE_TEXT: Final = "Duplicate ClOrdID"
CANCEL_ON_DISCONNECT_TEXT: Final = "cancel on disconnect"

# the limit handed to the SimulatedLp for a market buy: above every price
_MARKET_BUY_LIMIT: Final = 2**62

# --------------------------------------------------------------------------------------
# the FIX application


class _Order:
    """An order of a gateway, open at the SimulatedLp (a plain class, not a
    dataclass: see "The compiled order path" in the README)."""

    def __init__(
        self,
        session: Session,
        order_id: str,
        cl_ord_id: bytes,
        instrument: Instrument,
        side: Side,
        ord_type: OrdType,
        qty: int,
        limit: int | None,
    ) -> None:
        self.session = session
        self.order_id = order_id  # also the SimulatedLp's child id
        self.cl_ord_id = cl_ord_id
        self.instrument = instrument
        self.side = side
        self.ord_type = ord_type
        self.qty = qty  # lots
        self.limit = limit  # ticks; None for a market order
        self.status = STATUS_PENDING_NEW
        self.cum_qty = 0
        self.notional = 0  # ticks x lots filled
        self.cancel_pending = False
        self.cancel_cl_ord_id: bytes | None = None  # ClOrdID of the OrderCancelRequest
        self.cancel_text = ""


def _out(text: str) -> bytes:
    return text.encode("latin-1", "replace")


class LpSimApplication:
    """The application profile of every session of the LP simulator: the
    SimulatedLp's quotes as market data, its answers as ExecutionReports;
    each fill sent is recorded in ``statement`` too, when one is given."""

    def __init__(
        self,
        config: LpSimConfig,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
        statement: StatementWriter | None = None,
    ) -> None:
        self.name = config.lp.name
        self.outbox = outbox
        self.statement = statement
        self.tolerance = config.lp.price_tolerance_ticks
        self._debug = config.lp.log_level == "debug"
        self._clock = clock
        self.lp = SimulatedLp(
            self.name, instruments_of(config), self._on_lp_event, simulated_settings(config)
        )
        # only what the LP quotes is traded and served
        self.instruments = {s: self.lp.instruments[s] for s in self.lp.symbols}
        self.book = AggregatedBook()
        self.market_data = MarketDataService(self.instruments, self.book, self._send, outbox, clock)
        self._orders: dict[str, _Order] = {}  # by order id
        self._open: dict[tuple[str, bytes], _Order] = {}  # by (session id, ClOrdID)
        self._run = format(int(clock() * 1000), "x")
        self._order_seq = 0
        self._exec_seq = 0
        self._closed = False

    async def start(self) -> None:
        """Start quoting (the book is filled before anyone can subscribe)."""
        await self.lp.connect()

    async def stop(self) -> None:
        """Stop the SimulatedLp: the orders still open are canceled and the
        quotes withdrawn, on the sessions still logged on."""
        await self.lp.disconnect()
        # the withdrawal is not paced: it leaves before the Logouts
        self.market_data.send_now()

    def close(self) -> None:
        """Nothing is sent any more (the stores are about to close); what
        the statement holds is written out."""
        self._closed = True
        if self.statement is not None:
            self.statement.close()

    def _send(self, session: Session, msg_type: bytes, body: bytes, now: float) -> None:
        self.outbox.send(session, msg_type, body, now)

    def _next_order_id(self) -> str:
        self._order_seq += 1
        return f"{self.name}-{self._run}-{self._order_seq}"

    def _next_exec_id(self) -> str:
        self._exec_seq += 1
        return f"{self.name}-{self._run}-E{self._exec_seq}"

    # -- session events ----------------------------------------------------------------

    def on_logon(self, session: Session, now: float) -> None:
        _log.info("gateway_logged_on", lp=self.name, session=session.session_id)

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        self.market_data.drop_session(session)
        at_lp = set(self.lp.open_child_ids)
        canceled = 0
        for order in list(self._open.values()):
            if order.session is not session or order.cancel_pending:
                continue
            if order.order_id in at_lp:
                order.cancel_pending = True
                order.cancel_text = CANCEL_ON_DISCONNECT_TEXT
                self.lp.cancel(order.order_id)
                canceled += 1
        _log.info(
            "gateway_logged_out",
            lp=self.name,
            session=session.session_id,
            reason=reason,
            canceled_on_disconnect=canceled,
        )

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        mt = msg.msg_type
        if mt == b"D":
            self._new_order(session, msg, now)
        elif mt == b"F":
            self._cancel_request(session, msg, now)
        elif mt == b"H":
            self._status_request(session, msg, now)
        elif mt == b"V":
            self.market_data.on_request(session, msg, now)
        else:
            body = business_reject_body(msg, BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE)
            self._send(session, b"j", body, now)

    # -- requests ---------------------------------------------------------------------

    def _new_order(self, session: Session, msg: FixMessage, now: float) -> None:
        order_id = self._next_order_id()
        decoded = decode_new_order(msg, session.settings.TargetCompID, self.instruments)
        if isinstance(decoded, Refusal):
            self._refuse(session, msg, decoded, order_id, now)
            return
        cl_ord_id = msg.get(11) or b""
        key = (session.session_id, cl_ord_id)
        if key in self._open:
            self._refuse(session, msg, Refusal(DUPLICATE_TEXT, REJ_DUPLICATE_ORDER), order_id, now)
            return
        side = decoded.side
        limit = decoded.price
        if limit is None:
            child_price = _MARKET_BUY_LIMIT if side is BUY else 1
        elif self._price_moved(decoded.symbol, side, limit):
            self._refuse(session, msg, Refusal(PRICE_MOVED_TEXT, REJ_BROKER_OPTION), order_id, now)
            return
        elif side is BUY:
            child_price = limit + self.tolerance
        else:
            child_price = max(1, limit - self.tolerance)
        order = _Order(
            session=session,
            order_id=order_id,
            cl_ord_id=cl_ord_id,
            instrument=self.instruments[decoded.symbol],
            side=side,
            ord_type=decoded.ord_type,
            qty=decoded.qty,
            limit=limit,
        )
        self._orders[order_id] = order
        self._open[key] = order
        if self._debug:  # a filtered call still costs: none per order unless asked
            _log.debug(
                "order_accepted",
                lp=self.name,
                session=session.session_id,
                cl_ord_id=decoded.cl_ord_id,
                order_id=order_id,
            )
        self.lp.send(
            ChildOrder(
                child_id=order_id,
                parent_id=decoded.cl_ord_id,
                lp=self.name,
                symbol=decoded.symbol,
                side=side,
                qty=decoded.qty,
                price=child_price,
            )
        )

    def _price_moved(self, symbol: str, side: Side, limit: int) -> bool:
        """Last look: the LP's current price on the side the order takes is
        worse for the LP than ``limit`` by more than the tolerance."""
        quote = self.lp.quote(symbol)
        if side is BUY:
            return not quote.asks or quote.asks[0].price - limit > self.tolerance
        return not quote.bids or limit - quote.bids[0].price > self.tolerance

    def _refuse(
        self, session: Session, msg: FixMessage, refusal: Refusal, order_id: str, now: float
    ) -> None:
        body = new_order_reject_body(msg, refusal, self._next_exec_id(), order_id)
        self._send(session, b"8", body, now)
        _log.info(
            "order_rejected",
            lp=self.name,
            session=session.session_id,
            cl_ord_id=(msg.get(11) or b"").decode("latin-1"),
            text=refusal.text,
        )

    def _cancel_request(self, session: Session, msg: FixMessage, now: float) -> None:
        cl_ord_id = msg.get(11) or b""
        orig_cl_ord_id = msg.get(41) or b""
        order = self._open.get((session.session_id, orig_cl_ord_id))
        if order is None:
            reason, text = CxlRejReason.UNKNOWN_ORDER, "Unknown order"
        elif order.cancel_pending:
            reason, text = CxlRejReason.ALREADY_PENDING, "Cancel already pending"
        elif order.order_id not in self.lp.open_child_ids:
            reason, text = CxlRejReason.TOO_LATE_TO_CANCEL, "Too late to cancel"
        else:
            order.cancel_pending = True
            order.cancel_cl_ord_id = cl_ord_id
            self.lp.cancel(order.order_id)
            return
        reject = CancelReject(
            client=session.settings.TargetCompID,
            cl_ord_id=cl_ord_id.decode("latin-1"),
            orig_cl_ord_id=orig_cl_ord_id.decode("latin-1"),
            order_id=order.order_id if order is not None else None,
            status=order.status if order is not None else STATUS_REJECTED,
            reason=reason,
            response_to=CxlRejResponseTo.CANCEL,
            text=text,
        )
        self._send(session, b"9", cancel_reject_body(reject, codec.format_utc_timestamp(now)), now)
        _log.info(
            "cancel_rejected",
            lp=self.name,
            session=session.session_id,
            orig_cl_ord_id=reject.orig_cl_ord_id,
            text=text,
        )

    def _status_request(self, session: Session, msg: FixMessage, now: float) -> None:
        """OrderStatusRequest: the order's state if it is still open here
        (a finished one was reported in full already), else "Unknown order"."""
        order = self._open.get((session.session_id, msg.get(11) or b""))
        if order is None:
            self._send(session, b"8", unknown_order_status_body(msg, self._next_exec_id()), now)
            return
        self._report(order, b"I", now, leaves=order.qty - order.cum_qty)

    # -- the SimulatedLp's events --------------------------------------------------------

    def _on_lp_event(self, event: LpEvent) -> None:
        if self._closed:
            return
        now = self._clock()
        if isinstance(event, Quote):
            self.book.update(event)
            symbol = event.symbol
            self.market_data.on_book_update(symbol)
        elif isinstance(event, LpStatus):
            _log.info("lp_status", lp=self.name, up=event.up, reason=event.reason)
            if not event.up:
                for symbol in self.book.remove_lp(event.lp):
                    self.market_data.on_book_update(symbol)
        else:
            order = self._orders.get(event.child_id)
            if order is None:
                return
            if isinstance(event, ChildAck):
                order.status = STATUS_NEW
                self._report(order, b"0", now, leaves=order.qty)
            elif isinstance(event, ChildFill):
                self._on_fill(order, event, now)
            elif isinstance(event, ChildReject):
                order.status = STATUS_REJECTED
                self._report(
                    order, b"8", now, leaves=0, text=event.reason, rej_reason=REJ_BROKER_OPTION
                )
                self._finish(order)
            elif isinstance(event, ChildCanceled):
                order.status = STATUS_CANCELED
                by_request = order.cancel_cl_ord_id
                self._report(
                    order,
                    b"4",
                    now,
                    leaves=0,
                    text=order.cancel_text or event.reason,
                    cl_ord_id=by_request,
                    orig_cl_ord_id=order.cl_ord_id if by_request is not None else None,
                )
                self._finish(order)

    def _on_fill(self, order: _Order, fill: ChildFill, now: float) -> None:
        price = fill.price
        limit = order.limit
        if limit is not None:  # within the tolerance the LP fills at the limit
            price = min(price, limit) if order.side is BUY else max(price, limit)
        order.cum_qty += fill.qty
        order.notional += fill.qty * price
        leaves = order.qty - order.cum_qty
        order.status = STATUS_FILLED if leaves <= 0 else STATUS_PARTIALLY_FILLED
        exec_id = self._report(order, b"F", now, leaves=max(leaves, 0), last=(fill.qty, price))
        statement = self.statement
        if statement is not None:
            inst = order.instrument
            statement.record(
                now,
                exec_id=exec_id,
                cl_ord_id=order.cl_ord_id.decode("latin-1"),
                order_id=order.order_id,
                symbol=inst.symbol,
                side=order.side,
                qty=qty_bytes(inst, fill.qty).decode(),
                price=price_bytes(inst, price).decode(),
            )
        if leaves <= 0:
            self._finish(order)

    def _finish(self, order: _Order) -> None:
        self._orders.pop(order.order_id, None)
        self._open.pop((order.session.session_id, order.cl_ord_id), None)
        if self._debug:
            _log.debug(
                "order_finished",
                lp=self.name,
                order_id=order.order_id,
                status=order.status.name,
                cum_qty=order.cum_qty,
            )

    def _report(
        self,
        order: _Order,
        exec_type: bytes,
        now: float,
        *,
        leaves: int,
        last: tuple[int, int] | None = None,
        text: str = "",
        rej_reason: int | None = None,
        cl_ord_id: bytes | None = None,
        orig_cl_ord_id: bytes | None = None,
    ) -> str:
        """Send the ExecutionReport of ``order`` as it stands (body tags
        ascending); returns its ExecID."""
        inst = order.instrument
        exec_id = self._next_exec_id()
        parts = [
            b"6=%b\x0111=%b\x0114=%b\x0117=%b\x01"
            % (
                avg_px_bytes(inst, order.notional, order.cum_qty),
                cl_ord_id or order.cl_ord_id,
                qty_bytes(inst, order.cum_qty),
                exec_id.encode(),
            )
        ]
        if last is not None:
            lots, price = last
            parts.append(b"31=%b\x0132=%b\x01" % (price_bytes(inst, price), qty_bytes(inst, lots)))
        parts.append(
            b"37=%b\x0138=%b\x0139=%b\x0140=%b\x01"
            % (
                order.order_id.encode(),
                qty_bytes(inst, order.qty),
                wire_value(order.status),
                wire_value(order.ord_type),
            )
        )
        if orig_cl_ord_id is not None:
            parts.append(b"41=%b\x01" % orig_cl_ord_id)
        if order.limit is not None:
            parts.append(b"44=%b\x01" % price_bytes(inst, order.limit))
        parts.append(b"54=%b\x0155=%b\x01" % (wire_value(order.side), _out(inst.symbol)))
        if text:
            parts.append(b"58=%b\x01" % _out(text))
        parts.append(b"59=3\x0160=%b\x01" % codec.format_utc_timestamp(now))
        if rej_reason is not None:
            parts.append(b"103=%d\x01" % rej_reason)
        parts.append(b"150=%b\x01151=%b\x01" % (exec_type, qty_bytes(inst, leaves)))
        self._send(order.session, b"8", b"".join(parts), now)
        return exec_id
