"""The back-office process's own rules: which session it logs on to, which
ledger a URL names, and when a position is a break."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
import structlog.testing

from backoffice.duck import DuckLedger
from backoffice.ledger import Hold, LedgerError, PinnedDay, Position
from backoffice.records import HOUSE_ACCOUNT, ClientTrade, HouseTrade, LpTrade
from backoffice.service import (
    _BATCH,
    BackOffice,
    BackofficeError,
    _merged,
    _position_differences,
    drop_copy_session,
    open_ledger,
)
from backoffice.settlement import Settlement
from backoffice.statements import StatementChange
from config import (
    BackofficeGateway,
    BackofficeSettings,
    Config,
    ConfigError,
    StatementColumns,
    default_config_path,
    load_config,
)
from gateway.dropcopy.copies import trade_capture_body
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.ops.connections import MAX_HTTP_PER_ADDRESS
from gateway.ops.direct import http_base
from router.model import Side

REPO = Path(__file__).resolve().parents[2]


def default(**backoffice: object) -> Config:
    cfg = load_config(default_config_path())
    settings = msgspec.structs.replace(cfg.backoffice, **backoffice)
    return msgspec.structs.replace(cfg, backoffice=settings)


def test_it_logs_on_as_the_drop_copy_session_names() -> None:
    ours = drop_copy_session(default())
    assert (ours.SenderCompID, ours.TargetCompID) == ("BACKOFFICE", "GATEWAY")


def test_a_session_that_is_no_drop_copy_is_refused() -> None:
    with pytest.raises(BackofficeError, match='Application = "orders", not "dropcopy"'):
        drop_copy_session(default(session="CLIENT1"))


def test_a_missing_session_is_named() -> None:
    with pytest.raises(BackofficeError, match="no \\[\\[sessions\\]\\] entry has TargetCompID BO2"):
        drop_copy_session(default(session="BO2"))


def test_ledger_urls(tmp_path: Path) -> None:
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg, gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path))
    )
    settlement = Settlement(cfg.instruments)
    embedded = open_ledger(cfg, settlement)
    assert isinstance(embedded, DuckLedger)
    assert embedded.path == tmp_path / "backoffice" / "ledger.duckdb"
    named = open_ledger(
        msgspec.structs.replace(cfg, backoffice=BackofficeSettings(ledger="duckdb:x/l.db")),
        settlement,
    )
    assert isinstance(named, DuckLedger)
    assert named.path == tmp_path / "x" / "l.db"
    with pytest.raises(BackofficeError, match="does not exist, nor does its folder"):
        open_ledger(
            msgspec.structs.replace(
                cfg, backoffice=BackofficeSettings(ledger=f"duckdb:{tmp_path}/no/such/l.db")
            ),
            settlement,
        )
    absolute = open_ledger(
        msgspec.structs.replace(
            cfg, backoffice=BackofficeSettings(ledger=f"duckdb:{tmp_path}/l.db")
        ),
        settlement,
    )
    assert isinstance(absolute, DuckLedger)
    with pytest.raises(BackofficeError, match="neither duckdb:<file> nor postgresql"):
        open_ledger(
            msgspec.structs.replace(cfg, backoffice=BackofficeSettings(ledger="mysql://x")),
            settlement,
        )


@pytest.mark.asyncio
async def test_the_embedded_ledger_keeps_to_its_memory_bound(tmp_path: Path) -> None:
    """``duckdb_memory_mb`` reaches DuckDB (whose own bound is 80% of the
    machine's memory); 0 leaves DuckDB's own."""
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg, gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path))
    )
    assert cfg.backoffice.duckdb_memory_mb == 1024
    settlement = Settlement(cfg.instruments)
    bounds = []
    for mb, name in ((300, "a.db"), (0, "b.db")):
        office = msgspec.structs.replace(
            cfg.backoffice, ledger=f"duckdb:{name}", duckdb_memory_mb=mb
        )
        ledger = open_ledger(msgspec.structs.replace(cfg, backoffice=office), settlement)
        assert isinstance(ledger, DuckLedger)
        await ledger.open()
        try:
            row = ledger.con.execute("SELECT current_setting('memory_limit')").fetchone()
            assert row
            bounds.append(row[0])
        finally:
            await ledger.close()
    assert bounds[0] == "300.0 MiB"
    assert bounds[1] != bounds[0]


def test_the_default_reads_every_lps_statement(tmp_path: Path) -> None:
    office = BackOffice(default())
    assert sorted(office.statements.layouts) == ["LP_A", "LP_B", "LP_C"]
    assert office.statements.lp_of("LP_B-20261203.csv") == "LP_B"
    assert office.statements.lp_of("LP_D-20261203.csv") is None


def test_the_configs_minor_units_reach_the_settlement() -> None:
    cfg = default()
    office = BackOffice(
        msgspec.structs.replace(
            cfg, backoffice=BackofficeSettings(minor_units={"JPY": 1, "XAU": 2})
        )
    )
    units = office.settlement.minor_units
    assert (units["JPY"], units["XAU"], units["USD"], units["KWD"]) == (1, 2, 2, 3)
    assert "US500" not in units  # an index's units: 8 decimals, as the ledger keeps them


def test_positions_that_differ_are_breaks_each_named() -> None:
    gateway = {
        "clients": {
            "CLIENT1": {"EUR/USD": "3000", "BTC/USD": "0"},
            "CLIENT2": {"EUR/USD": "-1000"},
        },
        "lps": {"LP_A": {"EUR/USD": "-2000"}},
    }
    ours = {
        "clients": [
            Position("CLIENT1", "EUR/USD", "3000.00000000"),
            Position("CLIENT2", "EUR/USD", "-2000.00000000"),
            Position("CLIENT3", "GBP/USD", "0E-8"),
        ],
        "lps": [Position("LP_A", "EUR/USD", "-2000.00000000"), Position("LP_B", "XAU/USD", "5")],
        "lp_statements": [],
    }
    found = _position_differences(gateway, ours)
    assert [(b.kind, b.key, b.ours, b.theirs) for b in found] == [
        ("client_position_mismatch", "CLIENT2|EUR/USD", "-2000", "-1000"),
        ("lp_position_mismatch", "LP_B|XAU/USD", "5", "0"),
    ]
    assert (found[0].client, found[0].lp, found[1].lp) == ("CLIENT2", "", "LP_B")


def test_equal_positions_are_no_break() -> None:
    gateway = {"clients": {"CLIENT1": {"EUR/USD": "1000"}}, "lps": {}}
    ours = {
        "clients": [Position("CLIENT1", "EUR/USD", "1000.00000000")],
        "lps": [],
        "lp_statements": [],
    }
    assert _position_differences(gateway, ours) == []


def test_the_gateways_of_a_cluster_are_compared_as_one() -> None:
    """The house's position at each LP is the sum of every gateway's; a
    client's is the one of the gateway serving it (the other shows what it
    last knew); a client served by none, or by two at once, is left out."""
    a = {
        "lps": {"LP_A": {"EUR/USD": "-3000"}},
        "clients": {
            "CLIENT1": {"EUR/USD": "1000"},  # stale: served at b now
            "CLIENT2": {"EUR/USD": "2000"},
            "CLIENT3": {"EUR/USD": "5000"},
        },
        "served": ["CLIENT2", "CLIENT4"],
    }
    b = {
        "lps": {"LP_A": {"EUR/USD": "-1000"}, "LP_B": {"EUR/USD": "-1000"}},
        "clients": {"CLIENT1": {"EUR/USD": "3000"}, "CLIENT4": {"EUR/USD": "1"}},
        "served": ["CLIENT1", "CLIENT4"],
    }
    merged = _merged([a, b])
    assert merged["lps"] == {
        "LP_A": {"EUR/USD": Decimal(-4000)},
        "LP_B": {"EUR/USD": Decimal(-1000)},
    }
    assert merged["clients"] == {
        "CLIENT1": {"EUR/USD": Decimal(3000)},
        "CLIENT2": {"EUR/USD": Decimal(2000)},
    }
    assert merged["unknown"] == ["CLIENT3", "CLIENT4"]
    ours = {
        "clients": [
            Position("CLIENT1", "EUR/USD", "3000.00000000"),
            Position("CLIENT2", "EUR/USD", "2000.00000000"),
            Position("CLIENT3", "EUR/USD", "7000.00000000"),  # not compared
        ],
        "lps": [
            Position("LP_A", "EUR/USD", "-4000.00000000"),
            Position("LP_B", "EUR/USD", "-1000.00000000"),
        ],
        "lp_statements": [],
    }
    assert _position_differences(merged, ours, merged["unknown"]) == []
    # gateways that are not a cluster's serve their own clients: summed
    alone = _merged([{"lps": {}, "clients": {"CLIENT1": {"EUR/USD": "1000"}}}] * 2)
    assert alone == {"lps": {}, "clients": {"CLIENT1": {"EUR/USD": Decimal(2000)}}, "unknown": []}


def test_each_gateway_followed_has_a_feed_and_a_place_of_its_own(tmp_path: Path) -> None:
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=msgspec.structs.replace(
            cfg.backoffice,
            gateways=(
                BackofficeGateway(name="gw1", drop_copy_port=9877, http_port=8080),
                BackofficeGateway(name="gw2", host="10.0.0.2", drop_copy_port=9887),
                BackofficeGateway(
                    name="gw3", host="10.0.0.3", drop_copy_port=9897, http_host="10.9.0.3"
                ),
            ),
        ),
    )
    office = BackOffice(cfg)
    assert [(f.name, f.address, f.http_host, f.http_port, f.session_key) for f in office.feeds] == [
        ("gw1", "127.0.0.1:9877", "127.0.0.1", 8080, "BACKOFFICE-GATEWAY.gw1"),
        ("gw2", "10.0.0.2:9887", "10.0.0.2", 0, "BACKOFFICE-GATEWAY.gw2"),
        ("gw3", "10.0.0.3:9897", "10.9.0.3", 0, "BACKOFFICE-GATEWAY.gw3"),
    ]
    # alone: this config's gateway, its session's place as it always was,
    # its HTTP server where the gateway says
    alone = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, fix_host="0.0.0.0", http_host="10.9.0.1"),
        backoffice=msgspec.structs.replace(cfg.backoffice, gateways=()),
    )
    (feed,) = BackOffice(alone).feeds
    assert (feed.name, feed.address, feed.http_host, feed.session_key) == (
        "gateway",
        f"127.0.0.1:{cfg.gateway.drop_copy_port}",
        "10.9.0.1",
        "BACKOFFICE-GATEWAY",
    )


def test_two_gateways_with_one_name_or_one_drop_copy_are_refused(tmp_path: Path) -> None:
    text = (REPO / "config" / "default.toml").read_text() + (
        '\n[[backoffice.gateways]]\nname = "gw1"\ndrop_copy_port = 9877\n'
        '\n[[backoffice.gateways]]\nname = "gw1"\ndrop_copy_port = 9887\n'
        '\n[[backoffice.gateways]]\nname = "gw3"\ndrop_copy_port = 9877\n'
    )
    path = tmp_path / "bo.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(str(path))
    assert refused.value.errors == [
        "backoffice.gateways[1]: duplicate name gw1 (also backoffice.gateways[0])",
        "backoffice.gateways[2]: the same drop copy as backoffice.gateways[0] (127.0.0.1:9877)",
    ]


def test_a_drop_copy_covering_some_clients_only_is_refused() -> None:
    cfg = default()
    sessions = tuple(
        msgspec.structs.replace(s, DropCopyFor=("CLIENT1",))
        if s.TargetCompID == "BACKOFFICE"
        else s
        for s in cfg.sessions
    )
    with pytest.raises(BackofficeError, match="covers only CLIENT1"):
        drop_copy_session(msgspec.structs.replace(cfg, sessions=sessions))


def test_simulated_lps_deliver_live_others_at_the_end_of_the_day() -> None:
    cfg = default()
    lps = (msgspec.structs.replace(cfg.lps[0], adapter="fix"), *cfg.lps[1:])
    office = BackOffice(msgspec.structs.replace(cfg, lps=lps))
    delivery = {lp: layout.delivery for lp, layout in office.statements.layouts.items()}
    assert delivery == {"LP_A": "end_of_day", "LP_B": "live", "LP_C": "live"}


def test_a_layout_naming_columns_only_keeps_its_lps_delivery() -> None:
    cfg = default()
    lps = (msgspec.structs.replace(cfg.lps[0], adapter="fix"), *cfg.lps[1:])
    named = {
        "LP_A": StatementColumns(exec_id="Exec ID"),
        "LP_B": StatementColumns(exec_id="Exec ID"),
        "LP_C": StatementColumns(delivery="none"),
    }
    office = BackOffice(
        msgspec.structs.replace(
            cfg, lps=lps, backoffice=msgspec.structs.replace(cfg.backoffice, lps=named)
        )
    )
    layouts = office.statements.layouts
    assert {lp: layout.delivery for lp, layout in layouts.items()} == {
        "LP_A": "end_of_day",
        "LP_B": "live",
        "LP_C": "none",
    }
    assert layouts["LP_A"].exec_id == "Exec ID"


@pytest.mark.asyncio
async def test_ended_days_without_their_files_are_exported_at_start(tmp_path: Path) -> None:
    from backoffice.records import ClientTrade, HouseTrade

    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=msgspec.structs.replace(cfg.backoffice, http_port=0),
    )
    # 2026-12-04 12:00 UTC: the days ending 2026-12-02 and -03 are over
    office = BackOffice(cfg, clock=lambda: 1_796_385_600.0)
    await office.ledger.open()
    ingests = []
    try:
        for day, when in (
            ("2026-12-02", "2026-12-02 10:00:00.000"),
            ("2026-12-03", "2026-12-03 10:00:00.000"),
        ):
            client = ClientTrade(
                f"E-{day}", "CLIENT1", "O1", "C1", "EUR/USD", 1, "1000", "1.1", "LP_A", when, day, 1
            )
            house = HouseTrade(
                f"O1.C/X-{day}",
                "LP_A",
                f"X-{day}",
                "O1.C",
                "CLIENT1",
                f"E-{day}",
                "EUR/USD",
                1,
                "1000",
                "1.1",
                when,
                day,
                1,
            )
            ingests.append(await office.ledger.write("S", 1, [client], [house]))
        folder = tmp_path / "backoffice" / "exports"
        folder.mkdir(parents=True)
        # 2026-12-02's files were written, holding its one batch
        (folder / "settlement-20261202.csv").write_text("kept\n")
        (folder / "manifest-20261202.json").write_text(f'{{"ledger_ingest": {ingests[0]}}}')
        # 2026-12-03's, all but the manifest (the export stopped before it)
        (folder / "settlement-20261203.csv").write_text("half\n")
        assert await office.export_missing() == [dt.date(2026, 12, 3)]
        exported = sorted(p.name for p in folder.iterdir())
        assert "client-trades-20261203.parquet" in exported
        assert "client-trades-20261202.csv" not in exported  # that day had its files
        manifest = orjson.loads((folder / "manifest-20261203.json").read_bytes())
        assert manifest["ledger_ingest"] == office.ledger.last_ingest
        assert manifest["trade_date"] == "2026-12-03"
        assert sorted(manifest["files"]) == sorted(
            p.name for p in folder.glob("*20261203*") if not p.name.startswith("manifest")
        )
        assert await office.export_missing() == []
        # a manifest that cannot be read: the files are written again
        (folder / "manifest-20261202.json").write_text("{")
        assert await office.export_missing() == [dt.date(2026, 12, 2)]
    finally:
        await office.ledger.close()


async def _until_exported(folder: Path, name: str, exec_ids: set[str]) -> None:
    """The CSV export ``name`` holds exactly ``exec_ids``."""
    path = folder / f"{name}.csv"
    async with asyncio.timeout(10):
        while True:
            if path.exists():
                lines = path.read_text().splitlines()[1:]
                if {line.split(",")[0] for line in lines} == exec_ids and len(lines) == len(
                    exec_ids
                ):
                    return
            await asyncio.sleep(0.01)  # polling, within the timeout above


@pytest.mark.asyncio
async def test_trades_of_an_ended_day_taken_in_after_its_export_are_exported_with_it(
    tmp_path: Path,
) -> None:
    # 2026-12-05 12:00 UTC: the trading days up to 2026-12-04 have ended
    now = [1_796_472_000.0]
    office, feed = _office(tmp_path, now)
    folder = tmp_path / "backoffice" / "exports"
    await office.ledger.open()
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    day_ends: asyncio.Task[None] | None = None
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1))
        await until_stored(office, 1)
        day_ends = asyncio.create_task(office._day_ends())
        await _until_exported(folder, "client-trades-20261204", {"E1"})
        # the rest of the day, resent by the drop copy after an outage, and
        # a day the ledger had nothing of when the back office started
        feed.messages.put_nowait(_fill_copy("E2", 2))
        feed.messages.put_nowait(_fill_copy("E3", 3, b"20261203-10:00:00.000"))
        await _until_exported(folder, "client-trades-20261204", {"E1", "E2"})
        await _until_exported(folder, "client-trades-20261203", {"E3"})
        # and once more, stored once, is exported once
        feed.messages.put_nowait(_fill_copy("E2", 4))
        feed.messages.put_nowait(_fill_copy("E4", 5, b"20261204-20:59:59.999"))
        await _until_exported(folder, "client-trades-20261204", {"E1", "E2", "E4"})
    finally:
        for task in (intake, day_ends):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_a_late_trade_stored_before_a_stop_is_exported_after_the_start(
    tmp_path: Path,
) -> None:
    """The mark that a day's files miss a trade stored after them is not
    lost with the process: the day's manifest names the last batch its
    files hold, and at start a day with a later trade is written again.
    So is a day exported by hand before it ended."""
    now = [1_796_472_000.0]  # 2026-12-05 12:00 UTC: 2026-12-04 has ended
    folder = tmp_path / "backoffice" / "exports"
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1))
        feed.messages.put_nowait(_fill_copy("E9", 2, b"20261205-10:00:00.000"))  # today
        await until_stored(office, 2)
        await office.export(dt.date(2026, 12, 4))
        await office.export(dt.date(2026, 12, 5))  # by hand, before its end
        feed.messages.put_nowait(_fill_copy("E2", 3))  # late, for 2026-12-04
        await until_stored(office, 3)
        assert office._late_days == {"2026-12-04"}
        # more of today after its files were written
        feed.messages.put_nowait(_fill_copy("E10", 4, b"20261205-11:00:00.000"))
        await until_stored(office, 4)
    finally:
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await office.ledger.close()  # stopped before the day ends' task wrote it again
    assert _csv_ids(folder / "client-trades-20261204.csv") == ["E1"]

    now[0] += 86_400  # started again the day after: 2026-12-05 has ended too
    again, _ = _office(tmp_path, now)
    await again.ledger.open()
    try:
        assert await again.export_missing() == [dt.date(2026, 12, 4), dt.date(2026, 12, 5)]
        assert _csv_ids(folder / "client-trades-20261204.csv") == ["E1", "E2"]
        assert _csv_ids(folder / "client-trades-20261205.csv") == ["E9", "E10"]
        assert await again.export_missing() == []
    finally:
        await again.ledger.close()


@pytest.mark.asyncio
async def test_a_copy_the_ledger_cannot_write_is_named_and_the_intake_goes_on(
    tmp_path: Path,
) -> None:
    """A trade time past the calendar (its value date, or, after the cut,
    its trading day) is refused by name; what follows is stored."""
    now = [1_796_472_000.0]
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1, b"99991231-10:00:00.000"))
        feed.messages.put_nowait(_fill_copy("E2", 2, b"99991231-22:00:00.000"))
        feed.messages.put_nowait(_fill_copy("E3", 3))
        await until_stored(office, 3)
        assert not intake.done()
        ledger = office.ledger
        assert isinstance(ledger, DuckLedger)
        assert ledger.con.execute("SELECT exec_id FROM client_trades").fetchall() == [("E3",)]
        assert office.metrics.bad.labels("drop_copy")._value.get() == 2
    finally:
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_a_day_being_exported_holds_up_neither_the_intake_nor_the_treasury(
    tmp_path: Path,
) -> None:
    now = [1_796_472_000.0]  # 2026-12-05 12:00 UTC: 2026-12-04 has ended
    office, feed = _office(tmp_path, now)
    folder = tmp_path / "backoffice" / "exports"
    await office.ledger.open()
    pin = office.ledger.pin_day
    writing, go_on = asyncio.Event(), asyncio.Event()
    closed: list[dt.date] = []

    async def held_pin(day: dt.date, hold: Hold | None = None) -> PinnedDay:
        pinned = await pin(day, hold)
        write, close = pinned.write, pinned.close

        async def held_write(folder: str) -> list[str]:
            writing.set()
            await go_on.wait()  # the files take their time
            return await write(folder)

        async def counted_close() -> None:
            closed.append(day)
            await close()

        pinned.write = held_write  # type: ignore[method-assign]
        pinned.close = counted_close  # type: ignore[method-assign]
        return pinned

    office.ledger.pin_day = held_pin  # type: ignore[method-assign]
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1))
        await until_stored(office, 1)
        export = asyncio.create_task(office.export(dt.date(2026, 12, 4)))
        async with asyncio.timeout(10):
            await writing.wait()
        # the day's files are being written: a trade of that day, resent,
        # is stored, and the treasury answers, meanwhile
        feed.messages.put_nowait(_fill_copy("E2", 2))
        await until_stored(office, 2)
        treasury = await office.treasury()
        assert {s["counterparty"] for s in treasury["settlement"]} >= {"CLIENT1"}
        assert "2026-12-04" in office._late_days  # to be exported again
        go_on.set()
        await export
        assert _csv_ids(folder / "client-trades-20261204.csv") == ["E1"]  # as pinned
        assert closed == [dt.date(2026, 12, 4)]
        await office._export_late(before=dt.date(2026, 12, 5))
        assert _csv_ids(folder / "client-trades-20261204.csv") == ["E1", "E2"]
        assert office._late_days == set()
    finally:
        go_on.set()
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_an_export_that_fails_after_its_pin_marks_its_late_day_again(
    tmp_path: Path,
) -> None:
    now = [1_796_472_000.0]
    office, _ = _office(tmp_path, now)
    await office.ledger.open()
    try:
        trade = ClientTrade(
            "E1",
            "CLIENT1",
            "O1",
            "K1",
            "EUR/USD",
            1,
            "1000",
            "1.1",
            "LP_A",
            "2026-12-04 10:00:00.000",
            "2026-12-04",
            1,
        )
        await office.ledger.write(office.feeds[0].session_key, 1, [trade], [])
        office._late_days.add("2026-12-04")
        (tmp_path / "backoffice").mkdir(parents=True, exist_ok=True)
        (tmp_path / "backoffice" / "exports").write_text("a file where the folder goes")
        with pytest.raises(LedgerError, match="cannot export 2026-12-04 to "):
            await office.export(dt.date(2026, 12, 4))
        assert office._late_days == {"2026-12-04"}
        assert office.ledger._pinned == set()  # type: ignore[attr-defined]  # let go
        # asked over HTTP (`fixgw backoffice export`): the cause, named
        from aiohttp.test_utils import TestClient, TestServer

        token = office.config.gateway.admin_token
        async with TestClient(TestServer(office._app())) as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post("/backoffice/export?date=2026-12-04", headers=headers) as answer:
                assert answer.status == 503
                assert "File exists" in (await answer.json())["error"]
        assert office._late_days == {"2026-12-04"}
    finally:
        await office.ledger.close()


@pytest.mark.asyncio
async def test_an_export_that_cannot_be_written_is_tried_again_until_it_is(
    tmp_path: Path,
) -> None:
    now = [1_796_472_000.0]  # 2026-12-05 12:00 UTC: 2026-12-04 has ended
    office, feed = _office(tmp_path, now)
    office.export_retry = 0.05
    folder = tmp_path / "backoffice" / "exports"
    folder.parent.mkdir(parents=True)
    folder.write_text("a file where the folder goes")  # the disk's fault, say
    await office.ledger.open()
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    day_ends: asyncio.Task[None] | None = None
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1))
        await until_stored(office, 1)
        day_ends = asyncio.create_task(office._day_ends())
        async with asyncio.timeout(10):
            while "2026-12-04" not in office._late_days:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
        assert not day_ends.done()
        folder.unlink()  # mended: the next try writes the day, nothing else is asked
        await _until_exported(folder, "client-trades-20261204", {"E1"})
        async with asyncio.timeout(10):
            while office._late_days:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
    finally:
        for task in (intake, day_ends):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_a_missing_day_that_cannot_be_written_does_not_hold_up_the_next(
    tmp_path: Path,
) -> None:
    now = [1_796_472_000.0]  # 2026-12-05 12:00 UTC
    office, _ = _office(tmp_path, now)
    office.export_retry = 3600.0  # not tried again within the test
    folder = tmp_path / "backoffice" / "exports"
    # where the first day's first file is written first: a folder, not a file
    (folder / ".client-trades-20261203.parquet.tmp").mkdir(parents=True)
    await office.ledger.open()
    try:
        for exec_id, day in (("E3", "2026-12-03"), ("E4", "2026-12-04")):
            trade = ClientTrade(
                exec_id,
                "CLIENT1",
                "O1",
                "K1",
                "EUR/USD",
                1,
                "1000",
                "1.1",
                "LP_A",
                f"{day} 10:00:00.000",
                day,
                1,
            )
            await office.ledger.write(office.feeds[0].session_key, 1, [trade], [])
        assert await office.export_missing() == [dt.date(2026, 12, 4)]
        assert _csv_ids(folder / "client-trades-20261204.csv") == ["E4"]
        assert office._late_days == {"2026-12-03"}  # to be tried again
        status = await office.status()
        assert list(status["export_failures"]) == ["2026-12-03"]
        assert "cannot export 2026-12-03" in status["export_failures"]["2026-12-03"]
        assert office.metrics.registry.get_sample_value("fixgw_backoffice_exports_failing") == 1
        # put right, the day is written at its next try and the count goes down
        (folder / ".client-trades-20261203.parquet.tmp").rmdir()
        assert await office.export(dt.date(2026, 12, 3))
        assert office.metrics.registry.get_sample_value("fixgw_backoffice_exports_failing") == 0
    finally:
        await office.ledger.close()


def test_an_export_that_keeps_failing_is_tried_again_less_and_less_often(
    tmp_path: Path,
) -> None:
    office, _ = _office(tmp_path, [1_796_472_000.0])
    office.export_retry = 30.0
    waits = [office._export_wait(n) for n in range(1, 8)]
    assert waits == [30.0, 60.0, 120.0, 240.0, 480.0, 600.0, 600.0]  # 10 minutes at most
    assert office._export_wait(10_000) == 600.0


def _csv_ids(path: Path) -> list[str]:
    return [row.split(",")[0] for row in path.read_text().splitlines()[1:]]


@pytest.mark.asyncio
async def test_a_symbol_listed_since_its_trades_came_settles_them_on_its_terms(
    tmp_path: Path,
) -> None:
    now = [1_796_472_000.0]  # Saturday 2026-12-05 12:00 UTC
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    try:
        # Friday's GBP/JPY trade, taken in while GBP/JPY was not listed: on
        # its trade date; its day exported so
        when = "2026-12-04 10:00:00.000"
        trade = ClientTrade(
            "E1", "CLIENT1", "O1", "K1", "GBP/JPY", 1, "1000", "190.5", "LP_A", when, when[:10], 1
        )
        await office.ledger.write(office.feeds[0].session_key, 1, [trade], [])
        assert await office.export_missing() == [dt.date(2026, 12, 4)]
    finally:
        await office.ledger.close()
    cfg = office.config
    usd_jpy = next(i for i in cfg.instruments if i.symbol == "USD/JPY")
    gbp_jpy = msgspec.structs.replace(usd_jpy, symbol="GBP/JPY", usd_conversion="USD/JPY")
    listed = BackOffice(
        msgspec.structs.replace(
            cfg,
            instruments=[*cfg.instruments, gbp_jpy],
            backoffice=in_process(cfg.backoffice),
        ),
        clock=lambda: now[0],
        monotonic=lambda: now[0],
    )
    listed.feeds[0].client = feed  # type: ignore[assignment]
    await listed.start()
    day_ends = asyncio.create_task(listed._day_ends())
    try:
        # T+2 from Friday: Tuesday, in the treasury and in Friday's files
        treasury = await listed.treasury()
        assert {(s["currency"], s["value_date"]) for s in treasury["settlement"]} == {
            ("GBP", "2026-12-08"),
            ("JPY", "2026-12-08"),
        }
        path = tmp_path / "backoffice" / "exports" / "client-trades-20261204.csv"
        async with asyncio.timeout(10):
            while "2026-12-08" not in path.read_text():  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
    finally:
        day_ends.cancel()
        await asyncio.gather(day_ends, return_exceptions=True)
        if listed._http is not None:
            await listed._http.cleanup()
        await listed.ledger.close()


class _Feed:
    """What the writer and the runs read of the drop copy's client: its
    queue of messages, its holding of the reading, its state."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[object] = asyncio.Queue()
        self.logged_on = True
        self.session = types.SimpleNamespace(awaiting_resend=False)

    def hold_reading(self, hold: bool) -> None:
        pass


def _fill_copy(exec_id: str, seq: int, when: bytes = b"20261204-10:00:00.000") -> FixMessage:
    """A drop copy of a client's fill, as the gateway sends it."""
    body = (
        b"37=O-%b\x0111=K-%b\x0117=%b\x01150=F\x0139=2\x0155=EUR/USD\x0154=1\x0138=1000\x01"
        b"32=1000\x0131=1.1\x01151=0\x0114=1000\x016=1.1\x0160=%b\x01"
        b"1=CLIENT1\x0130=LP_A\x01797=Y\x01"
        % (exec_id.encode(), exec_id.encode(), exec_id.encode(), when)
    )
    header = [(34, b"%d" % seq), (49, b"GATEWAY"), (56, b"BACKOFFICE")]
    return codec.parse_frame(codec.encode_message(b"FIX.4.4", b"8", header, body))


def in_process(settings: BackofficeSettings) -> BackofficeSettings:
    """A back office started inside the test process: its own HTTP port, and
    the test process's priority left as it is (the back office's start
    lowers its own process's, which here is the test run's)."""
    return msgspec.structs.replace(settings, http_port=0, idle_priority=False, nice=0)


def _office(tmp_path: Path, now: list[float]) -> tuple[BackOffice, _Feed]:
    """A back office on the default config, its clocks ``now[0]``, its
    drop copy's client ``_Feed``."""
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg, gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path))
    )
    office = BackOffice(cfg, clock=lambda: now[0], monotonic=lambda: now[0])
    feed = _Feed()
    office.feeds[0].client = feed  # type: ignore[assignment]
    return office, feed


@pytest.mark.asyncio
async def test_the_lag_is_the_age_of_the_oldest_trade_not_yet_reconciled(tmp_path: Path) -> None:
    now = [1_796_385_600.0]
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    writer = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    try:
        assert office.lag_seconds() == 0.0
        feed.messages.put_nowait(_fill_copy("E1", 1))
        await until_stored(office, 1)
        now[0] += 2.5
        assert office.lag_seconds() == 2.5  # taken in, not reconciled
        await office.recon(full=False)
        assert office.lag_seconds() == 0.0
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_the_next_batch_is_made_while_one_is_written_and_written_after_it(
    tmp_path: Path,
) -> None:
    now = [1_796_385_600.0]
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    real_write = office.ledger.write
    held = asyncio.Event()
    writes: list[tuple[int, list[str]]] = []

    async def write(
        session: str, last: int, clients: Sequence[ClientTrade], houses: Sequence[HouseTrade]
    ) -> int:
        if not writes:
            await held.wait()  # the first write takes its time
        writes.append((last, [c.exec_id for c in clients]))
        return await real_write(session, last, clients, houses)

    office.ledger.write = write  # type: ignore[method-assign]
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1))
        async with asyncio.timeout(10):
            while feed.messages.qsize():  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
        started = now[0]
        now[0] += 1.0
        feed.messages.put_nowait(_fill_copy("E2", 2))
        feed.messages.put_nowait(_fill_copy("E3", 3))
        async with asyncio.timeout(10):
            while feed.messages.qsize():  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
        # both taken while the first is still being written; nothing is stored
        # yet, and the lag counts from the oldest taken
        assert office.feeds[0].last_seq == 0
        assert office._caught_up() is False
        now[0] += 1.0
        assert office.lag_seconds() == now[0] - started
        held.set()
        await until_stored(office, 3)
        assert writes == [(1, ["E1"]), (3, ["E2", "E3"])]
        assert office._caught_up() is True
        await office.recon(full=False)
        assert office.lag_seconds() == 0.0
        assert (await office.ledger.counts())["client_trades"] == 3
    finally:
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_the_treasury_brings_its_amounts_up_to_the_last_batch_and_reads_them_whole_if_it_must(
    tmp_path: Path,
) -> None:
    now = [1_796_385_600.0]  # Friday 2026-12-04 12:00 UTC
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=in_process(cfg.backoffice),
    )
    office = BackOffice(cfg, clock=lambda: now[0], monotonic=lambda: now[0])
    feed = _Feed()
    office.feeds[0].client = feed  # type: ignore[assignment]
    ledger = office.ledger
    whole_reads: list[dt.date] = []
    real_sums, real_batch = ledger.settlement_sums, ledger.batch_settlement_sums
    failing = [False]

    async def settlement_sums(from_date: dt.date) -> Any:
        whole_reads.append(from_date)
        return await real_sums(from_date)

    async def batch_settlement_sums(after: int, upto: int) -> Any:
        if failing[0]:
            failing[0] = False
            raise LedgerError("the ledger went away")
        return await real_batch(after, upto)

    real_positions = ledger.positions

    async def positions() -> Any:
        whole_reads.append(None)
        return await real_positions()

    ledger.settlement_sums = settlement_sums  # type: ignore[method-assign]
    ledger.batch_settlement_sums = batch_settlement_sums  # type: ignore[method-assign]
    real_write = ledger.write
    lost = [False]

    async def write(
        session: str, last: int, clients: Sequence[ClientTrade], houses: Sequence[HouseTrade]
    ) -> int:
        ingest = await real_write(session, last, clients, houses)
        if lost[0]:
            lost[0] = False
            raise LedgerError("the connection dropped before the answer")
        return ingest

    ledger.positions = positions  # type: ignore[method-assign]
    ledger.write = write  # type: ignore[method-assign]
    await office.start()
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    try:
        assert whole_reads == [dt.date(2026, 12, 4), None]  # once each, at start
        for seq in (1, 2, 3):
            feed.messages.put_nowait(_fill_copy(f"E{seq}", seq))
            await until_stored(office, seq)
        treasury = await office.treasury()
        stored = await ledger.settlement(dt.date(2026, 12, 4))
        assert treasury["settlement"] == [msgspec.to_builtins(line) for line in stored]
        held = await real_positions()
        assert treasury["positions"] == {
            k: [msgspec.to_builtins(p) for p in v] for k, v in held.items()
        }
        assert treasury["positions"]["clients"] == [
            {"holder": "CLIENT1", "symbol": "EUR/USD", "qty": "3000.00000000"}
        ]
        assert {(s["currency"], s["amount"]) for s in treasury["settlement"]} == {
            ("EUR", "-3000.00"),
            ("USD", "3300.00"),
        }
        assert whole_reads == [dt.date(2026, 12, 4), None]  # the batches' sums kept them up
        # the batches since cannot be read: the look fails, the batch stays
        # stored, and the next look adds it
        failing[0] = True
        feed.messages.put_nowait(_fill_copy("E4", 4))
        await until_stored(office, 4)
        with pytest.raises(LedgerError):
            await office.treasury()
        treasury = await office.treasury()
        assert whole_reads == [dt.date(2026, 12, 4), None]
        assert treasury["positions"]["clients"][0]["qty"] == "4000.00000000"
        assert {(s["currency"], s["amount"]) for s in treasury["settlement"]} == {
            ("EUR", "-4000.00"),
            ("USD", "4400.00"),
        }
        # a write stored, its answer lost: reported failed and written again,
        # which stores nothing new; the books count it, with the batches after
        # the last they hold
        lost[0] = True
        feed.messages.put_nowait(_fill_copy("E5", 5))
        await until_stored(office, 5)
        treasury = await office.treasury()
        assert whole_reads == [dt.date(2026, 12, 4), None]
        assert treasury["positions"]["clients"][0]["qty"] == "5000.00000000"
        assert {(s["currency"], s["amount"]) for s in treasury["settlement"]} == {
            ("EUR", "-5000.00"),
            ("USD", "5500.00"),
        }
        assert (await ledger.counts())["client_trades"] == 5
        # an LP's statement: a new file, read whole (it removes nothing: its
        # batch's sums keep the positions up); then grown, read from where it
        # stopped; then corrected, read whole again, without a line it had:
        # the positions are read whole
        path = office.statements.folder / "LP_A-20261204.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "TradeDate,ExecTime,ExecID,ClOrdID,OrderID,Symbol,Side,Quantity,Price\n"
        first = "2026-12-04,2026-12-04T10:00:00.000Z,X1,CH1,O1,EUR/USD,BUY,1000,1.1\n"
        second = "2026-12-04,2026-12-04T10:00:01.000Z,X2,CH2,O2,EUR/USD,BUY,2000,1.1\n"
        for text, whole in (
            (header + first, False),
            (header + first + second, False),
            (header + first.replace("1000,", "1500,"), True),
        ):
            path.write_text(text)
            reads = len(whole_reads)
            await office._statements()
            treasury = await office.treasury()
            held = await real_positions()
            assert treasury["positions"] == {
                k: [msgspec.to_builtins(p) for p in v] for k, v in held.items()
            }
            assert whole_reads[reads:] == ([None] if whole else [])
        assert treasury["positions"]["lp_statements"] == [
            {"holder": "LP_A", "symbol": "EUR/USD", "qty": "1500.00000000"}
        ]
    finally:
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        if office._http is not None:
            await office._http.cleanup()
        await ledger.close()


async def until_stored(office: BackOffice, seq: int) -> None:
    """The writer has stored the drop copy up to ``seq`` (it signals nothing
    else to wait on)."""
    async with asyncio.timeout(10):
        while office.feeds[0].last_seq < seq:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling, within the timeout above


@pytest.mark.asyncio
async def test_runs_wait_for_a_drop_copy_backlog_five_seconds_at_most(tmp_path: Path) -> None:
    now = [1_796_385_600.0]
    office, feed = _office(tmp_path, now)
    runs: list[bool] = []

    async def recon(full: bool) -> None:
        runs.append(full)

    office.recon = recon  # type: ignore[assignment, method-assign]
    for _ in range(_BATCH + 1):  # more than a batch waiting
        feed.messages.put_nowait(None)
    await office._recon()
    now[0] += 4.9
    await office._recon()
    assert runs == []
    now[0] += 0.2
    await office._recon()  # 5.1 s: runs anyway
    assert runs == [False]
    feed.messages = asyncio.Queue()  # caught up: every round runs
    await office._recon()
    assert runs == [False, False]


@pytest.mark.asyncio
async def test_an_intake_that_fails_stops_the_process_naming_its_error(tmp_path: Path) -> None:
    """The intake is the only reader of the drop copy: if it fails (here it
    is handed what is no FIX message at all, as a bug of its own would),
    the back office stops and names the error, rather than log on again and
    again with nothing taking the trades in.  (A ledger that fails is
    retried, not this.)"""
    now = [1_796_385_600.0]
    office, _ = _office(tmp_path, now)
    office.feeds[0].port = _closed_port()
    await office.ledger.open()
    feed = asyncio.create_task(office._follow(office.feeds[0]))
    try:
        async with asyncio.timeout(10):
            while not hasattr(office.feeds[0].client, "connect"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
        client = office.feeds[0].client
        assert client is not None
        client.messages.put_nowait(_fill_copy("E1", 1))
        client.messages.put_nowait(object())  # type: ignore[arg-type]
        async with asyncio.timeout(10):
            await office._stop.wait()
        assert office.failed.startswith("intake: "), office.failed
        assert "Error(" in office.failed
        assert "ExceptionGroup" not in office.failed
        assert office.lag_seconds() == 0.0  # nothing counted as waiting any more
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_a_ledger_file_deleted_while_it_runs_stops_it_naming_the_file(
    tmp_path: Path,
) -> None:
    """DuckDB writes on into the file deleted, and all it writes is lost at
    the next start: the back office says so once, naming the file, and
    stops with the cause (its supervisor starts it again, on a new ledger
    the drop copy fills)."""
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=in_process(cfg.backoffice),
    )
    office = BackOffice(cfg)
    office.feeds[0].port = _closed_port()
    path = tmp_path / "backoffice" / "ledger.duckdb"
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(office.run())
        try:
            async with asyncio.timeout(10):
                while not any(e["event"] == "backoffice_started" for e in logs):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # polling, within the timeout above
            path.unlink()
            async with asyncio.timeout(10):
                await running
        finally:
            office.stop()
            await asyncio.gather(running, return_exceptions=True)
    (lost,) = [e for e in logs if e["event"] == "ledger_file_lost"]
    assert lost["file"] == str(path)
    assert "deleted" in lost["error"]
    assert office.failed.startswith(f"ledger: the ledger file {path} was deleted"), office.failed
    errors = [e["event"] for e in logs if e["log_level"] == "error"]
    assert errors == ["ledger_file_lost"]


@pytest.mark.asyncio
async def test_a_ledger_file_replaced_under_the_writer_stops_it_and_is_not_written_again(
    tmp_path: Path,
) -> None:
    """A batch of the drop copy finds the file replaced: not tried again
    every second as a ledger that fails is, but the process stopped."""
    now = [1_796_385_600.0]
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    writer = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    path = tmp_path / "backoffice" / "ledger.duckdb"
    try:
        feed.messages.put_nowait(_fill_copy("E1", 1))
        await until_stored(office, 1)
        other = tmp_path / "backoffice" / "restored.duckdb"
        other.write_bytes(path.read_bytes())
        other.replace(path)
        with structlog.testing.capture_logs() as logs:
            feed.messages.put_nowait(_fill_copy("E2", 2))
            async with asyncio.timeout(10):
                await office._stop.wait()
        (lost,) = [e for e in logs if e["event"] == "ledger_file_lost"]
        assert lost["file"] == str(path)
        assert "replaced" in lost["error"]
        assert [e for e in logs if e["event"] == "ledger_write_failed"] == []
        assert office.feeds[0].last_seq == 1
        async with asyncio.timeout(10):
            await asyncio.gather(writer, return_exceptions=True)  # ended by the loss
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await office.ledger.close()


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_its_api_takes_the_admin_token_to_change_and_the_read_token_to_read(
    tmp_path: Path,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(
            cfg.gateway, data_dir=str(tmp_path), admin_token="adm", read_token="rd"
        ),
    )
    office = BackOffice(cfg)
    await office.ledger.open()
    try:
        async with TestClient(TestServer(office._app())) as http:

            async def answer(method: str, path: str, token: str) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {token}"}
                async with http.request(method, path, headers=headers) as r:
                    return r.status, await r.json()

            assert (await answer("GET", "/backoffice/breaks", "rd"))[0] == 200
            assert (await answer("GET", "/backoffice/breaks", "adm"))[0] == 200
            assert (await answer("GET", "/backoffice/breaks", "nope"))[0] == 401
            for path in ("/backoffice/recon", "/backoffice/export?date=x"):
                assert await answer("POST", path, "rd") == (
                    403,
                    {"error": "the read token may not POST: this takes gateway.admin_token"},
                )
            status, body = await answer("GET", "/backoffice/breaks?type=nope", "rd")
            assert status == 400
            assert body["error"].startswith("no break type 'nope' (known: missing_at_lp, ")
            # the admin token gets past the door: to the export's own answer
            assert await answer("POST", "/backoffice/export?date=x", "adm") == (
                400,
                {"error": "date=YYYY-MM-DD is required"},
            )
    finally:
        await office.ledger.close()


@pytest.mark.asyncio
async def test_its_http_connections_are_bounded_per_address(tmp_path: Path) -> None:
    """Connections to the back office's HTTP port that never finish a
    request are bounded per address as the gateway's are: they cannot take
    the descriptors its ledger and statements need."""
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=msgspec.structs.replace(
            in_process(cfg.backoffice), http_host="127.0.0.1", http_port=_closed_port()
        ),
    )
    office = BackOffice(cfg)
    await office.ledger.open()
    flood = MAX_HTTP_PER_ADDRESS + 40
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    waits: list[asyncio.Task[None]] = []
    closed = 0

    async def closed_by_office(reader: asyncio.StreamReader) -> None:
        nonlocal closed
        with contextlib.suppress(ConnectionResetError):
            await reader.read(1)
        closed += 1

    try:
        await office._start_http()
        for _ in range(flood):
            reader, writer = await asyncio.open_connection("127.0.0.1", office.http_port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: backoffice\r\n")  # never finished
            idle.append((reader, writer))
        # every one but the newest few is closed by the back office (no
        # timing: each waits for its end, all under one deadline)
        waits = [asyncio.create_task(closed_by_office(reader)) for reader, _ in idle]
        async with asyncio.timeout(30):
            while closed < flood - MAX_HTTP_PER_ADDRESS:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                waits = [w for w in waits if not w.done()]
        assert len(waits) <= MAX_HTTP_PER_ADDRESS
        # and it still answers that address
        url = f"http://127.0.0.1:{office.http_port}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
    finally:
        for wait in waits:
            wait.cancel()
        for _, writer in idle:
            writer.close()
        await office._stop_http()
        await office.ledger.close()


def test_a_symbol_not_listed_is_named_once(tmp_path: Path) -> None:
    import structlog

    office, _ = _office(tmp_path, [0.0])
    trade = ClientTrade(
        "E1", "CLIENT1", "O1", "C1", "GBP/JPY", 1, "1000", "190", "LP_A", "t", "2026-12-03", 1
    )
    listed = msgspec.structs.replace(trade, exec_id="E2", symbol="EUR/USD")
    with structlog.testing.capture_logs() as logs:
        office._name_unlisted([trade, listed, trade])
        office._name_unlisted([trade])
    named = [e for e in logs if e["event"] == "trade_in_unlisted_instrument"]
    assert [(e["symbol"], e["currencies"]) for e in named] == [("GBP/JPY", ["GBP", "JPY"])]


@pytest.mark.asyncio
async def test_an_export_names_its_files_and_manifest_yyyymmdd(tmp_path: Path) -> None:
    """Eight digits whatever the year: ``strftime("%Y")`` wrote 0999-01-01
    as ``9990101``."""
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=msgspec.structs.replace(cfg.backoffice, http_port=0),
    )
    office = BackOffice(cfg)
    await office.ledger.open()
    try:
        files = await office.export(dt.date(999, 1, 1))
    finally:
        await office.ledger.close()
    names = sorted(Path(f).name for f in files)
    assert names == sorted(
        f"{report}-09990101.{suffix}"
        for report in ("client-trades", "lp-trades", "settlement", "manifest")
        for suffix in (("json",) if report == "manifest" else ("csv", "parquet"))
    )


def test_the_tokens_are_read_again_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FIXGW_READ_TOKEN", raising=False)
    path = tmp_path / "gw.toml"
    text = default_config_path().read_text()
    path.write_text(text)
    office = BackOffice(load_config(path), config_path=str(path))
    assert (office.tokens.admin, office.tokens.read) == ("dev-admin-token", "")
    assert office.reload_tokens("test") is False  # unchanged

    rotated = text.replace(
        'admin_token = "dev-admin-token"', 'admin_token = "new"\nread_token = "rd"'
    )
    path.write_text(rotated)
    with structlog.testing.capture_logs() as logs:
        assert office.reload_tokens("test") is True
    assert (office.tokens.admin, office.tokens.read) == ("new", "rd")
    assert [(e["event"], e["changed"]) for e in logs] == [("tokens_reloaded", ["admin", "read"])]

    # a file that cannot be used changes nothing
    for bad in (rotated.replace('"new"', '"clé"'), "not toml ["):
        path.write_text(bad)
        with structlog.testing.capture_logs() as logs:
            assert office.reload_tokens("test") is False
        assert (office.tokens.admin, office.tokens.read) == ("new", "rd")
        assert [e["event"] for e in logs] == ["tokens_reload_refused"]

    # the environment still overrides the file
    path.write_text(rotated)
    monkeypatch.setenv("FIXGW_ADMIN_TOKEN", "from-env")
    assert office.reload_tokens("test") is True
    assert (office.tokens.admin, office.tokens.read) == ("from-env", "rd")
    assert BackOffice(default()).reload_tokens("test") is False  # no file to read

    # asked again by a refusal, a file and environment unchanged are not read again
    import backoffice.service

    def unread(path: str) -> None:
        raise AssertionError(f"{path} read again, unchanged")

    with monkeypatch.context() as patch:
        patch.setattr(backoffice.service, "load_config", unread)
        assert office.reload_tokens("refused", if_changed=True) is False
    monkeypatch.setenv("FIXGW_ADMIN_TOKEN", "again")
    assert office.reload_tokens("refused", if_changed=True) is True
    assert office.tokens.admin == "again"


def test_an_export_without_a_good_date_is_one_line_before_asking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from netkit import free_port

    from gateway.cli import main

    nobody = f"http://127.0.0.1:{free_port()}"
    assert main(["backoffice", "export", "--url", nobody]) == 1
    assert capsys.readouterr().err == (
        "fixgw backoffice export: which trading day? give --date YYYY-MM-DD\n"
    )
    with pytest.raises(SystemExit) as refused:
        main(["backoffice", "export", "--url", nobody, "--date", "2026-13-01"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.endswith(
        "fixgw backoffice: error: argument --date: a date, YYYY-MM-DD: '2026-13-01'\n"
    )


@pytest.mark.asyncio
async def test_a_gateway_that_knows_only_the_admin_token_is_read_with_it(tmp_path: Path) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[str] = []

    async def exposures(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer adm":
            return web.json_response({"error": "wrong bearer token"}, status=401)
        return web.json_response({"lps": {}})

    app = web.Application()
    app.router.add_get("/admin/exposures", exposures)
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(
            cfg.gateway, data_dir=str(tmp_path), admin_token="adm", read_token="rd"
        ),
    )
    office = BackOffice(cfg)
    async with TestServer(app) as server:
        feed = office.feeds[0]
        feed.http_host, feed.http_port = "127.0.0.1", server.port or 0
        assert await office._exposures_of(feed) == {"lps": {}}
    assert seen == ["Bearer rd", "Bearer adm"]  # the read token first


@pytest.mark.asyncio
async def test_a_gateway_on_an_ipv6_address_has_its_positions_read(tmp_path: Path) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def exposures(request: web.Request) -> web.Response:
        return web.json_response({"lps": {}})

    app = web.Application()
    app.router.add_get("/admin/exposures", exposures)
    cfg = default()
    office = BackOffice(
        msgspec.structs.replace(
            cfg, gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path))
        )
    )
    async with TestServer(app, host="::1") as server:
        feed = office.feeds[0]
        feed.http_host, feed.http_port = "::1", server.port or 0
        assert await office._exposures_of(feed) == {"lps": {}}


def test_addresses_asked_over_http_from_here() -> None:
    assert http_base("0.0.0.0", 8082) == "http://127.0.0.1:8082"
    assert http_base("", 8082) == "http://127.0.0.1:8082"
    assert http_base("::", 8082) == "http://[::1]:8082"
    assert http_base("fd00::5", 8082) == "http://[fd00::5]:8082"
    assert http_base("gw.example", 8082) == "http://gw.example:8082"


@pytest.mark.asyncio
async def test_a_gateway_refusing_the_tokens_has_them_read_again_and_is_shown_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotated in the file and reloaded by the gateway, the tokens are read
    again at its 401 and it is asked again at once; refused still, its
    positions are shown unavailable (metric, status) until they are had."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from prometheus_client import generate_latest

    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FIXGW_READ_TOKEN", raising=False)
    accepted = {"Bearer old"}
    seen: list[str] = []

    async def exposures(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if seen[-1] not in accepted:
            return web.json_response({"error": "wrong bearer token"}, status=401)
        return web.json_response({"lps": {}})

    app = web.Application()
    app.router.add_get("/admin/exposures", exposures)
    path = tmp_path / "gw.toml"
    text = default_config_path().read_text()
    text = text.replace('data_dir = "', f'data_dir = "{tmp_path}/', 1)

    def write(admin: str) -> None:
        path.write_text(text.replace('admin_token = "dev-admin-token"', f'admin_token = "{admin}"'))

    def unavailable() -> bytes:
        return generate_latest(office.metrics.registry)

    write("old")
    office = BackOffice(load_config(path), config_path=str(path))
    async with TestServer(app) as server:
        feed = office.feeds[0]
        feed.http_host, feed.http_port = "127.0.0.1", server.port or 0
        assert await office._exposures_of(feed) == {"lps": {}}

        accepted = {"Bearer new"}  # the gateway reloaded; the file says so
        write("new")
        seen.clear()
        assert await office._exposures_of(feed) == {"lps": {}}
        assert seen == ["Bearer old", "Bearer new"]
        assert office.tokens.admin == "new"

        accepted = {"Bearer newer"}  # the gateway's alone: the file not
        seen.clear()
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert await office._exposures_of(feed) is None
        assert seen == ["Bearer new"] * 3  # the file read again each time, unchanged
        assert [e["event"] for e in logs] == ["gateway_positions_unavailable"]  # once
        metric = b'fixgw_backoffice_positions_unavailable{gateway="gateway"} 1.0'
        assert metric in unavailable()
        status = (await office.status())["positions"]["unavailable"]
        assert status == {
            "gateway": {"error": "HTTP 401", "since": pytest.approx(time.time(), abs=60)}
        }

        write("newer")
        with structlog.testing.capture_logs() as logs:
            assert await office._exposures_of(feed) == {"lps": {}}
        assert [e["event"] for e in logs] == ["tokens_reloaded", "gateway_positions_available"]
        assert metric.replace(b"1.0", b"0.0") in unavailable()
        assert (await office.status())["positions"]["unavailable"] == {}


# -- several gateways: how far the drop copy has come -----------------------------------

_T0 = dt.datetime(2026, 12, 4, 10, 0, 0)


def _at(seconds: float) -> str:
    return (_T0 + dt.timedelta(seconds=seconds)).isoformat(sep=" ", timespec="milliseconds")


def _fill(n: int, t: float, seq: int, client: str = "CLIENT1") -> tuple[ClientTrade, HouseTrade]:
    """A client's fill from LP_A at ``t`` and the house's booking of it."""
    when = _at(t)
    return (
        ClientTrade(
            exec_id=f"C{n}",
            client=client,
            order_id=f"O{n}",
            cl_ord_id=f"K{n}",
            symbol="EUR/USD",
            side=1,
            qty="1000",
            price="1.1",
            market="LP_A",
            time=when,
            trade_date=when[:10],
            seq=seq,
        ),
        HouseTrade(
            report_id=f"CH{n}/L{n}",
            lp="LP_A",
            lp_exec_id=f"L{n}",
            child_id=f"CH{n}",
            account=client,
            client_exec_id=f"C{n}",
            symbol="EUR/USD",
            side=1,
            qty="1000",
            price="1.1",
            time=when,
            trade_date=when[:10],
            seq=seq,
        ),
    )


def _lp_line(n: int, t: float) -> LpTrade:
    when = _at(t)
    return LpTrade(
        lp="LP_A",
        exec_id=f"L{n}",
        cl_ord_id=f"CH{n}",
        symbol="EUR/USD",
        side=1,
        qty="1000",
        price="1.1",
        time=when,
        trade_date=when[:10],
        source="/statements/LP_A-20261204.csv",
    )


async def _store(
    office: BackOffice, gateway: int, last_seq: int, *fills: int, client: str = "CLIENT1"
) -> None:
    """The fills ``(n, t)`` pairs flattened, as one gateway's drop copy delivered them."""
    trades = [_fill(n, t, last_seq, client) for n, t in zip(fills[::2], fills[1::2], strict=True)]
    session = office.feeds[gateway].session_key
    await office.ledger.write(session, last_seq, [c for c, _ in trades], [h for _, h in trades])


@pytest.mark.asyncio
async def test_a_break_waits_for_the_drop_copy_that_has_come_least_far(tmp_path: Path) -> None:
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=msgspec.structs.replace(
            cfg.backoffice,
            lps={"LP_A": StatementColumns(delivery="end_of_day")},
            gateways=(
                BackofficeGateway(name="gw1", drop_copy_port=9877, http_port=0),
                BackofficeGateway(name="gw2", drop_copy_port=9887, http_port=0),
            ),
        ),
    )
    now = [(_T0 + dt.timedelta(seconds=200)).replace(tzinfo=dt.UTC).timestamp()]
    office = BackOffice(cfg, clock=lambda: now[0], monotonic=lambda: now[0])
    gw1, gw2 = _Feed(), _Feed()
    gw2.logged_on = False  # gw2's drop copy is down, behind since t=10
    office.feeds[0].client, office.feeds[1].client = gw1, gw2  # type: ignore[assignment]
    await office.ledger.open()
    try:
        await _store(office, 0, 3, 1, 0, 3, 100)  # gw1: up to t=100, caught up
        await _store(office, 1, 2, 2, 10)  # gw2: up to t=10
        # LP_A's statement (one for both gateways' sessions): gw2's fill at
        # t=50 is on it, and has not come from gw2's drop copy yet
        lines = [_lp_line(1, 0), _lp_line(2, 10), _lp_line(50, 50), _lp_line(3, 100)]
        await office.ledger.apply_statements(
            [StatementChange(lines[0].source, "LP_A", False, lines, [])]
        )
        await office.recon(full=False)
        assert await office.ledger.breaks() == []
        await office.recon(full=True)
        assert await office.ledger.breaks() == []
        # gw2 comes back and delivers it; a line no gateway booked is a break
        # once both drop copies are caught up
        await _store(office, 1, 9, 50, 50, 4, 120)
        gw2.logged_on = True
        more = [_lp_line(4, 120), _lp_line(60, 60)]
        await office.ledger.apply_statements(
            [StatementChange(lines[0].source, "LP_A", False, more, [])]
        )
        await office.recon(full=False)
        breaks = await office.ledger.breaks()
        assert [(b.kind, b.ref) for b in breaks] == [("missing_in_house", "L60")]
    finally:
        await office.ledger.close()


@pytest.mark.asyncio
async def test_an_lp_declared_without_statements_leaves_the_breaks_of_its_statement_at_start(
    tmp_path: Path,
) -> None:
    """An LP's ``delivery`` changed to ``none`` while the back office was
    down: at start, its fills found missing from its statement, and those
    waiting for it, are gone from the breaks and the pending keys, as a
    full run would find; what its statement read says stays."""
    cfg = default()
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=in_process(cfg.backoffice),
    )
    now = [(_T0 + dt.timedelta(seconds=200)).replace(tzinfo=dt.UTC).timestamp()]

    def office_with(delivery: str) -> BackOffice:
        lps = {"LP_A": StatementColumns(delivery=delivery)}
        settings = msgspec.structs.replace(cfg.backoffice, lps=lps)
        office = BackOffice(
            msgspec.structs.replace(cfg, backoffice=settings),
            clock=lambda: now[0],
            monotonic=lambda: now[0],
        )
        office.feeds[0].client = _Feed()  # type: ignore[assignment]
        return office

    first = office_with("end_of_day")
    await first.ledger.open()
    try:
        # LP_A's statement has L1 and a line no fill was booked for (L9, at
        # t=20); the house booked L2 (t=10), which it misses, and L3, after
        # its last line: missing, and waiting for it
        await _store(first, 0, 3, 1, 0, 2, 10, 3, 100)
        lines = [_lp_line(1, 0), _lp_line(9, 20)]
        await first.ledger.apply_statements(
            [StatementChange(lines[0].source, "LP_A", False, lines, [])]
        )
        run = await first.recon(full=False)
        breaks = await first.ledger.breaks()
        assert sorted((b.kind, b.ref) for b in breaks) == [
            ("missing_at_lp", "L2"),
            ("missing_in_house", "L9"),
        ]
        assert run.pending == 1  # L3's booking, on the statement
    finally:
        await first.ledger.close()
    again = office_with("none")
    await again.start()
    try:
        breaks = await again.ledger.breaks()
        assert [(b.kind, b.ref) for b in breaks] == [("missing_in_house", "L9")]
        sample = again.metrics.registry.get_sample_value
        assert sample("fixgw_recon_breaks", {"type": "missing_at_lp"}) == 0
        assert (await again.ledger.counts())["pending"] == 0
        # a full run agrees
        run = await again.recon(full=True)
        assert await again.ledger.breaks() == breaks
        assert run.pending == 0
    finally:
        if again._http is not None:
            await again._http.cleanup()
        await again.ledger.close()


@pytest.mark.asyncio
async def test_a_resolved_position_break_leaves_the_list_under_steady_trading(
    tmp_path: Path,
) -> None:
    now = [(_T0 + dt.timedelta(seconds=200)).replace(tzinfo=dt.UTC).timestamp()]
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    gateway: dict[str, Any] = {}

    async def exposures() -> dict[str, Any]:
        return gateway

    office._gateway_exposures = exposures  # type: ignore[method-assign]
    try:
        await _store(office, 0, 1, 1, 0)  # CLIENT1 bought 1000 EUR/USD
        # the gateway says 2000: a break once seen twice with the fills unchanged
        gateway.update(clients={"CLIENT1": {"EUR/USD": "2000"}}, lps={"LP_A": {"EUR/USD": "1000"}})
        await office._positions()
        await office._positions()
        listed = [b for b in await office.ledger.breaks() if b.kind == "client_position_mismatch"]
        assert [b.key for b in listed] == ["CLIENT1|EUR/USD"]
        # the gateway's position is put right; meanwhile another client trades
        # without a pause, a fill of it always in flight (on the gateway, not
        # yet in the ledger; and one taken in by the back office, not yet
        # written: the drop copy is never caught up)
        feed.messages.put_nowait(None)
        assert not office._caught_up()
        n, seq = 100, 1
        deadline = 20
        for _ in range(deadline):
            n += 1
            seq += 1
            await _store(office, 0, seq, n, n, client="CLIENT2")
            traded = n - 100
            gateway.update(
                clients={
                    "CLIENT1": {"EUR/USD": "1000"},
                    "CLIENT2": {"EUR/USD": str(1000 * (traded + 1))},
                },
                lps={"LP_A": {"EUR/USD": str(1000 * (traded + 2))}},
            )
            await office._positions()
            if not [b for b in await office.ledger.breaks() if b.client == "CLIENT1"]:
                break
        else:
            raise AssertionError("the resolved break is still listed")
        # a difference is listed only from comparisons made caught up
        gateway["clients"]["CLIENT3"] = {"EUR/USD": "5000"}
        await office._positions()
        await office._positions()
        assert not [b for b in await office.ledger.breaks() if b.client == "CLIENT3"]
        feed.messages = asyncio.Queue()
        await office._positions()
        await office._positions()
        assert [b.key for b in await office.ledger.breaks() if b.client == "CLIENT3"] == [
            "CLIENT3|EUR/USD"
        ]
    finally:
        await office.ledger.close()


@pytest.mark.asyncio
async def test_a_job_the_ledger_keeps_failing_is_said_once_and_again_when_it_resumes() -> None:
    """A database away fails every run of the status and recon jobs: one
    error line with the cause, not one a run (0.5 s apart), then one line
    when a run succeeds again, with how many failed."""
    office = BackOffice(default())
    runs = 0
    done = asyncio.Event()

    async def statements() -> None:
        nonlocal runs
        runs += 1
        if runs <= 20:
            raise LedgerError("the ledger postgresql://bo@db/l: connection refused")
        done.set()

    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(office._every(statements, 1))
        try:
            async with asyncio.timeout(10):
                await done.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    errors = [e for e in logs if e["event"] == "ledger_error"]
    assert [(e["job"], e["failed_runs"]) for e in errors] == [("statements", 1)]
    assert "connection refused" in errors[0]["error"]
    resumed = [e for e in logs if e["event"] == "ledger_job_resumed"]
    assert [(e["job"], e["failed_runs"]) for e in resumed] == [("statements", 20)]


STATEMENT_HEADER = "TradeDate,ExecTime,ExecID,ClOrdID,OrderID,Symbol,Side,Quantity,Price\n"


async def statements_office(tmp_path: Path) -> tuple[BackOffice, Path]:
    """A back office on the default config with its ledger open, and its
    statements folder made."""
    office, _ = _office(tmp_path, [1_796_385_600.0])  # Friday 2026-12-04 12:00 UTC
    await office.ledger.open()
    folder = office.statements.folder
    folder.mkdir(parents=True, exist_ok=True)
    return office, folder


def statement_row(n: int) -> str:
    return f"2026-12-04,2026-12-04T10:00:0{n}.000Z,X{n},CH{n},O{n},EUR/USD,BUY,1000,1.1\n"


@pytest.mark.asyncio
async def test_a_statement_change_the_ledger_keeps_refusing_is_set_aside_and_holds_no_other(
    tmp_path: Path,
) -> None:
    office, folder = await statements_office(tmp_path)
    ledger = office.ledger
    real_apply = ledger.apply_statements
    down = [False]
    tried: list[str] = []
    poison, good = folder / "LP_A-1.csv", folder / "LP_A-2.csv"

    async def apply_statements(changes: Sequence[StatementChange]) -> int:
        tried.extend(Path(c.source).name for c in changes)
        if down[0]:
            raise LedgerError("the ledger went away")
        if any(c.source == str(poison) for c in changes):
            raise LedgerError("a constraint nobody foresaw")
        return await real_apply(changes)

    ledger.apply_statements = apply_statements  # type: ignore[method-assign]
    try:
        poison.write_text(STATEMENT_HEADER + statement_row(1))
        good.write_text(STATEMENT_HEADER + statement_row(2))
        # the ledger takes nothing: nothing is counted against a file, all waits
        down[0] = True
        for _ in range(5):
            with pytest.raises(LedgerError, match="went away"):
                await office._statements()
        down[0] = False
        # the ledger takes the other file's changes as they come, and
        # refuses this one alone each time: the third time it is set aside
        text = STATEMENT_HEADER + statement_row(2)
        with structlog.testing.capture_logs() as logs:
            for n in (3, 4):
                with pytest.raises(LedgerError, match="nobody foresaw"):
                    await office._statements()
                text += statement_row(n)
                good.write_text(text)
            await office._statements()
        (aside,) = [e for e in logs if e["event"] == "statement_change_refused"]
        assert aside["file"] == str(poison)
        assert aside["times"] == 3
        assert "nobody foresaw" in aside["error"]
        assert (await ledger.counts())["lp_trades"] == 3
        # left alone until it changes (or its time is up)
        tried.clear()
        await office._statements()
        assert tried == []
        poison.write_text(STATEMENT_HEADER + statement_row(1) + statement_row(5))
        with pytest.raises(LedgerError, match="nobody foresaw"):
            await office._statements()
        assert tried[-1] == poison.name
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_a_ledger_that_takes_no_write_but_answers_sets_no_file_aside(
    tmp_path: Path,
) -> None:
    """A full disk, a PostgreSQL ledger failed over to a read-only standby:
    every write refused, reads answered.  No file is at fault; once writes
    are taken again, every line is stored."""
    office, folder = await statements_office(tmp_path)
    ledger = office.ledger
    real_apply = ledger.apply_statements
    full = [True]

    async def apply_statements(changes: Sequence[StatementChange]) -> int:
        if full[0]:
            raise LedgerError("writing statements: No space left on device")
        return await real_apply(changes)

    ledger.apply_statements = apply_statements  # type: ignore[method-assign]
    (folder / "LP_A-1.csv").write_text(STATEMENT_HEADER + statement_row(1))
    (folder / "LP_A-2.csv").write_text(STATEMENT_HEADER + statement_row(2))
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):
                with pytest.raises(LedgerError, match="No space"):
                    await office._statements()
        assert [e for e in logs if e["event"] == "statement_change_refused"] == []
        full[0] = False
        await office._statements()
        assert (await ledger.counts())["lp_trades"] == 2
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_a_refusal_counts_no_more_once_the_file_is_taken(tmp_path: Path) -> None:
    """A refusal now and then (a lock timeout) of a file the ledger then
    takes: each is forgotten once it is taken, and nothing is set aside."""
    office, folder = await statements_office(tmp_path)
    ledger = office.ledger
    real_apply = ledger.apply_statements
    hiccups = [0]
    path, other = folder / "LP_A-1.csv", folder / "LP_A-2.csv"

    async def apply_statements(changes: Sequence[StatementChange]) -> int:
        if hiccups[0] and any(c.source == str(path) for c in changes):
            hiccups[0] -= 1
            raise LedgerError("canceling statement due to lock timeout")
        return await real_apply(changes)

    ledger.apply_statements = apply_statements  # type: ignore[method-assign]
    text, others = STATEMENT_HEADER, STATEMENT_HEADER
    try:
        with structlog.testing.capture_logs() as logs:
            for n in range(1, 6):
                text += statement_row(n)
                path.write_text(text)
                others += statement_row(n).replace(",X", ",Y")
                other.write_text(others)  # the ledger takes another file meanwhile
                hiccups[0] = 2  # the batch and the file alone
                with pytest.raises(LedgerError, match="lock timeout"):
                    await office._statements()
                await office._statements()  # taken on the next run
        assert [e for e in logs if e["event"] == "statement_change_refused"] == []
        assert (await ledger.counts())["lp_trades"] == 10
    finally:
        await ledger.close()


@pytest.mark.asyncio
async def test_a_statement_file_taken_out_while_stopped_is_gone_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The folder's reading is in memory, the files read are in the ledger:
    a file taken out while the back office is stopped is found gone at its
    next start, with what taking it out while it runs comes to (its line
    another file repeats handed over to that file, its others kept as an
    archived statement's)."""
    now = 1_796_385_600.0  # Friday 2026-12-04 12:00 UTC

    async def started(data_dir: Path) -> BackOffice:
        cfg = default()
        cfg = msgspec.structs.replace(
            cfg,
            gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(data_dir)),
            backoffice=in_process(cfg.backoffice),
        )
        office = BackOffice(cfg, clock=lambda: now, monotonic=lambda: now)
        await office.start()
        await office._statements()
        return office

    async def stopped(office: BackOffice) -> None:
        if office._http is not None:
            await office._http.cleanup()
        office._close_stores()
        await office.ledger.close()

    async def lp_position(office: BackOffice) -> list[Position]:
        return (await office.ledger.positions())["lp_statements"]

    def statements(data_dir: Path) -> tuple[Path, Path]:
        folder = data_dir / "statements"
        folder.mkdir(parents=True)
        wrong, again = folder / "LP_A-1.csv", folder / "LP_A-2.csv"
        wrong.write_text(STATEMENT_HEADER + statement_row(1) + statement_row(2))
        # the LP issued the day again, with X2 of 2000 (and X1 left out)
        fixed = statement_row(2).replace(",1000,", ",2000,")
        again.write_text(STATEMENT_HEADER + fixed + statement_row(3))
        return wrong, again

    three = [Position("LP_A", "EUR/USD", "3000.00000000")]  # X2 of 1000 stands
    four = [Position("LP_A", "EUR/USD", "4000.00000000")]  # X2 of 2000, X1 kept
    # taken out while it runs
    wrong, _ = statements(tmp_path / "running")
    office = await started(tmp_path / "running")
    try:
        assert await lp_position(office) == three
        wrong.unlink()
        await office._statements()
        assert await lp_position(office) == four
        running = (await office.ledger.counts())["lp_trades"]
    finally:
        await stopped(office)
    # taken out while it is stopped
    wrong, _ = statements(tmp_path / "stopped")
    office = await started(tmp_path / "stopped")
    try:
        assert await lp_position(office) == three
    finally:
        await stopped(office)
    wrong.unlink()
    for _ in range(2):  # and once more: gone once, not again at each start
        office = await started(tmp_path / "stopped")
        try:
            assert await lp_position(office) == four
            assert (await office.ledger.counts())["lp_trades"] == running == 3
        finally:
            await stopped(office)


@pytest.mark.asyncio
async def test_the_treasurys_books_follow_each_run_so_a_look_reads_no_batch(
    tmp_path: Path,
) -> None:
    now = [1_796_385_600.0]
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    writer = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    reads: list[tuple[int, int]] = []
    real_batch = office.ledger.batch_settlement_sums

    async def batch_settlement_sums(after: int, upto: int) -> Any:
        reads.append((after, upto))
        return await real_batch(after, upto)

    office.ledger.batch_settlement_sums = batch_settlement_sums  # type: ignore[method-assign]
    try:
        for seq in (1, 2):
            feed.messages.put_nowait(_fill_copy(f"E{seq}", seq))
            await until_stored(office, seq)
            await office.recon(full=False)
            for book in (office._settled, office._held):
                assert book is not None
                assert book.upto == office.ledger.last_ingest
        assert len(reads) == 1  # the second batch, added by the run
        treasury = await office.treasury()
        assert len(reads) == 1  # the look had nothing to add
        assert treasury["positions"]["clients"][0]["qty"] == "2000.00000000"
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await office.ledger.close()


@pytest.mark.asyncio
async def test_the_status_lists_the_statement_lines_that_could_not_be_read(
    tmp_path: Path,
) -> None:
    now = [1_796_385_600.0]
    office, _ = _office(tmp_path, now)
    await office.ledger.open()
    try:
        path = office.statements.folder / "LP_A-20261204.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "TradeDate,ExecTime,ExecID,ClOrdID,OrderID,Symbol,Side,Quantity,Price\n"
        good = "2026-12-04,2026-12-04T10:00:00.000Z,X1,CH1,O1,EUR/USD,BUY,1000,1.1\n"
        bad = "2026-12-04,2026-12-04T10:00:01.000Z,X2,CH2,O2,EUR/USD,BOUGHT,1000,1.1\n"
        path.write_text(header + good + bad)
        await office._statements()
        (error,) = (await office.status())["statement_errors"]
        assert error.startswith(f"{path} line 3")
        assert "BOUGHT" in error
        # the file corrected and read again whole: nothing left to name
        path.write_text(header + good + bad.replace("BOUGHT", "BUY"))
        await office._statements()
        assert (await office.status())["statement_errors"] == []
        # many at once: each in the status (the latest), one log line for the rest
        many = "".join(bad.replace("X2", f"Y{i}") for i in range(30))
        path.write_text(header + many)
        with structlog.testing.capture_logs() as logs:
            await office._statements()
        assert len((await office.status())["statement_errors"]) == 30
        events = [e["event"] for e in logs if e["event"].startswith("statement_line")]
        assert events == ["statement_line_unreadable"] * 20 + ["statement_lines_unreadable_more"]
    finally:
        await office.ledger.close()


@pytest.mark.asyncio
async def test_value_dates_revised_at_a_start_stopped_before_the_reexport_are_exported_later(
    tmp_path: Path,
) -> None:
    """The revision of value dates at start marks the ended days it moved
    for export in memory only: a back office stopped (or killed) before its
    day ends' task wrote them again must still write them at its next
    start, since the revision is done and will not be found again."""
    now = [1_796_472_000.0]  # Saturday 2026-12-05 12:00 UTC
    office, _ = _office(tmp_path, now)
    await office.ledger.open()
    try:
        when = "2026-12-04 10:00:00.000"
        trade = ClientTrade(
            "E1", "CLIENT1", "O1", "K1", "GBP/JPY", 1, "1000", "190.5", "LP_A", when, when[:10], 1
        )
        await office.ledger.write(office.feeds[0].session_key, 1, [trade], [])
        assert await office.export_missing() == [dt.date(2026, 12, 4)]
    finally:
        await office.ledger.close()
    cfg = office.config
    usd_jpy = next(i for i in cfg.instruments if i.symbol == "USD/JPY")
    gbp_jpy = msgspec.structs.replace(usd_jpy, symbol="GBP/JPY", usd_conversion="USD/JPY")
    listed_cfg = msgspec.structs.replace(
        cfg, instruments=[*cfg.instruments, gbp_jpy], backoffice=in_process(cfg.backoffice)
    )

    async def started() -> BackOffice:
        office = BackOffice(listed_cfg, clock=lambda: now[0], monotonic=lambda: now[0])
        await office.start()
        return office

    async def stopped(office: BackOffice) -> None:
        if office._http is not None:
            await office._http.cleanup()
        office._close_stores()
        await office.ledger.close()

    # started with GBP/JPY listed: Friday's trade now settles on Tuesday,
    # and Friday is to be written again; stopped before that was done
    first = await started()
    try:
        assert first._late_days == {"2026-12-04"}
    finally:
        await stopped(first)
    settlement = tmp_path / "backoffice" / "exports" / "settlement-20261204.csv"
    assert "2026-12-08" not in settlement.read_text()
    # started again: Friday's files must be written again with the new value date
    again = await started()
    try:
        await again.export_missing()
        for day in sorted(again._late_days):
            await again.export(dt.date.fromisoformat(day))
    finally:
        await stopped(again)
    assert "2026-12-08" in settlement.read_text(), settlement.read_text()


def _capture_copy(
    exec_id: str, seq: int, when: float, side: Side, restates: str = ""
) -> FixMessage:
    """A drop copy's TradeCaptureReport of a booking to the house at LP_A
    of child 1O1.1C1, as the gateway sends it."""
    instrument = default().instruments[0].to_instrument()
    body = trade_capture_body(
        child_id="1O1.1C1",
        exec_id=exec_id,
        lp="LP_A",
        account=HOUSE_ACCOUNT,
        house=True,
        instrument=instrument,
        side=side,
        lots=1,
        price=110_000,
        now=when,
        day_end=21 * 3600,
        restates=restates,
    )
    header = [(34, b"%d" % seq), (49, b"GATEWAY"), (56, b"BACKOFFICE")]
    return codec.parse_frame(codec.encode_message(b"FIX.4.4", b"AE", header, body))


@pytest.mark.asyncio
async def test_a_bust_taken_in_on_a_later_day_is_booked_as_of_the_fills_and_its_day_written_again(
    tmp_path: Path,
) -> None:
    now = [1_796_472_000.0]  # Saturday 2026-12-05 12:00 UTC
    office, feed = _office(tmp_path, now)
    await office.ledger.open()
    intake = asyncio.create_task(office._take_in(office.feeds[0], feed))  # type: ignore[arg-type]
    thursday = dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC).timestamp()
    try:
        feed.messages.put_nowait(_capture_copy("LPX1", 1, thursday, Side.BUY))
        await until_stored(office, 1)
        office._late_days.clear()
        # the LP busts it on Friday: the reversal restates LPX1
        feed.messages.put_nowait(_capture_copy("B1", 2, thursday + 86400, Side.SELL, "LPX1"))
        await until_stored(office, 2)
        booked = await office.ledger.booked_on([("1O1.1C1", "LPX1"), ("1O1.1C1", "B1")])
        assert booked == {("1O1.1C1", "LPX1"): "2026-12-03", ("1O1.1C1", "B1"): "2026-12-03"}
        assert office._late_days == {"2026-12-03"}  # Thursday's files to be written again
    finally:
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await office.ledger.close()


_IDLE_CHILD = """
import os, threading, types
from backoffice.service import BackOffice
started = threading.Event()
threading.Thread(target=lambda: (started.set(), threading.Event().wait()), daemon=True).start()
started.wait()
settings = types.SimpleNamespace(cpus=[], nice=0, idle_priority=True)
BackOffice._lower_priority(types.SimpleNamespace(settings=settings))
print(sorted({os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}))
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_idle_priority_puts_every_thread_of_the_process_under_the_idle_policy() -> None:
    """The back office gives a core to the gateway first: its own thread and
    those started before (and, taking its policy, those started after)."""
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    if "idle_priority_refused" in done.stdout + done.stderr:
        pytest.skip("this machine refuses SCHED_IDLE")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{os.SCHED_IDLE}]"


@pytest.mark.asyncio
async def test_a_statements_folder_that_cannot_be_listed_is_said_once_while_it_lasts(
    tmp_path: Path,
) -> None:
    """A statements_dir naming a file (or a folder the back office may not
    list) is one line naming it, not a traceback at every scan; the LPs'
    lines are not taken as read meanwhile."""
    office, _ = _office(tmp_path, [1_796_385_600.0])
    await office.ledger.open()
    try:
        folder = office.statements.folder
        folder.write_text("")
        with structlog.testing.capture_logs() as logs:
            await office._statements()
            await office._statements()
        said = [e for e in logs if e["log_level"] in ("error", "warning")]
        assert [(e["event"], e["error"]) for e in said] == [
            ("statements_folder_unreadable", f"{folder}: Not a directory")
        ]
        assert "exc_info" not in said[0]
        assert office._statements_read is None
        folder.unlink()
        folder.mkdir()
        (folder / "LP_A-20261204.csv").write_text(STATEMENT_HEADER + statement_row(1))
        await office._statements()
        assert office._statements_read is not None
        assert (await office.ledger.counts())["lp_trades"] == 1
    finally:
        await office.ledger.close()
