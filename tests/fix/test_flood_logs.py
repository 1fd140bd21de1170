"""A logged-on peer repeating what the session answers itself (messages it
rejects, garbled frames, Rejects, ResendRequests, SequenceResets) gets
every answer, but the log gets one line of each kind a second at most: the
next line counts the ones not written (``repeated_since_last``), and so does
the session's end.  The peer does not write the log at its own rate."""

from __future__ import annotations

from typing import Any

import pytest
from session_helpers import SessionHarness, logon_message
from structlog.testing import capture_logs

FLOOD = 1_000


@pytest.fixture
def logged_on() -> SessionHarness:
    h = SessionHarness()
    h.logon()
    return h


def lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


def test_a_flood_of_rejected_messages_is_answered_in_full_and_logged_once_a_second(
    logged_on: SessionHarness,
) -> None:
    h = logged_on
    seq = 2
    with capture_logs() as logs:
        for _ in range(FLOOD):
            # a tag FIX 4.4 does not define: Reject (3), Invalid tag number
            h.feed(h.message(b"0", seq, [(4999, b"x")]))
            seq += 1
            h.advance(0.0001)
    rejects = [m for m in h.sent() if m.msg_type == b"3"]
    assert len(rejects) == FLOOD  # every message is answered
    said = lines(logs, "message_rejected")
    assert len(said) == 1, len(said)
    assert said[0]["reason"] == "INVALID_TAG_NUMBER"

    # a second on, the next one is logged with the count of those not logged
    h.advance(1.0)
    with capture_logs() as logs:
        h.feed(h.message(b"0", seq, [(4999, b"x")]))
    [line] = lines(logs, "message_rejected")
    assert line["repeated_since_last"] == FLOOD - 1


def test_the_rejects_not_logged_are_counted_when_the_session_ends(
    logged_on: SessionHarness,
) -> None:
    h = logged_on
    with capture_logs() as logs:
        for seq in range(2, 12):
            h.feed(h.message(b"0", seq, [(4999, b"x")]))
        h.session.connection_lost(h.now)
    assert len(lines(logs, "message_rejected")) == 1
    [ended] = lines(logs, "session_ended")
    assert ended["not_logged"] == {"message_rejected": 9}


def test_a_flood_of_garbled_frames_is_logged_once_a_second(logged_on: SessionHarness) -> None:
    h = logged_on
    with capture_logs() as logs:
        for _ in range(FLOOD):
            frame = h.message(b"0", 2)
            h.feed(frame[:-4] + b"000\x01")  # a CheckSum that is wrong
    assert h.session.stats.garbled == FLOOD
    assert len(lines(logs, "garbled_message")) == 1


def test_a_flood_of_rejects_and_resend_requests_is_logged_once_a_second(
    logged_on: SessionHarness,
) -> None:
    h = logged_on
    seq = 2
    with capture_logs() as logs:
        for _ in range(FLOOD):
            h.feed(h.message(b"3", seq, [(45, b"1"), (58, b"no")]))
            h.feed(h.message(b"2", seq + 1, [(7, b"1"), (16, b"0")]))
            # a SequenceReset (Reset mode) one number on, as often as it likes
            h.feed(h.message(b"4", seq + 2, [(36, b"%d" % (seq + 4))]))
            seq += 4
    assert h.session.stats.rejects_received == FLOOD
    assert h.session.store.next_target_seq == seq
    for event in ("reject_received", "resend_request", "sequence_reset"):
        assert len(lines(logs, event)) == 1, event


def test_a_second_sequence_reset_within_a_second_ends_the_session(
    logged_on: SessionHarness,
) -> None:
    """Each Logon with ResetSeqNumFlag while logged on rewrites the
    session's store durably (a new file, synced) on the loop every session
    shares: one a second is taken, one more within it is refused with a
    Logout, instead of a peer sending thousands of them in one write (each
    costing a synced file, and every other session the wait)."""
    h = logged_on
    h.advance(0.5)
    h.feed(h.message(b"0", 2))
    h.feed(logon_message(1, h.now, reset=True))
    [answer] = h.sent()
    assert (answer.msg_type, answer.get(141)) == (b"A", b"Y")
    reset_at = h.store.creation_time
    assert reset_at == h.now
    h.advance(0.5)  # half a second on: taken, as in a session at its day's end
    h.feed(h.message(b"0", 2))
    h.advance(0.25)
    with capture_logs() as logs:
        events = h.feed(logon_message(1, h.now, reset=True))
    [logout] = h.sent()
    assert logout.msg_type == b"5"
    assert b"ResetSeqNumFlag" in (logout.get(58) or b"")
    assert "CloseConnection" in [type(e).__name__ for e in events]
    assert h.store.creation_time == reset_at  # not reset again
    assert h.store.next_target_seq == 3
    [said] = [e for e in logs if e["event"] == "session_error"]
    assert "ResetSeqNumFlag" in said["text"]


def test_sequence_resets_a_second_apart_are_each_taken(logged_on: SessionHarness) -> None:
    h = logged_on
    for _ in range(3):
        h.advance(1.0)
        h.feed(logon_message(1, h.now, reset=True))
        [answer] = h.sent()
        assert (answer.msg_type, answer.get(141)) == (b"A", b"Y")
        assert h.store.creation_time == h.now
        assert h.session.is_logged_on
