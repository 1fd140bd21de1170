"""Order-entry messages a client sends, built from plain values: the
NewOrderSingle (35=D) and the OrderCancelRequest (35=F) of FIX 4.4.

Each builder checks its arguments and returns ``(msg_type, body)`` for
:meth:`gateway.fix.Session.send` (or ``FixClient.send``): the body's fields in
ascending tag order, without the header and trailer the session adds.  An
argument the message could not carry, or that no order could have (an empty
ClOrdID, a quantity that is not above zero, a limit order without a price, a
market order with one), raises ValueError before anything is built; a value
of the wrong type raises TypeError.

Quantities and prices are exact: a :class:`~decimal.Decimal`, an ``int`` or
a decimal string such as ``"1.08512"``, never a binary float.  TransactTime
(60) is passed in as epoch seconds: nothing here reads the clock.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final, Literal, TypeAlias

from gateway.fix.codec import encode_fields, format_utc_timestamp

__all__ = [
    "Number",
    "OrdType",
    "Side",
    "TimeInForce",
    "new_order_single",
    "order_cancel_request",
]

Side: TypeAlias = Literal["buy", "sell"]
OrdType: TypeAlias = Literal["market", "limit"]
TimeInForce: TypeAlias = Literal["day", "gtc", "ioc", "fok"]
Number: TypeAlias = Decimal | int | str

_SIDES: Final[dict[str, bytes]] = {"buy": b"1", "sell": b"2"}
_ORD_TYPES: Final[dict[str, bytes]] = {"market": b"1", "limit": b"2"}
# the values of TimeInForce (59) the gateway's order entry takes
_TIMES_IN_FORCE: Final[dict[str, bytes]] = {"day": b"0", "gtc": b"1", "ioc": b"3", "fok": b"4"}

# what a decimal string may look like: digits with an optional point, the
# shape of a FIX float (no sign: nothing here may be negative)
_DECIMAL_TEXT: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def new_order_single(
    cl_ord_id: str,
    symbol: str,
    side: Side,
    qty: Number,
    *,
    transact_time: float,
    ord_type: OrdType = "market",
    price: Number | None = None,
    time_in_force: TimeInForce = "day",
) -> tuple[bytes, bytes]:
    """A NewOrderSingle (35=D): ClOrdID (11), OrderQty (38), OrdType (40),
    Price (44, limit orders only), Side (54), Symbol (55), TimeInForce (59)
    and TransactTime (60).

    ``side`` is ``"buy"`` or ``"sell"``; ``ord_type`` ``"market"`` (no
    ``price``) or ``"limit"`` (``price`` required); ``time_in_force`` one of
    ``"day"``, ``"gtc"``, ``"ioc"``, ``"fok"`` (the gateway treats a market
    Day order as IOC).  ``qty`` and ``price`` must be above zero.
    """
    fields = [
        (11, _text("ClOrdID", cl_ord_id)),
        (38, _positive("OrderQty", qty)),
        (40, _choice("OrdType", ord_type, _ORD_TYPES)),
    ]
    if ord_type == "limit":
        if price is None:
            raise ValueError("a limit order needs a price")
        fields.append((44, _positive("Price", price)))
    elif price is not None:
        raise ValueError("a market order takes no price")
    fields += [
        (54, _choice("Side", side, _SIDES)),
        (55, _text("Symbol", symbol)),
        (59, _choice("TimeInForce", time_in_force, _TIMES_IN_FORCE)),
        (60, _timestamp("TransactTime", transact_time)),
    ]
    return b"D", encode_fields(fields)


def order_cancel_request(
    cl_ord_id: str,
    orig_cl_ord_id: str,
    symbol: str,
    side: Side,
    *,
    transact_time: float,
    qty: Number | None = None,
) -> tuple[bytes, bytes]:
    """An OrderCancelRequest (35=F) for the order sent as ``orig_cl_ord_id``:
    ClOrdID (11, this request's own), OrderQty (38, when given), OrigClOrdID
    (41), Side (54), Symbol (55) and TransactTime (60).  ``symbol`` and
    ``side`` are the order's."""
    own = _text("ClOrdID", cl_ord_id)
    orig = _text("OrigClOrdID", orig_cl_ord_id)
    if own == orig:
        raise ValueError("a cancel request needs a ClOrdID of its own, not the order's")
    fields = [(11, own)]
    if qty is not None:
        fields.append((38, _positive("OrderQty", qty)))
    fields += [
        (41, orig),
        (54, _choice("Side", side, _SIDES)),
        (55, _text("Symbol", symbol)),
        (60, _timestamp("TransactTime", transact_time)),
    ]
    return b"F", encode_fields(fields)


def _text(name: str, value: str) -> bytes:
    """A string field: printable ASCII, not empty (no SOH can slip in)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"{name} must be printable ASCII: {value!r}")
    return value.encode("ascii")


def _choice(name: str, value: str, choices: dict[str, bytes]) -> bytes:
    wire = choices.get(value) if isinstance(value, str) else None
    if wire is None:
        raise ValueError(f"{name} must be one of {', '.join(choices)}: {value!r}")
    return wire


def _positive(name: str, value: Number) -> bytes:
    """A quantity or price above zero, written as a FIX float (no exponent)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        kind = type(value).__name__
        hint = " (a float is inexact: pass a Decimal or a string)" if kind == "float" else ""
        raise TypeError(f"{name} must be a Decimal, an int or a decimal string, not {kind}{hint}")
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError(f"{name} must be a decimal number: {value!r}")
    number = Decimal(value)
    if not number.is_finite() or number <= 0:
        raise ValueError(f"{name} must be above zero: {value!r}")
    return format(number, "f").encode("ascii")


def _timestamp(name: str, value: float) -> bytes:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise TypeError(f"{name} must be epoch seconds (a float), not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be epoch seconds: {value!r}")
    return format_utc_timestamp(float(value))
