"""A TLS acceptor stopped while connections are still in their handshake
closes every one of them, those whose handshake had not begun too."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from test_tls_unbound import GATEWAY, contexts

from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.server import FixServer


async def ended_by_server(loop: asyncio.AbstractEventLoop, peer: socket.socket) -> bytes:
    """What the acceptor sent before closing ``peer``'s connection."""
    received = b""
    try:
        while data := await loop.sock_recv(peer, 4096):
            received += data
    except ConnectionError:
        pass
    return received


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_a_stop_closes_a_connection_accepted_just_before_it(
    tmp_path: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(stop_at_accept(tmp_path))


async def stop_at_accept(tmp_path: Path) -> None:
    session = Session(GATEWAY, MemoryStore())
    # far longer than the test: only the stop can close it
    server = FixServer(
        SessionRegistry([session]), {session.session_id: EchoApplication()}, logon_timeout=60
    )
    server_context, _ = contexts(tmp_path)
    port = await server.start("127.0.0.1", 0, tls=server_context)
    loop = asyncio.get_running_loop()
    peer = socket.socket()
    peer.setblocking(False)
    try:
        await loop.sock_connect(peer, ("127.0.0.1", port))
        # the turn the acceptor takes the connection in, before its
        # handshake has had one
        while not server._handshaking:  # noqa: ASYNC110 (no event says it)
            await asyncio.sleep(0)
        await server.stop(grace=0.5)
        assert await asyncio.wait_for(ended_by_server(loop, peer), 20) == b""
        assert server._handshaking == {}
    finally:
        peer.close()
