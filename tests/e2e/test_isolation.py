"""One client's orders are invisible and untouchable to another; a wrong
password or an unknown CompID is refused and logged, without the secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pass-8472"


@pytest.fixture
def password_config(tmp_path: Path) -> Path:
    text = (REPO / "config" / "default.toml").read_text()
    text, n = re.subn(
        r'(?m)^(TargetCompID = "CLIENT1".*)$', rf'\1\nPassword = "{PASSWORD}"', text, count=1
    )
    assert n == 1
    path = tmp_path / "password.toml"
    path.write_text(text)
    return path


def resting(cl_ord_id: bytes) -> bytes:
    fields = [(11, cl_ord_id), (38, b"1000"), (40, b"2"), (44, b"0.50000"), (54, b"1")]
    fields += [(55, b"EUR/USD"), (59, b"1"), (60, codec.format_utc_timestamp(0.0))]
    return codec.encode_fields(fields)


async def answer_to(client: FixClient, cl_ord_id: bytes) -> FixMessage:
    while True:
        msg = await client.receive(timeout=5)
        if msg.get(11) == cl_ord_id:
            return msg


@pytest.mark.asyncio
async def test_clients_cannot_reach_each_others_orders(
    daemon_factory: Any, password_config: Path
) -> None:
    d = daemon_factory("--config", str(password_config)).start()

    # wrong password, then an unknown CompID: both refused
    wrong = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    with pytest.raises(ConnectionError):
        await wrong.connect("127.0.0.1", d.fix_port)
    stranger = FixClient(SessionSettings(SenderCompID="CLIENT9", TargetCompID="GATEWAY"))
    with pytest.raises(ConnectionError):
        await stranger.connect("127.0.0.1", d.fix_port)

    one = FixClient(
        SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", Password=PASSWORD)
    )
    await one.connect("127.0.0.1", d.fix_port)
    two = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
    await two.connect("127.0.0.1", d.fix_port)

    one.send(b"D", resting(b"A1"))
    ack = await answer_to(one, b"A1")
    assert (ack.get(150), ack.get(39)) == (b"0", b"0")
    order_id = ack.get(37) or b""

    # CLIENT2 names CLIENT1's ClOrdID (and OrderID): unknown to it
    stamp = (60, codec.format_utc_timestamp(0.0))
    cancel = [(11, b"B1"), (37, order_id), (38, b"1000"), (41, b"A1"), (54, b"1")]
    two.send(b"F", codec.encode_fields([*cancel, (55, b"EUR/USD"), stamp]))
    reject = await answer_to(two, b"B1")
    assert (reject.msg_type, reject.get(102), reject.get(434)) == (b"9", b"1", b"1")
    replace = [(11, b"B2"), (37, order_id), (38, b"5000"), (40, b"2"), (41, b"A1")]
    replace += [(44, b"0.6"), (54, b"1"), (55, b"EUR/USD"), stamp]
    two.send(b"G", codec.encode_fields(replace))
    reject = await answer_to(two, b"B2")
    assert (reject.msg_type, reject.get(102), reject.get(434)) == (b"9", b"1", b"2")
    two.send(b"H", codec.encode_fields([(11, b"A1"), (37, order_id), (54, b"1"), (55, b"EUR/USD")]))
    status = await answer_to(two, b"A1")
    assert (status.get(150), status.get(39), status.get(58)) == (b"I", b"8", b"Unknown order")
    # its own A1 is a different order, not a duplicate of CLIENT1's
    two.send(b"D", resting(b"A1"))
    own = await answer_to(two, b"A1")
    assert (own.get(150), own.get(39)) == (b"0", b"0")
    assert own.get(37) != order_id

    # CLIENT1's order is untouched, and CLIENT1 heard of none of it
    one.send(b"H", codec.encode_fields([(11, b"A1"), (54, b"1"), (55, b"EUR/USD")]))
    mine = await answer_to(one, b"A1")
    assert (mine.get(150), mine.get(39), mine.get(38)) == (b"I", b"0", b"1000")
    assert mine.get(44) == b"0.5"
    assert one.messages.empty()
    await one.logout()
    await two.logout()

    log = d.log_text()
    assert "logon_refused" in log
    assert "CLIENT9" in log  # the unknown CompID is named
    assert PASSWORD not in log
    assert "dev-admin-token" not in log
