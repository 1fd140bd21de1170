"""A FIX 4.4 initiator on asyncio: logs on to an acceptor and exchanges
application messages.  Used by the load generator, tools and tests; the same
session layer as the acceptor, in the initiator role."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence

from mypy_extensions import mypyc_attr

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
        self.ended = False
        """Whether this connection's close was seen."""

    def _open(self, now: float) -> Connection:
        session = self._client.session
        self._outbox.bind(session, self)
        session.connection_made(now)
        return session

    def _dispatch(self, event: Event, now: float) -> None:
        self._client._on_event(event)

    def _closed(self, now: float) -> None:
        self.ended = True
        self._client._on_closed()


# mypyc compiles no class derived from ConnectionError: this one stays a
# plain Python class in the compiled module
@mypyc_attr(native_class=False)
class LogonError(ConnectionError):
    """Our Logon did not complete; the message says who refused what, e.g.
    ``logon to 127.0.0.1:9876 as CLIENT1 -> GATEWAY refused: MsgSeqNum too
    low, expecting 3 but received 1``.

    ``refused`` is True when the acceptor answered the Logon with a Logout;
    ``text`` is then that Logout's Text (58), "" when it gave none.  When
    ``refused`` is False the acceptor closed the connection without a word,
    did not answer in time, or our side gave up (its reason is in the
    message) and ``text`` is "".
    """

    def __init__(self, message: str, *, refused: bool = False, text: str = "") -> None:
        super().__init__(message)
        self.refused = refused
        self.text = text


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
        self._held = False
        self.on_event: Callable[[Event], None] | None = None
        """Called with each session event as it happens (after it is in
        ``events``): an application that logs on again at a LoggedOut, say."""

    async def connect(
        self, host: str, port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None
    ) -> None:
        """Connect (over TLS with ``tls``) and complete the Logon; raise
        :class:`LogonError` (a ConnectionError) if the acceptor refuses,
        closes or does not answer instead: ``timeout`` seconds for the TCP
        and TLS handshakes, then as long again for the Logon's answer."""
        loop = asyncio.get_running_loop()
        old = self._protocol
        if old is not None and not old.ended:
            # the last connection is not seen closed yet: its peer died, or
            # the session ended (a Logout) and its close is still under
            # way; its end, seen later, would end the new connection's
            # session (the same Session) and fail the new Logon
            if self.session.is_connected:
                old.abort()
            try:
                await self.wait_closed(timeout)
            except TimeoutError:
                old.abort()  # its peer does not take its last bytes
                await self.wait_closed(timeout)
        self._logged_on.clear()
        self._closed.clear()
        first_event = len(self.events)
        try:
            # an acceptor that never finishes the TCP or TLS handshake is
            # one that does not answer too
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(
                    lambda: _InitiatorProtocol(self),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            settings = self.settings
            raise LogonError(
                f"logon to {host}:{port} as {settings.SenderCompID} -> "
                f"{settings.TargetCompID} failed: no answer within {timeout:g} s"
            ) from None
        self._protocol = protocol
        if self._held:
            protocol.hold_reading(True)
        logged_on = asyncio.ensure_future(self._logged_on.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait(
                {logged_on, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            logged_on.cancel()
            closed.cancel()
        if not self._logged_on.is_set():
            error = self._logon_error(f"{host}:{port}", timeout, first_event)
            protocol.abort()
            raise error

    async def connect_any(
        self,
        addresses: Sequence[tuple[str, int]],
        timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
    ) -> tuple[str, int]:
        """Log on through the first of ``addresses`` that takes the session
        (several gateways of a cluster: the one serving it); returns that
        address.  :class:`LogonError` naming each refusal when none does,
        ``refused`` when each refused with a Logout."""
        failures: list[str] = []
        refused = True
        for host, port in addresses:
            try:
                await self.connect(host, port, timeout, tls)
                return host, port
            except LogonError as logon_error:
                failures.append(str(logon_error))
                refused = refused and logon_error.refused
            except OSError as os_error:  # a name of its own: compiled, a name has one type
                failures.append(f"connect to {host}:{port} failed: {os_error.strerror or os_error}")
                refused = False
        raise LogonError("; ".join(failures) or "no address to log on to", refused=refused)

    def _logon_error(self, address: str, timeout: float, first_event: int) -> LogonError:
        settings = self.settings
        logon = f"logon to {address} as {settings.SenderCompID} -> {settings.TargetCompID}"
        received = self.session.peer_logout_text
        if received is not None:
            text = received.decode("latin-1")
            shown = (text if text.isprintable() else repr(text)[1:-1]) or "Logout without a Text"
            return LogonError(f"{logon} refused: {shown}", refused=True, text=text)
        # our session closed the connection: it found fault with the answer
        ours = [e.reason for e in self.events[first_event:] if isinstance(e, CloseConnection)]
        if ours:
            return LogonError(f"{logon} failed on our side: {ours[-1]}")
        if self._closed.is_set():
            return LogonError(
                f"{logon} failed: the acceptor closed the connection without a Logout"
            )
        return LogonError(f"{logon} failed: no answer within {timeout:g} s")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ApplicationMessage):
            self.messages.put_nowait(event.message)
            return
        self.events.append(event)
        if isinstance(event, LoggedOn):
            self._logged_on.set()
        elif isinstance(event, LoggedOut):
            self._logged_on.clear()
        if self.on_event is not None:
            self.on_event(event)

    def _on_closed(self) -> None:
        self._logged_on.clear()
        self._closed.set()

    def hold_reading(self, hold: bool) -> None:
        """Stop reading from the acceptor (``hold``) until called with False:
        what it sends waits in its own buffers meanwhile.  A connection made
        while held is held from its start."""
        self._held = hold
        if self._protocol is not None:
            self._protocol.hold_reading(hold)

    @property
    def connected(self) -> bool:
        """Whether a connection is open or still closing (its end not yet
        seen): its session store may still be written."""
        return self._protocol is not None and not self._closed.is_set()

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
