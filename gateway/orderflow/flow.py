"""Order flow: FIX order entry -> matcher -> router -> LP adapters and back.

:class:`OrderFlow` is the ``orders`` application profile.  It is handed the
pieces of state the architecture assigns to the order path, all written
from the event loop only -- the matcher (orders and client books), the
aggregated LP book (from adapter quotes), the exposure ledger (from fills
only), the journal -- and its three parts, each in a module of its own:

* :mod:`~gateway.orderflow.entry`: a client's requests, decoded, checked
  against its limits and handed to the matcher;
* :mod:`~gateway.orderflow.routing`: children sent to LPs, their deadlines,
  and every LP event (quotes, acks, fills booked, rejects, cancels);
* :mod:`~gateway.orderflow.publish`: what clients are told, journaled and
  handed to the outbox.

The flow itself keeps the trading day, the journal's checkpoints and the
rules in force.  Everything is built by the composition root
(:mod:`gateway.daemon`); the flow builds nothing.  Time comes from the one
clock it is given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Final

import msgspec
import structlog

from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.orderflow.entry import OrderEntry
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import (
    ClientState,
    DayEndMoved,
    DayEnds,
    Dropped,
    Entry,
    Grid,
    OrderState,
    RetainFinished,
)
from gateway.orderflow.margin_watch import MarginWatch
from gateway.orderflow.market_data import MarketDataService
from gateway.orderflow.publish import Reports
from gateway.orderflow.recovery import Recovery
from gateway.orderflow.restore import (
    Restored,
    complete_stores,
    expiring,
    grid_of,
    restore,
    sliced_checkpoint_entries,
)
from gateway.orderflow.routing import ChildRouting
from gateway.orderflow.rules import Rules
from gateway.orderflow.stats import FlowStats
from gateway.storage.batch_file import BackgroundReplace, BatchFileError
from lp_adapters.base import LpAdapter
from matcher.engine import Matcher
from matcher.orders import Order
from risk.accounts import Accounts
from router.book import AggregatedBook
from router.exposure import ExposureLedger, ExposureSnapshot
from router.members import DAY
from router.model import Instrument

CHECKPOINT_TAIL_SLICE = 256 * 1024
"""Bytes of the journal's tail copied per loop turn once a checkpoint's
state is written (a fraction of a millisecond)."""

CHECKPOINT_SLICE = 8 * 1024
"""Bytes of a checkpoint's state encoded and written per loop turn (some
130 orders: about half a millisecond compiled, on a busy machine)."""

CHECKPOINT_RETRY = 30.0
"""Seconds after a failed checkpoint before another is tried."""

CHECKPOINT_DEADLINE = 600.0
"""Seconds a checkpoint may take before it is given up and counted as
failed (a state of millions of orders takes tens)."""

_log = structlog.get_logger("gateway.orderflow.flow")
_encode_state = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(ClientState).decode
_decode_order = msgspec.msgpack.Decoder(OrderState).decode

GATEWAY_FAILED: Final = "its gateway failed"
"""Text of the report of what an order had at LPs through a gateway of a
cluster that failed, given back unfilled (an IOC's, FOK's or market
order's end)."""


RELEASED_PER_TURN = 1000
"""Entries of the day's forgotten orders freed per loop turn after a day end
(well under a millisecond: 1,500 took up to 1.08 ms compiled on a busy
machine; see bench/day_end_bench.py)."""


def next_day_end(now: float, time_of_day: str) -> float:
    """The first moment after ``now`` (epoch seconds) at which the UTC clock
    reads ``time_of_day`` (``HH:MM``)."""
    hours, minutes = map(int, time_of_day.split(":"))
    offset = hours * 3600 + minutes * 60
    midnight = now - now % 86400
    at = midnight + offset
    return at if at > now else at + 86400


class OrderFlow:
    """The ``orders`` application profile and everything behind it."""

    def __init__(
        self,
        rules: Rules,
        reports: Reports,
        routing: ChildRouting,
        entry: OrderEntry,
        journal: OrderJournal | None,
        clock: Callable[[], float],
        watch: MarginWatch,
    ) -> None:
        self.rules = rules
        self.watch = watch
        self.reports = reports
        self.routing = routing
        self.entry = entry
        self.journal = journal
        self._clock = clock
        self._flush_scheduled = False
        self._releasing = False
        self._background: BackgroundReplace | None = None
        self._background_started = 0.0
        self._background_retry_at = 0.0
        self._background_deadline: asyncio.TimerHandle | None = None
        self.checkpoint_deadline = CHECKPOINT_DEADLINE
        """Seconds a checkpoint may take (:data:`CHECKPOINT_DEADLINE`)."""
        self.checkpoint_state: Callable[[int], Iterator[Entry]] = self._state
        """The entries a checkpoint of run ``run`` writes: the state, read
        as the slices are written (:func:`sliced_checkpoint_entries`)."""
        self._slices = 0
        self._slowest_slice = 0.0
        self._checkpointed_size = 0
        """The journal's size when the last checkpoint replaced it."""
        self._day_timer: asyncio.TimerHandle | None = None
        self._restored = Restored()
        self.parked: dict[str, list[Order]] = {}
        """Per client, its open orders out of the matcher: the client is
        served by another gateway of a cluster (or not yet claimed here)."""
        self._parked_day: dict[str, float] = {}
        # per client parked: when the trading day its orders were parked in ends
        self._parked_over: set[str] = set()
        # parked DAY orders whose day had ended already (out at an LP then)
        self.day_ends_at = 0.0
        """When the trading day of the orders held here ends (epoch
        seconds): journaled, so that a start after it ends the day."""
        self.grid: Grid = grid_of(routing.instruments)
        """The grid the journal's ticks and lots are counted on, at the
        head of each checkpoint: the instruments configured, and those a
        journal read recorded that are not any more."""
        self.apply_rules(rules)

    # -- the pieces, for operations (admin API, metrics) ---------------------------

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self.routing.instruments

    @property
    def sessions(self) -> dict[str, Session]:
        """Client CompID -> session."""
        return self.reports.sessions

    @property
    def matcher(self) -> Matcher:
        return self.routing.matcher

    @property
    def book(self) -> AggregatedBook:
        return self.routing.book

    @property
    def ledger(self) -> ExposureLedger:
        return self.routing.ledger

    @property
    def market_data(self) -> MarketDataService:
        return self.routing.market_data

    @property
    def stats(self) -> FlowStats:
        return self.routing.stats

    @property
    def adapters(self) -> dict[str, LpAdapter]:
        return self.routing.adapters

    def now(self) -> float:
        """The time on the flow's clock (epoch seconds)."""
        return self._clock()

    def exposure(self, now: float) -> ExposureSnapshot:
        return self.routing.exposure(now)

    @property
    def accounts(self) -> Accounts:
        return self.reports.accounts

    def lps_up(self) -> list[str]:
        return [name for name, a in self.adapters.items() if a.up]

    # -- a client taken over by another gateway of a cluster ------------------------

    def client_state(self, client: str) -> bytes:
        """The client's positions and margin holdings now, encoded (a
        :class:`ClientState`) for the copy that goes with its session."""
        return _encode_state(
            ClientState(client, self.ledger.positions_of(client), self.accounts.holdings_of(client))
        )

    def adopt_client(self, client: str, data: bytes) -> None:
        """Put in force the client's state as the gateway that served it
        last left it (:meth:`client_state` there), in place of what this
        one held, and journal it (a restart here starts from it too)."""
        state = _decode_state(data)
        if state.client != client:
            _log.error("client_state_mismatch", client=client, copied_for=state.client)
            return
        held = self.ledger.positions_of(client)
        self.ledger.set_client(client, state.positions)
        self.accounts.set_client(client, state.holdings)
        if self.journal is not None:
            self.journal.add(state)
        # what it replaces too: a fill booked here the client was not told
        # of becomes the house's to settle
        _log.info(
            "client_state_taken_over",
            client=client,
            positions=state.positions,
            replaced_positions=held,
        )

    def order_state(self, order: Order) -> bytes:
        """An order as it is now, encoded (an :class:`OrderState`) for the
        copy that goes with its client's session."""
        return _encode_state(OrderState(order))

    def park_client(self, client: str) -> int:
        """Work the client's open orders no more (another gateway of a
        cluster serves it, or may): out of the matcher without a report,
        their children at LPs canceled and given up (what an LP fills
        later is the house's), kept here (and in the journal's
        checkpoints) until the client's session is claimed here again.
        Returns how many were parked."""
        expiring = self.matcher.expiring
        orders = self.matcher.park(client)
        if not orders:
            return 0
        children = self._let_go(orders)
        self.parked.setdefault(client, []).extend(orders)
        self._parked_day.setdefault(client, self._day_end_now())
        self._parked_over.update(o.order_id for o in orders if o.order_id in expiring)
        _log.warning(
            "client_orders_parked",
            client=client,
            orders=len(orders),
            children_given_up=children,
        )
        return len(orders)

    def park_all(self) -> None:
        """Park every client's open orders (a gateway of a cluster, at
        start: each client's session is claimed before its orders are
        worked)."""
        for client in sorted({o.client for o in self.matcher.open_snapshot()}):
            self.park_client(client)

    def unpark_client(self, client: str) -> int:
        """Work the client's parked orders again (its session was claimed
        here and the cluster's copy holds nothing of it)."""
        orders = self.parked.pop(client, None)
        day_end = self._parked_day.pop(client, 0.0)
        if not orders:
            return 0
        ended = bool(day_end) and self._clock() >= day_end
        over = self._parked_over
        # the trading day they were parked in has ended since, or had for
        # those out at an LP then
        late = {o.order_id for o in orders if ended or o.order_id in over}
        over.difference_update(o.order_id for o in orders)
        _log.info("client_orders_unparked", client=client, orders=len(orders))
        self._put_back(orders, journal=False, late=late)
        return len(orders)

    def adopt_orders(self, client: str, copied: Iterable[tuple[bytes, float, bool]]) -> int:
        """Take the client's open orders as the cluster's copy holds them
        (each :meth:`order_state` at the gateway that served it last, when
        that was copied, in epoch seconds, 0 when not known, and whether its
        trading day had ended there already: it was out at an LP then) in place
        of those held here, which are dropped without a report; journaled
        (after the client's state), so a restart here has them.  What an
        order had at LPs through that gateway comes back to it unfilled:
        a resting order rests again, an IOC, FOK or market order is
        canceled (:data:`GATEWAY_FAILED`); a DAY order copied before a
        trading day that has ended since expires.  Returns how many were
        taken."""
        orders = []
        late = set()
        now = self._clock()
        day_end = self.rules.config.orders.trading_day_end
        for data, copied_at, day_over in copied:
            order = _decode_order(data).order
            if order.client != client:
                _log.error("order_copy_mismatch", client=client, order_id=order.order_id)
                continue
            if order.symbol not in self.instruments:
                # an instrument not configured here: worked by no one, said
                _log.error(
                    "order_copy_unknown_symbol",
                    client=client,
                    order_id=order.order_id,
                    symbol=order.symbol,
                )
                continue
            orders.append(order)
            if day_over or (copied_at and now >= next_day_end(copied_at, day_end)):
                late.add(order.order_id)
        stale = self.matcher.park(client)
        self._let_go(stale)
        stale.extend(self.parked.pop(client, ()))
        self._parked_day.pop(client, None)
        self._parked_over.difference_update(o.order_id for o in stale)
        kept = {o.order_id for o in orders}
        dropped = sorted(o.order_id for o in stale if o.order_id not in kept)
        if dropped and self.journal is not None:
            self.journal.add(Dropped(dropped))
        _log.info(
            "client_orders_taken_over",
            client=client,
            orders=len(orders),
            dropped=len(dropped),
            order_ids=[o.order_id for o in orders],
        )
        self._put_back(orders, journal=True, late=late)
        return len(orders)

    def _day_end_now(self) -> float:
        """When the trading day of the orders held here ends."""
        return self.day_ends_at or next_day_end(
            self._clock(), self.rules.config.orders.trading_day_end
        )

    def _let_go(self, orders: Iterable[Order]) -> int:
        """The bookkeeping of orders taken out of the matcher: no open lots,
        not counted open, their routings ended and children given up."""
        reports = self.reports
        accounts = reports.accounts
        routing = self.routing
        children = 0
        for order in orders:
            accounts.order_open(order.order_id, order.client, order.symbol, order.side, 0)
            # what a stop-out made is kept only while it is worked here
            reports.stop_out_orders.discard(order.order_id)
            reports.stop_out_cancels.discard(order.order_id)
            if reports.started.pop(order.order_id, None) is not None:
                reports.open_by_client[order.client] -= 1
            children += routing.drop_order(order.order_id)
        return children

    def _put_back(
        self, orders: Iterable[Order], *, journal: bool, late: Collection[str] = ()
    ) -> None:
        """Orders into the matcher, worked here from now on: counted open,
        their open lots in the margin account; what they had at LPs
        elsewhere, or here before they were parked, comes back unfilled.
        ``late``: orders a trading day ended for while they were worked
        nowhere: the DAY ones among them expire first, as they would have
        then (those out at an LP when their lots come back), before any of
        them can cross or be replaced.  Then they cross the other clients'
        orders resting here."""
        taken = self.matcher.adopt(orders)
        reports = self.reports
        accounts = reports.accounts
        rules = self.rules
        add = self.journal.add if journal and self.journal is not None else None
        for order in taken:
            client = order.client
            reports.open_by_client[client] = reports.open_by_client.get(client, 0) + 1
            accounts.order_open(order.order_id, client, order.symbol, order.side, order.open_qty)
            reports.started[order.order_id] = [
                None,
                rules.policy_for(client, order.entry_cl_ord_id),
            ]
            if add is not None:
                add(OrderState(order))
        now = self._clock()
        routing = self.routing
        if late:
            expiring = [o.order_id for o in taken if o.order_id in late and o.tif is DAY]
            if expiring:
                _log.warning("day_orders_expired_late", client=taken[0].client, order_ids=expiring)
                routing.publish(self.matcher.expire_late(expiring), now)
        for order in taken:
            if order.routing_qty and order.order_id not in routing.routings:
                result = self.matcher.on_route_done(
                    order.order_id,
                    order.routing_qty,
                    GATEWAY_FAILED,
                    self.routing.snapshot(order.symbol, now),
                )
                routing.publish(result, now, order.order_id)
        # another client's order that came in meanwhile may cross them
        routing.publish(self.matcher.cross_taken(taken), now)

    def _stored_sessions(self) -> list[Session]:
        """Every session whose messages the journal copies: the clients'."""
        return list(self.sessions.values())

    # -- recovery --------------------------------------------------------------------

    def recover(self, recovery: Recovery, run: int) -> None:
        """Take back what the journal held (``recovery`` has read it): the
        client stores completed from its copies, orders and children in
        flight restored; then a checkpoint of run ``run`` replaces it."""
        journal = self.journal
        assert journal is not None
        self.entry.refused_unseen = complete_stores(self._stored_sessions(), recovery)
        self._restored = restore(recovery, self.matcher, self.routing, self.reports, self._clock())
        self.grid = grid_of(self.instruments, recovery.grid)
        # the day of the orders read, ended at start if it has ended since
        self.day_ends_at = recovery.day_ends_at or self._day_end_now()
        self._take_checkpoint(journal, run)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        restored, self._restored = self._restored, Restored()
        await self.routing.start(restored.children, restored.orphans, restored.ended)
        now = self._clock()
        self.end_day_missed(now)
        journaled = self.day_ends_at
        self._arm_day_end(now)
        if self.journal is not None and self.day_ends_at != journaled:
            # the config of this start moved the day's end: journaled as a
            # reload's is, so that a restart ends the day then too
            self.journal.add(DayEndMoved(self.day_ends_at))
        self.watch.start()

    def end_day_missed(self, now: float) -> bool:
        """End the trading day of the orders held here if it ended while the
        gateway was down (at start): True when it did."""
        if not self.day_ends_at or now < self.day_ends_at:
            return False
        _log.warning("trading_day_ended_while_down", day_ended_at=self.day_ends_at)
        self.end_trading_day(now)
        return True

    async def stop(self) -> None:
        if self._day_timer is not None:
            self._day_timer.cancel()
        self._drop_background()
        self.watch.stop()
        await self.routing.stop()

    # -- the trading day -------------------------------------------------------------

    def _arm_day_end(self, now: float, after: float | None = None) -> None:
        """The timer of the first day end after ``after`` (default ``now``)."""
        at = next_day_end(now if after is None else after, self.rules.config.orders.trading_day_end)
        self.day_ends_at = at
        self._day_timer = asyncio.get_running_loop().call_later(at - now, self._on_day_end)

    def _on_day_end(self) -> None:
        now = self._clock()
        self.end_trading_day(now)
        # a timer that fired a hair early must not end the same day twice
        self._arm_day_end(now, after=now + 1.0)

    def end_trading_day(self, now: float) -> None:
        """Expire open DAY orders and forget the day's final orders (freed
        :data:`RELEASED_PER_TURN` a loop turn)."""
        # the next day's end (a timer that fired a hair early: not this one)
        self.day_ends_at = next_day_end(now + 1.0, self.rules.config.orders.trading_day_end)
        result = self.matcher.expire_day()
        # the day's ClOrdIDs are free again: so are those of its refusals
        self.entry.refused_unseen = {}
        _log.info("trading_day_ended", expired=len(result.executions))
        self.routing.publish(result, now)
        # the children given up on that day are asked about no more
        self.routing.end_day()
        if self.journal is not None:
            # after the expired orders' states: a restart that reads it has
            # them, and the DAY orders out at LPs, which expire on return
            self.journal.add(expiring(self.matcher, self._parked_over))
            self.journal.add(DayEnds(self.day_ends_at))
            # one under way may have written the day's expiring orders
            # already, and holds the day's final orders: a new one
            self._drop_background()
            self._background_retry_at = 0.0
            self._start_checkpoint(self.journal)
        if not self._releasing:
            self._releasing = True
            self._release_forgotten()

    def _release_forgotten(self) -> None:
        if self.matcher.release_forgotten(RELEASED_PER_TURN):
            asyncio.get_running_loop().call_soon(self._release_forgotten)
        else:
            self._releasing = False

    # -- durability ------------------------------------------------------------------

    def flush_soon(self) -> None:
        """The journal has entries: hand them to the OS at the end of this
        loop turn (if the outbox did not already), and take a checkpoint
        when it has grown past ``journal_checkpoint_mb``."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_durable)

    def _flush_durable(self) -> None:
        self._flush_scheduled = False
        journal = self.journal
        if journal is None:
            return
        if not self.reports.outbox.writing:
            journal.flush()  # else the outbox's write, queued, flushes it first
        # past the bound, and twice what the last checkpoint left: a state
        # larger than the bound is not written again after every batch
        bound = self.rules.config.orders.journal_checkpoint_mb << 20
        if journal.size > max(bound, 2 * self._checkpointed_size):
            self._start_checkpoint(journal)

    @property
    def checkpointing(self) -> bool:
        """Whether a checkpoint is being written (in slices)."""
        return self._background is not None

    def _start_checkpoint(self, journal: OrderJournal) -> None:
        """Take a checkpoint written on the loop a slice at a time (see
        :meth:`OrderJournal.start_sliced_checkpoint`), unless one is under
        way or the last one failed less than ``CHECKPOINT_RETRY`` seconds
        ago."""
        started = time.perf_counter()
        if self._background is not None or started < self._background_retry_at:
            return
        try:
            self._flush_before_checkpoint(journal)
            job = journal.start_sliced_checkpoint(self.checkpoint_state(journal.run))
        except Exception as exc:
            # the journal goes on as it was (a write that failed here is
            # tried again by the next flush)
            self._checkpoint_failed(f"{getattr(exc, 'strerror', None) or exc!r}")
            return
        self._background = job
        self._background_started = started
        self._slices = 0
        self._slowest_slice = 0.0
        loop = asyncio.get_running_loop()
        loop.call_soon(self._write_checkpoint_slice, job)
        self._background_deadline = loop.call_later(
            self.checkpoint_deadline, self._checkpoint_overdue
        )
        _log.info(
            "order_journal_checkpoint_started",
            bytes_before=journal.size,
            start_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _checkpoint_overdue(self) -> None:
        self._background_deadline = None
        if self._background is not None:
            self._checkpoint_failed(f"not written in {self.checkpoint_deadline:g} s")

    def _write_checkpoint_slice(self, job: BackgroundReplace) -> None:
        """Write a slice of the state; once all of it is written, sync it
        (by a thread) and copy the tail.  Nothing when ``job`` was given up
        meanwhile (a day end starts one of its own in its place)."""
        if self._background is not job:
            return
        began = time.perf_counter()
        try:
            done = job.write_some(CHECKPOINT_SLICE)
        except Exception as exc:
            self._checkpoint_failed(f"{getattr(exc, 'strerror', None) or exc!r}")
            return
        took = time.perf_counter() - began
        self._slices += 1
        if took > self._slowest_slice:
            self._slowest_slice = took
        loop = asyncio.get_running_loop()
        if not done:
            loop.call_soon(self._write_checkpoint_slice, job)
            return
        # the state is on disk before it replaces the journal, whatever the
        # fsync policy (as the blocking replace does), synced by a thread
        try:
            sync = job.syncer()
        except OSError as exc:
            self._checkpoint_failed(f"{exc.strerror or exc}")
            return
        synced = loop.run_in_executor(None, sync)
        synced.add_done_callback(lambda f: self._checkpoint_synced(job, f))

    def _checkpoint_synced(self, job: BackgroundReplace, synced: asyncio.Future[None]) -> None:
        if self._background is not job:
            return  # given up meanwhile
        error = synced.exception()
        if error is not None:
            self._checkpoint_failed(f"{getattr(error, 'strerror', None) or error!r}")
            return
        self._copy_checkpoint_tail(job)

    def _copy_checkpoint_tail(self, job: BackgroundReplace) -> None:
        """Copy a slice of what was journaled since the start; the new file
        takes the old one's place once all of it is copied.  Nothing when
        ``job`` was given up meanwhile."""
        journal = self.journal
        if self._background is not job or journal is None:
            return
        try:
            # the state was read from memory, which may hold changes whose
            # entries are not written yet (pending, or a write that failed):
            # written first, so that the new file never takes the journal's
            # place ahead of it
            journal.flush()
            done = job.copy_tail(CHECKPOINT_TAIL_SLICE)
        except (OSError, BatchFileError) as exc:
            self._checkpoint_failed(f"{getattr(exc, 'strerror', None) or exc}")
            return
        if not done:
            asyncio.get_running_loop().call_soon(self._copy_checkpoint_tail, job)
            return
        self._drop_background()
        self._checkpointed_size = journal.size
        _log.info(
            "order_journal_checkpointed",
            bytes_after=journal.size,
            state_bytes=job.written,
            tail_bytes=job.tail_copied,
            slices=self._slices,
            slowest_slice_ms=round(self._slowest_slice * 1000, 3),
            seconds=round(time.perf_counter() - self._background_started, 4),
        )

    def _drop_background(self) -> None:
        """Forget the checkpoint under way: its deadline, and its file if it
        has not finished (the journal stays whole)."""
        job, self._background = self._background, None
        if self._background_deadline is not None:
            self._background_deadline.cancel()
            self._background_deadline = None
        if job is not None:
            job.abandon()

    def _checkpoint_failed(self, why: str) -> None:
        """The journal goes on as it was; another try in a while."""
        self._drop_background()
        self._background_retry_at = time.perf_counter() + CHECKPOINT_RETRY
        _log.error("order_journal_checkpoint_failed", reason=why, retry_in_s=CHECKPOINT_RETRY)

    def _state(self, run: int) -> Iterator[Entry]:
        return sliced_checkpoint_entries(
            run,
            self.grid,
            self.matcher,
            self.ledger,
            self.routing,
            self.reports.accounts,
            [o for orders in self.parked.values() for o in orders],
            self.day_ends_at,
            sorted(self._parked_over),
        )

    def _flush_before_checkpoint(self, journal: OrderJournal) -> None:
        """The journal first, as always; then the session stores, which
        hold the copies of client messages a checkpoint leaves out."""
        journal.flush()
        for session in self._stored_sessions():
            session.store.flush()

    def _take_checkpoint(self, journal: OrderJournal, run: int | None = None) -> None:
        """Replace the journal by the state now, on the loop (at start)."""
        self._flush_before_checkpoint(journal)
        journal.checkpoint(self._state(journal.run if run is None else run))
        self._checkpointed_size = journal.size

    # -- rules -----------------------------------------------------------------------

    def apply_rules(self, rules: Rules) -> None:
        """Put ``rules`` in force from the next event on.  Routings already
        under way keep the rules they began with.  An LP they disable, or
        enable again, leaves or enters clients' market data at once."""
        old = self.rules
        self.rules = rules
        self.routing.apply_rules(rules)
        self.entry.rules = rules
        config = rules.config
        self.matcher.internal_crossing = config.routing.internal_crossing
        # by value: a reload builds new objects for the same parameters;
        # their version too, which without a `version` of their own is the
        # config's (its generation and digest), moving with any change
        accounts = self.reports.accounts
        held = accounts.params
        if (
            config.margin != old.config.margin
            or config.accounts != old.config.accounts
            or (
                rules.margin is not None
                and held is not None
                and rules.margin.version != held.version
            )
        ):
            accounts.configure(rules.margin, rules.accounts)
        retain = config.orders.retain_finished
        if retain != self.matcher.retain_finished:
            self.matcher.retain_finished = retain
            if self.journal is not None:
                # a restart keeps the final orders ended from here on under it
                self.journal.add(RetainFinished(retain))
        self.routing.debug = config.gateway.log_level == "debug"
        day_end = config.orders.trading_day_end
        if day_end != old.config.orders.trading_day_end and self._day_timer is not None:
            self._day_timer.cancel()
            self._arm_day_end(self._clock())
            if self.journal is not None:
                # a restart ends the day when this run would have
                self.journal.add(DayEndMoved(self.day_ends_at))

    # -- application profile ---------------------------------------------------------

    def on_logon(self, session: Session, now: float) -> None:
        pass

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        # orders live on (what is reported meanwhile is resent on the next
        # logon); market data subscriptions end with the session
        self.market_data.drop_session(session)
        self.entry.drop_session(session)

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        guard = self.routing.guard
        if guard is not None:
            guard()
            serves = self.watch.serves
            if serves is not None and not serves(session.settings.TargetCompID):
                # the check let this client's session go (its lease lapsed
                # while the loop was held) and parked its orders: what its
                # connection still delivered is worked here no more
                return
        self.entry.on_message(session, msg, now)
