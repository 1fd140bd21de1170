"""The final orders a matcher keeps are shared between its clients: one
client sending orders fast does not push out a quieter client's, whose
ClOrdIDs stay duplicates (matcher.engine.Matcher._retire)."""

from __future__ import annotations

import itertools

from matching_helpers import BUY, INSTRUMENTS, book, cancel, limit

from matcher.engine import Matcher

LPS = book(bids=((100, 50),), asks=((110, 50),))


def _trade(m: Matcher, client: str, cl_ord_id: str) -> None:
    """An order of ``client`` that rests, then is canceled: final."""
    m.submit(limit(client, cl_ord_id, BUY, 1, 90), LPS)
    m.cancel(cancel(client, f"x{cl_ord_id}", cl_ord_id))


def test_a_busy_client_does_not_push_out_a_quiet_clients_final_orders() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=100)
    for i in range(10):
        _trade(m, "quiet", f"q{i}")
    for i in range(1_000):
        _trade(m, "busy", f"b{i}")
    assert all(m.status("quiet", f"q{i}") is not None for i in range(10))
    assert m.status("busy", "b999") is not None
    assert m.status("busy", "b0") is None
    kept = list(m.finished_view())
    assert len(kept) == 100
    assert sum(o.client == "quiet" for o in kept) == 10


def test_a_client_past_its_share_is_forgotten_oldest_first() -> None:
    """Two clients as busy as each other share the bound, each keeping its
    newest; with one client the bound is all its own."""
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=100)
    for i in range(300):
        _trade(m, "a", f"a{i}")
        _trade(m, "b", f"b{i}")
    kept = list(m.finished_view())
    assert len(kept) == 100
    assert {o.client for o in kept} == {"a", "b"}
    assert m.status("a", "a299") is not None
    assert m.status("a", "a0") is None
    assert m.status("b", "b299") is not None
    assert m.status("b", "b0") is None
    alone = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=100)
    for i in range(300):
        _trade(alone, "a", f"a{i}")
    assert len(list(alone.finished_view())) == 100
    assert alone.status("a", "a200") is not None
    assert alone.status("a", "a199") is None


def test_a_day_end_starts_the_shares_again() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=10)
    for i in range(5):
        _trade(m, "quiet", f"q{i}")
    m.expire_day()
    for i in range(50):
        _trade(m, "busy", f"b{i}")
    assert len(list(m.finished_view())) == 10
    assert m.status("busy", "b40") is not None


def test_a_long_run_of_a_quiet_clients_orders_is_passed_over_a_slice_at_a_time() -> None:
    """More of a quiet client's orders at the oldest end than one call may
    pass over: the bound is exceeded by one order a call, never more than
    the calls it takes, and none of them is forgotten."""
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=10_000)
    for i in range(2_000):
        _trade(m, "quiet", f"q{i}")
    for i in range(20_000):
        _trade(m, "busy", f"b{i}")
        if i % 500 == 0:
            assert len(list(m.finished_view())) <= 10_000 + 2
    assert all(m.status("quiet", f"q{i}") is not None for i in range(2_000))
    assert len(list(m.finished_view())) == 10_000


def test_a_bound_lowered_much_is_reached_a_slice_at_a_time() -> None:
    """A reload lowering ``retain_finished`` from 5,000 to 10: no one call
    forgets the difference (a loop held that long), each forgets a slice
    and the bound is reached over the calls that follow."""
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=5_000)
    for i in range(5_000):
        _trade(m, "a", f"a{i}")
    m.retain_finished = 10
    kept = [len(list(m.finished_view()))]
    for i in range(200):
        _trade(m, "a", f"n{i}")
        kept.append(len(list(m.finished_view())))
    assert kept[-1] == 10
    assert all(before - after <= 64 for before, after in itertools.pairwise(kept))
    assert m.status("a", "n199") is not None
