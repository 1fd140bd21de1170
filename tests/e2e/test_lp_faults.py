"""LPs that misbehave, driven by a scripted adapter registered for these tests,
behind the daemon run in this process over real loopback sockets.

``MuteLp`` quotes a one-level book a little better than the other LP, takes
child orders and cancels, and answers none of them until the test makes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from test_order_scenarios import FINAL, SLOW_BEST_LP, order, reports_until, started

from gateway.fix import codec
from gateway.orderflow.recovery import HOUSE
from lp_adapters.base import EventSink, LpAdapter
from lp_adapters.registry import adapter_class, register, unregister
from router.model import ChildFill, ChildOrder, Instrument, Level, LpStatus, Quote

MUTE_KIND = "test-mute"


class MuteLp(LpAdapter):
    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: Mapping[str, Any],
    ) -> None:
        super().__init__(name, instruments, sink, settings)
        self._up = False
        self._task: asyncio.Task[None] | None = None
        self.bid = 0  # ticks; set by the test from the other LP's book
        self.ask = 0
        self.children: dict[str, ChildOrder] = {}
        self.cancels: list[str] = []

    @property
    def up(self) -> bool:
        return self._up

    async def connect(self) -> None:
        self._up = True
        self.sink(LpStatus(self.name, True))
        self._task = asyncio.create_task(self._quote_forever())

    async def disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._up = False
        self.sink(LpStatus(self.name, False, "disconnected"))

    def publish(self) -> None:
        if self.ask:
            book = (Level(self.bid, 1000),), (Level(self.ask, 1000),)
            self.sink(Quote(self.name, "EUR/USD", *book, time.time()))

    async def _quote_forever(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(0.05)  # pacing: a quote every 50 ms

    def send(self, child: ChildOrder) -> None:
        self.children[child.child_id] = child

    def cancel(self, child_id: str) -> None:
        self.cancels.append(child_id)

    def fill(self, child_id: str, exec_id: str) -> None:
        child = self.children[child_id]
        self.sink(ChildFill(child_id, exec_id, child.qty, child.price or self.ask, 0))


MUTE_CONFIG = (
    SLOW_BEST_LP.format(soft=20_000_000, hard=30_000_000, latency=0).replace(
        'name = "LP_SLOW"\nadapter = "simulated"', f'name = "LP_MUTE"\nadapter = "{MUTE_KIND}"'
    )
    + "walk_ticks = 0\n"  # LP_OTHER's prices stand still
    + "[routing]\nchild_timeout_ms = 100\n"
)


@pytest.fixture(autouse=True, scope="module")
def mute_kind() -> Iterator[None]:
    """The kind is known for this module's tests only."""
    adapter_class("simulated")
    register(MUTE_KIND)(MuteLp)
    yield
    unregister(MUTE_KIND)


@pytest.mark.asyncio
async def test_an_lp_that_answers_neither_order_nor_cancel_is_given_up_on(
    tmp_path: Path,
) -> None:
    gateway, c = await started(MUTE_CONFIG, tmp_path)
    try:
        flow = gateway.order_flow
        assert flow is not None
        mute = flow.adapters["LP_MUTE"]
        assert isinstance(mute, MuteLp)
        other = flow.adapters["LP_OTHER"].quote("EUR/USD")  # type: ignore[attr-defined]
        # one tick better than LP_OTHER on both sides: every order goes to LP_MUTE first
        mute.bid, mute.ask = other.bids[0].price + 1, other.asks[0].price - 1
        mute.publish()

        c.send(b"D", order("MUTE1", "1", "2000"))
        reports = await reports_until(c, b"MUTE1", *FINAL)

        # after one timeout a cancel went to LP_MUTE, after a second the
        # child was given up and its quantity routed to LP_OTHER
        (child_id,) = mute.children
        assert mute.cancels == [child_id]
        assert reports[-1].get(39) == b"2"
        ledger = flow.ledger
        assert ledger.lp_position("LP_OTHER", "EUR/USD") == 2
        assert ledger.lp_position("LP_MUTE", "EUR/USD") == 0
        assert ledger.reserved("LP_MUTE", "EUR/USD") == 0
        assert ledger.client_position("CLIENT1", "EUR/USD") == 2

        # the LP fills the abandoned child after all (twice, the same fill):
        # the client is not told again; the house holds the position, once
        mute.fill(child_id, "LATE-1")
        mute.fill(child_id, "LATE-1")
        assert ledger.lp_position("LP_MUTE", "EUR/USD") == 2
        assert ledger.client_position(HOUSE, "EUR/USD") == 2
        assert ledger.client_position("CLIENT1", "EUR/USD") == 2
        # a status request for an order never sent is answered after
        # anything sent before it: nothing else may come first
        c.send(b"H", codec.encode_fields([(11, b"MARK"), (54, b"1"), (55, b"EUR/USD")]))
        marker = await c.receive(timeout=10)
        assert marker.get(11) == b"MARK", f"the client was told of a late fill: {marker}"
    finally:
        await c.logout()
        await gateway.stop()
