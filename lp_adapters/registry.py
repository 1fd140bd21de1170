"""The LP adapter kinds: what each ``adapter = "..."`` of the config names.

A kind (:class:`AdapterKind`) is an adapter class, the Struct type of its
settings (``[lps.settings]``) and, optionally, a check of those settings that
the type cannot express (across fields, or against the instruments).  The
registry uses them to

* check a config without building any adapter: :func:`adapter_settings` is
  what :func:`config.loader.load_config` takes to check every LP's kind and
  settings in the same pass as the rest of the file;
* build adapters: :func:`create_adapter` converts an LP's settings to the
  kind's type, checks them, and hands the typed settings to the adapter.

The built-in kinds, ``simulated`` and ``fix``, are known from the start; each
package (:mod:`lp_adapters.simulated`, :mod:`lp_adapters.fix`) defines its
``KIND``, and is imported the first time the kind is looked up.  Their
adapter modules are imported only when an adapter is built, so checking a
config needs just the settings modules.  Other kinds are added with
:func:`register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import msgspec

from config.loader import SettingsSchema
from config.schema import LpAdapterKind
from config.walk import convert_value, validate_value
from lp_adapters.base import EventSink, LpAdapter
from router.model import Instrument

__all__ = [
    "AdapterKind",
    "adapter_class",
    "adapter_kind",
    "adapter_settings",
    "create_adapter",
    "register",
    "registered_kinds",
    "unregister",
]

S = TypeVar("S")


class AdapterKind(
    msgspec.Struct, Generic[S], frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """One kind of LP adapter, as the registry knows it."""

    name: str
    """The kind, as written in the config (``adapter = "fix"``)."""

    settings_type: type[S]
    """What ``[lps.settings]`` is checked against and converted to before
    the adapter is built with it: a msgspec Struct type (interpreted, so
    that msgspec can read its fields), or ``dict`` for settings taken as
    they are."""

    adapter: type[LpAdapter] | str
    """The adapter class, or where to import it from (``"module:Class"``)
    when it is first needed."""

    check: Callable[[S, Mapping[str, Instrument]], list[str]] | None = None
    """Rules of the settings beyond their type: given the converted settings
    and the instruments by symbol, ``field: message`` lines, paths relative
    to the settings table."""

    @property
    def schema(self) -> SettingsSchema:
        """The kind's settings as :func:`config.loader.validate_raw` checks them."""
        return SettingsSchema(settings_type=self.settings_type, check=self.check)

    def adapter_class(self) -> type[LpAdapter]:
        """The adapter class, imported now if the kind names it by path."""
        if not isinstance(self.adapter, str):
            return self.adapter
        module, _, name = self.adapter.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, LpAdapter)):
            raise TypeError(f"adapter kind {self.name!r}: {self.adapter} is not an LpAdapter")
        return cls

    def settings_for(self, name: str, instruments: Mapping[str, Instrument], settings: object) -> S:
        """``settings`` (the config's mapping, or already of the settings
        type) converted and checked for the LP ``name``; ``ValueError``
        naming the LP and every problem otherwise."""
        typed: S | None
        errors: list[str] = []
        if isinstance(settings, msgspec.Struct) and isinstance(settings, self.settings_type):
            typed = settings
        else:
            raw = dict(settings) if isinstance(settings, Mapping) else settings
            typed, errors = convert_value(raw, self.settings_type)
        if typed is not None and not errors and self.check is not None:
            errors = self.check(typed, instruments)
        if typed is None or errors:
            raise ValueError(f"LP {name!r}: invalid settings: {'; '.join(errors)}")
        return typed


_REGISTRY: dict[str, AdapterKind[Any]] = {}

# Each package defines KIND; imported when the kind is first looked up.
_BUILTIN_PACKAGES: Final[Mapping[str, str]] = {
    "simulated": "lp_adapters.simulated",
    "fix": "lp_adapters.fix",
}

_A = TypeVar("_A", bound=type[LpAdapter])


def _find(kind: str) -> AdapterKind[Any] | None:
    found = _REGISTRY.get(kind)
    if found is None and kind in _BUILTIN_PACKAGES:
        builtin = importlib.import_module(_BUILTIN_PACKAGES[kind]).KIND
        if not isinstance(builtin, AdapterKind) or builtin.name != kind:
            raise TypeError(f"{_BUILTIN_PACKAGES[kind]}.KIND is not the adapter kind {kind!r}")
        found = _REGISTRY.setdefault(kind, builtin)
    return found


def _describe(kind: AdapterKind[Any]) -> str:
    adapter: Any = kind.adapter  # a class object: its names read untyped
    if isinstance(adapter, str):
        return adapter.replace(":", ".")
    return f"{adapter.__module__}.{adapter.__qualname__}"


def register(
    kind: str,
    settings_type: type[Any] = dict,
    *,
    check: Callable[[Any, Mapping[str, Instrument]], list[str]] | None = None,
) -> Callable[[_A], _A]:
    """Class decorator: make an adapter class available under ``kind``,
    built with its settings converted to ``settings_type`` and passed by
    ``check`` (see :class:`AdapterKind`).  A class compiled by mypyc is
    registered by a call instead, ``register(kind, Settings)(Adapter)``:
    a decorated class would not be compiled to a native class.

    Raises ``ValueError`` if ``kind`` is not a kind the config can name or
    is already taken, and ``TypeError`` if ``settings_type`` is not a class
    or the decorated class is not an :class:`LpAdapter`.
    """
    if not kind:
        raise ValueError("an adapter kind needs a non-empty name")
    _, problems = validate_value(kind, LpAdapterKind)
    if problems:
        raise ValueError(f"adapter kind {kind!r}: {problems[0]}")
    if not isinstance(settings_type, type):
        raise TypeError(f"the settings type of adapter kind {kind!r} must be a class")

    def decorate(cls: _A) -> _A:
        if not (isinstance(cls, type) and issubclass(cls, LpAdapter)):
            raise TypeError(f"{cls!r} is not an LpAdapter subclass")
        existing = _find(kind)
        if existing is not None:
            raise ValueError(
                f"adapter kind {kind!r} is already registered by {_describe(existing)}"
            )
        _REGISTRY[kind] = AdapterKind(
            name=kind, settings_type=settings_type, adapter=cls, check=check
        )
        return cls

    return decorate


def unregister(kind: str) -> None:
    """Forget a kind added with :func:`register` (a test's own kind, when
    the test is over); ``KeyError`` if it is not registered."""
    del _REGISTRY[kind]


def registered_kinds() -> tuple[str, ...]:
    """Every kind that :func:`adapter_kind` can resolve, sorted."""
    return tuple(sorted(set(_REGISTRY) | set(_BUILTIN_PACKAGES)))


def adapter_kind(kind: str) -> AdapterKind[Any]:
    """The kind registered as ``kind``; ``KeyError`` naming the known kinds
    when there is none."""
    found = _find(kind)
    if found is None:
        known = ", ".join(repr(k) for k in registered_kinds()) or "none"
        raise KeyError(f"unknown LP adapter kind {kind!r}; known kinds: {known}")
    return found


def adapter_class(kind: str) -> type[LpAdapter]:
    """The adapter class registered under ``kind`` (``KeyError`` as
    :func:`adapter_kind`)."""
    return adapter_kind(kind).adapter_class()


def adapter_settings() -> dict[str, SettingsSchema]:
    """The settings schema of every registered kind, by kind: what
    :func:`config.loader.load_config` and :func:`config.loader.validate_raw`
    take as ``adapter_settings``."""
    return {kind: adapter_kind(kind).schema for kind in registered_kinds()}


def create_adapter(
    kind: str,
    name: str,
    instruments: Mapping[str, Instrument],
    sink: EventSink,
    settings: Mapping[str, Any] | msgspec.Struct,
    data_dir: Path | None = None,
    *,
    clock: Callable[[], float] | None = None,
    write_barrier: Callable[[], None] | None = None,
) -> LpAdapter:
    """Build the adapter named ``name`` of the given ``kind``; ``data_dir``
    is where an adapter that keeps state on disk puts it by default,
    ``clock`` the gateway's clock, ``write_barrier`` what an adapter with a
    wire makes durable before its bytes leave (the order journal's flush).

    ``settings`` is the LP's ``settings`` table from the config (or a value
    of the kind's settings type); it is converted and checked first, and an
    LP whose settings do not pass raises ``ValueError`` naming the LP and
    every problem.  An unknown ``kind`` raises ``KeyError``.
    """
    spec = adapter_kind(kind)
    typed = spec.settings_for(name, instruments, settings)
    adapter = spec.adapter_class()(name, instruments, sink, typed)
    if data_dir is not None:
        adapter.data_dir = data_dir
    if clock is not None:
        adapter.clock = clock
    adapter.write_barrier = write_barrier
    return adapter
