"""A trading day end a restart's config moved, across a second restart."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from config import default_config_path, load_config
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow, next_day_end
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import DayEnds, OrderState, Run
from matcher.orders import Order, OrdStatus
from router.model import OrdType, Side, TimeInForce


def a_day_order(order_id: str) -> Order:
    return Order(
        order_id=order_id,
        client="CLIENT1",
        cl_ord_id=f"C-{order_id}",
        orig_cl_ord_id=None,
        symbol="EUR/USD",
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.DAY,
        qty=10,
        price=100_000,
        seq=int(order_id.split("O")[1]),
        status=OrdStatus.NEW,
        leaves_qty=10,
    )


def flow_ending_at(
    path: Path, day_end: str, clock: Callable[[], float]
) -> tuple[OrderFlow, OrderJournal]:
    config = load_config(str(default_config_path()))
    config = msgspec.structs.replace(
        config, orders=msgspec.structs.replace(config.orders, trading_day_end=day_end)
    )
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    journal = OrderJournal(path)
    try:
        built = build_order_flow(config, sessions, journal, Outbox(journal.flush), clock)
    except BaseException:
        journal.close()
        raise
    return built, journal


async def crashed_after_start(path: Path, day_end: str, now: float) -> Path:
    """Start the flow on the journal in ``path`` with the day's end at
    ``day_end`` at ``now`` and take the journal as a ``kill -9`` would
    leave it once the start's writes reached the OS: a copy of the
    folder, returned (the flow is then stopped as usual)."""
    built, journal = flow_ending_at(path, day_end, lambda: now)
    try:
        await built.start()
        journal.flush()
        crashed = path.parent / (path.name + "-crashed")
        crashed.mkdir()
        shutil.copy2(journal.path, crashed / journal.path.name)
        shutil.copy2(path / "run", crashed / "run")
        await built.stop()
    finally:
        journal.close()
    return crashed


def journal_ending_at(path: Path, day_end: float) -> None:
    """A checkpoint's head saying the day ends at ``day_end``, and a DAY order."""
    journal = OrderJournal(path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(DayEnds(day_end))
    journal.add(OrderState(a_day_order("4O1")))
    journal.close()


async def open_after(path: Path, day_end: str, now: float) -> list[str]:
    """The open orders of a start at ``now`` (the day's end ``day_end``)."""
    built, journal = flow_ending_at(path, day_end, lambda: now)
    try:
        await built.start()
        opened = [o.order_id for o in built.matcher.open_orders("CLIENT1")]
        await built.stop()
    finally:
        journal.close()
    return opened


@pytest.mark.asyncio
async def test_a_day_end_a_restart_moved_later_holds_after_a_crash(tmp_path: Path) -> None:
    old_end = next_day_end(time.time(), "21:00")
    journal_ending_at(tmp_path, old_end)  # the day of the orders ends at 21:00
    # at 19:00 the operator restarts the gateway with the day's end at 23:00
    crashed = await crashed_after_start(tmp_path, "23:00", old_end - 2 * 3600)
    # the gateway dies; it is started again at 21:30, with the same config:
    # the day in force ends at 23:00, the DAY order works on
    assert await open_after(crashed, "23:00", old_end + 1800) == ["4O1"]


@pytest.mark.asyncio
async def test_a_day_end_a_restart_moved_earlier_holds_after_a_crash(tmp_path: Path) -> None:
    old_end = next_day_end(time.time(), "22:00")
    journal_ending_at(tmp_path, old_end)  # the day of the orders ends at 22:00
    # at 19:00 the gateway is restarted with the day's end at 21:00
    crashed = await crashed_after_start(tmp_path, "21:00", old_end - 3 * 3600)
    # back after a crash at 21:30: the day in force ended at 21:00
    assert await open_after(crashed, "21:00", old_end - 1800) == []
