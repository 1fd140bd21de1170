"""Settings of the simulated LP and the market model behind it."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from lp_test_kit import INSTRUMENTS

from lp_adapters.registry import create_adapter
from lp_adapters.simulated import MarketModel, SimulatedLp, SimulatedLpSettings
from router.model import LpEvent

FLOAT_MESSAGE = 'write decimals as strings, e.g. "0.00001" (floats are inexact)'


def sink(event: LpEvent) -> None:
    raise AssertionError(f"unexpected event {event!r}")


def build(**settings: Any) -> SimulatedLp:
    """A simulated LP built through the registry from raw settings."""
    lp = create_adapter("simulated", "lp-a", INSTRUMENTS, sink, settings)
    assert isinstance(lp, SimulatedLp)
    return lp


def shared(market: MarketModel, **settings: Any) -> SimulatedLp:
    """A simulated LP quoting around a shared market."""
    typed = msgspec.convert(settings, SimulatedLpSettings)
    return SimulatedLp("lp-a", INSTRUMENTS, sink, typed, market=market)


def test_defaults() -> None:
    lp = build()
    assert lp.config == SimulatedLpSettings(
        seed=0,
        spread_ticks=2,
        depth_levels=5,
        level_qty_lots=10,
        level_step_ticks=1,
        quote_interval_ms=100,
        latency_ms=0,
        reject_probability=0.0,
        partial_fill_probability=0.0,
        symbols=("EUR/USD", "USD/JPY", "XAU/USD", "BTC/USD"),
        start_mid={},
        walk_ticks=1,
        steps_market=None,
    )
    assert lp.symbols == ("EUR/USD", "USD/JPY", "XAU/USD", "BTC/USD")
    # Start mids by asset class: FX 1.1, metal 2000, crypto 30000.
    assert {s: lp.market.mid(s) for s in lp.symbols} == {
        "EUR/USD": 110_000,
        "USD/JPY": 1_100,
        "XAU/USD": 200_000,
        "BTC/USD": 3_000_000,
    }


def test_start_mid_and_symbols_are_honoured() -> None:
    lp = build(symbols=["USD/JPY", "EUR/USD"], start_mid={"USD/JPY": "151.250", "EUR/USD": "1.08"})
    assert lp.symbols == ("USD/JPY", "EUR/USD")
    assert lp.config.start_mid == {"USD/JPY": Decimal("151.250"), "EUR/USD": Decimal("1.08")}
    assert lp.market.mid("USD/JPY") == 151_250
    assert lp.market.mid("EUR/USD") == 108_000
    assert lp.market.symbols == ("EUR/USD", "USD/JPY")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"colour": "red"}, "colour: unknown field"),
        ({"latency_ms": -1}, "latency_ms: must be >= 0"),
        ({"spread_ticks": 0}, "spread_ticks: must be >= 1"),
        ({"depth_levels": "5"}, "depth_levels: expected int, got str"),
        ({"quote_interval_ms": 0}, "quote_interval_ms: must be >= 1"),
        ({"level_qty_lots": True}, "level_qty_lots: expected int, got bool"),
        ({"reject_probability": 1.5}, "reject_probability: must be <= 1.0"),
        ({"partial_fill_probability": -0.1}, "partial_fill_probability: must be >= 0.0"),
        ({"steps_market": "yes"}, "steps_market: expected bool, got str"),
        ({"symbols": []}, "symbols: must not be empty"),
        ({"symbols": "EUR/USD"}, "symbols: expected array, got str"),
        (
            {"symbols": ["EUR/USD", "EUR/USD"]},
            "symbols[1]: duplicate symbol EUR/USD (also symbols[0])",
        ),
        ({"symbols": ["GBP/USD"]}, "symbols[0]: no such instrument GBP/USD"),
        ({"start_mid": {"EUR/USD": 1.1}}, f'start_mid."EUR/USD": {FLOAT_MESSAGE}'),
        (
            {"start_mid": {"EUR/USD": "1.100005"}},
            'start_mid."EUR/USD": must be a multiple of the tick size 0.00001',
        ),
        (
            {"start_mid": {"EUR/USD": "one"}},
            'start_mid."EUR/USD": expected a decimal number, got "one"',
        ),
        (
            {"start_mid": {"EUR/USD": "NaN"}},
            'start_mid."EUR/USD": expected a decimal number, got "NaN"',
        ),
        ({"start_mid": {"EUR/USD": "-1.1"}}, 'start_mid."EUR/USD": must be > 0'),
        ({"start_mid": {"EUR/USD": "0"}}, 'start_mid."EUR/USD": must be > 0'),
        ({"start_mid": {"GBP/USD": "1.3"}}, 'start_mid."GBP/USD": no such instrument GBP/USD'),
        (
            {"symbols": ["EUR/USD"], "start_mid": {"XAU/USD": "2000"}},
            'start_mid."XAU/USD": XAU/USD is not among the symbols this LP quotes',
        ),
        (
            {"spread_ticks": 0, "symbols": ["GBP/USD"]},
            "spread_ticks: must be >= 1",
        ),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=r"^LP 'lp-a': invalid settings: ") as info:
        build(**settings)
    assert str(info.value).removeprefix("LP 'lp-a': invalid settings: ") == message


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValueError, match="invalid settings") as info:
        build(symbols=["EUR/USD", "GBP/USD"], start_mid={"EUR/USD": "1.100005"})
    assert str(info.value).split(": ", 2)[2].split("; ") == [
        "symbols[1]: no such instrument GBP/USD",
        'start_mid."EUR/USD": must be a multiple of the tick size 0.00001',
    ]


def test_an_lp_built_directly_checks_its_settings_against_its_instruments() -> None:
    typed = SimulatedLpSettings(symbols=("GBP/USD",))
    with pytest.raises(ValueError, match=r"symbols\[0\]: no such instrument GBP/USD"):
        SimulatedLp("lp-a", INSTRUMENTS, sink, typed)
    with pytest.raises(ValueError, match="symbols: no instrument to quote"):
        SimulatedLp("lp-a", {}, sink, SimulatedLpSettings())


def test_a_shared_market_brings_its_own_walk() -> None:
    market = MarketModel({"EUR/USD": INSTRUMENTS["EUR/USD"]}, seed=4)
    lp = shared(market)
    assert lp.market is market
    assert lp.symbols == ("EUR/USD",)
    with pytest.raises(ValueError, match="start_mid, walk_ticks cannot be set with a shared"):
        shared(market, start_mid={"EUR/USD": "1.2"}, walk_ticks=2)
    with pytest.raises(ValueError, match=r"has no mid for: \['XAU/USD'\]"):
        shared(market, symbols=["EUR/USD", "XAU/USD"])
    other = MarketModel({"XAU/USD": INSTRUMENTS["XAU/USD"]})
    with pytest.raises(ValueError, match="no instrument to quote"):
        SimulatedLp(
            "lp-a", {"EUR/USD": INSTRUMENTS["EUR/USD"]}, sink, SimulatedLpSettings(), market=other
        )


def test_the_walk_depends_only_on_the_seed() -> None:
    def path(seed: int, walk: int) -> list[tuple[int, ...]]:
        market = MarketModel(INSTRUMENTS, seed=seed, walk_ticks=walk)
        out = []
        for _ in range(200):
            market.step()
            out.append(tuple(market.mid(s) for s in market.symbols))
        return out

    assert path(1, 3) == path(1, 3)
    assert path(1, 3) != path(2, 3)
    moves = path(1, 3)
    for before, after in itertools.pairwise(moves):
        assert all(abs(a - b) <= 3 for a, b in zip(before, after, strict=True))
    assert len(set(path(1, 0))) == 1


def test_the_mid_never_falls_below_one_tick() -> None:
    market = MarketModel(
        {"EUR/USD": INSTRUMENTS["EUR/USD"]}, seed=0, start_mids={"EUR/USD": "0.00002"}, walk_ticks=5
    )
    lows = set()
    for _ in range(500):
        market.step()
        lows.add(market.mid("EUR/USD"))
    assert min(lows) == 1
    assert market.steps == 500


def test_set_mid() -> None:
    market = MarketModel({"EUR/USD": INSTRUMENTS["EUR/USD"]})
    market.set_mid("EUR/USD", 123_456)
    assert market.mid("EUR/USD") == 123_456
    with pytest.raises(KeyError, match="XAU/USD"):
        market.set_mid("XAU/USD", 1)
    with pytest.raises(ValueError, match="at least one tick"):
        market.set_mid("EUR/USD", 0)
    with pytest.raises(ValueError, match="walk_ticks must be >= 0"):
        MarketModel(INSTRUMENTS, walk_ticks=-1)
    with pytest.raises(ValueError, match="does not have"):
        MarketModel({"EUR/USD": INSTRUMENTS["EUR/USD"]}, start_mids={"XAU/USD": "2000"})
    with pytest.raises(TypeError, match="must be a decimal string, got float"):
        MarketModel({"EUR/USD": INSTRUMENTS["EUR/USD"]}, start_mids={"EUR/USD": 1.1})  # type: ignore[dict-item]
