"""Garbage on a FIX connection, sans-I/O.

Before the Logon, bytes that can never begin a valid Logon within
``max_message_size`` close the connection as soon as they arrive, not at the
logon timeout, with one warning naming the peer and the reason; a Logon
arriving in any number of pieces is never refused early.  After the Logon,
everything the session ignores is counted in ``stats.garbled``: one for each
frame refused as garbled, one for each run of bytes dropped between frames.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from session_helpers import (
    T0,
    SessionHarness,
    acceptor_settings,
    app_messages,
    event_kinds,
    logon_message,
    make_message,
    order_body,
)
from structlog.testing import capture_logs

from gateway.fix import codec
from gateway.fix.acceptor import AcceptorConnection, SessionRegistry
from gateway.fix.codec import FrameDecoder, GarbageRuns
from gateway.fix.events import CloseConnection, Event
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.ops.http import SessionCollector

LIMIT = 65536
PEER = "203.0.113.9:40001"
NOT_FIX = "not FIX"
TOO_LARGE = "message larger than max_message_size"
GARBLED = "garbled message before Logon"

PROPERTY = settings(max_examples=80, deadline=None)


@pytest.fixture
def session() -> Session:
    return Session(acceptor_settings(), MemoryStore())


def connection(session: Session, limit: int = LIMIT) -> AcceptorConnection:
    return AcceptorConnection(SessionRegistry([session]), T0, peer=PEER, max_message_size=limit)


def feed(conn: AcceptorConnection, data: bytes) -> list[Event]:
    conn.receive_data(data)
    events = []
    while (event := conn.next_event(T0)) is not None or conn.yielded:
        if event is not None:
            events.append(event)
    return events


def logon() -> bytes:
    return logon_message(1, T0)


def logon_of_size(body_extra: int) -> bytes:
    """A Logon made larger by a Username (553) of ``body_extra`` bytes."""
    return make_message(b"A", 1, T0, [(98, 0), (108, 30), (553, b"x" * body_extra)])


def end_of_body_length(raw: bytes) -> int:
    """How many bytes of ``raw`` end with the last digit of its BodyLength."""
    return raw.index(b"\x01", raw.index(b"\x019=") + 1)


def with_body_length(raw: bytes, length: int) -> bytes:
    start = raw.index(b"\x019=") + 3
    return raw[:start] + b"%d" % length + raw[end_of_body_length(raw) :]


HEAD = b"8=FIX.4.4\x019="

# name -> (bytes, reason, how many of them it takes to rule out a Logon,
# max_message_size)
REFUSED: dict[str, tuple[bytes, str, int, int]] = {
    "HTTP request": (b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n", NOT_FIX, 1, LIMIT),
    "TLS ClientHello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", NOT_FIX, 1, LIMIT),
    "line break before a Logon": (b"\r\n" + logon(), NOT_FIX, 1, LIMIT),
    "lower-case fix": (b"8=fix.4.4\x019=5\x01", NOT_FIX, 3, LIMIT),
    "8=FIY": (b"8=FIY.4.4\x019=5\x01", NOT_FIX, 5, LIMIT),
    "MsgType before BodyLength": (b"8=FIX.4.4\x0135=A\x019=5\x01", NOT_FIX, 11, LIMIT),
    "BodyLength not a number": (HEAD + b"1a2\x0135=A\x01", NOT_FIX, len(HEAD) + 2, LIMIT),
    "BodyLength empty": (HEAD + b"\x0135=A\x01", NOT_FIX, len(HEAD) + 1, LIMIT),
    "BodyLength of 13 zeros": (HEAD + b"0" * 13 + b"5\x01", NOT_FIX, len(HEAD) + 13, LIMIT),
    # 9=10000 could still be a frame of 10,018 bytes; 9=100000 cannot
    "BodyLength of 100 MB": (HEAD + b"100000000\x0135=A\x01", TOO_LARGE, len(HEAD) + 6, LIMIT),
    "70 KB Logon": (
        logon_of_size(70_000),
        TOO_LARGE,
        end_of_body_length(logon_of_size(70_000)),
        LIMIT,
    ),
    "no SOH within the limit": (b"8=FIX" + b"x" * 300, TOO_LARGE, 256, 256),
    "no CheckSum where BodyLength says": (
        # the 10th byte of the body is where its SOH must be, and is "x"
        HEAD + b"10\x0135=A\x01" + b"x" * 100,
        GARBLED,
        len(HEAD) + 3 + 10,
        LIMIT,
    ),
    "CheckSum of four digits": (
        logon()[:-1] + b"5\x01",
        GARBLED,
        len(logon()),
        LIMIT,
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bytes_that_rule_a_logon_out_close_at_once(session: Session, name: str) -> None:
    data, reason, decisive, limit = REFUSED[name]
    conn = connection(session, limit)
    with capture_logs() as logs:
        # byte by byte, the slowest a peer can go: nothing is decided while
        # the bytes could still begin a Logon...
        for i in range(decisive - 1):
            assert feed(conn, data[i : i + 1]) == [], f"refused after {i + 1} bytes"
        # ...and the byte that rules it out closes the connection
        events = feed(conn, data[decisive - 1 : decisive])
        assert [type(e) for e in events] == [CloseConnection]
        assert events[0].reason == reason  # type: ignore[attr-defined]
        assert feed(conn, data[decisive:]) == []
    assert conn.data_to_send() == b""
    assert conn.session is None
    assert conn.next_deadline() is None
    assert not session.is_connected
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "connection_refused"
    assert (warning["peer"], warning["reason"]) == (PEER, reason)
    assert warning["detail"]
    assert len(warning["received"]) <= codec.LOGGED_CHARS + 3


def test_a_megabyte_of_random_bytes_closes_on_the_first_read(session: Session) -> None:
    junk = random.Random(20261203).randbytes(1 << 20)
    assert not junk.startswith(b"8")
    conn = connection(session)
    with capture_logs() as logs:
        events = feed(conn, junk[:65536])
        assert [type(e) for e in events] == [CloseConnection]
        assert events[0].reason == NOT_FIX  # type: ignore[attr-defined]
        for start in range(65536, len(junk), 65536):
            assert feed(conn, junk[start : start + 65536]) == []
    [warning] = logs
    # what the peer sent is shown, cut short
    assert warning["received"].endswith("...")
    assert len(warning["received"]) == codec.LOGGED_CHARS + 3


def test_long_client_text_is_cut_short_in_the_log(session: Session) -> None:
    stranger = b"S" * 500
    conn = connection(session)
    with capture_logs() as logs:
        events = feed(conn, logon_message(1, T0, sender=stranger))
    assert events[0].reason == "unknown session"  # type: ignore[attr-defined]
    [warning] = logs
    assert warning["sender_comp_id"] == "S" * codec.LOGGED_CHARS + "..."


# --------------------------------------------------------------------------
# a Logon is never refused early


def chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1


@PROPERTY
@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=8))
def test_a_logon_in_any_pieces_binds(sizes: list[int]) -> None:
    session = Session(acceptor_settings(), MemoryStore())
    conn = connection(session)
    events: list[Event] = []
    for piece in chunks(logon() + make_message(b"D", 2, T0, order_body("O2")), sizes):
        events += feed(conn, piece)
    assert event_kinds(events) == ["LoggedOn", "ApplicationMessage"]
    assert conn.session is session


def test_a_logon_right_at_the_limit_binds_and_one_byte_over_is_refused() -> None:
    raw = logon_of_size(300)
    limit = len(raw) - len(b"10=000\x01")  # everything before CheckSum
    for size, kinds in ((limit, ["LoggedOn"]), (limit - 1, ["CloseConnection"])):
        conn = connection(Session(acceptor_settings(), MemoryStore()), size)
        events: list[Event] = []
        for i in range(len(raw)):
            events += feed(conn, raw[i : i + 1])
        assert event_kinds(events) == kinds


# --------------------------------------------------------------------------
# the decoder's view: ``start_problem`` against what framing does

_PIECES = [b"", b"8", b"8=FIX", b"8=FIX.4.4\x01", b"9=", b"\x01", b"x", b"10=", b"0" * 5]


@PROPERTY
@given(
    st.sampled_from(_PIECES),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 4), st.binary(max_size=4)), max_size=4),
    st.sampled_from([*_PIECES, b"z" * 300]),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6),
)
def test_start_problem_is_never_behind_framing_nor_ahead_of_it(
    prefix: bytes, edits: list[tuple[int, int, bytes]], suffix: bytes, sizes: list[int]
) -> None:
    """Whatever the stream, fed in any pieces: as long as ``start_problem``
    finds nothing, the decoder drops nothing and holds no more than a frame
    can be; and a stream whose first frame is well formed is never refused."""
    limit = 256
    data = bytearray(logon())
    for at, cut, insert in edits:
        data[at : at + cut] = insert
    stream = prefix + bytes(data) + suffix

    decoder = FrameDecoder(limit)
    problem = None
    frame = None
    for piece in chunks(stream, sizes):
        decoder.feed(piece)
        problem = decoder.start_problem()
        if problem is not None:
            break
        frame = decoder.next_frame()
        assert decoder.discarded == 0
        assert decoder.garbage.runs == 0
        if frame is not None:
            break
        assert decoder.buffered() <= limit + len(b"10=000\x01")

    whole = FrameDecoder(limit)
    whole.feed(stream)
    first = whole.next_frame()
    well_formed = first is not None and whole.discarded == 0
    if well_formed:
        assert first is not None
        try:
            codec.parse_frame(first)
        except codec.GarbledMessage:
            well_formed = False
    if well_formed:
        assert problem is None
        assert frame == first
    if problem is not None:
        assert problem[0] in (codec.NOT_FIX, codec.TOO_LARGE, codec.GARBLED)
        assert not well_formed


# --------------------------------------------------------------------------
# runs of garbage, as the decoder counts them


def heartbeat(seq: int) -> bytes:
    return make_message(b"0", seq, T0)


junk = st.binary(min_size=0, max_size=40).filter(lambda b: b"8=FIX" not in b)


def decode(stream: bytes, sizes: list[int], search_only: bool = False) -> FrameDecoder:
    decoder = FrameDecoder()
    take = FrameDecoder.next_frame_by_search if search_only else FrameDecoder.next_frame
    for piece in chunks(stream, sizes):
        decoder.feed(piece)
        while take(decoder) is not None:
            pass
    return decoder


@PROPERTY
@given(
    st.lists(junk, min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=8),
)
def test_each_stretch_of_junk_between_messages_is_one_run(
    junks: list[bytes], sizes: list[int]
) -> None:
    stream = b"".join(j + heartbeat(i + 2) for i, j in enumerate(junks))
    runs = sum(1 for j in junks if j)
    for pieces in (sizes, [1], [len(stream)]):
        for search_only in (False, True):
            decoder = decode(stream, pieces, search_only)
            assert decoder.garbage.runs == runs
            assert decoder.discarded == sum(map(len, junks))


def test_a_run_ends_only_at_the_next_frame() -> None:
    oversized = HEAD + b"100000\x0135=0\x01" + b"x" * 200
    not_a_number = HEAD + b"12z\x0135=0\x0110=000\x01"
    stream = heartbeat(2) + b"junk" + oversized + not_a_number + b"8=F" + heartbeat(3)
    for pieces in ([len(stream)], [7], [1]):
        decoder = FrameDecoder(256)
        frames = []
        for piece in chunks(stream, pieces):
            decoder.feed(piece)
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
        assert frames == [heartbeat(2), heartbeat(3)]
        assert decoder.garbage.runs == 1


def test_decoders_sharing_a_count_add_up() -> None:
    shared = GarbageRuns()
    for _ in range(3):
        decoder = FrameDecoder()
        decoder.garbage = shared
        decoder.feed(b"junk" + heartbeat(2) + b"more junk")
        while decoder.next_frame() is not None:
            pass
    assert shared.runs == 6


# --------------------------------------------------------------------------
# after the Logon: everything ignored is counted


@pytest.fixture
def logged_on() -> SessionHarness:
    h = SessionHarness()
    h.logon()
    assert h.session.is_logged_on
    return h


def garbled_metric(session: Session) -> float:
    [family] = [
        m
        for m in SessionCollector(lambda: [session]).collect()
        if m.name == "fixgw_session_garbled_messages"
    ]
    [sample] = [s for s in family.samples if s.name.endswith("_total")]
    return sample.value


def test_every_kind_of_garbage_after_the_logon_counts_once(logged_on: SessionHarness) -> None:
    h = logged_on
    unsent = h.message(b"0", 99)  # a number never used: nothing below is processed
    wrong_checksum = unsent[:-4] + b"%03d\x01" % ((int(unsent[-4:-1]) + 1) % 256)
    # name -> (bytes, how many counts they make)
    cases: dict[str, tuple[bytes, int]] = {
        "junk": (b"\x00\xffnot fix at all\r\n", 1),
        "wrong CheckSum": (wrong_checksum, 1),
        "BodyLength not a number": (HEAD + b"4x\x0135=0\x0110=000\x01", 1),
        "over max_message_size": (HEAD + b"70000\x0135=0\x01" + b"y" * 70_010, 1),
        # as in QuickFIX's 2t_FirstThreeFieldsOutOfOrder: junk, then a frame
        "junk, then a wrong BodyLength": (b"35=0\x01" + with_body_length(unsent, 29), 2),
    }
    expected = 0
    for seq, (name, (garbage, counts)) in enumerate(cases.items(), start=2):
        events = h.feed(garbage, h.message(b"D", seq, order_body(f"O{seq}")))
        expected += counts
        assert len(app_messages(events)) == 1, name
        assert h.session.stats.garbled == expected, name
        assert h.session.is_logged_on
    assert h.store.next_target_seq == 2 + len(cases)
    assert garbled_metric(h.session) == expected
    [help_text] = [
        m.documentation
        for m in SessionCollector(lambda: [h.session]).collect()
        if m.name == "fixgw_session_garbled_messages"
    ]
    assert "per frame refused as garbled" in help_text
    assert "per run of bytes dropped" in help_text


def test_junk_trickled_a_byte_at_a_time_is_one_run(logged_on: SessionHarness) -> None:
    h = logged_on
    for byte in b"GET / HTTP/1.1\r\n\r\n":
        h.feed(bytes([byte]))
    # counted as soon as its first byte is dropped, not when it ends
    assert h.session.stats.garbled == 1
    events = h.feed(h.message(b"D", 2, order_body("O2")))
    assert len(app_messages(events)) == 1
    assert h.session.stats.garbled == 1


def test_counts_outlive_the_connection(logged_on: SessionHarness) -> None:
    h = logged_on
    h.feed(b"junk", h.message(b"0", 2))
    assert h.session.stats.garbled == 1
    h.session.connection_lost(h.now)
    h.connect()
    h.feed(logon_message(3, h.now))
    assert h.session.is_logged_on
    h.feed(b"more junk", h.message(b"0", 4))
    assert h.session.stats.garbled == 2
    assert garbled_metric(h.session) == 2


def test_garbage_after_a_logon_in_the_same_read_is_counted_on_the_session(
    session: Session,
) -> None:
    conn = connection(session)
    events = feed(conn, logon() + b"junk" + make_message(b"D", 2, T0, order_body("O2")))
    assert event_kinds(events) == ["LoggedOn", "ApplicationMessage"]
    assert session.stats.garbled == 1


def test_a_garbled_frame_is_logged_with_its_text_cut_short(logged_on: SessionHarness) -> None:
    h = logged_on
    frame = h.message(b"0", 2)
    long_checksum = frame[:-4] + b"9" * 1000 + b"\x01"
    with capture_logs() as logs:
        h.feed(long_checksum)
    [warning] = [e for e in logs if e["event"] == "garbled_message"]
    assert len(warning["reason"]) <= codec.LOGGED_CHARS + 3
    assert h.session.stats.garbled == 1
