"""A final order whose final state the journal holds twice (a checkpoint
written in slices encodes an order as it is when its slice is written, and
the change that ended it is in the tail copied behind) is kept by the
journal's reading as the matcher kept it: once, and forgotten when the
matcher forgot it (gateway.orderflow.recovery.Recovery)."""

from __future__ import annotations

import msgspec
from matching_helpers import INSTRUMENTS
from test_shares_across_a_restart import _trade as _ended

from gateway.orderflow.journal_entries import OrderState
from gateway.orderflow.recovery import Recovery
from matcher.engine import Matcher
from matcher.orders import Order
from risk.accounts import Accounts
from router.exposure import ExposureLedger


def read(order: Order) -> OrderState:
    """The entry as a restart reads it: a copy of its own."""
    return OrderState(msgspec.structs.replace(order))


def test_a_final_order_read_twice_is_forgotten_when_the_matcher_forgot_it() -> None:
    live = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=2)
    recovery = Recovery(ExposureLedger({}), Accounts(None, {}, {}), keep_finished=2)
    first = _ended(live, "c", "c-0")
    recovery.apply(read(first))  # in the checkpoint
    recovery.apply(read(first))  # in its tail
    for i in (1, 2, 3):
        recovery.apply(read(_ended(live, "c", f"c-{i}")))
    assert live.status("c", "c-0") is None
    kept = {o.order_id for o in live.finished_view()}
    assert {i for i, o in recovery.orders.items() if o.is_final} == kept
    again = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=2)
    again.restore(list(recovery.orders.values()))
    assert again.status("c", "c-0") is None
    assert {o.order_id for o in again.finished_view()} == kept
