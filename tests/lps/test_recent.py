"""The latest entries, up to a bound: what the order flow and the FIX
adapter watch ended children in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lp_adapters.recent import Recent


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
