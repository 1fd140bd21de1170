"""LP statements (:class:`backoffice.statements.StatementFolder`): each LP's
column layout, files read as they grow (whole lines only), a file changed in
any other way read again whole, a file removed, and lines that cannot be
read named by file and line."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path

import msgspec
import pytest

from backoffice.records import LpTrade, TradeDay
from backoffice.statements import QUIET_SECONDS, StatementChange, StatementFolder
from config import StatementColumns

DAYS = TradeDay(dt.time(0, 0))
NOW = dt.datetime(2026, 3, 2, 18, 0, tzinfo=dt.UTC).timestamp()
"""The folders' wall clock, and where the files' modification times are set
from: a file is left alone as long as the test says, however slowly it runs."""
_STEPS = itertools.count(1)
HEADER = "ExecID,ClOrdID,Symbol,Side,Quantity,Price,ExecTime\n"

ACME = msgspec.convert(
    {
        "file": "acme_*.txt",
        "exec_id": "Ticket",
        "cl_ord_id": "Ref",
        "symbol": "Instrument",
        "side": "Direction",
        "buy": "B",
        "sell": "S",
        "quantity": "Amount",
        "price": "Rate",
        "exec_time": "Executed",
        "time_format": "fix",
        "delimiter": ";",
    },
    StatementColumns,
)


def folder_of(path: Path, **layouts: StatementColumns) -> StatementFolder:
    return StatementFolder(path, layouts or {"LP_A": StatementColumns()}, DAYS, lambda: NOW)


def write(path: Path, text: str) -> None:
    path.write_text(text)
    _touch(path)


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
    _touch(path)


def _touch(path: Path) -> None:
    """A modification time of its own for each change, however fast they
    come: a millisecond past the last one's, from :data:`NOW` on."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, int(NOW * 1e9) + next(_STEPS) * 1_000_000))


def one(changes: list[StatementChange]) -> StatementChange:
    assert len(changes) == 1, changes
    return changes[0]


def test_the_default_layout(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-20260302.csv"
    write(
        path,
        HEADER
        + "E1,K1,EUR/USD,BUY,1000,1.10001,2026-03-02T10:00:01.123Z\n"
        + "E2,K2,EUR/USD,SELL,250.5,1.1,2026-03-02T12:30:00+02:00\n",
    )
    change = one(folder_of(tmp_path).scan())
    assert (change.source, change.lp, change.replace, change.errors) == (
        str(path),
        "LP_A",
        True,
        [],
    )
    assert change.rows == [
        LpTrade(
            lp="LP_A",
            exec_id="E1",
            cl_ord_id="K1",
            symbol="EUR/USD",
            side=1,
            qty="1000",
            price="1.10001",
            time="2026-03-02 10:00:01.123",
            trade_date="2026-03-02",
            source=str(path),
        ),
        LpTrade(
            lp="LP_A",
            exec_id="E2",
            cl_ord_id="K2",
            symbol="EUR/USD",
            side=-1,
            qty="250.5",
            price="1.1",
            time="2026-03-02 10:30:00.000",  # in UTC
            trade_date="2026-03-02",
            source=str(path),
        ),
    ]


def test_a_custom_layout_with_its_own_columns_sides_and_fix_times(tmp_path: Path) -> None:
    path = tmp_path / "acme_0302.txt"
    write(
        path,
        "Executed;Direction;Instrument;Amount;Rate;Ticket;Ref;Venue\n"
        "20260302-10:00:01.500;B;EUR/USD;1000;1.1;T-1;R-1;ACME\n"
        "20260302-23:59:59;S;BTC/USD;0.25;60000;T-2;R-2;ACME\n",
    )
    (tmp_path / "LP_A-0302.csv").write_text(HEADER)
    (tmp_path / "notes.txt").write_text("not a statement\n")
    folder = folder_of(tmp_path, ACME=ACME)
    change = one(folder.scan())
    assert change.lp == "ACME"
    assert [
        (r.exec_id, r.cl_ord_id, r.symbol, r.side, r.qty, r.price, r.time) for r in change.rows
    ] == [
        ("T-1", "R-1", "EUR/USD", 1, "1000", "1.1", "2026-03-02 10:00:01.500"),
        ("T-2", "R-2", "BTC/USD", -1, "0.25", "60000", "2026-03-02 23:59:59.000"),
    ]
    assert folder.unmatched == {"LP_A-0302.csv", "notes.txt"}
    assert folder.lp_of("acme_x.txt") == "ACME"
    assert folder.lp_of("LP_A-x.csv") is None


def test_epoch_milliseconds_and_the_trading_day_cut(tmp_path: Path) -> None:
    layout = StatementColumns(time_format="epoch_ms")
    at = dt.datetime(2026, 3, 2, 22, 30, 0, 250_000)
    epoch_ms = int((at - dt.datetime(1970, 1, 1)).total_seconds() * 1000)
    write(tmp_path / "LP_B-1.csv", HEADER + f"E1,K1,EUR/USD,BUY,1000,1.1,{epoch_ms}\n")
    folder = StatementFolder(tmp_path, {"LP_B": layout}, TradeDay(dt.time(22, 0)), lambda: NOW)
    row = one(folder.scan()).rows[0]
    assert (row.lp, row.time, row.trade_date) == ("LP_B", "2026-03-02 22:30:00.250", "2026-03-03")


def test_appended_lines_are_read_from_where_reading_stopped(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    folder = folder_of(tmp_path)
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]
    assert folder.scan() == []  # nothing changed
    append(
        path,
        "E2,K2,EUR/USD,SELL,1000,1.1,2026-03-02T10:00:01Z\n"
        "E3,K3,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:02Z\n",
    )
    change = one(folder.scan())
    assert not change.replace
    assert [r.exec_id for r in change.rows] == ["E2", "E3"]
    assert folder.scan() == []


def test_half_a_line_is_not_read_until_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\nE2,K2,EUR/U")
    folder = folder_of(tmp_path)
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]
    append(path, "SD,SELL,100")  # still no end of line
    assert folder.scan() == []
    append(path, "0,1.2,2026-03-02T10:00:01Z\n")
    change = one(folder.scan())
    assert not change.replace
    assert [(r.exec_id, r.symbol, r.qty, r.price) for r in change.rows] == [
        ("E2", "EUR/USD", "1000", "1.2")
    ]


def test_a_header_written_in_two_goes(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, HEADER[:20])
    folder = folder_of(tmp_path)
    first = folder.scan()
    assert all(not c.rows for c in first)
    append(path, HEADER[20:] + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]


def test_an_edited_line_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    lines = [
        "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n",
        "E2,K2,EUR/USD,SELL,1000,1.1,2026-03-02T10:00:01Z\n",
        "E3,K3,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:02Z\n",
    ]
    write(path, HEADER + "".join(lines))
    folder = folder_of(tmp_path)
    one(folder.scan())
    # the same size, one figure changed: read again whole
    write(
        path, HEADER + "".join(lines).replace("E2,K2,EUR/USD,SELL,1000", "E2,K2,EUR/USD,SELL,2000")
    )
    change = one(folder.scan())
    assert change.replace
    assert [(r.exec_id, r.qty) for r in change.rows] == [
        ("E1", "1000"),
        ("E2", "2000"),
        ("E3", "1000"),
    ]
    # a line removed, and one added after it
    write(path, HEADER + lines[0] + lines[2] + "E4,K4,EUR/USD,BUY,5,1.1,2026-03-02T10:00:03Z\n")
    change = one(folder.scan())
    assert change.replace
    assert [r.exec_id for r in change.rows] == ["E1", "E3", "E4"]


def test_a_line_edited_within_the_file_systems_tick_of_its_reading_is_read_again(
    tmp_path: Path,
) -> None:
    # a file system keeps a modification time in ticks (a few milliseconds
    # on Linux, seconds on some): a statement corrected in place, at the
    # same size, within the tick the reader read it in keeps its time
    path = tmp_path / "LP_A-1.csv"
    line = "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n"
    write(path, HEADER + line)
    folder = folder_of(tmp_path)
    assert [r.price for r in one(folder.scan()).rows] == ["1.1"]
    stat = path.stat()
    path.write_text(HEADER + line.replace(",1.1,", ",1.2,"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    change = one(folder.scan())
    assert change.replace
    assert [r.price for r in change.rows] == ["1.2"]
    assert folder.scan() == []


def test_a_statement_moved_away_keeps_what_was_read_of_it(tmp_path: Path) -> None:
    # archiving yesterday's statement is no correction of it
    kept = tmp_path / "LP_A-1.csv"
    gone = tmp_path / "LP_A-2.csv"
    write(kept, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    write(gone, HEADER + "E2,K2,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    folder = folder_of(tmp_path)
    assert len(folder.scan()) == 2
    gone.unlink()
    # said gone, with nothing to replace: the ledger keeps its lines but
    # for those another file says too
    assert folder.scan() == [StatementChange(str(gone), "LP_A", False, [], [], gone=True)]
    assert folder.scan() == []


def test_a_quantity_the_ledger_cannot_hold_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, HEADER + "E1,K1,EUR/USD,BUY,12345678901,1.1,2026-03-02T10:00:00Z\n")
    change = one(folder_of(tmp_path).scan())
    assert change.rows == []
    assert "out of range" in change.errors[0]


def test_a_file_that_is_not_csv_is_named_and_others_are_read(tmp_path: Path) -> None:
    write(tmp_path / "LP_A-1.csv", HEADER + 'E1,"K1' + "x" * 200_000 + "\n")
    write(tmp_path / "LP_A-2.csv", HEADER + "E2,K2,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    bad, good = folder_of(tmp_path).scan()
    assert "not readable as CSV" in bad.errors[0]
    assert [r.exec_id for r in good.rows] == ["E2"]


def test_a_folder_not_there_yet_has_no_statements(tmp_path: Path) -> None:
    folder = folder_of(tmp_path / "later")
    assert folder.scan() == []
    (tmp_path / "later").mkdir()
    write(
        tmp_path / "later" / "LP_A-1.csv", HEADER + "E1,K1,EUR/USD,BUY,1,1.1,2026-03-02T10:00:00Z\n"
    )
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]


def test_bad_lines_are_named_by_file_and_line_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(
        path,
        HEADER
        + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n"  # line 2
        + "E2,K2,EUR/USD,HOLD,1000,1.1,2026-03-02T10:00:00Z\n"  # line 3: side
        + "\n"  # line 4: empty, skipped
        + "E4,K4,EUR/USD,BUY,lots,1.1,2026-03-02T10:00:00Z\n"  # line 5: quantity
        + "E5,K5,EUR/USD\n"  # line 6: too short
        + "E6,K6,EUR/USD,SELL,1000,NaN,2026-03-02T10:00:00Z\n"  # line 7: price
        + "E7,K7,EUR/USD,SELL,1000,1.1,yesterday\n"  # line 8: time
        + "E8,K8,EUR/USD,SELL,1000,1.1,2026-03-02T10:00:00Z\n",  # line 9
    )
    folder = folder_of(tmp_path)
    change = one(folder.scan())
    assert [r.exec_id for r in change.rows] == ["E1", "E8"]
    assert [e.split(":")[0] for e in change.errors] == [f"{path} line {n}" for n in (3, 5, 6, 7, 8)]
    assert "HOLD" in change.errors[0]
    assert "lots" in change.errors[1]
    # appended lines go on counting from where the file was
    append(
        path,
        "E9,K9,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:01Z\n"  # line 10
        "E10,K10,EUR/USD,BUY,-,1.1,2026-03-02T10:00:01Z\n",  # line 11
    )
    change = one(folder.scan())
    assert not change.replace
    assert [r.exec_id for r in change.rows] == ["E9"]
    assert [e.split(":")[0] for e in change.errors] == [f"{path} line 11"]


def test_a_header_without_the_layouts_columns(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(
        path,
        "ExecID,Symbol,Side,Qty,Price,ExecTime\nE1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n",
    )
    change = one(folder_of(tmp_path).scan())
    assert change.rows == []
    assert len(change.errors) == 1
    assert str(path) in change.errors[0]
    assert "ClOrdID, Quantity" in change.errors[0]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiters(tmp_path: Path, delimiter: str) -> None:
    layout = StatementColumns(delimiter=delimiter)
    text = HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n"
    write(tmp_path / "LP_A-1.csv", text.replace(",", delimiter))
    change = one(folder_of(tmp_path, LP_A=layout).scan())
    assert [(r.exec_id, r.qty) for r in change.rows] == [("E1", "1000")]


def test_a_time_past_the_calendar_is_a_bad_line_and_other_files_are_read(
    tmp_path: Path,
) -> None:
    # epoch microseconds in a column of epoch milliseconds: year 57,000 or so
    write(tmp_path / "LP_A-1.csv", HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    write(
        tmp_path / "LP_B-1.csv",
        HEADER
        + "E2,K2,EUR/USD,BUY,1000,1.1,1772445600000000\n"
        + "E3,K3,EUR/USD,BUY,1000,1.1,1772445600000\n",
    )
    folder = folder_of(
        tmp_path, LP_A=StatementColumns(), LP_B=StatementColumns(time_format="epoch_ms")
    )
    a, b = folder.scan()
    assert [r.exec_id for r in a.rows] == ["E1"]
    assert [r.exec_id for r in b.rows] == ["E3"]
    assert [e.split(":")[0] for e in b.errors] == [f"{tmp_path / 'LP_B-1.csv'} line 2"]
    assert folder.scan() == []


def test_a_file_that_cannot_be_read_is_named_once_and_the_others_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "LP_A-1.csv"
    locked = tmp_path / "LP_A-2.csv"
    moved = tmp_path / "LP_A-3.csv"
    write(good, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    write(locked, HEADER + "E2,K2,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    write(moved, HEADER + "E3,K3,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    stat = os.stat

    def refusing(path: str, *args: object, **kwargs: object) -> os.stat_result:
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        if str(path) == str(moved):  # moved away after the folder was listed
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    folder = folder_of(tmp_path)
    first, second = folder.scan()
    assert [r.exec_id for r in first.rows] == ["E1"]
    assert (second.source, second.rows) == (str(locked), [])
    assert second.errors[0].startswith(f"{locked}: cannot be read:")
    assert folder.scan() == []  # said once
    monkeypatch.setattr(os, "stat", stat)
    assert sorted(r.exec_id for c in folder.scan() for r in c.rows) == ["E2", "E3"]
    assert folder.scan() == []


def test_digits_other_than_ascii_are_a_bad_line(tmp_path: Path) -> None:
    # Python reads them as a number; the ledger refuses them, and with them
    # every statement taken in with that line
    path = tmp_path / "LP_A-1.csv"
    write(
        path,
        HEADER
        + "E1,K1,EUR/USD,BUY,\uff11\uff10\uff10\uff10,1.1,2026-03-02T10:00:00Z\n"
        + "E2,K2,EUR/USD,BUY,1000,\u0661.\u0661,2026-03-02T10:00:00Z\n"
        + "E3,K3,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n",
    )
    change = one(folder_of(tmp_path).scan())
    assert [r.exec_id for r in change.rows] == ["E3"]
    assert [e.split(":")[0] for e in change.errors] == [f"{path} line {n}" for n in (2, 3)]


def test_a_byte_order_mark_before_the_header(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, "\ufeff" + HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    folder = folder_of(tmp_path)
    change = one(folder.scan())
    assert (change.errors, [r.exec_id for r in change.rows]) == ([], ["E1"])
    append(path, "E2,K2,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:01Z\n")
    change = one(folder.scan())
    assert (change.replace, change.errors, [r.exec_id for r in change.rows]) == (False, [], ["E2"])
    # CRLF line ends, as the same spreadsheets write them
    write(
        path,
        ("\ufeff" + HEADER + "E3,K3,EUR/USD,SELL,5,1.1,2026-03-02T10:00:02Z\n").replace(
            "\n", "\r\n"
        ),
    )
    change = one(folder.scan())
    assert (change.replace, change.errors, [r.exec_id for r in change.rows]) == (True, [], ["E3"])


@pytest.mark.parametrize("order", [("LMAX", "LMAX-LD4"), ("LMAX-LD4", "LMAX")])
def test_an_lp_named_after_another_has_its_own_statements(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    folder = StatementFolder(tmp_path, {lp: StatementColumns() for lp in order}, DAYS, lambda: NOW)
    assert folder.lp_of("LMAX-LD4-20260302.csv") == "LMAX-LD4"
    assert folder.lp_of("LMAX-20260302.csv") == "LMAX"
    write(
        tmp_path / "LMAX-LD4-20260302.csv",
        HEADER + "E1,K1,EUR/USD,BUY,1,1.1,2026-03-02T10:00:00Z\n",
    )
    assert [(r.lp, r.exec_id) for r in one(folder.scan()).rows] == [("LMAX-LD4", "E1")]


def test_an_empty_file_is_no_bad_line(tmp_path: Path) -> None:
    # an LP writer creates the file, then writes it (or leaves it empty when
    # a disk is full)
    path = tmp_path / "LP_A-1.csv"
    write(path, "")
    folder = folder_of(tmp_path)
    assert [(c.rows, c.errors) for c in folder.scan()] == [([], [])]
    append(path, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    change = one(folder.scan())
    assert (change.errors, [r.exec_id for r in change.rows]) == ([], ["E1"])
    # a header without the layout's columns is still named, once
    write(tmp_path / "LP_A-2.csv", "ExecID,Symbol\n")
    assert len(one(folder.scan()).errors) == 1
    append(tmp_path / "LP_A-2.csv", "E2,EUR/")  # no whole line yet
    assert folder.scan() == []


def _quiet(path: Path) -> None:
    """The file left alone for longer than the reader waits for a last newline."""
    stat = path.stat()
    before = stat.st_mtime_ns - int((QUIET_SECONDS + 5) * 1e9)
    os.utime(path, ns=(stat.st_atime_ns, before))


def test_a_line_the_csv_reader_cannot_read_is_named_and_the_lines_around_it_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    folder = folder_of(tmp_path)
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]
    append(
        path,
        "E2,K2,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:01Z\n"  # line 3
        "E3,K3,EUR/USD,BUY,10\r00,1.1,2026-03-02T10:00:02Z\n"  # line 4: a stray carriage return
        "E4,K4,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:03Z\n",  # line 5
    )
    change = one(folder.scan())
    assert [r.exec_id for r in change.rows] == ["E2", "E4"]
    assert len(change.errors) == 1
    assert change.errors[0].startswith(f"{path} line 4: not readable as CSV")
    # read again whole (a restart): the same lines, none lost to the bad one
    again = one(folder_of(tmp_path).scan())
    assert again.replace
    assert [r.exec_id for r in again.rows] == ["E1", "E2", "E4"]
    assert [e.split(":")[0] for e in again.errors] == [f"{path} line 4"]


def test_an_early_line_corrected_in_a_file_that_also_grew_has_it_read_again_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "LP_A-1.csv"
    lines = [f"E{n},K{n},EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n" for n in range(1, 201)]
    write(path, HEADER + "".join(lines))
    folder = folder_of(tmp_path)
    assert len(one(folder.scan()).rows) == 200
    # delivered again: line 2's quantity corrected (same length), five lines more
    corrected = [lines[0].replace(",1000,", ",2000,"), *lines[1:]]
    more = [f"E{n},K{n},EUR/USD,BUY,1000,1.1,2026-03-02T11:00:00Z\n" for n in range(201, 206)]
    write(path, HEADER + "".join(corrected + more))
    change = one(folder.scan())
    assert change.replace
    assert len(change.rows) == 205
    assert (change.rows[0].exec_id, change.rows[0].qty) == ("E1", "2000")


def test_another_file_under_the_same_name_is_read_again_whole(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    line = "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n"
    write(path, HEADER + line)
    folder = folder_of(tmp_path)
    one(folder.scan())
    # the same first line, one more: but a new file moved over the old one
    new = tmp_path / "new.tmp"
    write(new, HEADER + line + "E2,K2,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:01Z\n")
    os.replace(new, path)
    change = one(folder.scan())
    assert change.replace
    assert [r.exec_id for r in change.rows] == ["E1", "E2"]


def test_a_last_line_without_its_newline_is_read_once_the_file_is_left_alone(
    tmp_path: Path,
) -> None:
    """An end-of-day statement's: a live one's may be half a line its writer
    flushed and finishes later (below)."""
    path = tmp_path / "LP_A-1.csv"
    write(
        path,
        HEADER
        + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n"
        + "E2,K2,EUR/USD,SELL,5,1.1,2026-03-02T10:00:01Z",  # no newline
    )
    folder = folder_of(tmp_path, LP_A=StatementColumns(delivery="end_of_day"))
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]
    assert folder.scan() == []  # perhaps still being written
    _quiet(path)
    change = one(folder.scan())
    assert not change.replace
    assert [(r.exec_id, r.qty) for r in change.rows] == [("E2", "5")]
    assert folder.scan() == []
    # the file grows after all: what comes may finish that line, so the
    # file is read again whole (here a writer that ends each line before
    # the next)
    append(path, "\nE3,K3,EUR/USD,BUY,7,1.1,2026-03-02T10:00:02Z\n")
    change = one(folder.scan())
    assert change.replace
    assert [r.exec_id for r in change.rows] == ["E1", "E2", "E3"]
    assert change.errors == []
    append(path, "E4,K4,EUR/USD,BUY,7,1.1,2026-03-02T10:00:03Z\n")  # ended: appended to
    change = one(folder.scan())
    assert not change.replace
    assert [r.exec_id for r in change.rows] == ["E4"]
    # a whole read of a file done with takes its last line at once
    write(tmp_path / "LP_A-2.csv", HEADER + "E9,K9,EUR/USD,BUY,1,1.1,2026-03-02T10:00:00Z")
    _quiet(tmp_path / "LP_A-2.csv")
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E9"]


def test_an_execution_listed_twice_keeps_its_first_line_however_the_file_is_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "LP_A-1.csv"
    first = "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n"
    write(path, HEADER + first + first)  # the same line twice: one execution, nothing to say
    folder = folder_of(tmp_path)
    change = one(folder.scan())
    assert ([r.qty for r in change.rows], change.errors) == (["1000"], [])
    append(path, first.replace(",1000,", ",900,"))  # line 4: other values
    write_again = one(folder_of(tmp_path).scan())  # as a restart reads it
    assert [r.qty for r in write_again.rows] == ["1000"]
    assert write_again.errors == [
        f"{path} line 4: ExecID 'E1' of order 'K1' again, with other values than line 2: "
        "line 2 stands"
    ]


def test_values_the_ledger_cannot_write_are_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(
        path,
        HEADER
        + "E1,K1,EUR/USD,BUY,9999999999.999999999,1.1,2026-03-02T10:00:00Z\n"  # rounds past
        + "E2,K2,EUR/USD,BUY,1000,1.1,9999-12-31T10:00:00Z\n"  # its value date past the calendar
        + "E3,K3,EUR/USD,BUY,1000,1.1,1969-12-31T10:00:00Z\n"
        + "E4,K\x00,EUR/USD,BUY,9999999999.99999999,1.1,2026-03-02T10:00:00Z\n",
    )
    change = one(folder_of(tmp_path).scan())
    assert [(r.exec_id, r.cl_ord_id, r.qty) for r in change.rows] == [
        ("E4", "K\ufffd", "9999999999.99999999")
    ]
    assert [e.split(":")[0] for e in change.errors] == [f"{path} line {n}" for n in (2, 3, 4)]
    assert "out of range" in change.errors[0]
    assert "the year 9999" in change.errors[1]
    assert "the year 1969" in change.errors[2]


def test_a_live_statements_last_line_without_its_newline_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "LP_A-1.csv"
    write(path, HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\nE2,K2,EUR/USD,SELL,10")
    folder = folder_of(tmp_path)  # live, the default
    assert [r.exec_id for r in one(folder.scan()).rows] == ["E1"]
    _quiet(path)  # the writer paused mid-line
    assert folder.scan() == []
    append(path, "00,1.1,2026-03-02T10:00:01Z\n")
    change = one(folder.scan())
    assert [(r.exec_id, r.qty) for r in change.rows] == [("E2", "1000")]
    assert change.errors == []


def test_a_last_line_taken_without_its_newline_and_then_finished_is_read_again(
    tmp_path: Path,
) -> None:
    # an upload that stalled mid-number for longer than the reader waits
    path = tmp_path / "LP_A-1.csv"
    header = "ExecID,ClOrdID,Symbol,Side,Quantity,ExecTime,Price\n"
    write(path, header + "E1,K1,EUR/USD,BUY,1000000,2026-03-02T10:00:00Z,1.08")
    folder = folder_of(tmp_path, LP_A=StatementColumns(delivery="end_of_day"))
    assert one(folder.scan()).rows == []  # the header alone, the line perhaps not done
    _quiet(path)
    assert [(r.exec_id, r.price) for r in one(folder.scan()).rows] == [("E1", "1.08")]
    append(path, "555\nE2,K2,EUR/USD,SELL,5,2026-03-02T10:00:01Z,1.1\n")
    change = one(folder.scan())
    assert change.replace
    assert [(r.exec_id, r.price) for r in change.rows] == [("E1", "1.08555"), ("E2", "1.1")]
    assert change.errors == []


def test_blank_lines_before_the_header(tmp_path: Path) -> None:
    # an export that starts with an empty line (or two, CRLF): the header is
    # the first line that holds anything, as blank lines between rows are skipped
    path = tmp_path / "LP_A-1.csv"
    write(path, "\r\n\n" + HEADER + "E1,K1,EUR/USD,BUY,1000,1.1,2026-03-02T10:00:00Z\n")
    folder = folder_of(tmp_path)
    change = one(folder.scan())
    assert (change.errors, [r.exec_id for r in change.rows]) == ([], ["E1"])
    append(path, "E2,K2,EUR/USD,SELL,1000,1.1,2026-03-02T10:00:01Z\n")
    change = one(folder.scan())
    assert (change.errors, [r.exec_id for r in change.rows]) == ([], ["E2"])
