"""Tests for the generated FIX 4.4 dictionary module, gateway/fix/spec44.py."""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.fix import spec44
from gateway.fix.spec44 import (
    BEGIN_STRING,
    DATA_LENGTH_FIELDS,
    FIELDS,
    HEADER,
    HEADER_GROUPS,
    MESSAGES,
    TRAILER,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "tools" / "gen_fix_spec.py"
XML_PATH = REPO_ROOT / "tests" / "conformance" / "quickfix-fix44" / "FIX44.xml"
SPEC_PATH = REPO_ROOT / "gateway" / "fix" / "spec44.py"


def _load_generator() -> ModuleType:
    name = "gen_fix_spec_under_test"
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def _walk(groups: dict[int, Any], path: tuple[object, ...]) -> Iterator[tuple[Any, ...]]:
    """Yield (path, count tag, GroupTuple) for every group, nested ones included."""
    for count_tag, group in groups.items():
        here = (*path, count_tag)
        yield here, count_tag, group
        yield from _walk(group[3], here)


def _all_groups() -> Iterator[tuple[Any, ...]]:
    yield from _walk(HEADER_GROUPS, ("header",))
    for msgtype, message in MESSAGES.items():
        yield from _walk(message[4], (msgtype,))


# --- regeneration -----------------------------------------------------------------------


def test_module_matches_fresh_generation(tmp_path: Path) -> None:
    generator = _load_generator()
    out = tmp_path / "spec44.py"
    assert generator.main(["gen_fix_spec.py", str(XML_PATH), str(out)]) == 0
    assert out.read_bytes() == SPEC_PATH.read_bytes()


def test_module_is_marked_as_generated() -> None:
    first_line = SPEC_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert "Generated from FIX44.xml by tools/gen_fix_spec.py" in first_line
    assert "Do not edit by hand" in first_line


def test_module_imports_only_typing() -> None:
    tree = ast.parse(SPEC_PATH.read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from typing import TypeAlias"]


def test_module_exports() -> None:
    public = {name for name in vars(spec44) if name.isupper() and not name.startswith("_")}
    assert public == {
        "BEGIN_STRING",
        "FIELDS",
        "HEADER",
        "TRAILER",
        "HEADER_GROUPS",
        "MESSAGES",
        "DATA_LENGTH_FIELDS",
    }


# --- fields -----------------------------------------------------------------------------


def test_begin_string() -> None:
    assert BEGIN_STRING == "FIX.4.4"


def test_field_entries() -> None:
    assert FIELDS[21] == ("HandlInst", "CHAR", frozenset({b"1", b"2", b"3"}))
    assert FIELDS[38][1] == "QTY"
    assert FIELDS[52] == ("SendingTime", "UTCTIMESTAMP", None)
    assert FIELDS[18][1] == "MULTIPLEVALUESTRING"
    assert FIELDS[627] == ("NoHops", "NUMINGROUP", None)
    assert FIELDS[96] == ("RawData", "DATA", None)
    assert FIELDS[95] == ("RawDataLength", "LENGTH", None)


def test_field_types_are_upper_case_and_enums_are_bytes() -> None:
    for tag, (name, ftype, values) in FIELDS.items():
        assert tag > 0
        assert name
        assert ftype == ftype.upper()
        if values is not None:
            assert values
            assert all(isinstance(v, bytes) and v for v in values)


def test_every_referenced_tag_is_defined() -> None:
    referenced = set(HEADER) | set(TRAILER) | set(DATA_LENGTH_FIELDS)
    referenced |= set(DATA_LENGTH_FIELDS.values())
    for message in MESSAGES.values():
        referenced |= message[2]
    for _, _, group in _all_groups():
        referenced |= set(group[1])
    assert referenced <= set(FIELDS)


# --- header and trailer -----------------------------------------------------------------


def test_header_required_tags() -> None:
    required = {tag for tag, flag in HEADER.items() if flag}
    assert required == {8, 9, 35, 49, 56, 34, 52}
    assert list(HEADER)[:3] == [8, 9, 35]


def test_header_has_hops_group() -> None:
    assert HEADER[627] is False
    assert HEADER_GROUPS == {627: (628, (628, 629, 630), (), {})}


def test_trailer() -> None:
    assert TRAILER == {93: False, 89: False, 10: True}


# --- messages ---------------------------------------------------------------------------


def test_new_order_single() -> None:
    name, category, fields, required, groups = MESSAGES["D"]
    assert (name, category) == ("NewOrderSingle", "app")
    assert {11, 54, 60, 40} <= set(required)
    # Instrument is required in NewOrderSingle, but Symbol is optional inside Instrument.
    assert 55 not in required
    assert 55 in fields
    # HandlInst is optional in this dictionary; OrderQtyData is required but all its
    # fields are optional.
    assert required == (11, 40, 54, 60)
    assert 38 in fields
    # NoTradingSessions is a top-level group reached through the TrdgSesGrp component.
    assert 386 in fields
    assert groups[386] == (336, (336, 625), (), {})
    # Group members are not top-level fields.
    assert 336 not in fields
    assert 448 not in fields


def test_heartbeat() -> None:
    assert MESSAGES["0"] == ("Heartbeat", "admin", frozenset({112}), (), {})


def test_admin_messages() -> None:
    admin = {t for t, m in MESSAGES.items() if m[1] == "admin"}
    # The dictionary also files XMLnonFIX (35=n) under admin.
    assert admin == {"0", "1", "2", "3", "4", "5", "A", "n"}
    assert {m[1] for m in MESSAGES.values()} == {"admin", "app"}


def test_security_definition_alt_id_group() -> None:
    groups = MESSAGES["d"][4]
    assert groups[454][0] == 455
    assert groups[454][1] == (455, 456)


def test_group_whose_first_element_is_a_component() -> None:
    # NoRelatedSym in MarketDataRequest starts with the Instrument component.
    group = MESSAGES["V"][4][146]
    assert group[0] == 55
    assert group[1][:4] == (55, 65, 48, 22)
    # Instrument's own SecAltIDGrp is nested, not flattened into NoRelatedSym.
    assert 454 in group[1]
    assert 455 not in group[1]
    assert group[3][454][0] == 455


def test_nested_group_required_members() -> None:
    # NewOrderList: NoOrders is required and its members ClOrdID, ListSeqNo, Side are too.
    name, _, fields, required, groups = MESSAGES["E"]
    assert name == "NewOrderList"
    assert 73 in required
    assert 73 in fields
    assert groups[73][0] == 11
    assert set(groups[73][2]) == {11, 54, 67}


def test_required_tags_are_top_level_fields() -> None:
    for msgtype, (_, _, fields, required, groups) in MESSAGES.items():
        assert list(required) == sorted(set(required)), msgtype
        assert set(required) <= fields, msgtype
        assert set(groups) <= fields, msgtype
        for count_tag in groups:
            assert FIELDS[count_tag][1] == "NUMINGROUP", msgtype


def test_group_shapes() -> None:
    for path, count_tag, (delimiter, members, required, nested) in _all_groups():
        assert FIELDS[count_tag][1] == "NUMINGROUP", path
        assert delimiter == members[0], path
        assert delimiter in members, path
        assert len(set(members)) == len(members), path
        assert list(required) == sorted(set(required)), path
        assert set(required) <= set(members), path
        assert set(nested) <= set(members), path
        assert count_tag not in members, path


def test_group_members_are_not_top_level_fields() -> None:
    # In this dictionary no tag is both a top-level field of a message and a direct member
    # of one of its top-level groups, so a tag alone tells which level it belongs to.
    for msgtype, (_, _, fields, _, groups) in MESSAGES.items():
        for count_tag, group in groups.items():
            assert not fields & set(group[1]), (msgtype, count_tag)


# --- data fields ------------------------------------------------------------------------


def test_data_length_fields() -> None:
    assert DATA_LENGTH_FIELDS[95] == 96
    assert DATA_LENGTH_FIELDS[212] == 213
    assert DATA_LENGTH_FIELDS[93] == 89
    assert DATA_LENGTH_FIELDS[90] == 91
    assert DATA_LENGTH_FIELDS[354] == 355
    assert 9 not in DATA_LENGTH_FIELDS
    for length_tag, data_tag in DATA_LENGTH_FIELDS.items():
        assert FIELDS[length_tag][1] == "LENGTH"
        assert FIELDS[data_tag][1] == "DATA"
    data_tags = {tag for tag, f in FIELDS.items() if f[1] == "DATA"}
    assert set(DATA_LENGTH_FIELDS.values()) == data_tags
