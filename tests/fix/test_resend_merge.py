"""ResendRequests that arrive while an earlier one is still being answered in
parts: whatever their order, each ends with the peer sent everything it
asked for, and back-to-back requests do not multiply what is queued.

The caller of a session sends a resend's next part with
``continue_resend`` while ``resend_pending``; here the tests do it by hand.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from session_helpers import SessionHarness, SessionPair, logon_message, order_body, seq_of

import gateway.fix.session as session_module
from gateway.fix import codec, spec44
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.fix.states import SessionState

S = SessionState

HEADER = frozenset(spec44.HEADER)

CHUNK = 3
"""RESEND_CHUNK in these tests, so that short resends come in parts."""


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer ``CHUNK`` sequence numbers per part."""
    monkeypatch.setattr(session_module, "RESEND_CHUNK", CHUNK)


def resend_request(h: SessionHarness, seq: int, begin: int, end: int) -> bytes:
    """A ResendRequest from the scripted peer, MsgSeqNum ``seq``."""
    return h.message(b"2", seq, [(7, begin), (16, end)])


def covered(messages: list[FixMessage]) -> set[int]:
    """The sequence numbers a resend delivered: PossDup messages, and the
    numbers each SequenceReset-GapFill skips."""
    seqs: set[int] = set()
    for msg in messages:
        if msg.get(43) != b"Y":
            continue
        seq = seq_of(msg)
        if msg.msg_type == b"4":
            assert msg.get(123) == b"Y"
            seqs.update(range(seq, int(msg.get(36) or b"0")))
        else:
            seqs.add(seq)
    return seqs


def pending(session: Session) -> bool:
    """``resend_pending``, read afresh (the type checker would keep what an
    earlier assert said)."""
    return session.resend_pending


def state(session: Session) -> SessionState:
    """``state``, read afresh (see :func:`pending`)."""
    return session.state


def finish(h: SessionHarness) -> list[FixMessage]:
    """Send every part left, as the transport would; what was written."""
    sent: list[FixMessage] = []
    while h.session.resend_pending:
        h.session.continue_resend(h.now)
        part = h.sent()
        assert part, "a pending resend sent nothing"
        sent += part
    return sent


def gateway_with_orders(count: int) -> SessionHarness:
    """A gateway session logged on (both sides at 2) that then sent
    ``count`` orders, MsgSeqNum 2 to ``count + 1``."""
    h = SessionHarness()
    h.logon()
    for n in range(count):
        h.session.send(b"D", order_body(f"R{n}"), h.now)
    h.sent()
    return h


def test_a_shorter_request_does_not_cut_a_resend_short() -> None:
    h = gateway_with_orders(10)  # 2..11
    h.feed(resend_request(h, 2, 1, 0))
    first = h.sent()
    assert covered(first) == {1, 2, 3}
    assert h.session.resend_pending

    h.feed(resend_request(h, 3, 1, 2))
    rest = h.sent() + finish(h)
    assert covered(rest) == set(range(1, 12))
    # PossDup copies of the orders, in order from where the second began
    orders = [seq_of(m) for m in rest if m.msg_type == b"D"]
    assert orders == list(range(2, 12))


def test_a_later_request_extends_a_resend_to_its_end() -> None:
    h = gateway_with_orders(10)  # 2..11
    h.feed(resend_request(h, 2, 2, 6))
    assert covered(h.sent()) == {2, 3, 4}
    for n in range(3):
        h.session.send(b"D", order_body(f"N{n}"), h.now)  # 12..14, live
    live = h.sent()
    assert [seq_of(m) for m in live] == [12, 13, 14]

    h.feed(resend_request(h, 3, 5, 0))
    rest = h.sent() + finish(h)
    assert covered(rest) == set(range(5, 15))
    assert [seq_of(m) for m in rest if m.msg_type == b"D"] == list(range(5, 15))


def test_a_request_within_what_is_left_adds_nothing() -> None:
    h = gateway_with_orders(10)  # 2..11
    h.feed(resend_request(h, 2, 1, 0))
    h.sent()
    h.feed(resend_request(h, 3, 6, 8))
    rest = h.sent() + finish(h)
    resent = [seq_of(m) for m in rest if m.msg_type == b"D"]
    assert resent == list(range(4, 12))  # each once


def test_back_to_back_requests_queue_one_part_and_deliver_everything() -> None:
    h = gateway_with_orders(20)  # 2..21
    for seq in range(2, 12):
        h.feed(resend_request(h, seq, 1, 0))
    queued = h.sent()
    # the first request's first part; the nine others wait in what is left
    assert [seq_of(m) for m in queued] == [1, 2, 3]
    rest = finish(h)
    assert covered(rest) == set(range(1, 22))
    resent = [seq_of(m) for m in rest if m.msg_type == b"D"]
    assert resent == list(range(2, 22))  # started again once, from 1
    assert h.session.store.next_target_seq == 12


def test_a_resend_left_by_a_lost_connection_does_not_swallow_the_next_request() -> None:
    h = gateway_with_orders(10)
    h.feed(resend_request(h, 2, 1, 0))
    h.sent()
    assert pending(h.session)
    h.session.connection_lost(h.now)
    h.session.continue_resend(h.now)
    assert not pending(h.session)
    assert h.sent() == []

    h.logon(seq=3)
    h.feed(resend_request(h, 4, 5, 0))
    assert covered(h.sent()) == {5, 6, 7}
    assert covered(finish(h)) == set(range(8, 13))  # 12 is the second Logon


def test_a_sequence_reset_by_logon_drops_what_is_left_of_a_resend() -> None:
    h = gateway_with_orders(10)  # 2..11
    h.feed(resend_request(h, 2, 1, 0))
    assert covered(h.sent()) == {1, 2, 3}
    assert pending(h.session)

    # the peer starts both numbers again at 1: the old ones mean nothing now
    h.feed(logon_message(1, h.now, reset=True))
    assert [(m.msg_type, seq_of(m)) for m in h.sent()] == [(b"A", 1)]
    assert not pending(h.session)
    h.session.continue_resend(h.now)
    assert h.sent() == []
    h.session.send(b"D", order_body("AFTER"), h.now)
    assert [seq_of(m) for m in h.sent()] == [2]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_request_is_answered_in_full_whatever_the_order(
    order: tuple[int, ...],
) -> None:
    requests = [(1, 0), (2, 4), (6, 9), (8, 0)]
    # how many parts go out before the next request comes
    for pauses in itertools.product((0, 1, 3), repeat=len(requests) - 1):
        h = gateway_with_orders(12)  # 2..13
        sent: list[FixMessage] = []
        asked: list[tuple[int, set[int]]] = []
        for i, k in enumerate(order):
            # something new goes out before each request: "to the end" grows
            h.session.send(b"D", order_body(f"L{i}"), h.now)
            sent += h.sent()
            begin, end = requests[k]
            last = h.session.store.next_sender_seq - 1
            asked.append((len(sent), set(range(begin, (end or last) + 1))))
            h.feed(resend_request(h, 2 + i, begin, end))
            sent += h.sent()
            for _ in range(pauses[i] if i < len(pauses) else 0):
                if h.session.resend_pending:
                    h.session.continue_resend(h.now)
                    sent += h.sent()
        sent += finish(h)
        for position, wanted in asked:
            missing = wanted - covered(sent[position:])
            assert not missing, (order, pauses, position, sorted(missing))


def test_a_client_that_asks_ten_times_gets_every_message_once() -> None:
    pair = SessionPair()
    pair.connect()
    pair.disconnect()
    for n in range(20):
        pair.send_order("acceptor", f"R{n}")  # stored while the client is away
    pair.connect()
    # the client's Logon answer revealed the gap: its own request is being
    # answered, the first part is out
    assert state(pair.initiator) is S.AWAITING_RESEND
    assert pending(pair.acceptor)
    mark = pair.mark()
    for _ in range(10):
        pair.initiator.send(b"2", b"7=1\x0116=0\x01", pair.now)
    pair.pump()
    assert [w for w in pair.sent_by("acceptor", since=mark) if w.get(43) == b"Y"] == []

    while pair.acceptor.resend_pending:
        pair.acceptor.continue_resend(pair.now)
        pair.pump()
    got = pair.received_apps("initiator")
    assert [m.get(11) for m in got] == [f"R{n}".encode() for n in range(20)]
    assert state(pair.initiator) is S.ACTIVE
    assert pair.initiator.store.next_target_seq == pair.acceptor.store.next_sender_seq


def rebuilt(stored: bytes, sender: bytes, target: bytes, now: bytes) -> bytes:
    """What a resend of ``stored`` must be, built field by field: its header
    but the fields a resend replaces, PossDupFlag, the sender's and target's
    ids, SendingTime now and OrigSendingTime, its body unchanged."""
    msg = codec.parse_frame(stored)
    fields = msg.fields
    k = 1
    while k < len(fields) and fields[k][0] in HEADER:
        k += 1
    header = [(t, v) for t, v in fields[1:k] if t not in (34, 43, 49, 52, 56, 122)]
    header += [
        (34, msg.get(34) or b"0"),
        (43, b"Y"),
        (49, sender),
        (52, now),
        (56, target),
        (122, msg.get(52) or b""),
    ]
    return codec.encode_message(b"FIX.4.4", msg.msg_type, header, codec.encode_fields(fields[k:]))


# (header fields after the standard ones, body)
MESSAGES = [
    (b"", order_body("PLAIN")),
    (b"115=ON-BEHALF\x01128=DELIVER-TO\x01", order_body("ROUTED")),
    # XmlData holds SOH: stepped over whole, by its length
    (b"212=10\x01213=<a>\x01b\x01</a>\x01", order_body("XML")),
    # a repeating group at the body's end
    (b"", order_body("G") + b"453=2\x01448=P1\x01447=D\x01452=1\x01448=P2\x01447=D\x01452=3\x01"),
    (b"", b""),
]
MESSAGE_IDS = ["plain", "header-extras", "xmldata", "group", "no-body"]


@pytest.mark.parametrize(("extra", "body"), MESSAGES, ids=MESSAGE_IDS)
def test_the_body_is_found_in_the_stored_bytes(extra: bytes, body: bytes) -> None:
    header = [(34, b"7"), (49, b"GW"), (52, b"20261204-10:00:00.000"), (56, b"CL")]
    raw = codec.encode_message(b"FIX.4.4", b"D", header, extra + body)
    msg = codec.parse_frame(raw)
    k, start = codec.split_header(msg, HEADER)
    assert codec.encode_fields(msg.fields[k:]) == body
    if body:
        assert raw[start : len(raw) - codec.CHECKSUM_FIELD] == body
    else:
        assert start == -1
    # the header read alone finds the same, unless it holds data
    scanned = codec.scan_header(raw, HEADER)
    if b"212=" in extra or not body:
        assert scanned is None  # parsed whole instead
    else:
        assert scanned == (b"D", msg.fields[1:k], start)


# header fields a stored message may carry beside the standard ones
_EXTRA_HEADER = st.sampled_from([50, 57, 97, 115, 116, 128, 129, 142, 143, 144, 145, 369])
_VALUES = st.binary(min_size=1, max_size=12).filter(lambda v: b"\x01" not in v)


@settings(max_examples=80, deadline=None)
@given(
    extras=st.lists(st.tuples(_EXTRA_HEADER, _VALUES), max_size=4, unique_by=lambda f: f[0]),
    body=st.lists(st.tuples(st.integers(1, 9999).filter(lambda t: t not in HEADER), _VALUES)),
    msg_type=st.sampled_from([b"8", b"AE", b"D", b"j"]),
)
def test_a_header_read_alone_reads_as_the_whole_parse_does(
    extras: list[tuple[int, bytes]], body: list[tuple[int, bytes]], msg_type: bytes
) -> None:
    header = [(34, b"12"), (49, b"GW"), (52, b"20261204-10:00:00.000"), (56, b"CL"), *extras]
    raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(body))
    msg = codec.parse_frame(raw)
    k, start = codec.split_header(msg, HEADER)
    scanned = codec.scan_header(raw, HEADER)
    if start < 0:
        assert scanned is None
    else:
        assert scanned == (msg_type, msg.fields[1:k], start)


def test_a_header_not_written_plainly_is_left_to_the_whole_parse() -> None:
    body = order_body("X")
    plain = codec.encode_message(b"FIX.4.4", b"D", [(34, b"7"), (49, b"GW")], body)
    assert codec.scan_header(plain, HEADER) is not None
    padded = plain.replace(b"\x0134=7\x01", b"\x01034=7\x01")
    assert codec.scan_header(padded, HEADER) is None
    no_type = plain.replace(b"\x0135=D\x01", b"\x01")
    assert codec.scan_header(no_type, HEADER) is None


def test_bytes_that_are_not_the_parsed_message_give_no_body_offset() -> None:
    header = [(34, b"7"), (49, b"GW"), (56, b"CL")]
    raw = codec.encode_message(b"FIX.4.4", b"D", header, order_body("X"))
    msg = codec.parse_frame(raw)
    cut = codec.FixMessage(msg.begin_string, msg.msg_type, msg.fields, raw[:-3])
    assert codec.split_header(cut, HEADER)[1] == -1
    longer = codec.FixMessage(msg.begin_string, msg.msg_type, msg.fields, raw + b"extra")
    assert codec.split_header(longer, HEADER)[1] == -1


@pytest.mark.parametrize(("extra", "body"), MESSAGES, ids=MESSAGE_IDS)
def test_a_resent_message_is_its_stored_self_with_the_resends_header(
    extra: bytes, body: bytes
) -> None:
    h = SessionHarness()
    h.logon()
    h.session.send(b"D", extra + body, h.now)
    [original] = h.sent()
    h.advance(60)
    h.feed(resend_request(h, 2, 2, 2))
    [resent] = [m for m in h.sent() if m.get(43) == b"Y"]
    expected = rebuilt(original.raw, b"GW", b"CL", codec.format_utc_timestamp(h.now))
    assert resent.raw == expected


def test_a_long_resend_with_new_messages_between_its_parts_ends_with_everything_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drop copy catching up: the receiver missed 40 messages; while the
    sender answers its ResendRequest in parts, new messages go out between
    the parts, more than the receiver keeps past its gap.  It asks again
    for what it did not keep, and ends with every message once, in order,
    without being logged out."""
    header = [(34, b"100"), (49, b"ACCEPTOR"), (52, b"20260101-00:00:00.000"), (56, b"INITIATOR")]
    one = codec.parse_frame(codec.encode_message(b"FIX.4.4", b"D", header, order_body("M00")))
    monkeypatch.setattr(session_module, "MAX_QUEUED_BYTES", 6 * (session_module._held(one) + 20))
    pair = SessionPair()
    pair.connect()
    pair.mute("acceptor")
    sent = 0
    for _ in range(40):
        pair.send_order("acceptor", f"M{sent:02d}")
        sent += 1
    pair.pump()
    pair.unmute("acceptor")
    asked = 0
    for _ in range(1_000):
        for _ in range(2):  # new messages, between the parts of the resend
            pair.send_order("acceptor", f"M{sent:02d}")
            sent += 1
        pair.pump()
        asked = len(pair.sent_by("initiator", b"2"))
        if not pair.acceptor.resend_pending and sent >= 120:
            break
        pair.acceptor.continue_resend(pair.now)
        pair.pump()
    else:
        raise AssertionError("the resend did not end")
    got = [m.get(11) for m in pair.received_apps("initiator")]
    assert got == [b"M%02d" % i for i in range(sent)]
    assert pair.logged_out("initiator") == []
    assert pair.logged_out("acceptor") == []
    assert state(pair.initiator) is S.ACTIVE
    assert asked > 1  # what was not kept was asked for again
