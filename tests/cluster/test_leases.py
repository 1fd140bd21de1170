"""Session ownership by leases, against a real 3-node JetStream cluster."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from clusterkit import Member, members, settings, take

from config import ClusterSettings, SessionSettings
from gateway.cluster import Cluster, ClusterError, session_key
from gateway.sim.nats_cluster import NatsCluster, free_ports, nats_server_binary


@pytest.mark.asyncio
async def test_a_free_session_is_granted_and_another_instance_is_refused_naming_it(
    pair: tuple[Member, Member],
) -> None:
    a, b = pair
    assert await a.claim("C1") is None
    a.store("C1").set_next_sender_seq(7)  # the owner has sent 6 messages
    refusal = await b.claim("C1")
    assert refusal is not None
    text, seq = refusal
    assert "served by gateway a" in text
    assert "127.0.0.1:a" in text
    # the owner set number 7 aside for b's Logout (the peer counts it)
    # and goes on from 8
    assert seq == 7
    assert a.store("C1").next_sender_seq == 8
    assert a.cluster.stats.grants == 1
    assert b.cluster.stats.refusals == 1
    # a claims its own session again: a renewal, not a refusal
    assert await a.claim("C1") is None
    assert a.lost == []


@pytest.mark.asyncio
async def test_a_lapsed_lease_is_taken_over_and_the_old_owner_let_it_go_first(
    pair: tuple[Member, Member],
) -> None:
    a, b = pair
    assert await a.claim("C1") is None
    # a can no longer reach the cluster: its renewals stop (its
    # connection is closed under it), as when its network goes
    nc = a.cluster._nc
    assert nc is not None
    await nc.close()
    taken_at, refusals = await take(b, "C1")
    # refused until then, with no Logout: the owner does not answer
    assert refusals
    assert {seq for _, seq in refusals} == {None}
    assert b.cluster.stats.takeovers == 1
    # a stopped serving the session before b could take it
    assert [(sid, text) for sid, text, _ in a.lost] == [
        ("FIX.4.4:GW->C1", "this gateway lost its cluster and its lease on the session lapsed")
    ]
    assert a.lost[0][2] < taken_at


@pytest.mark.asyncio
async def test_an_owner_whose_lease_was_taken_is_told_at_its_next_renewal(
    pair: tuple[Member, Member],
) -> None:
    a, b = pair
    assert await a.claim("C1") is None
    # a stalls (its timers do not run) past its lease; b takes over
    for task in a.cluster._tasks:
        task.cancel()
    await take(b, "C1")
    # a wakes up and renews: the revision moved, the bucket refuses
    held = a.cluster._held[session_key(a.sessions["C1"])]
    await a.cluster._renew(session_key(a.sessions["C1"]), held)
    assert [text for _, text, _ in a.lost] == ["another gateway took the session over"]
    assert a.cluster.held() == []


@pytest.mark.asyncio
async def test_a_second_process_under_a_live_name_refuses_to_start(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    (a,) = await members(config, "same", clients=[])
    try:
        with pytest.raises(ClusterError, match="'same' is in use by a live gateway"):
            await Member(config, "same", []).start()
    finally:
        await a.cluster.stop()
    # once it left, the name is free at once
    again = await Member(config, "same", []).start()
    await again.cluster.stop()


@pytest.mark.asyncio
async def test_a_restarted_instance_takes_its_sessions_back(nats_cluster: NatsCluster) -> None:
    config = settings(nats_cluster)
    (a,) = await members(config, "a", clients=["C1"])
    assert await a.claim("C1") is None
    # killed: nothing released, nothing renewed
    for task in a.cluster._tasks:
        task.cancel()
    await a.cluster._close_connection()
    # the same name again (the same data directory): another process, it
    # waits for its old name's lease, then for the session's, then has it
    (a2,) = await members(config, "a", clients=["C1"])
    try:
        await take(a2, "C1")
        assert a2.cluster.stats.takeovers == 1
    finally:
        await a2.cluster.stop()


@pytest.mark.asyncio
async def test_a_release_racing_a_renewal_of_its_own_still_lets_the_session_go(
    pair: tuple[Member, Member],
) -> None:
    a, b = pair
    assert await a.claim("C1") is None
    key = session_key(a.sessions["C1"])
    held = a.cluster._held[key]
    stale = held.revision
    await a.cluster.renew_once()  # written just before the release reads it
    assert held.revision != stale
    held.revision = stale
    await a.cluster._release(key)
    assert a.cluster.stats.releases == 1
    assert a.cluster.stats.reasons == {}
    # free at once: another gateway takes it without waiting for a lapse
    assert await b.claim("C1") is None
    assert b.cluster.stats.grants == 1


@pytest.mark.asyncio
async def test_an_unreachable_cluster_is_one_clear_error() -> None:
    config = ClusterSettings(servers=("nats://127.0.0.1:9",), connect_timeout_ms=500)
    with pytest.raises(ClusterError, match=r"cannot reach the cluster at nats://127.0.0.1:9"):
        await Cluster(config, "a").start()


@pytest.mark.asyncio
async def test_the_error_of_an_unreachable_cluster_names_no_password() -> None:
    config = ClusterSettings(servers=("nats://gw:s3cr3t@127.0.0.1:9",), connect_timeout_ms=500)
    with pytest.raises(ClusterError) as raised:
        await Cluster(config, "a").start()
    assert "cannot reach the cluster at nats://gw:(redacted)@127.0.0.1:9" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.asyncio
async def test_buckets_made_with_other_replicas_are_named_not_called_unreachable(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = Cluster(config, "a")
    await a.start()
    try:
        other = msgspec.structs.replace(config, replicas=1)
        with pytest.raises(ClusterError) as raised:
            await Cluster(other, "b").start()
    finally:
        await a.stop()
    said = str(raised.value)
    assert "another configuration" in said
    assert f"'{config.bucket_prefix}'" in said
    assert "replicas (here 1)" in said
    assert "cannot reach" not in said


@pytest.mark.asyncio
async def test_a_gateway_on_another_grid_than_a_running_one_is_refused_naming_it(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    grid = {"EUR/USD": ("0.00001", "1000"), "BTC/USD": ("0.01", "0.001")}
    a = Cluster(config, "a", grid=grid)
    await a.start()
    try:
        # the same grid, written otherwise: the same numbers, joins
        same = Cluster(config, "b", grid={**grid, "EUR/USD": ("0.000010", "1E+3")})
        await same.start()
        await same.stop()
        other = {**grid, "EUR/USD": ("0.0001", "1000"), "XAU/USD": ("0.01", "1")}
        with pytest.raises(ClusterError) as raised:
            await Cluster(config, "c", grid=other).start()
        # the refused start let its name go: a start on the mended config
        # need not wait for it to lapse
        assert a._instances_kv is not None
        assert "c" not in await a._instances_kv.keys()
    finally:
        await a.stop()
    said = str(raised.value)
    assert "running gateway a:" in said
    assert "EUR/USD tick_size 0.0001 here, 0.00001 there" in said
    assert "XAU/USD configured here only" in said
    assert "BTC/USD" not in said
    # with the gateway on the other grid gone, the new grid starts
    c = Cluster(config, "c", grid=other)
    await c.start()
    await c.stop()


@pytest.fixture
def nats_without_jetstream() -> Iterator[int]:
    """A nats-server with JetStream off; its port."""
    yield from _nats_alone([])


@pytest.fixture
def nats_alone_with_jetstream(tmp_path: Path) -> Iterator[int]:
    """A nats-server with JetStream on, in no cluster; its port."""
    yield from _nats_alone(["--jetstream", "--store_dir", str(tmp_path / "js")])


def _nats_alone(options: list[str]) -> Iterator[int]:
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # polling, with the deadline: until the server listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "nats-server exited"
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.asyncio
async def test_a_server_without_jetstream_is_named_not_called_unreachable(
    nats_without_jetstream: int,
) -> None:
    url = f"nats://127.0.0.1:{nats_without_jetstream}"
    config = ClusterSettings(servers=(url,), connect_timeout_ms=5000)
    with pytest.raises(ClusterError, match="answer but JetStream does not"):
        await Cluster(config, "a").start()


@pytest.mark.asyncio
async def test_more_replicas_than_the_cluster_has_nodes_is_named_not_called_unreachable(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster, replicas=5)
    with pytest.raises(ClusterError) as raised:
        await Cluster(config, "a").start()
    said = str(raised.value)
    assert "cannot reach" not in said
    assert "[cluster] replicas (here 5)" in said


@pytest.mark.asyncio
async def test_replicas_on_a_server_alone_is_named_not_called_unreachable(
    nats_alone_with_jetstream: int,
) -> None:
    url = f"nats://127.0.0.1:{nats_alone_with_jetstream}"
    config = ClusterSettings(servers=(url,), connect_timeout_ms=5000)
    with pytest.raises(ClusterError) as raised:
        await Cluster(config, "a").start()
    said = str(raised.value)
    assert "cannot reach" not in said
    assert "[cluster] replicas (here 3)" in said
    # with one copy, the server alone serves the gateway
    alone = msgspec.structs.replace(config, replicas=1)
    a = Cluster(alone, "a")
    await a.start()
    await a.stop()


@pytest.mark.asyncio
async def test_the_lease_docs_advise_rides_through_a_cluster_without_a_leader_for_8_5_s(
    own_nats_cluster: NatsCluster,
) -> None:
    """docs/cluster.md: a ``lease_ms`` above JetStream's election timeout
    (4 to 9 s), with its ``renew_ms``, rides through an abrupt node loss.
    The cluster answering nothing for 8.5 s (every node stopped) is what
    the gateways see of the leases' leader killed at the worst moment."""
    config = settings(own_nats_cluster, lease_ms=15_000, renew_ms=1_000)
    (a,) = await members(config, "a", clients=["C1"])
    try:
        assert await a.claim("C1") is None
        renewed = a.cluster.stats.renewals
        for node in own_nats_cluster.nodes:
            assert node.process is not None
            node.process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(8.5)  # the outage itself, not a wait for an event
        finally:
            for node in own_nats_cluster.nodes:
                assert node.process is not None
                node.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        key = session_key(a.sessions["C1"])

        def renewed_since() -> bool:
            held = a.cluster._held.get(key)
            return held is not None and held.renewed > resumed

        deadline = time.monotonic() + 15
        while not a.lost and not renewed_since():
            assert time.monotonic() < deadline, "neither renewed nor lost after the outage"
            await asyncio.sleep(0.05)  # polling, with the deadline above
        assert a.lost == []
        assert a.cluster.stats.renewals > renewed
        assert a.cluster.held() == [session_key(a.sessions["C1"])]
    finally:
        await a.cluster.stop()


def test_session_keys_hold_only_what_a_key_may() -> None:
    s = SessionSettings(SenderCompID="GW 1", TargetCompID="CLIENT.A*")
    assert session_key(s) == "FIX=2E4=2E4.GW=201.CLIENT=2EA=2A"


@pytest.mark.asyncio
async def test_each_instance_answers_its_own_figures_to_the_others(
    pair: tuple[Member, Member],
) -> None:
    a, b = pair
    assert await a.claim("C1") is None
    [seen_from_b] = await b.cluster.peers()
    assert seen_from_b["instance"] == "a"
    assert seen_from_b["serving"] == 1
    assert seen_from_b["connected"] is True
    leases = seen_from_b["leases"]
    assert isinstance(leases, dict)
    assert (leases["granted"], leases["lost"]) == (1, 0)  # renewals go on meanwhile
    [seen_from_a] = await a.cluster.peers()
    assert (seen_from_a["instance"], seen_from_a["serving"]) == ("b", 0)


@pytest.mark.asyncio
async def test_a_renewal_of_the_name_written_but_not_answered_in_time_keeps_the_name(
    pair: tuple[Member, Member],
) -> None:
    a, _b = pair
    assert await a.claim("C1") is None
    kv = a.cluster._instances_kv
    assert kv is not None
    # a renewal of a's name reached the bucket, its answer did not (it
    # timed out here): the bucket is one revision ahead of what a knows
    await kv.update("a", a.cluster._value(), last=a.cluster._instance_revision)
    await a.cluster.renew_once()
    assert a.lost == []
    assert not a.cluster._name_lost
    assert a.cluster.held() == [session_key(a.sessions["C1"])]
    await a.cluster.renew_once()
    assert a.lost == []


@pytest.mark.asyncio
async def test_a_stalled_process_does_not_renew_the_lease_its_successor_under_its_name_took(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    (a,) = await members(config, "a", clients=["C1"])
    try:
        assert await a.claim("C1") is None
        # a stalls (SIGSTOP: its timers do not run) past its leases
        for task in a.cluster._tasks:
            task.cancel()
        # a process restarted under the same name takes its name and session
        (a2,) = await members(config, "a", clients=["C1"])
        try:
            await take(a2, "C1")
            # a wakes up and renews: the key names "a", but another process
            key = session_key(a.sessions["C1"])
            held = a.cluster._held[key]
            await a.cluster._renew(key, held)
            assert [text for _, text, _ in a.lost] == ["another gateway took the session over"]
            assert a.cluster.held() == []
            assert a2.cluster.held() == [key]
        finally:
            await a2.cluster.stop()
    finally:
        await a.cluster._close_connection()


@pytest.mark.asyncio
async def test_the_server_a_gateway_shows_has_no_credentials(nats_cluster: NatsCluster) -> None:
    # the test servers take any user: the password is only to be hidden
    servers = tuple(url.replace("nats://", "nats://gw:s3cr3t@") for url in nats_cluster.urls)
    (a,) = await members(settings(nats_cluster, servers=servers), "a", clients=["C1"])
    try:
        shown = a.cluster.figures()["server"]
        assert isinstance(shown, str)
        assert shown.startswith("nats://gw:(redacted)@127.0.0.1:")
    finally:
        await a.cluster.stop()
