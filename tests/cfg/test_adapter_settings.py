"""LP adapter kinds and settings checked while the config is loaded, given
the registry's settings types: in the same pass as every other error, each
with its full path; and the same through ``fixgw check-config`` and ``run``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from config import (
    ConfigError,
    SettingsSchema,
    convert_value,
    load_config,
    parse_config,
    validate_raw,
    validate_value,
)
from config.loader import parse_toml
from lp_adapters.registry import adapter_settings

REPO = Path(__file__).resolve().parents[2]

HEAD = """
[gateway]
fix_port = 70000

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "1000000"
quote_currency = "USD"
"""


def lp(name: str, adapter: str, settings: str = "") -> str:
    return (
        f'[[lps]]\nname = "{name}"\nadapter = "{adapter}"\n'
        f'soft_limit_usd = "1000000"\nhard_limit_usd = "2000000"\n'
        f"[lps.settings]\n{settings}\n"
    )


BAD = (
    HEAD
    + lp("LP_A", "simulated", 'seed = 1\nstart_mid = {"EUR/USD" = "1.1"}')
    + lp("LP_B", "bogus", "anything = 1")
    + lp("LP_C", "simulated", 'spread_ticks = 0\ncolour = "red"')
    + lp(
        "LP_D",
        "fix",
        'port = 9001\nsender_comp_id = "GW"\ntarget_comp_id = "LPD"\n'
        'symbols = ["EUR/USD", "XAU/USD"]\nreconnect_min_ms = 500\nreconnect_max_ms = 100',
    )
)


def known_kinds() -> str:
    return ", ".join(f'"{kind}"' for kind in sorted(adapter_settings()))


def expected_errors() -> list[str]:
    return [
        "gateway.fix_port: must be <= 65535",
        f'lps[1].adapter: unknown LP adapter kind "bogus"; known kinds: {known_kinds()}',
        "lps[2].settings.spread_ticks: must be >= 1",
        "lps[2].settings.colour: unknown field",
        "lps[3].settings.reconnect_max_ms: must be >= reconnect_min_ms (500)",
        "lps[3].settings.symbols[1]: no such instrument XAU/USD",
    ]


def test_every_error_is_listed_in_one_pass_with_its_full_path(tmp_path: Path) -> None:
    assert validate_raw(parse_toml(BAD), adapter_settings()) == (None, expected_errors())
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path, adapter_settings())
    assert info.value.errors == expected_errors()
    assert info.value.source == str(path)


def test_without_the_settings_types_kinds_and_settings_are_not_checked() -> None:
    config = parse_config(BAD.replace("fix_port = 70000", "fix_port = 7000"))
    assert [lp.adapter for lp in config.lps] == ["simulated", "bogus", "simulated", "fix"]
    assert config.lps[2].settings == {"spread_ticks": 0, "colour": "red"}


def test_a_valid_config_keeps_its_settings_as_written() -> None:
    text = HEAD.replace("fix_port = 70000", "fix_port = 7000") + lp(
        "LP_A", "simulated", 'seed = 1\nstart_mid = {"EUR/USD" = "1.1"}'
    )
    config = parse_config(text, adapter_settings=adapter_settings())
    assert config.lps[0].settings == {"seed": 1, "start_mid": {"EUR/USD": "1.1"}}


def test_settings_that_are_not_a_table_are_reported_once() -> None:
    text = HEAD.replace("fix_port = 70000", "fix_port = 7000") + lp("LP_A", "simulated")
    text = text.replace("[lps.settings]\n", "settings = 3\n")
    assert validate_raw(parse_toml(text), adapter_settings())[1] == [
        "lps[0].settings: expected table, got int"
    ]


def test_checks_against_the_instruments_wait_for_valid_instruments() -> None:
    text = BAD.replace('tick_size = "0.00001"', 'tick_size = "0"')
    errors = validate_raw(parse_toml(text), adapter_settings())[1]
    assert "instruments[0].tick_size: must be > 0" in errors
    assert "lps[2].settings.spread_ticks: must be >= 1" in errors
    assert not [e for e in errors if "symbols" in e or "reconnect" in e]


def test_the_loader_takes_any_kinds_it_is_given() -> None:
    class Pigeon(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        wings: int

    def check(settings: Pigeon, instruments: object) -> list[str]:
        return [] if settings.wings == 2 else ["wings: must be 2"]

    kinds = {"pigeon": SettingsSchema(settings_type=Pigeon, check=check)}
    text = HEAD.replace("fix_port = 70000", "fix_port = 7000")
    assert validate_raw(parse_toml(text + lp("LP_P", "pigeon", "wings = 3")), kinds)[1] == [
        "lps[0].settings.wings: must be 2"
    ]
    assert validate_raw(parse_toml(text + lp("LP_S", "simulated")), kinds)[1] == [
        'lps[0].adapter: unknown LP adapter kind "simulated"; known kinds: "pigeon"'
    ]
    assert validate_raw(parse_toml(text + lp("LP_S", "simulated")), {})[1] == [
        'lps[0].adapter: unknown LP adapter kind "simulated"; known kinds: none'
    ]


def test_values_are_checked_and_converted_with_paths() -> None:
    class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        low: int = 0
        high: int

    resolved, errors = validate_value({"low": "x"}, Limits, "limits")
    assert errors == ["limits.low: expected int, got str", "limits.high: required field missing"]
    assert resolved == {}
    assert convert_value({"high": 3}, Limits) == (Limits(high=3), [])
    assert convert_value([{"high": 3}, {}], list[Limits], "all") == (
        None,
        ["all[1].high: required field missing"],
    )


@pytest.mark.parametrize(("command", "status"), [("check-config", 1), ("run", 2)])
def test_the_command_line_lists_every_error(tmp_path: Path, command: str, status: int) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    args = [str(bad)] if command == "check-config" else ["--config", str(bad)]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == status, proc.stderr
    lines = [line.strip() for line in proc.stderr.splitlines()]
    # the registry of a fresh process knows the built-in kinds only
    builtin = expected_errors()
    builtin[1] = 'lps[1].adapter: unknown LP adapter kind "bogus"; known kinds: "fix", "simulated"'
    assert lines[1:] == builtin
    assert lines[0].startswith(f"{bad}: ")
    assert f"{len(builtin)} " in lines[0]
