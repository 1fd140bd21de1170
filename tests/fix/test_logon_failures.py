"""Repeated failed logons of one (address, CompID) pair are slowed down, and
every counter stays bounded."""

from __future__ import annotations

from gateway.fix import codec
from gateway.net.server import (
    FREE_FAILURES,
    MAX_COUNTED,
    MAX_LOGON_DELAY,
    MAX_PAIRS,
    LogonFailures,
    claimed_pair,
)


def logon_bytes(sender: bytes, target: bytes) -> bytes:
    header = [(34, b"1"), (49, sender), (52, b"20261203-10:00:00.000"), (56, target)]
    return codec.encode_message(b"FIX.4.4", b"A", header, b"98=0\x01108=30\x01")


GUESSER = ("10.0.0.1", "CLIENT1")


def test_failures_beyond_the_free_ones_earn_a_doubling_delay() -> None:
    failures = LogonFailures()
    now = 1000.0
    for _ in range(FREE_FAILURES):
        failures.record(GUESSER, now)
    assert failures.delay(GUESSER, now) == 1.0
    failures.record(GUESSER, now)
    assert failures.delay(GUESSER, now) == 2.0
    for _ in range(20):
        failures.record(GUESSER, now)
    assert failures.delay(GUESSER, now) == MAX_LOGON_DELAY
    # other addresses, and other CompIDs from the same address, are not
    # affected; the failures age out
    assert failures.delay(("10.0.0.2", "CLIENT1"), now) == 0.0
    assert failures.delay(("10.0.0.1", "CLIENT2"), now) == 0.0
    assert failures.delay(GUESSER, now + 61) == 0.0


def test_thousands_of_failures_neither_overflow_nor_grow_without_bound() -> None:
    failures = LogonFailures(max_delay=5.0)
    now = 1000.0
    counts = [failures.record(GUESSER, now + i * 0.001) for i in range(5000)]
    assert counts[:MAX_COUNTED] == list(range(1, MAX_COUNTED + 1))
    assert set(counts[MAX_COUNTED:]) == {0}
    assert failures.delay(GUESSER, now + 5) == 5.0
    # a pair at its most counts no further (and so is logged no further)
    assert failures.record(GUESSER, now + 5) == 0
    for i in range(MAX_PAIRS + 100):
        failures.record((f"10.1.{i // 256}.{i % 256}", ""), now + 6)
    assert len(failures._times) == MAX_PAIRS


def test_the_pair_is_read_from_a_whole_logon_only() -> None:
    logon = logon_bytes(b"CLIENT1", b"GATEWAY")
    assert claimed_pair("10.0.0.1", logon[:-5], 65536) is None
    assert claimed_pair("10.0.0.1", logon, 65536) == ("10.0.0.1", "CLIENT1")
    # bytes that cannot be FIX are the acceptor's to refuse, unheld
    assert claimed_pair("10.0.0.1", b"GET / HTTP/1.1\r\n\x0110=000\x01", 65536) is None
    assert claimed_pair("10.0.0.1", b"x" * 5000, 65536) is None
    # a first frame still not whole after 4 KB: no CompID to read
    long_logon = b"8=FIX.4.4\x019=6000\x0135=A\x01" + b"58=" + b"x" * 5000
    assert claimed_pair("10.0.0.1", long_logon, 65536) == ("10.0.0.1", "")
