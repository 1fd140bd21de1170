"""Each LP's hard limit shared in slices, against a real 3-node cluster:
gateways hammering one LP never hold more than the limit between them."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

import nats
import pytest
import structlog
from nats.js.kv import KeyValue

from config import default_config_path, load_config
from gateway.cluster import Headroom
from gateway.cluster.replica import wait_for_leader
from gateway.orderflow.rules import build_rules, capped
from gateway.sim.nats_cluster import NatsCluster

LIMIT = Decimal(1_000_000)
_buckets = itertools.count()


class Gateway:
    """A gateway as its slices see it: an exposure that grows as fast as
    its caps allow (every order buys), or shrinks when told."""

    def __init__(
        self,
        kv: KeyValue,
        name: str,
        lps: tuple[str, ...] = ("LP1",),
        limit: Decimal = LIMIT,
        live: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.used = Decimal(0)
        self.caps: dict[str, Decimal] = dict.fromkeys(lps, Decimal(0))
        self.headroom = Headroom(
            kv,
            name,
            dict.fromkeys(lps, limit),
            gross=lambda lp: self.used,
            apply=self.apply,
            interval=0.01,
            live=live,
            absent_after=5.0,
            clock=clock,
        )

    def apply(self, caps: Mapping[str, Decimal]) -> None:
        self.caps = dict(caps)

    def route(self, rng: random.Random) -> None:
        """Route a child if the cap leaves room, as the router would."""
        size = Decimal(rng.randrange(1_000, 60_000))
        if self.used + size <= self.caps.get("LP1", Decimal(0)):
            self.used += size


@pytest.fixture
def bucket() -> str:
    return f"h{next(_buckets)}x{random.randrange(10**6)}"


async def headroom_kv(cluster: NatsCluster, bucket: str) -> tuple[nats.NATS, KeyValue]:
    nc = await nats.connect(cluster.urls)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket=bucket, history=1, replicas=3)
        await wait_for_leader(js, f"KV_{bucket}")
    except BaseException:
        await nc.close()
        raise
    return nc, kv


async def stored_slices(kv: KeyValue) -> dict[str, Decimal]:
    entry = await kv.get("LP1")
    return {k: Decimal(v) for k, v in json.loads(entry.value or b"{}")["slices"].items()}


@pytest.mark.asyncio
async def test_two_gateways_hammering_one_lp_never_hold_more_than_its_limit(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a, b = Gateway(kv, "a"), Gateway(kv, "b")
        rng = random.Random(7)
        for step in range(150):
            # both adjust at once: their compare-and-sets race
            await asyncio.gather(a.headroom.adjust("LP1"), b.headroom.adjust("LP1"))
            for g in (a, b):
                for _ in range(3):
                    g.route(rng)
            # the caps each routes within, and the slices stored, never pass it
            assert a.caps["LP1"] + b.caps["LP1"] <= LIMIT, step
            assert a.used + b.used <= LIMIT, step
            assert sum((await stored_slices(kv)).values()) <= LIMIT, step
        # and the limit is used: between them they hold nearly all of it
        assert a.used + b.used > LIMIT * Decimal("0.8")
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_what_one_gateway_gives_back_the_other_can_take(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a, b = Gateway(kv, "a"), Gateway(kv, "b")
        a.used = LIMIT * Decimal("0.85")  # a holds most of it
        for _ in range(3):
            await a.headroom.adjust("LP1")
        assert a.caps["LP1"] >= a.used
        await b.headroom.adjust("LP1")
        assert b.caps["LP1"] <= LIMIT - a.caps["LP1"]
        # a's positions close: it gives back all but a chunk above them
        a.used = Decimal(0)
        await a.headroom.adjust("LP1")
        assert a.caps["LP1"] == LIMIT * Decimal("0.1")
        b.used = LIMIT * Decimal("0.7")
        await b.headroom.adjust("LP1")
        assert b.caps["LP1"] == LIMIT * Decimal("0.8")
        assert a.headroom.stats.returns == 1
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_out_of_reach_a_gateway_routes_within_its_slice_then_reduces_only(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    other_nc, other_kv = await headroom_kv(nats_cluster, bucket)
    try:
        a = Gateway(kv, "a")
        await a.headroom.adjust("LP1")
        held = a.caps["LP1"]
        assert held == LIMIT * Decimal("0.1")
        await nc.close()  # the cluster is out of reach for a
        a.used = held  # it routed up to its slice meanwhile
        await a.headroom.adjust("LP1")
        assert a.caps["LP1"] == held  # kept, not grown
        assert not a.headroom.reachable
        assert a.headroom.stats.reduce_only == {"LP1"}
        # and what a holds stays its own: the other gateway cannot take it
        b = Gateway(other_kv, "b")
        b.used = LIMIT
        for _ in range(12):
            await b.headroom.adjust("LP1")
        assert b.caps["LP1"] == LIMIT - held
    finally:
        await other_nc.close()


def test_a_slice_caps_the_hard_and_the_soft_limit() -> None:
    config = load_config(default_config_path())
    rules = build_rules(config, {}, [], 1)
    lp, limits = next(iter(rules.limits.lps.items()))
    small = capped(rules, {lp: Decimal(1000)}).limits.lps[lp]
    assert small.hard_limit_usd == Decimal(1000)
    assert small.soft_limit_usd == min(limits.soft_limit_usd, Decimal(1000))
    assert small.enabled == limits.enabled
    # a slice above the configured limit changes nothing
    assert capped(rules, {lp: limits.hard_limit_usd * 2}).limits.lps[lp] == limits


@pytest.mark.asyncio
async def test_a_limit_lowered_by_a_reload_leaves_the_slices_within_it(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a, b = Gateway(kv, "a"), Gateway(kv, "b")
        a.used = b.used = LIMIT * Decimal("0.25")
        for _ in range(4):
            await asyncio.gather(a.headroom.adjust("LP1"), b.headroom.adjust("LP1"))
        assert a.caps["LP1"] == b.caps["LP1"] == LIMIT * Decimal("0.35")
        # the limit is halved, on each gateway (a reload there)
        lower = LIMIT / 2
        for g in (a, b):
            g.headroom.set_limits({"LP1": lower})
        # from the reloads on, what the two may route stays within it
        assert a.caps["LP1"] + b.caps["LP1"] <= lower
        for _ in range(4):
            await asyncio.gather(a.headroom.adjust("LP1"), b.headroom.adjust("LP1"))
            assert a.caps["LP1"] + b.caps["LP1"] <= lower
            assert sum((await stored_slices(kv)).values()) <= lower
        # and what is left of it above their exposures is theirs to use
        assert a.caps["LP1"] + b.caps["LP1"] == lower
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_an_lp_key_written_by_hand_that_cannot_be_read_keeps_the_slice_and_says_so(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a = Gateway(kv, "a", ("LP1", "LP2"))
        await a.headroom.adjust("LP1")
        held = a.caps["LP1"]
        assert held == LIMIT * Decimal("0.1")
        # an operator edits the key by hand, a slice as a number
        await kv.put("LP1", b'{"limit_usd": "1000000", "slices": {"a": "100000", "b": 400000}}')
        a.used = held
        with structlog.testing.capture_logs() as logs:
            await a.headroom.adjust("LP1")  # not grown, and no exception
            await a.headroom.adjust("LP1")
            # the cluster is in reach all the same: another LP's slice moves
            await a.headroom.adjust("LP2")
            await a.headroom.adjust("LP1")
        assert a.caps["LP1"] == held
        assert a.headroom.stats.reduce_only == {"LP1"}
        assert a.headroom.reachable
        said = [e for e in logs if e["event"].startswith("headroom_")]
        assert [(e["event"], e["lp"]) for e in said] == [("headroom_key_unreadable", "LP1")]
        assert "LP1" in said[0]["error"]
        # the key put right, the slice grows again
        await kv.put("LP1", b'{"limit_usd": "1000000", "slices": {"a": "100000"}}')
        await a.headroom.adjust("LP1")
        assert a.caps["LP1"] == LIMIT * Decimal("0.2")
        assert a.headroom.stats.reduce_only == set()
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_gateways_configured_with_different_limits_keep_within_the_smallest(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        # one config says three times the LP's real limit (a typo, or a
        # reload made on one gateway only)
        a, b = Gateway(kv, "a"), Gateway(kv, "b", limit=LIMIT * 3)
        with structlog.testing.capture_logs() as logs:
            for _ in range(60):
                for g in (a, b):
                    await g.headroom.adjust("LP1")
                    g.used = g.caps["LP1"]  # routes up to its cap
                assert a.caps["LP1"] + b.caps["LP1"] <= LIMIT
                assert a.used + b.used <= LIMIT
        assert a.used + b.used > LIMIT * Decimal("0.8")  # and the limit is used
        key = json.loads((await kv.get("LP1")).value or b"{}")
        assert Decimal(key["limit_usd"]) == LIMIT
        assert {k: Decimal(v) for k, v in key["limits"].items()} == {"a": LIMIT, "b": LIMIT * 3}
        # said once on each side, and shown
        said = [e["limit_usd"] for e in logs if e["event"] == "headroom_limit_differs"]
        assert sorted(said) == [str(LIMIT), str(LIMIT * 3)]
        assert a.headroom.limits_differ("LP1")
        assert b.headroom.limits_differ("LP1")
        shown = b.headroom.snapshot()["lps"]["LP1"]  # type: ignore[index]
        assert shown["limit_in_force_usd"] == str(LIMIT)
        # the limits put right (a reload on b), the mismatch ends
        b.headroom.set_limits({"LP1": LIMIT})
        with structlog.testing.capture_logs() as logs:
            for g in (b, a):
                await g.headroom.adjust("LP1")
        assert [e["event"] for e in logs if e["event"].startswith("headroom_limit")] == [
            "headroom_limit_agrees",
            "headroom_limit_agrees",
        ]
        assert not a.headroom.limits_differ("LP1")
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_a_key_with_one_limit_for_all_counts_it_as_each_holders(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        # a key that names one limit, not each gateway's (written before
        # they were kept apart): a gateway configured higher keeps within it
        await kv.put("LP1", b'{"limit_usd": "1000000", "slices": {"old": "400000"}}')
        b = Gateway(kv, "b", limit=LIMIT * 3)
        b.used = LIMIT * 2
        for _ in range(3):
            await b.headroom.adjust("LP1")
        assert b.caps["LP1"] == LIMIT - Decimal(400_000)
        assert b.headroom.limits_differ("LP1")
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_a_gateway_comfortable_in_its_slice_learns_of_a_lower_limit_and_keeps_to_it(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        # b, configured three times the limit, holds a slice past the real
        # one with spare it is content with when a joins, configured right
        b = Gateway(kv, "b", limit=LIMIT * 3)
        b.used = LIMIT * Decimal("1.5")
        await b.headroom.adjust("LP1")
        assert b.caps["LP1"] == LIMIT * Decimal("1.8")
        a = Gateway(kv, "a")
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):
                await a.headroom.adjust("LP1")
                a.used = a.caps["LP1"]
                await b.headroom.adjust("LP1")
        # b's slice trimmed to what the lower limit leaves (its exposure is
        # past it: it reduces only), and both said so
        assert a.caps["LP1"] + b.caps["LP1"] <= LIMIT
        assert b.caps["LP1"] < b.used
        said = sorted(e["limit_usd"] for e in logs if e["event"] == "headroom_limit_differs")
        assert said == [str(LIMIT), str(LIMIT * 3)]
        assert b.headroom.snapshot()["lps"]["LP1"]["limit_in_force_usd"] == str(LIMIT)  # type: ignore[index]
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_a_dead_gateways_limit_binds_until_its_entry_is_removed(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a, b, c = (Gateway(kv, name) for name in "abc")
        for g in (a, b, c):
            g.used = LIMIT * Decimal("0.1")
            await g.headroom.adjust("LP1")
        # c dies (it adjusts no more); a and b are raised by a reload: c's
        # limit still binds, as its slice stays reserved
        for g in (a, b):
            g.headroom.set_limits({"LP1": LIMIT * 2})

        async def trade() -> None:
            for _ in range(30):
                for g in (a, b):
                    await g.headroom.adjust("LP1")
                    g.used = g.caps["LP1"]

        await trade()
        key = json.loads((await kv.get("LP1")).value or b"{}")
        assert Decimal(key["limit_usd"]) == LIMIT
        assert a.used + b.used + Decimal(key["slices"]["c"]) <= LIMIT
        # the operator removes c's entry (its positions known closed)
        del key["slices"]["c"]
        await kv.put("LP1", json.dumps(key).encode())
        await trade()
        key = json.loads((await kv.get("LP1")).value or b"{}")
        assert Decimal(key["limit_usd"]) == LIMIT * 2
        assert LIMIT < a.used + b.used <= LIMIT * 2
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_a_key_that_lost_this_gateways_entry_has_it_stored_again(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a, b = Gateway(kv, "a"), Gateway(kv, "b")
        a.used = LIMIT * Decimal("0.4")
        await a.headroom.adjust("LP1")
        held = a.caps["LP1"]
        for lost in ("deleted", "edited"):
            if lost == "deleted":
                await kv.delete("LP1")
            else:
                await kv.put("LP1", b'{"limit_usd": "1000000", "slices": {"b": "0"}}')
            await a.headroom.adjust("LP1")  # content with its slice, it reads the key
            assert (await stored_slices(kv))["a"] == held
            for _ in range(20):
                await b.headroom.adjust("LP1")
                b.used = b.caps["LP1"]
            assert a.used + b.used <= LIMIT
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_a_raise_is_used_while_a_gateway_is_content_with_its_slice(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a, b = Gateway(kv, "a"), Gateway(kv, "b")
        a.used = b.used = LIMIT * Decimal("0.3")
        for g in (a, b):
            await g.headroom.adjust("LP1")
        for g in (a, b):
            g.headroom.set_limits({"LP1": LIMIT * 2})
        for _ in range(40):
            await a.headroom.adjust("LP1")  # a's exposure stays: content
            await b.headroom.adjust("LP1")
            b.used = b.caps["LP1"]
        assert b.headroom.in_force["LP1"] == LIMIT * 2
        assert not b.headroom.limits_differ("LP1")
        assert a.used + b.used > LIMIT
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_a_slice_held_by_a_gateway_not_running_is_named_once_and_when_it_ends(
    nats_cluster: NatsCluster, bucket: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    now = [100.0]
    running = {"a", "old"}
    try:
        a = Gateway(kv, "a", live=running.__contains__, clock=lambda: now[0])
        old = Gateway(kv, "old")
        old.used = LIMIT * Decimal("0.2")
        await old.headroom.adjust("LP1")
        held = old.caps["LP1"]
        running.discard("old")  # decommissioned: its slice stays in the key
        with structlog.testing.capture_logs() as logs:
            await a.headroom.adjust("LP1")
            now[0] += 4.9  # not yet: a gateway restarting takes its name again
            await a.headroom.adjust("LP1")
            assert not a.headroom.absent["LP1"]
            now[0] += 0.2
            for _ in range(3):
                await a.headroom.adjust("LP1")
        named = [e for e in logs if e["event"] == "headroom_slice_held_by_absent_gateway"]
        assert len(named) == 1
        assert named[0]["gateway"] == "old"
        assert Decimal(named[0]["slice_usd"]) == held
        assert a.headroom.absent["LP1"] == {"old": held}
        # the operator removes its entry: said once, and gone from the view
        key = json.loads((await kv.get("LP1")).value or b"{}")
        del key["slices"]["old"]
        await kv.put("LP1", json.dumps(key).encode())
        with structlog.testing.capture_logs() as logs:
            await a.headroom.adjust("LP1")
            await a.headroom.adjust("LP1")
        ended = [e for e in logs if e["event"] == "headroom_absent_gateway_ended"]
        assert [e["why"] for e in ended] == ["its entry was removed"]
        assert a.headroom.absent["LP1"] == {}
    finally:
        await nc.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("other", ['"NaN"', '"-900000"', '"Infinity"'])
async def test_an_lp_key_written_by_hand_with_a_slice_that_is_no_amount_is_unreadable(
    nats_cluster: NatsCluster, bucket: str, other: str
) -> None:
    nc, kv = await headroom_kv(nats_cluster, bucket)
    try:
        a = Gateway(kv, "a")
        await a.headroom.adjust("LP1")
        held = a.caps["LP1"]
        # an operator edits the key by hand: b's slice is no amount of USD
        await kv.put(
            "LP1", b'{"limit_usd": "1000000", "slices": {"a": "100000", "b": %s}}' % other.encode()
        )
        with structlog.testing.capture_logs() as logs:
            for _ in range(20):
                # a's exposure grows as far as its cap lets it: never past the limit
                a.used = a.caps["LP1"]
                await a.headroom.adjust("LP1")  # no exception
        assert a.caps["LP1"] == held
        assert a.headroom.stats.reduce_only == {"LP1"}
        said = [e["event"] for e in logs if e["event"].startswith("headroom_")]
        assert said == ["headroom_key_unreadable"]
    finally:
        await nc.close()
