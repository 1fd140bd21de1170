"""What a FIX session hands its caller: the events of the sans-I/O session.

:meth:`gateway.fix.session.Session.next_event` returns one of these at a
time; the caller (the asyncio edge, or a test) acts on each in turn.
"""

from __future__ import annotations

from gateway.fix.codec import FixMessage

__all__ = ["ApplicationMessage", "CloseConnection", "Event", "LoggedOn", "LoggedOut"]


class Event:
    __slots__ = ()


class LoggedOn(Event):
    """The Logon exchange completed; application messages may flow.  Once
    per connection: a Logon that resets the sequence numbers of a session
    already logged on (ResetSeqNumFlag=Y) is not another."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LoggedOn()"


class ApplicationMessage(Event):
    """An in-sequence application message from the peer."""

    __slots__ = ("message",)

    def __init__(self, message: FixMessage) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ApplicationMessage({self.message!r})"


class RejectReceived(Event):
    """The peer refused one of our messages with a session-level Reject (3):
    ``message`` is the Reject (RefSeqNum (45) names the refused message,
    RefMsgType (372) its type when the peer says)."""

    __slots__ = ("message",)

    def __init__(self, message: FixMessage) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"RejectReceived({self.message!r})"


class LoggedOut(Event):
    """A logged-on session ended (Logout exchange, error or lost connection)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"LoggedOut({self.reason!r})"


class CloseConnection(Event):
    """Write what :meth:`Session.data_to_send` holds, then close the socket."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"CloseConnection({self.reason!r})"
