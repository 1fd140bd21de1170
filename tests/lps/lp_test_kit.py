"""Instruments, child orders and a queue-backed event sink for the LP adapter tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from lp_adapters.simulated.adapter import SimulatedLp
from router.model import (
    AssetClass,
    ChildCanceled,
    ChildFill,
    ChildOrder,
    ChildReject,
    Instrument,
    LpEvent,
    Side,
)

INSTRUMENTS: dict[str, Instrument] = {
    "EUR/USD": Instrument(
        symbol="EUR/USD",
        asset_class=AssetClass.FX,
        tick_size=Decimal("0.00001"),
        lot_size=Decimal("1000"),
        min_lots=1,
        max_lots=100_000,
        quote_currency="USD",
    ),
    "USD/JPY": Instrument(
        symbol="USD/JPY",
        asset_class=AssetClass.FX,
        tick_size=Decimal("0.001"),
        lot_size=Decimal("1000"),
        min_lots=1,
        max_lots=100_000,
        quote_currency="JPY",
        usd_conversion="base",
    ),
    "XAU/USD": Instrument(
        symbol="XAU/USD",
        asset_class=AssetClass.METAL,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("1"),
        min_lots=1,
        max_lots=10_000,
        quote_currency="USD",
    ),
    "BTC/USD": Instrument(
        symbol="BTC/USD",
        asset_class=AssetClass.CRYPTO,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        min_lots=1,
        max_lots=1_000_000,
        quote_currency="USD",
    ),
}

TIMEOUT = 2.0
"""Longest wait for any one event; a test that needs longer is broken."""

# A timer interval long enough never to fire during a test: quotes are then
# published only on connect and when a test asks for them.
NO_TIMER_MS = 3_600_000

E = TypeVar("E")

MakeLp = Callable[..., SimulatedLp]
"""The ``make_lp`` fixture: ``make_lp(name, sink, instruments, market, **settings)``."""


def child(
    child_id: str,
    side: Side,
    qty: int,
    price: int,
    *,
    lp: str = "lp-a",
    symbol: str = "EUR/USD",
) -> ChildOrder:
    return ChildOrder(
        child_id=child_id,
        parent_id=f"parent-{child_id}",
        lp=lp,
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
    )


def is_terminal(event: LpEvent) -> bool:
    """Whether ``event`` ends its child order's life."""
    if isinstance(event, ChildReject | ChildCanceled):
        return True
    return isinstance(event, ChildFill) and event.leaves == 0


class EventQueue:
    """An adapter sink that records every event and lets a test await them."""

    def __init__(self) -> None:
        self.seen: list[LpEvent] = []
        self._queue: asyncio.Queue[LpEvent] = asyncio.Queue()

    def __call__(self, event: LpEvent) -> None:
        self.seen.append(event)
        self._queue.put_nowait(event)

    def empty(self) -> bool:
        return self._queue.empty()

    async def next(self, timeout: float = TIMEOUT) -> LpEvent:
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def next_of(self, kind: type[E], timeout: float = TIMEOUT) -> E:
        """The next event of ``kind``, skipping any others."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._queue.get()
                if isinstance(event, kind):
                    return event

    def drain(self) -> list[LpEvent]:
        """Every event queued so far, without waiting."""
        events = []
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

    async def child_events(self, child_id: str, timeout: float = TIMEOUT) -> list[LpEvent]:
        """Every event of one child order up to its terminal one; events of
        other children and quotes are skipped."""
        events: list[LpEvent] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self._queue.get()
                if getattr(event, "child_id", None) != child_id:
                    continue
                events.append(event)
                if is_terminal(event):
                    return events

    async def terminal(self, timeout: float = TIMEOUT) -> LpEvent:
        """The next terminal child event, whichever child it belongs to."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._queue.get()
                if is_terminal(event):
                    return event
