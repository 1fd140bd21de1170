"""``docs/grafana-dashboard.json`` only queries metrics the daemon exposes.

Every ``fixgw_*`` name in the dashboard's queries (panel targets, template
variables, annotations) must be a series name a running daemon serves on
``/metrics`` after order traffic: a gauge by its name, a counter with
``_total``, a histogram as ``_bucket``, ``_count`` or ``_sum``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
NAME = re.compile(r"fixgw_[a-z_]+")
QUERY_KEYS = ("expr", "query", "definition")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(node: Any) -> Iterator[str]:
    """Every query string in the dashboard, wherever it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in QUERY_KEYS and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def referenced_names(dashboard: dict[str, Any]) -> set[str]:
    return {name for q in queries(dashboard) for name in NAME.findall(q)}


def exposed_series(text: str) -> tuple[set[str], dict[str, str]]:
    """Series names a scrape can hold, and each family's type, from a
    /metrics body (families without samples count: their TYPE is there)."""
    series: set[str] = set()
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        series.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        series.update(sample.name for sample in family.samples)
    return series, types


def family_of(name: str, types: dict[str, str]) -> str | None:
    """The family a series name belongs to (suffixes stripped as its type adds them)."""
    if types.get(name) == "gauge":
        return name
    for kind, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            base = name.removesuffix(suffix)
            if name.endswith(suffix) and types.get(base) == kind:
                return base
    return name if name in types else None


# --- the file alone -------------------------------------------------------------------


def test_dashboard_json_is_an_importable_grafana_dashboard() -> None:
    d = load()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"]
    assert d["title"]
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"] for v in d["templating"]["list"]}
    assert {"instance", "lp"} <= variables

    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    grid: set[tuple[int, int]] = set()
    for p in panels(d):
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & grid, f"panel {p['title']!r} overlaps another"
        grid |= cells
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs, p["title"]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            expr = t["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert expr.count("{") == expr.count("}"), expr
            assert expr.count("[") == expr.count("]"), expr
            assert NAME.search(expr), f"{p['title']!r} queries no fixgw metric: {expr}"


def test_dashboard_covers_the_operational_views() -> None:
    exprs = "\n".join(queries(load()))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(fixgw_order_latency" in exprs
    assert re.search(r"rate\(fixgw_orders_final_total\{[^}]*\}\[1m\]\)", exprs)
    for needle in (
        "sum by (reason) (rate(fixgw_order_rejects_total",
        "fixgw_lp_fill_rate",
        "fixgw_lp_reject_rate",
        "fixgw_lp_ack_latency_seconds_bucket",
        "fixgw_lp_exposure_usd",
        "fixgw_lp_soft_limit_usd",
        "fixgw_lp_hard_limit_usd",
        "fixgw_lp_headroom_usd",
        "fixgw_lp_up",
        "fixgw_open_orders",
        "fixgw_session_state",
        "fixgw_session_messages_total",
        "fixgw_policy_share_percent",
        "fixgw_policy_order_latency_seconds_bucket",
        "fixgw_config_reloads_total",
        "fixgw_config_last_reload_success",
        "fixgw_event_loop_lag_seconds",
    ):
        assert needle in exprs, needle


# --- against a running daemon -----------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_ready(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get(port, "/readyz")[0] == 200:
            return
        time.sleep(0.1)  # polling, with the deadline above
    raise TimeoutError(f"/readyz not 200 after {timeout:g} s")


def test_every_metric_the_dashboard_queries_is_exposed(
    daemon_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    d = daemon_factory().start()
    wait_ready(d.http_port)
    bench = subprocess.run(
        [
            *(sys.executable, "-m", "gateway", "bench", "--port", str(d.fix_port)),
            *("--rate", "300", "--duration", "1", "--no-yardstick"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bench.returncode == 0, f"fixgw bench failed:\n{bench.stdout}\n{bench.stderr}"
    status, text = http_get(d.http_port, "/metrics")
    assert status == 200
    series, types = exposed_series(text)

    referenced = referenced_names(load())
    assert len(referenced) >= 30, sorted(referenced)
    missing = sorted(n for n in referenced if n not in series)
    assert not missing, f"queried but not exposed by the daemon: {missing}"
    # each name is used the way its type is exposed (no bare histogram, no counter
    # without _total), and every family is known
    for name in referenced:
        assert family_of(name, types) is not None, name
    # the traffic made the order and LP families carry samples
    for needle in ("fixgw_order_latency_seconds_bucket{", 'fixgw_lp_fill_rate{lp="LP_A"}'):
        assert needle in text, needle
