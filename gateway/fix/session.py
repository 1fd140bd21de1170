"""The FIX session layer as a sans-I/O state machine.

A :class:`Session` never touches a socket, a clock or an event loop.  The
caller feeds it bytes (:meth:`Session.receive_data`), pulls events out
(:meth:`Session.next_event`), hands it application messages to send
(:meth:`Session.send`), takes the bytes to write (:meth:`Session.data_to_send`)
and wakes it at :meth:`Session.next_deadline` through :meth:`Session.on_timer`.
Time is always passed in as epoch seconds.

Inbound messages are processed one at a time, lazily, inside
:meth:`next_event`: an application message is handed out as an event before
the next inbound message is looked at, so whatever the application sends in
answer is sequenced exactly where it belongs.

What the session does follows the FIX 4.4 session protocol, with the choices
QuickFIX makes where the specification leaves room (reject texts, which
problems end the connection, how a resend is answered), so that the QuickFIX
acceptance suite passes unchanged.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import structlog

from gateway.fix import codec
from gateway.fix.codec import FixMessage, FrameDecoder, GarbledMessage
from gateway.fix.dictionary import Dictionary, fix44
from gateway.fix.events import (
    ApplicationMessage,
    CloseConnection,
    Event,
    LoggedOn,
    LoggedOut,
    RejectReceived,
)
from gateway.fix.states import LOGGED_ON, SessionState, StateMachine
from gateway.fix.store import SessionStore
from gateway.fix.validation import (
    REJECT_TEXT,
    SessionRejectReason,
    ValidationOptions,
    Validator,
)

if TYPE_CHECKING:
    from config import SessionSettings

# the states as constants: on Python 3.11 a member read off its enum class
# goes through the enum type's __getattr__ hook (router/members.py)
_ACTIVE: Final = SessionState.ACTIVE
_AWAITING_LOGON: Final = SessionState.AWAITING_LOGON
_AWAITING_RESEND: Final = SessionState.AWAITING_RESEND
_DISCONNECTED: Final = SessionState.DISCONNECTED
_LOGON_SENT: Final = SessionState.LOGON_SENT
_LOGOUT_SENT: Final = SessionState.LOGOUT_SENT
R = SessionRejectReason

# header routing tags swapped when answering (OnBehalfOf* <-> DeliverTo*)
_REVERSE_ROUTE = ((115, 128), (128, 115), (116, 129), (129, 116), (144, 145), (145, 144))
# header tags a resent message gets anew
_RESEND_REPLACED = frozenset({34, 43, 49, 52, 56, 122})

MAX_QUEUED_MESSAGES: Final = 10_000
"""Most messages held out of sequence (waiting for a gap before them to be
filled); past it, or past MAX_QUEUED_BYTES, a message is not kept and is
asked for again later."""

_NO_SEQ: Final = 1 << 62

# not Final, as RESEND_CHUNK below
MAX_QUEUED_BYTES = 64 * 1024 * 1024
"""Most bytes of messages held out of sequence (waiting for a gap before
them to be filled), as held in memory (:func:`_held`): a peer sending large
messages past a gap cannot make the session hold up to MAX_QUEUED_MESSAGES
of them."""

_FIELD_BYTES: Final = 100
"""Memory a parsed field takes beside its bytes on the wire (its tuple, its
value's object, its slot in the list), rounded up: a message of 13,000
one-letter fields is 65 KB on the wire and 0.8 MB parsed."""


def _held(msg: FixMessage) -> int:
    """What a message held out of sequence costs in memory, about."""
    return len(msg.raw) + _FIELD_BYTES * len(msg.fields)


# a message without a usable MsgSeqNum cannot be sequenced: the session ends
_FATAL_SEQNUM_PROBLEMS = frozenset(
    {
        SessionRejectReason.REQUIRED_TAG_MISSING,
        SessionRejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE,
        SessionRejectReason.INCORRECT_DATA_FORMAT_FOR_VALUE,
    }
)


# not Final: mypyc would compile a Final into its readers, and tests set a
# smaller one
RESEND_CHUNK = 25
"""Most sequence numbers of a resend answered in one go: about 0.15 ms of
work (5-6 µs a message compiled, more with cold caches), so that a long
resend (a drop copy catching up) leaves the loop to order flow between its
parts.  Measured with a back office catching up beside 3,000 orders/s: P99
1.3-1.5x that of the same load without it at 25, 2x at 100 (where the
catch-up also took longer), 1.5x at 10."""


PACED_EVERY: Final = 1.0
"""Seconds between two log lines of one kind that a peer's messages cause
(:class:`PacedLog`)."""


class PacedLog:
    """Log lines that a peer's messages cause, each kind (event name) at
    most once every :data:`PACED_EVERY` seconds: the first is written at
    once, later ones within the interval are counted, and the next line of
    that kind says how many were not written (``repeated_since_last``).  A
    peer repeating a bad message as fast as it can does not write the log
    at its own rate.  ``now`` is the caller's clock; a step back writes the
    next line at once."""

    __slots__ = ("_log", "_said")

    def __init__(self, log: Any) -> None:
        self._log = log
        # event -> (when its last line was written, occurrences not written since)
        self._said: dict[str, tuple[float, int]] = {}

    def info(self, event: str, now: float, **fields: Any) -> None:
        if self._due(event, now, fields):
            self._log.info(event, **fields)

    def warning(self, event: str, now: float, **fields: Any) -> None:
        if self._due(event, now, fields):
            self._log.warning(event, **fields)

    def _due(self, event: str, now: float, fields: dict[str, Any]) -> bool:
        said = self._said.get(event)
        if said is not None and 0.0 <= now - said[0] < PACED_EVERY:
            self._said[event] = (said[0], said[1] + 1)
            return False
        if said is not None and said[1]:
            fields["repeated_since_last"] = said[1]
        self._said[event] = (now, 0)
        return True

    def take_unlogged(self) -> dict[str, int]:
        """The occurrences of each kind not written since its last line,
        forgotten from here (the next one is written at once)."""
        unlogged = {event: count for event, (_, count) in self._said.items() if count}
        self._said.clear()
        return unlogged


RESET_EVERY: Final = 1.0
"""Seconds a peer's sequence reset while logged on (a Logon with
ResetSeqNumFlag) must come after the one before: each rewrites the
session's store durably (a new file, synced) on the loop every session
shares.  One sooner is refused with a Logout."""


class BusinessRejectReason:
    """BusinessRejectReason (380) values and their standard texts."""

    OTHER: Final = 0
    UNKNOWN_ID: Final = 1
    UNKNOWN_SECURITY: Final = 2
    UNSUPPORTED_MESSAGE_TYPE: Final = 3
    APPLICATION_NOT_AVAILABLE: Final = 4
    CONDITIONALLY_REQUIRED_FIELD_MISSING: Final = 5
    NOT_AUTHORIZED: Final = 6
    DELIVER_TO_FIRM_NOT_AVAILABLE: Final = 7

    TEXT: Final[dict[int, bytes]] = {
        0: b"Other",
        1: b"Unknown ID",
        2: b"Unknown Security",
        3: b"Unsupported Message Type",
        4: b"Application not available",
        5: b"Conditionally Required Field Missing",
        6: b"Not authorized",
        7: b"DeliverTo firm not available at this time",
    }


# The business-level id field of the messages a counterparty may send: a
# BusinessMessageReject of one echoes it as BusinessRejectRefID (379), which
# FIX 4.4 requires whenever the message carried it.
_REQUEST_IDS: Final[dict[bytes, int]] = {
    b"D": 11,  # NewOrderSingle: ClOrdID
    b"F": 11,  # OrderCancelRequest: ClOrdID
    b"G": 11,  # OrderCancelReplaceRequest: ClOrdID
    b"H": 11,  # OrderStatusRequest: ClOrdID
    b"q": 11,  # OrderMassCancelRequest: ClOrdID
    b"AB": 11,  # NewOrderMultileg: ClOrdID
    b"AC": 11,  # MultilegOrderCancelReplace: ClOrdID
    b"E": 66,  # NewOrderList: ListID
    b"K": 66,  # ListCancelRequest: ListID
    b"L": 66,  # ListExecute: ListID
    b"M": 66,  # ListStatusRequest: ListID
    b"s": 548,  # NewOrderCross: CrossID
    b"t": 548,  # CrossOrderCancelReplaceRequest: CrossID
    b"u": 548,  # CrossOrderCancelRequest: CrossID
    b"i": 117,  # MassQuote: QuoteID
    b"Z": 117,  # QuoteCancel: QuoteID
    b"a": 649,  # QuoteStatusRequest: QuoteStatusReqID
    b"AH": 644,  # RFQRequest: RFQReqID
    b"AJ": 693,  # QuoteResponse: QuoteRespID
    b"v": 320,  # SecurityTypeRequest: SecurityReqID
    b"z": 320,  # DerivativeSecurityListRequest: SecurityReqID
    b"J": 70,  # AllocationInstruction: AllocID
    b"k": 390,  # BidRequest: BidID
    b"AV": 791,  # SettlementInstructionRequest: SettlInstReqID
    b"AX": 894,  # CollateralRequest: CollReqID
    b"AY": 902,  # CollateralAssignment: CollAsgnID
    b"BC": 933,  # NetworkCounterpartySystemStatusRequest: NetworkRequestID
    b"BH": 859,  # ConfirmationRequest: ConfirmReqID
    b"R": 131,  # QuoteRequest: QuoteReqID
    b"S": 117,  # Quote: QuoteID
    b"V": 262,  # MarketDataRequest: MDReqID
    b"c": 320,  # SecurityDefinitionRequest: SecurityReqID
    b"x": 320,  # SecurityListRequest: SecurityReqID
    b"e": 324,  # SecurityStatusRequest: SecurityStatusReqID
    b"g": 335,  # TradingSessionStatusRequest: TradSesReqID
    b"AF": 584,  # OrderMassStatusRequest: MassStatusReqID
    b"AD": 568,  # TradeCaptureReportRequest: TradeRequestID
    b"AE": 571,  # TradeCaptureReport: TradeReportID
    b"AN": 710,  # RequestForPositions: PosReqID
    b"AL": 710,  # PositionMaintenanceRequest: PosReqID
    b"BB": 909,  # CollateralInquiry: CollInquiryID
    b"BE": 923,  # UserRequest: UserRequestID
    # what a counterparty may send unasked, or in answer to what it asked
    b"6": 23,  # IOI: IOIID
    b"7": 2,  # Advertisement: AdvId
    b"B": 148,  # News: Headline
    b"C": 164,  # Email: EmailThreadID
    b"N": 66,  # ListStatus: ListID
    b"P": 70,  # AllocationInstructionAck: AllocID
    b"Q": 17,  # DontKnowTrade: ExecID
    b"T": 777,  # SettlementInstructions: SettlInstMsgID
    b"W": 262,  # MarketDataSnapshotFullRefresh: MDReqID
    b"X": 262,  # MarketDataIncrementalRefresh: MDReqID
    b"Y": 262,  # MarketDataRequestReject: MDReqID
    b"b": 117,  # MassQuoteAcknowledgement: QuoteID
    b"d": 320,  # SecurityDefinition: SecurityReqID
    b"f": 324,  # SecurityStatus: SecurityStatusReqID
    b"h": 335,  # TradingSessionStatus: TradSesReqID
    b"l": 390,  # BidResponse: BidID
    b"m": 66,  # ListStrikePrice: ListID
}


def business_reject_body(
    msg: FixMessage,
    reason: int,
    text: bytes | None = None,
    max_id_length: int = 64,
) -> bytes:
    """The body of a BusinessMessageReject (j) of ``msg``: RefSeqNum,
    Text (the reason's standard text unless ``text``), RefMsgType,
    BusinessRejectRefID (the id field of ``msg``'s kind, cut to
    ``max_id_length`` bytes) when ``msg`` carries one, BusinessRejectReason."""
    tag = _REQUEST_IDS.get(msg.msg_type)
    ref_id = None if tag is None else msg.get(tag)
    if ref_id:
        ref_id = ref_id[:max_id_length]
    parts = []
    seq = msg.get(34)
    if seq:
        parts.append(b"45=%b\x01" % seq)
    parts.append(b"58=%b\x01" % (text or BusinessRejectReason.TEXT.get(reason, b"Other")))
    parts.append(b"372=%b\x01" % msg.msg_type)
    if ref_id:
        parts.append(b"379=%b\x01" % ref_id)
    parts.append(b"380=%d\x01" % reason)
    return b"".join(parts)


class SessionStats:
    """Counters of one session over all its connections (read by the metrics)."""

    __slots__ = (
        "dropped",
        "garbled_frames",
        "messages_in",
        "messages_out",
        "rejects_received",
        "rejects_sent",
    )

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.rejects_sent = 0
        self.rejects_received = 0
        #: frames ignored because parse_frame refused them
        self.garbled_frames = 0
        #: runs of bytes the session's decoders dropped between two frames
        self.dropped = codec.GarbageRuns()

    @property
    def garbled(self) -> int:
        """Inbound garbage ignored: one for each frame refused as garbled,
        and one for each run of bytes dropped between two frames."""
        return self.garbled_frames + self.dropped.runs


class Session:
    """One FIX session (a SenderCompID/TargetCompID pair) across connections.

    The sequence numbers and sent messages live in ``store``; everything about
    the current connection is reset by :meth:`connection_made`.
    """

    def __init__(
        self,
        settings: SessionSettings,
        store: SessionStore,
        *,
        initiator: bool = False,
        dictionary: Dictionary | None = None,
        max_message_size: int = 65536,
    ) -> None:
        self.settings = settings
        self.store = store
        self.initiator = initiator
        self.session_id = settings.session_id
        self.begin_string = settings.BeginString.encode()
        self.sender_comp_id = settings.SenderCompID.encode()
        self.target_comp_id = settings.TargetCompID.encode()
        self.stats = SessionStats()
        self.resend_from = 0
        """Application messages numbered below this are answered to a
        ResendRequest with a gap fill, not sent again (set by an LP adapter
        at each logon: an order it ended when the link dropped, its client
        told it was canceled, must not reach the LP after the reconnect)."""
        self.yielded = False
        """Whether the last :meth:`next_event` processed a message without
        an event for its caller (more input may be waiting)."""
        self.bytes_in = 0
        """Bytes of the messages taken from the input so far (a caller
        bounds what one turn of its works by them as well as by count)."""
        self.waited = 0.0
        """Seconds the message being handed to the application has waited
        behind others on its connection (set by the transport before each
        hand-over; 0 when none were waiting): what load shedding reads."""
        self._dd = dictionary or fix44()
        self._validator = Validator(
            self._dd,
            ValidationOptions(
                fields_out_of_order=settings.ValidateFieldsOutOfOrder,
                fields_have_values=settings.ValidateFieldsHaveValues,
                user_defined_fields=settings.ValidateUserDefinedFields,
            ),
        )
        self._max_message_size = max_message_size
        self._machine = StateMachine()
        self._log = structlog.get_logger("gateway.fix.session").bind(session=self.session_id)
        #: the lines the peer's messages cause again and again (rejects,
        #: garbage; the application's too: messages over the client's rate),
        #: those not written counted on the session's end
        self.paced = PacedLog(self._log)
        self._handlers: dict[bytes, Callable[[FixMessage, float], None]] = {
            b"A": self._on_logon,
            b"0": self._on_heartbeat,
            b"1": self._on_test_request,
            b"2": self._on_resend_request,
            b"3": self._on_reject,
            b"4": self._on_sequence_reset,
            b"5": self._on_logout,
        }
        # when the peer last reset the numbers while logged on (RESET_EVERY)
        self._peer_reset_at = -RESET_EVERY
        #: counts connections, so that a connection object can tell whether
        #: the session is still its own or already bound to a newer one
        self.connection_epoch = 0
        self._reset_connection_state(0.0)

    # -- connection lifecycle -------------------------------------------------

    def _reset_connection_state(self, now: float) -> None:
        self._decoder = FrameDecoder(self._max_message_size)
        self._out: list[bytes] = []
        self._unsent = 0  # bytes in _out
        # (begin, end) of a ResendRequest still to answer, see _resend
        self._resend_rest: tuple[int, int] | None = None
        self._resend_held = False
        self._events: deque[Event] = deque()
        self._pending: FixMessage | None = None
        self._queue: dict[int, FixMessage] = {}
        self._queued_bytes = 0  # of the messages in _queue
        self._queue_low = _NO_SEQ  # no MsgSeqNum in _queue is lower
        # the highest MsgSeqNum received too high while _queue was full, and
        # so not kept: asked for again once what is queued is handed on
        self._not_kept = 0
        self._resend_range: tuple[int, int] | None = None
        # the MsgSeqNum asked for again after an answer to a ResendRequest
        # of ours went past it without it (0: none)
        self._hole_asked = 0
        # the highest PossDup number of the answer that left the hole, and
        # whether the answer to the new request has begun (a PossDup at or
        # below it): what follows of the first answer says nothing of it
        self._hole_from = 0
        self._retry_answered = False
        # the message being worked was held out of sequence: its SendingTime
        # was judged when it arrived, the time it waited is the gap's
        self._from_queue = False
        self._heartbeat_interval = float(self.settings.HeartBtInt)
        self._connected_at = now
        self._last_sent = now
        self._last_received = now
        self._test_requests = 0
        self._logout_sent_at: float | None = None
        self._received_logon = False
        self._sent_logon = False
        self._sent_logout = False
        self._sent_reset = False
        self._received_reset = False
        # the Text (58) of the peer's Logout on this connection, as received
        self.peer_logout_text: bytes | None = None

    @property
    def session(self) -> Session:
        """The session itself (it is its own connection object once bound)."""
        return self

    @property
    def state(self) -> SessionState:
        return self._machine.state

    @property
    def is_connected(self) -> bool:
        return self._machine.state is not _DISCONNECTED

    @property
    def awaiting_resend(self) -> bool:
        """Whether a ResendRequest of ours is not yet satisfied (a gap is open)."""
        return self._resend_range is not None

    @property
    def is_logged_on(self) -> bool:
        return self._machine.state in LOGGED_ON

    @property
    def heartbeat_interval(self) -> float:
        return self._heartbeat_interval

    def connection_made(self, now: float) -> None:
        """A transport is up.  An initiator sends its Logon at once."""
        if self.is_connected:
            raise RuntimeError(f"{self.session_id} is already connected")
        self._reset_connection_state(now)
        self.peer_logout_text = None  # this connection's, once one comes
        self.connection_epoch += 1
        if not self.initiator:
            self._machine.move(_AWAITING_LOGON)
            return
        self._machine.move(_LOGON_SENT)
        settings = self.settings
        if settings.ResetOnLogon:
            self.store.reset(now)
        body = [b"98=0\x01108=%d\x01" % settings.HeartBtInt]
        if self._should_send_reset():
            body.append(b"141=Y\x01")
            self._sent_reset = True
        if settings.Username:
            body.append(b"553=%b\x01" % settings.Username.encode())
        if settings.Password:
            body.append(b"554=%b\x01" % settings.Password.encode())
        self._sent_logon = True
        self._send_admin(b"A", b"".join(body), now)
        self._log.info("logon_sent", heartbeat_interval=settings.HeartBtInt)

    def _should_send_reset(self) -> bool:
        s = self.settings
        return (
            (s.ResetOnLogon or s.ResetOnLogout or s.ResetOnDisconnect)
            and self.store.next_sender_seq == 1
            and self.store.next_target_seq == 1
        )

    def connection_lost(self, now: float, reason: str = "connection lost") -> None:
        """The transport is gone (whoever closed it).  What the session
        changed in its store is the caller's to flush."""
        if self._machine.state is _DISCONNECTED:
            return
        self._end(now, reason)

    def _end(self, now: float, reason: str) -> None:
        was_logged_on = self._received_logon and self._sent_logon
        self._machine.move(_DISCONNECTED)
        self._clear_queue()
        self._pending = None
        self._resend_range = None
        self._decoder = FrameDecoder(self._max_message_size)
        if self.settings.ResetOnDisconnect:
            self.store.reset(now)
        if was_logged_on:
            self._events.append(LoggedOut(reason))
        unlogged = self.paced.take_unlogged()
        counted = {"not_logged": unlogged} if unlogged else {}
        self._log.info("session_ended", reason=reason, logged_on=was_logged_on, **counted)

    def _disconnect(self, now: float, reason: str) -> None:
        """Close the connection after what is queued has been written."""
        if self._machine.state is _DISCONNECTED:
            return
        self._end(now, reason)
        self._events.append(CloseConnection(reason))

    def logout(self, now: float, text: str | None = None) -> None:
        """Start the Logout handshake (or just disconnect before logon)."""
        if not self.is_connected:
            return
        if not self.is_logged_on:
            self._disconnect(now, text or "logout before logon completed")
        elif not self._sent_logout:
            self._send_logout(now, text.encode() if text else None)

    # -- input ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._machine.state is not _DISCONNECTED:
            decoder = self._decoder
            # a new decoder comes with each connection: what any of them
            # drops counts in the session's stats
            decoder.garbage = self.stats.dropped
            decoder.feed(data)

    def receive_frame(self, frame: bytes) -> None:
        """Queue one already-framed message ahead of buffered bytes (used by
        the acceptor when it hands over the Logon that identified us)."""
        rest = self._decoder.take_rest()
        self._decoder.feed(frame)
        self._decoder.feed(rest)

    def next_event(self, now: float) -> Event | None:
        """The next event for the caller, processing at most one message of
        input for it; None when there is none, with :attr:`yielded` True
        when a message was processed that the caller is not told of (a
        Heartbeat, a TestRequest, a ResendRequest, a reject): more input
        may be waiting, and the caller counts it against its own budget as
        it counts events, so that session messages, which the session
        answers itself, cannot keep the loop past a turn's share."""
        events = self._events
        self.yielded = False
        if events:
            return events.popleft()
        if self._machine.state is _DISCONNECTED:
            return None
        pending = self._pending
        if pending is not None:
            self._pending = None
            # held out of sequence, counted again as it is worked: a turn
            # that fills a gap works the messages behind it within its bytes
            self.bytes_in += len(pending.raw)
            self._process(pending, now, queued=True)
        else:
            frame = self._decoder.next_frame()
            if frame is None:
                return None
            self.bytes_in += len(frame)
            self._process_frame(frame, now)
        if events:
            return events.popleft()
        self.yielded = True
        return None

    def _process_frame(self, frame: bytes, now: float) -> None:
        try:
            msg = codec.parse_frame(frame)
        except GarbledMessage as exc:
            self.stats.garbled_frames += 1
            reason = codec.loggable(str(exc))
            self.paced.warning("garbled_message", now, reason=reason, size=len(frame))
            if not self._received_logon or b"\x0135=A\x01" in frame:
                self._disconnect(now, f"garbled Logon: {reason}")
            return
        self.stats.messages_in += 1
        self._last_received = now
        self._process(msg, now, queued=False)

    def _process(self, msg: FixMessage, now: float, queued: bool) -> None:
        mt = msg.msg_type
        if queued and (mt == b"A" or mt == b"2"):
            # already acted upon when it arrived out of sequence; counted now,
            # it may be the last number a ResendRequest of ours asked for
            self._incr_target()
            rr = self._resend_range
            if rr is not None and self._seq(msg) >= rr[1]:
                self._resend_satisfied()
            self._drain_queue(now)
            return
        get = msg.get
        if get(49) is None or get(56) is None:
            tag = 49 if get(49) is None else 56
            if mt == b"A" or not self._received_logon:
                self._disconnect(now, "Logon without SenderCompID or TargetCompID")
            else:
                self._reject(msg, R.REQUIRED_TAG_MISSING, tag, now)
            return
        if msg.begin_string != self.begin_string:
            if not self._received_logon:
                self._disconnect(now, "Incorrect BeginString")
            elif mt == b"5":
                self._on_logout(msg, now)
            else:
                self._log.warning(
                    "incorrect_begin_string", begin_string=codec.loggable(msg.begin_string)
                )
                self._send_logout(now, b"Incorrect BeginString")
                self._incr_target()
            return
        problem = self._validator.validate(msg)
        if problem is not None:
            if problem.tag == 34 and problem.reason in _FATAL_SEQNUM_PROBLEMS:
                self._fatal(now, b"MsgSeqNum missing or invalid")
            elif mt == b"A" or not self._received_logon:
                self._disconnect(
                    now, f"invalid Logon: {REJECT_TEXT.get(problem.reason, b'').decode()}"
                )
            else:
                self._reject(msg, problem.reason, problem.tag, now)
                self._drain_queue(now)
            return
        self._from_queue = queued
        handler = self._handlers.get(mt)
        if handler is not None:
            handler(msg, now)
        else:
            self._on_application(msg, now)
        if self._machine.state is not _DISCONNECTED:
            self._drain_queue(now)

    def _drain_queue(self, now: float) -> None:
        """Hand on the queued message that comes next, if there is one;
        at a hole in what is known to have been sent, ask for it again."""
        queue = self._queue
        if not queue:  # after nearly every message: no read of the store
            not_kept = self._not_kept
            if not_kept and not_kept >= self.store.next_target_seq:
                self._ask_again(self.store.next_target_seq, now)
            return
        expected = self.store.next_target_seq
        if self._queue_low < expected:
            # the expected number jumped (a SequenceReset): what it passed
            # over will never be handed on
            for seq in [s for s in queue if s < expected]:
                self._queued_bytes -= _held(queue.pop(seq))
            # the lowest left: the next jump short of it scans nothing
            self._queue_low = min(queue, default=_NO_SEQ)
        msg = queue.pop(expected, None)
        if msg is not None:
            self._pending = msg
            self._queued_bytes -= _held(msg)
            self._queue_low = expected + 1
        elif self._not_kept >= expected or queue:
            self._ask_again(expected, now)

    def _ask_again(self, expected: int, now: float) -> None:
        """A ResendRequest from ``expected`` on, unless one is out: for what
        was received past a full queue and not kept, or a hole that the
        peer's answer to the last request left."""
        if self._resend_range is not None or self._machine.state is _DISCONNECTED:
            return
        last = max(self._not_kept, max(self._queue, default=0))
        self._log.info("sequence_gap", expected=expected, received=last)
        self._send_admin(b"2", b"7=%d\x0116=0\x01" % expected, now)
        self._resend_range = (expected, last)
        if self._machine.state is _ACTIVE:
            self._machine.move(_AWAITING_RESEND)

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self._queue_low = _NO_SEQ
        self._not_kept = 0

    # -- verification -----------------------------------------------------------

    def _seq(self, msg: FixMessage) -> int:
        return int(msg.get(34) or b"0")

    def _valid_logon_state(self, mt: bytes) -> bool:
        if (mt == b"A" and self._sent_reset) or self._received_reset:
            return True
        if (mt == b"A" and not self._received_logon) or (mt != b"A" and self._received_logon):
            return True
        if mt == b"5" and self._sent_logon:
            return True
        if mt != b"5" and self._sent_logout:
            return True
        return mt == b"4" or mt == b"3"

    def _verify(
        self, msg: FixMessage, now: float, check_high: bool = True, check_low: bool = True
    ) -> bool:
        mt = msg.msg_type
        if not self._valid_logon_state(mt):
            self._disconnect(
                now, f"message type {mt.decode('latin-1')} not valid in state {self.state.value}"
            )
            return False
        settings = self.settings
        if settings.CheckLatency and not self._from_queue:
            sent = codec.parse_utc_timestamp(msg.get(52) or b"")
            if sent is None or abs(now - sent) > settings.MaxLatency:
                self._log.warning(
                    "sending_time_accuracy", sending_time=codec.loggable(msg.get(52) or b"")
                )
                self._reject(msg, R.SENDINGTIME_ACCURACY_PROBLEM, None, now)
                self._send_logout(now)
                return False
        if settings.CheckCompID and (
            msg.get(49) != self.target_comp_id or msg.get(56) != self.sender_comp_id
        ):
            self._log.warning(
                "comp_id_problem",
                sender=codec.loggable(msg.get(49) or b""),
                target=codec.loggable(msg.get(56) or b""),
            )
            self._reject(msg, R.COMPID_PROBLEM, None, now)
            self._send_logout(now)
            return False
        if check_high or check_low:
            seq = self._seq(msg)
            expected = self.store.next_target_seq
            if check_high and seq > expected:
                self._target_too_high(msg, seq, now)
                return False
            if check_low and seq < expected:
                self._target_too_low(msg, seq, now)
                return False
            rr = self._resend_range
            if rr is not None and seq >= rr[1]:
                self._resend_satisfied()
        self._test_requests = 0
        return True

    def _resend_satisfied(self) -> None:
        if self._resend_range is not None:
            self._log.info(
                "resend_satisfied", begin=self._resend_range[0], end=self._resend_range[1]
            )
        self._resend_range = None
        if self._machine.state is _AWAITING_RESEND:
            self._machine.move(_ACTIVE)

    def _target_too_high(self, msg: FixMessage, seq: int, now: float) -> None:
        queue = self._queue
        replaced = queue.get(seq)
        if replaced is not None:
            self._queued_bytes -= _held(replaced)
            del queue[seq]
        if len(queue) >= MAX_QUEUED_MESSAGES or self._queued_bytes + _held(msg) > MAX_QUEUED_BYTES:
            # Not kept: the session's memory stays bounded whatever the peer
            # sends past a gap, and what was not kept is asked for again
            # once the queue is handed on (a long resend of the peer's,
            # with its new messages coming in between, ends that way).
            if self._not_kept < self.store.next_target_seq:  # once a gap
                self._log.warning(
                    "out_of_sequence_not_kept", expected=self.store.next_target_seq, received=seq
                )
            if seq > self._not_kept:
                self._not_kept = seq
        else:
            queue[seq] = msg
            self._queued_bytes += _held(msg)
            if seq < self._queue_low:
                self._queue_low = seq
        expected = self.store.next_target_seq
        rr = self._resend_range
        if rr is not None and seq >= rr[0]:
            retrying = self._hole_asked == expected
            if retrying and seq <= self._hole_from and msg.get(43) == b"Y":
                self._retry_answered = True  # the peer answers again from the start
            if not self._answer_ended(msg, seq, rr[1]):
                return  # a ResendRequest covering this is already out
            # The peer's answer went past what was asked for and left
            # ``expected`` out (a resent message garbled or too large on the
            # way, a GapFill that moved nothing): nothing else would ever
            # ask for it again, every later message would wait behind it
            # for good.  Asked for again once; a second answer without it
            # will not bring it either: the session ends, saying why.
            if retrying:
                if not self._retry_answered:
                    return  # the rest of the first answer (what revealed the gap, resent)
                self._log.warning("sequence_gap_not_filled", expected=expected, received=seq)
                text = b"MsgSeqNum %d not received in answer to a ResendRequest" % expected
                self._send_logout(now, text)
                return
            self._hole_asked = expected
            self._hole_from = seq
            self._retry_answered = False
            self._resend_range = None
            self._ask_again(expected, now)
            return
        self._log.info("sequence_gap", expected=expected, received=seq)
        self._send_admin(b"2", b"7=%d\x0116=0\x01" % expected, now)
        self._resend_range = (expected, seq - 1)
        if self._machine.state is _ACTIVE:
            self._machine.move(_AWAITING_RESEND)

    @staticmethod
    def _answer_ended(msg: FixMessage, seq: int, end: int) -> bool:
        """Whether ``msg``, received too high, is the peer's answer to our
        ResendRequest (PossDupFlag) reaching ``end``, the last number asked
        for: the answer comes in order, so what it did not fill before
        that is a hole.  New messages (no PossDupFlag) say nothing of it."""
        if msg.get(43) != b"Y":
            return False
        if seq >= end:
            return True
        if msg.msg_type == b"4" and msg.get(123) == b"Y":
            new_seq = msg.get(36) or b""
            return new_seq.isdigit() and int(new_seq) > end
        return False

    def _target_too_low(self, msg: FixMessage, seq: int, now: float) -> None:
        expected = self.store.next_target_seq
        if msg.get(43) != b"Y":
            text = b"MsgSeqNum too low, expecting %d but received %d" % (expected, seq)
            self._fatal(now, text)
            return
        if msg.msg_type == b"4":
            return
        orig = msg.get(122)
        if orig is None:
            self._reject(msg, R.REQUIRED_TAG_MISSING, 122, now)
            return
        orig_time = codec.parse_utc_timestamp(orig)
        sent_time = codec.parse_utc_timestamp(msg.get(52) or b"")
        if orig_time is None or sent_time is None or orig_time > sent_time:
            self._reject(msg, R.SENDINGTIME_ACCURACY_PROBLEM, None, now)
            self._send_logout(now)
        # otherwise a duplicate we already have: ignored

    def _fatal(self, now: float, text: bytes) -> None:
        """Logout with ``text`` and drop the connection at once."""
        self._log.warning("session_error", text=text.decode("latin-1"))
        self._send_logout(now, text)
        self._disconnect(now, text.decode("latin-1"))

    def _incr_target(self) -> None:
        store = self.store
        store.set_next_target_seq(store.next_target_seq + 1)

    # -- admin message handlers -------------------------------------------------

    def _on_logon(self, msg: FixMessage, now: float) -> None:
        settings = self.settings
        # a Logon the session refuses changes nothing: it must not reset the
        # numbers (and drop the stored messages) of the session it names
        problem = None if self.initiator else self.logon_refusal(msg)
        if problem is not None:
            self._log.warning("logon_refused", reason=problem)
            self._received_logon = True
            self._send_logout(now, problem.encode())
            self._disconnect(now, problem)
            return
        reset_flag = msg.get(141) == b"Y"
        if reset_flag and not self._sent_reset and self.is_logged_on:
            # a reset while logged on: one a RESET_EVERY at most (each
            # rewrites the store, synced, on the loop everyone shares)
            since = now - self._peer_reset_at
            if 0.0 <= since < RESET_EVERY:
                self._fatal(
                    now,
                    b"ResetSeqNumFlag again %.3f s after the last reset (at most one every"
                    b" %g s)" % (since, RESET_EVERY),
                )
                return
            self._peer_reset_at = now
        self._received_reset = reset_flag
        if reset_flag and not self._sent_reset:
            self._reset_sequence(now)
        if self.initiator and not self._sent_logon and not reset_flag:
            self._disconnect(now, "Logon response before a Logon was sent")
            return
        if not self.initiator and settings.ResetOnLogon:
            self._reset_sequence(now)
        if not self._verify(msg, now, check_high=False, check_low=True):
            return
        if not self.initiator or (reset_flag and not self._sent_reset):
            self._heartbeat_interval = float(int(msg.get(108) or b"0"))
            body = b"98=0\x01108=%d\x01" % int(self._heartbeat_interval)
            if reset_flag:
                body += b"141=Y\x01"
            self._received_logon = True
            self._sent_logon = True
            self._send_admin(b"A", body, now)
        self._received_logon = True
        self._sent_reset = False
        self._received_reset = False
        # A Logon while logged on (ResetSeqNumFlag=Y) resets the numbers of
        # a session that goes on: the application is not told it logged on
        # again (it would subscribe, resend or count a second time).
        logging_on = self._machine.state in (_AWAITING_LOGON, _LOGON_SENT)
        if logging_on:
            self._machine.move(_ACTIVE)
        seq = self._seq(msg)
        if seq > self.store.next_target_seq and not reset_flag:
            self._target_too_high(msg, seq, now)
        else:
            self._incr_target()
        self._log.info(
            "logged_on",
            heartbeat_interval=self._heartbeat_interval,
            reset=reset_flag,
            next_sender=self.store.next_sender_seq,
            next_target=self.store.next_target_seq,
        )
        if logging_on:
            self._events.append(LoggedOn())

    def _reset_sequence(self, now: float) -> None:
        """Both sequence numbers back to 1: whatever was queued or requested
        under the old numbers means nothing any more, on either side (what
        is left of a resend of ours included)."""
        self.store.reset(now)
        self._clear_queue()
        self._pending = None
        self._resend_rest = None
        self.resend_from = 0  # what it named was before the numbers began again
        if self._resend_range is not None:
            self._resend_satisfied()
        # a hole asked for again named an old number: a hole at the same
        # number now is a first miss
        self._hole_asked = 0
        self._hole_from = 0
        self._retry_answered = False

    def logon_refusal(self, msg: FixMessage) -> str | None:
        """Why this session refuses ``msg`` (a Logon), or None (never names
        a secret).  Reads nothing but the message and the settings."""
        s = self.settings
        if s.Username is not None and msg.get(553) != s.Username.encode():
            return "Invalid username or password"
        # compared in constant time: the answer's timing tells nothing
        if s.Password is not None and not hmac.compare_digest(
            msg.get(554) or b"", s.Password.encode()
        ):
            return "Invalid username or password"
        given = msg.get(108) or b""
        # not validated yet (a gate asks first): no more digits than an INT
        # may have, where int() of thousands of them raises
        hb = int(given) if given.isdigit() and len(given) <= 18 else -1
        if not s.MinHeartBtInt <= hb <= s.MaxHeartBtInt:
            return f"HeartBtInt must be between {s.MinHeartBtInt} and {s.MaxHeartBtInt}"
        return None

    def _on_heartbeat(self, msg: FixMessage, now: float) -> None:
        if self._verify(msg, now):
            self._incr_target()

    def _on_test_request(self, msg: FixMessage, now: float) -> None:
        if not self._verify(msg, now):
            return
        self._send_admin(b"0", b"112=%b\x01" % (msg.get(112) or b""), now)
        self._incr_target()

    def _on_reject(self, msg: FixMessage, now: float) -> None:
        # Too high once logged on, it waits for the gap before it like any
        # message (QuickFIX takes it at once, moving the expected number by
        # one past whatever is missing, which is then never asked for).
        # Before the Logon it is taken as it comes: it may refuse the Logon.
        if not self._verify(msg, now, check_high=self._received_logon, check_low=True):
            return
        self.stats.rejects_received += 1
        self.paced.warning(
            "reject_received",
            now,
            ref_seq_num=codec.loggable(msg.get(45) or b""),
            reason=codec.loggable(msg.get(373) or b""),
            text=codec.loggable(msg.get(58) or b""),
        )
        self._incr_target()
        self._events.append(RejectReceived(msg))

    def _on_sequence_reset(self, msg: FixMessage, now: float) -> None:
        gap_fill = msg.get(123) == b"Y"
        if not self._verify(msg, now, check_high=gap_fill, check_low=gap_fill):
            return
        new_seq = int(msg.get(36) or b"0")
        expected = self.store.next_target_seq
        if new_seq > expected:
            self.paced.info("sequence_reset", now, gap_fill=gap_fill, old=expected, new=new_seq)
            self.store.set_next_target_seq(new_seq)
            rr = self._resend_range
            if rr is not None and new_seq > rr[1]:
                self._resend_satisfied()
        elif new_seq < expected:
            self._reject(msg, R.VALUE_IS_INCORRECT, None, now)

    def _on_logout(self, msg: FixMessage, now: float) -> None:
        if not self._verify(msg, now, check_high=False, check_low=False):
            return
        self.peer_logout_text = msg.get(58) or b""
        text = codec.loggable(self.peer_logout_text)
        if not self._sent_logout:
            self._log.info("logout_received", text=text)
            self._send_admin(b"5", b"", now)
            self._sent_logout = True
        else:
            self._log.info("logout_confirmed", text=text)
        if self._seq(msg) == self.store.next_target_seq:
            # counted only in sequence: one past a gap leaves the numbers
            # missing before it to be asked for at the next Logon (moving
            # on by one would skip the first of them for good)
            self._incr_target()
        if self.settings.ResetOnLogout:
            self.store.reset(now)
        self._disconnect(now, "logout")

    def _on_resend_request(self, msg: FixMessage, now: float) -> None:
        if not self._verify(msg, now, check_high=False, check_low=False):
            return
        asked_begin = int(msg.get(7) or b"1")
        end = int(msg.get(16) or b"0")
        if end < 0 or asked_begin < 0 or (end and end < asked_begin):
            # nothing can be sent for it: said, not ignored
            self._reject(msg, R.VALUE_IS_INCORRECT, 7 if asked_begin < 0 else 16, now)
            return
        begin = max(1, asked_begin)
        next_sender = self.store.next_sender_seq
        if end == 0 or end >= next_sender:
            end = next_sender - 1
        self.paced.info("resend_request", now, begin=begin, end=end)
        if begin <= end:
            rest = self._resend_rest
            if rest is None and not self._resend_held:
                self._resend_held = True
                self._resend(begin, end, now)
            elif rest is None:
                # the answer to the one before is not written yet: this one
                # waits for it, as the parts of a long one do (many short
                # requests back to back would otherwise each be answered
                # at once, and queue any number of bytes to the peer)
                self._resend_rest = (begin, end)
            else:
                # Another request is still being answered: what is left of
                # it grows to cover this one too, from the lower begin (the
                # peer may want again what it was sent) to the higher end,
                # and goes on at the pace the transport takes it.  Answering
                # a part of each request at once would let back-to-back
                # requests multiply the bytes queued to the peer.
                self._resend_rest = (min(begin, rest[0]), max(end, rest[1]))
        seq = self._seq(msg)
        expected = self.store.next_target_seq
        if seq == expected:
            self._incr_target()
        elif seq > expected:
            self._target_too_high(msg, seq, now)

    @property
    def resend_pending(self) -> bool:
        """Part of what ResendRequests asked for is still to be sent: the
        caller has :meth:`continue_resend` send it once the peer has taken
        what is queued."""
        return self._resend_rest is not None

    @property
    def resend_held(self) -> bool:
        """An answer to a ResendRequest was sent that the transport has not
        said is written: the next request waits for :meth:`resend_written`."""
        return self._resend_held

    def resend_written(self) -> None:
        """What answered the last ResendRequest has been written out (the
        bytes queued to the peer are down to the transport's low water):
        the next request may be answered at once."""
        self._resend_held = False

    def continue_resend(self, now: float) -> None:
        """Send the next part of a ResendRequest answered in parts."""
        rest = self._resend_rest
        if rest is None or self._machine.state is _DISCONNECTED:
            self._resend_rest = None
            return
        self._resend_rest = None
        self._resend_held = True
        self._resend(rest[0], rest[1], now)

    def _resend(self, begin: int, end: int, now: float) -> None:
        """Answer a ResendRequest for [begin, end]: stored application
        messages go out again with PossDupFlag=Y and OrigSendingTime, every
        run of numbers without one becomes a SequenceReset-GapFill.

        At most ``RESEND_CHUNK`` sequence numbers are answered at once; the
        rest waits in ``_resend_rest`` until the transport has written them
        out and calls :meth:`continue_resend`, so that a request "to
        infinity" over a long session never builds all its answers in
        memory at once.  A ResendRequest that comes while some of an
        earlier one is left does not end up here at once:
        :meth:`_on_resend_request` widens what is left to cover it, so a
        later request restarts or extends a resend but never cuts it
        short."""
        if end - begin + 1 > RESEND_CHUNK:
            self._resend_rest = (begin + RESEND_CHUNK, end)
            end = begin + RESEND_CHUNK - 1
        else:
            self._resend_rest = None
        gap_start: int | None = None
        current = begin
        stamp = codec.format_utc_timestamp(now)
        resend_from = self.resend_from
        for seq, raw in self.store.get_sent(begin, end):
            if seq < resend_from:
                continue  # covered by a gap fill, as a session message is
            if seq != current and gap_start is None:
                gap_start = current
            if gap_start is not None:
                self._send_gap_fill(gap_start, seq, now)
                gap_start = None
            self._send_possdup(raw, stamp, now)
            current = seq + 1
        if current <= end:
            self._send_gap_fill(gap_start if gap_start is not None else current, end + 1, now)

    def _send_gap_fill(self, seq: int, new_seq: int, now: float) -> None:
        ts = codec.format_utc_timestamp(now)
        payload = (
            b"35=4\x0134=%d\x0143=Y\x0149=%b\x0152=%b\x0156=%b\x01122=%b\x0136=%d\x01123=Y\x01"
            % (
                seq,
                self.sender_comp_id,
                ts,
                self.target_comp_id,
                ts,
                new_seq,
            )
        )
        self._write(codec.finish_message(self.begin_string, payload), now)

    def _send_possdup(self, raw: bytes, stamp: bytes, now: float) -> None:
        """``raw``, a stored message, sent again with PossDupFlag=Y, SendingTime
        ``stamp`` and its own as OrigSendingTime; its body byte for byte."""
        scanned = codec.scan_header(raw, self._dd.header)
        if scanned is None:
            self._send_possdup_parsed(raw, stamp, now)
            return
        msg_type, fields, start = scanned
        seq = b"0"
        sent = b""
        kept: list[tuple[int, bytes]] = []
        for tag, value in fields:
            if tag == 34:
                seq = value
            elif tag == 52:
                sent = value
            elif tag not in _RESEND_REPLACED:
                kept.append((tag, value))
        body = raw[start : len(raw) - codec.CHECKSUM_FIELD]
        if kept:
            kept += self._possdup_header(seq, stamp, sent)
            self._write(codec.encode_message(self.begin_string, msg_type, kept, body), now)
            return
        # the header it had, in ascending order, as encode_message writes it
        payload = b"35=%b\x0134=%b\x0143=Y\x0149=%b\x0152=%b\x0156=%b\x01122=%b\x01%b" % (
            msg_type,
            seq,
            self.sender_comp_id,
            stamp,
            self.target_comp_id,
            sent,
            body,
        )
        self._write(codec.finish_message(self.begin_string, payload), now)

    def _possdup_header(self, seq: bytes, stamp: bytes, sent: bytes) -> list[tuple[int, bytes]]:
        """The header fields a resend sets: the stored MsgSeqNum ``seq``,
        PossDupFlag, the ids, SendingTime ``stamp``, OrigSendingTime ``sent``."""
        return [
            (34, seq),
            (43, b"Y"),
            (49, self.sender_comp_id),
            (52, stamp),
            (56, self.target_comp_id),
            (122, sent),
        ]

    def _send_possdup_parsed(self, raw: bytes, stamp: bytes, now: float) -> None:
        """:meth:`_send_possdup` for a message whose header takes a whole parse."""
        stored = codec.parse_frame(raw)
        fields = stored.fields
        k, start = codec.split_header(stored, self._dd.header)
        header = [(t, v) for t, v in fields[1:k] if t not in _RESEND_REPLACED]
        header += self._possdup_header(stored.get(34) or b"0", stamp, stored.get(52) or b"")
        if start >= 0:
            body = raw[start : len(raw) - codec.CHECKSUM_FIELD]  # as stored, byte for byte
        else:
            body = codec.encode_fields(fields[k:])
        self._write(codec.encode_message(self.begin_string, stored.msg_type, header, body), now)

    # -- application messages -----------------------------------------------------

    def _on_application(self, msg: FixMessage, now: float) -> None:
        if not self._verify(msg, now):
            return
        self._incr_target()
        self._events.append(ApplicationMessage(msg))

    def send(
        self,
        msg_type: bytes,
        body: bytes,
        now: float,
        header: list[tuple[int, bytes]] | None = None,
    ) -> int:
        """Send an application message (``body`` already encoded, in order).

        It is stored for resend and given the next MsgSeqNum even when the
        session is not logged on; the peer then gets it through its
        ResendRequest after the next Logon.  Returns the MsgSeqNum used.
        Nothing is written here: the caller has the store flushed and
        :meth:`data_to_send` written (see :mod:`gateway.net`).
        """
        return self.send_recorded(msg_type, body, now, header)[0]

    def send_recorded(
        self,
        msg_type: bytes,
        body: bytes,
        now: float,
        header: list[tuple[int, bytes]] | None = None,
    ) -> tuple[int, bytes]:
        """:meth:`send`, handing back the MsgSeqNum and the wire bytes
        stored, for a caller that keeps a copy of its own (the order
        journal completes a store from it after a crash)."""
        store = self.store
        seq = store.next_sender_seq
        raw = self._encode(msg_type, seq, body, now, header)
        store.append_sent(seq, raw)
        store.set_next_sender_seq(seq + 1)
        if self.is_logged_on:
            self._write(raw, now)
        return seq, raw

    def send_transient(self, msg_type: bytes, body: bytes, now: float) -> int | None:
        """Send an application message that is not stored: a later resend
        replaces it with a SequenceReset-GapFill, as FIX allows for what is
        stale by then (market data).  Sent only while logged on; returns its
        MsgSeqNum, or None when the session is not logged on (nothing is
        sent and no number is taken)."""
        if not self.is_logged_on:
            return None
        # numbered and written but not stored, as a session-level message is
        return self._send_admin(msg_type, body, now)

    def reject_business(
        self,
        msg: FixMessage,
        reason: int,
        now: float,
        text: bytes | None = None,
    ) -> None:
        """BusinessMessageReject (j) for an application message the
        application cannot process (see :func:`business_reject_body`)."""
        self.send(b"j", business_reject_body(msg, reason, text), now)

    # -- output --------------------------------------------------------------------

    def _encode(
        self,
        msg_type: bytes,
        seq: int,
        body: bytes,
        now: float,
        header: list[tuple[int, bytes]] | None = None,
    ) -> bytes:
        ts = codec.format_utc_timestamp(now)
        if header:
            full = [
                (34, b"%d" % seq),
                (49, self.sender_comp_id),
                (52, ts),
                (56, self.target_comp_id),
            ]
            full += header
            return codec.encode_message(self.begin_string, msg_type, full, body)
        return codec.encode_standard(
            self.begin_string, msg_type, seq, self.sender_comp_id, ts, self.target_comp_id, body
        )

    def _send_admin(
        self,
        msg_type: bytes,
        body: bytes,
        now: float,
        header: list[tuple[int, bytes]] | None = None,
    ) -> int:
        """Session-level messages take a sequence number but are not stored:
        a resend replaces them with a SequenceReset-GapFill.  Returns the
        MsgSeqNum used."""
        store = self.store
        seq = store.next_sender_seq
        raw = self._encode(msg_type, seq, body, now, header)
        store.set_next_sender_seq(seq + 1)
        self._write(raw, now)
        return seq

    def _write(self, raw: bytes, now: float) -> None:
        self._out.append(raw)
        self._unsent += len(raw)
        self._last_sent = now
        self.stats.messages_out += 1

    def refusal_logout(self, text: bytes, seq: int, now: float) -> bytes:
        """The bytes of a Logout turning a Logon away before the session
        takes it (another gateway of a cluster serves the session), numbered
        ``seq`` (a number the session's owner set aside for it: the peer
        counts the Logout), the session here left as it was."""
        return self._encode(b"5", seq, b"58=%b\x01" % text, now)

    def _send_logout(self, now: float, text: bytes | None = None) -> None:
        if self._sent_logout or self._machine.state is _DISCONNECTED:
            return
        self._send_admin(b"5", b"58=%b\x01" % text if text else b"", now)
        self._sent_logout = True
        self._logout_sent_at = now
        self._machine.move(_LOGOUT_SENT)

    def _reject(
        self, msg: FixMessage, reason: SessionRejectReason, tag: int | None, now: float
    ) -> None:
        """Session-level Reject (3) of ``msg``."""
        if not self._received_logon:
            self._disconnect(
                now, f"invalid message before logon: {REJECT_TEXT.get(reason, b'').decode()}"
            )
            return
        mt = msg.msg_type
        seq = msg.get(34)
        if (
            mt != b"A"
            and mt != b"4"
            and seq
            and seq.isdigit()
            and int(seq) == self.store.next_target_seq
        ):
            self._incr_target()
        parts = []
        if seq:
            parts.append(b"45=%b\x01" % seq)
        text = REJECT_TEXT.get(reason)
        if text:
            parts.append(b"58=%b\x01" % text)
            if tag is not None:
                parts.append(b"371=%d\x01" % tag)
        if mt:
            parts.append(b"372=%b\x01" % mt)
        parts.append(b"373=%d\x01" % reason)
        header = []
        for src, dst in _REVERSE_ROUTE:
            value = msg.get(src)
            if value:
                header.append((dst, value))
        self.stats.rejects_sent += 1
        self.paced.warning(
            "message_rejected",
            now,
            ref_seq_num=codec.loggable(seq or b""),
            msg_type=codec.loggable(mt),
            reason=reason.name,
            tag=tag,
        )
        self._send_admin(b"3", b"".join(parts), now, header)

    def data_to_send(self) -> bytes:
        """Bytes to write now.  They may be written once the store has been
        flushed (:meth:`SessionStore.flush`): what they carry must be
        durable first."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._unsent = 0
        return data

    @property
    def unsent(self) -> int:
        """Bytes sent on this connection and not taken by
        :meth:`data_to_send` yet: they wait for the end of the turn, or for
        the journal and the store to be written (a full disk)."""
        return self._unsent

    # -- timers ----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (epoch seconds), or None."""
        state = self._machine.state
        if state is _DISCONNECTED:
            return None
        if not self._received_logon:
            return self._connected_at + self.settings.LogonTimeout
        deadlines = []
        if self._logout_sent_at is not None:
            deadlines.append(self._logout_sent_at + self.settings.LogoutTimeout)
        hb = self._heartbeat_interval
        if hb > 0:
            received = self._last_received
            deadlines.append(received + 1.2 * (self._test_requests + 1) * hb)
            deadlines.append(received + 2.4 * hb)
            if self._test_requests == 0:
                deadlines.append(self._last_sent + hb)
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> None:
        state = self._machine.state
        if state is _DISCONNECTED:
            return
        if not self._received_logon:
            if now >= self._connected_at + self.settings.LogonTimeout:
                self._disconnect(now, "timed out waiting for Logon")
            return
        if (
            self._logout_sent_at is not None
            and now >= self._logout_sent_at + self.settings.LogoutTimeout
        ):
            self._disconnect(now, "timed out waiting for Logout response")
            return
        hb = self._heartbeat_interval
        if hb <= 0:
            return
        # the same sums as next_deadline(), so a timer fired at a deadline acts
        received = self._last_received
        if now < self._last_sent + hb and now < received + hb:
            return
        if now >= received + 2.4 * hb:
            self._disconnect(now, "timed out waiting for heartbeat")
        elif now >= received + 1.2 * (self._test_requests + 1) * hb:
            self._send_admin(b"1", b"112=TEST\x01", now)
            self._test_requests += 1
            self._log.info("test_request_sent", silent_for=round(now - received, 3))
        elif now >= self._last_sent + hb and self._test_requests == 0:
            self._send_admin(b"0", b"", now)
