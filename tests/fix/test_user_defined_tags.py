"""User-defined tags on a session that does not validate them
(ValidateUserDefinedFields off): messages carrying them are accepted, and
what the validator keeps does not grow with the tags peers make up."""

from __future__ import annotations

from gateway.fix.codec import encode_fields, encode_message, parse_frame
from gateway.fix.dictionary import fix44
from gateway.fix.validation import ValidationOptions, Validator

TS = b"20261125-10:00:00.000"
HEADER = [(34, b"2"), (49, b"CLIENT1"), (52, TS), (56, b"GATEWAY")]
TAGS_PER_MESSAGE = 4000


def test_unvalidated_user_defined_tags_are_not_kept() -> None:
    dd = fix44()
    validator = Validator(dd, ValidationOptions(user_defined_fields=False))
    for first in range(5000, 5000 + 10 * TAGS_PER_MESSAGE, TAGS_PER_MESSAGE):
        body = [(tag, b"x") for tag in range(first, first + TAGS_PER_MESSAGE)]
        raw = encode_message(b"FIX.4.4", b"0", HEADER, encode_fields(body))
        assert len(raw) < 65536  # what a session takes in one message
        assert validator.validate(parse_frame(raw)) is None
    # 40,000 distinct tags seen: what is kept is bounded by the dictionary
    assert len(validator._fast_tables._checks) <= len(dd.field_names)


def test_known_user_defined_range_tags_keep_their_checks() -> None:
    # a tag of the dictionary still has its value checked on that path
    validator = Validator(fix44(), ValidationOptions(user_defined_fields=False))
    good = encode_message(b"FIX.4.4", b"0", HEADER, encode_fields([(5001, b"x"), (112, b"T")]))
    assert validator.validate(parse_frame(good)) is None
    assert validator._fast_tables.check(54) is validator._fast_tables.check(54)
    assert validator._fast_tables.check(54) is not None
