"""The operator commands' pieces: where the daemon is, the answers of an
admin API turned into one-line errors (against a small fake admin API on
loopback), and the tables and status screen drawn from admin JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netkit import answering_http, free_port

from config import default_config_path
from gateway.cli import main
from gateway.ops import operator
from gateway.ops.operator import AdminApi, OperatorError


@pytest.fixture
def fake_admin() -> Iterator[Any]:
    with answering_http((200, b"{}")) as server:
        yield server


def args(**given: Any) -> argparse.Namespace:
    defaults = {"url": None, "token": None, "config": None, "timeout": 5.0}
    return argparse.Namespace(**{**defaults, **given})


# --- the admin API ----------------------------------------------------------------------


def test_a_request_carries_the_token_and_the_query(fake_admin: Any) -> None:
    fake_admin.answer = (200, b'[{"order_id": "O1"}]')
    api = AdminApi(fake_admin.url, "s3cret")
    assert api.get("/admin/orders", {"client": "CLIENT1", "all": "1"}) == [{"order_id": "O1"}]
    assert fake_admin.seen == [("/admin/orders?client=CLIENT1&all=1", "Bearer s3cret")]


@pytest.mark.parametrize(
    ("status", "body", "token", "says"),
    [
        (401, b'{"error": "missing or wrong bearer token"}', "", "no token given"),
        (401, b'{"error": "missing or wrong bearer token"}', "x", "refused the token"),
        (403, b'{"error": "admin API disabled:\\nno admin token"}', "x", "disabled: no admin"),
        (404, b"404: Not Found", "x", "not found (HTTP 404)"),
        (404, b'{"error": "no margin account for X"}', "x", "no margin account for X (HTTP 404"),
        (500, b'{"error": "boom"}', "x", "HTTP 500: boom"),
        (200, b"<html>", "x", "something other than JSON"),
    ],
)
def test_refusals_are_one_line(
    fake_admin: Any, status: int, body: bytes, token: str, says: str
) -> None:
    fake_admin.answer = (status, body)
    with pytest.raises(OperatorError) as refused:
        AdminApi(fake_admin.url, token).get("/admin/summary")
    message = str(refused.value)
    assert says in message
    assert "\n" not in message


def test_no_daemon_is_a_refused_connection() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(OperatorError, match=r"^no daemon at .*: connection refused"):
        AdminApi(url, "x").get("/admin/summary")


# --- where the daemon is ------------------------------------------------------------------


def test_the_url_and_token_come_from_flags_then_environment_then_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(operator.TOKEN_ENV, raising=False)
    text = default_config_path().read_text()
    text = text.replace('http_host = "127.0.0.1"', 'http_host = "0.0.0.0"')
    text = text.replace("http_port = 8080", "http_port = 18181")
    text = text.replace('admin_token = "dev-admin-token"', 'admin_token = "from-file"')
    path = tmp_path / "gw.toml"
    path.write_text(text)

    assert operator.admin_api(args(url=operator.DEFAULT_URL)) == AdminApi(operator.DEFAULT_URL, "")
    assert operator.admin_api(args(config=str(path))) == AdminApi(
        "http://127.0.0.1:18181", "from-file"
    )
    monkeypatch.setenv(operator.TOKEN_ENV, "from-env")
    api = operator.admin_api(args(config=str(path), url="http://gw:1"))
    assert api == AdminApi("http://gw:1", "from-env")
    api = operator.admin_api(args(config=str(path), token="from-flag"))
    assert api == AdminApi("http://127.0.0.1:18181", "from-flag")

    disabled = tmp_path / "no-http.toml"
    disabled.write_text(text.replace("http_port = 18181", "http_port = 0"))
    with pytest.raises(OperatorError, match="serves no HTTP"):
        operator.admin_api(args(config=str(disabled)))
    with pytest.raises(OperatorError, match="cannot read configuration file"):
        operator.admin_api(args(config=str(tmp_path / "missing.toml")))
    with pytest.raises(OperatorError, match="give http://HOST:PORT"):
        operator.admin_api(args(url="127.0.0.1:8080"))


def test_with_nothing_given_the_daemon_is_the_packaged_configs(
    fake_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fixgw status`` alone asks the daemon ``fixgw run`` starts alone."""
    monkeypatch.delenv(operator.TOKEN_ENV, raising=False)
    api = operator.admin_api(args())
    assert (api.url, api.token) == ("http://127.0.0.1:8080", "dev-admin-token")

    fake_admin.answer = (401, b'{"error": "wrong bearer token"}')
    with pytest.raises(OperatorError) as refused:
        AdminApi(fake_admin.url, api.token, packaged_token=True).get("/admin/summary")
    assert str(refused.value) == (
        f"the daemon at {fake_admin.url} refused the default config's admin token (HTTP 401): "
        "pass --token, set FIXGW_ADMIN_TOKEN or name the daemon's config with --config"
    )


def test_the_configs_read_token_is_taken_without_an_admin_token(
    tmp_path: Path, fake_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command but handover only reads: a daemon given only a read
    token is asked with it, from its config or the environment."""
    monkeypatch.delenv(operator.TOKEN_ENV, raising=False)
    monkeypatch.delenv("FIXGW_READ_TOKEN", raising=False)
    text = default_config_path().read_text()
    text = text.replace("http_port = 8080", f"http_port = {fake_admin.server_address[1]}")
    text = text.replace('admin_token = "dev-admin-token"', 'admin_token = ""\nread_token = "rd"')
    path = tmp_path / "gw.toml"
    path.write_text(text)
    fake_admin.answer = (200, b"[]")
    assert main(["sessions", "--config", str(path)]) == 0
    assert fake_admin.seen == [("/admin/sessions", "Bearer rd")]

    monkeypatch.setenv("FIXGW_READ_TOKEN", "from-env")
    assert operator.admin_api(args(url=fake_admin.url)).token == "from-env"
    assert operator.admin_api(args(config=str(path))).token == "from-env"
    monkeypatch.setenv(operator.TOKEN_ENV, "admin-env")
    assert operator.admin_api(args(config=str(path))).token == "admin-env"


def test_handover_takes_the_admin_token_whatever_read_token_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Handover changes what the daemon does: a read token in the shell
    (which the daemon would refuse it) does not stand in for the config's
    admin token."""
    monkeypatch.delenv(operator.TOKEN_ENV, raising=False)
    monkeypatch.setenv("FIXGW_READ_TOKEN", "from-env")
    config = str(default_config_path())
    handing = args(config=config, operator_command=operator._handover)
    assert operator.admin_api(handing).token == "dev-admin-token"
    assert operator.admin_api(args(config=config)).token == "from-env"


@pytest.mark.parametrize(
    ("given", "source"),
    [
        (["--token", "tok€n"], "--token"),  # http.client cannot encode it: a traceback
        (["--token", "clé"], "--token"),  # sent latin-1, the daemon reads UTF-8: a 401
        (["--token", "a b"], "--token"),
        ([], "FIXGW_ADMIN_TOKEN"),
        ([], "FIXGW_READ_TOKEN"),
    ],
)
def test_a_token_outside_visible_ascii_is_one_line_before_asking(
    fake_admin: Any,
    given: list[str],
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(operator.TOKEN_ENV, raising=False)
    monkeypatch.delenv("FIXGW_READ_TOKEN", raising=False)
    if not given:
        monkeypatch.setenv(source, "clé")
    assert main(["status", "--url", fake_admin.url, *given]) == 1
    assert fake_admin.seen == []
    assert capsys.readouterr().err == (
        f"fixgw status: {source}: visible ASCII characters only (letters, digits, "
        "punctuation; no spaces or accents)\n"
    )


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://127.0.0.1:notaport", "http://127.0.0.1:99999", "http://:8080"],
)
def test_a_bad_url_is_one_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", url, "--token", "x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"fixgw status: bad --url {url!r}: give http://HOST:PORT\n"


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf"])
def test_a_bad_timeout_is_refused_by_the_command_line(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["status", "--url", "http://127.0.0.1:1", "--timeout", timeout])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"fixgw status: error: argument --timeout: seconds, > 0 and at most 3600: {timeout!r}"
    )


# --- what is printed -----------------------------------------------------------------------


def test_tables_pad_columns_and_align_numbers_right() -> None:
    text = operator.table(("LP", "GROSS USD"), [("LP_A", "$5"), ("LP_LONG", "$1,000")], right=[1])
    assert text.splitlines() == [
        "LP       GROSS USD",
        "LP_A            $5",
        "LP_LONG     $1,000",
    ]


def test_numbers_stay_exact() -> None:
    assert operator.quantity("1234567.001") == "1,234,567.001"
    assert operator.quantity("-3000", signed=True) == "-3,000"
    assert operator.quantity("3000", signed=True) == "+3,000"
    assert operator.quantity("0", signed=True) == "0"
    assert operator.usd("1193533.49") == "$1,193,533"
    assert operator.usd(None) == "not valued"
    assert operator.duration(42) == "42s"
    assert operator.duration(3 * 3600 + 12 * 60 + 5) == "3h 12m"
    assert operator.duration(2 * 86400 + 4 * 3600) == "2d 4h"


SUMMARY: dict[str, Any] = {
    "time": 1_700_000_100.0,
    "started_at": 1_700_000_000.0,
    "version": "1-abc",
    "generation": 1,
    "loop_lag_ms": 0.12,
    "sessions": [
        {"session": "FIX.4.4:GATEWAY->CLIENT1", "logged_on": True},
        {"session": "FIX.4.4:GATEWAY->CLIENT2", "logged_on": False},
    ],
    "open_orders": 2,
    "latency_ms": {"p50": 0.2, "p95": 0.3, "p99": 0.41, "count": 1500},
    "lps": [
        {
            "name": "LP_A",
            "up": True,
            "enabled": True,
            "gross_usd": "3000000",
            "hard_limit_usd": "30000000",
        },
        {
            "name": "LP_B",
            "up": False,
            "enabled": True,
            "gross_usd": "1000000.5",
            "hard_limit_usd": "5000000",
        },
        {
            "name": "LP_C",
            "up": True,
            "enabled": False,
            "gross_usd": None,
            "hard_limit_usd": "1000",
        },
    ],
}


def test_status_is_one_screen() -> None:
    status = operator.status_of(SUMMARY, "http://gw:8080")
    assert status["uptime_seconds"] == 100
    assert status["sessions"] == {
        "logged_on": ["FIX.4.4:GATEWAY->CLIENT1"],
        "logged_off": ["FIX.4.4:GATEWAY->CLIENT2"],
    }
    assert status["lps"] == {"up": ["LP_A", "LP_C"], "down": ["LP_B"], "disabled": ["LP_C"]}
    exposure = status["exposure"]
    assert exposure["gross_usd"] == "4000000.5"
    assert exposure["nearest_hard_limit"]["lp"] == "LP_B"  # 20% of its limit, LP_A 10%
    assert exposure["not_valued"] == ["LP_C"]
    json.dumps(status)

    lines = operator.render_status(status).splitlines()
    assert lines[0] == "fixgw at http://gw:8080"
    shown = {line[2:15].strip(): line[15:] for line in lines[1:]}
    assert shown["up since"] == "2023-11-14 22:13:20 UTC (1m 40s)"
    assert shown["sessions"] == "1 logged on, 1 logged off (CLIENT2)"
    assert shown["LPs"] == "2 up, 1 down (LP_B); disabled: LP_C"
    assert shown["open orders"] == "2"
    assert shown["exposure"] == (
        "$4,000,000 gross with the LPs; nearest its hard limit: "
        "LP_B $1,000,000 (20.0% of $5,000,000); not valued: LP_C"
    )
    assert shown["latency P99"] == "0.410 ms (P50 0.200 ms, 1,500 orders timed)"
    assert shown["loop lag"] == "0.120 ms"


def test_status_without_order_flow_or_timings() -> None:
    bare = {k: v for k, v in SUMMARY.items() if k not in ("lps", "open_orders", "latency_ms")}
    text = operator.render_status(operator.status_of(bare, "http://gw:8080"))
    assert "no order flow" in text
    timed = {**SUMMARY, "latency_ms": {"p50": None, "p95": None, "p99": None, "count": 0}}
    assert "no order timed yet" in operator.render_status(operator.status_of(timed, "u"))


def test_every_command_is_registered_with_its_options() -> None:
    parser = argparse.ArgumentParser(prog="fixgw")
    operator.register(parser.add_subparsers(dest="command", required=True))
    required = {"handover": ["CLIENT1", "--to", "gw1"]}
    for name in operator.COMMANDS:
        parsed = parser.parse_args(
            [name, *required.get(name, []), "--json", "--url", "http://gw:1"]
        )
        assert operator.is_operator_command(parsed)
        assert (parsed.json, parsed.url, parsed.token, parsed.config) == (
            True,
            "http://gw:1",
            None,
            None,
        )
    orders = parser.parse_args(["orders", "--client", "CLIENT1", "--all", "--limit", "5"])
    assert (orders.client, orders.all, orders.limit) == ("CLIENT1", True, 5)
    with pytest.raises(SystemExit):
        parser.parse_args(["orders", "--limit", "-1"])
    handover = parser.parse_args(["handover", "CLIENT1", "--to", "gw1"])
    assert (handover.session, handover.to) == ("CLIENT1", "gw1")
    with pytest.raises(SystemExit):
        parser.parse_args(["handover", "CLIENT1"])  # to whom is needed
    assert parser.parse_args(["margin"]).client is None
    assert parser.parse_args(["margin", "CLIENT1", "--json"]).client == "CLIENT1"


def test_the_command_line_bounds_orders_as_the_admin_api_does() -> None:
    from gateway.ops import admin, operator

    assert operator.MAX_ORDERS_LIMIT == admin.MAX_ORDERS_LIMIT


def test_margin_asks_for_one_account_by_its_escaped_name(fake_admin: Any) -> None:
    fake_admin.answer = (200, json.dumps(ACCOUNT).encode())
    parser = argparse.ArgumentParser(prog="fixgw")
    operator.register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["margin", "A/B C", "--json", "--url", fake_admin.url])
    assert operator.run(parsed) == 0
    assert fake_admin.seen == [("/admin/margin/A%2FB%20C", None)]


ACCOUNT: dict[str, Any] = {
    "client": "CLIENT1",
    "param_version": "v7",
    "collateral_usd": "3000.00",
    "realized_pnl_usd": "-12.50",
    "unrealized_pnl_usd": "0.00",
    "equity_usd": "2987.50",
    "margin_usd": "2700.00",
    "initial_margin_usd": "2700.00",
    "siloed_margin_usd": "6000.00",
    "freed_by_portfolio_usd": "3300.00",
    "free_margin_usd": "287.50",
    "margin_level": 1.1065,
    "margin_call_level": 1.2,
    "stop_out_level": 0.5,
    "scan_risk_usd": "6000.00",
    "credit_usd": "3300.00",
    "positions": {"ZS": {"qty": "-1", "avg_px": "1200"}, "ZC": {"qty": "2", "avg_px": "450.5"}},
    "groups": [
        {"group": "corn", "units": "2", "scan_risk_usd": "3500.00", "worst_scenario": "down 3/3"},
        {"group": "soy", "units": "-1", "scan_risk_usd": "2500.00", "worst_scenario": "up 3/3"},
    ],
    "spreads": [
        {
            "spread": "corn-soy",
            "priority": 1,
            "count": "1",
            "credit_usd": "3300.00",
            "legs": {"corn": "2", "soy": "1"},
        }
    ],
    "siloed_spreads": [],
}


def test_the_margin_table_sets_portfolio_beside_siloed() -> None:
    flat = {
        **ACCOUNT,
        "client": "CLIENT2",
        "equity_usd": "1234567.891",
        "margin_usd": "0.00",
        "siloed_margin_usd": "0.00",
        "freed_by_portfolio_usd": "0.00",
        "free_margin_usd": "1234567.89",
        "margin_level": None,
    }
    stopped = {**ACCOUNT, "client": "CLIENT3", "equity_usd": "-5.00", "margin_level": 0.25}
    text = operator.render_margin({"param_version": "v7", "accounts": [ACCOUNT, flat, stopped]})
    lines = text.splitlines()
    assert lines[0].startswith("Margin accounts (USD): portfolio margin beside siloed")
    assert lines[1:] == [
        "CLIENT          EQUITY     MARGIN     SILOED      FREED    FREE MARGIN"
        "               LEVEL  PARAMS",
        "CLIENT1      $2,987.50  $2,700.00  $6,000.00  $3,300.00        $287.50"
        "  1.11 (margin call)  v7",
        "CLIENT2  $1,234,567.89      $0.00      $0.00      $0.00  $1,234,567.89"
        "                   -  v7",
        "CLIENT3         -$5.00  $2,700.00  $6,000.00  $3,300.00        $287.50"
        "     0.25 (stop-out)  v7",
    ]


def test_the_margin_table_says_why_it_is_empty() -> None:
    off = operator.render_margin({"param_version": None, "accounts": []})
    assert off == "no margin: the daemon's config has no [margin] parameters"
    none = operator.render_margin({"param_version": "v7", "accounts": []})
    assert none.startswith("no margin accounts")


def test_one_margin_account_in_full() -> None:
    text = operator.render_margin_account(ACCOUNT)
    head, groups, spreads, positions = text.split("\n\n")
    assert head.splitlines() == [
        "Margin account of CLIENT1 (parameters v7, USD)",
        "  collateral      $3,000.00",
        "  realized P&L    -$12.50",
        "  unrealized P&L  $0.00",
        "  equity          $2,987.50",
        "  margin          $2,700.00 (scan risk $6,000.00 less $3,300.00 of spread credits)",
        "  siloed margin   $6,000.00 (the portfolio frees $3,300.00)",
        "  initial margin  $2,700.00",
        "  free margin     $287.50",
        "  level           1.11, margin call (margin call below 1.2, stop-out below 0.5)",
    ]
    assert groups.splitlines() == [
        "Risk groups (units net per group)",
        "GROUP  UNITS  SCAN RISK  WORST SCENARIO",
        "corn      +2  $3,500.00  down 3/3",
        "soy       -1  $2,500.00  up 3/3",
    ]
    assert spreads.splitlines() == [
        "Spreads formed",
        "SPREAD    PRIORITY  COUNT     CREDIT  UNITS USED PER LEG",
        "corn-soy         1      1  $3,300.00  corn 2, soy 1",
    ]
    assert positions.splitlines() == [
        "Positions (units)",
        "SYMBOL  POSITION  AVG PX",
        "ZC            +2   450.5",
        "ZS            -1    1200",
    ]
    empty = operator.render_margin_account(
        {**ACCOUNT, "groups": [], "spreads": [], "positions": {}, "margin_level": None}
    )
    assert "  level           - (no margin; margin call below 1.2, stop-out below 0.5)" in empty
    assert "no price for" not in text
    partial = operator.render_margin_account({**ACCOUNT, "unpriced": ["ZS", "USD/JPY"]})
    assert "  no price for    ZS USD/JPY (its P&L left out)" in partial.splitlines()
    assert "  (none held)" in empty
    assert "  (none)" in empty
    assert "  (flat)" in empty


def test_positions_of_a_cluster_gateway_name_the_clients_it_does_not_serve() -> None:
    exposures = {
        "lps": {},
        "lp_gross_usd": {},
        "unvalued_lps": [],
        "clients": {"CLIENT1": {"EUR/USD": "1000"}, "CLIENT2": {"EUR/USD": "-2000"}},
        "served": ["CLIENT2"],
    }
    text = operator.render_positions(exposures)
    assert text.endswith(
        "Not served here (their positions as this gateway last knew them):\n  CLIENT1"
    )
    alone = operator.render_positions({k: v for k, v in exposures.items() if k != "served"})
    assert "Not served here" not in alone


@pytest.mark.parametrize("flag", ["--fix-port", "--http-port", "--drop-copy-port"])
def test_a_port_flag_out_of_range_is_refused_by_the_command_line(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not blamed on the config file the flag overrides."""
    from gateway.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", flag, "70000"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: '70000' is not a port (0-65535)" in err
    assert "config" not in err.splitlines()[-1]


def test_the_fix_port_flag_refuses_zero(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--fix-port", "0"])
    err = capsys.readouterr().err
    assert "argument --fix-port: '0' is not a port to listen on (1-65535)" in err


@pytest.mark.parametrize(("command", "given"), [("status", []), ("handover", ["C", "--to", "g"])])
def test_the_help_gives_the_timeout_the_command_waits(
    command: str, given: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``handover`` waits longer than the commands that only read: its help
    says how long."""
    waits = main_args([command, *given]).timeout
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"seconds to wait (default {waits:g})" in help_text


def main_args(argv: list[str]) -> argparse.Namespace:
    from gateway.cli import _parser

    return _parser().parse_args(argv)


def test_the_readme_shows_what_fixgw_margin_prints() -> None:
    """The README's example of ``fixgw margin`` on the default config: the
    heading line and every account the default config margins, as the
    command prints them (CLIENT1's figures are the README's own)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    command = "$ .venv/bin/fixgw margin --config config/default.toml\n"
    assert command in readme
    shown = readme.split(command, 1)[1].split("```", 1)[0].rstrip("\n").splitlines()

    def account(client: str, figures: list[str], level: float | None) -> dict[str, Any]:
        names = ("equity_usd", "margin_usd", "siloed_margin_usd")
        names += ("freed_by_portfolio_usd", "free_margin_usd")
        return {
            "client": client,
            "param_version": "default-2026-12",
            **dict(zip(names, figures, strict=True)),
            "margin_level": level,
            "margin_call_level": 1.0,
            "stop_out_level": 0.5,
        }

    listing = {
        "param_version": "default-2026-12",
        "accounts": [
            account(
                "CLIENT1", ["5000004.85", "39013.80", "48613.24", "9599.44", "4960991.05"], 128.16
            ),
            account("CLIENT2", ["5000000", "0", "0", "0", "5000000"], None),
            account("CLIENT3", ["1000000", "0", "0", "0", "1000000"], None),
        ],
    }
    assert shown == operator.render_margin(listing).splitlines()
