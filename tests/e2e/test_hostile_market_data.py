"""One client's market data against everyone else, over loopback, on the
default config: a client holding 100 subscriptions of every instrument stops
reading; the gateway holds its refreshes instead of piling them up (and
does not drop it), a client trading beside it is answered throughout, and
once the reader goes on it receives a valid stream: MsgSeqNums without a
gap, and every incremental refresh applies to what that subscription was
sent before.  (What it costs the trader in latency is measured in
bench/RESULTS.md, not asserted here.)"""

from __future__ import annotations

import asyncio
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events

from config import SessionSettings, default_config_path
from gateway.fix import codec
from gateway.fix.codec import FixMessage, FrameDecoder
from gateway.net.client import FixClient

SYMBOLS = (b"EUR/USD", b"GBP/USD", b"USD/JPY", b"XAU/USD", b"BTC/USD", b"US500", b"WTI")
SUBSCRIPTIONS = 100
FINAL = (b"2", b"4", b"8", b"C")


def frame(msg_type: bytes, seq: int, body: bytes) -> bytes:
    ts = codec.format_utc_timestamp(time.time())
    payload = b"35=%b\x0134=%d\x0149=CLIENT2\x0152=%b\x0156=GATEWAY\x01%b" % (
        msg_type,
        seq,
        ts,
        body,
    )
    return codec.finish_message(b"FIX.4.4", payload)


class Reader(asyncio.Protocol):
    """A subscriber that can stop reading; keeps every message it got."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.messages: list[FixMessage] = []
        self.arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.decoder.feed(data)
        while (raw := self.decoder.next_frame()) is not None:
            self.messages.append(codec.parse_frame(raw))
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    async def until(self, predicate: Any, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                if self.closed.is_set():
                    raise AssertionError("the gateway closed the subscriber's connection")
                await self.arrived.wait()


async def subscriber(port: int, update_type: bytes) -> Reader:
    """A client logged on at ``port``, a small receive buffer (the kernel
    holds little for it), that asks for the quotes of every symbol
    ``SUBSCRIPTIONS`` times (MDUpdateType ``update_type``)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    _, reader = await loop.create_connection(Reader, sock=sock)
    assert reader.transport is not None
    reader.transport.write(frame(b"A", 1, b"98=0\x01108=30\x01141=Y\x01"))
    await reader.until(lambda: any(m.msg_type == b"A" for m in reader.messages))
    symbols = b"".join(b"55=%b\x01" % s for s in SYMBOLS)
    request = b"263=1\x01264=0\x01265=%b\x01267=2\x01269=0\x01269=1\x01146=%d\x01%b" % (
        update_type,
        len(SYMBOLS),
        symbols,
    )
    reader.transport.write(
        b"".join(frame(b"V", 2 + i, b"262=MD%d\x01%b" % (i, request)) for i in range(SUBSCRIPTIONS))
    )
    return reader


def log_has(path: Path, event: str, **fields: str) -> bool:
    return any(
        e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        for e in log_events(path)
    )


class Books:
    """The client's side of each subscription: snapshots and increments
    applied as FIX says; an increment that does not fit what was sent
    before fails the test."""

    def __init__(self) -> None:
        self.books: dict[tuple[bytes, bytes], dict[tuple[bytes, Decimal], bytes]] = {}

    def apply(self, msg: FixMessage) -> None:
        fields = msg.fields
        if msg.msg_type == b"W":
            key = (msg.get(262) or b"", msg.get(55) or b"")
            book: dict[tuple[bytes, Decimal], bytes] = {}
            entry: list[bytes] = []
            for tag, value in fields:
                if tag in (269, 270, 271):
                    entry.append(value)
                    if tag == 271:
                        book[(entry[0], Decimal(entry[1].decode()))] = entry[2]
                        entry = []
            self.books[key] = book
            return
        md_req_id = msg.get(262) or b""
        current: dict[int, bytes] = {}

        def close_entry() -> None:
            if not current:
                return
            book = self.books[(md_req_id, current[55])]
            level = (current[269], Decimal(current[270].decode()))
            action = current[279]
            if action == b"2":
                assert level in book, f"DELETE of a level never sent: {level}"
                del book[level]
            else:
                assert (level in book) == (action == b"1"), f"{action!r} of {level}"
                book[level] = current[271]
            current.clear()

        for tag, value in fields:
            if tag == 279:
                close_entry()
            if tag in (279, 269, 55, 270, 271):
                current[tag] = value
        close_entry()


@pytest.mark.asyncio
async def test_a_client_that_stops_reading_its_market_data_is_held_not_piled_up(
    daemon_factory: Any,
) -> None:
    d = daemon_factory("--config", str(default_config_path())).start()
    victim = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await victim.connect("127.0.0.1", d.fix_port)

    reader = await subscriber(d.fix_port, b"1")
    snapshots = SUBSCRIPTIONS * len(SYMBOLS)
    await reader.until(lambda: sum(m.msg_type == b"W" for m in reader.messages) >= snapshots)
    reader.transport.pause_reading()

    # the trader is answered while the quotes pile up for the reader, until
    # the gateway holds the reader's refreshes
    orders = 0

    async def trade() -> None:
        nonlocal orders
        orders += 1
        cl_ord_id = b"V%d" % orders
        body = [
            (11, cl_ord_id),
            (21, b"1"),
            (38, b"1000"),
            (40, b"1"),
            (54, b"1" if orders % 2 else b"2"),
        ]
        body += [(55, b"EUR/USD"), (59, b"3"), (60, codec.format_utc_timestamp(time.time()))]
        victim.send(b"D", codec.encode_fields(body))
        while True:
            msg = await victim.receive(timeout=10)
            if msg.get(11) == cl_ord_id and msg.get(39) in FINAL:
                assert msg.get(39) == b"2", msg
                return

    deadline = time.monotonic() + 90
    while not log_has(d.log_path, "market_data_held", session="FIX.4.4:GATEWAY->CLIENT2"):
        assert time.monotonic() < deadline, "the reader's market data was never held"
        for _ in range(20):
            await trade()
    held_at = orders
    for _ in range(100):
        await trade()
    assert orders == held_at + 100

    # the reader goes on: it catches up, is given the book as it is then,
    # and is still logged on
    reader.transport.resume_reading()
    deadline = time.monotonic() + 60
    while not log_has(d.log_path, "market_data_resumed", session="FIX.4.4:GATEWAY->CLIENT2"):
        assert time.monotonic() < deadline, "the reader's market data never went on"
        await trade()
    seq = 2 + SUBSCRIPTIONS
    reader.transport.write(frame(b"1", seq, b"112=STILL-THERE\x01"))
    await reader.until(lambda: any(m.get(112) == b"STILL-THERE" for m in reader.messages))
    assert not reader.closed.is_set()

    seqs = [int(m.get(34) or b"0") for m in reader.messages]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost on the way
    books = Books()
    for msg in reader.messages:
        if msg.msg_type in (b"W", b"X"):
            books.apply(msg)
    assert len(books.books) == snapshots

    reader.transport.abort()
    await victim.logout()
    assert d.stop() == 0
    assert not any(e.get("event") == "slow_consumer_disconnected" for e in log_events(d.log_path))


@pytest.mark.asyncio
async def test_a_reader_behind_is_held_before_the_outbound_bound_drops_it(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """With the smallest max_outbound_buffer allowed (64 KiB), a subscriber
    that stops reading is still held, not disconnected as a slow consumer:
    what market data it may have queued stays below the bound that drops a
    peer."""
    text = default_config_path().read_text()
    small = text.replace("max_outbound_buffer = 4194304", "max_outbound_buffer = 65536")
    assert small != text
    config = tmp_path / "small-buffer.toml"
    config.write_text(small)
    d = daemon_factory("--config", str(config)).start()

    reader = await subscriber(d.fix_port, b"0")
    await reader.until(lambda: any(m.msg_type == b"W" for m in reader.messages))
    reader.transport.pause_reading()

    session = "FIX.4.4:GATEWAY->CLIENT2"
    deadline = time.monotonic() + 60
    while not log_has(d.log_path, "market_data_held", session=session):
        assert time.monotonic() < deadline, "the reader's market data was never held"
        await asyncio.sleep(0.1)  # polling the log, with the deadline above
    assert not log_has(d.log_path, "slow_consumer_disconnected", session=session)
    # held, and stays connected while the quotes go on
    reader.transport.resume_reading()
    reader.transport.write(frame(b"1", 2 + SUBSCRIPTIONS, b"112=STILL-THERE\x01"))
    await reader.until(lambda: any(m.get(112) == b"STILL-THERE" for m in reader.messages))
    assert not log_has(d.log_path, "slow_consumer_disconnected", session=session)
    reader.transport.abort()
    assert d.stop() == 0
