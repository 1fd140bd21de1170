"""The best-price, exposure-aware routing policy on hand-made books, and the
policy registry.

The instrument is USD/JPY with 1000 USD a lot, so an LP's gross notional is
1000 USD per lot of net position whatever the price.  Unless a test says
otherwise each LP has a soft limit of 100,000 USD (100 lots), a hard limit
of 200,000 USD (200 lots) and a penalty of up to 10 ticks.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from routing_helpers import INSTRUMENTS, USDJPY, FixedPrices, quote, snapshot_of

from router.book import BookSnapshot
from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import Side
from router.policy import (
    ALL_AT_HARD_LIMIT,
    HARD_LIMIT_REACHED,
    INSUFFICIENT_LIQUIDITY,
    LIMIT_PRICE_REACHED,
    MAX_CHILD_ORDERS_REACHED,
    NO_LIQUIDITY,
    NO_USD_VALUATION,
    POLICIES,
    BestPriceExposureAware,
    ChildAllocation,
    LpLimits,
    PolicyConfigError,
    RoutePlan,
    RouteRequest,
    RoutingLimits,
    build_policy,
    register_policy,
)

SYM = "USD/JPY"
POLICY = BestPriceExposureAware()


def lp_limits(soft: int = 100_000, hard: int = 200_000, penalty: int = 10) -> LpLimits:
    return LpLimits(Decimal(soft), Decimal(hard), soft_penalty_ticks=penalty)


LIMITS = RoutingLimits({lp: lp_limits() for lp in ("A", "B", "C")})


def request(side: Side, qty: int, limit: int | None = None) -> RouteRequest:
    return RouteRequest("P1", "C1", SYM, side, qty, limit, USDJPY)


def exposure(*positions: tuple[str, int]) -> ExposureSnapshot:
    """A snapshot where each LP has the given net position in lots."""
    ledger = ExposureLedger(INSTRUMENTS)
    for lp, lots in positions:
        side = Side.BUY if lots > 0 else Side.SELL
        ledger.apply_fill(lp, "someone", SYM, side, abs(lots), 150_000)
    return ledger.snapshot(FixedPrices({}))


FLAT = exposure()


def route(
    book: BookSnapshot,
    req: RouteRequest,
    exp: ExposureSnapshot = FLAT,
    limits: RoutingLimits = LIMITS,
    excluded: frozenset[str] = frozenset(),
) -> RoutePlan:
    plan = POLICY.route(req, book, exp, limits, excluded)
    assert plan.allocated + plan.remainder == req.qty
    return plan


# --- price ----------------------------------------------------------------------


def test_a_buy_goes_to_the_cheapest_ask_and_a_sell_to_the_highest_bid() -> None:
    book = snapshot_of(
        quote("A", SYM, bids=[(149_990, 50)], asks=[(150_002, 50)]),
        quote("B", SYM, bids=[(149_995, 50)], asks=[(150_001, 50)]),
        quote("C", SYM, bids=[(149_993, 50)], asks=[(150_003, 50)]),
    )
    assert route(book, request(Side.BUY, 20)) == RoutePlan((ChildAllocation("B", 20, 150_001),), 0)
    assert route(book, request(Side.SELL, 20)) == RoutePlan((ChildAllocation("B", 20, 149_995),), 0)


def test_an_order_bigger_than_the_top_level_splits_across_lps_and_levels() -> None:
    book = snapshot_of(
        quote("A", SYM, asks=[(150_000, 5), (150_001, 5), (150_005, 50)]),
        quote("B", SYM, asks=[(150_000, 3), (150_002, 10)]),
    )
    # 5 @ 150000 (A, larger first at equal price), 3 @ 150000 (B),
    # 5 @ 150001 (A), 2 @ 150002 (B)
    plan = route(book, request(Side.BUY, 15))
    assert plan == RoutePlan(
        (ChildAllocation("A", 10, 150_001), ChildAllocation("B", 5, 150_002)), 0
    )
    # what the plan pays is the book's VWAP
    paid = 5 * 150_000 + 3 * 150_000 + 5 * 150_001 + 2 * 150_002
    assert book.sweep(Side.BUY, 15) == (15, paid)


def test_a_market_order_takes_the_whole_book_and_reports_the_rest() -> None:
    book = snapshot_of(
        quote("A", SYM, bids=[(149_990, 5), (149_900, 5)]),
        quote("B", SYM, bids=[(149_000, 1)]),
    )
    plan = route(book, request(Side.SELL, 20))
    assert plan.children == (ChildAllocation("A", 10, 149_900), ChildAllocation("B", 1, 149_000))
    assert plan.remainder == 9
    assert plan.reason == INSUFFICIENT_LIQUIDITY


def test_no_level_worse_than_the_limit_price_is_taken() -> None:
    book = snapshot_of(
        quote("A", SYM, asks=[(150_000, 5), (150_003, 5)]),
        quote("B", SYM, asks=[(150_002, 5)]),
    )
    plan = route(book, request(Side.BUY, 12, limit=150_002))
    assert plan.children == (ChildAllocation("A", 5, 150_000), ChildAllocation("B", 5, 150_002))
    assert plan.remainder == 2
    assert plan.reason == LIMIT_PRICE_REACHED
    sell = snapshot_of(quote("A", SYM, bids=[(149_999, 5), (149_997, 5)]))
    assert route(sell, request(Side.SELL, 8, limit=149_998)) == RoutePlan(
        (ChildAllocation("A", 5, 149_999),), 3, LIMIT_PRICE_REACHED
    )
    assert route(sell, request(Side.SELL, 8, limit=150_000)) == RoutePlan(
        (), 8, LIMIT_PRICE_REACHED
    )


def test_an_empty_side_is_no_liquidity() -> None:
    book = snapshot_of(quote("A", SYM, bids=[(149_999, 5)]))
    assert route(book, request(Side.BUY, 1)) == RoutePlan((), 1, NO_LIQUIDITY)


# --- soft limit -----------------------------------------------------------------

SOFT_BOOK = snapshot_of(
    quote("A", SYM, asks=[(150_000, 50)]),
    quote("B", SYM, asks=[(150_003, 50)]),
)


def test_below_the_soft_limit_the_best_price_wins() -> None:
    # A at 100 lots = 100,000 USD: at the soft limit, no penalty yet
    plan = route(SOFT_BOOK, request(Side.BUY, 20), exposure(("A", 100)))
    assert plan.children == (ChildAllocation("A", 20, 150_000),)


def test_past_the_soft_limit_flow_moves_to_another_lp_before_the_hard_limit() -> None:
    limits = LIMITS.lps["A"]
    # 120 lots = 120,000 USD: 20% of the way to the hard limit -> 2 ticks;
    # A ranks at 150002, still better than B's 150003
    assert limits.penalty_ticks(Decimal(120_000)) == 2
    plan = route(SOFT_BOOK, request(Side.BUY, 20), exposure(("A", 120)))
    assert plan.children == (ChildAllocation("A", 20, 150_000),)
    # 150 lots = 150,000 USD, half way -> 5 ticks: A ranks at 150005, B wins,
    # although A is 50,000 USD short of its hard limit
    assert limits.penalty_ticks(Decimal(150_000)) == 5
    plan = route(SOFT_BOOK, request(Side.BUY, 20), exposure(("A", 150)))
    assert plan.children == (ChildAllocation("B", 20, 150_003),)
    # the child's limit is B's real price, and A is still used for what B lacks
    plan = route(SOFT_BOOK, request(Side.BUY, 60), exposure(("A", 150)))
    assert plan.children == (ChildAllocation("B", 50, 150_003), ChildAllocation("A", 10, 150_000))


def test_the_penalty_grows_linearly_and_rounds_up() -> None:
    limits = lp_limits(soft=100_000, hard=200_000, penalty=10)
    assert limits.penalty_ticks(Decimal(100_000)) == 0
    assert limits.penalty_ticks(Decimal("100000.01")) == 1
    assert limits.penalty_ticks(Decimal(110_000)) == 1
    assert limits.penalty_ticks(Decimal(110_001)) == 2
    assert limits.penalty_ticks(Decimal(199_999)) == 10
    assert limits.penalty_ticks(Decimal(200_000)) == 10
    assert limits.penalty_ticks(Decimal(900_000)) == 10
    assert lp_limits(penalty=0).penalty_ticks(Decimal(150_000)) == 0


def test_a_child_that_reduces_the_lp_position_is_not_penalised() -> None:
    # A is short 150 lots: a client BUY (we buy from A) brings it back to
    # flat, so A's 150000 is taken as quoted
    plan = route(SOFT_BOOK, request(Side.BUY, 20), exposure(("A", -150)))
    assert plan.children == (ChildAllocation("A", 20, 150_000),)
    # the same position on a SELL would extend it: penalised, B's bid wins
    bids = snapshot_of(
        quote("A", SYM, bids=[(150_003, 50)]),
        quote("B", SYM, bids=[(150_000, 50)]),
    )
    plan = route(bids, request(Side.SELL, 20), exposure(("A", -150)))
    assert plan.children == (ChildAllocation("B", 20, 150_000),)


def test_only_the_reducing_part_escapes_the_penalty() -> None:
    # A is short 10 lots: 10 lots at A's price reduce, the rest would open a
    # long past the soft limit (gross 150,000 USD counting both symbols)
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("A", "x", SYM, Side.SELL, 10, 150_000)
    ledger.apply_fill("A", "x", "EUR/JPY", Side.BUY, 140, 160_000)
    exp = ledger.snapshot(FixedPrices({"EUR/JPY": 150_000, SYM: 150_000}))
    assert exp.gross_usd("A") == Decimal(150_000)
    plan = route(SOFT_BOOK, request(Side.BUY, 30), exp)
    assert plan.children == (ChildAllocation("A", 10, 150_000), ChildAllocation("B", 20, 150_003))


# --- hard limit -----------------------------------------------------------------

HARD_ONLY = RoutingLimits({lp: lp_limits(200_000, 200_000, 0) for lp in ("A", "B")})


def test_a_child_is_capped_at_the_hard_limit() -> None:
    # A at 190 lots has room for 10 more
    plan = route(SOFT_BOOK, request(Side.BUY, 30), exposure(("A", 190)), HARD_ONLY)
    assert plan.children == (ChildAllocation("A", 10, 150_000), ChildAllocation("B", 20, 150_003))
    plan = route(
        SOFT_BOOK, request(Side.BUY, 30), exposure(("A", 190)), HARD_ONLY, frozenset({"B"})
    )
    assert plan == RoutePlan((ChildAllocation("A", 10, 150_000),), 20, HARD_LIMIT_REACHED)


def test_an_lp_at_its_hard_limit_is_skipped() -> None:
    plan = route(SOFT_BOOK, request(Side.BUY, 30), exposure(("A", 200)), HARD_ONLY)
    assert plan.children == (ChildAllocation("B", 30, 150_003),)
    plan = route(SOFT_BOOK, request(Side.BUY, 30), exposure(("A", 200), ("B", 250)), HARD_ONLY)
    assert plan == RoutePlan((), 30, ALL_AT_HARD_LIMIT)


def test_an_lp_past_its_hard_limit_may_still_be_reduced() -> None:
    # A is long 250 lots (the limit was lowered under it): a client SELL
    # (we sell to A) reduces it, even through flat while the hard limit holds
    bids = snapshot_of(quote("A", SYM, bids=[(150_000, 1000)]))
    exp = exposure(("A", 250))
    assert route(bids, request(Side.SELL, 100), exp, HARD_ONLY).children == (
        ChildAllocation("A", 100, 150_000),
    )
    # 450 lots leave A short 200 lots = 200,000 USD, exactly the limit
    plan = route(bids, request(Side.SELL, 600), exp, HARD_ONLY)
    assert plan == RoutePlan((ChildAllocation("A", 450, 150_000),), 150, HARD_LIMIT_REACHED)
    # the other way it only adds
    asks = snapshot_of(quote("A", SYM, asks=[(150_000, 1000)]))
    assert route(asks, request(Side.BUY, 1), exp, HARD_ONLY) == RoutePlan((), 1, ALL_AT_HARD_LIMIT)


def test_lots_in_flight_use_up_what_may_reduce_past_the_hard_limit() -> None:
    # A is long 250 lots, past its limit of 200; a child selling it 450
    # lots (to short 200, the limit) is in flight: a second sell must not
    # count the same 250 reducing lots again, or both filled leave A short
    # 450 lots, more than twice the limit
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("A", "someone", SYM, Side.BUY, 250, 150_000)
    ledger.reserve("A", SYM, 450)
    bids = snapshot_of(quote("A", SYM, bids=[(150_000, 1000)]))
    ledger.mark(FixedPrices({}))
    for exp in (ledger.snapshot(FixedPrices({})), ledger.current()):
        assert route(bids, request(Side.SELL, 600), exp, HARD_ONLY) == RoutePlan(
            (), 600, ALL_AT_HARD_LIMIT
        )
    # the child ends unfilled: the 250 lots may reduce again, and 200 more
    ledger.reserve("A", SYM, -450)
    assert route(bids, request(Side.SELL, 600), ledger.current(), HARD_ONLY) == RoutePlan(
        (ChildAllocation("A", 450, 150_000),), 150, HARD_LIMIT_REACHED
    )


# --- which LPs ------------------------------------------------------------------


def test_excluded_disabled_and_unconfigured_lps_get_nothing() -> None:
    book = snapshot_of(
        quote("A", SYM, asks=[(150_000, 5)]),
        quote("B", SYM, asks=[(150_001, 5)]),
        quote("C", SYM, asks=[(150_002, 5)]),
        quote("D", SYM, asks=[(149_000, 5)]),
    )
    limits = RoutingLimits(
        {
            "A": lp_limits(),
            "B": LpLimits(Decimal(100_000), Decimal(200_000), enabled=False),
            "C": lp_limits(),
        }
    )
    assert limits.enabled_lps == frozenset({"A", "C"})
    plan = route(book, request(Side.BUY, 12), limits=limits, excluded=frozenset({"A"}))
    assert plan == RoutePlan((ChildAllocation("C", 5, 150_002),), 7, INSUFFICIENT_LIQUIDITY)
    plan = route(book, request(Side.BUY, 12), limits=limits, excluded=frozenset({"A", "C"}))
    assert plan == RoutePlan((), 12, NO_LIQUIDITY)


def test_max_child_orders_caps_the_number_of_lps() -> None:
    book = snapshot_of(
        quote("A", SYM, asks=[(150_000, 5), (150_010, 5)]),
        quote("B", SYM, asks=[(150_001, 5)]),
        quote("C", SYM, asks=[(150_002, 5)]),
    )
    limits = RoutingLimits(LIMITS.lps, max_child_orders=2)
    plan = route(book, request(Side.BUY, 20), limits=limits)
    assert plan.children == (ChildAllocation("A", 10, 150_010), ChildAllocation("B", 5, 150_001))
    assert plan.remainder == 5
    assert plan.reason == "; ".join([MAX_CHILD_ORDERS_REACHED])
    plan = route(book, request(Side.BUY, 20, limit=150_002), limits=limits)
    assert plan.reason == f"{LIMIT_PRICE_REACHED}; {MAX_CHILD_ORDERS_REACHED}"


def test_without_a_usd_value_only_reducing_flow_is_routed() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("A", "x", "EUR/GBP", Side.SELL, 10, 85_000)  # no GBP/USD price
    exp = ledger.snapshot(FixedPrices({}))
    book = snapshot_of(quote("A", "EUR/GBP", bids=[(85_000, 50)], asks=[(85_001, 50)]))
    eurgbp = INSTRUMENTS["EUR/GBP"]
    buy = RouteRequest("P1", "C1", "EUR/GBP", Side.BUY, 30, None, eurgbp)
    limits = RoutingLimits({"A": lp_limits()})
    assert POLICY.route(buy, book, exp, limits) == RoutePlan(
        (ChildAllocation("A", 10, 85_001),), 20, NO_USD_VALUATION
    )
    sell = RouteRequest("P1", "C1", "EUR/GBP", Side.SELL, 30, None, eurgbp)
    assert POLICY.route(sell, book, exp, limits) == RoutePlan((), 30, NO_USD_VALUATION)


# --- values and registry --------------------------------------------------------


def test_a_book_of_another_symbol_is_refused() -> None:
    book = snapshot_of(quote("A", "EUR/USD", asks=[(110_000, 5)]))
    with pytest.raises(ValueError, match="book of EUR/USD"):
        POLICY.route(request(Side.BUY, 1), book, FLAT, LIMITS)


def test_requests_and_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        request(Side.BUY, 0)
    with pytest.raises(ValueError, match="instrument USD/JPY given for EUR/USD"):
        RouteRequest("P1", "C1", "EUR/USD", Side.BUY, 1, None, USDJPY)
    with pytest.raises(ValueError, match="below soft_limit_usd"):
        lp_limits(soft=10, hard=5)
    with pytest.raises(ValueError, match="negative"):
        lp_limits(soft=-1)
    with pytest.raises(ValueError, match="negative"):
        lp_limits(penalty=-1)
    with pytest.raises(ValueError, match="at least 1"):
        RoutingLimits({}, max_child_orders=0)


def test_routing_limits_keep_their_own_read_only_copy() -> None:
    source = {"A": lp_limits()}
    limits = RoutingLimits(source)
    source["B"] = lp_limits()
    assert set(limits.lps) == {"A"}
    with pytest.raises(TypeError):
        limits.lps["B"] = lp_limits()  # type: ignore[index]


def test_policies_are_built_by_name() -> None:
    policy = build_policy("best_price_exposure_aware")
    assert isinstance(policy, BestPriceExposureAware)
    assert POLICIES["best_price_exposure_aware"] is BestPriceExposureAware
    with pytest.raises(PolicyConfigError, match=r"unknown routing policy 'fastest'.*known: best"):
        build_policy("fastest")
    with pytest.raises(PolicyConfigError, match="best_price_exposure_aware"):
        build_policy("best_price_exposure_aware", aggressiveness=3)


def test_a_policy_name_is_registered_once() -> None:
    class Impostor(BestPriceExposureAware):
        pass

    with pytest.raises(PolicyConfigError, match="already registered"):
        register_policy(Impostor)
    assert POLICIES["best_price_exposure_aware"] is BestPriceExposureAware


def test_the_reason_names_an_lp_at_its_hard_limit_whether_or_not_another_is_penalised() -> None:
    # A offers 100 lots at the best price but is at its hard limit (200 lots
    # long); B offers 5 lots.  What is left is left because of A's hard
    # limit, whether B is flat or past its soft limit (penalised).
    book = snapshot_of(
        quote("A", SYM, asks=[(150_000, 100)]),
        quote("B", SYM, asks=[(150_003, 5)]),
    )
    flat_b = route(book, request(Side.BUY, 30), exposure(("A", 200)))
    assert flat_b == RoutePlan((ChildAllocation("B", 5, 150_003),), 25, HARD_LIMIT_REACHED)
    penalised_b = route(book, request(Side.BUY, 30), exposure(("A", 200), ("B", 150)))
    assert penalised_b == RoutePlan((ChildAllocation("B", 5, 150_003),), 25, HARD_LIMIT_REACHED)
