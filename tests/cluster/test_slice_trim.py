"""A slice made smaller by a lower limit in force, against a real 3-node
cluster: the gateway routes within the smaller slice from the moment it
stores it, even when the answer to that write never comes."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.kv import KeyValue

from gateway.cluster import Headroom
from gateway.cluster.replica import wait_for_leader
from gateway.sim.nats_cluster import NatsCluster

LIMIT = Decimal(1_000_000)
_buckets = itertools.count()


class AnswerLost:
    """A bucket whose writes are stored but, once ``lose`` is set, answered
    by no one (the gateway's link goes as the write reaches the cluster)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.lose = False
        self.written: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        revision = await self._kv.update(key, value, last=last)
        self.written.append(value)
        if self.lose:
            raise nats.errors.TimeoutError
        return revision


class Gateway:
    def __init__(self, kv: Any, name: str, limit: Decimal) -> None:
        self.used = Decimal(0)
        self.caps: dict[str, Decimal] = {"LP1": Decimal(0)}
        self.headroom = Headroom(
            kv, name, {"LP1": limit}, gross=lambda lp: self.used, apply=self.apply
        )

    def apply(self, caps: Mapping[str, Decimal]) -> None:
        self.caps = dict(caps)


async def slices(kv: KeyValue) -> dict[str, Decimal]:
    entry = await kv.get("LP1")
    return {k: Decimal(v) for k, v in json.loads(entry.value or b"{}")["slices"].items()}


@pytest.mark.asyncio
async def test_a_slice_cut_by_a_lower_limit_is_not_routed_past_when_its_write_goes_unanswered(
    nats_cluster: NatsCluster,
) -> None:
    nc = await nats.connect(nats_cluster.urls)
    try:
        js = nc.jetstream()
        bucket = f"trim{next(_buckets)}x{random.randrange(10**6)}"
        kv = await js.create_key_value(bucket=bucket, history=1, replicas=3)
        await wait_for_leader(js, f"KV_{bucket}")
        lossy = AnswerLost(kv)
        a = Gateway(lossy, "a", LIMIT)
        a.used = LIMIT * Decimal("0.85")
        await a.headroom.adjust("LP1")
        assert a.caps["LP1"] == LIMIT * Decimal("0.95")
        # b joins, configured lower: the limit in force is b's, which a's
        # slice alone passes (b gets nothing)
        lower = LIMIT * Decimal("0.9")
        b = Gateway(kv, "b", lower)
        await b.headroom.adjust("LP1")
        assert b.caps["LP1"] == 0
        # a learns of it at its next pass and stores its slice cut to what
        # the lower limit leaves; the write is stored, its answer lost
        lossy.lose = True
        await a.headroom.adjust("LP1")
        assert lossy.written, "a stored nothing"
        assert not a.headroom.reachable
        stored = await slices(kv)
        assert stored["a"] == lower
        # what a may route stays within the slice the key gives it: the
        # house's notional at the LP within the limit in force
        assert a.caps["LP1"] <= stored["a"]
        await b.headroom.adjust("LP1")
        assert a.caps["LP1"] + b.caps["LP1"] <= lower
    finally:
        await nc.close()


class Held:
    """A bucket whose writes, once ``hold`` is set, wait until ``go`` is
    set (a write on its way while the loop does other work)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.hold = False
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        if self.hold:
            self.waiting.set()
            await self.go.wait()
        return await self._kv.update(key, value, last=last)


@pytest.mark.asyncio
async def test_a_limit_lowered_while_a_slice_is_being_stored_is_not_routed_past(
    nats_cluster: NatsCluster,
) -> None:
    nc = await nats.connect(nats_cluster.urls)
    try:
        js = nc.jetstream()
        bucket = f"trim{next(_buckets)}x{random.randrange(10**6)}"
        kv = await js.create_key_value(bucket=bucket, history=1, replicas=3)
        await wait_for_leader(js, f"KV_{bucket}")
        held = Held(kv)
        a, b = Gateway(held, "a", LIMIT), Gateway(kv, "b", LIMIT)
        a.used = b.used = LIMIT * Decimal("0.25")
        for _ in range(4):
            await asyncio.gather(a.headroom.adjust("LP1"), b.headroom.adjust("LP1"))
        assert a.caps["LP1"] == b.caps["LP1"] == LIMIT * Decimal("0.35")
        # a's exposure grows: its pass stores a larger slice of the limit...
        a.used = LIMIT * Decimal("0.32")
        held.hold = True
        growing = asyncio.ensure_future(a.headroom.adjust("LP1"))
        async with asyncio.timeout(10):
            await held.waiting.wait()
        # ... while a reload on each gateway halves the limit
        lower = LIMIT / 2
        for g in (a, b):
            g.headroom.set_limits({"LP1": lower})
        assert a.caps["LP1"] + b.caps["LP1"] <= lower
        held.go.set()
        await growing
        # what the two may route stays within the lower limit, from the
        # reloads on, the pass of the old limit ending after them included
        assert a.caps["LP1"] + b.caps["LP1"] <= lower
        for _ in range(4):
            await asyncio.gather(a.headroom.adjust("LP1"), b.headroom.adjust("LP1"))
            assert a.caps["LP1"] + b.caps["LP1"] <= lower
            assert sum((await slices(kv)).values()) <= lower
    finally:
        await nc.close()
