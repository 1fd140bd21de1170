"""The simulated LPs' end-of-day statements: the writer
(:mod:`lp_adapters.simulated.statement`) on its own, the lp-sim's settings
for it, and ``fixgw lp-sim`` as a real process whose statement must match
the ExecutionReports it sent, line for line."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest
import structlog
from netkit import free_port, wait_for_port

from config import ConfigError, SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient
from gateway.sim.lp_sim_config import (
    load_lp_sim_config,
    parse_lp_sim_config,
    simulated_settings,
    statement_dir,
)
from lp_adapters.simulated import statement as statement_module
from lp_adapters.simulated.statement import HEADER, StatementWriter
from router.model import Side

REPO = Path(__file__).resolve().parents[2]
CONFIG_A = REPO / "config" / "lp-sim-a.toml"

# 2026-12-03T18:20:01.123Z
NOW = datetime(2026, 12, 3, 18, 20, 1, 123000, tzinfo=UTC).timestamp()
NEVER = 3600.0  # a flush interval no test waits for


def fill(
    writer: StatementWriter,
    now: float,
    exec_id: str,
    *,
    cl_ord_id: str = "C1",
    side: Side = Side.BUY,
    qty: str = "500000",
    price: str = "1.085",
) -> None:
    writer.record(
        now,
        exec_id=exec_id,
        cl_ord_id=cl_ord_id,
        order_id="LP-1",
        symbol="EUR/USD",
        side=side,
        qty=qty,
        price=price,
    )


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


# --------------------------------------------------------------------------------------
# the writer


def test_a_header_then_one_line_per_fill_written_on_flush(tmp_path: Path) -> None:
    writer = StatementWriter(tmp_path / "st", "LPX1", flush_interval=NEVER)
    fill(writer, NOW, "E1")
    fill(writer, NOW + 0.5, "E2", cl_ord_id="C2", side=Side.SELL, qty="0.005", price="30000.01")
    path = tmp_path / "st" / "LPX1-20261203.csv"
    assert not path.exists()  # buffered: not a byte written yet
    writer.flush()
    assert path.read_text() == (
        f"{HEADER}\n"
        "2026-12-03,2026-12-03T18:20:01.123Z,E1,C1,LP-1,EUR/USD,BUY,500000,1.085\n"
        "2026-12-03,2026-12-03T18:20:01.623Z,E2,C2,LP-1,EUR/USD,SELL,0.005,30000.01\n"
    )
    fill(writer, NOW + 1, "E3")
    writer.close()
    assert [row[2] for row in rows(path)] == ["ExecID", "E1", "E2", "E3"]  # one header
    writer.flush()  # nothing buffered: nothing written
    assert len(rows(path)) == 4


def test_a_restart_appends_to_the_days_file_without_a_second_header(tmp_path: Path) -> None:
    first = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    fill(first, NOW, "E1")
    first.close()
    again = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)  # the process restarted
    fill(again, NOW + 60, "E2")
    again.close()
    lines = (tmp_path / "LPX1-20261203.csv").read_text().splitlines()
    assert lines[0] == HEADER
    assert [line.split(",")[2] for line in lines[1:]] == ["E1", "E2"]


def test_an_emptied_file_gets_its_header_again(tmp_path: Path) -> None:
    writer = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    path = writer.path("20261203")
    path.write_text("")  # emptied by hand
    fill(writer, NOW, "E1")
    writer.flush()
    assert path.read_text().splitlines()[0] == HEADER
    fill(writer, NOW, "E2")
    writer.flush()
    assert [row[2] for row in rows(path)] == ["ExecID", "E1", "E2"]


def test_a_line_torn_by_a_killed_writer_is_cut_not_completed_at_the_restart(
    tmp_path: Path,
) -> None:
    first = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    fill(first, NOW, "E1")
    first.close()
    path = first.path("20261203")
    whole = path.read_bytes()
    # killed in the middle of writing E2: its line stops inside the price
    with path.open("ab") as f:
        f.write(b"2026-12-03,2026-12-03T18:20:02.000Z,E2,C2,LP-1,EUR/USD,BUY,500000,1.0")
    again = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)  # the restart
    with structlog.testing.capture_logs() as logs:
        fill(again, NOW + 60, "E3")
        again.close()
    # no line the LP never wrote whole (E2 at a price of 1.0)
    assert [row[2] for row in rows(path)] == ["ExecID", "E1", "E3"]
    assert path.read_bytes().startswith(whole)
    assert [(e["event"], e["file"]) for e in logs] == [("lp_statement_torn_line_cut", str(path))]
    assert logs[0]["text"].endswith("BUY,500000,1.0")


def test_a_header_torn_by_a_killed_writer_is_written_again(tmp_path: Path) -> None:
    writer = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    path = writer.path("20261203")
    path.write_bytes(HEADER.encode()[:20])  # killed while creating the file
    fill(writer, NOW, "E1")
    writer.close()
    assert [row[2] for row in rows(path)] == ["ExecID", "E1"]


def test_the_statement_rolls_over_at_midnight_utc(tmp_path: Path) -> None:
    writer = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    midnight = datetime(2026, 12, 4, tzinfo=UTC).timestamp()
    fill(writer, midnight - 0.001, "E1")
    fill(writer, midnight, "E2")
    writer.flush()
    before, after = rows(tmp_path / "LPX1-20261203.csv"), rows(tmp_path / "LPX1-20261204.csv")
    assert before[0] == after[0] == HEADER.split(",")
    assert before[1][:3] == ["2026-12-03", "2026-12-03T23:59:59.999Z", "E1"]
    assert after[1][:3] == ["2026-12-04", "2026-12-04T00:00:00.000Z", "E2"]
    assert (len(before), len(after)) == (2, 2)


def test_fields_that_need_it_are_quoted_and_read_back_as_written(tmp_path: Path) -> None:
    writer = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    fill(writer, NOW, "E1", cl_ord_id='odd,"id"')
    fill(writer, NOW, "E2", cl_ord_id="two\nlines")
    fill(writer, NOW, "E3", cl_ord_id='a"quote')
    fill(writer, NOW - 1, "E4")  # a second earlier than the line before: its own time
    writer.flush()
    written = rows(writer.path("20261203"))[1:]
    assert [row[3] for row in written] == ['odd,"id"', "two\nlines", 'a"quote', "C1"]
    assert [row[1] for row in written[2:]] == [
        "2026-12-03T18:20:01.123Z",
        "2026-12-03T18:20:00.123Z",
    ]


@pytest.mark.asyncio
async def test_recorded_lines_are_written_by_the_timer_within_the_interval(
    tmp_path: Path,
) -> None:
    writer = StatementWriter(tmp_path, "LPX1", flush_interval=0.05)
    path = writer.path("20261203")
    fill(writer, NOW, "E1")
    fill(writer, NOW, "E2")  # the timer armed by the first takes this one too
    assert not path.exists()
    started = time.monotonic()
    deadline = started + 5.0
    while not path.exists():
        assert time.monotonic() < deadline, "not flushed by the timer"
        await asyncio.sleep(0.01)  # polling, with the deadline above
    assert [row[2] for row in rows(path)] == ["ExecID", "E1", "E2"]
    fill(writer, NOW, "E3")  # a new timer
    deadline = time.monotonic() + 5.0
    while len(rows(path)) < 4:
        assert time.monotonic() < deadline, "not flushed by the second timer"
        await asyncio.sleep(0.01)  # polling, with the deadline above
    fill(writer, NOW, "E4")
    writer.close()  # at once, without waiting for the timer
    assert [row[2] for row in rows(path)] == ["ExecID", "E1", "E2", "E3", "E4"]


def test_a_folder_that_cannot_be_made_is_one_error_line_and_no_exception(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should be")
    writer = StatementWriter(blocker / "st", "LPX1", flush_interval=NEVER)
    path = writer.path("20261203")
    with structlog.testing.capture_logs() as logs:
        for n in range(3):
            fill(writer, NOW, f"E{n}")
            writer.flush()  # fails, and is told once
        blocker.unlink()  # the folder can be made now
        fill(writer, NOW, "E9")
        writer.close()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1, logs
    (error,) = errors
    assert error["event"] == "lp_statement_write_failed"
    assert error["file"] == str(path)
    assert "Not a directory" in error["error"] or "File exists" in error["error"]
    resumed = [e for e in logs if e["event"] == "lp_statement_write_resumed"]
    assert [e["lines_dropped"] for e in resumed] == [3]
    assert [row[2] for row in rows(path)] == ["ExecID", "E9"]


def test_a_write_cut_short_leaves_no_part_of_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = StatementWriter(tmp_path, "LPX1", flush_interval=NEVER)
    fill(writer, NOW, "E1")
    writer.flush()
    path = writer.path("20261203")
    before = path.read_bytes()
    real_write = os.write

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        if b"E2" not in bytes(data):
            return real_write(fd, data)
        real_write(fd, bytes(data)[:10])  # part of the line, then no space
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statement_module.os, "write", disk_full)
    with structlog.testing.capture_logs() as logs:
        fill(writer, NOW, "E2")
        writer.flush()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [(e["event"], e["file"]) for e in logs] == [("lp_statement_write_failed", str(path))]
    assert "No space left on device" in logs[0]["error"]
    fill(writer, NOW, "E3")
    writer.flush()
    assert [row[2] for row in rows(path)] == ["ExecID", "E1", "E3"]


# --------------------------------------------------------------------------------------
# the lp-sim's settings


def _with_lp_setting(text: str, line: str) -> str:
    return text.replace('fsync = "never"', f'fsync = "never"\n{line}', 1)


def test_the_lp_sim_statement_defaults_to_its_data_dir_and_follows_the_flags(
    tmp_path: Path,
) -> None:
    config = load_lp_sim_config(CONFIG_A)
    assert config.lp.statement_dir == ""
    assert statement_dir(config) == REPO / "var" / "lp-sim" / "LPX1" / "statements"
    moved = load_lp_sim_config(CONFIG_A, data_dir=str(tmp_path / "d"))
    assert statement_dir(moved) == tmp_path / "d" / "statements"
    flagged = load_lp_sim_config(CONFIG_A, statements="here")  # as given: the cwd's
    assert statement_dir(flagged) == Path("here")
    # the SimulatedLp inside writes none of its own
    assert simulated_settings(config).statement_dir == ""


def test_the_lp_sim_statement_dir_setting_is_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "lp" / "sim.toml"
    path.parent.mkdir()
    path.write_text(_with_lp_setting(CONFIG_A.read_text(), 'statement_dir = "books"'))
    config = load_lp_sim_config(path)
    assert statement_dir(config) == tmp_path / "lp" / "books"
    assert statement_dir(load_lp_sim_config(path, statements="/abs")) == Path("/abs")


def test_the_lp_sim_refuses_a_statement_dir_in_simulated_and_an_empty_flag() -> None:
    text = CONFIG_A.read_text().replace("seed = 11", 'seed = 11\nstatement_dir = "x"', 1)
    with pytest.raises(ConfigError) as refused:
        parse_lp_sim_config(text, statements="")
    assert refused.value.errors == [
        "simulated.statement_dir: not used by lp-sim, which writes its statement "
        "to lp.statement_dir (or --statements)",
        "--statements: must not be empty",
    ]


# --------------------------------------------------------------------------------------
# fixgw lp-sim over FIX


class LpSim:
    """A ``python -m gateway lp-sim`` process with its statement in ``statements``."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "data"
        self.statements = tmp / "statements"
        self.log_path = tmp / "lp.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> LpSim:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "gateway", "lp-sim", "--config", str(CONFIG_A)]
        cmd += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        cmd += ["--statements", str(self.statements)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)
        # the port is bound before the signal handlers are set: a SIGTERM
        # before "lp_sim_started" would end it as a signal does, not as a stop
        deadline = time.monotonic() + 20
        while b"lp_sim_started" not in self.log_path.read_bytes()[offset:]:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "lp-sim did not start in 20 s"
            time.sleep(0.02)  # polling, with the deadline above
        return self

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def statement_rows(self) -> list[list[str]]:
        """Every line of every statement file (their dates checked), headers left out."""
        found: list[list[str]] = []
        for path in sorted(self.statements.glob("LPX1-*.csv")):
            header, *lines = rows(path)
            assert header == HEADER.split(",")
            date = path.stem.removeprefix("LPX1-")
            assert all(line[0].replace("-", "") == date for line in lines)
            found += lines
        return found


@pytest.fixture
def lp_sim(tmp_path: Path) -> Iterator[LpSim]:
    lp = LpSim(tmp_path).start()
    yield lp
    assert lp.stop() == 0, lp.log_path.read_text(errors="replace")


@asynccontextmanager
async def gateway(port: int) -> AsyncIterator[FixClient]:
    c = FixClient(SessionSettings(SenderCompID="GATEWAY", TargetCompID="LPX1", ResetOnLogon=True))
    await c.connect("127.0.0.1", port)
    try:
        yield c
    finally:
        if c.logged_on:
            await c.logout()
        else:
            c.abort()


def new_order(
    cl_ord_id: str, side: str, qty: str, symbol: str = "EUR/USD", price: str | None = None
) -> bytes:
    fields = [(11, cl_ord_id), (38, qty), (40, "1" if price is None else "2")]
    if price is not None:
        fields.append((44, price))
    fields += [(54, side), (55, symbol), (59, "3")]
    fields.append((60, codec.format_utc_timestamp(time.time()).decode()))
    return codec.encode_fields((tag, value.encode()) for tag, value in fields)


async def fill_reports(c: FixClient, *cl_ord_ids: bytes) -> list[FixMessage]:
    """The fill reports of the orders ``cl_ord_ids``, as they arrive, once
    every one of those orders has had its final report."""
    fills = []
    open_orders = set(cl_ord_ids)
    while open_orders:
        msg = await c.receive(5.0)
        if msg.msg_type != b"8" or msg.get(11) not in open_orders:
            continue
        if msg.get(150) == b"F":
            fills.append(msg)
        if msg.get(39) in (b"2", b"4", b"8"):
            open_orders.discard(msg.get(11) or b"")
    return fills


def expected_row(report: FixMessage) -> list[str]:
    """The statement line of a fill report, from the report alone."""

    def text(tag: int) -> str:
        return (report.get(tag) or b"").decode()

    at = datetime.strptime(text(60), "%Y%m%d-%H:%M:%S.%f")
    side = {"1": "BUY", "2": "SELL"}[text(54)]
    return [
        at.strftime("%Y-%m-%d"),
        at.strftime("%Y-%m-%dT%H:%M:%S.") + text(60)[-3:] + "Z",
        text(17),
        text(11),
        text(37),
        text(55),
        side,
        text(32),
        text(31),
    ]


async def statement_lines(lp: LpSim, count: int, deadline: float = 10.0) -> list[list[str]]:
    """The statement once it holds ``count`` lines (written by the LP's timer)."""
    end = time.monotonic() + deadline
    while len(found := lp.statement_rows()) < count:
        assert time.monotonic() < end, f"{len(found)} of {count} lines after {deadline:g} s"
        await asyncio.sleep(0.05)  # polling, with the deadline above
    return found


@pytest.mark.asyncio
async def test_the_lp_sim_statement_is_its_fill_reports(lp_sim: LpSim) -> None:
    fills: list[FixMessage] = []
    async with gateway(lp_sim.port) as c:
        # 600 lots take two levels of 500: two fills
        c.send(b"D", new_order("S1", "1", "600000"))
        c.send(b"D", new_order("S2", "2", "0.005", symbol="BTC/USD"))
        c.send(b"D", new_order("S3", "1", "1000", price="0.50000"))  # last look: rejected
        c.send(b"D", new_order("S4", "2", "2000", price="0.90000"))  # a limit below the bid
        fills += await fill_reports(c, b"S1", b"S2", b"S3", b"S4")
        assert [r.get(11) for r in fills] == [b"S1", b"S1", b"S2", b"S4"]
        # written by the timer while the LP runs
        assert await statement_lines(lp_sim, len(fills)) == [expected_row(r) for r in fills]

    # a restart goes on with the day's file: no second header
    assert lp_sim.stop() == 0
    lp_sim.start()
    async with gateway(lp_sim.port) as c:
        c.send(b"D", new_order("S5", "2", "1000", symbol="USD/JPY"))
        fills += await fill_reports(c, b"S5")
    assert lp_sim.stop() == 0  # and whatever is buffered is written at shutdown
    assert lp_sim.statement_rows() == [expected_row(r) for r in fills]
    assert len({row[2] for row in lp_sim.statement_rows()}) == len(fills)
    lp_sim.start()  # for the fixture, which stops it
