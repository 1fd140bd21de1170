"""The dictionary's data format checks for numbers (INT and its kin, FLOAT
and its kin), property-tested against their plain definitions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.fix.dictionary import fix44

# Longer digit strings than a 64-bit integer or a double carries are refused.
INT_RE = re.compile(rb"-?[0-9]{1,18}\Z")
FLOAT_RE = re.compile(rb"-?(?=[0-9.]{1,19}\Z)[0-9]*\.?[0-9]*\Z")

QTY, SEQ_NUM, PRICE, HEART_BT_INT = 38, 34, 44, 108

number_texts = st.text(alphabet="0123456789.-+ eE", max_size=24).map(str.encode)
any_texts = st.one_of(number_texts, st.binary(max_size=24))


def int_ok(value: bytes) -> bool:
    return INT_RE.match(value) is not None


def float_ok(value: bytes) -> bool:
    return FLOAT_RE.match(value) is not None and any(c in b"0123456789" for c in value)


@settings(max_examples=400, deadline=None)
@given(any_texts)
def test_int_check_is_sign_and_up_to_18_digits(value: bytes) -> None:
    checks = fix44().format_checks
    assert checks[SEQ_NUM](value) == int_ok(value)
    assert checks[HEART_BT_INT](value) == int_ok(value)


@settings(max_examples=400, deadline=None)
@given(any_texts)
def test_float_check_is_sign_digits_and_at_most_one_point(value: bytes) -> None:
    checks = fix44().format_checks
    assert checks[PRICE](value) == float_ok(value)
    assert checks[QTY](value) == float_ok(value)


@pytest.mark.parametrize(
    ("value", "is_int", "is_float"),
    [
        (b"0", True, True),
        (b"-12", True, True),
        (b"1.5", False, True),
        (b".5", False, True),
        (b"5.", False, True),
        (b"-.5", False, True),
        (b".", False, False),
        (b"-", False, False),
        (b"", False, False),
        (b"1.2.3", False, False),
        (b"--1", False, False),
        (b"+1", False, False),
        (b" 1", False, False),
        (b"1e5", False, False),
        (b"9" * 18, True, True),
        (b"9" * 19, False, True),
        (b"-" + b"9" * 18, True, True),
        (b"9" * 17 + b".9", False, True),
        (b"9" * 18 + b".9", False, False),
    ],
)
def test_number_formats(value: bytes, is_int: bool, is_float: bool) -> None:
    checks = fix44().format_checks
    assert checks[SEQ_NUM](value) is is_int
    assert checks[PRICE](value) is is_float
