"""The FIX acceptor: many sessions on one port, each connection isolated.

Connections start unbound; their first message (a Logon) binds them to a
configured session (see :mod:`gateway.fix.acceptor`).  Events are handed to
the session's application profile.  A misbehaving application or peer ends
its own connection at worst, never another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, cast

import structlog

from config import ConfigError, GatewaySettings
from gateway.fix.acceptor import AcceptorConnection, SessionRegistry
from gateway.fix.application import Application
from gateway.fix.codec import FixMessage, FrameDecoder, GarbledMessage, parse_frame
from gateway.fix.events import ApplicationMessage, CloseConnection, Event, LoggedOn, LoggedOut
from gateway.fix.session import Session
from gateway.net.peerlog import PeerLog
from gateway.net.transport import Clock, Connection, FixTransportProtocol, Outbox

_log = structlog.get_logger("gateway.net.server")


# Failed logons are counted per (peer address, SenderCompID its Logon
# claimed): guessing a password from one address slows that address's
# Logons for that CompID only, never another address's, and never the
# CompID's Logons from elsewhere.  After FREE_FAILURES within
# FAILURE_WINDOW seconds, each further Logon of the pair is held, unread,
# for a delay doubling from MIN_LOGON_DELAY up to MAX_LOGON_DELAY (at most
# half the logon timeout, so a real client sharing the pair is slowed, never
# locked out), and at most MAX_HELD_PER_PAIR Logons of a pair are held at
# once: one more is closed unread.  Every counter is bounded.
FREE_FAILURES: Final = 3
FAILURE_WINDOW: Final = 60.0
MIN_LOGON_DELAY: Final = 1.0
MAX_LOGON_DELAY: Final = 5.0
MAX_HELD_PER_PAIR: Final = 4
MAX_PAIRS: Final = 4096
MAX_COUNTED: Final = 64

# Connections from one address that have not logged on yet are bounded:
# past MAX_UNBOUND_PER_ADDRESS, the oldest of them that has not sent a whole
# Logon is closed (the oldest of all when every one has).  A real client
# sends its Logon as soon as it connects, so what goes is what sat idle (a
# flood of connections that never log on cannot hold the daemon's
# descriptors), and a client that shares the flood's address is not shut
# out, its Logon held by the throttle included.
MAX_UNBOUND_PER_ADDRESS: Final = 32

ACCEPTS_PER_TURN: Final = 32
"""Connections the TLS acceptor takes from the backlog in one turn of the
loop before it lets the loop's other work go."""

# accept errors after which accepting waits a second and goes on
_ACCEPT_PAUSES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Pair = tuple[str, str]
"""(peer address, claimed SenderCompID; "" when no Logon could be read)."""


class LogonGate(Protocol):
    """Who may take a session here: with several gateways live at once, a
    session is served by one of them at a time (``gateway.cluster``)."""

    async def claim(self, session: Session) -> tuple[str, int | None] | None:
        """Make ``session`` this gateway's to serve; None when it is, or
        why not: the Text of the Logout that turns the Logon away and the
        MsgSeqNum it carries (set aside by the gateway serving the session,
        as the peer counts it), None for no Logout (closed without a word)."""
        ...

    def disconnected(self, session: Session) -> None:
        """A connection claimed for ``session`` has closed."""
        ...


class LogonFailures:
    """Recent failed logons per :data:`Pair`, and the delay they earn;
    at most ``MAX_PAIRS`` pairs (the least recently failed are forgotten)
    and ``MAX_COUNTED`` failures a pair."""

    def __init__(self, max_delay: float = MAX_LOGON_DELAY) -> None:
        self._times: dict[Pair, deque[float]] = {}
        self._max_delay = max_delay
        self.held: dict[Pair, int] = {}
        """Logons of each pair held right now."""

    def record(self, pair: Pair, now: float) -> int:
        """Count a failure; returns the pair's failures in the window, or 0
        when it holds ``MAX_COUNTED`` already (the delay is at its most)."""
        times = self._times.pop(pair, None)
        if times is None:
            times = deque(maxlen=MAX_COUNTED)
        full = len(times) == MAX_COUNTED
        times.append(now)
        self._times[pair] = times  # most recent last
        while len(self._times) > MAX_PAIRS:
            del self._times[next(iter(self._times))]
        self._forget_old(pair, now)
        return 0 if full else len(times)

    def delay(self, pair: Pair, now: float) -> float:
        """Seconds the next Logon of ``pair`` is held before it is read."""
        self._forget_old(pair, now)
        extra = len(self._times.get(pair, ())) - FREE_FAILURES
        if extra < 0:
            return 0.0
        return min(MIN_LOGON_DELAY * 2.0 ** min(extra, 16), self._max_delay)

    def _forget_old(self, pair: Pair, now: float) -> None:
        times = self._times.get(pair)
        if times is None:
            return
        while times and times[0] < now - FAILURE_WINDOW:
            times.popleft()
        if not times:
            del self._times[pair]


# a Logon is a few hundred bytes: a first frame not whole by then is not read
# for its CompID (and the acceptor judges it)
_IDENTIFY_WITHIN: Final = 4096


def claimed_pair(address: str, data: bytes, max_message_size: int) -> Pair | None:
    """The pair of a connection from the first frame of what it sent: None
    while that frame is incomplete (and short), or when the bytes cannot be
    FIX at all."""
    decoder = FrameDecoder(max_message_size)
    decoder.feed(data)
    if decoder.start_problem() is not None:
        return None  # no FIX: the acceptor refuses it at once, unheld
    if len(data) > _IDENTIFY_WITHIN:
        return address, ""
    if b"\x0110=" not in data:
        return None  # no CheckSum yet: not whole
    try:
        frame = decoder.next_frame()
    except GarbledMessage:
        return address, ""
    if frame is None:
        return None
    try:
        claimed = parse_frame(frame).get(49)
    except GarbledMessage:
        return address, ""
    return address, (claimed or b"").decode("latin-1")[:64]


def _logon_in(frame: bytes) -> FixMessage | None:
    """The Logon ``frame`` is, if it is one."""
    try:
        msg = parse_frame(frame)
    except GarbledMessage:
        return None
    return msg if msg.msg_type == b"A" else None


class AcceptedConnection(FixTransportProtocol):
    def __init__(self, server: FixServer) -> None:
        super().__init__(server.clock, server.max_outbound_buffer, server.outbox, server.wait_clock)
        self._server = server
        self._acceptor: AcceptorConnection | None = None
        self._logged_on = False
        self._failure_counted = False
        self._address = "?"
        # what arrived before the Logon named its CompID (None once it did)
        self._first: bytearray | None = bytearray()
        self._pair: Pair | None = None
        # what arrives while the Logon is held (None when not held)
        self._held: list[bytes] | None = None
        # the session the gate let this connection take (a cluster's lease)
        self._claimed: Session | None = None
        # with a gate, a Logon not whole yet: its bytes so far, and what
        # arrived that the acceptor has not read (None when not waited for)
        self._gathering: tuple[FrameDecoder, list[bytes]] | None = None
        self._delayed = False  # held by the failed-Logon delay

    def _waits_measured(self) -> bool:
        # not before the Logon: bytes the gateway holds back on purpose
        # (a failed-Logon delay, a cluster's claim) are no load to shed
        return self._logged_on and self._server.measure_waits

    def _open(self, now: float) -> Connection:
        server = self._server
        server.connections.add(self)
        transport = self._transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        self._address = str(peer[0]) if isinstance(peer, tuple) else self.peer
        server.unbound_opened(self)
        self._acceptor = AcceptorConnection(
            server.registry,
            now,
            peer=self.peer,
            max_message_size=server.max_message_size,
            logon_timeout=server.logon_timeout,
        )
        return self._acceptor

    def data_received(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            held.append(data)
            return
        gathering = self._gathering
        if gathering is not None:
            decoder, chunks = gathering
            decoder.feed(data)
            chunks.append(data)
            self._gather(decoder, chunks)
            return
        first = self._first
        if first is None:
            super().data_received(data)
            return
        first += data
        pair = claimed_pair(self._address, bytes(first), self._server.max_message_size)
        if pair is None:
            super().data_received(data)  # the Logon is not whole yet
            return
        logon = bytes(first)
        self._first = None
        self._pair = pair
        failures = self._server.failures
        delay = failures.delay(pair, self._clock())
        if not delay:
            self._admit([data], logon)
            return
        transport = self._transport
        if transport is None or self._closing:
            return
        holding = failures.held.get(pair, 0)
        if holding >= MAX_HELD_PER_PAIR:
            # as many of this pair's Logons are waiting already: this one fails
            self._closing = True
            transport.close()
            return
        failures.held[pair] = holding + 1
        self._delayed = True
        self._hold([data])
        self._loop.call_later(delay, self._release, logon)

    def _hold(self, chunks: list[bytes]) -> None:
        """Read nothing more for now; what arrives meanwhile is kept."""
        self._held = chunks
        if self._transport is not None:
            self._transport.pause_reading()
        self._reading_paused = self._hold_reading = True

    def _release(self, logon: bytes) -> None:
        """The delay has passed: the held Logon goes on to the gate."""
        if not self._undelay():
            return  # closed meanwhile
        held, self._held = self._held, None
        self._hold_reading = False
        if self._closing or self._transport is None or held is None:
            return
        self._admit(held, logon)

    def _undelay(self) -> bool:
        """The end of a failed-Logon delay: its pair holds one Logon fewer
        (False when it had ended already)."""
        pair = self._pair
        if not self._delayed or pair is None:
            return False
        self._delayed = False
        failures = self._server.failures
        left = failures.held.get(pair, 1) - 1
        if left > 0:
            failures.held[pair] = left
        else:
            failures.held.pop(pair, None)
        return True

    def _admit(self, chunks: list[bytes], logon: bytes) -> None:
        """Read ``chunks`` once the gate, if any, let this gateway take the
        session the Logon names: ``logon`` is what had arrived when the
        Logon's pair was known (``chunks[0]`` ends it), the rest of
        ``chunks`` what arrived while a failed-Logon delay held it."""
        server = self._server
        if server.logon_gate is None:
            self._feed(chunks)
            return
        decoder = FrameDecoder(server.max_message_size)
        decoder.feed(logon)
        for later in chunks[1:]:
            decoder.feed(later)
        self._gather(decoder, chunks)

    def _gather(self, decoder: FrameDecoder, chunks: list[bytes]) -> None:
        """With a gate: ``chunks`` wait, unread, until the Logon that
        ``decoder`` holds the start of is whole (however long it is), then
        are read once the gate let this gateway take its session.  A Logon
        the session would refuse anyway (credentials, heartbeat), and bytes
        that are no Logon, are read without asking: they are turned away
        as on a gateway alone."""
        server = self._server
        gate = server.logon_gate
        assert gate is not None
        frame = decoder.next_frame() if decoder.start_problem() is None else b""
        if frame is None:
            self._gathering = (decoder, chunks)  # more of the Logon to come
            if self._reading_paused:
                self.hold_reading(False)  # held for a failed-Logon delay: read on
            return
        self._gathering = None
        msg = _logon_in(frame) if frame else None
        session = (
            server.registry.lookup(msg.begin_string, msg.get(56) or b"", msg.get(49) or b"")
            if msg is not None
            else None
        )
        if msg is None or session is None or session.logon_refusal(msg):
            self._feed(chunks)
            return
        self._hold(chunks)
        task = self._loop.create_task(gate.claim(session))
        server.claims.add(task)
        task.add_done_callback(lambda done: self._claimed_or_not(done, session))

    def _claimed_or_not(
        self, done: asyncio.Task[tuple[str, int | None] | None], session: Session
    ) -> None:
        server = self._server
        server.claims.discard(done)
        gate = server.logon_gate
        refusal = done.result() if not done.cancelled() and done.exception() is None else None
        if done.cancelled() or done.exception() is not None:
            refusal = ("cluster unreachable: the session's lease could not be taken", None)
            if not done.cancelled():
                _log.warning(
                    "session_claim_failed", session=session.session_id, error=repr(done.exception())
                )
        elif refusal is None:
            self._claimed = session
        held, self._held = self._held, None
        self._hold_reading = False
        transport = self._transport
        if self._closing or transport is None or held is None:
            if refusal is None and gate is not None:
                gate.disconnected(session)  # gone while its claim was made
            return
        if refusal is None:
            self._feed(held)
            return
        text, seq = refusal
        _log.info(
            "logon_turned_away",
            session=session.session_id,
            peer=self._address,
            reason=text,
            logout=seq is not None,
        )
        # not a failed Logon: the peer is right, another gateway serves it
        self._failure_counted = True
        self._closing = True
        if seq is not None:
            transport.write(session.refusal_logout(text.encode(), seq, self._clock()))
        transport.close()

    def _feed(self, chunks: list[bytes]) -> None:
        for data in chunks:
            super().data_received(data)

    def _count_failure(self, now: float) -> None:
        if self._failure_counted or self._logged_on:
            return
        self._failure_counted = True
        pair = self._pair or (self._address, "")
        failures = self._server.failures.record(pair, now)
        # logged as the count passes 4, 8, 16 ...: a few lines a pair, not one a try
        if failures > FREE_FAILURES and failures & (failures - 1) == 0:
            _log.warning(
                "logon_slowed",
                peer=self._address,
                claimed_comp_id=pair[1],
                failures=failures,
                delay=self._server.failures.delay(pair, now),
            )

    @property
    def identified(self) -> bool:
        """Its Logon arrived whole (it is being answered, or held)."""
        return self._pair is not None

    @property
    def address(self) -> str:
        """The peer's address (without its port)."""
        return self._address

    def evict(self) -> None:
        """Closed to make room: the oldest of its address's connections
        that have not logged on (the daemon closed it: not counted as a
        failed Logon)."""
        self._failure_counted = True
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _dispatch(self, event: Event, now: float) -> None:
        if isinstance(event, LoggedOn):
            self._logged_on = True
            self._server.unbound_done(self)
        elif isinstance(event, CloseConnection):
            self._count_failure(now)
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
        self._undelay()  # gone while held: nothing more to read
        self._held = None
        self._gathering = None
        claimed, self._claimed = self._claimed, None
        gate = self._server.logon_gate
        if claimed is not None and gate is not None:
            gate.disconnected(claimed)
        # a peer that gave up before its Logon was answered failed it too
        self._count_failure(now)
        self._server.unbound_done(self)
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
        logon_gate: LogonGate | None = None,
        wait_clock: Clock = time.monotonic,
    ) -> None:
        """``outbox`` writes the sessions' bytes (one of its own when not
        given); an application that sends outside its connection's turn
        (an answer arriving from elsewhere) wakes it for the session.
        ``logon_gate`` decides, before a Logon is read, whether this
        gateway may take its session (several gateways live at once)."""
        self.registry = registry
        self._applications = dict(applications)
        self.max_message_size = max_message_size
        self.max_outbound_buffer = max_outbound_buffer
        self.logon_timeout = logon_timeout
        self.clock = clock
        self.wait_clock = wait_clock
        """Times how long received messages waited (load shedding), and
        spaces the lines of an address past its bound: not moved by a step
        of the wall clock."""
        self.outbox = outbox if outbox is not None else Outbox()
        self.connections: set[AcceptedConnection] = set()
        self.failures = LogonFailures(min(MAX_LOGON_DELAY, logon_timeout / 2))
        self.logon_gate = logon_gate
        self.measure_waits = False
        """Whether a connection's messages count the time they waited in
        the kernel too (load shedding reads it); the daemon sets it."""
        self.claims: set[asyncio.Task[tuple[str, int | None] | None]] = set()
        # per address, its connections not logged on yet, oldest first
        self._unbound: dict[str, dict[AcceptedConnection, None]] = {}
        self._capped = PeerLog(_log, "unbound_connections_capped", "closed_since_last")
        self._servers: list[asyncio.Server] = []
        # over TLS: the listening sockets, the tasks accepting on them and
        # those of the handshakes under way, and per address the sockets in
        # handshake, oldest first
        self._listening: list[socket.socket] = []
        self._accepting: set[asyncio.Task[None]] = set()
        self._handshaking: dict[str, dict[socket.socket, None]] = {}
        self._all_closed: asyncio.Event | None = None

    def application_for(self, session: Session) -> Application:
        return self._applications[session.session_id]

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen (over TLS with ``tls``); returns the bound port (useful with port 0)."""
        if tls is not None:
            return await self.serve(bind_listening(host, port, "port"), tls)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: AcceptedConnection(self),
            host,
            port,
            reuse_address=True,
            backlog=512,
            ssl=tls,
            ssl_handshake_timeout=self._handshake_timeout(tls),
        )
        self._servers.append(server)
        return _port_of(server)

    async def serve(
        self, sockets: Sequence[socket.socket], tls: ssl.SSLContext | None = None
    ) -> int:
        """Listen on ``sockets``, bound beforehand (:func:`bind_listening`),
        over TLS with ``tls``; returns their port.  The server owns them
        from here on (:meth:`stop` closes them)."""
        if tls is not None:
            for sock in sockets:
                sock.setblocking(False)
                self._listening.append(sock)
                self._accepting.add(asyncio.create_task(self._accept_tls(sock, tls)))
            return int(sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        for sock in sockets:
            server = await loop.create_server(
                lambda: AcceptedConnection(self),
                sock=sock,
                backlog=512,
            )
            self._servers.append(server)
        return _port_of(self._servers[0])

    async def _accept_tls(self, listening: socket.socket, tls: ssl.SSLContext) -> None:
        """Accept connections on ``listening`` and begin their TLS handshakes.

        Done here rather than by the event loop's server, which makes a
        connection known only once its handshake is over: a connection
        that never begins one would be counted nowhere until the handshake
        timeout.  Counted from its accept instead, past
        ``MAX_UNBOUND_PER_ADDRESS`` in handshake from one address the oldest
        is shut down, as connections not logged on are.

        A connection is accepted in this task's own turn, not by
        ``loop.sock_accept``: the socket that one had accepted when a stop
        cancelled the task before its next turn would go with the
        cancellation, open until collected; accepted here, it is in
        ``_handshaking`` at once, where the stop closes it."""
        loop = asyncio.get_running_loop()
        taken = 0
        while True:
            if taken == ACCEPTS_PER_TURN:
                # a flood of connects waiting in the backlog lets the loop's
                # other work (orders of sessions logged on) go between
                # bursts, as the loop's own server does
                taken = 0
                await asyncio.sleep(0)
            try:
                sock, peer = listening.accept()
            except BlockingIOError:
                taken = 0
                await _acceptable(loop, listening)
                continue
            except OSError as exc:
                if listening.fileno() < 0:
                    return  # stopped
                if exc.errno in _ACCEPT_PAUSES:
                    # out of descriptors or memory: what is open must close
                    # first (the event loop's own server waits as long)
                    _log.error("accept_failed", error=str(exc), retry_s=1)
                    await asyncio.sleep(1)
                continue  # else a connection that went before it was taken
            taken += 1
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            pending = self._handshaking.get(address)
            if pending is None:
                pending = self._handshaking[address] = {}
            pending[sock] = None
            if len(pending) > MAX_UNBOUND_PER_ADDRESS:
                oldest = next(iter(pending))
                del pending[oldest]
                self._say_crowded(address, tls_handshake=True)
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            task = asyncio.create_task(self._handshake(sock, address, tls))
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)

    async def _handshake(self, sock: socket.socket, address: str, tls: ssl.SSLContext) -> None:
        """One accepted connection's TLS handshake; the connection is served
        as any other once it is done, closed if it fails or times out."""
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: AcceptedConnection(self),
                sock,
                ssl=tls,
                ssl_handshake_timeout=self._handshake_timeout(tls),
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            sock.close()  # a peer that left, shut down past the bound, or spoke no TLS
        except asyncio.CancelledError:
            sock.close()
            raise
        finally:
            pending = self._handshaking.get(address)
            if pending is not None:
                pending.pop(sock, None)
                if not pending:
                    del self._handshaking[address]

    def _handshake_timeout(self, tls: ssl.SSLContext | None) -> float | None:
        """A TLS handshake is bounded by the logon timeout too: a connection
        that never completes one is closed as one that never logs on."""
        return float(self.logon_timeout) if tls is not None else None

    @property
    def listening(self) -> bool:
        return any(server.is_serving() for server in self._servers) or any(
            sock.fileno() >= 0 for sock in self._listening
        )

    def unbound_opened(self, conn: AcceptedConnection) -> None:
        """A connection that has not logged on yet; past the bound for its
        address, the oldest such is closed."""
        address = conn.address
        waiting = self._unbound.get(address)
        if waiting is None:
            waiting = self._unbound[address] = {}
        waiting[conn] = None
        if len(waiting) <= MAX_UNBOUND_PER_ADDRESS:
            return
        # the oldest that has not sent a whole Logon yet goes first: a Logon
        # held by the throttle (its owner's, maybe) only when all are such
        oldest = next((c for c in waiting if not c.identified), next(iter(waiting)))
        del waiting[oldest]
        self._say_crowded(address)
        oldest.evict()

    def _say_crowded(self, address: str, tls_handshake: bool = False) -> None:
        """Log that ``address`` is past the bound on connections not logged
        on: once a minute at most, with the connections closed since."""
        now = self.wait_clock()
        if tls_handshake:
            self._capped.happened(address, now, limit=MAX_UNBOUND_PER_ADDRESS, tls_handshake=True)
        else:
            self._capped.happened(address, now, limit=MAX_UNBOUND_PER_ADDRESS)

    def unbound_done(self, conn: AcceptedConnection) -> None:
        """``conn`` logged on or closed."""
        address = conn.address
        waiting = self._unbound.get(address)
        if waiting is None:
            return
        waiting.pop(conn, None)
        if not waiting:
            del self._unbound[address]

    def connection_closed(self, conn: AcceptedConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    def logout(self, session: Session, text: str) -> bool:
        """Log ``session`` out (Logout handshake) if a connection here has
        it; False when none has."""
        for conn in self.connections:
            acceptor = conn._acceptor
            if acceptor is not None and acceptor.session is session:
                conn.logout(text)
                return True
        return False

    def abort(self, session: Session) -> bool:
        """Drop the connection that has ``session`` here, without a word;
        False when none has it."""
        for conn in self.connections:
            acceptor = conn._acceptor
            if acceptor is not None and acceptor.session is session:
                conn.abort()
                return True
        return False

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, log every session out, wait for the Logout
        handshakes (at most ``grace`` seconds), then drop what is left."""
        for server in self._servers:
            server.close()
        accepting = list(self._accepting)
        for task in accepting:
            task.cancel()
        await asyncio.gather(*accepting, return_exceptions=True)
        # a handshake canceled before its first turn never ran, and so
        # never closed its socket
        for pending in self._handshaking.values():
            for sock in pending:
                sock.close()
        self._handshaking.clear()
        for sock in self._listening:
            sock.close()
        self._listening.clear()
        for claim in list(self.claims):
            claim.cancel()
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
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def _acceptable(loop: asyncio.AbstractEventLoop, listening: socket.socket) -> None:
    """Returns once ``listening`` has a connection to accept (or an error
    to report)."""
    ready: asyncio.Future[None] = loop.create_future()
    fd = listening.fileno()
    loop.add_reader(fd, _wake, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # called at every turn until the waiter has its own
        ready.set_result(None)


def _port_of(server: asyncio.Server) -> int:
    # uvloop's server hands back a list where asyncio's type says tuple:
    # read it untyped, as compiled code checks declared types
    listening = cast(Any, server).sockets
    return int(listening[0].getsockname()[1])


class ListenError(Exception):
    """A port to listen on could not be had; ``str()`` is one line naming
    the address, the setting the port comes from and why."""


def bind_listening(host: str, port: int, setting: str) -> list[socket.socket]:
    """Sockets bound to ``port`` on every address of ``host`` (every
    interface when empty), not listening yet: :meth:`FixServer.serve` (or
    any ``create_server(sock=...)``) starts that.  Binding them before
    anything else is built lets a taken port stop a start before it has
    left a trace.  ``setting`` names where the port comes from (e.g.
    ``gateway.fix_port``) in the :class:`ListenError` raised when one
    address cannot be bound; the sockets bound until then are closed."""
    shown = f"[{host}]" if ":" in host else (host or "*")

    def refused(exc: OSError) -> ListenError:
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]
        return ListenError(f"cannot listen on {shown}:{port} ({setting}): {reason}")

    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise refused(exc) from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT and len(found) > 1:
                    continue  # a family this host lacks (IPv6 off): the others serve
                raise
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # each address family on a socket of its own, as create_server does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # listening at once: two daemons starting together on one port
            # may both bind (SO_REUSEADDR), only one can listen; what
            # arrives before the server starts waits in the backlog
            sock.listen(512)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise refused(exc) from None
    if not bound:
        raise ListenError(f"cannot listen on {shown}:{port} ({setting}): no usable address")
    return bound


def server_tls(gw: GatewaySettings) -> ssl.SSLContext | None:
    """The TLS context of the acceptors on ``gw``'s settings, or None for
    plain TCP; raises ConfigError if the certificate or key cannot be loaded."""
    if not gw.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(gw.tls_cert_file, gw.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        why = str(exc)
        for path in (gw.tls_cert_file, gw.tls_key_file):
            try:
                with open(path, "rb"):
                    pass
            except OSError as unreadable:
                # the error of a file it cannot open names no file
                why = f"{path}: {unreadable.strerror or unreadable}"
                break
        raise ConfigError(
            [
                "gateway.tls_cert_file / tls_key_file: cannot be loaded from "
                f"{gw.tls_cert_file} and {gw.tls_key_file}: {why}"
            ]
        ) from exc
    return context
