"""The FIX acceptor: many sessions on one port, each connection isolated.

Connections start unbound; their first message (a Logon) binds them to a
configured session (see :mod:`gateway.fix.acceptor`).  Events are handed to
the session's application profile.  A misbehaving application or peer ends
its own connection at worst, never another one.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, cast

import structlog

from gateway.fix.acceptor import AcceptorConnection, SessionRegistry
from gateway.fix.application import Application
from gateway.fix.events import ApplicationMessage, CloseConnection, Event, LoggedOn, LoggedOut
from gateway.fix.session import Session
from gateway.net.transport import Clock, Connection, FixTransportProtocol, Outbox

_log = structlog.get_logger("gateway.net.server")


# Failed logons from one address: after FREE_FAILURES within FAILURE_WINDOW
# seconds, each new connection from it is read only after a delay doubling
# from one second up to MAX_LOGON_DELAY.
FREE_FAILURES: Final = 3
FAILURE_WINDOW: Final = 60.0
MAX_LOGON_DELAY: Final = 30.0


class LogonFailures:
    """Recent failed logons by peer address, and the delay they earn."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}

    def record(self, address: str, now: float) -> None:
        times = self._times.setdefault(address, deque())
        times.append(now)
        self._forget_old(address, now)

    def delay(self, address: str, now: float) -> float:
        """Seconds a new connection from ``address`` waits before it is read."""
        self._forget_old(address, now)
        extra = len(self._times.get(address, ())) - FREE_FAILURES
        return 0.0 if extra < 0 else min(2.0**extra, MAX_LOGON_DELAY)

    def _forget_old(self, address: str, now: float) -> None:
        times = self._times.get(address)
        if times is None:
            return
        while times and times[0] < now - FAILURE_WINDOW:
            times.popleft()
        if not times:
            del self._times[address]


class AcceptedConnection(FixTransportProtocol):
    def __init__(self, server: FixServer) -> None:
        super().__init__(server.clock, server.max_outbound_buffer, server.outbox)
        self._server = server
        self._acceptor: AcceptorConnection | None = None
        self._logged_on = False
        self._address = "?"

    def _open(self, now: float) -> Connection:
        server = self._server
        server.connections.add(self)
        transport = self._transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        self._address = str(peer[0]) if isinstance(peer, tuple) else self.peer
        delay = server.failures.delay(self._address, now)
        if delay and transport is not None:
            # repeated failed logons from this address: its next try waits
            _log.warning("logon_slowed", peer=self.peer, delay=delay)
            transport.pause_reading()
            self._reading_paused = self._hold_reading = True
            self._loop.call_later(delay, self._end_delay)
        self._acceptor = AcceptorConnection(
            server.registry,
            now,
            peer=self.peer,
            max_message_size=server.max_message_size,
            logon_timeout=server.logon_timeout,
        )
        return self._acceptor

    def _end_delay(self) -> None:
        self._hold_reading = False
        if self._closing or self._transport is None:
            return
        self._reading_paused = False
        self._transport.resume_reading()

    def _dispatch(self, event: Event, now: float) -> None:
        if isinstance(event, LoggedOn):
            self._logged_on = True
        elif isinstance(event, CloseConnection) and not self._logged_on:
            self._server.failures.record(self._address, now)
        acceptor = self._acceptor
        session = acceptor.session if acceptor is not None else None
        if session is None:
            return
        if isinstance(event, ApplicationMessage):
            try:
                self._server.application_for(session).on_message(session, event.message, now)
            except Exception:
                # an application bug must not take the session or the daemon down
                _log.exception("application_error", session=session.session_id)
        elif isinstance(event, LoggedOn):
            self._outbox.bind(session, self)
            self._server.application_for(session).on_logon(session, now)
        elif isinstance(event, LoggedOut):
            self._outbox.unbind(session, self)
            self._server.application_for(session).on_logout(session, event.reason, now)

    def _closed(self, now: float) -> None:
        self._server.connection_closed(self)


class FixServer:
    """Accepts FIX connections for the configured sessions on one port."""

    def __init__(
        self,
        registry: SessionRegistry,
        applications: Mapping[str, Application],
        *,
        max_message_size: int = 65536,
        max_outbound_buffer: int = 4 * 1024 * 1024,
        logon_timeout: float = 10.0,
        clock: Clock = time.time,
        outbox: Outbox | None = None,
    ) -> None:
        """``outbox`` writes the sessions' bytes (one of its own when not
        given); an application that sends outside its connection's turn
        (an answer arriving from elsewhere) wakes it for the session."""
        self.registry = registry
        self._applications = dict(applications)
        self.max_message_size = max_message_size
        self.max_outbound_buffer = max_outbound_buffer
        self.logon_timeout = logon_timeout
        self.clock = clock
        self.outbox = outbox if outbox is not None else Outbox()
        self.connections: set[AcceptedConnection] = set()
        self.failures = LogonFailures()
        self._server: asyncio.Server | None = None
        self._all_closed: asyncio.Event | None = None

    def application_for(self, session: Session) -> Application:
        return self._applications[session.session_id]

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen (over TLS with ``tls``); returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AcceptedConnection(self),
            host,
            port,
            reuse_address=True,
            backlog=512,
            ssl=tls,
        )
        # uvloop's server hands back a list where asyncio's type says tuple:
        # read it untyped, as compiled code checks declared types
        listening = cast(Any, self._server).sockets
        return int(listening[0].getsockname()[1])

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def connection_closed(self, conn: AcceptedConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, log every session out, wait for the Logout
        handshakes (at most ``grace`` seconds), then drop what is left."""
        if self._server is not None:
            self._server.close()
        self._all_closed = asyncio.Event()
        if not self.connections:
            self._all_closed.set()
        for conn in list(self.connections):
            conn.logout("Gateway shutting down")
        try:
            async with asyncio.timeout(grace):
                await self._all_closed.wait()
        except TimeoutError:
            pass
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
