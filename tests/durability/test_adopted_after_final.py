"""An order this gateway journaled as ended, whose end its cluster's copy
never held (the gateway died before the copy acknowledged it), is worked
again as the copy holds it once its client is taken back here: journaled
so, a restart here has it open, as :meth:`OrderFlow.adopt_orders` says."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from test_flow_recovery import an_order, flow, journal_with

from matcher.orders import OrdStatus


@pytest.mark.asyncio
async def test_an_order_ended_here_and_taken_open_from_the_copy_is_open_after_a_restart(
    tmp_path: Path,
) -> None:
    journal_with(tmp_path, an_order("4O2", "EUR/USD", OrdStatus.CANCELED))
    built, journal = flow(tmp_path)
    try:
        ended = built.matcher.status("CLIENT1", "C-4O2")
        assert ended is not None
        assert ended.status is OrdStatus.CANCELED
        copied = msgspec.structs.replace(
            an_order("4O2", "EUR/USD", OrdStatus.PARTIALLY_FILLED), cum_qty=4, leaves_qty=6
        )
        built.park_all()
        assert built.adopt_orders("CLIENT1", [(built.order_state(copied), 0.0, False)]) == 1
        assert [o.order_id for o in built.matcher.open_orders("CLIENT1")] == ["4O2"]
    finally:
        journal.close()
    again, journal = flow(tmp_path)
    try:
        opened = again.matcher.open_orders("CLIENT1")
        assert [(o.order_id, o.cum_qty, o.leaves_qty) for o in opened] == [("4O2", 4, 6)]
        held = again.matcher.status("CLIENT1", "C-4O2")
        assert held is not None
        assert held.status is OrdStatus.PARTIALLY_FILLED
    finally:
        journal.close()
