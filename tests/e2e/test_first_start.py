"""What a new user meets in the first hour, with real ``fixgw`` processes:
a taken port refused in one line before anything is on disk; the data
directory of a config file that does not follow the working directory; one
log format, named events, from the first line."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from netkit import free_port, log_events, wait_for_port

from config import SessionSettings
from gateway.net.client import FixClient
from gateway.storage.session_store import FileStore

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "config" / "default.toml"
SESSIONS = (  # in the config's order
    "FIX.4.4-GATEWAY-CLIENT1",
    "FIX.4.4-GATEWAY-CLIENT2",
    "FIX.4.4-GATEWAY-CLIENT3",
    "FIX.4.4-GATEWAY-BACKOFFICE",
)
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CLIENT1 = SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY")


def gateway_config(folder: Path, *, fix_port: int, http_port: int = 0, data_dir: str) -> Path:
    """config/default.toml in ``folder`` with its ports and data directory replaced."""
    text = DEFAULT.read_text()
    for key, value in (("fix_port", fix_port), ("http_port", http_port), ("drop_copy_port", 0)):
        # the first one is [gateway]'s ([backoffice] has an http_port too)
        text, count = re.subn(rf"(?m)^{key} = \d+", f"{key} = {value}", text, count=1)
        assert count == 1
    text, count = re.subn(r'(?m)^data_dir = "[^"]*"', f'data_dir = "{data_dir}"', text)
    assert count == 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.toml"
    path.write_text(text)
    return path


def tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def fixgw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_a_taken_fix_port_is_refused_in_one_line_before_anything_is_made(
    tmp_path: Path, taken_port: int
) -> None:
    config = gateway_config(tmp_path / "etc", fix_port=taken_port, data_dir="data")
    before = tree(tmp_path)
    proc = fixgw("run", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"fixgw: cannot listen on 127.0.0.1:{taken_port} (gateway.fix_port): address already in use"
    ]
    assert proc.stdout == ""
    assert tree(tmp_path) == before  # no data directory, no store, no journal


def test_a_taken_http_port_is_named_by_the_flag_that_gave_it(
    tmp_path: Path, taken_port: int
) -> None:
    fix_port = free_port()
    config = gateway_config(tmp_path / "etc", fix_port=fix_port, data_dir="data")
    before = tree(tmp_path)
    proc = fixgw("run", "--config", str(config), "--http-port", str(taken_port), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"fixgw: cannot listen on 127.0.0.1:{taken_port} (--http-port): address already in use"
    ]
    assert tree(tmp_path) == before
    with socket.socket() as again:  # the FIX port bound first was let go
        again.bind(("127.0.0.1", fix_port))


def test_a_taken_drop_copy_port_is_named_by_the_setting_that_gave_it(
    tmp_path: Path, taken_port: int
) -> None:
    fix_port = free_port()
    config = gateway_config(tmp_path / "etc", fix_port=fix_port, data_dir="data")
    config.write_text(
        config.read_text().replace("drop_copy_port = 0", f"drop_copy_port = {taken_port}")
    )
    before = tree(tmp_path)
    proc = fixgw("run", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"fixgw: cannot listen on 127.0.0.1:{taken_port} (gateway.drop_copy_port):"
        " address already in use"
    ]
    assert tree(tmp_path) == before
    with socket.socket() as again:  # the FIX port bound first was let go
        again.bind(("127.0.0.1", fix_port))


def test_lp_sim_refuses_a_taken_port_the_same_way(tmp_path: Path, taken_port: int) -> None:
    text = (REPO / "config" / "lp-sim-a.toml").read_text()
    text = text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"', 1)
    text = text.replace('"../var/lp-sim/LPX1"', '"stores"', 1)
    config = tmp_path / "lp-sim.toml"
    config.write_text(text)
    before = tree(tmp_path)
    proc = fixgw("lp-sim", "--config", str(config), "--port", str(taken_port), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"fixgw: cannot listen on 127.0.0.1:{taken_port} (--port): address already in use"
    ]
    assert tree(tmp_path) == before


class Run:
    """One ``fixgw run`` process started from ``cwd``, its log in a file."""

    def __init__(self, cwd: Path, log: Path, *args: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._out: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", *args],
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def started(self, fix_port: int) -> Run:
        wait_for_port(fix_port, self.proc)
        deadline = time.monotonic() + 15
        while not any(e["event"] == "gateway_started" for e in self.events()):
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)  # polling, with the deadline above
        return self

    def events(self) -> list[dict[str, Any]]:
        return log_events(self.log)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        self._out.close()
        return self.proc.returncode


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(10)


def starting(run: Run) -> dict[str, Any]:
    [event] = [e for e in run.events() if e["event"] == "gateway_starting"]
    return event


@pytest.mark.asyncio
async def test_the_data_stays_with_the_config_file_wherever_fixgw_is_started(
    tmp_path: Path, runs: list[Run]
) -> None:
    fix_port = free_port()
    config = gateway_config(tmp_path / "etc", fix_port=fix_port, data_dir="state")
    data = tmp_path / "etc" / "state"
    client_store = FileStore(tmp_path / "client", "FIX.4.4:CLIENT1->GATEWAY")

    first = Run(tmp_path / "one", tmp_path / "one.log", "--config", str(config))
    runs.append(first)
    first.started(fix_port)
    client = FixClient(CLIENT1, client_store)
    await client.connect("127.0.0.1", fix_port)
    await client.logout()
    assert first.stop() == 0
    assert starting(first)["data_dir"] == str(data)
    assert starting(first)["config"] == str(config)
    created = [e["path"] for e in first.events() if e["event"] == "session_store_created"]
    assert created == [str(data / "sessions" / name) for name in SESSIONS]
    assert tree(tmp_path / "one") == []  # nothing in the working directory

    second = Run(tmp_path / "two", tmp_path / "two.log", "--config", str(config))
    runs.append(second)
    second.started(fix_port)
    opened = {e["path"]: e for e in second.events() if e["event"] == "session_store_opened"}
    assert sorted(opened) == [str(data / "sessions" / name) for name in sorted(SESSIONS)]
    assert opened[str(data / "sessions" / SESSIONS[0])]["next_sender_seq"] == 3
    assert not [e for e in second.events() if e["event"] == "session_store_created"]
    client = FixClient(CLIENT1, client_store)
    await client.connect("127.0.0.1", fix_port)  # the numbers go on: no reset, no gap
    assert client.session.state.value == "active"
    await client.logout()
    assert second.stop() == 0
    client_store.close()
    assert tree(tmp_path / "two") == []


def test_a_data_dir_given_on_the_command_line_is_the_working_directory_s(
    tmp_path: Path, runs: list[Run]
) -> None:
    fix_port = free_port()
    config = gateway_config(tmp_path / "etc", fix_port=fix_port, data_dir="state")
    run = Run(tmp_path / "here", tmp_path / "run.log", "--config", str(config), "--data-dir", "d")
    runs.append(run)
    run.started(fix_port)
    assert run.stop() == 0
    assert starting(run)["data_dir"] == str(tmp_path / "here" / "d")
    assert sorted(p.name for p in (tmp_path / "here" / "d" / "sessions").iterdir()) == sorted(
        SESSIONS
    )
    assert not (tmp_path / "etc" / "state").exists()


def test_every_line_at_start_is_a_named_json_event(tmp_path: Path, runs: list[Run]) -> None:
    fix_port = free_port()
    run = Run(
        tmp_path,
        tmp_path / "run.log",
        *("--config", str(DEFAULT), "--data-dir", str(tmp_path / "data")),
        *("--fix-port", str(fix_port), "--http-port", str(free_port()), "--drop-copy-port", "0"),
    )
    runs.append(run)
    run.started(fix_port)
    assert run.stop() == 0
    lines = run.log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    names = [e["event"] for e in events]
    assert names[0] == "gateway_starting"
    assert "session_store_created" in names
    assert names.index("gateway_started") < names.index("gateway_stopped")
    assert "order_journal_read" in names
    for event in events:
        assert {"event", "level", "logger", "timestamp"} <= set(event), event
        assert EVENT_NAME.match(event["event"]), event
    for event in events:
        if event["event"] == "session_store_created":
            assert event["logger"] == "gateway.storage.session_store"
            assert event["path"].startswith(str(tmp_path / "data" / "sessions"))


def test_data_left_where_a_relative_data_dir_used_to_point_stops_the_start(
    tmp_path: Path,
) -> None:
    """Before relative paths followed the config file, ``data_dir = "state"``
    meant the working directory's: a start that would find nothing beside
    the file while that directory holds data is refused, naming both."""
    config = gateway_config(tmp_path / "etc", fix_port=free_port(), data_dir="state")
    (tmp_path / "here" / "state" / "sessions").mkdir(parents=True)
    done = fixgw("run", "--config", str(config), "--http-port", "0", cwd=tmp_path / "here")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(tmp_path / "etc" / "state") in lines[0]
    assert str(tmp_path / "here" / "state") in lines[0]
    assert not (tmp_path / "etc" / "state").exists()


def test_an_absolute_data_dir_whose_parent_is_missing_stops_the_start(tmp_path: Path) -> None:
    """A typo in an absolute data directory's path would start on empty
    stores: it is refused in one line, nothing made; one whose parent
    exists is made."""
    missing = tmp_path / "srv" / "fixgw-prod" / "data"
    config = gateway_config(tmp_path / "etc", fix_port=free_port(), data_dir=str(missing))
    done = fixgw("run", "--config", str(config), "--http-port", "0", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"gateway.data_dir: {missing} does not exist" in lines[0]
    assert not (tmp_path / "srv").exists()


# ``fixgw run`` receiving ``signal`` while the gateway is being built (its
# stores opened, its journal read back: seconds on a long journal)
SIGNAL_WHILE_BUILT = """
import os, signal, sys
import gateway.daemon as daemon
build = daemon.build_order_flow
def build_order_flow(*args, **kwargs):
    os.kill(os.getpid(), signal.{name})
    return build(*args, **kwargs)
daemon.build_order_flow = build_order_flow
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def signalled_while_built(name: str, tmp_path: Path, fix_port: int) -> subprocess.Popen[str]:
    config = gateway_config(tmp_path / "etc", fix_port=fix_port, data_dir="data")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SIGNAL_WHILE_BUILT.format(name=name),
            "run",
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_sighup_while_the_gateway_is_built_reloads_once_it_runs(tmp_path: Path) -> None:
    fix_port = free_port()
    proc = signalled_while_built("SIGHUP", tmp_path, fix_port)
    try:
        assert proc.stdout is not None
        events: list[dict[str, Any]] = []
        for line in proc.stdout:
            events.extend(log_events(line))
            seen = {e["event"] for e in events}
            if {"config_reload_unchanged", "gateway_started"} <= seen:
                break
        assert [e["trigger"] for e in events if e["event"].startswith("config_reload")] == [
            "SIGHUP"
        ]
        with socket.create_connection(("127.0.0.1", fix_port), timeout=5):
            pass
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_a_ctrl_c_while_the_gateway_is_built_stops_it_cleanly(tmp_path: Path) -> None:
    proc = signalled_while_built("SIGINT", tmp_path, free_port())
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert [e["event"] for e in log_events(out)][-1] == "gateway_stopped"
