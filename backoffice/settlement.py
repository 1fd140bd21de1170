"""Value dates and settlement amounts.  Pure.

A trade's value date is its trade date plus the instrument's settlement days
(``[[instruments]] settlement_days``; by default fx and metal 2, spot, and
crypto, index and commodity 0).  Days are business days, Saturday and Sunday
skipped, for every asset class but crypto, which settles on calendar days.
Public holidays are not known: a value date that falls on one must be moved
by the operator's own calendar.  A trade in a symbol the config does not
list (another gateway's, or one added to the gateway's config and not yet
to the back office's) settles on its trade date, in the currencies of its
name, and the back office names the symbol in its log.

A trade moves two amounts between the house and a counterparty: the base
(what is bought: EUR of EUR/USD and of EURUSD, or units of an index or a
commodity such as US500) and the quote currency (quantity x price).  Amounts are the
house's: positive when the house receives, negative when it pays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final

import msgspec

from config import InstrumentSettings

__all__ = ["DEFAULT_DAYS", "Settlement", "SettlementTerms"]

DEFAULT_DAYS: Final = {"fx": 2, "metal": 2, "crypto": 0, "index": 0, "commodity": 0}


class SettlementTerms(msgspec.Struct, frozen=True):
    base: str
    quote: str
    days: int
    calendar_days: bool


_PAIRS: Final = frozenset({"fx", "metal", "crypto"})
"""Asset classes whose symbols name two currencies (or a metal or coin and a currency)."""


def _base(inst: InstrumentSettings) -> str:
    """What a trade in ``inst`` buys: the part of its symbol before the ``/``;
    of a pair written without one (``EURUSD``, ``XAUUSD``), the part before
    its quote currency; else (an index, a commodity) the symbol itself."""
    base, slash, _ = inst.symbol.partition("/")
    if slash:
        return base
    symbol, quote = inst.symbol, inst.quote_currency
    if inst.asset_class in _PAIRS and len(symbol) > len(quote) and symbol.endswith(quote):
        return symbol.removesuffix(quote).rstrip("-_. ") or symbol
    return symbol


class Settlement:
    """Value dates and currencies per symbol, from the configured instruments."""

    def __init__(self, instruments: Iterable[InstrumentSettings]) -> None:
        self.terms: dict[str, SettlementTerms] = {}
        for inst in instruments:
            days = inst.settlement_days
            if days is None:
                days = DEFAULT_DAYS[inst.asset_class]
            self.terms[inst.symbol] = SettlementTerms(
                base=_base(inst),
                quote=inst.quote_currency,
                days=days,
                calendar_days=inst.asset_class == "crypto",
            )
        self._dates: dict[tuple[str, str], str] = {}

    def value_date(self, symbol: str, trade_date: str) -> str:
        """The value date (``YYYY-MM-DD``) of a trade in ``symbol`` made on
        ``trade_date`` (``YYYY-MM-DD``; an unknown symbol settles on its
        trade date)."""
        key = (symbol, trade_date)
        known = self._dates.get(key)
        if known is not None:
            return known
        terms = self.terms.get(symbol)
        day = dt.date.fromisoformat(trade_date)
        if terms is not None:
            if terms.calendar_days:
                day += dt.timedelta(days=terms.days)
            else:
                left = terms.days
                while day.weekday() >= 5:  # a trade on a weekend counts from Monday
                    day += dt.timedelta(days=1)
                while left:
                    day += dt.timedelta(days=1)
                    if day.weekday() < 5:
                        left -= 1
        if len(self._dates) > 100_000:
            self._dates.clear()
        text = self._dates[key] = day.isoformat()
        return text

    def currencies(self, symbol: str) -> tuple[str, str]:
        """(base, quote) of ``symbol``; those of an unknown one's name
        (``GBP/JPY``: GBP and JPY; ``US500``: itself, quoted in USD)."""
        terms = self.terms.get(symbol)
        if terms is None:
            base, slash, quote = symbol.partition("/")
            return base, quote if slash else "USD"
        return terms.base, terms.quote
