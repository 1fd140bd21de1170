"""Fixtures of the order-flow tests: the scripted LP kind, and a started
flow with its scripted LPs and client sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from test_lp_fault_properties import KIND, Harness, ScriptedLp, new_harness

from lp_adapters.registry import register, registered_kinds, unregister


@pytest.fixture(autouse=True, scope="module")
def scripted_kind() -> Iterator[None]:
    """The kind is known while a module's tests run (and only then:
    ``tests/lps/test_registry.py`` checks the exact set of kinds)."""
    ours = KIND not in registered_kinds()
    if ours:
        register(KIND)(ScriptedLp)
    yield
    if ours:
        unregister(KIND)


@pytest_asyncio.fixture
async def flow_harness() -> AsyncIterator[Harness]:
    """A started flow, for tests that drive it step by step."""
    harness = new_harness()
    await harness.flow.start()
    harness.sync()
    yield harness
    await harness.flow.stop()
