"""``fixgw status``, ``positions``, ``orders``, ``sessions`` and ``margin``:
what an operator asks a running daemon, read from its admin API.

Each command makes plain HTTP requests (standard library only, so that it
starts fast and needs nothing of the daemon) to ``--url`` with a token as
a bearer token, and prints a table for people or, with ``--json``, JSON
for scripts.  The token is ``--token``, else the ``FIXGW_ADMIN_TOKEN``
environment variable, else ``FIXGW_READ_TOKEN`` (as the daemon reads
them), else the ``admin_token`` of ``--config FILE``, else its
``read_token`` (every command but ``handover`` only reads); the config
also gives the URL when ``--url`` is not given.  With none of these, the
packaged default config's, which ``fixgw run`` uses without ``--config``.
A token is visible ASCII, as the daemon's config takes it.  Whatever goes
wrong (no daemon at the URL, a refused token, the admin API disabled) is
one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.ops.direct import OPENER, http_base, is_http_address
from gateway.ops.tokens import ADMIN_TOKEN_ENV, READ_TOKEN_ENV, Tokens

__all__ = ["COMMANDS", "AdminApi", "OperatorError", "is_operator_command", "register", "run"]

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = ADMIN_TOKEN_ENV
TIMEOUT = 5.0
ALL_ORDERS_LIMIT = 1000
"""How many orders the admin API lists for ``?all=1`` without a limit."""

Command = Callable[["AdminApi", argparse.Namespace], int]


class OperatorError(Exception):
    """A command could not get its answer; the message is one line for the operator."""


# --- the admin API ------------------------------------------------------------------


@dataclass(frozen=True)
class AdminApi:
    """The admin API of one running daemon."""

    url: str
    token: str
    timeout: float = TIMEOUT
    packaged_token: bool = False
    """The token is the packaged default config's, none the operator gave."""

    def get(self, path: str, query: Mapping[str, str] | None = None, *, method: str = "GET") -> Any:
        """The JSON ``path`` answers; :class:`OperatorError` otherwise."""
        target = self.url.rstrip("/") + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            request = urllib.request.Request(target, headers=headers, method=method)
        except ValueError as exc:
            raise OperatorError(f"bad --url {self.url!r}: {exc}") from None
        try:
            with OPENER.open(request, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._refused(path, exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except TimeoutError:
            raise self._unreachable(TimeoutError()) from None
        except OSError as exc:
            raise self._unreachable(exc) from None
        except http.client.HTTPException as exc:
            # something other than an HTTP server at the address (a NATS
            # server's INFO line, an SSH banner), or an answer cut short
            raise OperatorError(
                f"{self.url} did not answer as an HTTP server ({type(exc).__name__}): "
                "is this a fixgw daemon?"
            ) from None
        try:
            return json.loads(body)
        except ValueError:
            raise OperatorError(
                f"{self.url}{path} answered something other than JSON: is this a fixgw daemon?"
            ) from None

    def _unreachable(self, reason: object) -> OperatorError:
        if isinstance(reason, ConnectionRefusedError):
            return OperatorError(
                f"no daemon at {self.url}: connection refused (is `fixgw run` running "
                "with its HTTP server on that address?)"
            )
        if isinstance(reason, TimeoutError):
            return OperatorError(f"no answer from {self.url} within {self.timeout:g} s")
        text = getattr(reason, "strerror", None) or str(reason)
        return OperatorError(f"cannot reach {self.url}: {text}")

    def _refused(self, path: str, status: int, body: bytes) -> OperatorError:
        detail = _error_text(body)
        if status == 401:
            if not self.token:
                return OperatorError(
                    f"no token given (HTTP 401 from {self.url}): pass --token, set "
                    f"{TOKEN_ENV} or {READ_TOKEN_ENV}, or name the daemon's config with --config"
                )
            if self.packaged_token:
                return OperatorError(
                    f"the daemon at {self.url} refused the default config's admin token "
                    f"(HTTP 401): pass --token, set {TOKEN_ENV} or name the daemon's config "
                    "with --config"
                )
            return OperatorError(
                f"the daemon at {self.url} refused the token (HTTP 401): check --token, "
                f"{TOKEN_ENV}, {READ_TOKEN_ENV} or the config's tokens"
            )
        if status == 403:
            why = detail or "admin API disabled"
            return OperatorError(f"the daemon at {self.url} refused admin access (HTTP 403): {why}")
        if status == 404 and _json_error(body) is not None:
            # the daemon's own answer (a client without a margin account),
            # not a path this daemon does not serve
            return OperatorError(f"{detail} (HTTP 404 from {self.url})")
        if status == 404:
            return OperatorError(
                f"{self.url}{path}: not found (HTTP 404): is this a fixgw daemon, "
                "and of this version?"
            )
        return OperatorError(f"{self.url}{path}: HTTP {status}" + (f": {detail}" if detail else ""))


def _json_error(body: bytes) -> str | None:
    """The ``error`` of a JSON error body, on one line; None for any other body."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return " ".join(str(data["error"]).split())
    return None


def _error_text(body: bytes) -> str:
    """The ``error`` of a JSON error body, else the body's first line, cut."""
    error = _json_error(body)
    if error is not None:
        return error
    lines = body.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:200] if lines else ""


# --- where the daemon is -------------------------------------------------------------


def admin_api(args: argparse.Namespace) -> AdminApi:
    """The daemon the command asks: ``--url`` and ``--token`` first, then
    the environment, then ``--config``, else the packaged default config (the
    daemon ``fixgw run`` starts without one); :class:`OperatorError` for a
    config file that cannot say."""
    url: str | None = args.url
    # handover changes what the daemon does: the admin token alone will do
    writes = getattr(args, "operator_command", None) is _handover
    if args.token is not None:
        source, token = "--token", args.token.strip()
    elif os.environ.get(TOKEN_ENV):
        source, token = TOKEN_ENV, os.environ[TOKEN_ENV].strip()
    elif writes:
        source, token = TOKEN_ENV, ""
    else:
        source, token = READ_TOKEN_ENV, os.environ.get(READ_TOKEN_ENV, "").strip()
    if token:
        from config.checks import bearer_token_problem

        problem = bearer_token_problem(token)
        if problem is not None:
            raise OperatorError(f"{source}: {problem}")
    config: str | None = args.config
    packaged = config is None and url is None and not token
    if packaged:
        from config import default_config_path

        config = str(default_config_path())
    if config is not None and (url is None or not token):
        from config import ConfigError, load_config

        try:
            gateway = load_config(config).gateway
        except ConfigError as exc:
            first = exc.errors[0] if exc.errors else str(exc)
            more = (
                f" (and {len(exc.errors) - 1} more: fixgw check-config {config} lists them)"
                if len(exc.errors) > 1
                else ""
            )
            raise OperatorError(f"{config}: {first}{more}") from None
        if url is None:
            if not gateway.http_port:
                raise OperatorError(f"{config}: the daemon serves no HTTP (gateway.http_port = 0)")
            url = http_base(gateway.http_host, gateway.http_port)
        if not token:
            # every command but handover only reads: the read token will do
            tokens = Tokens.of(gateway, {})
            token = tokens.admin if writes else tokens.admin or tokens.read
    url = url or DEFAULT_URL
    if not is_http_address(url):
        raise OperatorError(f"bad --url {url!r}: give http://HOST:PORT")
    return AdminApi(url, token, args.timeout, packaged and bool(token))


# --- formatting -----------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell, two spaces apart; the columns
    at the ``right`` indexes aligned right (numbers)."""
    body = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for r in body:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    to_right = set(right)

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in to_right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in body)])


def _decimal(text: object) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return None


def quantity(text: object, *, signed: bool = False) -> str:
    """A decimal string with thousands separators (``+`` on positives if ``signed``)."""
    d = _decimal(text)
    if d is None:
        return "-" if text is None else str(text)
    shown = f"{d:,}"
    return f"+{shown}" if signed and d > 0 else shown


def usd(text: object) -> str:
    """Whole US dollars: ``$1,234,568``."""
    d = _decimal(text)
    if d is None:
        return "not valued" if text is None else str(text)
    return f"-${-d:,.0f}" if d < 0 else f"${d:,.0f}"


def cents(text: object) -> str:
    """US dollars and cents: ``$1,234.56``, ``-$0.50``."""
    d = _decimal(text)
    if d is None:
        return "-" if text is None else str(text)
    return f"-${-d:,.2f}" if d < 0 else f"${d:,.2f}"


def millis(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.3f} ms" if value < 100 else f"{value:,.0f} ms"


def moment(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``2d 4h``, ``3h 12m``, ``5m 9s``, ``42s``: the two largest units."""
    s = max(0, int(seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def peer(session_id: str) -> str:
    """The counterparty of ``FIX.4.4:GATEWAY->CLIENT1``: ``CLIENT1``."""
    return session_id.rpartition("->")[2] or session_id


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2))


# --- fixgw status ---------------------------------------------------------------------


def status_of(summary: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The one-screen status, as data, from ``/admin/summary``."""
    sessions = summary.get("sessions", [])
    lps = summary.get("lps")
    out: dict[str, Any] = {
        "url": url,
        "version": summary.get("version"),
        "generation": summary.get("generation"),
        "started_at": summary.get("started_at"),
        "uptime_seconds": None,
        "sessions": {
            "logged_on": [s["session"] for s in sessions if s["logged_on"]],
            "logged_off": [s["session"] for s in sessions if not s["logged_on"]],
        },
        "lps": None,
        "open_orders": summary.get("open_orders"),
        "exposure": None,
        "latency_ms": summary.get("latency_ms"),
        "loop_lag_ms": summary.get("loop_lag_ms"),
    }
    started, now = summary.get("started_at"), summary.get("time")
    if isinstance(started, int | float) and isinstance(now, int | float):
        out["uptime_seconds"] = max(0.0, now - started)
    if lps is not None:
        out["lps"] = {
            "up": [lp["name"] for lp in lps if lp["up"]],
            "down": [lp["name"] for lp in lps if not lp["up"]],
            "disabled": [lp["name"] for lp in lps if not lp["enabled"]],
        }
        out["exposure"] = _exposure_headline(lps)
    return out


def _exposure_headline(lps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Gross USD with every LP, and the LP nearest its hard limit."""
    total = Decimal(0)
    nearest: dict[str, Any] | None = None
    nearest_share = Decimal(-1)
    for lp in lps:
        gross, hard = _decimal(lp.get("gross_usd")), _decimal(lp.get("hard_limit_usd"))
        if gross is None:
            continue
        total += gross
        share = gross / hard if hard else Decimal(0)
        if share > nearest_share:
            nearest_share = share
            nearest = {
                "lp": lp["name"],
                "gross_usd": lp["gross_usd"],
                "hard_limit_usd": lp["hard_limit_usd"],
                "share_of_hard_limit": float(share),
            }
    return {
        "gross_usd": str(total),
        "by_lp": {lp["name"]: lp.get("gross_usd") for lp in lps},
        "not_valued": [lp["name"] for lp in lps if lp.get("gross_usd") is None],
        "nearest_hard_limit": nearest,
    }


def _count(n: int, noun: str) -> str:
    return f"{quantity(n)} {noun}" + ("" if n == 1 else "s")


def _names(items: Sequence[str], *, none: str = "none") -> str:
    return ", ".join(items) if items else none


def render_status(s: Mapping[str, Any]) -> str:
    lines = [f"fixgw at {s['url']}"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<13}{text}")

    started = s.get("started_at")
    if isinstance(started, int | float):
        row("up since", f"{moment(started)} ({duration(s.get('uptime_seconds') or 0)})")
    else:
        row("up since", "unknown")
    row("config", f"{s.get('version')} (generation {s.get('generation')})")
    on, off = s["sessions"]["logged_on"], s["sessions"]["logged_off"]
    text = f"{len(on)} logged on, {len(off)} logged off"
    if off:
        text += " (" + _names([peer(x) for x in off]) + ")"
    row("sessions", text)
    lps = s.get("lps")
    if lps is None:
        row("LPs", "no order flow (no order-entry session configured)")
    else:
        text = f"{len(lps['up'])} up, {len(lps['down'])} down"
        if lps["down"]:
            text += " (" + _names(lps["down"]) + ")"
        if lps["disabled"]:
            text += "; disabled: " + _names(lps["disabled"])
        row("LPs", text)
    if s.get("open_orders") is not None:
        row("open orders", quantity(s["open_orders"]))
    expo = s.get("exposure")
    if expo is not None:
        text = f"{usd(expo['gross_usd'])} gross with the LPs"
        near = expo["nearest_hard_limit"]
        if near is not None:
            share = near["share_of_hard_limit"] * 100
            text += (
                f"; nearest its hard limit: {near['lp']} {usd(near['gross_usd'])}"
                f" ({share:.1f}% of {usd(near['hard_limit_usd'])})"
            )
        if expo["not_valued"]:
            text += "; not valued: " + _names(expo["not_valued"])
        row("exposure", text)
    latency = s.get("latency_ms")
    if latency is not None:
        if latency.get("p99") is None:
            row("latency P99", "no order timed yet")
        else:
            row(
                "latency P99",
                f"{millis(latency['p99'])} (P50 {millis(latency.get('p50'))}, "
                f"{_count(latency.get('count', 0), 'order')} timed)",
            )
    row("loop lag", millis(s.get("loop_lag_ms")))
    return "\n".join(lines)


def _status(api: AdminApi, args: argparse.Namespace) -> int:
    s = status_of(api.get("/admin/summary"), api.url)
    if args.json:
        _dump(s)
    else:
        print(render_status(s))
    return 0


# --- fixgw positions ------------------------------------------------------------------


def render_positions(exposures: Mapping[str, Any]) -> str:
    def positions(owner: str, by: Mapping[str, Mapping[str, str]]) -> str:
        rows = [
            (name, symbol, quantity(held, signed=True))
            for name, symbols in sorted(by.items())
            for symbol, held in sorted(symbols.items())
        ]
        if not rows:
            return "  (flat)"
        return table((owner, "SYMBOL", "POSITION"), rows, right=(2,))

    gross = exposures.get("lp_gross_usd", {})
    unvalued = exposures.get("unvalued_lps", [])
    gross_rows = [(lp, usd(v)) for lp, v in sorted(gross.items())]
    gross_rows += [(lp, "not valued") for lp in unvalued if lp not in gross]
    parts = [
        "Positions with the LPs (units, client side: + where clients bought)",
        positions("LP", exposures.get("lps", {})),
        "",
        "Gross exposure with the LPs",
        table(("LP", "GROSS USD"), gross_rows, right=(1,)) if gross_rows else "  (none)",
        "",
        "Client positions (units)",
        positions("CLIENT", exposures.get("clients", {})),
    ]
    served = exposures.get("served")
    if served is not None:
        # a gateway of a cluster: the others' clients as it last knew them
        others = sorted(set(exposures.get("clients", {})) - set(served))
        if others:
            parts += ["", "Not served here (their positions as this gateway last knew them):"]
            parts.append("  " + ", ".join(others))
    return "\n".join(parts)


def _positions(api: AdminApi, args: argparse.Namespace) -> int:
    exposures = api.get("/admin/exposures")
    if args.json:
        _dump(exposures)
    else:
        print(render_positions(exposures))
    return 0


# --- fixgw orders ---------------------------------------------------------------------

ORDER_COLUMNS = (
    ("ORDER ID", "order_id"),
    ("CLIENT", "client"),
    ("CLORDID", "cl_ord_id"),
    ("SYMBOL", "symbol"),
    ("SIDE", "side"),
    ("TYPE", "ord_type"),
    ("TIF", "time_in_force"),
    ("QTY", "qty"),
    ("PRICE", "price"),
    ("CUM QTY", "cum_qty"),
    ("LEAVES", "leaves_qty"),
    ("AVG PX", "avg_px"),
    ("STATUS", "status"),
)
_ORDER_NUMBERS = ("qty", "price", "cum_qty", "leaves_qty", "avg_px")


def render_orders(orders: Sequence[Mapping[str, Any]]) -> str:
    def cell(order: Mapping[str, Any], key: str) -> str:
        value = order.get(key)
        if key in ("qty", "cum_qty", "leaves_qty"):
            return quantity(value)
        return "-" if value is None else str(value)

    rows = [[cell(o, key) for _, key in ORDER_COLUMNS] for o in orders]
    right = [i for i, (_, key) in enumerate(ORDER_COLUMNS) if key in _ORDER_NUMBERS]
    return table([h for h, _ in ORDER_COLUMNS], rows, right=right)


def _orders(api: AdminApi, args: argparse.Namespace) -> int:
    query = {}
    if args.client:
        query["client"] = args.client
    if args.all:
        query["all"] = "1"
    if args.limit is not None:
        query["limit"] = str(args.limit)
    orders = api.get("/admin/orders", query)
    if args.json:
        _dump(orders)
        return 0
    whose = f" of {args.client}" if args.client else ""
    if not orders:
        print(f"no orders{whose} retained" if args.all else f"no open orders{whose}")
        return 0
    print(render_orders(orders))
    shown = len(orders)
    if args.all and shown == (args.limit if args.limit is not None else ALL_ORDERS_LIMIT):
        print(f"(the latest {shown}; --limit N for more)")
    return 0


# --- fixgw sessions -------------------------------------------------------------------


def render_sessions(sessions: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            s["session"],
            str(s["state"]),
            "yes" if s["logged_on"] else "no",
            quantity(s["messages_in"]),
            quantity(s["messages_out"]),
            str(s["next_sender_seq"]),
            str(s["next_target_seq"]),
            quantity(s["rejects_sent"]),
        )
        for s in sessions
    ]
    headers = (
        "SESSION",
        "STATE",
        "LOGGED ON",
        "MSGS IN",
        "MSGS OUT",
        "NEXT SEQ OUT",
        "NEXT SEQ IN",
        "REJECTS SENT",
    )
    if not rows:
        return "no sessions configured"
    return table(headers, rows, right=range(3, 8))


def _sessions(api: AdminApi, args: argparse.Namespace) -> int:
    sessions = api.get("/admin/sessions")
    if args.json:
        _dump(sessions)
    else:
        print(render_sessions(sessions))
    return 0


# --- fixgw margin ---------------------------------------------------------------------

MARGIN_COLUMNS = (
    ("CLIENT", "client"),
    ("EQUITY", "equity_usd"),
    ("MARGIN", "margin_usd"),
    ("SILOED", "siloed_margin_usd"),
    ("FREED", "freed_by_portfolio_usd"),
    ("FREE MARGIN", "free_margin_usd"),
    ("LEVEL", "margin_level"),
    ("PARAMS", "param_version"),
)


def _standing(account: Mapping[str, Any]) -> str | None:
    """``stop-out`` or ``margin call`` where the account's level is below
    that level; None otherwise, or with no margin."""
    level = account.get("margin_level")
    if not isinstance(level, int | float):
        return None
    stop_out, call = account.get("stop_out_level"), account.get("margin_call_level")
    if isinstance(stop_out, int | float) and level < stop_out:
        return "stop-out"
    if isinstance(call, int | float) and level < call:
        return "margin call"
    return None


def margin_level(account: Mapping[str, Any]) -> str:
    """Equity / margin with two decimals, marked where the account stands
    below its margin call or stop-out level; ``-`` with no margin."""
    level = account.get("margin_level")
    if not isinstance(level, int | float):
        return "-"
    standing = _standing(account)
    return f"{level:,.2f}" + (f" ({standing})" if standing else "")


def render_margin(listing: Mapping[str, Any]) -> str:
    """Every margin account, one row each: portfolio margin beside siloed."""
    accounts = listing.get("accounts", [])
    if not accounts:
        if listing.get("param_version") is None:
            return "no margin: the daemon's config has no [margin] parameters"
        return "no margin accounts: the daemon's config has no [accounts.<CompID>] table"

    def cell(account: Mapping[str, Any], key: str) -> str:
        if key == "margin_level":
            return margin_level(account)
        if key.endswith("_usd"):
            return cents(account.get(key))
        value = account.get(key)
        return "-" if value is None else str(value)

    rows = [[cell(a, key) for _, key in MARGIN_COLUMNS] for a in accounts]
    right = [
        i
        for i, (_, key) in enumerate(MARGIN_COLUMNS)
        if key.endswith("_usd") or key == "margin_level"
    ]
    return "\n".join(
        [
            "Margin accounts (USD): portfolio margin beside siloed, and the collateral "
            "the portfolio frees",
            table([h for h, _ in MARGIN_COLUMNS], rows, right=right),
        ]
    )


def render_margin_account(account: Mapping[str, Any]) -> str:
    """One account in full: the figures, the scan risk of each group, the
    spreads formed with their credits, and the positions."""
    lines = [
        f"Margin account of {account.get('client')} "
        f"(parameters {account.get('param_version')}, USD)"
    ]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<16}{text}")

    row("collateral", cents(account.get("collateral_usd")))
    row("realized P&L", cents(account.get("realized_pnl_usd")))
    row("unrealized P&L", cents(account.get("unrealized_pnl_usd")))
    row("equity", cents(account.get("equity_usd")))
    unpriced = account.get("unpriced")
    if isinstance(unpriced, list) and unpriced:
        row("no price for", f"{' '.join(map(str, unpriced))} (its P&L left out)")
    row(
        "margin",
        f"{cents(account.get('margin_usd'))} (scan risk {cents(account.get('scan_risk_usd'))}"
        f" less {cents(account.get('credit_usd'))} of spread credits)",
    )
    row(
        "siloed margin",
        f"{cents(account.get('siloed_margin_usd'))} "
        f"(the portfolio frees {cents(account.get('freed_by_portfolio_usd'))})",
    )
    row("initial margin", cents(account.get("initial_margin_usd")))
    row("free margin", cents(account.get("free_margin_usd")))
    levels = (
        f"margin call below {account.get('margin_call_level')}, "
        f"stop-out below {account.get('stop_out_level')}"
    )
    level, standing = account.get("margin_level"), _standing(account)
    if not isinstance(level, int | float):
        row("level", f"- (no margin; {levels})")
    else:
        row("level", f"{level:,.2f}" + (f", {standing}" if standing else "") + f" ({levels})")

    groups = [
        (
            g["group"],
            quantity(g.get("units"), signed=True),
            cents(g.get("scan_risk_usd")),
            str(g.get("worst_scenario", "-")),
        )
        for g in account.get("groups", [])
    ]
    lines += ["", "Risk groups (units net per group)"]
    lines.append(
        table(("GROUP", "UNITS", "SCAN RISK", "WORST SCENARIO"), groups, right=(1, 2))
        if groups
        else "  (none held)"
    )

    spreads = [
        (
            s["spread"],
            str(s.get("priority", "-")),
            quantity(s.get("count")),
            cents(s.get("credit_usd")),
            ", ".join(f"{group} {quantity(units)}" for group, units in s.get("legs", {}).items()),
        )
        for s in account.get("spreads", [])
    ]
    lines += ["", "Spreads formed"]
    lines.append(
        table(("SPREAD", "PRIORITY", "COUNT", "CREDIT", "UNITS USED PER LEG"), spreads, (1, 2, 3))
        if spreads
        else "  (none)"
    )

    positions = [
        (symbol, quantity(p.get("qty"), signed=True), str(p.get("avg_px", "-")))
        for symbol, p in sorted(account.get("positions", {}).items())
    ]
    lines += ["", "Positions (units)"]
    lines.append(
        table(("SYMBOL", "POSITION", "AVG PX"), positions, right=(1, 2))
        if positions
        else "  (flat)"
    )
    return "\n".join(lines)


def _margin(api: AdminApi, args: argparse.Namespace) -> int:
    if args.client:
        account = api.get("/admin/margin/" + urllib.parse.quote(args.client, safe=""))
        if args.json:
            _dump(account)
        else:
            print(render_margin_account(account))
        return 0
    listing = api.get("/admin/margin")
    if args.json:
        _dump(listing)
    else:
        print(render_margin(listing))
    return 0


def _handover(api: AdminApi, args: argparse.Namespace) -> int:
    answer = api.get(
        "/admin/cluster/handover", {"session": args.session, "to": args.to}, method="POST"
    )
    if args.json:
        _dump(answer)
    else:
        print(f"{answer['session']} handed over to {answer['to']}")
    return 0


# --- the command line -----------------------------------------------------------------

COMMANDS: dict[str, tuple[Command, str]] = {
    "status": (
        _status,
        "one screen: up since, sessions, LPs, open orders, exposure, latency",
    ),
    "positions": (_positions, "positions and gross exposure with each LP, client positions"),
    "orders": (_orders, "a client's open orders (with --all, its finished ones too)"),
    "sessions": (_sessions, "the FIX sessions: state, logged on, messages, sequence numbers"),
    "margin": (
        _margin,
        "margin accounts: portfolio margin beside siloed, equity, free margin, level "
        "(with CLIENT, one account in full)",
    ),
    "handover": (
        _handover,
        "in a cluster: hand a client's session, served by this gateway, to another "
        "(its client is dropped and logs on there; its orders go with it)",
    ),
}


HANDOVER_TIMEOUT = 30.0
"""How long ``handover`` waits by default: a few round trips of the cluster,
each up to a lease."""


def _common(parser: argparse.ArgumentParser, timeout: float = TIMEOUT) -> None:
    parser.add_argument(
        "--url",
        help=f"the daemon's HTTP address (default: from --config, or the packaged config's, "
        f"{DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        help=f"bearer token (default: ${TOKEN_ENV}, ${READ_TOKEN_ENV}, or from --config, or, "
        "with neither --url nor --config, the packaged config's)",
    )
    parser.add_argument(
        "--config",
        help="the daemon's TOML config: its http_host, http_port and admin_token (else read_token)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeout", type=seconds, default=timeout, help=f"seconds to wait (default {timeout:g})"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator commands to ``fixgw``'s subcommands; each parsed
    command carries its function, for :func:`run`."""
    for name, (command, summary) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=summary, description=summary)
        _common(parser, HANDOVER_TIMEOUT if name == "handover" else TIMEOUT)
        if name == "orders":
            parser.add_argument("--client", help="the client's CompID (default: every client)")
            parser.add_argument(
                "--all",
                action="store_true",
                help="finished orders the gateway still retains too, in time priority",
            )
            parser.add_argument(
                "--limit",
                type=number_of_orders,
                help=f"at most this many, the latest (default with --all: {ALL_ORDERS_LIMIT})",
            )
        if name == "handover":
            parser.add_argument("session", metavar="CLIENT", help="the client's CompID")
            parser.add_argument("--to", required=True, help="the gateway's instance name")
        if name == "margin":
            parser.add_argument(
                "client",
                nargs="?",
                metavar="CLIENT",
                help="a client's CompID: its account in full (default: every account)",
            )
        parser.set_defaults(operator_command=command)


MAX_ORDERS_LIMIT = 10_000
"""The most orders the admin API lists at once (its own bound, repeated here
so that the command line does not import the order flow)."""


def number_of_orders(text: str) -> int:
    n = int(text)
    if not 0 <= n <= MAX_ORDERS_LIMIT:
        raise argparse.ArgumentTypeError(f"0 to {MAX_ORDERS_LIMIT:,}")
    return n


MAX_TIMEOUT = 3600.0
"""The longest wait ``--timeout`` takes, in seconds."""


def seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_TIMEOUT:  # NaN too
        raise argparse.ArgumentTypeError(f"seconds, > 0 and at most {MAX_TIMEOUT:g}: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the operator command ``args`` were parsed for; 1 with one line on
    stderr when the daemon cannot answer it."""
    command: Command = args.operator_command
    try:
        return command(admin_api(args), args)
    except OperatorError as exc:
        print(f"fixgw {args.command}: {exc}", file=sys.stderr)
        return 1


def is_operator_command(args: argparse.Namespace) -> bool:
    return hasattr(args, "operator_command")
