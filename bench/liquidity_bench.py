"""Liquidity: the default LPs aggregated against each LP alone.

The same seeded client order flow is replayed four times through the gateway
built in this process as ``fixgw run`` builds it (``Gateway``, memory
stores): once with every simulated LP of ``config/default.toml`` enabled,
then with each of them alone (the others ``enabled = false``).  The LPs keep
their configured spreads, depths and level sizes; what the benchmark changes
in their settings is the same in every run:

* last look on: ``reject_probability`` (``--reject-probability``, 0.08) and
  partial fills on: ``partial_fill_probability`` (``--partial-probability``,
  0.2) at every LP;
* each LP's ``seed`` is its configured seed plus 100 x ``--seed``;
* the LPs do not quote on their own timer (``quote_interval_ms`` is a day):
  the benchmark moves the market one step and has every LP quote once
  every ``--orders-per-quote`` orders, so that every run sees the same
  prices at the same order, whatever the machine's speed.

Mids (``--mids``): ``shared`` (the default) gives every LP one market, a
random walk seeded from ``--seed`` starting at the configured mids, so the
LPs differ only by their spreads, depths and last look, as LPs whose prices
are arbitraged together do.  ``own`` leaves each LP the market its settings
build, as ``fixgw run`` does with the default config: three walks from
three seeds, drifting apart.  Sharing one market is something the
simulated adapter supports (``SimulatedLp(market=...)``) but the config
cannot say, so the benchmark hands the gateway's simulated LPs their market
objects after building the gateway and before starting it.

The order flow: ``--orders`` market IOC orders of CLIENT1, one after the
other (the next is sent when the previous has its final ExecutionReport),
over a FIX session on loopback.  Symbols are drawn evenly from the
configured instruments, sizes from a fixed menu of lots (10 to 2,000, some
beyond one LP's top level or whole book), capped at 2,000,000 USD an order;
sides are drawn at random, except that a side which would take the
client's intended net position in the symbol past 2,000,000 USD is
turned round.  The caps keep the client's risk and margin limits out of
play (the gateway refuses no order).  They do not bound the LPs' exposure:
the gateway's position with an LP is what was filled there, which drifts
from the intended position by what was not filled, and with several LPs,
buys and sells that find their best price at different LPs build
positions with each that are not netted across LPs.  The LPs' configured
limits (``soft_limit_usd``, ``hard_limit_usd``) then steer the aggregated
run's flow to worse prices; with one LP a soft limit has nowhere to steer
to and only the hard limit could bind.  The largest gross exposure of any
LP seen before an order is reported; ``--no-lp-limits`` sets every LP's
limits out of reach, to tell that steering from liquidity.

Per run: orders filled in full; filled quantity over ordered quantity (in
lots); orders that ended with nothing filled; the LPs' last-look rejects
over the child orders sent (the gateway's own counters); the quoted spread
of the gateway's merged book (what its market data serves) for the
order's symbol when the order was sent, in ticks; and the slippage of each
order's average fill price against the mid of the merged book of *all*
the LPs at that moment (the same reference in every run, even where some
are disabled), in ticks and in basis points, worse positive, averaged over
the orders with a fill.

    .venv/bin/python bench/liquidity_bench.py [--orders 2000] [--seed 1] \\
        [--mids shared|own] [--reject-probability 0.08] \\
        [--partial-probability 0.2] [--orders-per-quote 2] [--no-lp-limits]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import (
    Config,
    ConfigError,
    SessionSettings,
    default_config_path,
    validate_raw,
)
from config.loader import parse_toml, read_config_text
from gateway.daemon import Gateway, Listeners
from gateway.fix.codec import FixMessage
from gateway.fix.messages import Side, new_order_single
from gateway.net.client import FixClient
from gateway.net.server import bind_listening
from gateway.ops.logs import configure_logging
from gateway.orderflow.flow import OrderFlow
from lp_adapters.registry import adapter_settings, create_adapter
from lp_adapters.simulated.adapter import MarketModel, SimulatedLp
from router.book import BookSnapshot
from router.exposure import ExposureLedger
from router.model import Instrument, LpEvent

CLIENT: Final = "CLIENT1"
SIZE_MENU_LOTS: Final = (10, 50, 100, 200, 400, 700, 1200, 2000)
SIZE_WEIGHTS: Final = (20, 20, 15, 15, 12, 8, 6, 4)
ORDER_CAP_USD: Final = Decimal(2_000_000)
POSITION_CAP_USD: Final = Decimal(2_000_000)
QUIET_INTERVAL_MS: Final = 86_400_000
UNREACHABLE_SOFT_USD: Final = "1000000000000"
UNREACHABLE_HARD_USD: Final = "2000000000000"
FINAL_STATUSES: Final = (b"2", b"4", b"8", b"C")  # Filled, Canceled, Rejected, Expired
REPORT_TIMEOUT: Final = 10.0


# -- the order flow ------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedOrder:
    cl_ord_id: str
    symbol: str
    side: Side
    lots: int


class _MidPrices:
    """A price source (``router.exposure.PriceSource``) over fixed mids."""

    def __init__(self, mids: Mapping[str, Fraction]) -> None:
        self._mids = dict(mids)

    def mid(self, symbol: str) -> Fraction | None:
        return self._mids.get(symbol)


def plan_orders(
    instruments: Mapping[str, Instrument], mids: Mapping[str, Fraction], count: int, seed: int
) -> list[PlannedOrder]:
    """``count`` market orders drawn from ``seed`` alone (see the module
    docstring); ``mids`` (ticks) value a lot in USD for the caps."""
    rng = random.Random(f"liquidity-flow-{seed}")
    ledger = ExposureLedger(instruments)
    prices = _MidPrices(mids)
    symbols = sorted(instruments)
    cap_lots: dict[str, tuple[int, int]] = {}
    for symbol in symbols:
        lot_usd = ledger.lot_value_usd(symbol, prices)
        if not lot_usd:
            raise ValueError(f"{symbol} cannot be valued in USD at the start mids")
        cap_lots[symbol] = (int(ORDER_CAP_USD // lot_usd), int(POSITION_CAP_USD // lot_usd))
    intended = dict.fromkeys(symbols, 0)
    orders = []
    for n in range(count):
        symbol = rng.choice(symbols)
        order_cap, position_cap = cap_lots[symbol]
        lots = min(rng.choices(SIZE_MENU_LOTS, SIZE_WEIGHTS)[0], order_cap, position_cap)
        if lots < 1:
            raise ValueError(f"one lot of {symbol} is worth more than the caps")
        signed = lots if rng.random() < 0.5 else -lots
        position = intended[symbol]
        if abs(position + signed) > position_cap:
            signed = -signed
        intended[symbol] = position + signed
        side: Side = "buy" if signed > 0 else "sell"
        orders.append(PlannedOrder(f"LQ{seed}-{n}", symbol, side, lots))
    return orders


# -- the configuration ---------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What every run shares: the settings of the LPs and the flow."""

    raw: dict[str, Any]  # config/default.toml as parsed
    lps: tuple[str, ...]  # the simulated LPs the file enables, in its order
    seed: int
    mids: str  # "shared" or "own"
    reject_probability: float
    partial_probability: float
    orders_per_quote: int
    lp_limits: bool = True  # False: every LP's exposure limits out of reach


def load_setup(
    path: Path,
    *,
    seed: int,
    mids: str,
    reject_probability: float,
    partial_probability: float,
    orders_per_quote: int,
    lp_limits: bool = True,
) -> Setup:
    raw = parse_toml(read_config_text(path), source=str(path))
    lps = tuple(
        lp["name"]
        for lp in raw.get("lps", ())
        if lp.get("adapter") == "simulated" and lp.get("enabled", True)
    )
    if len(lps) < 2:
        raise ValueError(f"{path} enables {len(lps)} simulated LP(s); the comparison needs two")
    return Setup(
        raw,
        lps,
        seed,
        mids,
        reject_probability,
        partial_probability,
        orders_per_quote,
        lp_limits,
    )


def run_config(setup: Setup, enabled: Iterable[str], data_dir: str) -> Config:
    """The file's config with only ``enabled`` of its simulated LPs on, each
    with the benchmark's settings, memory stores and no HTTP port."""
    on = set(enabled)
    raw = dict(setup.raw)
    raw["gateway"] = {
        **raw.get("gateway", {}),
        "fix_host": "127.0.0.1",
        "http_port": 0,
        "data_dir": data_dir,
        "log_level": "error",
    }
    raw["store"] = {**raw.get("store", {}), "backend": "memory"}
    # no journal with memory stores: no drop copy either
    raw["sessions"] = [s for s in raw.get("sessions", ()) if s.get("Application") != "dropcopy"]
    lps = []
    for entry in raw.get("lps", ()):
        entry = dict(entry)
        if entry["name"] in setup.lps:
            entry["enabled"] = entry["name"] in on
            entry["settings"] = lp_settings(setup, entry.get("settings", {}))
            if not setup.lp_limits:
                entry["soft_limit_usd"] = UNREACHABLE_SOFT_USD
                entry["hard_limit_usd"] = UNREACHABLE_HARD_USD
        else:
            entry["enabled"] = False
        lps.append(entry)
    raw["lps"] = lps
    config, errors = validate_raw(raw, adapter_settings())
    if config is None:
        raise ConfigError(errors)
    return config


def lp_settings(setup: Setup, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **settings,
        "seed": int(settings.get("seed", 0)) + 100 * setup.seed,
        "reject_probability": setup.reject_probability,
        "partial_fill_probability": setup.partial_probability,
        "quote_interval_ms": QUIET_INTERVAL_MS,
    }


# -- the LPs' markets and the reference book -------------------------------------------


def _ignore(event: LpEvent) -> None:
    pass


class Reference:
    """One simulated LP per configured LP, outside the gateway and never
    connected, on the same markets as the gateway's: their merged book is
    the book of all the LPs at any moment, whichever are enabled in a run."""

    def __init__(self, setup: Setup, config: Config) -> None:
        self.instruments = {i.symbol: i.to_instrument() for i in config.instruments}
        by_name = {lp.name: lp for lp in config.lps}
        self.lps: dict[str, SimulatedLp] = {}
        for name in setup.lps:
            adapter = create_adapter(
                "simulated", name, self.instruments, _ignore, by_name[name].settings
            )
            assert isinstance(adapter, SimulatedLp)
            self.lps[name] = adapter
        if setup.mids == "shared":
            first = self.lps[setup.lps[0]].config
            shared = MarketModel(
                self.instruments,
                seed=setup.seed,
                start_mids=first.start_mid,
                walk_ticks=first.walk_ticks,
            )
            for lp in self.lps.values():
                lp.market = shared
        self.markets: dict[str, MarketModel] = {name: lp.market for name, lp in self.lps.items()}

    def step(self) -> None:
        """Every market one step on (a shared one once)."""
        for market in {id(m): m for m in self.markets.values()}.values():
            market.step()

    def book(self, symbol: str, lps: Iterable[str] | None = None) -> BookSnapshot:
        names = self.lps if lps is None else lps
        return BookSnapshot.from_quotes(symbol, [self.lps[n].quote(symbol) for n in names])

    def mids(self) -> dict[str, Fraction]:
        out = {}
        for symbol in self.instruments:
            mid = self.book(symbol).mid
            if mid is None:
                raise ValueError(f"the LPs quote no two-sided book for {symbol}")
            out[symbol] = mid
        return out


# -- one run ---------------------------------------------------------------------------


@dataclass
class RunResult:
    label: str
    lps: tuple[str, ...]
    orders: int = 0
    final_reports: int = 0  # orders whose final ExecutionReport the client read
    filled: int = 0  # filled in full
    partial: int = 0  # some filled, not all
    nothing: int = 0  # ended with nothing filled
    refused: int = 0  # rejected by the gateway itself (OrdStatus 8)
    peak_gross_usd: Decimal = Decimal(0)  # largest gross exposure of an LP before an order
    ordered_lots: int = 0
    filled_lots: int = 0
    children: int = 0
    child_rejects: int = 0
    spreads: list[int] = field(default_factory=list)
    slippage_ticks: list[Fraction] = field(default_factory=list)
    slippage_bp: list[Fraction] = field(default_factory=list)

    @property
    def fill_rate(self) -> float:
        return self.filled / self.orders if self.orders else 0.0

    @property
    def fill_ratio(self) -> float:
        return self.filled_lots / self.ordered_lots if self.ordered_lots else 0.0

    @property
    def nothing_rate(self) -> float:
        return self.nothing / self.orders if self.orders else 0.0

    @property
    def child_reject_rate(self) -> float:
        return self.child_rejects / self.children if self.children else 0.0

    @property
    def spread(self) -> float:
        return _mean(self.spreads)

    @property
    def slippage(self) -> float:
        return _mean(self.slippage_ticks)

    @property
    def slippage_in_bp(self) -> float:
        return _mean(self.slippage_bp)


def _mean(values: Sequence[int | Fraction]) -> float:
    return float(sum(values, Fraction(0)) / len(values)) if values else float("nan")


async def _final_report(client: FixClient, cl_ord_id: bytes) -> list[FixMessage]:
    """The ExecutionReports of ``cl_ord_id`` up to its final one."""
    reports = []
    while True:
        msg = await client.receive(timeout=REPORT_TIMEOUT)
        if msg.msg_type == b"8" and msg.get(11) == cl_ord_id:
            reports.append(msg)
            if msg.get(39) in FINAL_STATUSES:
                return reports


async def run_once(
    setup: Setup, enabled: Sequence[str], orders: Sequence[PlannedOrder], label: str
) -> RunResult:
    """Replay ``orders`` against a gateway with only ``enabled`` LPs on."""
    result = RunResult(label, tuple(enabled))
    with tempfile.TemporaryDirectory(prefix="liquidity-bench-") as data_dir:
        config = run_config(setup, enabled, data_dir)
        reference = Reference(setup, config)
        listeners = Listeners(bind_listening("127.0.0.1", 0, "liquidity bench"), [])
        try:
            gateway = Gateway(config, listeners=listeners)
            flow = gateway.order_flow
            assert flow is not None
            adapters = _on_markets(flow, reference, enabled)
        except BaseException:
            listeners.close()
            raise
        await gateway.start()
        client = FixClient(SessionSettings(SenderCompID=CLIENT, TargetCompID="GATEWAY"))
        try:
            await client.connect("127.0.0.1", gateway.fix_port)
            await _replay(client, flow, reference, adapters, orders, setup, result)
            for lp_stats in flow.stats.lps.values():
                result.children += lp_stats.children
                result.child_rejects += lp_stats.rejected
        finally:
            if client.logged_on:
                await client.logout()
            else:
                client.abort()
            await gateway.stop()
    return result


def _on_markets(
    flow: OrderFlow, reference: Reference, enabled: Sequence[str]
) -> dict[str, SimulatedLp]:
    """The gateway's LPs, each handed its market from ``reference`` (before
    they connect and quote for the first time)."""
    adapters: dict[str, SimulatedLp] = {}
    for name, adapter in flow.adapters.items():
        if not isinstance(adapter, SimulatedLp):
            raise TypeError(f"LP {name} is not a simulated LP")
        adapter.market = reference.markets[name]
        adapters[name] = adapter
    if sorted(adapters) != sorted(enabled):
        raise RuntimeError(f"the gateway built LPs {sorted(adapters)}, not {sorted(enabled)}")
    return adapters


async def _replay(
    client: FixClient,
    flow: OrderFlow,
    reference: Reference,
    adapters: Mapping[str, SimulatedLp],
    orders: Sequence[PlannedOrder],
    setup: Setup,
    result: RunResult,
) -> None:
    instruments = reference.instruments
    book = flow.book
    enabled = tuple(adapters)
    for n, order in enumerate(orders):
        if n and n % setup.orders_per_quote == 0:
            reference.step()
            for adapter in adapters.values():
                adapter.publish_quotes()
        seen = book.snapshot(order.symbol)
        expected = reference.book(order.symbol, enabled)
        if seen is None or seen.bids != expected.bids or seen.asks != expected.asks:
            raise RuntimeError(f"the gateway's book of {order.symbol} is not its LPs' quotes")
        mid = reference.book(order.symbol).mid
        assert mid is not None
        # as last valued by the gateway (reading it values nothing anew)
        gross = flow.ledger.current().lp_gross_usd.values()
        result.peak_gross_usd = max([result.peak_gross_usd, *gross])
        if seen.best_bid is not None and seen.best_ask is not None:
            result.spreads.append(seen.best_ask.price - seen.best_bid.price)
        instrument = instruments[order.symbol]
        cl_ord_id = order.cl_ord_id
        client.send(
            *new_order_single(
                cl_ord_id,
                order.symbol,
                order.side,
                instrument.lot_size * order.lots,
                transact_time=time.time(),
                time_in_force="ioc",
            )
        )
        result.orders += 1
        result.ordered_lots += order.lots
        reports = await _final_report(client, cl_ord_id.encode())
        result.final_reports += 1
        lots = 0
        ticks = 0
        for report in reports:
            if report.get(150) != b"F":
                continue
            fill_lots = instrument.qty_to_lots(Decimal((report.get(32) or b"0").decode()))
            price = instrument.price_to_ticks(Decimal((report.get(31) or b"0").decode()))
            lots += fill_lots
            ticks += fill_lots * price
        result.filled_lots += lots
        status = reports[-1].get(39)
        if status == b"8":
            result.refused += 1
        if lots == order.lots:
            result.filled += 1
        elif lots:
            result.partial += 1
        else:
            result.nothing += 1
        if lots:
            average = Fraction(ticks, lots)
            worse = average - mid if order.side == "buy" else mid - average
            result.slippage_ticks.append(worse)
            result.slippage_bp.append(worse / mid * 10_000)


# -- all runs and the report -----------------------------------------------------------


async def run_all(setup: Setup, count: int) -> list[RunResult]:
    """The aggregated run, then each LP alone, on the same orders."""
    # validated only, to plan the flow: no gateway is built on it
    reference = Reference(setup, run_config(setup, setup.lps, tempfile.gettempdir()))
    orders = plan_orders(reference.instruments, reference.mids(), count, setup.seed)
    runs: list[tuple[str, tuple[str, ...]]] = [("all: " + " + ".join(setup.lps), setup.lps)]
    runs += [(f"{name} alone", (name,)) for name in setup.lps]
    return [await run_once(setup, lps, orders, label) for label, lps in runs]


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def format_table(results: Sequence[RunResult]) -> str:
    """The Markdown table of the runs, one row each."""
    lines = [
        "| LPs | orders | filled in full | filled qty / ordered | nothing filled "
        "| LP rejects / child orders | quoted spread, ticks | slippage vs mid, ticks "
        "| slippage vs mid, bp | peak LP exposure, M USD |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {r.label} | {r.orders:,} | {_pct(r.fill_rate)} | {_pct(r.fill_ratio)} "
        f"| {_pct(r.nothing_rate)} | {r.child_rejects:,} / {r.children:,} "
        f"({_pct(r.child_reject_rate)}) | {r.spread:.2f} | {r.slippage:+.2f} "
        f"| {r.slippage_in_bp:+.3f} | {r.peak_gross_usd / 1_000_000:.1f} |"
        for r in results
    )
    return "\n".join(lines)


def format_comparison(results: Sequence[RunResult]) -> str:
    """The aggregated run against each LP alone: the guide's three figures."""
    together, alone = results[0], results[1:]
    lines = [
        "| against | spread tighter by | fill rate, points | nothing filled, fewer by |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in alone:
        if together.spread <= 0:
            tighter = "merged book crossed"
        elif r.spread > 0:
            tighter = _pct(1 - together.spread / r.spread)
        else:
            tighter = "n/a"
        points = (together.fill_rate - r.fill_rate) * 100
        fewer = _pct(1 - together.nothing_rate / r.nothing_rate) if r.nothing else "n/a"
        lines.append(f"| {r.label} | {tighter} | {points:+.1f} | {fewer} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="client orders per run")
    parser.add_argument("--seed", type=int, default=1, help="seeds the flow, market and LPs")
    parser.add_argument(
        "--mids",
        choices=("shared", "own"),
        default="shared",
        help="one market for every LP, or each LP's own walk as configured",
    )
    parser.add_argument("--reject-probability", type=float, default=0.08)
    parser.add_argument("--partial-probability", type=float, default=0.2)
    parser.add_argument(
        "--orders-per-quote", type=int, default=2, help="orders between two market steps"
    )
    parser.add_argument(
        "--no-lp-limits",
        action="store_true",
        help="set every LP's exposure limits out of reach (no steering by exposure)",
    )
    parser.add_argument("--config", type=Path, default=default_config_path())
    args = parser.parse_args(argv)
    if args.orders < 1 or args.orders_per_quote < 1:
        parser.error("--orders and --orders-per-quote must be at least 1")
    configure_logging("error", "console")
    setup = load_setup(
        args.config,
        seed=args.seed,
        mids=args.mids,
        reject_probability=args.reject_probability,
        partial_probability=args.partial_probability,
        orders_per_quote=args.orders_per_quote,
        lp_limits=not args.no_lp_limits,
    )
    started = time.perf_counter()
    results = uvloop.run(run_all(setup, args.orders))
    elapsed = time.perf_counter() - started
    print(
        f"liquidity: {args.orders:,} market IOC orders per run, seed {args.seed}, "
        f"mids {args.mids}, last look {args.reject_probability:g}, "
        f"partial fills {args.partial_probability:g}, a market step every "
        f"{args.orders_per_quote} orders, LP exposure limits "
        f"{'out of reach' if args.no_lp_limits else 'as configured'} ({elapsed:.1f} s)"
    )
    print()
    print(format_table(results))
    print()
    print(format_comparison(results))
    print()
    answered = all(r.final_reports == r.orders for r in results)
    print(
        f"final report for every order: {'yes' if answered else 'NO'}; "
        f"refused by the gateway: {', '.join(str(r.refused) for r in results)}"
    )
    return 0 if answered else 1


if __name__ == "__main__":
    raise SystemExit(main())
