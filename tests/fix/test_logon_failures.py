"""Repeated failed logons from one address are slowed down."""

from __future__ import annotations

from gateway.net.server import FREE_FAILURES, MAX_LOGON_DELAY, LogonFailures


def test_failures_beyond_the_free_ones_earn_a_doubling_delay() -> None:
    failures = LogonFailures()
    now = 1000.0
    for _ in range(FREE_FAILURES):
        failures.record("10.0.0.1", now)
    assert failures.delay("10.0.0.1", now) == 1.0
    failures.record("10.0.0.1", now)
    assert failures.delay("10.0.0.1", now) == 2.0
    for _ in range(20):
        failures.record("10.0.0.1", now)
    assert failures.delay("10.0.0.1", now) == MAX_LOGON_DELAY
    # other addresses are not affected, and the failures age out
    assert failures.delay("10.0.0.2", now) == 0.0
    assert failures.delay("10.0.0.1", now + 61) == 0.0
