"""The grid the order journal's ticks and lots are counted on: recorded at
the head of each checkpoint, checked against the config at start
(Recovery.regrid; docs/guarantees.md)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from config import Config, ConfigError, default_config_path, load_config
from config.schema import MarginSettings
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import (
    Entry,
    Grid,
    Holdings,
    InFlight,
    OrderState,
    Positions,
    Run,
    Traded,
)
from gateway.orderflow.recovery import HOUSE
from gateway.orderflow.restore import grid_of
from matcher.orders import Order, OrdStatus
from router.model import ChildOrder, OrdType, Side, TimeInForce

DEFAULT = load_config(str(default_config_path()))
WRITTEN_ON = grid_of({i.symbol: i.to_instrument() for i in DEFAULT.instruments})


def eur_usd_on(tick_size: str, lot_size: str) -> Config:
    """The default config with EUR/USD's tick size and lot size changed."""
    instruments = [
        msgspec.structs.replace(
            i,
            tick_size=Decimal(tick_size),
            lot_size=Decimal(lot_size),
            min_qty=Decimal(lot_size),
        )
        if i.symbol == "EUR/USD"
        else i
        for i in DEFAULT.instruments
    ]
    return msgspec.structs.replace(DEFAULT, instruments=instruments)


def an_order(order_id: str, symbol: str, status: OrdStatus = OrdStatus.NEW) -> Order:
    return Order(
        order_id=order_id,
        client="CLIENT1",
        cl_ord_id=f"C-{order_id}",
        orig_cl_ord_id=None,
        symbol=symbol,
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        qty=5,
        price=100_000,
        seq=int(order_id.split("O")[1]),
        status=status,
        leaves_qty=0 if status is OrdStatus.CANCELED else 5,
    )


def a_child(child_id: str, parent_id: str) -> ChildOrder:
    return ChildOrder(child_id, parent_id, "LP_A", "EUR/USD", Side.BUY, 5, 108_502)


def journal_with(path: Path, *entries: Entry) -> int:
    """A journal of ``entries`` after a Run; how many entries it holds."""
    journal = OrderJournal(path)
    list(journal.replay())
    journal.add(Run(4))
    for entry in entries:
        journal.add(entry)
    journal.close()
    return len(entries) + 1


def read(path: Path) -> list[Entry]:
    journal = OrderJournal(path)
    try:
        return list(journal.replay())
    finally:
        journal.close()


def flow(path: Path, config: Config) -> tuple[OrderFlow, OrderJournal]:
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    journal = OrderJournal(path)
    try:
        built = build_order_flow(config, sessions, journal, Outbox(journal.flush), time.time)
    except BaseException:
        journal.close()
        raise
    return built, journal


def test_every_checkpoint_starts_with_the_grid_it_is_counted_on(tmp_path: Path) -> None:
    built, journal = flow(tmp_path, DEFAULT)  # the first start: a new journal
    journal.close()
    run, grid, *_ = read(tmp_path)
    assert run == Run(1)
    assert grid == WRITTEN_ON
    assert grid.sizes["EUR/USD"] == ("0.00001", "1000")
    assert grid.sizes["USD/JPY"] == ("0.001", "1000")
    assert built.grid == WRITTEN_ON


def test_a_changed_grid_of_an_instrument_the_journal_holds_nothing_open_in_is_taken(
    tmp_path: Path,
) -> None:
    sizes = dict(WRITTEN_ON.sizes)
    sizes["DOGE/USD"] = ("0.0001", "100")  # configured no more
    journal_with(
        tmp_path,
        Grid(sizes),
        Positions({}, {}, {"EUR/USD": 108_500, "GBP/USD": 127_000}),
        OrderState(an_order("4O1", "EUR/USD", OrdStatus.CANCELED)),
        OrderState(an_order("4O2", "GBP/USD")),
        # a client's round trip, crossed inside: flat, 5.00 USD made
        Traded("CLIENT1", "EUR/USD", Side.BUY, 5, 108_500, True),
        Traded("CLIENT1", "EUR/USD", Side.SELL, 5, 108_600, True),
        InFlight(a_child("4C1", "4O0"), 5, [], abandoned=True),
    )
    built, journal = flow(tmp_path, eur_usd_on("0.0001", "1000"))
    try:
        # the final order, shown in ticks and lots, is forgotten; the rest stays
        assert built.matcher.status("CLIENT1", "C-4O1") is None
        assert [o.order_id for o in built.matcher.open_orders()] == ["4O2"]
        assert "4C1" not in built.routing.abandoned
        # the P&L is the fill's, counted on the grid it was made on
        ((lots, _, realized),) = built.reports.accounts.holdings()["CLIENT1"].values()
        assert lots == 0
        assert realized == pytest.approx(5.0)
        _, clients, last_price = built.ledger.positions()
        assert clients == {}
        assert last_price == {"GBP/USD": 127_000}  # EUR/USD's, in old ticks, forgotten
    finally:
        journal.close()
    # the start's checkpoint records the new grid, and keeps the one of the
    # symbol not configured
    _, grid, *rest = read(tmp_path)
    assert isinstance(grid, Grid)
    assert grid.sizes["EUR/USD"] == ("0.0001", "1000")
    assert grid.sizes["DOGE/USD"] == ("0.0001", "100")
    assert grid.sizes["GBP/USD"] == WRITTEN_ON.sizes["GBP/USD"]
    assert [e.order.order_id for e in rest if isinstance(e, OrderState)] == ["4O2"]
    # and the next start on it changes nothing
    again, journal = flow(tmp_path, eur_usd_on("0.0001", "1000"))
    journal.close()
    assert [o.order_id for o in again.matcher.open_orders()] == ["4O2"]


HELD: dict[str, tuple[list[Entry], str]] = {
    "an open order": ([OrderState(an_order("4O1", "EUR/USD"))], "1 open order"),
    "a child in flight": ([InFlight(a_child("4C1", "4O9"), 5, [])], "1 child order in flight"),
    "an LP's position": ([Positions({"LP_A": {"EUR/USD": 7}}, {}, {})], "positions"),
    "the house's position": ([Positions({}, {HOUSE: {"EUR/USD": -2}}, {})], "positions"),
    "a client's holding": ([Holdings({"CLIENT2": {"EUR/USD": (3, 1.085, 0.0)}})], "positions"),
}


@pytest.mark.parametrize("held", list(HELD))
def test_a_changed_grid_of_an_instrument_the_journal_holds_state_in_refuses_the_start(
    tmp_path: Path, held: str
) -> None:
    entries, said = HELD[held]
    written = journal_with(tmp_path, WRITTEN_ON, *entries)
    with pytest.raises(ConfigError) as refused:
        flow(tmp_path, eur_usd_on("0.0001", "100"))
    assert refused.value.errors == [
        "instruments: EUR/USD is configured with tick_size 0.0001 and lot_size 100, but the "
        f"order journal holds {said} in it counted in ticks of 0.00001 and lots of 1000; "
        "put the old sizes back, or close the orders and positions in it first, or trade "
        "the new definition under a new symbol"
    ]
    assert len(read(tmp_path)) == written  # nothing was written
    # the same grid: it starts
    _, journal = flow(tmp_path, DEFAULT)
    journal.close()


def test_a_journal_that_does_not_say_its_grid_is_read_as_before(tmp_path: Path) -> None:
    # written by an earlier version: no Grid, and so not checked
    journal_with(
        tmp_path,
        Positions({"LP_A": {"EUR/USD": -5}}, {"CLIENT1": {"EUR/USD": 5}}, {"EUR/USD": 108_500}),
        OrderState(an_order("4O1", "EUR/USD")),
    )
    built, journal = flow(tmp_path, DEFAULT)
    try:
        assert [o.order_id for o in built.matcher.open_orders()] == ["4O1"]
        assert built.ledger.positions()[1] == {"CLIENT1": {"EUR/USD": 5}}
    finally:
        journal.close()
    _, grid, *_ = read(tmp_path)
    assert grid == WRITTEN_ON  # recorded from now on


def test_a_start_without_an_instrument_margin_accounts_hold_positions_in_is_refused(
    tmp_path: Path,
) -> None:
    # left out, the position would be neither margined nor closed by a
    # stop-out; P&L realized in it alone (a position closed) is no reason
    path = tmp_path / "orders"
    journal_with(
        path,
        Holdings(
            {
                "CLIENT1": {"DOGE/USD": (5, 0.1, 0.0), "EUR/USD": (1, 1.085, 0.0)},
                "CLIENT2": {"DOGE/USD": (0, 0.0, 12.5)},
            }
        ),
    )
    with pytest.raises(ConfigError) as refused:
        flow(path, DEFAULT)
    assert refused.value.errors == [
        "instruments: DOGE/USD is not configured, but margin accounts hold positions in it"
        " (CLIENT1 +5 lots); configure it until they are closed"
    ]
    journal_with(tmp_path / "closed", Holdings({"CLIENT2": {"DOGE/USD": (0, 0.0, 12.5)}}))
    _, journal = flow(tmp_path / "closed", DEFAULT)
    journal.close()
    # nor a client without a margin account, nor any without margin at all
    unmargined = {"CLIENT1": {"DOGE/USD": (5, 0.1, 0.0)}}
    for n, config in enumerate(
        (
            msgspec.structs.replace(DEFAULT, accounts={}),
            msgspec.structs.replace(DEFAULT, margin=MarginSettings()),
        )
    ):
        journal_with(tmp_path / f"unmargined{n}", Holdings(unmargined))
        _, journal = flow(tmp_path / f"unmargined{n}", config)
        journal.close()
