"""A trading day that ends while a checkpoint is being written.

The day end gives up the checkpoint under way (it holds the day's final
orders) and starts its own, which must replace the journal like any other:
the steps still queued for the one given up are not taken for its steps."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from config import default_config_path, load_config
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import CHECKPOINT_SLICE, OrderFlow
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import DayEnds, OrderState, Run
from matcher.orders import Order
from router.model import OrdType, Side, TimeInForce


def resting(n: int) -> Order:
    return Order(
        order_id=f"4O{n}",
        client="CLIENT1",
        cl_ord_id=f"C-4O{n}",
        orig_cl_ord_id=None,
        symbol="EUR/USD",
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        qty=10,
        price=100_000,
        seq=n,
        leaves_qty=10,
    )


def started(path: Path, orders: int) -> tuple[OrderFlow, OrderJournal]:
    journal = OrderJournal(path)
    list(journal.replay())
    journal.add(Run(4))
    for n in range(1, orders + 1):
        journal.add(OrderState(resting(n)))
    journal.close()
    config = load_config(str(default_config_path()))
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    journal = OrderJournal(path)
    try:
        built = build_order_flow(config, sessions, journal, Outbox(journal.flush), time.time)
    except BaseException:
        journal.close()
        raise
    return built, journal


async def until_checkpoint_ends(flow: OrderFlow) -> None:
    deadline = time.monotonic() + 30
    while flow.checkpointing:
        assert time.monotonic() < deadline, "the checkpoint never ended"
        await asyncio.sleep(0.01)  # polling, with a deadline


@pytest.mark.asyncio
@pytest.mark.parametrize("slices_before", [0, 1])
async def test_a_day_end_during_a_checkpoint_replaces_the_journal(
    tmp_path: Path, slices_before: int
) -> None:
    # enough resting orders for a state of several slices
    flow, journal = started(tmp_path, 300)
    try:
        flow._start_checkpoint(journal)  # the journal passed its bound
        job = flow._background
        assert job is not None
        for _ in range(slices_before):
            await asyncio.sleep(0)  # one loop turn: a slice written
        assert job.written > CHECKPOINT_SLICE * slices_before
        assert not job.done  # more slices to write: the next one queued
        flow.end_trading_day(time.time())
        assert flow.checkpointing
        await until_checkpoint_ends(flow)
        day_ends_at = flow.day_ends_at
    finally:
        journal.close()
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    again.close()
    # the day end's checkpoint is the journal: its state alone, headed by
    # when the new day ends, not the day's journal with the day end behind
    assert [e for e in entries if isinstance(e, DayEnds)] == [DayEnds(day_ends_at)]
    assert entries[0] == Run(journal.run)
    assert len([e for e in entries if isinstance(e, OrderState)]) == 300
