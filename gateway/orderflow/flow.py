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
import heapq
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog

from config import Config, ConfigError, LpSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import BusinessRejectReason, Session
from gateway.orderflow.stats import FlowStats
from gateway.orderflow.journal_entries import (
    Abandoned,
    Ended,
    Entry,
    Expiring,
    Filled,
    InFlight,
    Message,
    OrderState,
    Positions,
    Run,
    Sent,
)
from gateway.orderflow.market_data import MarketDataService
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.mapping import (
    Refusal,
    cancel_reject_body,
    decode_cancel,
    decode_new_order,
    decode_replace,
    execution_body,
    new_order_reject_body,
    unknown_order_status_body,
)
from gateway.orderflow.recovery import HOUSE, RecoveredChild, Recovery
from gateway.orderflow.rules import Rules, build_rules
from lp_adapters.base import DISCONNECTED_REASON, LpAdapter, create_adapter
from matcher.engine import Matcher, Result, RouteNeed
from matcher.orders import (
    FINAL_STATUSES,
    CancelReject,
    CxlRejReason,
    CxlRejResponseTo,
    Execution,
    OrdRejReason,
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
    Side,
)
from router.policy import RouteRequest
from risk.limits import check

_log = structlog.get_logger("gateway.orderflow.flow")


# how stale the USD valuation of positions may get
_EXPOSURE_MARK_INTERVAL: Final = 0.1

# how late a child-order timeout may be noticed (one timer serves them all)
_TIMEOUT_RESOLUTION: Final = 0.01

# children given up on and still watched for a late fill
_MAX_ABANDONED: Final = 10_000

_REJECT_REASONS = {r.value: r.name.lower() for r in OrdRejReason}
# an order's final status as the metrics name it (an Enum's name is a
# descriptor call on every read)
_STATUS_NAMES: Final[dict[OrdStatus, str]] = {s: s.name.lower() for s in OrdStatus}

# NewOrderSingle, OrderCancelRequest, OrderCancelReplaceRequest
_ORDER_REQUESTS = frozenset((b"D", b"F", b"G"))


def _refusal_reason(code: int) -> str:
    """A metric label for an OrdRejReason."""
    return _REJECT_REASONS.get(code, "other")


# Plain classes, not dataclasses: see "The compiled order path" in the README.


class _Child:
    """A child order at an LP, as the routing that sent it keeps it."""

    def __init__(
        self,
        order: ChildOrder,
        open: int,
        sent_at: float,
        answered: bool = False,
        exec_ids: set[str] | None = None,
    ) -> None:
        self.order = order
        self.open = open
        self.sent_at = sent_at
        self.answered = answered
        self.exec_ids = exec_ids  # fills applied, to apply a repeated one once

    @property
    def lp(self) -> str:
        return self.order.lp

    @property
    def qty(self) -> int:
        return self.order.qty


class _Routing:
    """One routing of an order's remainder: its children and what came back."""

    def __init__(
        self,
        need: RouteNeed,
        instrument: Instrument,
        attempt: int,
        serial: int,
        rules: Rules,
        policy: str,
        excluded: set[str] | None = None,
    ) -> None:
        self.need = need
        self.instrument = instrument
        self.attempt = attempt
        self.serial = serial  # tells this routing from a later one of the same order
        self.rules = rules  # the rules it started under; its re-routes follow them too
        self.policy = policy
        self.children: dict[str, _Child] = {}
        self.returned = 0
        self.excluded: set[str] = set() if excluded is None else excluded
        self.reasons: list[str] = []
        self.cancel_sent = False


def next_day_end(now: float, time_of_day: str) -> float:
    """The first moment after ``now`` (epoch seconds) at which the UTC clock
    reads ``time_of_day`` (``HH:MM``)."""
    hours, minutes = map(int, time_of_day.split(":"))
    offset = hours * 3600 + minutes * 60
    midnight = now - now % 86400
    at = midnight + offset
    return at if at > now else at + 86400


def lp_config_errors(config: Config, known_good: Config | None = None) -> list[str]:
    """What building the configured LP adapters would refuse, one line per
    LP in config order: an adapter kind that is not registered, or settings
    the adapter does not accept.  Adapters do no I/O when built, so this is
    safe to run on a config that is only being checked.  An LP configured
    exactly as in ``known_good`` (same instruments too) is not built again."""
    instruments = {i.symbol: i.to_instrument() for i in config.instruments}
    good: set[tuple[str, str, str]] = set()
    if known_good is not None and known_good.instruments == config.instruments:
        good = {_lp_key(lp) for lp in known_good.lps}
    errors = []
    for index, lp in enumerate(config.lps):
        if _lp_key(lp) in good:
            continue
        try:
            create_adapter(lp.adapter, lp.name, instruments, _discard, lp.settings)
        except (KeyError, ValueError, TypeError) as exc:
            reason = exc.args[0] if exc.args else repr(exc)
            errors.append(f"lps[{index}] ({lp.name}): {reason}")
    return errors


def _lp_key(lp: LpSettings) -> tuple[str, str, str]:
    return lp.name, lp.adapter, msgspec.json.encode(lp.settings).decode()


def _discard(event: LpEvent) -> None:
    return None


class OrderFlow:
    """The ``orders`` application profile and everything behind it."""

    def __init__(
        self,
        config: Config,
        sessions: Mapping[str, Session],
        journal: OrderJournal | None = None,
    ) -> None:
        self.instruments = {i.symbol: i.to_instrument() for i in config.instruments}
        self.sessions = dict(sessions)  # client CompID -> session
        self.rules = build_rules(config, self.instruments, list(self.sessions), generation=1)
        self.ledger = ExposureLedger(self.instruments)
        self.journal = journal
        recovery = Recovery(self.ledger, config.orders.retain_finished)
        if journal is not None:
            for entry in journal.replay():
                recovery.apply(entry)
            run = str(journal.run + 1)
        else:
            run = format(int(time.time()), "x")
        # OrderIDs, ExecIDs and child order ids never repeat across runs
        self._run = run
        self.matcher = Matcher(
            self.instruments,
            internal_crossing=config.routing.internal_crossing,
            retain_finished=config.orders.retain_finished,
            id_prefix=run,
        )
        self.book = AggregatedBook()
        self.market_data = MarketDataService(self.instruments, self.book)
        self.stats = FlowStats()
        self.adapters: dict[str, LpAdapter] = {
            lp.name: create_adapter(
                lp.adapter,
                lp.name,
                self.instruments,
                self.on_lp_event,
                lp.settings,
                Path(config.gateway.data_dir),
            )
            for lp in config.lps
            if lp.enabled
        }
        self._routings: dict[str, _Routing] = {}  # parent order id -> routing in flight
        self._children: dict[str, str] = {}  # child id -> parent order id
        # children given up on (the LP answered neither the order nor its
        # cancel in time): a late fill still moves the LP's position
        self._abandoned: dict[str, tuple[ChildOrder, set[str]]] = {}
        # order id -> [arrival time, policy of its first routing or ""]
        self._started: dict[str, list[Any]] = {}
        # orders counted against max_open_orders: accepted and not final
        self._open_by_client: dict[str, int] = {}
        # per client: [tokens, time of the last refill] (max_messages_per_second)
        self._buckets: dict[str, list[float]] = {}
        self._debug = config.gateway.log_level == "debug"
        self._tasks: set[asyncio.Task[None]] = set()
        self._marked_at = float("-inf")
        self._child_seq = 0
        self._routing_seq = 0
        self._exec_seq = 0
        # heap of (deadline, parent order id, routing serial)
        self._deadlines: list[tuple[float, str, int]] = []
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
        # sessions with messages stored while logged off, to flush soon
        self._unflushed: set[Session] = set()
        self._flush_scheduled = False
        # from an earlier run: children to hand back to their adapters, and
        # orders to settle once started
        self._recovered: dict[str, list[tuple[ChildOrder, int]]] = {}
        self._orphans: list[str] = []
        if journal is not None:
            self._complete_stores(recovery)
            self._restore(recovery)
            self._take_checkpoint(journal, int(run))
            journal.on_dirty = self._flush_soon
            for adapter in self.adapters.values():
                adapter.write_barrier = journal.flush
            for session in self.sessions.values():
                session.on_stored = self._journal_stored

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for lp, children in self._recovered.items():
            adapter = self.adapters.get(lp)
            if adapter is not None:
                try:
                    adapter.recover(children)
                except Exception:
                    # its children are timed out and given up like any
                    _log.exception("lp_adapter_failed", lp=lp, call="recover")
                continue
            _log.error("recovered_children_of_unknown_lp", lp=lp, children=len(children))
            for child, open_lots in children:
                reason = f"{lp} is no longer configured"
                loop.call_soon(self.on_lp_event, ChildCanceled(child.child_id, open_lots, reason))
        self._recovered = {}
        outcomes = await asyncio.gather(
            *(a.connect() for a in self.adapters.values()), return_exceptions=True
        )
        for name, outcome in zip(self.adapters, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _log.error("lp_adapter_failed", lp=name, call="connect", error=repr(outcome))
        self._down = frozenset(name for name, a in self.adapters.items() if not a.up)
        now = time.time()
        # what came back from an earlier run is timed from now on
        for routing in self._routings.values():
            self._watch(routing, now)
        orphans, self._orphans = self._orphans, []
        for order_id in orphans:
            self._settle_orphan(order_id, now)
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
        at = next_day_end(now, self.rules.config.orders.trading_day_end)
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
        if self.journal is not None:
            self._take_checkpoint(self.journal)

    # -- durability ------------------------------------------------------------------

    def _flush_soon(self) -> None:
        """The journal has entries (or a logged-off session stored messages):
        hand them to the OS at the end of this loop iteration, if no write
        barrier did it before."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_durable)

    def _flush_durable(self) -> None:
        self._flush_scheduled = False
        journal = self.journal
        if journal is not None:
            journal.flush()
            if journal.size > self.rules.config.orders.journal_checkpoint_mb << 20:
                grown_to = journal.size
                started = time.perf_counter()
                self._take_checkpoint(journal)
                _log.info(
                    "order_journal_checkpointed",
                    bytes_before=grown_to,
                    bytes_after=journal.size,
                    seconds=round(time.perf_counter() - started, 4),
                )
        if self._unflushed:
            sessions, self._unflushed = self._unflushed, set()
            for session in sessions:
                session.flush_store()

    def _take_checkpoint(self, journal: OrderJournal, run: int | None = None) -> None:
        """Replace the journal by the state now.  The copies of client
        messages it held are in their session stores first."""
        journal.flush()
        for session in self.sessions.values():
            session.flush_store()
        journal.checkpoint(self._checkpoint(journal.run if run is None else run))

    def _journal_stored(self, session: Session, seq: int, raw: bytes) -> None:
        self.journal.add(  # type: ignore[union-attr]
            Message(session.session_id, session.store.creation_time, seq, raw)
        )

    def _complete_stores(self, recovery: Recovery) -> None:
        """Messages the journal holds for a client session whose store did
        not get them (the crash fell between the two writes) are stored
        now, under their numbers, for the client's next ResendRequest."""
        for session in self.sessions.values():
            store = session.store
            added = 0
            for message in recovery.messages.get(session.session_id, ()):
                if message.created == store.creation_time and message.seq >= store.next_sender_seq:
                    store.append_sent(message.seq, message.raw)
                    added += 1
            if added:
                store.flush()
                _log.warning(
                    "session_store_completed_from_journal",
                    session=session.session_id,
                    messages=added,
                    next_sender_seq=store.next_sender_seq,
                )

    def _checkpoint(self, run: int) -> Iterator[Entry]:
        """The state as journal entries, for a checkpoint."""
        yield Run(run)
        lps, clients, last_price = self.ledger.positions()
        yield Positions(lps, clients, last_price)
        for order in self.matcher.orders():
            yield OrderState(order)
        for routing in self._routings.values():
            for child in routing.children.values():
                yield InFlight(child.order, child.open, sorted(child.exec_ids or ()))
        for child_order, exec_ids in self._abandoned.values():
            yield InFlight(child_order, 0, sorted(exec_ids), abandoned=True)
        yield Expiring(sorted(self.matcher.expiring))

    def _restore(self, recovery: Recovery) -> None:
        """Take back the state an earlier run left in the journal: orders
        into the matcher, children in flight into routings (their LP
        adapters find out what became of them once started), positions
        are already in the ledger."""
        orders = recovery.orders.values()
        opened = sorted((o for o in orders if not o.is_final), key=lambda o: o.seq)
        gone = sorted({o.symbol for o in opened} - set(self.instruments))
        if gone:
            raise ConfigError(
                [
                    f"instruments: {symbol} is not configured, but the order journal holds "
                    f"open orders in it; configure it until they are closed"
                    for symbol in gone
                ]
            )
        self.matcher.restore([o for o in orders if o.is_final] + opened, recovery.expiring)
        by_parent: dict[str, list[RecoveredChild]] = {}
        for recovered in recovery.children.values():
            child = recovered.child
            parent = self.matcher.find(child.parent_id, "", "")
            if recovered.abandoned or parent is None or not parent.routing_qty:
                self._abandoned[child.child_id] = (child, recovered.exec_ids)
            else:
                by_parent.setdefault(child.parent_id, []).append(recovered)
            self._recovered.setdefault(child.lp, []).append((child, recovered.open))
        rules = self.rules
        now = time.time()
        for order in opened:
            client = order.client
            self._open_by_client[client] = self._open_by_client.get(client, 0) + 1
            policy = rules.policy_for(client, order.cl_ord_id)
            self._started[order.order_id] = [None, policy]
            if not order.routing_qty:
                continue
            children = by_parent.get(order.order_id)
            in_flight = sum(c.open for c in children) if children else 0
            if not children or in_flight > order.routing_qty:
                _log.error(
                    "recovered_routing_inconsistent",
                    order_id=order.order_id,
                    routing_qty=order.routing_qty,
                    in_flight=in_flight,
                )
                for recovered in children or ():
                    self._abandoned[recovered.child.child_id] = (
                        recovered.child,
                        recovered.exec_ids,
                    )
                self._orphans.append(order.order_id)
                continue
            need = RouteNeed(
                order.order_id,
                client,
                order.symbol,
                order.side,
                order.routing_qty,
                order.price,
                order.tif,
                order.cl_ord_id,
            )
            self._routing_seq += 1
            # what comes back is not routed again: it returns to the order
            routing = _Routing(
                need,
                self.instruments[order.symbol],
                rules.config.routing.max_reroutes,
                self._routing_seq,
                rules,
                policy,
            )
            routing.returned = order.routing_qty - in_flight
            for recovered in children:
                child = recovered.child
                routing.children[child.child_id] = _Child(
                    child,
                    recovered.open,
                    now,
                    answered=True,
                    exec_ids=recovered.exec_ids,
                )
                self._children[child.child_id] = order.order_id
                self.ledger.reserve(child.lp, child.symbol, recovered.open)
            self._routings[order.order_id] = routing
        _log.info(
            "orders_recovered",
            run=self._run,
            open=len(opened),
            final=len(recovery.orders) - len(opened),
            routings=len(self._routings),
            children_to_check=sum(len(c) for c in self._recovered.values()),
            fills=recovery.fills,
            duplicate_fills=recovery.duplicate_fills,
        )

    def _settle_orphan(self, order_id: str, now: float) -> None:
        """An order recovered as out at LPs with no child to wait for: its
        routed lots come back to it."""
        order = self.matcher.find(order_id, "", "")
        if order is None or not order.routing_qty:
            return
        result = self.matcher.on_route_done(
            order_id, order.routing_qty, "gateway restarted", self.book.snapshot(order.symbol)
        )
        self._publish(result, now, order_id)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("task_failed", task=task.get_name(), error=repr(task.exception()))

    async def _drop_stale_quotes(self) -> None:
        """Quotes older than ``routing.quote_max_age_ms`` leave the book."""
        while True:
            max_age = self.rules.config.routing.quote_max_age_ms / 1000
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

    def apply_rules(self, rules: Rules) -> None:
        """Put ``rules`` in force from the next event on.  Routings already
        under way keep the rules they began with."""
        old = self.rules
        self.rules = rules
        config = rules.config
        self.matcher.internal_crossing = config.routing.internal_crossing
        self.matcher.retain_finished = config.orders.retain_finished
        self._debug = config.gateway.log_level == "debug"
        day_end = config.orders.trading_day_end
        if day_end != old.config.orders.trading_day_end and self._day_timer is not None:
            self._day_timer.cancel()
            self._arm_day_end(time.time())

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
        if msg.get(43) == b"Y" and mt in _ORDER_REQUESTS and self._seen_before(client, msg):
            return
        limits = self.rules.client_limits.get(client)
        rate = None if limits is None else limits.max_messages_per_second
        if rate is not None and not self._within_rate(client, rate, now):
            self._throttled(session, client, msg, rate, now)
            return
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

    def _seen_before(self, client: str, msg: FixMessage) -> bool:
        """A request resent with PossDupFlag (after a crash, on the peer's
        ResendRequest) whose ClOrdID the client has used already: it was
        worked on the first time, and its answers reach the client through
        the resend of ours.  Worked again, it would only earn a duplicate
        ClOrdID reject."""
        cl_ord_id = (msg.get(11) or b"").decode("latin-1")
        if self.matcher.status(client, cl_ord_id) is None:
            return False
        _log.info(
            "possible_duplicate_ignored",
            client=client,
            cl_ord_id=cl_ord_id,
            msg_type=msg.msg_type.decode("latin-1"),
        )
        return True

    def _new_order(self, session: Session, client: str, msg: FixMessage, now: float) -> None:
        stats = self.stats
        stats.orders_received[client] = stats.orders_received.get(client, 0) + 1
        order = decode_new_order(msg, client, self.instruments)
        if isinstance(order, Refusal):
            self._refuse(session, msg, order, _refusal_reason(order.ord_rej_reason), now)
            return
        limits = self.rules.client_limits.get(client)
        if limits is not None:
            cap = limits.max_open_orders
            if cap is not None and self._open_by_client.get(client, 0) >= cap:
                text = f"max open orders reached: {cap} open (limit max_open_orders)"
                refusal = Refusal(text, OrdRejReason.ORDER_EXCEEDS_LIMIT)
                self._refuse(session, msg, refusal, "risk_max_open_orders", now)
                return
            exposure = self.exposure(now)
            breach = check(
                order,
                self.ledger.client_position(client, order.symbol),
                limits,
                exposure.usd_per_lot.get(order.symbol),
            )
            if breach is not None:
                refusal = Refusal(breach.text, OrdRejReason.ORDER_EXCEEDS_LIMIT)
                self._refuse(session, msg, refusal, f"risk_{breach.limit}", now)
                return
        result = self.matcher.submit(order, self.book.snapshot(order.symbol))
        if result.executions:
            self._started[result.executions[0].order_id] = [now, ""]
            self._open_by_client[client] = self._open_by_client.get(client, 0) + 1
        self._publish(result, now)

    def _within_rate(self, client: str, rate: int, now: float) -> bool:
        """Take a token from the client's bucket (``rate`` per second, one
        second's worth at most); False when it is empty."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = [float(rate), now]
        tokens = min(float(rate), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _throttled(
        self, session: Session, client: str, msg: FixMessage, rate: int, now: float
    ) -> None:
        """Reject a message over the client's rate, in the form its type asks for."""
        text = f"throttled: more than {rate} messages per second (limit max_messages_per_second)"
        mt = msg.msg_type
        if mt == b"D":
            self.stats.received(client)
            refusal = Refusal(text, OrdRejReason.OTHER)
            self._refuse(session, msg, refusal, "throttled", now)
        elif mt in (b"F", b"G"):
            to = CxlRejResponseTo.CANCEL if mt == b"F" else CxlRejResponseTo.REPLACE
            self._refuse_change(client, msg, to, text, now)
        else:
            session.reject_business(msg, BusinessRejectReason.OTHER, now, text=text.encode())

    def _refuse_change(
        self,
        client: str,
        msg: FixMessage,
        response_to: CxlRejResponseTo,
        text: str,
        now: float,
    ) -> None:
        """OrderCancelReject for a cancel or replace refused before it
        reached the matcher (no order is looked at)."""
        reject = CancelReject(
            client=client,
            cl_ord_id=(msg.get(11) or b"").decode("latin-1"),
            orig_cl_ord_id=(msg.get(41) or b"").decode("latin-1"),
            order_id=None,
            status=OrdStatus.REJECTED,
            reason=CxlRejReason.OTHER,
            response_to=response_to,
            text=text,
        )
        self._send_cancel_reject(reject, now)

    def _replace(self, client: str, msg: FixMessage, now: float) -> None:
        replace = decode_replace(msg, client, self.instruments)
        if isinstance(replace, Refusal):
            self._refuse_change(client, msg, CxlRejResponseTo.REPLACE, replace.text, now)
            return
        symbol = (msg.get(55) or b"").decode("latin-1")
        self._publish(self.matcher.replace(replace, self.book.snapshot(symbol)), now)

    def _unknown_order_status(self, session: Session, msg: FixMessage, now: float) -> None:
        """ExecutionReport (ExecType I, OrdStatus Rejected) for a status
        request naming no order of this client."""
        self._exec_seq += 1
        session.send(b"8", unknown_order_status_body(msg, f"S{self._exec_seq}"), now)

    def _refuse(
        self, session: Session, msg: FixMessage, refusal: Refusal, reason: str, now: float
    ) -> None:
        self._exec_seq += 1
        body = new_order_reject_body(msg, refusal, f"R{self._exec_seq}")
        session.send(b"8", body, now)
        client = session.settings.TargetCompID
        self.stats.rejected(client, reason)
        self.stats.final(client, "rejected")
        _log.info(
            "order_rejected",
            session=session.session_id,
            cl_ord_id=(msg.get(11) or b"").decode("latin-1"),
            reason=refusal.text,
        )

    # -- matcher results out ---------------------------------------------------------

    def _publish(self, result: Result, now: float, touched: str = "") -> None:
        """Journal, report and route what a matcher call produced; ``touched``
        names an order the call changed without reporting it."""
        if self.journal is not None:
            self._journal_orders(result, touched)
        for ex in result.executions:
            self._send_execution(ex.client, ex, now)
        for reject in result.cancel_rejects:
            self._send_cancel_reject(reject, now)
        for need in result.routes:
            self._route(need, 0, set(), now)

    def _journal_orders(self, result: Result, touched: str) -> None:
        """One OrderState entry per order the matcher call changed."""
        add = self.journal.add  # type: ignore[union-attr]
        find = self.matcher.find
        seen = set()
        for ex in result.executions:
            order_id = ex.order_id
            if order_id not in seen:
                seen.add(order_id)
                order = find(order_id, ex.client, ex.cl_ord_id)
                if order is not None:
                    add(OrderState(order))
        for need in result.routes:
            if need.order_id not in seen:
                seen.add(need.order_id)
                order = find(need.order_id, need.client, need.cl_ord_id)
                if order is not None:
                    add(OrderState(order))
        if touched and touched not in seen:
            order = find(touched, "", "")
            if order is not None:
                add(OrderState(order))

    def _send_execution(self, client: str, ex: Execution, now: float) -> None:
        session = self.sessions.get(client)
        if session is not None:
            body = execution_body(ex, self.instruments[ex.symbol], codec.format_utc_timestamp(now))
            session.send(b"8", body, now)
            if not session.is_logged_on and self.journal is not None:
                # kept for the client's next logon: on disk soon, not only then
                self._unflushed.add(session)
                self._flush_soon()
        if ex.status in FINAL_STATUSES:
            started = self._started.pop(ex.order_id, None)
            if started is not None:
                self._order_done(ex, started)

    def _order_done(self, ex: Execution, started: list[Any]) -> None:
        """Count an order that reached its final state."""
        self._open_by_client[ex.client] -= 1
        stats = self.stats
        if started[0] is not None:  # None: an order from an earlier run
            latency = time.time() - started[0]
            stats.latency.observe(latency)
            if started[1]:
                stats.policy(started[1]).latency.observe(latency)
        stats.final(ex.client, _STATUS_NAMES[ex.status])
        if ex.status is OrdStatus.REJECTED:
            reason = ex.ord_rej_reason
            stats.rejected(ex.client, _refusal_reason(reason if reason is not None else 99))
            _log.info(
                "order_rejected",
                client=ex.client,
                cl_ord_id=ex.cl_ord_id,
                order_id=ex.order_id,
                reason=ex.text,
            )

    def _send_cancel_reject(self, reject: CancelReject, now: float) -> None:
        session = self.sessions.get(reject.client)
        if session is not None:
            session.send(b"9", cancel_reject_body(reject, codec.format_utc_timestamp(now)), now)
        _log.info(
            "cancel_rejected",
            client=reject.client,
            cl_ord_id=reject.cl_ord_id,
            orig_cl_ord_id=reject.orig_cl_ord_id,
            response_to=reject.response_to.name.lower(),
            reason=reject.text,
        )

    # -- routing ---------------------------------------------------------------------

    def _route(
        self,
        need: RouteNeed,
        attempt: int,
        excluded: set[str],
        now: float,
        rules: Rules | None = None,
        policy: str = "",
    ) -> None:
        """Route ``need``: a first routing takes the rules in force and
        chooses its policy by the order's ClOrdID; a re-route (``attempt`` >
        0) follows the rules and the policy of the routing it continues."""
        if rules is None:
            rules = self.rules
            policy = rules.policy_for(need.client, need.cl_ord_id)
            started = self._started.get(need.order_id)
            if started is not None and not started[1]:
                started[1] = policy
                self.stats.policy(policy).orders += 1
        policy_stats = self.stats.policy(policy)
        policy_stats.routings += 1
        policy_stats.routed_lots += need.qty
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
            plan = rules.policies[policy].route(
                request, snapshot, self.exposure(now), rules.limits, avoid
            )
            if self._debug:
                _log.debug(
                    "route_decision",
                    client=need.client,
                    cl_ord_id=need.cl_ord_id,
                    order_id=need.order_id,
                    policy=policy,
                    attempt=attempt,
                    children=[(c.lp, c.qty, c.price) for c in plan.children],
                    unallocated=plan.remainder,
                    reason=plan.reason,
                )
        if plan is None or not plan.children:
            reason = plan.reason if plan is not None and plan.reason else "no liquidity"
            _log.info(
                "route_empty",
                client=need.client,
                cl_ord_id=need.cl_ord_id,
                order_id=need.order_id,
                policy=policy,
                reason=reason,
                attempt=attempt,
            )
            self._publish(
                self.matcher.on_route_done(
                    need.order_id, need.qty, reason, self.book.snapshot(need.symbol)
                ),
                now,
                need.order_id,
            )
            return
        self._routing_seq += 1
        routing = _Routing(
            need, instrument, attempt, self._routing_seq, rules, policy, excluded=excluded
        )
        routing.returned = plan.remainder
        if plan.reason:
            routing.reasons.append(plan.reason)
        self._routings[need.order_id] = routing
        self._watch(routing, now)
        # adapters answer on a later loop iteration, never inside send()
        order_id = need.order_id
        symbol = need.symbol
        side = need.side
        journal = self.journal
        sends = []
        for lp, qty, price in plan.children:
            self._child_seq += 1
            child_id = f"{order_id}.{self._run}C{self._child_seq}"
            child = ChildOrder(child_id, order_id, lp, symbol, side, qty, price)
            routing.children[child_id] = _Child(child, qty, now)
            self._children[child_id] = order_id
            self.stats.lp(lp).children += 1
            self.ledger.reserve(lp, symbol, qty)
            if journal is not None:
                journal.add(Sent(child))
            sends.append(child)
        for child in sends:
            try:
                self.adapters[child.lp].send(child)
            except Exception as exc:
                # an adapter's bug is that LP's reject, answered like one
                _log.exception("lp_adapter_failed", lp=child.lp, call="send")
                reject = ChildReject(child.child_id, f"LP adapter error: {exc!r}")
                asyncio.get_running_loop().call_soon(self.on_lp_event, reject)

    # -- child-order timeouts ---------------------------------------------------------
    #
    # One timer for all routings: each routing (and each cancel sent after a
    # timeout) adds a deadline to a FIFO queue; the timer fires for the oldest
    # deadline, at most every _TIMEOUT_RESOLUTION seconds, and skips the
    # routings that have finished meanwhile.

    def _watch(self, routing: _Routing, now: float) -> None:
        deadline = now + routing.rules.config.routing.child_timeout_ms / 1000
        heapq.heappush(self._deadlines, (deadline, routing.need.order_id, routing.serial))
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
            _deadline, parent, serial = heapq.heappop(deadlines)
            routing = self._routings.get(parent)
            if routing is not None and routing.serial == serial:
                self._on_route_timeout(routing, now)
        if deadlines:
            self._arm_deadlines(now)

    def on_lp_event(self, event: LpEvent) -> None:
        """The adapters' sink: called on the event loop for every LP event.
        An event the flow cannot take is logged and dropped: it must not
        break the adapter that delivered it."""
        try:
            self._lp_handlers[type(event)](event, time.time())
        except Exception:
            _log.exception("lp_event_failed", lp_event=repr(event))

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
        parent = self._children.get(ack.child_id)
        routing = self._routings.get(parent) if parent is not None else None
        if routing is not None:
            self._answered(routing.children[ack.child_id], now)

    def _answered(self, child: _Child, now: float) -> None:
        if not child.answered:
            child.answered = True
            self.stats.lp(child.lp).ack_latency.observe(now - child.sent_at)

    def _on_route_timeout(self, routing: _Routing, now: float) -> None:
        """Children unanswered after ``child_timeout_ms`` are canceled at their
        LP; if a further timeout passes without an answer they are given up:
        their quantity is routed elsewhere or returned to the order."""
        parent = routing.need.order_id
        if not routing.cancel_sent:
            routing.cancel_sent = True
            for child_id, child in routing.children.items():
                _log.warning("child_timeout", lp=child.lp, child_id=child_id, open_qty=child.open)
                try:
                    self.adapters[child.lp].cancel(child_id)
                except Exception:
                    # the child is given up after the next timeout anyway
                    _log.exception("lp_adapter_failed", lp=child.lp, call="cancel")
            # the cancels may have ended the routing already
            if self._routings.get(parent) is routing:
                self._watch(routing, now)
            return
        for child_id, child in list(routing.children.items()):
            _log.error("child_unresolved", lp=child.lp, child_id=child_id, open_qty=child.open)
            lp_stats = self.stats.lp(child.lp)
            lp_stats.timeouts += 1
            if child.open < child.qty:
                lp_stats.filled += 1
            else:
                lp_stats.unfilled += 1
            self._abandon(child_id, child)
            routing.excluded.add(child.lp)
            reason = "lp did not finish in time" if child.answered else "lp did not answer"
            self._child_done(parent, routing, child_id, child.open, reason, now)

    def _on_fill(self, fill: ChildFill, now: float) -> None:
        parent = self._children.get(fill.child_id)
        routing = self._routings.get(parent) if parent is not None else None
        if parent is None or routing is None:
            abandoned = self._abandoned.get(fill.child_id)
            if abandoned is None:
                _log.warning("fill_for_unknown_child", child_id=fill.child_id, exec_id=fill.exec_id)
                return
            child_order, exec_ids = abandoned
            if fill.exec_id in exec_ids:
                return
            exec_ids.add(fill.exec_id)
            lp = child_order.lp
            # the client was told this quantity did not fill: the house holds it
            self._book_fill(fill, lp, HOUSE, child_order.symbol, child_order.side)
            _log.error(
                "late_fill_after_timeout",
                lp=lp,
                order_id=child_order.parent_id,
                child_id=fill.child_id,
                qty=fill.qty,
                price=fill.price,
            )
            return
        child = routing.children[fill.child_id]
        seen = child.exec_ids
        if seen is None:
            seen = child.exec_ids = set()
        elif fill.exec_id in seen:
            _log.warning("duplicate_fill_ignored", lp=child.lp, exec_id=fill.exec_id)
            return
        seen.add(fill.exec_id)
        if not child.answered:
            self._answered(child, now)
        lp_stats = self.stats.lp(child.lp)
        lp_stats.fills += 1
        lp_stats.filled_lots += fill.qty
        self.stats.policy(routing.policy).filled_lots += fill.qty
        need = routing.need
        qty = fill.qty
        if qty > child.open:
            # the LP filled more than it was asked: what the client did not
            # order is the house's, and the LP's exposure is what it says
            _log.error(
                "lp_overfill",
                lp=child.lp,
                child_id=fill.child_id,
                exec_id=fill.exec_id,
                qty=qty,
                open_qty=child.open,
            )
            self._book_fill(fill, child.lp, HOUSE, need.symbol, need.side, qty - child.open)
            qty = child.open
        if qty:
            child.open -= qty
            self.ledger.reserve(child.lp, need.symbol, -qty)
            self._book_fill(fill, child.lp, need.client, need.symbol, need.side, qty)
            self._publish(self.matcher.on_fill(parent, qty, fill.price, child.lp), now)
        if fill.leaves == 0:
            lp_stats.filled += 1
            # lots the LP ends without filling come back to the order
            self._child_done(parent, routing, fill.child_id, child.open, "", now)

    def _book_fill(
        self,
        fill: ChildFill,
        lp: str,
        account: str,
        symbol: str,
        side: Side,
        qty: int | None = None,
    ) -> None:
        """Apply an LP fill (``qty`` lots of it, all by default) to the
        exposure ledger, and journal it."""
        lots = fill.qty if qty is None else qty
        self.ledger.apply_fill(lp, account, symbol, side, lots, fill.price)
        if self.journal is not None:
            self.journal.add(
                Filled(fill.child_id, fill.exec_id, lp, account, symbol, side, lots, fill.price)
            )

    def _on_child_end(self, event: ChildReject | ChildCanceled, now: float) -> None:
        parent = self._children.get(event.child_id)
        routing = self._routings.get(parent) if parent is not None else None
        if parent is None or routing is None:
            return
        child = routing.children[event.child_id]
        self._answered(child, now)
        lp_stats = self.stats.lp(child.lp)
        # an LP that rejected, dropped or had to be canceled after a timeout
        # gets no more of this order; one that just lacked liquidity at the
        # limit (IOC remainder, price moved) may be asked again at its new price
        if isinstance(event, ChildReject):
            lp_stats.rejected += 1
            routing.excluded.add(child.lp)
            _log.info(
                "child_rejected",
                lp=child.lp,
                client=routing.need.client,
                cl_ord_id=routing.need.cl_ord_id,
                child_id=event.child_id,
                reason=event.reason,
            )
        else:
            if child.open < child.qty:
                lp_stats.filled += 1
            else:
                lp_stats.unfilled += 1
            if event.reason == DISCONNECTED_REASON or routing.cancel_sent:
                routing.excluded.add(child.lp)
            if event.reason == DISCONNECTED_REASON:
                # the LP may have filled it before it saw the drop, and
                # report that after the link is back: booked to the house
                self._abandon(event.child_id, child)
        self._child_done(parent, routing, event.child_id, child.open, event.reason, now)

    def _abandon(self, child_id: str, child: _Child) -> None:
        """Give up on a child the LP answers no more: a fill it reports later
        is still applied (once) to the LP's exposure, booked to the house."""
        abandoned = self._abandoned
        abandoned[child_id] = (child.order, child.exec_ids or set())
        if self.journal is not None:
            self.journal.add(Abandoned(child_id))
        while len(abandoned) > _MAX_ABANDONED:
            oldest = next(iter(abandoned))
            _log.error("abandoned_child_forgotten", child_id=oldest, lp=abandoned[oldest][0].lp)
            del abandoned[oldest]

    def _child_done(
        self, parent: str, routing: _Routing, child_id: str, returned: int, reason: str, now: float
    ) -> None:
        child = routing.children.get(child_id)
        if child is not None and child.open:
            self.ledger.reserve(child.lp, routing.need.symbol, -child.open)
        routing.children.pop(child_id, None)
        self._children.pop(child_id, None)
        if self.journal is not None and child_id not in self._abandoned:
            self.journal.add(Ended(child_id))
        routing.returned += returned
        if reason:
            routing.reasons.append(reason)
        if routing.children:
            return
        del self._routings[parent]
        need = routing.need
        unfilled = routing.returned
        if unfilled and routing.attempt < routing.rules.config.routing.max_reroutes:
            again = need._replace(qty=unfilled)
            self._route(
                again, routing.attempt + 1, routing.excluded, now, routing.rules, routing.policy
            )
            return
        reason_text = "; ".join(dict.fromkeys(routing.reasons)) or "routed"
        self._publish(
            self.matcher.on_route_done(
                parent, unfilled, reason_text, self.book.snapshot(need.symbol)
            ),
            now,
            parent,
        )
