"""A FixClient that logs on again as soon as its session ended (the acceptor
logged it out), before its old connection is seen closed: the new Logon must
not be taken for failed because the old connection's close arrives late."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from config import SessionSettings
from gateway.fix import new_order_single
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.events import Event, LoggedOut
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient
from gateway.net.server import FixServer

GATEWAY = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1")
CLIENT = SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY")


@pytest_asyncio.fixture
async def acceptor() -> AsyncIterator[tuple[FixServer, Session, int]]:
    session = Session(GATEWAY, MemoryStore())
    server = FixServer(SessionRegistry([session]), {session.session_id: EchoApplication()})
    port = await server.start("127.0.0.1", 0)
    yield server, session, port
    await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_logging_on_again_right_after_a_logout_succeeds(
    acceptor: tuple[FixServer, Session, int],
) -> None:
    server, session, port = acceptor
    c = FixClient(CLIENT, MemoryStore())
    await c.connect("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    again: asyncio.Future[asyncio.Task[None]] = loop.create_future()

    def reconnect(event: Event) -> None:
        if isinstance(event, LoggedOut) and not again.done():
            # the application logs on again as soon as it is told
            again.set_result(asyncio.ensure_future(c.connect("127.0.0.1", port)))

    c.on_event = reconnect
    assert server.logout(session, "end of day")
    logon = await asyncio.wait_for(again, 5)
    await asyncio.wait_for(logon, 10)  # raises LogonError as it is
    assert c.logged_on
    c.send(*new_order_single("AGAIN", "EUR/USD", "buy", 1000, transact_time=time.time()))
    echoed = await c.receive()
    assert echoed.get(11) == b"AGAIN"
    await c.logout()


@pytest.mark.asyncio
async def test_an_address_that_refuses_then_one_that_takes_the_logon(
    acceptor: tuple[FixServer, Session, int],
) -> None:
    """After a session ended and its close was seen, a first address that
    refuses the TCP connection (a gateway killed) must not leave the next
    connect waiting for a close that came long ago."""
    server, session, port = acceptor
    c = FixClient(CLIENT, MemoryStore())
    await c.connect("127.0.0.1", port)
    assert server.logout(session, "failover")
    await c.wait_closed(5)
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more
    taken = await c.connect_any([("127.0.0.1", dead_port), ("127.0.0.1", port)], timeout=5)
    assert taken == ("127.0.0.1", port)
    assert c.logged_on
    await c.logout()
