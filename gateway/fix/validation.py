"""Validation of an inbound message against the data dictionary.

The checks and the order in which the first problem is chosen follow what
FIX engines (QuickFIX among them) report, so that a peer sees the same
SessionRejectReason and RefTagID for the same fault:

1. a header tag after a body tag, or a body tag after a trailer tag
   (TagSpecifiedOutOfRequiredOrder), when ValidateFieldsOutOfOrder is on;
2. an unknown MsgType (InvalidMsgType);
3. required tags: header, trailer, then body, each in ascending tag order,
   then the required members of each repeating-group entry;
4. per field, header first, then trailer, then body, in ascending tag order:
   repeated tag, empty value, data format, enumerated value, tag known to the
   dictionary, tag defined for the message type, NumInGroup count; then the
   fields inside repeating groups, group by group.

The common case (no problem) is checked in wire order without sorting; only a
message with a problem pays for finding the first one in the order above.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from gateway.fix.codec import FixMessage
from gateway.fix.dictionary import Dictionary, GroupDef, MessageDef

USER_DEFINED_MIN = 5000


class SessionRejectReason(IntEnum):
    """SessionRejectReason (373) values."""

    INVALID_TAG_NUMBER = 0
    REQUIRED_TAG_MISSING = 1
    TAG_NOT_DEFINED_FOR_MESSAGE_TYPE = 2
    UNDEFINED_TAG = 3
    TAG_SPECIFIED_WITHOUT_A_VALUE = 4
    VALUE_IS_INCORRECT = 5
    INCORRECT_DATA_FORMAT_FOR_VALUE = 6
    DECRYPTION_PROBLEM = 7
    SIGNATURE_PROBLEM = 8
    COMPID_PROBLEM = 9
    SENDINGTIME_ACCURACY_PROBLEM = 10
    INVALID_MSGTYPE = 11
    XML_VALIDATION_ERROR = 12
    TAG_APPEARS_MORE_THAN_ONCE = 13
    TAG_SPECIFIED_OUT_OF_REQUIRED_ORDER = 14
    REPEATING_GROUP_FIELDS_OUT_OF_ORDER = 15
    INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP = 16
    NON_DATA_VALUE_INCLUDES_FIELD_DELIMITER = 17
    OTHER = 99


REJECT_TEXT: dict[int, bytes] = {
    0: b"Invalid tag number",
    1: b"Required tag missing",
    2: b"Tag not defined for this message type",
    3: b"Undefined Tag",
    4: b"Tag specified without a value",
    5: b"Value is incorrect (out of range) for this tag",
    6: b"Incorrect data format for value",
    7: b"Decryption problem",
    8: b"Signature problem",
    9: b"CompID problem",
    10: b"SendingTime accuracy problem",
    11: b"Invalid MsgType",
    13: b"Tag appears more than once",
    14: b"Tag specified out of required order",
    15: b"Repeating group fields out of order",
    16: b"Incorrect NumInGroup count for repeating group",
    17: b"Non Data value includes field delimiter",
}


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    fields_out_of_order: bool = True
    fields_have_values: bool = True
    user_defined_fields: bool = True


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a message: the SessionRejectReason and the tag it
    refers to (None when the reason refers to the message as a whole)."""

    reason: SessionRejectReason
    tag: int | None = None


class _Group:
    __slots__ = ("count", "definition", "entries")

    def __init__(self, definition: GroupDef, count: bytes) -> None:
        self.definition = definition
        self.count = count
        self.entries: list[_Entry] = []


class _Entry:
    __slots__ = ("fields", "groups", "tags")

    def __init__(self) -> None:
        self.fields: list[tuple[int, bytes]] = []
        self.groups: list[_Group] = []
        self.tags: set[int] = set()


def _read_group(fields: list[tuple[int, bytes]], i: int, group: _Group) -> int:
    """Consume the entries of ``group`` starting at ``fields[i]``; return the
    index of the first field after the group.  A new entry starts at the
    delimiter, or at a member tag already present in the current entry."""
    gdef = group.definition
    members = gdef.members
    n = len(fields)
    entry: _Entry | None = None
    while i < n:
        tag, value = fields[i]
        if tag == gdef.delimiter or (tag in members and (entry is None or tag in entry.tags)):
            entry = _Entry()
            group.entries.append(entry)
        elif tag not in members or entry is None:
            break
        entry.fields.append(fields[i])
        entry.tags.add(tag)
        i += 1
        nested = gdef.groups.get(tag)
        if nested is not None:
            sub = _Group(nested, value)
            entry.groups.append(sub)
            i = _read_group(fields, i, sub)
    return i


class Validator:
    """Validates messages for one session's options against a dictionary."""

    __slots__ = ("dd", "opts")

    def __init__(self, dictionary: Dictionary, options: ValidationOptions) -> None:
        self.dd = dictionary
        self.opts = options

    def validate(self, msg: FixMessage) -> Problem | None:
        dd = self.dd
        fields = msg.fields
        mdef = dd.messages.get(msg.msg_type)
        header: list[tuple[int, bytes]] = [fields[0]]
        body: list[tuple[int, bytes]] = []
        trailer: list[tuple[int, bytes]] = []
        header_groups: list[_Group] = []
        body_groups: list[_Group] = []
        msg_groups = mdef.groups if mdef is not None else {}
        header_tags = dd.header
        trailer_tags = dd.trailer
        section = 0  # 0 header, 1 body, 2 trailer
        out_of_order: int | None = None
        n = len(fields)
        i = 1
        while i < n:
            item = fields[i]
            tag = item[0]
            i += 1
            if tag in header_tags:
                if section and out_of_order is None:
                    out_of_order = tag
                header.append(item)
                hgroup = dd.header_groups.get(tag)
                if hgroup is not None:
                    grp = _Group(hgroup, item[1])
                    header_groups.append(grp)
                    i = _read_group(fields, i, grp)
            elif tag in trailer_tags:
                section = 2
                trailer.append(item)
            else:
                if section == 2 and out_of_order is None:
                    out_of_order = tag
                section = 1
                body.append(item)
                bgroup = msg_groups.get(tag)
                if bgroup is not None:
                    grp = _Group(bgroup, item[1])
                    body_groups.append(grp)
                    i = _read_group(fields, i, grp)

        if out_of_order is not None and self.opts.fields_out_of_order:
            return Problem(SessionRejectReason.TAG_SPECIFIED_OUT_OF_REQUIRED_ORDER, out_of_order)
        if mdef is None:
            return Problem(SessionRejectReason.INVALID_MSGTYPE)
        problem = self._check_required(header, trailer, body, body_groups, mdef)
        if problem is not None:
            return problem
        problem = self._iterate(header, None, header_groups)
        if problem is None:
            problem = self._iterate(trailer, None, [])
        if problem is None:
            problem = self._iterate(body, mdef.fields, body_groups)
        return problem

    # -- required tags ------------------------------------------------------

    def _check_required(
        self,
        header: list[tuple[int, bytes]],
        trailer: list[tuple[int, bytes]],
        body: list[tuple[int, bytes]],
        body_groups: list[_Group],
        mdef: MessageDef,
    ) -> Problem | None:
        missing = SessionRejectReason.REQUIRED_TAG_MISSING
        present = {t for t, _ in header}
        present.update((8, 9))
        for tag in self.dd.header_required:
            if tag not in present:
                return Problem(missing, tag)
        present = {t for t, _ in trailer}
        present.add(10)
        for tag in self.dd.trailer_required:
            if tag not in present:
                return Problem(missing, tag)
        if mdef.required:
            present = {t for t, _ in body}
            for tag in mdef.required:
                if tag not in present:
                    return Problem(missing, tag)
        for grp in sorted(body_groups, key=_group_key):
            problem = _required_in_group(grp)
            if problem is not None:
                return problem
        return None

    # -- per-field checks ---------------------------------------------------

    def _iterate(
        self,
        fields: list[tuple[int, bytes]],
        allowed: frozenset[int] | None,
        groups: list[_Group],
    ) -> Problem | None:
        counts = {g.definition.count_tag: g for g in groups} if groups else None
        seen: set[int] = set()
        check = self._check_field
        for tag, value in fields:
            if tag in seen or check(tag, value, allowed, counts) is not None:
                return self._first_problem(fields, allowed, counts)
            seen.add(tag)
        for grp in sorted(groups, key=_group_key):
            gdef = grp.definition
            for entry in grp.entries:
                if entry.fields[0][0] != gdef.delimiter:
                    return Problem(
                        SessionRejectReason.REPEATING_GROUP_FIELDS_OUT_OF_ORDER, gdef.count_tag
                    )
                problem = self._iterate(entry.fields, gdef.members, entry.groups)
                if problem is not None:
                    return problem
        return None

    def _first_problem(
        self,
        fields: list[tuple[int, bytes]],
        allowed: frozenset[int] | None,
        counts: dict[int, _Group] | None,
    ) -> Problem | None:
        """The problem an ascending-tag walk meets first."""
        ordered = sorted(fields, key=_tag_key)
        seen: set[int] = set()
        for tag, value in ordered:
            if tag in seen:
                return Problem(SessionRejectReason.TAG_APPEARS_MORE_THAN_ONCE, tag)
            seen.add(tag)
            problem = self._check_field(tag, value, allowed, counts)
            if problem is not None:
                return problem
        return None

    def _check_field(
        self,
        tag: int,
        value: bytes,
        allowed: frozenset[int] | None,
        counts: dict[int, _Group] | None,
    ) -> Problem | None:
        dd = self.dd
        if not value and self.opts.fields_have_values:
            return Problem(SessionRejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE, tag)
        fmt = dd.format_checks.get(tag)
        if fmt is not None and not fmt(value):
            return Problem(SessionRejectReason.INCORRECT_DATA_FORMAT_FOR_VALUE, tag)
        enums = dd.enums.get(tag)
        if enums is not None:
            if tag in dd.multi_value:
                if any(v not in enums for v in value.split(b" ")):
                    return Problem(SessionRejectReason.VALUE_IS_INCORRECT, tag)
            elif value not in enums:
                return Problem(SessionRejectReason.VALUE_IS_INCORRECT, tag)
        if tag < USER_DEFINED_MIN or self.opts.user_defined_fields:
            if tag not in dd.field_names:
                return Problem(SessionRejectReason.INVALID_TAG_NUMBER, tag)
            if allowed is not None and tag not in allowed:
                return Problem(SessionRejectReason.TAG_NOT_DEFINED_FOR_MESSAGE_TYPE, tag)
        if counts is not None:
            grp = counts.get(tag)
            if grp is not None and int(value) != len(grp.entries):
                return Problem(
                    SessionRejectReason.INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP, tag
                )
        return None


def _tag_key(item: tuple[int, bytes]) -> int:
    return item[0]


def _group_key(group: _Group) -> int:
    return group.definition.count_tag


def _required_in_group(group: _Group) -> Problem | None:
    gdef = group.definition
    for entry in group.entries:
        for tag in gdef.required:
            if tag not in entry.tags:
                return Problem(SessionRejectReason.REQUIRED_TAG_MISSING, tag)
        for sub in sorted(entry.groups, key=_group_key):
            problem = _required_in_group(sub)
            if problem is not None:
                return problem
    return None
