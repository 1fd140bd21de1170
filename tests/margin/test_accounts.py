"""Margin accounts: average cost and P&L, the pre-trade margin check, open
orders counted, reloads and checkpoints keeping what was traded."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk.accounts import Accounts, AccountTerms, Holding, Marks, Standing
from risk.margin import MarginGroup, MarginParams, SpreadDef, SpreadLeg, margin
from router.model import AssetClass, Instrument, Side


def instrument(symbol: str, lot: str, cls: AssetClass = AssetClass.COMMODITY) -> Instrument:
    return Instrument(symbol, cls, Decimal("0.01"), Decimal(lot), 1, 1000, "USD")


INSTRUMENTS = {
    "ZC": instrument("ZC", "1"),
    "ZS": instrument("ZS", "1"),
    "EUR/USD": instrument("EUR/USD", "1000", AssetClass.FX),
}
CME = MarginParams(
    "cme-1",
    (
        MarginGroup("corn", "commodity", ("ZC",), scan_usd=1750),
        MarginGroup("soy", "commodity", ("ZS",), scan_usd=2500),
        MarginGroup("eur", "fx", ("EUR/USD",), scan_pct=0.02),
    ),
    (SpreadDef("corn-soy", 1, 0.55, (SpreadLeg("corn", 2, "A"), SpreadLeg("soy", 1, "B"))),),
)
MARKS = Marks(
    {"ZC": 450.0, "ZS": 1200.0, "EUR/USD": 1.1}, {"ZC": 450.0, "ZS": 1200.0, "EUR/USD": 1.1}
)


def accounts(collateral: str = "3000", factor: str = "1") -> Accounts:
    terms = {"C1": AccountTerms(Decimal(collateral), initial_factor=Decimal(factor))}
    book = Accounts(CME, terms, INSTRUMENTS)
    book.mark(MARKS)
    return book


def test_average_cost_and_realized_pnl() -> None:
    h = Holding()
    h.trade(2, 1.10, 1000)
    h.trade(2, 1.20, 1000)
    assert math.isclose(h.avg, 1.15)
    h.trade(-3, 1.30, 1000)  # closes 3 at +0.15
    assert h.lots == 1
    assert math.isclose(h.avg, 1.15)
    assert math.isclose(h.realized, 3 * 1000 * 0.15)
    h.trade(-2, 1.00, 1000)  # closes 1 at -0.15, opens 1 short at 1.00
    assert h.lots == -1
    assert math.isclose(h.avg, 1.00)
    assert math.isclose(h.realized, 3 * 1000 * 0.15 - 1000 * 0.15)
    h.trade(1, 0.90, 1000)  # the short gains 0.10
    assert h.lots == 0
    assert math.isclose(h.realized, 450 - 150 + 100)


def test_the_cme_example_as_an_account() -> None:
    book = accounts("3000")
    book.trade("C1", "ZC", Side.BUY, 2, 45000)
    book.trade("C1", "ZS", Side.SELL, 1, 120000)
    view = book.view("C1")
    assert view is not None
    assert round(view.margin_usd, 2) == 2700
    assert round(view.siloed_margin_usd, 2) == 2700  # one asset class: the same
    assert view.equity_usd == 3000  # traded at the marks: no P&L yet
    assert round(view.free_margin_usd, 2) == 300
    assert view.param_version == "cme-1"
    assert math.isclose(view.margin_level or 0, 3000 / 2700)


def test_an_order_beyond_equity_is_refused_and_a_reducing_one_is_not() -> None:
    book = accounts("3000")
    book.trade("C1", "ZC", Side.BUY, 2, 45000)
    book.trade("C1", "ZS", Side.SELL, 1, 120000)
    # one more corn: the spread stays one, 1,750 more scan risk: 4,450 > 3,000
    breach = book.check("C1", "ZC", Side.BUY, 1)
    assert breach is not None
    assert breach.limit == "margin"
    assert "4450.00 USD initial margin required, 300.00 USD free" in breach.text
    # selling corn lowers the margin: never refused, even at a loss
    book.mark(Marks({"ZC": 300.0}, {"ZC": 300.0}))  # equity 3,000 - 300 = 2,700
    assert book.check("C1", "ZC", Side.SELL, 1) is None
    # a client with no account is not margined
    assert book.check("C2", "ZC", Side.BUY, 100) is None


def test_a_sale_that_only_reduces_a_long_is_never_refused_in_deficit() -> None:
    """An account in deficit (called, not stopped out) sells 1 of its 43
    lots of EUR/USD, alone in its group, in no spread: the margin can only
    fall.  The figure with the order (the state with nothing filled
    included) and the one without it are summed the same way, so they do
    not part in the last bit (15 lots and 28 more, kept as a running sum,
    came to 1 ulp above the fresh sum, and the sale was refused)."""
    eur = Instrument("EUR/USD", AssetClass.FX, Decimal("0.00001"), Decimal(1000), 1, 1000, "USD")
    params = MarginParams("p", (MarginGroup("EUR", "fx", ("EUR/USD",), scan_pct=0.0333),))
    book = Accounts(params, {"C1": AccountTerms(Decimal("1000"))}, {"EUR/USD": eur})
    book.mark(Marks({"EUR/USD": 1.1}, {"EUR/USD": 1.1}))
    book.view("C1")
    book.trade("C1", "EUR/USD", Side.BUY, 15, 110000)
    book.trade("C1", "EUR/USD", Side.BUY, 28, 110000)
    view = book.view("C1")
    assert view is not None
    assert view.initial_margin_usd > view.equity_usd
    assert book.check("C1", "EUR/USD", Side.SELL, 1) is None


def test_open_orders_hold_margin() -> None:
    book = accounts("5000")
    assert book.check("C1", "ZC", Side.BUY, 2) is None  # 3,500 <= 5,000
    book.order_open("O1", "C1", "ZC", Side.BUY, 2)
    # alone 3,500 would fit; with O1 it is 7,000
    breach = book.check("C1", "ZC", Side.BUY, 2)
    assert breach is not None
    assert "7000.00 USD initial margin required" in breach.text
    book.order_open("O1", "C1", "ZC", Side.BUY, 0)  # O1 done
    assert book.check("C1", "ZC", Side.BUY, 2) is None


def test_open_orders_in_other_symbols_hold_margin_too() -> None:
    book = accounts("5000")
    book.order_open("O1", "C1", "ZC", Side.BUY, 2)  # 3,500 of corn's scan
    # soy alone, 2,500, would fit; with corn's open buys it is 6,000
    breach = book.check("C1", "ZS", Side.BUY, 1)
    assert breach is not None
    assert "6000.00 USD initial margin required, 1500.00 USD free" in breach.text
    # a soy sale raises no worst case: with the corn bought it forms the
    # spread (3,500 + 2,500 less 0.55 x 6,000 = 2,700), with the corn left
    # unfilled it is 2,500; both below the 3,500 of the corn alone
    assert book.check("C1", "ZS", Side.SELL, 1) is None
    book.order_open("O1", "C1", "ZC", Side.BUY, 0)  # O1 done
    assert book.check("C1", "ZS", Side.BUY, 2) is None  # 5,000 <= 5,000


def test_orders_in_two_symbols_of_a_group_cannot_fill_past_equity_together() -> None:
    params = MarginParams(
        "mixed",
        (
            MarginGroup("G", "metal", ("P", "Q"), scan_pct=0.1),
            MarginGroup("H", "metal", ("R",), scan_usd=10),
        ),
        (SpreadDef("G-H", 1, 1.0, (SpreadLeg("G", 1, "A"), SpreadLeg("H", 1, "B"))),),
    )
    usd = {"P": 100.0, "Q": 10.0, "R": 5.0}
    book = Accounts(params, {"C1": AccountTerms(Decimal(15))}, {s: instrument(s, "1") for s in usd})
    book.mark(Marks(dict(usd), dict(usd)))
    book.trade("C1", "R", Side.SELL, 1, 500)  # margin 10, no P&L
    assert book.check("C1", "P", Side.BUY, 1) is None  # the spread formed: 10 + 10 - 20
    book.order_open("O1", "C1", "P", Side.BUY, 1)
    # with O1 filled too the group has no direction: 10 + 9, no spread
    breach = book.check("C1", "Q", Side.SELL, 1)
    assert breach is not None
    assert "19.00 USD initial margin required" in breach.text


def test_an_order_whose_partial_fill_takes_a_group_flat_is_refused() -> None:
    """H offsets X held long while H is short and Y held short once H is
    long: a buy of 20 H from short 10 asks 1,200 filled or not, but half
    filled H is flat, offsets neither, and X and Y ask 2,000 with no
    credit.  That is past the 1,500 of equity: the order is refused."""
    params = MarginParams(
        "hub",
        tuple(MarginGroup(s, "commodity", (s,), scan_usd=100) for s in ("X", "Y", "H")),
        (
            SpreadDef("X-H", 1, 0.9, (SpreadLeg("X", 1, "A"), SpreadLeg("H", 1, "B"))),
            SpreadDef("Y-H", 2, 0.9, (SpreadLeg("Y", 1, "A"), SpreadLeg("H", 1, "B"))),
        ),
    )
    usd = {"X": 450.0, "Y": 450.0, "H": 450.0}
    instruments = {s: instrument(s, "1") for s in usd}
    book = Accounts(params, {"C1": AccountTerms(Decimal(1500))}, instruments)
    book.mark(Marks(dict(usd), dict(usd)))
    book.trade("C1", "X", Side.BUY, 10, 45000)
    book.trade("C1", "Y", Side.SELL, 10, 45000)
    book.trade("C1", "H", Side.SELL, 10, 45000)  # 3,000 less 0.9 x 2,000 with X
    view = book.view("C1")
    assert view is not None
    assert round(view.margin_usd, 2) == 1200
    book.trade("C1", "H", Side.BUY, 10, 45000)  # H flat: X and Y with no credit
    flat = book.view("C1")
    assert flat is not None
    assert round(flat.margin_usd, 2) == 2000
    book.trade("C1", "H", Side.SELL, 10, 45000)  # back to short 10
    breach = book.check("C1", "H", Side.BUY, 20)
    assert breach is not None
    assert "2000.00 USD initial margin required, 300.00 USD free" in breach.text
    assert book.check("C1", "H", Side.BUY, 10) is not None  # flat at the end: 2,000
    assert book.check("C1", "H", Side.BUY, 2) is None  # 1,000 + 1,000 + 800 - 1,440


def test_a_reduction_past_the_combinations_searched_is_compared_like_with_like() -> None:
    """Open orders in four more symbols and the order's own: past the
    combinations searched, before and after are both the bound, and a sale
    that reduces the corn the spread holds passes, as the method says."""
    extra = tuple(MarginGroup(f"g{c}", "commodity", (f"S{c}",), scan_usd=100) for c in "ABCD")
    params = MarginParams("cme-and-four", (*CME.groups, *extra), CME.spreads)
    instruments = {**INSTRUMENTS, **{f"S{c}": instrument(f"S{c}", "1") for c in "ABCD"}}
    book = Accounts(params, {"C1": AccountTerms(Decimal(5000))}, instruments)
    book.mark(MARKS)
    book.trade("C1", "ZC", Side.BUY, 2, 45000)
    book.trade("C1", "ZS", Side.SELL, 1, 120000)  # the spread: 2,700
    for n, c in enumerate("ABCD"):
        book.order_open(f"O{n}", "C1", f"S{c}", Side.BUY, 1)
    assert book.check("C1", "ZC", Side.SELL, 1) is None


def test_an_open_order_in_a_symbol_with_no_price_leaves_the_margin_unknown() -> None:
    book = Accounts(CME, {"C1": AccountTerms(Decimal(10**6))}, INSTRUMENTS)
    book.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    assert book.check("C1", "ZC", Side.BUY, 1) is None  # corn needs no price
    book.order_open("O1", "C1", "EUR/USD", Side.BUY, 1)
    breach = book.check("C1", "ZC", Side.BUY, 1)
    assert breach is not None
    assert "no price for EUR/USD" in breach.text


def test_initial_factor_applies_to_the_check() -> None:
    book = accounts("4000", factor="1.25")
    assert book.check("C1", "ZC", Side.BUY, 1) is None  # 2,187.50
    breach = book.check("C1", "ZC", Side.BUY, 2)  # 4,375 > 4,000
    assert breach is not None
    assert "4375.00 USD initial margin required" in breach.text


def test_unrealized_pnl_in_usd_and_a_missing_mark_refuses_an_increase() -> None:
    book = accounts("100000")
    book.trade("C1", "EUR/USD", Side.BUY, 100, 110)  # 100,000 EUR at 1.1
    book.mark(Marks({"EUR/USD": 1.2}, {"EUR/USD": 1.2}))
    view = book.view("C1")
    assert view is not None
    assert math.isclose(view.unrealized_pnl_usd, 100_000 * 0.1)
    assert math.isclose(view.margin_usd, 100_000 * 1.2 * 0.02)
    fresh = Accounts(CME, {"C1": AccountTerms(Decimal(10**6))}, INSTRUMENTS)
    breach = fresh.check("C1", "EUR/USD", Side.BUY, 1)
    assert breach is not None
    assert "no price for EUR/USD" in breach.text


def test_reload_and_checkpoint_keep_the_holdings() -> None:
    book = accounts("3000")
    book.trade("C1", "ZC", Side.BUY, 2, 45000)
    book.trade("C2", "ZS", Side.SELL, 1, 120000)  # C2 has no account: kept all the same
    saved = book.holdings()
    assert saved == {"C1": {"ZC": (2, 450.0, 0.0)}, "C2": {"ZS": (-1, 1200.0, 0.0)}}
    # a reload gives C2 an account and a new parameter version
    terms = {
        "C1": AccountTerms(Decimal(3000)),
        "C2": AccountTerms(Decimal(10_000)),
    }
    v2 = MarginParams("cme-2", CME.groups, ())
    book.configure(v2, terms)
    view = book.view("C2")
    assert view is not None
    assert view.positions == {"ZS": (-1, 1200.0)}
    assert view.margin_usd == 2500
    assert view.param_version == "cme-2"
    restored = Accounts(v2, terms, INSTRUMENTS)
    restored.load(saved)
    restored.mark(MARKS)
    again = restored.view("C1")
    assert again is not None
    assert again.positions == {"ZC": (2, 450.0)}
    assert again.margin_usd == 3500


def test_sweep_reads_a_bounded_number_of_accounts_in_turn() -> None:
    terms = {f"C{i}": AccountTerms(Decimal(1000)) for i in range(10)}
    book = Accounts(CME, terms, INSTRUMENTS)
    book.mark(MARKS)
    for client in terms:
        book.trade(client, "ZC", Side.BUY, 1, 45000)
    seen: list[str] = []
    for _ in range(4):
        standings = book.sweep(3)
        assert len(standings) <= 3
        seen.extend(s.client for s in standings)
    assert set(seen) == set(terms)
    # 1,750 USD of margin on 1,000 of equity: level 0.57, below the call
    # level (1.0), above the stop-out level (0.5)
    (c0,) = [s for s in book.sweep(10) if s.client == "C0"]
    assert c0.margin_usd == 1750
    assert c0.called
    assert not c0.stopped_out


def test_a_reload_keeps_every_margined_client_in_the_sweep() -> None:
    book = accounts("1000")
    book.trade("C1", "ZC", Side.BUY, 1, 45000)
    book.configure(CME, {"C1": AccountTerms(Decimal(100_000))})
    # well above its call level: screened out without a spread formed...
    assert book.sweep(5) == []
    # ...unless asked for by name (a client under a call, to see it cleared)
    (standing,) = book.sweep(5, exact={"C1"})
    assert standing.client == "C1"
    assert standing.margin_usd == 1750
    assert not standing.called


@given(
    st.lists(st.tuples(st.sampled_from(["ZC", "ZS", "EUR/USD"]), st.integers(-30, 30)), max_size=6),
    st.lists(
        st.tuples(
            st.sampled_from(["ZC", "ZS", "EUR/USD"]), st.sampled_from(list(Side)), st.integers(1, 5)
        ),
        max_size=4,
    ),
    st.sampled_from(["ZC", "ZS", "EUR/USD"]),
    st.sampled_from(list(Side)),
    st.integers(1, 40),
    st.integers(0, 20_000),
    st.sampled_from(["1", "1.25", "2"]),
)
def test_the_check_decides_as_the_full_method_would(
    trades: list[tuple[str, int]],
    open_orders: list[tuple[str, Side, int]],
    symbol: str,
    side: Side,
    lots: int,
    collateral: int,
    factor: str,
) -> None:
    """Whatever shortcut the check takes, it refuses exactly the orders the
    method, computed in full, says raise the initial margin above equity."""
    book = accounts(str(collateral), factor)
    positions: dict[str, float] = {}
    for s, n in trades:
        if n:
            book.trade("C1", s, Side.BUY if n > 0 else Side.SELL, abs(n), 45000)
            positions[s] = positions.get(s, 0.0) + n * float(INSTRUMENTS[s].lot_size)
    pending = {s: [0, 0] for s in INSTRUMENTS}
    for i, (s, sd, n) in enumerate(open_orders):
        book.order_open(f"O{i}", "C1", s, sd, n)
        pending[s][0 if sd is Side.BUY else 1] += n
    view = book.view("C1")
    assert view is not None
    equity = view.equity_usd

    def worst(orders: dict[str, list[int]]) -> float:
        # every combination of each group's ends: its open buys all filled,
        # or its open sells all filled (one symbol per group here)
        ends = [
            [(s, b * float(INSTRUMENTS[s].lot_size)), (s, -n * float(INSTRUMENTS[s].lot_size))]
            for s, (b, n) in orders.items()
            if b or n
        ]
        out = [margin(CME, positions, dict(MARKS.unit_usd)).margin]
        for combination in itertools.product(*ends):
            after = dict(positions)
            for s, units in combination:
                after[s] = after.get(s, 0.0) + units
            out.append(margin(CME, after, dict(MARKS.unit_usd)).margin)
        return max(out)

    before = worst(pending)
    pending[symbol][0 if side is Side.BUY else 1] += lots
    after = worst(pending)
    refused = after > before + 1e-9 and after * float(factor) > equity + 1e-6
    breach = book.check("C1", symbol, side, lots)
    assert (breach is not None) == refused, (before, after, equity, breach)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_an_order_in_an_unmargined_symbol_passes(side: Side) -> None:
    book = Accounts(
        MarginParams("v", (MarginGroup("corn", "commodity", ("ZC",), scan_usd=1),)),
        {"C1": AccountTerms(Decimal(0))},
        INSTRUMENTS,
    )
    assert book.check("C1", "ZS", side, 100) is None


def test_after_a_load_the_sweep_reads_every_account_in_one_round() -> None:
    """Accounts made again after a restart or reload are read in turn, each
    within ceil(accounts / budget) sweeps, not from the start at each one
    made."""
    terms = {f"C{i:03}": AccountTerms(Decimal(1)) for i in range(100)}
    book = Accounts(CME, terms, INSTRUMENTS)
    book.load({client: {"ZC": (1, 450.0, 0.0)} for client in terms})
    book.mark(MARKS)
    seen: set[str] = set()
    for _ in range(4):  # 4 x 25 = 100
        seen.update(s.client for s in book.sweep(25))
    assert seen == set(terms)  # each is called: 1 USD against 1,750 of margin


def test_a_trade_in_an_instrument_no_longer_configured_is_passed_over() -> None:
    book = accounts("3000")
    book.trade("C1", "GONE", Side.BUY, 1, 100)  # from a journal of an older config
    book.trade("C1", "ZC", Side.BUY, 1, 45000)
    view = book.view("C1")
    assert view is not None
    assert view.positions == {"ZC": (1, 450.0)}
    assert view.margin_usd == 1750


def test_a_position_without_a_mark_leaves_the_other_groups_margined() -> None:
    """EUR/USD held but never priced: corn is margined at its marks, a
    corn order is judged as usual, and only raising EUR/USD is refused."""
    book = Accounts(CME, {"C1": AccountTerms(Decimal(3000))}, INSTRUMENTS)
    book.load({"C1": {"ZC": (2, 450.0, 0.0), "EUR/USD": (100, 1.1, 0.0)}})
    book.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    view = book.view("C1")
    assert view is not None
    assert view.margin_usd == 3500  # corn; EUR/USD has no mark yet
    assert book.check("C1", "ZC", Side.SELL, 1) is None  # reducing corn
    refused = book.check("C1", "EUR/USD", Side.BUY, 1)
    assert refused is not None
    assert "no price for EUR/USD" in refused.text


def test_one_clients_holdings_replaced_are_margined_as_if_traded_here() -> None:
    """A client taken over from another gateway of a cluster: its holdings
    there replace its holdings here, margin and P&L follow, open orders
    held here and other clients are untouched."""
    traded = accounts("5000")
    traded.trade("C1", "ZC", Side.BUY, 2, 45000)
    traded.trade("C1", "ZS", Side.SELL, 1, 120000)
    there = traded.holdings_of("C1")

    here = accounts("5000")
    here.trade("C1", "EUR/USD", Side.BUY, 5, 110)
    here.trade("C2", "ZC", Side.BUY, 1, 45000)
    here.order_open("o1", "C1", "ZC", Side.BUY, 1)
    assert here.view("C1") is not None  # scanned with its old holdings first
    here.set_client("C1", there)
    assert here.holdings_of("C1") == there
    assert here.position("C1", "EUR/USD") == 0
    view, expected = here.view("C1"), traded.view("C1")
    assert view is not None
    assert expected is not None
    assert view.positions == expected.positions
    assert round(view.equity_usd, 2) == round(expected.equity_usd, 2)
    assert round(view.margin_usd, 2) == round(expected.margin_usd, 2) == 2700
    # the open order held here still counts in the check: 1 ZC more fits
    # there (4,450 USD of 5,000), not with o1 beside it (6,200)
    assert traded.check("C1", "ZC", Side.BUY, 1) is None
    assert here.check("C1", "ZC", Side.BUY, 1) is not None
    here.order_open("o1", "C1", "ZC", Side.BUY, 0)
    assert here.check("C1", "ZC", Side.BUY, 1) is None
    assert here.position("C2", "ZC") == 1
    # an empty state flattens the client
    here.set_client("C1", {})
    assert here.holdings_of("C1") == {}


def test_with_no_margin_an_equity_below_zero_is_called_and_stopped_out() -> None:
    """Positions that ask no margin (an instrument of no margin group, legs
    a spread offsets in full) still lose money: below zero equity the
    account is called and stopped out, not left at "no level"."""
    gold = instrument("XAU", "1")
    book = Accounts(CME, {"C1": AccountTerms(Decimal(5000))}, {**INSTRUMENTS, "XAU": gold})
    book.mark(Marks({**MARKS.price, "XAU": 2000.0}, {**MARKS.unit_usd, "XAU": 2000.0}))
    book.trade("C1", "XAU", Side.BUY, 1000, 200_000)  # 1,000 oz at 2,000: no group
    standing = book.standing("C1")
    assert standing is not None
    assert (standing.margin_usd, standing.level) == (0.0, None)
    assert not standing.called
    assert not standing.stopped_out
    book.mark(Marks({"XAU": 1990.0}, {"XAU": 1990.0}))  # 10 USD down: -10,000 + 5,000
    standing = book.standing("C1")
    assert standing is not None
    assert standing.equity_usd == -5000.0
    assert standing.called
    assert standing.stopped_out


def test_a_position_traded_back_to_no_lots_is_flat_with_no_margin() -> None:
    """1 and 9 lots of BTC/USD (0.001 BTC a lot) bought and the 10 sold:
    the portfolio holds what the lots do, none (0.001 + 0.009 - 0.010 BTC
    added as floats is 1.7e-18 BTC, a margin of ~8e-14 USD and a level of
    about -1e11).  Flat below zero, the account is called, not stopped out."""
    btc = Instrument(
        "BTC/USD", AssetClass.CRYPTO, Decimal("0.01"), Decimal("0.001"), 1, 1000, "USD"
    )
    params = MarginParams("p", (MarginGroup("BTC", "crypto", ("BTC/USD",), scan_pct=0.5),))
    book = Accounts(params, {"C1": AccountTerms(Decimal("100"))}, {"BTC/USD": btc})
    book.mark(Marks({"BTC/USD": 90000.0}, {"BTC/USD": 90000.0}))
    book.view("C1")
    book.trade("C1", "BTC/USD", Side.BUY, 1, 9000000)
    book.trade("C1", "BTC/USD", Side.BUY, 9, 9000000)
    book.trade("C1", "BTC/USD", Side.SELL, 10, 7900000)  # 110 USD lost on 100 deposited
    assert book.position("C1", "BTC/USD") == 0
    standing = book.standing("C1")
    assert standing is not None
    assert (standing.flat, standing.margin_usd, standing.level) == (True, 0.0, None)
    assert standing.equity_usd < 0
    assert standing.called
    assert not standing.stopped_out


def test_flat_decides_a_stop_out_whatever_the_level() -> None:
    """An account holding no lots has nothing to close: below its stop-out
    level it is called only, as it is with no margin at all."""
    flat = Standing("C1", -10.0, 1e-13, -1e14, 1.0, 0.5, flat=True)
    assert flat.called
    assert not flat.stopped_out
    held = Standing("C1", -10.0, 1e-13, -1e14, 1.0, 0.5, flat=False)
    assert held.stopped_out


def test_an_order_that_only_reduces_a_position_passes_without_a_price() -> None:
    """After a restart, or with the LPs away, no mark: an increase is
    refused as margin unknown, a reduction (the open orders on its side
    counted) is not."""
    book = Accounts(CME, {"C1": AccountTerms(Decimal(10**6))}, INSTRUMENTS)
    book.set_client("C1", {"EUR/USD": (5, 1.1, 0.0)})
    assert book.check("C1", "EUR/USD", Side.SELL, 3) is None
    book.order_open("O1", "C1", "EUR/USD", Side.SELL, 2)
    assert book.check("C1", "EUR/USD", Side.SELL, 3) is None  # 2 + 3: flat
    turned = book.check("C1", "EUR/USD", Side.SELL, 4)  # 2 + 4 would turn it short
    added = book.check("C1", "EUR/USD", Side.BUY, 1)
    for breach in (turned, added):
        assert breach is not None
        assert "no price for EUR/USD" in breach.text


def test_a_symbol_without_a_live_quote_keeps_its_last_mark() -> None:
    """The gateway's marks leave out a symbol no LP quotes now: its price
    source would answer the last fill's price (hours old, another
    client's), which could stop an account out on a price nobody quotes."""
    from fractions import Fraction

    from gateway.orderflow.entry import margin_marks
    from router.exposure import ExposureLedger

    class Quotes:
        def mid(self, symbol: str) -> Fraction | None:
            return Fraction(45000) if symbol == "ZC" else None

    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("LP_A", "C9", "ZS", Side.BUY, 1, 100000)  # the last fill: 1,000
    assert ledger.price("ZS", Quotes()) == Decimal("1000.00")
    marks = margin_marks(INSTRUMENTS, lambda s: ledger.quoted_price(s, Quotes()), MARKS)
    assert marks.price == {"ZC": 450.0}
    book = accounts("3000")
    book.trade("C1", "ZS", Side.BUY, 1, 120000)  # at the mark, 1,200
    book.mark(marks)
    view = book.view("C1")
    assert view is not None
    assert view.unrealized_pnl_usd == 0.0  # ZS still at 1,200, not the old fill's 1,000


def test_reducing_a_leg_of_a_spread_that_raises_the_margin_is_refused() -> None:
    """Buying back the short soy leg undoes the corn-soy spread's credit:
    the margin rises, so the check applies though the order reduces."""
    book = accounts("2800")
    book.trade("C1", "ZC", Side.BUY, 2, 45000)
    book.trade("C1", "ZS", Side.SELL, 1, 120000)  # margin 2,700 with the spread
    breach = book.check("C1", "ZS", Side.BUY, 1)  # corn alone: 3,500 > 2,800
    assert breach is not None
    assert "3500.00 USD initial margin required" in breach.text


def test_an_account_is_judged_on_complete_figures_only_and_not_stopped_out_flat() -> None:
    """Until all of its P&L can be valued (after a start, before the first
    quotes: a position with no mark, P&L realized in JPY with no rate yet)
    its equity is partial: neither called nor stopped out on it.  Flat
    below zero, it is called, with nothing left to stop out."""
    gold = instrument("XAU", "1")
    yen = Instrument(
        "USD/JPY", AssetClass.FX, Decimal("0.001"), Decimal(1000), 1, 1000, "JPY", "base"
    )
    held = {**INSTRUMENTS, "XAU": gold, "USD/JPY": yen}
    book = Accounts(CME, {"C1": AccountTerms(Decimal(1000))}, held)
    book.set_client("C1", {"USD/JPY": (0, 0.0, 3_000_000.0), "XAU": (10, 2000.0, 0.0)})
    book.mark(Marks({"XAU": 1800.0}, {"XAU": 1800.0}))  # USD/JPY not quoted yet
    partial = book.standing("C1")
    assert partial is not None
    assert partial.equity_usd == -1000.0  # 1,000 - 2,000, the 3,000,000 JPY not counted yet
    assert not partial.complete
    assert not partial.called
    assert not partial.stopped_out
    book.mark(Marks({"XAU": 1800.0, "USD/JPY": 150.0}, {"XAU": 1800.0, "USD/JPY": 1.0}))
    whole = book.standing("C1")
    assert whole is not None
    assert whole.complete
    assert round(whole.equity_usd, 2) == 19_000.0
    assert not whole.stopped_out
    book.set_client("C1", {"XAU": (0, 0.0, -5000.0)})  # flat, 4,000 below zero
    book.mark(Marks({"XAU": 1800.0}, {"XAU": 1800.0}))
    flat = book.standing("C1")
    assert flat is not None
    assert (flat.flat, flat.equity_usd) == (True, -4000.0)
    assert flat.called
    assert not flat.stopped_out


def test_a_loss_realized_in_usd_counts_before_the_symbol_is_quoted_again() -> None:
    """Marks are not kept across a restart, realized P&L is: a client lost
    2,500 USD in ZC (quoted in USD: the loss needs no rate) of 3,000
    deposited, and one more lot (1,750 USD of margin) is refused, after a
    restart too, before ZC is quoted again (the loss was left out of equity
    until then, 3,000 instead of 500, and the order passed)."""
    terms = {"C1": AccountTerms(Decimal("3000"))}
    book = accounts("3000")
    book.trade("C1", "ZC", Side.BUY, 100, 45000)
    book.trade("C1", "ZC", Side.SELL, 100, 42500)  # 100 x 25 = 2,500 USD lost
    before = book.view("C1")
    assert before is not None
    assert round(before.equity_usd, 2) == 500
    assert book.check("C1", "ZC", Side.BUY, 1) is not None

    restarted = Accounts(CME, terms, INSTRUMENTS)
    restarted.load(book.holdings())
    after = restarted.view("C1")
    assert after is not None
    assert round(after.realized_pnl_usd, 2) == -2500
    assert round(after.equity_usd, 2) == 500
    assert after.unpriced == ()
    breach = restarted.check("C1", "ZC", Side.BUY, 1)
    assert breach is not None
    assert "1750.00 USD initial margin required, 500.00 USD free" in breach.text
    standing = restarted.standing("C1")
    assert standing is not None
    assert standing.complete


def test_a_loss_realized_in_a_currency_with_no_rate_leaves_the_margin_unknown() -> None:
    """P&L realized in JPY needs USD/JPY's mark.  Without it (after a
    restart, before the first quote) a loss cannot be left out of equity,
    which would then be above what it is: the check finds the margin
    unknown, the view names the symbol as unpriced, and the account is not
    judged.  A gain left out only makes the equity lower than it is: an
    order that fits without it passes."""
    yen = Instrument(
        "USD/JPY", AssetClass.FX, Decimal("0.001"), Decimal(1000), 1, 1000, "JPY", "base"
    )
    book = Accounts(CME, {"C1": AccountTerms(Decimal(5000))}, {**INSTRUMENTS, "USD/JPY": yen})
    book.set_client("C1", {"USD/JPY": (0, 0.0, -600_000.0)})  # 4,000 USD at 150
    breach = book.check("C1", "ZC", Side.BUY, 1)
    assert breach is not None
    assert "margin unknown: no price for USD/JPY" in breach.text
    view = book.view("C1")
    assert view is not None
    assert view.unpriced == ("USD/JPY",)
    standing = book.standing("C1")
    assert standing is not None
    assert not standing.complete
    book.mark(Marks({"USD/JPY": 150.0}, {"USD/JPY": 1.0}))
    breach = book.check("C1", "ZC", Side.BUY, 1)  # 1,750 > 5,000 - 4,000
    assert breach is not None
    assert "insufficient margin" in breach.text
    gained = Accounts(CME, {"C1": AccountTerms(Decimal(5000))}, {**INSTRUMENTS, "USD/JPY": yen})
    gained.set_client("C1", {"USD/JPY": (0, 0.0, 600_000.0)})
    assert gained.check("C1", "ZC", Side.BUY, 1) is None  # 1,750 <= 5,000
    # a symbol no longer configured is never priced again: named, its loss
    # does not hold the client's orders for ever
    gone = Accounts(CME, {"C1": AccountTerms(Decimal(5000))}, INSTRUMENTS)
    gone.set_client("C1", {"GONE": (0, 0.0, -100.0)})
    assert gone.check("C1", "ZC", Side.BUY, 1) is None
    gone_view = gone.view("C1")
    assert gone_view is not None
    assert gone_view.unpriced == ("GONE",)


class _Mids:
    def __init__(self, mids: dict[str, Fraction]) -> None:
        self.mids = mids

    def mid(self, symbol: str) -> Fraction | None:
        return self.mids.get(symbol)


def test_a_cross_is_converted_to_usd_at_the_kept_mark_not_an_old_fill() -> None:
    """GBP/USD is quoted at 1.25, then its quotes go stale: its mark stays
    1.25.  EUR/GBP, converted to USD through GBP/USD, is still quoted, and
    its USD value is taken at GBP/USD's kept mark (it was taken at GBP/USD's
    last fill, 1.00, another client's trade: a client long EUR/GBP lost
    1,250 USD of unrealized P&L, and 20% of its margin moved, on a GBP/USD
    price nobody quotes)."""
    from gateway.orderflow.entry import margin_marks
    from router.exposure import ExposureLedger

    gbp = Instrument("GBP/USD", AssetClass.FX, Decimal("0.00001"), Decimal(1000), 1, 1000, "USD")
    cross = Instrument(
        "EUR/GBP", AssetClass.FX, Decimal("0.00001"), Decimal(1000), 1, 1000, "GBP", "GBP/USD"
    )
    instruments = {"GBP/USD": gbp, "EUR/GBP": cross}
    ledger = ExposureLedger(instruments)
    ledger.apply_cross("OTHER", "GBP/USD", Side.BUY, 1, 100000)  # an old fill at 1.00000
    params = MarginParams("p", (MarginGroup("EG", "fx", ("EUR/GBP",), scan_pct=0.0333),))
    book = Accounts(params, {"C1": AccountTerms(Decimal("10000"))}, instruments)

    def mark(mids: dict[str, Fraction]) -> None:
        quotes = _Mids(mids)
        book.mark(margin_marks(instruments, lambda s: ledger.quoted_price(s, quotes), book.marks))

    mark({"GBP/USD": Fraction(125000), "EUR/GBP": Fraction(85000)})
    book.trade("C1", "EUR/GBP", Side.BUY, 100, 80000)  # long 100,000 EUR/GBP at 0.80
    quoted = book.view("C1")
    assert quoted is not None
    assert round(quoted.unrealized_pnl_usd, 2) == 6250  # 5,000 GBP at 1.25

    mark({"EUR/GBP": Fraction(85000)})  # GBP/USD stale now
    assert book.marks.price["GBP/USD"] == 1.25  # GBP/USD keeps its last mark
    stale = book.view("C1")
    assert stale is not None
    assert round(stale.unrealized_pnl_usd, 2) == 6250
    assert round(stale.margin_usd, 2) == round(quoted.margin_usd, 2)
    assert book.marks.unit_usd["EUR/GBP"] == 0.85 * 1.25

    mark({"GBP/USD": Fraction(120000), "EUR/GBP": Fraction(85000)})  # quoted again: 1.20
    moved = book.view("C1")
    assert moved is not None
    assert round(moved.unrealized_pnl_usd, 2) == 6000  # 5,000 GBP at 1.20


def test_pnl_realized_in_an_instrument_no_longer_configured_keeps_no_stop_out_away() -> None:
    # after a restart on a config without OLD, the client's P&L realized
    # in it can never be valued again: it is named, and the account is
    # judged on the rest (a loss of 2,500 USD against 2,000 collateral)
    book = Accounts(CME, {"C1": AccountTerms(Decimal("2000"))}, INSTRUMENTS)
    book.load({"C1": {"OLD": (0, 0.0, 1.0), "ZC": (1, 4500.0, 0.0)}})
    book.mark(Marks({"ZC": 2000.0}, {"ZC": 2000.0}))
    standing = book.standing("C1")
    assert standing is not None
    assert standing.complete
    assert standing.called
    assert standing.stopped_out
    view = book.view("C1")
    assert view is not None
    assert view.unpriced == ("OLD",)
    # a symbol still configured and not priced still holds the judgement
    book.load({"C1": {"EUR/USD": (1, 1.1, 0.0), "ZC": (1, 4500.0, 0.0)}})
    book.mark(Marks({"ZC": 2000.0}, {"ZC": 2000.0}))
    held = book.standing("C1")
    assert held is not None
    assert not held.complete
    assert not held.stopped_out


def fx(symbol: str, quote: str, conversion: str) -> Instrument:
    return Instrument(
        symbol, AssetClass.FX, Decimal("0.00001"), Decimal(1000), 1, 1000, quote, conversion
    )


@pytest.mark.parametrize(
    ("cross", "via", "mark", "realized", "usd"),
    [
        # 4,000 GBP lost on EUR/GBP, GBP/USD at 1.25: 5,000 USD
        ("EUR/GBP", fx("GBP/USD", "USD", "quote"), 1.25, -4000.0, -5000.0),
        # 150,000 JPY made on EUR/JPY, USD/JPY at 150: 1,000 USD
        ("EUR/JPY", fx("USD/JPY", "JPY", "base"), 150.0, 150_000.0, 1000.0),
    ],
)
def test_pnl_realized_in_a_cross_not_marked_counts_at_its_conversions_mark(
    cross: str, via: Instrument, mark: float, realized: float, usd: float
) -> None:
    quote = cross[-3:]
    instruments = {cross: fx(cross, quote, via.symbol), via.symbol: via}
    params = MarginParams(
        "fx-1", (MarginGroup("fx", "fx", (cross, via.symbol), scan_pct=0.02),), ()
    )
    book = Accounts(params, {"C1": AccountTerms(Decimal("10000"))}, instruments)
    book.load({"C1": {cross: (0, 0.0, realized)}})  # after a restart, flat
    # the conversion symbol's unit: a GBP worth 1.25 USD, a USD worth 1
    unit_usd = 1.0 if via.usd_conversion == "base" else mark
    book.mark(Marks({via.symbol: mark}, {via.symbol: unit_usd}))
    view = book.view("C1")
    assert view is not None
    assert view.unpriced == ()
    assert math.isclose(view.realized_pnl_usd, usd)
    assert math.isclose(view.equity_usd, 10000 + usd)
    assert book.check("C1", via.symbol, Side.BUY, 1) is None


def test_a_position_with_no_mark_does_not_leave_its_loss_out_of_the_check() -> None:
    """After a restart (marks are not kept) C1 holds 10 corn bought at 450,
    not quoted yet: its P&L is unknown, and may be a loss of any size (at
    300 it is 1,500 of the 20,000 deposited).  Left out, the equity is above
    what it may be, as with a realized loss in a currency with no rate:
    an order that raises the margin (a soybean bought: 17,500 + 2,500 =
    20,000, which only the full 20,000 covers) is refused as margin
    unknown; one that lowers it (corn sold) still passes."""
    book = Accounts(CME, {"C1": AccountTerms(Decimal(20_000))}, INSTRUMENTS)
    book.load({"C1": {"ZC": (10, 450.0, 0.0)}})
    book.mark(Marks({"ZS": 1200.0}, {"ZS": 1200.0}))  # soybeans quoted, corn not yet
    view = book.view("C1")
    assert view is not None
    assert view.unpriced == ("ZC",)
    assert view.equity_usd == 20_000  # corn's P&L left out
    breach = book.check("C1", "ZS", Side.BUY, 1)
    assert breach is not None
    assert "margin unknown: no price for ZC" in breach.text
    more = book.check("C1", "ZC", Side.BUY, 1)  # 19,250 of margin: raised too
    assert more is not None
    assert "margin unknown: no price for ZC" in more.text
    assert book.check("C1", "ZC", Side.SELL, 1) is None  # lowers the margin
    book.mark(Marks({"ZC": 300.0}, {"ZC": 300.0}))  # corn quoted: 1,500 lost
    breach = book.check("C1", "ZS", Side.BUY, 1)
    assert breach is not None
    assert "20000.00 USD initial margin required, 1000.00 USD free" in breach.text
