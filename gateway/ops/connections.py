"""The connections of the HTTP listeners, the gateway's and the back
office's: :class:`HttpConnections` bounds those open from one address (a
process's descriptors are its FIX sessions', its journal's or ledger's
too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.net.peerlog import PeerLog

_log = structlog.get_logger("gateway.ops.connections")

MAX_HTTP_PER_ADDRESS = 32
"""HTTP connections one address may hold open: past it, its oldest is
closed.  A monitoring scraper, a dashboard or the back office needs a few;
a flood of idle or slow connections (aiohttp keeps one that never finishes
its request for an hour) cannot take the descriptors the FIX sessions and
the journal (the back office's ledger) need."""


class HttpConnections:
    """The protocol factory of the HTTP listeners: each connection is served
    by aiohttp's ``server`` (the runner's), and counted by its peer's
    address; past ``per_address`` open from one address, the oldest of them
    is closed (``http_connections_capped``, once a minute at most per
    address, with the connections closed since its last line).  ``clock``
    is monotonic."""

    def __init__(
        self,
        server: web.Server,
        per_address: int = MAX_HTTP_PER_ADDRESS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._server = server
        self._per_address = per_address
        self._clock = clock
        self._open: dict[str, dict[_Connection, None]] = {}
        self._capped = PeerLog(_log, "http_connections_capped", "closed_since_last")

    def __call__(self) -> _Connection:
        return _Connection(self, self._server, loop=asyncio.get_running_loop(), access_log=None)

    def opened(self, conn: _Connection, address: str) -> None:
        conns = self._open.setdefault(address, {})
        conns[conn] = None
        if len(conns) <= self._per_address:
            return
        oldest = next(iter(conns))
        del conns[oldest]
        self._capped.happened(address, self._clock(), limit=self._per_address)
        oldest.force_close()

    def closed(self, conn: _Connection, address: str) -> None:
        conns = self._open.get(address)
        if conns is None:
            return
        conns.pop(conn, None)
        if not conns:
            del self._open[address]


class _Connection(RequestHandler):
    """aiohttp's handler of one connection, which tells :class:`HttpConnections`
    when it opens and closes."""

    def __init__(self, connections: HttpConnections, server: web.Server, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._connections = connections
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple | list) and peer else str(peer)
        self._connections.opened(self, self._address)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._connections.closed(self, self._address)
