"""A Logout that arrives while a gap before it is open (its MsgSeqNum too
high) must not move the expected number past the missing messages: they are
asked for at the next Logon, not skipped for good."""

from __future__ import annotations

from session_helpers import SessionHarness, app_messages, logon_message, order_body

ORIG = b"20231114-22:13:19.000"


def test_a_logout_too_high_leaves_the_gap_to_be_asked_for_at_the_next_logon() -> None:
    h = SessionHarness()
    h.logon()  # both sides at 2
    h.sent()
    # the peer's 2 never arrived whole; 3 is too high and waits, a
    # ResendRequest for 2 goes out; the peer logs out before it sees it
    h.feed(h.message(b"D", 3, order_body("O3")))
    [rr] = h.sent()
    assert (rr.msg_type, rr.get(7)) == (b"2", b"2")
    h.feed(h.message(b"5", 4))
    assert [m.msg_type for m in h.sent()] == [b"5"]
    assert not h.session.is_connected
    # the next connection: the peer's Logon is 5
    h.connect()
    h.feed(logon_message(5, h.now))
    asked = [m for m in h.sent() if m.msg_type == b"2"]
    assert [m.get(7) for m in asked] == [b"2"]  # from the first number not received
    events = h.feed(
        *(
            h.message(b"D", seq, order_body(f"O{seq}"), header=[(43, b"Y"), (122, ORIG)])
            for seq in (2, 3)
        ),
        h.message(b"4", 4, [(123, b"Y"), (36, 6)], header=[(43, b"Y")]),
    )
    assert [m.get(11) for m in app_messages(events)] == [b"O2", b"O3"]
    assert h.store.next_target_seq == 6
