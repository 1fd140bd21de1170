"""An execution is a value: equal to another with the same fields, hashed
by them, changed only by making a new one; and the enum members the
compiled order path reads as constants are the members themselves."""

from __future__ import annotations

from matcher import members as matcher_members
from matcher.engine import CancelOrder, NewOrder, RouteNeed
from matcher.execution import Execution
from matcher.orders import ExecType, OrdStatus
from router import members as router_members
from router.model import OrdType, Side, TimeInForce


def a_fill(**changes: object) -> Execution:
    fields: dict[str, object] = {
        "exec_id": "E1",
        "exec_type": ExecType.TRADE,
        "order_id": "1O1",
        "client": "CLIENT1",
        "cl_ord_id": "C1",
        "orig_cl_ord_id": None,
        "symbol": "EUR/USD",
        "side": Side.BUY,
        "ord_type": OrdType.LIMIT,
        "tif": TimeInForce.DAY,
        "qty": 10,
        "price": 108_500,
        "status": OrdStatus.PARTIALLY_FILLED,
        "cum_qty": 4,
        "leaves_qty": 6,
        "notional": 4 * 108_490,
        "last_qty": 4,
        "last_px": 108_490,
        "counterparty": "LP_A",
    }
    fields.update(changes)
    return Execution(**fields)  # type: ignore[arg-type]


def test_equal_and_hashed_by_every_field() -> None:
    assert a_fill() == a_fill()
    assert hash(a_fill()) == hash(a_fill())
    assert len({a_fill(), a_fill()}) == 1
    assert a_fill() != a_fill(last_px=108_491)
    assert a_fill() != a_fill(ord_rej_reason=None, text="x")
    assert a_fill() != "E1"


def test_with_text_changes_the_text_alone() -> None:
    fill = a_fill()
    told = fill.with_text("stop out")
    assert told.text == "stop out"
    assert fill.text == ""
    assert told.fields()[:-2] == fill.fields()[:-2]
    assert told.ord_rej_reason is fill.ord_rej_reason


def test_fields_and_repr_name_them_in_order() -> None:
    fill = a_fill()
    assert fill.fields()[0] == "E1"
    assert fill.fields()[-1] is None
    assert repr(fill).startswith("Execution(exec_id='E1', exec_type=<ExecType.TRADE")
    assert fill.avg_px == 108_490
    assert a_fill(cum_qty=0, notional=0).avg_px == 0


def test_router_constants_are_the_members() -> None:
    for enum in (Side, OrdType, TimeInForce):
        for member in enum:
            assert getattr(router_members, member.name) is member


def test_matcher_constants_are_the_members() -> None:
    for member in OrdStatus:
        assert getattr(matcher_members, f"STATUS_{member.name}") is member
    for member in ExecType:
        assert getattr(matcher_members, f"EXEC_{member.name}") is member


def test_the_matchers_requests_are_values_shown_as_made() -> None:
    order = NewOrder("C1", "K1", "EUR/USD", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 2, 108_500)
    same = NewOrder("C1", "K1", "EUR/USD", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 2, 108_500)
    assert order == same
    assert hash(order) == hash(same)
    assert order != NewOrder("C1", "K1", "EUR/USD", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 3)
    assert order != CancelOrder("C1", "K1", "K0")  # another class: never equal
    assert repr(CancelOrder("C1", "K2", "K1")) == "CancelOrder('C1', 'K2', 'K1')"
    need = RouteNeed("1O1", "C1", "EUR/USD", Side.SELL, 5, None, TimeInForce.IOC, "K1", "K1")
    assert need.with_qty(2) == RouteNeed(
        "1O1", "C1", "EUR/USD", Side.SELL, 2, None, TimeInForce.IOC, "K1", "K1"
    )
    assert need.qty == 5
