"""Clients take turns: a burst of orders from one client does not hold up
another client's order.

The gateway (order flow, simulated LPs, FIX acceptor) runs in this process;
its two client connections are fake transports that write into one list, so
the order in which the gateway handed its messages to the two clients is
one stream the test can read.  No network is involved: the order on that
stream follows from the order in which the event loop runs its callbacks,
not from the machine's speed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from netkit import free_port

from config import Config, default_config_path, parse_config, with_overrides
from gateway.daemon import Gateway
from gateway.fix import codec
from gateway.fix.codec import FixMessage, FrameDecoder
from gateway.net import transport
from gateway.net.server import AcceptedConnection

FINAL = (b"2", b"4", b"8", b"C")
BURST = 1000


class Wire:
    """What the gateway wrote to its client connections, in the order written."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, FixMessage]] = []
        self.changed = asyncio.Event()

    def finals(self, client: str) -> list[bytes]:
        """ClOrdIDs of the final ExecutionReports written to ``client``, in order."""
        return [
            m.get(11) or b""
            for c, m in self.messages
            if c == client and m.msg_type == b"8" and m.get(39) in FINAL
        ]

    async def until(self, done: Callable[[], object], timeout: float = 30.0) -> None:
        """Wait for ``done()`` to hold, checked after each write."""
        async with asyncio.timeout(timeout):
            while not done():
                self.changed.clear()
                await self.changed.wait()


class FakeSocket:
    """The transport of one client connection: parses what is written to
    it onto the shared :class:`Wire`."""

    def __init__(self, client: str, wire: Wire, port: int) -> None:
        self.client = client
        self.wire = wire
        self.port = port
        self.decoder = FrameDecoder()
        self.protocol: AcceptedConnection | None = None

    def write(self, data: bytes) -> None:
        self.decoder.feed(data)
        while (frame := self.decoder.next_frame()) is not None:
            self.wire.messages.append((self.client, codec.parse_frame(frame)))
        self.wire.changed.set()

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self._lost()

    def abort(self) -> None:
        self._lost()

    def _lost(self) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, None)


class Peer:
    """A client's side of a fake connection: frames with its own sequence
    numbers, handed to the gateway as one read."""

    def __init__(self, gateway: Gateway, client: str, wire: Wire, port: int) -> None:
        self.client = client
        self.seq = 1
        self.socket = FakeSocket(client, wire, port)
        self.conn = AcceptedConnection(gateway.fix_server)
        self.socket.protocol = self.conn
        self.conn.connection_made(self.socket)  # type: ignore[arg-type]

    def frame(self, msg_type: bytes, body: bytes) -> bytes:
        header = [
            (34, b"%d" % self.seq),
            (49, self.client.encode()),
            (52, codec.format_utc_timestamp(time.time())),
            (56, b"GATEWAY"),
        ]
        self.seq += 1
        return codec.encode_message(b"FIX.4.4", msg_type, header, body)

    def read(self, data: bytes) -> None:
        """``data`` arrives on the gateway's side of the connection."""
        self.conn.data_received(data)

    async def logon(self, wire: Wire) -> None:
        self.read(self.frame(b"A", b"98=0\x01108=30\x01"))
        await wire.until(lambda: any(c == self.client for c, _ in wire.messages))


def market_order(cl_ord_id: str, side: bytes = b"1") -> bytes:
    fields = [
        (11, cl_ord_id.encode()),
        (38, b"1000"),
        (40, b"1"),
        (54, side),
        (55, b"EUR/USD"),
        (59, b"3"),
        (60, codec.format_utc_timestamp(0.0)),
    ]
    return codec.encode_fields(fields)


async def quoted_gateway(cfg: Config) -> Gateway:
    """A gateway started on ``cfg``, once its simulated LPs quote EUR/USD."""
    gw = Gateway(cfg)
    await gw.start()
    flow = gw.order_flow
    assert flow is not None
    deadline = time.monotonic() + 15
    while flow.book.snapshot("EUR/USD") is None:
        assert time.monotonic() < deadline, "no quotes from the simulated LPs"
        await asyncio.sleep(0.01)  # polling, with a deadline
    return gw


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = parse_config(default_config_path().read_text())
    cfg = with_overrides(
        cfg, fix_port=free_port(), http_port=0, drop_copy_port=0, data_dir=str(tmp_path)
    )
    gw = await quoted_gateway(cfg)
    yield gw
    await gw.stop()


async def burst_and_one(gw: Gateway) -> list[tuple[str, bytes]]:
    """CLIENT1's burst of ``BURST`` market orders arrives in one read, and
    CLIENT2's one order right after it: (client, ClOrdID) of each final
    ExecutionReport, in the order the gateway wrote them."""
    wire = Wire()
    burst = Peer(gw, "CLIENT1", wire, 40001)
    alone = Peer(gw, "CLIENT2", wire, 40002)
    await burst.logon(wire)
    await alone.logon(wire)
    data = b"".join(
        burst.frame(b"D", market_order(f"B{i}", b"1" if i % 2 else b"2")) for i in range(BURST)
    )
    burst.read(data)
    alone.read(alone.frame(b"D", market_order("ALONE")))
    await wire.until(lambda: len(wire.finals("CLIENT1")) >= BURST and wire.finals("CLIENT2"))
    burst.socket.close()
    alone.socket.close()
    return [
        (c, m.get(11) or b"") for c, m in wire.messages if m.msg_type == b"8" and m.get(39) in FINAL
    ]


@pytest.mark.asyncio
async def test_an_order_after_a_burst_is_answered_before_the_burst_is_done(
    gateway: Gateway,
) -> None:
    finals = await burst_and_one(gateway)
    burst = [i for c, i in finals if c == "CLIENT1"]
    assert sorted(burst) == sorted(f"B{i}".encode() for i in range(BURST))  # each once
    assert [i for c, i in finals if c == "CLIENT2"] == [b"ALONE"]
    # ALONE was read after one turn of CLIENT1's (EVENTS_PER_TURN orders);
    # the rest of the burst waited for the turns after it, so ALONE's
    # final report was written behind those of that one turn only, not
    # behind the whole burst
    answered_before = finals.index(("CLIENT2", b"ALONE"))
    assert answered_before <= transport.EVENTS_PER_TURN < BURST, answered_before


@pytest.mark.asyncio
async def test_session_messages_take_turns_as_orders_do(gateway: Gateway) -> None:
    """A burst of TestRequests, which the session answers itself and the
    order flow never sees, is worked a turn's share at a time too: another
    client's order read after it is answered before the burst is done."""
    wire = Wire()
    burst = Peer(gateway, "CLIENT1", wire, 40003)
    alone = Peer(gateway, "CLIENT2", wire, 40004)
    await burst.logon(wire)
    await alone.logon(wire)
    session = burst.conn._conn.session  # type: ignore[union-attr]
    assert session is not None
    before = session.stats.messages_in
    burst.read(b"".join(burst.frame(b"1", b"112=T%d\x01" % i) for i in range(BURST)))
    # the read took one turn's share; the rest waits for the turns after it
    assert session.stats.messages_in - before == transport.EVENTS_PER_TURN
    alone.read(alone.frame(b"D", market_order("ALONE")))

    def heartbeats() -> int:
        return sum(1 for c, m in wire.messages if c == "CLIENT1" and m.get(112) is not None)

    await wire.until(lambda: heartbeats() >= BURST and wire.finals("CLIENT2"))
    first = next(
        n
        for n, (c, m) in enumerate(wire.messages)
        if c == "CLIENT2" and m.msg_type == b"8" and m.get(39) in FINAL
    )
    answered_before = sum(
        1 for c, m in wire.messages[:first] if c == "CLIENT1" and m.get(112) is not None
    )
    # a turn or two of the burst's (while the LP answered), not all of it
    assert answered_before < BURST / 2, answered_before
    burst.socket.close()
    alone.socket.close()


@pytest.mark.asyncio
async def test_a_turn_ends_once_its_messages_add_up_to_its_bytes(gateway: Gateway) -> None:
    """Messages of the largest size allowed take a turn's bytes long before
    its count: another client's order read after 64 of them is answered
    before they are all worked."""
    wire = Wire()
    burst = Peer(gateway, "CLIENT1", wire, 40005)
    alone = Peer(gateway, "CLIENT2", wire, 40006)
    await burst.logon(wire)
    await alone.logon(wire)
    session = burst.conn._conn.session  # type: ignore[union-attr]
    assert session is not None
    before = session.stats.messages_in
    big = b"X" * 20_000
    burst.read(b"".join(burst.frame(b"1", b"112=%s%d\x01" % (big, i)) for i in range(64)))
    # 20 KiB a message: the fourth takes the turn past its 64 KiB
    worked = session.stats.messages_in - before
    assert worked * 20_000 >= transport.BYTES_PER_TURN > (worked - 1) * 20_000
    alone.read(alone.frame(b"D", market_order("ALONE")))

    def heartbeats() -> int:
        return sum(1 for c, m in wire.messages if c == "CLIENT1" and m.get(112) is not None)

    await wire.until(lambda: heartbeats() >= 64 and wire.finals("CLIENT2"))
    first = next(
        n
        for n, (c, m) in enumerate(wire.messages)
        if c == "CLIENT2" and m.msg_type == b"8" and m.get(39) in FINAL
    )
    answered_before = sum(
        1 for c, m in wire.messages[:first] if c == "CLIENT1" and m.get(112) is not None
    )
    assert answered_before < 32, answered_before
    burst.socket.close()
    alone.socket.close()


@pytest.mark.asyncio
async def test_a_turn_that_reads_the_logon_keeps_to_its_bytes_too(gateway: Gateway) -> None:
    wire = Wire()
    burst = Peer(gateway, "CLIENT1", wire, 40007)
    big = b"X" * 20_000
    logon = burst.frame(b"A", b"98=0\x01108=30\x01")
    burst.read(logon + b"".join(burst.frame(b"1", b"112=%s%d\x01" % (big, i)) for i in range(63)))
    session = burst.conn._conn.session  # type: ignore[union-attr]
    assert session is not None
    worked = session.stats.messages_in - 1  # the Logon's aside
    assert worked * 20_000 >= transport.BYTES_PER_TURN > (worked - 1) * 20_000
    burst.socket.close()


@pytest.mark.asyncio
async def test_messages_held_behind_a_gap_are_worked_within_a_turns_bytes(
    gateway: Gateway,
) -> None:
    wire = Wire()
    burst = Peer(gateway, "CLIENT1", wire, 40008)
    await burst.logon(wire)
    session = burst.conn._conn.session  # type: ignore[union-attr]
    assert session is not None
    big = b"X" * 20_000
    gap = burst.frame(b"1", b"112=GAP\x01")
    later = [burst.frame(b"1", b"112=%s%d\x01" % (big, i)) for i in range(32)]
    for frame in later:  # each held: the one before it has not come
        burst.read(frame)
    expected = session.store.next_target_seq
    burst.read(gap)
    # the gap's message and what its turn's bytes let through, not all 32
    held_worked = session.store.next_target_seq - expected - 1
    assert held_worked * 20_000 >= transport.BYTES_PER_TURN > (held_worked - 1) * 20_000
    await wire.until(lambda: session.store.next_target_seq == expected + 33)
    burst.socket.close()
