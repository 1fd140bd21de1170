"""Members of a cluster in this process, for the cluster tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable

from config import ClusterSettings, SessionSettings
from gateway.cluster import Cluster
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.sim.nats_cluster import NatsCluster

_prefixes = itertools.count()


def settings(cluster: NatsCluster, **changes: object) -> ClusterSettings:
    """Buckets of their own per test: tests sharing a cluster never meet."""
    values: dict[str, object] = {
        "servers": tuple(cluster.urls),
        "lease_ms": 900,
        "renew_ms": 200,
        "bucket_prefix": f"t{next(_prefixes)}x{int(time.time() * 1000) % 100000}",
        # a start makes three buckets of three replicas, each electing a
        # leader: on a busy two-core machine that once took over the
        # default 3 s (a bound, not a wait: a start done sooner goes on)
        "connect_timeout_ms": 15_000,
    }
    values.update(changes)
    return ClusterSettings(**values)  # type: ignore[arg-type]


class Member:
    """A Cluster with the sessions of one gateway and what it lost."""

    def __init__(self, config: ClusterSettings, name: str, clients: list[str]) -> None:
        self.lost: list[tuple[str, str, float]] = []
        self.drop: Callable[[Session], object] | None = None
        """What a gateway does with a session it lost (its server's abort)."""
        self.cluster = Cluster(config, name, fix_address=f"127.0.0.1:{name}", on_lost=self._lost)
        self.sessions: dict[str, Session] = {}
        for client in clients:
            s = SessionSettings(SenderCompID="GW", TargetCompID=client)
            store = self.cluster.replicated(MemoryStore(), s)
            self.sessions[client] = Session(s, store)

    def _lost(self, session: Session, text: str) -> None:
        self.lost.append((session.session_id, text, time.monotonic()))
        if self.drop is not None:
            self.drop(session)

    async def start(self) -> Member:
        await self.cluster.start()
        return self

    def claim(self, client: str) -> asyncio.Future[tuple[str, int | None] | None]:
        return asyncio.ensure_future(self.cluster.claim(self.sessions[client]))

    def store(self, client: str) -> MemoryStore:
        inner = self.sessions[client].store.inner  # type: ignore[attr-defined]
        assert isinstance(inner, MemoryStore)
        return inner


@contextlib.asynccontextmanager
async def stopping(*members: Member) -> AsyncIterator[None]:
    """Stop each of ``members`` when the block ends, however it ends."""
    try:
        yield
    finally:
        for member in members:
            await member.cluster.stop()


@contextlib.asynccontextmanager
async def running(*members: Member) -> AsyncIterator[None]:
    """Start ``members`` in order; stop the ones started, in that order,
    when the block ends, however it ends."""
    started: list[Member] = []
    try:
        for member in members:
            await member.start()
            started.append(member)
        yield
    finally:
        for member in started:
            await member.cluster.stop()


async def members(config: ClusterSettings, *names: str, clients: list[str]) -> list[Member]:
    return [await Member(config, name, clients).start() for name in names]


async def take(
    member: Member, client: str, timeout: float = 10.0
) -> tuple[float, list[tuple[str, int | None]]]:
    """Claim ``client`` at ``member`` until it is granted (polling, within
    ``timeout``): when it was, and the refusals met before."""
    deadline = time.monotonic() + timeout
    refusals: list[tuple[str, int | None]] = []
    while time.monotonic() < deadline:
        refusal = await member.cluster.claim(member.sessions[client])
        if refusal is None:
            return time.monotonic(), refusals
        refusals.append(refusal)
        await asyncio.sleep(0.02)  # polling, with the deadline above
    raise AssertionError(f"{client} not granted in {timeout:g} s: {refusals[-1:]}")
