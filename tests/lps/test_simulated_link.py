"""The simulated LP's link: drops, reconnects, owned tasks, determinism."""

from __future__ import annotations

import asyncio

import pytest
from lp_test_kit import EventQueue, MakeLp, child
from structlog.testing import capture_logs

from router.model import ChildCanceled, ChildFill, ChildReject, LpEvent, LpStatus, Quote, Side


def lp_tasks(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"lp:{name}:")]


@pytest.mark.asyncio
async def test_a_drop_reports_the_link_then_cancels_every_open_child(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, latency_ms=60_000)
    await lp.connect()
    events.drain()
    orders = [
        child("c1", Side.BUY, 3, 110005),
        child("c2", Side.SELL, 4, 109995),
        child("c3", Side.BUY, 5, 200000, symbol="XAU/USD"),
    ]
    for order in orders:
        lp.send(order)
    assert lp.open_child_ids == ("c1", "c2", "c3")

    lp.disconnect_now()
    assert not lp.up
    assert events.drain() == [
        LpStatus("lp-a", False, "dropped on command"),
        ChildCanceled("c1", 3, "lp disconnected"),
        ChildCanceled("c2", 4, "lp disconnected"),
        ChildCanceled("c3", 5, "lp disconnected"),
    ]
    assert lp.open_child_ids == ()
    lp.disconnect_now()  # already down: nothing more
    await lp.disconnect()  # waits for the canceled quote task
    assert lp_tasks("lp-a") == []
    assert events.empty()


@pytest.mark.asyncio
async def test_disconnect_keeps_the_same_contract(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, latency_ms=60_000, quote_interval_ms=1)
    await lp.connect()
    assert [t.get_name() for t in lp_tasks("lp-a")] == ["lp:lp-a:quotes"]
    lp.send(child("c1", Side.BUY, 2, 110005))
    await lp.disconnect()
    assert lp_tasks("lp-a") == []
    assert [e for e in events.drain() if not isinstance(e, Quote)] == [
        LpStatus("lp-a", True, "connected"),
        LpStatus("lp-a", False, "disconnected"),
        ChildCanceled("c1", 2, "lp disconnected"),
    ]


@pytest.mark.asyncio
async def test_children_sent_while_down_are_rejected(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events)
    lp.send(child("c1", Side.BUY, 1, 110001))
    assert await events.next() == ChildReject("c1", "lp down")
    await lp.connect()
    lp.disconnect_now()
    events.drain()
    lp.send(child("c2", Side.BUY, 1, 110001))
    assert await events.next() == ChildReject("c2", "lp down")


@pytest.mark.asyncio
async def test_reconnect_reports_the_link_and_quotes_afresh(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, symbols=["EUR/USD", "BTC/USD"], start_mid={"EUR/USD": "1.10000"})
    await lp.connect()
    lp.disconnect_now()
    events.drain()

    lp.reconnect_now()
    assert lp.up
    lp.reconnect_now()  # already up: nothing more
    seen = events.drain()
    assert seen[0] == LpStatus("lp-a", True, "reconnected")
    assert [q.symbol for q in seen[1:] if isinstance(q, Quote)] == ["EUR/USD", "BTC/USD"]
    assert len(seen) == 3

    lp.send(child("c1", Side.BUY, 2, 110001))
    got = await events.child_events("c1")
    assert got[-1] == ChildFill("c1", "lp-a-x1", 2, 110001, 0)


@pytest.mark.asyncio
async def test_reconnect_restarts_the_quote_timer(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, symbols=["EUR/USD"], quote_interval_ms=1)
    await lp.connect()
    lp.disconnect_now()
    lp.reconnect_now()
    events.drain()
    for _ in range(3):
        await events.next_of(Quote)
    assert len(lp_tasks("lp-a")) >= 1


@pytest.mark.asyncio
async def test_a_failed_quote_task_is_logged_and_takes_the_lp_down(make_lp: MakeLp) -> None:
    events = EventQueue()
    quotes = 0

    def sink(event: LpEvent) -> None:
        nonlocal quotes
        if isinstance(event, Quote):
            quotes += 1
            if quotes == 2:  # the first timed quote
                raise RuntimeError("sink broke")
        events(event)

    lp = make_lp(sink=events, symbols=["EUR/USD"], quote_interval_ms=1, latency_ms=60_000)
    lp.sink = sink
    with capture_logs() as logs:
        await lp.connect()
        lp.send(child("c1", Side.BUY, 1, 110001))
        [task] = lp_tasks("lp-a")
        done, _ = await asyncio.wait([task], timeout=30)  # a bound, not a wait
        assert done, "the quotes task did not fail"
    assert not lp.up
    assert [e for e in events.seen if not isinstance(e, Quote)] == [
        LpStatus("lp-a", True, "connected"),
        LpStatus("lp-a", False, "lp:lp-a:quotes failed: RuntimeError('sink broke')"),
        ChildCanceled("c1", 1, "lp disconnected"),
    ]
    [entry] = [e for e in logs if e["event"] == "lp_task_failed"]
    assert entry["log_level"] == "error"
    assert entry["lp"] == "lp-a"
    assert entry["task"] == "lp:lp-a:quotes"
    assert isinstance(entry["exc_info"], RuntimeError)


async def scripted_run(make_lp: MakeLp, seeds: list[int]) -> list[list[LpEvent]]:
    """Drive one LP per seed through the same calls, side by side."""
    queues = [EventQueue() for _ in seeds]
    lps = [
        make_lp(
            "lp-d",
            queue,
            seed=seed,
            walk_ticks=3,
            depth_levels=4,
            level_qty_lots=7,
            reject_probability=0.25,
            partial_fill_probability=0.35,
        )
        for seed, queue in zip(seeds, queues, strict=True)
    ]
    for lp in lps:
        await lp.connect()
    for n in range(120):
        symbol = lps[0].symbols[n % len(lps[0].symbols)]
        side = Side.BUY if n % 3 else Side.SELL
        for lp, queue in zip(lps, queues, strict=True):
            lp.market.step()
            lp.publish_quotes()
            # The same limit for every LP: a few ticks through the first LP's mid.
            limit = lps[0].market.mid(symbol) + side.sign * (n % 9)
            lp.send(child(f"c{n}", side, 1 + n % 25, limit, lp="lp-d", symbol=symbol))
            await queue.child_events(f"c{n}")
        if n == 60:
            for lp in lps:
                lp.disconnect_now()
                lp.reconnect_now()
    for lp in lps:
        await lp.disconnect()
    return [queue.seen for queue in queues]


@pytest.mark.asyncio
async def test_the_same_seed_and_calls_give_the_same_events(make_lp: MakeLp) -> None:
    first, second, other = await scripted_run(make_lp, [5, 5, 6])
    assert len(first) > 500
    assert first == second
    assert first != other
    kinds = {type(e).__name__ for e in first}
    assert kinds == {"LpStatus", "Quote", "ChildAck", "ChildFill", "ChildReject", "ChildCanceled"}
