"""A resend answer that leaves the first missing number unfilled (a resent
message garbled on the way, a GapFill that moves nothing) must not wedge the
session: once the answer has gone past the range asked for, the hole is
asked for again."""

from __future__ import annotations

from session_helpers import SessionHarness, app_messages, logon_message, order_body

from gateway.fix.states import SessionState

S = SessionState
ORIG = b"20231114-22:13:19.000"


def possdup(h: SessionHarness, seq: int, cl: str) -> bytes:
    return h.message(b"D", seq, order_body(cl), header=[(43, b"Y"), (122, ORIG)])


def logged_on() -> SessionHarness:
    h = SessionHarness()
    h.logon()
    h.events.clear()
    return h


def test_a_garbled_first_message_of_a_resend_is_asked_for_again() -> None:
    h = logged_on()
    # 2 and 3 never arrived whole: 4 is too high
    assert h.feed(h.message(b"D", 4, order_body("O4"))) == []
    [rr] = h.sent()
    assert (rr.msg_type, rr.get(7)) == (b"2", b"2")
    # the peer's answer: 2 arrives garbled (ignored, as FIX says), 3 whole
    good2 = possdup(h, 2, "O2")
    assert h.feed(good2[:-4] + b"000\x01") == []
    assert h.feed(possdup(h, 3, "O3")) == []
    # the peer goes on with new messages
    for seq in (5, 6, 7):
        h.feed(h.message(b"D", seq, order_body(f"O{seq}")))
    asked = [m for m in h.sent() if m.msg_type == b"2"]
    # the answer ended without 2: it must be asked for again
    assert [(m.get(7), m.get(16)) for m in asked] == [(b"2", b"0")]
    events = h.feed(possdup(h, 2, "O2"))
    assert [m.get(11) for m in app_messages(events)] == [b"O2", b"O3", b"O4", b"O5", b"O6", b"O7"]
    assert h.session.state is S.ACTIVE


def test_the_rest_of_the_first_answer_leaves_the_second_its_chance() -> None:
    """A peer answering EndSeqNo 0 resends what revealed the gap too (4):
    that belongs to the first answer, not to the second, which fills 2."""
    h = logged_on()
    assert h.feed(h.message(b"D", 4, order_body("O4"))) == []
    h.sent()
    good2 = possdup(h, 2, "O2")
    h.feed(good2[:-4] + b"000\x01", possdup(h, 3, "O3"), possdup(h, 4, "O4"))
    asked = [m for m in h.sent() if m.msg_type == b"2"]
    assert [(m.get(7), m.get(16)) for m in asked] == [(b"2", b"0")]
    assert h.session.state is not S.LOGOUT_SENT
    # the second answer brings 2: everything is handed on, in order
    events = h.feed(possdup(h, 2, "O2"))
    assert [m.get(11) for m in app_messages(events)] == [b"O2", b"O3", b"O4"]
    assert h.session.state is S.ACTIVE


def test_a_second_answer_without_the_hole_ends_the_session() -> None:
    h = logged_on()
    assert h.feed(h.message(b"D", 4, order_body("O4"))) == []
    h.sent()
    good2 = possdup(h, 2, "O2")
    h.feed(good2[:-4] + b"000\x01", possdup(h, 3, "O3"), possdup(h, 4, "O4"))
    h.sent()
    # the second answer: 2 garbled again, then 3 and 4
    h.feed(good2[:-4] + b"000\x01", possdup(h, 3, "O3"), possdup(h, 4, "O4"))
    [logout] = h.sent()
    assert logout.get(58) == b"MsgSeqNum 2 not received in answer to a ResendRequest"


def test_a_gap_fill_that_moves_nothing_does_not_wedge_the_session() -> None:
    h = logged_on()
    assert h.feed(h.message(b"D", 4, order_body("O4"))) == []
    h.sent()
    # answer: a GapFill at 2 whose NewSeqNo is 2 (moves nothing), then 3
    h.feed(h.message(b"4", 2, [(123, b"Y"), (36, 2)], header=[(43, b"Y")]))
    h.feed(possdup(h, 3, "O3"))
    for seq in (5, 6):
        h.feed(h.message(b"D", seq, order_body(f"O{seq}")))
    asked = [m for m in h.sent() if m.msg_type == b"2"]
    assert [(m.get(7), m.get(16)) for m in asked] == [(b"2", b"0")]


def huge_list(h: SessionHarness, seq: int, header: list[tuple[int, bytes]]) -> bytes:
    """A valid MarketDataRequest for 6,000 symbols: about 84 KB, past the
    session's max_message_size (64 KiB)."""
    body = b"262=M\x01263=1\x01264=1\x01267=1\x01269=0\x01146=6000\x01" + b"55=EUR/USD\x01" * 6000
    return h.message(b"V", seq, body, header=header)


def test_a_message_too_large_to_be_read_ends_the_session_instead_of_wedging_it() -> None:
    h = logged_on()
    # 2 is too large: the decoder drops it, 3 is too high
    assert h.feed(huge_list(h, 2, [])) == []
    assert h.feed(h.message(b"D", 3, order_body("O3"))) == []
    [rr] = h.sent()
    assert (rr.msg_type, rr.get(7)) == (b"2", b"2")
    # the peer answers: the same message again (dropped again), then 3
    h.feed(huge_list(h, 2, [(43, b"Y"), (122, ORIG)]), possdup(h, 3, "O3"))
    again = h.sent()
    assert [(m.msg_type, m.get(7)) for m in again] == [(b"2", b"2")]
    h.feed(huge_list(h, 2, [(43, b"Y"), (122, ORIG)]), possdup(h, 3, "O3"))
    # asked twice, answered twice without it: the session says so and ends
    [logout] = h.sent()
    assert logout.msg_type == b"5"
    assert logout.get(58) == b"MsgSeqNum 2 not received in answer to a ResendRequest"
    assert h.session.state is S.LOGOUT_SENT


def test_a_resend_request_held_at_the_end_of_the_range_closes_it() -> None:
    """A ResendRequest of the peer's waits out of sequence like any message
    (it is answered at once): when its number is the last one asked for, it
    closes the range, so that a later gap is asked for in turn."""
    h = logged_on()
    assert h.feed(h.message(b"D", 3, order_body("O3"))) == []  # 2 garbled
    h.feed(h.message(b"2", 4, [(7, 1), (16, 0)]))  # answered now, counted in turn
    h.sent()
    # the answer leaves 2 out again: asked for once more, up to 4
    h.feed(possdup(h, 3, "O3"))
    asked = [m for m in h.sent() if m.msg_type == b"2"]
    assert [(m.get(7), m.get(16)) for m in asked] == [(b"2", b"0")]
    events = h.feed(possdup(h, 2, "O2"), possdup(h, 3, "O3"))
    assert [m.get(11) for m in app_messages(events)] == [b"O2", b"O3"]
    assert h.store.next_target_seq == 5
    # 5 never arrives whole: 6 is too high, and 5 is asked for
    assert h.feed(h.message(b"D", 6, order_body("O6"))) == []
    asked = [m for m in h.sent() if m.msg_type == b"2"]
    assert [(m.get(7), m.get(16)) for m in asked] == [(b"5", b"0")]
    events = h.feed(possdup(h, 5, "O5"))
    assert [m.get(11) for m in app_messages(events)] == [b"O5", b"O6"]
    assert h.session.state is S.ACTIVE


def test_a_logon_reset_forgets_a_hole_asked_for_under_the_old_numbers() -> None:
    """After a ResetSeqNumFlag Logon, a hole at a number that was asked for
    again before the reset is a first miss, asked for again once, not the
    second miss that ends the session."""
    h = logged_on()
    good2 = possdup(h, 2, "O2")
    assert h.feed(h.message(b"D", 3, order_body("O3"))) == []
    h.feed(good2[:-4] + b"000\x01", possdup(h, 3, "O3"))  # 2 left out: asked again
    h.feed(possdup(h, 2, "O2"))
    h.sent()
    assert h.store.next_target_seq == 4
    # the peer starts its numbers again while logged on
    h.feed(logon_message(1, h.now, reset=True))
    [logon] = h.sent()
    assert (logon.msg_type, logon.get(141)) == (b"A", b"Y")
    # the same hole under the new numbers: 2 garbled, 3 too high
    assert h.feed(h.message(b"D", 3, order_body("N3"))) == []
    h.feed(good2[:-4] + b"000\x01", possdup(h, 3, "N3"))
    asked = h.sent()
    assert [(m.msg_type, m.get(7)) for m in asked] == [(b"2", b"2"), (b"2", b"2")]
    assert h.session.state is S.AWAITING_RESEND
    events = h.feed(possdup(h, 2, "N2"))
    assert [m.get(11) for m in app_messages(events)] == [b"N2", b"N3"]
    assert h.session.state is S.ACTIVE
