"""Restore and checkpoint: the order flow's state to and from the journal.

At start, :func:`complete_stores` gives back to the client session stores
the messages the journal copied that a crash kept from them, and
:func:`restore` takes back what an earlier run left (orders into the
matcher, children in flight into routings, open-order counts); orders that
were out at LPs with no child left to wait for are settled once the LP
adapters are started (:meth:`ChildRouting.start`).  :func:`sliced_checkpoint_entries`
is the state as journal entries, which replace the journal at a
checkpoint, headed by the grid its ticks and lots are counted on
(:func:`grid_of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import structlog

from gateway.fix import codec
from gateway.fix.codec import GarbledMessage
from gateway.fix.session import Session
from gateway.orderflow.journal_entries import (
    DayEnds,
    Ended,
    EndedState,
    Entry,
    Expiring,
    Grid,
    Holdings,
    InFlight,
    OrderState,
    Positions,
    RetainFinished,
    Run,
)
from gateway.orderflow.publish import Reports
from gateway.orderflow.recovery import RecoveredChild, Recovery
from gateway.orderflow.routing import Child, ChildRouting, Routing
from lp_adapters.recent import joined_ids
from matcher.engine import Matcher, RouteNeed
from matcher.orders import Order
from risk.accounts import Accounts
from router.exposure import ExposureLedger
from router.model import EXEC_ID_SEP, EndedChild, Instrument, RecoveredOrder

_log = structlog.get_logger("gateway.orderflow.restore")


class Restored:
    """What :func:`restore` leaves for the start: per LP, the children to
    hand back to its adapter (with their open lots) and those it ended that
    are still watched (with whether it filled them in full), and the orders
    to settle."""

    def __init__(self) -> None:
        self.children: dict[str, list[RecoveredOrder]] = {}
        self.ended: dict[str, list[tuple[EndedChild, bool]]] = {}
        self.orphans: list[str] = []


def complete_stores(sessions: Iterable[Session], recovery: Recovery) -> dict[str, set[str]]:
    """Messages the journal holds for a client session whose store did
    not get them (the crash fell between the two writes) are stored
    now, under their numbers, for the client's next ResendRequest.
    Returns, per client, the ClOrdIDs of the new orders those messages
    reject: refused before the matcher, they left no order behind, and
    the client, which did not receive the reject, may send them again
    with PossDupFlag (they are not worked again: :class:`OrderEntry`)."""
    refused: dict[str, set[str]] = {}
    for session in sessions:
        store = session.store
        added = 0
        for message in recovery.messages.get(session.session_id, ()):
            if message.created == store.creation_time and message.seq >= store.next_sender_seq:
                store.append_sent(message.seq, message.raw)
                added += 1
                cl_ord_id = _rejected_order(message.raw)
                if cl_ord_id is not None:
                    client = session.settings.TargetCompID
                    refused.setdefault(client, set()).add(cl_ord_id)
        if added:
            store.flush()
            _log.warning(
                "session_store_completed_from_journal",
                session=session.session_id,
                messages=added,
                next_sender_seq=store.next_sender_seq,
            )
    return refused


def _rejected_order(raw: bytes) -> str | None:
    """The ClOrdID of an ExecutionReport Rejected (ExecType 8), else None."""
    if b"\x0135=8\x01" not in raw or b"\x01150=8\x01" not in raw:
        return None
    try:
        msg = codec.parse_frame(raw)
    except GarbledMessage:
        return None
    cl_ord_id = msg.get(11)
    return None if cl_ord_id is None else cl_ord_id.decode("latin-1")


def grid_of(
    instruments: Mapping[str, Instrument], recorded: Mapping[str, tuple[str, str]] | None = None
) -> Grid:
    """The journal's entry of the grid of ``instruments`` (tick size, lot
    size), with the sizes ``recorded`` (a journal's) of the symbols no
    longer configured: their positions are kept, and are counted on them
    if the symbol is configured again."""
    sizes = {s: (str(i.tick_size), str(i.lot_size)) for s, i in instruments.items()}
    if recorded:
        sizes.update((s, kept) for s, kept in recorded.items() if s not in instruments)
    return Grid(dict(sorted(sizes.items())))


def sliced_checkpoint_entries(
    run: int,
    grid: Grid,
    matcher: Matcher,
    ledger: ExposureLedger,
    routing: ChildRouting,
    accounts: Accounts,
    parked: Iterable[Order] = (),
    day_ends_at: float = 0.0,
    parked_over: Iterable[str] = (),
) -> Iterator[Entry]:
    """The state as journal entries, for a checkpoint written a slice at a
    time while the state changes (:meth:`OrderJournal.start_sliced_checkpoint`).

    What is journaled from the call on is copied behind these entries, so:
    the aggregates (positions, holdings), to which later fills add, are
    taken now, in the same turn as the start of that tail; the orders and
    children are listed now and each encoded as it is when its slice is
    written: a later change journaled for it supersedes it (a fill journaled
    again for a child whose state already counts it is booked on the
    ledger, not taken from the child again: see Recovery); the expiring
    orders are taken last.  ``grid``: the grid the ticks and lots are
    counted on (:func:`grid_of`), written after the run.  ``parked``: open
    orders out of the matcher (their client is served by another gateway
    of a cluster), kept as they are.  ``day_ends_at``: when the trading day of the orders ends
    (journaled as :class:`DayEnds`; 0: not known); ``parked_over``: parked
    DAY orders whose day had ended (kept as expiring)."""
    lps, clients, last_price = ledger.positions()
    head: list[Entry] = [Run(run), grid, Positions(lps, clients, last_price)]
    head.append(Holdings(accounts.holdings()))
    if day_ends_at:
        head.append(DayEnds(day_ends_at))
    head.append(RetainFinished(matcher.retain_finished))
    # the final ones oldest first (what recovery keeps of them depends on
    # it), as they are kept now but read as the slices are written; the open
    # ones copied (a list of references, at C speed)
    finished = matcher.finished_view()
    opened = matcher.open_snapshot()
    opened.extend(parked)
    children = [c for in_flight in routing.routings.values() for c in in_flight.children.values()]
    abandoned = list(routing.abandoned.values())
    settled = set(routing.settled)
    # the children their LPs ended, listed now, each encoded as it is when
    # its slice is written (one pushed out meanwhile is left out: those that
    # pushed it out end in the tail)
    ended = [
        (routing.ended, routing.ended.oldest_first(), False),
        (routing.filled_in_full, routing.filled_in_full.oldest_first(), True),
    ]

    def rest() -> Iterator[Entry]:
        yield from head
        for order in finished:
            yield OrderState(order)
        for order in opened:
            yield OrderState(order)
        for child in children:
            yield InFlight(child.order, child.open, sorted(child.exec_ids or ()))
        for child_order, exec_ids in abandoned:
            yield InFlight(child_order, 0, sorted(exec_ids), abandoned=True)
            if child_order.child_id in settled:
                # its LP is not asked about it again
                yield Ended(child_order.child_id)
        for window, child_ids, in_full in ended:
            for child_id in child_ids:
                record = window.get(child_id)
                if record is None:
                    continue
                ids = record.exec_ids.split(EXEC_ID_SEP) if record.exec_ids else []
                yield EndedState(record.order, record.order.qty - record.filled, ids, in_full)
        yield expiring(matcher, parked_over)

    return rest()


def expiring(matcher: Matcher, parked_over: Iterable[str]) -> Expiring:
    """The journal's entry of the DAY orders that expire when their lots
    come back (out at LPs when their day ended) or their client is taken
    (parked across a day end)."""
    return Expiring(sorted(matcher.expiring | set(parked_over)))


def restore(
    recovery: Recovery,
    matcher: Matcher,
    routing: ChildRouting,
    reports: Reports,
    now: float,
) -> Restored:
    """Take back the state an earlier run left in the journal: orders
    into the matcher, children in flight into routings (their LP
    adapters find out what became of them once started), positions
    are already in the ledger.  Returns what is left to do once the
    adapters are started."""
    restored = Restored()
    orders = recovery.orders.values()
    opened = sorted((o for o in orders if not o.is_final), key=lambda o: o.seq)
    matcher.restore(recovery.finished() + opened, recovery.expiring)
    # watched, as before the restart, for a fill the LP reports all the same
    watched = [
        (recovery.ended, routing.ended, False),
        (recovery.filled_in_full, routing.filled_in_full, True),
    ]
    for kept, watch, in_full in watched:
        for child_id, recovered in kept.items():
            ended = recovered.child
            filled = ended.qty - recovered.open
            record = EndedChild(ended, filled, joined_ids(recovered.exec_ids))
            watch.put(child_id, record)
            restored.ended.setdefault(ended.lp, []).append((record, in_full))
    by_parent: dict[str, list[RecoveredChild]] = {}
    # the day of the children given up on ended while the gateway was down
    day_over = 0 < recovery.day_ends_at <= now
    for recovered in recovery.children.values():
        child = recovered.child
        parent = matcher.find(child.parent_id, "", "")
        if recovered.abandoned or parent is None or not parent.routing_qty:
            routing.abandoned[child.child_id] = (child, recovered.exec_ids)
            if recovered.settled:
                # watched for a late fill until a restart; its LP is not asked again
                routing.settled.add(child.child_id)
                continue
            if recovered.abandoned and day_over:
                routing.settle(
                    child.child_id, "its trading day is over", answered=False, journaled=False
                )
                continue
        else:
            by_parent.setdefault(child.parent_id, []).append(recovered)
        restored.children.setdefault(child.lp, []).append(
            (child, recovered.open, tuple(sorted(recovered.exec_ids)))
        )
    rules = routing.rules
    for order in opened:
        client = order.client
        reports.open_by_client[client] = reports.open_by_client.get(client, 0) + 1
        reports.accounts.order_open(
            order.order_id, client, order.symbol, order.side, order.open_qty
        )
        policy = rules.policy_for(client, order.entry_cl_ord_id)
        reports.started[order.order_id] = [None, policy]
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
                routing.abandoned[recovered.child.child_id] = (
                    recovered.child,
                    recovered.exec_ids,
                )
            restored.orphans.append(order.order_id)
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
            order.entry_cl_ord_id,
        )
        routing.routing_seq += 1
        # what comes back is not routed again: it returns to the order
        resumed = Routing(
            need,
            routing.instruments[order.symbol],
            rules.config.routing.max_reroutes,
            routing.routing_seq,
            rules,
            policy,
        )
        resumed.returned = order.routing_qty - in_flight
        for recovered in children:
            child = recovered.child
            resumed.children[child.child_id] = Child(
                child,
                recovered.open,
                now,
                answered=True,
                exec_ids=recovered.exec_ids,
            )
            routing.children[child.child_id] = order.order_id
            routing.ledger.reserve(child.lp, child.symbol, recovered.open)
        routing.routings[order.order_id] = resumed
    _log.info(
        "orders_recovered",
        run=routing.run,
        open=len(opened),
        final=len(recovery.orders) - len(opened),
        routings=len(routing.routings),
        children_to_check=sum(len(c) for c in restored.children.values()),
        fills=recovery.fills,
        duplicate_fills=recovery.duplicate_fills,
    )
    return restored
