"""Instruments, quotes and books for the routing tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction

from router.book import AggregatedBook, BookSnapshot
from router.model import AssetClass, Instrument, Level, Quote

Levels = Iterable[tuple[int, int]]


def instrument(
    symbol: str,
    usd_conversion: str = "quote",
    tick_size: str = "0.00001",
    lot_size: str = "1",
    quote_currency: str = "USD",
) -> Instrument:
    return Instrument(
        symbol=symbol,
        asset_class=AssetClass.FX,
        tick_size=Decimal(tick_size),
        lot_size=Decimal(lot_size),
        min_lots=1,
        max_lots=10**9,
        quote_currency=quote_currency,
        usd_conversion=usd_conversion,
    )


# One lot of USD/JPY is 1000 USD whatever the price: exposure numbers stay round.
USDJPY = instrument("USD/JPY", "base", tick_size="0.001", lot_size="1000", quote_currency="JPY")
EURUSD = instrument("EUR/USD", "quote", tick_size="0.00001", lot_size="1000")
GBPUSD = instrument("GBP/USD", "quote", tick_size="0.00001", lot_size="1000")
EURGBP = instrument(
    "EUR/GBP", "GBP/USD", tick_size="0.00001", lot_size="1000", quote_currency="GBP"
)
EURJPY = instrument("EUR/JPY", "USD/JPY", tick_size="0.001", lot_size="1000", quote_currency="JPY")

INSTRUMENTS = {i.symbol: i for i in (USDJPY, EURUSD, GBPUSD, EURGBP, EURJPY)}


def quote(lp: str, symbol: str, bids: Levels = (), asks: Levels = (), time: float = 0.0) -> Quote:
    return Quote(
        lp=lp,
        symbol=symbol,
        bids=tuple(Level(price, qty) for price, qty in bids),
        asks=tuple(Level(price, qty) for price, qty in asks),
        time=time,
    )


def book_with(*quotes: Quote) -> AggregatedBook:
    book = AggregatedBook()
    for q in quotes:
        book.update(q)
    return book


def snapshot_of(*quotes: Quote) -> BookSnapshot:
    snap = book_with(*quotes).snapshot(quotes[0].symbol)
    assert snap is not None
    return snap


class FixedPrices:
    """A price source with fixed mids (in ticks)."""

    def __init__(self, mids: Mapping[str, int | Fraction]) -> None:
        self._mids = {symbol: Fraction(mid) for symbol, mid in mids.items()}

    def mid(self, symbol: str) -> Fraction | None:
        return self._mids.get(symbol)
