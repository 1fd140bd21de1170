"""The settings of the FIX LP adapter (``[lps.settings]`` of an LP whose
adapter is ``fix``) and the rules across them; see :mod:`lp_adapters.fix.adapter`.

A module of its own because msgspec reads a Struct's field types from its
class, which it cannot do for a class compiled to C: the adapter itself is
compiled, its settings are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from config.schema import FilePath
from router.model import Instrument

__all__ = ["FixLpSettings", "check_settings"]


class FixLpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One FIX LP's settings: where its acceptor is, the session's CompIDs
    and logon, the session store, market data, reconnecting and the
    outbound buffer (each described in the adapter's module documentation).
    ``data_dir`` is a path: a relative one is resolved against the folder of
    the configuration file that names it."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    sender_comp_id: Annotated[str, msgspec.Meta(min_length=1)]
    target_comp_id: Annotated[str, msgspec.Meta(min_length=1)]
    username: str = ""
    password: str = ""
    heartbeat_interval: Annotated[int, msgspec.Meta(ge=1)] = 30
    data_dir: FilePath | None = None
    fsync: bool = False
    market_depth: Annotated[int, msgspec.Meta(ge=1)] = 5
    symbols: tuple[str, ...] | None = None
    reconnect_min_ms: Annotated[int, msgspec.Meta(ge=1)] = 250
    reconnect_max_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    connect_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 3000
    max_outbound_buffer: Annotated[int, msgspec.Meta(ge=4096)] = 4 * 1024 * 1024


def check_settings(settings: FixLpSettings, instruments: Mapping[str, Instrument]) -> list[str]:
    """What the type cannot say: the reconnect delays are in order and every
    symbol is a configured instrument.  One ``field: message`` line per
    problem, paths relative to the settings table."""
    errors: list[str] = []
    if settings.reconnect_max_ms < settings.reconnect_min_ms:
        errors.append(
            f"reconnect_max_ms: must be >= reconnect_min_ms ({settings.reconnect_min_ms})"
        )
    for index, symbol in enumerate(settings.symbols or ()):
        if symbol not in instruments:
            errors.append(f"symbols[{index}]: no such instrument {symbol}")
    return errors
