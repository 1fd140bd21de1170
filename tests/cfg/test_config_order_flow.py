"""Tests for the order-flow sections of the configuration: instruments, LPs, routing, risk."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec
import pytest

from config import (
    ClientRiskSettings,
    ConfigError,
    InstrumentSettings,
    LpSettings,
    RiskSettings,
    RoutingSettings,
    default_config_path,
    load_config,
    parse_config,
    validate_raw,
)
from config.loader import validate_value
from config.schema import PositiveDecimal, decimal_limits
from gateway.orderflow.rules import client_limits
from lp_adapters.registry import adapter_class, create_adapter, registered_kinds
from lp_adapters.simulated import SimulatedLp, SimulatedLpSettings
from matcher.engine import NewOrder
from risk.limits import RiskBreach, check
from router.model import AssetClass, Instrument, OrdType, Side, TimeInForce

FLOAT_MESSAGE = 'write decimals as strings, e.g. "0.00001" (floats are inexact)'

SESSION = """
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
"""

ECHO_SESSION = SESSION + 'Application = "echo"\n'

LP = """
[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"
"""


def instrument(symbol: str = "EUR/USD", /, **fields: str) -> str:
    """An ``[[instruments]]`` table for ``symbol`` on the EUR/USD grid, with ``fields``
    replaced or added (values are TOML literals)."""
    values = {
        "symbol": f'"{symbol}"',
        "asset_class": '"fx"',
        "tick_size": '"0.00001"',
        "lot_size": '"1000"',
        "min_qty": '"1000"',
        "max_qty": '"1000000"',
        "quote_currency": '"USD"',
        **fields,
    }
    return "\n[[instruments]]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.errors


def instrument_errors(**fields: str) -> list[str]:
    return errors_of(instrument(**fields) + LP + SESSION)


# --- decimals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ('"0.00001"', Decimal("0.00001")),
        ('"1000"', Decimal(1000)),
        ('"1e-5"', Decimal("0.00001")),
        ('"+.5"', Decimal("0.5")),
        ("1000", Decimal(1000)),
        ("1_000", Decimal(1000)),
    ],
)
def test_decimals_as_strings_or_integers(literal: str, expected: Decimal) -> None:
    cfg = parse_config(instrument(tick_size=literal) + LP + SESSION)
    tick_size = cfg.instruments[0].tick_size
    assert isinstance(tick_size, Decimal)
    assert tick_size == expected


def test_decimal_string_keeps_its_digits() -> None:
    cfg = parse_config(instrument(max_qty='"1000000.000"') + LP + SESSION)
    assert str(cfg.instruments[0].max_qty) == "1000000.000"


@pytest.mark.parametrize("literal", ["0.00001", "1000.0", "1e3", "inf", "nan"])
def test_decimals_written_as_floats_are_refused(literal: str) -> None:
    assert instrument_errors(tick_size=literal) == [f"instruments[0].tick_size: {FLOAT_MESSAGE}"]


@pytest.mark.parametrize(
    ("literal", "shown"),
    [
        ('"abc"', '"abc"'),
        ('""', '""'),
        ('"NaN"', '"NaN"'),
        ('"Infinity"', '"Infinity"'),
        ('"1_000"', '"1_000"'),
        ('" 1"', '" 1"'),
        ('"1,5"', '"1,5"'),
        ('"0x10"', '"0x10"'),
    ],
)
def test_strings_that_are_not_decimal_numbers(literal: str, shown: str) -> None:
    assert instrument_errors(tick_size=literal) == [
        f"instruments[0].tick_size: expected a decimal number, got {shown}"
    ]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("true", "expected decimal, got bool"),
        ("[1]", "expected decimal, got array"),
        ("{a = 1}", "expected decimal, got table"),
        ("1979-05-27", "expected decimal, got date"),
        ('"0"', "must be > 0"),
        ("0", "must be > 0"),
        ('"-0.00001"', "must be > 0"),
    ],
)
def test_decimal_kind_and_limit_errors(literal: str, expected: str) -> None:
    assert instrument_errors(tick_size=literal) == [f"instruments[0].tick_size: {expected}"]


class _Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ge: Annotated[Decimal, decimal_limits(ge=1)] = Decimal(1)
    lt: Annotated[Decimal, decimal_limits(lt="0.5")] = Decimal(0)
    le: Annotated[Decimal, decimal_limits(le=10)] = Decimal(0)
    optional: PositiveDecimal | None = None


def walk(raw: object) -> list[str]:
    return validate_value(raw, _Limits)[1]


def test_every_decimal_limit_is_reported() -> None:
    assert walk({"ge": "1", "lt": "0.49", "le": 10, "optional": "0.1"}) == []
    assert walk({"ge": "0.999", "lt": "0.5", "le": "10.01", "optional": "0"}) == [
        "ge: must be >= 1",
        "lt: must be < 0.5",
        "le: must be <= 10",
        "optional: must be > 0",
    ]


def test_optional_decimals() -> None:
    assert walk({"optional": None}) == []
    assert walk({"optional": 0.5}) == [f"optional: {FLOAT_MESSAGE}"]
    assert walk({"optional": "x"}) == ['optional: expected a decimal number, got "x"']
    assert walk({"optional": False}) == ["optional: expected decimal, got bool"]


def test_decimal_objects_validate_like_strings() -> None:
    assert walk({"ge": Decimal("1.5"), "optional": Decimal("0.1")}) == []
    assert walk({"ge": Decimal("NaN")}) == ['ge: expected a decimal number, got "NaN"']
    assert walk({"ge": Decimal("0")}) == ["ge: must be >= 1"]


# --- instruments ------------------------------------------------------------------------


def test_instrument_fields_and_conversion() -> None:
    cfg = parse_config(
        instrument("BTC/USD", asset_class='"crypto"', tick_size='"0.01"', lot_size='"0.001"')
        + LP
        + SESSION
    )
    [settings] = cfg.instruments
    assert settings.usd_conversion == "quote"
    assert settings.to_instrument() == Instrument(
        symbol="BTC/USD",
        asset_class=AssetClass.CRYPTO,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"),
        min_lots=1_000_000,
        max_lots=1_000_000_000,
        quote_currency="USD",
        usd_conversion="quote",
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"symbol": '""'}, "instruments[0].symbol: must not be empty"),
        (
            {"asset_class": '"stock"'},
            'instruments[0].asset_class: must be one of "fx", "crypto", "metal", "index", '
            '"commodity"',
        ),
        (
            {"quote_currency": '"usd"'},
            "instruments[0].quote_currency: must be a 3-letter upper-case currency code, e.g. USD",
        ),
        ({"usd_conversion": '""'}, "instruments[0].usd_conversion: must not be empty"),
        ({"lot_size": '"0"'}, "instruments[0].lot_size: must be > 0"),
        ({"min_qty": '"-1000"'}, "instruments[0].min_qty: must be > 0"),
        ({"max_qty": "1e6"}, f"instruments[0].max_qty: {FLOAT_MESSAGE}"),
        ({"tickSize": '"1"'}, "instruments[0].tickSize: unknown field"),
    ],
)
def test_instrument_field_errors(fields: dict[str, str], expected: str) -> None:
    assert instrument_errors(**fields) == [expected]


def test_missing_instrument_fields_are_listed() -> None:
    assert errors_of('[[instruments]]\nsymbol = "EUR/USD"\n' + LP + SESSION) == [
        "instruments[0].asset_class: required field missing",
        "instruments[0].tick_size: required field missing",
        "instruments[0].lot_size: required field missing",
        "instruments[0].min_qty: required field missing",
        "instruments[0].max_qty: required field missing",
        "instruments[0].quote_currency: required field missing",
    ]


def test_min_qty_must_not_exceed_max_qty() -> None:
    assert instrument_errors(min_qty='"2000"', max_qty='"1000"') == [
        "instruments[0].min_qty: must be <= max_qty (1000)"
    ]
    cfg = parse_config(instrument(min_qty='"1000"', max_qty='"1000"') + LP + SESSION)
    assert cfg.instruments[0].to_instrument().max_lots == 1


def test_quantity_limits_must_be_whole_lots() -> None:
    assert instrument_errors(min_qty='"1500"', max_qty='"1000001"') == [
        "instruments[0].min_qty: must be a multiple of lot_size (1000)",
        "instruments[0].max_qty: must be a multiple of lot_size (1000)",
    ]
    assert instrument_errors(lot_size='"0.001"', min_qty='"0.0005"', max_qty='"1"') == [
        "instruments[0].min_qty: must be a multiple of lot_size (0.001)"
    ]


def test_huge_quantity_that_cannot_be_divided_is_not_a_multiple() -> None:
    assert instrument_errors(lot_size='"0.001"', min_qty='"1"', max_qty='"1e40"') == [
        "instruments[0].max_qty: must be a multiple of lot_size (0.001)"
    ]


def test_cross_rules_skip_invalid_quantities() -> None:
    assert instrument_errors(min_qty='"x"', lot_size="1.5") == [
        f"instruments[0].lot_size: {FLOAT_MESSAGE}",
        'instruments[0].min_qty: expected a decimal number, got "x"',
    ]


def test_duplicate_symbols_are_reported() -> None:
    text = (
        instrument("EUR/USD")
        + instrument("GBP/USD")
        + instrument("USD/JPY", quote_currency='"JPY"', usd_conversion='"base"')
        + instrument("EUR/USD")
        + instrument("GBP/USD")
        + LP
        + SESSION
    )
    assert errors_of(text) == [
        "instruments[3]: duplicate symbol EUR/USD (also instruments[0])",
        "instruments[4]: duplicate symbol GBP/USD (also instruments[1])",
    ]


def test_usd_conversion_through_another_instrument() -> None:
    text = (
        instrument("GBP/USD")
        + instrument("EUR/GBP", quote_currency='"GBP"', usd_conversion='"GBP/USD"')
        + instrument("USD/JPY", tick_size='"0.001"', quote_currency='"JPY"')
        + LP
        + SESSION
    )
    # USD/JPY left at "quote" although it is quoted in JPY.
    assert errors_of(text) == [
        'instruments[2].usd_conversion: "quote" needs quote_currency "USD", got "JPY"'
    ]
    cfg = parse_config(
        text.replace('quote_currency = "JPY"', 'quote_currency = "JPY"\nusd_conversion = "base"')
    )
    by_symbol = {i.symbol: i.to_instrument() for i in cfg.instruments}
    assert by_symbol["EUR/GBP"].usd_conversion == "GBP/USD"
    assert by_symbol["USD/JPY"].usd_conversion == "base"


def test_usd_conversion_through_an_instrument_whose_base_is_usd() -> None:
    """EUR/JPY is valued through USD/JPY (USD is its base, JPY its quote):
    the JPY of EUR/JPY's price is divided by USD/JPY's, which the exposure
    ledger and the margin accounts do; a USD-based instrument quoted in
    another currency than the cross's converts nothing for it."""
    text = (
        instrument("USD/JPY", tick_size='"0.001"', quote_currency='"JPY"', usd_conversion='"base"')
        + instrument(
            "EUR/JPY", tick_size='"0.001"', quote_currency='"JPY"', usd_conversion='"USD/JPY"'
        )
        + LP
        + SESSION
    )
    cfg = parse_config(text)
    by_symbol = {i.symbol: i.to_instrument() for i in cfg.instruments}
    assert by_symbol["EUR/JPY"].usd_conversion == "USD/JPY"
    wrong = text.replace('"EUR/JPY"', '"EUR/GBP"').replace(
        'quote_currency = "JPY"\nusd_conversion = "USD/JPY"',
        'quote_currency = "GBP"\nusd_conversion = "USD/JPY"',
    )
    assert errors_of(wrong) == [
        "instruments[1].usd_conversion: USD/JPY converts JPY to USD, "
        "not GBP (the quote currency of EUR/GBP)"
    ]


@pytest.mark.parametrize(
    ("conversion", "expected"),
    [
        (
            '"GBPUSD"',
            'instruments[1].usd_conversion: must be "quote", "base" or the symbol of a '
            'configured instrument, got "GBPUSD"',
        ),
        (
            '"EUR/GBP"',
            "instruments[1].usd_conversion: must name another instrument, "
            "not the instrument itself",
        ),
        (
            '"USD/JPY"',
            "instruments[1].usd_conversion: USD/JPY converts JPY to USD, "
            "not GBP (the quote currency of EUR/GBP)",
        ),
        (
            '"EUR/GBP2"',
            "instruments[1].usd_conversion: EUR/GBP2 is quoted in GBP, "
            "so its mid does not convert to USD",
        ),
    ],
)
def test_usd_conversion_errors(conversion: str, expected: str) -> None:
    text = (
        instrument("GBP/USD")
        + instrument("EUR/GBP", quote_currency='"GBP"', usd_conversion=conversion)
        + instrument("USD/JPY", quote_currency='"JPY"', usd_conversion='"base"')
        + instrument("EUR/GBP2", quote_currency='"GBP"', usd_conversion='"GBP/USD"')
        + LP
        + SESSION
    )
    assert errors_of(text) == [expected]


# --- LPs --------------------------------------------------------------------------------


def test_lp_defaults_and_adapter_settings() -> None:
    text = instrument() + LP + '[lps.settings]\nseed = 7\nstart_mid = {"EUR/USD" = "1.1"}\n'
    cfg = parse_config(text + SESSION)
    [lp] = cfg.lps
    assert lp.enabled is True
    assert lp.soft_penalty_ticks == 10
    assert lp.soft_limit_usd == Decimal(1_000_000)
    assert lp.settings == {"seed": 7, "start_mid": {"EUR/USD": "1.1"}}
    assert parse_config(instrument() + LP + SESSION).lps[0].settings == {}


def test_adapter_settings_take_any_value() -> None:
    # The adapter validates its own keys; the loader only requires a table.
    text = instrument() + LP + "settings = {x = 1.5, y = [1, 'a'], z = 1979-05-27, w = {}}\n"
    assert parse_config(text + SESSION).lps[0].settings["x"] == 1.5
    assert errors_of(instrument() + LP + "settings = 1\n" + SESSION) == [
        "lps[0].settings: expected table, got int"
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'name = "LP A"',
            "lps[0].name: must be printable ASCII without whitespace, '=', '/' or SOH",
        ),
        # it names its statement files: one with '/' would be written elsewhere
        (
            'name = "../LP_A"',
            "lps[0].name: must be printable ASCII without whitespace, '=', '/' or SOH",
        ),
        ('adapter = "Fix LP"', 'lps[0].adapter: must be an adapter kind such as "simulated"'),
        ('enabled = "yes"', "lps[0].enabled: expected bool, got str"),
        ("soft_penalty_ticks = -1", "lps[0].soft_penalty_ticks: must be >= 0"),
        ("soft_limit_usd = 1e6", f"lps[0].soft_limit_usd: {FLOAT_MESSAGE}"),
        ('hard_limit_usd = "0"', "lps[0].hard_limit_usd: must be > 0"),
        ("limit = 1", "lps[0].limit: unknown field"),
    ],
)
def test_lp_field_errors(body: str, expected: str) -> None:
    lp = "\n".join(
        line for line in LP.splitlines() if line.split(" = ")[0] not in body.split(" = ")[0]
    )
    assert errors_of(instrument() + lp + "\n" + body + "\n" + SESSION) == [expected]


def test_soft_limit_must_be_below_hard_limit() -> None:
    text = instrument() + LP.replace('"1000000"', '"2000000"') + SESSION
    assert errors_of(text) == ["lps[0].soft_limit_usd: must be < hard_limit_usd (2000000)"]


def test_duplicate_lp_names_are_reported() -> None:
    text = instrument() + LP + LP.replace("LP_A", "LP_B") + LP + SESSION
    assert errors_of(text) == ["lps[2]: duplicate name LP_A (also lps[0])"]


def test_every_registered_adapter_kind_is_accepted_by_the_config() -> None:
    for kind in registered_kinds():
        assert adapter_class(kind) is not None
        text = instrument() + LP.replace('"simulated"', f'"{kind}"') + SESSION
        assert parse_config(text).lps[0].adapter == kind


# --- routing ----------------------------------------------------------------------------


def test_routing_defaults() -> None:
    routing = parse_config(instrument() + LP + SESSION).routing
    assert routing == RoutingSettings()
    assert routing.policy == "best_price_exposure_aware"
    assert routing.internal_crossing is True
    assert (routing.max_child_orders, routing.max_reroutes) == (4, 2)
    assert (routing.child_timeout_ms, routing.quote_max_age_ms) == (2000, 5000)


def test_routing_field_errors() -> None:
    text = (
        "[routing]\npolicy = 'cheapest'\ninternal_crossing = 1\nmax_child_orders = 0\n"
        "max_reroutes = -1\nchild_timeout_ms = 0\nquote_max_age_ms = '5000'\n"
    )
    assert errors_of(text + instrument() + LP + SESSION) == [
        'routing.policy: must be one of "best_price_exposure_aware", "best_price"',
        "routing.internal_crossing: expected bool, got int",
        "routing.max_child_orders: must be > 0",
        "routing.max_reroutes: must be >= 0",
        "routing.child_timeout_ms: must be > 0",
        "routing.quote_max_age_ms: expected int, got str",
    ]


# --- risk -------------------------------------------------------------------------------


def test_risk_defaults_to_no_limits_but_the_flow_limits() -> None:
    risk = parse_config(instrument() + LP + SESSION).risk
    assert risk == RiskSettings()
    assert risk.default == ClientRiskSettings()
    assert risk.for_client("CLIENT1") == ClientRiskSettings()
    flow_limits = (risk.default.max_open_orders, risk.default.max_messages_per_second)
    assert flow_limits == (10_000, 50_000)
    assert risk.default.max_order_qty is None


def test_risk_limits_per_client() -> None:
    text = (
        "[risk.default]\nmax_order_qty = '1000000'\nmax_notional_usd = 2000000\n"
        "[risk.clients.CLIENT1]\nmax_open_position = '3000'\nallowed_symbols = ['EUR/USD']\n"
    )
    risk = parse_config(text + instrument() + LP + SESSION).risk
    assert risk.default == ClientRiskSettings(
        max_order_qty=Decimal(1_000_000), max_notional_usd=Decimal(2_000_000)
    )
    client = risk.for_client("CLIENT1")
    assert client.max_order_qty is None
    assert client.max_open_position == Decimal(3000)
    assert client.allowed_symbols == ("EUR/USD",)
    assert risk.for_client("CLIENT2") is risk.default


def test_risk_field_errors() -> None:
    text = (
        "[risk.default]\nmax_order_qty = 1.5\nmax_notional_usd = '0'\nmax_open_position = 'x'\n"
        "allowed_symbols = 'EUR/USD'\n"
        "[risk.clients.CLIENT1]\nallowed_symbols = ['']\nbogus = 1\n"
        '[risk.clients."BAD ID"]\n'
    )
    assert errors_of(text + instrument() + LP + SESSION) == [
        f"risk.default.max_order_qty: {FLOAT_MESSAGE}",
        "risk.default.max_notional_usd: must be > 0",
        'risk.default.max_open_position: expected a decimal number, got "x"',
        "risk.default.allowed_symbols: expected array, got str",
        "risk.clients.CLIENT1.allowed_symbols[0]: must not be empty",
        "risk.clients.CLIENT1.bogus: unknown field",
        "risk.clients.\"BAD ID\": must be printable ASCII without whitespace, '=' or SOH",
    ]


def test_an_empty_allowed_symbols_list_allows_no_symbol() -> None:
    text = "[risk.clients.CLIENT1]\nallowed_symbols = []\n"
    config = parse_config(text + instrument() + LP + SESSION)
    instruments = {i.symbol: i.to_instrument() for i in config.instruments}
    limits = client_limits(config, "CLIENT1", instruments)
    order = NewOrder("CLIENT1", "1", "EUR/USD", Side.BUY, OrdType.MARKET, TimeInForce.IOC, 1)
    assert check(order, 0, limits) == RiskBreach(
        "allowed_symbols", "symbol not allowed: EUR/USD (limit allowed_symbols)"
    )


def test_a_breach_of_a_limit_in_units_is_told_in_units_under_its_name() -> None:
    text = "[risk.default]\nmax_order_qty = '5000'\nmax_open_position = '8000'\n"
    config = parse_config(text + instrument() + LP + SESSION)
    instruments = {i.symbol: i.to_instrument() for i in config.instruments}
    limits = client_limits(config, "CLIENT1", instruments)

    def order(side: Side, lots: int) -> NewOrder:
        return NewOrder("CLIENT1", "1", "EUR/USD", side, OrdType.MARKET, TimeInForce.IOC, lots)

    assert check(order(Side.BUY, 6), 0, limits) == RiskBreach(
        "max_order_qty", "max order quantity exceeded: 6000 > 5000 (limit max_order_qty)"
    )
    assert check(order(Side.SELL, 5), -4, limits) == RiskBreach(
        "max_open_position",
        "max open position exceeded: EUR/USD position would be -9000, |-9000| > 8000 "
        "(limit max_open_position)",
    )


def test_risk_clients_must_be_order_entry_sessions() -> None:
    text = (
        "[risk.clients.CLIENT1]\n[risk.clients.CLIENT9]\n[risk.clients.ECHO]\n"
        "[risk.clients.GATEWAY]\n"
    )
    sessions = SESSION + '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "ECHO"\n'
    sessions += 'Application = "echo"\n'
    assert errors_of(text + instrument() + LP + sessions) == [
        "risk.clients.CLIENT9: no such client session",
        "risk.clients.ECHO: no such client session",
        "risk.clients.GATEWAY: no such client session",
    ]


def test_allowed_symbols_must_be_configured_instruments() -> None:
    text = (
        "[risk.default]\nallowed_symbols = ['EUR/USD', 'EURUSD']\n"
        "[risk.clients.CLIENT1]\nallowed_symbols = ['XAU/USD', 'EUR/USD', 'GBP/USD']\n"
    )
    assert errors_of(text + instrument() + instrument("GBP/USD") + LP + SESSION) == [
        "risk.default.allowed_symbols[1]: no such instrument EURUSD",
        "risk.clients.CLIENT1.allowed_symbols[0]: no such instrument XAU/USD",
    ]


# --- what order entry needs -------------------------------------------------------------


def test_order_entry_needs_an_instrument_and_an_enabled_lp() -> None:
    assert errors_of(SESSION) == [
        "instruments: at least one instrument is needed for order entry",
        "lps: at least one enabled LP is needed for order entry",
    ]
    assert errors_of(instrument() + SESSION) == [
        "lps: at least one enabled LP is needed for order entry"
    ]
    assert errors_of(LP + SESSION) == [
        "instruments: at least one instrument is needed for order entry"
    ]
    disabled = LP + "enabled = false\n"
    assert errors_of(instrument() + disabled + SESSION) == [
        "lps: at least one enabled LP is needed for order entry"
    ]
    cfg = parse_config(instrument() + disabled + LP.replace("LP_A", "LP_B") + SESSION)
    assert [lp.enabled for lp in cfg.lps] == [False, True]


def test_echo_sessions_need_no_order_flow() -> None:
    cfg = parse_config(ECHO_SESSION)
    assert cfg.instruments == ()
    assert cfg.lps == ()
    assert cfg.routing == RoutingSettings()
    assert cfg.risk == RiskSettings()


def test_invalid_sections_are_not_reported_twice() -> None:
    assert errors_of("instruments = 1\nlps = 'x'\n" + SESSION) == [
        "instruments: expected array, got int",
        "lps: expected array, got str",
    ]
    # Entries that are not tables still count as entries.
    assert errors_of("instruments = [1]\n" + LP + SESSION) == [
        "instruments[0]: expected table, got int"
    ]


# --- the shipped files ------------------------------------------------------------------


def test_default_config_order_flow() -> None:
    cfg = load_config(default_config_path())
    instruments = {i.symbol: i.to_instrument() for i in cfg.instruments}
    assert list(instruments) == [
        "EUR/USD",
        "GBP/USD",
        "USD/JPY",
        "XAU/USD",
        "BTC/USD",
        "US500",
        "WTI",
    ]
    lots = {s: (i.tick_size, i.lot_size, i.min_lots, i.max_lots) for s, i in instruments.items()}
    assert lots == {
        "EUR/USD": (Decimal("0.00001"), Decimal(1000), 1, 10_000),
        "GBP/USD": (Decimal("0.00001"), Decimal(1000), 1, 10_000),
        "USD/JPY": (Decimal("0.001"), Decimal(1000), 1, 10_000),
        "XAU/USD": (Decimal("0.01"), Decimal(1), 1, 10_000),
        "BTC/USD": (Decimal("0.01"), Decimal("0.001"), 1, 100_000),
        "US500": (Decimal("0.1"), Decimal(1), 1, 10_000),
        "WTI": (Decimal("0.01"), Decimal(1), 1, 100_000),
    }
    assert instruments["USD/JPY"].quote_currency == "JPY"
    assert instruments["USD/JPY"].usd_conversion == "base"
    assert instruments["XAU/USD"].asset_class is AssetClass.METAL
    assert instruments["BTC/USD"].asset_class is AssetClass.CRYPTO
    assert instruments["US500"].asset_class is AssetClass.INDEX
    assert instruments["WTI"].asset_class is AssetClass.COMMODITY
    assert {i.usd_conversion for s, i in instruments.items() if s != "USD/JPY"} == {"quote"}
    assert instruments["EUR/USD"].qty_to_lots(Decimal("1000000")) == 1000

    assert [(lp.name, lp.adapter, lp.enabled) for lp in cfg.lps] == [
        ("LP_A", "simulated", True),
        ("LP_B", "simulated", True),
        ("LP_C", "simulated", True),
    ]
    for lp in cfg.lps:
        assert lp.soft_limit_usd < lp.hard_limit_usd

    assert cfg.routing == RoutingSettings()
    assert cfg.risk.default == ClientRiskSettings(
        max_order_qty=Decimal(5_000_000),
        max_notional_usd=Decimal(10_000_000),
        max_open_position=Decimal(20_000_000),
        max_open_orders=10_000,
        max_messages_per_second=50_000,
    )
    assert list(cfg.risk.clients) == ["CLIENT3"]
    client3 = cfg.risk.for_client("CLIENT3")
    assert client3.allowed_symbols == ("EUR/USD", "GBP/USD")
    # a client table replaces the default as a whole: it restates the flow limits
    assert (client3.max_open_orders, client3.max_messages_per_second) == (10_000, 50_000)
    assert cfg.risk.for_client("CLIENT1") is cfg.risk.default
    assert cfg.orders.max_id_length == 64


def test_default_lp_settings_suit_the_simulated_adapter() -> None:
    cfg = load_config(default_config_path())
    instruments = {i.symbol: i.to_instrument() for i in cfg.instruments}
    shapes = set()
    for lp in cfg.lps:
        settings = msgspec.convert(lp.settings, SimulatedLpSettings)
        shapes.add((settings.spread_ticks, settings.depth_levels, settings.level_qty_lots))
        assert settings.latency_ms == 0
        assert settings.reject_probability == 0
        assert set(settings.start_mid) == set(instruments)
        events: list[object] = []
        adapter = create_adapter(lp.adapter, lp.name, instruments, events.append, lp.settings)
        assert isinstance(adapter, SimulatedLp)
        assert adapter.symbols == tuple(instruments)
        assert events == []
    assert shapes == {(4, 5, 500), (6, 8, 250), (3, 3, 100)}
    seeds = {lp.settings["seed"] for lp in cfg.lps}
    assert len(seeds) == len(cfg.lps)


def test_conformance_profile_has_no_order_flow() -> None:
    cfg = load_config(default_config_path().with_name("conformance.toml"))
    assert {s.Application for s in cfg.sessions} == {"echo"}
    assert cfg.instruments == ()
    assert cfg.lps == ()


def test_default_config_round_trips_and_hashes() -> None:
    cfg = load_config(default_config_path())
    again, errors = validate_raw(msgspec.to_builtins(cfg))
    assert errors == []
    assert again == cfg
    assert hash(again) == hash(cfg)
    assert hash(cfg.lps[0]) == hash(load_config(default_config_path()).lps[0])


def test_equal_settings_hash_equally_whatever_their_order() -> None:
    one = LpSettings(
        name="LP",
        adapter="simulated",
        soft_limit_usd=Decimal(1),
        hard_limit_usd=Decimal(2),
        settings={"a": 1, "b": {"c": [1, 2]}},
    )
    other = msgspec.structs.replace(one, settings={"b": {"c": [1, 2]}, "a": 1})
    assert one == other
    assert hash(one) == hash(other)
    risk = RiskSettings(clients={"A": ClientRiskSettings(), "B": ClientRiskSettings()})
    assert hash(risk) == hash(
        RiskSettings(clients={"B": ClientRiskSettings(), "A": ClientRiskSettings()})
    )


def test_order_flow_sections_are_frozen() -> None:
    cfg = load_config(default_config_path())
    with pytest.raises(AttributeError):
        cfg.instruments[0].tick_size = Decimal(1)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.routing.max_reroutes = 0  # type: ignore[misc]
    assert isinstance(cfg.instruments, tuple)
    assert isinstance(cfg.lps, tuple)


# --- every error at once ----------------------------------------------------------------

MANY_ORDER_FLOW_ERRORS = """
[routing]
max_child_orders = 0

[risk.default]
max_order_qty = 5000000.0
allowed_symbols = ["EUR/USD", "AUD/USD"]

[risk.clients.CLIENT1]
max_notional_usd = "abc"

[risk.clients.CLIENT9]

[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = 0.00001
lot_size = "1000"
min_qty = "1500"
max_qty = "1000"
quote_currency = "USD"

[[instruments]]
symbol = "EUR/GBP"
asset_class = "forex"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "1000000"
quote_currency = "GBP"
usd_conversion = "GBP/USD"

[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "1000000"
quote_currency = "USD"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "30000000"
hard_limit_usd = "20000000"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "-1"
hard_limit_usd = "20000000"
settings = 5

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
HeartBtInt = 0
"""


def test_every_order_flow_error_is_reported_with_its_path() -> None:
    # Field errors come in the order of the file, cross-section rules after them.
    assert errors_of(MANY_ORDER_FLOW_ERRORS) == [
        "routing.max_child_orders: must be > 0",
        f"risk.default.max_order_qty: {FLOAT_MESSAGE}",
        'risk.clients.CLIENT1.max_notional_usd: expected a decimal number, got "abc"',
        f"instruments[0].tick_size: {FLOAT_MESSAGE}",
        "instruments[0].min_qty: must be <= max_qty (1000)",
        "instruments[0].min_qty: must be a multiple of lot_size (1000)",
        'instruments[1].asset_class: must be one of "fx", "crypto", "metal", "index", "commodity"',
        "lps[0].soft_limit_usd: must be < hard_limit_usd (20000000)",
        "lps[1].soft_limit_usd: must be > 0",
        "lps[1].settings: expected table, got int",
        "sessions[0].HeartBtInt: must be > 0",
        "instruments[2]: duplicate symbol EUR/USD (also instruments[0])",
        'instruments[1].usd_conversion: must be "quote", "base" or the symbol of a '
        'configured instrument, got "GBP/USD"',
        "lps[1]: duplicate name LP_A (also lps[0])",
        "risk.clients.CLIENT9: no such client session",
        "risk.default.allowed_symbols[1]: no such instrument AUD/USD",
    ]


def test_instrument_settings_build_directly() -> None:
    settings = InstrumentSettings(
        symbol="XAU/USD",
        asset_class="metal",
        tick_size=Decimal("0.01"),
        lot_size=Decimal(1),
        min_qty=Decimal(1),
        max_qty=Decimal(10_000),
        quote_currency="USD",
    )
    assert settings.to_instrument().max_lots == 10_000
    raw: dict[str, Any] = msgspec.to_builtins(settings)
    assert raw["tick_size"] == "0.01"
