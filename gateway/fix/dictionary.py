"""The FIX 4.4 data dictionary as the session validates against it.

Built once from the generated tables in :mod:`gateway.fix.spec44`; lookups
are plain dict/frozenset operations so that validating a message costs a few
microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from mypy_extensions import i64

from gateway.fix import codec, spec44

ValueCheck = Callable[[bytes], bool]


# Longer digit strings than any 64-bit integer or double precision value can
# carry are refused as a data format problem.
_MAX_DIGITS: Final = 18
_MINUS: Final = 45
_POINT: Final = 46
_DIGIT_0: Final = 48
_DIGIT_9: Final = 57


def _is_int(v: bytes) -> bool:
    """An optional minus sign, then 1 to _MAX_DIGITS ASCII digits."""
    n: i64 = len(v)
    i: i64 = 1 if n and v[0] == _MINUS else 0
    if n == i or n - i > _MAX_DIGITS:
        return False
    while i < n:
        c: i64 = v[i]
        if c < _DIGIT_0 or c > _DIGIT_9:
            return False
        i += 1
    return True


def _is_length(v: bytes) -> bool:
    """1 to _MAX_DIGITS ASCII digits: a Length (a data field's size in
    bytes) is not negative."""
    return bool(v) and v[0] != _MINUS and _is_int(v)


def _is_float(v: bytes) -> bool:
    """An optional minus sign, then ASCII digits with at most one point among
    them: at least one digit, at most _MAX_DIGITS + 1 characters in all."""
    n: i64 = len(v)
    start: i64 = 1 if n and v[0] == _MINUS else 0
    if n - start > _MAX_DIGITS + 1:
        return False
    points: i64 = 0
    for i in range(start, n):
        c: i64 = v[i]
        if c == _POINT:
            points += 1
        elif c < _DIGIT_0 or c > _DIGIT_9:
            return False
    return points <= 1 and n - start - points > 0


def _is_char(v: bytes) -> bool:
    return len(v) == 1


def _is_bool(v: bytes) -> bool:
    return v == b"Y" or v == b"N"


def _is_timestamp(v: bytes) -> bool:
    return codec.parse_utc_timestamp(v) is not None


# Types whose values the dictionary can check; the rest are free text.
_FORMAT_CHECKS: dict[str, ValueCheck] = {
    "INT": _is_int,
    "LENGTH": _is_length,
    "NUMINGROUP": _is_int,
    "SEQNUM": _is_int,
    "DAYOFMONTH": _is_int,
    "FLOAT": _is_float,
    "QTY": _is_float,
    "PRICE": _is_float,
    "PRICEOFFSET": _is_float,
    "AMT": _is_float,
    "PERCENTAGE": _is_float,
    "CHAR": _is_char,
    "BOOLEAN": _is_bool,
    "UTCTIMESTAMP": _is_timestamp,
    "UTCDATEONLY": codec.is_utc_date,
    "UTCDATE": codec.is_utc_date,
    "UTCTIMEONLY": codec.is_utc_time,
}
_MULTI_VALUE_TYPES = frozenset({"MULTIPLEVALUESTRING", "MULTIPLESTRINGVALUE", "MULTIPLECHARVALUE"})


@dataclass(frozen=True, slots=True)
class GroupDef:
    """A repeating group: count tag, delimiter (first tag of each entry),
    member tags, required members, nested groups."""

    count_tag: int
    delimiter: int
    members: frozenset[int]
    required: tuple[int, ...]
    groups: dict[int, GroupDef]

    def __post_init__(self) -> None:
        # what both checks read the group by: refused here rather than
        # misread there
        where = f"group {self.count_tag}"
        if self.delimiter not in self.members:
            raise ValueError(f"{where}: its delimiter {self.delimiter} is not a member")
        if not self.members.issuperset(self.required):
            raise ValueError(f"{where}: a required tag is not a member")
        _check_groups(where, self.groups, self.members)


@dataclass(frozen=True, slots=True)
class MessageDef:
    msg_type: bytes
    name: str
    is_admin: bool
    fields: frozenset[int]
    required: tuple[int, ...]
    groups: dict[int, GroupDef]

    def __post_init__(self) -> None:
        _check_groups(f"message {self.msg_type!r}", self.groups, self.fields)


def _check_groups(where: str, groups: dict[int, GroupDef], fields: frozenset[int]) -> None:
    """Each group keyed by its own count tag, that tag a field of what
    holds it."""
    for tag, group in groups.items():
        if tag != group.count_tag:
            raise ValueError(f"{where}: group {group.count_tag} is listed under tag {tag}")
        if tag not in fields:
            raise ValueError(f"{where}: the count tag {tag} of a group is not one of its fields")


@dataclass(frozen=True, slots=True)
class Dictionary:
    begin_string: bytes
    field_names: dict[int, str]
    format_checks: dict[int, ValueCheck]
    enums: dict[int, frozenset[bytes]]
    multi_value: frozenset[int]
    header: frozenset[int]
    header_required: tuple[int, ...]
    header_groups: dict[int, GroupDef]
    trailer: frozenset[int]
    trailer_required: tuple[int, ...]
    messages: dict[bytes, MessageDef]
    admin_types: frozenset[bytes] = field(default=frozenset())

    def is_admin(self, msg_type: bytes) -> bool:
        return msg_type in self.admin_types


def _group(count_tag: int, spec: spec44.GroupTuple) -> GroupDef:
    delim, members, required, nested = spec
    return GroupDef(
        count_tag=count_tag,
        delimiter=delim,
        members=frozenset(members),
        required=required,
        groups={t: _group(t, g) for t, g in nested.items()},
    )


@cache
def fix44() -> Dictionary:
    """The FIX 4.4 dictionary (built once)."""
    format_checks: dict[int, ValueCheck] = {}
    enums: dict[int, frozenset[bytes]] = {}
    multi: set[int] = set()
    names: dict[int, str] = {}
    for tag, (name, ftype, values) in spec44.FIELDS.items():
        names[tag] = name
        check = _FORMAT_CHECKS.get(ftype)
        if check is not None:
            format_checks[tag] = check
        if values is not None:
            enums[tag] = values
        if ftype in _MULTI_VALUE_TYPES:
            multi.add(tag)
    messages = {
        mt.encode(): MessageDef(
            msg_type=mt.encode(),
            name=name,
            is_admin=cat == "admin",
            fields=fields,
            required=required,
            groups={t: _group(t, g) for t, g in groups.items()},
        )
        for mt, (name, cat, fields, required, groups) in spec44.MESSAGES.items()
    }
    return Dictionary(
        begin_string=spec44.BEGIN_STRING.encode(),
        field_names=names,
        format_checks=format_checks,
        enums=enums,
        multi_value=frozenset(multi),
        header=frozenset(spec44.HEADER),
        header_required=tuple(sorted(t for t, r in spec44.HEADER.items() if r)),
        header_groups={t: _group(t, g) for t, g in spec44.HEADER_GROUPS.items()},
        trailer=frozenset(spec44.TRAILER),
        trailer_required=tuple(sorted(t for t, r in spec44.TRAILER.items() if r)),
        messages=messages,
        admin_types=frozenset(mt for mt, m in messages.items() if m.is_admin),
    )
