"""Which CPUs a process is put on: the CPUs left for the drop copy and the
back office, and a CPU the process may not use refused naming its setting."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import ConfigError
from gateway.ops.placement import _ranges, check_cpus, other_cpus, pin_to_cpus


def test_the_others_are_the_cpus_not_taken_or_all_when_none_are_left() -> None:
    assert other_cpus([0], {0, 1, 2, 3}) == [1, 2, 3]
    assert other_cpus([1, 2], {0, 1, 2, 3}) == [0, 3]
    assert other_cpus([0, 1], {0, 1}) == [0, 1]
    assert other_cpus([], {0, 1}) == [0, 1]


@given(st.sets(st.integers(0, 63), min_size=1), st.sets(st.integers(0, 63)))
def test_the_others_are_never_empty_and_never_outside_what_is_allowed(
    allowed: set[int], taken: set[int]
) -> None:
    rest = other_cpus(sorted(taken), allowed)
    assert rest
    assert set(rest) <= allowed
    if allowed - taken and taken:
        assert not set(rest) & taken


def test_a_cpu_not_available_is_refused_naming_the_setting_and_what_may_be_used() -> None:
    with pytest.raises(ConfigError) as refused:
        check_cpus([1, 7], "gateway.cpus", {0, 1, 2, 3, 5})
    assert str(refused.value) == (
        "gateway.cpus: CPU 7 not available to this process (it may use 0-3, 5)"
    )
    check_cpus([], "gateway.cpus", set())
    check_cpus([5], "gateway.cpus", {0, 1, 2, 3, 5})


def test_ranges_read_as_linux_writes_them() -> None:
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert _ranges([3]) == "3"
    assert _ranges([]) == "none"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_pinning_puts_the_thread_on_the_cpus_and_what_it_starts_follows() -> None:
    import threading

    before = os.sched_getaffinity(0)
    one = min(before)
    try:
        pin_to_cpus([one], "gateway.cpus")
        assert os.sched_getaffinity(0) == {one}
        seen: list[set[int]] = []
        thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        thread.start()
        thread.join()
        assert seen == [{one}]
    finally:
        os.sched_setaffinity(0, before)
