"""Session-layer behaviour of gateway.fix.session, driven without sockets.

Most tests run an acceptor and an initiator against each other over the
in-memory link of :class:`session_helpers.SessionPair`; the checks that need a
peer breaking the rules feed hand-made messages to a single session through
:class:`session_helpers.SessionHarness`.  Time is a fake clock throughout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from session_helpers import (
    T0,
    SessionHarness,
    SessionPair,
    acceptor_settings,
    app_messages,
    drain,
    event_kinds,
    initiator_settings,
    logon_message,
    make_message,
    order_body,
    parse_all,
    seq_of,
    text_of,
)

from gateway.fix import codec
from gateway.fix.events import ApplicationMessage, CloseConnection, Event, LoggedOn, LoggedOut
from gateway.fix.session import BusinessRejectReason, Session
from gateway.fix.states import TRANSITIONS, IllegalTransition, SessionState, StateMachine
from gateway.fix.store import MemoryStore
from gateway.storage.session_store import FileStore

S = SessionState


def cl_ord_ids(messages: list[codec.FixMessage]) -> list[bytes | None]:
    return [m.get(11) for m in messages]


@pytest.fixture
def pair() -> SessionPair:
    """An acceptor and an initiator, logged on, nothing else exchanged."""
    p = SessionPair()
    p.connect()
    assert p.acceptor.state is S.ACTIVE
    assert p.initiator.state is S.ACTIVE
    p.take_events("acceptor")
    p.take_events("initiator")
    return p


@pytest.fixture
def gateway() -> SessionHarness:
    """An acceptor session logged on by a scripted peer (both sides at 2)."""
    h = SessionHarness()
    reply = h.logon()
    assert [m.msg_type for m in reply] == [b"A"]
    h.events.clear()
    return h


# ---------------------------------------------------------------------------
# Logon


def test_logon_handshake_moves_both_sides_to_active() -> None:
    p = SessionPair()
    assert p.acceptor.state is S.DISCONNECTED
    assert p.initiator.state is S.DISCONNECTED

    p.acceptor.connection_made(p.now)
    assert p.acceptor.state is S.AWAITING_LOGON
    assert p.acceptor.data_to_send() == b""  # an acceptor waits for the Logon

    p.initiator.connection_made(p.now)
    assert p.initiator.state is S.LOGON_SENT
    assert not p.initiator.is_logged_on

    p.pump()
    assert p.acceptor.state is S.ACTIVE
    assert p.initiator.state is S.ACTIVE
    assert p.acceptor.is_logged_on
    assert p.initiator.is_logged_on
    assert event_kinds(p.events("acceptor")) == ["LoggedOn"]
    assert event_kinds(p.events("initiator")) == ["LoggedOn"]

    logon, answer = p.wire
    assert (logon.sender, logon.msg_type, logon.seq) == ("initiator", b"A", 1)
    assert logon.get(108) == b"30"
    assert logon.get(98) == b"0"
    assert logon.get(141) is None
    assert (logon.get(49), logon.get(56)) == (b"CL", b"GW")
    assert (answer.sender, answer.msg_type, answer.seq) == ("acceptor", b"A", 1)
    assert answer.get(108) == b"30"
    assert (answer.get(49), answer.get(56)) == (b"GW", b"CL")
    for session in (p.acceptor, p.initiator):
        assert session.store.next_sender_seq == 2
        assert session.store.next_target_seq == 2


def test_acceptor_adopts_and_echoes_the_initiators_heartbeat_interval() -> None:
    p = SessionPair(
        acceptor=acceptor_settings(HeartBtInt=30),
        initiator=initiator_settings(HeartBtInt=7),
    )
    p.connect()
    answer = p.sent_by("acceptor", b"A")[0]
    assert answer.get(108) == b"7"
    assert p.acceptor.heartbeat_interval == 7.0
    assert p.initiator.heartbeat_interval == 7.0
    assert p.acceptor.next_deadline() == T0 + 7


def test_reset_on_logon_sends_141_and_both_sides_restart_at_one() -> None:
    a_store, i_store = MemoryStore(), MemoryStore()
    for store in (a_store, i_store):
        store.set_next_sender_seq(40)
        store.set_next_target_seq(40)
    p = SessionPair(
        initiator=initiator_settings(ResetOnLogon=True),
        acceptor_store=a_store,
        initiator_store=i_store,
    )
    p.connect()
    logon, answer = p.wire
    assert logon.get(141) == b"Y"
    assert logon.seq == 1
    assert answer.get(141) == b"Y"
    assert answer.seq == 1
    assert event_kinds(p.events("acceptor")) == ["LoggedOn"]
    assert event_kinds(p.events("initiator")) == ["LoggedOn"]
    for store in (a_store, i_store):
        assert (store.next_sender_seq, store.next_target_seq) == (2, 2)


def test_initiator_gives_up_when_no_logon_answer_arrives() -> None:
    p = SessionPair(initiator=initiator_settings(LogonTimeout=5))
    p.mute("acceptor")
    p.connect()
    assert p.initiator.state is S.LOGON_SENT
    assert p.initiator.next_deadline() == T0 + 5
    p.run_until(T0 + 4.9, "initiator")
    assert p.initiator.state is S.LOGON_SENT
    p.run_until(T0 + 5, "initiator")
    assert p.initiator.state is S.DISCONNECTED
    assert p.closes("initiator")[0].reason == "timed out waiting for Logon"
    assert p.logged_out("initiator") == []  # never logged on


@pytest.mark.parametrize(
    "offered",
    [None, "wrong-pass"],
    ids=["no-password", "wrong-password"],
)
def test_logon_with_missing_or_wrong_password_is_refused(offered: str | None) -> None:
    secret = "s3cr3t-pw"
    p = SessionPair(
        acceptor=acceptor_settings(Password=secret),
        initiator=initiator_settings(Password=offered),
    )
    p.connect()

    assert p.acceptor.state is S.DISCONNECTED
    assert p.initiator.state is S.DISCONNECTED
    assert not any(isinstance(e, LoggedOn) for e in p.events("acceptor"))
    assert event_kinds(p.events("acceptor")) == ["CloseConnection"]
    assert p.closes("acceptor")[0].reason == "Invalid username or password"

    replies = p.sent_by("acceptor")
    assert [w.msg_type for w in replies] == [b"5"]
    text = text_of(replies[0].message)
    assert text == "Invalid username or password"
    # neither the configured secret nor the offered value is ever echoed
    raw = replies[0].message.raw
    assert secret.encode() not in raw
    if offered is not None:
        assert offered not in text
        assert offered.encode() not in raw
    # the initiator got the Logout instead of a Logon and sees the close
    assert not any(isinstance(e, LoggedOn) for e in p.events("initiator"))


def test_logon_with_the_right_password_is_accepted() -> None:
    p = SessionPair(
        acceptor=acceptor_settings(Password="s3cr3t-pw"),
        initiator=initiator_settings(Password="s3cr3t-pw"),
    )
    p.connect()
    assert p.sent_by("initiator", b"A")[0].get(554) == b"s3cr3t-pw"
    assert event_kinds(p.events("acceptor")) == ["LoggedOn"]
    assert p.acceptor.state is S.ACTIVE
    answer = p.sent_by("acceptor", b"A")[0]
    assert answer.get(554) is None  # the acceptor does not send a secret back


def test_username_is_checked_as_well() -> None:
    h = SessionHarness(acceptor_settings(Username="alice", Password="pw"))
    h.connect()
    h.feed(logon_message(1, h.now, username="mallory", password="pw"))
    out = h.sent()
    assert [m.msg_type for m in out] == [b"5"]
    assert text_of(out[0]) == "Invalid username or password"
    assert h.session.state is S.DISCONNECTED


@pytest.mark.parametrize("reset_on_logon", [False, True])
def test_a_refused_logon_leaves_the_numbers_and_stored_messages_alone(
    reset_on_logon: bool,
) -> None:
    h = SessionHarness(acceptor_settings(Password="pw", ResetOnLogon=reset_on_logon))
    h.logon(password="pw")
    for i in range(3):
        h.session.send(b"D", order_body(f"O{i}"), h.now)
    h.feed(h.message(b"0", 2))
    h.session.connection_lost(h.now)
    h.sent()
    stored = list(h.store.get_sent(1, 100))
    assert (h.store.next_sender_seq, h.store.next_target_seq) == (5, 3)

    # someone who knows the CompIDs but not the password asks for a reset
    h.connect()
    events = h.feed(logon_message(1, h.now, reset=True, password="guess"))
    out = h.sent()
    assert event_kinds(events) == ["CloseConnection"]
    assert [m.msg_type for m in out] == [b"5"]
    assert text_of(out[0]) == "Invalid username or password"
    assert seq_of(out[0]) == 5
    assert h.store.next_sender_seq == 6
    assert h.store.next_target_seq == 3
    assert list(h.store.get_sent(1, 100)) == stored


@pytest.mark.parametrize(
    ("heartbeat", "accepted"), [(4, False), (5, True), (60, True), (61, False)]
)
def test_heartbeat_interval_outside_the_allowed_range_is_refused(
    heartbeat: int, accepted: bool
) -> None:
    h = SessionHarness(acceptor_settings(MinHeartBtInt=5, MaxHeartBtInt=60))
    h.connect()
    events = h.feed(logon_message(1, h.now, heartbeat=heartbeat))
    out = h.sent()
    if accepted:
        assert event_kinds(events) == ["LoggedOn"]
        assert [m.msg_type for m in out] == [b"A"]
        assert out[0].get(108) == str(heartbeat).encode()
        assert h.session.heartbeat_interval == heartbeat
    else:
        assert event_kinds(events) == ["CloseConnection"]
        assert [m.msg_type for m in out] == [b"5"]
        assert text_of(out[0]) == "HeartBtInt must be between 5 and 60"
        assert h.session.state is S.DISCONNECTED


def test_first_message_must_be_a_logon() -> None:
    h = SessionHarness()
    h.connect()
    events = h.feed(h.message(b"D", 1, order_body("O1")))
    assert event_kinds(events) == ["CloseConnection"]
    assert h.sent() == []  # no session yet to answer on
    assert h.session.state is S.DISCONNECTED


def test_garbled_logon_closes_the_connection() -> None:
    h = SessionHarness()
    h.connect()
    raw = logon_message(1, h.now)
    garbled = raw[:-4] + b"999\x01"  # wrong CheckSum
    events = h.feed(garbled)
    assert event_kinds(events) == ["CloseConnection"]
    assert h.session.stats.garbled == 1
    assert h.sent() == []


# ---------------------------------------------------------------------------
# Heartbeat and TestRequest


def test_heartbeat_is_sent_after_an_interval_of_silence_on_our_side(pair: SessionPair) -> None:
    start = pair.now
    assert pair.acceptor.next_deadline() == start + 30
    assert pair.initiator.next_deadline() == start + 30

    pair.advance(29.9)
    pair.fire_timers()
    assert pair.sent_by("acceptor", b"0") == []
    assert pair.sent_by("initiator", b"0") == []

    pair.run_until(start + 30)
    for side in ("acceptor", "initiator"):
        [hb] = pair.sent_by(side, b"0")
        assert hb.at == start + 30
        assert hb.get(112) is None
    # the heartbeats crossed, so nobody is suspicious of anybody
    pair.run_until(start + 59.9)
    assert pair.sent_by("acceptor", b"1") == []
    assert pair.acceptor.state is S.ACTIVE


def test_any_message_we_send_postpones_our_heartbeat(pair: SessionPair) -> None:
    start = pair.now
    pair.advance(20)
    pair.send_order("initiator", "C1")
    pair.send_order("acceptor", "G1")
    pair.pump()
    assert pair.initiator.next_deadline() == start + 50
    pair.run_until(start + 49, "initiator")
    assert pair.sent_by("initiator", b"0") == []
    pair.run_until(start + 50, "initiator")
    assert [w.at for w in pair.sent_by("initiator", b"0")] == [start + 50]


def test_silent_peer_gets_a_test_request_and_is_then_disconnected(pair: SessionPair) -> None:
    start = pair.now
    mark = pair.mark()
    pair.mute("initiator")  # the client stops talking (its timers never run)
    pair.run_until(start + 100, "acceptor")

    sent = [(w.msg_type, w.at - start) for w in pair.sent_by("acceptor", since=mark)]
    assert sent[0] == (b"0", 30.0)  # our own heartbeat after 30 s
    assert sent[1] == (b"1", 36.0)  # 1.2 x HeartBtInt without a word from the peer
    assert len(sent) == 2
    test_request = pair.sent_by("acceptor", b"1")[0]
    assert test_request.get(112)

    assert pair.acceptor.state is S.DISCONNECTED
    [close] = pair.closes("acceptor")
    assert close.reason == "timed out waiting for heartbeat"
    assert [e.reason for e in pair.logged_out("acceptor")] == ["timed out waiting for heartbeat"]
    # the close happened at 2.4 x HeartBtInt of silence
    assert pair.now == start + 100
    assert pair.acceptor.next_deadline() is None


def test_disconnect_happens_exactly_at_2_4_heartbeat_intervals(pair: SessionPair) -> None:
    start = pair.now
    pair.mute("initiator")
    pair.run_until(start + 71.9, "acceptor")
    assert pair.acceptor.state is S.ACTIVE
    assert pair.acceptor.next_deadline() == start + 72
    pair.run_until(start + 72, "acceptor")
    assert pair.acceptor.state is S.DISCONNECTED


def test_test_request_is_answered_with_a_heartbeat_carrying_its_id(
    gateway: SessionHarness,
) -> None:
    gateway.feed(gateway.message(b"1", 2, [(112, b"PING-42")]))
    [hb] = gateway.sent()
    assert hb.msg_type == b"0"
    assert hb.get(112) == b"PING-42"
    assert seq_of(hb) == 2
    assert gateway.store.next_target_seq == 3


def test_answered_test_request_keeps_the_session_alive(pair: SessionPair) -> None:
    start = pair.now
    # only the acceptor's timers run; the initiator still answers what it gets
    pair.run_until(start + 36, "acceptor")
    [tr] = pair.sent_by("acceptor", b"1")
    [answer] = pair.sent_by("initiator", b"0")
    assert answer.get(112) == tr.get(112)
    assert answer.at == start + 36
    pair.run_until(start + 71, "acceptor")
    assert pair.acceptor.state is S.ACTIVE
    # the next TestRequest comes 1.2 x HeartBtInt after that answer
    pair.run_until(start + 72, "acceptor")
    assert [w.at - start for w in pair.sent_by("acceptor", b"1")] == [36.0, 72.0]
    assert pair.acceptor.state is S.ACTIVE


@pytest.mark.parametrize("heartbeat", [1, 5, 10, 30])
def test_next_deadline_is_never_in_the_past_after_on_timer(heartbeat: int) -> None:
    p = SessionPair(
        acceptor=acceptor_settings(HeartBtInt=heartbeat),
        initiator=initiator_settings(HeartBtInt=heartbeat),
    )
    p.connect()
    p.mute("initiator")
    fired = 0
    while (deadline := p.acceptor.next_deadline()) is not None:
        p.now = max(p.now, deadline)
        p.fire_timers("acceptor")
        fired += 1
        after = p.acceptor.next_deadline()
        assert after is None or after > p.now
        assert fired < 10
    assert [w.msg_type for w in p.sent_by("acceptor")] == [b"A", b"0", b"1"]
    assert p.closes("acceptor")[0].reason == "timed out waiting for heartbeat"


def test_on_timer_at_the_deadline_makes_progress_for_any_heartbeat_interval() -> None:
    p = SessionPair(
        acceptor=acceptor_settings(HeartBtInt=3),
        initiator=initiator_settings(HeartBtInt=3),
    )
    p.connect()
    p.mute("initiator")
    for _ in range(10):
        deadline = p.acceptor.next_deadline()
        if deadline is None:
            break
        p.now = max(p.now, deadline)
        p.fire_timers("acceptor")
        after = p.acceptor.next_deadline()
        assert after is None or after > p.now, f"stalled at +{p.now - T0:.6f}s"
    # heartbeat at 3 s, TestRequest at 3.6 s, disconnect at 7.2 s
    assert [w.msg_type for w in p.sent_by("acceptor")] == [b"A", b"0", b"1"]
    assert p.acceptor.state is S.DISCONNECTED


# ---------------------------------------------------------------------------
# application messages


def test_application_messages_flow_both_ways_in_sequence(pair: SessionPair) -> None:
    seqs_in = [pair.send_order("initiator", f"C{i}") for i in range(3)]
    seqs_out = [pair.send_order("acceptor", f"G{i}") for i in range(2)]
    pair.pump()
    assert seqs_in == [2, 3, 4]
    assert seqs_out == [2, 3]

    got_by_gateway = pair.received_apps("acceptor")
    assert cl_ord_ids(got_by_gateway) == [b"C0", b"C1", b"C2"]
    assert [seq_of(m) for m in got_by_gateway] == [2, 3, 4]
    assert all(m.get(43) is None for m in got_by_gateway)
    got_by_client = pair.received_apps("initiator")
    assert cl_ord_ids(got_by_client) == [b"G0", b"G1"]
    assert [seq_of(m) for m in got_by_client] == [2, 3]

    assert event_kinds(pair.events("acceptor")) == ["ApplicationMessage"] * 3
    assert pair.acceptor.store.next_target_seq == 5
    assert pair.acceptor.store.next_sender_seq == 4
    assert pair.initiator.store.next_target_seq == 4
    assert pair.initiator.store.next_sender_seq == 5
    # application messages are kept for resend; session messages are not
    assert [s for s, _ in pair.initiator.store.get_sent(1, 10)] == [2, 3, 4]


def test_answer_sent_while_handling_an_event_is_sequenced_right_after(
    pair: SessionPair,
) -> None:
    pair.send_order("initiator", "C0")
    pair.send_order("initiator", "C1")
    pair.acceptor.receive_data(pair.initiator.data_to_send())
    answers: list[int] = []
    for event in drain(pair.acceptor, pair.now):
        assert isinstance(event, ApplicationMessage)
        answers.append(pair.acceptor.send(b"D", order_body(f"R{len(answers)}"), pair.now))
    assert answers == [2, 3]


# ---------------------------------------------------------------------------
# gaps and resends


def test_lost_message_is_recovered_through_a_resend_request(pair: SessionPair) -> None:
    start = pair.now
    pair.drop("initiator", seq=2)
    pair.hold("acceptor")  # keep the ResendRequest in flight for a moment
    pair.send_order("initiator", "C1")  # seq 2, lost
    pair.advance(1)
    pair.send_order("initiator", "C2")  # seq 3
    pair.send_order("initiator", "C3")  # seq 4
    pair.pump()

    assert pair.acceptor.state is S.AWAITING_RESEND
    assert pair.received_apps("acceptor") == []  # 3 and 4 wait for 2
    [rr] = pair.sent_by("acceptor", b"2")  # one request covers the whole gap
    assert (rr.get(7), rr.get(16)) == (b"2", b"0")
    assert pair.acceptor.store.next_target_seq == 2

    pair.advance(5)
    mark = pair.mark()
    pair.release("acceptor")

    resent = pair.sent_by("initiator", since=mark)
    assert [(w.msg_type, w.seq) for w in resent] == [(b"D", 2), (b"D", 3), (b"D", 4)]
    originals = {w.seq: w for w in pair.sent_by("initiator", b"D")[:3]}
    for w in resent:
        assert w.get(43) == b"Y"
        assert w.get(122) == originals[w.seq].get(52)
        assert w.get(52) == codec.format_utc_timestamp(start + 6)
        assert w.get(11) == originals[w.seq].get(11)
    assert originals[2].get(52) != originals[3].get(52)

    got = pair.received_apps("acceptor")
    assert cl_ord_ids(got) == [b"C1", b"C2", b"C3"]  # in order, exactly once
    assert [m.get(43) for m in got] == [b"Y", None, None]  # 3 and 4 came from the queue
    assert event_kinds(pair.events("acceptor")) == ["ApplicationMessage"] * 3
    assert pair.acceptor.state is S.ACTIVE
    assert pair.acceptor.store.next_target_seq == 5
    assert pair.sent_by("acceptor", b"5") == []


def test_gap_fill_replaces_session_messages_in_a_resend(pair: SessionPair) -> None:
    start = pair.now
    pair.drop("initiator", seq=2)
    pair.drop("initiator", seq=3)
    pair.send_order("initiator", "C1")  # seq 2, lost
    pair.run_until(start + 30, "initiator")  # Heartbeat seq 3, lost
    assert [(w.msg_type, w.seq, w.delivered) for w in pair.sent_by("initiator")[1:]] == [
        (b"D", 2, False),
        (b"0", 3, False),
    ]
    mark = pair.mark()
    pair.send_order("initiator", "C2")  # seq 4 reveals the gap
    pair.pump()

    [rr] = pair.sent_by("acceptor", b"2", since=mark)
    assert (rr.get(7), rr.get(16)) == (b"2", b"0")
    answer = [
        (w.msg_type, w.seq, w.get(43), w.get(123), w.get(36))
        for w in pair.sent_by("initiator", since=mark)[1:]
    ]
    assert answer == [
        (b"D", 2, b"Y", None, None),
        (b"4", 3, b"Y", b"Y", b"4"),
        (b"D", 4, b"Y", None, None),
    ]
    assert cl_ord_ids(pair.received_apps("acceptor")) == [b"C1", b"C2"]
    assert pair.acceptor.state is S.ACTIVE
    assert pair.acceptor.store.next_target_seq == 5
    assert pair.logged_out("acceptor") == []


def test_application_messages_below_resend_from_are_gap_filled(pair: SessionPair) -> None:
    """``resend_from`` (set by an LP adapter at each logon): an order sent
    before it is covered by a gap fill; one sent after it goes again."""
    start = pair.now
    pair.drop("initiator", seq=2)
    pair.drop("initiator", seq=3)
    pair.drop("initiator", seq=4)
    pair.send_order("initiator", "C1")  # seq 2, lost, and stale
    pair.run_until(start + 30, "initiator")  # Heartbeat seq 3, lost
    pair.initiator.resend_from = 4
    pair.send_order("initiator", "C2")  # seq 4, lost
    mark = pair.mark()
    pair.send_order("initiator", "C3")  # seq 5 reveals the gap
    pair.pump()
    [rr] = pair.sent_by("acceptor", b"2", since=mark)
    assert (rr.get(7), rr.get(16)) == (b"2", b"0")
    answer = [
        (w.msg_type, w.seq, w.get(43), w.get(123), w.get(36))
        for w in pair.sent_by("initiator", since=mark)
        if w.get(43) == b"Y"
    ]
    assert answer == [
        (b"4", 2, b"Y", b"Y", b"4"),
        (b"D", 4, b"Y", None, None),
        (b"D", 5, b"Y", None, None),
    ]
    assert cl_ord_ids(pair.received_apps("acceptor")) == [b"C2", b"C3"]
    assert pair.acceptor.state is S.ACTIVE
    assert pair.acceptor.store.next_target_seq == 6


def test_a_transient_message_is_gap_filled_in_a_resend(pair: SessionPair) -> None:
    """Market data is sent unstored: a resend covers it with a GapFill."""
    pair.drop("acceptor", seq=2)
    assert pair.acceptor.send_transient(b"W", b"55=EUR/USD\x01262=M1\x01268=0\x01", pair.now) == 2
    pair.pump()
    assert pair.acceptor.store.get_sent(2, 2) == []
    mark = pair.mark()
    pair.send_order("acceptor", "C1")  # seq 3 reveals the gap
    pair.pump()
    answer = [
        (w.msg_type, w.seq, w.get(123), w.get(36)) for w in pair.sent_by("acceptor", since=mark)
    ]
    assert answer == [(b"D", 3, None, None), (b"4", 2, b"Y", b"3"), (b"D", 3, None, None)]
    assert cl_ord_ids(pair.received_apps("initiator")) == [b"C1"]
    assert pair.initiator.store.next_target_seq == 4


def test_a_transient_message_is_not_sent_when_not_logged_on(pair: SessionPair) -> None:
    pair.acceptor.logout(pair.now)
    pair.pump()
    seq = pair.acceptor.store.next_sender_seq
    assert (
        pair.acceptor.send_transient(b"W", b"55=EUR/USD\x01262=M1\x01268=0\x01", pair.now) is None
    )
    assert pair.acceptor.store.next_sender_seq == seq


def test_messages_queued_during_a_resend_are_processed_once(pair: SessionPair) -> None:
    pair.drop("initiator", seq=2)
    pair.hold("acceptor")
    for i in range(1, 6):
        pair.send_order("initiator", f"C{i}")  # 2 lost, 3..6 queued
    pair.pump()
    assert pair.acceptor.state is S.AWAITING_RESEND
    assert len(pair.sent_by("acceptor", b"2")) == 1
    # more traffic arrives before the resend does
    pair.send_order("initiator", "C6")  # seq 7
    pair.pump()
    assert pair.received_apps("acceptor") == []
    pair.release("acceptor")
    assert cl_ord_ids(pair.received_apps("acceptor")) == [
        b"C1",
        b"C2",
        b"C3",
        b"C4",
        b"C5",
        b"C6",
    ]
    assert pair.acceptor.store.next_target_seq == 8
    assert pair.acceptor.state is S.ACTIVE


def test_messages_held_behind_a_slow_resend_are_not_judged_late_for_the_wait(
    gateway: SessionHarness,
) -> None:
    """SendingTime is judged when a message arrives: one that came on time
    and waited behind a gap longer than MaxLatency is handed on when the gap
    is filled, not rejected (and its number taken) for the time it waited."""
    for seq in (3, 4, 5):  # 2 is missing: they wait, each on time
        assert gateway.feed(gateway.message(b"D", seq, order_body(f"O{seq}"))) == []
    [rr] = gateway.sent()
    assert (rr.msg_type, rr.get(7)) == (b"2", b"2")
    # the peer takes longer than MaxLatency (120 s) to answer
    orig = codec.format_utc_timestamp(gateway.now)
    gateway.advance(200)
    events = gateway.feed(
        gateway.message(b"D", 2, order_body("O2"), header=[(43, b"Y"), (122, orig)])
    )
    assert cl_ord_ids(app_messages(events)) == [b"O2", b"O3", b"O4", b"O5"]
    assert gateway.sent() == []
    assert gateway.store.next_target_seq == 6
    assert gateway.session.state is S.ACTIVE


def test_messages_held_out_of_sequence_count_what_they_take_parsed(
    gateway: SessionHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message of thousands of short fields takes far more memory parsed
    than on the wire: the bound counts it as held, not as received."""
    import gateway.fix.session as session_module

    many = b"262=M\x01263=1\x01264=1\x01267=1\x01269=0\x01146=5000\x01" + b"55=X\x01" * 5000

    def request(seq: int) -> bytes:
        return gateway.message(b"V", seq, many)

    held = session_module._held(codec.parse_frame(request(3)))
    assert held > 8 * len(request(3))  # 25 KB on the wire, 0.5 MB held
    monkeypatch.setattr(session_module, "MAX_QUEUED_BYTES", 2 * held + 1000)
    # 2 is missing: 3 and 4 wait for it, 5 is not kept
    for seq in (3, 4, 5):
        assert gateway.feed(request(seq)) == []
    assert [seq for seq in gateway.session._queue] == [3, 4]


def test_messages_held_out_of_sequence_are_bounded_in_bytes(
    gateway: SessionHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.fix.session as session_module

    monkeypatch.setattr(session_module, "MAX_QUEUED_BYTES", 1_000_000)
    text = b"x" * 60_000  # about 60,200 bytes a message: 16 fit, not 17

    def big_order(seq: int) -> bytes:
        return gateway.message(b"D", seq, order_body(f"B{seq}") + b"58=%b\x01" % text)

    # 2 is missing: 3..18 wait for it
    for seq in range(3, 19):
        assert gateway.feed(big_order(seq)) == []
    assert [m.msg_type for m in gateway.sent()] == [b"2"]
    events = gateway.feed(gateway.message(b"4", 2, [(123, b"Y"), (36, 3)], header=[(43, b"Y")]))
    assert len(app_messages(events)) == 16
    assert gateway.store.next_target_seq == 19

    # what was handed on no longer counts: as much again may wait
    for seq in range(20, 36):
        assert gateway.feed(big_order(seq)) == []
    assert gateway.session.state is S.AWAITING_RESEND
    assert [m.msg_type for m in gateway.sent()] == [b"2"]
    # no more than that: 36 and 37 are not kept, and the session stays
    assert gateway.feed(big_order(36), big_order(37)) == []
    assert gateway.sent() == []  # the ResendRequest for 19 on covers them
    assert gateway.session.state is S.AWAITING_RESEND
    # the peer fills 19: 20..35 are handed on, then 36 on is asked for again
    events = gateway.feed(gateway.message(b"4", 19, [(123, b"Y"), (36, 20)], header=[(43, b"Y")]))
    assert len(app_messages(events)) == 16
    assert gateway.store.next_target_seq == 36
    again = gateway.sent()
    assert [(m.msg_type, m.get(7), m.get(16)) for m in again] == [(b"2", b"36", b"0")]
    events = gateway.feed(
        *(
            gateway.message(
                b"D", seq, order_body(f"B{seq}"), header=[(43, b"Y"), (122, b"20261205-00:00:00")]
            )
            for seq in (36, 37)
        )
    )
    assert cl_ord_ids(app_messages(events)) == [b"B36", b"B37"]
    assert gateway.session.state is S.ACTIVE
    assert gateway.sent() == []


def test_sequence_reset_in_reset_mode_ignores_msgseqnum(gateway: SessionHarness) -> None:
    # MsgSeqNum 1 is below the expected 2 and has no PossDupFlag: still accepted
    events = gateway.feed(gateway.message(b"4", 1, [(36, 10), (123, b"N")]))
    assert events == []
    assert gateway.sent() == []
    assert gateway.store.next_target_seq == 10
    assert gateway.session.state is S.ACTIVE
    events = gateway.feed(gateway.message(b"D", 10, order_body("O10")))
    assert cl_ord_ids(app_messages(events)) == [b"O10"]


def test_sequence_reset_gap_fill_moves_the_expected_number(gateway: SessionHarness) -> None:
    gateway.feed(gateway.message(b"4", 2, [(123, b"Y"), (36, 7)]))
    assert gateway.sent() == []
    assert gateway.store.next_target_seq == 7
    events = gateway.feed(gateway.message(b"D", 7, order_body("O7")))
    assert cl_ord_ids(app_messages(events)) == [b"O7"]


@pytest.mark.parametrize("gap_fill", [b"N", b"Y"])
def test_sequence_reset_to_a_lower_number_is_rejected(
    gateway: SessionHarness, gap_fill: bytes
) -> None:
    gateway.feed(gateway.message(b"4", 2, [(123, b"N"), (36, 10)]))
    assert gateway.store.next_target_seq == 10
    gateway.feed(gateway.message(b"4", 10, [(123, gap_fill), (36, 5)]))
    [reject] = gateway.sent()
    assert reject.msg_type == b"3"
    assert reject.get(373) == b"5"  # Value is incorrect (out of range) for this tag
    assert reject.get(45) == b"10"
    assert reject.get(372) == b"4"
    assert gateway.store.next_target_seq == 10  # never lowered
    assert gateway.session.state is S.ACTIVE


def test_a_reject_with_msgseqnum_too_high_asks_for_the_gap_first(
    gateway: SessionHarness,
) -> None:
    """FIX 4.4: any message whose MsgSeqNum is above the one expected is
    answered with a ResendRequest, a Reject (3) like the others; it counts
    once what came before it is in.  Taken at once, it moved the expected
    number past the message still missing, which was then never asked for."""
    events = gateway.feed(gateway.message(b"3", 4, [(45, 7), (58, b"Invalid tag"), (373, 0)]))
    assert events == []
    [rr] = gateway.sent()
    assert (rr.msg_type, rr.get(7), rr.get(16)) == (b"2", b"2", b"0")
    assert gateway.session.state is S.AWAITING_RESEND
    assert gateway.store.next_target_seq == 2
    resent = [(43, b"Y"), (122, codec.format_utc_timestamp(gateway.now - 1))]
    gateway.feed(gateway.message(b"D", 2, order_body("O2"), header=resent))
    events = gateway.feed(gateway.message(b"D", 3, order_body("O3"), header=resent))
    assert event_kinds(events) == ["ApplicationMessage", "RejectReceived"]
    assert cl_ord_ids(app_messages(gateway.events)) == [b"O2", b"O3"]
    assert gateway.store.next_target_seq == 5
    assert gateway.session.state is S.ACTIVE
    assert gateway.session.stats.rejects_received == 1


# ---------------------------------------------------------------------------
# MsgSeqNum too low


def test_msgseqnum_too_low_without_possdup_ends_the_session(gateway: SessionHarness) -> None:
    gateway.feed(gateway.message(b"D", 2, order_body("O2")))
    gateway.feed(gateway.message(b"D", 3, order_body("O3")))
    events = gateway.feed(gateway.message(b"D", 2, order_body("again")))
    [logout] = gateway.sent()
    assert logout.msg_type == b"5"
    assert text_of(logout) == "MsgSeqNum too low, expecting 4 but received 2"
    assert event_kinds(events) == ["LoggedOut", "CloseConnection"]
    assert gateway.session.state is S.DISCONNECTED
    assert gateway.store.next_target_seq == 4


def test_possible_duplicate_already_received_is_ignored(gateway: SessionHarness) -> None:
    first = gateway.message(b"D", 2, order_body("O2"))
    original_time = codec.parse_frame(first).get(52)
    gateway.feed(first)
    gateway.advance(3)
    events = gateway.feed(
        gateway.message(b"D", 2, order_body("O2"), header=[(43, b"Y"), (122, original_time)])
    )
    assert events == []
    assert gateway.sent() == []
    assert gateway.store.next_target_seq == 3
    assert gateway.session.state is S.ACTIVE


def test_possible_duplicate_without_orig_sending_time_is_rejected(
    gateway: SessionHarness,
) -> None:
    gateway.feed(gateway.message(b"D", 2, order_body("O2")))
    events = gateway.feed(gateway.message(b"D", 2, order_body("O2"), header=[(43, b"Y")]))
    assert events == []
    [reject] = gateway.sent()
    assert reject.msg_type == b"3"
    assert reject.get(45) == b"2"
    assert reject.get(371) == b"122"
    assert reject.get(373) == b"1"  # Required tag missing
    assert gateway.store.next_target_seq == 3
    assert gateway.session.state is S.ACTIVE


def test_possible_duplicate_sent_before_its_original_is_a_sending_time_problem(
    gateway: SessionHarness,
) -> None:
    gateway.feed(gateway.message(b"D", 2, order_body("O2")))
    later = codec.format_utc_timestamp(gateway.now + 60)
    gateway.feed(gateway.message(b"D", 2, order_body("O2"), header=[(43, b"Y"), (122, later)]))
    reject, logout = gateway.sent()
    assert (reject.msg_type, reject.get(373)) == (b"3", b"10")
    assert logout.msg_type == b"5"
    assert gateway.session.state is S.LOGOUT_SENT


def test_logon_with_msgseqnum_too_low_is_told_why() -> None:
    store = MemoryStore()
    store.set_next_target_seq(5)
    store.set_next_sender_seq(5)
    h = SessionHarness(store=store)
    h.connect()
    events = h.feed(logon_message(2, h.now))
    assert event_kinds(events) == ["CloseConnection"]
    out = h.sent()
    assert [m.msg_type for m in out] == [b"5"]
    assert text_of(out[0]) == "MsgSeqNum too low, expecting 5 but received 2"


def test_logon_with_msgseqnum_too_low_closes_the_connection() -> None:
    store = MemoryStore()
    store.set_next_target_seq(5)
    h = SessionHarness(store=store)
    h.connect()
    events = h.feed(logon_message(2, h.now))
    assert event_kinds(events) == ["CloseConnection"]
    assert h.session.state is S.DISCONNECTED
    assert store.next_target_seq == 5


def test_logon_with_msgseqnum_too_high_is_answered_then_resend_requested() -> None:
    h = SessionHarness()
    h.connect()
    events = h.feed(logon_message(4, h.now))
    assert event_kinds(events) == ["LoggedOn"]
    logon, rr = h.sent()
    assert logon.msg_type == b"A"
    assert (rr.msg_type, rr.get(7), rr.get(16)) == (b"2", b"1", b"0")
    assert h.session.state is S.AWAITING_RESEND
    orig = codec.format_utc_timestamp(h.now - 1)
    h.feed(h.message(b"4", 1, [(123, b"Y"), (36, 4)], header=[(43, b"Y"), (122, orig)]))
    # the queued Logon (4) now counts and the gap is closed
    assert h.store.next_target_seq == 5
    assert h.session.state is S.ACTIVE


def test_mid_session_logon_reset_restarts_both_numbers(gateway: SessionHarness) -> None:
    """The session goes on under new numbers: its application is not told
    it logged on again (it would subscribe, resend or count a second time)."""
    gateway.feed(gateway.message(b"D", 2, order_body("O2")))
    events = gateway.feed(logon_message(1, gateway.now, reset=True))
    assert events == []
    assert gateway.session.state is S.ACTIVE
    [answer] = gateway.sent()
    assert (answer.msg_type, seq_of(answer), answer.get(141)) == (b"A", 1, b"Y")
    assert gateway.store.next_target_seq == 2
    assert gateway.store.next_sender_seq == 2
    events = gateway.feed(gateway.message(b"D", 2, order_body("N2")))
    assert cl_ord_ids(app_messages(events)) == [b"N2"]


def test_mid_session_logon_reset_discards_the_old_out_of_sequence_queue(
    gateway: SessionHarness,
) -> None:
    gateway.feed(gateway.message(b"D", 2, order_body("O2")))
    gateway.feed(gateway.message(b"D", 4, order_body("OLD4")))  # 3 lost: queued
    assert gateway.session.state is S.AWAITING_RESEND
    gateway.sent()
    gateway.events.clear()

    gateway.feed(logon_message(1, gateway.now, reset=True))
    for seq in (2, 3, 4, 5):
        gateway.feed(gateway.message(b"D", seq, order_body(f"NEW{seq}")))
    # actual: NEW2, NEW3, OLD4, then Logout "MsgSeqNum too low, expecting 5 but received 4"
    assert cl_ord_ids(app_messages(gateway.events)) == [b"NEW2", b"NEW3", b"NEW4", b"NEW5"]
    assert [m.msg_type for m in gateway.sent()] == [b"A"]
    assert gateway.session.state is S.ACTIVE


# ---------------------------------------------------------------------------
# other validation


def test_reject_of_an_invalid_message_counts_it(gateway: SessionHarness) -> None:
    body = order_body("O2").replace(b"11=O2\x01", b"")  # ClOrdID is required
    events = gateway.feed(gateway.message(b"D", 2, body))
    assert events == []
    [reject] = gateway.sent()
    assert reject.msg_type == b"3"
    assert reject.get(45) == b"2"
    assert reject.get(371) == b"11"
    assert reject.get(372) == b"D"
    assert reject.get(373) == b"1"
    assert text_of(reject) == "Required tag missing"
    assert gateway.store.next_target_seq == 3  # the rejected message used up its number
    assert gateway.session.stats.rejects_sent == 1

    events = gateway.feed(gateway.message(b"D", 3, order_body("O3")))
    assert cl_ord_ids(app_messages(events)) == [b"O3"]
    assert gateway.sent() == []


def test_reject_names_a_value_out_of_range(gateway: SessionHarness) -> None:
    body = order_body("O2").replace(b"54=1\x01", b"54=Z\x01")
    gateway.feed(gateway.message(b"D", 2, body))
    [reject] = gateway.sent()
    assert (reject.get(373), reject.get(371)) == (b"5", b"54")
    assert gateway.store.next_target_seq == 3


def test_garbled_message_after_logon_is_ignored_without_counting(
    gateway: SessionHarness,
) -> None:
    good = gateway.message(b"D", 2, order_body("O2"))
    bad = good[:-4] + b"000\x01"
    assert gateway.feed(bad) == []
    assert gateway.sent() == []
    assert gateway.session.stats.garbled == 1
    assert gateway.store.next_target_seq == 2
    events = gateway.feed(good)
    assert cl_ord_ids(app_messages(events)) == [b"O2"]


def test_wrong_comp_id_is_rejected_and_logged_out(gateway: SessionHarness) -> None:
    gateway.feed(gateway.message(b"D", 2, order_body("O2"), sender=b"INTRUDER"))
    reject, logout = gateway.sent()
    assert (reject.msg_type, reject.get(373)) == (b"3", b"9")
    assert logout.msg_type == b"5"
    assert gateway.session.state is S.LOGOUT_SENT


def test_sending_time_too_far_off_is_rejected_and_logged_out(gateway: SessionHarness) -> None:
    stale = codec.format_utc_timestamp(gateway.now - 121)
    gateway.feed(gateway.message(b"D", 2, order_body("O2"), sending_time=stale))
    reject, logout = gateway.sent()
    assert (reject.msg_type, reject.get(373)) == (b"3", b"10")
    assert logout.msg_type == b"5"
    assert gateway.events == []


# Messages a counterparty may send that no gateway application takes, with
# the field FIX 4.4 names as their business-level id: BusinessRejectRefID
# (379) of a BusinessMessageReject of one is "required unless the
# corresponding ID field was not specified".
UNTAKEN_WITH_AN_ID = [
    (b"6", 23),  # IOI: IOIID
    (b"7", 2),  # Advertisement: AdvId
    (b"B", 148),  # News: Headline
    (b"C", 164),  # Email: EmailThreadID
    (b"N", 66),  # ListStatus: ListID
    (b"P", 70),  # AllocationInstructionAck: AllocID
    (b"Q", 17),  # DontKnowTrade: ExecID
    (b"T", 777),  # SettlementInstructions: SettlInstMsgID
    (b"W", 262),  # MarketDataSnapshotFullRefresh: MDReqID
    (b"X", 262),  # MarketDataIncrementalRefresh: MDReqID
    (b"Y", 262),  # MarketDataRequestReject: MDReqID
    (b"b", 117),  # MassQuoteAcknowledgement: QuoteID
    (b"d", 320),  # SecurityDefinition: SecurityReqID
    (b"f", 324),  # SecurityStatus: SecurityStatusReqID
    (b"h", 335),  # TradingSessionStatus: TradSesReqID
    (b"l", 390),  # BidResponse: BidID
    (b"m", 66),  # ListStrikePrice: ListID
]


@pytest.mark.parametrize(("msg_type", "tag"), UNTAKEN_WITH_AN_ID)
def test_a_business_reject_names_the_id_of_the_message_it_refuses(
    gateway: SessionHarness, msg_type: bytes, tag: int
) -> None:
    msg = codec.parse_frame(gateway.message(msg_type, 2, [(tag, b"ID-7")]))
    gateway.session.reject_business(msg, BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE, gateway.now)
    [reject] = gateway.sent()
    assert (reject.msg_type, reject.get(372), reject.get(380)) == (b"j", msg_type, b"3")
    assert reject.get(379) == b"ID-7"


def test_business_message_reject(pair: SessionPair) -> None:
    pair.send_order("initiator", "C1")
    pair.pump()
    [order] = pair.received_apps("acceptor")
    pair.acceptor.reject_business(order, BusinessRejectReason.NOT_AUTHORIZED, pair.now)
    pair.acceptor.reject_business(order, BusinessRejectReason.OTHER, pair.now, text=b"Desk closed")
    pair.pump()
    first, second = pair.received_apps("initiator")
    assert first.msg_type == b"j"
    assert seq_of(first) == 2
    assert first.get(45) == b"2"
    assert first.get(372) == b"D"
    assert first.get(380) == b"6"
    assert first.get(379) == b"C1"
    assert text_of(first) == "Not authorized"
    # the order's ClOrdID is its id, named in every reject of it
    assert (second.get(380), text_of(second), second.get(379)) == (b"0", "Desk closed", b"C1")
    # business rejects are application messages: stored for resend
    assert [s for s, _ in pair.acceptor.store.get_sent(1, 10)] == [2, 3]
    assert pair.sent_by("initiator", b"3") == []


# ---------------------------------------------------------------------------
# Logout


@pytest.mark.parametrize("first", ["acceptor", "initiator"])
def test_logout_handshake(pair: SessionPair, first: str) -> None:
    other = "initiator" if first == "acceptor" else "acceptor"
    starter = pair.sides[first].session
    starter.logout(pair.now, "end of day")
    assert starter.state is S.LOGOUT_SENT
    assert starter.is_logged_on
    pair.pump()

    [request] = pair.sent_by(first, b"5")
    assert text_of(request.message) == "end of day"
    [reply] = pair.sent_by(other, b"5")
    assert reply.get(58) is None
    for side in (first, other):
        session = pair.sides[side].session
        assert session.state is S.DISCONNECTED
        assert event_kinds(pair.events(side)) == ["LoggedOut", "CloseConnection"]
        assert pair.logged_out(side)[0].reason == "logout"
        # Logon 1 and Logout 2 both ways: both counted
        assert (session.store.next_sender_seq, session.store.next_target_seq) == (3, 3)


def test_logout_times_out_without_an_answer(pair: SessionPair) -> None:
    start = pair.now
    pair.hold("acceptor")  # the Logout never reaches the client
    pair.acceptor.logout(pair.now)
    pair.pump()
    assert pair.acceptor.next_deadline() == start + 2  # LogoutTimeout
    pair.run_until(start + 1.9, "acceptor")
    assert pair.acceptor.state is S.LOGOUT_SENT
    pair.run_until(start + 2, "acceptor")
    assert pair.acceptor.state is S.DISCONNECTED
    assert pair.closes("acceptor")[0].reason == "timed out waiting for Logout response"


def test_reset_on_logout_restarts_the_numbers() -> None:
    p = SessionPair(
        acceptor=acceptor_settings(ResetOnLogout=True),
        initiator=initiator_settings(ResetOnLogout=True),
    )
    p.connect()
    p.send_order("initiator", "C1")
    p.pump()
    p.initiator.logout(p.now)
    p.pump()
    for session in (p.acceptor, p.initiator):
        assert session.state is S.DISCONNECTED
        assert (session.store.next_sender_seq, session.store.next_target_seq) == (1, 1)
        assert session.store.get_sent(1, 100) == []
    mark = p.mark()
    p.connect()
    logon = p.sent_by("initiator", b"A", since=mark)[0]
    assert (logon.seq, logon.get(141)) == (1, b"Y")
    assert p.acceptor.state is S.ACTIVE


def test_without_reset_on_logout_the_numbers_continue(pair: SessionPair) -> None:
    pair.initiator.logout(pair.now)
    pair.pump()
    mark = pair.mark()
    pair.connect()
    logon, answer = (
        pair.sent_by("initiator", since=mark)[0],
        pair.sent_by("acceptor", since=mark)[0],
    )
    assert (logon.msg_type, logon.seq, logon.get(141)) == (b"A", 3, None)
    assert (answer.msg_type, answer.seq) == (b"A", 3)
    assert pair.acceptor.state is S.ACTIVE
    assert pair.initiator.state is S.ACTIVE


def test_logout_before_logon_just_disconnects() -> None:
    h = SessionHarness()
    h.connect()
    h.session.logout(h.now, "shutting down")
    assert event_kinds(drain(h.session, h.now)) == ["CloseConnection"]
    assert h.sent() == []
    assert h.session.state is S.DISCONNECTED


def test_lost_connection_reports_logged_out_but_no_close(pair: SessionPair) -> None:
    pair.acceptor.connection_lost(pair.now)
    events = drain(pair.acceptor, pair.now)
    assert [type(e) for e in events] == [LoggedOut]
    assert pair.acceptor.state is S.DISCONNECTED
    pair.acceptor.connection_lost(pair.now)  # twice is harmless
    assert drain(pair.acceptor, pair.now) == []


# ---------------------------------------------------------------------------
# sending while disconnected, persistence


def test_message_sent_while_disconnected_is_delivered_after_reconnect(
    pair: SessionPair,
) -> None:
    pair.disconnect()
    assert pair.acceptor.state is S.DISCONNECTED
    seq = pair.send_order("acceptor", "LATE")
    assert seq == 2
    assert pair.acceptor.data_to_send() == b""
    assert pair.acceptor.store.next_sender_seq == 3
    assert [s for s, _ in pair.acceptor.store.get_sent(1, 10)] == [2]
    original = parse_all(pair.acceptor.store.get_sent(2, 2)[0][1])[0]

    pair.advance(10)
    pair.take_events("initiator")
    mark = pair.mark()
    pair.connect()

    wire = [(w.sender, w.msg_type, w.seq) for w in pair.wire[mark:]]
    assert wire == [
        ("initiator", b"A", 2),
        ("acceptor", b"A", 3),  # the Logon is the first the client sees...
        ("initiator", b"2", 3),  # ...so it asks for 2 onwards
        ("acceptor", b"D", 2),
        ("acceptor", b"4", 3),  # the Logon itself is gap-filled
    ]
    [late] = pair.received_apps("initiator")
    assert late.get(11) == b"LATE"
    assert late.get(43) == b"Y"
    assert late.get(122) == original.get(52)
    assert event_kinds(pair.events("initiator")) == ["LoggedOn", "ApplicationMessage"]
    assert pair.initiator.state is S.ACTIVE
    assert pair.initiator.store.next_target_seq == 4


def test_file_store_keeps_numbers_and_messages_across_a_restart(tmp_path: Path) -> None:
    store_dir = tmp_path / "data"
    settings = acceptor_settings()
    store = FileStore(store_dir, settings.session_id)
    p = SessionPair(acceptor=settings, acceptor_store=store)
    p.connect()
    p.send_order("initiator", "C1")
    p.send_order("acceptor", "G1")
    p.advance(1)
    p.send_order("acceptor", "G2")
    p.pump()
    sent_before = {w.seq: w for w in p.sent_by("acceptor", b"D")}
    p.disconnect()
    store.close()

    # the gateway process restarts: new store object, new session object
    reopened = FileStore(store_dir, settings.session_id)
    try:
        assert (reopened.next_sender_seq, reopened.next_target_seq) == (4, 3)
        assert [s for s, _ in reopened.get_sent(1, 10)] == [2, 3]
        p.replace_session("acceptor", Session(settings, reopened, initiator=False))
        # the client has lost what the gateway sent before the restart
        p.initiator.store.set_next_target_seq(2)
        p.advance(60)
        p.take_events("initiator")
        mark = p.mark()
        p.connect()

        logon = p.sent_by("initiator", b"A", since=mark)[0]
        assert (logon.seq, logon.get(141)) == (3, None)  # no reset: numbers continue
        answer = p.sent_by("acceptor", b"A", since=mark)[0]
        assert answer.seq == 4
        [rr] = p.sent_by("initiator", b"2", since=mark)
        assert rr.get(7) == b"2"
        resent = p.sent_by("acceptor", b"D", since=mark)
        assert [w.seq for w in resent] == [2, 3]
        for w in resent:
            assert w.get(43) == b"Y"
            assert w.get(122) == sent_before[w.seq].get(52)
        assert cl_ord_ids(p.received_apps("initiator")) == [b"G1", b"G2"]
        assert p.initiator.state is S.ACTIVE
        assert p.acceptor.state is S.ACTIVE
        assert reopened.next_target_seq == 5  # Logon 3 and ResendRequest 4
    finally:
        reopened.close()


# ---------------------------------------------------------------------------
# framing


def _peer_stream(now: float) -> list[bytes]:
    return [
        logon_message(1, now),
        make_message(b"D", 2, now, order_body("O2")),
        make_message(b"1", 3, now, [(112, b"T1")]),
        make_message(b"D", 4, now, order_body("O4")),
        make_message(b"0", 5, now),
        make_message(b"5", 6, now, [(58, b"bye")]),
    ]


def _describe(events: list[Event]) -> list[tuple[str, bytes | None]]:
    return [
        (type(e).__name__, e.message.raw if isinstance(e, ApplicationMessage) else None)
        for e in events
    ]


def test_byte_by_byte_input_gives_the_same_events_as_one_chunk() -> None:
    whole = SessionHarness()
    whole.connect()
    stream = b"".join(_peer_stream(whole.now))
    whole.feed(stream)
    out_whole = whole.session.data_to_send()

    trickle = SessionHarness()
    trickle.connect()
    for i in range(len(stream)):
        trickle.feed(stream[i : i + 1])
    out_trickle = trickle.session.data_to_send()

    expected = [
        ("LoggedOn", None),
        ("ApplicationMessage", _peer_stream(T0)[1]),
        ("ApplicationMessage", _peer_stream(T0)[3]),
        ("LoggedOut", None),
        ("CloseConnection", None),
    ]
    assert _describe(whole.events) == expected
    assert _describe(trickle.events) == expected
    assert out_trickle == out_whole
    assert [m.msg_type for m in parse_all(out_whole)] == [b"A", b"0", b"5"]


def test_an_event_comes_out_as_soon_as_its_last_byte_arrives() -> None:
    h = SessionHarness()
    h.connect()
    raw = logon_message(1, h.now)
    assert h.feed(raw[:-1]) == []
    assert event_kinds(h.feed(raw[-1:])) == ["LoggedOn"]


def test_input_after_close_is_ignored(pair: SessionPair) -> None:
    pair.disconnect()
    pair.acceptor.receive_data(make_message(b"D", 2, pair.now, order_body("X")))
    assert pair.acceptor.next_event(pair.now) is None
    assert pair.acceptor.next_deadline() is None


def test_initiator_refuses_to_connect_twice(pair: SessionPair) -> None:
    with pytest.raises(RuntimeError, match="already connected"):
        pair.initiator.connection_made(pair.now)


# ---------------------------------------------------------------------------
# state machine


def test_illegal_transition_raises() -> None:
    machine = StateMachine()
    assert machine.state is S.DISCONNECTED
    with pytest.raises(IllegalTransition, match="disconnected -> active"):
        machine.move(S.ACTIVE)
    assert machine.state is S.DISCONNECTED
    machine.move(S.AWAITING_LOGON)
    machine.move(S.ACTIVE)
    machine.move(S.LOGOUT_SENT)
    with pytest.raises(IllegalTransition):
        machine.move(S.ACTIVE)
    machine.move(S.LOGOUT_SENT)  # staying put is always allowed
    machine.move(S.DISCONNECTED)


def test_every_state_can_reach_disconnected_except_itself() -> None:
    for state, targets in TRANSITIONS.items():
        assert (S.DISCONNECTED in targets) is (state is not S.DISCONNECTED)


def test_close_event_reasons_are_readable() -> None:
    assert repr(CloseConnection("x")) == "CloseConnection('x')"
    assert repr(LoggedOut("y")) == "LoggedOut('y')"
    assert repr(LoggedOn()) == "LoggedOn()"


def test_a_long_resend_is_answered_in_parts(
    pair: SessionPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.fix.session as session_module

    monkeypatch.setattr(session_module, "RESEND_CHUNK", 3)
    for seq in range(2, 10):
        pair.drop("initiator", seq=seq)
    for i in range(8):
        pair.send_order("initiator", f"L{i}")  # seq 2..9, all lost
    mark = pair.mark()
    pair.send_order("initiator", "LAST")  # seq 10 reveals the gap
    pair.pump()
    [rr] = pair.sent_by("acceptor", b"2", since=mark)
    assert (rr.get(7), rr.get(16)) == (b"2", b"0")
    resent = [w.seq for w in pair.sent_by("initiator", since=mark) if w.get(43) == b"Y"]
    assert resent == [2, 3, 4]
    assert pair.initiator.resend_pending
    while pair.initiator.resend_pending:
        pair.initiator.continue_resend(pair.now)
        pair.pump()
    resent = [w.seq for w in pair.sent_by("initiator", since=mark) if w.get(43) == b"Y"]
    assert resent == list(range(2, 11))
    assert cl_ord_ids(pair.received_apps("acceptor")) == [
        *(f"L{i}".encode() for i in range(8)),
        b"LAST",
    ]
    assert pair.acceptor.state is S.ACTIVE


@pytest.mark.parametrize(
    ("begin", "end", "tag"), [(b"10", b"3", 16), (b"2", b"-1", 16), (b"-2", b"0", 7)]
)
def test_a_resend_request_for_no_range_is_rejected_not_ignored(
    gateway: SessionHarness, begin: bytes, end: bytes, tag: int
) -> None:
    """EndSeqNo below BeginSeqNo, or a negative number: nothing could be
    sent for it, and the peer is told so (Reject, value incorrect)."""
    assert gateway.feed(gateway.message(b"2", 2, [(7, begin), (16, end)])) == []
    (reject,) = gateway.sent()
    assert (reject.msg_type, reject.get(45), reject.get(373), reject.get(371)) == (
        b"3",
        b"2",
        b"5",
        b"%d" % tag,
    )
    assert gateway.store.next_target_seq == 3
