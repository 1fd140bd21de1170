"""The ``simulated`` LP adapter kind: an in-process last-look LP for tests,
demos and soak runs (:mod:`lp_adapters.simulated.adapter`), with its
settings (:mod:`lp_adapters.simulated.settings`).

:data:`KIND` is what :mod:`lp_adapters.registry` registers under
``simulated``.  The adapter module is imported only when :class:`SimulatedLp`
or :class:`MarketModel` is first asked for: checking a config needs only the
settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from lp_adapters.registry import AdapterKind
from lp_adapters.simulated.settings import SimulatedLpSettings, check_settings

if TYPE_CHECKING:
    from lp_adapters.simulated.adapter import MarketModel, SimulatedLp

__all__ = ["KIND", "MarketModel", "SimulatedLp", "SimulatedLpSettings", "check_settings"]

KIND: Final = AdapterKind(
    name="simulated",
    settings_type=SimulatedLpSettings,
    adapter="lp_adapters.simulated.adapter:SimulatedLp",
    check=check_settings,
)
"""The ``simulated`` kind: :class:`SimulatedLp` with :class:`SimulatedLpSettings`."""


def __getattr__(name: str) -> object:
    if name in ("MarketModel", "SimulatedLp"):
        from lp_adapters.simulated import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
