"""The HTTP listeners' connections, bounded per address: an address that
floods them again and again is logged once a minute at most."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.net.peerlog import LOGGED_EVERY
from gateway.ops.connections import HttpConnections


@pytest.mark.asyncio
async def test_an_address_flooding_again_and_again_is_logged_once_a_minute() -> None:
    """A peer that opens one connection too many, closes them all and does
    it again is logged once a minute at most, not once a flood, with the
    connections closed since its last line."""
    now = [1000.0]
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    assert runner.server is not None
    aiohttp_server = runner.server
    connections = HttpConnections(aiohttp_server, per_address=2, clock=lambda: now[0])
    server = await asyncio.get_running_loop().create_server(connections, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def flood() -> None:
        """One connection past the bound: the oldest is closed; then all."""
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, writer in conns:
            writer.write(b"GET / HTTP/1.1\r\nHost: fixgw\r\n")  # never finished
        async with asyncio.timeout(10):  # closed by the server
            with contextlib.suppress(ConnectionResetError):
                await conns[0][0].read()
        for _, writer in conns:
            writer.close()
        # the server has let them all go: the address has none left
        deadline = time.monotonic() + 10
        while aiohttp_server.connections:
            assert time.monotonic() < deadline, len(aiohttp_server.connections)
            await asyncio.sleep(0.02)  # polling, with the deadline above

    try:
        with capture_logs() as logs:
            for _ in range(5):
                await flood()
            now[0] += LOGGED_EVERY
            await flood()
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()
    capped = [e for e in logs if e["event"] == "http_connections_capped"]
    assert [(e["peer"], e["limit"], e.get("closed_since_last")) for e in capped] == [
        ("127.0.0.1", 2, None),
        ("127.0.0.1", 2, 4),
    ]
