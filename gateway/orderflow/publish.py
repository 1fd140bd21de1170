"""Publishing: what the order flow tells its clients, and how it leaves.

Every message to a client goes through :meth:`Reports.send`: it is stored by
the client's session, copied to the order journal (so that a store found
behind the journal after a crash can be completed), and handed to the
outbox, which writes the journal batch, then the store, then the socket at
the end of the loop turn.  ExecutionReports come from matcher results;
order rejects, cancel rejects and business rejects from the order entry.
An order reaching a final status is counted here (latency, final status,
open orders per client).  Log lines repeat at most a short excerpt of each
client-supplied string (:func:`~gateway.orderflow.mapping.excerpt`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog

from config.schema import DEFAULT_MAX_ID_LENGTH
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session, business_reject_body
from gateway.net.transport import Outbox
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Message, OrderState, Traded
from gateway.orderflow.mapping import (
    Refusal,
    cancel_reject_body,
    excerpt,
    execution_body,
    new_order_reject_body,
    unknown_order_status_body,
)
from gateway.orderflow.stats import FlowStats
from matcher.engine import Matcher, Result
from matcher.execution import Execution
from matcher.members import (
    EXEC_CANCELED,
    EXEC_PENDING_CANCEL,
    EXEC_TRADE,
    STATUS_PENDING_REPLACE,
    STATUS_REJECTED,
)
from matcher.orders import FINAL_STATUSES, INTERNAL, CancelReject, Order, OrdRejReason, OrdStatus
from risk.accounts import Accounts
from router.exposure import ExposureLedger
from router.model import Instrument

_log = structlog.get_logger("gateway.orderflow.publish")

STOP_OUT_TEXT: Final = "stop out"
"""Text of every report of a stop-out's cancels and closing orders."""

_REJECT_REASONS = {r.value: r.name.lower() for r in OrdRejReason}
# an order's final status as the metrics name it (an Enum's name is a
# descriptor call on every read)
_STATUS_NAMES: Final[dict[OrdStatus, str]] = {s: s.name.lower() for s in OrdStatus}


def refusal_reason(code: int) -> str:
    """A metric label for an OrdRejReason."""
    return _REJECT_REASONS.get(code, "other")


class Reports:
    """The client side of the order flow's output (see the module docs).

    ``started`` and ``open_by_client`` are the flow's bookkeeping of orders
    not yet final: an order's arrival time and the policy of its first
    routing, and the orders each client has open (``max_open_orders``).
    """

    def __init__(
        self,
        sessions: Mapping[str, Session],
        instruments: Mapping[str, Instrument],
        matcher: Matcher,
        stats: FlowStats,
        outbox: Outbox,
        journal: OrderJournal | None,
        clock: Callable[[], float],
        accounts: Accounts,
        ledger: ExposureLedger,
        copying: bool = False,
        id_prefix: str = "",
    ) -> None:
        self.sessions = dict(sessions)  # client CompID -> session
        self.copying = copying and journal is not None
        """Whether a drop copy follows the journal (each LP fill is
        journaled with the ExecID of the client's report of it, for the
        copy's TradeCaptureReport)."""
        self.accounts = accounts
        self._ledger = ledger
        self._instruments: dict[str, Instrument] = dict(instruments)
        self._matcher = matcher
        self._stats = stats
        self._outbox = outbox
        self._journal = journal
        self._clock = clock
        # order id -> [arrival time (None: from an earlier run), policy of its first routing]
        self.started: dict[str, list[Any]] = {}
        # orders counted against max_open_orders: accepted and not final
        self.open_by_client: dict[str, int] = {}
        # OrderIDs of the stop-outs' closing orders (each of their reports
        # says so) and of the client orders they cancel (the reports of the
        # cancel say so); let go of once the order is final
        self.stop_out_orders: set[str] = set()
        self.stop_out_cancels: set[str] = set()
        self._exec_seq = 0
        # starts the ExecIDs of the answers made here, as the matcher's
        # prefix starts its own: they never repeat across runs
        self._id_prefix = id_prefix
        self.copy_order: Callable[[Order], None] | None = None
        """Set in a cluster: each order whose state is journaled goes with
        its client's session copy too (None: not in a cluster)."""

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def send(
        self, session: Session, msg_type: bytes, body: bytes, now: float, market: str = ""
    ) -> None:
        """Store, journal and write one message to a client (``market``:
        where the fill an ExecutionReport reports was made, journaled with
        it for the drop copy)."""
        seq, raw = session.send_recorded(msg_type, body, now)
        journal = self._journal
        if journal is not None:
            journal.add(Message(session.session_id, session.store.creation_time, seq, raw, market))
        self._outbox.wake(session)

    # -- matcher results ------------------------------------------------------------

    def publish(self, result: Result, now: float, touched: str = "") -> None:
        """Journal the orders a matcher call changed and report its
        executions and cancel rejects; ``touched`` names an order the call
        changed without reporting it.  (Its routes are the routing's.)"""
        if self._journal is not None or self.copy_order is not None:
            self._journal_orders(result, touched)
        for ex in result.executions:
            self._book(ex)
            self.execution(ex.client, ex, now)
        for reject in result.cancel_rejects:
            self.cancel_reject(reject, now)

    def _book(self, ex: Execution) -> None:
        """Keep the margin accounts up with an execution: a fill moves the
        client's holding, every report its order's open lots (the margin
        check and the position limit count them).  An internal cross moves
        the client's position in the exposure ledger too (an LP's fill is
        booked there by the routing)."""
        accounts = self.accounts
        if ex.exec_type is EXEC_TRADE and ex.last_px is not None:
            internal = ex.counterparty == INTERNAL
            accounts.trade(ex.client, ex.symbol, ex.side, ex.last_qty, ex.last_px)
            if internal:
                self._ledger.apply_cross(ex.client, ex.symbol, ex.side, ex.last_qty, ex.last_px)
            if self._journal is not None:
                self._journal.add(
                    Traded(ex.client, ex.symbol, ex.side, ex.last_qty, ex.last_px, internal)
                )
        leaves = ex.leaves_qty
        if ex.status is STATUS_PENDING_REPLACE and leaves:
            # a replace waits for the order's routing: the lots it may add count
            order = self._matcher.find(ex.order_id, ex.client, ex.cl_ord_id)
            if order is not None:
                leaves = order.open_qty
        accounts.order_open(ex.order_id, ex.client, ex.symbol, ex.side, leaves)

    def _journal_orders(self, result: Result, touched: str) -> None:
        """One OrderState entry per order the matcher call changed (and,
        in a cluster, the order copied with its client's session)."""
        find = self._matcher.find
        seen = set()
        for ex in result.executions:
            order_id = ex.order_id
            if order_id not in seen:
                seen.add(order_id)
                order = find(order_id, ex.client, ex.cl_ord_id)
                if order is not None:
                    self._keep(order)
        for need in result.routes:
            if need.order_id not in seen:
                seen.add(need.order_id)
                order = find(need.order_id, need.client, need.cl_ord_id)
                if order is not None:
                    self._keep(order)
        if touched and touched not in seen:
            order = find(touched, "", "")
            if order is not None:
                self._keep(order)

    def _keep(self, order: Order) -> None:
        """An order's state as it is now: journaled, and copied in a cluster."""
        journal = self._journal
        if journal is not None:
            journal.add(OrderState(order))
        copy = self.copy_order
        if copy is not None:
            copy(order)

    def execution(
        self, client: str, ex: Execution, now: float, ord_status_req_id: bytes = b""
    ) -> None:
        """An ExecutionReport to ``client``; an order's final one is counted.
        ``ord_status_req_id`` is the OrdStatusReqID (790) of the status
        request it answers, echoed (empty: none)."""
        if self.stop_out_orders or self.stop_out_cancels:
            ex = self._stop_out(ex)
        session = self.sessions.get(client)
        if session is not None:
            instrument = self._instruments[ex.symbol]
            stamp = codec.format_utc_timestamp(now)
            body = execution_body(ex, instrument, stamp, ord_status_req_id)
            self.send(session, b"8", body, now, ex.counterparty if ex.last_qty else "")
        if ex.status in FINAL_STATUSES:
            started = self.started.pop(ex.order_id, None)
            if started is not None:
                self._order_done(ex, started)

    def _stop_out(self, ex: Execution) -> Execution:
        """``ex`` with Text "stop out" if a stop-out made it (and it says
        nothing else); a final one ends what is kept about its order."""
        order_id = ex.order_id
        ours = order_id in self.stop_out_orders or (
            order_id in self.stop_out_cancels
            and (ex.exec_type is EXEC_CANCELED or ex.exec_type is EXEC_PENDING_CANCEL)
        )
        if ex.status in FINAL_STATUSES:
            self.stop_out_orders.discard(order_id)
            self.stop_out_cancels.discard(order_id)
        if ours and not ex.text:
            return ex.with_text(STOP_OUT_TEXT)
        return ex

    def _order_done(self, ex: Execution, started: list[Any]) -> None:
        """Count an order that reached its final state."""
        self.open_by_client[ex.client] -= 1
        stats = self._stats
        if started[0] is not None:  # None: an order from an earlier run
            latency = self._clock() - started[0]
            stats.latency.observe(latency)
            if started[1]:
                stats.policy(started[1]).latency.observe(latency)
        stats.final(ex.client, _STATUS_NAMES[ex.status])
        if ex.status is STATUS_REJECTED:
            reason = ex.ord_rej_reason
            stats.rejected(ex.client, refusal_reason(reason if reason is not None else 99))
            _log.info(
                "order_rejected",
                client=ex.client,
                cl_ord_id=excerpt(ex.cl_ord_id),
                order_id=ex.order_id,
                reason=ex.text,
            )

    def cancel_reject(self, reject: CancelReject, now: float, log: bool = True) -> None:
        """An OrderCancelReject to the client that asked; ``log`` False
        leaves the log line to the caller (a flood of rejects is logged as
        a count)."""
        session = self.sessions.get(reject.client)
        if session is not None:
            body = cancel_reject_body(reject, codec.format_utc_timestamp(now))
            self.send(session, b"9", body, now)
        if not log:
            return
        _log.info(
            "cancel_rejected",
            client=reject.client,
            cl_ord_id=excerpt(reject.cl_ord_id),
            orig_cl_ord_id=excerpt(reject.orig_cl_ord_id),
            response_to=reject.response_to.name.lower(),
            reason=reject.text,
        )

    # -- answers to requests the matcher never saw ----------------------------------

    def order_reject(
        self,
        session: Session,
        msg: FixMessage,
        refusal: Refusal,
        reason: str,
        now: float,
        max_id_length: int = DEFAULT_MAX_ID_LENGTH,
        log: bool = True,
    ) -> None:
        """ExecutionReport (Rejected) for a NewOrderSingle refused before the
        matcher, echoing its ClOrdID and Symbol cut to ``max_id_length``;
        ``reason`` is the metric label; ``log`` False leaves the log line to
        the caller (a flood of rejects is logged as a count)."""
        self._exec_seq += 1
        body = new_order_reject_body(
            msg,
            refusal,
            f"{self._id_prefix}R{self._exec_seq}",
            max_id_length=max_id_length,
            transact_time=codec.format_utc_timestamp(now),
        )
        self.send(session, b"8", body, now)
        client = session.settings.TargetCompID
        self._stats.rejected(client, reason)
        self._stats.final(client, "rejected")
        if not log:
            return
        _log.info(
            "order_rejected",
            session=session.session_id,
            cl_ord_id=excerpt(msg.get(11) or b""),
            reason=refusal.text,
        )

    def unknown_order_status(
        self,
        session: Session,
        msg: FixMessage,
        now: float,
        max_id_length: int = DEFAULT_MAX_ID_LENGTH,
    ) -> None:
        """ExecutionReport (ExecType I, OrdStatus Rejected) for a status
        request naming no order of this client, its strings echoed cut to
        ``max_id_length``."""
        self._exec_seq += 1
        exec_id = f"{self._id_prefix}S{self._exec_seq}"
        stamp = codec.format_utc_timestamp(now)
        body = unknown_order_status_body(msg, exec_id, max_id_length, stamp)
        self.send(session, b"8", body, now)

    def business_reject(
        self,
        session: Session,
        msg: FixMessage,
        reason: int,
        now: float,
        text: bytes | None = None,
        max_id_length: int = 64,
    ) -> None:
        """BusinessMessageReject (j) of ``msg``, its id echoed cut to
        ``max_id_length`` (see :func:`business_reject_body`)."""
        self.send(session, b"j", business_reject_body(msg, reason, text, max_id_length), now)
