"""Generate ``gateway/fix/spec44.py`` from the QuickFIX FIX 4.4 data dictionary.

Usage::

    python tools/gen_fix_spec.py [FIX44.xml] [gateway/fix/spec44.py]

Both arguments are optional. The defaults are
``tests/conformance/quickfix-fix44/FIX44.xml`` (relative to the repository root) and
``gateway/fix/spec44.py``. The output is a plain Python module of literals, so the gateway
never reads the XML at run time. Running the generator twice on the same dictionary gives
byte-identical output.

Flattening rules (these drive session-level validation):

* Components are inlined where they are referenced.
* A message's field set holds every tag allowed at its top level: its own fields, the fields
  of its components (recursively) and the count tag of every group reachable at that level,
  but not the members of those groups.
* A tag is required when it is marked ``required='Y'`` and every component on the path
  from the message (or group) down to it is also marked ``required='Y'``. A required group
  contributes its count tag.
* A group is described by its delimiter (the first member tag after flattening), its
  member tags in dictionary order, its required member tags and its nested groups, which
  follow the same rules relative to the enclosing group.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_XML = REPO_ROOT / "tests" / "conformance" / "quickfix-fix44" / "FIX44.xml"
DEFAULT_OUTPUT = REPO_ROOT / "gateway" / "fix" / "spec44.py"

_LENGTH_SUFFIXES = ("Length", "Len")


class SpecError(Exception):
    """The data dictionary is inconsistent or uses something the generator does not handle."""


@dataclass
class FieldDef:
    number: int
    name: str
    type: str
    values: tuple[bytes, ...] | None


@dataclass
class Level:
    """The tags allowed at one level of a message: its body, its header, or one group."""

    members: list[int] = field(default_factory=list)
    required: set[int] = field(default_factory=set)
    groups: dict[int, Group] = field(default_factory=dict)


@dataclass
class Group:
    count_tag: int
    delimiter: int
    level: Level


@dataclass
class MessageDef:
    msgtype: str
    name: str
    category: str
    level: Level


@dataclass
class Spec:
    begin_string: str
    fields: dict[int, FieldDef]
    header: Level
    trailer: Level
    messages: dict[str, MessageDef]
    data_length_fields: dict[int, int]


def _attr(elem: ET.Element, name: str) -> str:
    value = elem.get(name)
    if value is None:
        raise SpecError(f"<{elem.tag}> element without a {name!r} attribute")
    return value


def _is_required(elem: ET.Element) -> bool:
    flag = elem.get("required", "N").upper()
    if flag not in ("Y", "N"):
        raise SpecError(f"<{elem.tag} name={elem.get('name')!r}> has required={flag!r}")
    return flag == "Y"


class _Parser:
    def __init__(self, root: ET.Element) -> None:
        self.root = root
        self.fields = self._parse_fields()
        self.by_name = {f.name: f for f in self.fields.values()}
        self.components = self._parse_components()

    def _section(self, tag: str) -> ET.Element:
        section = self.root.find(tag)
        if section is None:
            raise SpecError(f"data dictionary has no <{tag}> section")
        return section

    def _parse_fields(self) -> dict[int, FieldDef]:
        fields: dict[int, FieldDef] = {}
        names: set[str] = set()
        for elem in self._section("fields"):
            if elem.tag != "field":
                raise SpecError(f"unexpected <{elem.tag}> in <fields>")
            number = int(_attr(elem, "number"))
            name = _attr(elem, "name")
            if number in fields:
                raise SpecError(f"tag {number} defined twice")
            if name in names:
                raise SpecError(f"field name {name!r} defined twice")
            names.add(name)
            try:
                enums = [_attr(v, "enum").encode("ascii") for v in elem if v.tag == "value"]
            except UnicodeEncodeError as exc:
                raise SpecError(f"field {name!r} has a non-ASCII enum value") from exc
            if len(enums) != len(set(enums)):
                raise SpecError(f"field {name!r} lists an enum value twice")
            fields[number] = FieldDef(
                number=number,
                name=name,
                type=_attr(elem, "type").upper(),
                values=tuple(sorted(enums)) if enums else None,
            )
        return fields

    def _parse_components(self) -> dict[str, ET.Element]:
        components: dict[str, ET.Element] = {}
        section = self.root.find("components")
        if section is None:
            return components
        for elem in section:
            name = _attr(elem, "name")
            if name in components:
                raise SpecError(f"component {name!r} defined twice")
            components[name] = elem
        return components

    def _tag_of(self, elem: ET.Element) -> int:
        name = _attr(elem, "name")
        fdef = self.by_name.get(name)
        if fdef is None:
            raise SpecError(f"{name!r} is used but not defined in <fields>")
        return fdef.number

    def level(self, parent: ET.Element, where: str) -> Level:
        level = Level()
        self._fill(level, parent, path_required=True, where=where, stack=())
        return level

    def _fill(
        self,
        level: Level,
        parent: ET.Element,
        *,
        path_required: bool,
        where: str,
        stack: tuple[str, ...],
    ) -> None:
        for elem in parent:
            if elem.tag == "component":
                name = _attr(elem, "name")
                if name in stack:
                    raise SpecError(f"component {name!r} includes itself ({where})")
                comp = self.components.get(name)
                if comp is None:
                    raise SpecError(f"component {name!r} is used but not defined ({where})")
                self._fill(
                    level,
                    comp,
                    path_required=path_required and _is_required(elem),
                    where=where,
                    stack=(*stack, name),
                )
                continue
            if elem.tag not in ("field", "group"):
                raise SpecError(f"unexpected <{elem.tag}> in {where}")
            tag = self._tag_of(elem)
            if tag in level.members:
                raise SpecError(f"tag {tag} appears twice at one level of {where}")
            level.members.append(tag)
            if path_required and _is_required(elem):
                level.required.add(tag)
            if elem.tag == "group":
                level.groups[tag] = self._group(elem, tag, f"{where}/{elem.get('name')}")

    def _group(self, elem: ET.Element, count_tag: int, where: str) -> Group:
        if self.fields[count_tag].type != "NUMINGROUP":
            raise SpecError(f"group count tag {count_tag} is not NUMINGROUP ({where})")
        level = self.level(elem, where)
        if not level.members:
            raise SpecError(f"group {where} has no members")
        return Group(count_tag=count_tag, delimiter=level.members[0], level=level)

    def data_length_fields(self) -> dict[int, int]:
        """Pair each LENGTH field with the DATA field it measures, by name."""
        pairs: dict[int, int] = {}
        for fdef in self.fields.values():
            if fdef.type != "LENGTH":
                continue
            for suffix in _LENGTH_SUFFIXES:
                if not fdef.name.endswith(suffix):
                    continue
                data = self.by_name.get(fdef.name[: -len(suffix)])
                if data is not None and data.type == "DATA":
                    pairs[fdef.number] = data.number
                    break
        data_tags = {f.number for f in self.fields.values() if f.type == "DATA"}
        unpaired = data_tags - set(pairs.values())
        if unpaired:
            raise SpecError(f"DATA fields without a LENGTH field: {sorted(unpaired)}")
        if len(set(pairs.values())) != len(pairs):
            raise SpecError("a DATA field is measured by two LENGTH fields")
        return pairs

    def parse(self) -> Spec:
        root = self.root
        begin_string = f"{_attr(root, 'type')}.{_attr(root, 'major')}.{_attr(root, 'minor')}"
        messages: dict[str, MessageDef] = {}
        for elem in self._section("messages"):
            msgtype = _attr(elem, "msgtype")
            name = _attr(elem, "name")
            category = _attr(elem, "msgcat")
            if category not in ("admin", "app"):
                raise SpecError(f"message {name!r} has msgcat={category!r}")
            if msgtype in messages:
                raise SpecError(f"MsgType {msgtype!r} defined twice")
            messages[msgtype] = MessageDef(
                msgtype=msgtype,
                name=name,
                category=category,
                level=self.level(elem, f"message {name}"),
            )
        return Spec(
            begin_string=begin_string,
            fields=self.fields,
            header=self.level(self._section("header"), "header"),
            trailer=self.level(self._section("trailer"), "trailer"),
            messages=messages,
            data_length_fields=self.data_length_fields(),
        )


def parse(xml_path: Path) -> Spec:
    return _Parser(ET.parse(xml_path).getroot()).parse()


# --- rendering --------------------------------------------------------------------------


def _str(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    out.append('"')
    return "".join(out)


def _bytes(value: bytes) -> str:
    out = ['b"']
    for byte in value:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte <= 0x7E:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)


def _int_tuple(values: list[int] | tuple[int, ...]) -> str:
    if not values:
        return "()"
    if len(values) == 1:
        return f"({values[0]},)"
    return "(" + ", ".join(str(v) for v in values) + ")"


def _int_frozenset(values: list[int] | set[int]) -> str:
    if not values:
        return "frozenset()"
    return "frozenset({" + ", ".join(str(v) for v in sorted(values)) + "})"


def _group(group: Group) -> str:
    level = group.level
    return (
        f"({group.delimiter}, {_int_tuple(level.members)}, "
        f"{_int_tuple(sorted(level.required))}, {_groups_inline(level.groups)})"
    )


def _groups_inline(groups: dict[int, Group]) -> str:
    if not groups:
        return "{}"
    return "{" + ", ".join(f"{tag}: {_group(groups[tag])}" for tag in sorted(groups)) + "}"


def _groups_block(groups: dict[int, Group], indent: str) -> list[str]:
    if not groups:
        return [f"{indent}{{}},"]
    lines = [f"{indent}{{"]
    lines.extend(f"{indent}    {tag}: {_group(groups[tag])}," for tag in sorted(groups))
    lines.append(f"{indent}}},")
    return lines


def _flags(level: Level) -> list[str]:
    return [f"    {tag}: {tag in level.required}," for tag in level.members]


HEADER_COMMENT = """\
# Generated from FIX44.xml by tools/gen_fix_spec.py. Do not edit by hand:
# change the generator (or the dictionary) and run it again.
"""

PREAMBLE = '''\
"""FIX 4.4 data dictionary, flattened for session-level validation.

FIELDS maps tag -> (name, type, enum values or None). The type is the dictionary's type
name upper-cased ("STRING", "INT", "QTY", "NUMINGROUP", "DATA", "LENGTH", ...).

HEADER and TRAILER map tag -> required flag, in dictionary order. Group count tags are
included; the groups themselves are in HEADER_GROUPS (the trailer has none).

MESSAGES maps MsgType -> (name, category, fields, required, groups):

* category is "admin" or "app";
* fields holds every tag allowed at the top level of the body: fields from components
  (recursively) and group count tags, but not the members of groups;
* required holds, in ascending order, the top-level tags that must be present: tags marked
  required whose every enclosing component is marked required too;
* groups maps each top-level group's count tag to a GroupTuple.

A GroupTuple is (delimiter tag, member tags in dictionary order, required member tags in
ascending order, nested groups keyed by count tag). Members are the tags at the group's own
level, including nested count tags but not the nested groups' members.

DATA_LENGTH_FIELDS maps each LENGTH tag to the DATA tag whose byte length it gives.
"""

from typing import TypeAlias

GroupTuple: TypeAlias = tuple[int, tuple[int, ...], tuple[int, ...], dict[int, "GroupTuple"]]
'''


def render(spec: Spec) -> str:
    if spec.trailer.groups:
        raise SpecError("groups in <trailer> are not supported")
    lines: list[str] = [HEADER_COMMENT + PREAMBLE]
    lines.append(f"BEGIN_STRING: str = {_str(spec.begin_string)}")
    lines.append("")
    lines.append("FIELDS: dict[int, tuple[str, str, frozenset[bytes] | None]] = {")
    for tag in sorted(spec.fields):
        fdef = spec.fields[tag]
        if fdef.values is None:
            values = "None"
        else:
            values = "frozenset({" + ", ".join(_bytes(v) for v in fdef.values) + "})"
        lines.append(f"    {tag}: ({_str(fdef.name)}, {_str(fdef.type)}, {values}),")
    lines.append("}")
    lines.append("")
    lines.append("HEADER: dict[int, bool] = {")
    lines.extend(_flags(spec.header))
    lines.append("}")
    lines.append("")
    lines.append("TRAILER: dict[int, bool] = {")
    lines.extend(_flags(spec.trailer))
    lines.append("}")
    lines.append("")
    header_groups = _groups_block(spec.header.groups, "")
    header_groups[0] = "HEADER_GROUPS: dict[int, GroupTuple] = " + header_groups[0]
    header_groups[-1] = header_groups[-1].rstrip(",")
    lines.extend(header_groups)
    lines.append("")
    lines.append(
        "MESSAGES: dict[str, tuple[str, str, frozenset[int], tuple[int, ...], "
        "dict[int, GroupTuple]]] = {"
    )
    for msgtype in sorted(spec.messages):
        msg = spec.messages[msgtype]
        level = msg.level
        lines.append(f"    {_str(msgtype)}: (")
        lines.append(f"        {_str(msg.name)},")
        lines.append(f"        {_str(msg.category)},")
        lines.append(f"        {_int_frozenset(level.members)},")
        lines.append(f"        {_int_tuple(sorted(level.required))},")
        lines.extend(_groups_block(level.groups, "        "))
        lines.append("    ),")
    lines.append("}")
    lines.append("")
    lines.append("DATA_LENGTH_FIELDS: dict[int, int] = {")
    lines.extend(
        f"    {length}: {data}," for length, data in sorted(spec.data_length_fields.items())
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(xml_path: Path) -> str:
    """Return the text of the generated module for the dictionary at ``xml_path``."""
    return render(parse(xml_path))


def main(argv: list[str]) -> int:
    if len(argv) > 3:
        print(f"usage: {argv[0]} [FIX44.xml] [output.py]", file=sys.stderr)
        return 2
    xml_path = Path(argv[1]) if len(argv) > 1 else DEFAULT_XML
    output = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    try:
        text = generate(xml_path)
    except (OSError, ET.ParseError, SpecError) as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1
    output.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
