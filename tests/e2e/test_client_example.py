"""The README's client example (``examples/send_order.py``) against ``fixgw
run`` on the default configuration: it prints a fill every time it runs,
not only the first; and a client that neither keeps a store nor resets is
told why its Logon is refused."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from buildkit import ROOT
from netkit import log_events

from config import SessionSettings
from config.loader import default_config_path
from gateway.net.client import FixClient, LogonError

EXAMPLE = ROOT / "examples" / "send_order.py"


async def run_example(port: int) -> tuple[int, list[str], str]:
    """Exit code, stdout lines and stderr of one run of the example."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode()


@pytest.mark.asyncio
async def test_the_example_prints_a_fill_run_after_run(daemon_factory: Any) -> None:
    d = daemon_factory("--config", str(default_config_path())).start()
    cl_ord_ids = set()
    for _ in range(2):
        code, lines, err = await run_example(d.fix_port)
        assert code == 0, (lines, err)
        assert lines[0] == f"logged on to 127.0.0.1:{d.fix_port} as CLIENT1"
        assert lines[1].startswith("sent EX-")
        assert lines[1].endswith(": buy 1000 EUR/USD at market")
        cl_ord_ids.add(lines[1].split()[1])
        reports = lines[2:-1]
        assert reports[0].startswith("ExecType=0 (New) OrdStatus=0 (New)")
        fills = [line for line in reports if line.startswith("ExecType=F (Trade)")]
        assert fills, lines
        assert "OrdStatus=2 (Filled)" in reports[-1]
        assert reports[-1].endswith("CumQty=1000")
        assert lines[-1] == "logged out"
    assert len(cl_ord_ids) == 2
    # each run logged out in a handshake the gateway saw, with nothing amiss
    events = log_events(d.log_text())
    assert [e["event"] for e in events].count("logout_received") == 2
    assert not [e for e in events if e["event"] == "session_error"]


@pytest.mark.asyncio
async def test_a_refused_logon_says_why_in_the_gateways_words(daemon_factory: Any) -> None:
    d = daemon_factory("--config", str(default_config_path())).start()
    code, lines, err = await run_example(d.fix_port)
    assert code == 0, (lines, err)
    # a client without a store that does not reset starts at 1 again: too low
    c = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    with pytest.raises(LogonError) as refused:
        await c.connect("127.0.0.1", d.fix_port)
    text = "MsgSeqNum too low, expecting 4 but received 1"  # after Logon, order, Logout
    assert refused.value.text == text
    assert str(refused.value) == (
        f"logon to 127.0.0.1:{d.fix_port} as CLIENT1 -> GATEWAY refused: {text}"
    )
    # the example, which resets, still gets in
    code, lines, err = await run_example(d.fix_port)
    assert code == 0, (lines, err)
    assert any(line.startswith("ExecType=F (Trade)") for line in lines), lines
