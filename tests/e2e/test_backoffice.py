"""The back office end to end, every part a process of its own: ``fixgw
run`` routing to two ``fixgw lp-sim`` processes over FIX, a load client, and
``fixgw backoffice`` on the gateway's drop copy with the LPs' statements.

Trading goes on while the back office is killed (-9) and started again; it
catches up from the drop copy with nothing lost, and then the three records
agree: zero breaks, and the ledger holds exactly the journal's fills and the
LPs' statement lines.  Then the statements are tampered with, and each
fault is reported as the break it is, and nothing else."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from netkit import free_port, with_day_end_away
from pgkit import PgServer, PostgresUnavailable
from test_dashboard import chromium, dump_dom  # noqa: F401 - chromium: a fixture
from test_fix_lps import LpSim, lp_sim_config

from config import SessionSettings, load_config
from gateway.fix import codec
from gateway.net.client import FixClient
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Filled, Traded

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dev-admin-token"
HOUSE = "(house)"


class Process:
    """A ``python -m gateway ...`` process with its log."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        out = open(self.log, "ab")  # noqa: SIM115 - the process owns it until it ends
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *self.args],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def config_text(
    *,
    fix_port: int,
    drop_copy_port: int,
    http_port: int,
    bo_port: int,
    data_dir: Path,
    statements: Path,
    a: LpSim,
    b: LpSim,
    ledger: str,
) -> str:
    text = with_day_end_away((REPO / "config" / "fix-lps.toml").read_text())
    text = text.replace("port = 9901", f"port = {a.port}").replace(
        "port = 9902", f"port = {b.port}"
    )
    text = text.replace("reconnect_max_ms = 5000", "reconnect_max_ms = 500")
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "fix_port":
            line = f"fix_port = {fix_port}\ndrop_copy_port = {drop_copy_port}"
        elif key == "http_port":
            line = f"http_port = {http_port}"
        elif key == "data_dir":
            line = f'data_dir = "{data_dir}"'
        elif key == "max_notional_usd":
            continue  # US500, crossed between two clients, has no USD price here
        lines.append(line)
    text = "\n".join(lines) + "\n"
    # the back office's drop copy and its own table
    head, sep, tail = text.partition("\n[[instruments]]")
    head += (
        '\n[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "BACKOFFICE"\n'
        'ResetOnLogon = false\nApplication = "dropcopy"\n\n'
    )
    return (
        head
        + sep
        + tail
        + f"""
[backoffice]
ledger = "{ledger}"
statements_dir = "{statements}"
http_port = {bo_port}
# at normal priority: under SCHED_IDLE, other work on a busy test machine
# would hold it back for as long as it lasts (the policy is tested on its own)
idle_priority = false
grace_seconds = "1"
recon_interval_ms = 200
positions_interval_ms = 300

# lp-sim writes its statement as it trades
[backoffice.lps.LPX1]
delivery = "live"

[backoffice.lps.LPX2]
delivery = "live"
file = "LPX2-*.csv"
exec_id = "ExecID"
quantity = "Quantity"
"""
    )


def get(port: int, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def office_log(tmp_path: Path) -> str:
    return (tmp_path / "bo.log").read_text(errors="replace")


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it gives something true; an HTTP server not
    answering yet counts as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, urllib.error.URLError):
            pass
        await asyncio.sleep(0.1)  # polling, with the deadline above
    raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")


def not_quoting_us500(path: Path) -> Path:
    """The LP simulator's config at ``path`` without US500: no LP quotes it,
    so two clients' orders in it can only cross each other."""
    text = path.read_text()
    block = re.search(r'\[\[instruments\]\]\nsymbol = "US500"\n(?:[a-z_]+ = .*\n)*\n', text)
    assert block is not None, "US500 is not an instrument of the LP simulator's config"
    text = text.replace(block.group(0), "")
    text, found = re.subn(r'(?m)^US500 = ".*"\n', "", text)
    assert found == 1
    path.write_text(text)
    return path


def crossing_order(cl_ord_id: str, side: bytes) -> bytes:
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (38, b"2"),
            (40, b"2"),
            (44, b"5000.0"),
            (54, side),
            (55, b"US500"),
            (59, b"0"),
            (60, codec.format_utc_timestamp(0.0)),
        ]
    )


async def cross_two_clients(fix_port: int) -> None:
    """CLIENT1 rests a sell of US500, which no LP quotes; CLIENT2 buys at its
    price: an internal cross."""
    clients = []
    for name in ("CLIENT1", "CLIENT2"):
        settings = SessionSettings(SenderCompID=name, TargetCompID="GATEWAY", ResetOnLogon=True)
        client = FixClient(settings)
        await client.connect("127.0.0.1", fix_port)
        clients.append(client)
    seller, buyer = clients
    seller.send(b"D", crossing_order("X-SELL", b"2"))
    while (await seller.receive(timeout=10)).get(39) != b"0":
        pass
    buyer.send(b"D", crossing_order("X-BUY", b"1"))
    while (await buyer.receive(timeout=10)).get(39) != b"2":
        pass
    for client in clients:
        await client.logout()


def metrics_text(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body: bytes = r.read()
    return body


def statement_lines(folder: Path) -> dict[tuple[str, str], tuple[str, Decimal, Decimal]]:
    """(LP, ExecID) -> (side, quantity, price) of every statement line."""
    lines = {}
    for path in sorted(folder.glob("*.csv")):
        lp = path.name.split("-", 1)[0]
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                lines[(lp, row["ExecID"])] = (
                    row["Side"],
                    Decimal(row["Quantity"]),
                    Decimal(row["Price"]),
                )
    return lines


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    """A PostgreSQL server of this module's own (installed first when
    missing and the tests run as root)."""
    try:
        server = PgServer.create()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["duckdb", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The back office's ledger: a DuckDB file, or a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return f"duckdb:{tmp_path / 'ledger.duckdb'}"
    server: PgServer = request.getfixturevalue("postgres")
    name = f"ledger_{os.getpid()}_{len(os.listdir(tmp_path.parent))}"
    asyncio.run(admin_sql(server.url, f"CREATE DATABASE {name}"))
    return server.url_of(name)


async def admin_sql(url: str, statement: str) -> None:
    import asyncpg

    con = await asyncpg.connect(url, timeout=10)
    try:
        await con.execute(statement)
    finally:
        await con.close()


async def ledger_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query`` in the ledger at ``url`` (its writer stopped)."""
    if url.startswith("duckdb:"):
        import duckdb

        con = duckdb.connect(url.removeprefix("duckdb:"), read_only=True)
        try:
            return [tuple(r) for r in con.execute(query).fetchall()]
        finally:
            con.close()
    import asyncpg

    pg = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(r) for r in await pg.fetch(query)]
    finally:
        await pg.close()


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.mark.asyncio
async def test_back_office_catches_up_reconciles_and_reports_each_break(
    tmp_path: Path,
    processes: list[Any],
    daemon_factory: Any,
    ledger_url: str,
    chromium: str,  # noqa: F811 - the fixture
) -> None:
    statements = tmp_path / "statements"
    a = LpSim(
        not_quoting_us500(
            lp_sim_config(tmp_path, "a", partial_fill_probability="0.3", reject_probability="0.2")
        ),
        tmp_path / "lpx1",
        tmp_path / "lpx1.log",
        statements,
    )
    b = LpSim(
        not_quoting_us500(lp_sim_config(tmp_path, "b", price_tolerance_ticks="20")),
        tmp_path / "lpx2",
        tmp_path / "lpx2.log",
        statements,
    )
    processes += [a.start(), b.start()]
    data_dir = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    gateway = daemon_factory("--config", str(config), data_dir=data_dir)
    fix_port, http_port, bo_port = gateway.fix_port, gateway.http_port, free_port()
    config.write_text(
        config_text(
            fix_port=fix_port,
            drop_copy_port=gateway.drop_copy_port,
            http_port=http_port,
            bo_port=bo_port,
            data_dir=data_dir,
            statements=statements,
            a=a,
            b=b,
            ledger=ledger_url,
        )
    )
    gateway.start()
    await until(
        lambda: all(lp["up"] for lp in get(http_port, "/admin/lps")),
        20,
        "both LPs connected",
    )

    def back_office() -> Process:
        office = Process(["backoffice", "run", "--config", str(config)], tmp_path / "bo.log")
        processes.append(office)
        return office.start()

    office = back_office()
    await until(
        lambda: get(bo_port, "/backoffice/status")["drop_copy"]["logged_on"], 20, "logged on"
    )

    # load from CLIENT1 while the back office is killed and started again
    bench = Process(
        [
            "bench",
            "--port",
            str(fix_port),
            "--http-port",
            str(http_port),
            "--rate",
            "300",
            "--duration",
            "6",
            "--no-yardstick",
        ],
        tmp_path / "bench.log",
    ).start()
    processes.append(bench)
    await until(
        lambda: get(bo_port, "/backoffice/status")["records"]["client_trades"] > 100,
        20,
        "trades stored",
    )

    def copies_sent() -> int:
        """What the gateway's drop copy to the back office has sent (or
        stored to send)."""
        sessions = {s["session"]: s for s in get(http_port, "/admin/sessions")}
        return int(sessions["FIX.4.4:GATEWAY->BACKOFFICE"]["next_sender_seq"]) - 1

    office.kill9()
    stored_before = len((tmp_path / "bo.log").read_bytes())
    # trading goes on with the back office away: copies it will have to ask for
    away_from = copies_sent()
    await until(lambda: copies_sent() >= away_from + 50, 20, "copies made while away")
    office = back_office()
    assert bench.proc is not None
    await asyncio.to_thread(bench.proc.wait, 60)
    assert bench.proc.returncode == 0, (tmp_path / "bench.log").read_text()[-3000:]
    await cross_two_clients(fix_port)

    # caught up: everything the drop copy sent is stored, and nothing is open
    def caught_up() -> bool:
        sent = copies_sent()
        status = get(bo_port, "/backoffice/status")
        return bool(
            status["drop_copy"]["last_seq_stored"] >= sent - 1  # a heartbeat may follow
            and status["records"]["pending"] == 0
            and status["records"]["breaks"] == 0
        )

    await until(caught_up, 30, "the back office caught up with zero breaks")
    # it asked the gateway for what it missed
    assert b"sequence_gap" in (tmp_path / "bo.log").read_bytes()[stored_before:]
    full = get(bo_port, "/backoffice/recon", method="POST")
    assert (full["breaks"], full["pending"]) == (0, 0)
    breaks = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "backoffice", "breaks", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert breaks.stdout.startswith("0 break(s)"), breaks.stdout
    treasury = get(bo_port, "/backoffice/treasury")
    assert {row["holder"] for row in treasury["positions"]["lps"]} == {"LPX1", "LPX2"}
    assert treasury["settlement"], "net settlement amounts per counterparty"

    # the page shows the same, in a browser
    page = await asyncio.to_thread(
        dump_dom,
        chromium,
        f"http://127.0.0.1:{bo_port}/backoffice/#token={TOKEN}",
        tmp_path / "profile",
    )
    assert 'id="break-count" class="ok">none<' in page, page[:3000]
    for holder in ("LPX1", "LPX2", "CLIENT1", "CLIENT2"):
        assert f"<td>{holder}</td>" in page

    # stopped as an operator stops it, logged on: it ends cleanly, and once
    # started again it holds what it held
    before_stop = len((tmp_path / "bo.log").read_bytes())
    assert office.stop() == 0
    said = (tmp_path / "bo.log").read_bytes()[before_stop:]
    assert b"backoffice_stopped" in said, said[-3000:]
    assert b'"level":"error"' not in said, said[-3000:]
    office = back_office()
    await until(caught_up, 30, "the back office back, with zero breaks")

    # the gateway dies (kill -9: its journal keeps every fill, no checkpoint
    # replaces them) and the LPs stop; their records are complete
    gateway.kill9()
    a.stop()
    b.stop()
    original = tmp_path / "statements-as-sent"
    shutil.copytree(statements, original)
    await until(
        lambda: (
            get(bo_port, "/backoffice/status")["records"]["lp_trades"]
            == len(statement_lines(original))
        ),
        10,
        "the last statement lines read",
    )
    await until(
        # none until the back office started again has reconciled once
        lambda: (get(bo_port, "/backoffice/status")["last_run"] or {}).get("breaks") == 0,
        10,
        "zero breaks after the last lines",
    )

    # tampering: a line dropped, a price changed, a fill the house never had
    path = sorted(statements.glob("LPX2-*.csv"))[0]
    rows = path.read_text().splitlines(keepends=True)
    header, body = rows[0], rows[1:]
    assert len(body) > 20
    dropped = body.pop(5).split(",")
    repriced = body[10].split(",")
    repriced[8] = "9.99999\n"
    body[10] = ",".join(repriced)
    unknown = body[15].split(",")
    unknown[2] = "LPX2-UNKNOWN-1"
    body.append(",".join(unknown))
    path.write_text(header + "".join(body))

    def three_breaks() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = get(bo_port, "/backoffice/breaks")["breaks"]
        return found if len(found) >= 3 else []

    def runs() -> float:
        """The reconciliation runs the back office has ended (incremental)."""
        text = metrics_text(bo_port).decode()
        run = re.search(r'^fixgw_recon_runs_total\{mode="incremental"\} (\S+)$', text, re.M)
        return float(run.group(1)) if run else 0.0

    await until(three_breaks, 15, "the three breaks")
    # one more run must not add any: runs follow one another, and each is
    # counted before the breaks it found are shown, so three more counted
    # means one began after the three breaks were seen and has shown its own
    seen = runs()
    await until(lambda: runs() >= seen + 3, 15, "three more runs")
    found = get(bo_port, "/backoffice/breaks")["breaks"]
    assert sorted((b["kind"], b["ref"]) for b in found) == sorted(
        [
            ("missing_at_lp", dropped[2]),
            ("price_mismatch", repriced[2]),
            ("missing_in_house", "LPX2-UNKNOWN-1"),
        ]
    ), found
    price = next(b for b in found if b["kind"] == "price_mismatch")
    assert Decimal(price["theirs"]) == Decimal("9.99999")
    metrics = await asyncio.to_thread(metrics_text, bo_port)
    for kind in ("missing_at_lp", "price_mismatch", "missing_in_house"):
        assert f'fixgw_recon_breaks{{type="{kind}"}} 1.0'.encode() in metrics
    assert b'fixgw_recon_breaks{type="qty_mismatch"} 0.0' in metrics

    # the statement corrected: the breaks close
    shutil.copy(original / path.name, path)
    await until(lambda: get(bo_port, "/backoffice/breaks")["count"] == 0, 15, "the breaks closed")
    office.stop()
    assert office.proc is not None
    assert office.proc.returncode == 0

    # ledger = journal = statements
    house = Counter(
        (lp, exec_id, account, Decimal(qty))
        for lp, exec_id, account, qty in await ledger_rows(
            ledger_url, "SELECT lp, lp_exec_id, account, CAST(qty AS VARCHAR) FROM house_trades"
        )
    )
    clients = Counter(
        (client, symbol, side, Decimal(qty))
        for client, symbol, side, qty in await ledger_rows(
            ledger_url, "SELECT client, symbol, side, CAST(qty AS VARCHAR) FROM client_trades"
        )
    )
    crosses = await ledger_rows(
        ledger_url,
        "SELECT client, side FROM client_trades WHERE market = 'internal' ORDER BY client",
    )
    assert crosses == [("CLIENT1", -1), ("CLIENT2", 1)]
    by_exec = {
        (lp, exec_id): Decimal(qty)
        for lp, exec_id, qty in await ledger_rows(
            ledger_url,
            "SELECT lp, lp_exec_id, CAST(sum(qty) AS VARCHAR) FROM house_trades "
            "GROUP BY lp, lp_exec_id",
        )
    }
    journal = OrderJournal(data_dir / "orders")
    filled: Counter[tuple[str, str, str, Decimal]] = Counter()
    traded: Counter[tuple[str, str, int, Decimal]] = Counter()
    lot = {i.symbol: i.lot_size for i in load_config(config).instruments}
    for entry in journal.replay():
        if isinstance(entry, Filled):
            filled[(entry.lp, entry.exec_id, entry.account, entry.qty * lot[entry.symbol])] += 1
        elif isinstance(entry, Traded):
            units = entry.qty * lot[entry.symbol]
            traded[(entry.client, entry.symbol, entry.side.sign, units)] += 1
    journal.close()
    assert house == filled
    assert clients == traded
    lines = statement_lines(original)
    assert {key: qty for key, (_, qty, _) in lines.items()} == by_exec


def asked(port: int, path: str, token: str, method: str = "GET") -> tuple[int, Any]:
    """(HTTP status, JSON) of ``method path`` with ``token``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rotated_config(text: str, admin: str, read: str) -> str:
    return re.sub(
        r'(?m)^admin_token = "[^"]*"(\nread_token = "[^"]*")?',
        f'admin_token = "{admin}"\nread_token = "{read}"',
        text,
        count=1,
    )


@pytest.mark.asyncio
async def test_the_back_office_follows_a_token_rotation(
    tmp_path: Path, processes: list[Any]
) -> None:
    """The tokens are rotated in the file and the gateway reloaded: the
    back office, told nothing, meets a 401 at its next look at the
    gateway's positions, reads its tokens again from the file and goes on
    comparing; its own API takes the new tokens and refuses the old.  A
    look that keeps failing shows in its metrics and its status; SIGHUP
    reads the tokens again at once."""
    http_port, bo_port = free_port(), free_port()
    text = (REPO / "config" / "default.toml").read_text()
    for key, value in (
        ("fix_port", free_port()),
        ("drop_copy_port", free_port()),
        ("busy_poll_us", 0),
    ):
        text = re.sub(rf"(?m)^{key} = \d+", f"{key} = {value}", text, count=1)
    text = re.sub(r"(?m)^http_port = 8080", f"http_port = {http_port}", text, count=1)
    text = re.sub(r"(?m)^http_port = 8082", f"http_port = {bo_port}", text, count=1)
    text = re.sub(r'(?m)^data_dir = "[^"]*"', f'data_dir = "{tmp_path / "data"}"', text, count=1)
    text = re.sub(r"(?m)^positions_interval_ms = \d+", "positions_interval_ms = 200", text)
    # at normal priority, as above
    text, idle = re.subn(r"(?m)^idle_priority = true", "idle_priority = false", text, count=1)
    assert idle == 1
    path = tmp_path / "gw.toml"

    def write(admin: str, read: str) -> None:
        new = path.with_suffix(".new")
        new.write_text(rotated_config(text, admin, read))
        new.rename(path)

    write("old-admin", "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
    env["FIXGW_PURE_PYTHON"] = "1"
    for args, log in ((["run"], "gw.log"), (["backoffice", "run"], "bo.log")):
        processes.append(Process([*args, "--config", str(path)], tmp_path / log, env).start())

    def compared(token: str = "old-admin") -> int:
        status, body = asked(bo_port, "/backoffice/status", token)
        return int(body["positions"]["compared"]) if status == 200 else 0

    await until(compared, 60, "positions compared")

    write("new-admin", "new-reader")
    status, body = asked(http_port, "/admin/reload", "old-admin", "POST")
    assert (status, body["status"]) == (200, "applied"), body
    await until(lambda: compared("new-admin"), 30, "the new admin token taken")
    assert asked(bo_port, "/backoffice/recon", "old-admin", "POST")[0] == 401
    assert asked(bo_port, "/backoffice/status", "new-reader")[0] == 200
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "backoffice", "status", "--config", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = compared("new-admin")
    await until(lambda: compared("new-admin") > seen, 30, "positions compared again")
    events = [
        json.loads(line) for line in office_log(tmp_path).splitlines() if line.startswith("{")
    ]
    (reloaded,) = [e for e in events if e["event"] == "tokens_reloaded"]
    assert (reloaded["why"], reloaded["changed"]) == ("HTTP 401 from gateway", ["admin", "read"])
    assert "new-admin" not in office_log(tmp_path)

    office = processes[1].proc
    assert office is not None
    # told by SIGHUP, at once, with no gateway to refuse it
    processes[0].stop()
    write("third-admin", "")
    office.send_signal(signal.SIGHUP)
    await until(lambda: compared("third-admin"), 30, "the tokens read again on SIGHUP")
    assert asked(bo_port, "/backoffice/status", "new-admin")[0] == 401

    # no gateway to compare with: shown, not only logged once
    metric = 'fixgw_backoffice_positions_unavailable{gateway="gateway"} 1.0'
    await until(lambda: metric in metrics_text(bo_port).decode(), 30, "the metric")
    status, body = asked(bo_port, "/backoffice/status", "third-admin")
    (unavailable,) = body["positions"]["unavailable"].items()
    assert unavailable[0] == "gateway"
    assert "Connect" in unavailable[1]["error"]
    assert unavailable[1]["since"] > 0
