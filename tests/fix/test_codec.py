"""Tests for the FIX tag=value codec (gateway.fix.codec).

Parsing and encoding are cross-checked against simplefix, framing is
property-tested with hypothesis (random messages fed whole, in random chunks
and byte by byte, with junk, garbled frames and oversized frames in between),
and UTCTimestamp formatting and parsing are checked against the calendar.
"""

from __future__ import annotations

import calendar
import math
import re
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence

import pytest
import simplefix
from hypothesis import example, given, settings
from hypothesis import strategies as st
from simplefix.data import RAW_DATA_TAGS, RAW_LEN_TAGS

from gateway.fix import spec44
from gateway.fix.codec import (
    FixMessage,
    FrameDecoder,
    GarbledMessage,
    byte_sum,
    encode_fields,
    encode_message,
    encode_standard,
    finish_message,
    format_utc_timestamp,
    is_utc_date,
    is_utc_time,
    parse_frame,
    parse_frame_by_split,
    parse_utc_timestamp,
    scan_frame,
)

Field = tuple[int, bytes]

BEGIN = b"FIX.4.4"
SOH = b"\x01"
TS = b"20261125-10:00:00.000"
#: 2026-11-25 10:00:00 UTC
T_BASE = calendar.timegm((2026, 11, 25, 10, 0, 0, 0, 0, 0))

HEADER: list[Field] = [(34, b"2"), (49, b"CLIENT1"), (52, TS), (56, b"GATEWAY")]

# A RawData value holding everything a naive splitter trips on: SOH, '=',
# a CheckSum-looking field and a BeginString-looking field.
RAW_DATA_VALUE = b"\x01key=value\x0110=000\x018=FIX.4.4\x019=12\x01"

# name -> (MsgType, header fields other than 8/9/35, body fields in wire order)
REALISTIC: dict[str, tuple[bytes, list[Field], list[Field]]] = {
    "logon": (
        b"A",
        [(34, b"1"), (49, b"CLIENT1"), (52, TS), (56, b"GATEWAY")],
        [(98, b"0"), (108, b"30"), (141, b"Y"), (553, b"trader7"), (554, b"s3cr=t")],
    ),
    "heartbeat": (b"0", HEADER, []),
    "test_request": (b"1", HEADER, [(112, b"TEST-20261125-100000")]),
    "new_order_single": (
        b"D",
        HEADER,
        [
            (11, b"ORD-20261125-000001"),
            (1, b"ACC-7"),
            (21, b"1"),
            (55, b"EUR/USD"),
            (54, b"1"),
            (60, TS),
            (38, b"1000000"),
            (40, b"2"),
            (44, b"1.08325"),
            (59, b"0"),
            (18, b"1 2"),
        ],
    ),
    "execution_report": (
        b"8",
        [(34, b"7"), (49, b"GATEWAY"), (52, TS), (56, b"CLIENT1"), (115, b"DESK9")],
        [
            (37, b"GW-000000421"),
            (11, b"ORD-20261125-000001"),
            (17, b"EXEC-000000913"),
            (150, b"F"),
            (39, b"1"),
            (1, b"ACC-7"),
            (55, b"EUR/USD"),
            (167, b"FOR"),
            (54, b"1"),
            (38, b"1000000"),
            (40, b"2"),
            (44, b"1.08325"),
            (59, b"0"),
            (32, b"250000"),
            (31, b"1.08321"),
            (151, b"750000"),
            (14, b"250000"),
            (6, b"1.08321"),
            (60, TS),
            (15, b"EUR"),
            (120, b"USD"),
            (30, b"LP-ALPHA"),
            (382, b"2"),
            (375, b"LP-ALPHA"),
            (337, b"T1"),
            (375, b"LP-BETA"),
            (337, b"T2"),
            (58, b"partial fill, 2 venues"),
        ],
    ),
    "market_data_request_groups": (
        b"V",
        HEADER,
        [
            (262, b"MDR-1"),
            (263, b"1"),
            (264, b"0"),
            (265, b"1"),
            (267, b"2"),
            (269, b"0"),
            (269, b"1"),
            (146, b"3"),
            (55, b"EUR/USD"),
            (55, b"GBP/USD"),
            (55, b"USD/JPY"),
        ],
    ),
    "nested_parties_group": (
        b"D",
        HEADER,
        [
            (11, b"ORD-2"),
            (453, b"2"),
            (448, b"TRADER-7"),
            (447, b"D"),
            (452, b"11"),
            (802, b"1"),
            (523, b"desk 4"),
            (803, b"9"),
            (448, b"ACC-7"),
            (447, b"D"),
            (452, b"24"),
            (21, b"1"),
            (55, b"EUR/USD"),
            (54, b"2"),
            (60, TS),
            (38, b"500000"),
            (40, b"1"),
        ],
    ),
    "empty_values": (b"D", HEADER, [(11, b"ORD-3"), (1, b""), (58, b""), (55, b"EUR/USD")]),
    "raw_data_with_soh": (
        b"A",
        [(34, b"1"), (49, b"CLIENT1"), (52, TS), (56, b"GATEWAY")],
        [
            (98, b"0"),
            (108, b"30"),
            (95, b"%d" % len(RAW_DATA_VALUE)),
            (96, RAW_DATA_VALUE),
            (141, b"Y"),
        ],
    ),
}

# Tags the random-message strategies never use: the framing fields and the
# data fields, whose values are delimited by length rather than by SOH.
FRAMING_TAGS = frozenset({8, 9, 10, 35})
DATA_TAGS = frozenset(spec44.DATA_LENGTH_FIELDS) | frozenset(spec44.DATA_LENGTH_FIELDS.values())
SIMPLEFIX_DATA_TAGS = frozenset(RAW_LEN_TAGS) | frozenset(RAW_DATA_TAGS)
HEADER_TAGS = frozenset(spec44.HEADER) - FRAMING_TAGS - DATA_TAGS

PROPERTY = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------
# helpers


def realistic(name: str) -> bytes:
    msg_type, header, body = REALISTIC[name]
    return encode_message(BEGIN, msg_type, header, encode_fields(body))


def expected_fields(name: str) -> list[Field]:
    """What FixMessage.fields must hold: MsgType, the header ascending, then
    the body in wire order."""
    msg_type, header, body = REALISTIC[name]
    return [(35, msg_type), *sorted(header), *body]


def handmade_frame(
    payload: bytes,
    *,
    length: int | None = None,
    checksum: bytes | None = None,
    head: bytes | None = None,
) -> bytes:
    """A frame built without the codec: ``8=..|9=..|`` (or ``head``), the
    payload, ``10=..|``; BodyLength and CheckSum are right unless given."""
    if head is None:
        head = b"8=%b\x019=%d\x01" % (BEGIN, len(payload) if length is None else length)
    text = head + payload
    if checksum is None:
        checksum = b"%03d" % (sum(text) % 256)
    return text + b"10=" + checksum + SOH


def heartbeat(seq: int) -> bytes:
    return handmade_frame(b"35=0\x0134=%d\x0149=CLIENT1\x0152=%b\x0156=GATEWAY\x01" % (seq, TS))


def drain(decoder: FrameDecoder) -> list[bytes]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def decode_in_chunks(
    data: bytes, sizes: Sequence[int], decoder: FrameDecoder | None = None
) -> tuple[list[bytes], FrameDecoder]:
    """Feed ``data`` in pieces of the given sizes (cycled), draining frames
    after every piece."""
    decoder = FrameDecoder() if decoder is None else decoder
    frames: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        i += 1
        decoder.feed(data[pos : pos + n])
        pos += n
        frames.extend(drain(decoder))
    return frames, decoder


def simplefix_messages(data: bytes) -> list[list[Field]]:
    """Every message simplefix finds in ``data``, as (int tag, value) pairs
    including 8, 9 and 10."""
    parser = simplefix.FixParser(allow_empty_values=True)
    parser.append_buffer(data)
    messages = []
    while (msg := parser.get_message()) is not None:
        messages.append([(int(tag), value) for tag, value in msg.pairs])
    return messages


def split_frame(frame: bytes) -> tuple[bytes, int, bytes, bytes]:
    """(BeginString, BodyLength, body, CheckSum) read straight off the bytes."""
    assert frame.startswith(b"8=")
    first = frame.index(SOH)
    assert frame[first + 1 : first + 3] == b"9="
    second = frame.index(SOH, first + 1)
    assert frame.endswith(SOH)
    checksum_at = frame.rindex(b"\x0110=") + 1
    return (
        frame[2:first],
        int(frame[first + 3 : second]),
        frame[second + 1 : checksum_at],
        frame[checksum_at + 3 : -1],
    )


@pytest.fixture
def default_int_digit_limit() -> Iterator[None]:
    """Run with CPython's default limit on int() of long digit strings."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


# --------------------------------------------------------------------------
# strategies

tags = st.integers(min_value=1, max_value=9999).filter(
    lambda t: t not in FRAMING_TAGS and t not in DATA_TAGS
)
printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)  # '=' included, SOH not
values = st.text(printable, max_size=24).map(str.encode)
msg_types = st.text(
    st.characters(min_codepoint=0x30, max_codepoint=0x7A, categories=("Lu", "Ll", "Nd")),
    min_size=1,
    max_size=2,
).map(str.encode)
body_fields = st.lists(st.tuples(tags, values), max_size=16)
# simplefix knows more data fields (FIX 5.0 ones among them) than FIX 4.4 has
simplefix_tags = tags.filter(lambda t: t not in SIMPLEFIX_DATA_TAGS)
simplefix_body_fields = st.lists(st.tuples(simplefix_tags, values), max_size=16)
messages = st.tuples(msg_types, body_fields)
message_lists = st.lists(messages, min_size=1, max_size=6)
chunk_sizes = st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=12)
junk = st.binary(max_size=40).filter(lambda b: b"8=" not in b)


any_tags = st.one_of(
    st.integers(min_value=-20, max_value=20),
    st.integers(min_value=1, max_value=99_999),
    st.sampled_from(sorted(spec44.DATA_LENGTH_FIELDS)),
)
raw_texts = st.binary(max_size=12)  # SOH, '=', digits and anything else
mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert"]), st.integers(0, 400), raw_texts),
    max_size=3,
)


def outcome(parse: Callable[[bytes], FixMessage], frame: bytes) -> object:
    try:
        msg = parse(frame)
    except GarbledMessage as exc:
        return ("garbled", str(exc))
    return (msg.begin_string, msg.msg_type, msg.fields, msg.raw)


def mutate(frame: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    data = bytearray(frame)
    for kind, at, text in edits:
        at = at % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] = text[0] if text else (data[at] + 1) % 256
        elif kind == "cut":
            del data[at : at + len(text) + 1]
        else:
            data[at:at] = text
    return bytes(data)


def encode_plain(msg_type: bytes, fields: list[Field]) -> bytes:
    return encode_message(BEGIN, msg_type, [], encode_fields(fields))


# --------------------------------------------------------------------------
# cross-check with simplefix


@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_parse_frame_matches_simplefix(name: str) -> None:
    raw = realistic(name)
    ours = parse_frame(raw)
    [theirs] = simplefix_messages(raw)
    assert theirs[0] == (8, BEGIN)
    assert theirs[1] == (9, b"%d" % split_frame(raw)[1])
    assert theirs[-1] == (10, split_frame(raw)[3])
    assert ours.fields == theirs[2:-1]
    assert ours.fields == expected_fields(name)
    assert ours.begin_string == BEGIN
    assert ours.msg_type == REALISTIC[name][0]
    assert ours.raw == raw


def test_stream_of_realistic_messages_matches_simplefix() -> None:
    stream = b"".join(realistic(name) for name in sorted(REALISTIC))
    decoder = FrameDecoder()
    decoder.feed(stream)
    ours = [parse_frame(frame).fields for frame in drain(decoder)]
    theirs = [pairs[2:-1] for pairs in simplefix_messages(stream)]
    assert ours == theirs
    assert ours == [expected_fields(name) for name in sorted(REALISTIC)]


@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_simplefix_encoded_message_parses_and_matches_our_bytes(name: str) -> None:
    msg_type, header, body = REALISTIC[name]
    sf = simplefix.FixMessage()
    sf.append_pair(8, BEGIN, header=True)
    sf.append_pair(35, msg_type, header=True)
    for tag, value in sorted(header):
        sf.append_pair(tag, value, header=True)
    for tag, value in body:
        if tag == 96:
            continue  # written together with its length below
        if tag == 95:
            sf.append_data(95, 96, RAW_DATA_VALUE)
        else:
            sf.append_pair(tag, value)
    wire = sf.encode()
    assert parse_frame(wire).fields == expected_fields(name)
    assert wire == realistic(name)


@PROPERTY
@given(st.lists(st.tuples(msg_types, simplefix_body_fields), min_size=1, max_size=4))
def test_random_messages_parse_like_simplefix(msgs: list[tuple[bytes, list[Field]]]) -> None:
    stream = b"".join(encode_plain(mt, fields) for mt, fields in msgs)
    decoder = FrameDecoder()
    decoder.feed(stream)
    ours = [parse_frame(frame).fields for frame in drain(decoder)]
    theirs = [pairs[2:-1] for pairs in simplefix_messages(stream)]
    assert ours == theirs == [[(35, mt), *fields] for mt, fields in msgs]


# --------------------------------------------------------------------------
# framing


@PROPERTY
@given(message_lists, chunk_sizes)
def test_random_chunks_yield_the_same_frames(
    msgs: list[tuple[bytes, list[Field]]], sizes: list[int]
) -> None:
    raws = [encode_plain(mt, fields) for mt, fields in msgs]
    stream = b"".join(raws)

    whole = FrameDecoder()
    whole.feed(stream)
    in_one_piece = drain(whole)
    in_chunks, chunked = decode_in_chunks(stream, sizes)
    byte_by_byte, single = decode_in_chunks(stream, [1])

    assert in_one_piece == in_chunks == byte_by_byte == raws
    for decoder in (whole, chunked, single):
        assert decoder.discarded == 0
        assert decoder.oversized == 0
        assert decoder.buffered() == 0
    for frame, (mt, fields) in zip(in_one_piece, msgs, strict=True):
        assert parse_frame(frame).fields == [(35, mt), *fields]


@PROPERTY
@given(st.lists(st.tuples(junk, messages), min_size=1, max_size=5), chunk_sizes)
def test_junk_before_messages_is_discarded_and_counted(
    items: list[tuple[bytes, tuple[bytes, list[Field]]]], sizes: list[int]
) -> None:
    # Junk never holds "8=": like QuickFIX, the decoder takes any "8=" for the
    # start of a message.
    raws = [encode_plain(mt, fields) for _, (mt, fields) in items]
    stream = b"".join(j + raw for (j, _), raw in zip(items, raws, strict=True))
    junk_bytes = sum(len(j) for j, _ in items)
    for pieces in (sizes, [1], [len(stream)]):
        frames, decoder = decode_in_chunks(stream, pieces)
        assert frames == raws
        assert decoder.discarded == junk_bytes
        assert decoder.buffered() == 0


def decode_with(
    next_frame: Callable[[FrameDecoder], bytes | None], stream: bytes, sizes: list[int], limit: int
) -> tuple[list[bytes], tuple[int, int, int]]:
    decoder = FrameDecoder(limit)
    frames: list[bytes] = []
    pos = 0
    for i in range(len(stream)):
        size = sizes[i % len(sizes)]
        decoder.feed(stream[pos : pos + size])
        pos += size
        while (frame := next_frame(decoder)) is not None:
            frames.append(frame)
        if pos >= len(stream):
            break
    return frames, (decoder.discarded, decoder.oversized, decoder.buffered())


@PROPERTY
@given(
    st.lists(
        st.one_of(messages.map(lambda m: encode_plain(*m)), st.binary(max_size=30)), max_size=6
    ),
    mutations,
    chunk_sizes,
    st.sampled_from([256, 300, 65536]),
)
def test_shortcut_for_whole_frames_changes_nothing(
    parts: list[bytes], edits: list[tuple[str, int, bytes]], sizes: list[int], limit: int
) -> None:
    """Messages, junk and damaged bytes, fed in chunks: the decoder gives the
    frames, and keeps the counts, that its general reading alone gives."""
    stream = mutate(b"".join(parts), edits)
    assert decode_with(FrameDecoder.next_frame, stream, sizes, limit) == decode_with(
        FrameDecoder.next_frame_by_search, stream, sizes, limit
    )


def test_junk_without_a_message_is_dropped_but_a_trailing_8_is_kept() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\xff garbage 10=123\x01 ...8")
    assert decoder.next_frame() is None
    assert decoder.buffered() == 1
    decoder.feed(b"=FIX.4.4" + heartbeat(2)[len(b"8=FIX.4.4") :])
    assert drain(decoder) == [heartbeat(2)]
    assert decoder.discarded == len(b"\x00\xff garbage 10=123\x01 ...")


def test_message_split_at_every_position() -> None:
    raw = realistic("raw_data_with_soh") + realistic("execution_report")
    for cut in range(1, len(raw)):
        decoder = FrameDecoder()
        decoder.feed(raw[:cut])
        frames = drain(decoder)
        decoder.feed(raw[cut:])
        frames += drain(decoder)
        assert frames == [realistic("raw_data_with_soh"), realistic("execution_report")]


def _wrong_checksum() -> bytes:
    good = heartbeat(3)
    text = good[: -len(b"10=000\x01")]
    wrong = (sum(text) + 1) % 256
    return text + b"10=%03d\x01" % wrong


PAYLOAD = b"35=0\x0134=3\x0149=CLIENT1\x0152=%b\x0156=GATEWAY\x01" % TS

# name -> a frame parse_frame must refuse; each is cut by the decoder exactly
# where it ends, so the messages after it come through.
GARBLED: dict[str, bytes] = {
    "wrong CheckSum": _wrong_checksum(),
    "CheckSum not three digits": handmade_frame(PAYLOAD, checksum=b"12"),
    "CheckSum not a number": handmade_frame(PAYLOAD, checksum=b"ABC"),
    "BodyLength too short": handmade_frame(PAYLOAD, length=len(PAYLOAD) - 20),
    "BodyLength zero": handmade_frame(PAYLOAD, length=0),
    "tag not a number": handmade_frame(
        b"35=0\x0134=3\x0149garbled9=TW\x0152=%b\x0156=GATEWAY\x01" % TS
    ),
    "negative-looking tag with letters": handmade_frame(PAYLOAD + b"-x1=5\x01"),
    "empty tag": handmade_frame(PAYLOAD + b"=5\x01"),
    "field without '='": handmade_frame(PAYLOAD + b"garbled\x01"),
    "MsgType before BodyLength": handmade_frame(
        PAYLOAD[5:], head=b"8=%b\x0135=0\x019=%d\x01" % (BEGIN, len(PAYLOAD) - 5)
    ),
    "MsgSeqNum before MsgType": handmade_frame(
        b"34=3\x0135=0\x0149=CLIENT1\x0152=%b\x0156=GATEWAY\x01" % TS
    ),
    "no MsgType": handmade_frame(b"34=3\x0149=CLIENT1\x01"),
    "data field shorter than its length": handmade_frame(PAYLOAD + b"95=9\x0196=abc\x01"),
}


@pytest.mark.parametrize("name", sorted(GARBLED))
def test_garbled_frame_is_refused_and_the_next_message_comes_through(name: str) -> None:
    bad = GARBLED[name]
    with pytest.raises(GarbledMessage):
        parse_frame(bad)
    stream = bad + heartbeat(4) + heartbeat(5)
    for sizes in ([len(stream)], [7], [1]):
        frames, decoder = decode_in_chunks(stream, sizes)
        assert frames == [bad, heartbeat(4), heartbeat(5)]
        assert [parse_frame(f).get(34) for f in frames[1:]] == [b"4", b"5"]
        assert decoder.discarded == 0


def test_body_length_too_long_swallows_the_next_message() -> None:
    # What QuickFIX's 2m_BodyLengthValueNotCorrect expects: the frame runs on
    # to the first CheckSum after its declared end, the next message's.
    bad = handmade_frame(PAYLOAD, length=len(PAYLOAD) + 30)
    stream = bad + heartbeat(4) + heartbeat(5)
    for sizes in ([len(stream)], [11], [1]):
        frames, _ = decode_in_chunks(stream, sizes)
        assert frames == [bad + heartbeat(4), heartbeat(5)]
        with pytest.raises(GarbledMessage):
            parse_frame(frames[0])
        assert parse_frame(frames[1]).get(34) == b"5"


def test_body_length_not_a_number_resynchronises() -> None:
    bad = b"8=FIX.4.4\x019=6x\x01" + PAYLOAD + b"10=000\x01"
    frames, decoder = decode_in_chunks(bad + heartbeat(4), [len(bad) + 200])
    assert frames == [heartbeat(4)]
    assert decoder.discarded == len(bad)


def test_first_three_fields_out_of_order_as_in_the_acceptance_script() -> None:
    # 2t_FirstThreeFieldsOutOfOrder: "35=0" first is junk, then a frame whose
    # BodyLength does not match.
    bad = b"35=0\x01" + handmade_frame(PAYLOAD[5:], length=29)
    frames, decoder = decode_in_chunks(bad + heartbeat(4), [len(bad) + 200])
    assert frames[-1] == heartbeat(4)
    assert decoder.discarded == len(b"35=0\x01")
    with pytest.raises(GarbledMessage):
        parse_frame(frames[0])


# --------------------------------------------------------------------------
# max_message_size


def _oversized_without_begin_string_lookalikes() -> bytes:
    # No "8=" anywhere after the BeginString.
    payload = b"35=D\x0134=3\x0149=CLIENT1\x0152=%b\x0156=GATEWAY\x0111=ORD-9\x01" % TS
    payload += b"1=" + b"A" * 600 + b"\x01"
    assert b"8=" not in payload
    return handmade_frame(payload)


def test_declared_body_length_over_the_limit_is_dropped() -> None:
    big = _oversized_without_begin_string_lookalikes()
    stream = big + heartbeat(4)
    for sizes in ([len(stream)], [64], [1]):
        decoder = FrameDecoder(max_message_size=256)
        frames, _ = decode_in_chunks(stream, sizes, decoder)
        assert frames == [heartbeat(4)]
        assert decoder.oversized == 1
        assert decoder.discarded == len(big)


def test_oversized_message_is_dropped_as_soon_as_its_body_length_is_read() -> None:
    decoder = FrameDecoder(max_message_size=256)
    decoder.feed(b"8=FIX.4.4\x019=100000\x0135=D\x01")
    assert decoder.next_frame() is None
    assert decoder.oversized == 1
    assert decoder.buffered() == 0
    decoder.feed(b"11=ORD-9\x011=" + b"A" * 300 + b"\x0110=123\x01" + heartbeat(4))
    assert drain(decoder) == [heartbeat(4)]
    assert decoder.oversized == 1


def test_message_right_at_the_limit_passes() -> None:
    raw = heartbeat(4)
    limit = len(raw) - len(b"10=000\x01")  # everything up to CheckSum
    decoder = FrameDecoder(max_message_size=limit)
    decoder.feed(raw)
    assert drain(decoder) == [raw]
    decoder = FrameDecoder(max_message_size=limit - 1)
    decoder.feed(raw)
    assert drain(decoder) == []
    assert decoder.oversized == 1


# name -> (bytes that can never become a frame within max_message_size=128,
# whether the decoder counts them as oversized)
UNFINISHABLE: dict[str, tuple[bytes, bool]] = {
    "BodyLength with 20 digits": (b"8=FIX.4.4\x019=" + b"1" * 20 + b"\x0135=0\x01", False),
    "no CheckSum within the limit": (b"8=FIX.4.4\x019=10\x0135=0\x01" + b"x" * 200, True),
    "CheckSum value never ends": (b"8=FIX.4.4\x019=5\x0135=0\x0110=" + b"9" * 200, True),
    "CheckSum beyond the limit": (
        b"8=FIX.4.4\x019=5\x0135=0\x01" + b"x" * 150 + b"\x0110=000\x01",
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(UNFINISHABLE))
def test_frame_that_cannot_end_within_the_limit_is_dropped(name: str) -> None:
    bad, oversized = UNFINISHABLE[name]
    decoder = FrameDecoder(max_message_size=128)
    decoder.feed(bad)
    assert drain(decoder) == []
    assert decoder.oversized == int(oversized)
    assert decoder.buffered() <= 128 + 16
    decoder.feed(heartbeat(4))
    assert drain(decoder) == [heartbeat(4)]
    assert decoder.discarded == len(bad)


def test_missing_body_length_within_the_limit_resynchronises() -> None:
    decoder = FrameDecoder(max_message_size=128)
    decoder.feed(b"8=FIX.4.4\x01" + b"x" * 300)
    assert drain(decoder) == []
    assert decoder.buffered() < 128
    decoder.feed(heartbeat(4))
    assert drain(decoder) == [heartbeat(4)]


def test_next_message_survives_an_oversized_message_with_8_equals_in_its_body() -> None:
    body = [
        (11, b"ORD-9"),
        (55, b"EUR/USD"),
        (54, b"1"),
        (60, TS),
        (38, b"1000000"),
        (40, b"1"),
        (58, b"x" * 300),
        (453, b"1"),
        (448, b"TRADER-7"),
        (447, b"D"),
        (452, b"11"),
    ]
    big = encode_message(BEGIN, b"D", HEADER, encode_fields(body))
    decoder = FrameDecoder(max_message_size=256)
    decoder.feed(big + heartbeat(4))
    assert drain(decoder) == [heartbeat(4)]


@pytest.mark.parametrize(
    ("bad", "limit"),
    [
        pytest.param(
            b"8=FIX.4.4\x019=6x\x01" + PAYLOAD + b"10=000\x01", 65536, id="BodyLength not a number"
        ),
        pytest.param(_oversized_without_begin_string_lookalikes(), 256, id="oversized"),
    ],
)
def test_next_message_survives_a_read_ending_after_its_8(bad: bytes, limit: int) -> None:
    whole = FrameDecoder(max_message_size=limit)
    whole.feed(bad + heartbeat(4))
    assert drain(whole) == [heartbeat(4)]
    decoder = FrameDecoder(max_message_size=limit)
    decoder.feed(bad + heartbeat(4)[:1])
    frames = drain(decoder)
    decoder.feed(heartbeat(4)[1:])
    frames += drain(decoder)
    assert frames == [heartbeat(4)]


_JUNK_TOKENS = [
    b"8=",
    b"8=FIX.4.4\x01",
    b"8=FIX.4.4\x019=20\x01",
    b"\x0110=123\x01",
    b"\x019=",
    b"9=",
    b"\x0110=",
    b"10=",
    b"35=0\x01",
    b"\x01",
    b"=",
    b"0",
    b"7",
    b"12",
    b"99999",
    b"A",
    b"xyz",
]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_JUNK_TOKENS),
            st.binary(max_size=30),
            st.builds(heartbeat, st.integers(1, 99)),
        ),
        max_size=60,
    ),
    st.integers(min_value=64, max_value=512),
    chunk_sizes,
)
def test_memory_stays_bounded_on_random_junk(
    pieces: list[bytes], limit: int, sizes: list[int]
) -> None:
    stream = b"".join(pieces)
    decoder = FrameDecoder(max_message_size=limit)
    pos = 0
    i = 0
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        i += 1
        decoder.feed(stream[pos : pos + n])
        pos += n
        assert decoder.buffered() <= limit + n + 16
        for frame in drain(decoder):
            assert len(frame) <= limit + 16
            try:
                parse_frame(frame)
            except GarbledMessage:
                pass
        assert decoder.buffered() <= limit + 16


class PlainFraming:
    """The framing rules read the plain way: every search from the frame
    start over everything buffered, nothing remembered from one frame start
    to the next (which costs, for each frame start, time in proportion to
    everything buffered)."""

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.discarded = 0
        self.oversized = 0
        self.runs = 0
        self.in_garbage = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def _drop(self, n: int) -> None:
        if n > 0:
            if not self.in_garbage:
                self.in_garbage = True
                self.runs += 1
            self.discarded += n
            del self.buf[:n]

    def _partial_start(self) -> int:
        for n in range(min(4, len(self.buf)), 0, -1):
            if self.buf.endswith(b"8=FIX"[:n]):
                return n
        return 0

    def _resync(self) -> None:
        nxt = self.buf.find(b"8=FIX", 2)
        self._drop(nxt if nxt > 0 else len(self.buf) - self._partial_start())

    def next_frame(self) -> bytes | None:
        buf, limit = self.buf, self.limit
        while buf:
            start = buf.find(b"8=FIX")
            if start < 0:
                self._drop(len(buf) - self._partial_start())
                return None
            self._drop(start)
            lpos = buf.find(b"\x019=", 0, limit)
            if lpos < 0:
                if len(buf) < limit:
                    return None
                self._resync()
                continue
            lend = buf.find(SOH, lpos + 3, lpos + 16)
            if lend < 0:
                if len(buf) <= lpos + 16:
                    return None
                self._resync()
                continue
            digits = bytes(buf[lpos + 3 : lend])
            if not digits.isdigit():
                self._resync()
                continue
            body_end = lend + 1 + int(digits)
            if body_end > limit:
                self.oversized += 1
                self._resync()
                continue
            if len(buf) < body_end:
                return None
            cpos = buf.find(b"\x0110=", body_end - 1)
            end = buf.find(SOH, cpos + 4) if cpos >= 0 else -1
            if end < 0 and len(buf) < limit + 16:
                return None
            if end < 0 or end + 1 > limit + 16:
                self.oversized += 1
                self._resync()
                continue
            frame = bytes(buf[: end + 1])
            del buf[: end + 1]
            self.in_garbage = False
            return frame
        return None


def framing_of(
    feed: Callable[[bytes], None],
    next_frame: Callable[[], bytes | None],
    stream: bytes,
    sizes: list[int],
) -> list[bytes]:
    frames: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        i += 1
        feed(stream[pos : pos + n])
        pos += n
        while (frame := next_frame()) is not None:
            frames.append(frame)
    return frames


# What framing stumbles on: frame starts, BodyLength and CheckSum fields
# whole, in pieces and back to back, lone SOHs, runs with none of them (long
# enough that a field is looked for well past where it should be).
_FRAMING_PIECES = [
    b"8=FIX",
    b"8=FIX.4.4\x01",
    b"\x019=",
    b"\x01",
    b"\x0110=",
    b"\x0110=\x0110=",
    b"\x0110=000\x01",
    b"0",
    b"=",
    b"9" * 40,
]
framing_streams = st.lists(
    st.one_of(
        st.sampled_from(_FRAMING_PIECES),
        st.integers(0, 120).map(lambda n: b"8=FIX.4.4\x019=%d\x01" % n),
        st.integers(1, 100).map(lambda n: b"z" * n),
        st.builds(heartbeat, st.integers(1, 99)),
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(
    framing_streams,
    st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=4),
    st.sampled_from([40, 64, 100, 160, 300, 65536]),
)
# a BodyLength field cut by the end of a read, well past the BeginString
@example(b"8=FIX" + b"z" * 40 + b"\x019=5\x0135=0\x0110=000\x01", [46], 65536)
# a BodyLength field found far past frame starts given up on, then left behind
@example(b"8=FIX" * 5 + b"8=FIX.4.4\x019=100\x018=FIX", [8], 40)
# a CheckSum field found for a frame start given up on, right where the
# body of the next frame start ends, its SOH far on
@example(
    b"8=FIX.4.4\x019=40\x01zzzz8=FIX.4.4\x019=57\x01"
    + b"z" * 56
    + b"\x0110="
    + b"9" * 36
    + b"\x0110=000\x01",
    [200],
    100,
)
# the end of the body at the second of two CheckSum fields back to back
@example(b"8=FIX.4.4\x019=9\x0135=0\x0110=\x0110=" + b"9" * 40 + b"\x0110=000\x01", [200], 300)
def test_framing_remembers_nothing_it_should_not(
    stream: bytes, sizes: list[int], limit: int
) -> None:
    """The decoder, which remembers what it searched so as not to search it
    again for the next frame start, frames hostile streams fed in chunks as
    the plain reading does: the same frames, the same bytes dropped."""
    plain = PlainFraming(limit)
    expected = framing_of(plain.feed, plain.next_frame, stream, sizes)
    for shortcut in (True, False):
        decoder = FrameDecoder(limit)
        take = decoder.next_frame if shortcut else decoder.next_frame_by_search
        assert framing_of(decoder.feed, take, stream, sizes) == expected
        assert decoder.discarded == plain.discarded
        assert decoder.oversized == plain.oversized
        assert decoder.garbage.runs == plain.runs
        assert decoder.buffered() == len(plain.buf)


def _repeated(unit: bytes, size: int = 256 * 1024) -> bytes:
    return unit * (size // len(unit))


# name -> one read from a peer that costs the plain reading time in proportion
# to the whole read for each frame start in it (0.1 s to 2.6 s of the event
# loop for one read of 256 KB)
HOSTILE_READS: dict[str, bytes] = {
    "frames with a wrong BodyLength": _repeated(b"8=FIX\x019=1\x01AB\x0110=0\x01"),
    "junk between frames": _repeated(b"x" + handmade_frame(b"35=0\x01")),
    "frame starts and nothing else": _repeated(b"8=FIX"),
    "BodyLengths and no CheckSum": _repeated(b"8=FIX\x019=1\x01"),
    "a CheckSum far on that never ends": (
        _repeated(b"8=FIX\x019=1\x01", 180 * 1024) + b"\x0110=" + b"9" * 70_000
    ),
    "BodyLengths long and short before it": (
        b"".join(b"8=FIX\x019=%d\x01" % (60_000 if i % 2 else 1) for i in range(15_000))
        + b"\x0110="
        + b"9" * 70_000
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_READS))
def test_work_on_a_hostile_read_is_linear_in_its_size(name: str) -> None:
    """However many frame starts a read holds, the decoder searches and
    copies each byte a few times at most, not once per frame start."""
    data = HOSTILE_READS[name]
    for sizes in ([len(data)], [4096]):
        decoder = FrameDecoder()
        frames, _ = decode_in_chunks(data, sizes, decoder)
        assert decoder.scanned <= 4 * len(data)
        # every byte handed on, dropped, or still buffered (less than a frame)
        assert sum(map(len, frames)) + decoder.discarded + decoder.buffered() == len(data)
        assert decoder.buffered() <= decoder.max_message_size + 16


@pytest.mark.parametrize("head", [b"8=FIX.4.4\x019=5\x01", b"8=FIX"])
def test_work_on_a_frame_trickling_in_is_linear_in_its_size(head: bytes) -> None:
    """A frame start followed by bytes arriving one at a time, no CheckSum
    (or no BodyLength) among them: each read is searched, not everything
    buffered again."""
    data = head + b"z" * 20_000
    decoder = FrameDecoder()
    for pos in range(len(data)):
        decoder.feed(data[pos : pos + 1])
        assert decoder.next_frame() is None
    assert decoder.buffered() == len(data)
    assert decoder.scanned <= 5 * len(data)


def test_take_rest_hands_over_the_buffer() -> None:
    decoder = FrameDecoder()
    decoder.feed(heartbeat(2) + heartbeat(3)[:20])
    assert decoder.next_frame() == heartbeat(2)
    assert decoder.take_rest() == heartbeat(3)[:20]
    assert decoder.buffered() == 0
    assert decoder.next_frame() is None


@pytest.mark.usefixtures("default_int_digit_limit")
def test_tag_with_too_many_digits_is_garbled() -> None:
    frame = handmade_frame(PAYLOAD + b"1" * 5000 + b"=x\x01")
    decoder = FrameDecoder()
    decoder.feed(frame)
    assert drain(decoder) == [frame]
    with pytest.raises(GarbledMessage):
        parse_frame(frame)


def test_a_tag_of_thousands_of_digits_is_not_read_as_a_number() -> None:
    """The scan gives up on a tag once it has more digits than any tag may
    have: a frame of one 60,000-digit tag costs a look at its bytes, not a
    60,000-digit number built digit by digit (time growing with the square
    of the digits when interpreted: most of a second for one such frame of
    the default max_message_size, all of it the event loop's)."""
    frame = handmade_frame(PAYLOAD + b"1" * 60_000 + b"=x\x01")
    tracemalloc.start()
    try:
        assert scan_frame(frame) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000  # the number, had it been built, takes 25 KB
    with pytest.raises(GarbledMessage):
        parse_frame(frame)


@pytest.mark.usefixtures("default_int_digit_limit")
def test_data_length_with_too_many_digits_is_not_taken_as_a_length() -> None:
    # no int() of a 5000-digit number: the field is kept as text, and the
    # dictionary check then rejects it as a data format problem
    frame = handmade_frame(PAYLOAD + b"95=" + b"9" * 5000 + b"\x0196=x\x01")
    msg = parse_frame(frame)
    assert msg.get(95) == b"9" * 5000
    assert msg.get(96) == b"x"


# --------------------------------------------------------------------------
# parse_frame details


def test_fix_message_get_answers_the_first_occurrence() -> None:
    msg = parse_frame(realistic("market_data_request_groups"))
    assert msg.get(55) == b"EUR/USD"
    assert msg.get(35) == b"V"
    assert msg.get(7) is None
    assert msg.get(7, b"none") == b"none"
    assert 269 in msg
    assert 8 not in msg
    assert 10 not in msg
    assert isinstance(msg, FixMessage)
    assert "35=V|" in repr(msg)


def test_value_may_contain_equals_signs() -> None:
    msg = parse_frame(encode_plain(b"D", [(58, b"a=b=c"), (1, b"=")]))
    assert msg.fields == [(35, b"D"), (58, b"a=b=c"), (1, b"=")]


def test_tags_outside_the_cached_range_parse() -> None:
    msg = parse_frame(encode_plain(b"0", [(0, b"HI"), (-1, b"HI"), (12345, b"x")]))
    assert msg.fields == [(35, b"0"), (0, b"HI"), (-1, b"HI"), (12345, b"x")]


def test_data_field_length_is_trusted_over_soh() -> None:
    msg = parse_frame(realistic("raw_data_with_soh"))
    assert msg.get(96) == RAW_DATA_VALUE
    assert msg.get(141) == b"Y"


@pytest.mark.parametrize(
    "frame",
    [
        heartbeat(2)[:-1],  # no final SOH
        b"8=FIX.4.4\x019=0\x0110=000\x01",  # no MsgType
        b"8=FIX.4.4\x019=5\x0135=0\x0111=x\x01",  # no CheckSum
        handmade_frame(PAYLOAD + b"95=3\x0196=abc\x01garbage\x01"),  # no '=' after data
        handmade_frame(PAYLOAD + b"95=3\x0196=abcd\x01"),  # data longer than its length
        handmade_frame(PAYLOAD, length=len(PAYLOAD) + 1),
        handmade_frame(PAYLOAD, head=b"8=FIX.4.4\x019=-%d\x01" % len(PAYLOAD)),
    ],
)
def test_malformed_frame_is_garbled(frame: bytes) -> None:
    with pytest.raises(GarbledMessage):
        parse_frame(frame)


# --------------------------------------------------------------------------
# the scan against the split-based reading


@PROPERTY
@given(
    msg_types,
    st.lists(st.tuples(any_tags, st.one_of(values, raw_texts)), max_size=12),
    mutations,
    st.booleans(),
)
def test_scan_and_split_read_every_frame_alike(
    msg_type: bytes, fields: list[Field], edits: list[tuple[str, int, bytes]], fix_up: bool
) -> None:
    """Whatever the bytes, parse_frame answers what the split-based reading
    does: the same message, or GarbledMessage with the same reason."""
    payload = b"35=%b\x01" % msg_type + b"".join(b"%d=%b\x01" % (t, v) for t, v in fields)
    frame = mutate(handmade_frame(payload), edits)
    if fix_up and frame.startswith(b"8=FIX.4.4\x019="):
        # keep the mutated body but make BodyLength and CheckSum right again
        body = frame[frame.find(SOH, 10) + 1 :]
        body = body[: body.rfind(b"10=")] if b"10=" in body else body
        frame = handmade_frame(body)
    assert outcome(parse_frame, frame) == outcome(parse_frame_by_split, frame)
    scanned = scan_frame(frame)
    if scanned is not None:
        assert outcome(lambda _: scanned, frame) == outcome(parse_frame_by_split, frame)


@pytest.mark.parametrize("name", sorted(n for n in REALISTIC if n != "raw_data_with_soh"))
def test_plain_messages_take_the_scan(name: str) -> None:
    msg = scan_frame(realistic(name))
    assert msg is not None
    assert msg.fields == expected_fields(name)


@pytest.mark.parametrize(
    "frame",
    [
        realistic("raw_data_with_soh"),  # a data field
        encode_plain(b"0", [(-1, b"HI")]),  # a signed tag
        encode_plain(b"0", [(1234567890, b"x")]),  # ten digits
        handmade_frame(PAYLOAD, checksum=b"12"),
        handmade_frame(PAYLOAD, head=b"8=FIX.4.4\x019=%d \x01" % len(PAYLOAD)),
    ],
)
def test_anything_unusual_is_left_to_the_split_reading(frame: bytes) -> None:
    assert scan_frame(frame) is None
    assert outcome(parse_frame, frame) == outcome(parse_frame_by_split, frame)


# --------------------------------------------------------------------------
# encoding


def test_encode_message_orders_header_then_body_as_given() -> None:
    header = [(56, b"GATEWAY"), (52, TS), (34, b"12"), (49, b"CLIENT1"), (115, b"ON-BEHALF")]
    body = [(60, TS), (55, b"EUR/USD"), (54, b"1"), (11, b"ORD-1"), (453, b"1"), (448, b"P")]
    raw = encode_message(BEGIN, b"D", header, encode_fields(body))
    tags = [int(f.split(b"=", 1)[0]) for f in raw.split(SOH)[:-1]]
    assert tags == [8, 9, 35, 34, 49, 52, 56, 115, 60, 55, 54, 11, 453, 448, 10]


def test_encode_message_body_length_and_checksum() -> None:
    raw = realistic("new_order_single")
    begin, length, body, checksum = split_frame(raw)
    assert begin == BEGIN
    assert length == len(body)
    assert body.startswith(b"35=D\x01")
    assert body.endswith(SOH)
    assert checksum == b"%03d" % (sum(raw[: raw.rindex(b"10=")]) % 256)


def test_checksum_is_always_three_digits() -> None:
    checksums = [split_frame(encode_plain(b"0", [(112, b"%d" % n)]))[3] for n in range(300)]
    assert all(len(cs) == 3 and cs.isdigit() for cs in checksums)
    assert any(cs.startswith(b"00") for cs in checksums)


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=3000))
def test_byte_sum_is_the_plain_sum_modulo_256(data: bytes, end: int) -> None:
    end = min(end, len(data))
    assert byte_sum(data, end) == sum(data[:end]) % 256


def test_byte_sum_at_the_chunk_edges_with_the_largest_bytes() -> None:
    for n in (255, 256, 257, 511, 512, 513, 4096):
        data = b"\xff" * n
        assert byte_sum(data, n) == (255 * n) % 256


def test_encode_fields() -> None:
    assert encode_fields([(11, b"A"), (38, b"100"), (58, b"")]) == b"11=A\x0138=100\x0158=\x01"
    assert encode_fields([]) == b""


header_fields = st.lists(st.tuples(st.sampled_from(sorted(HEADER_TAGS)), values), max_size=8)


@PROPERTY
@given(msg_types, header_fields, simplefix_body_fields)
def test_encoded_messages_read_back_identically(
    msg_type: bytes, header: list[Field], body: list[Field]
) -> None:
    raw = encode_message(BEGIN, msg_type, header, encode_fields(body))
    begin, length, payload, checksum = split_frame(raw)
    assert begin == BEGIN
    assert length == len(payload)
    assert int(checksum) == sum(raw[: len(raw) - len(b"10=000\x01")]) % 256
    expected = [(35, msg_type), *sorted(header), *body]
    assert parse_frame(raw).fields == expected
    [theirs] = simplefix_messages(raw)
    assert theirs[2:-1] == expected
    assert finish_message(BEGIN, payload) == raw


comp_ids = st.binary(min_size=1, max_size=40).filter(lambda v: b"\x01" not in v)


@PROPERTY
@given(
    msg_types,
    st.integers(min_value=1, max_value=2**31),
    comp_ids,
    comp_ids,
    simplefix_body_fields,
)
@example(b"8", 9, b"GW", b"CL", [])
@example(b"8", 10, b"GW", b"CL", [(58, b"\xff" * 600)])
def test_a_standard_header_written_in_one_piece_is_the_payload_finished(
    msg_type: bytes, seq: int, sender: bytes, target: bytes, body: list[Field]
) -> None:
    """The one-piece writing counts BodyLength before it writes: the same
    bytes as the payload written and then finished, read back by simplefix."""
    stamp = format_utc_timestamp(1_765_000_000.123 + seq)
    encoded = encode_fields(body)
    raw = encode_standard(BEGIN, msg_type, seq, sender, stamp, target, encoded)
    payload = b"35=%b\x0134=%d\x0149=%b\x0152=%b\x0156=%b\x01%b" % (
        msg_type,
        seq,
        sender,
        stamp,
        target,
        encoded,
    )
    assert raw == finish_message(BEGIN, payload)
    [theirs] = simplefix_messages(raw)
    assert theirs[2:5] == [(35, msg_type), (34, b"%d" % seq), (49, sender)]


# --------------------------------------------------------------------------
# UTCTimestamp

_TS_LAYOUT = re.compile(rb"\d{8}-\d{2}:\d{2}:\d{2}\.\d{3}\Z")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T_BASE, b"20261125-10:00:00.000"),
        (T_BASE + 0.5, b"20261125-10:00:00.500"),
        (T_BASE + 59.125, b"20261125-10:00:59.125"),
        (T_BASE + 14 * 3600 - 0.25, b"20261125-23:59:59.750"),
        (calendar.timegm((2024, 2, 29, 0, 0, 0, 0, 0, 0)), b"20240229-00:00:00.000"),
        (0.0, b"19700101-00:00:00.000"),
    ],
)
def test_format_utc_timestamp(now: float, expected: bytes) -> None:
    assert format_utc_timestamp(now) == expected


def test_format_utc_timestamp_across_seconds_and_backwards() -> None:
    assert format_utc_timestamp(T_BASE + 0.75) == b"20261125-10:00:00.750"
    assert format_utc_timestamp(T_BASE + 1.0) == b"20261125-10:00:01.000"
    assert format_utc_timestamp(T_BASE + 0.5) == b"20261125-10:00:00.500"
    assert format_utc_timestamp(T_BASE - 86400) == b"20261124-10:00:00.000"


@PROPERTY
@given(st.floats(min_value=0, max_value=4_102_444_799.999, allow_nan=False))
@example(2199023255.851999)  # .852 after the microsecond of slack
def test_format_then_parse_keeps_the_millisecond(now: float) -> None:
    text = format_utc_timestamp(now)
    assert _TS_LAYOUT.match(text)
    assert text[:17] == time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(int(now))).encode()
    back = parse_utc_timestamp(text)
    assert back is not None
    # milliseconds are truncated, never rounded up, but for the microsecond
    # of slack; bounds computed in doubles are good to a few units in the
    # last place of an epoch time
    slack = 1e-6 + 4 * math.ulp(now)
    assert now - 0.001 - slack <= back <= now + slack


def test_parse_then_format_gives_the_same_text() -> None:
    for ms in range(1000):
        text = b"20261125-10:00:00.%03d" % ms
        back = parse_utc_timestamp(text)
        assert back is not None
        assert format_utc_timestamp(back) == text


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        (b"20261125-10:00:00", 0.0),
        (b"20261125-10:00:00.123", 0.123),
        (b"20261125-10:00:00.123456", 0.123456),
        (b"20261125-10:00:00.123456789", 0.123456789),
        (b"20261125-23:59:59.999", 50399.999),
        (b"20261125-10:00:60", 60.0),  # leap second
    ],
)
def test_parse_utc_timestamp_accepts(text: bytes, offset: float) -> None:
    value = parse_utc_timestamp(text)
    assert value is not None
    assert value == pytest.approx(T_BASE + offset, abs=1e-6)


def test_parse_utc_timestamp_leap_day() -> None:
    assert parse_utc_timestamp(b"20240229-12:00:00") == calendar.timegm(
        (2024, 2, 29, 12, 0, 0, 0, 0, 0)
    )
    assert parse_utc_timestamp(b"20250229-12:00:00") is None


@pytest.mark.parametrize(
    "text",
    [
        b"20010230-10:00:00",  # 30 February
        b"20261131-10:00:00",  # 31 November
        b"20261325-10:00:00",  # month 13
        b"20260025-10:00:00",  # month 0
        b"20261100-10:00:00",  # day 0
        b"00001125-10:00:00",  # year 0
        b"20261125-25:00:00",
        b"20261125-24:00:00",
        b"20261125-10:60:00",
        b"20261125-10:00:61",
        b"20261125",
        b"20261125-",
        b"20261125-10:00",
        b"20261125-10",
        b"-10:00:00",
        b"2026112-10:00:00",
        b"20261125 10:00:00",
        b"20261125-10:00:00.",
        b"20261125-10:00:00.1",
        b"20261125-10:00:00.12",
        b"20261125-10:00:00.1234",
        b"20261125-10:00:00.1234567890",
        b"20261125-10:00:00Z",
        b"20261125-10:00:00.000Z",
        b"20261125-1a:00:00",
        b"",
    ],
)
def test_parse_utc_timestamp_rejects(text: bytes) -> None:
    assert parse_utc_timestamp(text) is None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (b"20261125", True),
        (b"20240229", True),
        (b"20250229", False),
        (b"2026112", False),
        (b"20261125-10:00:00", False),
    ],
)
def test_is_utc_date(text: bytes, ok: bool) -> None:
    assert is_utc_date(text) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (b"10:00:00", True),
        (b"23:59:60.500", True),
        (b"10:00:00.123456", True),
        (b"24:00:00", False),
        (b"10:60:00", False),
        (b"10:00", False),
        (b"10:00:00.12", False),
    ],
)
def test_is_utc_time(text: bytes, ok: bool) -> None:
    assert is_utc_time(text) is ok
