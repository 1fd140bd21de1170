"""The latency histogram: Prometheus buckets as bisect would fill them, and
percentiles over the latest observations."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given
from hypothesis import strategies as st

from gateway.orderflow.stats import LATENCY_BUCKETS, Histogram

latencies = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
on_bounds = st.sampled_from(LATENCY_BUCKETS)


@given(st.lists(latencies | on_bounds, max_size=200))
def test_each_value_lands_in_the_bucket_bisect_names(values: list[float]) -> None:
    hist = Histogram()
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for value in values:
        hist.observe(value)
        expected[bisect_left(LATENCY_BUCKETS, value)] += 1
    assert hist.counts == expected
    assert hist.count == len(values)
    assert hist.sum == sum(values)
    cumulative = [count for _, count in hist.buckets()]
    assert cumulative[-1] == len(values)
    assert cumulative == sorted(cumulative)


def test_a_value_on_a_bound_counts_as_at_most_that_bound() -> None:
    hist = Histogram((0.001, 0.01))
    hist.observe(0.001)
    hist.observe(0.0010001)
    hist.observe(1.0)
    assert hist.buckets() == [("0.001", 1.0), ("0.01", 2.0), ("+Inf", 3.0)]


def test_percentiles_follow_the_latest_observations() -> None:
    hist = Histogram()
    assert hist.percentiles(50, 99) == [None, None]
    for _ in range(8192):
        hist.observe(1.0)
    assert hist.percentiles(50) == [1.0]
    for _ in range(8192):  # the ring is overwritten in full
        hist.observe(0.002)
    assert hist.percentiles(0, 50, 100) == [0.002, 0.002, 0.002]
    hist.observe(3.0)
    assert hist.percentiles(100) == [3.0]
    assert hist.count == 2 * 8192 + 1
