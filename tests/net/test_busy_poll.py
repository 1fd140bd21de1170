"""The event loop kept polling between reads close together, and let sleep
once they stop."""

from __future__ import annotations

import asyncio

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
async def test_a_turn_asks_whether_a_write_of_its_own_is_queued() -> None:
    """A turn gives the core away only when the gateway has nothing of its
    own queued (a write on its way out is not held behind other work)."""
    asked: list[bool] = []
    queued = [True]

    def busy() -> bool:
        asked.append(queued[0])
        return queued[0]

    now = [0.0]
    poll = BusyPoll(1.0, busy, clock=lambda: now[0])
    poll.poke()
    await asyncio.sleep(0)
    queued[0] = False
    await asyncio.sleep(0)
    assert asked == [True, False]
    now[0] = 2.0
    await asyncio.sleep(0)
    assert not poll.spinning
