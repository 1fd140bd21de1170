"""The admin API's order listing: the latest orders in time priority, taken
a slice per loop turn, so that a listing of the hundred thousand final
orders the matcher keeps never holds the event loop."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.ops import admin
from gateway.ops.http import build_app
from gateway.ops.tokens import Tokens
from matcher import Order
from matcher.orders import OrdStatus, OrdType, Side, TimeInForce


def order(seq: int, client: str, status: OrdStatus = OrdStatus.FILLED) -> Order:
    return Order(
        f"O{seq}",
        client,
        f"C{seq}",
        None,
        "EUR/USD",
        Side.BUY,
        OrdType.MARKET,
        TimeInForce.IOC,
        1,
        None,
        seq,
        status=status,
    )


class Matcher:
    def __init__(self, final: list[Order], open_orders: list[Order]) -> None:
        self.final = final
        self.opened = open_orders
        self.views = 0

    def open_snapshot(self) -> list[Order]:
        return list(self.opened)

    def finished_view(self) -> Iterator[Order]:
        self.views += 1
        return iter(list(self.final))

    def ids_of(self, client: str) -> Any:
        known = [o for o in self.final + self.opened if o.client == client]
        return None if not known else SimpleNamespace(is_empty=lambda: False)


def flow(final: list[Order], open_orders: list[Order]) -> Any:
    return SimpleNamespace(matcher=Matcher(final, open_orders), instruments={})


def ids(listed: list[dict[str, Any]]) -> list[str]:
    return [o["order_id"] for o in listed]


@pytest.mark.asyncio
async def test_the_latest_orders_in_time_priority() -> None:
    rng = random.Random(7)
    seqs = list(range(1, 3 * admin.SLICE + 11))
    rng.shuffle(seqs)  # a replace that lost priority moves an order back
    final = [order(s, "A" if s % 3 else "B") for s in seqs[:-40]]
    open_orders = [order(s, "A", OrdStatus.NEW) for s in seqs[-40:]]
    known = flow(final, open_orders)
    everything = sorted(final + open_orders, key=lambda o: o.seq)

    listed = await admin.orders(known, None, finished=True, limit=700)
    assert ids(listed) == [o.order_id for o in everything[-700:]]
    listed = await admin.orders(known, "B", finished=True)
    assert ids(listed) == [o.order_id for o in everything if o.client == "B"][-1000:]
    assert known.matcher.views == 2
    listed = await admin.orders(known, None)  # open orders alone, all of them
    assert ids(listed) == [o.order_id for o in sorted(open_orders, key=lambda o: o.seq)]
    assert known.matcher.views == 2  # the final orders not read at all
    assert await admin.orders(known, None, finished=True, limit=0) == []


@pytest.mark.asyncio
async def test_a_long_listing_lets_the_loop_serve_between_its_slices() -> None:
    count = 20 * admin.SLICE
    known = flow([order(s, "A") for s in range(1, count + 1)], [])
    loop = asyncio.get_running_loop()
    turns = 0
    listing = asyncio.ensure_future(admin.orders(known, None, finished=True, limit=count))

    def other_work() -> None:  # a session's work, one callback a turn
        nonlocal turns
        turns += 1
        if not listing.done():
            loop.call_soon(other_work)

    loop.call_soon(other_work)
    listed = await listing
    assert len(listed) == count
    # other work ran between the slices: once per slice looked at, once per
    # slice described
    assert turns >= 2 * count // admin.SLICE


class Seq(int):
    """A sequence number that counts how often it is compared."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        Seq.compared += 1
        return int(self) == other

    def __lt__(self, other: int) -> bool:
        Seq.compared += 1
        return int(self) < other

    __hash__ = int.__hash__


@pytest.mark.asyncio
async def test_many_open_orders_are_put_in_time_priority_a_slice_a_turn() -> None:
    """Every open order is listed (no limit), oldest first, and the work of
    ordering them is spread over the turns as the work of reading them is:
    no turn compares more than a slice's worth of orders (sorting twenty
    thousand in one turn would hold every session's events meanwhile)."""
    count = 40 * admin.SLICE
    seqs = list(range(1, count + 1))
    random.Random(3).shuffle(seqs)
    opened = [order(s, "A", OrdStatus.NEW) for s in seqs]
    for o in opened:
        o.seq = Seq(o.seq)
    known = flow([], opened)
    loop = asyncio.get_running_loop()
    most = 0
    listing = asyncio.ensure_future(admin.orders(known, None))

    def turn() -> None:  # runs once a loop turn, beside the listing's step
        nonlocal most
        most = max(most, Seq.compared)
        Seq.compared = 0
        if not listing.done():
            loop.call_soon(turn)

    Seq.compared = 0
    loop.call_soon(turn)
    listed = await listing
    assert ids(listed) == [f"O{s}" for s in range(1, count + 1)]
    # a slice through a heap: a few dozen comparisons an order (two calls
    # each), not the hundreds of thousands of a sort of all of them at once
    assert 0 < most <= 100 * admin.SLICE


@pytest.mark.asyncio
async def test_a_client_with_retained_orders_is_known_without_a_session() -> None:
    """``/admin/orders?client=X`` answers 404 only for a client the gateway
    does not know (docs/operations.md): one whose session was removed from
    the config at the last start, its filled order of the day retained, has
    no open orders (200, ``[]``)."""
    known = flow([order(1, "OLD")], [])
    known.sessions = {"CLIENT1": object()}
    gateway: Any = SimpleNamespace(
        admin_tokens=lambda: Tokens("adm", "rd"), order_flow=known, cluster=None
    )
    headers = {"Authorization": "Bearer rd"}
    async with TestClient(TestServer(build_app(gateway))) as http:
        async with http.get("/admin/orders?client=OLD&all=1", headers=headers) as r:
            assert r.status == 200
            assert ids(await r.json()) == ["O1"]
        async with http.get("/admin/orders?client=OLD", headers=headers) as r:
            assert (r.status, await r.json()) == (200, [])
        async with http.get("/admin/orders?client=NOBODY", headers=headers) as r:
            assert r.status == 404
