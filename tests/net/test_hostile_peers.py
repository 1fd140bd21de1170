"""Peers that misbehave at the socket level, over loopback: what the
acceptor does with a connection it closes while the peer reads nothing, and
with connections that never get as far as a Logon."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from config import SessionSettings
from gateway.fix import codec, new_order_single
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.server import FixServer
from gateway.net.transport import CLOSE_GRACE

GATEWAY = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1")


def frame(msg_type: bytes, seq: int, body: bytes = b"") -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(time.time())),
        (56, b"GATEWAY"),
    ]
    return codec.encode_message(b"FIX.4.4", msg_type, header, body)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Acceptor:
    """A FixServer on a free loopback port with the one session GATEWAY <- CLIENT1."""

    def __init__(self) -> None:
        self.session = Session(GATEWAY, MemoryStore())
        self.server = FixServer(
            SessionRegistry([self.session]),
            {self.session.session_id: EchoApplication()},
            max_outbound_buffer=64 * 1024 * 1024,
        )
        self.port = 0


@pytest_asyncio.fixture
async def acceptor() -> AsyncIterator[Acceptor]:
    a = Acceptor()
    a.port = await a.server.start("127.0.0.1", 0)
    yield a
    await a.server.stop(grace=0.5)


async def until(condition: object, timeout: float) -> bool:
    """Poll ``condition`` (a callable) until true or ``timeout`` passes."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)  # polling, with the deadline above
    return bool(condition())


@pytest.mark.asyncio
async def test_a_connection_closed_while_its_peer_reads_nothing_is_let_go(
    acceptor: Acceptor,
) -> None:
    """The peer logs on, stops reading with more queued for it than the
    kernel holds, and logs out: the gateway answers and closes; the bytes
    it queued can never leave, so the connection is dropped, not kept
    open for as long as the peer keeps its socket."""
    loop = asyncio.get_running_loop()
    before = open_fds()
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    try:
        await loop.sock_connect(peer, ("127.0.0.1", acceptor.port))
        await loop.sock_sendall(peer, frame(b"A", 1, b"98=0\x01108=30\x01"))
        assert await until(lambda: acceptor.session.is_logged_on, 5)
        seq = 2
        # orders are echoed: until some of the answers wait in the gateway
        while not acceptor.server.outbox.backlog(acceptor.session):
            _, body = new_order_single(
                "X" * 40, "EURUSD", "buy", 1, transact_time=time.time(), price=1, ord_type="limit"
            )
            batch = b"".join(
                frame(b"D", seq + i, body + b"58=" + b"x" * 2000 + b"\x01") for i in range(50)
            )
            seq += 50
            await loop.sock_sendall(peer, batch)
            await asyncio.sleep(0.01)
            assert seq < 100_000
        await loop.sock_sendall(peer, frame(b"5", seq))
        assert await until(lambda: not acceptor.session.is_connected, 5)
        # answered and closed: the connection goes, whatever the peer does
        assert await until(lambda: not acceptor.server.connections, CLOSE_GRACE + 5)
        assert open_fds() == before + 1  # the peer's own socket only
    finally:
        peer.close()
