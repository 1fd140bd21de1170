"""The FIX acceptor on asyncio (uvloop): a thin layer of sockets and timers.

Each connection is an :class:`asyncio.Protocol` that pushes bytes into its
:class:`~gateway.fix.acceptor.AcceptorConnection`, drains events into the
session's application profile, writes the bytes that result in one
``transport.write`` per batch, and keeps one ``loop.call_at`` timer armed at
the session's next deadline.  Nothing here blocks: a peer that does not read
is disconnected once its unsent bytes pass ``max_outbound_buffer``, so it can
never hold up another session.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from typing import cast

import structlog

from gateway.application import Application
from gateway.fix.acceptor import AcceptorConnection, SessionRegistry
from gateway.fix.session import (
    ApplicationMessage,
    CloseConnection,
    Event,
    LoggedOn,
    LoggedOut,
    Session,
)

_log = structlog.get_logger("gateway.server")

Clock = Callable[[], float]


class FixConnectionProtocol(asyncio.Protocol):
    def __init__(self, server: FixServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._clock = server.clock
        self._transport: asyncio.Transport | None = None
        self._conn: AcceptorConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._flush_scheduled = False
        self._closing = False
        self._peer = "?"

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        sock = self._transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = self._transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        server = self._server
        now = self._clock()
        self._conn = AcceptorConnection(
            server.registry,
            now,
            peer=self._peer,
            max_message_size=server.max_message_size,
            logon_timeout=server.logon_timeout,
        )
        server.connections.add(self)
        _log.debug("connection_accepted", peer=self._peer)
        self._arm_timer(now)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or self._closing:
            return
        now = self._clock()
        conn.receive_data(data)
        self._pump(now)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connection_closed(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self._conn
        if conn is None:
            return
        now = self._clock()
        conn.connection_lost(now)
        session = conn.session
        if session is not None:
            session.wakeup = None
            self._dispatch_all(conn, now)
        self._closing = True

    # -- the pump ------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        conn = self._conn
        assert conn is not None
        self._dispatch_all(conn, now)
        self._flush()
        if self._closing:
            if self._transport is not None:
                self._transport.close()
            return
        self._arm_timer(now)

    def _dispatch_all(self, conn: AcceptorConnection, now: float) -> None:
        while (event := conn.next_event(now)) is not None:
            self._dispatch(conn, event, now)

    def _dispatch(self, conn: AcceptorConnection, event: Event, now: float) -> None:
        session = conn.session
        if isinstance(event, ApplicationMessage):
            assert session is not None
            try:
                self._server.application_for(session).on_message(session, event.message, now)
            except Exception:
                # an application bug must not take the session (or the daemon) down
                _log.exception("application_error", session=session.session_id)
        elif isinstance(event, LoggedOn):
            assert session is not None
            session.wakeup = self._schedule_flush
            self._server.application_for(session).on_logon(session, now)
        elif isinstance(event, LoggedOut):
            assert session is not None
            session.wakeup = None
            self._server.application_for(session).on_logout(session, event.reason, now)
        elif isinstance(event, CloseConnection):
            self._closing = True

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._closing:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        conn = self._conn
        transport = self._transport
        if conn is None or transport is None or transport.is_closing():
            return
        data = conn.data_to_send()
        if not data:
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self._server.max_outbound_buffer:
            _log.warning(
                "slow_consumer_disconnected",
                peer=self._peer,
                session=conn.session.session_id if conn.session else None,
                buffered=transport.get_write_buffer_size(),
            )
            self._closing = True
            transport.abort()

    # -- timers --------------------------------------------------------------------

    def _arm_timer(self, now: float) -> None:
        conn = self._conn
        if conn is None:
            return
        deadline = conn.next_deadline()
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None:
            if self._timer_at <= deadline:
                return  # fires early at worst; it re-arms then
            timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(
            self._loop.time() + max(0.0, deadline - now), self._on_timer
        )

    def _on_timer(self) -> None:
        self._timer = None
        conn = self._conn
        if conn is None or self._closing:
            return
        now = self._clock()
        event = conn.on_timer(now)
        if event is not None:
            self._dispatch(conn, event, now)
        self._pump(now)

    # -- used by the server --------------------------------------------------------

    @property
    def session(self) -> Session | None:
        return self._conn.session if self._conn is not None else None

    def logout(self, text: str) -> None:
        conn = self._conn
        if conn is None or self._closing:
            return
        now = self._clock()
        if conn.session is not None and conn.session.is_logged_on:
            conn.session.logout(now, text)
            self._pump(now)
        elif self._transport is not None:
            self._closing = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


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
    ) -> None:
        self.registry = registry
        self._applications = dict(applications)
        self.max_message_size = max_message_size
        self.max_outbound_buffer = max_outbound_buffer
        self.logon_timeout = logon_timeout
        self.clock = clock
        self.connections: set[FixConnectionProtocol] = set()
        self._server: asyncio.Server | None = None
        self._all_closed: asyncio.Event | None = None

    def application_for(self, session: Session) -> Application:
        return self._applications[session.session_id]

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FixConnectionProtocol(self), host, port, reuse_address=True, backlog=512
        )
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def connection_closed(self, conn: FixConnectionProtocol) -> None:
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
