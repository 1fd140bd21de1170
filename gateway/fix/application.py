"""Application profiles: what a session does with its application messages.

A profile is chosen per session by ``Application`` in the config.  The
session layer hands each in-sequence application message to
:meth:`Application.on_message`; the profile answers through the session
(``session.send``, ``session.reject_business``), and what it answers there
is written with the rest of the connection's turn.  A message sent later,
from elsewhere (a timer, an LP's answer), must also be handed to the
asyncio edge's outbox (``Outbox.send`` or ``Outbox.wake``).
"""

from __future__ import annotations

from typing import Protocol

from gateway.fix.codec import FixMessage, encode_fields
from gateway.fix.dictionary import Dictionary, GroupDef, fix44
from gateway.fix.session import BusinessRejectReason, Session

# header tags an echo does not copy: the session writes its own
_OWN_HEADER = frozenset({8, 9, 10, 34, 35, 43, 49, 52, 56, 122})


class Application(Protocol):
    """What a session's application profile must implement."""

    def on_logon(self, session: Session, now: float) -> None:
        """The session completed its Logon (once per connection: not again
        for a Logon that resets the sequence numbers mid-session)."""

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        """The session ended (Logout, error or lost connection)."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        """An in-sequence application message arrived."""


def _group_span(fields: list[tuple[int, bytes]], i: int, gdef: GroupDef) -> int:
    """Index just past the entries of a group whose first entry starts at i."""
    n = len(fields)
    while i < n:
        tag = fields[i][0]
        if tag not in gdef.members:
            break
        i += 1
        nested = gdef.groups.get(tag)
        if nested is not None:
            i = _group_span(fields, i, nested)
    return i


def body_in_field_order(
    msg: FixMessage, dictionary: Dictionary
) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split ``msg`` into its extra header fields and its body re-encoded with
    top-level tags ascending and repeating groups kept whole, in place."""
    fields = msg.fields
    mdef = dictionary.messages.get(msg.msg_type)
    groups = mdef.groups if mdef is not None else {}
    header_tags = dictionary.header
    header: list[tuple[int, bytes]] = []
    items: list[tuple[int, bytes]] = []
    i, n = 1, len(fields)
    while i < n:
        tag, value = fields[i]
        i += 1
        if tag in header_tags:
            if tag not in _OWN_HEADER:
                header.append((tag, value))
            continue
        gdef = groups.get(tag)
        if gdef is None:
            items.append((tag, b"%d=%b\x01" % (tag, value)))
            continue
        end = _group_span(fields, i, gdef)
        items.append((tag, b"%d=%b\x01" % (tag, value) + encode_fields(fields[i:end])))
        i = end
    items.sort(key=lambda item: item[0])
    return header, b"".join(chunk for _, chunk in items)


class EchoApplication:
    """The acceptance-test application: NewOrderSingle and SecurityDefinition
    are echoed back with our own header; a NewOrderSingle with PossResend=Y
    whose ClOrdID was already seen on the session is ignored; anything else
    gets a BusinessMessageReject (Unsupported Message Type)."""

    def __init__(self, dictionary: Dictionary | None = None) -> None:
        self._dd = dictionary or fix44()
        self._seen: dict[str, set[bytes]] = {}

    def on_logon(self, session: Session, now: float) -> None:
        self._seen[session.session_id] = set()

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        self._seen.pop(session.session_id, None)

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        mt = msg.msg_type
        if mt == b"D":
            seen = self._seen.setdefault(session.session_id, set())
            cl_ord_id = msg.get(11) or b""
            if msg.get(97) == b"Y" and cl_ord_id in seen:
                return
            seen.add(cl_ord_id)
        elif mt != b"d":
            session.reject_business(msg, BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE, now)
            return
        header, body = body_in_field_order(msg, self._dd)
        session.send(mt, body, now, header or None)
