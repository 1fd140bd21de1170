"""A session over TLS ended by a Logout handshake closes its connection
cleanly on both sides: the side that closes after the last Logout does so
once, with no error out of the connection's reading."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from netkit import make_certificate

from config import SessionSettings
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient
from gateway.net.server import FixServer


@pytest.mark.parametrize("who_logs_out", ["client", "gateway"])
@pytest.mark.asyncio
async def test_a_logout_over_tls_closes_without_an_error(tmp_path: Path, who_logs_out: str) -> None:
    cert_file, key_file = make_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    trust = ssl.create_default_context(cafile=str(cert_file))
    session = Session(
        SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"), MemoryStore()
    )
    server = FixServer(SessionRegistry([session]), {session.session_id: EchoApplication()})
    port = await server.start("127.0.0.1", 0, tls=server_context)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
        await client.connect("127.0.0.1", port, timeout=10, tls=trust)
        if who_logs_out == "client":
            await client.logout(timeout=10)
        else:
            assert server.logout(session, "done for the day")
            await client.wait_closed(10)
        # both ends seen closed: the gateway's connection is gone too
        async with asyncio.timeout(10):
            while server.connections:  # noqa: ASYNC110 (no event says it)
                await asyncio.sleep(0.01)  # polling, with the deadline above
        assert errors == []
    finally:
        loop.set_exception_handler(None)
        await server.stop(grace=0.5)
