"""``/admin/orders?client=X`` answers 404 only for a client the gateway
does not know: no order session configured for it *and no order of it
known* (docs/operations.md, Operator CLI).  A client whose session was
taken out of the config, but whose finished orders of the day the
gateway still retains, is known: its open orders are none (200, ``[]``),
as ``?all=1`` lists its finished ones."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.ops.http import build_app
from gateway.ops.tokens import Tokens
from matcher import Order
from matcher.orders import OrdStatus, OrdType, Side, TimeInForce


def order(seq: int, client: str, status: OrdStatus) -> Order:
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
        self.final, self.opened = final, open_orders

    def open_snapshot(self) -> list[Order]:
        return list(self.opened)

    def finished_view(self) -> Iterator[Order]:
        return iter(list(self.final))

    def ids_of(self, client: str) -> Any:
        known = [o for o in self.final + self.opened if o.client == client]
        return None if not known else SimpleNamespace(is_empty=lambda: False)


@pytest.mark.asyncio
async def test_a_client_with_retained_orders_is_known_without_a_session() -> None:
    # OLD's session was removed from the config at the last start; its
    # filled order of the day is retained (status requests, duplicate checks)
    flow = SimpleNamespace(
        matcher=Matcher([order(1, "OLD", OrdStatus.FILLED)], []),
        instruments={},
        sessions={"CLIENT1": object()},
    )
    gateway: Any = SimpleNamespace(
        admin_tokens=lambda: Tokens("adm", "rd"), order_flow=flow, cluster=None
    )
    headers = {"Authorization": "Bearer rd"}
    async with TestClient(TestServer(build_app(gateway))) as http:
        async with http.get("/admin/orders?client=OLD&all=1", headers=headers) as r:
            assert r.status == 200
            assert [o["order_id"] for o in await r.json()] == ["O1"]
        # the same client, its open orders: none, not "no client OLD"
        async with http.get("/admin/orders?client=OLD", headers=headers) as r:
            assert (r.status, await r.json()) == (200, [])
        async with http.get("/admin/orders?client=NOBODY", headers=headers) as r:
            assert r.status == 404
