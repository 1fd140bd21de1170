"""A statement file taken out of the folder: its lines stay (an archived
statement is no correction of it), but for the executions another file of
the LP says too, which that file stands for from then on (the LP issued the
day again with an execution changed, and the wrong file was taken out, as
the line naming the two files asks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from test_ledger import (  # noqa: F401 (fixtures)
    GRACE,
    HOUSE_ACCOUNT,
    found,
    house,
    ledger,
    ledger_url,
    recon,
    write,
)
from test_statements import HEADER, folder_of
from test_statements import write as write_file

from backoffice.ledger import Ledger, Position


@pytest.mark.asyncio
async def test_the_wrong_file_taken_out_of_the_folder_leaves_the_execution_to_the_other(
    ledger: Ledger,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    folder = folder_of(tmp_path)
    yesterday = tmp_path / "LP_A-20260301.csv"
    wrong = tmp_path / "LP_A-20260302.csv"
    again = tmp_path / "LP_A-20260302_2.csv"
    write_file(yesterday, HEADER + "L0,CH-L0,EUR/USD,BUY,1000,1.1,2026-03-02T09:59:00Z\n")
    write_file(wrong, HEADER + "L1,CH-L1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    # the LP issues the day again: the execution was of 2000, as booked
    write_file(again, HEADER + "L1,CH-L1,EUR/USD,BUY,2000,1.1,2026-03-02T10:00:00Z\n")
    await write(
        ledger,
        house("R0", "L0", -60, account=HOUSE_ACCOUNT, seq=1),
        house("R1", "L1", 0, account=HOUSE_ACCOUNT, qty="2000", seq=2),
        house("R9", "L9", 30, account=HOUSE_ACCOUNT, seq=3),
    )
    await ledger.apply_statements(folder.scan())
    (named,) = ledger.differing_lines
    assert f"the line of {wrong} stands" in named
    assert found(await recon(ledger)) == {("qty_mismatch", "house/lp", "L1")}
    # the wrong file taken out of the folder, as asked: the other file's
    # line stands for the execution, and the break is cleared
    wrong.unlink()
    await ledger.apply_statements(folder.scan())
    assert await recon(ledger) == []
    assert await recon(ledger, full=True) == []
    positions = await ledger.positions()
    assert positions["lp_statements"] == [Position("LP_A", "EUR/USD", "3000.00000000")]
    # yesterday's statement archived: its lines stay
    yesterday.unlink()
    await ledger.apply_statements(folder.scan())
    assert (await ledger.counts())["lp_trades"] == 2
    assert await recon(ledger, full=True) == []
    # the other file corrected without the execution: on no file of the
    # LP any more, so it goes
    write_file(again, HEADER + "L9,CH-L9,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:30Z\n")
    await ledger.apply_statements(folder.scan())
    await ledger.recon(False, GRACE, dt.datetime(2026, 3, 2, 12))
    assert (await ledger.counts())["lp_trades"] == 2
    assert found(await ledger.breaks()) == {("missing_at_lp", "house/lp", "L1")}


@pytest.mark.asyncio
async def test_the_ledger_keeps_the_files_read_until_they_are_taken_out(
    ledger: Ledger,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """What a start is told of the files read before: a file taken out of
    the folder meanwhile is gone at its first scan, as while it runs."""
    kept = tmp_path / "LP_A-20260301.csv"
    taken = tmp_path / "LP_A-20260302.csv"
    write_file(kept, HEADER + "L1,CH-L1,EUR/USD,BUY,2000,1.1,2026-03-02T10:00:00Z\n")
    write_file(taken, HEADER + "L1,CH-L1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    await ledger.apply_statements(folder_of(tmp_path).scan())
    assert await ledger.statement_files() == [str(kept), str(taken)]
    # stopped, the file taken out, started again: a new reading of the folder
    taken.unlink()
    folder = folder_of(tmp_path)
    folder.known(await ledger.statement_files())
    changes = folder.scan()
    assert [(Path(c.source).name, c.replace, c.gone) for c in changes] == [
        (kept.name, True, False),
        (taken.name, False, True),
    ]
    await ledger.apply_statements(changes)
    assert await ledger.statement_files() == [str(kept)]
    positions = await ledger.positions()
    assert positions["lp_statements"] == [Position("LP_A", "EUR/USD", "2000.00000000")]
    # the next start knows the file is gone
    folder = folder_of(tmp_path)
    folder.known(await ledger.statement_files())
    assert [c.gone for c in folder.scan()] == [False]
