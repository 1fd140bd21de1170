"""Connections to a TLS port that never log on are bounded per address as
those to a plain port are: counted from the moment they are accepted, not
from the end of a TLS handshake they may never begin."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from netkit import make_certificate

from config import SessionSettings
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient
from gateway.net.server import MAX_UNBOUND_PER_ADDRESS, FixServer

GATEWAY = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1")


def contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The acceptor's TLS context and a client's that trusts it."""
    cert_file, key_file = make_certificate(directory)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def closed_by_server(loop: asyncio.AbstractEventLoop, peer: socket.socket) -> None:
    """Returns once the acceptor has closed ``peer``'s connection."""
    try:
        while await loop.sock_recv(peer, 4096):
            pass
    except ConnectionError:
        pass


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_connections_that_never_begin_tls_are_bounded_per_address(
    tmp_path: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """On asyncio's loop and on uvloop (the daemon's) alike."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(flood(tmp_path))


async def flood(tmp_path: Path) -> None:
    session = Session(GATEWAY, MemoryStore())
    # far longer than the test: only the bound can close them
    server = FixServer(
        SessionRegistry([session]), {session.session_id: EchoApplication()}, logon_timeout=60
    )
    server_context, client_context = contexts(tmp_path)
    port = await server.start("127.0.0.1", 0, tls=server_context)
    loop = asyncio.get_running_loop()
    extra = 8
    peers: list[socket.socket] = []
    waits: list[asyncio.Task[None]] = []
    try:
        for _ in range(MAX_UNBOUND_PER_ADDRESS + extra):
            peer = socket.socket()
            peer.setblocking(False)
            peers.append(peer)
            await loop.sock_connect(peer, ("127.0.0.1", port))
        waits = [asyncio.create_task(closed_by_server(loop, peer)) for peer in peers]
        # the oldest ones go, the newest stay: each waits for its end, all
        # under one deadline far below the logon timeout
        deadline = time.monotonic() + 20
        while sum(w.done() for w in waits) < extra:
            assert time.monotonic() < deadline, sum(w.done() for w in waits)
            await asyncio.wait(
                [w for w in waits if not w.done()],
                timeout=deadline - time.monotonic(),
                return_when=asyncio.FIRST_COMPLETED,
            )
        assert all(w.done() for w in waits[:extra])
        # a real client from the same address still logs on over TLS
        client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
        await client.connect("127.0.0.1", port, timeout=10, tls=client_context)
        assert client.logged_on
        await client.logout()
    finally:
        for wait in waits:
            wait.cancel()
        for peer in peers:
            peer.close()
        await server.stop(grace=0.5)
