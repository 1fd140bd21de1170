"""Instruments, books and order shorthands for the matcher tests."""

from __future__ import annotations

from decimal import Decimal

from matcher.engine import CancelOrder, Matcher, NewOrder, ReplaceOrder, Result
from matcher.execution import Execution
from matcher.orders import ExecType
from router.book import AggregatedBook, BookSnapshot
from router.model import AssetClass, Instrument, Level, OrdType, Quote, Side, TimeInForce

EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal("1000"),
    min_lots=1,
    max_lots=1000,
    quote_currency="USD",
)
SYMBOL = EURUSD.symbol
INSTRUMENTS = {SYMBOL: EURUSD}

BUY = Side.BUY
SELL = Side.SELL
DAY = TimeInForce.DAY
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK


def matcher(*, internal_crossing: bool = True) -> Matcher:
    return Matcher(INSTRUMENTS, internal_crossing=internal_crossing, id_prefix="T")


def book(
    bids: tuple[tuple[int, int], ...] = (),
    asks: tuple[tuple[int, int], ...] = (),
    lp: str = "lp1",
) -> BookSnapshot:
    agg = AggregatedBook()
    agg.update(
        Quote(
            lp=lp,
            symbol=SYMBOL,
            bids=tuple(Level(p, q) for p, q in bids),
            asks=tuple(Level(p, q) for p, q in asks),
            time=0.0,
        )
    )
    snap = agg.snapshot(SYMBOL)
    assert snap is not None
    return snap


def limit(
    client: str,
    cl_ord_id: str,
    side: Side,
    qty: int,
    price: int,
    tif: TimeInForce = DAY,
    symbol: str = SYMBOL,
) -> NewOrder:
    return NewOrder(client, cl_ord_id, symbol, side, OrdType.LIMIT, tif, qty, price)


def market(client: str, cl_ord_id: str, side: Side, qty: int, tif: TimeInForce = IOC) -> NewOrder:
    return NewOrder(client, cl_ord_id, SYMBOL, side, OrdType.MARKET, tif, qty)


def cancel(client: str, cl_ord_id: str, orig: str) -> CancelOrder:
    return CancelOrder(client, cl_ord_id, orig)


def replace(
    client: str, cl_ord_id: str, orig: str, qty: int, price: int | None = None
) -> ReplaceOrder:
    return ReplaceOrder(client, cl_ord_id, orig, qty, price)


def kinds(result: Result) -> list[tuple[str, ExecType]]:
    """``(client, ExecType)`` of each execution, in order."""
    return [(e.client, e.exec_type) for e in result.executions]


def only(result: Result, exec_type: ExecType) -> Execution:
    found = [e for e in result.executions if e.exec_type is exec_type]
    assert len(found) == 1, result
    return found[0]
