"""The configuration of ``fixgw lp-sim`` (see :mod:`gateway.sim.lp_sim` for the
file's tables): its Structs, reading and validation.

A module of its own because msgspec reads a Struct's field types from its
class, which it cannot do for a class compiled to C: the simulator's FIX
application is compiled, its configuration is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from config.checks import child_path
from config.loader import (
    ConfigError,
    config_base,
    convert_value,
    parse_toml,
    read_config_text,
    validate_value,
)
from config.schema import (
    FilePath,
    FsyncPolicy,
    InstrumentSettings,
    LogFormat,
    LogLevel,
    LpName,
    NonEmptyPath,
    SessionSettings,
    session_identity,
)
from config.walk import rebase_paths
from lp_adapters.simulated.settings import SimulatedLpSettings, check_settings
from router.model import Instrument

__all__ = [
    "LpSimConfig",
    "LpSimSettings",
    "instruments_of",
    "load_lp_sim_config",
    "parse_lp_sim_config",
    "simulated_settings",
    "statement_dir",
    "validate_lp_sim_raw",
]

NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class LpSimSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[lp]`` table."""

    name: LpName
    """The LP's name: in logs and as the prefix of OrderID (37) and ExecID (17)."""

    data_dir: NonEmptyPath = "var/lp-sim"
    """Directory of the session stores; a relative path is resolved against the
    folder of the configuration file (``--data-dir`` against the working directory)."""

    statement_dir: FilePath = ""
    """Folder of the LP's statement, a CSV file of its fills per UTC day
    (:mod:`lp_adapters.simulated.statement`); a relative path is resolved
    against the folder of the configuration file (``--statements`` against the
    working directory).  Empty: ``<data_dir>/statements``."""

    price_tolerance_ticks: NonNegativeInt = 0
    """Last look: a limit order worse for the LP than its current price by more
    than this many ticks is rejected with Text "price moved"."""

    host: str = "0.0.0.0"
    """Address the FIX acceptor listens on (the port is given on the command line)."""

    fsync: FsyncPolicy = "never"
    """Durability of the session stores, as the gateway's ``[store].fsync``."""

    log_level: LogLevel = "info"
    log_format: LogFormat = "json"


class LpSimConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole ``fixgw lp-sim`` configuration file."""

    lp: LpSimSettings
    sessions: Annotated[tuple[SessionSettings, ...], msgspec.Meta(min_length=1)]
    """One per gateway that may connect; SenderCompID is the LP's CompID."""

    instruments: Annotated[tuple[InstrumentSettings, ...], msgspec.Meta(min_length=1)]
    """The same tables as the gateway's ``[[instruments]]``."""

    simulated: SimulatedLpSettings = SimulatedLpSettings()
    """The SimulatedLp's settings (quotes, latency, last look, partial fills)."""


def load_lp_sim_config(
    path: str | Path, *, data_dir: str | None = None, statements: str | None = None
) -> LpSimConfig:
    """Read and validate the LP simulator configuration at ``path``, its
    relative paths resolved against the file's folder
    (:func:`config.loader.config_base`); ``data_dir`` replaces ``lp.data_dir``
    and ``statements`` ``lp.statement_dir``, as given.  Raises
    :class:`ConfigError` listing every problem."""
    source = str(path)
    text = read_config_text(path)
    return parse_lp_sim_config(
        text, source=source, data_dir=data_dir, statements=statements, base=config_base(path)
    )


def parse_lp_sim_config(
    text: str,
    *,
    source: str | None = None,
    data_dir: str | None = None,
    statements: str | None = None,
    base: str | Path | None = None,
) -> LpSimConfig:
    """Parse and validate an LP simulator configuration given as TOML text;
    with ``base``, its relative paths are resolved against that folder.
    ``data_dir`` and ``statements`` (the command line's) replace
    ``lp.data_dir`` and ``lp.statement_dir``."""
    config, errors = validate_lp_sim_raw(parse_toml(text, source=source), base=base)
    if data_dir is not None and not data_dir:
        errors.append("--data-dir: must not be empty")
    if statements is not None and not statements:
        errors.append("--statements: must not be empty")
    if config is None or errors:
        raise ConfigError(errors, source=source)
    if data_dir:
        config = msgspec.structs.replace(
            config, lp=msgspec.structs.replace(config.lp, data_dir=data_dir)
        )
    if statements:
        config = msgspec.structs.replace(
            config, lp=msgspec.structs.replace(config.lp, statement_dir=statements)
        )
    return config


def validate_lp_sim_raw(
    raw: Mapping[str, Any], *, base: str | Path | None = None
) -> tuple[LpSimConfig | None, list[str]]:
    """Validate a parsed TOML document in one pass, every problem with its
    path, the rules of ``[simulated]`` against the instruments included:
    ``(config, [])`` or ``(None, errors)``.  With ``base``, relative paths
    in the config are resolved against that folder."""
    resolved, errors = validate_value(raw, LpSimConfig)
    if isinstance(resolved, Mapping):
        errors.extend(_cross_field_errors(resolved))
    simulated = raw.get("simulated")
    if isinstance(simulated, Mapping) and "statement_dir" in simulated:
        errors.append(
            "simulated.statement_dir: not used by lp-sim, which writes its statement "
            "to lp.statement_dir (or --statements)"
        )
    # the rules of [simulated] repeat a reference problem found above: once is enough
    errors = list(dict.fromkeys([*errors, *_simulated_errors(raw)]))
    if errors:
        return None, errors
    if base is not None:
        rebased = rebase_paths(raw, LpSimConfig, base)
        assert isinstance(rebased, Mapping)
        raw = rebased
    try:
        config = msgspec.convert(raw, LpSimConfig)
    except msgspec.ValidationError as exc:  # only if the walk above missed a rule
        return None, [str(exc)]
    return config, []


def _simulated_errors(raw: Mapping[str, Any]) -> list[str]:
    """What ``[simulated]`` breaks of the simulated LP's rules beyond its
    type (:func:`~lp_adapters.simulated.settings.check_settings`), once the
    table and every instrument are valid (their own problems are reported
    by the walk)."""
    simulated, problems = convert_value(raw.get("simulated", {}), SimulatedLpSettings)
    instruments, broken = convert_value(
        raw.get("instruments"), tuple[InstrumentSettings, ...], "instruments"
    )
    if simulated is None or problems or instruments is None or broken:
        return []
    by_symbol = {entry.symbol: entry.to_instrument() for entry in instruments}
    if len(by_symbol) < len(instruments):
        return []  # a duplicate symbol: reported by the cross-field rules
    return [f"simulated.{line}" for line in check_settings(simulated, by_symbol)]


def _tables(value: object) -> list[tuple[int, Mapping[str, object]]]:
    if not isinstance(value, list):
        return []
    return [(index, entry) for index, entry in enumerate(value) if isinstance(entry, Mapping)]


def _cross_field_errors(values: Mapping[str, object]) -> list[str]:
    """Unique sessions and symbols; ``[simulated]`` names configured symbols
    (checked here too, so that a reference is reported while some other
    field of an instrument is still wrong)."""
    errors: list[str] = []
    sessions: dict[str, int] = {}
    for index, entry in _tables(values.get("sessions")):
        parts = (entry.get("BeginString"), entry.get("SenderCompID"), entry.get("TargetCompID"))
        if not all(isinstance(part, str) for part in parts):
            continue
        identity = session_identity(*(str(part) for part in parts))
        if identity in sessions:
            errors.append(
                f"sessions[{index}]: duplicate session {identity} "
                f"(also sessions[{sessions[identity]}])"
            )
        else:
            sessions[identity] = index
    instruments = values.get("instruments")
    symbols: dict[str, int] = {}
    for index, entry in _tables(instruments):
        symbol = entry.get("symbol")
        if not isinstance(symbol, str):
            continue
        if symbol in symbols:
            errors.append(
                f"instruments[{index}]: duplicate symbol {symbol} "
                f"(also instruments[{symbols[symbol]}])"
            )
        else:
            symbols[symbol] = index
    complete = isinstance(instruments, list) and len(symbols) == len(instruments)
    simulated = values.get("simulated")
    if not complete or not isinstance(simulated, Mapping):
        return errors  # an instrument without a valid symbol: references are not checked
    listed = simulated.get("symbols")
    if isinstance(listed, list):
        for index, symbol in enumerate(listed):
            if isinstance(symbol, str) and symbol not in symbols:
                errors.append(f"simulated.symbols[{index}]: no such instrument {symbol}")
    start_mid = simulated.get("start_mid")
    if isinstance(start_mid, Mapping):
        for symbol in start_mid:
            if symbol not in symbols:
                path = child_path("simulated.start_mid", symbol)
                errors.append(f"{path}: no such instrument {symbol}")
    return errors


def instruments_of(config: LpSimConfig) -> dict[str, Instrument]:
    return {i.symbol: i.to_instrument() for i in config.instruments}


def simulated_settings(config: LpSimConfig) -> SimulatedLpSettings:
    """``[simulated]``: the settings the SimulatedLp is built with (without
    a statement of its own: the lp-sim writes the statement of what it sent,
    :func:`statement_dir`)."""
    return msgspec.structs.replace(config.simulated, statement_dir="")


def statement_dir(config: LpSimConfig) -> Path:
    """Where the lp-sim writes its statement: ``lp.statement_dir``, by
    default ``statements`` in ``lp.data_dir``."""
    lp = config.lp
    return Path(lp.statement_dir) if lp.statement_dir else Path(lp.data_dir) / "statements"
