"""Fixtures for the LP adapter tests: simulated LPs that are always shut down."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
import pytest_asyncio
from lp_test_kit import INSTRUMENTS, NO_TIMER_MS, EventQueue, MakeLp

from lp_adapters.simulated import MarketModel, SimulatedLp, SimulatedLpSettings
from router.model import Instrument


@pytest_asyncio.fixture
async def make_lp() -> AsyncIterator[MakeLp]:
    """Build simulated LPs (no quote timer unless a test sets one), from
    settings given as keywords and an optional shared market; every LP
    built is disconnected when the test ends, so no task outlives it."""
    built: list[SimulatedLp] = []

    def make(
        name: str = "lp-a",
        sink: EventQueue | None = None,
        instruments: Mapping[str, Instrument] = INSTRUMENTS,
        market: MarketModel | None = None,
        **settings: Any,
    ) -> SimulatedLp:
        settings.setdefault("quote_interval_ms", NO_TIMER_MS)
        settings.setdefault("statement_dir", "")  # no statement files from unit tests
        lp = SimulatedLp(
            name,
            instruments,
            sink if sink is not None else EventQueue(),
            msgspec.convert(settings, SimulatedLpSettings),
            market=market,
            clock=lambda: 0.0,
        )
        built.append(lp)
        return lp

    yield make
    for lp in built:
        await lp.disconnect()
