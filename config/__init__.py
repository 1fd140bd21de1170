"""Gateway configuration: a typed, frozen schema loaded from TOML.

:mod:`config.schema` holds the Structs, :mod:`config.checks` the rules across fields,
:mod:`config.walk` the validation that reports every problem with its path, and
:mod:`config.loader` reading files, LP adapter settings, overrides and the files' paths.
"""

from config.loader import (
    ConfigError,
    SettingsCheck,
    SettingsSchema,
    config_base,
    default_config_path,
    load_config,
    parse_config,
    resolve_paths,
    validate_raw,
    with_overrides,
)
from config.schema import (
    BackofficeGateway,
    BackofficeSettings,
    CandidatePolicy,
    ClientRiskSettings,
    ClusterSettings,
    Config,
    GatewaySettings,
    InstrumentSettings,
    LpSettings,
    OrdersSettings,
    RiskSettings,
    RoutingSettings,
    SessionSettings,
    StatementColumns,
    StoreSettings,
)
from config.walk import convert_value, validate_value

__all__ = [
    "BackofficeGateway",
    "BackofficeSettings",
    "CandidatePolicy",
    "ClientRiskSettings",
    "ClusterSettings",
    "Config",
    "ConfigError",
    "GatewaySettings",
    "InstrumentSettings",
    "LpSettings",
    "OrdersSettings",
    "RiskSettings",
    "RoutingSettings",
    "SessionSettings",
    "SettingsCheck",
    "SettingsSchema",
    "StatementColumns",
    "StoreSettings",
    "config_base",
    "convert_value",
    "default_config_path",
    "load_config",
    "parse_config",
    "resolve_paths",
    "validate_raw",
    "validate_value",
    "with_overrides",
]
