"""Two gateways live at once on a real 3-node NATS JetStream cluster: a
client is served by one, turned away by the other with a Logout naming
the owner, and after ``kill -9`` of its gateway under load logs on to the
other with its sequence numbers continuing and everything it was sent
there to resend."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats as nats_client
import pytest
from netkit import free_port, log_events, with_day_end_away

from config import SessionSettings, default_config_path
from gateway.cluster import session_key
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.events import CloseConnection
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient, LogonError
from gateway.sim.nats_cluster import NatsCluster, free_ports

NODE_SIGNAL = int(os.environ.get("FIXGW_TEST_NODE_SIGNAL", signal.SIGTERM))

SETTINGS = SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", HeartBtInt=5)


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", 3, ports=free_ports(6))
    cluster.start()
    yield cluster
    cluster.stop()


def nos(cl_ord_id: str) -> bytes:
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (38, b"1000"),
            (40, b"1"),
            (54, b"1"),
            (55, b"EUR/USD"),
            (60, codec.format_utc_timestamp(time.time())),
        ]
    )


def limit_order(cl_ord_id: str, side: bytes, price: bytes, tif: bytes) -> bytes:
    """A limit order far from the simulated LPs' prices (EUR/USD about
    1.085): it rests."""
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (38, b"1000"),
            (40, b"2"),
            (44, price),
            (54, side),
            (55, b"EUR/USD"),
            (59, tif),
            (60, codec.format_utc_timestamp(time.time())),
        ]
    )


async def answer_to(client: FixClient, cl_ord_id: bytes, timeout: float = 10.0) -> FixMessage:
    """The next message for ``cl_ord_id`` (others left behind passed over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = await client.receive(timeout)
        if m.get(11) == cl_ord_id and m.get(43) != b"Y":
            return m
    raise AssertionError(f"no answer to {cl_ord_id!r}")


async def status_of(client: FixClient, cl_ord_id: str, side: bytes) -> FixMessage:
    """The answer to an OrderStatusRequest (H) for ``cl_ord_id``."""
    key = cl_ord_id.encode()
    client.send(
        b"H",
        codec.encode_fields([(11, key), (54, side), (55, b"EUR/USD"), (790, b"st-" + key)]),
    )
    return await answer_to(client, key)


async def cancel(client: FixClient, cl_ord_id: str, side: bytes) -> FixMessage:
    """The answer to an OrderCancelRequest (F) of ``cl_ord_id``."""
    key = f"{cl_ord_id}-cancel".encode()
    client.send(
        b"F",
        codec.encode_fields(
            [
                (11, key),
                (41, cl_ord_id.encode()),
                (54, side),
                (55, b"EUR/USD"),
                (60, codec.format_utc_timestamp(time.time())),
            ]
        ),
    )
    return await answer_to(client, key)


async def reports(client: FixClient, count: int, timeout: float = 10.0) -> list[FixMessage]:
    return [await client.receive(timeout) for _ in range(count)]


def gateways(daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path) -> list[Any]:
    """Two gateways of the cluster on the default config, whose trading day
    ends at no hour the test may run at (DAY orders rest through it)."""
    urls = ",".join(nats.urls)
    config = tmp_path / "gateway.toml"
    config.write_text(with_day_end_away(default_config_path().read_text()))
    return [
        daemon_factory(
            "--config", str(config), "--cluster", urls, data_dir=tmp_path / f"gw{i}"
        ).start()
        for i in range(2)
    ]


async def lease_renewed(nats: NatsCluster, client: str) -> float:
    """When the lease on ``client``'s session, as the bucket holds it now,
    was renewed (monotonic, here): the wall clock its holder wrote into it
    (``at_ms``) as it sent the renewal, taken back to this process's clock."""
    key = session_key(SessionSettings(SenderCompID="GATEWAY", TargetCompID=client))
    nc = await nats_client.connect(nats.urls)
    try:
        entry = await (await nc.jetstream().key_value("fixgw_sessions")).get(key)
    finally:
        await nc.close()
    at = json.loads(entry.value or b"{}")["at_ms"] / 1000
    return time.monotonic() - (time.time() - at)


async def log_on_anywhere(
    client: FixClient, addresses: list[tuple[str, int]], timeout: float = 15.0
) -> tuple[tuple[str, int], list[str]]:
    """Try the addresses in turn until one takes the session (polling,
    within ``timeout``): where, and the refusals met before."""
    deadline = time.monotonic() + timeout
    refusals: list[str] = []
    while time.monotonic() < deadline:
        try:
            return await client.connect_any(addresses, timeout=3), refusals
        except LogonError as exc:
            refusals.append(str(exc))
        await asyncio.sleep(0.05)  # polling, with the deadline above
    raise AssertionError(f"no gateway took the session in {timeout:g} s: {refusals[-2:]}")


@pytest.mark.asyncio
async def test_a_client_is_served_by_one_gateway_and_fails_over_after_kill_9(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    a, b = gateways(daemon_factory, nats, tmp_path)
    at_a, at_b = ("127.0.0.1", a.fix_port), ("127.0.0.1", b.fix_port)
    client = FixClient(SETTINGS, MemoryStore())
    assert await client.connect_any([at_a, at_b]) == at_a
    for i in range(20):
        client.send(b"D", nos(f"before-{i}"))
    sent_before = await reports(client, 40)
    await client.logout()

    # the other gateway turns the Logon away with a Logout naming the owner,
    # numbered from the owner's sequence: the client counts it, and the
    # owner's next message is not "too low" for it
    with pytest.raises(LogonError) as refused:
        await client.connect(*at_b)
    assert refused.value.refused
    assert f"served by gateway {a_name(a)}" in refused.value.text
    assert f"FIX at 127.0.0.1:{a.fix_port}" in refused.value.text
    await client.connect(*at_a)
    client.send(b"D", nos("back-at-a"))
    back = await reports(client, 2)
    assert [m.get(11) for m in back] == [b"back-at-a", b"back-at-a"]
    # orders that rest at the owner (far from the market)
    client.send(b"D", limit_order("rest-1", b"1", b"1.00000", b"0"))
    client.send(b"D", limit_order("rest-2", b"1", b"1.00010", b"1"))
    client.send(b"D", limit_order("rest-3", b"2", b"1.20000", b"0"))
    rested = await reports(client, 3)
    assert [(m.get(11), m.get(150)) for m in rested] == [
        (b"rest-1", b"0"),
        (b"rest-2", b"0"),
        (b"rest-3", b"0"),
    ]
    rested_ids = {m.get(11): m.get(37) for m in rested}
    back += rested

    # under load: orders go on while the owner is killed
    async def trade() -> None:
        for i in range(10_000):
            if client.logged_on:
                client.send(b"D", nos(f"load-{i}"))
            await asyncio.sleep(0.002)  # pacing: an order every 2 ms

    load = asyncio.ensure_future(trade())
    # the load flows: the owner has sent a hundred answers to it when killed
    deadline = time.monotonic() + 10
    while client.messages.qsize() < 100:
        assert time.monotonic() < deadline, f"{client.messages.qsize()} answers to the load"
        await asyncio.sleep(0.01)  # polling, with the deadline above
    a.kill9()
    killed = time.monotonic()
    load.cancel()
    await asyncio.gather(load, return_exceptions=True)
    where, _refusals = await log_on_anywhere(client, [at_a, at_b])
    took = time.monotonic() - killed
    assert where == at_b
    print(f"\nfailover: logged on at the other gateway {took:.3f} s after kill -9 of the owner")
    # the sequence went on where the killed gateway left it: no number the
    # client had seen came again ("too low" would have ended its session)
    closes = [e.reason for e in client.events if isinstance(e, CloseConnection)]
    assert not [r for r in closes if "too low" in r], closes
    # what the client received from the killed gateway under load is kept
    # to be checked against the new owner's resend
    under_load = []
    while not client.messages.empty():
        under_load.append(client.messages.get_nowait())
    assert under_load
    takeover = [e for e in log_events(b.log_path) if e["event"] == "session_taken_over"]
    assert takeover, "the session was not taken over"

    client.send(b"D", nos("at-b"))
    at_b_reports = []
    while len(at_b_reports) < 2:  # after what the load left in the queue
        m = await client.receive(10)
        if m.get(11) == b"at-b":
            at_b_reports.append(m)
    assert [m.get(150) for m in at_b_reports] == [b"0", b"F"]
    # the orders resting at the killed gateway are the new owner's: known
    # by their OrderIDs, and canceled there
    status = await status_of(client, "rest-1", b"1")
    assert (status.get(150), status.get(39)) == (b"I", b"0")
    assert status.get(37) == rested_ids[b"rest-1"]
    canceled = await cancel(client, "rest-2", b"1")
    assert (canceled.get(35), canceled.get(150), canceled.get(39)) == (b"8", b"4", b"4")
    assert canceled.get(37) == rested_ids[b"rest-2"]
    moved = [e for e in log_events(b.log_path) if e["event"] == "client_orders_taken_over"]
    assert [e["client"] for e in moved] == ["CLIENT1"]
    assert {rested_ids[b"rest-1"], rested_ids[b"rest-3"]} <= {
        o.encode() for o in moved[0]["order_ids"]
    }
    open_at_b = admin(b.http_port, "/admin/orders?client=CLIENT1")
    assert sorted(o["cl_ord_id"] for o in open_at_b) == ["rest-1", "rest-3"]
    # the gateway that took over hands out IDs of its own: none the client
    # was given by the killed one comes again
    from_a = {m.get(tag) for m in sent_before + back + under_load for tag in (17, 37)}
    from_b = {m.get(tag) for m in at_b_reports for tag in (17, 37)}
    assert not from_a & from_b, sorted(x for x in from_a & from_b if x)
    await client.logout()

    # everything the client was sent, resent by the gateway that took over:
    # the client, having lost what it received, expects message 1 again
    lost = MemoryStore()
    lost.set_next_sender_seq(client.session.store.next_sender_seq)
    again = FixClient(SETTINGS, lost)
    await again.connect(*at_b)
    wanted = {
        (m.get(11) or b"", m.get(150) or b""): m
        for m in sent_before + back + under_load
        if m.get(43) != b"Y"
    }
    resent: dict[tuple[bytes, bytes], FixMessage] = {}
    fills: dict[bytes | None, int] = {}  # ExecID -> lots, of every fill resent
    deadline = time.monotonic() + 20
    # up to the last report the session was sent (at-b's fill): all of it
    while (
        not wanted.keys() <= resent.keys() or (b"at-b", b"F") not in resent
    ) and time.monotonic() < deadline:
        m = await again.receive(10)
        if m.get(43) == b"Y":
            resent[(m.get(11) or b"", m.get(150) or b"")] = m
            if m.get(150) == b"F":
                fills[m.get(17)] = int(m.get(32) or b"0")
    assert wanted.keys() <= resent.keys(), (
        f"not resent: {sorted(wanted.keys() - resent.keys())[:5]}"
    )
    for key, m in wanted.items():
        assert resent[key].get(34) == m.get(34)
        assert resent[key].get(17) == m.get(17)
    await again.logout()

    # the client's position at the gateway that took it over is the sum of
    # every fill it was told of, at either gateway (its margin holdings too)
    assert len(fills) > 2
    position = sum(fills.values())
    exposures = admin(b.http_port, "/admin/exposures")
    assert Decimal(exposures["clients"]["CLIENT1"]["EUR/USD"]) == position
    margin = admin(b.http_port, "/admin/margin/CLIENT1")
    assert Decimal(margin["positions"]["EUR/USD"]["qty"]) == position
    taken = [e for e in log_events(b.log_path) if e["event"] == "client_state_taken_over"]
    assert [e["client"] for e in taken] == ["CLIENT1"]

    # the killed gateway, restarted on its data, works none of the client's
    # orders (its journal has them open): they are the other gateway's now
    restarted_at = a.log_path.stat().st_size
    a.start()
    # its orders are parked before it serves, and only the session claimed
    # here would have it work them: it sees the session as the other's
    owner = a_name(b)

    def seen_at_a() -> list[tuple[str, bool]]:
        sessions = admin(a.http_port, "/admin/cluster")["sessions"]
        return [(s["owner"], s["held_here"]) for s in sessions if s["key"].endswith("CLIENT1")]

    deadline = time.monotonic() + 10
    while seen_at_a() != [(owner, False)]:
        assert time.monotonic() < deadline, f"the restarted gateway sees {seen_at_a()}"
        await asyncio.sleep(0.05)  # polling, with the deadline above
    assert admin(a.http_port, "/admin/orders?client=CLIENT1") == []
    since = [
        e
        for e in log_events(a.log_path.read_bytes()[restarted_at:].decode(errors="replace"))
        if e.get("client") == "CLIENT1"
    ]
    parked = [e for e in since if e["event"] == "client_orders_parked"]
    assert parked
    assert parked[0]["orders"] >= 3
    assert [e["event"] for e in since if e["event"] != "client_orders_parked"] == []
    # and the other gateway's figures for the client are as they were
    exposures = admin(b.http_port, "/admin/exposures")
    assert Decimal(exposures["clients"]["CLIENT1"]["EUR/USD"]) == position
    assert sorted(o["cl_ord_id"] for o in admin(b.http_port, "/admin/orders?client=CLIENT1")) == [
        "rest-1",
        "rest-3",
    ]


def admin(http_port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}{path}", headers={"Authorization": "Bearer dev-admin-token"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


def a_name(daemon: Any) -> str:
    joined = [e for e in log_events(daemon.log_path) if e["event"] == "cluster_joined"]
    return str(joined[-1]["instance"])


@pytest.mark.asyncio
async def test_a_gateway_that_lost_a_session_while_paused_works_none_of_its_orders(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    """A gateway paused past its lease (a stalled VM, SIGSTOP) finds, when
    it goes on, the session taken by another: the client's orders are
    parked there, and worked by the gateway that serves the client."""
    a, b = gateways(daemon_factory, nats, tmp_path)
    at_a, at_b = ("127.0.0.1", a.fix_port), ("127.0.0.1", b.fix_port)
    client = FixClient(SETTINGS, MemoryStore())
    assert await client.connect_any([at_a, at_b]) == at_a
    client.send(b"D", limit_order("rest-1", b"1", b"1.00000", b"1"))
    client.send(b"D", limit_order("rest-2", b"2", b"1.20000", b"0"))
    rested = {m.get(11): m.get(37) for m in await reports(client, 2)}
    assert admin(a.http_port, "/admin/orders?client=CLIENT1") != []
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        client.abort()
        where, _refusals = await log_on_anywhere(client, [at_b])
        assert where == at_b
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    status = await status_of(client, "rest-1", b"1")
    assert (status.get(150), status.get(37)) == (b"I", rested[b"rest-1"])
    # the paused gateway, going on, finds the session taken: it parks the
    # client's orders, and lists none
    deadline = time.monotonic() + 10
    parked: list[dict[str, Any]] = []
    while not parked and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # polling, with the deadline above
        parked = [
            e
            for e in log_events(a.log_path)
            if e["event"] == "client_orders_parked" and e["client"] == "CLIENT1"
        ]
    assert parked, "the paused gateway did not park the client's orders"
    assert parked[0]["orders"] == 2
    assert admin(a.http_port, "/admin/orders?client=CLIENT1") == []
    canceled = await cancel(client, "rest-2", b"2")
    assert (canceled.get(150), canceled.get(37)) == (b"4", rested[b"rest-2"])
    assert [o["cl_ord_id"] for o in admin(b.http_port, "/admin/orders?client=CLIENT1")] == [
        "rest-1"
    ]
    await client.logout()


@pytest.mark.asyncio
async def test_losing_one_nats_node_changes_nothing_a_client_sees(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    a, b = gateways(daemon_factory, nats, tmp_path)
    client = FixClient(SETTINGS, MemoryStore())
    await client.connect_any([("127.0.0.1", a.fix_port), ("127.0.0.1", b.fix_port)])
    for i in range(10):
        client.send(b"D", nos(f"before-{i}"))
    await reports(client, 20)
    # the node the client's gateway talks to: its copies in flight are lost
    # with it, and go again through another node
    # each gateway shows the other's own figures, as it answered them (a
    # busy machine may miss the answer's 0.3 s once: asked again, then)
    shown, shown_by_b = await answered_by_peer(a.http_port), await answered_by_peer(b.http_port)
    serving = shown["server"]
    node = next(n for n in nats.nodes if n.url == serving)
    [peer] = shown["peers"]
    assert (peer["instance"], peer["serving"]) == (shown_by_b["instance"], 0)
    [peer] = shown_by_b["peers"]
    assert (peer["instance"], peer["serving"]) == (shown["instance"], 1)
    for i in range(25):
        client.send(b"D", nos(f"after-{i}"))
    nats.kill(node, NODE_SIGNAL)
    for i in range(25, 50):
        client.send(b"D", nos(f"after-{i}"))
    after = await reports(client, 100, timeout=20)
    assert {m.get(11) for m in after} == {f"after-{i}".encode() for i in range(50)}
    assert client.logged_on
    await client.logout()
    for gateway in (a, b):
        events = {e["event"] for e in log_events(gateway.log_path)}
        assert "session_lease_lost" not in events
        assert "replication_failed_connection_dropped" not in events
    assert admin(a.http_port, "/admin/cluster")["server"] not in (None, serving)


async def answered_by_peer(http_port: int, timeout: float = 10.0) -> dict[str, Any]:
    """``/admin/cluster`` once every peer in it has answered."""
    deadline = time.monotonic() + timeout
    while True:
        shown: dict[str, Any] = admin(http_port, "/admin/cluster")
        if all("error" not in peer for peer in shown["peers"]) or time.monotonic() > deadline:
            return shown
        await asyncio.sleep(0.1)  # polling, within the deadline


def one_lp_config(tmp_path: Path) -> Path:
    """The default config with LP_A alone, its hard limit 2,000,000 USD."""
    text = (Path(__file__).resolve().parents[2] / "config" / "default.toml").read_text()
    for lp in ("LP_B", "LP_C"):
        text = text.replace(
            f'name = "{lp}"\nadapter = "simulated"\nenabled = true',
            (f'name = "{lp}"\nadapter = "simulated"\nenabled = false'),
        )
    text = text.replace(
        'soft_limit_usd = "20000000"   # net USD', 'soft_limit_usd = "1000000"   # net USD', 1
    )
    text = text.replace(
        'hard_limit_usd = "30000000"   # net USD', 'hard_limit_usd = "2000000"   # net USD', 1
    )
    assert text.count("enabled = false") >= 2
    assert 'hard_limit_usd = "2000000"' in text
    path = tmp_path / "one-lp.toml"
    path.write_text(text)
    return path


@pytest.mark.asyncio
async def test_two_gateways_hammering_one_lp_stay_within_its_hard_limit_together(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    config = one_lp_config(tmp_path)
    urls = ",".join(nats.urls)
    a, b = (
        daemon_factory(
            "--config", str(config), "--cluster", urls, data_dir=tmp_path / f"gw{i}"
        ).start()
        for i in range(2)
    )
    one = FixClient(SETTINGS, MemoryStore())
    two = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"), MemoryStore())
    await one.connect("127.0.0.1", a.fix_port)
    await two.connect("127.0.0.1", b.fix_port)

    async def hammer(client: FixClient, name: str) -> dict[bytes, int]:
        """Buy 100,000 EUR every 20 ms, 120 times: six times the limit."""
        outcomes: dict[bytes, int] = {}
        finals = 0

        async def read() -> None:
            nonlocal finals
            while finals < 120:
                m = await client.receive(15)
                if m.get(39) in (b"2", b"4", b"8"):
                    finals += 1
                    status = m.get(39) or b""
                    outcomes[status] = outcomes.get(status, 0) + 1

        reading = asyncio.ensure_future(read())
        for i in range(120):
            client.send(b"D", nos_qty(f"{name}-{i}", 100_000))
            await asyncio.sleep(0.02)  # a steady flow, not one burst
        await reading
        return outcomes

    outcomes = await asyncio.gather(hammer(one, "one"), hammer(two, "two"))
    gross = [
        Decimal(admin(g.http_port, "/admin/exposures")["lp_gross_usd"].get("LP_A", "0"))
        for g in (a, b)
    ]
    slices = [admin(g.http_port, "/admin/cluster")["headroom"]["lps"]["LP_A"] for g in (a, b)]
    print(f"\nLP_A gross {gross}, slices {[s['slice_usd'] for s in slices]}, {outcomes}")
    # never more than the limit between them, and most of it used
    assert sum(gross) <= Decimal(2_000_000)
    assert sum(gross) > Decimal(1_500_000)
    # both traded, and the rest was refused
    assert all(o.get(b"2", 0) > 0 for o in outcomes)
    assert all(o.get(b"4", 0) + o.get(b"8", 0) > 0 for o in outcomes)

    # the LPs' slices out of reach (their bucket gone): each gateway keeps
    # what it holds, routes within it, and says it reduces only
    nc = await nats_client.connect(nats.urls)
    await nc.jetstream().delete_key_value("fixgw_headroom")
    await nc.close()
    more = await asyncio.gather(hammer(one, "one-again"), hammer(two, "two-again"))
    gross = [
        Decimal(admin(g.http_port, "/admin/exposures")["lp_gross_usd"].get("LP_A", "0"))
        for g in (a, b)
    ]
    assert sum(gross) <= Decimal(2_000_000), (gross, more)
    said = [readyz(g.http_port) for g in (a, b)]
    assert any("reduce-only at LP_A" in detail for detail in said), said
    for client in (one, two):
        await client.logout()


def readyz(http_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
        return str(json.loads(r.read())["detail"])


def nos_qty(cl_ord_id: str, qty: int) -> bytes:
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (38, str(qty).encode()),
            (40, b"1"),
            (54, b"1"),
            (55, b"EUR/USD"),
            (60, codec.format_utc_timestamp(time.time())),
        ]
    )


@pytest.mark.asyncio
async def test_the_leases_raft_leader_killed_abruptly_stalls_then_nothing_is_lost(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    """kill -9 of the node leading the sessions' bucket: JetStream elects a
    new leader only after 4-9 s (its Raft election timeout), longer than a
    lease, so the gateway lets the session go; its client logs on again
    once the cluster answers, and nothing it was told is lost."""
    (a,) = [daemon_factory("--cluster", ",".join(nats.urls), data_dir=tmp_path / "gw").start()]
    at_a = ("127.0.0.1", a.fix_port)
    client = FixClient(SETTINGS, MemoryStore())
    await client.connect(*at_a)
    for i in range(10):
        client.send(b"D", nos(f"before-{i}"))
    before = await reports(client, 20)
    nc = await nats_client.connect(nats.urls)
    info = await nc.jetstream().stream_info("KV_fixgw_sessions")
    await nc.close()
    assert info.cluster is not None
    leader = next(n for n in nats.nodes if n.name == info.cluster.leader)
    nats.kill(leader, signal.SIGKILL)
    killed = time.monotonic()
    await log_on_anywhere(client, [at_a], timeout=40)
    print(f"\nlogged on again {time.monotonic() - killed:.1f} s after the leader was killed")
    closes = [e.reason for e in client.events if isinstance(e, CloseConnection)]
    assert not [r for r in closes if "too low" in r], closes
    client.send(b"D", nos("after"))
    while (m := await client.receive(15)).get(11) != b"after":
        pass
    # everything it was told before is still there to resend
    await client.logout()
    lost = MemoryStore()
    lost.set_next_sender_seq(client.session.store.next_sender_seq)
    again = FixClient(SETTINGS, lost)
    await log_on_anywhere(again, [at_a], timeout=40)  # the cluster may still be electing
    wanted = {(m.get(11), m.get(150)) for m in before}
    resent: set[tuple[bytes | None, bytes | None]] = set()
    deadline = time.monotonic() + 20
    while not wanted <= resent and time.monotonic() < deadline:
        m = await again.receive(10)
        resent.add((m.get(11), m.get(150)))
    assert wanted <= resent
    await again.logout()


@pytest.mark.asyncio
async def test_a_client_away_when_its_gateway_dies_has_its_orders_taken_by_the_other(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    """No Logon comes after ``kill -9`` of the client's gateway: once no
    gateway has held the session for ``take_unattended_ms`` (5 s), the
    other takes it by itself, with the client's resting orders, which it
    works while the client is away; the client finds them there later."""
    a, b = gateways(daemon_factory, nats, tmp_path)
    at_a, at_b = ("127.0.0.1", a.fix_port), ("127.0.0.1", b.fix_port)
    client = FixClient(SETTINGS, MemoryStore())
    assert await client.connect_any([at_a, at_b]) == at_a
    client.send(b"D", limit_order("rest-1", b"1", b"1.00000", b"1"))
    client.send(b"D", limit_order("rest-2", b"2", b"1.20000", b"1"))
    rested = {m.get(11): m.get(37) for m in await reports(client, 2)}
    client.abort()  # the client goes away
    # a renewal of a's lease (its last, or one before it: the lease runs on
    # from the last), however long before the kill a loaded machine let it be
    renewed = await lease_renewed(nats, "CLIENT1")
    a.kill9()
    killed = time.monotonic()
    listed: list[dict[str, Any]] = []
    while len(listed) < 2:
        assert time.monotonic() - killed < 30, "the other gateway did not take the orders"
        await asyncio.sleep(0.1)  # polling, with the bound above
        listed = admin(b.http_port, "/admin/orders?client=CLIENT1")
    waited = time.monotonic() - killed
    print(f"\nunattended session taken {waited:.3f} s after kill -9 of its gateway")
    # its lease lapsed (1.5 s from its last renewal), then no one held it for 5 s
    assert time.monotonic() - renewed >= 1.5 + 5
    assert {o["cl_ord_id"]: o["order_id"] for o in listed} == {
        k.decode(): v.decode() for k, v in rested.items() if k and v
    }
    taken = [e for e in log_events(b.log_path) if e["event"] == "session_taken_unattended"]
    assert [(e["session"], e["open_orders"]) for e in taken] == [("FIX.4.4:GATEWAY->CLIENT1", 2)]
    sessions = admin(b.http_port, "/admin/cluster")["sessions"]
    assert [s["held_here"] for s in sessions if s["key"].endswith("CLIENT1")] == [True]
    assert admin(b.http_port, "/admin/cluster")["leases"]["taken_unattended"] == 1

    # the client comes back: its session and orders are where it logs on
    where, _refusals = await log_on_anywhere(client, [at_a, at_b])
    assert where == at_b
    status = await status_of(client, "rest-1", b"1")
    assert (status.get(150), status.get(39), status.get(37)) == (b"I", b"0", rested[b"rest-1"])
    canceled = await cancel(client, "rest-2", b"2")
    assert (canceled.get(150), canceled.get(37)) == (b"4", rested[b"rest-2"])
    await client.logout()


@pytest.mark.asyncio
async def test_after_a_failover_the_session_is_handed_back_on_an_operators_word(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    """The client fails over to B; A comes back; `fixgw handover` at B gives
    A the session again: the client, dropped at B, logs on at A (its first
    address) and finds its resting order there."""
    a, b = gateways(daemon_factory, nats, tmp_path)
    at_a, at_b = ("127.0.0.1", a.fix_port), ("127.0.0.1", b.fix_port)
    client = FixClient(SETTINGS, MemoryStore())
    assert await client.connect_any([at_a, at_b]) == at_a
    client.send(b"D", limit_order("rest-1", b"1", b"1.00000", b"1"))
    (rested,) = await reports(client, 1)
    a.kill9()
    client.abort()
    where, _refusals = await log_on_anywhere(client, [at_a, at_b])
    assert where == at_b
    a.start()  # A comes back: the session stays at B
    handover = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "gateway",
            "handover",
            "CLIENT1",
            "--to",
            a_name(a),
            "--url",
            f"http://127.0.0.1:{b.http_port}",
            "--token",
            "dev-admin-token",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert handover.returncode == 0, handover.stderr
    assert handover.stdout.strip() == f"FIX.4.4:GATEWAY->CLIENT1 handed over to {a_name(a)}"
    # A took it, with no Logon yet
    held = [s["held_here"] for s in admin(a.http_port, "/admin/cluster")["sessions"]]
    assert held == [True]
    await client.wait_closed(timeout=10)  # dropped at B
    where, _refusals = await log_on_anywhere(client, [at_a, at_b])
    assert where == at_a
    status = await status_of(client, "rest-1", b"1")
    assert (status.get(150), status.get(39), status.get(37)) == (b"I", b"0", rested.get(37))
    assert admin(b.http_port, "/admin/orders?client=CLIENT1") == []
    assert admin(b.http_port, "/admin/cluster")["leases"]["handed_over"] == 1
    await client.logout()


@pytest.mark.asyncio
async def test_a_restart_on_another_port_keeps_the_instance_name_and_its_slices(
    daemon_factory: Callable[..., Any], nats: NatsCluster, tmp_path: Path
) -> None:
    # no [cluster] instance: the name the first start takes (host and FIX
    # port) goes with the data directory, so a gateway started again
    # elsewhere (a container made anew) holds its own slices, not new ones
    gw = daemon_factory(
        "--config",
        str(one_lp_config(tmp_path)),
        "--cluster",
        ",".join(nats.urls),
        data_dir=tmp_path / "gw",
    ).start()
    first = admin(gw.http_port, "/admin/cluster")["instance"]
    assert first.endswith(f"-{gw.fix_port}")
    assert gw.stop() == 0
    gw.fix_port = free_port()
    gw.start()
    assert admin(gw.http_port, "/admin/cluster")["instance"] == first
    assert (tmp_path / "gw" / "cluster_instance").read_text().strip() == first
    nc = await nats_client.connect(nats.urls)
    try:
        entry = await (await nc.jetstream().key_value("fixgw_headroom")).get("LP_A")
    finally:
        await nc.close()
    assert list(json.loads(entry.value or b"{}")["slices"]) == [first]
    assert gw.stop() == 0
    # a name file put wrong by hand is one clear line, not a traceback
    (tmp_path / "gw" / "cluster_instance").write_text("not a name!\n")
    with pytest.raises(RuntimeError, match="not a cluster instance name"):
        gw.start()
    assert "Traceback" not in gw.log_text()
    # a gateway configured on another grid than a running one's is refused
    (tmp_path / "gw" / "cluster_instance").write_text(first + "\n")
    gw.start()
    other = tmp_path / "other-grid.toml"
    text = one_lp_config(tmp_path).read_text()
    other.write_text(text.replace('tick_size = "0.00001"', 'tick_size = "0.0001"', 1))
    second = daemon_factory(
        "--config", str(other), "--cluster", ",".join(nats.urls), data_dir=tmp_path / "gw2"
    )
    with pytest.raises(RuntimeError, match=f"not on the grid of the running gateway {first}"):
        second.start()
    assert "EUR/USD tick_size 0.0001 here, 0.00001 there" in second.log_text()
    assert "Traceback" not in second.log_text()
