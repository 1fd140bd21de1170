"""``kill -9`` of the daemon under load, then a restart on the same data
directory: every order a client saw acknowledged is back, in exactly the
state the client was told, and exposure is rebuilt exactly."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from netkit import with_day_end_away

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dev-admin-token"
FINAL = (b"2", b"4", b"8", b"C")
SETTINGS = SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY")


def crash_config(tmp_path: Path) -> Path:
    """The default config with LPs that answer after a few milliseconds, fill
    in parts and reject some children (so that children are in flight when
    the daemon dies), quotes that move often, and no internal crossing (so
    that every fill a client sees is booked against an LP); its trading day
    ends at no hour the test may run at."""
    text = with_day_end_away((REPO / "config" / "default.toml").read_text())
    text = re.sub(r"(?m)^latency_ms = 0 .*$", "latency_ms = 5", text)
    text = re.sub(r"(?m)^partial_fill_probability = .*$", "partial_fill_probability = 0.3", text)
    text = re.sub(r"(?m)^reject_probability = .*$", "reject_probability = 0.1", text)
    text = re.sub(r"(?m)^quote_interval_ms = .*$", "quote_interval_ms = 20", text)
    text = re.sub(r"(?m)^internal_crossing = .*$", "internal_crossing = false", text)
    assert "latency_ms = 5" in text
    assert "internal_crossing = false" in text
    path = tmp_path / "crash.toml"
    path.write_text(text)
    return path


def admin(http_port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


def ready(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2):
            return True
    except OSError:
        return False


async def until_ready(http_port: int) -> None:
    for _ in range(200):
        if ready(http_port):
            return
        await asyncio.sleep(0.05)  # polling, 10 s at most
    raise TimeoutError("daemon not ready")


def eur_usd_lot(config: dict[str, Any]) -> Decimal:
    """The EUR/USD lot size of a parsed config file."""
    (lot,) = [i["lot_size"] for i in config["instruments"] if i["symbol"] == "EUR/USD"]
    return Decimal(lot)


def simulated_lp_units(config_path: Path) -> list[Decimal]:
    """What each simulated LP of a daemon config quotes of EUR/USD on a side,
    at most, in units."""
    config = tomllib.loads(config_path.read_text())
    lot = eur_usd_lot(config)
    return [
        lp["settings"]["depth_levels"] * lp["settings"]["level_qty_lots"] * lot
        for lp in config["lps"]
        if lp.get("enabled", True)
    ]


async def until_every_lp_quotes(
    client: FixClient, per_lp: list[Decimal], deadline: float = 15.0
) -> None:
    """Ask the daemon for EUR/USD snapshots until each side of its book holds
    more than all the LPs but one could quote: then every LP is in it.
    ``per_lp``: what each LP quotes on a side at most, in units."""
    beyond = sum(per_lp) - min(per_lp)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    sides: dict[bytes, Decimal] = {}
    for n in range(1, 1_000_000):
        md_req_id = b"BOOK%d" % n
        fields = [(262, md_req_id), (263, b"0"), (264, b"0"), (265, b"1"), (267, b"2")]
        fields += [(269, b"0"), (269, b"1"), (146, b"1"), (55, b"EUR/USD")]
        client.send(b"V", codec.encode_fields(fields))
        while True:
            try:
                msg = await client.receive(timeout=max(end - loop.time(), 0.001))
            except TimeoutError:
                pytest.fail(f"no EUR/USD snapshot within {deadline:g} s")
            if msg.msg_type in (b"W", b"Y") and msg.get(262) == md_req_id:
                break
        assert msg.msg_type == b"W", msg
        sides = {b"0": Decimal(0), b"1": Decimal(0)}
        kind = b""
        for tag, value in msg.fields:
            if tag == 269:
                kind = value
            elif tag == 271:
                sides[kind] += Decimal(value.decode())
        if min(sides.values()) > beyond:
            return
        if loop.time() > end:
            break
        await asyncio.sleep(0.05)  # polling, with the deadline above
    pytest.fail(f"the book is not quoted by every LP within {deadline:g} s: {sides}, {per_lp}")


def new_order(cl_ord_id: str, i: int) -> bytes:
    """A mix: market IOC, limits near the market that rest and may become
    marketable, and limits far from it that rest until canceled."""
    side = b"1" if i % 2 else b"2"
    kind = i % 5
    fields = [(11, cl_ord_id.encode()), (38, b"%d000" % (1 + i % 7))]
    if kind == 0:
        fields += [(40, b"1"), (54, side), (55, b"EUR/USD"), (59, b"3")]
    elif kind in (1, 2):
        price = b"1.08502" if side == b"1" else b"1.08498"
        fields += [(40, b"2"), (44, price), (54, side), (55, b"EUR/USD"), (59, b"0")]
    else:
        price = b"1.00000" if side == b"1" else b"1.20000"
        fields += [(40, b"2"), (44, price), (54, side), (55, b"EUR/USD"), (59, b"1")]
    fields.append((60, codec.format_utc_timestamp(0.0)))
    return codec.encode_fields(fields)


@dataclass
class SeenOrder:
    """What the client learnt of one order (by OrderID) from its reports."""

    side: bytes
    cl_ord_ids: list[bytes] = field(default_factory=list)
    fills: dict[bytes, Decimal] = field(default_factory=dict)  # ExecID -> LastQty
    last: FixMessage | None = None

    @property
    def cum(self) -> Decimal:
        return sum(self.fills.values(), Decimal(0))


class Ledger:
    """Every ExecutionReport the client received, folded per OrderID."""

    def __init__(self) -> None:
        self.orders: dict[bytes, SeenOrder] = {}
        self.by_cl_ord_id: dict[bytes, bytes] = {}
        # ClOrdID -> (status answer, cum quantity the client knew when it came)
        self.status_answers: dict[bytes, tuple[FixMessage, Decimal]] = {}
        # ClOrdID -> the OrdStatus of the last report the client had when the
        # status answer came (a child in flight at a crash may fill it later)
        self.status_known: dict[bytes, bytes | None] = {}
        self.refused: dict[bytes, FixMessage] = {}
        self.cancel_rejects: dict[bytes, FixMessage] = {}  # by the request's ClOrdID

    def take(self, msg: FixMessage) -> None:
        cl_ord_id = msg.get(11) or b""
        if msg.msg_type == b"9":
            self.cancel_rejects[cl_ord_id] = msg
            return
        if msg.msg_type != b"8":
            return
        if msg.get(150) == b"I":
            known = self.orders.get(self.by_cl_ord_id.get(cl_ord_id, b""))
            self.status_answers[cl_ord_id] = (msg, known.cum if known else Decimal(-1))
            last = known.last if known is not None else None
            self.status_known[cl_ord_id] = last.get(39) if last is not None else None
            return
        if msg.get(150) == b"8":
            self.refused[cl_ord_id] = msg  # a new order refused, never acknowledged
            return
        order_id = msg.get(37) or b""
        seen = self.orders.setdefault(order_id, SeenOrder(msg.get(54) or b""))
        if cl_ord_id not in seen.cl_ord_ids:
            seen.cl_ord_ids.append(cl_ord_id)
        self.by_cl_ord_id[cl_ord_id] = order_id
        if msg.get(150) == b"F":
            seen.fills[msg.get(17) or b""] = Decimal((msg.get(32) or b"0").decode())
        seen.last = msg

    def drain(self, client: FixClient) -> None:
        while not client.messages.empty():
            self.take(client.messages.get_nowait())

    async def until(
        self, client: FixClient, done: Callable[[], bool], what: str, deadline: float = 15.0
    ) -> None:
        """Take messages until ``done()`` holds; fail naming ``what`` when it
        does not within ``deadline`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while not done():
            try:
                self.take(await client.receive(timeout=max(end - loop.time(), 0.001)))
            except TimeoutError:
                pytest.fail(f"not within {deadline:g} s: {what}")

    async def through(self, client: FixClient, mark: str) -> None:
        """Take everything the daemon sent before its answer to a status
        request sent now: it answers a session's messages in order."""
        cl_ord_id = mark.encode()
        client.send(b"H", codec.encode_fields([(11, cl_ord_id), (54, b"1"), (55, b"EUR/USD")]))
        await self.until(client, lambda: cl_ord_id in self.status_answers, f"the answer to {mark}")

    def ended(self, cl_ord_id: bytes) -> bool:
        """The order ``cl_ord_id`` is final, as far as the client knows."""
        seen = self.orders.get(self.by_cl_ord_id.get(cl_ord_id, b""))
        return seen is not None and seen.last is not None and seen.last.get(39) in FINAL

    def position(self) -> Decimal:
        """The client's signed EUR/USD position in units, from its fills."""
        total = Decimal(0)
        for seen in self.orders.values():
            total += seen.cum if seen.side == b"1" else -seen.cum
        return total


def assert_positions_match(http_port: int, seen: Ledger) -> None:
    """The daemon's position for CLIENT1 is the sum of the fills the client
    was told of, and every lot of it is held against an LP."""
    exposures = admin(http_port, "/admin/exposures")
    client_units = Decimal(exposures["clients"].get("CLIENT1", {}).get("EUR/USD", "0"))
    assert client_units == seen.position()
    lp_units = sum(
        (Decimal(by.get("EUR/USD", "0")) for by in exposures["lps"].values()), Decimal(0)
    )
    assert lp_units == client_units


def checkpoint_every_mib(config: Path) -> None:
    text = re.sub(
        r"(?m)^journal_checkpoint_mb = .*$", "journal_checkpoint_mb = 1", config.read_text()
    )
    assert "journal_checkpoint_mb = 1\n" in text
    config.write_text(text)


@pytest.fixture
def crash_setup(tmp_path: Path) -> Path:
    return crash_config(tmp_path)


@pytest.mark.asyncio
@pytest.mark.parametrize("checkpoints", ["default", "every MiB", "every MiB, one taken"])
async def test_kill_9_under_load_then_restart_loses_no_acknowledged_order(
    daemon_factory: Any,
    tmp_path: Path,
    crash_setup: Path,
    checkpoints: str,
    request: pytest.FixtureRequest,
) -> None:
    if checkpoints != "default":
        # checkpoints written a slice a turn all through the run, orders
        # coming in between the slices: the kill comes once one has
        # started (maybe while its slices are written, its tail is copied,
        # or after its swap), or once one has been taken whole
        checkpoint_every_mib(crash_setup)
    mark = "checkpointed" if checkpoints == "every MiB, one taken" else "checkpoint_started"
    data = tmp_path / "data"
    d = daemon_factory("--config", str(crash_setup), data_dir=data).start()
    await until_ready(d.http_port)
    store = MemoryStore()  # the client's own session state outlives its connection
    client = FixClient(SETTINGS, store)
    request.addfinalizer(client.abort)  # closed however the test ends
    await client.connect("127.0.0.1", d.fix_port)
    # quotes from every LP reach the book
    await until_every_lp_quotes(client, simulated_lp_units(crash_setup))
    seen = Ledger()
    if checkpoints == "every MiB, one taken":
        # a state of some 3,000 resting orders: a checkpoint of it takes
        # many slices, the orders below coming in between them
        for i in range(3000):
            client.send(b"D", new_order(f"R{i}", 5 * i + 3))
            if i % 100 == 99:
                await asyncio.sleep(0.02)  # pacing
                seen.drain(client)

    # orders, cancels and replaces at about 2,000 messages a second; the
    # daemon is killed in the middle of it
    far: list[bytes] = []
    for i in range(3000):
        cl_ord_id = f"N{i}"
        client.send(b"D", new_order(cl_ord_id, i))
        if i % 5 in (3, 4):
            far.append(cl_ord_id.encode())
        if i % 10 == 9 and far:
            target = far.pop(0)
            order_id = seen.by_cl_ord_id.get(target)
            if order_id is not None:
                side = seen.orders[order_id].side
                if i % 20 == 19:
                    fields = [(11, b"X%d" % i), (38, b"9000"), (40, b"2"), (41, target)]
                    fields += [(44, b"1.00001" if side == b"1" else b"1.19999")]
                    fields += [(54, side), (55, b"EUR/USD"), (60, b"20260101-00:00:00")]
                    client.send(b"G", codec.encode_fields(fields))
                    far.append(b"X%d" % i)
                else:
                    fields = [(11, b"C%d" % i), (38, b"1000"), (41, target), (54, side)]
                    fields += [(55, b"EUR/USD"), (60, b"20260101-00:00:00")]
                    client.send(b"F", codec.encode_fields(fields))
        if i % 20 == 19:
            await asyncio.sleep(0.01)  # pacing: about 2,000 messages a second
            seen.drain(client)
        due = i >= 700 and i % 20 == 19
        if due and (checkpoints == "default" or mark in d.log_text()):
            d.kill9()
            break
    else:
        raise AssertionError("no checkpoint was started")
    await client.wait_closed()
    seen.drain(client)
    acknowledged_before = set(seen.orders)
    assert len(acknowledged_before) > 100

    # restart on the same data: the client logs on with its numbers and
    # gets what it missed through the normal resend
    d2 = daemon_factory("--config", str(crash_setup), data_dir=data).start()
    await until_ready(d2.http_port)
    client = FixClient(SETTINGS, store)
    request.addfinalizer(client.abort)
    await client.connect("127.0.0.1", d2.fix_port)
    # what it missed is resent before anything it asks now is answered
    await seen.through(client, "MARK-RESENT")
    assert "orders_recovered" in d2.log_text()

    # every order the client saw acknowledged is known, in one consistent state
    asked = []
    for order_id in acknowledged_before:
        order = seen.orders[order_id]
        fields = [(11, order.cl_ord_ids[-1]), (37, order_id), (54, order.side)]
        fields += [(55, b"EUR/USD")]
        client.send(b"H", codec.encode_fields(fields))
        asked.append(order.cl_ord_ids[-1])
    await seen.until(
        client,
        lambda: all(cl_ord_id in seen.status_answers for cl_ord_id in asked),
        f"answers to all {len(asked)} status requests",
    )
    for order_id in acknowledged_before:
        order = seen.orders[order_id]
        answered = seen.status_answers.get(order.cl_ord_ids[-1])
        assert answered is not None, f"no status for {order.cl_ord_ids}"
        answer, cum_known = answered
        assert answer.get(58) != b"Unknown order", f"{order.cl_ord_ids} lost"
        assert answer.get(37) == order_id
        # its cumulative quantity is exactly the fills the client was told of
        cum = Decimal((answer.get(14) or b"").decode())
        assert cum == cum_known, order.cl_ord_ids
        assert cum <= Decimal((answer.get(38) or b"0").decode())
        # final as the client knew it when the answer came: final alike
        known_status = seen.status_known[order.cl_ord_ids[-1]]
        if known_status in FINAL:
            assert answer.get(39) == known_status, order.cl_ord_ids
        assert order.last is not None

    # cancel what still works, so that no fill is on its way while the
    # positions are compared: the orders acknowledged before the kill, and
    # those the restarted gateway took from the client's resend (their
    # New reports came before the answer to MARK-RESENT)
    still_open = [
        order
        for order in seen.orders.values()
        if order.last is not None and order.last.get(39) not in FINAL
    ]
    for n, order in enumerate(still_open):
        fields = [(11, b"END%d" % n), (38, b"1000"), (41, order.cl_ord_ids[-1])]
        fields += [(54, order.side), (55, b"EUR/USD"), (60, b"20260101-00:00:00")]
        client.send(b"F", codec.encode_fields(fields))
    # each one ended, or its cancel was refused (it had ended already)
    await seen.until(
        client,
        lambda: all(
            seen.ended(order.cl_ord_ids[0]) or b"END%d" % n in seen.cancel_rejects
            for n, order in enumerate(still_open)
        ),
        f"the end of the {len(still_open)} orders still open",
    )
    # and every report sent before now read
    await seen.through(client, "MARK-END")

    # exposure rebuilt exactly
    assert_positions_match(d2.http_port, seen)

    # new orders go on with OrderIDs of the new run, and an old ClOrdID is
    # still a duplicate
    client.send(b"D", new_order("AFTER-1", 0))
    old = seen.orders[next(iter(acknowledged_before))].cl_ord_ids[0]
    client.send(b"D", new_order(old.decode(), 1))
    await seen.until(
        client,
        lambda: b"AFTER-1" in seen.by_cl_ord_id and old in seen.refused,
        "the answers to AFTER-1 and to the reused ClOrdID",
    )
    after = seen.by_cl_ord_id.get(b"AFTER-1")
    assert after is not None
    assert after not in acknowledged_before
    assert seen.refused[old].get(103) == b"6"  # duplicate ClOrdID
    await client.logout()


@pytest.mark.asyncio
async def test_resting_orders_outlive_a_clean_stop(daemon_factory: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = daemon_factory(data_dir=data).start()
    store = MemoryStore()
    client = FixClient(SETTINGS, store)
    await client.connect("127.0.0.1", d.fix_port)
    seen = Ledger()
    client.send(b"D", new_order("REST-1", 3))  # a GTC limit far from the market
    await seen.until(
        client,
        lambda: b"REST-1" in seen.by_cl_ord_id or b"REST-1" in seen.refused,
        "the answer to REST-1",
    )
    (order_id,) = seen.orders
    await client.logout()
    assert d.stop() == 0

    d2 = daemon_factory(data_dir=data).start()
    client = FixClient(SETTINGS, store)
    await client.connect("127.0.0.1", d2.fix_port)
    client.send(b"H", codec.encode_fields([(11, b"REST-1"), (54, b"1"), (55, b"EUR/USD")]))
    await seen.until(client, lambda: b"REST-1" in seen.status_answers, "the status of REST-1")
    answer, _ = seen.status_answers[b"REST-1"]
    assert (answer.get(37), answer.get(39), answer.get(59)) == (order_id, b"0", b"1")
    # and it still rests: a cancel ends it
    fields = [(11, b"REST-1-X"), (38, b"4000"), (41, b"REST-1"), (54, b"1"), (55, b"EUR/USD")]
    client.send(b"F", codec.encode_fields([*fields, (60, b"20260101-00:00:00")]))
    await seen.until(
        client,
        lambda: seen.ended(b"REST-1") or b"REST-1-X" in seen.cancel_rejects,
        "the answer to the cancel of REST-1",
    )
    last = seen.orders[order_id].last
    assert last is not None
    assert (last.get(150), last.get(39)) == (b"4", b"4")
    await client.logout()


def checkpoint_events(log: str) -> tuple[int, int, list[int]]:
    """Checkpoints started, and ended (written or failed), by a daemon's log;
    and the size each written one left the journal at."""
    started = ended = 0
    sizes = []
    for line in log.splitlines():
        if '"order_journal_checkpoint_started"' in line:
            started += 1
        elif '"order_journal_checkpointed"' in line:
            ended += 1
            sizes.append(int(json.loads(line)["bytes_after"]))
        elif '"order_journal_checkpoint_failed"' in line:
            ended += 1
    return started, ended, sizes


def taking_every_order(config: Path) -> None:
    """Up to 40,000 open orders a client, none shed however late the
    machine works them."""
    text = config.read_text()
    for setting, value in (("max_open_orders", 40000), ("shed_after_ms", 0)):
        text, count = re.subn(rf"(?m)^{setting} = \d+\b", f"{setting} = {value}", text, count=1)
        assert count == 1, setting
    config.write_text(text)


def acknowledged(seen: Ledger, cl_ord_id: str) -> Callable[[], bool]:
    """Whether the client was told of order ``cl_ord_id``'s acceptance."""
    return lambda: cl_ord_id.encode() in seen.by_cl_ord_id


def far_limit(cl_ord_id: str, i: int) -> bytes:
    """A GTC limit for 1,000 EUR/USD far from the market, a buy or a sell."""
    side, price = (b"1", b"1.00000") if i % 2 else (b"2", b"1.20000")
    fields = [(11, cl_ord_id.encode()), (38, b"1000"), (40, b"2"), (44, price), (54, side)]
    fields += [(55, b"EUR/USD"), (59, b"1"), (60, codec.format_utc_timestamp(0.0))]
    return codec.encode_fields(fields)


@pytest.mark.asyncio
async def test_a_state_past_the_checkpoint_bound_is_not_written_again_at_every_turn(
    daemon_factory: Any, crash_setup: Path, request: pytest.FixtureRequest
) -> None:
    """With more resting orders than ``journal_checkpoint_mb`` holds, a
    checkpoint leaves the journal past its bound: the next one waits until
    the journal has grown again, rather than following every batch."""
    checkpoint_every_mib(crash_setup)
    taking_every_order(crash_setup)
    d = daemon_factory("--config", str(crash_setup)).start()
    client = FixClient(SETTINGS, MemoryStore())
    request.addfinalizer(client.abort)
    await client.connect("127.0.0.1", d.fix_port)
    seen = Ledger()
    # some 16,000 limits far from the market: their states pass 1 MiB
    resting = [f"REST-{i}" for i in range(16000)]
    for i, cl_ord_id in enumerate(resting):
        client.send(b"D", far_limit(cl_ord_id, i))
        if i % 100 == 99:
            await asyncio.sleep(0.02)  # pacing
            seen.drain(client)
    await seen.until(
        client,
        lambda: all(c.encode() in seen.by_cl_ord_id for c in resting),
        "the acknowledgements of the resting orders",
        deadline=120,
    )

    def settled() -> bool:
        """A checkpoint has left the journal past its bound (the state alone
        is), and none is under way."""
        started, ended, sizes = checkpoint_events(d.log_text())
        return started == ended and bool(sizes) and sizes[-1] > 1 << 20

    # more of them until a checkpoint is taken of the whole state
    for n in range(1000):
        if settled():
            break
        for i in range(20):
            client.send(b"D", far_limit(f"FILL-{n}-{i}", i))
        await seen.through(client, f"MARK-FILL-{n}")
    assert settled(), checkpoint_events(d.log_text())
    started = checkpoint_events(d.log_text())[0]
    # orders one at a time, each a batch of its own, each answered
    for i in range(20):
        more = f"MORE-{i}"
        client.send(b"D", far_limit(more, i))
        await seen.until(client, acknowledged(seen, more), f"the answer to {more}")
    await seen.through(client, "MARK-MORE")
    assert checkpoint_events(d.log_text())[0] == started, "a checkpoint followed the batches"
    await client.logout()
