"""A reload while quotes are held: the routing settings it changes act on
what is there already, not only on what comes next."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec
import pytest
from test_lp_fault_properties import POLL, STUCK_AFTER, SYMBOL, Harness

from gateway.orderflow.rules import Rules


def with_routing(harness: Harness, **change: object) -> Rules:
    """The rules in force with ``[routing]`` settings changed (a reload)."""
    rules = harness.flow.rules
    config = rules.config
    routing = msgspec.structs.replace(config.routing, **change)
    return dataclasses.replace(rules, config=msgspec.structs.replace(config, routing=routing))


@pytest.mark.asyncio
async def test_a_shorter_quote_age_drops_quotes_held_under_the_longer_one(
    flow_harness: Harness,
) -> None:
    """Quotes held under a quote age of an hour leave the book (and the
    clients' market data and the valuations, which read it) once they are
    older than the age a reload sets, not half an hour later."""
    harness = flow_harness
    flow = harness.flow
    assert flow.routing.book.snapshot(SYMBOL) is not None
    flow.apply_rules(with_routing(harness, quote_max_age_ms=20))
    started = time.monotonic()
    while flow.routing.book.snapshot(SYMBOL) is not None:
        assert time.monotonic() - started < STUCK_AFTER, "quotes past the new age stay"
        await asyncio.sleep(POLL)


@pytest.mark.asyncio
async def test_a_shorter_quote_age_drops_the_quotes_already_past_it_as_it_applies(
    flow_harness: Harness,
) -> None:
    """Quotes already older than the age a reload sets leave the book as
    the reload applies, not half the new age later (clients' market data
    and valuations read the book meanwhile)."""
    harness = flow_harness
    flow = harness.flow
    book = flow.routing.book
    quoted = book.snapshot(SYMBOL)
    assert quoted is not None
    age_ms = 200
    started = time.monotonic()
    # until every quote held (the newest of them too: the LPs quoted one
    # after the other) is older than the new age (no fixed sleep)
    newest = max(quote.time for quote in quoted.quotes.values())
    while time.time() - newest <= age_ms / 1000:
        assert time.monotonic() - started < STUCK_AFTER
        await asyncio.sleep(POLL)
    flow.apply_rules(with_routing(harness, quote_max_age_ms=age_ms))
    assert book.snapshot(SYMBOL) is None, "quotes past the new age stay after the reload"
