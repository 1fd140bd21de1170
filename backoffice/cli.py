"""``fixgw backoffice``: run the back office, or ask the running one.

``fixgw backoffice run`` runs the process; ``breaks``, ``recon``,
``treasury``, ``status`` and ``export --date`` ask the running back office
over its HTTP API (``[backoffice] http_host``/``http_port``, with the admin
token) and print the answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import http.client
import json
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from config import Config, ConfigError, config_base, default_config_path, load_config, resolve_paths
from gateway.ops.direct import OPENER, http_base, is_http_address
from gateway.ops.tokens import Tokens

__all__ = ["add_arguments", "main"]

COMMANDS = ("run", "breaks", "recon", "treasury", "status", "export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=COMMANDS,
        help="run the back office (default), or ask the running one: breaks, recon (a full "
        "reconciliation now), treasury, status, export (a trading day's files)",
    )
    parser.add_argument("--config", help="TOML config file (default: the packaged default)")
    parser.add_argument("--date", type=trading_day, help="export: the trading day, YYYY-MM-DD")
    parser.add_argument("--type", help="breaks: only this type")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--url", help="the back office's HTTP address (default: from the config)")
    parser.add_argument(
        "--data-dir", help="override gateway.data_dir (relative to the working directory)"
    )


def trading_day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date, YYYY-MM-DD: {text!r}") from None


def _config(args: argparse.Namespace) -> Config:
    import os

    import msgspec

    path = args.config or str(default_config_path())
    cfg = resolve_paths(load_config(path), config_base(path))
    if args.data_dir:
        gateway = msgspec.structs.replace(cfg.gateway, data_dir=os.path.abspath(args.data_dir))
        cfg = msgspec.structs.replace(cfg, gateway=gateway)
    problem = Tokens.problem(cfg.gateway)  # a token from the environment
    if problem is not None:
        raise ConfigError([problem])
    return cfg


def main(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print("fixgw backoffice: configuration error(s):", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    if args.action == "run":
        return _run(cfg, args.config or str(default_config_path()))
    return _ask(cfg, args)


def _run(cfg: Config, path: str) -> int:
    import asyncio

    import uvloop

    from backoffice.ledger import LedgerError
    from backoffice.service import BackOffice, BackofficeError
    from gateway.ops.logs import configure_logging

    configure_logging(cfg.gateway.log_level, cfg.gateway.log_format)

    async def serve() -> int:
        office = BackOffice(cfg, config_path=path)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, office.stop)
        # a token rotation: the tokens read again from the file
        loop.add_signal_handler(signal.SIGHUP, office.reload_tokens, "SIGHUP")
        await office.run()
        if office.failed:
            print(f"fixgw backoffice: stopped: {office.failed}", file=sys.stderr)
            return 1
        return 0

    # The drop copy's messages die young and hold no cycles: the cyclic
    # collector runs after 10,000 new objects instead of 700 and walks the
    # old ones rarely (every 1,000 young passes), which a catch-up of
    # hundreds of thousands of messages in memory would otherwise make it
    # walk again and again (measured: ~15% of the intake's CPU); what
    # exists before the start is left out of it altogether.
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)
    try:
        return uvloop.run(serve())
    except (BackofficeError, LedgerError, ConfigError) as exc:
        print(f"fixgw backoffice: refusing to start: {exc}", file=sys.stderr)
        return 2


def _ask(cfg: Config, args: argparse.Namespace) -> int:
    name = f"fixgw backoffice {args.action}"
    if args.action == "export" and not args.date:
        print(f"{name}: which trading day? give --date YYYY-MM-DD", file=sys.stderr)
        return 1
    settings = cfg.backoffice
    base = args.url or http_base(settings.http_host, settings.http_port)
    if not is_http_address(base):
        print(f"{name}: bad --url {base!r}: give http://HOST:PORT", file=sys.stderr)
        return 1
    method, path, query = {
        "breaks": ("GET", "/backoffice/breaks", {"type": args.type} if args.type else {}),
        "recon": ("POST", "/backoffice/recon", {}),
        "treasury": ("GET", "/backoffice/treasury", {}),
        "status": ("GET", "/backoffice/status", {}),
        "export": ("POST", "/backoffice/export", {"date": args.date}),
    }[args.action]
    target = base.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(target, method=method)
    tokens = Tokens.of(cfg.gateway)
    token = tokens.admin or tokens.read
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with OPENER.open(request, timeout=120) as response:
            data: Any = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        try:
            body = json.loads(body)["error"]
        except (ValueError, TypeError, KeyError):
            pass  # not the back office's own answer: shown as it came
        print(f"{name}: HTTP {exc.code}: {body}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"{name}: no back office answers at {base} ({reason}); "
            "is `fixgw backoffice run` running?",
            file=sys.stderr,
        )
        return 1
    except http.client.HTTPException as exc:
        # something other than an HTTP server at the address, or an answer cut short
        print(
            f"{name}: {base} did not answer as an HTTP server ({type(exc).__name__}); "
            "is this the back office's address?",
            file=sys.stderr,
        )
        return 1
    except ValueError:
        print(
            f"{name}: {base}{path} answered something other than JSON; "
            "is this the back office's address?",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _print(args.action, data)
    return 0


def _print(action: str, data: Any) -> None:
    if action == "breaks":
        print(
            f"{data['count']} break(s)"
            + "".join(f", {k} {v}" for k, v in sorted(data["by_type"].items()))
        )
        for b in data["breaks"]:
            where = " ".join(x for x in (b["lp"], b["client"], b["symbol"]) if x)
            values = f" ours={b['ours']}" if b["ours"] else ""
            values += f" theirs={b['theirs']}" if b["theirs"] else ""
            print(f"  {b['kind']:<26} {b['records']:<14} {b['ref']}  {where}{values}")
    elif action == "recon":
        print(
            f"full reconciliation: {data['keys']} keys, {data['breaks']} break(s), "
            f"{data['pending']} pending"
        )
    elif action == "treasury":
        print(f"trading day {data['trade_date']}")
        for name, rows in data["positions"].items():
            print(f"positions ({name}):")
            for p in rows:
                print(f"  {p['holder']:<12} {p['symbol']:<10} {p['qty']}")
        print("net settlement (+ the house receives, - it pays):")
        for line in data["settlement"]:
            print(
                f"  {line['kind']:<6} {line['counterparty']:<12} {line['value_date']} "
                f"{line['currency']} {line['amount']}"
            )
    elif action == "export":
        print(f"trading day {data['trade_date']}:")
        for f in data["files"]:
            print(f"  {f}")
    else:
        print(json.dumps(data, indent=2))
