"""Per-order CPU cost of the whole order pipeline, without sockets.

The daemon's pieces are built from the default config exactly as
``fixgw run`` builds them (sessions on a memory store, or with ``--store file``
file stores and the order journal in a temporary directory; the order flow; three
simulated LPs); one accepted connection is driven through an in-memory
transport.  Pre-encoded NewOrderSingle messages (market IOC, 1,000 EUR/USD,
buys and sells alternating, as ``fixgw bench`` sends them) are handed to the
connection ``--batch`` at a time, as TCP reads would, and the event loop runs
until every order has its final ExecutionReport.  What is timed is everything
the daemon does for an order except the socket system calls: framing,
parsing, validation, the session layer and its store, risk, matching,
routing, the simulated LPs' answers, and encoding the reports.

With ``--profile`` the run is repeated under cProfile and the functions with
the most own time are listed.

    .venv/bin/python bench/pipeline_bench.py [--orders 50000] [--batch 50] \\
        [--store file] [--margin on|off] [--accounts 1000] [--profile]

With margin on (the default config), ``--accounts`` more margin accounts are
added, each holding a position in every instrument, and CLIENT1 holds every
instrument too, so that each pre-trade check and the margin watch (which
reads 250 accounts every 100 ms) do the work a busy book of accounts asks.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import default_config_path, load_config
from config.schema import MarginSettings
from gateway.daemon import Gateway
from gateway.fix import codec
from gateway.net.server import AcceptedConnection
from gateway.ops.logs import configure_logging
from risk.accounts import AccountTerms

_FILLED = b"\x0139=2\x01"


class MemoryTransport:
    """Collects what the gateway writes; counts final fills."""

    def __init__(self, expected: int) -> None:
        self.filled = 0
        self.written = 0
        self.expected = expected
        self.done = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.filled += data.count(_FILLED)
        if self.filled >= self.expected:
            self.done.set()

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _message(seq: int, msg_type: bytes, body: bytes, now: float) -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(now)),
        (56, b"GATEWAY"),
    ]
    return codec.encode_message(b"FIX.4.4", msg_type, header, body)


def _orders(first_seq: int, count: int, now: float) -> list[bytes]:
    stamp = codec.format_utc_timestamp(now)
    out = []
    for i in range(count):
        side = b"1" if i & 1 else b"2"
        body = b"11=P%d\x0121=1\x0138=1000\x0140=1\x0154=%b\x0155=EUR/USD\x0159=3\x0160=%b\x01" % (
            first_seq + i,
            side,
            stamp,
        )
        out.append(_message(first_seq + i, b"D", body, now))
    return out


def _margined(gateway: Gateway, accounts: int) -> None:
    """``accounts`` more margin accounts, each holding a position in every
    instrument, and CLIENT1 too (so that its checks walk every group)."""
    flow = gateway.order_flow
    assert flow is not None
    rules = flow.rules
    terms = dict(rules.accounts)
    holdings: dict[str, dict[str, tuple[int, float, float]]] = {}
    prices = {
        "EUR/USD": 1.085,
        "GBP/USD": 1.27,
        "USD/JPY": 150.0,
        "XAU/USD": 2000.0,
        "BTC/USD": 30000.0,
        "US500": 5000.0,
        "WTI": 75.0,
    }
    for i in range(accounts):
        client = f"ACCOUNT{i}"
        terms[client] = AccountTerms(Decimal(10_000_000))
        sign = 1 if i % 2 else -1
        holdings[client] = {s: (sign * (10 + i % 7), p, 0.0) for s, p in prices.items()}
    holdings["CLIENT1"] = {s: (5, p, 0.0) for s, p in prices.items() if s != "EUR/USD"}
    flow.accounts.configure(rules.margin, terms)
    flow.accounts.load(holdings)


async def _run(
    orders: int, batch: int, store: str, margin: bool, accounts: int, drop_copy: bool = True
) -> tuple[float, float, int]:
    cfg = load_config(str(default_config_path()))
    data_dir = tempfile.mkdtemp(prefix="pipeline-bench-")
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, http_port=0, data_dir=data_dir),
        store=msgspec.structs.replace(cfg.store, backend=store),
    )
    if not margin:
        cfg = msgspec.structs.replace(cfg, margin=MarginSettings(), accounts={})
    if not drop_copy:
        sessions = tuple(s for s in cfg.sessions if s.Application != "dropcopy")
        cfg = msgspec.structs.replace(cfg, sessions=sessions)
    gateway = Gateway(cfg)
    assert gateway.order_flow is not None
    if margin:
        _margined(gateway, accounts)
    await gateway.order_flow.start()
    transport = MemoryTransport(orders)
    conn = AcceptedConnection(gateway.fix_server)
    conn.connection_made(transport)  # type: ignore[arg-type]
    now = time.time()
    conn.data_received(_message(1, b"A", b"98=0\x01108=30\x01", now))
    await asyncio.sleep(0)
    messages = _orders(2, orders, now)
    chunks = [b"".join(messages[i : i + batch]) for i in range(0, len(messages), batch)]
    gc.collect()
    wall = time.perf_counter()
    cpu = time.process_time()
    for chunk in chunks:
        conn.data_received(chunk)
        await asyncio.sleep(0)
    await transport.done.wait()
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    await gateway.order_flow.stop()
    if gateway.journal is not None:
        gateway.journal.close()
    for session_store in gateway.stores:
        session_store.close()
    shutil.rmtree(data_dir)
    return cpu, wall, transport.written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50, help="orders per simulated read")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--profile", action="store_true", help="list where the time goes")
    parser.add_argument(
        "--store",
        choices=("memory", "file"),
        default="memory",
        help="session stores (and, with file, the order journal) as store.backend says",
    )
    parser.add_argument(
        "--margin",
        choices=("on", "off"),
        default="on",
        help="portfolio margin as the default config has it, or [margin] left out",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1000,
        help="with margin on: more margin accounts, each holding every instrument",
    )
    parser.add_argument(
        "--drop-copy",
        choices=("on", "off"),
        default="on",
        help="the default config's drop-copy session (what the order path does for it: with"
        " --store file, LP fills journaled for its TradeCaptureReports; the copies themselves"
        " are made by the drop-copy process, not timed here), or none",
    )
    args = parser.parse_args()
    margin = args.margin == "on"
    drop_copy = args.drop_copy == "on"
    configure_logging("warning", "console")
    best = None
    for _ in range(args.repeat):
        cpu, wall, written = uvloop.run(
            _run(args.orders, args.batch, args.store, margin, args.accounts, drop_copy)
        )
        if best is None or cpu < best[0]:
            best = (cpu, wall, written)
    assert best is not None
    cpu, wall, written = best
    print(
        f"pipeline ({args.store} store, drop copy {args.drop_copy}, margin {args.margin}"
        f"{f', {args.accounts:,} more accounts' if margin else ''}): "
        f"{args.orders:,} orders, {args.batch} per read, "
        f"best of {args.repeat}: "
        f"{cpu / args.orders * 1e6:.1f} µs CPU per order "
        f"({args.orders / cpu:,.0f} orders/s of one core; wall {args.orders / wall:,.0f}/s; "
        f"{written / args.orders:.0f} bytes out per order)"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        uvloop.run(_run(args.orders, args.batch, args.store, margin, args.accounts, drop_copy))
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
