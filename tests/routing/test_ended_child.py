"""What is kept of a child its LP ended: the fills counted, and nothing the
cyclic collector has to walk."""

from __future__ import annotations

import gc

from lp_adapters.recent import joined_ids
from router.model import ChildOrder, EndedChild, Side

ORDER = ChildOrder(
    child_id="C1",
    parent_id="O1",
    lp="LP_A",
    symbol="EUR/USD",
    side=Side.BUY,
    qty=4,
    price=110_000,
)


def test_the_fills_counted_are_known_by_exec_id() -> None:
    ended = EndedChild(ORDER, 4, joined_ids({"E1", "E2"}))
    assert ended.counted("E1")
    assert ended.counted("E2")
    assert not ended.counted("E3")
    assert not ended.counted("E")
    later = ended.with_fill("E3", 1)
    assert later.counted("E3")
    assert later.filled == 5
    assert not ended.counted("E3")  # the one kept before is as it was


def test_none_counted() -> None:
    ended = EndedChild(ORDER, 0, joined_ids(None))
    assert not ended.counted("")
    assert not ended.counted("E1")
    assert ended.with_fill("E1", 2).counted("E1")


def test_it_is_not_tracked_by_the_cyclic_collector() -> None:
    assert not gc.is_tracked(EndedChild(ORDER, 4, joined_ids({"E1"})))
