"""A FIX 4.4 initiator on asyncio: logs on to an acceptor and exchanges
application messages.  Used by the load generator, tools and tests; the same
session layer as the acceptor, in the initiator role."""

from __future__ import annotations

import asyncio
import ssl
import time

from config import SessionSettings
from gateway.fix.codec import FixMessage
from gateway.fix.events import ApplicationMessage, CloseConnection, Event, LoggedOn, LoggedOut
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore, SessionStore
from gateway.net.transport import Clock, Connection, FixTransportProtocol, Outbox


class _InitiatorProtocol(FixTransportProtocol):
    def __init__(self, client: FixClient) -> None:
        super().__init__(client.clock, client.max_outbound_buffer, client.outbox)
        self._client = client

    def _open(self, now: float) -> Connection:
        session = self._client.session
        self._outbox.bind(session, self)
        session.connection_made(now)
        return session

    def _dispatch(self, event: Event, now: float) -> None:
        self._client._on_event(event)

    def _closed(self, now: float) -> None:
        self._client._on_closed()


class FixClient:
    """One initiator session over TCP.

    ``messages`` receives every application message from the acceptor;
    ``events`` every session event (LoggedOn, LoggedOut, CloseConnection).
    """

    def __init__(
        self,
        settings: SessionSettings,
        store: SessionStore | None = None,
        *,
        clock: Clock = time.time,
        max_outbound_buffer: int = 64 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        self.session = Session(settings, store or MemoryStore(), initiator=True)
        self.clock = clock
        self.max_outbound_buffer = max_outbound_buffer
        self.outbox = Outbox()
        self.messages: asyncio.Queue[FixMessage] = asyncio.Queue()
        self.events: list[Event] = []
        self._logged_on = asyncio.Event()
        self._closed = asyncio.Event()
        self._protocol: _InitiatorProtocol | None = None

    async def connect(
        self, host: str, port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None
    ) -> None:
        """Connect (over TLS with ``tls``) and complete the Logon; raise
        ConnectionError if the acceptor refuses or closes instead."""
        loop = asyncio.get_running_loop()
        self._logged_on.clear()
        self._closed.clear()
        _, protocol = await loop.create_connection(
            lambda: _InitiatorProtocol(self),
            host,
            port,
            ssl=tls,
            server_hostname=host if tls is not None else None,
        )
        self._protocol = protocol
        logged_on = asyncio.ensure_future(self._logged_on.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {logged_on, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            logged_on.cancel()
            closed.cancel()
        if not self._logged_on.is_set():
            protocol.abort()
            reason = next(
                (e.reason for e in reversed(self.events) if isinstance(e, CloseConnection)),
                "no Logon response" if not done else "connection closed",
            )
            raise ConnectionError(f"logon to {host}:{port} failed: {reason}")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ApplicationMessage):
            self.messages.put_nowait(event.message)
            return
        self.events.append(event)
        if isinstance(event, LoggedOn):
            self._logged_on.set()
        elif isinstance(event, LoggedOut):
            self._logged_on.clear()

    def _on_closed(self) -> None:
        self._logged_on.clear()
        self._closed.set()

    @property
    def logged_on(self) -> bool:
        return self._logged_on.is_set()

    def send(self, msg_type: bytes, body: bytes) -> int:
        """Send an application message (written at the end of this loop
        turn); returns its MsgSeqNum."""
        return self.outbox.send(self.session, msg_type, body, self.clock())

    async def receive(self, timeout: float = 5.0) -> FixMessage:
        """The next application message from the acceptor."""
        async with asyncio.timeout(timeout):
            return await self.messages.get()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    async def logout(self, text: str = "", timeout: float = 5.0) -> None:
        """Logout handshake, then wait for the connection to close."""
        if self._protocol is not None:
            self._protocol.logout(text)
            await self.wait_closed(timeout)

    def abort(self) -> None:
        if self._protocol is not None:
            self._protocol.abort()
