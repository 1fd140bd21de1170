"""Pre-trade risk checks and the texts of their breaches."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_helpers import EURUSD

from risk.limits import ClientLimits, RiskBreach, check
from router.model import Side
from router.policy import RouteRequest


@dataclass(frozen=True)
class Order:
    symbol: str
    side: Side
    qty: int


def buy(qty: int, symbol: str = "EUR/USD") -> Order:
    return Order(symbol, Side.BUY, qty)


def sell(qty: int, symbol: str = "EUR/USD") -> Order:
    return Order(symbol, Side.SELL, qty)


def test_no_limits_pass_everything() -> None:
    assert check(buy(10**12), 10**12, ClientLimits()) is None


def test_symbols_outside_the_allowed_set_are_refused() -> None:
    limits = ClientLimits(allowed_symbols=frozenset({"EUR/USD"}))
    assert check(buy(1), 0, limits) is None
    assert check(buy(1, "XAU/USD"), 0, limits) == RiskBreach(
        "allowed_symbols", "symbol not allowed: XAU/USD (limit allowed_symbols)"
    )


def test_order_quantity_global_and_per_symbol() -> None:
    limits = ClientLimits(
        max_order_qty=2_000_000, max_order_qty_by_symbol={"XAU/USD": 500, "USD/JPY": 3_000_000}
    )
    assert check(buy(2_000_000), 0, limits) is None
    breach = check(buy(5_000_000), 0, limits)
    assert breach is not None
    assert breach.limit == "max_order_qty"
    assert breach.text == "max order quantity exceeded: 5000000 > 2000000 (limit max_order_qty)"
    breach = check(sell(501, "XAU/USD"), 0, limits)
    assert breach is not None
    assert breach.text == (
        "max order quantity exceeded: 501 > 500 (limit max_order_qty_by_symbol[XAU/USD])"
    )
    # the per-symbol entry replaces the global one, even when larger
    assert check(buy(2_500_000, "USD/JPY"), 0, limits) is None


def test_order_notional() -> None:
    limits = ClientLimits(max_notional_usd=Decimal(1_000_000))
    # 1000 EUR a lot at 1.10000: 1100 USD a lot
    assert check(buy(909), 0, limits, Decimal(1100)) is None
    breach = check(buy(910), 0, limits, Decimal(1100))
    assert breach == RiskBreach(
        "max_notional_usd",
        "max order notional exceeded: 1001000 USD > 1000000 USD (limit max_notional_usd)",
    )
    breach = check(buy(1), 0, limits)
    assert breach is not None
    assert breach.text == (
        "order notional unknown: no USD price for EUR/USD (limit max_notional_usd)"
    )


def test_open_position_applies_to_the_position_after_the_order() -> None:
    limits = ClientLimits(max_open_position_lots=1000)
    assert check(buy(400), 600, limits) is None
    breach = check(buy(401), 600, limits)
    assert breach is not None
    assert breach.limit == "max_open_position_lots"
    assert breach.text == (
        "max open position exceeded: EUR/USD position would be 1001, "
        "|1001| > 1000 (limit max_open_position_lots)"
    )
    breach = check(sell(1500), 400, limits)
    assert breach is not None
    assert "position would be -1100" in breach.text


def test_an_order_towards_flat_passes_even_over_the_position_limit() -> None:
    limits = ClientLimits(max_open_position_lots_by_symbol={"EUR/USD": 100})
    assert check(sell(50), 300, limits) is None
    assert check(sell(400), 300, limits) is None  # 300 -> -100: flat, then the limit
    breach = check(buy(1), 300, limits)
    assert breach is not None
    assert breach.limit == "max_open_position_lots_by_symbol[EUR/USD]"
    assert breach.text.endswith("(limit max_open_position_lots_by_symbol[EUR/USD])")


def test_open_orders_on_the_orders_side_count_as_filled() -> None:
    limits = ClientLimits(max_open_position_lots=5)
    # a long of 1 and open buys of 2: a buy of 2 leaves 5 in the worst case
    assert check(buy(2), 1, limits, open_lots=2) is None
    breach = check(buy(3), 1, limits, open_lots=2)
    assert breach == RiskBreach(
        "max_open_position_lots",
        "max open position exceeded: EUR/USD position would be 6 with the open buys (2) "
        "filled too, |6| > 5 (limit max_open_position_lots)",
    )
    # the same on the short side, with the open sells
    assert check(sell(2), -1, limits, open_lots=2) is None
    breach = check(sell(3), -1, limits, open_lots=2)
    assert breach is not None
    assert breach.text == (
        "max open position exceeded: EUR/USD position would be -6 with the open sells (2) "
        "filled too, |-6| > 5 (limit max_open_position_lots)"
    )


def test_open_orders_are_shown_in_units_when_the_limit_is_in_units() -> None:
    limits = ClientLimits(
        max_open_position_lots_by_symbol={"EUR/USD": 5},
        units_per_lot={"EUR/USD": Decimal(1000)},
    )
    breach = check(buy(2), 0, limits, open_lots=4)
    assert breach == RiskBreach(
        "max_open_position",
        "max open position exceeded: EUR/USD position would be 6000 with the open buys (4000) "
        "filled too, |6000| > 5000 (limit max_open_position)",
    )


def test_a_sell_is_judged_beside_the_open_sells_only() -> None:
    limits = ClientLimits(max_open_position_lots=5)
    # long 4, open buys of 1 taking the long side to the limit: a sell is
    # given the open sells (none), and only brings the position back
    assert check(sell(3), 4, limits, open_lots=0) is None
    assert check(sell(9), 4, limits, open_lots=0) is None  # 4 -> -5
    assert check(sell(10), 4, limits, open_lots=0) is not None  # 4 -> -6


def test_an_order_towards_flat_in_the_worst_case_passes_over_the_limit() -> None:
    limits = ClientLimits(max_open_position_lots=5)
    # short 10 (the limit was lowered since) with open buys of 4: the worst
    # case on the long side is -6, and a buy of 3 brings it to -3
    assert check(buy(3), -10, limits, open_lots=4) is None
    # a buy of 12 would leave +6: past the limit, and further from flat than -6
    assert check(buy(13), -10, limits, open_lots=4) is not None
    # with no open buys the same buy of 12 leaves +2
    assert check(buy(12), -10, limits) is None


def test_the_lots_past_flat_are_held_to_the_limit_on_the_other_side() -> None:
    """A client over the limit (lowered since) comes back to flat, and no
    further than the limit on the other side: the lots past flat open a
    position there, held to the limit as any new one."""
    limits = ClientLimits(max_open_position_lots=100)
    assert check(sell(400), 300, limits) is None  # 300 -> -100
    breach = check(sell(500), 300, limits)  # 300 -> -200
    assert breach == RiskBreach(
        "max_open_position_lots",
        "max open position exceeded: EUR/USD position would be -200, "
        "|-200| > 100 (limit max_open_position_lots)",
    )
    # a short of 300 with open buys of 250: at worst -50, a buy of 150 leaves +100
    assert check(buy(150), -300, limits, open_lots=250) is None
    breach = check(buy(151), -300, limits, open_lots=250)
    assert breach is not None
    assert "position would be 101 with the open buys (250) filled too" in breach.text


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    position=st.integers(-20, 20),
    open_lots=st.integers(0, 20),
    qty=st.integers(1, 20),
    limit=st.integers(1, 20),
    side=st.sampled_from(Side),
)
def test_open_lots_weigh_as_a_position_on_the_orders_side(
    position: int, open_lots: int, qty: int, limit: int, side: Side
) -> None:
    """An order beside open lots on its side is judged as it would be with
    those lots already filled; and one that passes leaves the worst case
    within the limit, or between flat and where it was."""
    limits = ClientLimits(max_open_position_lots=limit)
    order = Order("EUR/USD", side, qty)
    worst = position + open_lots if side is Side.BUY else position - open_lots
    breach = check(order, position, limits, open_lots=open_lots)
    assert (breach is None) == (check(order, worst, limits) is None)
    after = worst + qty if side is Side.BUY else worst - qty
    if breach is None:
        assert abs(after) <= limit or min(worst, 0) <= after <= max(worst, 0)
    else:
        assert f"position would be {after}" in breach.text


def test_checks_run_in_a_fixed_order() -> None:
    limits = ClientLimits(
        allowed_symbols=frozenset({"EUR/USD"}),
        max_order_qty=10,
        max_notional_usd=Decimal(1),
        max_open_position_lots=1,
    )
    order = buy(100)
    found = check(order, 0, limits, Decimal(1))
    assert found is not None
    assert found.limit == "max_order_qty"
    limits = ClientLimits(max_notional_usd=Decimal(1), max_open_position_lots=1)
    found = check(order, 0, limits, Decimal(1))
    assert found is not None
    assert found.limit == "max_notional_usd"


def test_a_route_request_can_be_checked() -> None:
    req = RouteRequest("P1", "C1", "EUR/USD", Side.BUY, 5, 110_000, EURUSD)
    found = check(req, 0, ClientLimits(max_order_qty=4))
    assert found is not None
    assert found.limit == "max_order_qty"
    assert check(req, 0, ClientLimits(max_order_qty=5)) is None  # at the limit: allowed


def test_limits_keep_their_own_read_only_copies() -> None:
    per_symbol = {"EUR/USD": 10}
    limits = ClientLimits(max_order_qty_by_symbol=per_symbol)
    per_symbol["EUR/USD"] = 1000
    found = check(buy(11), 0, limits)
    assert found is not None
    assert found.limit == "max_order_qty_by_symbol[EUR/USD]"  # 10 still, not 1000
    assert check(buy(10), 0, limits) is None
    with pytest.raises(TypeError):
        limits.max_order_qty_by_symbol["EUR/USD"] = 1  # type: ignore[index]
