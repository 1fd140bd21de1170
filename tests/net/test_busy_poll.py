"""The event loop kept polling between reads close together, and let sleep
once they stop."""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.net.transport import BusyPoll


@pytest.mark.asyncio
async def test_it_polls_while_reads_come_and_stops_a_window_after_the_last() -> None:
    now = [100.0]
    busy = BusyPoll(0.002, clock=lambda: now[0])
    assert not busy.spinning
    busy.poke()
    assert busy.spinning
    for _ in range(5):  # the loop keeps turning: each turn schedules the next
        await asyncio.sleep(0)
    assert busy.turns >= 4
    now[0] += 0.0015
    busy.poke()  # another read inside the window: the window starts again
    now[0] += 0.0015
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert busy.spinning
    now[0] += 0.001  # 2.5 ms since the last read
    turns = busy.turns
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not busy.spinning
    assert busy.turns <= turns + 1
    await asyncio.sleep(0)
    assert busy.turns <= turns + 1  # nothing left scheduled: the loop may sleep


@pytest.mark.asyncio
async def test_a_read_while_polling_schedules_no_second_chain() -> None:
    now = [0.0]
    busy = BusyPoll(1.0, clock=lambda: now[0])
    for _ in range(3):
        busy.poke()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # one turn a loop iteration, however many reads: two iterations, two turns
    assert busy.turns == 2
    now[0] = 5.0
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not busy.spinning


@pytest.mark.asyncio
async def test_a_turn_never_gives_its_core_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """A yield would hand the core to whatever else is ready on it (the
    drop copy at idle priority included), which keeps it until the next
    scheduler tick while the loop waits behind it."""
    yields: list[None] = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(None))
    now = [0.0]
    poll = BusyPoll(1.0, clock=lambda: now[0])
    poll.poke()
    for _ in range(5):
        await asyncio.sleep(0)
    assert poll.turns >= 4
    assert yields == []
    now[0] = 2.0
    await asyncio.sleep(0)
    assert not poll.spinning
