"""A TLS acceptor stopped while connections are still in their handshake
closes every one of them, those whose handshake had not begun too."""

from __future__ import annotations

import asyncio
import contextlib
import os
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
from gateway.net.server import ACCEPTS_PER_TURN, FixServer


async def tls_acceptor(tmp_path: Path) -> tuple[FixServer, int]:
    """A TLS acceptor on a port of loopback, with a LogonTimeout far longer
    than a test: only its stop closes a connection."""
    session = Session(GATEWAY, MemoryStore())
    server = FixServer(
        SessionRegistry([session]), {session.session_id: EchoApplication()}, logon_timeout=60
    )
    server_context, _ = contexts(tmp_path)
    return server, await server.start("127.0.0.1", 0, tls=server_context)


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
    server, port = await tls_acceptor(tmp_path)
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


def open_sockets() -> set[str]:
    """The sockets this process has open (``socket:[inode]``)."""
    links = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, closed since
            link = os.readlink(f"/proc/self/fd/{name}")
            if link.startswith("socket:"):
                links.add(link)
    return links


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_a_stop_closes_a_connection_accepted_in_the_turn_before_it(
    tmp_path: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """The accept has returned the connection's socket, the task accepting
    has not had its turn yet when the stop cancels it: the socket is closed
    by the stop, not left to the garbage collector."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(stop_before_the_acceptor_resumes(tmp_path))


async def stop_before_the_acceptor_resumes(tmp_path: Path) -> None:
    server, port = await tls_acceptor(tmp_path)
    loop = asyncio.get_running_loop()
    peer = socket.socket()
    try:
        await asyncio.sleep(0)  # the acceptor waits for a connection
        before = open_sockets()
        peer.connect(("127.0.0.1", port))  # at once on loopback
        peer.setblocking(False)
        # the first turn that sees the accepted socket runs before the
        # acceptor's, which the accept made ready in the turn before
        while not (accepted := open_sockets() - before):  # noqa: ASYNC110 (no event says it)
            await asyncio.sleep(0)
        await server.stop(grace=0.5)
        assert open_sockets() & accepted == set()
        assert await asyncio.wait_for(ended_by_server(loop, peer), 20) == b""
    finally:
        peer.close()


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_a_flood_of_connects_leaves_the_loop_turns_between_bursts(
    tmp_path: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """Connections waiting in the backlog are taken at most
    ``ACCEPTS_PER_TURN`` in a turn: the loop's other work (a session's
    orders) goes between, however many connects a flood queued."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(turns_beside_a_flood(tmp_path))


async def turns_beside_a_flood(tmp_path: Path) -> None:
    server, port = await tls_acceptor(tmp_path)
    await asyncio.sleep(0)  # the acceptor waits for a connection
    before = open_sockets()
    peers = []
    try:
        # 200 connects in the backlog (512) at once, the loop not turning
        for _ in range(200):
            peer = socket.socket()
            peer.connect(("127.0.0.1", port))  # at once on loopback
            peers.append(peer)
        clients = open_sockets() - before
        # the acceptor's sockets each turn sees new (those past the bound
        # per address are closed a turn or more later: each is seen once)
        accepted: set[str] = set()
        steps = []
        for _ in range(100_000):
            if len(accepted) >= len(peers):
                break
            new = open_sockets() - before - clients - accepted
            accepted |= new
            steps.append(len(new))
            await asyncio.sleep(0)
        assert len(accepted) >= len(peers)
        assert max(steps) <= ACCEPTS_PER_TURN, steps
    finally:
        for peer in peers:
            peer.close()
        await server.stop(grace=0.5)
