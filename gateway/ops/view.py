"""What the operations side reads of the running daemon.

The HTTP server and the admin API are handed the daemon as this protocol,
so that they depend on what they read, not on the composition root that
builds them.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from config import Config
from gateway.cluster import Cluster
from gateway.fix.session import Session
from gateway.ops.metrics import LoopLag
from gateway.ops.reload import Reloader
from gateway.ops.tokens import Tokens
from gateway.orderflow.flow import OrderFlow


class Running(Protocol):
    """The daemon as operations see it."""

    @property
    def config(self) -> Config: ...

    @property
    def sessions(self) -> list[Session]: ...

    @property
    def order_flow(self) -> OrderFlow | None: ...

    @property
    def reloader(self) -> Reloader: ...

    @property
    def cluster(self) -> Cluster | None:
        """This gateway's place in a cluster (None when it runs alone)."""
        ...

    @property
    def loop_lag(self) -> LoopLag: ...

    @property
    def metrics(self) -> CollectorRegistry: ...

    def config_version(self) -> tuple[str, int]:
        """``(version, generation)`` of the config in force."""
        ...

    def admin_tokens(self) -> Tokens: ...

    def ready(self) -> tuple[bool, str]: ...

    def drop_copy_sessions(self) -> list[dict[str, Any]]:
        """The drop-copy sessions as their process last reported them
        (their state unknown, and not logged on, while it does not run)."""
        ...
