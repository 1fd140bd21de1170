"""``docs/prometheus-alerts.yml``: the alerting rules shipped beside the
Grafana dashboard.

The file is read with a small reader of the YAML subset it keeps to (no YAML
library is a dependency); the reader refuses anything else, so that a rule
cannot be misread.  The rules are checked for shape and for the conditions
operators alert on; every metric an expression names must be served, with
the label values the expression matches, on a live ``/metrics`` after one
order: the gateway's, or for the back office's rules that of a ``fixgw
backoffice`` following the gateway's drop copy.  Prometheus's own checker
and rule unit tests (``promtool``, Debian's package ``prometheus``, installed
when missing as the tests' other packages are: ``aptkit``) run the rules on
synthetic series.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aptkit import PackageUnavailable, install
from netkit import free_port
from prometheus_client.parser import text_string_to_metric_families
from test_backoffice import Process

from backoffice.ledger import BREAK_KINDS
from config import SessionSettings, default_config_path
from gateway.fix import codec
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "docs" / "prometheus-alerts.yml"
METRIC = re.compile(r"\b(fixgw_[a-z_]+)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
BACKOFFICE_GROUPS = {"fixgw-backoffice"}  # on the back office's /metrics
# the break types that mean a position the house does not know of, or a
# wrong one the gateway trades on (the file's comments say why)
CRITICAL_BREAKS = (
    "missing_in_house",
    "uncovered_client_fill",
    "lp_position_mismatch",
    "client_position_mismatch",
)
DURATION = re.compile(r"^(\d+[smhd])+$")
RULE_KEYS = {"alert", "expr", "for", "labels", "annotations"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


# --- a reader of the YAML subset the rules file keeps to -----------------------------------

_KEY = re.compile(r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[A-Za-z_][\w.-]*):(?:\s+|$)""")
_BLOCK = ("|", "|-", ">", ">-")


class YamlSubsetError(ValueError):
    pass


class _Reader:
    """Block mappings and sequences, one-line plain or quoted scalars, and
    ``|`` / ``>`` block scalars; comments and blank lines.  Everything else
    (flow collections, anchors, tags, multi-line plain scalars) is refused."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.i = 0

    def fail(self, why: str) -> YamlSubsetError:
        return YamlSubsetError(f"line {self.i + 1}: {why}: {self.lines[self.i]!r}")

    def indent(self) -> int | None:
        """The indentation of the next line with content (None at the end)."""
        while self.i < len(self.lines):
            text = self.lines[self.i]
            if "\t" in text[: len(text) - len(text.lstrip())]:
                raise self.fail("tab in indentation")
            if text.strip() and not text.lstrip().startswith("#"):
                return len(text) - len(text.lstrip(" "))
            self.i += 1
        return None

    def document(self) -> Any:
        start = self.indent()
        if start is None:
            return None
        value = self.node(start)
        if self.indent() is not None:
            raise self.fail("unexpected indentation")
        return value

    def node(self, indent: int) -> Any:
        text = self.lines[self.i].strip()
        if text == "-" or text.startswith("- "):
            return self.sequence(indent)
        if _KEY.match(text):
            return self.mapping(indent)
        value = self.scalar(text)
        self.i += 1
        return value

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while self.indent() == indent:
            line = self.lines[self.i]
            text = line.strip()
            if not (text == "-" or text.startswith("- ")):
                break
            rest = line[indent + 1 :]
            if not rest.strip():
                self.i += 1
                inner = self.indent()
                if inner is None or inner <= indent:
                    raise self.fail("empty list item")
                items.append(self.node(inner))
                continue
            # "- key: value": the item is the block starting after the dash
            inner = indent + 1 + len(rest) - len(rest.lstrip(" "))
            self.lines[self.i] = " " * inner + rest.lstrip(" ")
            items.append(self.node(inner))
        return items

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while self.indent() == indent:
            text = self.lines[self.i].strip()
            if text.startswith("- "):
                break
            match = _KEY.match(text)
            if match is None:
                raise self.fail("not a key")
            key = self.scalar(match.group(1))
            if key in out:
                raise self.fail(f"key {key!r} twice")
            rest = text[match.end() :].strip()
            if rest and rest not in _BLOCK and not rest.startswith("#"):
                out[key] = self.scalar(rest)
                self.i += 1
                continue
            self.i += 1
            if rest in _BLOCK:
                out[key] = self.block(indent, rest)
            else:
                inner = self.indent()
                if inner is not None and (
                    inner > indent
                    or (inner == indent and self.lines[self.i].strip().startswith("- "))
                ):
                    out[key] = self.node(inner)
                else:
                    out[key] = None
        if (after := self.indent()) is not None and after > indent:
            raise self.fail("unexpected indentation")
        return out

    def block(self, indent: int, style: str) -> str:
        lines: list[str] = []
        inner: int | None = None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip():
                here = len(line) - len(line.lstrip(" "))
                if here <= indent:
                    break
                inner = here if inner is None else inner
                if here < inner:
                    raise self.fail("block line indented less than the first")
                lines.append(line[inner:])
            else:
                lines.append("")
            self.i += 1
        while lines and not lines[-1]:
            lines.pop()
        text = "\n".join(lines) if style.startswith("|") else " ".join(s.strip() for s in lines)
        return text if style.endswith("-") else text + "\n"

    def scalar(self, text: str) -> str:
        quoted = re.match(r'"(?:[^"\\]|\\.)*"' + "|'(?:[^']|'')*'", text)
        if quoted is not None:
            rest = text[quoted.end() :].strip()
            if rest and not rest.startswith("#"):
                raise self.fail("text after a quoted scalar")
            inner = quoted.group(0)
            if inner.startswith("'"):
                return inner[1:-1].replace("''", "'")
            value: str = json.loads(inner)  # the escapes used here are JSON's
            return value
        if text[:1] in ('"', "'"):
            raise self.fail("unterminated quoted scalar")
        plain = text.split(" #", 1)[0].rstrip()
        if plain[:1] in set("[]{}&*!|>%@`,?:-#") or ": " in plain:
            raise self.fail("a plain scalar this reader does not take (quote it)")
        return plain


def load_yaml_subset(text: str) -> Any:
    return _Reader(text).document()


def test_the_reader_takes_the_subset_and_refuses_the_rest() -> None:
    text = """
# comment
a: 1
b:
  - x
  - "y: z"   # comment
  -
    c: 'it''s'
    d: |
      one
        two
    e: >-
      folded
      line
f:
- g
"""
    assert load_yaml_subset(text) == {
        "a": "1",
        "b": ["x", "y: z", {"c": "it's", "d": "one\n  two\n", "e": "folded line"}],
        "f": ["g"],
    }
    for bad in ("a: {b: 1}", "a: [1, 2]", "a: &x 1", "a: b: c", "a:\n\tb: 1", "a: 1\n  b: 2"):
        with pytest.raises(YamlSubsetError):
            load_yaml_subset(bad)


# --- the file ----------------------------------------------------------------------------


def groups() -> dict[str, list[dict[str, Any]]]:
    """The rules of each group, by its name."""
    data = load_yaml_subset(RULES.read_text())
    assert set(data) == {"groups"}
    out: dict[str, list[dict[str, Any]]] = {}
    for group in data["groups"]:
        assert set(group) == {"name", "rules"}, group
        assert group["name"].startswith("fixgw")
        assert group["name"] not in out, group["name"]
        out[group["name"]] = group["rules"]
    return out


def rules() -> list[dict[str, Any]]:
    return [rule for found in groups().values() for rule in found]


def names_in(expr: str) -> Iterator[tuple[str, dict[str, tuple[str, ...]]]]:
    """Each metric an expression names, with the label values it matches:
    one for ``=``, each of an alternation of words for ``=~`` (any other
    regular expression, or a negative matcher, is refused: what it matches
    could not be checked)."""
    for match in METRIC.finditer(expr):
        matchers: dict[str, tuple[str, ...]] = {}
        for label, op, value in MATCHER.findall(match.group(2) or ""):
            assert op in ("=", "=~"), f"{match.group(0)}: only = and =~ are checked"
            if op == "=~":
                values = tuple(value.split("|"))
                assert all(re.fullmatch(r"\w+", v) for v in values), f"{match.group(0)}: {value}"
                matchers[label] = values
            else:
                matchers[label] = (value,)
        yield match.group(1), matchers


def test_every_rule_is_a_complete_alert() -> None:
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names)), names
    for rule in found:
        name = rule["alert"]
        assert set(rule) <= RULE_KEYS, name
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), name
        assert re.fullmatch(r"Fixgw[A-Z][A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert "for" not in rule or DURATION.match(rule["for"]), name
        expr = rule["expr"]
        for pair in ("()", "{}", "[]"):
            assert expr.count(pair[0]) == expr.count(pair[1]), (name, expr)
        assert list(names_in(expr)), f"{name} queries no fixgw metric: {expr}"


def alert(**where: str) -> list[dict[str, Any]]:
    """The rules whose expression holds every ``where`` text (``severity`` apart)."""
    severity = where.pop("severity", None)
    return [
        r
        for r in rules()
        if all(text in " ".join(r["expr"].split()) for text in where.values())
        and (severity is None or r["labels"]["severity"] == severity)
    ]


def test_the_rules_cover_what_operators_alert_on() -> None:
    p99 = "histogram_quantile(0.99, sum by (instance, le) (rate(fixgw_order_latency_seconds_bucket"
    assert alert(q=p99, t="> 0.001", severity="warning")
    assert alert(q=p99, t="> 0.01", severity="critical")
    rejected = 'rate(fixgw_lp_child_orders_ended_total{outcome="rejected"}[5m])'
    assert alert(q=rejected, t="> 0.03", severity="warning")
    assert alert(q=rejected, t="> 0.05", severity="critical")
    (down,) = alert(q="fixgw_lp_up == 0")
    assert down["labels"]["severity"] == "critical"
    (off,) = alert(q="fixgw_session_logged_on == 0")
    assert off["for"] == "15m"
    assert alert(q="increase(fixgw_orders_shed_total[5m])", t="> 0", severity="warning")
    assert alert(q="fixgw_event_loop_lag_distribution_seconds_bucket", severity="warning")
    assert alert(q="fixgw_event_loop_lag_distribution_seconds_bucket", severity="critical")
    (call,) = alert(q="fixgw_margin_level < 1", c="increase(fixgw_margin_calls_total[5m]) > 0")
    assert (call["labels"]["severity"], call["for"]) == ("warning", "1m")
    assert alert(q="increase(fixgw_margin_stop_outs_total[5m]) > 0", severity="critical")
    # the drop copy, on the gateway's /metrics
    assert alert(q="fixgw_drop_copy_up == 0", severity="critical")
    assert alert(q="increase(fixgw_drop_copy_restarts_total[15m]) > 2", severity="warning")
    assert alert(q="fixgw_drop_copy_lag_batches > 1000", severity="warning")
    assert alert(q="fixgw_drop_copy_session_logged_on == 0", severity="warning")
    # the back office, on its own /metrics
    office = {r["alert"]: r for r in groups()["fixgw-backoffice"]}
    assert {r["alert"] for r in alert(q="fixgw_recon_breaks")} <= set(office)
    assert alert(q="fixgw_recon_breaks > 0", severity="warning")
    critical = "|".join(CRITICAL_BREAKS)
    assert alert(q=f'fixgw_recon_breaks{{type=~"{critical}"}} > 0', severity="critical")
    assert set(CRITICAL_BREAKS) <= set(BREAK_KINDS)
    assert alert(q="fixgw_recon_lag_seconds > 60", severity="warning")
    assert alert(q='increase(fixgw_recon_runs_total{mode="incremental"}[10m]) == 0')
    assert alert(q="fixgw_backoffice_feed_logged_on == 0", severity="warning")
    assert alert(q="fixgw_backoffice_positions_unavailable == 1", severity="warning")
    assert alert(q="fixgw_backoffice_exports_failing > 0", severity="warning")
    assert alert(q="increase(fixgw_backoffice_bad_records_total[15m]) > 0", severity="warning")
    for name, rule in office.items():
        for metric, _ in names_in(rule["expr"]):
            assert metric.startswith(("fixgw_recon_", "fixgw_backoffice_")), (name, metric)


# --- promtool -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's ``promtool``; Debian's ``prometheus`` installed with
    apt-get when it is missing and the tests run as root (its server is
    neither started nor left enabled).  Fails, rather than skips, when it can
    be neither found nor installed."""
    try:
        return install("prometheus", lambda: shutil.which("promtool"), services=("prometheus",))
    except PackageUnavailable as exc:
        pytest.fail(str(exc))


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


GW = {"instance": "gw:8080", "job": "fixgw"}
BO = {"instance": "bo:8082", "job": "fixgw-backoffice"}
DROP_COPY = "FIX.4.4:GATEWAY->BACKOFFICE"
CLIENT1, CLIENT2 = "FIX.4.4:GATEWAY->CLIENT1", "FIX.4.4:GATEWAY->CLIENT2"
MARGINED = "CLIENT1"  # margin metrics are labelled by the client's CompID
MARGIN_ALERTS = ("FixgwMarginCall", "FixgwMarginStopOut")
LATENCY_BOUNDS = ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "+Inf")
LAG_BOUNDS = ("0.0005", "0.005", "0.01", "0.025", "0.25", "+Inf")


def series(name: str, values: str, *, of: dict[str, str] = GW, **labels: str) -> dict[str, str]:
    """A series of the target ``of`` (the gateway's, or the back office's: BO)."""
    text = ", ".join(f'{k}="{v}"' for k, v in {**of, **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def growing(bounds: tuple[str, ...], *per_minute: int) -> dict[str, str]:
    """Bucket values: each bound's count grows by its number every minute."""
    return {bound: f"0+{n}x30" for bound, n in zip(bounds, per_minute, strict=True)}


def histogram(name: str, buckets: dict[str, str]) -> list[dict[str, str]]:
    """A histogram's bucket series and its count (the +Inf bucket's)."""
    out = [series(f"{name}_bucket", values, le=bound) for bound, values in buckets.items()]
    out.append(series(f"{name}_count", buckets["+Inf"]))
    return out


def latency(*per_minute: int) -> list[dict[str, str]]:
    return histogram("fixgw_order_latency_seconds", growing(LATENCY_BOUNDS, *per_minute))


def lag(buckets: dict[str, str]) -> list[dict[str, str]]:
    return histogram("fixgw_event_loop_lag_distribution_seconds", buckets)


def ended(lp: str, filled: int, rejected: int) -> list[dict[str, str]]:
    name = "fixgw_lp_child_orders_ended_total"
    return [
        series(name, f"0+{filled}x30", lp=lp, outcome="filled"),
        series(name, f"0+{rejected}x30", lp=lp, outcome="rejected"),
        series(name, "0x30", lp=lp, outcome="unfilled"),
    ]


def healthy() -> list[dict[str, str]]:
    return [
        *latency(*[600] * len(LATENCY_BOUNDS)),
        *ended("LP_A", 600, 0),
        series("fixgw_lp_up", "1x30", lp="LP_A"),
        series("fixgw_session_logged_on", "1x30", session=CLIENT1),
        *lag(growing(LAG_BOUNDS, *[600] * len(LAG_BOUNDS))),
        series("fixgw_orders_shed_total", "0x30"),
        *margin(level="5x30", calls="0x30", stop_outs="0x30"),
        *drop_copy(up="1x30", restarts="0x30", lag="0 3 0 1 0 2 0x25"),
        series("fixgw_drop_copy_session_logged_on", "1x30", session=DROP_COPY),
        *breaks(),
        series("fixgw_recon_lag_seconds", "0 1.2 0.4 0.9 0x27", of=BO),
        series("fixgw_recon_runs_total", "0+60x30", of=BO, mode="incremental"),
        series("fixgw_recon_runs_total", "0x30", of=BO, mode="full"),
        series("fixgw_backoffice_feed_logged_on", "1x30", of=BO, gateway="gateway"),
        series("fixgw_backoffice_positions_unavailable", "0x30", of=BO, gateway="gateway"),
        series("fixgw_backoffice_exports_failing", "0x30", of=BO),
        *(
            series("fixgw_backoffice_bad_records_total", "0x30", of=BO, source=source)
            for source in ("drop_copy", "statement")
        ),
    ]


def drop_copy(**values: str) -> list[dict[str, str]]:
    """The drop-copy process's series: ``up``, ``restarts``, ``lag``, each given."""
    names = {
        "up": "fixgw_drop_copy_up",
        "restarts": "fixgw_drop_copy_restarts_total",
        "lag": "fixgw_drop_copy_lag_batches",
    }
    return [series(names[key], v) for key, v in values.items()]


def breaks(**open_: str) -> list[dict[str, str]]:
    """The breaks of every type: none, but for the values given by type."""
    return [
        series("fixgw_recon_breaks", open_.get(kind, "0x30"), of=BO, type=kind)
        for kind in BREAK_KINDS
    ]


def margin(**values: str) -> list[dict[str, str]]:
    """MARGINED's margin series: ``level``, ``calls``, ``stop_outs``, each given."""
    names = {
        "level": "fixgw_margin_level",
        "calls": "fixgw_margin_calls_total",
        "stop_outs": "fixgw_margin_stop_outs_total",
    }
    return [series(names[key], v, client=MARGINED) for key, v in values.items()]


def fired(name: str, at: str, annotations: dict[str, str], **labels: str) -> dict[str, Any]:
    severity = next(r["labels"]["severity"] for r in rules() if r["alert"] == name)
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {"exp_labels": {**labels, "severity": severity}, "exp_annotations": annotations}
        ],
    }


def silent(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def scenario(instead: list[dict[str, str]], *checks: dict[str, Any]) -> dict[str, Any]:
    """The healthy series, those of a metric in ``instead`` replaced by its
    series there, and what must fire (or not)."""

    def name(s: dict[str, str]) -> str:
        return s["series"].split("{")[0]

    replaced = {name(s) for s in instead}
    base = [s for s in healthy() if name(s) not in replaced]
    return {"interval": "1m", "input_series": base + instead, "alert_rule_test": list(checks)}


def unit_tests() -> list[dict[str, Any]]:
    every = [r["alert"] for r in rules()]
    gw = {"instance": GW["instance"]}
    lp_b = {**GW, "lp": "LP_B"}
    return [
        # nothing fires on a healthy gateway
        scenario([], *(silent(name, "20m") for name in every)),
        # P99 between 1 and 2.5 ms: the warning, not the critical alert
        scenario(
            latency(0, 0, 600, 600, 600, 600, 600),
            fired(
                "FixgwOrderLatencyP99High",
                "10m",
                {
                    "summary": "Order P99 latency above 1 ms on gw:8080",
                    "description": "99% of orders took up to 2.485ms from NewOrderSingle to "
                    "their final ExecutionReport over the last 5 minutes (target: 1 ms).",
                },
                **gw,
            ),
            silent("FixgwOrderLatencyP99Critical", "10m"),
        ),
        # P99 above 10 ms: both
        scenario(
            latency(0, 0, 0, 0, 0, 600, 600),
            fired(
                "FixgwOrderLatencyP99Critical",
                "10m",
                {
                    "summary": "Order P99 latency above 10 ms on gw:8080",
                    "description": "99% of orders took up to 24.85ms from NewOrderSingle to "
                    "their final ExecutionReport over the last 5 minutes. Look at the event "
                    "loop lag and the LPs' ack latency.",
                },
                **gw,
            ),
        ),
        # 30 orders shed at minute 5, none after: fired a minute later, for
        # as long as they are in the last 5 minutes
        scenario(
            [series("fixgw_orders_shed_total", "0x4 30x25")],
            silent("FixgwOrdersShed", "5m"),
            fired(
                "FixgwOrdersShed",
                "7m",
                {
                    "summary": "Orders shed on gw:8080: past capacity",
                    "description": "30 NewOrderSingles were refused (gateway busy) in the last "
                    "5 minutes because they waited longer than orders.shed_after_ms behind "
                    "others of their connection. fixgw_order_rejects by reason shed says whose; "
                    "orders_shed in the log says how long they waited.",
                },
                **gw,
            ),
            silent("FixgwOrdersShed", "12m"),
        ),
        # LP_B rejects 4% of its child orders: the warning; LP_A rejects none
        scenario(
            [*ended("LP_A", 600, 0), *ended("LP_B", 96, 4)],
            fired(
                "FixgwLpRejectRateHigh",
                "15m",
                {
                    "summary": "LP LP_B rejects more than 3% of child orders",
                    "description": "4% of the child orders that ended at LP_B over the last "
                    "5 minutes were rejected.",
                },
                **gw,
                lp="LP_B",
            ),
            silent("FixgwLpRejectRateCritical", "15m"),
        ),
        # half of them rejected, but too few (10 in 5 minutes) to say anything
        scenario(
            [*ended("LP_A", 600, 0), *ended("LP_B", 1, 1)],
            silent("FixgwLpRejectRateHigh", "15m"),
            silent("FixgwLpRejectRateCritical", "15m"),
        ),
        # LP_B's link is down
        scenario(
            [
                series("fixgw_lp_up", "1x30", lp="LP_A"),
                series("fixgw_lp_up", "1 1 0x28", lp="LP_B"),
            ],
            silent("FixgwLpDown", "2m"),
            fired(
                "FixgwLpDown",
                "5m",
                {
                    "summary": "LP LP_B is down on gw:8080",
                    "description": "The link to LP_B has been down for a minute: no order is "
                    "routed to it. Its lp_status events in the log say why.",
                },
                **lp_b,
            ),
        ),
        # CLIENT2's session is configured but nobody logs on
        scenario(
            [
                series("fixgw_session_logged_on", "1x30", session=CLIENT1),
                series("fixgw_session_logged_on", "0x30", session=CLIENT2),
            ],
            silent("FixgwSessionLoggedOff", "10m"),
            fired(
                "FixgwSessionLoggedOff",
                "20m",
                {
                    "summary": "FIX session FIX.4.4:GATEWAY->CLIENT2 not logged on",
                    "description": "FIX.4.4:GATEWAY->CLIENT2 on gw:8080 has not been logged on "
                    "for 15 minutes.",
                },
                **GW,
                session=CLIENT2,
            ),
        ),
        # 2% of the ticks 10-25 ms late: lagging; one tick 250 ms late: stalled
        scenario(
            lag(growing(LAG_BOUNDS, 588, 588, 588, 600, 600, 600)),
            fired(
                "FixgwEventLoopLagging",
                "10m",
                {
                    "summary": "Event loop lagging on gw:8080",
                    "description": "1% of the event loop's ticks ran more than 17.5ms late over "
                    "the last 5 minutes (target: under 10 ms).",
                },
                **gw,
            ),
            silent("FixgwEventLoopStalled", "10m"),
        ),
        scenario(
            lag({**growing(LAG_BOUNDS[:-1], *[600] * 5), "+Inf": "0+600x10 6601+600x20"}),
            silent("FixgwEventLoopStalled", "9m"),
            fired(
                "FixgwEventLoopStalled",
                "12m",
                {
                    "summary": "Event loop stalled on gw:8080",
                    "description": "The event loop was held for more than 250 ms at least once "
                    "in the last 5 minutes: every session and LP link waited that long.",
                },
                **gw,
            ),
            silent("FixgwEventLoopStalled", "20m"),
        ),
        # CLIENT1's margin level falls below 1 at minute 3: called a minute later
        scenario(
            margin(level="5 5 5 0.8x27"),
            silent("FixgwMarginCall", "3m"),
            fired(
                "FixgwMarginCall",
                "5m",
                margin_call_annotations(),
                **GW,
                client=MARGINED,
            ),
            silent("FixgwMarginStopOut", "5m"),
        ),
        # the margin watch called CLIENT1 between two scrapes (the level seen
        # at the scrapes stays above 1): called too, and quiet once the 5
        # minutes have passed
        scenario(
            margin(calls="0 0 0 1x27"),
            fired(
                "FixgwMarginCall",
                "5m",
                margin_call_annotations(),
                **GW,
                client=MARGINED,
            ),
            silent("FixgwMarginCall", "15m"),
        ),
        # a stop-out: critical at once
        scenario(
            margin(level="5 5 0.4 0.4 2x26", calls="0 0 1x28", stop_outs="0 0 1x28"),
            fired(
                "FixgwMarginStopOut",
                "3m",
                {
                    "summary": "Stop-out of CLIENT1 on gw:8080",
                    "description": "The gateway started a stop-out of CLIENT1 in the last 5 "
                    "minutes: its orders were canceled and its positions closed by the house, "
                    "largest loss first (stop_out_* events in the log).",
                },
                **GW,
                client=MARGINED,
            ),
            silent("FixgwMarginStopOut", "15m"),
        ),
        *drop_copy_scenarios(),
        *backoffice_scenarios(),
    ]


def drop_copy_scenarios() -> list[dict[str, Any]]:
    behind = "The drop copy of gw:8080 is {} order-journal batches behind and has fallen "
    behind += "further behind for 15 minutes: look at the CPUs it is left (drop_copy_cpus) "
    behind += "and at how fast its counterparties read."
    return [
        # the process ends at minute 2 and cannot start: down at minute 4;
        # its lag grows meanwhile, which the lag alert leaves to this one
        scenario(
            drop_copy(up="1 1 0x28", lag="0 0 0+200x28"),
            silent("FixgwDropCopyDown", "3m"),
            fired(
                "FixgwDropCopyDown",
                "5m",
                {
                    "summary": "Drop copy down on gw:8080",
                    "description": "The drop-copy process of gw:8080 has not run for 2 "
                    "minutes: no copy reaches the back office, and order-journal segments pile "
                    "up under orders/segments/. drop_copy_exited and drop_copy_failed in the "
                    "gateway's log say why.",
                },
                **GW,
            ),
            silent("FixgwDropCopyLagGrowing", "25m"),
        ),
        # started again three times in 3 minutes, then it stays up
        scenario(
            drop_copy(restarts="0 0 1 2 3x26"),
            silent("FixgwDropCopyRestarting", "3m"),
            fired(
                "FixgwDropCopyRestarting",
                "5m",
                {
                    "summary": "Drop copy restarting on gw:8080",
                    "description": "The drop-copy process of gw:8080 ended and was started "
                    "again more than twice in the last 15 minutes; drop_copy_exited in the "
                    "gateway's log says with what.",
                },
                **GW,
            ),
            silent("FixgwDropCopyRestarting", "25m"),
            silent("FixgwDropCopyDown", "25m"),
        ),
        # 100 batches more behind every minute: over 1,000 at minute 11,
        # growing since, fired 15 minutes later
        scenario(
            drop_copy(lag="0+100x30"),
            silent("FixgwDropCopyLagGrowing", "25m"),
            fired(
                "FixgwDropCopyLagGrowing",
                "28m",
                {
                    "summary": "Drop copy falling behind on gw:8080",
                    "description": behind.format(2800),
                },
                **GW,
            ),
        ),
        # a burst: 20,000 batches behind after 10 minutes, caught up in the
        # next 10: never growing for 15 minutes
        scenario(
            drop_copy(lag="0+2000x10 18000-2000x9 0x11"),
            *(silent("FixgwDropCopyLagGrowing", at) for at in ("12m", "16m", "20m", "30m")),
        ),
        # nobody logs on to the back office's drop-copy session
        scenario(
            [series("fixgw_drop_copy_session_logged_on", "1 0x29", session=DROP_COPY)],
            silent("FixgwDropCopySessionLoggedOff", "9m"),
            fired(
                "FixgwDropCopySessionLoggedOff",
                "12m",
                {
                    "summary": f"Drop-copy session {DROP_COPY} not logged on",
                    "description": f"Nobody has been logged on to {DROP_COPY} on gw:8080 for 10 "
                    "minutes: its copies wait in the gateway's store. Is the back office "
                    "(fixgw backoffice run) running, and can it reach the drop-copy port?",
                },
                **GW,
                session=DROP_COPY,
            ),
        ),
    ]


def backoffice_scenarios() -> list[dict[str, Any]]:
    def opened(kind: str, critical: bool) -> list[dict[str, Any]]:
        listing = f"`fixgw backoffice breaks --type {kind}` lists them."
        warning = {
            "summary": f"2 {kind} break(s) open on bo:8082",
            "description": f"Reconciliation on bo:8082 has had {kind} breaks open for 5 "
            f"minutes. {listing}",
        }
        checks = [
            silent("FixgwReconBreaks", "6m"),
            fired("FixgwReconBreaks", "8m", warning, **BO, type=kind),
        ]
        if not critical:
            return [*checks, silent("FixgwReconBreaksCritical", "8m")]
        woken = {
            "summary": f"2 {kind} break(s) open on bo:8082",
            "description": f"Reconciliation on bo:8082 has had {kind} breaks open for 5 "
            "minutes: the house holds a position it does not know of, or the gateway's limits "
            f"and margin run on a wrong one. {listing}",
        }
        return [*checks, fired("FixgwReconBreaksCritical", "8m", woken, **BO, type=kind)]

    return [
        # two breaks of each type in turn, open from minute 2: the warning 5
        # minutes later, and the critical alert too for the critical types
        *(
            scenario(breaks(**{kind: "0 0 2x28"}), *opened(kind, kind in CRITICAL_BREAKS))
            for kind in BREAK_KINDS
        ),
        # a break closed within 5 minutes wakes nobody
        scenario(
            breaks(missing_in_house="0 0 1 1 1 0x25"),
            silent("FixgwReconBreaks", "7m"),
            silent("FixgwReconBreaksCritical", "7m"),
        ),
        # runs fail from minute 2: the lag grows a minute a minute
        scenario(
            [series("fixgw_recon_lag_seconds", "0 0 0+60x28", of=BO)],
            silent("FixgwReconLagging", "6m"),
            fired(
                "FixgwReconLagging",
                "9m",
                {
                    "summary": "Reconciliation lagging on bo:8082",
                    "description": "The oldest trade bo:8082 has taken in and not reconciled "
                    "came 7m 0s ago (it stays near a second while runs keep up): look for "
                    "ledger_error in its log.",
                },
                **BO,
            ),
        ),
        # a catch-up that held runs for 3 minutes
        scenario(
            [series("fixgw_recon_lag_seconds", "0 90 150 90 0x26", of=BO)],
            *(silent("FixgwReconLagging", at) for at in ("4m", "8m")),
        ),
        # no run ends after minute 10
        scenario(
            [
                series("fixgw_recon_runs_total", "0+60x10 600x20", of=BO, mode="incremental"),
                series("fixgw_recon_runs_total", "0x30", of=BO, mode="full"),
            ],
            silent("FixgwReconStopped", "15m"),
            fired(
                "FixgwReconStopped",
                "22m",
                {
                    "summary": "No reconciliation run on bo:8082 for 10 minutes",
                    "description": "No reconciliation run of bo:8082 has ended in 10 minutes: "
                    "its ledger fails (ledger_error, ledger_write_failed in its log). The drop "
                    "copy waits in the gateway's store meanwhile; nothing is lost.",
                },
                **BO,
                mode="incremental",
            ),
        ),
        # following two gateways, gw2's drop copy goes away at minute 2
        scenario(
            [
                series("fixgw_backoffice_feed_logged_on", "1x30", of=BO, gateway="gw1"),
                series("fixgw_backoffice_feed_logged_on", "1 1 0x28", of=BO, gateway="gw2"),
            ],
            silent("FixgwBackofficeFeedLoggedOff", "6m"),
            fired(
                "FixgwBackofficeFeedLoggedOff",
                "8m",
                {
                    "summary": "Back office not logged on to gw2's drop copy",
                    "description": "bo:8082 has not been logged on to the drop copy of gw2 for 5 "
                    "minutes: drop_copy_unavailable in its log says why. Nothing is lost; its "
                    "trades are taken in at the next logon.",
                },
                **BO,
                gateway="gw2",
            ),
        ),
        # a day's export fails at minute 2, written at minute 21; another's
        # fails at minute 32 and stays failing
        scenario(
            [series("fixgw_backoffice_exports_failing", "0 0 1x18 0x10 1x40", of=BO)],
            silent("FixgwBackofficeExportFailing", "25m"),
            silent("FixgwBackofficeExportFailing", "55m"),
            fired(
                "FixgwBackofficeExportFailing",
                "65m",
                {
                    "summary": "Day export failing on bo:8082",
                    "description": "1 trading day(s) whose export failed have not been written "
                    "for 30 minutes: day_export_failed in the log and export_failures in "
                    "/backoffice/status say why (a full disk, an export folder not writable).",
                },
                **BO,
            ),
        ),
        # gw2 refuses the back office's look at its positions from minute 2
        scenario(
            [
                series("fixgw_backoffice_positions_unavailable", "0x30", of=BO, gateway="gw1"),
                series("fixgw_backoffice_positions_unavailable", "0 0 1x28", of=BO, gateway="gw2"),
            ],
            silent("FixgwBackofficePositionsUnavailable", "11m"),
            fired(
                "FixgwBackofficePositionsUnavailable",
                "13m",
                {
                    "summary": "Back office cannot read gw2's positions",
                    "description": "bo:8082 has not had the positions of gw2 for 10 minutes: "
                    "gateway_positions_unavailable in its log says why (a token rotated in the "
                    "gateway only is read again on SIGHUP). Position breaks are not looked for "
                    "meanwhile.",
                },
                **BO,
                gateway="gw2",
            ),
        ),
        # three statement lines unreadable at minute 3 (or a file set aside):
        # told at once, quiet once the 15 minutes have passed
        scenario(
            [
                series("fixgw_backoffice_bad_records_total", "0x30", of=BO, source="drop_copy"),
                series(
                    "fixgw_backoffice_bad_records_total", "0 0 0 3x27", of=BO, source="statement"
                ),
            ],
            fired(
                "FixgwBackofficeBadRecords",
                "4m",
                {
                    "summary": "Unreadable statement records on bo:8082",
                    "description": "bo:8082 could not read or store statement records in the "
                    "last 15 minutes; drop_copy_message_unreadable, statement_line_unreadable "
                    "or statement_change_refused in its log name each. They are not in the "
                    "ledger.",
                },
                **BO,
                source="statement",
            ),
            silent("FixgwBackofficeBadRecords", "20m"),
        ),
    ]


def margin_call_annotations(client: str = MARGINED) -> dict[str, str]:
    return {
        "summary": f"Margin call: {client} on gw:8080",
        "description": f"The margin account of {client} is below its margin call level: its "
        f"equity no longer covers its margin. `fixgw margin {client}` shows the account; "
        "below its stop-out level the gateway closes its positions.",
    }


def test_the_rules_fire_when_they_should_in_promtool(promtool: str, tmp_path: Path) -> None:
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": unit_tests(),
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    result = run_promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_session_served_by_another_gateway_of_a_cluster_is_not_logged_off(
    promtool: str, tmp_path: Path
) -> None:
    """Every gateway of a cluster serves ``fixgw_session_logged_on`` for each
    configured session, 0 where another gateway serves it: the session is
    logged off only when no gateway of the job has it logged on."""
    gw1 = {"instance": "gw1:8080", "job": "fixgw"}
    gw2 = {"instance": "gw2:8080", "job": "fixgw"}
    name = "fixgw_session_logged_on"

    def logged_off(of: dict[str, str], session: str) -> dict[str, Any]:
        return {
            "exp_labels": {**of, "session": session, "severity": "warning"},
            "exp_annotations": {
                "summary": f"FIX session {session} not logged on",
                "description": f"{session} on {of['instance']} has not been logged on "
                "for 15 minutes.",
            },
        }

    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # CLIENT1 at gw1, then handed over to gw2 at minute 10
                    series(name, "1x10 0x20", of=gw1, session=CLIENT1),
                    series(name, "0x10 1x20", of=gw2, session=CLIENT1),
                    # CLIENT2 logged on nowhere
                    series(name, "0x30", of=gw1, session=CLIENT2),
                    series(name, "0x30", of=gw2, session=CLIENT2),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": "FixgwSessionLoggedOff",
                        "exp_alerts": [logged_off(gw1, CLIENT2), logged_off(gw2, CLIENT2)],
                    }
                    for at in ("20m", "28m")
                ],
            }
        ],
    }
    path = tmp_path / "cluster_sessions_test.yml"
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    result = run_promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- against a running daemon ----------------------------------------------------------


def exposed(text: str) -> tuple[set[str], dict[str, list[dict[str, str]]]]:
    """Series names a scrape can hold, and each sample name's label sets."""
    names: set[str] = set()
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            names.add(sample.name)
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return names, samples


def value(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with ``labels`` in a scrape (0: none)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


def one_order() -> bytes:
    fields = [(11, b"ALERT-1"), (38, b"1000"), (40, b"1"), (54, b"1"), (55, b"EUR/USD")]
    return codec.encode_fields([*fields, (59, b"3"), (60, codec.format_utc_timestamp(0.0))])


async def daemon_after_one_order(daemon_factory: Any) -> Any:
    """A daemon of the default config, CLIENT1's one order (ALERT-1) final."""
    d = daemon_factory().start()
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port)
    client.send(b"D", one_order())
    while not (
        (msg := await client.receive(timeout=10)).get(11) == b"ALERT-1"
        and msg.get(39) in (b"2", b"4", b"8", b"C")
    ):
        pass
    await client.logout()
    return d


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


async def scrape_after_one_order(daemon_factory: Any) -> str:
    """The ``/metrics`` of a daemon after :func:`daemon_after_one_order`."""
    return scrape((await daemon_after_one_order(daemon_factory)).http_port)


def backoffice_config(d: Any, bo_port: int, folder: Path) -> Path:
    """config/default.toml with the gateway ``d``'s ports and data directory
    and the back office's HTTP port ``bo_port``: a back office following
    ``d``'s drop copy and reading its simulated LPs' statements.  At normal
    priority: under SCHED_IDLE, other work on a busy test machine would hold
    it back for as long as it lasts."""
    gateway, table, office = default_config_path().read_text().partition("\n[backoffice]\n")
    assert table

    def replaced(text: str, key: str, value: object) -> str:
        text, count = re.subn(
            rf'(?m)^{key} = (\d+|true|"[^"]*")', f"{key} = {value}", text, count=1
        )
        assert count == 1, key
        return text

    for key, value in (
        ("fix_port", d.fix_port),
        ("drop_copy_port", d.drop_copy_port),
        ("http_port", d.http_port),
        ("data_dir", f'"{d.data_dir}"'),
    ):
        gateway = replaced(gateway, key, value)
    for key, value in (("http_port", bo_port), ("idle_priority", "false")):
        office = replaced(office, key, value)
    path = folder / "backoffice.toml"
    path.write_text(gateway + table + office)
    return path


async def backoffice_scrape(d: Any, folder: Path) -> str:
    """The ``/metrics`` of a ``fixgw backoffice`` following ``d``'s drop copy
    on an embedded (DuckDB) ledger, once it is logged on, has taken in the
    fill of ``d``'s one order and reconciled; the process is stopped after."""
    bo_port = free_port()
    config = backoffice_config(d, bo_port, folder)
    office = Process(["backoffice", "run", "--config", str(config)], folder / "bo.log").start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                text = scrape(bo_port)
            except OSError:
                text = ""  # not listening yet
            if (
                value(text, "fixgw_backoffice_feed_logged_on", gateway="gateway") == 1
                and value(text, "fixgw_backoffice_trades_total", record="client") >= 1
                and value(text, "fixgw_recon_runs_total", mode="incremental") >= 1
            ):
                return text
            assert office.proc is not None
            assert office.proc.poll() is None, (folder / "bo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "the back office did not take the order in within 60 s:\n"
                + (folder / "bo.log").read_text()[-3000:]
            )
            await asyncio.sleep(0.1)  # polling, with the deadline above
    finally:
        office.stop()


@pytest.mark.asyncio
async def test_every_metric_an_alert_uses_is_served(
    daemon_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The gateway's rules against the gateway's scrape after one order; the
    back office's against the scrape of a back office that took it in."""
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    d = await daemon_after_one_order(daemon_factory)
    served = {"gateway": exposed(scrape(d.http_port))}
    served["back office"] = exposed(await backoffice_scrape(d, tmp_path))

    checked = 0
    for group, found in groups().items():
        where = "back office" if group in BACKOFFICE_GROUPS else "gateway"
        names, samples = served[where]
        for rule in found:
            for metric, matchers in names_in(rule["expr"]):
                assert metric in names, f"{rule['alert']}: {metric} is not served by the {where}"
                for label, wanted in matchers.items():
                    values = {s.get(label) for s in samples.get(metric, [])}
                    for value in wanted:
                        assert value in values, (
                            f"{rule['alert']}: the {where} serves no {metric}{{{label}={value!r}}}"
                        )
                checked += 1
    assert checked >= 20
    # the margin alerts watch each margined client: CLIENT1 (who holds a
    # position now) has every series they name
    _, samples = served["gateway"]
    for rule in rules():
        if rule["alert"] in MARGIN_ALERTS:
            for metric, _ in names_in(rule["expr"]):
                clients = {s.get("client") for s in samples[metric]}
                assert MARGINED in clients, f"{rule['alert']}: no {metric} of {MARGINED}"


def live_series(text: str, metrics: set[str]) -> dict[tuple[str, str], float]:
    """The samples of ``metrics`` in a scrape, by (name, client)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in metrics:
                out[sample.name, sample.labels["client"]] = sample.value
    return out


@pytest.mark.asyncio
async def test_the_margin_alerts_evaluated_on_a_live_scrape(
    promtool: str, daemon_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The margin rules' expressions, run by promtool on the values a live
    daemon serves (held for 10 minutes): a healthy account calls nobody;
    the same scrape with CLIENT1's level at 0.8 calls CLIENT1 alone."""
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    text = await scrape_after_one_order(daemon_factory)
    metrics = {m for r in rules() if r["alert"] in MARGIN_ALERTS for m, _ in names_in(r["expr"])}
    live = live_series(text, metrics)
    assert live["fixgw_margin_level", MARGINED] > 1  # 5,000,000 USD against 1,000 EUR
    assert live["fixgw_margin_calls_total", MARGINED] == 0

    def held(values: dict[tuple[str, str], float]) -> list[dict[str, str]]:
        return [
            series(name, f"{value!r}x10", client=client)
            for (name, client), value in sorted(values.items())
        ]

    called = {**live, ("fixgw_margin_level", MARGINED): 0.8}
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": held(live),
                "alert_rule_test": [silent(name, "5m") for name in MARGIN_ALERTS],
            },
            {
                "interval": "1m",
                "input_series": held(called),
                "alert_rule_test": [
                    fired(
                        "FixgwMarginCall", "5m", margin_call_annotations(), **GW, client=MARGINED
                    ),
                    silent("FixgwMarginStopOut", "5m"),
                ],
            },
        ],
    }
    path = tmp_path / "live_test.yml"
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    result = run_promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
