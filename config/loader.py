"""Loading and validating the TOML configuration.

A document is walked against :class:`~config.schema.Config` by :mod:`config.walk`, which
reports every problem in it at once, one ``path: message`` line each, e.g.
``sessions[2].HeartBtInt: must be > 0``; the cross-field rules of :mod:`config.checks` run
in the same pass. Only a document without any problem is converted.

The settings of an LP (``[lps.settings]``) belong to its adapter kind, which this package
does not know: a caller that does passes ``adapter_settings``, the :class:`SettingsSchema` of
each kind by name, and each LP's ``adapter`` and ``settings`` are then checked in the same
pass, with the same paths (``lps[1].settings.spread_ticks: must be >= 1``).
:func:`validate_value` and :func:`convert_value` check any other value the same way.

A configuration keeps its paths as written. Relative ones belong to the file's folder
(:func:`config_base`); :func:`resolve_paths` makes them absolute for whoever opens them,
every path field of the schema and of each LP's adapter settings alike.
"""

from __future__ import annotations

import json
import os
import re
import site
import sysconfig
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from config.checks import child_path
from config.schema import Config, InstrumentSettings
from config.walk import convert_value, rebase_paths, validate_value, validation_error_message
from router.model import Instrument

__all__ = [
    "ConfigError",
    "SettingsCheck",
    "SettingsSchema",
    "config_base",
    "convert_value",
    "default_config_path",
    "load_config",
    "lp_adapter_errors",
    "parse_config",
    "parse_toml",
    "read_config_text",
    "resolve_paths",
    "validate_raw",
    "validate_value",
    "with_overrides",
]


class ConfigError(Exception):
    """A configuration could not be loaded.

    ``errors`` holds one message per problem and ``str()`` lists them one per line.
    ``source`` names the file the configuration came from, when known.
    """

    def __init__(self, errors: Sequence[str], *, source: str | None = None) -> None:
        self.errors: list[str] = list(errors)
        self.source = source
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,), {"source": self.source})


SettingsCheck = Callable[[Any, Mapping[str, Instrument]], list[str]]
"""Rules of an adapter kind's settings that their type cannot express (across fields, or
against the instruments): called with the settings converted to their type and the
configured instruments by symbol, it returns ``field: message`` lines whose paths are
relative to the settings table, e.g. ``symbols[1]: no such instrument XAU/USD``."""


class SettingsSchema(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the ``[lps.settings]`` table of one LP adapter kind must hold."""

    settings_type: type[Any]
    """The type the table is checked against, like the rest of the file, and converted to:
    a msgspec Struct type, or ``dict`` for a kind that takes any table."""

    check: SettingsCheck | None = None
    """Run on the converted settings once they match ``settings_type`` and every instrument
    is valid."""


def default_config_path() -> Path:
    """Path of the ``default.toml`` shipped inside the ``config`` package."""
    return Path(__file__).resolve().with_name("default.toml")


def config_base(path: str | os.PathLike[str]) -> Path:
    """The folder that relative paths in the configuration file at ``path`` are relative to:
    the file's own folder, wherever the process was started from.

    The packaged default is the one exception when the package is installed (its folder lies
    in site-packages rather than a source checkout): resolving there would put the data into
    the installed package. It is then read as if it were ``config/default.toml`` in the working
    directory, so its ``../var/data`` is ``./var/data`` there.
    """
    file = Path(os.path.abspath(path))
    packaged = default_config_path()
    if file.resolve() == packaged and _installed(packaged.parent):
        return Path.cwd() / packaged.parent.name
    return file.parent


def _installed(folder: Path) -> bool:
    """Whether ``folder`` lies in a site-packages directory of this interpreter."""
    roots = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    roots.add(site.getusersitepackages())
    return any(folder.is_relative_to(Path(root).resolve()) for root in roots if root)


def resolve_paths(
    config: Config,
    base: str | os.PathLike[str],
    adapter_settings: Mapping[str, SettingsSchema] | None = None,
) -> Config:
    """``config`` with every relative path in it made absolute against ``base`` (the folder of
    its file, :func:`config_base`): the schema's path fields (``gateway.data_dir``, the TLS
    files) and, given ``adapter_settings``, those of each LP's settings by its kind."""
    raw = rebase_paths(msgspec.to_builtins(config), Config, base)
    assert isinstance(raw, dict)
    for entry in raw.get("lps", ()):
        schema = (adapter_settings or {}).get(entry["adapter"])
        if schema is not None:
            entry["settings"] = rebase_paths(entry["settings"], schema.settings_type, base)
    return msgspec.convert(raw, Config)


def load_config(
    path: str | os.PathLike[str], adapter_settings: Mapping[str, SettingsSchema] | None = None
) -> Config:
    """Read, parse and validate the configuration file at ``path``.

    Raises :class:`ConfigError` if the file cannot be read, is not valid UTF-8 or TOML, or
    does not match the schema. With ``adapter_settings`` (see :func:`validate_raw`), an LP
    whose adapter kind is not in it, or whose settings do not suit its kind, is an error too.
    """
    return parse_config(
        read_config_text(path), source=str(Path(path)), adapter_settings=adapter_settings
    )


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of the configuration file at ``path``; :class:`ConfigError`
    if it cannot be read or is not valid UTF-8."""
    file = Path(path)
    source = str(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [f"cannot read configuration file {source}: {reason}"], source=source
        ) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"configuration file {source} is not valid UTF-8 (byte offset {exc.start})"],
            source=source,
        ) from exc
    return text


_TOML_POSITION: Final = re.compile(
    r"^(?P<reason>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$"
)


def parse_config(
    text: str,
    *,
    source: str | None = None,
    adapter_settings: Mapping[str, SettingsSchema] | None = None,
) -> Config:
    """Parse and validate a configuration given as TOML text (see :func:`validate_raw`).

    ``source`` names where the text came from; it is kept on a raised :class:`ConfigError`.
    """
    config, errors = validate_raw(parse_toml(text, source=source), adapter_settings)
    if config is None:
        raise ConfigError(errors, source=source)
    return config


def parse_toml(text: str, *, source: str | None = None) -> dict[str, Any]:
    """The TOML document ``text`` as plain data, not yet validated; raises
    :class:`ConfigError` with the line and column of a syntax error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.match(message)
        if match is not None:
            message = (
                f"TOML syntax error at line {match['line']}, column {match['col']}: "
                f"{match['reason']}"
            )
        else:
            message = f"TOML syntax error: {message}"
        raise ConfigError([message], source=source) from exc


def validate_raw(
    raw: Mapping[str, Any], adapter_settings: Mapping[str, SettingsSchema] | None = None
) -> tuple[Config | None, list[str]]:
    """Validate a parsed TOML document.

    Returns ``(config, [])`` when the document is valid and ``(None, errors)`` otherwise,
    with every problem found listed as ``path: message``.

    ``adapter_settings`` maps each LP adapter kind to the schema of its settings. Given it,
    each ``[[lps]]`` entry's ``adapter`` must be one of its kinds and the entry's
    ``settings`` must suit that kind (:func:`lp_adapter_errors`), reported in the same list.
    Without it, any kind of the right form and any table of settings pass.
    """
    values, errors = validate_value(raw, Config)
    if adapter_settings is not None and isinstance(values, dict):
        lps = values.get("lps")
        instruments = _valid_instruments(raw.get("instruments", ()))
        for index, entry in enumerate(lps if isinstance(lps, list) else ()):
            kind = entry.get("adapter") if isinstance(entry, dict) else None
            if isinstance(kind, str):
                errors += lp_adapter_errors(
                    kind, entry.get("settings"), adapter_settings, instruments, f"lps[{index}]"
                )
    if errors:
        return None, errors
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        # Only reachable if the walk above misses a rule msgspec enforces.
        return None, [validation_error_message(exc)]
    return config, []


def lp_adapter_errors(
    kind: str,
    settings: Mapping[str, Any] | None,
    adapter_settings: Mapping[str, SettingsSchema],
    instruments: Mapping[str, Instrument] | None,
    path: str,
) -> list[str]:
    """The problems of the ``[[lps]]`` entry at ``path`` (e.g. ``lps[1]``) with adapter
    ``kind`` and ``settings``, as ``path: message`` lines: a kind missing from
    ``adapter_settings``, or settings that do not match the kind's type or break its check.

    The check runs only with ``instruments``, the configured instruments by symbol (None when
    they are not valid themselves); ``settings`` None (not a table) is not looked at.
    """
    schema = adapter_settings.get(kind)
    if schema is None:
        known = ", ".join(json.dumps(name) for name in sorted(adapter_settings)) or "none"
        return [
            f"{child_path(path, 'adapter')}: unknown LP adapter kind {json.dumps(kind)}; "
            f"known kinds: {known}"
        ]
    if settings is None:
        return []
    settings_path = child_path(path, "settings")
    converted, errors = convert_value(settings, schema.settings_type, settings_path)
    if errors or schema.check is None or instruments is None:
        return errors
    return [f"{settings_path}.{line}" for line in schema.check(converted, instruments)]


def _valid_instruments(raw: object) -> dict[str, Instrument] | None:
    """The instruments of the ``[[instruments]]`` array ``raw`` by symbol, or None when any
    of them is not valid."""
    converted, errors = convert_value(raw, tuple[InstrumentSettings, ...], "instruments")
    if converted is None or errors:
        return None
    return {entry.symbol: entry.to_instrument() for entry in converted}


def with_overrides(
    config: Config,
    *,
    fix_host: str | None = None,
    fix_port: int | None = None,
    http_host: str | None = None,
    http_port: int | None = None,
    drop_copy_port: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    cluster_servers: tuple[str, ...] | None = None,
) -> Config:
    """Return ``config`` with the given ``[gateway]`` settings (and
    ``[cluster] servers``) replaced.

    Arguments left as ``None`` keep their configured value. The result is validated like a
    loaded file; an out-of-range value raises :class:`ConfigError`.
    """
    changes: dict[str, object] = {}
    if fix_host is not None:
        changes["fix_host"] = fix_host
    if http_host is not None:
        changes["http_host"] = http_host
    if fix_port is not None:
        changes["fix_port"] = fix_port
    if http_port is not None:
        changes["http_port"] = http_port
    if drop_copy_port is not None:
        changes["drop_copy_port"] = drop_copy_port
    if data_dir is not None:
        changes["data_dir"] = os.fspath(data_dir)
    if not changes and cluster_servers is None:
        return config
    gateway = msgspec.structs.replace(config.gateway, **changes)
    updated = msgspec.structs.replace(config, gateway=gateway)
    if cluster_servers is not None:
        cluster = msgspec.structs.replace(config.cluster, servers=cluster_servers)
        updated = msgspec.structs.replace(updated, cluster=cluster)
    _, errors = validate_raw(msgspec.to_builtins(updated))
    if errors:
        raise ConfigError(errors)
    return updated
