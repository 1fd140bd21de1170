"""The settings of a simulated LP (``[lps.settings]`` of an LP whose
adapter is ``simulated``, and ``[simulated]`` of ``fixgw lp-sim``); see
:mod:`lp_adapters.simulated.adapter`.

A module of its own because msgspec reads a Struct's field types from its
class, which it cannot do for a class compiled to C: the simulator itself
is compiled, its settings are not.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class SimulatedLpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The settings of one simulated LP (its config section).

    Besides these keys the settings mapping may hold ``market``: a
    :class:`MarketModel` object shared with other simulated LPs.  Without it
    the LP builds a market of its own from ``seed``, ``start_mid`` and
    ``walk_ticks``; with it, ``start_mid`` and ``walk_ticks`` belong to the
    shared market and must not be given.
    """

    seed: int = 0
    """Seeds the LP's own decisions (last look, partial fills) and its own market."""
    spread_ticks: PositiveInt = 2
    """Best ask minus best bid, in ticks."""
    depth_levels: PositiveInt = 5
    """Levels quoted on each side."""
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
    symbols: tuple[str, ...] | None = None
    """Symbols quoted and traded; default every instrument the LP was given
    (with a shared market: every one of them the market has a mid for)."""
    start_mid: dict[str, str] = {}
    """First mid per symbol in price units, as decimal strings (own market only)."""
    walk_ticks: NonNegativeInt = 1
    """Largest move of the mid per market step, in ticks (own market only)."""
    steps_market: bool | None = None
    """Step the market before each timed quote.  Default: true for an own
    market, false for a shared one (whose owner, or one chosen LP, steps it)."""
