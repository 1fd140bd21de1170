"""Ticks and lots written as FIX decimals, and conversions remembered.

A price is held as an integer number of its instrument's ticks and a
quantity as an integer number of its lots (:mod:`router.model`).  Every edge
that reports them -- the FIX order entry, the LP adapters, the LP simulator,
the operations API -- writes them with the functions here: integer
arithmetic only (no floats, no Decimal per call), in plain notation without
trailing zeros.  The average price is exact up to four places beyond the
tick size, rounded half to even.

Each instrument's number formats are worked out once and cached per symbol
(a new :class:`~router.model.Instrument` for a symbol starts afresh).
:func:`remembered` keeps the results of parsing the texts an edge receives
over and over.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Final, TypeVar

from router.model import Instrument

__all__ = [
    "Formats",
    "avg_px_bytes",
    "avg_px_text",
    "format_decimal",
    "instrument_formats",
    "price_bytes",
    "price_text",
    "qty_bytes",
    "qty_text",
    "remembered",
]

# Extra decimal places of AvgPx beyond the tick size.
_AVG_PX_EXTRA_PLACES: Final = 4

# How many conversions remembered() keeps per cache before starting afresh.
_CONVERSIONS_MAX: Final = 8192

# How many texts of prices (and of quantities) a Formats keeps before
# starting afresh.
_TEXTS_MAX: Final = 4096

T = TypeVar("T")


def _scaled(n: int, scale: int) -> bytes:
    """``n / 10**scale`` in plain notation, without trailing zeros after the
    decimal point (and without the point when nothing is left after it)."""
    if scale == 0 or n == 0:
        return b"%d" % n
    digits = b"%d" % abs(n)
    if len(digits) <= scale:
        digits = b"0" * (scale + 1 - len(digits)) + digits
    frac = digits[-scale:].rstrip(b"0")
    whole = digits[:-scale]
    if n < 0:
        whole = b"-" + whole
    return whole + b"." + frac if frac else whole


def _as_scaled(d: Decimal) -> tuple[int, int]:
    """``(n, scale)`` with ``d == n / 10**scale`` and ``scale >= 0``."""
    if not d.is_finite():
        raise ValueError(f"{d} is not a finite number")
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    n = int("".join(map(str, digits))) if digits else 0
    if sign:
        n = -n
    if exponent >= 0:
        return n * 10**exponent, 0
    return n, -exponent


def format_decimal(d: Decimal) -> bytes:
    """A decimal in plain notation: no exponent, no trailing zeros after the
    point, no point for a whole number (``1E+3`` -> ``1000``,
    ``1.08320`` -> ``1.0832``)."""
    return _scaled(*_as_scaled(d))


class Formats:
    """How one instrument's ticks and lots are written: a tick is
    ``tick_num / 10**tick_scale`` and a lot ``lot_num / 10**lot_scale``."""

    __slots__ = (
        "_prices",
        "_qtys",
        "avg_factor",
        "avg_scale",
        "instrument",
        "lot_num",
        "lot_scale",
        "tick_num",
        "tick_scale",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.tick_num, self.tick_scale = _as_scaled(instrument.tick_size)
        self.lot_num, self.lot_scale = _as_scaled(instrument.lot_size)
        self.avg_factor = self.tick_num * 10**_AVG_PX_EXTRA_PLACES
        self.avg_scale = self.tick_scale + _AVG_PX_EXTRA_PLACES
        # texts already written, per tick and per lot count, up to
        # _TEXTS_MAX each (then started afresh): an instrument trades at a
        # few prices and sizes at a time
        self._prices: dict[int, bytes] = {}
        self._qtys: dict[int, bytes] = {}

    def price(self, ticks: int) -> bytes:
        """``ticks`` as a decimal price."""
        prices = self._prices
        text = prices.get(ticks)
        if text is None:
            if len(prices) >= _TEXTS_MAX:
                prices.clear()
            text = prices[ticks] = _scaled(ticks * self.tick_num, self.tick_scale)
        return text

    def qty(self, lots: int) -> bytes:
        """``lots`` as a quantity in units."""
        qtys = self._qtys
        text = qtys.get(lots)
        if text is None:
            if len(qtys) >= _TEXTS_MAX:
                qtys.clear()
            if self.lot_scale == 0:
                text = b"%d" % (lots * self.lot_num)
            else:
                text = _scaled(lots * self.lot_num, self.lot_scale)
            qtys[lots] = text
        return text

    def avg_px(self, notional: int, cum_qty: int) -> bytes:
        """``notional / cum_qty`` ticks as a price, rounded half to even to
        four places beyond the tick size."""
        if cum_qty == 0:
            return b"0"
        ticks, rest = divmod(notional, cum_qty)
        if rest == 0:
            return self.price(ticks)
        q, r = divmod(notional * self.avg_factor, cum_qty)
        twice = 2 * r
        if twice > cum_qty or (twice == cum_qty and q & 1):
            q += 1
        return _scaled(q, self.avg_scale)


_FORMATS: dict[str, Formats] = {}


def instrument_formats(instrument: Instrument) -> Formats:
    """The :class:`Formats` of ``instrument``, cached per symbol."""
    fmt = _FORMATS.get(instrument.symbol)
    if fmt is None or fmt.instrument is not instrument:
        fmt = _FORMATS[instrument.symbol] = Formats(instrument)
    return fmt


def price_bytes(instrument: Instrument, ticks: int) -> bytes:
    """``ticks`` of ``instrument`` as a decimal price, as FIX writes it."""
    return instrument_formats(instrument).price(ticks)


def qty_bytes(instrument: Instrument, lots: int) -> bytes:
    """``lots`` of ``instrument`` as a quantity in units, as FIX writes it."""
    return instrument_formats(instrument).qty(lots)


def price_text(instrument: Instrument, ticks: int) -> str:
    """``price_bytes`` as text."""
    return instrument_formats(instrument).price(ticks).decode()


def qty_text(instrument: Instrument, lots: int) -> str:
    """``qty_bytes`` as text."""
    return instrument_formats(instrument).qty(lots).decode()


def avg_px_bytes(instrument: Instrument, notional: int, cum_qty: int) -> bytes:
    """AvgPx (6) of ``cum_qty`` lots filled for ``notional`` (ticks x lots)."""
    return instrument_formats(instrument).avg_px(notional, cum_qty)


def avg_px_text(instrument: Instrument, notional: int, cum_qty: int) -> str:
    """``avg_px_bytes`` as text."""
    return instrument_formats(instrument).avg_px(notional, cum_qty).decode()


def remembered(
    cache: dict[tuple[bytes, str], tuple[Instrument, T]],
    raw: bytes,
    instrument: Instrument,
    convert: Callable[[bytes, Instrument], T],
) -> T:
    """``convert(raw, instrument)``, remembered in ``cache`` per (text,
    symbol) with the instrument it was made for, up to 8192 entries (then
    the cache starts afresh); what ``convert`` raises is not remembered."""
    key = (raw, instrument.symbol)
    hit = cache.get(key)
    if hit is not None and hit[0] is instrument:
        return hit[1]
    value = convert(raw, instrument)
    if len(cache) >= _CONVERSIONS_MAX:
        cache.clear()
    cache[key] = (instrument, value)
    return value
