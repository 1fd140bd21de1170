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

Each leg of a trade is rounded to its currency's minor units before legs
are netted, as a confirmation states it: the quote amount of 1,000 EUR/USD
at 1.123456 is 1,123.46 USD, that of 1,000 USD/JPY at 150.5055 is 150,506 JPY.
Rounding is half away from zero (what both ledgers' ``round`` do).  Minor
units are ISO 4217's for the currencies in :data:`MINOR_UNITS`, with
the usual precision of the coins listed there; ``[backoffice] minor_units``
adds or overrides codes; a code known to neither (an index's units, a metal
in ounces) keeps the ledger's 8 decimals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from config import InstrumentSettings

__all__ = ["DEFAULT_DAYS", "LEDGER_DECIMALS", "MINOR_UNITS", "Settlement", "SettlementTerms"]

DEFAULT_DAYS: Final = {"fx": 2, "metal": 2, "crypto": 0, "index": 0, "commodity": 0}

LEDGER_DECIMALS: Final = 8
"""Decimals the ledger keeps: an amount in a code with no minor units
known is not rounded any further."""

_ZERO: Final = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE: Final = "BHD IQD JOD KWD LYD OMR TND"
_TWO: Final = (
    "AED ARS AUD BGN BRL CAD CHF CNH CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR "
    "KES KZT MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON RSD RUB SAR SEK SGD THB "
    "TRY TWD UAH USD ZAR"
)
MINOR_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    # coins: the precision their networks and venues settle in, as far as
    # the ledger's 8 decimals go
    **dict.fromkeys(["BTC", "ETH", "LTC", "BCH", "SOL"], 8),
    **dict.fromkeys(["USDT", "USDC"], 6),
}
"""Decimals of a currency's smallest unit: ISO 4217's exponent for the
currencies listed, the usual settlement precision for the coins."""


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

    def __init__(
        self,
        instruments: Iterable[InstrumentSettings],
        minor_units: Mapping[str, int] | None = None,
    ) -> None:
        self.minor_units: dict[str, int] = {**MINOR_UNITS, **(minor_units or {})}
        """Decimals each code's amounts are rounded to (a code not here: 8)."""
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
