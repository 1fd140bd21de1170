"""The ``fix`` LP adapter kind: the gateway as a FIX 4.4 initiator to an
LP's acceptor (:mod:`lp_adapters.fix.adapter`), with its settings
(:mod:`lp_adapters.fix.settings`).

:data:`KIND` is what :mod:`lp_adapters.registry` registers under ``fix``.
The adapter module, which brings in the FIX engine, is imported only when
:class:`FixLp` is first asked for: checking a config needs only the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from lp_adapters.fix.settings import FixLpSettings, check_settings
from lp_adapters.registry import AdapterKind

if TYPE_CHECKING:
    from lp_adapters.fix.adapter import FixLp

__all__ = ["KIND", "FixLp", "FixLpSettings", "check_settings"]

KIND: Final = AdapterKind(
    name="fix",
    settings_type=FixLpSettings,
    adapter="lp_adapters.fix.adapter:FixLp",
    check=check_settings,
)
"""The ``fix`` kind: :class:`FixLp` with :class:`FixLpSettings`."""


def __getattr__(name: str) -> object:
    if name == "FixLp":
        from lp_adapters.fix.adapter import FixLp

        return FixLp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
