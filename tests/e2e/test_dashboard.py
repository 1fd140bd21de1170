"""The dashboard page in a real browser: headless Chromium loads ``/dashboard``
from a daemon that has had order traffic, and the figures it rendered from
``/admin/summary`` and ``/admin/margin`` are read back from the dumped DOM;
then the page's layout is measured at several widths over the DevTools
protocol."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config import SessionSettings
from gateway.fix import codec
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dev-admin-token"  # config/default.toml
LPS = ("LP_A", "LP_B", "LP_C")
CLIENT1 = "FIX.4.4:GATEWAY->CLIENT1"
MARGINED = ("CLIENT1", "CLIENT2", "CLIENT3")  # config/default.toml's [accounts]


# --- chromium -----------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; installed with apt-get (Debian package ``chromium``)
    when missing and the tests run as root.  Fails, rather than skips, when it
    can be neither found nor installed."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(
            "chromium is not installed and the tests do not run as root, so it cannot be "
            "installed here: run `apt-get install --no-install-recommends chromium` (Debian)"
        )
    if shutil.which("apt-get") is None:
        pytest.fail("chromium is not installed and there is no apt-get to install it with")
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt(*install)
    if result.returncode != 0:  # most often stale or missing package lists
        update = _apt("update")
        if update.returncode != 0:
            pytest.fail(f"apt-get update failed, cannot install chromium:\n{update.stderr[-2000:]}")
        result = _apt(*install)
    found = find_chromium()
    if result.returncode != 0 or found is None:
        pytest.fail(
            f"`apt-get install chromium` failed (exit {result.returncode}):\n"
            f"{(result.stderr or result.stdout)[-2000:]}"
        )
    return found


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    result = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}"
    )
    assert "<body" in result.stdout, f"chromium dumped no page:\n{result.stderr[-3000:]}"
    return result.stdout


# --- a small DOM from chromium's serialisation ------------------------------------

_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Elements under this one with the tag and these attribute values
        (``class_`` matches one class; ``data_x`` the attribute ``data-x``)."""
        out = []
        for node in self.walk():
            if tag is not None and node.tag != tag:
                continue
            ok = True
            for key, value in attrs.items():
                if key == "class_":
                    ok = value in node.classes
                else:
                    ok = node.attrs.get(key.replace("_", "-")) == value
                if not ok:
                    break
            if ok:
                out.append(node)
        return out

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag or '*'} {attrs}>, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self._stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self._stack[-1].children.append(node)
        if tag not in _VOID:
            self._stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, 0, -1):
            if self._stack[i].tag == tag:
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].children.append(data)


def parse_dom(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def number(text: str) -> float:
    """The first number in ``text`` ("$1,410,533 (4.7% of hard)" -> 1410533)."""
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    assert match is not None, f"no number in {text!r}"
    return float(match.group(0).replace(",", ""))


# --- the daemon -------------------------------------------------------------------


def admin_get(port: int, path: str) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def wait_ready(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)  # polling, with the deadline above
    raise TimeoutError(f"/readyz not 200 after {timeout:g} s")


def run_bench(fix_port: int) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "bench",
            "--port",
            str(fix_port),
            "--rate",
            "300",
            "--duration",
            "2",
            "--no-yardstick",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"fixgw bench failed:\n{result.stdout}\n{result.stderr}"


def trade_cross_asset(fix_port: int) -> None:
    """CLIENT2 buys 10,000 EUR/USD and sells 0.5 BTC/USD: long EUR against
    short BTC forms the default config's cross-asset spread, so its
    portfolio margin is below its siloed margin."""

    async def run() -> None:
        client = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
        await client.connect("127.0.0.1", fix_port)
        for cl_ord_id, side, qty, symbol in (
            (b"DASH-EUR", b"1", b"10000", b"EUR/USD"),
            (b"DASH-BTC", b"2", b"0.5", b"BTC/USD"),
        ):
            fields = [(11, cl_ord_id), (38, qty), (40, b"1"), (54, side), (55, symbol)]
            fields += [(59, b"3"), (60, codec.format_utc_timestamp(0.0))]
            client.send(b"D", codec.encode_fields(fields))
            while True:
                msg = await client.receive(timeout=10)
                if msg.get(11) == cl_ord_id and msg.get(39) in (b"2", b"4", b"8", b"C"):
                    assert msg.get(39) == b"2", f"{cl_ord_id!r} ended with {msg.get(39)!r}"
                    break
        await client.logout()

    asyncio.run(run())


# --- the test -----------------------------------------------------------------------


def test_dashboard_renders_live_figures_in_chromium(
    daemon_factory: Any, chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)  # the default config's token
    d = daemon_factory().start()
    wait_ready(d.http_port)
    run_bench(d.fix_port)
    trade_cross_asset(d.fix_port)
    version = admin_get(d.http_port, "/admin/config")["version"]

    url = f"http://127.0.0.1:{d.http_port}/dashboard#token={TOKEN}"
    dom = parse_dom(dump_dom(chromium, url, tmp_path / "chromium-profile"))

    body = dom.one("body")
    assert body.attrs.get("data-loaded") == "1", "the page never rendered a summary"
    assert dom.one(id="version").text() == version
    assert dom.one(id="generation").text() == "1"

    # latency percentiles and the order counters
    for pid in ("p50", "p95", "p99"):
        assert number(dom.one(id=pid).text()) > 0, pid
    assert number(dom.one(id="orders-final").text()) >= 600
    assert dom.one(id="throughput").text().strip() != ""

    # one row per LP, with its exposure against its limits, rates and link state
    rows = {r.attrs["data-lp"]: r for r in dom.find_all("tr") if "data-lp" in r.attrs}
    assert set(LPS) <= set(rows), f"LP rows: {sorted(rows)}"
    exposures = {}
    for name in LPS:
        row = rows[name]
        exposure = row.one(class_="exposure")
        exposures[name] = float(exposure.attrs["data-value"] or 0)
        assert exposure.text().startswith("$") or exposure.text() == "not valued"
        assert number(row.one(class_="hard-limit").attrs["data-value"]) == 30_000_000
        assert number(row.one(class_="soft-limit").attrs["data-value"]) == 20_000_000
        fill_rate = row.one(class_="fill-rate").text()
        assert fill_rate.endswith("%")
        assert 0 <= number(fill_rate) <= 100
        assert row.one(class_="reject-rate").text().endswith("%")
        assert row.one(class_="lp-up").text() == "UP"
    assert any(v > 0 for v in exposures.values()), exposures
    assert any(number(rows[n].one(class_="fill-rate").text()) > 0 for n in LPS)

    # the session that sent the orders
    session = dom.one("tr", data_session=CLIENT1)
    logged_on = session.one(class_="logged-on").attrs["data-value"] == "1"
    assert logged_on or number(session.one(class_="messages-in").text()) > 0

    # policy shares and the (absent) last reload
    share = dom.one(data_policy="best_price_exposure_aware")
    assert number(share.one(class_="share-percent").text()) == 100
    assert dom.one(id="last-reload-status").text() == "none"

    # the margin panel: one row per account, portfolio margin beside siloed
    assert body.attrs.get("data-margin-loaded") == "1", "the page never rendered /admin/margin"
    margin = admin_get(d.http_port, "/admin/margin")
    assert dom.one(id="margin-note").attrs["data-version"] == margin["param_version"]
    accounts = {r.attrs["data-client"]: r for r in dom.one(id="margin").find_all("tr")}
    assert set(accounts) == set(MARGINED)
    for client, row in accounts.items():
        assert row.one("td", class_="name").text() == client
        assert row.one(class_="params").text() == margin["param_version"]
        cells = {c: float(row.one(class_=c).attrs["data-value"]) for c in ("margin", "siloed")}
        for cls in ("margin", "siloed", "freed", "equity", "free-margin"):
            assert row.one(class_=cls).text().startswith(("$", "-$")), (client, cls)
        freed = float(row.one(class_="freed").attrs["data-value"])
        assert freed == pytest.approx(cells["siloed"] - cells["margin"], abs=0.011)
        assert cells["margin"] <= cells["siloed"]
    # CLIENT2 holds EUR against BTC: the spread across asset classes frees collateral
    cross = accounts["CLIENT2"]
    portfolio = float(cross.one(class_="margin").attrs["data-value"])
    siloed = float(cross.one(class_="siloed").attrs["data-value"])
    assert 0 < portfolio < siloed
    assert number(cross.one(class_="freed").text()) > 0
    assert "% of siloed" in cross.one(class_="mcmp").text()
    level = cross.one(class_="level")
    assert level.attrs["data-standing"] == "ok"
    assert number(level.attrs["data-value"]) == pytest.approx(
        float(cross.one(class_="equity").attrs["data-value"]) / portfolio, rel=1e-3
    )
    # CLIENT3 never traded: no margin, no level, its collateral whole
    flat = accounts["CLIENT3"]
    assert flat.one(class_="margin").attrs["data-value"] == "0.00"
    assert flat.one(class_="level").attrs["data-standing"] == "none"
    assert flat.one(class_="equity").attrs["data-value"] == "1000000.00"
    now = {a["client"]: a for a in margin["accounts"]}
    # the marks move between the page's read and this one: equal within a few dollars
    assert float(now["CLIENT2"]["margin_usd"]) == pytest.approx(portfolio, abs=5)


# --- the layout, measured in the browser ----------------------------------------------

WIDTHS = (1400, 1280, 1100, 900, 700, 480)

# Where each panel table's header cells are, and whether the table can be
# scrolled sideways within its panel, as the page laid them out.
MEASURE = """
(() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right};
  };
  return [...document.querySelectorAll("main .panel table")].map((table) => {
    const panel = table.closest(".panel");
    let scroller = null;
    for (let el = table.parentElement; el && el !== panel.parentElement; el = el.parentElement) {
      const overflow = getComputedStyle(el).overflowX;
      if (overflow === "auto" || overflow === "scroll") { scroller = el; break; }
    }
    return {
      panel: panel.querySelector("h2").firstChild.textContent.trim(),
      box: box(panel),
      table: box(table),
      rows: table.tBodies[0].rows.length,
      scroller: scroller && Object.assign(box(scroller), {
        inside_panel: panel.contains(scroller),
        scroll_width: scroller.scrollWidth,
        client_width: scroller.clientWidth,
      }),
      columns: [...table.tHead.rows[0].cells].map((th) =>
        Object.assign(box(th), {text: th.textContent.trim()})),
    };
  });
})()
"""

LOADED = """
new Promise((resolve, reject) => {
  const deadline = Date.now() + 15000;
  (function wait() {
    const body = document.body.dataset;
    if (body.loaded === "1" && body.marginLoaded === "1") return resolve(true);
    if (Date.now() > deadline) return reject(new Error("the page never rendered its data"));
    setTimeout(wait, 50);
  })();
})
"""


class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._events: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            msg = await self._ws.receive_json(timeout=30)
            if msg.get("id") != ident:
                self._events.append(msg.get("method", ""))
                continue
            assert "error" not in msg, f"{method}: {msg['error']}"
            result: dict[str, Any] = msg["result"]
            return result

    async def navigate(self, url: str) -> None:
        """Open ``url`` and return once its load event has fired."""
        await self.call("Page.enable")
        self._events.clear()
        await self.call("Page.navigate", url=url)
        while "Page.loadEventFired" not in self._events:
            msg = await self._ws.receive_json(timeout=30)
            self._events.append(msg.get("method", ""))

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    async def width(self, width: int) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )


async def devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    """The port Chromium chose for its DevTools server (it writes it to the profile)."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if active.exists() and active.read_text().strip():
            return int(active.read_text().split()[0])
        assert proc.returncode is None, f"chromium exited with {proc.returncode}"
        await asyncio.sleep(0.05)  # polling, with the deadline above
    raise TimeoutError("chromium opened no DevTools port")


async def layouts(chromium: str, url: str, profile: Path) -> dict[int, list[dict[str, Any]]]:
    """The panel tables' layout at each of :data:`WIDTHS` (CSS pixels)."""
    proc = await asyncio.create_subprocess_exec(
        *(chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"),
        *(f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await devtools_port(profile, proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = DevTools(ws)
                await tab.width(WIDTHS[0])
                await tab.navigate(url)
                await tab.evaluate(LOADED)
                out = {}
                for width in WIDTHS:
                    await tab.width(width)
                    assert await tab.evaluate("innerWidth") == width
                    out[width] = await tab.evaluate(MEASURE)
                return out
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def reachable(table: dict[str, Any]) -> list[str]:
    """The columns of a measured table that can be neither seen in its panel
    nor scrolled to within it."""
    panel, scroller = table["box"], table["scroller"]
    hidden = []
    for col in table["columns"]:
        if panel["left"] - 0.5 <= col["left"] and col["right"] <= panel["right"] + 0.5:
            continue  # in view
        if (
            scroller is not None
            and scroller["inside_panel"]
            and scroller["right"] <= panel["right"] + 0.5
            and col["right"] - scroller["left"] <= scroller["scroll_width"] + 0.5
        ):
            continue  # in the panel's scrolling area
        hidden.append(col["text"])
    return hidden


@pytest.mark.asyncio
async def test_every_table_column_can_be_seen_at_1400_px_and_narrower(
    daemon_factory: Any, chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    d = daemon_factory().start()
    await asyncio.to_thread(wait_ready, d.http_port)
    await asyncio.to_thread(run_bench, d.fix_port)
    url = f"http://127.0.0.1:{d.http_port}/dashboard#token={TOKEN}"
    measured = await layouts(chromium, url, tmp_path / "chromium-profile")

    for width, tables in measured.items():
        panels = {t["panel"]: t for t in tables}
        assert {"Liquidity providers", "FIX sessions", "Net positions by LP", "Margin"} <= set(
            panels
        )
        assert panels["Margin"]["rows"] == len(MARGINED), width
        sessions = panels["FIX sessions"]
        assert sessions["rows"] == 4, width  # three clients and the drop copy
        assert [c["text"] for c in sessions["columns"]][-1] == "Rejects sent"
        for name, table in panels.items():
            assert not reachable(table), f"{width} px, {name}: cut off: {reachable(table)}"
    # at 1400 px nothing needs scrolling: every column is in view
    for table in measured[1400]:
        panel = table["box"]
        for col in table["columns"]:
            assert col["right"] <= panel["right"] + 0.5, (table["panel"], col["text"])
