"""Routing of child orders: from a matcher's route need to children at LPs,
and everything the LPs answer.

:class:`ChildRouting` runs the routing policy over a book snapshot and an
exposure snapshot, sends the children through the LP adapters, times them
out, and takes every LP event: quotes into the aggregated book (and market
data, and the matcher's resting orders), acks, fills booked to the exposure
ledger and the journal, rejects and cancels.  When all children of a routing
have ended, what is left is routed again (excluding the LPs that rejected or
dropped) up to ``max_reroutes`` times, and only then handed back to the
matcher, which rests or cancels it by the order's TimeInForce.  A cancel or
replace of the order waiting for its routing stops the re-routes, and so does
the end of the trading day for a DAY order: what is left goes back to the
matcher at once, which applies the change, or expires the order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import structlog

from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Abandoned, Ended, Filled, Sent
from gateway.orderflow.market_data import MarketDataService
from gateway.orderflow.publish import Reports
from gateway.orderflow.recovery import HOUSE, KEEP_ENDED
from gateway.orderflow.rules import Rules
from gateway.orderflow.stats import FlowStats
from lp_adapters.base import DISCONNECTED_REASON, LpAdapter
from lp_adapters.recent import Recent, joined_ids
from matcher.engine import Matcher, NewOrder, Result, RouteNeed
from router.book import AggregatedBook, BookSnapshot, BooksWithout
from router.exposure import ExposureLedger, ExposureSnapshot
from router.members import BUY, DAY, GTC, LIMIT
from router.model import (
    EXEC_ID_SEP,
    REVERSAL_SUFFIX,
    ChildAck,
    ChildBust,
    ChildCanceled,
    ChildCorrection,
    ChildFill,
    ChildOrder,
    ChildReject,
    EndedChild,
    Instrument,
    LpEvent,
    LpStatus,
    Quote,
    RecoveredOrder,
    Side,
)
from router.policy import RouteRequest, RoutingLimits

_log = structlog.get_logger("gateway.orderflow.routing")

# how stale the USD valuation of positions may get
_EXPOSURE_MARK_INTERVAL: Final = 0.1

# how late a child-order timeout may be noticed (one timer serves them all)
_TIMEOUT_RESOLUTION: Final = 0.01

# children given up on and still watched for a late fill
_MAX_ABANDONED: Final = 10_000

# children an LP ended (canceled, rejected or filled in full), watched for a
# fill it should not report any more (the latest ones: a late fill or an
# overfill comes soon after, if at all)
_MAX_ENDED: Final = KEEP_ENDED

# how long a resting order whose routing came back empty at a book that made
# it marketable (its LPs at their hard limit) waits before a quote at the
# same or a worse price may route it again; a better price, an LP's link
# going up or down, or a reload, ends the wait
RETRY_EMPTY: Final = 0.1
# orders so paused at most before those whose pause is over are let go
_MAX_PAUSED: Final = 10_000

# why a Trade Cancel or Correct an adapter passed on is not booked again
_BUST_BOOKED: Final = "its ExecID was booked already"
# Plain classes, not dataclasses: see "The compiled order path" in the README.


class Child:
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


class Routing:
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
        self.children: dict[str, Child] = {}
        self.returned = 0
        self.excluded: set[str] = set() if excluded is None else excluded
        self.reasons: list[str] = []
        self.cancel_sent = False


def _told(reasons: Sequence[str]) -> str:
    """What a client is told of why its order's lots were not filled: each
    routing's reasons, once each, in the order they came."""
    return "; ".join(dict.fromkeys(reasons))


class ChildRouting:
    """Routings in flight, their children at LPs, and the LP events.

    The state it owns: ``routings`` (parent order id -> routing in flight),
    ``children`` (child id -> parent order id), ``abandoned`` (children
    given up on: a late fill still moves the LP's position), ``settled``
    (those of them not handed back to their LP's adapter at a restart),
    ``ended``
    (the latest children an LP canceled, rejected or filled in full: a fill
    it reports for one afterwards moves its position too) and ``down``
    (LPs not up: routed to by no one).
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        matcher: Matcher,
        book: AggregatedBook,
        ledger: ExposureLedger,
        market_data: MarketDataService,
        reports: Reports,
        stats: FlowStats,
        journal: OrderJournal | None,
        rules: Rules,
        clock: Callable[[], float],
        run: str,
    ) -> None:
        self.instruments: dict[str, Instrument] = dict(instruments)
        self.matcher = matcher
        self.book = book
        self.ledger = ledger
        self.market_data = market_data
        self.stats = stats
        self.journal = journal
        self.rules = rules
        self.debug = False
        self._reports = reports
        self._clock = clock
        self.run = run  # in child ids: they never repeat across runs
        self.guard: Callable[[], None] | None = None
        """Set in a cluster: called before each LP event is worked, so a
        gateway that was stalled past its leases lets their sessions (and
        their clients' orders) go before it acts on anything."""
        self.adapters: dict[str, LpAdapter] = {}
        self.routings: dict[str, Routing] = {}
        self.children: dict[str, str] = {}
        self.abandoned: dict[str, tuple[ChildOrder, set[str]]] = {}
        # of those, the ones their LP is not asked about again at a restart
        # (it said what became of them, or their trading day is over)
        self.settled: set[str] = set()
        # journaled as they end (and in checkpoints), so a restart keeps
        # watching the latest ones
        self.ended: Recent[str, EndedChild] = Recent(_MAX_ENDED)
        # those the LP filled in full, apart: as many again, so that they do
        # not push the canceled and rejected ones out sooner
        self.filled_in_full: Recent[str, EndedChild] = Recent(_MAX_ENDED)
        # child and ExecID of each LP Trade Cancel and Correct booked in
        # this run -> whether it booked a fill (a correction's, which a later
        # cancel or correction may name)
        self._busted: Recent[str, bool] = Recent(_MAX_ENDED)
        self.down: frozenset[str] = frozenset()
        self.retry_empty = RETRY_EMPTY
        # order id -> when a quote may route it again, after an empty routing
        # (the quote that made it marketable comes again and again while the
        # LP cannot take it: each try is a routing and two journaled states)
        self.paused: dict[str, tuple[float, int]] = {}
        # LPs with an adapter that the rules in force do not route to, and
        # per symbol the merged book without their quotes (see snapshot)
        self._usable = BooksWithout()  # the books without the LPs the rules route nothing to
        self._unusable_of: Rules | None = None
        self._stale_sweep: asyncio.Task[None] | None = None
        self._marked_at = float("-inf")
        self._child_seq = 0
        self.routing_seq = 0
        # per timeout length (one, unless a reload changed it), the routings'
        # (deadline, parent order id, routing serial) in the order they were
        # watched, which is their deadlines' order
        self._deadlines: dict[float, deque[tuple[float, str, int]]] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_armed = 0.0  # when the timer above fires
        self._tasks: set[asyncio.Task[None]] = set()
        self._lp_handlers: dict[type, Callable[[Any, float], None]] = {
            Quote: self._on_quote,
            ChildFill: self._on_fill,
            ChildReject: self._on_child_end,
            ChildCanceled: self._on_child_end,
            LpStatus: self._on_lp_status,
            ChildAck: self._on_ack,
            ChildBust: self._on_bust,
            ChildCorrection: self._on_correction,
        }

    def attach(self, adapters: Mapping[str, LpAdapter]) -> None:
        """The LP adapters, built with :meth:`on_lp_event` as their sink;
        each is down until it says it is up."""
        self.adapters = dict(adapters)
        self.down = frozenset(self.adapters)
        self._unusable_of = None

    async def start(
        self,
        recovered: Mapping[str, Sequence[RecoveredOrder]],
        orphans: Sequence[str],
        ended: Mapping[str, Sequence[tuple[EndedChild, bool]]] | None = None,
    ) -> None:
        """Hand each adapter the children an earlier run left with it
        (``recovered``: per LP, child and open lots) and those it ended that
        are still watched (``ended``: per LP, with whether it filled them in
        full), connect the adapters,
        time the routings restored from now on, settle the ``orphans``
        (orders out at LPs with no child left to wait for) and start
        dropping stale quotes."""
        loop = asyncio.get_running_loop()
        for lp, children in recovered.items():
            adapter = self.adapters.get(lp)
            if adapter is not None:
                try:
                    adapter.recover(children)
                except Exception:
                    # its children are timed out and given up like any
                    _log.exception("lp_adapter_failed", lp=lp, call="recover")
                continue
            _log.error("recovered_children_of_unknown_lp", lp=lp, children=len(children))
            for child, open_lots, _ in children:
                if child.child_id in self.abandoned:
                    # no routing waits for it, and nothing was learned of it
                    continue
                reason = f"{lp} is no longer configured"
                loop.call_soon(self.on_lp_event, ChildCanceled(child.child_id, open_lots, reason))
        # to the adapters that keep their own watch for a fill after the end
        for lp, watched in (ended or {}).items():
            adapter = self.adapters.get(lp)
            if adapter is not None:
                try:
                    adapter.recover_ended(watched)
                except Exception:
                    _log.exception("lp_adapter_failed", lp=lp, call="recover_ended")
        outcomes = await asyncio.gather(
            *(a.connect() for a in self.adapters.values()), return_exceptions=True
        )
        for name, outcome in zip(self.adapters, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _log.error("lp_adapter_failed", lp=name, call="connect", error=repr(outcome))
        self.down = frozenset(name for name, a in self.adapters.items() if not a.up)
        now = self._clock()
        # what came back from an earlier run is timed from now on
        for routing in self.routings.values():
            self.watch(routing, now)
        for order_id in orphans:
            self._settle_orphan(order_id, now)
        self._sweep_stale_quotes()

    async def stop(self) -> None:
        """Stop the timers and tasks, disconnect the adapters."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(a.disconnect() for a in self.adapters.values()))

    def _settle_orphan(self, order_id: str, now: float) -> None:
        """An order recovered as out at LPs with no child to wait for: its
        routed lots come back to it."""
        order = self.matcher.find(order_id, "", "")
        if order is None or not order.routing_qty:
            return
        result = self.matcher.on_route_done(
            order_id, order.routing_qty, "gateway restarted", self.snapshot(order.symbol, now)
        )
        self.publish(result, now, order_id)

    def drop_order(self, order_id: str) -> int:
        """The order is worked here no more (its client is served by
        another gateway of a cluster): its routing ends without a word to
        the matcher, its children are canceled at their LPs and given up
        (a fill an LP reports for them is booked to the house).  Returns
        how many children it had."""
        routing = self.routings.pop(order_id, None)
        if routing is None:
            return 0
        symbol = routing.need.symbol
        for child_id, child in routing.children.items():
            self.children.pop(child_id, None)
            if child.open:
                self.ledger.reserve(child.lp, symbol, -child.open)
            self._abandon(child_id, child)
            adapter = self.adapters.get(child.lp)
            if adapter is not None and child.lp not in self.down:
                try:
                    adapter.cancel(child_id)
                except Exception:
                    _log.exception("lp_adapter_failed", lp=child.lp, call="cancel")
        return len(routing.children)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("task_failed", task=task.get_name(), error=repr(task.exception()))

    def _sweep_stale_quotes(self) -> None:
        """Start the sweep of stale quotes, in place of the one running:
        at start, and when a reload changes the quote age (a shorter one
        would otherwise act only once half the longer one had passed)."""
        if self._stale_sweep is not None:
            self._stale_sweep.cancel()
        task = self._loop().create_task(self._drop_stale_quotes(), name="order-flow:stale-quotes")
        self._stale_sweep = task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _drop_stale_quotes(self) -> None:
        """Quotes older than ``routing.quote_max_age_ms`` leave the book."""
        while True:
            max_age = self.rules.config.routing.quote_max_age_ms / 1000
            await asyncio.sleep(max_age / 2)
            self._drop_stale(self._clock(), max_age)

    def _drop_stale(self, now: float, max_age: float) -> None:
        for lp, symbol in self.book.drop_stale(now, max_age):
            _log.warning("stale_quote_dropped", lp=lp, symbol=symbol)
            self.market_data.on_book_update(symbol)

    def snapshot(self, symbol: str, now: float) -> BookSnapshot | None:
        """The merged book of ``symbol`` as orders are worked on: quotes
        older than ``routing.quote_max_age_ms`` leave the book first (the
        periodic sweep may not have reached them yet), and the quotes of
        LPs the rules in force route nothing to (disabled by a reload)
        are left out of it, so that they make no order marketable, count
        towards no fill-or-kill order and hold back no internal cross.
        Clients' market data leaves the same LPs out (they are told to the
        market data service as the rules change); valuations read the
        whole book."""
        snapshot = self.book.snapshot(symbol)
        if snapshot is None:
            return None
        max_age = self.rules.config.routing.quote_max_age_ms / 1000
        if snapshot.oldest < now - max_age:
            self._drop_stale(now, max_age)
            snapshot = self.book.snapshot(symbol)
            if snapshot is None:
                return None
        if self._unusable_of is not self.rules:
            self._rules_changed()
        return self._usable.of(snapshot)

    def apply_rules(self, rules: Rules) -> None:
        """Put ``rules`` in force: the LPs they take out of routing, or bring
        back, leave or enter the book orders are worked on and clients'
        market data at once (their subscriptions are refreshed), not at the
        next quote or order."""
        age = self.rules.config.routing.quote_max_age_ms
        self.rules = rules
        self.paused.clear()  # limits may have changed: any order may go now
        self._rules_changed()
        sweep = self._stale_sweep
        if sweep is not None and not sweep.done() and rules.config.routing.quote_max_age_ms != age:
            self._sweep_stale_quotes()
            # the quotes held already past a shorter age leave now, not at its first sweep
            self._drop_stale(self._clock(), rules.config.routing.quote_max_age_ms / 1000)

    def _rules_changed(self) -> None:
        """The rules in force (or the adapters) changed: which LPs are
        unusable is worked out again, and clients' market data told."""
        rules = self.rules
        self._unusable_of = rules
        unusable = frozenset(self.adapters) - rules.limits.enabled_lps
        if unusable != self._usable.lps:
            self._usable.leave_out(unusable)
            self.market_data.hide_lps(unusable)

    def fok_lots(self, order: NewOrder, book: BookSnapshot | None, now: float) -> int | None:
        """How many lots of the fill-or-kill ``order`` the LPs can take now
        within its limit, as its routing would place them (``book``: the
        merged book as :meth:`snapshot` gives it).  LPs at their hard limit,
        down or disabled, and the cap on child orders, count as the routing
        policy counts them.  None for an order the matcher refuses anyway
        (unknown symbol, no quantity)."""
        instrument = self.instruments.get(order.symbol)
        if instrument is None or order.qty <= 0:
            return None
        if book is None:
            return 0
        rules = self.rules
        request = RouteRequest(
            "",
            order.client,
            order.symbol,
            order.side,
            order.qty,
            order.price if order.ord_type is LIMIT else None,
            instrument,
        )
        policy = rules.policies[rules.policy_for(order.client, order.cl_ord_id)]
        plan = policy.route(request, book, self.exposure(now), rules.limits, self.down)
        return plan.allocated

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def exposure(self, now: float) -> ExposureSnapshot:
        """The exposure snapshot routing and risk read: positions and child
        orders in flight as they are now, valued at mids at most
        ``_EXPOSURE_MARK_INTERVAL`` seconds old."""
        marked_at = self._marked_at
        # (a clock set back values anew at once, not after the step)
        if now - marked_at >= _EXPOSURE_MARK_INTERVAL or now < marked_at:
            self.ledger.mark(self.book)
            self._marked_at = now
        return self.ledger.current()

    def publish(self, result: Result, now: float, touched: str = "") -> None:
        """Journal and report what a matcher call produced, and route what
        it left to route; ``touched`` names an order the call changed
        without reporting it."""
        self._reports.publish(result, now, touched)
        for need in result.routes:
            self.route(need, 0, set(), now)

    # -- routing ---------------------------------------------------------------------

    def route(
        self,
        need: RouteNeed,
        attempt: int,
        excluded: set[str],
        now: float,
        rules: Rules | None = None,
        policy: str = "",
        reasons: Sequence[str] = (),
    ) -> None:
        """Route ``need``: a first routing takes the rules in force and
        chooses its policy by the ClOrdID the order was entered with (a
        replace does not move it to another); a re-route (``attempt`` > 0)
        follows the rules and the policy of the routing it continues, and
        keeps its ``reasons`` (why the LPs before did not take the lots),
        which the client is told when nothing fills them."""
        if rules is None:
            rules = self.rules
            policy = rules.policy_for(need.client, need.entry_cl_ord_id or need.cl_ord_id)
            started = self._reports.started.get(need.order_id)
            if started is not None and not started[1]:
                started[1] = policy
                self.stats.policy(policy).orders += 1
        policy_stats = self.stats.policy(policy)
        policy_stats.routings += 1
        policy_stats.routed_lots += need.qty
        instrument = self.instruments[need.symbol]
        snapshot = self.snapshot(need.symbol, now)
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
            avoid = frozenset(excluded | self.down) if excluded else self.down
            limits = rules.limits
            if rules is not self.rules:
                # a re-route under the rules its routing began with: the
                # LPs' limits are those in force now all the same (a
                # reload that lowered a hard limit, in an emergency, holds
                # for what is re-routed after it too)
                limits = RoutingLimits(self.rules.limits.lps, limits.max_child_orders)
            exposure = self.exposure(now)
            plan = rules.policies[policy].route(request, snapshot, exposure, limits, avoid)
            if self.debug:
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
        paused = self.paused
        if plan is None or not plan.children:
            tif = need.tif
            resting = tif is DAY or tif is GTC
            best = None
            if attempt == 0 and snapshot is not None and need.price is not None and resting:
                best = snapshot.best_ask if need.side is BUY else snapshot.best_bid
            if best is not None:
                # a limit that rests, marketable at quotes its LPs would not
                # take: quotes at that price or worse route it again no
                # sooner than retry_empty after
                if len(paused) >= _MAX_PAUSED:
                    paused = {o: w for o, w in paused.items() if w[0] > now}
                    if len(paused) >= _MAX_PAUSED:
                        paused = {}  # (all tried again at their next quote)
                    self.paused = paused
                paused[need.order_id] = (now + self.retry_empty, best.price)
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
            reason = _told([*reasons, reason])
            self.publish(
                self.matcher.on_route_done(
                    need.order_id, need.qty, reason, self.snapshot(need.symbol, now)
                ),
                now,
                need.order_id,
            )
            return
        if paused:
            paused.pop(need.order_id, None)
        self.routing_seq += 1
        routing = Routing(
            need, instrument, attempt, self.routing_seq, rules, policy, excluded=excluded
        )
        routing.returned = plan.remainder
        routing.reasons.extend(reasons)
        if plan.reason:
            routing.reasons.append(plan.reason)
        self.routings[need.order_id] = routing
        self.watch(routing, now)
        # adapters answer on a later loop iteration, never inside send()
        order_id = need.order_id
        symbol = need.symbol
        side = need.side
        journal = self.journal
        sends = []
        for allocation in plan.children:
            lp = allocation.lp
            qty = allocation.qty
            self._child_seq += 1
            child_id = f"{order_id}.{self.run}C{self._child_seq}"
            child = ChildOrder(child_id, order_id, lp, symbol, side, qty, allocation.price)
            routing.children[child_id] = Child(child, qty, now)
            self.children[child_id] = order_id
            self.stats.lp(lp).children += 1
            self.ledger.reserve(lp, symbol, qty)
            if journal is not None:
                journal.add(Sent(child))
            sends.append(child)
        next_turn = False
        for child in sends:
            adapter = self.adapters[child.lp]
            try:
                adapter.send(child)
            except Exception as exc:
                # an adapter's bug is that LP's reject, answered like one
                _log.exception("lp_adapter_failed", lp=child.lp, call="send")
                reject = ChildReject(child.child_id, f"LP adapter error: {exc!r}")
                self._loop().call_soon(self.on_lp_event, reject)
                next_turn = True
            else:
                next_turn = next_turn or adapter.answers_next_turn
        if next_turn:
            # the reports written so far leave with the answers, in one write
            self._reports.outbox.write_after_next_turn()

    # -- child-order timeouts ---------------------------------------------------------
    #
    # One timer for all routings: each routing (and each cancel sent after a
    # timeout) adds a deadline to the FIFO queue of its timeout's length; the
    # timer fires for the oldest deadline, at most every _TIMEOUT_RESOLUTION
    # seconds, and skips the routings that have finished meanwhile.  A queue,
    # not a heap: with one length deadlines come in order, and appending and
    # taking from the front cost the same at any depth (tens of thousands
    # watched at once at full rate).  Should the clock step back, a deadline
    # watched after it waits at most that step behind the ones before it.

    def watch(self, routing: Routing, now: float) -> None:
        timeout = routing.rules.config.routing.child_timeout_ms / 1000
        queue = self._deadlines.get(timeout)
        new_length = queue is None
        if queue is None:
            queue = self._deadlines[timeout] = deque()
        deadline = now + timeout
        queue.append((deadline, routing.need.order_id, routing.serial))
        timer = self._deadline_timer
        if timer is None:
            self._arm_deadlines(now)
        elif new_length and max(deadline, now + _TIMEOUT_RESOLUTION) < self._deadline_armed:
            # a timeout length shorter than the one the timer is armed for
            # (a reload shortened it): due before the timer fires
            timer.cancel()
            self._arm_deadlines(now)

    def _arm_deadlines(self, now: float) -> None:
        first = min((queue[0][0] for queue in self._deadlines.values() if queue), default=None)
        if first is None:
            return
        delay = max(first - now, _TIMEOUT_RESOLUTION)
        self._deadline_armed = now + delay
        self._deadline_timer = self._loop().call_later(delay, self._on_deadlines)

    def _on_deadlines(self) -> None:
        self._deadline_timer = None
        now = self._clock()
        for queue in list(self._deadlines.values()):
            while queue and queue[0][0] <= now:
                _deadline, parent, serial = queue.popleft()
                routing = self.routings.get(parent)
                if routing is not None and routing.serial == serial:
                    # may watch again (a cancel sent, a routing begun),
                    # which arms the timer
                    self._on_route_timeout(routing, now)
        for timeout, queue in list(self._deadlines.items()):
            if not queue:
                del self._deadlines[timeout]
        if self._deadlines and self._deadline_timer is None:
            self._arm_deadlines(now)

    def on_lp_event(self, event: LpEvent) -> None:
        """The adapters' sink: called on the event loop for every LP event.
        An event the flow cannot take is logged and dropped: it must not
        break the adapter that delivered it."""
        try:
            guard = self.guard
            if guard is not None:
                guard()
            self._lp_handlers[type(event)](event, self._clock())
        except Exception:
            _log.exception("lp_event_failed", lp_event=repr(event))

    def _on_quote(self, quote: Quote, now: float) -> None:
        self.book.update(quote)
        symbol = quote.symbol
        if not self.ledger.is_marked(symbol):
            # a symbol quoted for the first time (or again after all its LPs
            # were down) is valued at once, not at the next mark
            self._marked_at = float("-inf")
        if self._unusable_of is not self.rules:
            self._rules_changed()
        if quote.lp in self._usable.lps:
            return  # neither the book orders are worked on nor what clients see changed
        self.market_data.on_book_update(symbol)
        # the merged book is built when asked for (an order to route, a
        # refresh owed), once per change, not for every quote of a burst
        if self.matcher.rests(symbol):
            snapshot = self.snapshot(symbol, now)
            if snapshot is not None:
                paused = self.paused
                self.publish(self.matcher.on_market(symbol, snapshot, paused, now), now)

    def _on_lp_status(self, status: LpStatus, now: float) -> None:
        _log.info("lp_status", lp=status.lp, up=status.up, reason=status.reason)
        self.paused.clear()
        if status.up:
            self.down = self.down - {status.lp}
            return
        self.down = self.down | {status.lp}
        for symbol in self.book.remove_lp(status.lp):
            self.market_data.on_book_update(symbol)

    def _on_ack(self, ack: ChildAck, now: float) -> None:
        parent = self.children.get(ack.child_id)
        routing = self.routings.get(parent) if parent is not None else None
        if routing is not None:
            self._answered(routing.children[ack.child_id], now)

    def _answered(self, child: Child, now: float) -> None:
        if not child.answered:
            child.answered = True
            self.stats.lp(child.lp).ack_latency.observe(now - child.sent_at)

    def _on_route_timeout(self, routing: Routing, now: float) -> None:
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
            if self.routings.get(parent) is routing:
                self.watch(routing, now)
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
        parent = self.children.get(fill.child_id)
        routing = self.routings.get(parent) if parent is not None else None
        if parent is None or routing is None:
            self._on_late_fill(fill)
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
                order_id=parent,
                child_id=fill.child_id,
                exec_id=fill.exec_id,
                qty=qty,
                beyond=qty - child.open,
                price=fill.price,
            )
            self._book_fill(fill, child.lp, HOUSE, need.symbol, need.side, qty - child.open)
            qty = child.open
        if qty:
            child.open -= qty
            self.ledger.reserve(child.lp, need.symbol, -qty)
            self.ledger.apply_fill(child.lp, need.client, need.symbol, need.side, qty, fill.price)
            result = self.matcher.on_fill(parent, qty, fill.price, child.lp)
            self.publish(result, now)
            client_exec_id = ""
            if self._reports.copying:
                # the house's side of the fill names the client's ExecutionReport of it
                for ex in result.executions:
                    if ex.order_id == parent and ex.last_qty:
                        client_exec_id = ex.exec_id
                        break
            self._journal_fill(
                fill, child.lp, need.client, need.symbol, need.side, qty, client_exec_id
            )
        if fill.leaves == 0:
            lp_stats.filled += 1
            # a fill the LP reports for it after this one is beyond it
            self._watch_ended(fill.child_id, child)
            # lots the LP ends without filling come back to the order
            self._child_done(parent, routing, fill.child_id, child.open, "", now)

    def _on_late_fill(self, fill: ChildFill) -> None:
        """A fill for a child no routing waits for: one given up on (after
        its timeouts, or the drop of its LP's link), one its LP canceled or
        rejected and fills all the same, or one the LP had filled in full
        already (an overfill: it executed more than it was asked, or reports
        a fill again under another ExecID).  The client was told those lots
        did not fill, or has all it ordered: the house holds them, at the LP
        that filled them."""
        child_id = fill.child_id
        event = "late_fill_after_timeout"
        beyond = 0
        abandoned = self.abandoned.get(child_id)
        if abandoned is not None:
            child_order, exec_ids = abandoned
            if fill.exec_id in exec_ids:
                return
            exec_ids.add(fill.exec_id)
        else:
            where = self.ended
            ended = where.get(child_id)
            if ended is None:
                where = self.filled_in_full
                ended = where.get(child_id)
            if ended is None:
                _log.warning("fill_for_unknown_child", child_id=child_id, exec_id=fill.exec_id)
                return
            if ended.counted(fill.exec_id):
                return
            where.put(child_id, ended.with_fill(fill.exec_id, fill.qty))
            child_order = ended.order
            if ended.filled < child_order.qty:
                event = "late_fill_after_end"
                beyond = max(0, ended.filled + fill.qty - child_order.qty)
            else:
                # every lot of the child was filled: all of this is beyond it
                event = "lp_overfill"
                beyond = fill.qty
        lp = child_order.lp
        self._book_fill(fill, lp, HOUSE, child_order.symbol, child_order.side)
        extra: dict[str, Any] = {"beyond": beyond} if beyond else {}
        _log.error(
            event,
            lp=lp,
            order_id=child_order.parent_id,
            child_id=child_id,
            exec_id=fill.exec_id,
            qty=fill.qty,
            price=fill.price,
            **extra,
        )
        if abandoned is not None and fill.leaves == 0:
            self.settle(child_id, "filled in full by its LP", answered=True)

    def _on_bust(self, bust: ChildBust, now: float) -> None:
        """An LP's Trade Cancel of a fill booked (or of a correction's
        booking): the reversal is booked at the LP to the house (the
        opposite side, the cancel's lots, at the price the fill was booked
        at), so the LP's position is what the LP says it is, and the
        client's fill, which stands, is the house's to cover.  Journaled as
        any fill booked to the house, so a restart and the drop copy have
        it; it moves no last price."""
        if self._refused("bust", bust.lp, bust.child_id, bust.exec_id, bust.ref_exec_id):
            return
        self._busted.put(f"{bust.child_id}{EXEC_ID_SEP}{bust.exec_id}", False)
        reversal = ChildFill(bust.child_id, bust.exec_id, bust.qty, bust.price, 0)
        side = bust.side.opposite
        self._book_fill(reversal, bust.lp, HOUSE, bust.symbol, side, busts=bust.ref_exec_id)
        _log.error(
            "lp_trade_bust_booked",
            lp=bust.lp,
            child_id=bust.child_id,
            exec_id=bust.exec_id,
            exec_ref_id=bust.ref_exec_id,
            symbol=bust.symbol,
            side=side.name.lower(),
            qty=bust.qty,
            price=bust.price,
            account=HOUSE,
        )

    def _on_correction(self, correction: ChildCorrection, now: float) -> None:
        """An LP's Trade Correct of a fill booked (or of a correction's
        booking): booked at the LP to the house as the reversal of the
        lots of it still standing (the opposite side, at the price they were
        booked at, under the correction's ExecID and :data:`REVERSAL_SUFFIX`)
        and the corrected fill (the fill's side, the correction's lots and
        price, under its ExecID), so the LP's position is what the LP says
        it is; the client's fill stands, as for a bust.  Both journaled as
        any fill booked to the house, so a restart and the drop copy have
        them; neither moves the symbol's last fill price."""
        c = correction
        if self._refused("correction", c.lp, c.child_id, c.exec_id, c.ref_exec_id):
            return
        self._busted.put(f"{c.child_id}{EXEC_ID_SEP}{c.exec_id}", True)
        reversal_id = f"{c.exec_id}{REVERSAL_SUFFIX}"
        reversal = ChildFill(c.child_id, reversal_id, c.reversed_qty, c.reversed_price, 0)
        opposite = c.side.opposite
        self._book_fill(reversal, c.lp, HOUSE, c.symbol, opposite, busts=c.ref_exec_id)
        corrected = ChildFill(c.child_id, c.exec_id, c.qty, c.price, 0)
        self._book_fill(corrected, c.lp, HOUSE, c.symbol, c.side, corrects=c.ref_exec_id)
        _log.error(
            "lp_trade_correction_booked",
            lp=c.lp,
            child_id=c.child_id,
            exec_id=c.exec_id,
            exec_ref_id=c.ref_exec_id,
            symbol=c.symbol,
            reversal_exec_id=reversal_id,
            reversed_side=opposite.name.lower(),
            reversed_qty=c.reversed_qty,
            reversed_price=c.reversed_price,
            side=c.side.name.lower(),
            qty=c.qty,
            price=c.price,
            account=HOUSE,
        )

    def _refused(self, kind: str, lp: str, child_id: str, exec_id: str, ref: str) -> bool:
        """Whether an LP's Trade Cancel or Correct (``kind``: "bust" or
        "correction") cannot be booked here, said as
        ``lp_trade_<kind>_refused`` (a warning when it was booked before)."""
        refused = self._restatement_refused(child_id, exec_id, ref)
        if not refused:
            return False
        repeat = refused == _BUST_BOOKED
        (_log.warning if repeat else _log.error)(
            f"lp_trade_{kind}_refused",
            lp=lp,
            child_id=child_id,
            exec_id=exec_id,
            exec_ref_id=ref,
            reason=refused,
            hint="booked before: nothing more to do"
            if repeat
            else "not applied: the fill stands in the gateway's books until the desk acts",
        )
        return True

    def _restatement_refused(self, child_id: str, exec_id: str, ref: str) -> str:
        """Why a Trade Cancel or Correct cannot be booked here ("" when it
        can): the gateway restates only a fill it booked for the child (or
        the fill a correction booked, in this run), under an ExecID of no
        fill, once."""
        if f"{child_id}{EXEC_ID_SEP}{exec_id}" in self._busted:
            return _BUST_BOOKED
        booked = self._booked_exec_ids(child_id)
        if booked is None or not (
            booked(ref) or self._busted.get(f"{child_id}{EXEC_ID_SEP}{ref}") is True
        ):
            return "the gateway booked no fill under its ExecRefID for the child"
        if booked(exec_id):
            return "its ExecID is that of a fill booked"
        return ""

    def _booked_exec_ids(self, child_id: str) -> Callable[[str], bool] | None:
        """Whether an ExecID is of a fill booked for the child, as the
        routing knows it (open, ended, filled in full or given up on); None
        for a child it does not know (any more)."""
        parent = self.children.get(child_id)
        routing = self.routings.get(parent) if parent is not None else None
        if routing is not None:
            seen = routing.children[child_id].exec_ids or set()
            return seen.__contains__
        for where in (self.filled_in_full, self.ended):
            ended = where.get(child_id)
            if ended is not None:
                return ended.counted
        abandoned = self.abandoned.get(child_id)
        return None if abandoned is None else abandoned[1].__contains__

    def _book_fill(
        self,
        fill: ChildFill,
        lp: str,
        account: str,
        symbol: str,
        side: Side,
        qty: int | None = None,
        busts: str = "",
        corrects: str = "",
    ) -> None:
        """Apply an LP fill (``qty`` lots of it, all by default) booked to
        the house to the exposure ledger, and journal it (``busts`` and
        ``corrects``: as :meth:`_journal_fill` takes them)."""
        lots = fill.qty if qty is None else qty
        traded = not (busts or corrects)
        self.ledger.apply_fill(lp, account, symbol, side, lots, fill.price, traded)
        self._journal_fill(fill, lp, account, symbol, side, lots, "", busts, corrects)

    def _journal_fill(
        self,
        fill: ChildFill,
        lp: str,
        account: str,
        symbol: str,
        side: Side,
        lots: int,
        client_exec_id: str,
        busts: str = "",
        corrects: str = "",
    ) -> None:
        """Journal ``lots`` of an LP fill booked to ``account``: for a
        restart, and for the drop copy's TradeCaptureReport of them
        (``client_exec_id``: the ExecID of the client's ExecutionReport of
        the same lots, "" for the house's; ``busts``: the ExecID of the
        fill this booking reverses, the LP having canceled or corrected it;
        ``corrects``: the ExecID of what the LP corrected, for the booking
        of the corrected fill)."""
        if self.journal is not None:
            self.journal.add(
                Filled(
                    fill.child_id,
                    fill.exec_id,
                    lp,
                    account,
                    symbol,
                    side,
                    lots,
                    fill.price,
                    self._clock(),
                    client_exec_id,
                    busts,
                    corrects,
                )
            )

    def _on_child_end(self, event: ChildReject | ChildCanceled, now: float) -> None:
        parent = self.children.get(event.child_id)
        routing = self.routings.get(parent) if parent is not None else None
        if parent is None or routing is None:
            if event.child_id in self.abandoned and event.reason != DISCONNECTED_REASON:
                # the end of a child given up on, as its LP told it (asked
                # after a restart, or answering late)
                self.settle(event.child_id, f"ended by its LP: {event.reason}", answered=True)
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
        if event.child_id not in self.abandoned:
            # an LP that fills it all the same is booked to the house too
            self._watch_ended(event.child_id, child)
        self._child_done(parent, routing, event.child_id, child.open, event.reason, now)

    def _watch_ended(self, child_id: str, child: Child) -> None:
        """The LP ended the child (canceled, rejected, or filled it in
        full): a fill it reports for it afterwards is booked to the house,
        once per ExecID (``child.exec_ids`` holds those already booked)."""
        # (an object the cyclic collector does not track: every child
        # filled in full comes here)
        order = child.order
        record = EndedChild(order, order.qty - child.open, joined_ids(child.exec_ids))
        (self.ended if child.open else self.filled_in_full).put(child_id, record)

    def _abandon(self, child_id: str, child: Child) -> None:
        """Give up on a child the LP answers no more: a fill it reports later
        is still applied (once) to the LP's exposure, booked to the house."""
        abandoned = self.abandoned
        abandoned[child_id] = (child.order, child.exec_ids or set())
        if self.journal is not None:
            self.journal.add(Abandoned(child_id))
        while len(abandoned) > _MAX_ABANDONED:
            oldest = next(iter(abandoned))
            _log.error("abandoned_child_forgotten", child_id=oldest, lp=abandoned[oldest][0].lp)
            del abandoned[oldest]
            self.settled.discard(oldest)

    def settle(self, child_id: str, why: str, answered: bool, journaled: bool = True) -> None:
        """A child given up on whose LP is not asked about it again at a
        restart: it said what became of it (``answered``), or the child's
        trading day is over (then the LP's statement says what became of
        it).  A fill the LP reports for it until the next restart is still
        booked to the house; after a restart its LP's adapter no longer
        knows it (``lp_report_for_unknown_child``), and the back office's
        reconciliation shows such a fill as ``missing_in_house``.  Journaled
        as its end (``journaled``: not while the journal is being read back,
        the checkpoint after it has it), and named."""
        abandoned = self.abandoned.get(child_id)
        if abandoned is None or child_id in self.settled:
            return
        self.settled.add(child_id)
        if journaled and self.journal is not None:
            self.journal.add(Ended(child_id))
        (_log.info if answered else _log.warning)(
            "abandoned_child_settled",
            lp=abandoned[0].lp,
            child_id=child_id,
            reason=why,
            hint="not asked about again at a restart; a late fill before then is booked to the "
            "house, one after it is reconciled against the LP's statement",
        )

    def end_day(self) -> None:
        """The trading day ended: the children given up on that their LPs
        did not say the end of are asked about no more (an LP's orders of
        the day are over with it)."""
        for child_id in [c for c in self.abandoned if c not in self.settled]:
            self.settle(child_id, "its trading day is over", answered=False)

    def _child_done(
        self, parent: str, routing: Routing, child_id: str, returned: int, reason: str, now: float
    ) -> None:
        child = routing.children.get(child_id)
        if child is not None and child.open:
            self.ledger.reserve(child.lp, routing.need.symbol, -child.open)
        routing.children.pop(child_id, None)
        self.children.pop(child_id, None)
        if self.journal is not None and child_id not in self.abandoned:
            self.journal.add(Ended(child_id))
        routing.returned += returned
        if reason:
            routing.reasons.append(reason)
        if routing.children:
            return
        del self.routings[parent]
        need = routing.need
        unfilled = routing.returned
        if (
            unfilled
            and routing.attempt < routing.rules.config.routing.max_reroutes
            and not self.matcher.routes_no_more(parent)
        ):
            again = need.with_qty(unfilled)
            self.route(
                again,
                routing.attempt + 1,
                routing.excluded,
                now,
                routing.rules,
                routing.policy,
                routing.reasons,
            )
            return
        reasons = routing.reasons
        reason_text = _told(reasons) if reasons else "routed"
        self.publish(
            self.matcher.on_route_done(
                parent, unfilled, reason_text, self.snapshot(need.symbol, now)
            ),
            now,
            parent,
        )
