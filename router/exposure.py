"""The exposure ledger: net positions per LP and per client, from fills only.

Sign convention
---------------
Every position is a signed number of lots, long positive.

* A client's position is the client's own: a client BUY fill adds ``+qty``.
* An LP position is the gateway's position *against that LP*: it grows by
  ``+qty`` when the gateway BUYS from the LP.  The gateway hedges each client
  fill with the LP on the same side as the client (the client buys from us,
  we buy from the LP, the LP sells), so a client BUY fill of ``qty`` routed
  to an LP adds ``+qty`` to both the client's and that LP's position.

Valuation
---------
The USD value of a position is ``|lots| x`` :meth:`ExposureLedger.lot_value_usd`,
computed with :class:`~decimal.Decimal` from the instrument's
``usd_conversion``:

* ``"quote"`` (EUR/USD): ``lot_size x price``;
* ``"base"`` (USD/JPY): ``lot_size``;
* any other value names the conversion symbol.  If that symbol is itself
  quoted in USD (GBP/USD for EUR/GBP) the value is
  ``lot_size x price x price(conversion)``; if USD is its base (USD/JPY for
  EUR/JPY) the quote currency is converted by dividing:
  ``lot_size x price / price(conversion)``.

A price is the mid from the :class:`PriceSource` handed in, else the last
fill price the ledger saw for that symbol (of a trade: the booking of an
LP's bust or correction, which restates an earlier trade, leaves it).  A
symbol with neither cannot be valued; an LP holding a position in it has
no gross notional in the snapshot (it is listed in
:attr:`ExposureSnapshot.unvalued_lps`) and the router treats it as having
no headroom.

The gross notional of an LP is the sum over symbols of its positions' USD
values, each taken as an absolute value: a long in one symbol does not offset
a short in another.  Child orders sent to an LP and not yet answered
(:meth:`ExposureLedger.reserve`) count in its gross notional as if they
could still fill in the direction that adds to it (the worst case), so that
orders routed before earlier ones have filled cannot take an LP past its hard
limit together.

Two ways to read it
-------------------
* :meth:`ExposureLedger.snapshot` values everything at the prices handed in,
  now: O(#LPs x #symbols), for one-off reads and tests.
* :meth:`ExposureLedger.current` is what the order path reads once or twice
  per order.  It values lots at the prices of the last
  :meth:`ExposureLedger.mark` and is rebuilt only for the LPs whose positions
  or reservations changed since the previous call; with nothing changed it
  returns the same snapshot object.  Positions and reservations are always
  exact and current; only the USD value of a lot may be as old as the last
  mark.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Protocol

import msgspec

from router.members import BUY
from router.model import Instrument, Side

__all__ = ["ExposureLedger", "ExposureSnapshot", "PriceSource"]

_ZERO = Decimal(0)


class PriceSource(Protocol):
    """Anything that can tell the current mid of a symbol in its ticks
    (:class:`router.book.AggregatedBook` is one)."""

    def mid(self, symbol: str) -> Fraction | None: ...


_EMPTY: Mapping[str, int] = MappingProxyType({})


def _no_positions() -> Mapping[str, Mapping[str, int]]:
    return MappingProxyType({})


def _no_values() -> Mapping[str, Decimal]:
    return MappingProxyType({})


class ExposureSnapshot(msgspec.Struct, frozen=True, gc=False):
    """An immutable view of the LPs' exposure, valued at one set of prices.

    ``lp_positions[lp][symbol]`` is the gateway's signed position in lots
    against each LP (flat positions are absent).  ``usd_per_lot[symbol]`` is
    the USD value of one lot (always >= 0) for every instrument that could be
    valued; ``lp_gross_usd[lp]`` the gross notional, child orders in flight
    included, of each LP with exposure whose every symbol could be valued;
    LPs with exposure in an unvalued symbol are in ``unvalued_lps`` instead.
    ``lp_reserved[lp][symbol]`` is the lots of child orders in flight at
    each LP (none: absent).  Client positions are not part of it: the risk
    check reads them from the ledger.
    """

    lp_positions: Mapping[str, Mapping[str, int]] = msgspec.field(default_factory=_no_positions)
    lp_gross_usd: Mapping[str, Decimal] = msgspec.field(default_factory=_no_values)
    usd_per_lot: Mapping[str, Decimal] = msgspec.field(default_factory=_no_values)
    unvalued_lps: frozenset[str] = frozenset()
    lp_reserved: Mapping[str, Mapping[str, int]] = msgspec.field(default_factory=_no_positions)

    def lp_position(self, lp: str, symbol: str) -> int:
        positions = self.lp_positions.get(lp)
        return 0 if positions is None else positions.get(symbol, 0)

    def gross_usd(self, lp: str) -> Decimal | None:
        """Gross notional of ``lp`` in USD; 0 if flat, None if it cannot be valued."""
        if lp in self.unvalued_lps:
            return None
        return self.lp_gross_usd.get(lp, _ZERO)


def _non_flat(positions: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    out = {}
    for owner, by_symbol in positions.items():
        held = {symbol: lots for symbol, lots in by_symbol.items() if lots}
        if held:
            out[owner] = held
    return out


def _gross(
    filled: dict[str, int] | None, reserved: dict[str, int] | None, per_lot: dict[str, Decimal]
) -> Decimal | None:
    """USD gross notional of one LP's positions (None: none) plus its lots
    in flight (None: none); None if a symbol it is exposed in has no value.
    (Plain dicts: compiled code reads them without a method call.)"""
    total = _ZERO
    if filled is not None:
        for symbol, lots in filled.items():
            lots = abs(lots)
            if reserved is not None:
                lots += reserved.get(symbol, 0)
            value = per_lot.get(symbol)
            if value is None:
                return None
            total += lots * value
    if reserved is not None:
        for symbol, lots in reserved.items():
            if not lots or (filled is not None and symbol in filled):
                continue
            value = per_lot.get(symbol)
            if value is None:
                return None
            total += lots * value
    return total


class ExposureLedger:
    """Net positions per LP and per client, per symbol, updated from fills,
    and the lots of child orders in flight at each LP.

    The order path is the only writer.  It is also the one that makes fills
    idempotent (an ``exec_id`` seen before is not applied again); the ledger
    applies whatever it is given.
    """

    __slots__ = (
        "_clients",
        "_current",
        "_dirty",
        "_gross",
        "_instruments",
        "_last_price",
        "_lp_views",
        "_lps",
        "_per_lot",
        "_reserved",
        "_reserved_views",
        "_unvalued",
        "_values",
    )

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._instruments = dict(instruments)
        self._lps: dict[str, dict[str, int]] = {}
        self._clients: dict[str, dict[str, int]] = {}
        self._reserved: dict[str, dict[str, int]] = {}
        self._last_price: dict[str, int] = {}
        # what current() hands out, replaced (never mutated) on change
        self._values: dict[str, Decimal] = {}  # the dict _per_lot shows
        self._per_lot: Mapping[str, Decimal] = MappingProxyType(self._values)
        self._lp_views: dict[str, Mapping[str, int]] = {}
        self._reserved_views: dict[str, Mapping[str, int]] = {}
        self._gross: dict[str, Decimal] = {}
        self._unvalued: frozenset[str] = frozenset()
        self._dirty: set[str] = set()
        self._current: ExposureSnapshot | None = None

    # --- writes ------------------------------------------------------------------

    def apply_fill(
        self,
        lp: str,
        client: str,
        symbol: str,
        side: Side,
        qty: int,
        price: int,
        traded: bool = True,
    ) -> None:
        """Book a fill of ``qty`` lots at ``price`` ticks; ``side`` is the
        client's.  ``traded`` false for a booking that restates a trade made
        earlier (an LP's bust or correction of it): the symbol's last fill
        price stays that of the latest trade."""
        if qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty}")
        signed = qty if side is BUY else -qty
        _add(self._lps, lp, symbol, signed)
        _add(self._clients, client, symbol, signed)
        if traded:
            self._last_price[symbol] = price
        self._dirty.add(lp)
        self._current = None

    def apply_cross(self, client: str, symbol: str, side: Side, qty: int, price: int) -> None:
        """Book a client's fill against another client (an internal cross):
        the client's position moves, no LP's does."""
        if qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty}")
        _add(self._clients, client, symbol, qty if side is BUY else -qty)
        self._last_price[symbol] = price

    def price(self, symbol: str, prices: PriceSource) -> Decimal | None:
        """The price ``symbol`` is valued at: the mid, else the last fill."""
        instrument = self._instruments.get(symbol)
        return None if instrument is None else self._price(instrument, prices)

    def quoted_price(self, symbol: str, prices: PriceSource) -> Decimal | None:
        """The mid of ``symbol`` as a price, None while no LP quotes it (no
        fall back to the last fill)."""
        instrument = self._instruments.get(symbol)
        return None if instrument is None else _mid_price(instrument, prices)

    def reserve(self, lp: str, symbol: str, lots: int) -> None:
        """Count ``lots`` more (or, negative, fewer) of child orders in flight
        at ``lp`` in ``symbol``.  Raises ValueError if the count would go
        below zero."""
        left = self.reserved(lp, symbol) + lots
        if left < 0:
            raise ValueError(f"{lp} would have {left} lots of {symbol} in flight")
        _add(self._reserved, lp, symbol, lots)
        self._dirty.add(lp)
        self._current = None

    def load(
        self,
        lps: Mapping[str, Mapping[str, int]],
        clients: Mapping[str, Mapping[str, int]],
        last_price: Mapping[str, int],
    ) -> None:
        """Replace every position and last fill price with the given ones
        (what :meth:`positions` returned earlier); lots in flight are kept."""
        self._lps = _non_flat(lps)
        self._clients = _non_flat(clients)
        self._last_price = dict(last_price)
        self._dirty.update(self._lps, self._lp_views)
        self._current = None

    def set_client(self, client: str, positions: Mapping[str, int]) -> None:
        """Replace one client's positions (lots by symbol); no LP's moves
        (the client's fills were made elsewhere: another gateway of a
        cluster)."""
        held = {symbol: lots for symbol, lots in positions.items() if lots}
        if held:
            self._clients[client] = held
        else:
            self._clients.pop(client, None)

    def positions_of(self, client: str) -> dict[str, int]:
        """One client's positions in lots by symbol, flat ones left out (a copy)."""
        return dict(self._clients.get(client, {}))

    def positions(
        self,
    ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]], dict[str, int]]:
        """``(LP positions, client positions, last fill price per symbol)``,
        copies, for :meth:`load`."""
        return _non_flat(self._lps), _non_flat(self._clients), dict(self._last_price)

    def mark(self, prices: PriceSource) -> None:
        """Value one lot of every instrument at ``prices`` for :meth:`current`."""
        values = self._values = self._valuations(prices)
        self._per_lot = MappingProxyType(values)
        self._dirty.update(self._lps, self._reserved, self._lp_views)
        self._current = None

    # --- reads -------------------------------------------------------------------

    def lp_position(self, lp: str, symbol: str) -> int:
        positions = self._lps.get(lp)
        return 0 if positions is None else positions.get(symbol, 0)

    def client_position(self, client: str, symbol: str) -> int:
        positions = self._clients.get(client)
        return 0 if positions is None else positions.get(symbol, 0)

    def lp_positions(self) -> dict[str, dict[str, int]]:
        """Every LP's positions in lots by symbol, flat ones left out (a copy)."""
        return _non_flat(self._lps)

    def client_positions(self) -> dict[str, dict[str, int]]:
        """Every client's positions in lots by symbol, flat ones left out (a copy)."""
        return _non_flat(self._clients)

    def reserved(self, lp: str, symbol: str) -> int:
        """Lots of child orders in flight at ``lp`` in ``symbol``."""
        return self._reserved.get(lp, _EMPTY).get(symbol, 0)

    def is_marked(self, symbol: str) -> bool:
        """Whether the last :meth:`mark` could value ``symbol``."""
        return symbol in self._per_lot

    def lot_value_usd(self, symbol: str, prices: PriceSource) -> Decimal | None:
        """USD value of one lot of ``symbol`` (>= 0), None if it cannot be valued."""
        instrument = self._instruments.get(symbol)
        if instrument is None:
            return None
        conversion = instrument.usd_conversion
        if conversion == "base":
            return instrument.lot_size
        price = self._price(instrument, prices)
        if price is None:
            return None
        value = instrument.lot_size * price
        if conversion != "quote":
            via = self._instruments.get(conversion)
            if via is None:
                return None
            via_price = self._price(via, prices)
            if via_price is None:
                return None
            if via.usd_conversion == "quote":
                value *= via_price
            elif via.usd_conversion == "base" and via_price:
                value /= via_price
            else:
                return None
        return abs(value)

    def _price(self, instrument: Instrument, prices: PriceSource) -> Decimal | None:
        price = _mid_price(instrument, prices)
        if price is not None:
            return price
        last = self._last_price.get(instrument.symbol)
        return None if last is None else instrument.tick_size * last

    def _valuations(self, prices: PriceSource) -> dict[str, Decimal]:
        per_lot: dict[str, Decimal] = {}
        for symbol in self._instruments:
            value = self.lot_value_usd(symbol, prices)
            if value is not None:
                per_lot[symbol] = value
        return per_lot

    def gross_usd(self, lp: str, prices: PriceSource) -> Decimal | None:
        """Gross notional of ``lp`` in USD at ``prices`` (filled positions
        only); None if it cannot be valued."""
        return _gross(self._lps.get(lp), None, self._valuations(prices))

    def snapshot(self, prices: PriceSource) -> ExposureSnapshot:
        """Copy positions and value them, lots in flight included, at ``prices``.

        Costs O(#LPs x #symbols) plus one valuation per instrument; the order
        path reads :meth:`current` instead.
        """
        per_lot = self._valuations(prices)
        gross: dict[str, Decimal] = {}
        unvalued: set[str] = set()
        for lp in self._lps.keys() | self._reserved.keys():
            value = _gross(self._lps.get(lp), self._reserved.get(lp), per_lot)
            if value is None:
                unvalued.add(lp)
            else:
                gross[lp] = value
        return ExposureSnapshot(
            lp_positions=MappingProxyType(
                {lp: MappingProxyType(dict(by_symbol)) for lp, by_symbol in self._lps.items()}
            ),
            lp_gross_usd=MappingProxyType(gross),
            usd_per_lot=MappingProxyType(per_lot),
            unvalued_lps=frozenset(unvalued),
            lp_reserved=MappingProxyType(
                {lp: MappingProxyType(dict(lots)) for lp, lots in self._reserved.items()}
            ),
        )

    def current(self) -> ExposureSnapshot:
        """Positions and lots in flight as they are now, valued at the last
        :meth:`mark` (an LP exposed in a symbol the mark could not value is
        unvalued).  Rebuilt only for the LPs changed since the last call."""
        snap = self._current
        if snap is not None:
            return snap
        if self._dirty:
            views = dict(self._lp_views)
            in_flight = dict(self._reserved_views)
            gross = dict(self._gross)
            unvalued = set(self._unvalued)
            per_lot = self._values
            for lp in self._dirty:
                filled = self._lps.get(lp)
                if filled:
                    views[lp] = MappingProxyType(dict(filled))
                else:
                    views.pop(lp, None)
                reserved = self._reserved.get(lp)
                if reserved:
                    in_flight[lp] = MappingProxyType(dict(reserved))
                else:
                    in_flight.pop(lp, None)
                value = _gross(filled, reserved, per_lot)
                if value is None:
                    unvalued.add(lp)
                    gross.pop(lp, None)
                else:
                    unvalued.discard(lp)
                    gross[lp] = value
            self._dirty.clear()
            self._lp_views = views
            self._reserved_views = in_flight
            self._gross = gross
            self._unvalued = frozenset(unvalued)
        snap = self._current = ExposureSnapshot(
            MappingProxyType(self._lp_views),
            MappingProxyType(self._gross),
            self._per_lot,
            self._unvalued,
            MappingProxyType(self._reserved_views),
        )
        return snap


def _add(book: dict[str, dict[str, int]], owner: str, symbol: str, signed: int) -> None:
    by_symbol = book.get(owner)
    if by_symbol is None:
        if signed:
            book[owner] = {symbol: signed}
        return
    position = by_symbol.get(symbol, 0) + signed
    if position:
        by_symbol[symbol] = position
    else:
        by_symbol.pop(symbol, None)
        if not by_symbol:
            del book[owner]


def _mid_price(instrument: Instrument, prices: PriceSource) -> Decimal | None:
    """The mid of ``instrument`` as a price; None while it is not quoted."""
    mid = prices.mid(instrument.symbol)
    if mid is None:
        return None
    price = instrument.tick_size * mid.numerator
    return price if mid.denominator == 1 else price / mid.denominator
