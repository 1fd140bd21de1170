"""Risk: pre-trade limits per client (pure functions, no I/O)."""

from risk.limits import ClientLimits, RiskBreach, check

__all__ = ["ClientLimits", "RiskBreach", "check"]
