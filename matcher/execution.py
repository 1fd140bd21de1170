"""What the matcher reports per state change of an order: an
:class:`Execution`, the content of one FIX ExecutionReport (35=8).

A plain class compiled with the order path, not a msgspec Struct: compiled
code reads a Struct's fields through the type's descriptors (about 170
instructions a read), a native class's as a load, and every execution is
read some forty times on its way out (journal, margin accounts, the report
itself).  Nothing encodes or decodes it with msgspec.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from matcher.orders import ExecType, OrdRejReason, OrdStatus
from router.model import OrdType, Side, TimeInForce
from router.values import Value

_FIELDS: Final = (
    "exec_id",
    "exec_type",
    "order_id",
    "client",
    "cl_ord_id",
    "orig_cl_ord_id",
    "symbol",
    "side",
    "ord_type",
    "tif",
    "qty",
    "price",
    "status",
    "cum_qty",
    "leaves_qty",
    "notional",
    "last_qty",
    "last_px",
    "counterparty",
    "text",
    "ord_rej_reason",
)


class Execution(Value):
    """One ExecutionReport's content: the order's reportable fields as they
    were when the event happened, plus the event itself.  Immutable.

    ``last_qty``/``last_px`` describe the fill of a TRADE (0 and None
    otherwise); ``counterparty`` is :data:`~matcher.orders.INTERNAL` for a
    cross or the LP's name.  ``ord_rej_reason`` is set on REJECTED
    executions only.  Equal to another with the same fields.
    """

    __slots__ = _FIELDS

    def __init__(
        self,
        exec_id: str,
        exec_type: ExecType,
        order_id: str,
        client: str,
        cl_ord_id: str,
        orig_cl_ord_id: str | None,
        symbol: str,
        side: Side,
        ord_type: OrdType,
        tif: TimeInForce,
        qty: int,
        price: int | None,
        status: OrdStatus,
        cum_qty: int,
        leaves_qty: int,
        notional: int,
        last_qty: int = 0,
        last_px: int | None = None,
        counterparty: str = "",
        text: str = "",
        ord_rej_reason: OrdRejReason | None = None,
    ) -> None:
        self.exec_id: Final = exec_id
        self.exec_type: Final = exec_type
        self.order_id: Final = order_id
        self.client: Final = client
        self.cl_ord_id: Final = cl_ord_id
        self.orig_cl_ord_id: Final = orig_cl_ord_id
        self.symbol: Final = symbol
        self.side: Final = side
        self.ord_type: Final = ord_type
        self.tif: Final = tif
        self.qty: Final = qty
        self.price: Final = price
        self.status: Final = status
        self.cum_qty: Final = cum_qty
        self.leaves_qty: Final = leaves_qty
        self.notional: Final = notional
        self.last_qty: Final = last_qty
        self.last_px: Final = last_px
        self.counterparty: Final = counterparty
        self.text: Final = text
        self.ord_rej_reason: Final = ord_rej_reason

    @property
    def avg_px(self) -> Fraction:
        """Exact average fill price in ticks (0 before the first fill)."""
        return Fraction(self.notional, self.cum_qty) if self.cum_qty else Fraction(0)

    def with_text(self, text: str) -> Execution:
        """The same execution with another Text."""
        return Execution(
            self.exec_id,
            self.exec_type,
            self.order_id,
            self.client,
            self.cl_ord_id,
            self.orig_cl_ord_id,
            self.symbol,
            self.side,
            self.ord_type,
            self.tif,
            self.qty,
            self.price,
            self.status,
            self.cum_qty,
            self.leaves_qty,
            self.notional,
            self.last_qty,
            self.last_px,
            self.counterparty,
            text,
            self.ord_rej_reason,
        )

    def fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"Execution({inner})"
