"""What one client may make the gateway hold is bounded without a word of
``[risk]`` in the config: ``max_open_orders`` (10,000) and
``max_messages_per_second`` (50,000) have built-in defaults, as
``max_id_length`` and ``max_subscriptions`` do, and a client table that
leaves them out keeps them.  Without them, a client could rest a million
orders (each held in the book, the journal and memory) or send at any rate."""

from __future__ import annotations

import pytest
from test_throttles import CONFIG, Client, flow_client, resting_fields

from config import parse_config
from config.schema import ClientRiskSettings

NO_RISK = CONFIG.replace("[risk.default]\nmax_messages_per_second = 1\n", "")
DEFAULT_OPEN = 10_000
DEFAULT_RATE = 50_000


def test_the_flow_limits_have_built_in_defaults() -> None:
    assert "[risk" not in NO_RISK
    risk = parse_config(NO_RISK).risk
    for limits in (risk.default, risk.for_client("CLIENT1"), ClientRiskSettings()):
        assert (limits.max_open_orders, limits.max_messages_per_second) == (
            DEFAULT_OPEN,
            DEFAULT_RATE,
        )
    # a client table that leaves them out keeps them
    table = parse_config(NO_RISK + "\n[risk.clients.CLIENT1]\nmax_order_qty = '5000'\n").risk
    client = table.for_client("CLIENT1")
    assert (client.max_open_orders, client.max_messages_per_second) == (DEFAULT_OPEN, DEFAULT_RATE)


@pytest.mark.asyncio
async def test_a_config_without_risk_limits_refuses_orders_past_the_default_open_orders() -> None:
    c: Client = flow_client(NO_RISK)
    for i in range(DEFAULT_OPEN):
        c.send(b"D", *resting_fields(c, b"O%d" % i))
        if i % 1000 == 999:
            c.clock.now += 1.0  # within the default rate
            assert {m.get(39) for m in c.answers()} == {b"0"}
    c.send(b"D", *resting_fields(c, b"O-OVER"))
    (reject,) = c.answers()
    assert (reject.get(11), reject.get(39), reject.get(103)) == (b"O-OVER", b"8", b"3")
    assert b"max_open_orders" in (reject.get(58) or b"")
    assert len(c.flow.matcher.open_orders("CLIENT1")) == DEFAULT_OPEN
