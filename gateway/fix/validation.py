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

Before any of that, ``validate`` tries a fast accept path (``_fast_accept``)
built from tables prepared once per Validator: one pass over the fields that
can only conclude "valid".  It covers messages whose every tag is a plain
header, body or trailer tag of the message type, or belongs to one of the
message type's repeating groups in the body (nested groups included), read
entry by entry as the full check reads them; anything else (a header group,
an unknown or misplaced tag, a repeated tag, an entry not started by its
delimiter, a wrong count, a bad value, a missing required tag) falls through
to the full check above, which alone chooses and returns a Problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from gateway.fix.codec import FixMessage
from gateway.fix.dictionary import Dictionary, GroupDef, MessageDef, ValueCheck

USER_DEFINED_MIN: Final = 5000

# BeginString and BodyLength (CheckSum): the frame's own, which
# FixMessage.fields leaves out; one more of them among the fields is a tag
# that appears more than once.
_FRAME_HEADER: Final = frozenset({8, 9})
_FRAME_TRAILER: Final = frozenset({10})


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


# -- tables of the fast accept path -----------------------------------------

# Sections in the order they must come on the wire.
_HEADER: Final = 0
_BODY: Final = 1
_TRAILER: Final = 2

# (section, value check or None when any value passes)
_Placed = tuple[int, ValueCheck | None]
# (section, value check, whether the message type requires the tag, the
# repeating group the tag counts, if it is a group's count tag)
_FastEntry = tuple[int, ValueCheck | None, bool, "_FastGroup | None"]
# (tag -> entry, how many tags the message type requires, tags that cannot be
# an unlisted user-defined body tag; None when unlisted tags are never accepted)
_FastSpec = tuple[dict[int, _FastEntry], int, frozenset[int] | None]
# Messages the fast path reads before its marks of seen tags start afresh.
_MARK_ROUNDS: Final = 255
# Group entries read before the marks of the tags seen in an entry start
# afresh (checked before each message, which reads fewer entries than fields).
_ENTRY_ROUNDS: Final = 1 << 24
# (value check, whether each entry requires the tag, the group it counts)
_FastMember = tuple[ValueCheck | None, bool, "_FastGroup | None"]


class _FastGroup:
    """A repeating group as the fast accept path reads it: each entry starts
    at ``delimiter``, holds each member at most once and ``required`` of
    those marked required; ``members`` holds every member, with its check
    and the group it counts, if any."""

    __slots__ = ("delimiter", "members", "required")

    def __init__(self, delimiter: int, members: dict[int, _FastMember], required: int) -> None:
        self.delimiter = delimiter
        self.members = members
        self.required = required


def _value_check(dd: Dictionary, tag: int) -> ValueCheck | None:
    """A predicate true for exactly the non-empty values of ``tag`` that pass
    the data format and enumeration checks of ``Validator._check_field``;
    None when every value passes them."""
    fmt = dd.format_checks.get(tag)
    enums = dd.enums.get(tag)
    if enums is None:
        return fmt
    if tag in dd.multi_value:
        all_listed = enums.issuperset
        if fmt is None:

            def multi(value: bytes) -> bool:
                return all_listed(value.split(b" "))

            return multi
        multi_fmt = fmt

        def multi_checked(value: bytes) -> bool:
            return multi_fmt(value) and all_listed(value.split(b" "))

        return multi_checked
    # Format checks depend on the value alone, so when every enumerated value
    # has the right format, membership implies the format check.
    if fmt is None or all(fmt(v) for v in enums):
        return enums.__contains__
    single_fmt = fmt

    def single_checked(value: bytes) -> bool:
        return single_fmt(value) and value in enums

    return single_checked


def _group_tags(groups: Iterable[GroupDef]) -> set[int]:
    """Count tags and members of ``groups`` and of the groups nested in them."""
    tags: set[int] = set()
    for gdef in groups:
        tags.add(gdef.count_tag)
        tags.update(gdef.members)
        tags.update(_group_tags(gdef.groups.values()))
    return tags


class _FastTables:
    """What the fast accept path needs for one dictionary and options: the
    tags the first field may carry and, per message type, a ``_FastSpec``.
    Specs are built on a message type's first use and kept in ``specs``."""

    __slots__ = (
        "_checks",
        "_dd",
        "_header",
        "_header_groups",
        "_not_body",
        "_required",
        "_trailer",
        "_user_defined",
        "body_section",
        "first",
        "specs",
    )

    def __init__(self, dd: Dictionary, options: ValidationOptions) -> None:
        self._dd = dd
        self._checks: dict[int, ValueCheck | None] = {}
        self._user_defined = options.user_defined_fields
        # Without the order check the section of a tag plays no part.
        ordered = options.fields_out_of_order
        self.body_section = _BODY if ordered else _HEADER
        trailer_section = _TRAILER if ordered else _HEADER
        known = dd.field_names
        self._header_groups = _group_tags(dd.header_groups.values())
        # The full check puts a tag in the header if the dictionary lists it
        # there, else in the trailer if listed there, else in the body.
        self._header: dict[int, _Placed] = {
            tag: (_HEADER, self.check(tag))
            for tag in dd.header
            if tag in known and tag not in self._header_groups and tag not in _FRAME_HEADER
        }
        self._trailer: dict[int, _Placed] = {
            tag: (trailer_section, self.check(tag))
            for tag in dd.trailer - dd.header
            if tag in known and tag not in self._header_groups and tag not in _FRAME_TRAILER
        }
        self._not_body = dd.header | dd.trailer | self._header_groups
        # BeginString, BodyLength and CheckSum are not in FixMessage.fields;
        # the full check counts them as present.  It looks for the other
        # required header (trailer) tags among the header (trailer) fields.
        header_required = {t for t in dd.header_required if t not in _FRAME_HEADER}
        trailer_required = {t for t in dd.trailer_required if t not in _FRAME_TRAILER}
        self._required: frozenset[int] | None = None
        if header_required <= self._header.keys() and trailer_required <= self._trailer.keys():
            self._required = frozenset(header_required | trailer_required)
        self.first = frozenset(self._header)
        self.specs: dict[bytes, _FastSpec] = {}

    def check(self, tag: int) -> ValueCheck | None:
        """The value check of ``tag`` (see ``_value_check``), cached for the
        tags the dictionary knows only: a peer may send any number of
        others (user-defined tags not validated), which must not each add
        to what is kept."""
        checks = self._checks
        if tag in checks:
            return checks[tag]
        check = _value_check(self._dd, tag)
        if tag in self._dd.field_names:
            checks[tag] = check
        return check

    def spec(self, msg_type: bytes) -> _FastSpec | None:
        """The spec of ``msg_type``, built and kept on first use; None for a
        message type the dictionary does not know (nothing is kept then)."""
        spec = self.specs.get(msg_type)
        if spec is not None:
            return spec
        mdef = self._dd.messages.get(msg_type)
        if mdef is None:
            return None
        spec = self.specs[msg_type] = self._build(mdef)
        return spec

    def group(self, gdef: GroupDef) -> _FastGroup | None:
        """``gdef`` for the fast path; None (left to the full check) when a
        member is not a known tag, the delimiter or a required tag is not a
        member, or a nested group shares a tag with the group around it."""
        known = self._dd.field_names
        members = gdef.members
        required = set(gdef.required)
        if gdef.delimiter not in members or not required <= members:
            return None
        table: dict[int, _FastMember] = {}
        for tag in members:
            if tag not in known:
                return None
            nested: _FastGroup | None = None
            ndef = gdef.groups.get(tag)
            if ndef is not None:
                if members & (_group_tags([ndef]) - {tag}):
                    return None
                nested = self.group(ndef)
                if nested is None:
                    return None
            table[tag] = (self.check(tag), tag in required, nested)
        return _FastGroup(gdef.delimiter, table, len(required))

    def _build(self, mdef: MessageDef) -> _FastSpec:
        group_tags = _group_tags(mdef.groups.values())
        known = self._dd.field_names
        body: dict[int, _Placed] = {
            tag: (self.body_section, self.check(tag))
            for tag in mdef.fields - self._not_body
            if tag in known and tag not in group_tags
        }
        # the body's groups the fast path reads, by count tag
        groups: dict[int, _FastGroup] = {}
        for count_tag, gdef in mdef.groups.items():
            if count_tag in mdef.fields and count_tag in known and count_tag not in self._not_body:
                fast = self.group(gdef)
                if fast is not None:
                    groups[count_tag] = fast
                    body[count_tag] = (self.body_section, self.check(count_tag))
        placed = {**body, **self._trailer, **self._header}
        for tag in group_tags - groups.keys():
            placed.pop(tag, None)
        # A required tag in a group, or where the full check does not look for
        # it, leaves the message type to the full check: an empty table
        # accepts nothing.
        required = self._required
        if (
            required is None
            or not required <= placed.keys()
            or not all(tag in body for tag in mdef.required)
        ):
            return {}, 0, None
        unlisted = None
        if not self._user_defined:
            unlisted = self._not_body.union(mdef.groups)
        needed = required.union(mdef.required)
        table = {
            tag: (sec, check, tag in needed, groups.get(tag))
            for tag, (sec, check) in placed.items()
        }
        return table, len(needed), unlisted


class Validator:
    """Validates messages for one session's options against a dictionary."""

    __slots__ = (
        "_entry_marks",
        "_entry_round",
        "_fast",
        "_fast_first",
        "_fast_tables",
        "_have_values",
        "_marks",
        "_round",
        "dd",
        "opts",
    )

    def __init__(self, dictionary: Dictionary, options: ValidationOptions) -> None:
        self.dd = dictionary
        self.opts = options
        tables = self._fast_tables = _FastTables(dictionary, options)
        self._fast = tables.specs
        self._fast_first = tables.first
        self._have_values = options.fields_have_values
        # Per known tag, the round of the fast path that last saw it: a tag
        # marked with the current round is a repeated tag.
        self._marks = [0] * (max(dictionary.field_names, default=0) + 1)
        self._round = 0
        # Per known tag, the group entry that last held it (entries are
        # numbered on from message to message): a member marked with its
        # entry's number is repeated in the entry.
        self._entry_marks = [0] * len(self._marks)
        self._entry_round = 0

    def validate(self, msg: FixMessage) -> Problem | None:
        """The first problem with ``msg`` in the order described in the
        module docstring, or None when it is valid."""
        if self._fast_accept(msg):
            return None
        return self.validate_full(msg)

    # -- fast accept path ---------------------------------------------------

    def _fast_accept(self, msg: FixMessage) -> bool:
        """True only when ``msg`` is certainly valid; False means "not
        decided here" (the full check must run), never "invalid".

        It holds when every tag is in the message type's fast table (plain
        header, body and trailer tags, and the count tags of the body's
        groups the table reads), or is a member of the group whose entries
        are being read (:meth:`_fast_group`), or, when user-defined fields
        are not validated, is an unlisted body tag from USER_DEFINED_MIN up;
        no tag appears twice, at the top or in an entry; the first field is
        a header tag; the sections come in order (when that is validated);
        every value passes its check; every entry starts at its delimiter
        and holds its required members, and every count is the number of
        entries read; and every required tag is present (as no listed tag
        repeats, counting the required ones met is enough).  Under those
        conditions the full check finds nothing: it reads the same groups
        and entries, every section and entry holds distinct tags that are
        known (or exempt) and allowed, every value passes the same checks,
        and no required tag is missing."""
        spec = self._fast.get(msg.msg_type)
        if spec is None:
            spec = self._fast_tables.spec(msg.msg_type)
            if spec is None:
                return False
        table, required, blocked = spec
        fields = msg.fields
        if not fields or fields[0][0] not in self._fast_first:
            return False
        marks = self._marks
        this_round = self._round + 1
        if this_round > _MARK_ROUNDS:
            for i in range(len(marks)):
                marks[i] = 0
            this_round = 1
        self._round = this_round
        if self._entry_round > _ENTRY_ROUNDS:
            entry_marks = self._entry_marks
            for i in range(len(entry_marks)):
                entry_marks[i] = 0
            self._entry_round = 0
        have_values = self._have_values
        unlisted_seen: set[int] | None = None
        section = 0
        found = 0
        n = len(fields)
        i = 0
        group: _FastGroup | None = None
        while i < n:
            tag, value = fields[i]
            i += 1
            entry = table.get(tag)
            if entry is None:
                if blocked is None or tag < USER_DEFINED_MIN or tag in blocked:
                    return False
                group = None
                # a user-defined tag, not validated under these options
                if unlisted_seen is None:
                    unlisted_seen = set()
                elif tag in unlisted_seen:
                    return False
                unlisted_seen.add(tag)
                tables = self._fast_tables
                sec = tables.body_section
                check = tables.check(tag)
            else:
                sec, check, needed, group = entry
                if marks[tag] == this_round:
                    return False  # repeated
                marks[tag] = this_round
                if needed:
                    found += 1
            if sec != section:
                if sec < section:
                    return False
                section = sec
            if not value and have_values:
                return False
            if check is not None and not check(value):
                return False
            if group is not None:
                i = self._fast_group(group, fields, i, value)
                if i < 0:
                    return False
        return found == required

    def _fast_group(
        self, group: _FastGroup, fields: list[tuple[int, bytes]], i: int, count: bytes
    ) -> int:
        """Read ``group``'s entries from ``fields[i]`` on, as the full check
        reads them (an entry starts at the delimiter or at a member the
        entry holds already; the group ends at a tag that is no member):
        the index of the first field after the group, or -1 when the full
        check must decide (an entry not started at its delimiter, a member
        twice in an entry, a required member missing, a bad value, a count
        that is not the number of entries)."""
        if not count.isdigit() or len(count) > 18:  # no NumInGroup is longer
            return -1
        members = group.members
        delimiter = group.delimiter
        required = group.required
        marks = self._entry_marks
        have_values = self._have_values
        n = len(fields)
        entries = 0
        found = 0
        this_entry = 0
        while i < n:
            tag, value = fields[i]
            member = members.get(tag)
            if member is None:
                break  # the group's end
            if tag == delimiter:
                if entries and found != required:
                    return -1
                entries += 1
                found = 0
                this_entry = self._entry_round + 1
                self._entry_round = this_entry
            elif not entries or marks[tag] == this_entry:
                return -1  # an entry that does not start at the delimiter
            check, needed, nested = member
            marks[tag] = this_entry
            if needed:
                found += 1
            if not value and have_values:
                return -1
            if check is not None and not check(value):
                return -1
            i += 1
            if nested is not None:
                i = self._fast_group(nested, fields, i, value)
                if i < 0:
                    return -1
        if entries and found != required:
            return -1
        if int(count) != entries:
            return -1
        return i

    # -- full check ---------------------------------------------------------

    def validate_full(self, msg: FixMessage) -> Problem | None:
        """The full check, without the fast accept path: the first problem
        with ``msg``, or None.  ``validate`` returns the same."""
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
        problem = self._iterate(header, None, header_groups, _FRAME_HEADER)
        if problem is None:
            problem = self._iterate(trailer, None, [], _FRAME_TRAILER)
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
        present.update(_FRAME_HEADER)
        for tag in self.dd.header_required:
            if tag not in present:
                return Problem(missing, tag)
        present = {t for t, _ in trailer}
        present.update(_FRAME_TRAILER)
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
        present: frozenset[int] = frozenset(),
    ) -> Problem | None:
        """The first problem of ``fields`` and of the entries of ``groups``;
        ``present`` holds tags the message carries outside ``fields``."""
        counts = {g.definition.count_tag: g for g in groups} if groups else None
        seen: set[int] = set(present)
        check = self._check_field
        for tag, value in fields:
            if tag in seen or check(tag, value, allowed, counts) is not None:
                return self._first_problem(fields, allowed, counts, present)
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
        present: frozenset[int],
    ) -> Problem | None:
        """The problem an ascending-tag walk meets first."""
        ordered = sorted(fields, key=_tag_key)
        seen: set[int] = set(present)
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
