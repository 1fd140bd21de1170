"""Reloading the config of a running daemon (in this process, over real
sockets): each kind of setting, refused files, the admin API's token and
the metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netkit import log_events
from test_order_scenarios import FINAL, free_port, order, reports_until

from config import SessionSettings, default_config_path, load_config
from gateway.daemon import Gateway
from gateway.net.client import FixClient
from gateway.ops.reload import Overrides
from gateway.orderflow.flow import OrderFlow

DEFAULT_TEXT = default_config_path().read_text()
TOKEN = "dev-admin-token"


class Running:
    def __init__(self, gateway: Gateway, client: FixClient, path: Path) -> None:
        self.gateway = gateway
        self.client = client
        self.path = path

    @property
    def flow(self) -> OrderFlow:
        assert self.gateway.order_flow is not None
        return self.gateway.order_flow

    async def reload_with(self, text: str) -> tuple[str, list[str]]:
        self.path.write_text(text)
        outcome = await self.gateway.reloader.reload("test")
        return outcome.status, list(outcome.details)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}{path}"


@pytest_asyncio.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    path = tmp_path / "fixgw.toml"
    path.write_text(DEFAULT_TEXT)
    overrides = Overrides(
        fix_port=free_port(), http_port=free_port(), drop_copy_port=0, data_dir=str(tmp_path)
    )
    gateway = Gateway(overrides.apply(load_config(path)), path, overrides)
    await gateway.start()
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", gateway.fix_port)
    yield Running(gateway, client, path)
    await client.logout()
    await gateway.stop()


async def all_final(c: FixClient, cl_ord_ids: list[str]) -> dict[str, bytes]:
    """Read reports until every order in ``cl_ord_ids`` is final; its OrdStatus."""
    waiting = {i.encode() for i in cl_ord_ids}
    out: dict[str, bytes] = {}
    while waiting:
        msg = await c.receive(timeout=5)
        cl_ord_id = msg.get(11) or b""
        if msg.msg_type == b"8" and cl_ord_id in waiting and msg.get(39) in FINAL:
            waiting.discard(cl_ord_id)
            out[cl_ord_id.decode()] = msg.get(39) or b""
    return out


def replaced(old: str, new: str, text: str = DEFAULT_TEXT, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


@pytest.mark.asyncio
async def test_client_risk_limits_apply_to_orders_after_the_reload(running: Running) -> None:
    c = running.client
    c.send(b"D", order("BEFORE", "1", "3000000"))
    assert (await reports_until(c, b"BEFORE", *FINAL))[-1].get(39) == b"2"
    text = replaced('max_order_qty = "5000000"', 'max_order_qty = "2000000"')
    assert await running.reload_with(text) == ("applied", ["risk.default.max_order_qty"])
    c.send(b"D", order("AFTER", "2", "3000000"))
    (reject,) = await reports_until(c, b"AFTER", *FINAL)
    assert (reject.get(39), reject.get(103)) == (b"8", b"3")
    assert b"max_order_qty" in (reject.get(58) or b"")


@pytest.mark.asyncio
async def test_lp_limits_and_disabling_steer_the_next_orders(running: Running) -> None:
    flow = running.flow
    # LP_A out of routing: no child goes to it any more
    text = replaced("enabled = true", "enabled = false")  # LP_A's
    status, details = await running.reload_with(text)
    assert (status, details) == ("applied", ["lps[0].enabled"])
    before = flow.stats.lp("LP_A").children
    for i in range(6):
        running.client.send(b"D", order(f"NA{i}", "1" if i % 2 else "2", "1000"))
        assert (await reports_until(running.client, f"NA{i}".encode(), *FINAL))[-1].get(39) == b"2"
    assert flow.stats.lp("LP_A").children == before
    assert not flow.rules.limits.lps["LP_A"].enabled
    # a tighter hard limit is in force for the next routing: with LP_A the
    # only LP and room for one order of about $1,085 under $2,000, the first
    # order fills and the second finds no LP it may go to
    text = replaced('soft_limit_usd = "20000000"', 'soft_limit_usd = "1000"')
    text = replaced('hard_limit_usd = "30000000"', 'hard_limit_usd = "2000"', text)
    # (LP_A's line carries a comment; LP_B's and LP_C's end at the value)
    text = replaced("enabled = true\n", "enabled = false\n", text, count=2)
    status, details = await running.reload_with(text)
    assert status == "applied"
    assert "lps[0].hard_limit_usd" in details
    assert flow.routing.exposure(flow.now()).lp_gross_usd.get("LP_A", 0) == 0
    running.client.send(b"D", order("HL1", "1", "1000"))
    first = await reports_until(running.client, b"HL1", *FINAL)
    assert first[-1].get(39) == b"2"
    running.client.send(b"D", order("HL2", "1", "1000"))
    second = await reports_until(running.client, b"HL2", *FINAL)
    assert second[-1].get(39) == b"4"  # canceled: no LP within its limits
    assert sum(r.get(150) == b"F" for r in second) == 0
    assert 0 < flow.routing.exposure(flow.now()).lp_gross_usd["LP_A"] <= 2000


@pytest.mark.asyncio
async def test_routing_orders_and_logging_settings(running: Running) -> None:
    flow = running.flow
    text = DEFAULT_TEXT
    text = replaced("internal_crossing = true", "internal_crossing = false", text)
    text = replaced("max_reroutes = 2", "max_reroutes = 0", text)
    text = replaced("child_timeout_ms = 2000", "child_timeout_ms = 500", text)
    text = replaced('trading_day_end = "21:00"', 'trading_day_end = "20:30"', text)
    text = replaced("retain_finished = 100000", "retain_finished = 10", text)
    text = replaced('log_level = "info"', 'log_level = "debug"', text)
    status, details = await running.reload_with(text)
    assert status == "applied"
    assert details == [
        "gateway.log_level",
        "orders.retain_finished",
        "orders.trading_day_end",
        "routing.child_timeout_ms",
        "routing.internal_crossing",
        "routing.max_reroutes",
    ]
    assert flow.matcher.internal_crossing is False
    assert flow.matcher.retain_finished == 10
    assert flow.rules.config.routing.max_reroutes == 0
    assert flow.rules.config.routing.child_timeout_ms == 500
    assert logging.getLogger().level == logging.DEBUG
    assert running.gateway.config_version()[1] == 2


PRIMARY = "best_price_exposure_aware"
CANDIDATE = "best_price"


def with_share(percent: int | None) -> str:
    """The default config at log level debug (each routing is logged as a
    ``route_decision`` event naming its policy), with the candidate policy
    at ``percent`` of the orders (no candidate with None)."""
    text = replaced('log_level = "info"', 'log_level = "debug"')
    # 200 orders in one write on a loaded machine may wait past the
    # shedding bound: each must be routed here, not refused busy
    text = replaced("shed_after_ms = 100", "shed_after_ms = 0", text)
    if percent is None:
        return text
    block = f'quote_max_age_ms = 5000\n[routing.candidate]\npolicy = "{CANDIDATE}"\n'
    return replaced("quote_max_age_ms = 5000", block + f'share_percent = "{percent}"', text)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def events_named(d: Any, *names: str) -> list[dict[str, Any]]:
    return [e for e in log_events(d.log_path) if e.get("event") in names]


async def wait_for_reloads(d: Any, count: int) -> None:
    """Until the daemon has logged ``count`` applied reloads in all."""
    deadline = time.monotonic() + 15
    while len(events_named(d, "config_reloaded")) < count:
        assert not events_named(d, "config_reload_refused", "config_reload_needs_restart")
        assert time.monotonic() < deadline, "the reload was never applied"
        await asyncio.sleep(0.02)  # polling, with a deadline


async def policies_of(d: Any, c: FixClient, cl_ord_ids: list[str]) -> dict[str, str]:
    """Send a buy market order for each ClOrdID (in that order, in one
    write), wait until each is final, and read from the daemon's log the
    policy its first routing used."""
    for cl_ord_id in cl_ord_ids:
        c.send(b"D", order(cl_ord_id, "1", "1000"))
    finals = await all_final(c, cl_ord_ids)
    assert set(finals.values()) == {b"2"}, finals
    wanted = set(cl_ord_ids)
    deadline = time.monotonic() + 15
    while True:
        # a route_empty event is logged instead when the book is empty
        found = {
            e["cl_ord_id"]: e["policy"]
            for e in events_named(d, "route_decision", "route_empty")
            if e.get("cl_ord_id") in wanted and e.get("attempt") == 0
        }
        if len(found) == len(wanted):
            return found
        assert time.monotonic() < deadline, sorted(wanted - set(found))[:10]
        await asyncio.sleep(0.02)  # polling, with a deadline


def assert_share(policies: dict[str, str], percent: int) -> None:
    """The orders on the candidate are ``percent`` of them, within five
    standard deviations of the binomial count: a policy chosen as
    documented misses that band once in about 1.7 million draws."""
    assert set(policies.values()) <= {PRIMARY, CANDIDATE}
    n = len(policies)
    p = percent / 100
    on_candidate = sum(1 for v in policies.values() if v == CANDIDATE)
    spread = 5 * math.sqrt(n * p * (1 - p))
    assert n * p - spread <= on_candidate <= n * p + spread, (on_candidate, n, percent)


def on_candidate(policies: dict[str, str]) -> set[str]:
    return {k for k, v in policies.items() if v == CANDIDATE}


@pytest.mark.asyncio
async def test_traffic_shares_route_orders_by_policy(daemon_factory: Any, tmp_path: Path) -> None:
    """The share of orders each policy routes, as the daemon logs it per
    order: the configured percentage (to within a band the count falls in
    for any fair hash), changed by a reload, and the same policy for the
    same ClOrdID in another process, sent in another order."""
    n = 200
    first = [f"S{i}" for i in range(n)]
    second = [f"T{i}" for i in range(n)]
    path_a, path_b = tmp_path / "a.toml", tmp_path / "b.toml"
    write_atomically(path_a, with_share(30))
    write_atomically(path_b, with_share(80))
    a = daemon_factory("--config", str(path_a), data_dir=tmp_path / "data-a").start()
    b = daemon_factory("--config", str(path_b), data_dir=tmp_path / "data-b").start()
    ca = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    cb = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await ca.connect("127.0.0.1", a.fix_port)
    await cb.connect("127.0.0.1", b.fix_port)

    # A at 30 %, then reloaded to 80 %: the split follows
    a_first = await policies_of(a, ca, first)
    assert_share(a_first, 30)
    write_atomically(path_a, with_share(80))
    a.proc.send_signal(signal.SIGHUP)
    await wait_for_reloads(a, 1)
    a_second = await policies_of(a, ca, second)
    assert_share(a_second, 80)
    # the two bands do not overlap, so the reload changed the observed split
    assert len(on_candidate(a_first)) < len(on_candidate(a_second))

    # B started at 80 %, the same ClOrdIDs sent last to first: each gets the
    # policy it got from A at the same share, so the choice is the order's
    # own, not the process's or the arrival order's
    b_second = await policies_of(b, cb, second[::-1])
    assert b_second == a_second
    # and an order on the candidate at 30 % is on it at 80 % too
    b_first = await policies_of(b, cb, first[::-1])
    assert_share(b_first, 80)
    assert on_candidate(a_first) <= on_candidate(b_first)

    # rolled back by a reload: every order on the primary policy again
    write_atomically(path_a, with_share(None))
    a.proc.send_signal(signal.SIGHUP)
    await wait_for_reloads(a, 2)
    back = await policies_of(a, ca, [f"U{i}" for i in range(50)])
    assert set(back.values()) == {PRIMARY}
    await ca.logout()
    await cb.logout()


@pytest.mark.asyncio
async def test_a_bad_file_changes_nothing_and_says_why(running: Running) -> None:
    flow = running.flow
    rules_before = flow.rules
    version = running.gateway.config_version()
    bad = [
        (DEFAULT_TEXT + "\n[routing\n", "TOML syntax error"),
        (replaced("max_reroutes = 2", "max_reroutes = -1"), "routing.max_reroutes: must be >= 0"),
        (
            replaced('hard_limit_usd = "30000000"', 'hard_limit_usd = "1000"'),
            "lps[0].soft_limit_usd: must be < hard_limit_usd",
        ),
        (replaced("latency_ms = 0", "latency_ms = -3"), "lps[0].settings.latency_ms: must be >= 0"),
        (
            # more lots than can be counted: refused whole, not half applied
            replaced('max_order_qty = "5000000"     #', 'max_order_qty = "1e40"     #'),
            "risk.default.max_order_qty: too large",
        ),
    ]
    for text, reason in bad:
        status, details = await running.reload_with(text)
        assert status == "invalid"
        assert any(reason in d for d in details), details
        assert flow.rules is rules_before
        assert running.gateway.config_version() == version
    running.path.unlink()
    outcome = await running.gateway.reloader.reload("test")
    assert outcome.status == "invalid"
    assert "cannot read configuration file" in outcome.details[0]
    assert flow.rules is rules_before


@pytest.mark.asyncio
async def test_a_change_needing_a_restart_is_refused_whole(running: Running) -> None:
    flow = running.flow
    rules_before = flow.rules
    text = replaced('max_order_qty = "5000000"', 'max_order_qty = "1000"')
    text = replaced('SenderCompID = "GATEWAY"', 'SenderCompID = "GW2"', text)
    status, details = await running.reload_with(text)
    assert status == "restart_required"
    assert details == ["sessions[0].SenderCompID"]
    assert flow.rules is rules_before  # the hot risk change was not applied either


@pytest.mark.asyncio
async def test_admin_api_needs_the_token_and_reload_over_http(running: Running) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/admin/sessions", "/admin/lps", "/admin/config", "/admin/orders"):
            async with http.get(running.url(path)) as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.get(running.url(path), headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(running.url("/admin/config"), headers=auth) as r:
            assert r.status == 200
            body = await r.json()
            assert body["version"] == running.gateway.config_version()[0]
            assert body["config"]["gateway"]["admin_token"] == "(redacted)"
        async with http.post(running.url("/admin/reload")) as r:
            assert r.status == 401
        running.path.write_text(replaced("max_reroutes = 2", "max_reroutes = 3"))
        async with http.post(running.url("/admin/reload"), headers=auth) as r:
            assert r.status == 200
            assert (await r.json())["status"] == "applied"
        running.path.write_text(replaced("max_message_size = 65536", "max_message_size = 4096"))
        async with http.post(running.url("/admin/reload"), headers=auth) as r:
            assert r.status == 409
        # the token itself is reloadable; an empty one closes the admin API
        running.path.write_text(replaced(f'admin_token = "{TOKEN}"', 'admin_token = ""'))
        async with http.post(running.url("/admin/reload"), headers=auth) as r:
            assert r.status == 200
        async with http.get(running.url("/admin/sessions"), headers=auth) as r:
            assert r.status == 403


@pytest.mark.asyncio
async def test_the_read_token_reads_and_changes_nothing(running: Running) -> None:
    with_read = replaced(
        f'admin_token = "{TOKEN}"\n', f'admin_token = "{TOKEN}"\nread_token = "desk"\n'
    )
    assert await running.reload_with(with_read) == ("applied", ["gateway.read_token"])
    version = running.gateway.config_version()
    read = {"Authorization": "Bearer desk"}
    async with aiohttp.ClientSession() as http:
        for path in ("/admin/sessions", "/admin/orders", "/admin/config", "/admin/summary"):
            async with http.get(running.url(path), headers=read) as r:
                assert r.status == 200, path
        async with http.get(running.url("/admin/config"), headers=read) as r:
            assert (await r.json())["config"]["gateway"]["read_token"] == "(redacted)"
        running.path.write_text(replaced("max_reroutes = 2", "max_reroutes = 3", with_read))
        for path in ("/admin/reload", "/admin/cluster/handover?session=CLIENT1&to=gw2"):
            async with http.post(running.url(path), headers=read) as r:
                assert r.status == 403, path
                assert (await r.json())["error"] == (
                    "the read token may not POST: this takes gateway.admin_token"
                )
        assert running.gateway.config_version() == version
        async with http.post(
            running.url("/admin/reload"), headers={"Authorization": f"Bearer {TOKEN}"}
        ) as r:
            assert (r.status, (await r.json())["status"]) == (200, "applied")


@pytest.mark.asyncio
async def test_admin_views_show_orders_exposure_and_lps(running: Running) -> None:
    c = running.client
    c.send(b"D", order("REST", "1", "2000", ord_type="2", tif="1", price="0.50000"))
    await reports_until(c, b"REST", b"0")
    c.send(b"D", order("FILL", "1", "3000"))
    await reports_until(c, b"FILL", *FINAL)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(running.url("/admin/orders?client=CLIENT1")) as r:
            (rest,) = await r.json()
        assert (rest["cl_ord_id"], rest["qty"], rest["price"]) == ("REST", "2000", "0.5")
        assert (rest["status"], rest["time_in_force"]) == ("new", "gtc")
        async with http.get(running.url("/admin/orders?client=CLIENT2")) as r:
            assert await r.json() == []
        async with http.get(running.url("/admin/exposures")) as r:
            exposures = await r.json()
        assert exposures["clients"]["CLIENT1"] == {"EUR/USD": "3000"}
        lp_total = sum(int(by.get("EUR/USD", "0")) for by in exposures["lps"].values())
        assert lp_total == 3000
        async with http.get(running.url("/admin/lps")) as r:
            lps = {lp["name"]: lp for lp in await r.json()}
        assert set(lps) == {"LP_A", "LP_B", "LP_C"}
        assert all(lp["up"] for lp in lps.values())
        assert sum(lp["child_orders"] for lp in lps.values()) >= 1
        async with http.get(running.url("/admin/sessions")) as r:
            sessions = {s["session"]: s for s in await r.json()}
        assert sessions["FIX.4.4:GATEWAY->CLIENT1"]["logged_on"] is True


def metric(text: str, name: str, default: float | None = None) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    if match is None and default is not None:
        return default
    assert match is not None, name
    return float(match.group(1))


@pytest.mark.asyncio
async def test_metrics_are_present_and_move(running: Running) -> None:
    async with aiohttp.ClientSession() as http:

        async def scrape() -> str:
            async with http.get(running.url("/metrics")) as r:
                assert r.status == 200
                return await r.text()

        before = await scrape()
        for i in range(10):
            running.client.send(b"D", order(f"M{i}", "1" if i % 2 else "2", "1000"))
        await all_final(running.client, [f"M{i}" for i in range(10)])
        # counted as the final reports went out: no wait needed
        after = await scrape()
    names = [
        'fixgw_orders_received_total{client="CLIENT1"}',
        'fixgw_orders_final_total{client="CLIENT1",status="filled"}',
        "fixgw_order_latency_seconds_count",
        'fixgw_policy_orders_total{policy="best_price_exposure_aware"}',
        'fixgw_session_messages_total{direction="in",session="FIX.4.4:GATEWAY->CLIENT1"}',
    ]
    for name in names:
        assert metric(after, name) >= metric(before, name, 0.0) + 10, name
    assert metric(after, 'fixgw_order_latency_seconds_bucket{le="+Inf"}') >= 10
    children = sum(
        metric(after, f'fixgw_lp_child_orders_total{{lp="{lp}"}}')
        for lp in ("LP_A", "LP_B", "LP_C")
        if f'fixgw_lp_child_orders_total{{lp="{lp}"}}' in after
    )
    assert children >= 10
    for family in (
        "fixgw_lp_up",
        "fixgw_lp_exposure_usd",
        "fixgw_lp_headroom_usd",
        "fixgw_lp_fill_rate",
        "fixgw_lp_reject_rate",
        "fixgw_lp_ack_latency_seconds_bucket",
        "fixgw_open_orders",
        "fixgw_session_state",
        "fixgw_config_reloads_total",
        "fixgw_config_last_reload_success_timestamp_seconds",
        "fixgw_event_loop_lag_seconds",
        "fixgw_policy_share_percent",
    ):
        assert re.search(rf"^{family}[{{ ]", after, re.MULTILINE), family
    assert metric(after, 'fixgw_lp_up{lp="LP_A"}') == 1.0


@pytest.mark.asyncio
async def test_readiness_counts_only_the_lps_routed_to(running: Running) -> None:
    async def readyz() -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(running.url("/readyz")) as r:
            return r.status, (await r.json())["detail"]

    flow = running.flow
    for _ in range(200):
        if len(flow.lps_up()) == 3:
            break
        await asyncio.sleep(0.05)  # polling, 10 s at most
    status, detail = await readyz()
    assert status == 200
    assert detail.endswith("LPs up: LP_A, LP_B, LP_C")
    # LP_A taken out of routing: no longer counted
    outcome, _ = await running.reload_with(replaced("enabled = true", "enabled = false"))
    assert outcome == "applied"
    status, detail = await readyz()
    assert status == 200
    assert detail.endswith("LPs up: LP_B, LP_C")
    # the LPs routed to are down: no order can go anywhere, not ready,
    # though LP_A's link is up
    for name in ("LP_B", "LP_C"):
        flow.adapters[name].disconnect_now()  # type: ignore[attr-defined]
    assert flow.lps_up() == ["LP_A"]
    assert await readyz() == (503, "no enabled LP is up")
    # LP_A brought back into routing: ready again
    outcome, _ = await running.reload_with(DEFAULT_TEXT)
    assert outcome == "applied"
    status, detail = await readyz()
    assert status == 200
    assert detail.endswith("LPs up: LP_A")


@pytest.mark.asyncio
async def test_margin_figures_name_the_config_version_in_force_at_start(tmp_path: Path) -> None:
    """docs/margin.md: with no [margin] version, the config's own version
    (generation and content hash, as /admin/config and fixgw_config_info
    show it) names every margin figure.  With a relative data_dir (as the
    packaged default has) the start named them after the hash of the config
    with its paths resolved: another version than the one reported."""
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "fixgw.toml"
    path.write_text(
        DEFAULT_TEXT.replace('version = "default-2026-12"', "", 1).replace(
            'data_dir = "../var/data"', 'data_dir = "../data"', 1
        )
    )
    overrides = Overrides(fix_port=free_port(), http_port=0, drop_copy_port=0)
    gateway = Gateway(overrides.apply(load_config(path)), path, overrides)
    await gateway.start()
    try:
        flow = gateway.order_flow
        assert flow is not None
        assert flow.rules.margin is not None
        version = gateway.config_version()[0]
        assert (flow.rules.version, flow.rules.margin.version) == (version, version)
    finally:
        await gateway.stop()
