"""The latest entries, up to a bound: what the order flow and the FIX
adapter watch ended children in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lp_adapters.recent import Recent, SeqWindow


def test_the_oldest_is_let_go_first() -> None:
    recent: Recent[str, int] = Recent(3)
    for n in range(5):
        recent.put(f"c{n}", n)
    assert len(recent) == 3
    assert [recent.get(f"c{n}") for n in range(5)] == [None, None, 2, 3, 4]
    assert "c1" not in recent
    assert "c4" in recent


def test_a_key_put_again_takes_the_new_value_and_keeps_its_place() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("a", 3)  # still the oldest
    assert recent.get("a") == 3
    recent.put("c", 4)
    assert recent.get("a") is None
    assert (recent.get("b"), recent.get("c")) == (2, 4)


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Recent(0)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.lists(st.tuples(st.integers(0, 12), st.integers()), max_size=60))
def test_it_holds_what_a_list_of_first_puts_says(bound: int, puts: list[tuple[int, int]]) -> None:
    recent: Recent[int, int] = Recent(bound)
    line: list[int] = []  # keys in the order they first came, still held
    values: dict[int, int] = {}
    for key, value in puts:
        recent.put(key, value)
        if key not in line:
            line.append(key)
            if len(line) > bound:
                values.pop(line.pop(0))
        values[key] = value
    assert len(recent) == len(line)
    for key in range(13):
        assert recent.get(key) == values.get(key)


def test_a_seq_window_keeps_the_numbers_within_its_span_whatever_came_between() -> None:
    """Orders' numbers come with gaps (cancels, status requests, heartbeats
    take numbers too): each number leaves once the latest is a span past
    it, so what is kept stays bounded by the span."""
    window: SeqWindow[str] = SeqWindow(10)
    for seq in range(1, 200, 3):  # two of three numbers not an order's
        window.put(seq, f"c{seq}")
        assert len(window) <= 4
    assert window.pop(199) == "c199"
    assert window.pop(190) == "c190"
    assert window.pop(187) is None  # 12 before the latest: gone
    window.put(5_000, "far")  # a long stretch without an order
    assert len(window) == 1


def test_a_seq_window_starts_again_when_the_numbering_does() -> None:
    window: SeqWindow[str] = SeqWindow(100)
    for seq in (50, 60, 70):
        window.put(seq, f"old{seq}")
    window.put(2, "new")  # a session reset: numbers from 1 again
    assert len(window) == 1
    assert window.pop(60) is None  # never read as the new numbering's 60
    window.put(60, "new60")
    assert window.pop(60) == "new60"


@given(st.lists(st.integers(1, 30), min_size=1, max_size=200), st.integers(1, 50))
@settings(max_examples=100)
def test_a_seq_window_holds_exactly_the_numbers_of_its_span(steps: list[int], span: int) -> None:
    window: SeqWindow[int] = SeqWindow(span)
    seq = 0
    put: list[int] = []
    for step in steps:
        seq += step
        window.put(seq, seq)
        put.append(seq)
    kept = [s for s in put if s > seq - span]
    assert len(window) == len(kept)
    assert all(window.pop(s) == s for s in kept)
