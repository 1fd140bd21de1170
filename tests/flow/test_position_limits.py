"""``max_open_position`` holds in the worst case: a new order is refused when
the client's position in the symbol, with the order and every other open
order of the client on the same side filled, would pass the limit.  The
open lots are kept as orders fill, are canceled, replaced, expire or are
refused; the property at the end drives the flow at random and checks that
no client's worst case ever passes its limit."""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import msgspec
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from test_lp_fault_properties import (
    BEST_ASK,
    BEST_BID,
    CLIENTS,
    LOT,
    SYMBOL,
    TICK,
    Harness,
    Placed,
    PlaceOrder,
    Step,
    _steps,
    new_harness,
)

from config import ClientRiskSettings, RiskSettings
from gateway.fix import codec
from gateway.orderflow.rules import client_limits
from router.model import OrdType, Side, TimeInForce

MARKET_IOC = 0  # indexes of the harness's order kinds
LIMIT_DAY = 4
LIMIT_GTC = 5
LIMIT = 5  # lots: the limit every test here but the property sets


def position_limit(harness: Harness, lots: int) -> None:
    """Every client under ``[risk.default] max_open_position`` of ``lots``
    (stated in units, as a config states it)."""
    flow = harness.flow
    risk = RiskSettings(default=ClientRiskSettings(max_open_position=lots * LOT))
    config = msgspec.structs.replace(flow.rules.config, risk=risk)
    limits = {client: client_limits(config, client, flow.instruments) for client in CLIENTS}
    flow.apply_rules(dataclasses.replace(flow.rules, config=config, client_limits=limits))


def last_message(harness: Harness, client: str = "CLIENT1") -> codec.FixMessage:
    session = harness.sessions[client]
    ((_, raw),) = session.store.get_sent(session.store.next_sender_seq - 1, 2**31 - 1)
    return codec.parse_frame(raw)


def resting_price(side: Side) -> int:
    """One tick short of the LPs' best price on the other side: not marketable."""
    return BEST_ASK - 1 if side is Side.BUY else BEST_BID + 1


async def rest(harness: Harness, side: Side, lots: int, client: int = 0) -> codec.FixMessage:
    """A DAY limit order one tick short of the LPs' best price (it rests);
    the last message its client is sent back."""
    await harness.run(PlaceOrder(client=client, side=side, lots=lots, kind=LIMIT_DAY, offset=-1))
    return last_message(harness, CLIENTS[client])


async def filled_at_lps(harness: Harness, side: Side, lots: int) -> None:
    """CLIENT1 trades ``lots`` at the LPs (a market order, filled in full)."""
    await harness.run(PlaceOrder(client=0, side=side, lots=lots, kind=MARKET_IOC, offset=0))
    harness.settle_all_but(None, by_fill=True)


def cl_ord_id_of(harness: Harness, index: int) -> str:
    return harness.placed[index].cl_ord_id


def cancel(harness: Harness, cl_ord_id: str, orig: str, side: Side) -> None:
    body = [
        (11, cl_ord_id.encode()),
        (41, orig.encode()),
        (54, side.value.encode()),
        (55, SYMBOL.encode()),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message("CLIENT1", b"F", body)


def replace(
    harness: Harness,
    cl_ord_id: str,
    orig: str,
    side: Side,
    lots: int,
    client: str = "CLIENT1",
) -> None:
    """An OrderCancelReplaceRequest to ``lots``, at the resting price."""
    body = [
        (11, cl_ord_id.encode()),
        (38, str(lots * LOT).encode()),
        (40, b"2"),
        (41, orig.encode()),
        (44, str(resting_price(side) * TICK).encode()),
        (54, side.value.encode()),
        (55, SYMBOL.encode()),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message(client, b"G", body)


def open_lots(harness: Harness, side: Side, client: str = "CLIENT1") -> int:
    return harness.flow.accounts.open_lots(client, SYMBOL, side)


def breach(after: int, open_units: int, side: str = "buys") -> bytes:
    return (
        f"max open position exceeded: EUR/USD position would be {after} with the open "
        f"{side} ({open_units}) filled too, |{after}| > {LIMIT * LOT} "
        "(limit max_open_position)"
    ).encode()


def refused(msg: codec.FixMessage) -> bool:
    """An ExecutionReport Rejected for a limit (OrdRejReason 3)."""
    fields = (msg.msg_type, msg.get(150), msg.get(39), msg.get(103))
    return fields == (b"8", b"8", b"8", b"3")


@pytest.mark.asyncio
async def test_resting_orders_that_each_fit_cannot_together_pass_the_limit(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    assert (await rest(harness, Side.BUY, 2)).get(150) == b"0"
    assert (await rest(harness, Side.BUY, 2)).get(150) == b"0"
    third = await rest(harness, Side.BUY, 2)
    assert refused(third)
    assert third.get(58) == breach(6000, 4000)
    assert len(harness.flow.matcher.open_of("CLIENT1")) == 2
    # a refused order holds nothing: one lot more still fits, then nothing
    assert (await rest(harness, Side.BUY, 1)).get(150) == b"0"
    assert refused(await rest(harness, Side.BUY, 1))
    assert open_lots(harness, Side.BUY) == 5
    # another client's orders are its own
    assert (await rest(harness, Side.BUY, 5, client=1)).get(150) == b"0"


@pytest.mark.asyncio
async def test_a_sell_reducing_a_long_is_not_held_back_by_open_buys(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await filled_at_lps(harness, Side.BUY, 4)
    assert harness.flow.ledger.client_position("CLIENT1", SYMBOL) == 4
    assert (await rest(harness, Side.BUY, 1)).get(150) == b"0"  # 5 if it fills
    buy = await rest(harness, Side.BUY, 1)
    assert refused(buy)
    assert buy.get(58) == breach(6000, 1000)
    # the sells count on their own side: 4 - 3 - 6 = -5 at worst
    assert (await rest(harness, Side.SELL, 3)).get(150) == b"0"
    assert (await rest(harness, Side.SELL, 6)).get(150) == b"0"
    sell = await rest(harness, Side.SELL, 1)
    assert refused(sell)
    assert sell.get(58) == breach(-6000, 9000, "sells")


@pytest.mark.asyncio
async def test_a_long_over_a_lowered_limit_may_sell_to_the_limit_short_and_no_further(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await filled_at_lps(harness, Side.BUY, 5)
    assert harness.flow.ledger.client_position("CLIENT1", SYMBOL) == 5
    position_limit(harness, 2)  # a reload lowers the limit below the long
    # a sell of 8 comes back to flat, then opens a short of 3: past the limit
    sell = await rest(harness, Side.SELL, 8)
    assert refused(sell)
    assert b"position would be -3000, |-3000| > 2000" in (sell.get(58) or b"")
    assert open_lots(harness, Side.SELL) == 0
    # one of 7 leaves a short of 2: within it
    assert (await rest(harness, Side.SELL, 7)).get(150) == b"0"
    assert open_lots(harness, Side.SELL) == 7


@pytest.mark.asyncio
async def test_a_partial_fill_then_a_cancel_frees_the_rest(flow_harness: Harness) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    # a DAY buy of 4 at the best ask: routed; 1 lot fills, the LPs end the rest
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=4, kind=LIMIT_DAY, offset=0))
    (kid,) = harness.live()
    harness.answer(kid, "partial", 0)
    harness.settle_all_but(None, by_fill=False)
    (order,) = harness.flow.matcher.open_of("CLIENT1")
    assert (order.cum_qty, order.leaves_qty, order.routing_qty) == (1, 3, 0)
    assert open_lots(harness, Side.BUY) == 3
    more = await rest(harness, Side.BUY, 2)
    assert refused(more)
    assert more.get(58) == breach(6000, 3000)
    cancel(harness, "X1", order.cl_ord_id, Side.BUY)
    assert last_message(harness).get(150) == b"4"
    assert open_lots(harness, Side.BUY) == 0
    # the filled lot stays: 1 + 4 fits, 1 + 5 does not
    assert (await rest(harness, Side.BUY, 2)).get(150) == b"0"
    assert (await rest(harness, Side.BUY, 2)).get(150) == b"0"
    assert refused(await rest(harness, Side.BUY, 1))


@pytest.mark.asyncio
async def test_a_cancel_waiting_for_the_lps_frees_the_lots_once_they_come_back(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=4, kind=LIMIT_DAY, offset=0))
    (kid,) = harness.live()
    cancel(harness, "X1", cl_ord_id_of(harness, 0), Side.BUY)
    assert last_message(harness).get(150) == b"6"  # pending cancel: the lots may still fill
    assert refused(await rest(harness, Side.BUY, 2))
    harness.answer(kid, "partial", 1)  # 2 lots
    harness.settle_all_but(None, by_fill=False)
    assert last_message(harness).get(150) == b"4"
    assert open_lots(harness, Side.BUY) == 0
    assert (await rest(harness, Side.BUY, 3)).get(150) == b"0"  # 2 + 3
    assert refused(await rest(harness, Side.BUY, 1))


@pytest.mark.asyncio
async def test_a_replace_down_frees_and_one_up_is_held_beside_the_other_orders(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await rest(harness, Side.BUY, 3)
    await rest(harness, Side.BUY, 2)
    assert refused(await rest(harness, Side.BUY, 1))
    first, second = cl_ord_id_of(harness, 0), cl_ord_id_of(harness, 1)
    replace(harness, "R1", first, Side.BUY, 2)
    assert last_message(harness).get(150) == b"5"
    assert open_lots(harness, Side.BUY) == 4
    assert (await rest(harness, Side.BUY, 1)).get(150) == b"0"
    # up: 3 lots beside the 3 of the others
    replace(harness, "R2", second, Side.BUY, 3)
    answer = last_message(harness)
    assert answer.msg_type == b"9"
    assert answer.get(58) == breach(6000, 3000)
    assert open_lots(harness, Side.BUY) == 5
    replace(harness, "R3", second, Side.BUY, 1)
    assert last_message(harness).get(150) == b"5"
    replace(harness, "R4", "R3", Side.BUY, 2)  # back up, to the limit: fits
    assert last_message(harness).get(150) == b"5"
    assert open_lots(harness, Side.BUY) == 5


@pytest.mark.asyncio
async def test_a_replace_waiting_for_the_lps_counts_at_its_new_quantity(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    # a DAY buy of 2 at the best ask: out at an LP, so a replace waits
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=0))
    (kid,) = harness.live()
    replace(harness, "R1", cl_ord_id_of(harness, 0), Side.BUY, 4)
    assert last_message(harness).get(150) == b"E"
    assert open_lots(harness, Side.BUY) == 4
    more = await rest(harness, Side.BUY, 2)
    assert refused(more)
    assert more.get(58) == breach(6000, 4000)
    # the LP ends the child unfilled: the replace is applied, the order rests
    harness.end(kid, "cancel")
    assert last_message(harness).get(150) == b"5"
    (order,) = harness.flow.matcher.open_of("CLIENT1")
    assert (order.leaves_qty, order.routing_qty) == (4, 0)
    assert open_lots(harness, Side.BUY) == 4
    assert (await rest(harness, Side.BUY, 1)).get(150) == b"0"
    assert refused(await rest(harness, Side.BUY, 1))


@pytest.mark.asyncio
async def test_a_replace_waiting_for_the_lps_superseded_by_a_cancel_counts_no_more(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=LIMIT_DAY, offset=0))
    (kid,) = harness.live()
    replace(harness, "R1", cl_ord_id_of(harness, 0), Side.BUY, 5)
    assert open_lots(harness, Side.BUY) == 5
    cancel(harness, "X1", cl_ord_id_of(harness, 0), Side.BUY)
    superseded = last_message(harness)  # after the pending cancel's report
    assert (superseded.msg_type, superseded.get(11), superseded.get(39)) == (b"9", b"R1", b"6")
    assert open_lots(harness, Side.BUY) == 2  # what is out at the LP
    harness.end(kid, "cancel")
    assert open_lots(harness, Side.BUY) == 0


@pytest.mark.asyncio
async def test_a_replace_waiting_for_the_lps_filled_past_its_quantity_counts_the_leaves(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=4, kind=LIMIT_DAY, offset=0))
    (kid,) = harness.live()
    replace(harness, "R1", cl_ord_id_of(harness, 0), Side.BUY, 1)  # down: waits
    assert open_lots(harness, Side.BUY) == 4
    harness.answer(kid, "partial", 1)  # 2 lots: past the new quantity
    assert open_lots(harness, Side.BUY) == 2
    harness.end(kid, "cancel")  # the replace is refused, the order rests
    assert last_message(harness).msg_type == b"9"
    (order,) = harness.flow.matcher.open_of("CLIENT1")
    assert (order.cum_qty, order.leaves_qty, order.pending) == (2, 2, None)
    assert open_lots(harness, Side.BUY) == 2
    assert (await rest(harness, Side.BUY, 1)).get(150) == b"0"  # 2 + 2 + 1
    assert refused(await rest(harness, Side.BUY, 1))


@pytest.mark.asyncio
async def test_orders_that_expire_at_the_day_end_free_their_lots(flow_harness: Harness) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await rest(harness, Side.SELL, 5)
    assert refused(await rest(harness, Side.SELL, 1))
    harness.flow.end_trading_day(time.time())
    harness.sync()
    assert last_message(harness).get(150) == b"C"
    assert open_lots(harness, Side.SELL) == 0
    assert (await rest(harness, Side.SELL, 5)).get(150) == b"0"


@pytest.mark.asyncio
async def test_an_order_refused_as_a_duplicate_leaves_the_original_counted(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    position_limit(harness, LIMIT)
    await rest(harness, Side.BUY, 3)
    original = harness.placed[0]
    # the same ClOrdID again, for 1 lot: refused by the matcher
    again = Placed("CLIENT1", original.cl_ord_id, Side.BUY, 1, OrdType.LIMIT, TimeInForce.DAY)
    harness.placed.append(again)
    body = [
        (11, original.cl_ord_id.encode()),
        (38, str(LOT).encode()),
        (40, b"2"),
        (44, str(resting_price(Side.BUY) * TICK).encode()),
        (54, b"1"),
        (55, SYMBOL.encode()),
        (59, b"0"),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    harness._client_message("CLIENT1", b"D", body)
    duplicate = last_message(harness)
    assert (duplicate.get(150), duplicate.get(103)) == (b"8", b"6")
    assert open_lots(harness, Side.BUY) == 3
    assert refused(await rest(harness, Side.BUY, 3))


def held_open(harness: Harness, client: str, side: Side) -> int:
    """What the client's open orders on ``side`` may still fill, read from
    the matcher's orders (not from the lots kept as they change)."""
    orders = harness.flow.matcher.open_of(client)
    return sum(o.open_qty for o in orders if o.side is side and o.symbol == SYMBOL)


# --- the property -------------------------------------------------------------------


class Replace(NamedTuple):
    """A client asks to replace one of its orders (open or not) with ``lots``."""

    pick: int
    lots: int


# orders that rest more often than the harness's own (limit DAY and GTC,
# short of the LPs' price or at it), smaller than the limits drawn
_resting = st.builds(
    PlaceOrder,
    client=st.integers(0, len(CLIENTS) - 1),
    side=st.sampled_from(Side),
    lots=st.integers(1, 6),
    kind=st.sampled_from((MARKET_IOC, LIMIT_DAY, LIMIT_DAY, LIMIT_GTC)),
    offset=st.sampled_from((-1, -1, 0)),
)
_replaces = st.builds(Replace, st.integers(0, 15), st.integers(1, 8))
_limit_steps = st.one_of(_steps, _resting, _resting, _replaces, _replaces)


def replace_step(harness: Harness, step: Replace, seq: int) -> None:
    known = [p for p in harness.placed if p.order_id]
    if not known:
        return
    order = known[step.pick % len(known)]
    replace(harness, f"P{seq}", order.cl_ord_id, order.side, step.lots, order.client)


def check_worst_case(harness: Harness, limit: int) -> None:
    flow = harness.flow
    for client in CLIENTS:
        position = flow.ledger.client_position(client, SYMBOL)
        buys = held_open(harness, client, Side.BUY)
        sells = held_open(harness, client, Side.SELL)
        assert position + buys <= limit, (client, position, buys)
        assert position - sells >= -limit, (client, position, sells)


@pytest.mark.asyncio
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    limit=st.integers(2, 12),
    steps=st.lists(_limit_steps, min_size=10, max_size=40),
    drain_by_fill=st.booleans(),
)
async def test_no_client_is_ever_past_its_limit_in_the_worst_case(
    limit: int, steps: list[Step | Replace], drain_by_fill: bool
) -> None:
    """Orders, replaces and cancels of two clients under a position limit,
    LPs answering at random: after every step, each client's position with
    all its open buys filled, and with all its open sells filled, is within
    the limit, and the open lots kept are those of the matcher's orders."""
    harness = new_harness(note)
    flow = harness.flow
    await flow.start()
    try:
        harness.sync()
        position_limit(harness, limit)
        for seq, step in enumerate(steps):
            note(f"step: {step!r}")
            if isinstance(step, Replace):
                replace_step(harness, step, seq)
            else:
                await harness.run(step)
            harness.check_ledger()
            harness.check_open_lots()
            check_worst_case(harness, limit)
        harness.settle_all_but(None, drain_by_fill)
        harness.check_open_lots()
        check_worst_case(harness, limit)
    except BaseException:
        for lp in harness.lps.values():
            lp.silence()
        raise
    finally:
        await flow.stop()
