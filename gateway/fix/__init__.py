"""The FIX 4.4 protocol, sans-I/O: codec, dictionary, validation, the
session state machine and its events, the session store interface.

Nothing here touches a socket, a file, an event loop or the clock, and
nothing calls back into the daemon: bytes and the time go in, events and
bytes to write come out (see :class:`Session`).  The asyncio edge
(:mod:`gateway.net`) decides when the bytes are written; the file store
lives in :mod:`gateway.storage`.
"""

from gateway.fix.acceptor import AcceptorConnection, SessionRegistry
from gateway.fix.application import Application, EchoApplication
from gateway.fix.codec import (
    FixMessage,
    FrameDecoder,
    GarbledMessage,
    encode_fields,
    format_utc_timestamp,
    parse_frame,
    parse_utc_timestamp,
)
from gateway.fix.dictionary import Dictionary, fix44
from gateway.fix.events import (
    ApplicationMessage,
    CloseConnection,
    Event,
    LoggedOn,
    LoggedOut,
    RejectReceived,
)
from gateway.fix.messages import new_order_single, order_cancel_request
from gateway.fix.session import BusinessRejectReason, Session, business_reject_body
from gateway.fix.states import SessionState
from gateway.fix.store import MemoryStore, SessionStore
from gateway.fix.validation import SessionRejectReason

__all__ = [
    "AcceptorConnection",
    "Application",
    "ApplicationMessage",
    "BusinessRejectReason",
    "CloseConnection",
    "Dictionary",
    "EchoApplication",
    "Event",
    "FixMessage",
    "FrameDecoder",
    "GarbledMessage",
    "LoggedOn",
    "LoggedOut",
    "MemoryStore",
    "RejectReceived",
    "Session",
    "SessionRegistry",
    "SessionRejectReason",
    "SessionState",
    "SessionStore",
    "business_reject_body",
    "encode_fields",
    "fix44",
    "format_utc_timestamp",
    "new_order_single",
    "order_cancel_request",
    "parse_frame",
    "parse_utc_timestamp",
]
