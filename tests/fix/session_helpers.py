"""Test doubles for the sans-I/O FIX session layer.

Nothing here opens a socket or sleeps: time is a float the test advances and
the "network" is :meth:`SessionPair.pump`, which moves bytes between two
:class:`~gateway.fix.session.Session` objects and records every message on
the wire.

* :class:`SessionPair` -- an acceptor and an initiator with mirrored CompIDs
  talking over an in-memory link that can lose messages on purpose.
* :class:`SessionHarness` -- one session driven by hand-made raw messages
  (:func:`make_message`, :func:`logon_message`), for the checks that need a
  misbehaving peer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from config.schema import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage, FrameDecoder
from gateway.fix.events import ApplicationMessage, CloseConnection, Event, LoggedOut
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore, SessionStore

#: a fixed, realistic epoch (2023-11-14 22:13:20 UTC) the fake clocks start at
T0 = 1_700_000_000.0

ACCEPTOR_ID = "GW"
INITIATOR_ID = "CL"
BEGIN = b"FIX.4.4"
TRANSACT_TIME = b"20231114-22:13:20.000"

FieldValue = bytes | str | int


def _b(value: FieldValue) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


# ---------------------------------------------------------------------------
# settings and message bodies


def acceptor_settings(**overrides: object) -> SessionSettings:
    """Settings of the gateway side (SenderCompID GW, TargetCompID CL)."""
    values: dict[str, object] = {"SenderCompID": ACCEPTOR_ID, "TargetCompID": INITIATOR_ID}
    values.update(overrides)
    return SessionSettings(**values)  # type: ignore[arg-type]


def initiator_settings(**overrides: object) -> SessionSettings:
    """Settings of the client side (SenderCompID CL, TargetCompID GW)."""
    values: dict[str, object] = {"SenderCompID": INITIATOR_ID, "TargetCompID": ACCEPTOR_ID}
    values.update(overrides)
    return SessionSettings(**values)  # type: ignore[arg-type]


def encode_body(fields: Iterable[tuple[int, FieldValue]]) -> bytes:
    return codec.encode_fields((tag, _b(value)) for tag, value in fields)


def order_body(cl_ord_id: str, qty: int = 100) -> bytes:
    """A valid NewOrderSingle (D) body, told apart by its ClOrdID."""
    return encode_body(
        [
            (11, cl_ord_id),
            (21, b"1"),
            (55, b"EUR/USD"),
            (54, b"1"),
            (60, TRANSACT_TIME),
            (38, qty),
            (40, b"1"),
        ]
    )


def make_message(
    msg_type: bytes,
    seq: int | None,
    now: float,
    body: Iterable[tuple[int, FieldValue]] | bytes = (),
    *,
    sender: bytes = INITIATOR_ID.encode(),
    target: bytes = ACCEPTOR_ID.encode(),
    header: Sequence[tuple[int, FieldValue]] = (),
    sending_time: bytes | None = None,
    begin_string: bytes = BEGIN,
) -> bytes:
    """A well-framed raw message with whatever fields the test wants.

    ``seq=None`` leaves MsgSeqNum out; ``header`` adds header fields such as
    PossDupFlag (43) or OrigSendingTime (122); ``body`` is a field list or
    bytes already encoded.
    """
    head: list[tuple[int, bytes]] = [
        (49, sender),
        (52, sending_time if sending_time is not None else codec.format_utc_timestamp(now)),
        (56, target),
    ]
    if seq is not None:
        head.append((34, b"%d" % seq))
    head += [(tag, _b(value)) for tag, value in header]
    encoded = body if isinstance(body, bytes) else encode_body(body)
    return codec.encode_message(begin_string, msg_type, head, encoded)


def logon_message(
    seq: int,
    now: float,
    *,
    heartbeat: int = 30,
    reset: bool = False,
    username: str | None = None,
    password: str | None = None,
    **kwargs: object,
) -> bytes:
    """A Logon (A) as a client would send it to the gateway."""
    body: list[tuple[int, FieldValue]] = [(98, 0), (108, heartbeat)]
    if reset:
        body.append((141, b"Y"))
    if username is not None:
        body.append((553, username))
    if password is not None:
        body.append((554, password))
    return make_message(b"A", seq, now, body, **kwargs)  # type: ignore[arg-type]


def split_frames(data: bytes) -> list[bytes]:
    """Cut a byte stream into the raw frames it carries."""
    decoder = FrameDecoder()
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    assert decoder.buffered() == 0, "trailing partial frame"
    return frames


def parse_all(data: bytes) -> list[FixMessage]:
    return [codec.parse_frame(frame) for frame in split_frames(data)]


def seq_of(msg: FixMessage) -> int:
    return int(msg.get(34) or b"0")


def text_of(msg: FixMessage) -> str:
    return (msg.get(58) or b"").decode("latin-1")


def app_messages(events: Iterable[Event]) -> list[FixMessage]:
    return [e.message for e in events if isinstance(e, ApplicationMessage)]


def event_kinds(events: Iterable[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def drain(session: Session, now: float) -> list[Event]:
    """Every event the session has for the input it holds."""
    events = []
    # a message the session answers itself yields no event: more may follow
    while (event := session.next_event(now)) is not None or session.yielded:
        if event is not None:
            events.append(event)
    return events


# ---------------------------------------------------------------------------
# one session against a scripted peer


class SessionHarness:
    """A single session, fed raw bytes by the test, with a fake clock."""

    def __init__(
        self,
        settings: SessionSettings | None = None,
        *,
        initiator: bool = False,
        store: SessionStore | None = None,
        now: float = T0,
    ) -> None:
        self.now = now
        self.store = store if store is not None else MemoryStore()
        self.session = Session(
            settings if settings is not None else acceptor_settings(),
            self.store,
            initiator=initiator,
        )
        self.events: list[Event] = []

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def connect(self) -> list[FixMessage]:
        self.session.connection_made(self.now)
        return self.sent()

    def feed(self, *raw: bytes) -> list[Event]:
        """Deliver raw bytes and collect the events they cause."""
        got: list[Event] = []
        for chunk in raw:
            self.session.receive_data(chunk)
            got += drain(self.session, self.now)
        self.events += got
        return got

    def sent(self) -> list[FixMessage]:
        """The messages the session wrote since the last call."""
        return parse_all(self.session.data_to_send())

    def fire_timer(self) -> list[Event]:
        self.session.on_timer(self.now)
        got = drain(self.session, self.now)
        self.events += got
        return got

    def logon(self, seq: int = 1, **kwargs: object) -> list[FixMessage]:
        """Connect and complete a Logon from the scripted peer."""
        self.connect()
        self.feed(logon_message(seq, self.now, **kwargs))  # type: ignore[arg-type]
        return self.sent()

    def message(self, msg_type: bytes, seq: int | None, body: object = (), **kw: object) -> bytes:
        """A message from the peer, stamped with the harness clock."""
        return make_message(msg_type, seq, self.now, body, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# an acceptor and an initiator over an in-memory link


@dataclass
class WireMessage:
    """One message seen on the link."""

    sender: str
    message: FixMessage
    delivered: bool  # False when the link lost it
    at: float

    @property
    def msg_type(self) -> bytes:
        return self.message.msg_type

    @property
    def seq(self) -> int:
        return seq_of(self.message)

    def get(self, tag: int) -> bytes | None:
        return self.message.get(tag)


@dataclass
class Side:
    name: str
    session: Session
    events: list[Event] = field(default_factory=list)
    closed: bool = False  # this side asked for the connection to be closed


LossRule = Callable[[WireMessage], bool]


class SessionPair:
    """An acceptor and an initiator whose bytes the test carries by hand.

    ``pump()`` moves bytes both ways and drains events until nothing
    changes.  When one side asks to close, the other side first reads what
    was written and then sees the connection drop (``connection_lost``).
    Messages can be lost on purpose with :meth:`drop` and :meth:`mute`, or
    kept in flight with :meth:`hold` until :meth:`release`.  Every message
    written is recorded in :attr:`wire`, delivered or not.
    """

    SIDES = ("acceptor", "initiator")

    def __init__(
        self,
        *,
        acceptor: SessionSettings | None = None,
        initiator: SessionSettings | None = None,
        acceptor_store: SessionStore | None = None,
        initiator_store: SessionStore | None = None,
        now: float = T0,
    ) -> None:
        self.now = now
        self.acceptor = Session(
            acceptor if acceptor is not None else acceptor_settings(),
            acceptor_store if acceptor_store is not None else MemoryStore(),
            initiator=False,
        )
        self.initiator = Session(
            initiator if initiator is not None else initiator_settings(),
            initiator_store if initiator_store is not None else MemoryStore(),
            initiator=True,
        )
        self.sides = {
            "acceptor": Side("acceptor", self.acceptor),
            "initiator": Side("initiator", self.initiator),
        }
        self.wire: list[WireMessage] = []
        self._loss_rules: list[tuple[LossRule, bool]] = []
        self._muted: set[str] = set()
        self._held: dict[str, list[bytes] | None] = {name: None for name in self.SIDES}

    # -- clock -------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # -- connection --------------------------------------------------------

    def connect(self) -> None:
        """Open a connection: the acceptor listens, the initiator logs on."""
        for side in self.sides.values():
            side.closed = False
        self.acceptor.connection_made(self.now)
        self.initiator.connection_made(self.now)
        self.pump()

    def disconnect(self) -> None:
        """Drop the connection under both sessions."""
        for side in self.sides.values():
            side.session.connection_lost(self.now)
            side.events += drain(side.session, self.now)

    def replace_session(self, name: str, session: Session) -> None:
        """Swap in a new Session object (a restart of that side)."""
        assert not self.sides[name].session.is_connected
        setattr(self, name, session)
        self.sides[name] = Side(name, session)

    # -- link --------------------------------------------------------------

    def drop(
        self,
        sender: str,
        *,
        seq: int | None = None,
        msg_type: bytes | None = None,
        once: bool = True,
    ) -> None:
        """Lose the next message from ``sender`` matching ``seq``/``msg_type``."""

        def rule(w: WireMessage) -> bool:
            return (
                w.sender == sender
                and (seq is None or w.seq == seq)
                and (msg_type is None or w.msg_type == msg_type)
            )

        self._loss_rules.append((rule, once))

    def mute(self, sender: str) -> None:
        """Lose everything ``sender`` writes from now on (a dead peer)."""
        self._muted.add(sender)

    def unmute(self, sender: str) -> None:
        self._muted.discard(sender)

    def hold(self, sender: str) -> None:
        """Keep what ``sender`` writes in flight until :meth:`release`."""
        if self._held[sender] is None:
            self._held[sender] = []

    def release(self, sender: str) -> None:
        """Deliver what was held back (then pump) and stop holding."""
        held, self._held[sender] = self._held[sender], None
        peer = self._peer(sender)
        if held and peer.session.is_connected:
            peer.session.receive_data(b"".join(held))
        self.pump()

    def _lost(self, w: WireMessage) -> bool:
        if w.sender in self._muted:
            return True
        for i, (rule, once) in enumerate(self._loss_rules):
            if rule(w):
                if once:
                    del self._loss_rules[i]
                return True
        return False

    def _peer(self, name: str) -> Side:
        return self.sides["initiator" if name == "acceptor" else "acceptor"]

    def _transmit(self, side: Side, data: bytes) -> None:
        peer = self._peer(side.name)
        kept = []
        for frame in split_frames(data):
            record = WireMessage(side.name, codec.parse_frame(frame), True, self.now)
            if self._lost(record) or peer.closed or not peer.session.is_connected:
                record.delivered = False
            else:
                kept.append(frame)
            self.wire.append(record)
        if not kept:
            return
        held = self._held[side.name]
        if held is not None:
            held += kept
        else:
            peer.session.receive_data(b"".join(kept))

    def _drain(self, side: Side) -> bool:
        got = drain(side.session, self.now)
        for event in got:
            if isinstance(event, CloseConnection):
                side.closed = True
        side.events += got
        return bool(got)

    def pump(self, max_rounds: int = 1000) -> None:
        """Carry bytes and drain events on both sides until all is quiet."""
        for _ in range(max_rounds):
            moved = False
            for side in self.sides.values():
                moved |= self._drain(side)
                data = side.session.data_to_send()
                if data:
                    moved = True
                    self._transmit(side, data)
            if moved:
                continue
            # quiet: a side that closed takes the connection down for its peer
            for side in self.sides.values():
                peer = self._peer(side.name)
                if side.closed and peer.session.is_connected:
                    peer.session.connection_lost(self.now, "connection closed by peer")
                    moved = True
            if not moved:
                return
        raise AssertionError("the link did not settle")

    # -- timers ------------------------------------------------------------

    def fire_timers(self, *names: str) -> None:
        """Run ``on_timer`` on the given sides (default both), then pump."""
        for name in names or self.SIDES:
            self.sides[name].session.on_timer(self.now)
        self.pump()

    def next_deadline(self, *names: str) -> float | None:
        deadlines = [
            d
            for name in names or self.SIDES
            if (d := self.sides[name].session.next_deadline()) is not None
        ]
        return min(deadlines) if deadlines else None

    def run_until(self, until: float, *names: str) -> None:
        """Advance the clock deadline by deadline up to ``until``, firing the
        timers of ``names`` (default both) on the way."""
        for _ in range(10_000):
            deadline = self.next_deadline(*names)
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            self.fire_timers(*names)
        else:
            raise AssertionError("timers did not make progress")
        self.now = max(self.now, until)

    # -- assertions helpers ------------------------------------------------

    def events(self, name: str) -> list[Event]:
        return self.sides[name].events

    def take_events(self, name: str) -> list[Event]:
        side = self.sides[name]
        got, side.events = side.events, []
        return got

    def received_apps(self, name: str) -> list[FixMessage]:
        return app_messages(self.sides[name].events)

    def logged_out(self, name: str) -> list[LoggedOut]:
        return [e for e in self.sides[name].events if isinstance(e, LoggedOut)]

    def closes(self, name: str) -> list[CloseConnection]:
        return [e for e in self.sides[name].events if isinstance(e, CloseConnection)]

    def sent_by(
        self, name: str, msg_type: bytes | None = None, *, since: int = 0
    ) -> list[WireMessage]:
        return [
            w
            for w in self.wire[since:]
            if w.sender == name and (msg_type is None or w.msg_type == msg_type)
        ]

    def mark(self) -> int:
        """A position in :attr:`wire` to look at later messages only."""
        return len(self.wire)

    def send_order(self, name: str, cl_ord_id: str) -> int:
        """The application of ``name`` sends a NewOrderSingle; returns its seq."""
        return self.sides[name].session.send(b"D", order_body(cl_ord_id), self.now)
