"""The independent load client frames and encodes FIX as the reference
library does, and measures what it claims against its own responder and a
running gateway: every order answered, counted once (timings are printed,
never asserted)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import simplefix
from netkit import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "independent_load.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("independent_load", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["independent_load"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


load = load_script()


def reference(msg_type: str, seq: int, ts: str, *fields: tuple[int, str]) -> bytes:
    msg = simplefix.FixMessage()
    msg.append_pair(8, "FIX.4.4", header=True)
    msg.append_pair(35, msg_type, header=True)
    msg.append_pair(34, seq, header=True)
    msg.append_pair(49, "CLIENT1", header=True)
    msg.append_pair(52, ts, header=True)
    msg.append_pair(56, "GATEWAY", header=True)
    for tag, value in fields:
        msg.append_pair(tag, value)
    return msg.encode()


def test_encode_matches_the_reference_library() -> None:
    ts = "20261205-21:00:00.123"
    mine = load.encode(
        b"D", 7, b"CLIENT1", b"GATEWAY", ts.encode(), b"11=A1\x0138=1000\x0154=1\x01"
    )
    assert mine == reference("D", 7, ts, (11, "A1"), (38, "1000"), (54, "1"))


def test_frames_split_anywhere_and_garbage_skipped() -> None:
    one = reference("8", 1, "20261205-21:00:00.000", (11, "A1"), (39, "2"))
    two = reference("8", 2, "20261205-21:00:00.001", (11, "A2"), (39, "0"))
    stream = b"noise" + one + two
    for cut in range(len(stream) + 1):
        buf = bytearray()
        frames = []
        for chunk in (stream[:cut], stream[cut:]):
            buf += chunk
            while (frame := load.next_frame(buf)) is not None:
                frames.append(frame)
        assert frames == [one, two], cut
        assert not buf
    parser = simplefix.FixParser()
    parser.append_buffer(one)
    parsed = parser.get_message()
    assert parsed is not None
    assert load.field_of(one, b"11") == parsed.get(11) == b"A1"
    assert load.field_of(one, b"39") == parsed.get(39) == b"2"
    assert load.field_of(one, b"58") is None


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def runs_of(stdout: str) -> dict[str, list[str]]:
    lines = [line.split() for line in stdout.splitlines() if " offered " in line]
    return {" ".join(words[: words.index("offered")]): words for words in lines}


def test_paced_run_against_its_own_responder_and_a_gateway(daemon_factory: object) -> None:
    d = daemon_factory().start()  # type: ignore[operator]
    done = run("--port", str(d.fix_port), "--rate", "500", "--duration", "0.4")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_of(done.stdout)
    assert set(runs) == {"responder (own)", "gateway"}
    for words in runs.values():
        assert words[words.index("done") + 1] == "200"  # every order sent is answered once
        assert words[words.index("rejected") + 1] == "0"
    assert "x the own responder's" in done.stdout.splitlines()[-1]


def test_max_run_against_the_projects_responder() -> None:
    done = run("--no-gateway", "--max", "--duration", "0.2", "--responder", "project")
    assert done.returncode == 0, done.stdout + done.stderr
    words = runs_of(done.stdout)["responder (project)"]
    assert words[words.index("done") + 1] == "8,000"  # 40,000/s for 0.2 s, all answered


def test_no_gateway_listening_is_one_line() -> None:
    port = free_port()
    done = run("--port", str(port), "--rate", "10", "--duration", "0.1")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"nothing listens on 127.0.0.1:{port}: start the gateway first (fixgw run)"
    )
