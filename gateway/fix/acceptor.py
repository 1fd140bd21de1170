"""Acceptor side of a connection before and after it is bound to a session.

A new connection belongs to no session until its first message, which must
be a well-formed Logon naming a configured session that is not already
connected.  Anything else closes the connection without a word (there is no
session to answer on).  Bytes that can never begin such a message are
refused as soon as they arrive, not at the logon timeout: a start other than
``8=FIX``, a BodyLength that is not a number or would take the message past
``max_message_size``, a CheckSum missing where BodyLength says the body
ends.  A Logon still arriving, however slowly and in however many pieces,
is only ever refused by that timeout.  Once bound, every call is delegated
to the session.  Sans-I/O like the session itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

import structlog

from gateway.fix import codec
from gateway.fix.codec import FrameDecoder, GarbledMessage
from gateway.fix.events import CloseConnection, Event
from gateway.fix.session import Session

_log = structlog.get_logger("gateway.fix.acceptor")

# The refusal of each kind of bytes that cannot begin a Logon.
_START_REFUSALS: Final = {
    codec.NOT_FIX: "not FIX",
    codec.TOO_LARGE: "message larger than max_message_size",
    codec.GARBLED: "garbled message before Logon",
}


class SessionRegistry:
    """The configured sessions, found by the identity a Logon carries."""

    def __init__(self, sessions: Iterable[Session]) -> None:
        self._by_key: dict[tuple[bytes, bytes, bytes], Session] = {}
        for s in sessions:
            key = (s.begin_string, s.sender_comp_id, s.target_comp_id)
            if key in self._by_key:
                raise ValueError(f"duplicate session {s.session_id}")
            self._by_key[key] = s

    def lookup(
        self, begin_string: bytes, our_comp_id: bytes, their_comp_id: bytes
    ) -> Session | None:
        return self._by_key.get((begin_string, our_comp_id, their_comp_id))

    def __iter__(self) -> Iterator[Session]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


class AcceptorConnection:
    """One accepted connection: routes its Logon to a session, then delegates."""

    __slots__ = (
        "_bound",
        "_closed",
        "_decoder",
        "_epoch",
        "_head",
        "_logon_deadline",
        "_refusal",
        "_registry",
        "peer",
    )

    def __init__(
        self,
        registry: SessionRegistry,
        now: float,
        *,
        peer: str = "?",
        max_message_size: int = 65536,
        logon_timeout: float = 10.0,
    ) -> None:
        self._registry = registry
        self._decoder = FrameDecoder(max_message_size)
        self._logon_deadline = now + logon_timeout
        self._closed = False
        self._refusal: CloseConnection | None = None
        self.peer = peer
        self._bound: Session | None = None
        self._epoch = 0
        # the first bytes received, for the log of a refusal
        self._head = b""

    @property
    def session(self) -> Session | None:
        """The bound session, as long as it is still this connection's (a
        session that ended here may already belong to a newer connection)."""
        bound = self._bound
        if bound is not None and bound.connection_epoch == self._epoch:
            return bound
        return None

    @property
    def yielded(self) -> bool:
        """Whether the last :meth:`next_event` took a message of the session
        without an event for the caller (:attr:`Session.yielded`)."""
        session = self.session
        return session is not None and session.yielded

    def receive_data(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            session.receive_data(data)
        elif self._bound is None and not self._closed:
            if len(self._head) <= codec.LOGGED_CHARS:
                self._head += data[: codec.LOGGED_CHARS + 1 - len(self._head)]
            self._decoder.feed(data)

    def _refuse(self, reason: str, **details: object) -> CloseConnection:
        self._closed = True
        self._decoder.take_rest()  # nothing more is read: let it go
        _log.warning("connection_refused", peer=self.peer, reason=reason, **details)
        return CloseConnection(reason)

    def next_event(self, now: float) -> Event | None:
        session = self.session
        if session is not None:
            return session.next_event(now)
        if self._bound is not None:
            return None
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            return refusal
        if self._closed:
            return None
        decoder = self._decoder
        problem = decoder.start_problem()
        if problem is not None:
            kind, detail = problem
            return self._refuse(
                _START_REFUSALS[kind], detail=detail, received=codec.loggable(self._head)
            )
        frame = decoder.next_frame()
        if frame is None:
            return None
        try:
            msg = codec.parse_frame(frame)
        except GarbledMessage as exc:
            return self._refuse("garbled message before Logon", detail=codec.loggable(str(exc)))
        if msg.msg_type != b"A":
            return self._refuse(
                "first message is not a Logon", msg_type=codec.loggable(msg.msg_type)
            )
        sender = msg.get(49) or b""
        target = msg.get(56) or b""
        found = self._registry.lookup(msg.begin_string, target, sender)
        if found is None:
            return self._refuse(
                "unknown session",
                begin_string=codec.loggable(msg.begin_string),
                sender_comp_id=codec.loggable(sender),
                target_comp_id=codec.loggable(target),
            )
        if found.is_connected:
            return self._refuse("session already connected", session=found.session_id)
        found.connection_made(now)
        self._bound = found
        self._epoch = found.connection_epoch
        found.receive_frame(frame)
        found.receive_data(self._decoder.take_rest())
        return found.next_event(now)

    def data_to_send(self) -> bytes:
        session = self.session
        return session.data_to_send() if session is not None else b""

    def next_deadline(self) -> float | None:
        session = self.session
        if session is not None:
            return session.next_deadline()
        return None if self._closed or self._bound is not None else self._logon_deadline

    def on_timer(self, now: float) -> None:
        """Run timers; before binding, a missed Logon deadline closes."""
        session = self.session
        if session is not None:
            session.on_timer(now)
        elif self._bound is None and not self._closed and now >= self._logon_deadline:
            self._refusal = self._refuse("no Logon received in time")

    def connection_lost(self, now: float) -> None:
        self._closed = True
        session = self.session
        if session is not None:
            session.connection_lost(now)
