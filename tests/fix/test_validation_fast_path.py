"""The fast accept path of Validator.validate (gateway.fix.validation).

The fast path may only ever conclude "valid"; every Problem comes from the
full check.  So, whatever the message and the options, ``validate`` must
return exactly what ``validate_full`` returns.  Messages are built on the
wire with the codec, as in test_validation.py, from whose tables the valid
messages are taken.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_validation import (
    EXECUTION_REPORT,
    FIRST_PROBLEM,
    HEADER,
    LOGON,
    MARKET_DATA_REQUEST,
    NEW_ORDER_LIST,
    NEW_ORDER_SINGLE,
    OPTIONS,
    PARTIES,
    REJECTS,
    TS,
    VALID,
    without,
)

from gateway.fix.codec import FixMessage, GarbledMessage, encode_fields, encode_message, parse_frame
from gateway.fix.dictionary import GroupDef, fix44
from gateway.fix.validation import Problem, SessionRejectReason, ValidationOptions, Validator

Field = tuple[int, bytes]

ALL_OPTIONS = [
    ValidationOptions(fields_out_of_order=o, fields_have_values=v, user_defined_fields=u)
    for o, v, u in itertools.product((True, False), repeat=3)
]
VALIDATORS = {options: Validator(fix44(), options) for options in ALL_OPTIONS}
DEFAULT = VALIDATORS[ValidationOptions()]


def message(msg_type: bytes, fields: list[Field]) -> FixMessage:
    """``fields`` (header, body and trailer alike) on the wire in the order
    given, right after MsgType, then parsed."""
    return parse_frame(encode_message(b"FIX.4.4", msg_type, [], encode_fields(fields)))


def wire_message(msg_type: bytes, header: list[Field], body: list[Field]) -> FixMessage:
    """As test_validation.py builds them: header fields ascending, then body."""
    return parse_frame(encode_message(b"FIX.4.4", msg_type, header, encode_fields(body)))


EXECUTION_REPORT_WITHOUT_GROUPS = without(
    EXECUTION_REPORT, 382, 375, 337, 453, 448, 447, 452, 802, 523, 803
)
OPTIONAL_HEADER: list[Field] = [(43, b"Y"), (97, b"N"), (115, b"DESK9"), (122, TS)]
HOPS: list[Field] = [(627, b"2"), (628, b"HOP1"), (629, TS), (628, b"HOP2")]

# (MsgType, fields after MsgType in wire order)
BASES: list[tuple[bytes, list[Field]]] = [
    (b"D", HEADER + NEW_ORDER_SINGLE),
    (b"D", HEADER + OPTIONAL_HEADER + NEW_ORDER_SINGLE),
    (b"D", HEADER + NEW_ORDER_SINGLE + PARTIES),
    (b"D", HEADER + HOPS + NEW_ORDER_SINGLE),
    (b"D", [*HEADER, *NEW_ORDER_SINGLE, (18, b"1 2 G"), (386, b"1"), (336, b"PRE-OPEN")]),
    (b"8", HEADER + EXECUTION_REPORT),
    (b"8", HEADER + EXECUTION_REPORT_WITHOUT_GROUPS),
    (b"0", HEADER),
    (b"0", [*HEADER, (112, b"T1")]),
    (b"1", [*HEADER, (112, b"T1")]),
    (b"A", HEADER + LOGON),
    (b"V", HEADER + MARKET_DATA_REQUEST),
    (b"E", HEADER + NEW_ORDER_LIST),
]

MSG_TYPES = [b"D", b"8", b"0", b"1", b"A", b"V", b"E", b"ZZ"]

VALUES: list[bytes] = [
    b"",
    b"0",
    b"1",
    b"2",
    b"3",
    b"-1",
    b"Y",
    b"N",
    b"Z",
    b"D",
    b"XX",
    b"3O",
    b"+30",
    b"1.5",
    b"-0.5",
    b"1.2.3",
    b"1e6",
    b".",
    b"1 2",
    b"1  2",
    b"1 T",
    b"EUR/USD",
    b"1" * 19,
    TS,
    b"20261125-10:00:00",
    b"20261125-10:00:00.123456",
    b"20261125-25:00:00",
    b"20260230-10:00:00",
    b"20261125-10:00:00.12",
    b"20261125-10:00",
]
values = st.one_of(
    st.sampled_from(VALUES),
    st.binary(max_size=6).filter(lambda v: b"\x01" not in v),
)

# Tags to insert: header, trailer and body tags, group count tags and members,
# tags not defined for some message types, unknown and user-defined tags.
EXTRA_TAGS = [
    -1,
    0,
    1,
    8,
    9,
    10,
    11,
    18,
    21,
    34,
    35,
    38,
    40,
    43,
    44,
    49,
    52,
    54,
    55,
    56,
    58,
    59,
    60,
    93,
    97,
    108,
    112,
    115,
    122,
    146,
    167,
    267,
    269,
    336,
    382,
    386,
    448,
    453,
    627,
    628,
    999,
    4999,
    5000,
    5001,
    9999,
]


@st.composite
def mutated_messages(draw: st.DrawFn) -> tuple[bytes, list[Field]]:
    msg_type, base = draw(st.sampled_from(BASES))
    fields = list(base)
    for kind in draw(
        st.lists(
            st.sampled_from(["drop", "duplicate", "move", "value", "insert", "type", "signature"]),
            max_size=3,
        )
    ):
        position = st.integers(min_value=0, max_value=len(fields))
        if kind == "type":
            msg_type = draw(st.sampled_from(MSG_TYPES))
        elif kind == "insert":
            fields.insert(draw(position), (draw(st.sampled_from(EXTRA_TAGS)), draw(values)))
        elif kind == "signature":
            at = draw(position)
            fields[at:at] = [(93, b"3"), (89, b"abc")]
        elif fields:
            i = draw(st.integers(min_value=0, max_value=len(fields) - 1))
            if kind == "drop":
                del fields[i]
            elif kind == "duplicate":
                fields.insert(draw(position), fields[i])
            elif kind == "move":
                item = fields.pop(i)
                fields.insert(draw(st.integers(min_value=0, max_value=len(fields))), item)
            else:
                fields[i] = (fields[i][0], draw(values))
    return msg_type, fields


@settings(max_examples=600, deadline=None)
@given(mutated_messages(), st.sampled_from(ALL_OPTIONS))
def test_fast_path_never_changes_the_result(
    case: tuple[bytes, list[Field]], options: ValidationOptions
) -> None:
    msg_type, fields = case
    try:
        msg = message(msg_type, fields)
    except GarbledMessage:
        assume(False)  # e.g. a SignatureLength that no longer fits its Signature
        raise
    validator = VALIDATORS[options]
    full = validator.validate_full(msg)
    if validator._fast_accept(msg):
        assert full is None
    assert validator.validate(msg) == full


SWEEP_BASES: list[tuple[bytes, list[Field]]] = [
    (b"D", HEADER + NEW_ORDER_SINGLE),
    (b"8", HEADER + EXECUTION_REPORT_WITHOUT_GROUPS),
    (b"0", HEADER),
    # groups: nested (Parties), several in one message, counted by the body
    (b"D", HEADER + NEW_ORDER_SINGLE + PARTIES),
    (b"8", HEADER + EXECUTION_REPORT),
    (b"V", HEADER + MARKET_DATA_REQUEST),
    (b"E", HEADER + NEW_ORDER_LIST),
]
SWEEP_VALUES = [b"", b"1", b"Y", b"x", TS]


def single_mutations() -> list[tuple[bytes, list[Field]]]:
    """Every base above with one tag of EXTRA_TAGS inserted after the header
    or at the end, and with one field's value replaced by each of VALUES."""
    cases = []
    for msg_type, fields in SWEEP_BASES:
        for at in (len(HEADER), len(fields)):
            for tag in EXTRA_TAGS:
                cases += [
                    (msg_type, [*fields[:at], (tag, value), *fields[at:]]) for value in SWEEP_VALUES
                ]
        for i, (tag, _) in enumerate(fields):
            cases += [(msg_type, [*fields[:i], (tag, value), *fields[i + 1 :]]) for value in VALUES]
    return cases


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=repr)
def test_every_single_mutation_agrees(options: ValidationOptions) -> None:
    validator = VALIDATORS[options]
    accepted = 0
    for msg_type, fields in single_mutations():
        msg = message(msg_type, fields)
        full = validator.validate_full(msg)
        if validator._fast_accept(msg):
            accepted += 1
            assert full is None, (msg_type, fields)
        assert validator.validate(msg) == full, (msg_type, fields)
    assert accepted > 0


def test_first_field_is_always_taken_as_header() -> None:
    """The full check counts the first field as a header field, whatever its
    tag; the fast path must not take it for a body field."""
    fields = [(112, b"T1"), (35, b"1"), *HEADER]
    msg = FixMessage(b"FIX.4.4", b"1", fields, b"")
    for validator in VALIDATORS.values():
        assert validator.validate(msg) == validator.validate_full(msg)
        assert validator.validate(msg) == Problem(SessionRejectReason.REQUIRED_TAG_MISSING, 112)


def all_cases() -> list[tuple[bytes, list[Field], list[Field]]]:
    cases = [(mt, header, body) for mt, header, body, _ in REJECTS.values()]
    cases += [(mt, header, body) for mt, header, body, _ in FIRST_PROBLEM.values()]
    cases += [(mt, header, body) for _, (mt, header, body, _) in OPTIONS.values()]
    cases += [(mt, HEADER, body) for mt, body in VALID.values()]
    return cases


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=repr)
def test_every_table_case_of_test_validation_agrees(options: ValidationOptions) -> None:
    validator = VALIDATORS[options]
    for msg_type, header, body in all_cases():
        msg = wire_message(msg_type, header, body)
        assert validator.validate(msg) == validator.validate_full(msg), (msg_type, body)


def test_plain_new_order_single_takes_the_fast_path() -> None:
    # validate() answers from the fast check when it accepts, and runs the
    # full check otherwise (the class may be compiled: it is not patched here)
    plain = wire_message(b"D", HEADER, NEW_ORDER_SINGLE)
    with_group = wire_message(b"D", HEADER, NEW_ORDER_SINGLE + PARTIES)
    assert DEFAULT._fast_accept(plain)
    validator = Validator(fix44(), ValidationOptions())
    assert validator.validate(plain) is None
    assert validator.validate(with_group) == validator.validate_full(with_group) is None


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (b"D", NEW_ORDER_SINGLE + PARTIES),  # a group with a group in its entries
        (b"8", EXECUTION_REPORT),
        (b"V", MARKET_DATA_REQUEST),
        (b"E", NEW_ORDER_LIST),
    ],
)
def test_valid_messages_with_groups_in_their_body_take_the_fast_path(
    msg_type: bytes, body: list[Field]
) -> None:
    msg = wire_message(msg_type, HEADER + OPTIONAL_HEADER, body)
    assert DEFAULT.validate_full(msg) is None
    for validator in VALIDATORS.values():
        assert validator._fast_accept(msg)


def _parties(*fields: Field) -> FixMessage:
    return message(b"D", [*HEADER, *NEW_ORDER_SINGLE, *fields])


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        # the count is not the number of entries
        (
            [(453, b"2"), (448, b"A"), (447, b"D"), (452, b"11")],
            Problem(SessionRejectReason.INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP, 453),
        ),
        # an entry that does not start at the delimiter (the full check reads
        # two entries here, as counted)
        (
            [(453, b"2"), (447, b"D"), (448, b"A"), (452, b"11")],
            Problem(SessionRejectReason.REPEATING_GROUP_FIELDS_OUT_OF_ORDER, 453),
        ),
        # a member twice in an entry: a second entry not started at the delimiter
        (
            [(453, b"2"), (448, b"A"), (447, b"D"), (447, b"D")],
            Problem(SessionRejectReason.REPEATING_GROUP_FIELDS_OUT_OF_ORDER, 453),
        ),
        # a bad value inside an entry, and in a nested entry
        (
            [(453, b"1"), (448, b"A"), (447, b"?"), (452, b"11")],
            Problem(SessionRejectReason.VALUE_IS_INCORRECT, 447),
        ),
        (
            [(453, b"1"), (448, b"A"), (802, b"1"), (523, b""), (803, b"9")],
            Problem(SessionRejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE, 523),
        ),
        # a nested count that is not the number of its entries
        (
            [(453, b"1"), (448, b"A"), (802, b"3"), (523, b"x"), (803, b"9")],
            Problem(SessionRejectReason.INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP, 802),
        ),
        # a count that is no number
        (
            [(453, b"x"), (448, b"A")],
            Problem(SessionRejectReason.INCORRECT_DATA_FORMAT_FOR_VALUE, 453),
        ),
    ],
)
def test_group_faults_are_left_to_the_full_check(fields: list[Field], problem: Problem) -> None:
    msg = _parties(*fields)
    assert not DEFAULT._fast_accept(msg)
    assert DEFAULT.validate(msg) == DEFAULT.validate_full(msg) == problem


def test_members_of_a_group_outside_it_are_left_to_the_full_check() -> None:
    # a member after the group has ended (a plain body tag in between)
    msg = _parties((453, b"1"), (448, b"A"), (58, b"note"), (447, b"D"))
    assert not DEFAULT._fast_accept(msg)
    assert DEFAULT.validate(msg) == DEFAULT.validate_full(msg) is not None
    # a member with no group around it
    alone = _parties((448, b"A"))
    assert not DEFAULT._fast_accept(alone)
    assert DEFAULT.validate(alone) == DEFAULT.validate_full(alone) is not None


def test_group_entries_are_told_apart_across_many_messages() -> None:
    # entries are numbered on from message to message, and the marks start
    # afresh once the numbers run high: a repeat in an entry is still seen
    validator = Validator(fix44(), ValidationOptions())
    good = _parties((453, b"2"), (448, b"A"), (447, b"D"), (448, b"B"), (447, b"D"))
    repeated = _parties((453, b"1"), (448, b"A"), (447, b"D"), (447, b"D"))
    for _ in range(300):
        assert validator._fast_accept(good)
        assert not validator._fast_accept(repeated)
    validator._entry_round = 1 << 30  # past the point where the marks start afresh
    assert validator._fast_accept(good)
    assert validator._entry_round < 1 << 30
    assert not validator._fast_accept(repeated)


def test_repeated_tags_are_caught_in_every_round_of_marks() -> None:
    # The fast path marks the tags it has seen with a round number that starts
    # afresh every few hundred messages: across many rounds, a plain message
    # is still accepted and one with a repeated tag (or a missing required
    # tag) still left to the full check, which refuses it.
    validator = Validator(fix44(), ValidationOptions())
    plain = wire_message(b"D", HEADER, NEW_ORDER_SINGLE)
    repeated = message(b"D", [*HEADER, *NEW_ORDER_SINGLE, NEW_ORDER_SINGLE[0]])
    missing = wire_message(b"D", HEADER, without(NEW_ORDER_SINGLE, 54))
    for _ in range(700):
        assert validator._fast_accept(plain)
        assert not validator._fast_accept(repeated)
        assert not validator._fast_accept(missing)
    assert validator.validate(repeated) == Problem(
        SessionRejectReason.TAG_APPEARS_MORE_THAN_ONCE, NEW_ORDER_SINGLE[0][0]
    )
    assert validator.validate(missing) == Problem(SessionRejectReason.REQUIRED_TAG_MISSING, 54)


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (b"8", EXECUTION_REPORT_WITHOUT_GROUPS),
        (b"0", []),
        (b"0", [(112, b"T1")]),
        (b"A", LOGON),
        (b"D", [*NEW_ORDER_SINGLE, (18, b"1 2 G"), (93, b"3"), (89, b"abc")]),
    ],
)
def test_other_valid_messages_without_groups_take_the_fast_path(
    msg_type: bytes, body: list[Field]
) -> None:
    msg = wire_message(msg_type, HEADER + OPTIONAL_HEADER, body)
    for validator in VALIDATORS.values():
        assert validator._fast_accept(msg)


def test_options_that_allow_more_are_taken_into_account() -> None:
    user_defined = wire_message(b"D", HEADER, [*NEW_ORDER_SINGLE, (5001, b"x")])
    assert VALIDATORS[ValidationOptions(user_defined_fields=False)]._fast_accept(user_defined)
    assert not DEFAULT._fast_accept(user_defined)
    assert DEFAULT.validate(user_defined) == Problem(SessionRejectReason.INVALID_TAG_NUMBER, 5001)

    unordered = VALIDATORS[ValidationOptions(fields_out_of_order=False)]
    header_last = message(b"D", NEW_ORDER_SINGLE + HEADER)
    assert unordered._fast_accept(header_last)
    assert not DEFAULT._fast_accept(header_last)
    late_sending_time = message(b"D", [*without(HEADER, 52), *NEW_ORDER_SINGLE, (52, TS)])
    assert unordered._fast_accept(late_sending_time)
    assert DEFAULT.validate(late_sending_time) == Problem(
        SessionRejectReason.TAG_SPECIFIED_OUT_OF_REQUIRED_ORDER, 52
    )

    empty_text = wire_message(b"D", HEADER, [*NEW_ORDER_SINGLE, (58, b"")])
    assert VALIDATORS[ValidationOptions(fields_have_values=False)]._fast_accept(empty_text)
    assert not DEFAULT._fast_accept(empty_text)


def test_dictionary_corner_cases_are_left_to_the_full_check() -> None:
    """A dictionary where TestRequest requires a header tag in its body and
    Heartbeat has a group counted by a user-defined tag."""
    dd = fix44()
    test_request = dataclasses.replace(dd.messages[b"1"], required=(49, 112))
    group = GroupDef(
        count_tag=5005, delimiter=5006, members=frozenset({5006}), required=(), groups={}
    )
    heartbeat = dataclasses.replace(
        dd.messages[b"0"], fields=frozenset({112, 5005}), groups={5005: group}
    )
    odd = dataclasses.replace(dd, messages={**dd.messages, b"1": test_request, b"0": heartbeat})
    cases = [
        (b"1", [*HEADER, (112, b"T1")], Problem(SessionRejectReason.REQUIRED_TAG_MISSING, 49)),
        (
            b"0",
            [*HEADER, (5005, b"2"), (5006, b"x")],
            Problem(SessionRejectReason.INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP, 5005),
        ),
        (b"0", [*HEADER, (5005, b"1"), (5006, b"x")], None),
    ]
    for options in ALL_OPTIONS:
        validator = Validator(odd, options)
        for msg_type, fields, expected in cases:
            msg = message(msg_type, fields)
            assert not validator._fast_accept(msg)
            assert validator.validate(msg) == validator.validate_full(msg)
            if not options.user_defined_fields:  # else 5005 is an unknown tag
                assert validator.validate(msg) == expected
