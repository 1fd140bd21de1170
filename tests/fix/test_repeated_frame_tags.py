"""BeginString (8), BodyLength (9) and CheckSum (10) a second time among a
message's fields: the frame is whole (its own 8, 9 and 10 are where they
belong), but the message carries the tag twice, which FIX rejects as
TagAppearsMoreThanOnce (373=13) whatever the options."""

from __future__ import annotations

import itertools

import pytest
from session_helpers import SessionHarness, app_messages, order_body
from test_validation import HEADER, NEW_ORDER_SINGLE

from gateway.fix.codec import encode_fields, encode_message, parse_frame
from gateway.fix.dictionary import fix44
from gateway.fix.validation import Problem, SessionRejectReason, ValidationOptions, Validator

R = SessionRejectReason
Field = tuple[int, bytes]

ALL_OPTIONS = [
    ValidationOptions(fields_out_of_order=o, fields_have_values=v, user_defined_fields=u)
    for o, v, u in itertools.product((True, False), repeat=3)
]

# (header fields, body fields, the tag reported)
CASES: dict[str, tuple[list[Field], list[Field], int]] = {
    "BeginString in the header": ([(8, b"FIX.4.4"), *HEADER], NEW_ORDER_SINGLE, 8),
    "BodyLength in the header": ([(9, b"120"), *HEADER], NEW_ORDER_SINGLE, 9),
    "CheckSum before the CheckSum": (HEADER, [*NEW_ORDER_SINGLE, (10, b"123")], 10),
    "BodyLength and CheckSum": ([(9, b"120"), *HEADER], [*NEW_ORDER_SINGLE, (10, b"123")], 9),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("options", ALL_OPTIONS, ids=repr)
def test_framing_tag_twice_is_a_repeated_tag(name: str, options: ValidationOptions) -> None:
    header, body, tag = CASES[name]
    msg = parse_frame(encode_message(b"FIX.4.4", b"D", header, encode_fields(body)))
    validator = Validator(fix44(), options)
    assert validator.validate(msg) == Problem(R.TAG_APPEARS_MORE_THAN_ONCE, tag)
    assert validator.validate_full(msg) == Problem(R.TAG_APPEARS_MORE_THAN_ONCE, tag)


def test_order_with_a_second_checksum_is_rejected_not_taken() -> None:
    h = SessionHarness()
    h.logon()
    events = h.feed(h.message(b"D", 2, order_body("ORD-1") + b"10=000\x01"))
    assert app_messages(events) == []
    [reject] = h.sent()
    assert reject.msg_type == b"3"
    assert reject.get(45) == b"2"
    assert reject.get(371) == b"10"
    assert reject.get(372) == b"D"
    assert reject.get(373) == b"13"
    assert h.store.next_target_seq == 3  # a rejected message counts
    # the same order without it goes through
    events = h.feed(h.message(b"D", 3, order_body("ORD-1")))
    assert [m.get(11) for m in app_messages(events)] == [b"ORD-1"]
