"""After a restart the matcher keeps its final orders in the order it kept
them before: a quiet client's order kept past the bound (moved to the
newest end) is not the first to go when another client comes, as it
would not have been without the restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_finals_past_retained import flow_keeping, send

from gateway.orderflow.flow import OrderFlow
from router.model import Level, Quote


def ended(built: OrderFlow) -> None:
    """CLIENT1's two orders end, then CLIENT2's four (IOCs far from any
    price): CLIENT1's older one goes, its newer one is kept past the bound
    as within its share."""
    quote = Quote("LP_A", "EUR/USD", (Level(90_000, 100),), (Level(110_000, 100),), time.time())
    built.routing.on_lp_event(quote)
    for n in range(2):
        send(built, "CLIENT1", f"A{n}", b"1", b"3")
    for n in range(4):
        send(built, "CLIENT2", f"B{n}", b"1", b"3")


def kept(built: OrderFlow) -> set[str]:
    return {o.cl_ord_id for o in built.matcher.finished_view()}


@pytest.mark.asyncio
async def test_a_restart_keeps_the_final_orders_in_the_order_the_matcher_kept_them(
    tmp_path: Path,
) -> None:
    live, journal = flow_keeping(tmp_path / "live", retain=4)
    try:
        ended(live)
        assert kept(live) == {"A1", "B1", "B2", "B3"}
        send(live, "CLIENT3", "C0", b"1", b"3")  # a third client: the shares shrink
        expected = kept(live)
    finally:
        journal.close()
    assert "A1" in expected

    built, journal = flow_keeping(tmp_path / "restarted", retain=4)
    try:
        ended(built)
        journal.flush()
    finally:
        journal.close()
    again, journal = flow_keeping(tmp_path / "restarted", retain=4)
    try:
        assert kept(again) == {"A1", "B1", "B2", "B3"}
        quote = Quote("LP_A", "EUR/USD", (Level(90_000, 100),), (Level(110_000, 100),), time.time())
        again.routing.on_lp_event(quote)
        send(again, "CLIENT3", "C0", b"1", b"3")
        assert kept(again) == expected
    finally:
        journal.close()
