"""The back-office process's own rules: which session it logs on to, which
ledger a URL names, and when a position is a break."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from backoffice.duck import DuckLedger
from backoffice.ledger import Position
from backoffice.service import (
    BackOffice,
    BackofficeError,
    _position_differences,
    drop_copy_session,
    open_ledger,
)
from backoffice.settlement import Settlement
from config import BackofficeSettings, Config, default_config_path, load_config


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
    with pytest.raises(BackofficeError, match="neither duckdb:<file> nor postgresql"):
        open_ledger(
            msgspec.structs.replace(cfg, backoffice=BackofficeSettings(ledger="mysql://x")),
            settlement,
        )


def test_the_default_reads_every_lps_statement(tmp_path: Path) -> None:
    office = BackOffice(default())
    assert sorted(office.statements.layouts) == ["LP_A", "LP_B", "LP_C"]
    assert office.statements.lp_of("LP_B-20261203.csv") == "LP_B"
    assert office.statements.lp_of("LP_D-20261203.csv") is None


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
            await office.ledger.write("S", 1, [client], [house])
        (tmp_path / "backoffice" / "exports").mkdir(parents=True)
        (tmp_path / "backoffice" / "exports" / "settlement-20261202.csv").write_text("kept\n")
        assert await office.export_missing() == [dt.date(2026, 12, 3)]
        exported = sorted(p.name for p in (tmp_path / "backoffice" / "exports").iterdir())
        assert "client-trades-20261203.parquet" in exported
        assert "client-trades-20261202.csv" not in exported  # that day had its files
        assert await office.export_missing() == []
    finally:
        await office.ledger.close()
