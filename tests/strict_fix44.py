"""A strict FIX 4.4 message checker, written from QuickFIX's FIX44.xml alone.

It is the independent reference the gateway's outbound messages are checked
against: it reads the dictionary with the standard library and shares no
code with the gateway's own dictionary or validation (``gateway.fix``).

What it checks, for a body of a given MsgType (:func:`problems`) or for a
whole message with its header and trailer (:func:`message_problems`):

* every tag is defined in the dictionary, has a value, and is allowed where
  it stands: in the message (components expanded, recursively), or inside the
  repeating group it belongs to, never outside it;
* no tag is repeated, at the top level or within one group entry;
* every required field, group and component is present; a required
  component's required members too (recursively), and a required component
  none of whose members is marked required (Parties, PositionQty...) must
  still carry one of them; an optional component that is present must hold
  its own required members;
* a group's count is a number equal to the entries that follow; a required
  group has at least one; each entry starts with the group's first field
  (its delimiter), holds the entry's required fields, and keeps the
  dictionary's order of members;
* values are of their field's type (INT, NUMINGROUP, FLOAT/PRICE/QTY/AMT...,
  UTCTIMESTAMP, LOCALMKTDATE, BOOLEAN, CHAR, CURRENCY...) and, for fields
  with enumerations, one of the values listed.

A whole message must also start with BeginString FIX.4.4, BodyLength and
MsgType, in that order, carry the header's required fields before the body,
and end with a CheckSum matching the bytes; BodyLength must count them.

Every problem is a line of text; an empty list means the message is valid.

It is stricter than QuickFIX's own DataDictionary in a few places, each
what FIX 4.4 says: a group entry must start with its delimiter; a required
component none of whose members is marked required must not be absent or
empty; enumerations are checked inside groups too; a CURRENCY is three
capital letters and a LOCALMKTDATE a real date.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

__all__ = [
    "DICTIONARY_PATH",
    "Dictionary",
    "dictionary",
    "message_problems",
    "parse_fields",
    "problems",
]

DICTIONARY_PATH = Path(__file__).parent / "conformance" / "quickfix-fix44" / "FIX44.xml"

SOH = b"\x01"

_INT = re.compile(rb"-?[0-9]+")
_UNSIGNED = re.compile(rb"[0-9]+")
_DECIMAL = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_TIMESTAMP = re.compile(
    rb"([0-9]{4})([0-9]{2})([0-9]{2})-([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{3})?"
)
_TIME = re.compile(rb"([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{3})?")
_DATE = re.compile(rb"([0-9]{4})([0-9]{2})([0-9]{2})")
_MONTH_YEAR = re.compile(rb"([0-9]{4})([0-9]{2})(?:([0-9]{2})|w[1-5])?")
_CURRENCY = re.compile(rb"[A-Z]{3}")
_COUNTRY = re.compile(rb"[A-Z]{2}")

_DECIMAL_TYPES = frozenset({"FLOAT", "PRICE", "QTY", "AMT", "PRICEOFFSET", "PERCENTAGE"})
_COUNT_TYPES = frozenset({"NUMINGROUP", "LENGTH", "SEQNUM"})


# --------------------------------------------------------------------------
# the dictionary


@dataclass(frozen=True)
class FieldDef:
    tag: int
    name: str
    type: str
    enums: frozenset[bytes] | None


@dataclass(frozen=True)
class Member:
    """One entry of a message, component or group definition: a field, a
    group (``tag`` is its count field) or a component (``tag`` is 0)."""

    kind: str  # "field", "group" or "component"
    name: str
    required: bool
    tag: int = 0
    members: tuple[Member, ...] = ()

    def level_tags(self) -> list[int]:
        """The tags this member puts at its own level: a field's tag, a
        group's count tag, a component's fields and count tags."""
        if self.kind == "component":
            return [t for m in self.members for t in m.level_tags()]
        return [self.tag]

    def has_required(self) -> bool:
        if self.kind == "component":
            return any(m.has_required() for m in self.members)
        return self.required


@dataclass
class Scope:
    """The tags allowed at one level (a message body, the header, the
    trailer, or one entry of a group), in the dictionary's order."""

    name: str
    members: tuple[Member, ...]
    order: dict[int, int] = field(default_factory=dict)  # tag -> position at this level
    groups: dict[int, Group] = field(default_factory=dict)  # count tag -> group
    nested: dict[int, str] = field(default_factory=dict)  # tag of a group member -> group name

    @classmethod
    def of(cls, name: str, members: tuple[Member, ...]) -> Scope:
        scope = cls(name, members)
        for tag in (t for m in members for t in m.level_tags()):
            scope.order.setdefault(tag, len(scope.order))
        for group in _groups_at_level(members):
            inner = Scope.of(f"{group.name} ({group.tag})", group.members)
            entry_tags = list(inner.order)
            delimiter = entry_tags[0] if entry_tags else 0
            scope.groups[group.tag] = Group(group.name, group.tag, delimiter, inner)
            for tag in (*inner.order, *inner.nested):
                scope.nested.setdefault(tag, group.name)
        return scope


@dataclass
class Group:
    name: str
    tag: int
    delimiter: int
    entry: Scope


def _groups_at_level(members: Iterable[Member]) -> Iterable[Member]:
    for m in members:
        if m.kind == "group":
            yield m
        elif m.kind == "component":
            yield from _groups_at_level(m.members)


class Dictionary:
    """FIX44.xml as fields, header, trailer and message scopes."""

    def __init__(self, path: Path = DICTIONARY_PATH) -> None:
        root = ET.parse(path).getroot()
        fields_el = _child(root, "fields")
        self.fields: dict[int, FieldDef] = {}
        self.by_name: dict[str, FieldDef] = {}
        for el in fields_el:
            values = [v.get("enum", "").encode("latin-1") for v in el.findall("value")]
            fd = FieldDef(
                int(el.get("number", "0")),
                el.get("name", ""),
                el.get("type", "STRING").upper(),
                frozenset(values) if values else None,
            )
            self.fields[fd.tag] = fd
            self.by_name[fd.name] = fd
        self._components = {el.get("name", ""): el for el in _child(root, "components")}
        self._built: dict[str, tuple[Member, ...]] = {}
        self.header = Scope.of("header", self._members(_child(root, "header")))
        self.trailer = Scope.of("trailer", self._members(_child(root, "trailer")))
        self.messages: dict[bytes, Scope] = {}
        self.message_names: dict[bytes, str] = {}
        for el in _child(root, "messages"):
            msg_type = el.get("msgtype", "").encode("latin-1")
            name = el.get("name", "")
            self.message_names[msg_type] = name
            self.messages[msg_type] = Scope.of(
                f"{name} ({msg_type.decode('latin-1')})", self._members(el)
            )

    def _members(self, el: ET.Element) -> tuple[Member, ...]:
        out: list[Member] = []
        for child in el:
            name = child.get("name", "")
            required = child.get("required", "N") == "Y"
            if child.tag == "field":
                out.append(Member("field", name, required, self.by_name[name].tag))
            elif child.tag == "group":
                out.append(
                    Member("group", name, required, self.by_name[name].tag, self._members(child))
                )
            elif child.tag == "component":
                out.append(Member("component", name, required, 0, self._component(name)))
        return tuple(out)

    def _component(self, name: str) -> tuple[Member, ...]:
        built = self._built.get(name)
        if built is None:
            built = self._built[name] = self._members(self._components[name])
        return built

    def describe(self, tag: int) -> str:
        fd = self.fields.get(tag)
        return f"{tag} ({fd.name})" if fd is not None else str(tag)


def _child(root: ET.Element, name: str) -> ET.Element:
    el = root.find(name)
    if el is None:
        raise ValueError(f"FIX44.xml has no <{name}>")
    return el


@cache
def dictionary() -> Dictionary:
    """The dictionary of :data:`DICTIONARY_PATH`, read once."""
    return Dictionary()


# --------------------------------------------------------------------------
# fields


def parse_fields(data: bytes, problems_out: list[str] | None = None) -> list[tuple[int, bytes]]:
    """``tag=value<SOH>`` fields of ``data`` in order.  A DATA field that
    follows its LENGTH field is read by that length (it may hold SOH).
    What cannot be read is added to ``problems_out`` (when given)."""
    d = dictionary()
    out: list[tuple[int, bytes]] = []
    found = problems_out if problems_out is not None else []
    pos, end = 0, len(data)
    if end and not data.endswith(SOH):
        found.append("the last field is not ended by SOH")
    length: int | None = None
    while pos < end:
        eq = data.find(b"=", pos)
        soh = data.find(SOH, pos)
        if soh < 0:
            soh = end
        if eq < 0 or eq > soh:
            found.append(f"field without '=' at byte {pos}: {data[pos:soh]!r}")
            pos = soh + 1
            continue
        raw_tag = data[pos:eq]
        if _UNSIGNED.fullmatch(raw_tag) is None or raw_tag.startswith(b"0"):
            found.append(f"tag is not a number: {raw_tag!r}")
            pos = soh + 1
            length = None
            continue
        tag = int(raw_tag)
        fd = d.fields.get(tag)
        if fd is not None and fd.type == "DATA" and length is not None:
            value = data[eq + 1 : eq + 1 + length]
            pos = eq + 1 + length
            if data[pos : pos + 1] != SOH:
                found.append(f"tag {d.describe(tag)}: not {length} bytes long as its length says")
                soh = data.find(SOH, pos)
                pos = end if soh < 0 else soh
            pos += 1
        else:
            value = data[eq + 1 : soh]
            pos = soh + 1
        out.append((tag, value))
        length = None
        if fd is not None and fd.type == "LENGTH" and _UNSIGNED.fullmatch(value):
            length = int(value)
    return out


def _value_problem(fd: FieldDef, value: bytes) -> str | None:
    """Why ``value`` is not a valid value of ``fd``, or None."""
    if not value:
        return "has no value"
    t = fd.type
    if t in _COUNT_TYPES:
        ok = _UNSIGNED.fullmatch(value) is not None
    elif t == "INT":
        ok = _INT.fullmatch(value) is not None
    elif t in _DECIMAL_TYPES:
        ok = _DECIMAL.fullmatch(value) is not None
    elif t == "UTCTIMESTAMP":
        m = _TIMESTAMP.fullmatch(value)
        ok = m is not None and _date_ok(m.group(1, 2, 3)) and _time_ok(m.group(4, 5, 6))
    elif t == "UTCTIMEONLY":
        m = _TIME.fullmatch(value)
        ok = m is not None and _time_ok(m.group(1, 2, 3))
    elif t in ("LOCALMKTDATE", "UTCDATEONLY", "UTCDATE"):
        m = _DATE.fullmatch(value)
        ok = m is not None and _date_ok(m.group(1, 2, 3))
    elif t == "MONTHYEAR":
        m = _MONTH_YEAR.fullmatch(value)
        ok = m is not None and 1 <= int(m.group(2)) <= 12
        if ok and m is not None and m.group(3) is not None:
            ok = _date_ok(m.group(1, 2, 3))
    elif t == "BOOLEAN":
        ok = value in (b"Y", b"N")
    elif t == "CHAR":
        ok = len(value) == 1
    elif t == "CURRENCY":
        ok = _CURRENCY.fullmatch(value) is not None
    elif t == "COUNTRY":
        ok = _COUNTRY.fullmatch(value) is not None
    else:  # STRING, MULTIPLEVALUESTRING, EXCHANGE, DATA
        ok = True
    if not ok:
        return f"value {value!r} is not a valid {t}"
    if fd.enums is not None:
        values = value.split(b" ") if t == "MULTIPLEVALUESTRING" else [value]
        if any(v not in fd.enums for v in values):
            return f"value {value!r} is not one of its enumerated values"
    return None


def _date_ok(parts: tuple[bytes, ...]) -> bool:
    try:
        date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return False
    return True


def _time_ok(parts: tuple[bytes, ...]) -> bool:
    h, m, s = (int(p) for p in parts)
    return h <= 23 and m <= 59 and s <= 60  # 60: a leap second


# --------------------------------------------------------------------------
# walking a message


class _Walk:
    def __init__(self, d: Dictionary, tokens: list[tuple[int, bytes]], found: list[str]) -> None:
        self.d = d
        self.tokens = tokens
        self.found = found

    def top(self, scope: Scope) -> None:
        """Walk every field as one of ``scope`` (a body, the header or the
        trailer): fields at this level may come in any order, but once."""
        d, tokens = self.d, self.tokens
        seen: dict[int, bytes] = {}
        counts: dict[int, int] = {}
        i = 0
        while i < len(tokens):
            tag, value = tokens[i]
            fd = d.fields.get(tag)
            if fd is None:
                self.found.append(f"tag {tag} is not defined in FIX 4.4")
                i += 1
                continue
            if tag not in scope.order:
                group = scope.nested.get(tag)
                if group is not None:
                    self.found.append(
                        f"tag {d.describe(tag)} is outside its group {group} in {scope.name}"
                    )
                else:
                    self.found.append(f"tag {d.describe(tag)} is not in message {scope.name}")
                self.check_value(fd, value, scope.name)
                i += 1
                continue
            if tag in seen:
                self.found.append(f"tag {d.describe(tag)} is repeated in {scope.name}")
            seen[tag] = value
            self.check_value(fd, value, scope.name)
            i += 1
            group_def = scope.groups.get(tag)
            if group_def is not None:
                i, counts[tag] = self.group(group_def, value, i, scope.name)
        self.required(scope.members, seen, counts, scope.name)

    def entry(self, scope: Scope, delimiter: int, i: int, where: str) -> int:
        """Walk one group entry from ``i``: it ends at a tag not of the
        group, or at the next delimiter."""
        d, tokens = self.d, self.tokens
        seen: dict[int, bytes] = {}
        counts: dict[int, int] = {}
        last = -1
        while i < len(tokens):
            tag, value = tokens[i]
            position = scope.order.get(tag)
            if position is None or (tag == delimiter and seen):
                break
            fd = d.fields[tag]
            if tag in seen:
                self.found.append(f"tag {d.describe(tag)} is repeated in one entry of {where}")
            elif position < last:
                self.found.append(f"tag {d.describe(tag)} is out of order in an entry of {where}")
            last = max(last, position)
            seen[tag] = value
            self.check_value(fd, value, where)
            i += 1
            group_def = scope.groups.get(tag)
            if group_def is not None:
                i, counts[tag] = self.group(group_def, value, i, where)
        self.required(scope.members, seen, counts, f"an entry of {where}")
        return i

    def group(self, group: Group, count_value: bytes, i: int, where: str) -> tuple[int, int]:
        """Walk the entries of ``group`` following its count field; answer
        the position after them and the number of entries."""
        d, tokens = self.d, self.tokens
        name = f"{group.name} ({group.tag})"
        entries = 0
        while i < len(tokens) and tokens[i][0] in group.entry.order:
            if tokens[i][0] != group.delimiter:
                self.found.append(
                    f"entry {entries + 1} of group {name} in {where} starts with tag "
                    f"{d.describe(tokens[i][0])}, not with {d.describe(group.delimiter)}"
                )
            i = self.entry(group.entry, group.delimiter, i, f"group {name}")
            entries += 1
        if _UNSIGNED.fullmatch(count_value) and int(count_value) != entries:
            self.found.append(
                f"group {name} in {where}: count {int(count_value)} but {entries} entries"
            )
        return i, entries

    def check_value(self, fd: FieldDef, value: bytes, where: str) -> None:
        wrong = _value_problem(fd, value)
        if wrong is not None:
            self.found.append(f"tag {fd.tag} ({fd.name}) in {where}: {wrong}")

    def required(
        self, members: Iterable[Member], seen: dict[int, bytes], counts: dict[int, int], where: str
    ) -> None:
        d = self.d
        for m in members:
            if m.kind == "field":
                if m.required and m.tag not in seen:
                    self.found.append(f"required tag {d.describe(m.tag)} is missing in {where}")
            elif m.kind == "group":
                if m.required and counts.get(m.tag, 0) < 1:
                    self.found.append(
                        f"required group {m.name} ({m.tag}) is missing or empty in {where}"
                    )
            else:
                present = any(t in seen for t in m.level_tags())
                if m.required and not present and not m.has_required():
                    self.found.append(f"required component {m.name} is missing in {where}")
                elif m.required and present and not m.has_required():
                    groups = [t for t in m.level_tags() if t in counts]
                    fields_present = [t for t in m.level_tags() if t in seen and t not in counts]
                    if not fields_present and all(counts[t] < 1 for t in groups):
                        self.found.append(f"required component {m.name} is empty in {where}")
                if m.required or present:
                    self.required(m.members, seen, counts, f"{where}, component {m.name}")


# --------------------------------------------------------------------------
# the API


def problems(msg_type: bytes, body: bytes) -> list[str]:
    """What is wrong with ``body`` (fields ``tag=value<SOH>``, no header
    or trailer) as a message of type ``msg_type``; empty when it is valid."""
    d = dictionary()
    found: list[str] = []
    scope = d.messages.get(msg_type)
    if scope is None:
        return [f"MsgType {msg_type!r} is not a FIX 4.4 message"]
    tokens = parse_fields(body, found)
    _Walk(d, _body_only(d, tokens, found), found).top(scope)
    return found


def message_problems(message: bytes) -> list[str]:
    """What is wrong with the whole ``message`` (header, body, trailer);
    empty when it is valid."""
    d = dictionary()
    found: list[str] = []
    tokens = parse_fields(message, found)
    if len(tokens) < 4:
        return [*found, "too few fields for a FIX message"]
    first = [t for t, _ in tokens[:3]]
    if first != [8, 9, 35]:
        found.append(f"the first three tags are {first}, not [8, 9, 35]")
    if tokens[0] != (8, b"FIX.4.4"):
        found.append(f"BeginString is {tokens[0][1]!r}, not b'FIX.4.4'")
    if tokens[-1][0] != 10:
        found.append("the message does not end with CheckSum (10)")
    else:
        start = message.rfind(b"\x0110=") + 1
        expected = sum(message[:start]) % 256
        if tokens[-1][1] != b"%03d" % expected:
            found.append(f"CheckSum is {tokens[-1][1]!r}, the bytes sum to {expected:03d}")
        second = message.find(SOH) + 1
        third = message.find(SOH, second) + 1
        length = start - third
        if tokens[1][1] != str(length).encode():
            found.append(f"BodyLength is {tokens[1][1]!r}, the body is {length} bytes")
    msg_type = tokens[2][1]
    scope = d.messages.get(msg_type)
    if scope is None:
        found.append(f"MsgType {msg_type!r} is not a FIX 4.4 message")
        return found
    head = 0
    while head < len(tokens) and _in_scope(d.header, tokens[head][0]):
        head += 1
    tail = len(tokens)
    while tail > head and tokens[tail - 1][0] in d.trailer.order:
        tail -= 1
    _Walk(d, tokens[:head], found).top(d.header)
    _Walk(d, _body_only(d, tokens[head:tail], found), found).top(scope)
    _Walk(d, tokens[tail:], found).top(d.trailer)
    return found


def _in_scope(scope: Scope, tag: int) -> bool:
    return tag in scope.order or tag in scope.nested


def _body_only(
    d: Dictionary, tokens: list[tuple[int, bytes]], found: list[str]
) -> list[tuple[int, bytes]]:
    """``tokens`` without the header's and trailer's tags, each reported."""
    body: list[tuple[int, bytes]] = []
    for tag, value in tokens:
        if _in_scope(d.header, tag) or tag in d.trailer.order:
            found.append(f"tag {d.describe(tag)} belongs to the header or trailer, not the body")
        else:
            body.append((tag, value))
    return body
