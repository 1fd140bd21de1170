"""Load shedding counts the time orders waited in the kernel.

Each turn of a logged-on connection that leaves messages waiting (the
connection is behind) reads how many bytes the kernel still holds for it;
the read that later brings them knows they waited since then at least, and
a NewOrderSingle among them that waited past ``orders.shed_after_ms`` is
refused, however few came with it.  The gateway runs in this process; the
client's connection is a fake transport whose socket is one end of a real
socket pair, so the kernel's queue the gateway reads is real, and the
clock that times waits is moved by hand rather than waited for."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from netkit import free_port
from test_turn_taking import FINAL, FakeSocket, Peer, Wire, market_order, quoted_gateway

from config import default_config_path, parse_config, with_overrides
from gateway.daemon import Gateway
from gateway.fix.codec import FixMessage
from gateway.net.server import AcceptedConnection
from gateway.net.transport import EVENTS_PER_TURN

SHED_MS = 20


class Clock:
    """The clock that times waits: it stands still but for the time moved on
    by hand, so that how long the machine takes to work the orders never
    counts."""

    def __init__(self) -> None:
        self.base = time.monotonic()
        self.ahead = 0.0

    def __call__(self) -> float:
        return self.base + self.ahead


class QueuedSocket(FakeSocket):
    """A fake transport whose socket is a real one: what the test writes to
    its pair waits in the kernel, as a client's bytes not read yet do."""

    def __init__(self, client: str, wire: Wire, port: int, sock: socket.socket) -> None:
        super().__init__(client, wire, port)
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        return super().get_extra_info(name, default)


class QueuedPeer(Peer):
    """A client whose bytes can wait in the kernel; connected (the
    gateway's ``connection_made``) only when :meth:`connect` is called."""

    def __init__(self, gateway: Gateway, client: str, wire: Wire, port: int) -> None:
        self.gateway_end, self.client_end = socket.socketpair()
        self.client = client
        self.seq = 1
        self.socket = QueuedSocket(client, wire, port, self.gateway_end)
        self.conn = AcceptedConnection(gateway.fix_server)
        self.socket.protocol = self.conn

    def connect(self) -> None:
        self.conn.connection_made(self.socket)  # type: ignore[arg-type]

    def queue(self, data: bytes) -> None:
        """``data`` reaches the kernel's queue of the gateway's socket."""
        self.client_end.sendall(data)

    def take(self, size: int) -> bytes:
        """What the kernel holds, taken off its queue (as a read does)."""
        data = b""
        while len(data) < size:
            data += self.gateway_end.recv(size - len(data))
        return data

    def close(self) -> None:
        self.socket.close()
        self.gateway_end.close()
        self.client_end.close()


def finals(wire: Wire, prefix: bytes) -> dict[bytes, FixMessage]:
    return {
        m.get(11) or b"": m
        for c, m in wire.messages
        if m.msg_type == b"8" and m.get(39) in FINAL and (m.get(11) or b"").startswith(prefix)
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def started(tmp_path: Path, clock: Clock, shed_ms: int) -> Gateway:
    text, n = re.subn(
        r"(?m)^shed_after_ms = .*$", f"shed_after_ms = {shed_ms}", default_config_path().read_text()
    )
    assert n == 1
    cfg = with_overrides(
        parse_config(text),
        fix_port=free_port(),
        http_port=0,
        drop_copy_port=0,
        data_dir=str(tmp_path),
    )
    assert cfg.orders.shed_after_ms == shed_ms
    gw = await quoted_gateway(cfg)
    gw.fix_server.wait_clock = clock
    return gw


@pytest_asyncio.fixture
async def shedding(tmp_path: Path, clock: Clock) -> AsyncIterator[Gateway]:
    gw = await started(tmp_path, clock, SHED_MS)
    yield gw
    await gw.stop()


def orders(peer: Peer, prefix: str, count: int) -> bytes:
    return b"".join(
        peer.frame(b"D", market_order(f"{prefix}{i}", b"1" if i % 2 else b"2"))
        for i in range(count)
    )


FIRST = 2 * EVENTS_PER_TURN  # more than a turn takes: the connection is behind


async def a_read_then_a_later_one(
    gw: Gateway,
    clock: Clock,
    *,
    queued_at_first: bool,
    later_by: float,
    meanwhile: Callable[[QueuedPeer], None] | None = None,
) -> tuple[dict[bytes, FixMessage], dict[bytes, FixMessage]]:
    """``FIRST`` orders read, then ten more read ``later_by`` seconds on: in
    the kernel's queue already while the first were worked, or sent after;
    ``meanwhile`` is done between the two.  The final ExecutionReports of
    each."""
    wire = Wire()
    peer = QueuedPeer(gw, "CLIENT1", wire, 40011)
    peer.connect()
    try:
        await peer.logon(wire)
        first, second = orders(peer, "A", FIRST), orders(peer, "B", 10)
        if queued_at_first:
            peer.queue(second)
        peer.read(first)  # its first turn leaves some: it reads the kernel's queue
        await wire.until(lambda: len(finals(wire, b"A")) == FIRST)
        clock.ahead += later_by
        if meanwhile is not None:
            meanwhile(peer)
        if not queued_at_first:
            peer.queue(second)
        peer.read(peer.take(len(second)))
        await wire.until(lambda: len(finals(wire, b"B")) == 10)
        return finals(wire, b"A"), finals(wire, b"B")
    finally:
        peer.close()


@pytest.mark.asyncio
async def test_orders_that_waited_in_the_kernel_past_the_bound_are_shed(
    shedding: Gateway, clock: Clock
) -> None:
    first, second = await a_read_then_a_later_one(
        shedding, clock, queued_at_first=True, later_by=0.050
    )
    assert {m.get(39) for m in first.values()} == {b"2"}, "the first read waited for nothing"
    # ten orders, fewer than a turn takes: only the kernel's queue says they waited
    assert len(second) == 10
    for m in second.values():
        assert m.get(39) == b"8"
        text = (m.get(58) or b"").decode()
        assert text.startswith("gateway busy: the order waited "), text
        waited = int(text.split("waited ")[1].split(" ms")[0])
        assert waited >= 50, text
        assert f"shed_after_ms {SHED_MS}" in text


@pytest.mark.asyncio
async def test_a_wait_in_the_kernel_within_the_bound_is_not_shed(
    shedding: Gateway, clock: Clock
) -> None:
    _, second = await a_read_then_a_later_one(shedding, clock, queued_at_first=True, later_by=0.005)
    assert {m.get(39) for m in second.values()} == {b"2"}


@pytest.mark.asyncio
async def test_orders_sent_after_the_reading_are_not_counted_as_waiting(
    shedding: Gateway, clock: Clock
) -> None:
    """Bytes the kernel did not hold when its queue was read are known to
    have arrived by their own read only: a client idle for a while is not
    taken for one that waited."""
    _, second = await a_read_then_a_later_one(
        shedding, clock, queued_at_first=False, later_by=0.050
    )
    assert {m.get(39) for m in second.values()} == {b"2"}


@pytest.mark.asyncio
async def test_a_connection_not_behind_does_not_read_the_kernel(
    shedding: Gateway, clock: Clock
) -> None:
    """A turn that took in all it had leaves nothing waiting: bytes that
    reach the kernel then, and a loop that stalls before reading them, are
    not load to shed."""
    wire = Wire()
    peer = QueuedPeer(shedding, "CLIENT1", wire, 40012)
    peer.connect()
    try:
        await peer.logon(wire)
        first, second = orders(peer, "A", 10), orders(peer, "B", 10)
        peer.queue(second)
        peer.read(first)  # ten: one turn takes them all
        await wire.until(lambda: len(finals(wire, b"A")) == 10)
        clock.ahead += 0.050
        peer.read(peer.take(len(second)))
        await wire.until(lambda: len(finals(wire, b"B")) == 10)
        assert {m.get(39) for m in finals(wire, b"B").values()} == {b"2"}
    finally:
        peer.close()


@pytest.mark.asyncio
async def test_bytes_that_waited_before_the_logon_are_not_counted(
    shedding: Gateway, clock: Clock
) -> None:
    """What arrived before the connection was taken, or while its Logon was
    held (a failed-Logon delay, a cluster's claim), waited for the gateway's
    own reasons: its orders are worked."""
    wire = Wire()
    peer = QueuedPeer(shedding, "CLIENT1", wire, 40013)
    logon = peer.frame(b"A", b"98=0\x01108=30\x01")
    burst = orders(peer, "E", FIRST)
    peer.queue(logon + burst)  # all there before the accept
    peer.connect()
    try:
        clock.ahead += 1.0
        peer.read(peer.take(len(logon) + len(burst)))
        await wire.until(lambda: len(finals(wire, b"E")) == FIRST)
        assert {m.get(39) for m in finals(wire, b"E").values()} == {b"2"}
    finally:
        peer.close()


@pytest.mark.asyncio
async def test_a_step_of_the_wall_clock_is_no_wait(shedding: Gateway, clock: Clock) -> None:
    """Waits are timed on a clock the wall clock's steps do not move."""
    assert shedding.fix_server.clock is time.time

    def step(peer: QueuedPeer) -> None:
        peer.conn._clock = lambda: time.time() + 0.5  # the connection's wall clock

    _, second = await a_read_then_a_later_one(
        shedding, clock, queued_at_first=True, later_by=0.0, meanwhile=step
    )
    assert {m.get(39) for m in second.values()} == {b"2"}


@pytest.mark.asyncio
async def test_without_shedding_the_kernel_is_not_read(tmp_path: Path, clock: Clock) -> None:
    gw = await started(tmp_path, clock, 0)
    try:
        assert not gw.fix_server.measure_waits
        _, second = await a_read_then_a_later_one(gw, clock, queued_at_first=True, later_by=0.050)
        assert {m.get(39) for m in second.values()} == {b"2"}
    finally:
        await gw.stop()
