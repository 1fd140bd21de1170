"""The margin method: CME's published example, the rules a spread table must
follow, and properties over random portfolios and spread tables."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk.margin import (
    SCENARIOS,
    MarginGroup,
    MarginParams,
    MissingMark,
    Portfolio,
    SpreadDef,
    SpreadLeg,
    margin,
)

CME = MarginParams(
    "cme-example",
    (
        MarginGroup("corn", "commodity", ("ZC",), scan_usd=1750),
        MarginGroup("soy", "commodity", ("ZS",), scan_usd=2500),
    ),
    (SpreadDef("corn-soy", 1, 0.55, (SpreadLeg("corn", 2, "A"), SpreadLeg("soy", 1, "B"))),),
)


def test_cmes_corn_soybean_example() -> None:
    """Long 2 corn, short 1 soybeans: 6,000 - 0.55 x (3,500 + 2,500) = 2,700."""
    result = margin(CME, {"ZC": 2, "ZS": -1}, {})
    assert result.scan_risk == 6000
    (spread,) = result.spreads
    assert spread.count == 1
    assert round(spread.credit, 2) == 3300
    assert round(result.margin, 2) == 2700
    assert result.param_version == "cme-example"
    # siloed: both are commodities, so the same
    assert round(margin(CME, {"ZC": 2, "ZS": -1}, {}, siloed=True).margin, 2) == 2700


def test_legs_on_the_same_side_earn_nothing() -> None:
    """Long corn and long soybeans do not offset: no spread, full scan risk."""
    result = margin(CME, {"ZC": 2, "ZS": 1}, {})
    assert result.spreads == ()
    assert result.margin == 3500 + 2500


def test_a_spread_forms_fractionally_from_what_is_there() -> None:
    """Long 3 corn, short 1 soybeans: one spread (2 corn + 1 soy), 1 corn left."""
    result = margin(CME, {"ZC": 3, "ZS": -1}, {})
    (spread,) = result.spreads
    assert spread.count == 1
    assert dict(spread.legs) == {"corn": 2, "soy": 1}
    assert round(result.margin, 2) == 3 * 1750 + 2500 - 3300
    # long 1 corn, short 1 soy: half a spread (1 corn, 0.5 soy)
    half = margin(CME, {"ZC": 1, "ZS": -1}, {})
    assert half.spreads[0].count == 0.5
    assert round(half.credit, 2) == round(0.55 * (1750 + 1250), 2)


def test_scan_pct_scales_with_the_mark_and_a_missing_mark_is_named() -> None:
    params = MarginParams("v1", (MarginGroup("eur", "fx", ("EUR/USD",), scan_pct=0.02),))
    result = margin(params, {"EUR/USD": -100_000}, {"EUR/USD": 1.1})
    (group,) = result.groups
    assert math.isclose(group.scan_risk, 100_000 * 1.1 * 0.02)
    assert group.worst_scenario == "up 3/3"  # a short loses when the price rises
    with pytest.raises(MissingMark, match="EUR/USD"):
        margin(params, {"EUR/USD": 1}, {})


@pytest.mark.parametrize(
    ("groups", "spreads", "message"),
    [
        ((MarginGroup("a", "fx", ("X",), scan_usd=1),) * 2, (), "declared twice"),
        (
            (
                MarginGroup("a", "fx", ("X",), scan_usd=1),
                MarginGroup("b", "fx", ("X",), scan_usd=1),
            ),
            (),
            "X is in two groups",
        ),
        (
            (MarginGroup("a", "fx", ("X",), scan_usd=1),),
            (SpreadDef("s", 1, 0.5, (SpreadLeg("a", 1, "A"), SpreadLeg("z", 1, "B"))),),
            "no group z",
        ),
        (
            (
                MarginGroup("a", "fx", ("X",), scan_usd=1),
                MarginGroup("b", "fx", ("Y",), scan_usd=1),
            ),
            (SpreadDef("s", 1, 1.5, (SpreadLeg("a", 1, "A"), SpreadLeg("b", 1, "B"))),),
            r"rate 1.5 is not in \(0, 1\]",
        ),
        (
            (MarginGroup("a", "fx", ("X",), scan_usd=1),),
            (SpreadDef("s", 1, 0.5, (SpreadLeg("a", 1, "A"),)),),
            "at least two legs",
        ),
        (
            (
                MarginGroup("a", "fx", ("X",), scan_usd=1),
                MarginGroup("b", "fx", ("Y",), scan_usd=1),
                MarginGroup("c", "crypto", ("Z",), scan_usd=1),
            ),
            (
                SpreadDef("cross", 1, 0.5, (SpreadLeg("a", 1, "A"), SpreadLeg("c", 1, "B"))),
                SpreadDef("fx", 2, 0.5, (SpreadLeg("a", 1, "A"), SpreadLeg("b", 1, "B"))),
            ),
            "within an asset class come first",
        ),
    ],
)
def test_inconsistent_parameters_are_refused_by_name(
    groups: tuple[MarginGroup, ...], spreads: tuple[SpreadDef, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MarginParams("v", groups, spreads)


def test_a_group_needs_exactly_one_scan_range() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        MarginGroup("a", "fx", ("X",))
    with pytest.raises(ValueError, match="exactly one"):
        MarginGroup("a", "fx", ("X",), scan_pct=0.1, scan_usd=1)


# -- properties over random portfolios ---------------------------------------

CLASSES = ("fx", "crypto", "metal")
SYMBOLS = [f"S{i}" for i in range(10)]


@st.composite
def params_and_book(
    draw: st.DrawFn,
) -> tuple[MarginParams, dict[str, float], dict[str, float]]:
    n_groups = draw(st.integers(1, 5))
    groups = []
    symbols = iter(SYMBOLS)
    for i in range(n_groups):
        members = tuple(next(symbols) for _ in range(draw(st.integers(1, 2))))
        pct = draw(st.booleans())
        value = draw(st.floats(0.005, 0.5) if pct else st.floats(1, 5000))
        groups.append(
            MarginGroup(
                f"g{i}",
                draw(st.sampled_from(CLASSES)),
                members,
                scan_pct=value if pct else None,
                scan_usd=None if pct else value,
            )
        )
    names = [g.name for g in groups]
    by_name = {g.name: g for g in groups}
    spreads = []
    if n_groups >= 2:
        for j in range(draw(st.integers(0, 6))):
            legs_groups = draw(
                st.lists(st.sampled_from(names), min_size=2, max_size=3, unique=True)
            )
            legs = tuple(
                SpreadLeg(g, draw(st.floats(0.1, 10)), draw(st.sampled_from(("A", "B"))))
                for g in legs_groups
            )
            cross = len({by_name[g].asset_class for g in legs_groups}) > 1
            # within-class spreads take priorities below 100, cross-asset above
            priority = draw(st.integers(100, 199) if cross else st.integers(0, 99))
            spreads.append(SpreadDef(f"sp{j}", priority, draw(st.floats(0.01, 1.0)), legs))
    params = MarginParams("prop", tuple(groups), tuple(spreads))
    used = [s for g in groups for s in g.symbols]
    positions = {
        s: float(draw(st.integers(-50, 50))) * draw(st.sampled_from((1, 1000, 0.5))) for s in used
    }
    marks = {s: draw(st.floats(0.01, 100_000)) for s in used}
    return params, positions, marks


TOL = 1e-6


def close_or_below(a: float, b: float) -> bool:
    return a <= b + TOL * max(1.0, abs(b))


@given(params_and_book())
def test_margin_is_never_negative_nor_above_the_scan_risk(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
) -> None:
    params, positions, marks = case
    result = margin(params, positions, marks)
    assert result.margin >= 0
    assert close_or_below(result.credit, result.scan_risk)
    assert result.margin <= result.scan_risk


@given(params_and_book())
def test_siloed_is_never_below_portfolio(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
) -> None:
    params, positions, marks = case
    portfolio = margin(params, positions, marks)
    siloed = margin(params, positions, marks, siloed=True)
    assert close_or_below(portfolio.margin, siloed.margin)
    assert siloed.scan_risk == portfolio.scan_risk
    # siloed forms only spreads within one asset class
    classes = {g.name: g.asset_class for g in params.groups}
    spreads = {s.name: s for s in params.spreads}
    for formed in siloed.spreads:
        assert len({classes[leg.group] for leg in spreads[formed.name].legs}) == 1


@given(params_and_book())
def test_scan_risk_is_the_worst_scenario_loss(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
) -> None:
    """Recomputed here from the scenarios, each instrument priced on its own."""
    params, positions, marks = case
    result = margin(params, positions, marks)
    for group in params.groups:
        losses = [0.0]
        for _, move in SCENARIOS:
            loss = 0.0
            for s in group.symbols:
                per_unit = (
                    group.scan_usd
                    if group.scan_usd is not None
                    else (group.scan_pct or 0) * marks[s]
                )
                loss -= positions.get(s, 0.0) * per_unit * move
            losses.append(loss)
        risk = next((g.scan_risk for g in result.groups if g.group == group.name), 0.0)
        assert math.isclose(risk, max(losses), rel_tol=1e-9, abs_tol=1e-6)


@given(params_and_book())
def test_credits_only_for_legs_that_really_offset(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
) -> None:
    params, positions, marks = case
    result = margin(params, positions, marks)
    units = {g.name: sum(positions.get(s, 0.0) for s in g.symbols) for g in params.groups}
    spreads = {s.name: s for s in params.spreads}
    used = dict.fromkeys(units, 0.0)
    for formed in result.spreads:
        assert formed.count > 0
        assert formed.credit > 0
        legs = spreads[formed.name].legs
        a_sign = [
            math.copysign(1, units[leg.group]) * (1 if leg.side == "A" else -1) for leg in legs
        ]
        assert len(set(a_sign)) == 1, "a leg holds a position of the wrong sign"
        for leg, (group, n) in zip(legs, formed.legs, strict=True):
            assert group == leg.group
            assert units[group] != 0
            assert math.isclose(n, formed.count * leg.ratio)
            used[group] += n
    for group, n in used.items():
        assert close_or_below(n, abs(units[group])), f"{group} used more units than it holds"


@given(params_and_book(), st.lists(st.tuples(st.sampled_from(SYMBOLS), st.integers(-20, 20))))
def test_the_kept_portfolio_agrees_with_a_full_recompute(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
    trades: list[tuple[str, int]],
) -> None:
    params, positions, marks = case
    book = Portfolio(params, marks, positions)
    expected = dict(positions)
    for symbol, units in trades:
        if symbol not in marks:
            continue
        expected[symbol] = expected.get(symbol, 0.0) + units
        book.hold(symbol, expected[symbol])
        full = margin(params, expected, marks)
        # positions handed in whole, totals summed afresh: to the last bit
        assert book.result().margin == full.margin
        assert book.scan_total == book.result().scan_risk


@given(
    params_and_book(),
    st.dictionaries(
        st.sampled_from(SYMBOLS), st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=3
    ),
)
def test_open_orders_never_ask_less_than_none_filled_to_the_last_bit(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
    opens: dict[str, tuple[int, int]],
) -> None:
    """The state with nothing filled is the margin without open orders,
    summed the same way: an order that lowers the margin is compared, in
    the check, with a figure that cannot part from it by a rounding."""
    params, positions, marks = case
    opens = {s: (float(b), float(n)) for s, (b, n) in opens.items() if s in marks}
    book = Portfolio(params, marks, positions)
    assert book.worst_open(opens) >= book.result().margin
    assert book.worst_open({}) == book.result().margin


@given(
    params_and_book(),
    st.dictionaries(
        st.sampled_from(SYMBOLS), st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=4
    ),
)
def test_open_orders_at_their_worst_are_below_their_bound_and_above_any_fill(
    case: tuple[MarginParams, dict[str, float], dict[str, float]],
    opens: dict[str, tuple[int, int]],
) -> None:
    """The margin with open orders at their worst is at least that of any
    one way of filling them all (buys or sells, per symbol), and never above
    the bound the check tries first."""
    params, positions, marks = case
    opens = {s: (float(b), float(n)) for s, (b, n) in opens.items() if s in marks}
    book = Portfolio(params, marks, positions)
    worst = book.worst_open(opens)
    assert worst <= book.open_bound(opens) + 1e-6
    for ends in itertools.product(*([(s, b), (s, -n)] for s, (b, n) in opens.items())):
        after = dict(positions)
        for symbol, units in ends:
            after[symbol] = after.get(symbol, 0.0) + units
        filled = margin(params, after, marks).margin
        assert filled <= worst + 1e-6 * max(1.0, filled)


def test_past_the_combinations_margined_in_full_the_bound_stands_in() -> None:
    groups = tuple(MarginGroup(f"g{i}", "commodity", (f"S{i}",), scan_usd=100) for i in range(4))
    spread = SpreadDef("g0-g1", 1, 0.5, (SpreadLeg("g0", 1, "A"), SpreadLeg("g1", 1, "B")))
    held = {"S0": 5.0, "S1": -5.0}  # a spread formed whatever fills
    book = Portfolio(MarginParams("four", groups, (spread,)), {}, held)
    three = {f"S{i}": (1.0, 2.0) for i in range(3)}  # 3**3 states: margined in full
    four = {f"S{i}": (1.0, 2.0) for i in range(4)}  # 3**4: past the bound's turn
    assert book.worst_open(four) == book.open_bound(four) == 100 * (6 + 7 + 2 + 2)
    full = 0.0
    for moves in itertools.product(*((0.0, b, -n) for b, n in three.values())):
        after = {s: held.get(s, 0.0) + m for s, m in zip(three, moves, strict=True)}
        full = max(full, margin(book.params, after, {}).margin)
    assert book.worst_open(three) == full < book.open_bound(three)


# two symbols netting in one group, priced apart, and a spread against another
MIXED = MarginParams(
    "mixed",
    (
        MarginGroup("G", "metal", ("P", "Q"), scan_pct=0.1),
        MarginGroup("H", "metal", ("R",), scan_usd=10),
    ),
    (SpreadDef("G-H", 1, 1.0, (SpreadLeg("G", 1, "A"), SpreadLeg("H", 1, "B"))),),
)
MIXED_USD = {"P": 100.0, "Q": 10.0, "R": 5.0}  # scans: 10 a P, 1 a Q


def test_open_orders_are_searched_per_symbol_not_per_group() -> None:
    """A buy of P and a sell of Q filled together leave the group's units
    and its delta of opposite signs: no direction, no spread.  That is
    neither of the group's two ends, and asks the most."""
    book = Portfolio(MIXED, MIXED_USD, {"R": -1.0})
    both_filled = margin(MIXED, {"R": -1.0, "P": 1.0, "Q": -1.0}, MIXED_USD).margin
    assert both_filled == 19
    assert book.worst_open({"P": (1.0, 0.0), "Q": (0.0, 1.0)}) == both_filled


def test_open_orders_never_ask_less_than_nothing_filled() -> None:
    """Spreads either way: each end of the open orders earns a credit,
    nothing filled earns none."""
    params = MarginParams(
        "two-spreads",
        (
            MarginGroup("G", "fx", ("S0",), scan_usd=1.0),
            MarginGroup("H", "fx", ("S3",), scan_usd=1.0),
        ),
        (
            SpreadDef("same", 0, 1.0, (SpreadLeg("G", 1.0, "A"), SpreadLeg("H", 1.0, "A"))),
            SpreadDef("opposite", 0, 1.0, (SpreadLeg("G", 1.0, "A"), SpreadLeg("H", 1.0, "B"))),
        ),
    )
    book = Portfolio(params, {}, {"S3": 1.0})
    assert book.result().margin == 1
    assert book.worst_open({"S0": (1.0, 1.0)}) == 1
