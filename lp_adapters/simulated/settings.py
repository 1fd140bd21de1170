"""The settings of a simulated LP (``[lps.settings]`` of an LP whose
adapter is ``simulated``, and ``[simulated]`` of ``fixgw lp-sim``) and the
rules across them; see :mod:`lp_adapters.simulated.adapter`.

A module of its own because msgspec reads a Struct's field types from its
class, which it cannot do for a class compiled to C: the simulator itself
is compiled, its settings are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

import msgspec

from config.checks import child_path
from config.schema import NonEmptyStr, PositiveDecimal
from router.model import Instrument

__all__ = ["SimulatedLpSettings", "check_settings"]

Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
MAX_DEPTH_LEVELS = 1000
"""The most levels a simulated LP quotes on a side."""


class SimulatedLpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The settings of one simulated LP (its config section).

    An LP built with a shared :class:`~lp_adapters.simulated.adapter.MarketModel`
    (the adapter's ``market`` argument) quotes around that market's mids;
    without one it builds a market of its own from ``seed``, ``start_mid``
    and ``walk_ticks``.  ``start_mid`` and ``walk_ticks`` belong to the
    shared market and must then be left at their defaults.
    """

    seed: int = 0
    """Seeds the LP's own decisions (last look, partial fills) and its own market."""
    spread_ticks: PositiveInt = 2
    """Best ask minus best bid, in ticks."""
    depth_levels: Annotated[int, msgspec.Meta(ge=1, le=MAX_DEPTH_LEVELS)] = 5
    """Levels quoted on each side (up to :data:`MAX_DEPTH_LEVELS`: each is
    built for every quote)."""
    level_qty_lots: PositiveInt = 10
    """Lots offered at each level."""
    level_step_ticks: PositiveInt = 1
    """Distance between neighbouring levels, in ticks."""
    quote_interval_ms: PositiveInt = 100
    """A quote for every symbol is published this often (and on every connect)."""
    latency_ms: NonNegativeInt = 0
    """Delay before a child order is answered; 0 answers on the next loop turn."""
    reject_probability: Probability = 0.0
    """Chance that a child order is rejected at last look."""
    partial_fill_probability: Probability = 0.0
    """Chance that only part of the top level is filled and the rest canceled."""
    symbols: Annotated[tuple[NonEmptyStr, ...], msgspec.Meta(min_length=1)] | None = None
    """Symbols quoted and traded; default every instrument the LP was given
    (with a shared market: every one of them the market has a mid for)."""
    start_mid: dict[str, PositiveDecimal] = {}
    """First mid per symbol in price units, written as decimal strings, on
    the symbol's tick grid (own market only)."""
    walk_ticks: NonNegativeInt = 1
    """Largest move of the mid per market step, in ticks (own market only)."""
    steps_market: bool | None = None
    """Step the market before each timed quote.  Default: true for an own
    market, false for a shared one (whose owner, or one chosen LP, steps it)."""
    statement_dir: str = "statements"
    """Folder of the LP's statement, a CSV file of its fills per UTC day
    (:mod:`lp_adapters.simulated.statement`); a relative path is taken in
    the gateway's ``data_dir`` (not the configuration file's folder).  ``""``:
    no statement."""


def check_settings(
    settings: SimulatedLpSettings, instruments: Mapping[str, Instrument]
) -> list[str]:
    """What the type cannot say: the symbols are configured instruments,
    each listed once, and there is one to quote; every start mid is for a
    symbol the LP quotes and lies on its tick grid.  One ``field: message``
    line per problem, paths relative to the settings table."""
    errors: list[str] = []
    if settings.symbols is None:
        quoted: tuple[str, ...] = tuple(instruments)
        if not quoted:
            errors.append("symbols: no instrument to quote")
    else:
        quoted = settings.symbols
        first_seen: dict[str, int] = {}
        for index, symbol in enumerate(quoted):
            if symbol in first_seen:
                other = f"symbols[{first_seen[symbol]}]"
                errors.append(f"symbols[{index}]: duplicate symbol {symbol} (also {other})")
                continue
            first_seen[symbol] = index
            if symbol not in instruments:
                errors.append(f"symbols[{index}]: no such instrument {symbol}")
    for symbol, mid in settings.start_mid.items():
        path = child_path("start_mid", symbol)
        instrument = instruments.get(symbol)
        if instrument is None:
            errors.append(f"{path}: no such instrument {symbol}")
        elif symbol not in quoted:
            errors.append(f"{path}: {symbol} is not among the symbols this LP quotes")
        elif not _on_grid(mid, instrument.tick_size):
            errors.append(f"{path}: must be a multiple of the tick size {instrument.tick_size}")
    return errors


def _on_grid(price: Decimal, tick: Decimal) -> bool:
    try:
        return price % tick == 0
    except ArithmeticError:  # the quotient has more digits than the context holds
        return False
