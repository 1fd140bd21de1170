"""The settings of the FIX LP adapter (``[lps.settings]`` of an LP whose
adapter is ``fix``); see :mod:`lp_adapters.fix.adapter`.

A module of its own because msgspec reads a Struct's field types from its
class, which it cannot do for a class compiled to C: the adapter itself is
compiled, its settings are not.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class FixLpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    sender_comp_id: Annotated[str, msgspec.Meta(min_length=1)]
    target_comp_id: Annotated[str, msgspec.Meta(min_length=1)]
    username: str = ""
    password: str = ""
    heartbeat_interval: Annotated[int, msgspec.Meta(ge=1)] = 30
    data_dir: str | None = None
    fsync: bool = False
    market_depth: Annotated[int, msgspec.Meta(ge=1)] = 5
    symbols: tuple[str, ...] | None = None
    reconnect_min_ms: Annotated[int, msgspec.Meta(ge=1)] = 250
    reconnect_max_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    connect_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 3000
    max_outbound_buffer: Annotated[int, msgspec.Meta(ge=4096)] = 4 * 1024 * 1024
