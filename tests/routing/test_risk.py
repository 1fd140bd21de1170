"""Pre-trade risk checks and the texts of their breaches."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
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
    assert check(sell(500), 300, limits) is None  # 300 -> -200: |-200| < |300|
    breach = check(buy(1), 300, limits)
    assert breach is not None
    assert breach.limit == "max_open_position_lots_by_symbol[EUR/USD]"
    assert breach.text.endswith("(limit max_open_position_lots_by_symbol[EUR/USD])")


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
