"""The ``[margin]`` and ``[accounts]`` sections: what the config refuses, by
path, and what the rules make of a good one."""

from __future__ import annotations

import pytest
from test_config_order_flow import LP, SESSION, errors_of, instrument

from config import default_config_path, load_config, parse_config
from gateway.orderflow.rules import build_rules

BASE = (
    instrument("EUR/USD")
    + instrument("GBP/USD")
    + instrument("BTC/USD", asset_class='"crypto"', tick_size='"0.01"', lot_size='"0.001"')
    + instrument("XAU/USD", asset_class='"metal"', tick_size='"0.01"', lot_size='"1"')
    + LP
    + SESSION
    + 'Application = "orders"\n'
)
GROUPS = """
[[margin.groups]]
name = "EUR"
symbols = ["EUR/USD"]
scan_pct = "0.0333"

[[margin.groups]]
name = "GBP"
symbols = ["GBP/USD"]
scan_pct = "0.0333"

[[margin.groups]]
name = "BTC"
symbols = ["BTC/USD"]
scan_usd = "15000"
"""


def spread(name: str, priority: int, *legs: tuple[str, str, str], rate: str = "0.5") -> str:
    written = ", ".join(f'{{ group = "{g}", ratio = "{r}", side = "{s}" }}' for g, r, s in legs)
    return (
        f'\n[[margin.spreads]]\nname = "{name}"\npriority = {priority}\nrate = "{rate}"\n'
        f"legs = [{written}]\n"
    )


def test_a_good_table_becomes_the_rules_parameters() -> None:
    text = (
        BASE
        + '[margin]\nversion = "v7"\n'
        + GROUPS
        + spread("EUR-GBP", 1, ("EUR", "1", "A"), ("GBP", "0.85", "B"))
        + spread("EUR-BTC", 5, ("EUR", "27650", "A"), ("BTC", "1", "B"), rate="0.2")
        + '\n[accounts.CLIENT1]\ncollateral_usd = "100000"\ninitial_factor = "1.5"\n'
    )
    config = parse_config(text)
    rules = build_rules(config, {i.symbol: i.to_instrument() for i in config.instruments}, [], 1)
    params = rules.margin
    assert params is not None
    assert params.version == "v7"
    assert params.group_of == {"EUR/USD": "EUR", "GBP/USD": "GBP", "BTC/USD": "BTC"}
    assert [s.name for s in params.ordered] == ["EUR-GBP", "EUR-BTC"]
    assert [s.name for s in params.siloed] == ["EUR-GBP"]  # EUR-BTC crosses asset classes
    assert params.by_name["BTC"].scan_usd == 15000
    assert rules.accounts["CLIENT1"].initial_factor == 1.5


def test_without_a_version_the_configs_own_names_the_parameters() -> None:
    config = parse_config(BASE + GROUPS)
    rules = build_rules(config, {i.symbol: i.to_instrument() for i in config.instruments}, [], 3)
    assert rules.margin is not None
    assert rules.margin.version == rules.version  # "3-<hash>"


def test_no_groups_no_margin() -> None:
    config = parse_config(BASE)
    assert build_rules(config, {}, [], 1).margin is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[[margin.groups]]\nname = "X"\nsymbols = ["EUR/USD"]\n',
            "margin.groups[0]: give exactly one of scan_pct and scan_usd",
        ),
        (
            '[[margin.groups]]\nname = "X"\nsymbols = ["EUR/USD"]\nscan_pct = "0.1"\n'
            'scan_usd = "10"\n',
            "margin.groups[0]: give exactly one of scan_pct and scan_usd",
        ),
        (
            '[[margin.groups]]\nname = "X"\nsymbols = ["DOGE/USD"]\nscan_pct = "0.1"\n',
            "margin.groups[0].symbols[0]: no such instrument DOGE/USD",
        ),
        (
            '[[margin.groups]]\nname = "X"\nsymbols = ["EUR/USD", "BTC/USD"]\nscan_pct = "0.1"\n',
            "margin.groups[0].symbols: instruments of several asset classes (crypto, fx)",
        ),
        (
            GROUPS + '[[margin.groups]]\nname = "E2"\nsymbols = ["EUR/USD"]\nscan_pct = "0.1"\n',
            "margin.groups[3].symbols[0]: EUR/USD is already in group EUR",
        ),
        (
            '[[margin.groups]]\nname = "X"\nsymbols = ["EUR/USD"]\nscan_pct = "1.5"\n',
            "margin.groups[0].scan_pct: must be <= 1",
        ),
        (
            GROUPS + spread("S", 1, ("EUR", "1", "A"), ("ZZZ", "1", "B")),
            "margin.spreads[0].legs[1].group: no such margin group ZZZ",
        ),
        (
            GROUPS + spread("S", 1, ("EUR", "1", "A"), ("EUR", "1", "B")),
            "margin.spreads[0].legs[1].group: group EUR is in two legs",
        ),
        (
            GROUPS + spread("S", 1, ("EUR", "1", "A"), ("GBP", "1", "B"), rate="1.2"),
            "margin.spreads[0].rate: must be <= 1",
        ),
        (
            GROUPS
            + spread("CROSS", 1, ("EUR", "1", "A"), ("BTC", "1", "B"))
            + spread("FX", 2, ("EUR", "1", "A"), ("GBP", "1", "B")),
            "margin.spreads[1].priority: a spread within one asset class must come before every "
            "cross-asset spread (margin.spreads[0] has priority 1)",
        ),
        (
            '[accounts.NOBODY]\ncollateral_usd = "1"\n',
            "accounts.NOBODY: no such client session",
        ),
        (
            '[accounts.CLIENT1]\ncollateral_usd = "1"\nmargin_call_level = "0.5"\n'
            'stop_out_level = "0.8"\n',
            "accounts.CLIENT1.stop_out_level: 0.8 must be below margin_call_level 0.5",
        ),
        (
            '[accounts.CLIENT1]\ncollateral_usd = "-5"\n',
            "accounts.CLIENT1.collateral_usd: must be >= 0",
        ),
    ],
)
def test_a_bad_table_is_refused_by_path(extra: str, expected: str) -> None:
    text = BASE + ("[margin]\n" if "[[margin" in extra else "") + extra
    assert expected in errors_of(text)


def test_a_stop_out_level_that_an_accepted_order_reaches_is_refused() -> None:
    """The margin check accepts an order while equity covers the margin
    times initial_factor: it may leave the level (equity / margin) at
    initial_factor.  A stop-out level at or above it would have the house
    close at market the positions it has just let the client open."""
    accounts = '[accounts.CLIENT1]\ncollateral_usd = "1000"\nmargin_call_level = "1.5"\n'
    text = BASE + "[margin]\n" + GROUPS + accounts
    assert errors_of(text + 'stop_out_level = "1.2"\n') == [
        "accounts.CLIENT1.stop_out_level: 1.2 must be below initial_factor 1 (an order the"
        " margin check accepts may leave the margin level there)"
    ]
    assert errors_of(text + 'stop_out_level = "1"\n')  # at it: the same
    parse_config(text + 'stop_out_level = "1.2"\ninitial_factor = "1.25"\n')


def test_the_default_config_margins_every_instrument_and_every_client() -> None:
    config = load_config(default_config_path())
    symbols = {i.symbol for i in config.instruments}
    in_groups = {s for g in config.margin.groups for s in g.symbols}
    assert in_groups == symbols
    assert set(config.accounts) == {"CLIENT1", "CLIENT2", "CLIENT3"}
    rules = build_rules(config, {i.symbol: i.to_instrument() for i in config.instruments}, [], 1)
    assert rules.margin is not None
    crossing = [s.name for s in rules.margin.ordered if s not in rules.margin.siloed]
    assert crossing == ["EUR-BTC"]  # one documented cross-asset spread


@pytest.mark.parametrize("margin", ["", '[margin]\nversion = "v1"\n'])
def test_accounts_without_margin_groups_are_refused_in_one_line(margin: str) -> None:
    """Without groups margin is off: accounts would be read and then not
    margined at all (no margin check, call or stop-out), without a word."""
    text = BASE + margin + '[accounts.CLIENT1]\ncollateral_usd = "1000"\n'
    assert errors_of(text) == [
        "accounts: no client is margined without [[margin.groups]] (margin is off):"
        " add the groups, or remove [accounts]"
    ]
