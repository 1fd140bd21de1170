"""The aggregated LP book: every liquidity provider's quotes for a symbol, merged.

:class:`AggregatedBook` is fed by the LP adapters' :class:`~router.model.Quote`
events (one quote replaces that LP's levels for the symbol) and is read by the
router through :class:`BookSnapshot`, an immutable merged view.  A snapshot is
built only when someone asks for it and is cached until the symbol's next
change, so a burst of quotes between two orders costs one merge, not one per
quote.

Merged levels are ``(price, qty, lp)`` tuples sorted best first: bids by
descending price, asks by ascending price; at equal price the larger quantity
comes first, then the LP name, so the order never depends on arrival order.
A BUY takes liquidity from the asks, a SELL from the bids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from operator import itemgetter
from types import MappingProxyType
from typing import NamedTuple

from router.members import BUY
from router.model import Level, Quote, Side

__all__ = ["AggregatedBook", "BookLevel", "BookSnapshot", "BooksWithout", "without_lps"]


class BookLevel(NamedTuple):
    """One LP's level in the merged book: ``qty`` lots at ``price`` ticks."""

    price: int
    qty: int
    lp: str


_by_lp = itemgetter(2)
_by_qty = itemgetter(1)
_by_price = itemgetter(0)
_by_price_qty = itemgetter(0, 1)
_new_tuple = tuple.__new__


def _merge(quotes: Iterable[Quote], bids_side: bool) -> tuple[BookLevel, ...]:
    # Sorting is stable, so sorting by the last criterion first and the first
    # last yields the full order with C-level keys, no key tuple per level.
    merged: list[BookLevel] = [
        _new_tuple(BookLevel, (level.price, level.qty, quote.lp))
        for quote in quotes
        for level in (quote.bids if bids_side else quote.asks)
        if level.qty > 0 and level.price > 0
    ]
    merged.sort(key=_by_lp)
    if bids_side:
        merged.sort(key=_by_price_qty, reverse=True)
    else:
        merged.sort(key=_by_qty, reverse=True)
        merged.sort(key=_by_price)
    return tuple(merged)


def _lps_of(levels: tuple[BookLevel, ...]) -> tuple[str, ...]:
    return tuple(sorted({level[2] for level in levels}))


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """An immutable view of one symbol's book across all LPs.

    ``bids`` and ``asks`` are the merged levels, best first (see the module
    docstring for the order).  ``bid_lps`` / ``ask_lps`` name, sorted, the LPs
    with at least one level on that side.  ``quotes`` holds each LP's own
    quote, as received.  Levels with a quantity or a price of zero or less
    are left out of the merged view (no price the gateway trades at).
    ``oldest`` is when the oldest of the quotes was received (infinity:
    none).
    """

    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    bid_lps: tuple[str, ...]
    ask_lps: tuple[str, ...]
    quotes: Mapping[str, Quote]
    oldest: float = float("inf")

    @classmethod
    def from_quotes(cls, symbol: str, quotes: Iterable[Quote]) -> BookSnapshot:
        """Merge ``quotes`` (at most one per LP, all for ``symbol``)."""
        by_lp: dict[str, Quote] = {}
        oldest = float("inf")
        for quote in quotes:
            if quote.symbol != symbol:
                raise ValueError(f"quote for {quote.symbol} in the book of {symbol}")
            if quote.lp in by_lp:
                raise ValueError(f"two quotes from {quote.lp} for {symbol}")
            by_lp[quote.lp] = quote
            if quote.time < oldest:
                oldest = quote.time
        bids = _merge(by_lp.values(), bids_side=True)
        asks = _merge(by_lp.values(), bids_side=False)
        return cls(
            symbol, bids, asks, _lps_of(bids), _lps_of(asks), MappingProxyType(by_lp), oldest
        )

    @property
    def best_bid(self) -> BookLevel | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> BookLevel | None:
        return self.asks[0] if self.asks else None

    @property
    def mid(self) -> Fraction | None:
        """Half way between the best bid and the best ask, in ticks; None if a
        side is empty."""
        if not self.bids or not self.asks:
            return None
        return Fraction(self.bids[0].price + self.asks[0].price, 2)

    @property
    def lps(self) -> tuple[str, ...]:
        """Every LP with a quote for the symbol, sorted (even an empty quote)."""
        return tuple(sorted(self.quotes))

    def lp_levels(self, lp: str) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """``(bids, asks)`` of one LP as it quoted them; empty if it has no quote."""
        quote = self.quotes.get(lp)
        if quote is None:
            return (), ()
        return quote.bids, quote.asks

    def levels_for(self, side: Side) -> tuple[BookLevel, ...]:
        """The levels an order on ``side`` takes from: asks for a BUY, bids for a SELL."""
        return self.asks if side is BUY else self.bids

    def sweep(self, side: Side, qty: int, limit_price: int | None = None) -> tuple[int, int]:
        """Walk the book as an order of ``qty`` lots on ``side`` would.

        Returns ``(filled_qty, vwap_numerator)``: the lots available (at most
        ``qty``, only at levels at or better than ``limit_price`` if given)
        and the sum of price x lots over them, in ticks x lots.  The VWAP is
        ``vwap_numerator / filled_qty``.
        """
        if qty <= 0:
            raise ValueError(f"sweep quantity must be positive, got {qty}")
        buy = side is BUY
        filled = 0
        numerator = 0
        for price, level_qty, _lp in self.asks if buy else self.bids:
            if limit_price is not None and (price > limit_price if buy else price < limit_price):
                break
            take = min(level_qty, qty - filled)
            filled += take
            numerator += take * price
            if filled == qty:
                break
        return filled, numerator

    def vwap(self, side: Side, qty: int, limit_price: int | None = None) -> Fraction | None:
        """The exact volume-weighted average price, in ticks, of ``qty`` lots
        on ``side``; None if the book (within ``limit_price``) cannot fill it."""
        filled, numerator = self.sweep(side, qty, limit_price)
        if filled < qty:
            return None
        return Fraction(numerator, qty)

    def executable_qty(self, side: Side, limit_price: int) -> int:
        """Lots an order on ``side`` could take at ``limit_price`` or better."""
        total = 0
        if side is BUY:
            for price, qty, _lp in self.asks:
                if price > limit_price:
                    break
                total += qty
        else:
            for price, qty, _lp in self.bids:
                if price < limit_price:
                    break
                total += qty
        return total


def without_lps(snapshot: BookSnapshot, lps: frozenset[str]) -> BookSnapshot | None:
    """``snapshot`` without the quotes of ``lps``: ``snapshot`` itself when
    none of them quotes in it (nothing built), None when no other LP does."""
    quotes = snapshot.quotes
    if not any(lp in lps for lp in quotes):
        return snapshot
    kept = [quote for lp, quote in quotes.items() if lp not in lps]
    return BookSnapshot.from_quotes(snapshot.symbol, kept) if kept else None


class BooksWithout:
    """Snapshots without the quotes of some LPs (:func:`without_lps`), each
    made once per snapshot it is made from: the last one per symbol is
    kept until another snapshot of the symbol comes, or the LPs change."""

    __slots__ = ("_made", "lps")

    def __init__(self) -> None:
        self.lps: frozenset[str] = frozenset()
        """The LPs left out (none: snapshots are given back as they are)."""
        self._made: dict[str, tuple[BookSnapshot, BookSnapshot | None]] = {}

    def leave_out(self, lps: frozenset[str]) -> None:
        """Leave ``lps`` out from now on."""
        self.lps = lps
        self._made.clear()

    def of(self, snapshot: BookSnapshot) -> BookSnapshot | None:
        """``snapshot`` without the LPs left out (None: no other LP quotes)."""
        if not self.lps:
            return snapshot
        symbol = snapshot.symbol
        made = self._made.get(symbol)
        if made is not None and made[0] is snapshot:
            return made[1]
        kept = without_lps(snapshot, self.lps)
        self._made[symbol] = (snapshot, kept)
        return kept


class AggregatedBook:
    """Every LP's latest quote per symbol, and cached merged snapshots.

    One writer (the event loop handling LP events) calls :meth:`update`,
    :meth:`remove_lp` and :meth:`drop_stale`; readers take :meth:`snapshot`.
    """

    __slots__ = ("_quotes", "_snapshots")

    def __init__(self) -> None:
        self._quotes: dict[str, dict[str, Quote]] = {}
        self._snapshots: dict[str, BookSnapshot] = {}

    def update(self, quote: Quote) -> None:
        """Replace ``quote.lp``'s levels for ``quote.symbol``."""
        by_lp = self._quotes.get(quote.symbol)
        if by_lp is None:
            self._quotes[quote.symbol] = {quote.lp: quote}
        else:
            by_lp[quote.lp] = quote
        self._snapshots.pop(quote.symbol, None)

    def remove_lp(self, lp: str) -> tuple[str, ...]:
        """Drop every quote of ``lp`` (it disconnected); returns the symbols it quoted."""
        removed: list[str] = []
        for symbol, by_lp in self._quotes.items():
            if by_lp.pop(lp, None) is not None:
                removed.append(symbol)
        for symbol in removed:
            self._forget_if_empty(symbol)
            self._snapshots.pop(symbol, None)
        return tuple(removed)

    def drop_stale(self, now: float, max_age: float) -> tuple[tuple[str, str], ...]:
        """Drop quotes received more than ``max_age`` seconds before ``now``.

        Returns the dropped ``(lp, symbol)`` pairs.
        """
        oldest = now - max_age
        dropped: list[tuple[str, str]] = []
        for symbol, by_lp in self._quotes.items():
            for lp, quote in by_lp.items():
                if quote.time < oldest:
                    dropped.append((lp, symbol))
        for lp, symbol in dropped:
            del self._quotes[symbol][lp]
            self._forget_if_empty(symbol)
            self._snapshots.pop(symbol, None)
        return tuple(dropped)

    def _forget_if_empty(self, symbol: str) -> None:
        if not self._quotes[symbol]:
            del self._quotes[symbol]

    def snapshot(self, symbol: str) -> BookSnapshot | None:
        """The merged book of ``symbol``; None if no LP quotes it."""
        cached = self._snapshots.get(symbol)
        if cached is not None:
            return cached
        by_lp = self._quotes.get(symbol)
        if not by_lp:
            return None
        snapshot = BookSnapshot.from_quotes(symbol, by_lp.values())
        self._snapshots[symbol] = snapshot
        return snapshot

    def mid(self, symbol: str) -> Fraction | None:
        """Mid of the merged book in ticks; None if either side is empty.

        Does not build a snapshot when none is cached, so valuing many
        symbols stays cheap.
        """
        cached = self._snapshots.get(symbol)
        if cached is not None:
            return cached.mid
        by_lp = self._quotes.get(symbol)
        if not by_lp:
            return None
        best_bid: int | None = None
        best_ask: int | None = None
        for quote in by_lp.values():
            for level in quote.bids:
                price = level.price
                if level.qty > 0 and price > 0 and (best_bid is None or price > best_bid):
                    best_bid = price
            for level in quote.asks:
                price = level.price
                if level.qty > 0 and price > 0 and (best_ask is None or price < best_ask):
                    best_ask = price
        if best_bid is None or best_ask is None:
            return None
        return Fraction(best_bid + best_ask, 2)

    def symbols(self) -> tuple[str, ...]:
        """Symbols with at least one LP quote, sorted."""
        return tuple(sorted(self._quotes))

    def quote(self, lp: str, symbol: str) -> Quote | None:
        """The latest quote of ``lp`` for ``symbol``, if any."""
        by_lp = self._quotes.get(symbol)
        return None if by_lp is None else by_lp.get(lp)
