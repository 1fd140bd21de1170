"""A replace names the order's Symbol: its quantity and price are read in
that instrument's lots and ticks, so one naming another is refused."""

from __future__ import annotations

import time

import msgspec
import pytest

from config import default_config_path, load_config
from config.schema import RiskSettings
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox


def message(msg_type: bytes, body: list[tuple[int, bytes]]) -> codec.FixMessage:
    header = [(34, b"1"), (49, b"CLIENT1"), (52, b"20240101-00:00:00"), (56, b"GATEWAY")]
    raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(sorted(body)))
    return codec.parse_frame(raw)


@pytest.mark.asyncio
async def test_a_replace_naming_another_symbol_is_refused_and_the_order_stays() -> None:
    # no risk limits and no margin accounts: no price is needed
    config = msgspec.structs.replace(
        load_config(str(default_config_path())), risk=RiskSettings(), accounts={}
    )
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    flow = build_order_flow(config, sessions, None, Outbox(), time.time)
    session = sessions["CLIENT1"]
    stamp = codec.format_utc_timestamp(0.0)
    order = [
        (11, b"A1"),
        (38, b"1000"),
        (40, b"2"),
        (44, b"1.08"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (59, b"0"),
        (60, stamp),
    ]
    flow.on_message(session, message(b"D", order), time.time())
    # the same figures, with the Symbol of an instrument of other lots and ticks
    replace = [
        (11, b"A2"),
        (38, b"1000"),
        (40, b"2"),
        (41, b"A1"),
        (44, b"1.09"),
        (54, b"1"),
        (55, b"XAU/USD"),
        (60, stamp),
    ]
    flow.on_message(session, message(b"G", replace), time.time())
    seq = session.store.next_sender_seq - 1
    ((_, raw),) = session.store.get_sent(seq, seq)
    answer = codec.parse_frame(raw)
    assert answer.msg_type == b"9"
    assert (answer.get(11), answer.get(41), answer.get(39)) == (b"A2", b"A1", b"0")
    (kept,) = flow.matcher.open_of("CLIENT1")
    assert (kept.cl_ord_id, kept.qty, kept.price) == ("A1", 1, 108_000)
