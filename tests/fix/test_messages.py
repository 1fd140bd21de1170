"""The order-entry message builders: the fields they write, the arguments
they refuse, and that what they build passes the FIX 4.4 validation a
session applies and decodes in the gateway's order entry as meant."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.fix import codec, new_order_single, order_cancel_request
from gateway.fix.codec import FixMessage
from gateway.fix.dictionary import fix44
from gateway.fix.validation import ValidationOptions, Validator
from gateway.orderflow.mapping import decode_cancel, decode_new_order
from matcher.engine import CancelOrder, NewOrder
from router.model import AssetClass, Instrument, OrdType, Side, TimeInForce

NOW = 1_764_064_800.125  # 2025-11-25 10:00:00.125 UTC
VALIDATOR = Validator(fix44(), ValidationOptions())
EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal("1000"),
    min_lots=1,
    max_lots=10_000,
    quote_currency="USD",
)


def as_received(msg_type: bytes, body: bytes) -> FixMessage:
    """The message as the gateway's session reads it, with a client's header."""
    header = [(34, b"2"), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(NOW)), (56, b"GATEWAY")]
    return codec.parse_frame(codec.encode_message(b"FIX.4.4", msg_type, header, body))


def fields(body: bytes) -> list[tuple[int, bytes]]:
    return [(int(t), v) for t, _, v in (f.partition(b"=") for f in body.split(b"\x01")[:-1])]


def test_a_market_order_carries_what_fix_44_asks_for() -> None:
    msg_type, body = new_order_single("A1", "EUR/USD", "buy", 1000, transact_time=NOW)
    assert msg_type == b"D"
    assert fields(body) == [
        (11, b"A1"),
        (38, b"1000"),
        (40, b"1"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (59, b"0"),
        (60, b"20251125-10:00:00.125"),
    ]


def test_a_limit_order_carries_its_price_exactly() -> None:
    _, body = new_order_single(
        "L1",
        "EUR/USD",
        "sell",
        "2000",
        ord_type="limit",
        price=Decimal("1.08515"),
        time_in_force="gtc",
        transact_time=NOW,
    )
    assert fields(body) == [
        (11, b"L1"),
        (38, b"2000"),
        (40, b"2"),
        (44, b"1.08515"),
        (54, b"2"),
        (55, b"EUR/USD"),
        (59, b"1"),
        (60, b"20251125-10:00:00.125"),
    ]


@pytest.mark.parametrize(
    ("qty", "wire"),
    [
        (1000, b"1000"),
        ("0.001", b"0.001"),
        (Decimal("1E+3"), b"1000"),
        (Decimal("2.50"), b"2.50"),
        ("7.", b"7"),
        (".5", b"0.5"),
    ],
)
def test_quantities_are_written_without_exponent(qty: Any, wire: bytes) -> None:
    _, body = new_order_single("Q", "EUR/USD", "buy", qty, transact_time=NOW)
    assert dict(fields(body))[38] == wire


def test_a_cancel_names_the_order_and_has_an_id_of_its_own() -> None:
    msg_type, body = order_cancel_request("C1", "A1", "EUR/USD", "buy", transact_time=NOW)
    assert msg_type == b"F"
    assert fields(body) == [
        (11, b"C1"),
        (41, b"A1"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (60, b"20251125-10:00:00.125"),
    ]
    _, body = order_cancel_request("C2", "A1", "EUR/USD", "sell", qty=1000, transact_time=NOW)
    assert dict(fields(body))[38] == b"1000"


BUILT = [
    new_order_single("A1", "EUR/USD", "buy", 1000, transact_time=NOW),
    new_order_single("A2", "EUR/USD", "sell", "5000", time_in_force="ioc", transact_time=NOW),
    new_order_single(
        "A3", "EUR/USD", "buy", 1000, ord_type="limit", price="1.1", transact_time=NOW
    ),
    new_order_single("A4", "EUR/USD", "buy", 1000, time_in_force="fok", transact_time=NOW),
    order_cancel_request("C1", "A3", "EUR/USD", "buy", transact_time=NOW),
    order_cancel_request("C2", "A3", "EUR/USD", "buy", qty=1000, transact_time=NOW),
]


@pytest.mark.parametrize("built", BUILT)
def test_what_is_built_passes_the_sessions_validation(built: tuple[bytes, bytes]) -> None:
    msg = as_received(*built)
    assert VALIDATOR.validate(msg) is None
    # the full check too, not only the fast accept path
    assert VALIDATOR.validate_full(msg) is None


def test_the_gateways_order_entry_reads_an_order_as_it_was_meant() -> None:
    limit = new_order_single(
        "L1",
        "EUR/USD",
        "sell",
        "2000",
        ord_type="limit",
        price="1.08515",
        time_in_force="gtc",
        transact_time=NOW,
    )
    order = decode_new_order(as_received(*limit), "CLIENT1", {"EUR/USD": EURUSD})
    assert isinstance(order, NewOrder)
    assert (order.cl_ord_id, order.symbol, order.side) == ("L1", "EUR/USD", Side.SELL)
    assert (order.ord_type, order.tif) == (OrdType.LIMIT, TimeInForce.GTC)
    assert (order.qty, order.price) == (2, 108515)  # lots and ticks
    market = new_order_single("M1", "EUR/USD", "buy", 1000, transact_time=NOW)
    order = decode_new_order(as_received(*market), "CLIENT1", {"EUR/USD": EURUSD})
    assert isinstance(order, NewOrder)
    assert (order.ord_type, order.side, order.price) == (OrdType.MARKET, Side.BUY, None)
    cancel = order_cancel_request("C1", "L1", "EUR/USD", "sell", transact_time=NOW)
    assert decode_cancel(as_received(*cancel), "CLIENT1") == CancelOrder(
        client="CLIENT1", cl_ord_id="C1", orig_cl_ord_id="L1"
    )


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"cl_ord_id": ""}, "ClOrdID must not be empty"),
        ({"cl_ord_id": "A\x011"}, "ClOrdID must be printable ASCII"),
        ({"cl_ord_id": "Ä1"}, "ClOrdID must be printable ASCII"),
        ({"symbol": ""}, "Symbol must not be empty"),
        ({"side": "short"}, "Side must be one of buy, sell: 'short'"),
        ({"qty": 0}, "OrderQty must be above zero"),
        ({"qty": "-5"}, "OrderQty must be a decimal number"),
        ({"qty": "1e3"}, "OrderQty must be a decimal number"),
        ({"qty": " 10"}, "OrderQty must be a decimal number"),
        ({"qty": Decimal("NaN")}, "OrderQty must be above zero"),
        ({"qty": Decimal("-1")}, "OrderQty must be above zero"),
        ({"ord_type": "stop"}, "OrdType must be one of market, limit"),
        ({"price": "1.1"}, "a market order takes no price"),
        ({"ord_type": "limit"}, "a limit order needs a price"),
        ({"ord_type": "limit", "price": "0"}, "Price must be above zero"),
        ({"time_in_force": "gtd"}, "TimeInForce must be one of day, gtc, ioc, fok"),
        ({"transact_time": float("nan")}, "TransactTime must be epoch seconds"),
        ({"transact_time": -1.0}, "TransactTime must be epoch seconds"),
    ],
)
def test_an_order_no_one_could_take_is_refused_before_it_is_built(
    kwargs: dict[str, Any], problem: str
) -> None:
    args: dict[str, Any] = {
        "cl_ord_id": "A1",
        "symbol": "EUR/USD",
        "side": "buy",
        "qty": 1000,
        "transact_time": NOW,
    }
    with pytest.raises(ValueError, match="^" + problem.replace("(", r"\(")):
        new_order_single(**(args | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"qty": 1000.0}, "a float is inexact"),
        ({"qty": True}, "not bool"),
        ({"price": 1.1, "ord_type": "limit"}, "a float is inexact"),
        ({"cl_ord_id": b"A1"}, "ClOrdID must be a str, not bytes"),
        ({"transact_time": "now"}, "TransactTime must be epoch seconds"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(kwargs: dict[str, Any], problem: str) -> None:
    args: dict[str, Any] = {
        "cl_ord_id": "A1",
        "symbol": "EUR/USD",
        "side": "buy",
        "qty": 1000,
        "transact_time": NOW,
    }
    with pytest.raises(TypeError, match=problem):
        new_order_single(**(args | kwargs))


def test_a_cancel_with_the_orders_own_id_is_refused() -> None:
    with pytest.raises(ValueError, match="a ClOrdID of its own"):
        order_cancel_request("A1", "A1", "EUR/USD", "buy", transact_time=NOW)
    with pytest.raises(ValueError, match="OrigClOrdID must not be empty"):
        order_cancel_request("C1", "", "EUR/USD", "buy", transact_time=NOW)
    with pytest.raises(ValueError, match="OrderQty must be above zero"):
        order_cancel_request("C1", "A1", "EUR/USD", "buy", qty="0", transact_time=NOW)
