"""The daemon as a real process, driven over loopback by a FIX initiator."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events

from config import SessionSettings
from gateway.fix import codec
from gateway.net.client import FixClient
from gateway.storage.session_store import FileStore

REPO = Path(__file__).resolve().parents[2]


def client(target: str = "CLIENT1", store: Any = None, **kw: Any) -> FixClient:
    return FixClient(SessionSettings(SenderCompID=target, TargetCompID="GATEWAY", **kw), store)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def nos(cl_ord_id: str) -> bytes:
    ts = codec.format_utc_timestamp(0.0)
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (38, b"1000"),
            (40, b"1"),
            (54, b"1"),
            (55, b"EUR/USD"),
            (60, ts),
        ]
    )


ECHO_CONFIG = """
[gateway]
max_outbound_buffer = 65536
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
Application = "echo"
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT2"
Application = "echo"
"""


@pytest.fixture
def echo_config(tmp_path: Path) -> Path:
    path = tmp_path / "echo.toml"
    path.write_text(ECHO_CONFIG)
    return path


@pytest.mark.asyncio
async def test_default_config_accepts_client1_and_serves_health(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    assert c.logged_on
    status, body = await asyncio.to_thread(http_get, d.http_port, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, _ = await asyncio.to_thread(http_get, d.http_port, "/readyz")
    assert status == 200
    status, metrics = await asyncio.to_thread(http_get, d.http_port, "/metrics")
    assert 'fixgw_session_logged_on{session="FIX.4.4:GATEWAY->CLIENT1"} 1.0' in metrics
    assert 'fixgw_session_logged_on{session="FIX.4.4:GATEWAY->CLIENT2"} 0.0' in metrics
    await c.logout()
    assert d.stop() == 0
    assert "gateway_stopped" in {e["event"] for e in log_events(d.log_text())}


@pytest.mark.asyncio
async def test_unknown_comp_id_and_second_logon_are_refused(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    with pytest.raises(ConnectionError):
        await client("CLIENT9").connect("127.0.0.1", d.fix_port)
    first = client("CLIENT2")
    await first.connect("127.0.0.1", d.fix_port)
    with pytest.raises(ConnectionError):
        await client("CLIENT2").connect("127.0.0.1", d.fix_port)
    assert first.logged_on  # the live session is untouched
    await first.logout()
    reasons = {e.get("reason") for e in log_events(d.log_text())}
    assert {"unknown session", "session already connected"} <= reasons


@pytest.mark.asyncio
async def test_sequence_numbers_continue_after_clean_restart(
    daemon_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    d = daemon_factory(data_dir=data).start()
    store = FileStore(tmp_path / "client", "FIX.4.4:CLIENT3->GATEWAY")
    c = client("CLIENT3", store)
    await c.connect("127.0.0.1", d.fix_port)
    await c.logout()
    assert d.stop() == 0
    assert (store.next_sender_seq, store.next_target_seq) == (3, 3)

    d2 = daemon_factory(data_dir=data).start()
    c2 = client("CLIENT3", store)
    await c2.connect("127.0.0.1", d2.fix_port)  # a reset would make the numbers disagree
    assert c2.session.state.value == "active"
    await c2.logout()
    assert (store.next_sender_seq, store.next_target_seq) == (5, 5)
    store.close()


@pytest.mark.asyncio
async def test_kill_9_then_restart_resumes_numbers_and_resends(
    daemon_factory: Any, tmp_path: Path, echo_config: Path
) -> None:
    data = tmp_path / "data"
    d = daemon_factory("--config", str(echo_config), data_dir=data).start()
    store = FileStore(tmp_path / "client", "FIX.4.4:CLIENT1->GATEWAY")
    c = client(store=store)
    await c.connect("127.0.0.1", d.fix_port)
    echoed = []
    for i in range(3):
        c.send(b"D", nos(f"ORD-{i}"))
        echoed.append(await c.receive())
    assert [m.get(34) for m in echoed] == [b"2", b"3", b"4"]
    d.kill9()
    await c.wait_closed()

    # the client forgets it received 3 and 4: after the restart the gateway's
    # Logon shows a gap, the client asks for a resend and gets them again
    store.set_next_target_seq(3)
    store.flush()
    d2 = daemon_factory("--config", str(echo_config), data_dir=data).start()
    c2 = client(store=store)
    await c2.connect("127.0.0.1", d2.fix_port)
    resent = [await c2.receive(), await c2.receive()]
    assert [m.get(34) for m in resent] == [b"3", b"4"]
    assert all(m.get(43) == b"Y" for m in resent)
    assert [m.get(11) for m in resent] == [b"ORD-1", b"ORD-2"]
    assert [m.get(122) for m in resent] == [echoed[1].get(52), echoed[2].get(52)]
    # and the session goes on with the numbers from before the crash
    c2.send(b"D", nos("ORD-3"))
    after = await c2.receive()
    assert after.get(34) == b"6"  # 5 was the gateway's Logon
    await c2.logout()
    store.close()


@pytest.mark.asyncio
async def test_a_peer_that_stops_reading_is_dropped_without_stalling_others(
    daemon_factory: Any, echo_config: Path
) -> None:
    d = daemon_factory("--config", str(echo_config)).start()
    healthy = client("CLIENT2")
    await healthy.connect("127.0.0.1", d.fix_port)

    # a raw socket with a tiny receive window that logs on, floods orders and
    # never reads a byte of the echoes
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", d.fix_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    raw = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    raw.session.connection_made(raw.clock())
    writer.write(raw.session.data_to_send())
    while not raw.session.is_logged_on:  # read the Logon answer, and nothing after it
        raw.session.receive_data(await reader.read(1))
        while raw.session.next_event(raw.clock()) is not None or raw.session.yielded:
            pass
    padding = "X" * 400
    dropped = False
    for i in range(100_000):
        raw.session.send(b"D", nos(f"F-{i}-{padding}"), raw.clock())
        if i % 200 == 0:
            writer.write(raw.session.data_to_send())
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except (ConnectionError, TimeoutError):
                pass
            # the healthy session is served all along (how fast is measured
            # in bench/, not here)
            healthy.send(b"D", nos(f"H-{i}"))
            echo = await healthy.receive(timeout=15.0)
            assert echo.get(11) == f"H-{i}".encode()
            if any(e["event"] == "slow_consumer_disconnected" for e in log_events(d.log_text())):
                dropped = True
                break
    assert dropped, "the peer that does not read was never disconnected"
    writer.close()
    healthy.send(b"D", nos("after"))
    assert (await healthy.receive()).get(11) == b"after"
    await healthy.logout()


def test_bad_config_is_refused_at_start_with_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[gateway]\nfix_port = 70000\n[[sessions]]\nSenderCompID = "GW"\nTargetCompID = "C1"\n'
        'HeartBtInt = 0\n[[sessions]]\nSenderCompID = "GW"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "gateway.fix_port: must be <= 65535" in proc.stderr
    assert "sessions[0].HeartBtInt: must be > 0" in proc.stderr
    assert "sessions[1].TargetCompID: required field missing" in proc.stderr


def test_check_config_lists_errors_and_accepts_good_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[sessions]]\nSenderCompID = "GW"\nTargetCompID = "C1"\nMaxLatency = -1\n')
    proc = subprocess.run(
        [
            "fixgw" if Path(sys.executable).with_name("fixgw").exists() else "false",
            "check-config",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": str(Path(sys.executable).parent)},
    )
    assert proc.returncode == 1
    assert "sessions[0].MaxLatency: must be > 0" in proc.stderr
    for name in ("default.toml", "conformance.toml", "fix-lps.toml"):
        ok = subprocess.run(
            [sys.executable, "-m", "gateway", "check-config", str(REPO / "config" / name)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0, ok.stderr
        assert "OK" in ok.stdout


def test_unknown_adapter_kind_and_bad_adapter_settings_are_refused(tmp_path: Path) -> None:
    text = (REPO / "config" / "default.toml").read_text()
    first = text.index('adapter = "simulated"')
    text = (
        text[:first] + 'adapter = "carrier-pigeon"' + text[first + len('adapter = "simulated"') :]
    )
    a, b, rest = text.split("latency_ms = 0", 2)  # LP_A's, then LP_B's
    text = a + "latency_ms = 0" + b + "latency_ms = -5" + rest
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    for command in ("check-config", "run"):
        args = [str(bad)] if command == "check-config" else ["--config", str(bad)]
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", command, *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )
        assert proc.returncode == (1 if command == "check-config" else 2), proc.stderr
        assert 'lps[0].adapter: unknown LP adapter kind "carrier-pigeon"' in proc.stderr
        assert "lps[1].settings.latency_ms: must be >= 0" in proc.stderr


@pytest.mark.asyncio
async def test_repeated_failed_logons_from_an_address_are_slowed_down(
    daemon_factory: Any,
) -> None:
    d = daemon_factory().start()
    for _ in range(4):
        stranger = FixClient(SessionSettings(SenderCompID="NOBODY", TargetCompID="GATEWAY"))
        with pytest.raises(ConnectionError):
            await stranger.connect("127.0.0.1", d.fix_port, timeout=5)
    # the next connection from this address is read only after a delay, then
    # a good logon still succeeds
    c = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await c.connect("127.0.0.1", d.fix_port, timeout=10)
    await c.logout()
    assert '"logon_slowed"' in d.log_text()
