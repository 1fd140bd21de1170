"""The final orders read back from the journal at a restart are the ones
the matcher kept: a quiet client's, kept by the matcher as within its
share all along, are still known after the restart, however many clients
the journal's last orders name; and those kept under a bound a reload
lowered since (gateway.orderflow.recovery.Recovery)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from matching_helpers import BUY, INSTRUMENTS, book, cancel, limit

from gateway.orderflow.journal_entries import OrderState, RetainFinished
from gateway.orderflow.recovery import Recovery
from matcher.engine import Matcher
from matcher.orders import Order
from risk.accounts import Accounts
from router.exposure import ExposureLedger

LPS = book(bids=((100, 50),), asks=((110, 50),))

# (client, orders), in turn: a quiet client's one order, then clients
# trading one after another; never more than 10 keep final orders at once
TURNS = (
    ("quiet", 1),
    ("b0", 1),
    ("b1", 3),
    ("b2", 3),
    ("b3", 8),
    ("b4", 3),
    ("b5", 5),
    ("b6", 8),
    ("b7", 19),
    ("b8", 11),
    ("b9", 12),
)


def _trade(m: Matcher, client: str, cl_ord_id: str) -> Order:
    """An order of ``client`` that rests, then is canceled: its final state."""
    m.submit(limit(client, cl_ord_id, BUY, 1, 90), LPS)
    m.cancel(cancel(client, f"x{cl_ord_id}", cl_ord_id))
    order = m.order_of(client, cl_ord_id)
    assert order is not None
    assert order.is_final
    return order


def test_a_quiet_clients_final_order_kept_by_the_matcher_is_kept_across_a_restart() -> None:
    live = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=20)
    recovery = Recovery(ExposureLedger({}), Accounts(None, {}, {}), keep_finished=20)
    most = 0
    for client, count in TURNS:
        for i in range(count):
            # journaled as it ends, read back in that order
            recovery.apply(OrderState(_trade(live, client, f"{client}-{i}")))
            most = max(most, len({o.client for o in live.finished_view()}))
    # at most 10 clients kept final orders at once: a share of 20 // 20 = 1
    assert most == 10
    assert live.status("quiet", "quiet-0") is not None
    again = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=20)
    orders = recovery.orders.values()
    again.restore([o for o in orders if o.is_final] + [o for o in orders if not o.is_final])
    assert again.status("quiet", "quiet-0") is not None
    assert {o.order_id for o in again.finished_view()} == {o.order_id for o in live.finished_view()}


clients = st.lists(st.sampled_from("abc"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    first=st.integers(2, 20),
    lowered=st.integers(1, 19),
    before=clients,
    after=clients,
)
def test_final_orders_kept_across_a_reload_of_the_bound_are_read_back_as_kept(
    first: int, lowered: int, before: list[str], after: list[str]
) -> None:
    """Orders end under one bound, a reload lowers it (journaled where it
    took effect), more orders end: the journal's reading, started under
    the bound of the config at the restart, keeps the final orders the
    matcher kept; restored, they are known as they were, once the matcher
    has come down to its new bound."""
    lowered = min(lowered, first - 1)
    live = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=first)
    journal: list[OrderState | RetainFinished] = [RetainFinished(first)]  # a checkpoint's head
    for i, client in enumerate(before):
        journal.append(OrderState(_trade(live, client, f"{client}-{i}")))
    live.retain_finished = lowered
    journal.append(RetainFinished(lowered))
    for i, client in enumerate(after, len(before)):
        journal.append(OrderState(_trade(live, client, f"{client}-{i}")))
    recovery = Recovery(ExposureLedger({}), Accounts(None, {}, {}), keep_finished=lowered)
    for entry in journal:
        recovery.apply(entry)
    kept = [(o.client, o.cl_ord_id) for o in live.finished_view()]
    assert [(o.client, o.cl_ord_id) for o in recovery.finished()] == kept
    again = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=lowered)
    again.restore(recovery.finished())
    if len(kept) <= lowered:
        # (one still above it forgets the rest at its next end, 64 at most
        # at a time; the restart takes the bound at once)
        assert [(o.client, o.cl_ord_id) for o in again.finished_view()] == kept
