"""An order that ends while a checkpoint is written in slices, before its
own slice: its slice holds its final state, the tail copied behind the
slices its states on the way there.  A restart keeps it once among the
final orders, as the matcher kept it, not once for each final state read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_finals_past_retained import flow_keeping, send
from test_flow_recovery import until_checkpoint_ends

from router.model import Level, Quote


@pytest.mark.asyncio
async def test_an_order_ended_during_a_sliced_checkpoint_is_kept_once_after_a_restart(
    tmp_path: Path,
) -> None:
    live, journal = flow_keeping(tmp_path, retain=1000)
    try:
        quote = Quote("LP_A", "EUR/USD", (Level(90_000, 100),), (Level(110_000, 100),), time.time())
        live.routing.on_lp_event(quote)
        for n in range(300):  # a state of several slices
            send(live, "CLIENT2", f"S{n}", b"2", b"1")
        send(live, "CLIENT2", "LAST", b"2", b"1", b"2000")  # rests, its slice comes last
        live._start_checkpoint(journal)
        assert live.checkpointing
        # before any slice is written: IOC buys fill S0..S299 and then LAST,
        # in two steps (partly filled, then filled)
        send(live, "CLIENT1", "B1", b"1", b"3", b"301000")
        send(live, "CLIENT1", "B2", b"1", b"3", b"1000")
        (last,) = [o for o in live.matcher.finished_view() if o.cl_ord_id == "LAST"]
        assert last.cum_qty == last.qty
        await until_checkpoint_ends(live)
        kept = [o.order_id for o in live.matcher.finished_view()]
        assert len(kept) == len(set(kept))
    finally:
        journal.close()
    again, journal = flow_keeping(tmp_path, retain=1000)
    try:
        after = [o.order_id for o in again.matcher.finished_view()]
    finally:
        journal.close()
    assert len(after) == len(set(after)), [o for o in set(after) if after.count(o) > 1]
    assert sorted(after) == sorted(kept)
