"""Gateway configuration: a typed, frozen schema loaded from TOML."""

from config.loader import (
    ConfigError,
    default_config_path,
    load_config,
    parse_config,
    validate_raw,
    with_overrides,
)
from config.schema import (
    CandidatePolicy,
    ClientRiskSettings,
    Config,
    GatewaySettings,
    InstrumentSettings,
    LpSettings,
    OrdersSettings,
    RiskSettings,
    RoutingSettings,
    SessionSettings,
    StoreSettings,
)

__all__ = [
    "CandidatePolicy",
    "ClientRiskSettings",
    "Config",
    "ConfigError",
    "GatewaySettings",
    "InstrumentSettings",
    "LpSettings",
    "OrdersSettings",
    "RiskSettings",
    "RoutingSettings",
    "SessionSettings",
    "StoreSettings",
    "default_config_path",
    "load_config",
    "parse_config",
    "validate_raw",
    "with_overrides",
]
