"""Every state a FIX session can be in, and every transition it may make.

Everything that affects the session's state machine lives here: the session
calls :meth:`StateMachine.move` and an illegal transition raises
:class:`IllegalTransition` (a bug on our side, never the peer's fault).
"""

from __future__ import annotations

from enum import Enum


class SessionState(Enum):
    DISCONNECTED = "disconnected"
    #: acceptor: a connection is bound to the session, its Logon is being processed
    AWAITING_LOGON = "awaiting_logon"
    #: initiator: our Logon is out, waiting for the answer
    LOGON_SENT = "logon_sent"
    #: logged on, sequence numbers in step
    ACTIVE = "active"
    #: logged on, a ResendRequest of ours is outstanding (a gap is being filled)
    AWAITING_RESEND = "awaiting_resend"
    #: our Logout is out, waiting for the peer's Logout or the timeout
    LOGOUT_SENT = "logout_sent"

    # members are singletons compared by identity: hashing them the same way
    # spares a Python-level call (Enum's own hash) on every ``in LOGGED_ON``
    __hash__ = object.__hash__


S = SessionState

TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.DISCONNECTED: frozenset({S.AWAITING_LOGON, S.LOGON_SENT}),
    S.AWAITING_LOGON: frozenset({S.ACTIVE, S.AWAITING_RESEND, S.LOGOUT_SENT, S.DISCONNECTED}),
    S.LOGON_SENT: frozenset({S.ACTIVE, S.AWAITING_RESEND, S.LOGOUT_SENT, S.DISCONNECTED}),
    S.ACTIVE: frozenset({S.AWAITING_RESEND, S.LOGOUT_SENT, S.DISCONNECTED}),
    S.AWAITING_RESEND: frozenset({S.ACTIVE, S.LOGOUT_SENT, S.DISCONNECTED}),
    S.LOGOUT_SENT: frozenset({S.DISCONNECTED}),
}

LOGGED_ON = frozenset({S.ACTIVE, S.AWAITING_RESEND, S.LOGOUT_SENT})


class IllegalTransition(RuntimeError):
    """The session tried a transition the table does not allow."""


class StateMachine:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = S.DISCONNECTED

    def move(self, new: SessionState) -> None:
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        self.state = new
