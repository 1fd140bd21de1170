"""The liquidity benchmark replays one seeded flow against the LPs together
and each alone, and every run answers every order (its figures are printed
and recorded in bench/RESULTS.md, never asserted here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from config import default_config_path
from router.exposure import ExposureLedger

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "liquidity_bench.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("liquidity_bench", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def _setup(mids: str = "shared", seed: int = 7) -> Any:
    return bench.load_setup(
        default_config_path(),
        seed=seed,
        mids=mids,
        reject_probability=0.1,
        partial_probability=0.2,
        orders_per_quote=2,
    )


def test_the_flow_is_the_seeds_alone_and_keeps_within_its_caps() -> None:
    setup = _setup()
    reference = bench.Reference(setup, bench.run_config(setup, setup.lps, "unused"))
    mids = reference.mids()
    first = bench.plan_orders(reference.instruments, mids, 300, seed=7)
    assert first == bench.plan_orders(reference.instruments, mids, 300, seed=7)
    assert first != bench.plan_orders(reference.instruments, mids, 300, seed=8)
    assert {o.symbol for o in first} == set(reference.instruments)
    assert {o.side for o in first} == {"buy", "sell"}
    assert len({o.cl_ord_id for o in first}) == len(first)
    assert any(o.lots > 500 for o in first)  # beyond one LP's top level
    ledger = ExposureLedger(reference.instruments)
    prices = bench._MidPrices(mids)
    net: dict[str, int] = {}
    for o in first:
        lot_usd = ledger.lot_value_usd(o.symbol, prices)
        assert o.lots >= 1
        assert o.lots * lot_usd <= bench.ORDER_CAP_USD
        net[o.symbol] = net.get(o.symbol, 0) + (o.lots if o.side == "buy" else -o.lots)
        assert abs(net[o.symbol]) * lot_usd <= bench.POSITION_CAP_USD


@pytest.mark.asyncio
@pytest.mark.parametrize("mids", ["shared", "own"])
async def test_four_runs_each_answer_every_order(mids: str) -> None:
    setup = _setup(mids)
    assert setup.lps == ("LP_A", "LP_B", "LP_C")
    results = await bench.run_all(setup, 100)
    assert [r.lps for r in results] == [("LP_A", "LP_B", "LP_C"), ("LP_A",), ("LP_B",), ("LP_C",)]
    for r in results:
        assert r.orders == 100
        assert r.final_reports == 100
        assert r.filled + r.partial + r.nothing == 100
        assert r.refused == 0
        assert 0 < r.filled_lots <= r.ordered_lots
        for rate in (r.fill_rate, r.fill_ratio, r.nothing_rate, r.child_reject_rate):
            assert 0.0 <= rate <= 1.0
        assert r.children >= 100 - r.nothing  # every fill came through a child order
        assert 0 <= r.child_rejects <= r.children
        assert len(r.spreads) == 100
        assert len(r.slippage_ticks) == len(r.slippage_bp) == r.filled + r.partial
    # the merged book's best bid and ask are at least as good as any one LP's
    together = results[0]
    for alone in results[1:]:
        assert all(t <= a for t, a in zip(together.spreads, alone.spreads, strict=True))
    table = bench.format_table(results)
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| all: LP_A + LP_B + LP_C",
        "| LP_A alone",
        "| LP_B alone",
        "| LP_C alone",
    ]


@pytest.mark.asyncio
async def test_the_same_seed_gives_the_same_runs() -> None:
    setup = _setup(seed=3)
    first = await bench.run_all(setup, 60)
    again = await bench.run_all(setup, 60)
    assert bench.format_table(first) == bench.format_table(again)


def test_the_command_prints_both_tables() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--orders", "40", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("liquidity: 40 market IOC orders per run, seed 5, mids shared")
    rows = [line for line in lines if line.startswith("| ")]
    assert len(rows) == 2 + 4 + 2 + 3  # two headers and separators, four runs, three pairs
    assert "final report for every order: yes; refused by the gateway: 0, 0, 0, 0" in lines
