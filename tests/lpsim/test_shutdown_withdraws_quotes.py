"""``fixgw lp-sim`` stopping (SIGTERM): the docs say the gateways still
logged on receive the withdrawal of the quotes (X deletes) before every
session is logged out."""

from __future__ import annotations

from pathlib import Path

import pytest
from netkit import free_port
from test_lp_sim import CONFIG_A, md_request

from config import SessionSettings
from gateway.net.client import FixClient
from gateway.sim.lp_sim_config import load_lp_sim_config
from gateway.sim.lp_sim_main import LpSimulator


@pytest.mark.asyncio
async def test_a_stop_sends_the_quote_withdrawal_before_the_logout(tmp_path: Path) -> None:
    config = load_lp_sim_config(
        CONFIG_A, data_dir=str(tmp_path / "data"), statements=str(tmp_path / "st")
    )
    simulator = LpSimulator(config)
    port = await simulator.start(free_port())
    c = FixClient(SessionSettings(SenderCompID="GATEWAY", TargetCompID="LPX1", ResetOnLogon=True))
    try:
        await c.connect("127.0.0.1", port)
        c.send(b"V", md_request(b"MD1", b"1", b"EUR/USD"))
        assert (await c.receive()).msg_type == b"W"
        assert (await c.receive(10)).msg_type == b"X"
        # an update was just sent: the next paced one would come 10 s later,
        # long after the Logout, whatever the machine's speed
        simulator.application.market_data._interval = 10.0
        await simulator.stop()
        await c.wait_closed()
    finally:
        c.abort()
    after = []
    while not c.messages.empty():
        msg = c.messages.get_nowait()
        if msg.msg_type == b"X":
            after.append(msg)
    deletes = [m for m in after if {v for t, v in m.fields if t == 279} == {b"2"}]
    assert deletes, "no X withdrawing the quotes reached the gateway before its Logout"
