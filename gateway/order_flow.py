"""Order flow: FIX order entry -> matcher -> router -> LP adapters and back.

:class:`OrderFlow` is the ``orders`` application profile.  It owns the
pieces of state the architecture assigns to the order path, all written from
the event loop only: the matcher (orders and client books), the aggregated
LP book (from adapter quotes), the exposure ledger (from fills only) and the
routings in flight.  The routing policy is a pure function of an order, a
book snapshot, an exposure snapshot and the limits.

A routing sends child orders to LPs; every child ends in fills, a reject or
a cancel of its remainder.  When all children of a routing have ended, what
is left is routed again (excluding the LPs that rejected or dropped) up to
``max_reroutes`` times, and only then handed back to the matcher, which
rests or cancels it by the order's TimeInForce.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from config import Config
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import BusinessRejectReason, Session
from gateway.market_data import MarketDataService
from gateway.order_mapping import (
    Refusal,
    cancel_reject_body,
    decode_cancel,
    decode_new_order,
    decode_replace,
    execution_body,
    new_order_reject_body,
)
from lp_adapters.base import DISCONNECTED_REASON, LpAdapter, create_adapter
from matcher.engine import Matcher, Result, RouteNeed
from matcher.orders import (
    CancelReject,
    CxlRejReason,
    CxlRejResponseTo,
    Execution,
    OrdStatus,
)
from router.book import AggregatedBook
from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import (
    ChildAck,
    ChildCanceled,
    ChildFill,
    ChildOrder,
    ChildReject,
    Instrument,
    LpEvent,
    LpStatus,
    Quote,
)
from router.policy import LpLimits, RouteRequest, RoutingLimits, build_policy
from router.risk import ClientLimits, check

_log = structlog.get_logger("gateway.order_flow")

# the account late fills of abandoned child orders are booked to
HOUSE = "(house)"

# how stale the USD valuation of positions may get
_EXPOSURE_MARK_INTERVAL = 0.1

# how late a child-order timeout may be noticed (one timer serves them all)
_TIMEOUT_RESOLUTION = 0.01


@dataclass(slots=True)
class _Child:
    lp: str
    qty: int
    open: int


@dataclass(slots=True)
class _Routing:
    need: RouteNeed
    instrument: Instrument
    attempt: int
    serial: int  # tells this routing from a later one of the same order
    children: dict[str, _Child] = field(default_factory=dict)
    returned: int = 0
    excluded: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    cancel_sent: bool = False


def next_day_end(now: float, time_of_day: str) -> float:
    """The first moment after ``now`` (epoch seconds) at which the UTC clock
    reads ``time_of_day`` (``HH:MM``)."""
    hours, minutes = map(int, time_of_day.split(":"))
    offset = hours * 3600 + minutes * 60
    midnight = now - now % 86400
    at = midnight + offset
    return at if at > now else at + 86400


def lp_config_errors(config: Config) -> list[str]:
    """What building the configured LP adapters would refuse, one line per
    LP in config order: an adapter kind that is not registered, or settings
    the adapter does not accept.  Adapters do no I/O when built, so this is
    safe to run on a config that is only being checked."""
    instruments = {i.symbol: i.to_instrument() for i in config.instruments}
    errors = []
    for index, lp in enumerate(config.lps):
        try:
            create_adapter(lp.adapter, lp.name, instruments, _discard, lp.settings)
        except (KeyError, ValueError, TypeError) as exc:
            reason = exc.args[0] if exc.args else repr(exc)
            errors.append(f"lps[{index}] ({lp.name}): {reason}")
    return errors


def _discard(event: LpEvent) -> None:
    return None


def _client_limits(
    config: Config, client: str, instruments: Mapping[str, Instrument]
) -> ClientLimits:
    """The client's risk limits in lots (config states them in units)."""
    risk = config.risk.for_client(client)

    def per_symbol(units: Decimal | None) -> dict[str, int]:
        if units is None:
            return {}
        return {s: int(units // i.lot_size) for s, i in instruments.items()}

    return ClientLimits(
        max_order_qty_by_symbol=per_symbol(risk.max_order_qty),
        max_notional_usd=risk.max_notional_usd,
        max_open_position_lots_by_symbol=per_symbol(risk.max_open_position),
        allowed_symbols=frozenset(risk.allowed_symbols) if risk.allowed_symbols else None,
    )


class OrderFlow:
    """The ``orders`` application profile and everything behind it."""

    def __init__(self, config: Config, sessions: Mapping[str, Session]) -> None:
        self.config = config
        self.instruments = {i.symbol: i.to_instrument() for i in config.instruments}
        self.sessions = dict(sessions)  # client CompID -> session
        routing = config.routing
        self.matcher = Matcher(
            self.instruments,
            internal_crossing=routing.internal_crossing,
            retain_finished=config.orders.retain_finished,
        )
        self.book = AggregatedBook()
        self.ledger = ExposureLedger(self.instruments)
        self.policy = build_policy(routing.policy)
        self.market_data = MarketDataService(self.instruments, self.book)
        self.limits = RoutingLimits(
            lps={
                lp.name: LpLimits(
                    soft_limit_usd=lp.soft_limit_usd,
                    hard_limit_usd=lp.hard_limit_usd,
                    soft_penalty_ticks=lp.soft_penalty_ticks,
                    enabled=lp.enabled,
                )
                for lp in config.lps
            },
            max_child_orders=routing.max_child_orders,
        )
        self.client_limits = {
            client: _client_limits(config, client, self.instruments) for client in self.sessions
        }
        self.adapters: dict[str, LpAdapter] = {
            lp.name: create_adapter(
                lp.adapter, lp.name, self.instruments, self.on_lp_event, lp.settings
            )
            for lp in config.lps
            if lp.enabled
        }
        self._routings: dict[str, _Routing] = {}  # parent order id -> routing in flight
        self._children: dict[str, str] = {}  # child id -> parent order id
        self._seen_exec_ids: set[tuple[str, str]] = set()
        # children given up on (the LP answered neither the order nor its
        # cancel in time): a late fill still moves the LP's position
        self._abandoned: dict[str, tuple[str, str, RouteNeed]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._marked_at = float("-inf")
        self._child_seq = 0
        self._routing_seq = 0
        self._exec_seq = 0
        # (deadline, parent order id, routing serial), oldest first
        self._deadlines: deque[tuple[float, str, int]] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._day_timer: asyncio.TimerHandle | None = None
        # LPs not up: routed to by no one
        self._down: frozenset[str] = frozenset(self.adapters)
        self._lp_handlers: dict[type, Callable[[Any, float], None]] = {
            Quote: self._on_quote,
            ChildFill: self._on_fill,
            ChildReject: self._on_child_end,
            ChildCanceled: self._on_child_end,
            LpStatus: self._on_lp_status,
            ChildAck: self._on_ack,
        }

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.gather(*(a.connect() for a in self.adapters.values()))
        self._down = frozenset(name for name, a in self.adapters.items() if not a.up)
        task = asyncio.create_task(self._drop_stale_quotes(), name="order-flow:stale-quotes")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self._arm_day_end(time.time())

    async def stop(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        if self._day_timer is not None:
            self._day_timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(a.disconnect() for a in self.adapters.values()))

    # -- the trading day -------------------------------------------------------------

    def _arm_day_end(self, now: float) -> None:
        at = next_day_end(now, self.config.orders.trading_day_end)
        self._day_timer = asyncio.get_running_loop().call_later(at - now, self._on_day_end)

    def _on_day_end(self) -> None:
        now = time.time()
        self.end_trading_day(now)
        # a timer that fired a hair early must not end the same day twice
        self._arm_day_end(now + 1.0)

    def end_trading_day(self, now: float) -> None:
        """Expire open DAY orders and forget the day's final orders."""
        result = self.matcher.expire_day()
        _log.info("trading_day_ended", expired=len(result.executions))
        self._publish(result, now)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("task_failed", task=task.get_name(), error=repr(task.exception()))

    async def _drop_stale_quotes(self) -> None:
        """Quotes older than ``routing.quote_max_age_ms`` leave the book."""
        max_age = self.config.routing.quote_max_age_ms / 1000
        while True:
            await asyncio.sleep(max_age / 2)
            now = time.time()
            for lp, symbol in self.book.drop_stale(now, max_age):
                _log.warning("stale_quote_dropped", lp=lp, symbol=symbol)
                self.market_data.on_book_update(symbol, self.book.snapshot(symbol), now)

    def exposure(self, now: float) -> ExposureSnapshot:
        """The exposure snapshot routing and risk read: positions and child
        orders in flight as they are now, valued at mids at most
        ``_EXPOSURE_MARK_INTERVAL`` seconds old."""
        if now - self._marked_at >= _EXPOSURE_MARK_INTERVAL:
            self.ledger.mark(self.book)
            self._marked_at = now
        return self.ledger.current()

    def lps_up(self) -> list[str]:
        return [name for name, a in self.adapters.items() if a.up]

    # -- application profile ------------------------------------------------------

    def on_logon(self, session: Session, now: float) -> None:
        pass

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        # orders live on (what is reported meanwhile is resent on the next
        # logon); market data subscriptions end with the session
        self.market_data.drop_session(session)

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        client = session.settings.TargetCompID
        mt = msg.msg_type
        if mt == b"D":
            self._new_order(session, client, msg, now)
        elif mt == b"F":
            self._publish(self.matcher.cancel(decode_cancel(msg, client)), now)
        elif mt == b"G":
            self._replace(client, msg, now)
        elif mt == b"H":
            status = self.matcher.status(client, (msg.get(11) or b"").decode("latin-1"))
            if status is None:
                self._unknown_order_status(session, msg, now)
            else:
                self._send_execution(status.client, status, now)
        elif mt == b"V":
            self.market_data.on_request(session, msg, now)
        else:
            session.reject_business(msg, BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE, now)

    def _new_order(self, session: Session, client: str, msg: FixMessage, now: float) -> None:
        order = decode_new_order(msg, client, self.instruments)
        if isinstance(order, Refusal):
            self._refuse(session, msg, order, now)
            return
        limits = self.client_limits.get(client)
        if limits is not None:
            exposure = self.exposure(now)
            breach = check(
                order,
                self.ledger.client_position(client, order.symbol),
                limits,
                exposure.usd_per_lot.get(order.symbol),
            )
            if breach is not None:
                self._refuse(session, msg, Refusal(breach.text, 0), now)
                return
        self._publish(self.matcher.submit(order, self.book.snapshot(order.symbol)), now)

    def _replace(self, client: str, msg: FixMessage, now: float) -> None:
        replace = decode_replace(msg, client, self.instruments)
        if isinstance(replace, Refusal):
            reject = CancelReject(
                client=client,
                cl_ord_id=(msg.get(11) or b"").decode("latin-1"),
                orig_cl_ord_id=(msg.get(41) or b"").decode("latin-1"),
                order_id=None,
                status=OrdStatus.REJECTED,
                reason=CxlRejReason.OTHER,
                response_to=CxlRejResponseTo.REPLACE,
                text=replace.text,
            )
            self._send_cancel_reject(reject, now)
            return
        symbol = (msg.get(55) or b"").decode("latin-1")
        self._publish(self.matcher.replace(replace, self.book.snapshot(symbol)), now)

    def _unknown_order_status(self, session: Session, msg: FixMessage, now: float) -> None:
        """ExecutionReport (ExecType I, OrdStatus Rejected) for a status
        request naming no order of this client."""
        self._exec_seq += 1
        fields = [
            (6, b"0"),
            (11, msg.get(11) or b""),
            (14, b"0"),
            (17, b"S%d" % self._exec_seq),
            (37, msg.get(37) or b"NONE"),
            (39, b"8"),
            (54, msg.get(54) or b"1"),
            (55, msg.get(55) or b""),
            (58, b"Unknown order"),
            (150, b"I"),
            (151, b"0"),
        ]
        session.send(b"8", codec.encode_fields(f for f in fields if f[1]), now)

    def _refuse(self, session: Session, msg: FixMessage, refusal: Refusal, now: float) -> None:
        self._exec_seq += 1
        body = new_order_reject_body(msg, refusal, f"R{self._exec_seq}")
        session.send(b"8", body, now)
        _log.info(
            "order_rejected",
            session=session.session_id,
            cl_ord_id=(msg.get(11) or b"").decode("latin-1"),
            reason=refusal.text,
        )

    # -- matcher results out ---------------------------------------------------------

    def _publish(self, result: Result, now: float) -> None:
        for ex in result.executions:
            self._send_execution(ex.client, ex, now)
        for reject in result.cancel_rejects:
            self._send_cancel_reject(reject, now)
        for need in result.routes:
            self._route(need, 0, set(), now)

    def _send_execution(self, client: str, ex: Execution, now: float) -> None:
        session = self.sessions.get(client)
        if session is None:
            return
        body = execution_body(ex, self.instruments[ex.symbol], codec.format_utc_timestamp(now))
        session.send(b"8", body, now)

    def _send_cancel_reject(self, reject: CancelReject, now: float) -> None:
        session = self.sessions.get(reject.client)
        if session is not None:
            session.send(b"9", cancel_reject_body(reject, codec.format_utc_timestamp(now)), now)

    # -- routing ---------------------------------------------------------------------

    def _route(self, need: RouteNeed, attempt: int, excluded: set[str], now: float) -> None:
        instrument = self.instruments[need.symbol]
        snapshot = self.book.snapshot(need.symbol)
        plan = None
        if snapshot is not None:
            request = RouteRequest(
                need.order_id,
                need.client,
                need.symbol,
                need.side,
                need.qty,
                need.price,
                instrument,
            )
            avoid = frozenset(excluded | self._down) if excluded else self._down
            plan = self.policy.route(request, snapshot, self.exposure(now), self.limits, avoid)
        if plan is None or not plan.children:
            reason = plan.reason if plan is not None and plan.reason else "no liquidity"
            _log.info("route_empty", order_id=need.order_id, reason=reason, attempt=attempt)
            self._publish(
                self.matcher.on_route_done(
                    need.order_id, need.qty, reason, self.book.snapshot(need.symbol)
                ),
                now,
            )
            return
        self._routing_seq += 1
        routing = _Routing(need, instrument, attempt, self._routing_seq, excluded=excluded)
        routing.returned = plan.remainder
        if plan.reason:
            routing.reasons.append(plan.reason)
        self._routings[need.order_id] = routing
        self._watch(routing, now)
        # adapters answer on a later loop iteration, never inside send()
        order_id = need.order_id
        symbol = need.symbol
        side = need.side
        for lp, qty, price in plan.children:
            self._child_seq += 1
            child_id = f"{order_id}.{self._child_seq}"
            routing.children[child_id] = _Child(lp, qty, qty)
            self._children[child_id] = order_id
            self.ledger.reserve(lp, symbol, qty)
            self.adapters[lp].send(ChildOrder(child_id, order_id, lp, symbol, side, qty, price))

    # -- child-order timeouts ---------------------------------------------------------
    #
    # One timer for all routings: each routing (and each cancel sent after a
    # timeout) adds a deadline to a FIFO queue; the timer fires for the oldest
    # deadline, at most every _TIMEOUT_RESOLUTION seconds, and skips the
    # routings that have finished meanwhile.

    def _watch(self, routing: _Routing, now: float) -> None:
        deadline = now + self.config.routing.child_timeout_ms / 1000
        self._deadlines.append((deadline, routing.need.order_id, routing.serial))
        if self._deadline_timer is None:
            self._arm_deadlines(now)

    def _arm_deadlines(self, now: float) -> None:
        delay = max(self._deadlines[0][0] - now, _TIMEOUT_RESOLUTION)
        self._deadline_timer = asyncio.get_running_loop().call_later(delay, self._on_deadlines)

    def _on_deadlines(self) -> None:
        self._deadline_timer = None
        now = time.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _deadline, parent, serial = deadlines.popleft()
            routing = self._routings.get(parent)
            if routing is not None and routing.serial == serial:
                self._on_route_timeout(routing, now)
        if deadlines:
            self._arm_deadlines(now)

    def on_lp_event(self, event: LpEvent) -> None:
        """The adapters' sink: called on the event loop for every LP event."""
        self._lp_handlers[type(event)](event, time.time())

    def _on_quote(self, quote: Quote, now: float) -> None:
        self.book.update(quote)
        symbol = quote.symbol
        if not self.ledger.is_marked(symbol):
            # a symbol quoted for the first time (or again after all its LPs
            # were down) is valued at once, not at the next mark
            self._marked_at = float("-inf")
        snapshot = self.book.snapshot(symbol)
        self.market_data.on_book_update(symbol, snapshot, now)
        if snapshot is not None:
            self._publish(self.matcher.on_market(symbol, snapshot), now)

    def _on_lp_status(self, status: LpStatus, now: float) -> None:
        _log.info("lp_status", lp=status.lp, up=status.up, reason=status.reason)
        if status.up:
            self._down = self._down - {status.lp}
            return
        self._down = self._down | {status.lp}
        for symbol in self.book.remove_lp(status.lp):
            self.market_data.on_book_update(symbol, self.book.snapshot(symbol), now)

    def _on_ack(self, ack: ChildAck, now: float) -> None:
        pass

    def _on_route_timeout(self, routing: _Routing, now: float) -> None:
        """Children unanswered after ``child_timeout_ms`` are canceled at their
        LP; if a further timeout passes without an answer they are given up:
        their quantity is routed elsewhere or returned to the order."""
        parent = routing.need.order_id
        if not routing.cancel_sent:
            routing.cancel_sent = True
            for child_id, child in routing.children.items():
                _log.warning("child_timeout", lp=child.lp, child_id=child_id, open_qty=child.open)
                self.adapters[child.lp].cancel(child_id)
            # the cancels may have ended the routing already
            if self._routings.get(parent) is routing:
                self._watch(routing, now)
            return
        for child_id, child in list(routing.children.items()):
            _log.error("child_unresolved", lp=child.lp, child_id=child_id, open_qty=child.open)
            self._abandoned[child_id] = (child.lp, parent, routing.need)
            routing.excluded.add(child.lp)
            self._child_done(parent, routing, child_id, child.open, "lp did not answer", now)

    def _on_fill(self, fill: ChildFill, now: float) -> None:
        parent = self._children.get(fill.child_id)
        routing = self._routings.get(parent) if parent is not None else None
        if parent is None or routing is None:
            abandoned = self._abandoned.get(fill.child_id)
            if abandoned is None:
                _log.warning("fill_for_unknown_child", child_id=fill.child_id, exec_id=fill.exec_id)
                return
            lp, order_id, need = abandoned
            if (lp, fill.exec_id) in self._seen_exec_ids:
                return
            self._seen_exec_ids.add((lp, fill.exec_id))
            # the client was told this quantity did not fill: the house holds it
            self.ledger.apply_fill(lp, HOUSE, need.symbol, need.side, fill.qty, fill.price)
            _log.error(
                "late_fill_after_timeout",
                lp=lp,
                order_id=order_id,
                child_id=fill.child_id,
                qty=fill.qty,
                price=fill.price,
            )
            return
        child = routing.children[fill.child_id]
        key = (child.lp, fill.exec_id)
        if key in self._seen_exec_ids:
            _log.warning("duplicate_fill_ignored", lp=child.lp, exec_id=fill.exec_id)
            return
        self._seen_exec_ids.add(key)
        need = routing.need
        child.open -= fill.qty
        self.ledger.reserve(child.lp, need.symbol, -fill.qty)
        self.ledger.apply_fill(child.lp, need.client, need.symbol, need.side, fill.qty, fill.price)
        self._publish(self.matcher.on_fill(parent, fill.qty, fill.price, child.lp), now)
        if fill.leaves == 0:
            self._child_done(parent, routing, fill.child_id, 0, "", now)

    def _on_child_end(self, event: ChildReject | ChildCanceled, now: float) -> None:
        parent = self._children.get(event.child_id)
        routing = self._routings.get(parent) if parent is not None else None
        if parent is None or routing is None:
            return
        child = routing.children[event.child_id]
        # an LP that rejected, dropped or had to be canceled after a timeout
        # gets no more of this order; one that just lacked liquidity at the
        # limit (IOC remainder, price moved) may be asked again at its new price
        if isinstance(event, ChildReject):
            routing.excluded.add(child.lp)
            _log.info("child_rejected", lp=child.lp, child_id=event.child_id, reason=event.reason)
        elif event.reason == DISCONNECTED_REASON or routing.cancel_sent:
            routing.excluded.add(child.lp)
        self._child_done(parent, routing, event.child_id, child.open, event.reason, now)

    def _child_done(
        self, parent: str, routing: _Routing, child_id: str, returned: int, reason: str, now: float
    ) -> None:
        child = routing.children.get(child_id)
        if child is not None and child.open:
            self.ledger.reserve(child.lp, routing.need.symbol, -child.open)
        routing.children.pop(child_id, None)
        self._children.pop(child_id, None)
        routing.returned += returned
        if reason:
            routing.reasons.append(reason)
        if routing.children:
            return
        del self._routings[parent]
        need = routing.need
        unfilled = routing.returned
        if unfilled and routing.attempt < self.config.routing.max_reroutes:
            again = need._replace(qty=unfilled)
            self._route(again, routing.attempt + 1, routing.excluded, now)
            return
        reason_text = "; ".join(dict.fromkeys(routing.reasons)) or "routed"
        self._publish(
            self.matcher.on_route_done(
                parent, unfilled, reason_text, self.book.snapshot(need.symbol)
            ),
            now,
        )
