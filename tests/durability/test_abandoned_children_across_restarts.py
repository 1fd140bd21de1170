"""A child order given up on (its LP's link dropped, or its LP did not
answer) is handed back to its LP's adapter at a restart, to be asked about,
until its LP says what became of it or its trading day is over; then it is
asked about no more, still watched for a late fill."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from config import default_config_path, load_config
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow, next_day_end
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Abandoned, DayEnds, Run, Sent
from router.model import ChildOrder, Side

GIVEN_UP = ChildOrder("4O1.4C1", "4O1", "LP_A", "EUR/USD", Side.BUY, 4, 110_002)


def journal_with_a_child_given_up(path: Path, day_ends_at: float) -> None:
    """A run whose child of LP_A was given up on (a drop of the link), in a
    day that ends at ``day_ends_at``."""
    journal = OrderJournal(path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(DayEnds(day_ends_at))
    journal.add(Sent(GIVEN_UP))
    journal.add(Abandoned(GIVEN_UP.child_id))
    journal.close()


def flow_at(
    path: Path, clock: Callable[[], float], disabled: tuple[str, ...] = ()
) -> tuple[OrderFlow, OrderJournal, list[dict[str, Any]]]:
    """The order flow on the journal in ``path`` (the day ending at 21:00),
    with the LPs ``disabled`` left out, and what it logged reading it."""
    config = load_config(str(default_config_path()))
    lps = tuple(
        msgspec.structs.replace(lp, enabled=False) if lp.name in disabled else lp
        for lp in config.lps
    )
    orders = msgspec.structs.replace(config.orders, trading_day_end="21:00")
    config = msgspec.structs.replace(config, orders=orders, lps=lps)
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    journal = OrderJournal(path)
    try:
        with capture_logs() as logs:
            built = build_order_flow(config, sessions, journal, Outbox(journal.flush), clock)
    except BaseException:
        journal.close()
        raise
    return built, journal, logs


def handed_back(logs: list[dict[str, Any]]) -> int:
    """How many children the flow hands back to their LPs' adapters, to
    ask about."""
    (recovered,) = [e for e in logs if e["event"] == "orders_recovered"]
    return int(recovered["children_to_check"])


async def until(condition: Callable[[], object], what: str) -> None:
    end = time.monotonic() + 10
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"not within 10 s: {what}")
        await asyncio.sleep(0.01)  # polling, with the deadline above


def settled(logs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["child_id"], e["reason"], e["log_level"])
        for e in logs
        if e["event"] == "abandoned_child_settled"
    ]


@pytest.mark.asyncio
async def test_a_child_given_up_on_is_asked_about_until_its_lp_answers(tmp_path: Path) -> None:
    now = time.time()
    journal_with_a_child_given_up(tmp_path, next_day_end(now, "21:00"))
    # the first start asks LP_A about it; the answer settles it
    built, journal, read = flow_at(tmp_path, time.time)
    try:
        with capture_logs() as logs:
            await built.start()
            assert handed_back(read) == 1
            await until(lambda: settled(logs), "LP_A's answer settled the child")
        assert settled(logs) == [
            (
                GIVEN_UP.child_id,
                "ended by its LP: not known to the LP after a gateway restart",
                "info",
            )
        ]
    finally:
        await built.stop()
        journal.close()
    # the next starts (the first reads the answer's end, the second a
    # checkpoint) ask about it no more, and still watch it for a late fill
    for _ in range(2):
        built, journal, read = flow_at(tmp_path, time.time)
        try:
            assert handed_back(read) == 0
            assert GIVEN_UP.child_id in built.routing.abandoned
        finally:
            journal.close()


@pytest.mark.asyncio
async def test_a_child_given_up_on_is_asked_about_no_more_once_its_day_is_over(
    tmp_path: Path,
) -> None:
    now = time.time()
    day_end = next_day_end(now, "21:00")
    journal_with_a_child_given_up(tmp_path, day_end)
    # LP_A is left out for a start: no one answers about the child
    built, journal, read = flow_at(tmp_path, time.time, disabled=("LP_A",))
    try:
        with capture_logs() as logs:
            await built.start()
            assert handed_back(read) == 1
            built.end_trading_day(day_end)
        # settled by the day's end alone
        assert settled(logs) == [(GIVEN_UP.child_id, "its trading day is over", "warning")]
    finally:
        await built.stop()
        journal.close()
    built, journal, read = flow_at(tmp_path, time.time)
    try:
        assert handed_back(read) == 0
        assert GIVEN_UP.child_id in built.routing.abandoned
    finally:
        journal.close()


def test_a_child_given_up_on_in_a_day_that_ended_while_down_is_not_asked_about(
    tmp_path: Path,
) -> None:
    now = time.time()
    journal_with_a_child_given_up(tmp_path, now - 60)
    built, journal, read = flow_at(tmp_path, lambda: now)
    try:
        assert handed_back(read) == 0
        assert GIVEN_UP.child_id in built.routing.abandoned
        assert settled(read) == [(GIVEN_UP.child_id, "its trading day is over", "warning")]
    finally:
        journal.close()
