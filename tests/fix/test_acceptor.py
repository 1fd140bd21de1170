"""Routing of accepted connections to sessions (gateway.fix.acceptor)."""

from __future__ import annotations

import pytest
from session_helpers import (
    T0,
    acceptor_settings,
    app_messages,
    event_kinds,
    logon_message,
    make_message,
    order_body,
    parse_all,
)

from gateway.fix.acceptor import AcceptorConnection, SessionRegistry
from gateway.fix.events import CloseConnection, Event
from gateway.fix.session import Session
from gateway.fix.states import SessionState
from gateway.fix.store import MemoryStore

S = SessionState


def drain(conn: AcceptorConnection, now: float) -> list[Event]:
    events = []
    while (event := conn.next_event(now)) is not None or conn.yielded:
        if event is not None:
            events.append(event)
    return events


def fire_timer(conn: AcceptorConnection, now: float) -> list[Event]:
    """Run the connection's timer and collect what it causes (an event may be
    returned by ``on_timer`` itself or come out of ``next_event`` afterwards)."""
    returned = conn.on_timer(now)  # type: ignore[func-returns-value]
    events: list[Event] = [returned] if returned is not None else []
    return events + drain(conn, now)


def feed(conn: AcceptorConnection, data: bytes, now: float = T0) -> list[Event]:
    conn.receive_data(data)
    return drain(conn, now)


@pytest.fixture
def sessions() -> dict[str, Session]:
    return {
        "CL": Session(acceptor_settings(), MemoryStore()),
        "CL2": Session(acceptor_settings(TargetCompID="CL2"), MemoryStore()),
    }


@pytest.fixture
def registry(sessions: dict[str, Session]) -> SessionRegistry:
    return SessionRegistry(sessions.values())


def test_registry_finds_a_session_by_the_identity_a_logon_carries(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    assert len(registry) == 2
    assert set(registry) == set(sessions.values())
    # the Logon's TargetCompID is our SenderCompID and vice versa
    assert registry.lookup(b"FIX.4.4", b"GW", b"CL") is sessions["CL"]
    assert registry.lookup(b"FIX.4.4", b"GW", b"CL2") is sessions["CL2"]
    assert registry.lookup(b"FIX.4.4", b"CL", b"GW") is None
    assert registry.lookup(b"FIX.4.2", b"GW", b"CL") is None


def test_registry_refuses_duplicate_sessions() -> None:
    with pytest.raises(ValueError, match="duplicate session"):
        SessionRegistry(
            [
                Session(acceptor_settings(), MemoryStore()),
                Session(acceptor_settings(HeartBtInt=10), MemoryStore()),
            ]
        )


def test_valid_logon_binds_the_connection_and_delegates(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    conn = AcceptorConnection(registry, T0, peer="10.0.0.1:5000")
    assert conn.session is None
    assert conn.next_deadline() == T0 + 10.0
    # the Logon and an order arrive in the same read
    data = logon_message(1, T0) + make_message(b"D", 2, T0, order_body("O2"))
    events = feed(conn, data)

    session = sessions["CL"]
    assert conn.session is session
    assert session.state is S.ACTIVE
    assert not sessions["CL2"].is_connected
    assert event_kinds(events) == ["LoggedOn", "ApplicationMessage"]
    assert [m.get(11) for m in app_messages(events)] == [b"O2"]
    [answer] = parse_all(conn.data_to_send())
    assert (answer.msg_type, answer.get(49), answer.get(56)) == (b"A", b"GW", b"CL")
    assert conn.next_deadline() == session.next_deadline() == T0 + 30

    # later input, timers and the end of the connection go to the session
    events = feed(conn, make_message(b"1", 3, T0, [(112, b"hello")]))
    assert events == []
    [hb] = parse_all(conn.data_to_send())
    assert (hb.msg_type, hb.get(112)) == (b"0", b"hello")
    assert fire_timer(conn, T0 + 30) == []
    assert [m.msg_type for m in parse_all(conn.data_to_send())] == [b"0"]
    conn.connection_lost(T0 + 31)
    assert session.state is S.DISCONNECTED
    assert event_kinds(drain(conn, T0 + 31)) == ["LoggedOut"]


def test_logon_arriving_byte_by_byte_binds_the_same_way(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    conn = AcceptorConnection(registry, T0)
    data = logon_message(1, T0) + make_message(b"D", 2, T0, order_body("O2"))
    events: list[Event] = []
    for i in range(len(data)):
        events += feed(conn, data[i : i + 1])
    assert event_kinds(events) == ["LoggedOn", "ApplicationMessage"]
    assert conn.session is sessions["CL"]


def test_first_message_not_a_logon_is_refused_silently(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    conn = AcceptorConnection(registry, T0)
    events = feed(conn, make_message(b"0", 1, T0))
    assert [type(e) for e in events] == [CloseConnection]
    assert events[0].reason == "first message is not a Logon"  # type: ignore[attr-defined]
    assert conn.data_to_send() == b""
    assert conn.session is None
    assert not any(s.is_connected for s in sessions.values())
    # nothing more comes out of a refused connection, not even a valid Logon
    assert feed(conn, logon_message(1, T0)) == []
    assert conn.session is None
    assert conn.next_deadline() is None


@pytest.mark.parametrize(
    ("sender", "target", "begin"),
    [
        (b"NOBODY", b"GW", b"FIX.4.4"),
        (b"CL", b"OTHER", b"FIX.4.4"),
        (b"GW", b"CL", b"FIX.4.4"),  # the identities the wrong way round
        (b"CL", b"GW", b"FIX.4.2"),
    ],
    ids=["unknown-sender", "unknown-target", "swapped", "other-version"],
)
def test_logon_for_an_unknown_session_is_refused(
    registry: SessionRegistry,
    sessions: dict[str, Session],
    sender: bytes,
    target: bytes,
    begin: bytes,
) -> None:
    conn = AcceptorConnection(registry, T0)
    raw = logon_message(1, T0, sender=sender, target=target, begin_string=begin)
    events = feed(conn, raw)
    assert [type(e) for e in events] == [CloseConnection]
    assert events[0].reason == "unknown session"  # type: ignore[attr-defined]
    assert conn.data_to_send() == b""
    assert conn.session is None
    assert not any(s.is_connected for s in sessions.values())


def test_second_connection_for_a_connected_session_is_refused(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    first = AcceptorConnection(registry, T0)
    assert event_kinds(feed(first, logon_message(1, T0))) == ["LoggedOn"]
    first.data_to_send()
    session = sessions["CL"]

    second = AcceptorConnection(registry, T0 + 1)
    events = feed(second, logon_message(2, T0 + 1), T0 + 1)
    assert [type(e) for e in events] == [CloseConnection]
    assert events[0].reason == "session already connected"  # type: ignore[attr-defined]
    # nothing was written and the live session was not touched
    assert second.data_to_send() == b""
    assert second.session is None
    assert first.data_to_send() == b""
    assert session.state is S.ACTIVE
    assert session.store.next_target_seq == 2
    assert session.store.next_sender_seq == 2
    second.connection_lost(T0 + 2)
    assert session.state is S.ACTIVE


def test_session_can_be_bound_again_after_its_connection_ended(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    first = AcceptorConnection(registry, T0)
    feed(first, logon_message(1, T0))
    first.data_to_send()
    first.connection_lost(T0 + 1)
    drain(first, T0 + 1)

    second = AcceptorConnection(registry, T0 + 2)
    events = feed(second, logon_message(2, T0 + 2), T0 + 2)
    assert event_kinds(events) == ["LoggedOn"]
    assert second.session is sessions["CL"]
    [answer] = parse_all(second.data_to_send())
    assert int(answer.get(34) or 0) == 2  # the numbers carried on


def test_old_connection_going_away_does_not_end_the_new_one(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    first = AcceptorConnection(registry, T0)
    feed(first, logon_message(1, T0))
    first.data_to_send()
    # the client logs out; the session tells the first connection to close
    events = feed(first, make_message(b"5", 2, T0), T0)
    assert event_kinds(events) == ["LoggedOut", "CloseConnection"]
    first.data_to_send()

    # the client reconnects before the first socket has finished closing
    second = AcceptorConnection(registry, T0 + 1)
    assert event_kinds(feed(second, logon_message(3, T0 + 1), T0 + 1)) == ["LoggedOn"]
    second.data_to_send()

    first.connection_lost(T0 + 2)  # the old socket is finally gone
    assert drain(first, T0 + 2) == []
    assert sessions["CL"].state is S.ACTIVE
    assert drain(second, T0 + 2) == []


def test_garbled_first_frame_is_refused(registry: SessionRegistry) -> None:
    conn = AcceptorConnection(registry, T0)
    raw = logon_message(1, T0)
    garbled = raw[:-4] + (b"000\x01" if not raw.endswith(b"000\x01") else b"001\x01")
    events = feed(conn, garbled)
    assert [type(e) for e in events] == [CloseConnection]
    assert events[0].reason == "garbled message before Logon"  # type: ignore[attr-defined]
    assert conn.data_to_send() == b""
    assert conn.session is None


def test_no_logon_within_the_logon_timeout_closes(registry: SessionRegistry) -> None:
    conn = AcceptorConnection(registry, T0, logon_timeout=5.0)
    assert conn.next_deadline() == T0 + 5.0
    # half a Logon does not count
    assert feed(conn, logon_message(1, T0)[:20]) == []
    assert fire_timer(conn, T0 + 4.9) == []
    assert conn.next_deadline() == T0 + 5.0

    events = fire_timer(conn, T0 + 5.0)
    assert [type(e) for e in events] == [CloseConnection]
    assert events[0].reason == "no Logon received in time"  # type: ignore[attr-defined]
    assert conn.data_to_send() == b""
    assert conn.next_deadline() is None
    assert fire_timer(conn, T0 + 10) == []
    assert conn.session is None


def test_junk_before_the_logon_closes_the_connection_at_once(
    registry: SessionRegistry, sessions: dict[str, Session]
) -> None:
    conn = AcceptorConnection(registry, T0)
    events = feed(conn, b"\r\nGET / HTTP/1.0\r\n" + logon_message(1, T0))
    assert event_kinds(events) == ["CloseConnection"]
    assert events[0].reason == "not FIX"  # type: ignore[attr-defined]
    assert conn.session is None
    assert sessions["CL"].state is SessionState.DISCONNECTED


def test_connection_lost_before_logon(registry: SessionRegistry) -> None:
    conn = AcceptorConnection(registry, T0)
    conn.connection_lost(T0)
    assert conn.next_deadline() is None
    assert feed(conn, logon_message(1, T0)) == []
    assert conn.session is None
