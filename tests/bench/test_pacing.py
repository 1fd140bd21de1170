"""A paced run times an order the bound on orders in flight held back from
when it fell due, not from its late send: a gateway that falls behind fills
the client's window, and the orders waiting in the client are part of its
latency (without this, 30,000/s offered to a gateway answering 10,000/s
with 200 in flight reads as 20 ms while the orders wait seconds); and a
paced run of the independent client ends when its connection does.

The runs here are driven on a made-up clock: no timing is measured."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from test_independent_load import load

from gateway.fix import codec
from gateway.fix.events import ApplicationMessage
from gateway.fix.states import SessionState
from gateway.sim.loadgen import LoadClient, Pacing

MS = 1_000_000


class FakeTime:
    """The ``time`` module with a monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns

    def perf_counter(self) -> float:
        return self.ns / 1e9

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class FakeAsyncio:
    """``asyncio`` whose ``sleep`` moves the clock one tick and lets a
    gateway answer."""

    def __init__(self, clock: FakeTime, gateway: Any) -> None:
        self.clock = clock
        self.gateway = gateway

    async def sleep(self, seconds: float) -> None:
        self.clock.ns += round(seconds * 1e9)
        self.gateway()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def expected_ms() -> list[int]:
    """1,000/s, 2 in flight, a gateway silent for 10 ms that then answers
    each order a tick after it is sent: orders 1 and 2 wait 10 and 9 ms;
    3-11, due at 2-10 ms, go out two a tick from 10 ms on, each waiting
    from when it fell due; the backlog is gone at 17 ms."""
    latencies = [10, 9]
    for number in range(3, 21):
        sent = 10 + (number - 3) // 2 if number <= 18 else number - 1
        latencies.append(sent + 1 - (number - 1))
    return latencies


def test_an_order_held_back_by_the_window_is_timed_from_when_it_fell_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeTime()

    async def scenario() -> Any:
        client = load.Initiator("CLIENT1", "GATEWAY", "EUR/USD", 1000)

        def gateway() -> None:  # silent for 10 ms, then answers all in flight
            if clock.ns >= 10 * MS:
                for cl_ord_id in list(client.pending):
                    client.answered(cl_ord_id, False)

        monkeypatch.setattr(load, "time", clock)
        monkeypatch.setattr(load, "asyncio", FakeAsyncio(clock, gateway))
        return await client.load("gateway", 20, 1000.0, 2)

    run = asyncio.run(scenario())
    assert run.done == 20
    assert [round(x / 1000) for x in run.latencies_us] == expected_ms()
    assert expected_ms()[:6] == [10, 9, 9, 8, 8, 7]
    # nine answers over 5 ms (orders 1-9), one stall; from the send, two
    assert len(run.slow_at_ns) == 9
    assert run.stalls == 1
    assert run.pct(99) == 10_000


def test_pacing_notes_the_tick_that_first_found_each_order_due() -> None:
    pacing = Pacing(start_ns=0, rate=1000.0, count=6)
    assert pacing.due(0) == 1
    assert pacing.held_since(1, 0) is None  # sent at the tick it fell due
    assert pacing.due(2 * MS) == 3
    assert pacing.due(2 * MS) == 3  # the same tick again notes nothing new
    assert pacing.due(5 * MS + MS // 2) == 6
    assert pacing.due(60 * MS) == 6  # never past the run's count
    assert pacing.held_since(2, 9 * MS) == 2 * MS
    assert pacing.held_since(3, 9 * MS) == 2 * MS
    assert pacing.held_since(4, 9 * MS) == 5 * MS + MS // 2
    assert pacing.held_since(6, 5 * MS + MS // 2) is None


def filled(cl_ord_id: bytes) -> ApplicationMessage:
    body = b"35=8\x0134=2\x0149=GATEWAY\x0156=CLIENT1\x0111=%b\x0139=2\x01" % cl_ord_id
    return ApplicationMessage(codec.parse_frame(codec.finish_message(b"FIX.4.4", body)))


def test_fixgw_bench_times_an_order_held_back_by_the_window_from_when_it_fell_due() -> None:
    clock = FakeTime()

    async def scenario() -> Any:
        client = LoadClient("CLIENT1", "GATEWAY")
        client.session._machine.state = SessionState.ACTIVE  # as if logged on

        def gateway() -> None:  # silent for 10 ms, then answers all in flight
            if clock.ns >= 10 * MS:
                for cl_ord_id in list(client._pending):
                    client._on_event(filled(cl_ord_id))

        client.monotonic_ns = clock.perf_counter_ns
        client.tick = FakeAsyncio(clock, gateway).sleep
        return await client.run(20, 1000.0, 2)

    stats = asyncio.run(scenario())
    assert stats.completed == 20
    assert [round(x / 1000) for x in stats.latencies_us] == expected_ms()
    assert len(stats.slow_at_ns) == 9
    assert stats.stalls == 1


@pytest.mark.asyncio
async def test_the_load_clients_held_orders_are_timed_from_when_they_fell_due() -> None:
    client = LoadClient("CLIENT1", "GATEWAY")
    base = 1_000 * MS
    pacing = Pacing(start_ns=base, rate=1000.0, count=6)
    client.send_due(pacing, base, 2)  # order 1
    client.send_due(pacing, base + MS, 2)  # order 2: the window is full
    client.send_due(pacing, base + 2 * MS, 2)  # order 3 due, held
    client.send_due(pacing, base + 5 * MS + MS // 2, 2)  # 4-6 due, held
    assert client.stats.sent == 2
    sent = list(client._pending)
    client._pending.clear()  # both answered
    client.send_due(pacing, base + 9 * MS, 2)
    assert client.stats.sent == 4
    assert [client._pending[k] for k in client._pending if k not in sent] == [
        base + 2 * MS,
        base + 5 * MS + MS // 2,
    ]


def test_a_paced_run_ends_when_the_connection_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that goes away mid-run: the run ends with what it had,
    rather than ticking for ever with its window full of orders no one
    will answer."""
    clock = FakeTime()

    async def scenario() -> Any:
        client = load.Initiator("CLIENT1", "GATEWAY", "EUR/USD", 1000)

        def gateway() -> None:  # never answers; the connection ends at 5 ms
            if clock.ns == 5 * MS:
                client.connection_lost(None)
            assert clock.ns < 1_000 * MS, "the run did not end with its connection"

        monkeypatch.setattr(load, "time", clock)
        monkeypatch.setattr(load, "asyncio", FakeAsyncio(clock, gateway))
        run = await client.load("gateway", 100, 1000.0, 2)
        for ended in (client.closed, client.logged_on):  # both say why
            with pytest.raises(ConnectionError):
                await ended
        return run

    run = asyncio.run(scenario())
    assert (run.sent, run.done) == (2, 0)
