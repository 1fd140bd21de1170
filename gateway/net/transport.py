"""The asyncio (uvloop) edge shared by accepted and initiated FIX connections.

A :class:`FixTransportProtocol` pushes received bytes into a sans-I/O
connection object, drains its events into :meth:`_dispatch`, writes what the
connection has to send in one ``transport.write`` per batch, and keeps one
``loop.call_at`` timer armed at the connection's next deadline.  Nothing here
blocks; a peer whose unsent bytes pass ``max_outbound_buffer`` is dropped so
that it can never hold up anything else on the loop.

A connection handles at most ``EVENTS_PER_TURN`` received messages per turn
of the event loop.  What it produced is written by its :class:`Outbox` in a
callback queued behind the ones already waiting, so in one batch with what
they add (an in-process LP's answer).  The outbox is the one place where
bytes leave, always in the same order: the order journal's batch first, then
the session stores, then the sockets.  When a read brought more, reading
from the peer pauses (TCP flow control holds back the rest), and the
remainder is taken up on the next turn, after other connections and the LPs
had theirs.  So one peer's burst never monopolises
the loop, and answers leave while the rest of the burst is still being
worked on.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import termios
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol, cast

import structlog

from gateway.fix.events import CloseConnection, Event
from gateway.fix.session import Session
from gateway.fix.store import SessionStore

_log = structlog.get_logger("gateway.net.transport")

Clock = Callable[[], float]

EVENTS_PER_TURN: Final = 64

BYTES_PER_TURN: Final = 64 * 1024
"""A connection's turn also ends once its messages worked in it add up to
this many bytes: 64 orders are about 10 KiB, 64 messages of the largest
size allowed (each with thousands of repeating-group entries) would hold
every other connection for as long as thousands of orders do."""

RETRY_AFTER: Final = 0.1
"""Seconds before writes that failed (the journal or a store) are tried again."""

CLOSE_GRACE: Final = 5.0
"""Seconds the last bytes of a connection being closed have to leave; one
whose peer has not taken them by then is dropped (a peer that reads nothing
would otherwise keep it, and its buffer, for as long as it keeps its socket)."""

_RESEND_LOW_WATER: Final = 256 * 1024
"""Bytes queued to a peer up to which a ResendRequest answered in parts goes
on; both write-buffer limits of every transport are set to it."""

_MAX_QUEUE_MARKS: Final = 1024
"""Readings of a connection's kernel queue kept (each one the bytes that had
arrived by then); past it a reading is not kept, and the waits seen are
shorter than they were, never longer."""


class Connection(Protocol):
    """What the protocol drives: a Session, or an acceptor connection that
    becomes one after its Logon."""

    @property
    def session(self) -> Session | None: ...

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self, now: float) -> Event | None: ...

    @property
    def yielded(self) -> bool: ...

    def data_to_send(self) -> bytes: ...

    def next_deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...

    def connection_lost(self, now: float) -> None: ...


class Replica(Protocol):
    """Copies what the stores recorded to other machines (a cluster of
    gateways): a batch's bytes leave only once the copy is acknowledged."""

    def seal(self) -> asyncio.Future[None] | None:
        """Send what the stores recorded since the last seal; a future done
        when it is acknowledged (failed: it never will be, the bytes must
        not leave), or None when nothing is waiting for one."""
        ...

    def may_send(self, session: Session) -> bool:
        """Whether bytes of ``session`` may leave now (the gateway still
        serves it); when not, its connection is dropped unwritten."""
        ...


WriteBarrier = Callable[[], None]
"""Makes durable what must be before any session's bytes are: the order
journal's flush (a child order is on disk before the LP can see it, an
order before its client is told)."""


class BusyPoll:
    """Keeps the event loop polling instead of sleeping while reads come
    close together.

    An event loop that waits for its next read in ``epoll_wait`` lets its
    core go idle; the read that wakes it then runs on cold caches (and, on a
    virtual machine, after the hypervisor has woken the core), which at a
    few thousand orders a second costs about a third of an order's time
    through the gateway.  After each read of a connection bound to a session
    (from its Logon on; :meth:`poke`) the loop is kept turning, one callback a turn,
    until ``window`` seconds pass without another; then it sleeps in
    ``epoll_wait`` again.  While reads keep coming, one core is kept busy:
    the price of the latency.

    A turn never gives its core away (``sched_yield``): the scheduler hands
    it to whatever else is ready to run there, the drop copy at idle
    priority included, which then keeps it until the next scheduler tick
    (4 ms on a 250 Hz kernel) while the loop waits, ready, behind it.
    Other work gets the core as the scheduler shares it anyway, or moves
    to another core.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last = 0.0
        self.spinning = False
        self.turns = 0
        """Loop turns spent polling, in all."""

    def poke(self) -> None:
        """A read, worked: keep polling until ``window`` has passed without
        another."""
        self._last = self._clock()
        loop = self._loop
        if loop is None or loop.is_closed():
            # a first read, or one on a new loop (the old chain died with its loop)
            loop = self._loop = asyncio.get_running_loop()
            self.spinning = False
        if not self.spinning:
            self.spinning = True
            loop.call_soon(self._turn)

    def _turn(self) -> None:
        if self._clock() - self._last > self.window:
            self.spinning = False
            return
        self.turns += 1
        loop = self._loop
        assert loop is not None
        loop.call_soon(self._turn)


class Outbox:
    """When the bytes of a set of connections are written, and in which
    order.

    Whatever has to leave -- a connection's answers to what it read, or a
    message sent to a session from elsewhere (an ExecutionReport after an LP
    fill, a child order to an LP: :meth:`send`) -- is written by
    :meth:`write_pending`, one callback for everything queued meanwhile:
    first the ``barrier`` (the order journal's batch), then the store of
    every session concerned, then each socket.  A message sent to a session
    with no connection is stored, and its store flushed, the same way.  When
    the barrier or a store cannot be written (a full disk), nothing of the
    batch leaves and the same writes are tried again ``RETRY_AFTER`` later.
    """

    def __init__(
        self,
        barrier: WriteBarrier | None = None,
        replica: Replica | None = None,
        pause: Callable[[], None] | None = None,
    ) -> None:
        """``pause``, when given, is called once the batch is written (a
        process at idle priority gives its core back between batches)."""
        self._barrier = barrier
        self._replica = replica
        self._pause = pause
        # with a replica: batches of bytes waiting for their copy, in order
        self._waiting: deque[
            tuple[asyncio.Future[None] | None, list[tuple[FixTransportProtocol, bytes]]]
        ] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocols: list[FixTransportProtocol] = []
        self._stores: dict[SessionStore, None] = {}
        self._scheduled = False
        self._hold = False
        self._held = False
        # sessions logged on through one of this outbox's connections
        self._bound: dict[Session, FixTransportProtocol] = {}
        # keeps the loop polling between reads close together (None: off)
        self.busy_poll: BusyPoll | None = None
        # writes failing in a row (a full disk): said once, then once a
        # minute, and when they go through again
        self._failures = 0
        self._failure_said = ""
        self._failure_said_at = 0.0
        # once stopped (the files about to close) nothing is written, nor tried again
        self._stopped = False
        self._retry: asyncio.TimerHandle | None = None

    def bind(self, session: Session, protocol: FixTransportProtocol) -> None:
        """``session`` is written through ``protocol`` from now on."""
        self._bound[session] = protocol

    def unbind(self, session: Session, protocol: FixTransportProtocol) -> None:
        if self._bound.get(session) is protocol:
            del self._bound[session]

    def send(self, session: Session, msg_type: bytes, body: bytes, now: float) -> int:
        """Send an application message on ``session`` and have it written;
        returns its MsgSeqNum."""
        seq = session.send(msg_type, body, now)
        self.wake(session)
        return seq

    def send_transient(self, session: Session, msg_type: bytes, body: bytes, now: float) -> bool:
        """Send a message that is not stored (market data: see
        :meth:`Session.send_transient`) and have it written; False when the
        session is not logged on and nothing was sent."""
        if session.send_transient(msg_type, body, now) is None:
            return False
        self.wake(session)
        return True

    def backlog(self, session: Session) -> int | None:
        """Bytes sent to ``session`` that its peer has not taken yet: those
        written to its connection (beyond what the kernel holds for it), and
        those not written yet (they wait for the end of the turn, or for the
        journal and the stores while these cannot be written); None when the
        session has no open connection here."""
        protocol = self._bound.get(session)
        if protocol is None:
            return None
        queued = protocol.write_backlog()
        return None if queued is None else queued + session.unsent

    def wake(self, session: Session) -> None:
        """Messages were sent to ``session``: have them written (or only its
        store flushed when it has no connection)."""
        protocol = self._bound.get(session)
        if protocol is not None:
            self.wake_protocol(protocol)
            return
        self._stores[session.store] = None
        self._schedule()

    def wake_protocol(self, protocol: FixTransportProtocol) -> None:
        if not protocol._write_pending:
            protocol._write_pending = True
            self._protocols.append(protocol)
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._event_loop().call_soon(self._on_turn)

    @property
    def writing(self) -> bool:
        """A write is queued (its barrier, the journal's flush, comes first)."""
        return self._scheduled

    def write_after_next_turn(self) -> None:
        """A callback just queued for the next loop turn will send more (an
        in-process LP's answers): when the write is already queued ahead of
        it, it waits for one more turn, so that both leave in one write.
        Once only: a write that waited is never held again (a connection
        sending without pause would otherwise hold every write)."""
        if self._scheduled and not self._held:
            self._hold = True

    def _on_turn(self) -> None:
        if self._hold:
            self._hold = False
            self._held = True
            self._event_loop().call_soon(self._on_turn)
            return
        self.write_pending()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def write_pending(self) -> None:
        """The journal batch, the stores, the sockets: in that order."""
        if self._stopped:
            return
        self._scheduled = False
        self._hold = self._held = False
        protocols, self._protocols = self._protocols, []
        stores, self._stores = self._stores, {}
        try:
            if self._barrier is not None:
                self._barrier()
            for store in stores:
                store.flush()
            for protocol in protocols:
                protocol._flush_store()
        except Exception as exc:
            # nothing of the batch may leave before it is durable
            self._write_failed(exc)
            self._protocols = protocols + self._protocols
            stores.update(self._stores)
            self._stores = stores
            self._retry_later()
            return
        if self._failures:
            _log.info("write_resumed", failed_attempts=self._failures)
            self._failures = 0
            self._failure_said = ""
        if self._replica is not None:
            for protocol in protocols:
                protocol._write_pending = False
            self._after_copy(protocols)
            return
        for protocol in protocols:
            protocol._write_pending = False
            try:
                protocol._write_out()
            except Exception:
                # one connection's failure is its own
                _log.exception("write_out_failed", peer=protocol.peer)
        if self._pause is not None:
            self._pause()

    def _write_failed(self, exc: Exception) -> None:
        """Say why the writes failed: the first time, when the reason
        changes, and once a minute while it lasts (retried every
        ``RETRY_AFTER``: ten lines a second would fill the log, and the
        disk it is on)."""
        self._failures += 1
        error = repr(exc)
        now = time.monotonic()
        if error != self._failure_said or now - self._failure_said_at >= 60.0:
            self._failure_said = error
            self._failure_said_at = now
            _log.error(
                "write_failed", error=error, retry_in=RETRY_AFTER, failed_attempts=self._failures
            )

    def write_now(self, protocol: FixTransportProtocol) -> bool:
        """Write ``protocol``'s bytes at once (before it closes), in the
        same order; False when they wait for their copy (they are written,
        and the connection closed if it is closing, once it is taken).
        When the journal or the store cannot be written (a full disk), the
        bytes stay unsent and True says to close at once all the same: a
        connection the gateway ends is not kept open by its disk."""
        try:
            if self._barrier is not None:
                self._barrier()
            protocol._flush_store()
        except Exception as exc:
            self._write_failed(exc)
            self._retry_later()  # the journal's batch and the other stores
            return True
        if self._replica is not None:
            return self._after_copy([protocol])
        protocol._write_out()
        return True

    def _after_copy(self, protocols: list[FixTransportProtocol]) -> bool:
        """Seal the replica's batch; the protocols' bytes leave once it and
        every batch before it are acknowledged (True: left at once)."""
        assert self._replica is not None
        sealed = self._replica.seal()
        items = []
        for protocol in protocols:
            data = protocol._take_out()
            if data or protocol._closing:
                items.append((protocol, data))
        if sealed is None and not self._waiting:
            self._write_items(items)
            return True
        self._waiting.append((sealed, items))
        if sealed is not None:
            sealed.add_done_callback(self._copied)
        return False

    def _copied(self, _: object = None) -> None:
        waiting = self._waiting
        while waiting:
            sealed, items = waiting[0]
            if sealed is not None and not sealed.done():
                return
            waiting.popleft()
            if sealed is not None and (sealed.cancelled() or sealed.exception() is not None):
                # never copied: what it describes must not reach the peers
                for protocol, _data in items:
                    _log.error("replication_failed_connection_dropped", peer=protocol.peer)
                    protocol.abort()
                continue
            self._write_items(items)

    def _write_items(self, items: list[tuple[FixTransportProtocol, bytes]]) -> None:
        replica = self._replica
        for protocol, data in items:
            conn = protocol._conn
            session = conn.session if conn is not None else None
            if replica is not None and session is not None and not replica.may_send(session):
                # no longer this gateway's to serve: nothing more leaves
                _log.warning("bytes_withheld_session_not_served", session=session.session_id)
                protocol.abort()
                continue
            try:
                protocol._send_out(data)
            except Exception:
                _log.exception("write_out_failed", peer=protocol.peer)

    def settle(self, session: Session) -> None:
        """Make a session's store durable at once (its connection is gone);
        when it cannot be written (a full disk), it is tried again with the
        other writes, ``RETRY_AFTER`` later."""
        if self._stopped:
            return
        try:
            if self._barrier is not None:
                self._barrier()
            session.store.flush()
        except Exception as exc:
            self._write_failed(exc)
            self._stores[session.store] = None
            self._retry_later()

    def _retry_later(self) -> None:
        if not self._scheduled and not self._stopped:
            self._scheduled = True
            self._retry = self._event_loop().call_later(RETRY_AFTER, self.write_pending)

    def stop(self) -> None:
        """Write nothing more: the journal and the stores are closed next,
        each writing what it holds itself (a write that failed, a full
        disk, is tried no more: what it held is said unwritten as they
        close)."""
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None


_FOUR: Final = bytes(4)
"""The argument of the ioctl reading a socket's queued bytes (an int)."""


class FixTransportProtocol(asyncio.Protocol):
    """Subclasses create the connection object in :meth:`_open` and handle
    events in :meth:`_dispatch`."""

    def __init__(
        self,
        clock: Clock,
        max_outbound_buffer: int,
        outbox: Outbox,
        wait_clock: Clock = time.monotonic,
    ) -> None:
        """``wait_clock`` times how long received messages waited
        (:attr:`Session.waited`): a clock that a step of the wall clock
        does not move."""
        self._loop = asyncio.get_running_loop()
        self._clock = clock
        self._wait_clock = wait_clock
        self._outbox = outbox
        self._write_pending = False
        self._max_outbound_buffer = max_outbound_buffer
        self._transport: asyncio.Transport | None = None
        self._conn: Connection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._close_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._resume_scheduled = False
        self._reading_paused = False
        self._hold_reading = False  # a subclass keeps reading paused for now
        self._resend_scheduled = False
        # by when (on the wait clock) the bytes being worked had arrived:
        # the read that brought them, or earlier when the kernel held them
        # already at a reading of its queue (below); negative before the
        # first read
        self._arrived_by = -1.0
        # the kernel's queue, read at the end of a turn that left messages
        # waiting: the socket's descriptor (negative: not read), the bytes
        # handed to the connection so far, and (when, bytes that had
        # arrived by then), oldest first
        self._queue_fd = -1
        self._taken = 0
        self._queue_marks: deque[tuple[float, int]] = deque()
        self.peer = "?"

    # -- to be provided by subclasses ---------------------------------------------

    def _open(self, now: float) -> Connection:
        raise NotImplementedError

    def _dispatch(self, event: Event, now: float) -> None:
        raise NotImplementedError

    def _closed(self, now: float) -> None:
        """The transport is gone and the last events were dispatched."""

    def _waits_measured(self) -> bool:
        """Whether the time received messages waited in the kernel while
        the connection was behind counts too (:attr:`Session.waited`); read
        at each turn that left messages waiting."""
        return False

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        # no band between the limits: with more than the low water queued
        # the transport has paused us, so resume_writing follows once the
        # peer drained it and a resend answered in parts goes on from there
        self._transport.set_write_buffer_limits(high=_RESEND_LOW_WATER, low=_RESEND_LOW_WATER)
        sock = self._transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock is not None and self._transport.get_extra_info("sslcontext") is None:
            # what the kernel holds is the bytes the connection will get
            # (over TLS it holds records, which are longer)
            self._queue_fd = sock.fileno()
        peer = self._transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        now = self._clock()
        self._conn = self._open(now)
        self._pump(now)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or self._closing:
            return
        now = self._clock()
        taken = self._taken + len(data)
        self._taken = taken
        arrived = self._wait_clock()
        marks = self._queue_marks
        while marks:
            when, seen = marks[0]
            if seen >= taken:
                arrived = when  # all of it was in the kernel by then
                break
            marks.popleft()
        self._arrived_by = arrived
        conn.receive_data(data)
        self._pump(now)
        busy = self._outbox.busy_poll
        if busy is not None and conn.session is not None:
            busy.poke()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._closing = True
        conn = self._conn
        now = self._clock()
        if conn is not None:
            conn.connection_lost(now)
            self._drain(conn, now)
            session = conn.session
            if session is not None:
                self._outbox.unbind(session, self)
                self._outbox.settle(session)
        self._closed(now)

    # -- the pump ------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        conn = self._conn
        if conn is None:
            return
        more = self._drain(conn, now, EVENTS_PER_TURN)
        if more and self._queue_fd >= 0 and self._waits_measured():
            self._read_queue()
        transport = self._transport
        if self._closing:
            # what the close follows (a Logout, a Reject) goes first
            if self._outbox.write_now(self) and transport is not None:
                self._close(transport)
            return
        # written at the end of the turn, with what the callbacks queued
        # before it add (an in-process LP's answer): one store write and one
        # send instead of one each for the ack and for the fill
        self._outbox.wake_protocol(self)
        if more:
            if not self._resume_scheduled:
                self._resume_scheduled = True
                self._loop.call_soon(self._resume)
            if not self._reading_paused and transport is not None:
                self._reading_paused = True
                transport.pause_reading()
        elif self._reading_paused and not self._hold_reading and transport is not None:
            self._reading_paused = False
            transport.resume_reading()
        self._arm_timer(now)

    def _drain(self, conn: Connection, now: float, limit: int = -1) -> bool:
        """Dispatch up to ``limit`` events (all when negative); True when the
        limit was reached, so more may be waiting.  A message the session
        took without an event (one it answered itself) counts as an event.
        Each event's session is told how long the messages have waited
        (:attr:`Session.waited`)."""
        since = self._arrived_by
        at = self._wait_clock()
        waited = at - since if 0.0 <= since < at else 0.0
        limited = limit > 0
        first = conn.session
        # the turn's bytes are counted from here, or from the Logon that
        # binds the connection to its session in this turn
        bytes_from = first.bytes_in if first is not None else -1
        while limit != 0:
            event = conn.next_event(now)
            if event is None:
                if not conn.yielded:
                    return False
                limit -= 1
            else:
                session = conn.session
                if session is not None:
                    session.waited = waited
                if isinstance(event, CloseConnection):
                    self._closing = True
                self._dispatch(event, now)
                limit -= 1
            if limited:
                if first is None:
                    first = conn.session
                    if first is not None:
                        bytes_from = first.bytes_in
                elif bytes_from <= first.bytes_in - BYTES_PER_TURN:
                    return True  # large messages: the others' turn
        return True

    def _read_queue(self) -> None:
        """Note how many bytes had arrived by now: those handed to the
        connection and those the kernel still holds for it.  The read that
        later brings them knows they waited since then at least."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # its descriptor may be closed already
        try:
            queued = int.from_bytes(fcntl.ioctl(self._queue_fd, termios.FIONREAD, _FOUR), "little")
        except OSError:
            self._queue_fd = -1  # not a socket that says; waits are the gateway's alone
            return
        if queued <= 0:
            return
        seen = self._taken + queued
        marks = self._queue_marks
        if len(marks) < _MAX_QUEUE_MARKS and (not marks or marks[-1][1] < seen):
            marks.append((self._wait_clock(), seen))

    def _resume(self) -> None:
        self._resume_scheduled = False
        if self._conn is None or self._closing:
            return
        self._pump(self._clock())

    def _flush_store(self) -> None:
        conn = self._conn
        session = conn.session if conn is not None else None
        if session is not None:
            session.store.flush()

    def _write_out(self) -> None:
        """Write what the connection holds (its store is flushed)."""
        data = self._take_out()
        if data:
            self._send_out(data)

    def _take_out(self) -> bytes:
        conn = self._conn
        transport = self._transport
        if conn is None or transport is None or transport.is_closing():
            return b""
        return conn.data_to_send()

    def _send_out(self, data: bytes) -> None:
        conn = self._conn
        transport = self._transport
        if conn is None or transport is None or transport.is_closing():
            return
        if data:
            transport.write(data)
        if self._closing:
            self._close(transport)  # it waited for its copy: the close follows it
            return
        self._continue_resend_soon()
        if transport.get_write_buffer_size() > self._max_outbound_buffer:
            session = conn.session
            _log.warning(
                "slow_consumer_disconnected",
                peer=self.peer,
                session=session.session_id if session else None,
                buffered=transport.get_write_buffer_size(),
            )
            self._closing = True
            transport.abort()

    def hold_reading(self, hold: bool) -> None:
        """Stop reading from the peer (``hold``), or read again: while held,
        TCP flow control holds the peer back (a consumer that has more than
        it can take in memory)."""
        self._hold_reading = hold
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if hold and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not hold and self._reading_paused and not self._resume_scheduled:
            self._reading_paused = False
            transport.resume_reading()

    def write_backlog(self) -> int | None:
        """Bytes queued for the peer that the transport could not hand to
        the kernel yet; None when the connection is closed or closing."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._closing:
            return None
        return transport.get_write_buffer_size()

    def _continue_resend_soon(self) -> None:
        """A ResendRequest answered in parts: send the next part on the
        next turn when at most ``_RESEND_LOW_WATER`` bytes are queued;
        otherwise the transport has paused writing and
        :meth:`resume_writing` comes back here once the peer took them."""
        conn = self._conn
        session = conn.session if conn is not None else None
        transport = self._transport
        if session is None or transport is None:
            return
        if not session.resend_pending:
            # called after a write, or once the peer took what was queued:
            # the answer to the last request is out, the next is answered at
            # once (a request that waits for it is in resend_pending, and an
            # answer held is always followed by its write, which comes here)
            if session.resend_held and transport.get_write_buffer_size() <= _RESEND_LOW_WATER:
                session.resend_written()
            return
        if transport.get_write_buffer_size() <= _RESEND_LOW_WATER and not self._resend_scheduled:
            self._resend_scheduled = True
            self._loop.call_soon(self._continue_resend)

    def _continue_resend(self) -> None:
        self._resend_scheduled = False
        conn = self._conn
        session = conn.session if conn is not None else None
        if session is None or self._closing:
            return
        session.continue_resend(self._clock())
        # through the outbox: in order behind the journal and the store, and
        # tried again when they cannot be written; its write comes back to
        # _continue_resend_soon
        self._outbox.wake_protocol(self)

    def resume_writing(self) -> None:
        """The peer has taken what was queued down to the low water."""
        self._continue_resend_soon()

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
                return  # fires early at worst, and re-arms then
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
        conn.on_timer(now)
        self._pump(now)

    # -- control -------------------------------------------------------------------

    def logout(self, text: str) -> None:
        """Log the session out (Logout handshake), or just close before logon."""
        conn = self._conn
        if conn is None or self._closing:
            return
        now = self._clock()
        session = conn.session
        if session is not None and session.is_logged_on:
            session.logout(now, text)
            self._pump(now)
        elif self._transport is not None:
            self._closing = True
            self._close(self._transport)

    def _close(self, transport: asyncio.Transport) -> None:
        """Close once what is queued has left, or drop the connection when
        it has not within ``CLOSE_GRACE``."""
        if not transport.is_closing():
            # once only: a TLS transport of asyncio closed a second time
            # forgets its connection, and every later call on it fails
            transport.close()
        if transport.get_write_buffer_size() and self._close_timer is None:
            self._close_timer = self._loop.call_later(CLOSE_GRACE, self.abort)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
