"""A trading day's files as a process reading the export folder sees them:
the manifest stands for a set of files that are whole and agree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import msgspec
import pytest

from backoffice.ledger import LedgerError
from backoffice.records import ClientTrade
from backoffice.service import BackOffice
from config import Config, default_config_path, load_config

NOW = 1_796_472_000.0  # 2026-12-05 12:00 UTC: the trading day 2026-12-04 has ended
DAY = dt.date(2026, 12, 4)


def _config(tmp_path: Path) -> Config:
    cfg = load_config(default_config_path())
    return msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(tmp_path)),
        backoffice=msgspec.structs.replace(
            cfg.backoffice, http_port=0, idle_priority=False, nice=0
        ),
    )


def _fill(exec_id: str, seq: int) -> ClientTrade:
    when = "2026-12-04 10:00:00.000"
    return ClientTrade(
        exec_id, "CLIENT1", f"O-{exec_id}", f"K-{exec_id}", "EUR/USD", 1, "1000", "1.1",
        "LP_A", when, when[:10], seq,
    )  # fmt: skip


def _ids(folder: Path, name: str) -> dict[str, list[str]]:
    """The ExecIDs of the client-trades file ``name`` in each format."""
    con = duckdb.connect()
    try:
        return {
            suffix: [
                r[0]
                for r in con.execute(
                    f"SELECT exec_id FROM '{folder / f'{name}.{suffix}'}' ORDER BY exec_id"
                ).fetchall()
            ]
            for suffix in ("parquet", "csv")
        }
    finally:
        con.close()


def _usd(folder: Path, suffix: str) -> str:
    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT CAST(CAST(amount AS DECIMAL(38, 2)) AS VARCHAR) "
            f"FROM '{folder / f'settlement-20261204.{suffix}'}' WHERE currency = 'USD'"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


@pytest.mark.asyncio
async def test_a_day_written_again_that_fails_half_way_is_left_without_its_manifest(
    tmp_path: Path,
) -> None:
    """Written again (a late trade), the day's files are replaced one by
    one: its manifest of the files before must not stand over files of
    which some hold the late trade and some do not.  Once written whole,
    the manifest is there again."""
    office = BackOffice(_config(tmp_path), clock=lambda: NOW, monotonic=lambda: NOW)
    office.export_retry = 3600.0  # not tried again within the test
    folder = tmp_path / "backoffice" / "exports"
    manifest = folder / "manifest-20261204.json"
    await office.ledger.open()
    try:
        session = office.feeds[0].session_key
        await office.ledger.write(session, 1, [_fill("E1", 1)], [])
        await office.export(DAY)
        assert manifest.exists()
        assert _ids(folder, "client-trades-20261204") == {"parquet": ["E1"], "csv": ["E1"]}

        await office.ledger.write(session, 2, [_fill("E2", 2)], [])  # late, for the ended day
        # the settlement report's CSV cannot be written this time
        (folder / ".settlement-20261204.csv.tmp").mkdir()
        with pytest.raises(LedgerError):
            await office.export(DAY)
        # some of the day's files hold E2 and others do not
        assert _ids(folder, "client-trades-20261204") == {
            "parquet": ["E1", "E2"],
            "csv": ["E1", "E2"],
        }
        assert (_usd(folder, "parquet"), _usd(folder, "csv")) == ("2200.00", "1100.00")
        # so no manifest says the day is whole; at start it is written again
        assert not manifest.exists()
        assert office._exported_upto(DAY) == -1

        (folder / ".settlement-20261204.csv.tmp").rmdir()
        await office.export(DAY)
        assert manifest.exists()
        assert (_usd(folder, "parquet"), _usd(folder, "csv")) == ("2200.00", "2200.00")
        assert office._exported_upto(DAY) == office.ledger.last_ingest
    finally:
        await office.ledger.close()


@pytest.mark.asyncio
async def test_a_manifest_that_cannot_be_written_is_named_as_the_files_are(
    tmp_path: Path,
) -> None:
    """The day's files written, its manifest cannot be (the disk full, a
    folder where its temporary file goes): the export fails as one whose
    files cannot be written does, the cause named (`fixgw backoffice
    export` prints it, not a server error), and the day is tried again."""
    from aiohttp.test_utils import TestClient, TestServer

    office = BackOffice(_config(tmp_path), clock=lambda: NOW, monotonic=lambda: NOW)
    office.export_retry = 3600.0  # not tried again within the test
    folder = tmp_path / "backoffice" / "exports"
    await office.ledger.open()
    try:
        await office.ledger.write(office.feeds[0].session_key, 1, [_fill("E1", 1)], [])
        (folder / ".manifest-20261204.json.tmp").mkdir(parents=True)
        with pytest.raises(LedgerError, match=r"cannot export 2026-12-04 to .*Is a directory"):
            await office.export(DAY)
        assert "2026-12-04" in office._export_failures
        assert office._late_days == {"2026-12-04"}
        token = office.config.gateway.admin_token
        async with TestClient(TestServer(office._app())) as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post("/backoffice/export?date=2026-12-04", headers=headers) as answer:
                assert answer.status == 503
                error = (await answer.json())["error"]
        assert error.startswith("cannot export 2026-12-04 to ")
        assert "Is a directory" in error
        assert "\n" not in error
        assert not (folder / "manifest-20261204.json").exists()
    finally:
        await office.ledger.close()
