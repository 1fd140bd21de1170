"""The schema walk: plain data, as parsed from TOML, checked against a type so that every
problem is reported, each as one ``path: message`` line.

:func:`msgspec.convert` stops at the first problem it finds. To report them all, the value is
walked against the type as described by :func:`msgspec.inspect.type_info`: kinds, ``Meta``
limits and patterns (with the messages :mod:`config.schema` attaches to them), decimal limits,
unknown and missing fields. The path uses dotted table names and 0-based array indices, e.g.
``sessions[2].HeartBtInt: must be > 0``. The cross-field rules of :mod:`config.checks` run on
each table's values that passed. Only a value without any problem needs converting, and that
conversion is then expected to succeed.

:func:`rebase_paths` makes the relative paths in a value that passed absolute, guided by the
same type: a string field declared as a path (``PATH`` in its ``Meta``) is joined to a base
folder.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar, get_args, get_origin, get_type_hints

import msgspec
import msgspec.inspect as mi

from config.checks import CROSS_FIELD_CHECKS, child_path
from config.schema import DECIMAL_LIMITS, PATH, PATTERN_MESSAGE

__all__ = [
    "DECIMAL_FLOAT_MESSAGE",
    "convert_value",
    "rebase_paths",
    "validate_value",
    "validation_error_message",
]

_T = TypeVar("_T")


def validate_value(value: object, type_: Any, path: str = "") -> tuple[object, list[str]]:
    """Check ``value``, plain data as parsed from TOML, against ``type_`` the way the
    configuration file is checked, cross-field rules of :mod:`config.checks` included.

    Returns the value as those rules see it (a table as a dict of its fields that passed,
    with defaults filled in; an array as a list keeping positions; anything unusable as a
    whole as a placeholder of neither kind) and one ``path: message`` line per problem,
    each path starting with ``path``.
    """
    errors: list[str] = []
    resolved = _collect(value, _type_info(type_), path, errors)
    return resolved, errors


def convert_value(value: object, type_: type[_T], path: str = "") -> tuple[_T | None, list[str]]:
    """:func:`validate_value`, then ``value`` converted to ``type_`` if there was no problem:
    ``(converted, [])`` or ``(None, errors)``."""
    _, errors = validate_value(value, type_, path)
    if errors:
        return None, errors
    try:
        return msgspec.convert(value, type_), []
    except msgspec.ValidationError as exc:  # a rule the walk does not know (__post_init__)
        return None, [validation_error_message(exc, path)]


def rebase_paths(value: object, type_: Any, base: str | os.PathLike[str]) -> object:
    """``value``, plain data that passed :func:`validate_value` against ``type_``, with every
    non-empty relative path in it (a string whose schema type is declared a path) joined to
    ``base``; absolute paths and everything else are kept as they are."""
    return _rebase(value, _type_info(type_), os.fspath(base))


def _rebase(value: object, info: mi.Type, base: str) -> object:
    if isinstance(info, mi.Metadata):
        if (info.extra or {}).get(PATH) and isinstance(value, str) and value:
            return os.path.normpath(os.path.join(base, value))  # an absolute value wins the join
        info = info.type
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        fields = {field.encode_name: field.type for field in info.fields}
        return {
            key: _rebase(item, fields[key], base) if key in fields else item
            for key, item in value.items()
        }
    if isinstance(info, mi.CollectionType) and isinstance(value, list | tuple):
        return [_rebase(item, info.item_type, base) for item in value]
    if isinstance(info, mi.TupleType) and isinstance(value, list | tuple):
        return [
            _rebase(item, item_info, base)
            for item, item_info in zip(value, info.item_types, strict=False)
        ]
    if isinstance(info, mi.DictType) and isinstance(value, dict):
        return {key: _rebase(item, info.value_type, base) for key, item in value.items()}
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if _kind_matches(value, member):
                return _rebase(value, member, base)
    return value


class _Invalid:
    """Marks a value that failed validation."""

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Final = _Invalid()

_ENTRIES: Final = ("entry", "entries")
_CHARACTERS: Final = ("character", "characters")

# Schema types the walk understands. TOML has no null or bytes; None is accepted where the
# schema allows it so that values built in Python validate too. TOML has no decimals either:
# a Decimal is written as a string holding a decimal number or as an integer.
_SUPPORTED: Final = (
    mi.AnyType,
    mi.NoneType,
    mi.BoolType,
    mi.IntType,
    mi.FloatType,
    mi.StrType,
    mi.DecimalType,
    mi.LiteralType,
    mi.EnumType,
    mi.StructType,
    mi.DictType,
    mi.CollectionType,
    mi.TupleType,
    mi.UnionType,
    mi.DateTimeType,
    mi.DateType,
    mi.TimeType,
)


def _declared_literals(
    annotation: object,
    found: dict[frozenset[tuple[type, object]], tuple[object, ...]],
    seen: set[type] | None = None,
) -> None:
    """Record the values of every ``Literal`` in ``annotation`` in their declared order.

    :func:`msgspec.inspect.type_info` reports ``Literal`` values sorted; messages list them
    in the order the schema declares them.
    """
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        found.setdefault(frozenset((type(value), value) for value in values), values)
        return
    seen = set() if seen is None else seen
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        if annotation not in seen:
            seen.add(annotation)
            for hint in get_type_hints(annotation, include_extras=True).values():
                _declared_literals(hint, found, seen)
        return
    for argument in get_args(annotation):
        _declared_literals(argument, found, seen)


_LITERAL_ORDER: Final[dict[frozenset[tuple[type, object]], tuple[object, ...]]] = {}

# type_info of each type walked so far (a schema type is walked again on every load)
_INFO: Final[dict[object, mi.Type]] = {}


def _type_info(type_: Any) -> mi.Type:
    try:
        return _INFO[type_]
    except KeyError:
        info = _INFO[type_] = mi.type_info(type_)
        _declared_literals(type_, _LITERAL_ORDER)
        return info


_child: Final = child_path

# A decimal number as written in a string: optional sign, digits with an optional fraction,
# optional exponent. Python's Decimal also takes "NaN", "Infinity", "1_000" and surrounding
# blanks; none of them is a sensible quantity or price.
_DECIMAL: Final = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")

DECIMAL_FLOAT_MESSAGE: Final = 'write decimals as strings, e.g. "0.00001" (floats are inexact)'


def _report(errors: list[str], path: str, message: str) -> _Invalid:
    errors.append(f"{path}: {message}" if path else message)
    return _INVALID


def _kind(value: object) -> str:
    """Name of a parsed value's type, as used in ``expected X, got Y`` messages."""
    if value is None:
        return "None"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    return type(value).__name__


def _literal(value: object) -> str:
    return json.dumps(value.value if isinstance(value, enum.Enum) else value, ensure_ascii=False)


def _expected(info: mi.Type) -> str:
    """Name of what a schema type accepts, as used in ``expected X, got Y`` messages."""
    if isinstance(info, mi.Metadata):
        return _expected(info.type)
    if isinstance(info, mi.StructType | mi.DictType):
        return "table"
    if isinstance(info, mi.CollectionType | mi.TupleType):
        return "array"
    if isinstance(info, mi.LiteralType | mi.EnumType):
        values = info.values if isinstance(info, mi.LiteralType) else tuple(info.cls)
        return " or ".join(sorted({_kind(_plain(v)) for v in values}))
    if isinstance(info, mi.UnionType):
        return " or ".join(_expected(member) for member in info.types)
    names: dict[type[mi.Type], str] = {
        mi.AnyType: "any value",
        mi.NoneType: "None",
        mi.BoolType: "bool",
        mi.IntType: "int",
        mi.FloatType: "float",
        mi.StrType: "str",
        mi.DecimalType: "decimal",
        mi.DateTimeType: "datetime",
        mi.DateType: "date",
        mi.TimeType: "time",
    }
    return names.get(type(info), type(info).__name__)


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _same_scalar(value: object, allowed: object) -> bool:
    return type(value) is type(allowed) and value == allowed


def _kind_matches(value: object, info: mi.Type) -> bool:
    """Whether ``value`` has the right basic type for ``info`` (limits not considered)."""
    if isinstance(info, mi.Metadata):
        return _kind_matches(value, info.type)
    if isinstance(info, mi.AnyType):
        return True
    if isinstance(info, mi.NoneType):
        return value is None
    if isinstance(info, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(info, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(info, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(info, mi.StrType):
        return isinstance(value, str)
    if isinstance(info, mi.DecimalType):
        # Floats are of the right kind so that they get a message of their own.
        return isinstance(value, str | int | float | Decimal) and not isinstance(value, bool)
    if isinstance(info, mi.LiteralType):
        return any(type(value) is type(allowed) for allowed in info.values)
    if isinstance(info, mi.EnumType):
        return any(type(value) is type(member.value) for member in info.cls)
    if isinstance(info, mi.StructType | mi.DictType):
        return isinstance(value, dict)
    if isinstance(info, mi.CollectionType | mi.TupleType):
        return isinstance(value, list | tuple)
    if isinstance(info, mi.DateTimeType):
        return isinstance(value, dt.datetime)
    if isinstance(info, mi.DateType):
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if isinstance(info, mi.TimeType):
        return isinstance(value, dt.time)
    if isinstance(info, mi.UnionType):
        return any(_kind_matches(value, member) for member in info.types)
    return False


def _bound_error(
    value: float | Decimal,
    *,
    gt: float | Decimal | None,
    ge: float | Decimal | None,
    lt: float | Decimal | None,
    le: float | Decimal | None,
    multiple_of: float | None = None,
) -> str | None:
    """The first limit ``value`` breaks; ``multiple_of`` applies to ints and floats only."""
    if gt is not None and not value > gt:
        return f"must be > {gt}"
    if ge is not None and not value >= ge:
        return f"must be >= {ge}"
    if lt is not None and not value < lt:
        return f"must be < {lt}"
    if le is not None and not value <= le:
        return f"must be <= {le}"
    if multiple_of is not None and not isinstance(value, Decimal) and value % multiple_of != 0:
        return f"must be a multiple of {multiple_of}"
    return None


def _length_error(
    length: int, min_length: int | None, max_length: int | None, nouns: tuple[str, str]
) -> str | None:
    """Check a length limit; ``nouns`` is the (singular, plural) name of what is counted."""
    if min_length is not None and length < min_length:
        if min_length == 1:
            return "must not be empty"
        return f"must have at least {min_length} {nouns[min_length != 1]}"
    if max_length is not None and length > max_length:
        return f"must have at most {max_length} {nouns[max_length != 1]}"
    return None


def _collect(value: object, info: mi.Type, path: str, errors: list[str]) -> object:
    """Check ``value`` against ``info``, appending a message to ``errors`` per problem.

    Returns the value as seen by cross-field checks (tables become mappings of their valid
    fields with defaults filled in) or ``_INVALID`` if the value itself is unusable.
    """
    extra: Mapping[str, Any] = {}
    if isinstance(info, mi.Metadata):
        extra = info.extra or {}
        info = info.type
    if not isinstance(info, _SUPPORTED) or (isinstance(info, mi.StructType) and info.array_like):
        raise TypeError(f"configuration schema uses a type the loader does not support: {info!r}")

    if isinstance(info, mi.UnionType):
        return _collect_union(value, info, path, errors)
    if not _kind_matches(value, info):
        if isinstance(info, mi.LiteralType | mi.EnumType):
            return _report(errors, path, _literal_error(info))
        return _report(errors, path, f"expected {_expected(info)}, got {_kind(value)}")

    if isinstance(info, mi.StructType):
        assert isinstance(value, dict)
        return _collect_struct(value, info, path, errors)
    if isinstance(info, mi.CollectionType):
        assert isinstance(value, list | tuple)
        problem = _length_error(len(value), info.min_length, info.max_length, _ENTRIES)
        if problem is not None:
            _report(errors, path, problem)
        return [
            _collect(item, info.item_type, f"{path}[{index}]", errors)
            for index, item in enumerate(value)
        ]
    if isinstance(info, mi.TupleType):
        assert isinstance(value, list | tuple)
        if len(value) != len(info.item_types):
            count = len(info.item_types)
            return _report(errors, path, f"must have exactly {count} entries, got {len(value)}")
        return [
            _collect(item, item_info, f"{path}[{index}]", errors)
            for index, (item, item_info) in enumerate(zip(value, info.item_types, strict=True))
        ]
    if isinstance(info, mi.DictType):
        assert isinstance(value, dict)
        problem = _length_error(len(value), info.min_length, info.max_length, _ENTRIES)
        if problem is not None:
            _report(errors, path, problem)
        resolved: dict[str, object] = {}
        for key, item in value.items():
            key_path = _child(path, key)
            if _collect(key, info.key_type, key_path, errors) is _INVALID:
                continue
            resolved[str(key)] = _collect(item, info.value_type, key_path, errors)
        return resolved
    if isinstance(info, mi.IntType | mi.FloatType):
        assert isinstance(value, int | float)
        problem = _bound_error(
            value,
            gt=info.gt,
            ge=info.ge,
            lt=info.lt,
            le=info.le,
            multiple_of=info.multiple_of,
        )
        return value if problem is None else _report(errors, path, problem)
    if isinstance(info, mi.DecimalType):
        return _collect_decimal(value, extra.get(DECIMAL_LIMITS) or {}, path, errors)
    if isinstance(info, mi.StrType):
        assert isinstance(value, str)
        problem = _length_error(len(value), info.min_length, info.max_length, _CHARACTERS)
        if problem is None and info.pattern is not None and not re.search(info.pattern, value):
            problem = str(extra.get(PATTERN_MESSAGE, f"must match the pattern {info.pattern!r}"))
        return value if problem is None else _report(errors, path, problem)
    if isinstance(info, mi.LiteralType):
        if any(_same_scalar(value, allowed) for allowed in info.values):
            return value
        return _report(errors, path, _literal_error(info))
    if isinstance(info, mi.EnumType):
        if any(_same_scalar(value, member.value) for member in info.cls):
            return value
        return _report(errors, path, _literal_error(info))
    if isinstance(info, mi.DateTimeType | mi.TimeType):
        assert isinstance(value, dt.datetime | dt.time)
        if info.tz is True and value.tzinfo is None:
            return _report(errors, path, "must include a UTC offset")
        if info.tz is False and value.tzinfo is not None:
            return _report(errors, path, "must not include a UTC offset")
        return value
    return value  # AnyType, NoneType, BoolType, DateType: the kind check was enough


def _collect_decimal(
    value: object, limits: Mapping[str, Decimal], path: str, errors: list[str]
) -> object:
    """Check a decimal written as a string or an integer (or given as a ``Decimal``)."""
    number: Decimal
    if isinstance(value, float):
        return _report(errors, path, DECIMAL_FLOAT_MESSAGE)
    if isinstance(value, str):
        if not _DECIMAL.match(value):
            return _report(errors, path, f"expected a decimal number, got {_literal(value)}")
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return _report(errors, path, f"expected a decimal number, got {_literal(str(value))}")
        number = value
    else:
        assert isinstance(value, int)
        number = Decimal(value)
    problem = _bound_error(
        number,
        gt=limits.get("gt"),
        ge=limits.get("ge"),
        lt=limits.get("lt"),
        le=limits.get("le"),
    )
    return number if problem is None else _report(errors, path, problem)


def _literal_error(info: mi.LiteralType | mi.EnumType) -> str:
    values: tuple[object, ...]
    if isinstance(info, mi.LiteralType):
        key = frozenset((type(value), value) for value in info.values)
        values = _LITERAL_ORDER.get(key, info.values)
    else:
        values = tuple(info.cls)
    shown = ", ".join(_literal(allowed) for allowed in values)
    return f"must be {shown}" if len(values) == 1 else f"must be one of {shown}"


def _collect_union(value: object, info: mi.UnionType, path: str, errors: list[str]) -> object:
    members = [member for member in info.types if not isinstance(member, mi.NoneType)]
    if value is None and len(members) < len(info.types):
        return None
    tagged = [m for m in members if isinstance(m, mi.StructType) and m.tag_field is not None]
    if tagged and isinstance(value, dict):
        return _collect_tagged(value, tagged, path, errors)
    candidates = [member for member in members if _kind_matches(value, member)]
    if not candidates:
        if len(members) == 1:
            return _collect(value, members[0], path, errors)
        return _report(errors, path, f"expected {_expected(info)}, got {_kind(value)}")
    first_errors: list[str] | None = None
    for member in candidates:
        attempt: list[str] = []
        result = _collect(value, member, path, attempt)
        if not attempt:
            return result
        if first_errors is None:
            first_errors = attempt
    assert first_errors is not None
    errors.extend(first_errors)
    return _INVALID


def _collect_tagged(
    value: dict[Any, Any], members: list[mi.StructType], path: str, errors: list[str]
) -> object:
    """Validate a table against a union of tagged structs, chosen by the tag's value."""
    tag_field = members[0].tag_field
    assert tag_field is not None
    tag_path = _child(path, tag_field)
    if tag_field not in value:
        return _report(errors, tag_path, "required field missing")
    for member in members:
        if _same_scalar(value[tag_field], member.tag):
            return _collect_struct(value, member, path, errors)
    shown = ", ".join(_literal(member.tag) for member in members)
    return _report(errors, tag_path, f"must be one of {shown}")


def _collect_struct(
    value: dict[Any, Any], info: mi.StructType, path: str, errors: list[str]
) -> dict[str, object]:
    fields = {field.encode_name: field for field in info.fields}
    resolved: dict[str, object] = {}
    if info.tag_field is not None:
        tag_path = _child(path, info.tag_field)
        if info.tag_field not in value:
            _report(errors, tag_path, "required field missing")
        elif not _same_scalar(value[info.tag_field], info.tag):
            _report(errors, tag_path, f"must be {_literal(info.tag)}")
    for key, item in value.items():
        if key == info.tag_field:
            continue
        field = fields.get(key)
        field_path = _child(path, key)
        if field is None:
            if info.forbid_unknown_fields:
                _report(errors, field_path, "unknown field")
            continue
        result = _collect(item, field.type, field_path, errors)
        if result is not _INVALID:
            resolved[key] = result
    for name, field in fields.items():
        if name in value:
            continue
        if field.required:
            _report(errors, _child(path, name), "required field missing")
            continue
        default = (
            field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
        )
        # Defaults are valid by construction; they are resolved only so that cross-field
        # checks see them in the same shape as values written in the file.
        resolved[name] = _collect(msgspec.to_builtins(default), field.type, "", [])
    check = CROSS_FIELD_CHECKS.get(info.cls)
    if check is not None:
        errors.extend(check(resolved, path))
    return resolved


_VALIDATION_PATH: Final = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>.*)`$")


def validation_error_message(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's message as ``path: message``, the path under ``prefix``."""
    match = _VALIDATION_PATH.match(str(exc))
    if match is None:
        return f"{prefix}: {exc}" if prefix else str(exc)
    path = match["path"]
    if prefix:
        path = prefix + path
    path = path.removeprefix(".")
    return f"{path}: {match['reason']}" if path else match["reason"]
