"""Client orders and what the matcher reports about them.

An :class:`Order` belongs to the matcher alone: nothing else mutates it.  What
leaves the matcher are immutable values: an
:class:`~matcher.execution.Execution` per state change
(the content of one FIX ExecutionReport, 35=8) and a :class:`CancelReject` per
refused cancel or replace (the content of one OrderCancelReject, 35=9).

Prices are integer ticks and quantities integer lots of the order's
instrument.  ``notional`` is the exact sum of fill price x fill quantity, so the
average price is ``Fraction(notional, cum_qty)`` with no rounding.
"""

from __future__ import annotations

from enum import IntEnum
from fractions import Fraction

import msgspec

from router.model import IdentityEnum, OrdType, Side, TimeInForce

__all__ = [
    "FINAL_STATUSES",
    "INTERNAL",
    "CancelReject",
    "CxlRejReason",
    "CxlRejResponseTo",
    "ExecType",
    "OrdRejReason",
    "OrdStatus",
    "Order",
    "OrderReject",
    "PendingChange",
]

INTERNAL = "internal"
"""The counterparty of a fill crossed against another client's order."""


class OrdStatus(IdentityEnum):
    """FIX 4.4 OrdStatus (39)."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"


FINAL_STATUSES = frozenset(
    {OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED}
)
"""Statuses an order never leaves."""


class ExecType(IdentityEnum):
    """FIX 4.4 ExecType (150)."""

    NEW = "0"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    EXPIRED = "C"
    PENDING_REPLACE = "E"
    TRADE = "F"
    ORDER_STATUS = "I"


class OrdRejReason(IntEnum):
    """FIX OrdRejReason (103) for a refused new order."""

    BROKER_OPTION = 0
    UNKNOWN_SYMBOL = 1
    ORDER_EXCEEDS_LIMIT = 3
    DUPLICATE_ORDER = 6
    INCORRECT_QUANTITY = 13
    OTHER = 99


class CxlRejReason(IntEnum):
    """FIX CxlRejReason (102)."""

    TOO_LATE_TO_CANCEL = 0
    UNKNOWN_ORDER = 1
    ALREADY_PENDING = 3
    DUPLICATE_CL_ORD_ID = 6
    OTHER = 99


class CxlRejResponseTo(IdentityEnum):
    """FIX CxlRejResponseTo (434): which request the reject answers."""

    CANCEL = "1"
    REPLACE = "2"


class PendingChange(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A cancel or replace accepted while the order is out at LPs; it is
    applied when the routing finishes.  ``cl_ord_id`` is the request's; a
    cancel of the house's, which takes none, waits under the order's own."""

    kind: CxlRejResponseTo
    cl_ord_id: str
    qty: int = 0
    price: int | None = None


class Order(msgspec.Struct, eq=False, gc=False, array_like=True):
    """A client order as the matcher keeps it.

    Encoded (for the order journal) as an array, fields in this order: a
    field added later goes at the end, with a default.

    ``cl_ord_id`` is the order's current ClOrdID (it changes with each
    replace and with the cancel that ends it) and ``orig_cl_ord_id`` the one
    before it.  ``routing_qty`` is the part of ``leaves_qty`` out at LPs right
    now; only ``leaves_qty - routing_qty`` can cross internally.  ``seq`` is
    the time priority: lower is earlier.
    """

    order_id: str
    client: str
    cl_ord_id: str
    orig_cl_ord_id: str | None
    symbol: str
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    qty: int
    price: int | None
    seq: int
    status: OrdStatus = OrdStatus.NEW
    cum_qty: int = 0
    leaves_qty: int = 0
    notional: int = 0
    routing_qty: int = 0
    pending: PendingChange | None = None
    aliases: tuple[str, ...] = ()
    """Every other ClOrdID the order is known by (earlier ones, and the one of
    a cancel or replace waiting for routing to end)."""
    first_cl_ord_id: str | None = None
    """The ClOrdID the order was entered with, once a replace or a cancel
    has given it another (None until then, and in a journal written before
    the field existed): see :attr:`entry_cl_ord_id`."""
    house: bool = False
    """Entered by the house in the client's name (a stop-out's closing
    order): its ClOrdIDs are the house's, kept apart from the client's."""

    @property
    def entry_cl_ord_id(self) -> str:
        """The ClOrdID of the NewOrderSingle that entered the order (its
        routing policy is chosen by it)."""
        first = self.first_cl_ord_id
        return self.cl_ord_id if first is None else first

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def open_qty(self) -> int:
        """The most the order may still fill: its leaves, or those a replace
        waiting for its routing to end would leave it, if more (the replace
        may yet be applied)."""
        leaves = self.leaves_qty
        pending = self.pending
        if not leaves or pending is None or pending.kind is not CxlRejResponseTo.REPLACE:
            return leaves
        return max(leaves, pending.qty - self.cum_qty)

    @property
    def avg_px(self) -> Fraction:
        """Exact average fill price in ticks (0 before the first fill)."""
        return Fraction(self.notional, self.cum_qty) if self.cum_qty else Fraction(0)


class CancelReject(msgspec.Struct, frozen=True, gc=False):
    """One OrderCancelReject's content.

    ``order_id`` is None when the order is unknown; ``status`` is then
    REJECTED, as FIX asks for an unknown order.
    """

    client: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str | None
    status: OrdStatus
    reason: CxlRejReason
    response_to: CxlRejResponseTo
    text: str = ""


OrderReject = CancelReject
"""A refused cancel or replace request; the same value as :class:`CancelReject`
(a refused *new* order is an :class:`~matcher.execution.Execution` with
ExecType REJECTED)."""
