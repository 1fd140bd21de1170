"""The order-entry edge: FIX messages in, matcher commands out, and back.

Inbound, a NewOrderSingle (35=D), OrderCancelRequest (35=F) or
OrderCancelReplaceRequest (35=G) is decoded once into a :class:`NewOrder`,
:class:`CancelOrder` or :class:`ReplaceOrder` in integer ticks and lots of the
order's instrument.  An order the gateway cannot accept as sent decodes to a
:class:`Refusal` carrying the text and OrdRejReason (103) to report.

Outbound, an :class:`Execution` becomes an ExecutionReport (35=8) body and a
:class:`CancelReject` an OrderCancelReject (35=9) body, with body tags in
ascending order, ready for :func:`gateway.fix.codec.encode_message`.  Prices
and quantities are written from integers by :mod:`router.units` (integer
arithmetic, no floats, no Decimal on the hot path); the average price is
exact up to four places beyond the tick size, rounded half to even.

The session layer has already validated each message against the FIX 4.4
dictionary (required fields present, values of the right type); decoding still
never raises on odd input, it refuses it.

What a client sends is bounded before the gateway keeps or repeats it: a
ClOrdID or OrigClOrdID longer than ``max_id_length`` (``[orders]``) refuses
the request; a reject echoes the client's strings cut to that length; a
Text or a log line repeats at most :data:`LOGGED_CHARS` of one
(:func:`excerpt`).

Everything here is a pure function of its arguments, apart from caches of
the quantities and prices already converted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from enum import Enum
from typing import Final

from config.schema import DEFAULT_MAX_ID_LENGTH, MOST_ID_LENGTH
from gateway.fix.codec import FixMessage, encode_fields
from matcher.engine import CancelOrder, NewOrder, ReplaceOrder
from matcher.execution import Execution
from matcher.orders import CancelReject, CxlRejResponseTo, ExecType, OrdStatus
from router.members import BUY, DAY, FOK, GTC, IOC, LIMIT, MARKET, SELL
from router.model import Instrument, OffGrid, OrdType, OutOfRange, Side, TimeInForce
from router.units import format_decimal, instrument_formats, remembered

__all__ = [
    "LOGGED_CHARS",
    "REJ_BROKER_OPTION",
    "REJ_DUPLICATE_ORDER",
    "REJ_INCORRECT_QUANTITY",
    "REJ_OTHER",
    "REJ_UNKNOWN_ORDER",
    "REJ_UNKNOWN_SYMBOL",
    "REJ_UNSUPPORTED",
    "Refusal",
    "cancel_reject_body",
    "decode_cancel",
    "decode_new_order",
    "decode_replace",
    "excerpt",
    "execution_body",
    "new_order_reject_body",
    "too_long_text",
    "unknown_order_status_body",
    "wire_value",
]

# OrdRejReason (103) values a refusal may carry.
REJ_BROKER_OPTION: Final = 0
REJ_UNKNOWN_SYMBOL: Final = 1
REJ_UNKNOWN_ORDER: Final = 5
REJ_DUPLICATE_ORDER: Final = 6
REJ_UNSUPPORTED: Final = 11
REJ_INCORRECT_QUANTITY: Final = 13
REJ_OTHER: Final = 99

# FIX "float": optional minus sign, digits, optional decimal point.  Checked
# before Decimal() sees the text, which would also take "NaN", "1e3", "1_000"
# and surrounding blanks.
_FIX_FLOAT = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")

LOGGED_CHARS: Final = 64
"""The most of one client-supplied string a log line or a reject's Text
repeats (see :func:`excerpt`)."""

# No instrument grid needs a quantity or price text longer than this: longer
# ones are converted each time instead of remembered (a cache keyed on texts
# of any length would hold up to 8192 of them), and never echoed.
_NUMBER_LENGTH: Final = 32

_SIDES: dict[bytes, Side] = {b"1": BUY, b"2": SELL}
_ORD_TYPES: dict[bytes, OrdType] = {b"1": MARKET, b"2": LIMIT}
_TIFS: dict[bytes, TimeInForce] = {
    b"0": DAY,
    b"1": GTC,
    b"3": IOC,
    b"4": FOK,
}

# The wire value of every enumerated field the reports carry.
_WIRE: dict[Enum, bytes] = {
    member: member.value.encode("ascii")
    for kind in (OrdStatus, ExecType, OrdType, Side, TimeInForce, CxlRejResponseTo)
    for member in kind
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an order-entry request is refused: the Text (58) to report and the
    OrdRejReason (103)."""

    text: str
    ord_rej_reason: int


# --------------------------------------------------------------------------
# numbers


def wire_value(member: Enum) -> bytes:
    """The FIX value of an enumerated field an ExecutionReport carries
    (OrdStatus, ExecType, OrdType, Side, TimeInForce, CxlRejResponseTo)."""
    return _WIRE[member]


def excerpt(value: str | bytes, limit: int = LOGGED_CHARS) -> str:
    """A client-supplied ``value`` as a log line or a Text repeats it: whole
    up to ``limit`` characters, else its first ``limit`` followed by a marker
    with its full length, e.g. ``ABC...[30000 chars]``."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text)} chars]"


def too_long_text(name: str, length: int, limit: int) -> str:
    """The Text refusing a request whose id field ``name`` (e.g.
    ``"ClOrdID (11)"``) is ``length`` bytes long, beyond ``max_id_length``
    ``limit``: it names the field and the limit, never the value."""
    return f"{name} too long: {length} bytes, at most {limit} (limit max_id_length)"


def _too_long(name: str, value: bytes, limit: int) -> Refusal:
    return Refusal(too_long_text(name, len(value), limit), REJ_OTHER)


def _names_no_order(orig_cl_ord_id: bytes) -> Refusal:
    """An OrigClOrdID (41) longer than any order's ClOrdID can be (see
    :data:`~config.schema.MOST_ID_LENGTH`)."""
    text = (
        f"OrigClOrdID (41) too long: {len(orig_cl_ord_id)} bytes, longer than any"
        f" order's ClOrdID (at most {MOST_ID_LENGTH})"
    )
    return Refusal(text, REJ_OTHER)


def _parse_decimal(value: bytes) -> Decimal | None:
    """The FIX float ``value`` as an exact Decimal, or None if it is not one."""
    if _FIX_FLOAT.fullmatch(value) is None:
        return None
    try:
        return Decimal(value.decode("ascii"))
    except DecimalException:
        return None


# --------------------------------------------------------------------------
# inbound


# Clients send the same quantities and prices over and over: their
# conversions are remembered per (text, symbol), up to a bound, together with
# the instrument they were made for (a new config's instruments start afresh).
_Conversions = dict[tuple[bytes, str], tuple[Instrument, "int | Refusal"]]
_QTY_CACHE: _Conversions = {}
_PRICE_CACHE: _Conversions = {}


def _quantity(msg: FixMessage, instrument: Instrument) -> int | Refusal:
    """OrderQty (38) in lots of ``instrument``, or why it is refused."""
    raw = msg.get(38)
    if not raw:
        return Refusal("OrderQty must be positive", REJ_INCORRECT_QUANTITY)
    if len(raw) > _NUMBER_LENGTH:
        return _convert_quantity(raw, instrument)
    return remembered(_QTY_CACHE, raw, instrument, _convert_quantity)


def _convert_quantity(raw: bytes, instrument: Instrument) -> int | Refusal:
    shown = excerpt(raw)
    qty = _parse_decimal(raw)
    if qty is None:
        return Refusal(f"OrderQty {shown} is not a number", REJ_INCORRECT_QUANTITY)
    if qty <= 0:
        return Refusal("OrderQty must be positive", REJ_INCORRECT_QUANTITY)
    symbol = instrument.symbol
    minimum = instrument.lots_to_qty(instrument.min_lots)
    if qty < minimum:
        limit = format_decimal(minimum).decode()
        return Refusal(
            f"OrderQty {shown} is below the minimum {limit} for {symbol}", REJ_INCORRECT_QUANTITY
        )
    maximum = instrument.lots_to_qty(instrument.max_lots)
    if qty > maximum:
        limit = format_decimal(maximum).decode()
        return Refusal(
            f"OrderQty {shown} is above the maximum {limit} for {symbol}", REJ_INCORRECT_QUANTITY
        )
    try:
        return instrument.qty_to_lots(qty)
    except OffGrid:
        lot = format_decimal(instrument.lot_size).decode()
        return Refusal(
            f"OrderQty {shown} is not a multiple of the lot size {lot}", REJ_INCORRECT_QUANTITY
        )
    except (DecimalException, OutOfRange):
        return Refusal(f"OrderQty {shown} is out of range", REJ_INCORRECT_QUANTITY)


def _price(raw: bytes, instrument: Instrument) -> int | Refusal:
    """Price (44) in ticks of ``instrument``, or why it is refused."""
    if len(raw) > _NUMBER_LENGTH:
        return _convert_price(raw, instrument)
    return remembered(_PRICE_CACHE, raw, instrument, _convert_price)


def _convert_price(raw: bytes, instrument: Instrument) -> int | Refusal:
    shown = excerpt(raw)
    price = _parse_decimal(raw)
    if price is None:
        return Refusal(f"Price {shown} is not a number", REJ_OTHER)
    if price <= 0:
        return Refusal(f"Price {shown} must be positive", REJ_OTHER)
    try:
        return instrument.price_to_ticks(price)
    except OffGrid:
        tick = format_decimal(instrument.tick_size).decode()
        return Refusal(f"Price {shown} is not a multiple of the tick size {tick}", REJ_OTHER)
    except (DecimalException, OutOfRange):
        return Refusal(f"Price {shown} is out of range", REJ_OTHER)


def _instrument(msg: FixMessage, instruments: Mapping[str, Instrument]) -> Instrument | Refusal:
    raw = msg.get(55)
    if not raw:
        return Refusal("Symbol is required", REJ_UNKNOWN_SYMBOL)
    symbol = raw.decode("latin-1")
    instrument = instruments.get(symbol)
    if instrument is None:
        return Refusal(f"Unknown symbol {excerpt(symbol)}", REJ_UNKNOWN_SYMBOL)
    return instrument


_HARMLESS_EXEC_INST: Final = frozenset((b"1", b"5"))
"""ExecInst (18) values that change nothing of how the gateway works an
order: not held, held (a desk's discretion, which the gateway has none of)."""


def _unsupported_instructions(msg: FixMessage, tif: TimeInForce | None) -> Refusal | None:
    """The refusal of an order carrying an instruction the gateway would
    not honour: an ExecInst (18) other than :data:`_HARMLESS_EXEC_INST`
    (all or none, participate don't initiate, a peg: working the order as
    if it had none could fill it in a way its client ruled out), or a
    MinQty (110) above zero but on a fill-or-kill order (which fills whole
    or not at all).  None: nothing of the kind."""
    exec_inst = msg.get(18)
    if exec_inst is not None:
        for value in exec_inst.split(b" "):
            if value and value not in _HARMLESS_EXEC_INST:
                shown = excerpt(value.decode("latin-1"), 8)
                return Refusal(f"ExecInst {shown} is not supported", REJ_UNSUPPORTED)
    min_qty = msg.get(110)
    if (
        min_qty is not None
        and tif is not FOK
        and _FIX_FLOAT.fullmatch(min_qty)
        and Decimal(min_qty.decode("ascii")) > 0
    ):
        return Refusal("MinQty is not supported (but by a FOK order)", REJ_UNSUPPORTED)
    return None


def decode_new_order(
    msg: FixMessage,
    client: str,
    instruments: Mapping[str, Instrument],
    max_id_length: int = DEFAULT_MAX_ID_LENGTH,
) -> NewOrder | Refusal:
    """A NewOrderSingle (35=D) of ``client`` as a matcher :class:`NewOrder`,
    or the :class:`Refusal` to report in a rejecting ExecutionReport.

    A ClOrdID (11) longer than ``max_id_length`` bytes is refused (99,
    Other).  A market order's Price (44) is ignored; TimeInForce (59)
    defaults to Day.
    """
    cl_ord_id = msg.get(11)
    if not cl_ord_id:
        return Refusal("ClOrdID is required", REJ_OTHER)
    if len(cl_ord_id) > max_id_length:
        return _too_long("ClOrdID (11)", cl_ord_id, max_id_length)
    instrument = _instrument(msg, instruments)
    if isinstance(instrument, Refusal):
        return instrument
    side = _SIDES.get(msg.get(54) or b"")
    if side is None:
        return Refusal("Unsupported side", REJ_UNSUPPORTED)
    ord_type = _ORD_TYPES.get(msg.get(40) or b"")
    if ord_type is None:
        return Refusal("Unsupported order type", REJ_UNSUPPORTED)
    tif = _TIFS.get(msg.get(59) or b"0")
    if tif is None:
        return Refusal("Unsupported time in force", REJ_UNSUPPORTED)
    unsupported = _unsupported_instructions(msg, tif)
    if unsupported is not None:
        return unsupported
    qty = _quantity(msg, instrument)
    if isinstance(qty, Refusal):
        return qty
    price: int | None = None
    if ord_type is LIMIT:
        raw_price = msg.get(44)
        if not raw_price:
            return Refusal("Price is required for a limit order", REJ_OTHER)
        ticks = _price(raw_price, instrument)
        if isinstance(ticks, Refusal):
            return ticks
        price = ticks
    return NewOrder(
        client=client,
        cl_ord_id=cl_ord_id.decode("latin-1"),
        symbol=instrument.symbol,
        side=side,
        ord_type=ord_type,
        tif=tif,
        qty=qty,
        price=price,
    )


def decode_cancel(
    msg: FixMessage, client: str, max_id_length: int = DEFAULT_MAX_ID_LENGTH
) -> CancelOrder | Refusal:
    """An OrderCancelRequest (35=F) of ``client`` as a :class:`CancelOrder`
    (a missing ClOrdID or OrigClOrdID decodes as empty; the matcher then
    answers with a cancel reject), or the :class:`Refusal` of a ClOrdID (11)
    longer than ``max_id_length`` bytes (an OrigClOrdID (41) is looked up
    as given: it may name an order accepted before a reload lowered the
    limit; one longer than any limit names none and is refused)."""
    cl_ord_id = msg.get(11) or b""
    if len(cl_ord_id) > max_id_length:
        return _too_long("ClOrdID (11)", cl_ord_id, max_id_length)
    orig_cl_ord_id = msg.get(41) or b""
    if len(orig_cl_ord_id) > MOST_ID_LENGTH:
        return _names_no_order(orig_cl_ord_id)
    return CancelOrder(
        client=client,
        cl_ord_id=cl_ord_id.decode("latin-1"),
        orig_cl_ord_id=orig_cl_ord_id.decode("latin-1"),
    )


def decode_replace(
    msg: FixMessage,
    client: str,
    instruments: Mapping[str, Instrument],
    max_id_length: int = DEFAULT_MAX_ID_LENGTH,
) -> ReplaceOrder | Refusal:
    """An OrderCancelReplaceRequest (35=G) of ``client`` as a
    :class:`ReplaceOrder`: the new total OrderQty (38) and, when Price (44) is
    present, the new limit, both checked against the instrument of Symbol
    (55) like a new order's.  A ClOrdID (11) longer than ``max_id_length``
    bytes is refused (an OrigClOrdID (41) as in :func:`decode_cancel`)."""
    cl_ord_id = msg.get(11)
    if not cl_ord_id:
        return Refusal("ClOrdID is required", REJ_OTHER)
    if len(cl_ord_id) > max_id_length:
        return _too_long("ClOrdID (11)", cl_ord_id, max_id_length)
    orig_cl_ord_id = msg.get(41)
    if not orig_cl_ord_id:
        return Refusal("OrigClOrdID is required", REJ_UNKNOWN_ORDER)
    if len(orig_cl_ord_id) > MOST_ID_LENGTH:
        return _names_no_order(orig_cl_ord_id)
    instrument = _instrument(msg, instruments)
    if isinstance(instrument, Refusal):
        return instrument
    unsupported = _unsupported_instructions(msg, _TIFS.get(msg.get(59) or b"0"))
    if unsupported is not None:
        return unsupported
    qty = _quantity(msg, instrument)
    if isinstance(qty, Refusal):
        return qty
    price: int | None = None
    raw_price = msg.get(44)
    if raw_price:
        ticks = _price(raw_price, instrument)
        if isinstance(ticks, Refusal):
            return ticks
        price = ticks
    return ReplaceOrder(
        client=client,
        cl_ord_id=cl_ord_id.decode("latin-1"),
        orig_cl_ord_id=orig_cl_ord_id.decode("latin-1"),
        qty=qty,
        price=price,
    )


# --------------------------------------------------------------------------
# outbound


def _out(text: str) -> bytes:
    return text.encode("latin-1", "replace")


def unknown_order_status_body(
    msg: FixMessage,
    exec_id: str,
    max_id_length: int = DEFAULT_MAX_ID_LENGTH,
    transact_time: bytes = b"",
) -> bytes:
    """The body of the ExecutionReport (ExecType I, OrdStatus Rejected,
    text "Unknown order") answering an OrderStatusRequest ``msg`` that names
    no order of the requester; ClOrdID, OrderID, Side, Symbol and
    OrdStatusReqID (790, when sent) are echoed, the strings cut to
    ``max_id_length`` bytes; TransactTime (60) ``transact_time`` when
    given."""
    # The report must carry these fields: one longer than any the gateway
    # accepts names no order anyway, and is echoed cut, never in full.
    fields = [
        (6, b"0"),
        (11, (msg.get(11) or b"")[:max_id_length]),
        (14, b"0"),
        (17, _out(exec_id)),
        (37, (msg.get(37) or b"NONE")[:max_id_length]),
        (39, b"8"),
        (54, msg.get(54) or b"1"),
        (55, (msg.get(55) or b"")[:max_id_length]),
        (58, b"Unknown order"),
        (60, transact_time),
        (150, b"I"),
        (151, b"0"),
        (790, (msg.get(790) or b"")[:max_id_length]),
    ]
    return encode_fields(field for field in fields if field[1])


def new_order_reject_body(
    msg: FixMessage,
    refusal: Refusal,
    exec_id: str,
    order_id: str = "NONE",
    max_id_length: int = DEFAULT_MAX_ID_LENGTH,
    transact_time: bytes = b"",
) -> bytes:
    """The body of the ExecutionReport (35=8, ExecType and OrdStatus
    Rejected) answering a refused NewOrderSingle ``msg``.  ClOrdID, OrdType,
    Side and Symbol are echoed when the request carried them, ClOrdID and
    Symbol cut to ``max_id_length`` bytes; OrderQty is echoed when it is a
    number of at most 32 characters, 0 otherwise; TransactTime (60) is
    ``transact_time`` when given."""
    cl_ord_id = msg.get(11)
    qty = msg.get(38)
    ord_type = msg.get(40)
    side = msg.get(54)
    symbol = msg.get(55)
    parts = [b"6=0\x01"]
    if cl_ord_id:
        # FIX requires the ClOrdID on the report; one over the limit (the
        # Text says so) is echoed cut to it, so that a reject never carries
        # back what the gateway refused to hold.
        parts.append(b"11=%b\x01" % cl_ord_id[:max_id_length])
    parts.append(b"14=0\x0117=%b\x0137=%b\x01" % (_out(exec_id), _out(order_id)))
    if qty and len(qty) <= _NUMBER_LENGTH and _FIX_FLOAT.fullmatch(qty) is not None:
        parts.append(b"38=%b\x01" % qty)
    else:
        parts.append(b"38=0\x01")
    parts.append(b"39=8\x01")
    if ord_type:
        parts.append(b"40=%b\x01" % ord_type)
    if side:
        parts.append(b"54=%b\x01" % side)
    if symbol:
        parts.append(b"55=%b\x01" % symbol[:max_id_length])
    parts.append(b"58=%b\x01" % _out(refusal.text))
    if transact_time:
        parts.append(b"60=%b\x01" % transact_time)
    parts.append(b"103=%d\x01150=8\x01151=0\x01" % refusal.ord_rej_reason)
    return b"".join(parts)


def execution_body(
    ex: Execution, instrument: Instrument, transact_time: bytes, ord_status_req_id: bytes = b""
) -> bytes:
    """The body of the ExecutionReport (35=8) reporting ``ex``, an execution
    of an order in ``instrument``, with TransactTime (60) ``transact_time``;
    OrdStatusReqID (790) ``ord_status_req_id`` when given (the answer to an
    OrderStatusRequest that carried one)."""
    fmt = instrument_formats(instrument)
    qty = fmt.qty
    wire = _WIRE
    if ex.last_qty > 0 and ex.last_px is not None:
        last = b"31=%b\x0132=%b\x01" % (fmt.price(ex.last_px), qty(ex.last_qty))
    else:
        last = b""
    optional = b""
    if ex.orig_cl_ord_id:
        optional = b"41=%b\x01" % ex.orig_cl_ord_id.encode("latin-1", "replace")
    if ex.price is not None and ex.ord_type is LIMIT:
        optional += b"44=%b\x01" % fmt.price(ex.price)
    text = b"58=%b\x01" % ex.text.encode("latin-1", "replace") if ex.text else b""
    rej = b"" if ex.ord_rej_reason is None else b"103=%d\x01" % ex.ord_rej_reason
    req = b"790=%b\x01" % ord_status_req_id if ord_status_req_id else b""
    return (
        b"6=%b\x0111=%b\x0114=%b\x0117=%b\x01%b37=%b\x0138=%b\x0139=%b\x0140=%b\x01%b"
        b"54=%b\x0155=%b\x01%b59=%b\x0160=%b\x01%b150=%b\x01151=%b\x01%b"
        % (
            fmt.avg_px(ex.notional, ex.cum_qty),
            ex.cl_ord_id.encode("latin-1", "replace"),
            qty(ex.cum_qty),
            ex.exec_id.encode("latin-1", "replace"),
            last,
            ex.order_id.encode("latin-1", "replace"),
            qty(ex.qty),
            wire[ex.status],
            wire[ex.ord_type],
            optional,
            wire[ex.side],
            ex.symbol.encode("latin-1", "replace"),
            text,
            wire[ex.tif],
            transact_time,
            rej,
            wire[ex.exec_type],
            qty(ex.leaves_qty),
            req,
        )
    )


def cancel_reject_body(cr: CancelReject, transact_time: bytes) -> bytes:
    """The body of the OrderCancelReject (35=9) reporting ``cr``, with
    TransactTime (60) ``transact_time``; OrderID (37) is ``NONE`` for an
    unknown order."""
    parts = [
        b"11=%b\x0137=%b\x0139=%b\x0141=%b\x01"
        % (
            _out(cr.cl_ord_id),
            _out(cr.order_id or "NONE"),
            _WIRE[cr.status],
            _out(cr.orig_cl_ord_id),
        )
    ]
    if cr.text:
        parts.append(b"58=%b\x01" % _out(cr.text))
    parts.append(
        b"60=%b\x01102=%d\x01434=%b\x01" % (transact_time, cr.reason, _WIRE[cr.response_to])
    )
    return b"".join(parts)
