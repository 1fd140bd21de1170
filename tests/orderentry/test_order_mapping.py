"""FIX order entry <-> matcher commands and results (gateway.orderflow.mapping)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.dictionary import fix44
from gateway.fix.validation import ValidationOptions, Validator
from gateway.orderflow.mapping import (
    Refusal,
    cancel_reject_body,
    decode_cancel,
    decode_new_order,
    decode_replace,
    execution_body,
    new_order_reject_body,
)
from matcher.engine import CancelOrder, NewOrder, ReplaceOrder
from matcher.execution import Execution
from matcher.orders import (
    CancelReject,
    CxlRejReason,
    CxlRejResponseTo,
    ExecType,
    OrdRejReason,
    OrdStatus,
)
from router.model import AssetClass, Instrument, OrdType, Side, TimeInForce
from router.units import format_decimal

EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal("1000"),
    min_lots=1,
    max_lots=1000,
    quote_currency="USD",
)
BTCUSD = Instrument(
    symbol="BTC/USD",
    asset_class=AssetClass.CRYPTO,
    tick_size=Decimal("0.5"),
    lot_size=Decimal("0.001"),
    min_lots=1,
    max_lots=100_000,
    quote_currency="USD",
)
INSTRUMENTS = {EURUSD.symbol: EURUSD, BTCUSD.symbol: BTCUSD}
TRANSACT_TIME = b"20261125-10:00:00.123"
HEADER = [(34, b"2"), (49, b"GATEWAY"), (52, b"20261125-10:00:00.000"), (56, b"CLIENT1")]
VALIDATOR = Validator(fix44(), ValidationOptions())


def inbound(msg_type: bytes, *fields: tuple[int, bytes]) -> FixMessage:
    header = [(34, b"2"), (49, b"CLIENT1"), (52, b"20261125-10:00:00.000"), (56, b"GATEWAY")]
    raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(fields))
    return codec.parse_frame(raw)


def new_order(**overrides: bytes | None) -> FixMessage:
    values: dict[int, bytes | None] = {
        11: b"C1",
        21: b"1",
        38: b"2000",
        40: b"2",
        44: b"1.08320",
        54: b"1",
        55: b"EUR/USD",
        59: b"0",
        60: b"20261125-10:00:00.000",
    }
    names = {"cl": 11, "qty": 38, "ord_type": 40, "price": 44, "side": 54, "symbol": 55, "tif": 59}
    names |= {"exec_inst": 18, "min_qty": 110}
    for name, value in overrides.items():
        values[names[name]] = value
    return inbound(b"D", *[(t, v) for t, v in sorted(values.items()) if v is not None])


def outbound(msg_type: bytes, body: bytes) -> FixMessage:
    """Wrap ``body`` as the gateway would send it and check it is valid FIX 4.4."""
    msg = codec.parse_frame(codec.encode_message(b"FIX.4.4", msg_type, HEADER, body))
    assert VALIDATOR.validate(msg) is None
    return msg


def body_fields(msg: FixMessage) -> dict[int, bytes]:
    tags = [t for t, _ in msg.fields[1:] if t not in (34, 49, 52, 56)]
    assert tags == sorted(tags)
    assert len(tags) == len(set(tags))
    return {t: v for t, v in msg.fields[1:] if t not in (34, 49, 52, 56)}


def execution(
    exec_type: ExecType,
    status: OrdStatus,
    *,
    cum_qty: int = 0,
    leaves_qty: int = 4,
    notional: int = 0,
    last_qty: int = 0,
    last_px: int | None = None,
    ord_type: OrdType = OrdType.LIMIT,
    price: int | None = 108_330,
    orig_cl_ord_id: str | None = None,
    text: str = "",
    ord_rej_reason: OrdRejReason | None = None,
    instrument: Instrument = EURUSD,
    qty: int = 4,
) -> Execution:
    return Execution(
        exec_id="E7",
        exec_type=exec_type,
        order_id="O3",
        client="CLIENT1",
        cl_ord_id="C1",
        orig_cl_ord_id=orig_cl_ord_id,
        symbol=instrument.symbol,
        side=Side.BUY,
        ord_type=ord_type,
        tif=TimeInForce.GTC,
        qty=qty,
        price=price,
        status=status,
        cum_qty=cum_qty,
        leaves_qty=leaves_qty,
        notional=notional,
        last_qty=last_qty,
        last_px=last_px,
        counterparty="LP1" if last_qty else "",
        text=text,
        ord_rej_reason=ord_rej_reason,
    )


# --------------------------------------------------------------------------
# format_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1E+3", b"1000"),
        ("1000", b"1000"),
        ("1.08320", b"1.0832"),
        ("1.0", b"1"),
        ("0.00001", b"0.00001"),
        ("1E-7", b"0.0000001"),
        ("-2.50", b"-2.5"),
        ("-0.05", b"-0.05"),
        ("0", b"0"),
        ("0.000", b"0"),
    ],
)
def test_format_decimal(value: str, expected: bytes) -> None:
    assert format_decimal(Decimal(value)) == expected


def test_format_decimal_refuses_non_finite() -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        format_decimal(Decimal("NaN"))


# --------------------------------------------------------------------------
# NewOrderSingle


def test_decode_limit_order() -> None:
    order = decode_new_order(new_order(), "CLIENT1", INSTRUMENTS)
    assert order == NewOrder(
        client="CLIENT1",
        cl_ord_id="C1",
        symbol="EUR/USD",
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.DAY,
        qty=2,
        price=108_320,
    )


def test_decode_market_order_ignores_price_and_defaults_to_day() -> None:
    msg = new_order(ord_type=b"1", price=None, tif=None, side=b"2", qty=b"1000000")
    order = decode_new_order(msg, "CLIENT1", INSTRUMENTS)
    assert order == NewOrder(
        client="CLIENT1",
        cl_ord_id="C1",
        symbol="EUR/USD",
        side=Side.SELL,
        ord_type=OrdType.MARKET,
        tif=TimeInForce.DAY,
        qty=1000,
        price=None,
    )
    with_price = new_order(ord_type=b"1", price=b"1.2", tif=b"3")
    decoded = decode_new_order(with_price, "CLIENT1", INSTRUMENTS)
    assert isinstance(decoded, NewOrder)
    assert decoded.price is None
    assert decoded.tif is TimeInForce.IOC


@pytest.mark.parametrize(
    ("tif", "expected"),
    [
        (b"0", TimeInForce.DAY),
        (b"1", TimeInForce.GTC),
        (b"3", TimeInForce.IOC),
        (b"4", TimeInForce.FOK),
    ],
)
def test_decode_time_in_force(tif: bytes, expected: TimeInForce) -> None:
    order = decode_new_order(new_order(tif=tif), "CLIENT1", INSTRUMENTS)
    assert isinstance(order, NewOrder)
    assert order.tif is expected


def test_decode_fractional_lots_and_ticks() -> None:
    msg = new_order(symbol=b"BTC/USD", qty=b"0.125", price=b"64000.50")
    order = decode_new_order(msg, "CLIENT1", INSTRUMENTS)
    assert isinstance(order, NewOrder)
    assert (order.qty, order.price) == (125, 128_001)


@pytest.mark.parametrize(
    ("overrides", "text", "reason"),
    [
        ({"symbol": b"EURX/USD"}, "Unknown symbol EURX/USD", 1),
        ({"side": b"5"}, "Unsupported side", 11),
        ({"ord_type": b"3"}, "Unsupported order type", 11),
        ({"tif": b"6"}, "Unsupported time in force", 11),
        ({"qty": None}, "OrderQty must be positive", 13),
        ({"qty": b"0"}, "OrderQty must be positive", 13),
        ({"qty": b"-1000"}, "OrderQty must be positive", 13),
        ({"qty": b"1e3"}, "OrderQty 1e3 is not a number", 13),
        ({"qty": b"5"}, "OrderQty 5 is below the minimum 1000 for EUR/USD", 13),
        ({"qty": b"1000001"}, "OrderQty 1000001 is above the maximum 1000000 for EUR/USD", 13),
        ({"qty": b"1500"}, "OrderQty 1500 is not a multiple of the lot size 1000", 13),
        ({"price": None}, "Price is required for a limit order", 99),
        ({"price": b"1.083255"}, "Price 1.083255 is not a multiple of the tick size 0.00001", 99),
        ({"price": b"0"}, "Price 0 must be positive", 99),
        ({"price": b"-1.08"}, "Price -1.08 must be positive", 99),
        ({"price": b"NaN"}, "Price NaN is not a number", 99),
        ({"price": b"1" * 60}, f"Price {'1' * 60} is out of range", 99),
        # more ticks than the journal's integers hold, refused before the matcher sees it
        ({"price": b"999999999999999999"}, "Price 999999999999999999 is out of range", 99),
        ({"price": b"10000000000.00001"}, "Price 10000000000.00001 is out of range", 99),
        ({"cl": None}, "ClOrdID is required", 99),
        # instructions the gateway would not honour: worked as if absent, the
        # order could fill as its client ruled out (a part of an all-or-none)
        ({"exec_inst": b"G"}, "ExecInst G is not supported", 11),
        ({"exec_inst": b"1 6"}, "ExecInst 6 is not supported", 11),
        ({"min_qty": b"1000"}, "MinQty is not supported (but by a FOK order)", 11),
        ({"min_qty": b"1000", "tif": b"3"}, "MinQty is not supported (but by a FOK order)", 11),
    ],
)
def test_new_order_refusals(overrides: dict[str, bytes | None], text: str, reason: int) -> None:
    msg = new_order(**overrides)
    assert decode_new_order(msg, "CLIENT1", INSTRUMENTS) == Refusal(text, reason)


def test_new_order_reject_body_echoes_the_request() -> None:
    msg = new_order(price=b"1.083255")
    refusal = decode_new_order(msg, "CLIENT1", INSTRUMENTS)
    assert isinstance(refusal, Refusal)
    report = outbound(b"8", new_order_reject_body(msg, refusal, "E1"))
    assert body_fields(report) == {
        6: b"0",
        11: b"C1",
        14: b"0",
        17: b"E1",
        37: b"NONE",
        38: b"2000",
        39: b"8",
        40: b"2",
        54: b"1",
        55: b"EUR/USD",
        58: b"Price 1.083255 is not a multiple of the tick size 0.00001",
        103: b"99",
        150: b"8",
        151: b"0",
    }


def test_new_order_reject_body_leaves_out_missing_fields() -> None:
    msg = new_order(qty=None)
    refusal = Refusal("Duplicate ClOrdID", 6)
    report = outbound(b"8", new_order_reject_body(msg, refusal, "E2", "O9"))
    fields = body_fields(report)
    assert (fields[37], fields[38], fields[58], fields[103]) == (
        b"O9",
        b"0",
        b"Duplicate ClOrdID",
        b"6",
    )
    unsupported = new_order(side=b"5", ord_type=b"3")
    refusal = Refusal("Unsupported side", 11)
    fields = body_fields(outbound(b"8", new_order_reject_body(unsupported, refusal, "E3")))
    assert (fields[40], fields[54], fields[103]) == (b"3", b"5", b"11")


# --------------------------------------------------------------------------
# cancel and replace


def test_decode_cancel() -> None:
    msg = inbound(
        b"F",
        (11, b"C2"),
        (41, b"C1"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (60, b"20261125-10:00:00.000"),
    )
    assert decode_cancel(msg, "CLIENT1") == CancelOrder("CLIENT1", "C2", "C1")


def replace(*fields: tuple[int, bytes]) -> FixMessage:
    base = [(11, b"C3"), (21, b"1"), (40, b"2"), (41, b"C1"), (54, b"1"), (55, b"EUR/USD")]
    return inbound(b"G", *sorted([*base, *fields, (60, b"20261125-10:00:00.000")]))


def test_decode_replace() -> None:
    msg = replace((38, b"3000"), (44, b"1.08310"))
    assert decode_replace(msg, "CLIENT1", INSTRUMENTS) == ReplaceOrder(
        client="CLIENT1", cl_ord_id="C3", orig_cl_ord_id="C1", qty=3, price=108_310
    )
    keep_price = replace((38, b"1000"))
    assert decode_replace(keep_price, "CLIENT1", INSTRUMENTS) == ReplaceOrder(
        client="CLIENT1", cl_ord_id="C3", orig_cl_ord_id="C1", qty=1, price=None
    )


@pytest.mark.parametrize(
    ("fields", "text", "reason"),
    [
        ([(38, b"2500")], "OrderQty 2500 is not a multiple of the lot size 1000", 13),
        ([(38, b"0")], "OrderQty must be positive", 13),
        ([(38, b"2000000")], "OrderQty 2000000 is above the maximum 1000000 for EUR/USD", 13),
        (
            [(38, b"2000"), (44, b"1.000001")],
            "Price 1.000001 is not a multiple of the tick size 0.00001",
            99,
        ),
        ([(38, b"2000"), (44, b"-1")], "Price -1 must be positive", 99),
        ([(18, b"G"), (38, b"2000")], "ExecInst G is not supported", 11),
        ([(38, b"2000"), (110, b"1000")], "MinQty is not supported (but by a FOK order)", 11),
    ],
)
def test_replace_refusals(fields: list[tuple[int, bytes]], text: str, reason: int) -> None:
    assert decode_replace(replace(*fields), "CLIENT1", INSTRUMENTS) == Refusal(text, reason)


def test_replace_of_unknown_symbol() -> None:
    msg = inbound(
        b"G",
        (11, b"C3"),
        (38, b"1000"),
        (40, b"1"),
        (41, b"C1"),
        (54, b"1"),
        (55, b"EURX/USD"),
        (60, b"20261125-10:00:00.000"),
    )
    assert decode_replace(msg, "CLIENT1", INSTRUMENTS) == Refusal("Unknown symbol EURX/USD", 1)


# --------------------------------------------------------------------------
# ExecutionReport


def test_execution_new() -> None:
    ex = execution(ExecType.NEW, OrdStatus.NEW)
    fields = body_fields(outbound(b"8", execution_body(ex, EURUSD, TRANSACT_TIME)))
    assert fields == {
        6: b"0",
        11: b"C1",
        14: b"0",
        17: b"E7",
        37: b"O3",
        38: b"4000",
        39: b"0",
        40: b"2",
        44: b"1.0833",
        54: b"1",
        55: b"EUR/USD",
        59: b"1",
        60: TRANSACT_TIME,
        150: b"0",
        151: b"4000",
    }


def test_execution_partial_trades_report_exact_average_price() -> None:
    first = execution(
        ExecType.TRADE,
        OrdStatus.PARTIALLY_FILLED,
        cum_qty=1,
        leaves_qty=3,
        notional=108_320,
        last_qty=1,
        last_px=108_320,
        qty=5,
    )
    fields = body_fields(outbound(b"8", execution_body(first, EURUSD, TRANSACT_TIME)))
    assert (fields[6], fields[14], fields[31], fields[32]) == (
        b"1.0832",
        b"1000",
        b"1.0832",
        b"1000",
    )
    assert (fields[39], fields[150], fields[151]) == (b"1", b"F", b"3000")
    second = execution(
        ExecType.TRADE,
        OrdStatus.PARTIALLY_FILLED,
        cum_qty=4,
        leaves_qty=1,
        notional=108_320 + 3 * 108_330,
        last_qty=3,
        last_px=108_330,
        qty=5,
    )
    fields = body_fields(outbound(b"8", execution_body(second, EURUSD, TRANSACT_TIME)))
    assert fields[6] == b"1.083275"
    assert (fields[14], fields[31], fields[32], fields[151]) == (
        b"4000",
        b"1.0833",
        b"3000",
        b"1000",
    )


def test_average_price_rounds_half_even_four_places_past_the_tick() -> None:
    # 3 lots at 108320 + 108320 + 108321: 108320.333... ticks
    ex = execution(ExecType.TRADE, OrdStatus.FILLED, cum_qty=3, leaves_qty=0, notional=324_961)
    assert body_fields(outbound(b"8", execution_body(ex, EURUSD, TRANSACT_TIME)))[6] == (
        b"1.083203333"
    )
    # 1 tick over 2**5 = 32 lots: 0.03125 ticks -> 0.0000003125 -> half even 0.0000003120
    ex = execution(ExecType.TRADE, OrdStatus.FILLED, cum_qty=32, leaves_qty=0, notional=1)
    assert body_fields(outbound(b"8", execution_body(ex, EURUSD, TRANSACT_TIME)))[6] == (
        b"0.000000312"
    )


def test_execution_filled() -> None:
    ex = execution(
        ExecType.TRADE,
        OrdStatus.FILLED,
        cum_qty=4,
        leaves_qty=0,
        notional=4 * 108_330,
        last_qty=4,
        last_px=108_330,
    )
    fields = body_fields(outbound(b"8", execution_body(ex, EURUSD, TRANSACT_TIME)))
    assert (fields[6], fields[14], fields[39], fields[150], fields[151]) == (
        b"1.0833",
        b"4000",
        b"2",
        b"F",
        b"0",
    )


def test_execution_canceled_after_replace() -> None:
    ex = execution(
        ExecType.CANCELED,
        OrdStatus.CANCELED,
        cum_qty=1,
        leaves_qty=0,
        notional=108_320,
        orig_cl_ord_id="C0",
        text="not marketable",
    )
    fields = body_fields(outbound(b"8", execution_body(ex, EURUSD, TRANSACT_TIME)))
    assert (fields[39], fields[41], fields[58], fields[150], fields[151]) == (
        b"4",
        b"C0",
        b"not marketable",
        b"4",
        b"0",
    )
    assert 31 not in fields
    assert 32 not in fields
    assert 103 not in fields


def test_execution_rejected_market_order() -> None:
    ex = execution(
        ExecType.REJECTED,
        OrdStatus.REJECTED,
        leaves_qty=0,
        ord_type=OrdType.MARKET,
        price=None,
        text="Duplicate ClOrdID",
        ord_rej_reason=OrdRejReason.DUPLICATE_ORDER,
    )
    fields = body_fields(outbound(b"8", execution_body(ex, EURUSD, TRANSACT_TIME)))
    assert (fields[39], fields[40], fields[58], fields[103], fields[150]) == (
        b"8",
        b"1",
        b"Duplicate ClOrdID",
        b"6",
        b"8",
    )
    assert 44 not in fields


def test_execution_fractional_lots() -> None:
    ex = execution(
        ExecType.TRADE,
        OrdStatus.PARTIALLY_FILLED,
        cum_qty=250,
        leaves_qty=1750,
        notional=250 * 128_001,
        last_qty=250,
        last_px=128_001,
        price=128_001,
        qty=2000,
        instrument=BTCUSD,
    )
    fields = body_fields(outbound(b"8", execution_body(ex, BTCUSD, TRANSACT_TIME)))
    assert (fields[6], fields[14], fields[31], fields[32], fields[38], fields[44], fields[151]) == (
        b"64000.5",
        b"0.25",
        b"64000.5",
        b"0.25",
        b"2",
        b"64000.5",
        b"1.75",
    )


# --------------------------------------------------------------------------
# OrderCancelReject


def test_cancel_reject_for_unknown_order() -> None:
    cr = CancelReject(
        client="CLIENT1",
        cl_ord_id="C2",
        orig_cl_ord_id="C1",
        order_id=None,
        status=OrdStatus.REJECTED,
        reason=CxlRejReason.UNKNOWN_ORDER,
        response_to=CxlRejResponseTo.CANCEL,
        text="Unknown order",
    )
    fields = body_fields(outbound(b"9", cancel_reject_body(cr, TRANSACT_TIME)))
    assert fields == {
        11: b"C2",
        37: b"NONE",
        39: b"8",
        41: b"C1",
        58: b"Unknown order",
        60: TRANSACT_TIME,
        102: b"1",
        434: b"1",
    }


def test_cancel_reject_for_replace_without_text() -> None:
    cr = CancelReject(
        client="CLIENT1",
        cl_ord_id="C3",
        orig_cl_ord_id="C1",
        order_id="O3",
        status=OrdStatus.FILLED,
        reason=CxlRejReason.TOO_LATE_TO_CANCEL,
        response_to=CxlRejResponseTo.REPLACE,
    )
    fields = body_fields(outbound(b"9", cancel_reject_body(cr, TRANSACT_TIME)))
    assert (fields[37], fields[39], fields[102], fields[434]) == (b"O3", b"2", b"0", b"2")
    assert 58 not in fields


def test_the_most_ticks_a_price_may_be_is_taken() -> None:
    order = decode_new_order(new_order(price=b"10000000000"), "CLIENT1", INSTRUMENTS)
    assert not isinstance(order, Refusal)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exec_inst": b"1"},
        {"exec_inst": b"5 1"},
        {"min_qty": b"0"},
        {"min_qty": b"2000", "tif": b"4"},
    ],
)
def test_instructions_that_change_nothing_are_taken(overrides: dict[str, bytes]) -> None:
    """Not held, held, a MinQty of none, or one on a fill-or-kill order
    (filled whole or not at all): worked as the order says."""
    assert isinstance(decode_new_order(new_order(**overrides), "CLIENT1", INSTRUMENTS), NewOrder)
