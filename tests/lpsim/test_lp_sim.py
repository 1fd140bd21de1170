"""``fixgw lp-sim`` as a real process, driven over FIX as the gateway would:
market data, orders, last look, partial fills, cancels, cancel on disconnect
and sequence numbers across a restart."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import IO

import pytest
from netkit import free_port, wait_for_port

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.events import LoggedOut
from gateway.fix.store import MemoryStore, SessionStore
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
CONFIG_A = REPO / "config" / "lp-sim-a.toml"
FINAL = (b"2", b"4", b"8")


class LpSimProcess:
    """One ``python -m gateway lp-sim`` process."""

    def __init__(self, config: Path, data_dir: Path, log_path: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> LpSimProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable,
            "-m",
            "gateway",
            "lp-sim",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None
        return proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def variant(tmp: Path, name: str, **simulated: str) -> Path:
    """config/lp-sim-a.toml with some ``[simulated]`` settings replaced."""
    lines = CONFIG_A.read_text().splitlines()
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        out.append(f"{key} = {simulated.pop(key)}" if key in simulated else line)
    assert not simulated, f"not in the config: {simulated}"
    path = tmp / name
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.fixture(scope="module")
def lp_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LpSimProcess]:
    tmp = tmp_path_factory.mktemp("lp-a")
    lp = LpSimProcess(CONFIG_A, tmp / "data", tmp / "lp.log").start()
    yield lp
    assert lp.stop() == 0, lp.log_text()


@pytest.fixture(scope="module")
def lp_slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LpSimProcess]:
    """Every order is answered after 300 ms and only partly filled."""
    tmp = tmp_path_factory.mktemp("lp-slow")
    config = variant(tmp, "slow.toml", partial_fill_probability="1.0", latency_ms="300")
    lp = LpSimProcess(config, tmp / "data", tmp / "lp.log").start()
    yield lp
    assert lp.stop() == 0, lp.log_text()


HELD = "60000"
"""An LP's latency (ms) that keeps an order open for as long as any test
needs it open, however slowly the machine lets the test go on."""


@pytest.fixture(scope="module")
def lp_held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LpSimProcess]:
    """Every order is answered only after a minute: open until canceled."""
    tmp = tmp_path_factory.mktemp("lp-held")
    config = variant(tmp, "held.toml", latency_ms=HELD)
    lp = LpSimProcess(config, tmp / "data", tmp / "lp.log").start()
    yield lp
    assert lp.stop() == 0, lp.log_text()


def settings(reset: bool) -> SessionSettings:
    return SessionSettings(SenderCompID="GATEWAY", TargetCompID="LPX1", ResetOnLogon=reset)


@asynccontextmanager
async def logged_on(
    port: int, *, reset: bool = True, store: SessionStore | None = None
) -> AsyncIterator[FixClient]:
    """A gateway-side session to the LP; by default it resets the sequence
    numbers, so every test starts afresh on the shared process."""
    c = FixClient(settings(reset), store)
    await c.connect("127.0.0.1", port)
    try:
        yield c
    finally:
        if c.logged_on:
            await c.logout()
        else:
            c.abort()


def order(
    cl_ord_id: str,
    side: str = "1",
    qty: str = "1000",
    symbol: str = "EUR/USD",
    price: str | None = None,
) -> bytes:
    fields = [(11, cl_ord_id), (38, qty), (40, "1" if price is None else "2")]
    if price is not None:
        fields.append((44, price))
    fields += [(54, side), (55, symbol), (59, "3")]
    fields.append((60, codec.format_utc_timestamp(time.time()).decode()))
    return codec.encode_fields((tag, value.encode()) for tag, value in fields)


def cancel(cl_ord_id: str, orig_cl_ord_id: str, side: str = "1") -> bytes:
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (41, orig_cl_ord_id.encode()),
            (54, side.encode()),
            (55, b"EUR/USD"),
            (60, codec.format_utc_timestamp(time.time())),
        ]
    )


def md_request(md_req_id: bytes, request_type: bytes, *symbols: bytes) -> bytes:
    fields = [(262, md_req_id), (263, request_type), (264, b"5"), (265, b"1")]
    fields += [(267, b"2"), (269, b"0"), (269, b"1"), (146, b"%d" % len(symbols))]
    fields += [(55, s) for s in symbols]
    return codec.encode_fields(fields)


async def next_of(c: FixClient, *msg_types: bytes, timeout: float = 5.0) -> FixMessage:
    """The next message of one of ``msg_types`` (market data in between skipped)."""
    while True:
        msg = await c.receive(timeout)
        if msg.msg_type in msg_types:
            return msg


async def reports(c: FixClient, cl_ord_id: bytes) -> list[FixMessage]:
    """ExecutionReports of the order ``cl_ord_id`` (also under a cancel's
    ClOrdID, by OrigClOrdID) up to and including its final one."""
    found = []
    while True:
        msg = await next_of(c, b"8")
        if cl_ord_id not in (msg.get(11), msg.get(41)):
            continue
        found.append(msg)
        if msg.get(39) in FINAL:
            return found


def qty(msg: FixMessage, tag: int) -> Decimal:
    return Decimal((msg.get(tag) or b"").decode())


def logged_out(lp: LpSimProcess) -> list[dict[str, object]]:
    """The LP's ``gateway_logged_out`` log records, oldest first."""
    records = []
    for line in lp.log_text().splitlines():
        if '"gateway_logged_out"' in line:
            records.append(json.loads(line))
    return records


async def until_logged_out(lp: LpSimProcess, count: int, deadline: float = 10.0) -> None:
    """Waits until the LP has logged ``count`` gateway logouts: it has then
    dealt with the orders the gateway left open (within that loop turn)."""
    end = time.monotonic() + deadline
    while len(logged_out(lp)) < count:
        if time.monotonic() > end:
            pytest.fail(f"the LP logged no gateway logout within {deadline:g} s")
        await asyncio.sleep(0.02)  # polling, with the deadline above


def assert_report_fields(report: FixMessage) -> None:
    for tag in (6, 11, 14, 17, 37, 38, 39, 54, 55, 150, 151):
        assert report.get(tag), f"tag {tag} missing from {report!r}"


@pytest.mark.asyncio
async def test_market_data_snapshot_then_incremental_updates(lp_a: LpSimProcess) -> None:
    async with logged_on(lp_a.port) as c:
        c.send(b"V", md_request(b"MD1", b"1", b"EUR/USD"))
        snapshot = await c.receive()
        assert snapshot.msg_type == b"W"
        assert (snapshot.get(55), snapshot.get(262)) == (b"EUR/USD", b"MD1")
        prices: dict[bytes, list[Decimal]] = {b"0": [], b"1": []}
        kind = b""
        for tag, value in snapshot.fields:
            if tag == 269:
                kind = value
            elif tag == 270:
                prices[kind].append(Decimal(value.decode()))
        bids, offers = prices[b"0"], prices[b"1"]
        assert len(bids) == len(offers) == 5  # depth_levels = 5
        assert bids == sorted(bids, reverse=True)
        assert offers == sorted(offers)
        assert min(offers) - max(bids) == Decimal("0.00004")  # spread_ticks = 4
        assert {v for t, v in snapshot.fields if t == 271} == {b"500000"}  # 500 lots of 1000
        update = await c.receive()  # the mids move every 250 ms
        assert update.msg_type == b"X"
        assert update.get(262) == b"MD1"
        assert {v for t, v in update.fields if t == 279} <= {b"0", b"1", b"2"}
        assert {v for t, v in update.fields if t == 55} == {b"EUR/USD"}

        c.send(b"V", md_request(b"MD2", b"1", b"NOPE/USD"))
        reject = await next_of(c, b"Y")
        assert (reject.get(262), reject.get(281)) == (b"MD2", b"0")

        c.send(b"V", md_request(b"MD1", b"2", b"EUR/USD"))
        # an answer sent after the unsubscribe marks where updates must stop
        c.send(b"F", cancel("MARK", "NO-SUCH-ORDER"))
        while (msg := await c.receive()).msg_type != b"9":
            assert msg.msg_type == b"X"
        # a second subscription to the same symbol shows the book moving on:
        # each move it is told about would have gone to MD1 as well, in the
        # same turn, had MD1 still been subscribed
        c.send(b"V", md_request(b"MD3", b"1", b"EUR/USD"))
        seen: list[FixMessage] = []
        updates = 0
        while updates < 2:
            msg = await c.receive(10)
            seen.append(msg)
            updates += msg.msg_type == b"X" and msg.get(262) == b"MD3"
        # and everything sent before this answer has arrived
        c.send(b"F", cancel("MARK2", "NO-SUCH-ORDER"))
        while (msg := await c.receive(10)).msg_type != b"9":
            seen.append(msg)
        assert [m for m in seen if m.get(262) == b"MD1"] == [], "updates after the unsubscribe"


@pytest.mark.asyncio
async def test_market_orders_fill_in_full(lp_a: LpSimProcess) -> None:
    async with logged_on(lp_a.port) as c:
        # 600 lots: more than the 500 of the best level, so two fills
        c.send(b"D", order("M1", side="1", qty="600000"))
        found = await reports(c, b"M1")
        new, *fills = found
        assert (new.get(150), new.get(39)) == (b"0", b"0")
        assert (new.get(151), new.get(14)) == (b"600000", b"0")
        assert [f.get(150) for f in fills] == [b"F", b"F"]
        assert [f.get(39) for f in fills] == [b"1", b"2"]
        assert sum(qty(f, 32) for f in fills) == 600000
        assert (fills[-1].get(14), fills[-1].get(151)) == (b"600000", b"0")
        prices = [qty(f, 31) for f in fills]
        assert prices[1] - prices[0] == Decimal("0.00001")  # the next level up
        assert prices[0] < qty(fills[-1], 6) < prices[1]  # AvgPx
        for report in found:
            assert_report_fields(report)
            assert (report.get(11), report.get(54), report.get(55)) == (b"M1", b"1", b"EUR/USD")
            assert report.get(38) == b"600000"
        assert len({r.get(37) for r in found}) == 1
        assert len({r.get(17) for r in found}) == len(found)

        c.send(b"D", order("M2", side="2", qty="0.005", symbol="BTC/USD"))
        new, fill = await reports(c, b"M2")
        assert new.get(150) == b"0"
        assert (fill.get(150), fill.get(39), fill.get(32), fill.get(14)) == (
            b"F",
            b"2",
            b"0.005",
            b"0.005",
        )
        assert new.get(37) != found[0].get(37)


@pytest.mark.asyncio
async def test_last_look_rejects_a_limit_the_market_has_left(lp_a: LpSimProcess) -> None:
    async with logged_on(lp_a.port) as c:
        c.send(b"D", order("L1", side="1", price="0.50000"))  # far below the offer
        (reject,) = await reports(c, b"L1")
        assert_report_fields(reject)
        assert (reject.get(150), reject.get(39), reject.get(58)) == (b"8", b"8", b"price moved")
        c.send(b"D", order("L2", side="2", price="2.00000"))  # far above the bid
        (reject,) = await reports(c, b"L2")
        assert (reject.get(150), reject.get(39), reject.get(58)) == (b"8", b"8", b"price moved")
        # a limit better than the market for the LP fills, never beyond the limit
        c.send(b"D", order("L3", side="1", qty="2000", price="1.20000"))
        new, fill = await reports(c, b"L3")
        assert (new.get(150), new.get(44)) == (b"0", b"1.2")
        assert (fill.get(39), fill.get(14)) == (b"2", b"2000")
        assert qty(fill, 31) <= Decimal("1.2")


@pytest.mark.asyncio
async def test_bad_requests_are_rejected(lp_a: LpSimProcess) -> None:
    async with logged_on(lp_a.port) as c:
        c.send(b"D", order("U1", symbol="NOPE/USD"))
        (reject,) = await reports(c, b"U1")
        assert (reject.get(150), reject.get(39), reject.get(103)) == (b"8", b"8", b"1")
        assert reject.get(58) == b"Unknown symbol NOPE/USD"
        assert reject.get(37)

        c.send(b"D", order("Q1", qty="1500"))  # not a whole number of lots
        (reject,) = await reports(c, b"Q1")
        assert (reject.get(39), reject.get(103)) == (b"8", b"13")
        assert b"lot size" in (reject.get(58) or b"")

        c.send(b"F", cancel("C1", "NEVER-SENT"))
        cancel_reject = await next_of(c, b"9")
        assert cancel_reject.get(11) == b"C1"
        assert cancel_reject.get(41) == b"NEVER-SENT"
        assert (cancel_reject.get(102), cancel_reject.get(434)) == (b"1", b"1")

        status_request = codec.encode_fields([(11, b"S1"), (54, b"1"), (55, b"EUR/USD")])
        c.send(b"H", status_request)
        unknown = await next_of(c, b"8")
        assert (unknown.get(11), unknown.get(150), unknown.get(39)) == (b"S1", b"I", b"8")
        assert unknown.get(58) == b"Unknown order"

        quote_request = codec.encode_fields([(131, b"QR1"), (146, b"1"), (55, b"EUR/USD")])
        c.send(b"R", quote_request)
        business_reject = await next_of(c, b"j")
        assert (business_reject.get(372), business_reject.get(380)) == (b"R", b"3")


@pytest.mark.asyncio
async def test_partial_fill_and_remainder_cancel(lp_slow: LpSimProcess) -> None:
    async with logged_on(lp_slow.port) as c:
        c.send(b"D", order("P1", qty="10000"))
        new, fill, canceled = await reports(c, b"P1")
        assert new.get(150) == b"0"
        assert (fill.get(150), fill.get(39)) == (b"F", b"1")
        filled = qty(fill, 32)
        assert 0 < filled < 10000
        assert qty(fill, 151) == 10000 - filled
        assert (canceled.get(150), canceled.get(39), canceled.get(151)) == (b"4", b"4", b"0")
        assert qty(canceled, 14) == filled
        assert canceled.get(58) == b"ioc remainder"
        assert_report_fields(canceled)


@pytest.mark.asyncio
async def test_duplicate_clordid_and_cancel_of_an_open_order(lp_held: LpSimProcess) -> None:
    async with logged_on(lp_held.port) as c:
        c.send(b"D", order("O1", qty="5000"))
        c.send(b"D", order("O1", qty="7000"))  # still open: a minute to the answer
        duplicate = await next_of(c, b"8")
        assert (duplicate.get(11), duplicate.get(39)) == (b"O1", b"8")
        assert (duplicate.get(58), duplicate.get(38)) == (b"Duplicate ClOrdID", b"7000")
        c.send(b"F", cancel("O1-C", "O1"))
        (canceled,) = await reports(c, b"O1")
        assert (canceled.get(150), canceled.get(39)) == (b"4", b"4")
        assert (canceled.get(11), canceled.get(41)) == (b"O1-C", b"O1")
        assert (canceled.get(14), canceled.get(151), canceled.get(38)) == (b"0", b"0", b"5000")
        assert canceled.get(37) != duplicate.get(37)
        c.send(b"F", cancel("O1-C2", "O1"))  # finished: unknown
        cancel_reject = await next_of(c, b"9")
        assert (cancel_reject.get(11), cancel_reject.get(102)) == (b"O1-C2", b"1")


@pytest.mark.asyncio
async def test_orders_left_open_are_canceled_on_disconnect(lp_held: LpSimProcess) -> None:
    store = MemoryStore()
    logged_out_before = len(logged_out(lp_held))
    async with logged_on(lp_held.port, store=store) as c:
        c.send(b"D", order("G1", qty="3000"))
    # logged out with the order still open: the LP cancels it, and the
    # report reaches the gateway through its ResendRequest at the next logon
    await until_logged_out(lp_held, logged_out_before + 1)
    async with logged_on(lp_held.port, reset=False, store=store) as c:
        (canceled,) = await reports(c, b"G1")
        assert (canceled.get(150), canceled.get(39), canceled.get(14)) == (b"4", b"4", b"0")
        assert canceled.get(58) == b"cancel on disconnect"
        assert canceled.get(43) == b"Y"  # resent


@pytest.mark.asyncio
async def test_shutdown_and_restart_keep_the_session_whole(tmp_path: Path) -> None:
    """SIGTERM cancels what is open and logs the gateway out; after a restart
    on the same data directory the sequence numbers continue."""
    config = variant(tmp_path, "held.toml", latency_ms=HELD)
    lp = LpSimProcess(config, tmp_path / "data", tmp_path / "lp.log").start()
    store = MemoryStore()
    try:
        c = FixClient(settings(reset=False), store)
        await c.connect("127.0.0.1", lp.port)
        c.send(b"D", order("R1"))
        # taken in, not answered yet: the answer to a later request is here
        c.send(b"F", cancel("MARK", "NO-SUCH-ORDER"))
        await next_of(c, b"9")
        assert await asyncio.to_thread(lp.stop) == 0
        await c.wait_closed()
        assert any(isinstance(e, LoggedOut) for e in c.events)  # a Logout, not a drop
        (canceled,) = await reports(c, b"R1")  # sent before the Logout
        assert (canceled.get(150), canceled.get(39)) == (b"4", b"4")
        assert canceled.get(58) == b"lp disconnected"
        sent, expected = store.next_sender_seq, store.next_target_seq
        assert expected >= 4  # Logon, the cancel, Logout

        lp.config = CONFIG_A  # answering at once now
        lp.start()  # the same data directory
        c = FixClient(settings(reset=False), store)
        await c.connect("127.0.0.1", lp.port)
        # the LP's Logon continued its numbers, and it expected ours
        assert (store.next_sender_seq, store.next_target_seq) == (sent + 1, expected + 1)
        c.send(b"D", order("R2"))
        assert (await reports(c, b"R2"))[-1].get(39) == b"2"
        await c.logout()
    finally:
        lp.stop()
    assert "lp_sim_stopped" in lp.log_text()
