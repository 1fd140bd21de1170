"""The aggregated LP book: merge order, sweeps and VWAP in exact ticks,
caching, staleness and LP removal."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from routing_helpers import book_with, quote, snapshot_of

from router.book import AggregatedBook, BookLevel, BookSnapshot, BooksWithout
from router.model import Level, Side

SYM = "EUR/USD"


def test_levels_merge_best_first_with_deterministic_ties() -> None:
    snap = snapshot_of(
        quote("B", SYM, bids=[(100, 5), (99, 1)], asks=[(102, 5), (104, 1)]),
        quote("A", SYM, bids=[(100, 5), (98, 7)], asks=[(102, 5), (103, 9)]),
        quote("C", SYM, bids=[(100, 8)], asks=[(102, 2)]),
    )
    assert snap.bids == (
        BookLevel(100, 8, "C"),
        BookLevel(100, 5, "A"),
        BookLevel(100, 5, "B"),
        BookLevel(99, 1, "B"),
        BookLevel(98, 7, "A"),
    )
    assert snap.asks == (
        (102, 5, "A"),
        (102, 5, "B"),
        (102, 2, "C"),
        (103, 9, "A"),
        (104, 1, "B"),
    )
    assert snap.best_bid == (100, 8, "C")
    assert snap.best_ask == (102, 5, "A")
    assert snap.bid_lps == ("A", "B", "C")
    assert snap.lps == ("A", "B", "C")


def test_arrival_order_does_not_change_the_merge() -> None:
    quotes = [
        quote("A", SYM, bids=[(100, 5)], asks=[(101, 5)]),
        quote("B", SYM, bids=[(100, 5)], asks=[(101, 5)]),
        quote("C", SYM, bids=[(100, 5)], asks=[(101, 5)]),
    ]
    forward = snapshot_of(*quotes)
    backward = snapshot_of(*reversed(quotes))
    assert (forward.bids, forward.asks) == (backward.bids, backward.asks)


def test_empty_levels_are_left_out_and_one_sided_books_have_no_mid() -> None:
    snap = snapshot_of(
        quote("A", SYM, bids=[(100, 0), (99, 3)]),
        quote("B", SYM, asks=[(105, 0)]),
    )
    assert snap.bids == ((99, 3, "A"),)
    assert snap.asks == ()
    assert snap.ask_lps == ()
    assert snap.best_ask is None
    assert snap.mid is None
    assert snap.lps == ("A", "B")


def test_mid_is_exact_in_half_ticks() -> None:
    snap = snapshot_of(quote("A", SYM, bids=[(100, 1)], asks=[(103, 1)]))
    assert snap.mid == Fraction(203, 2)
    assert book_with(quote("A", SYM, bids=[(100, 1)], asks=[(103, 1)])).mid(SYM) == Fraction(203, 2)


def test_sweep_and_vwap_are_exact() -> None:
    snap = snapshot_of(
        quote("A", SYM, bids=[(100, 3), (98, 10)], asks=[(101, 3), (103, 10)]),
        quote("B", SYM, bids=[(99, 2)], asks=[(102, 2)]),
    )
    # BUY 7: 3 @ 101 (A), 2 @ 102 (B), 2 @ 103 (A)
    assert snap.sweep(Side.BUY, 7) == (7, 3 * 101 + 2 * 102 + 2 * 103)
    assert snap.vwap(Side.BUY, 7) == Fraction(713, 7)
    # SELL 6: 3 @ 100, 2 @ 99, 1 @ 98
    assert snap.sweep(Side.SELL, 6) == (6, 300 + 198 + 98)
    assert snap.vwap(Side.SELL, 6) == Fraction(596, 6)
    # more than the book holds
    assert snap.sweep(Side.BUY, 20) == (15, 303 + 204 + 1030)
    assert snap.vwap(Side.BUY, 20) is None
    assert snap.vwap(Side.BUY, 15) == Fraction(1537, 15)


def test_sweep_respects_a_limit_price() -> None:
    snap = snapshot_of(quote("A", SYM, bids=[(100, 3), (98, 10)], asks=[(101, 3), (103, 10)]))
    assert snap.sweep(Side.BUY, 5, limit_price=102) == (3, 303)
    assert snap.vwap(Side.BUY, 5, limit_price=102) is None
    assert snap.vwap(Side.BUY, 3, limit_price=101) == 101
    assert snap.sweep(Side.SELL, 5, limit_price=98) == (5, 300 + 196)


def test_executable_qty() -> None:
    snap = snapshot_of(
        quote("A", SYM, bids=[(100, 3), (98, 10)], asks=[(101, 3), (103, 10)]),
        quote("B", SYM, bids=[(99, 2)], asks=[(102, 2)]),
    )
    assert snap.executable_qty(Side.BUY, 100) == 0
    assert snap.executable_qty(Side.BUY, 102) == 5
    assert snap.executable_qty(Side.BUY, 10_000) == 15
    assert snap.executable_qty(Side.SELL, 99) == 5
    assert snap.executable_qty(Side.SELL, 0) == 15


@pytest.mark.parametrize("qty", [0, -1])
def test_sweep_refuses_non_positive_quantities(qty: int) -> None:
    snap = snapshot_of(quote("A", SYM, asks=[(101, 3)]))
    with pytest.raises(ValueError, match="positive"):
        snap.sweep(Side.BUY, qty)


def test_update_replaces_the_lp_levels() -> None:
    book = book_with(quote("A", SYM, bids=[(100, 3), (99, 3)], asks=[(101, 3)]))
    book.update(quote("A", SYM, bids=[(97, 1)], asks=[]))
    snap = book.snapshot(SYM)
    assert snap is not None
    assert snap.bids == ((97, 1, "A"),)
    assert snap.asks == ()
    assert snap.lp_levels("A") == ((Level(97, 1),), ())
    assert snap.lp_levels("Z") == ((), ())


def test_snapshot_is_cached_until_its_symbol_changes() -> None:
    book = book_with(
        quote("A", SYM, bids=[(100, 3)], asks=[(101, 3)]),
        quote("A", "GBP/USD", bids=[(200, 3)], asks=[(201, 3)]),
    )
    first = book.snapshot(SYM)
    assert first is not None
    assert book.snapshot(SYM) is first
    book.update(quote("B", "GBP/USD", bids=[(199, 1)]))
    assert book.snapshot(SYM) is first
    book.update(quote("B", SYM, bids=[(100, 9)]))
    second = book.snapshot(SYM)
    assert second is not first
    assert second is not None
    assert second.best_bid == (100, 9, "B")
    # the old view did not change
    assert first.bids == ((100, 3, "A"),)


def test_books_without_lps_are_made_once_per_snapshot() -> None:
    book = book_with(
        quote("A", SYM, bids=[(100, 3)], asks=[(101, 3)]),
        quote("B", SYM, bids=[(99, 2)], asks=[(102, 2)]),
    )
    first = book.snapshot(SYM)
    assert first is not None
    books = BooksWithout()
    assert books.of(first) is first  # nothing left out: nothing made
    books.leave_out(frozenset({"A"}))
    without_a = books.of(first)
    assert without_a is not None
    assert without_a.bids == ((99, 2, "B"),)
    assert without_a.asks == ((102, 2, "B"),)
    assert books.of(first) is without_a  # made once
    book.update(quote("B", SYM, bids=[(98, 1)]))
    second = book.snapshot(SYM)
    assert second is not None
    assert books.of(second) is not without_a  # a new snapshot: made again
    books.leave_out(frozenset({"A", "B"}))
    assert books.of(second) is None  # no LP left
    books.leave_out(frozenset({"C"}))
    assert books.of(second) is second  # C quotes nothing here: the snapshot itself
    assert books.lps == frozenset({"C"})


def test_snapshot_views_are_read_only() -> None:
    snap = snapshot_of(quote("A", SYM, bids=[(100, 3)]))
    with pytest.raises(TypeError):
        snap.quotes["B"] = quote("B", SYM)  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.bids = ()  # type: ignore[misc]


def test_unknown_symbol_has_no_snapshot_and_no_mid() -> None:
    book = AggregatedBook()
    assert book.snapshot(SYM) is None
    assert book.mid(SYM) is None


def test_remove_lp_drops_it_from_every_symbol() -> None:
    book = book_with(
        quote("A", SYM, bids=[(100, 3)], asks=[(101, 3)]),
        quote("B", SYM, bids=[(99, 3)], asks=[(102, 3)]),
        quote("A", "GBP/USD", bids=[(200, 3)], asks=[(201, 3)]),
    )
    before = book.snapshot(SYM)
    assert book.remove_lp("A") == (SYM, "GBP/USD")
    snap = book.snapshot(SYM)
    assert snap is not None
    assert snap is not before
    assert snap.lps == ("B",)
    assert snap.best_bid == (99, 3, "B")
    assert book.snapshot("GBP/USD") is None
    assert book.symbols() == (SYM,)
    assert book.remove_lp("A") == ()


def test_drop_stale_drops_only_quotes_older_than_max_age() -> None:
    book = book_with(
        quote("A", SYM, bids=[(100, 3)], time=10.0),
        quote("B", SYM, bids=[(99, 3)], time=12.0),
        quote("C", SYM, bids=[(98, 3)], time=13.5),
        quote("A", "GBP/USD", bids=[(200, 3)], time=9.0),
    )
    before = book.snapshot(SYM)
    # at 14.0 with max age 2.0: older than 12.0 goes, 12.0 itself stays
    assert sorted(book.drop_stale(14.0, 2.0)) == [("A", SYM), ("A", "GBP/USD")]
    snap = book.snapshot(SYM)
    assert snap is not None
    assert snap is not before
    assert snap.lps == ("B", "C")
    assert book.snapshot("GBP/USD") is None
    assert book.quote("A", SYM) is None
    assert book.quote("B", SYM) is not None
    assert book.drop_stale(14.0, 2.0) == ()


def test_from_quotes_refuses_mixed_symbols_and_duplicate_lps() -> None:
    with pytest.raises(ValueError, match="quote for GBP/USD"):
        BookSnapshot.from_quotes(SYM, [quote("A", "GBP/USD")])
    with pytest.raises(ValueError, match="two quotes from A"):
        BookSnapshot.from_quotes(SYM, [quote("A", SYM), quote("A", SYM)])


def test_book_mid_without_a_snapshot_matches_the_snapshot_mid() -> None:
    quotes = [
        quote("A", SYM, bids=[(100, 0), (97, 1)], asks=[(104, 2)]),
        quote("B", SYM, bids=[(99, 3)], asks=[(106, 1), (103, 0)]),
    ]
    assert book_with(*quotes).mid(SYM) == Fraction(99 + 104, 2)
    assert snapshot_of(*quotes).mid == Fraction(99 + 104, 2)
    assert book_with(quote("A", SYM, bids=[(99, 3)])).mid(SYM) is None


levels_st = st.lists(
    st.tuples(st.integers(90, 110), st.integers(0, 6)), min_size=0, max_size=5
).map(lambda levels: sorted(levels, reverse=True))


@given(
    books=st.lists(st.tuples(levels_st, levels_st), min_size=1, max_size=4),
    side=st.sampled_from(Side),
    qty=st.integers(1, 40),
)
def test_sweep_matches_taking_lots_one_by_one(
    books: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]], side: Side, qty: int
) -> None:
    quotes = [
        quote(f"LP{i}", SYM, bids=bids, asks=sorted(asks)) for i, (bids, asks) in enumerate(books)
    ]
    snap = snapshot_of(*quotes)
    source = [
        price
        for q in quotes
        for level in (q.asks if side is Side.BUY else q.bids)
        for price in [level.price] * level.qty
    ]
    lots = sorted(source, reverse=side is Side.SELL)[:qty]
    assert snap.sweep(side, qty) == (len(lots), sum(lots))
    expected = Fraction(sum(lots), qty) if len(lots) == qty else None
    assert snap.vwap(side, qty) == expected
    merged = snap.asks if side is Side.BUY else snap.bids
    prices = [level.price for level in merged]
    assert prices == sorted(prices, reverse=side is Side.SELL)


def test_levels_without_a_positive_price_are_left_out() -> None:
    """No price the gateway can trade at (an LP adapter passing on a level
    at zero or below): neither routed to, nor shown, nor in the mid."""
    quotes = [
        quote("A", SYM, bids=[(100, 2), (0, 5), (-3, 1)], asks=[(0, 4), (-1, 2), (104, 2)]),
        quote("B", SYM, bids=[(-5, 3)], asks=[(106, 1)]),
    ]
    snap = snapshot_of(*quotes)
    assert snap.bids == ((100, 2, "A"),)
    assert snap.asks == ((104, 2, "A"), (106, 1, "B"))
    assert snap.bid_lps == ("A",)
    assert snap.mid == Fraction(100 + 104, 2)
    assert book_with(*quotes).mid(SYM) == Fraction(100 + 104, 2)
    assert book_with(quote("A", SYM, bids=[(100, 1)], asks=[(0, 1)])).mid(SYM) is None
