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
fill price the ledger saw for that symbol.  A symbol with neither cannot be
valued; an LP holding a position in it has no gross notional in the snapshot
(it is listed in :attr:`ExposureSnapshot.unvalued_lps`) and the router treats
it as having no headroom.

The gross notional of an LP is the sum over symbols of its positions' USD
values, each taken as an absolute value: a long in one symbol does not offset
a short in another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Protocol

from router.model import Instrument, Side

__all__ = ["ExposureLedger", "ExposureSnapshot", "PriceSource"]

_ZERO = Decimal(0)


class PriceSource(Protocol):
    """Anything that can tell the current mid of a symbol in its ticks
    (:class:`router.book.AggregatedBook` is one)."""

    def mid(self, symbol: str) -> Fraction | None: ...


def _no_positions() -> Mapping[str, Mapping[str, int]]:
    return MappingProxyType({})


def _no_values() -> Mapping[str, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ExposureSnapshot:
    """An immutable copy of the ledger, valued at one set of prices.

    ``lp_positions[lp][symbol]`` and ``client_positions[client][symbol]`` are
    signed lots (flat positions are absent).  ``usd_per_lot[symbol]`` is the
    USD value of one lot (always >= 0) for every instrument that could be
    valued; ``lp_gross_usd[lp]`` the gross notional of each LP with a
    position whose every symbol could be valued; LPs with a position in an
    unvalued symbol are in ``unvalued_lps`` instead.
    """

    lp_positions: Mapping[str, Mapping[str, int]] = field(default_factory=_no_positions)
    client_positions: Mapping[str, Mapping[str, int]] = field(default_factory=_no_positions)
    lp_gross_usd: Mapping[str, Decimal] = field(default_factory=_no_values)
    usd_per_lot: Mapping[str, Decimal] = field(default_factory=_no_values)
    unvalued_lps: frozenset[str] = frozenset()

    def lp_position(self, lp: str, symbol: str) -> int:
        positions = self.lp_positions.get(lp)
        return 0 if positions is None else positions.get(symbol, 0)

    def client_position(self, client: str, symbol: str) -> int:
        positions = self.client_positions.get(client)
        return 0 if positions is None else positions.get(symbol, 0)

    def gross_usd(self, lp: str) -> Decimal | None:
        """Gross notional of ``lp`` in USD; 0 if flat, None if it cannot be valued."""
        if lp in self.unvalued_lps:
            return None
        return self.lp_gross_usd.get(lp, _ZERO)


def _freeze(positions: dict[str, dict[str, int]]) -> Mapping[str, Mapping[str, int]]:
    return MappingProxyType(
        {owner: MappingProxyType(dict(by_symbol)) for owner, by_symbol in positions.items()}
    )


class ExposureLedger:
    """Net positions per LP and per client, per symbol, updated from fills.

    The matcher is the only writer.  It is also the one that makes fills
    idempotent (an ``exec_id`` seen before is not applied again); the ledger
    applies whatever it is given.
    """

    __slots__ = ("_clients", "_instruments", "_last_price", "_lps")

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._instruments = dict(instruments)
        self._lps: dict[str, dict[str, int]] = {}
        self._clients: dict[str, dict[str, int]] = {}
        self._last_price: dict[str, int] = {}

    def apply_fill(
        self, lp: str, client: str, symbol: str, side: Side, qty: int, price: int
    ) -> None:
        """Book a fill of ``qty`` lots at ``price`` ticks; ``side`` is the client's."""
        if qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty}")
        signed = qty if side is Side.BUY else -qty
        _add(self._lps, lp, symbol, signed)
        _add(self._clients, client, symbol, signed)
        self._last_price[symbol] = price

    def lp_position(self, lp: str, symbol: str) -> int:
        positions = self._lps.get(lp)
        return 0 if positions is None else positions.get(symbol, 0)

    def client_position(self, client: str, symbol: str) -> int:
        positions = self._clients.get(client)
        return 0 if positions is None else positions.get(symbol, 0)

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
        mid = prices.mid(instrument.symbol)
        if mid is not None:
            price = instrument.tick_size * mid.numerator
            return price if mid.denominator == 1 else price / mid.denominator
        last = self._last_price.get(instrument.symbol)
        return None if last is None else instrument.tick_size * last

    def gross_usd(self, lp: str, prices: PriceSource) -> Decimal | None:
        """Gross notional of ``lp`` in USD at ``prices``; None if it cannot be valued."""
        total = _ZERO
        for symbol, lots in self._lps.get(lp, {}).items():
            value = self.lot_value_usd(symbol, prices)
            if value is None:
                return None
            total += abs(lots) * value
        return total

    def snapshot(
        self,
        prices: PriceSource,
        in_flight: Mapping[str, Mapping[str, int]] | None = None,
    ) -> ExposureSnapshot:
        """Copy positions and value them at ``prices``.

        ``in_flight`` gives, per LP and symbol, the lots of child orders sent
        and not yet answered.  They count in the LP's gross notional as if
        each could still fill in the direction that adds to it (the worst
        case), so that orders routed before earlier ones have filled cannot
        take an LP past its hard limit together.  Positions stay as filled.

        Costs O(#LPs x #symbols) plus one valuation per instrument: take one
        per batch of orders (or when fills or marks change), not per order.
        """
        per_lot: dict[str, Decimal] = {}
        for symbol in self._instruments:
            value = self.lot_value_usd(symbol, prices)
            if value is not None:
                per_lot[symbol] = value
        gross: dict[str, Decimal] = {}
        unvalued: set[str] = set()
        pending = in_flight or {}
        for lp in self._lps.keys() | pending.keys():
            filled = self._lps.get(lp, {})
            sent = pending.get(lp, {})
            total = _ZERO
            for symbol in filled.keys() | sent.keys():
                lots = abs(filled.get(symbol, 0)) + sent.get(symbol, 0)
                if not lots:
                    continue
                value = per_lot.get(symbol)
                if value is None:
                    unvalued.add(lp)
                    break
                total += lots * value
            else:
                gross[lp] = total
        return ExposureSnapshot(
            lp_positions=_freeze(self._lps),
            client_positions=_freeze(self._clients),
            lp_gross_usd=MappingProxyType(gross),
            usd_per_lot=MappingProxyType(per_lot),
            unvalued_lps=frozenset(unvalued),
        )


def _add(book: dict[str, dict[str, int]], owner: str, symbol: str, signed: int) -> None:
    by_symbol = book.get(owner)
    if by_symbol is None:
        book[owner] = {symbol: signed}
        return
    position = by_symbol.get(symbol, 0) + signed
    if position:
        by_symbol[symbol] = position
    else:
        del by_symbol[symbol]
        if not by_symbol:
            del book[owner]
