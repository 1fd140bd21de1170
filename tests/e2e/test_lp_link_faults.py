"""Faults of the FIX link between ``fixgw run`` and its LPs, every party a
real process (or, for a link that goes silent, a relay in this process)
over loopback: an LP that refuses the gateway's Logon, an LP that goes
silent after logging on, and a SIGTERM of the gateway while child orders
are held at an LP."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events
from prometheus_client.parser import text_string_to_metric_families
from test_crash_recovery import FINAL, SETTINGS, Ledger, admin, until_every_lp_quotes
from test_fix_lp_recovery import accepted_at
from test_fix_lps import (
    LpSim,
    children_in_flight,
    fix_lp_units,
    gateway_config,
    lp_sim_config,
    lp_state,
    order,
    run_orders,
    wait_until,
)

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.events import LoggedOut
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient


def lp_session(lp: str) -> str:
    """The gateway's session id of its link to ``lp``."""
    return f"FIX.4.4:GATEWAY->{lp}"


def set_lp_settings(config: Path, lp: str, **settings: str) -> None:
    """Set keys of ``lp``'s ``[lps.settings]`` in a gateway config (values
    written as TOML), replacing those already there."""
    text = config.read_text()
    table = re.search(rf'(?ms)^name = "{lp}".*?^\[lps\.settings\]\n(.*?)(?=^\[)', text)
    assert table is not None, f"no [lps.settings] of {lp}"
    body = table.group(1)
    for key, value in settings.items():
        body, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", body)
        if not found:
            body = f"{key} = {value}\n{body}"
    config.write_text(text[: table.start(1)] + body + text[table.end(1) :])


def without_lp(config: Path, lp: str) -> None:
    """Remove ``lp``'s ``[[lps]]`` table from a gateway config."""
    text = config.read_text()
    cut, found = re.subn(rf'(?ms)^\[\[lps\]\]\nname = "{lp}".*?(?=^\[(?!lps\.))', "", text)
    assert found == 1, f"no [[lps]] table of {lp}"
    config.write_text(cut)


def set_routing(config: Path, **settings: str) -> None:
    """Set keys of a gateway config's ``[routing]`` (each set there once)."""
    text = config.read_text()
    for key, value in settings.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert found == 1, key
    config.write_text(text)


def readyz(http_port: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of ``/readyz`` (503 while no LP is up)."""
    url = f"http://127.0.0.1:{http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def lp_up_metric(http_port: int) -> dict[str, float]:
    """``fixgw_lp_up`` per LP, from ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        sample.labels["lp"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fixgw_lp_up"
    }


def events(log: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The JSON events named ``event`` of a log, with ``fields`` as given."""
    return [
        e
        for e in log_events(log)
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


# --- a Logon the LP refuses --------------------------------------------------------


@pytest.mark.asyncio
async def test_an_lp_refusing_the_logon_is_down_retried_and_routed_around(
    daemon_factory: Any, tmp_path: Path
) -> None:
    # LPX1 wants a username and password; the gateway is configured with
    # the wrong password. LPX2 fills every child in full.
    a_config = lp_sim_config(tmp_path, "a")
    text = a_config.read_text()
    text = text.replace(
        'TargetCompID = "GATEWAY"\n',
        'TargetCompID = "GATEWAY"\nUsername = "gw"\nPassword = "lp-secret"\n',
    )
    a_config.write_text(text)
    b_config = lp_sim_config(tmp_path, "b", price_tolerance_ticks="20")
    a = LpSim(a_config, tmp_path / "lpx1", tmp_path / "lpx1.log").start()
    b = LpSim(b_config, tmp_path / "lpx2", tmp_path / "lpx2.log").start()
    try:
        config = gateway_config(tmp_path, a, b)
        set_lp_settings(
            config, "LPX1", username='"gw"', password='"not-the-secret"', connect_timeout_ms="500"
        )
        d = daemon_factory("--config", str(config)).start()
        session = lp_session("LPX1")

        # polling, with a deadline: until the gateway has been refused twice,
        # each time with the LP's words in its log, and LPX1 counted two
        # refused Logons: the gateway keeps retrying
        def refused_twice() -> bool:
            told = events(d.log_path, "logout_received", session=session)
            refused = events(a.log, "logon_refused", reason="Invalid username or password")
            return len(told) >= 2 and len(refused) >= 2

        await wait_until(refused_twice, timeout=15)
        for told in events(d.log_path, "logout_received", session=session):
            assert told["text"] == "Invalid username or password"
        # and a warning that names the LP
        warned = events(d.log_path, "lp_logon_refused", lp="LPX1")
        assert warned
        assert {w["text"] for w in warned} == {"Invalid username or password"}
        assert {w["level"] for w in warned} == {"warning"}

        # LPX1 is down everywhere the gateway says so; LPX2 is up
        await wait_until(lambda: readyz(d.http_port)[0] == 200, timeout=15)
        lps = lp_state(d.http_port)
        assert lps["LPX1"]["up"] is False
        assert lps["LPX2"]["up"] is True
        assert lp_up_metric(d.http_port) == {"LPX1": 0.0, "LPX2": 1.0}
        _, ready = readyz(d.http_port)
        assert ready["detail"].endswith("LPs up: LPX2"), ready
        assert not events(d.log_path, "lp_status", lp="LPX1", up=True)

        # a client order is routed to LPX2 and fills in full
        client = FixClient(SETTINGS, MemoryStore())
        await client.connect("127.0.0.1", d.fix_port)
        await until_every_lp_quotes(client, fix_lp_units(config, b))
        reports = await run_orders(client, {"R1": order("R1", b"1", b"100000")})
        final = reports["R1"][-1]
        assert final.get(39) == b"2", final
        assert final.get(14) == b"100000", final
        lps = lp_state(d.http_port)
        assert lps["LPX1"]["child_orders"] == 0
        assert lps["LPX2"]["fills"] >= 1

        # still refused, still retried: a further Logon reaches LPX1 after the order
        count = len(events(a.log, "logon_refused"))
        await wait_until(lambda: len(events(a.log, "logon_refused")) > count, timeout=15)
        assert lp_state(d.http_port)["LPX1"]["up"] is False
        # the gateway never writes a password to its log
        assert "not-the-secret" not in d.log_text()
        await client.logout()
    finally:
        a.stop()
        b.stop()


# --- an LP link that goes silent ---------------------------------------------------


class Relayed:
    """One connection through a :class:`SilentLink`: every message the
    gateway sent on it, how many of them it had sent when the relay last
    passed it something from the LP, and whether the gateway closed it."""

    def __init__(self) -> None:
        self.sent: list[FixMessage] = []
        self.sent_when_last_passed = 0
        self.closed = threading.Event()
        self._decoder = codec.FrameDecoder(65536)

    def from_gateway(self, data: bytes) -> None:
        self._decoder.feed(data)
        while (frame := self._decoder.next_frame()) is not None:
            self.sent.append(codec.parse_frame(frame))

    def sent_since_last_passed(self) -> list[bytes]:
        """The MsgTypes the gateway sent after it was last passed anything."""
        return [m.msg_type for m in self.sent[self.sent_when_last_passed :]]


class SilentLink:
    """A TCP relay in front of an LP's acceptor that can go silent: from
    then on it passes nothing either way and answers nothing, but keeps
    every connection open. A connection opened while it is silent is
    accepted and never answered. It runs in a thread of its own, so that
    nothing the test waits on holds it up."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.silent = False
        self.connections: list[Relayed] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SilentLink:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the relay did not start"
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        writers: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await self._serve(reader, writer, writers)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stop.wait()
        server.close()
        for writer in writers:
            writer.close()

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        writers: list[asyncio.StreamWriter],
    ) -> None:
        relayed = Relayed()
        self.connections.append(relayed)
        upstream: asyncio.StreamWriter | None = None
        back: asyncio.Task[None] | None = None
        if not self.silent:
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            writers.append(upstream)
            back = asyncio.create_task(self._back(up_reader, writer, relayed))
        try:
            while data := await reader.read(65536):
                relayed.from_gateway(data)
                if upstream is not None and not self.silent:
                    upstream.write(data)
        except ConnectionError:
            pass
        finally:
            relayed.closed.set()
            writer.close()
            if upstream is not None:
                upstream.close()
            if back is not None:
                back.cancel()

    async def _back(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, relayed: Relayed
    ) -> None:
        try:
            while data := await up_reader.read(65536):
                if not self.silent:
                    writer.write(data)
                    relayed.sent_when_last_passed = len(relayed.sent)
        except ConnectionError:
            pass
        # the LP closed: the gateway is told, unless the link is silent
        if not self.silent:
            writer.close()


@pytest.mark.asyncio
async def test_an_lp_link_that_goes_silent_is_dropped_and_its_child_routed_elsewhere(
    daemon_factory: Any, tmp_path: Path
) -> None:
    # LPX1 holds every child it takes for a minute, refuses none for a price
    # moved by up to 20 ticks, and logs each; the gateway reaches it through
    # a relay that will go silent, with a HeartBtInt of 2 s on that link.
    # LPX2 fills every child in full; it is started only once a child is
    # held at LPX1, so that the child can go nowhere else.
    a_config = lp_sim_config(
        tmp_path, "a", latency_ms="60000", price_tolerance_ticks="20", log_level='"debug"'
    )
    b_config = lp_sim_config(tmp_path, "b", price_tolerance_ticks="20")
    a = LpSim(a_config, tmp_path / "lpx1", tmp_path / "lpx1.log").start()
    b = LpSim(b_config, tmp_path / "lpx2", tmp_path / "lpx2.log")
    link = SilentLink(a.port).start()
    try:
        config = gateway_config(tmp_path, a, b)
        # what each LP quotes, at most (the config names LPX1 by its own port)
        units = fix_lp_units(config, a, b)
        set_lp_settings(config, "LPX1", port=str(link.port), heartbeat_interval="2")
        set_lp_settings(config, "LPX2", connect_timeout_ms="0")
        # no child is timed out while the test waits on it
        set_routing(config, internal_crossing="false", child_timeout_ms="10000")
        d = daemon_factory("--config", str(config)).start()
        await wait_until(lambda: lp_state(d.http_port)["LPX1"]["up"], timeout=15)
        client = FixClient(SETTINGS, MemoryStore())
        await client.connect("127.0.0.1", d.fix_port)
        await until_every_lp_quotes(client, units[:1])

        seen = Ledger()
        client.send(b"D", order("H1", b"1", b"100000"))
        # polling, with a deadline: until LPX1 holds the order's child
        await wait_until(
            lambda: len(accepted_at(a)) == 1 and children_in_flight(d.http_port)["LPX1"] == 1,
            timeout=15,
        )
        (held,) = accepted_at(a)
        await seen.until(client, lambda: bool(seen.orders), "the ack of H1")
        assert not seen.ended(b"H1")

        b.start()
        await wait_until(lambda: lp_state(d.http_port)["LPX2"]["up"], timeout=15)
        await until_every_lp_quotes(client, units)

        first = link.connections[0]
        link.silent = True
        # the gateway asks with a TestRequest, then drops the link
        assert await asyncio.to_thread(first.closed.wait, 15), "the link was not dropped"
        asked = first.sent_since_last_passed()
        assert b"1" in asked, asked
        ended = events(d.log_path, "session_ended", session=lp_session("LPX1"))
        assert ended[-1]["reason"] == "timed out waiting for heartbeat"
        await wait_until(lambda: not lp_state(d.http_port)["LPX1"]["up"])
        assert lp_up_metric(d.http_port)["LPX1"] == 0.0

        # the child held at LPX1 is ended; the order fills at LPX2
        await seen.until(client, lambda: seen.ended(b"H1"), "the end of H1")
        (order_id,) = seen.orders
        known = seen.orders[order_id]
        assert known.last is not None
        assert known.last.get(39) == b"2", known.last
        assert known.cum == 100000
        assert held.rsplit(".", 1)[0].encode() == order_id
        assert children_in_flight(d.http_port) == {"LPX1": 0, "LPX2": 0}

        # an order sent now goes to LPX2 only, and fills
        reports = await run_orders(client, {"H2": order("H2", b"2", b"100000")})
        assert reports["H2"][-1].get(39) == b"2", reports["H2"][-1]
        lps = lp_state(d.http_port)
        assert lps["LPX1"]["child_orders"] == 1
        assert lps["LPX1"]["up"] is False

        # LPX1 canceled the child it held once its side of the link died
        await wait_until(lambda: bool(events(a.log, "gateway_logged_out")), timeout=15)
        assert events(a.log, "gateway_logged_out")[-1]["canceled_on_disconnect"] == 1
        await client.logout()
    finally:
        link.close()
        a.stop()
        b.stop()


# --- SIGTERM with children in flight -----------------------------------------------


def gtc_limit(cl_ord_id: str, side: bytes, qty: bytes, price: bytes) -> bytes:
    fields = [(11, cl_ord_id.encode()), (38, qty), (40, b"2"), (44, price), (54, side)]
    fields += [(55, b"EUR/USD"), (59, b"1"), (60, codec.format_utc_timestamp(0.0))]
    return codec.encode_fields(fields)


class FinalsLedger(Ledger):
    """A :class:`Ledger` that also keeps every final ExecutionReport, by
    ClOrdID, and whether it came before the client was logged out."""

    def __init__(self) -> None:
        super().__init__()
        self.finals: dict[bytes, list[tuple[FixMessage, bool]]] = {}
        self.logged_out = False

    def take(self, msg: FixMessage) -> None:
        super().take(msg)
        if msg.msg_type == b"8" and msg.get(150) != b"I" and msg.get(39) in FINAL:
            key = msg.get(11) or b""
            self.finals.setdefault(key, []).append((msg, not self.logged_out))


async def until_exited(proc: subprocess.Popen[bytes], deadline: float) -> int:
    """The exit status of ``proc``; fails when it runs past ``deadline``
    seconds (the loop keeps running meanwhile, for the client's Logout)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while proc.poll() is None:
        if loop.time() > end:
            pytest.fail(f"still running {deadline:g} s after SIGTERM")
        await asyncio.sleep(0.05)  # polling, with the deadline above
    return proc.returncode


@pytest.mark.asyncio
async def test_sigterm_with_children_held_at_an_lp_ends_them_and_restarts_clean(
    daemon_factory: Any, tmp_path: Path
) -> None:
    # one LP, which holds every child it takes for a minute (and refuses
    # none for a price moved by up to 20 ticks)
    a_config = lp_sim_config(
        tmp_path, "a", latency_ms="60000", price_tolerance_ticks="20", log_level='"debug"'
    )
    a = LpSim(a_config, tmp_path / "lpx1", tmp_path / "lpx1.log").start()
    try:
        config = gateway_config(tmp_path, a, a)
        without_lp(config, "LPX2")
        set_routing(config, internal_crossing="false", child_timeout_ms="10000")
        data = tmp_path / "data"
        d = daemon_factory("--config", str(config), data_dir=data).start()
        await wait_until(lambda: lp_state(d.http_port)["LPX1"]["up"], timeout=15)
        store = MemoryStore()
        client = FixClient(SETTINGS, store)
        await client.connect("127.0.0.1", d.fix_port)
        await until_every_lp_quotes(client, fix_lp_units(config, a))

        # three market orders, whose children LPX1 holds, and a limit order
        # far from the market, which rests at the gateway
        seen = FinalsLedger()
        markets = [b"M1", b"M2", b"M3"]
        for i, cl_ord_id in enumerate(markets):
            client.send(b"D", order(cl_ord_id.decode(), b"1" if i % 2 else b"2", b"100000"))
        client.send(b"D", gtc_limit("REST", b"1", b"50000", b"1.00000"))
        # polling, with a deadline: until every order is acknowledged and
        # LPX1 holds a child of each market order
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not (len(seen.orders) == 4 and len(accepted_at(a)) == len(markets)):
            seen.drain(client)
            if loop.time() > deadline:
                pytest.fail(f"{len(seen.orders)} orders acked, {len(accepted_at(a))} held")
            await asyncio.sleep(0.05)  # polling, with the deadline above
        assert children_in_flight(d.http_port)["LPX1"] == len(markets)
        held = accepted_at(a)
        assert {c.rsplit(".", 1)[0].encode() for c in held} == {
            seen.by_cl_ord_id[c] for c in markets
        }
        assert not any(seen.ended(c) for c in [*markets, b"REST"])

        # SIGTERM: the daemon logs the client out (guarantees.md, "A clean
        # stop") and exits 0 within the 10 s Daemon.stop would wait
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        await client.wait_closed(timeout=15)
        seen.drain(client)
        seen.logged_out = True
        assert client.session.peer_logout_text == b"Gateway shutting down"
        assert [e for e in client.events if isinstance(e, LoggedOut)]
        assert await until_exited(d.proc, 10) == 0
        d.stop()
        # the client answered the Logout: its session ended cleanly
        (ended,) = events(d.log_path, "session_ended", session="FIX.4.4:GATEWAY->CLIENT1")
        assert ended["reason"] == "logout"
        assert events(d.log_path, "gateway_stopped")
        # the link to LPX1 went down with the stop: the children held there
        # ended ("lp disconnected"), found no other LP, and the orders were
        # canceled (lps-over-fix.md)
        assert events(d.log_path, "lp_status", lp="LPX1", up=False, reason="lp disconnected")
        empty = events(d.log_path, "route_empty", attempt=1)
        assert sorted(e["cl_ord_id"].encode() for e in empty) == markets
        # LPX1 was logged out of, and canceled the children it held
        (out,) = events(a.log, "gateway_logged_out")
        assert out["reason"] == "logout"
        assert out["canceled_on_disconnect"] == len(markets)
        # a Logout exchanged after a logon is no refusal
        assert not events(d.log_path, "lp_logon_refused")
        for lp_order_id in held.values():
            (finished,) = events(a.log, "order_finished", order_id=lp_order_id)
            assert finished["status"] == "CANCELED"
            assert finished["cum_qty"] == 0

        # restart on the same data: the resting order is back, nothing else
        # is open; the children ended in the stop are asked about at LPX1
        d2 = daemon_factory("--config", str(config), data_dir=data).start()
        await wait_until(lambda: lp_state(d2.http_port)["LPX1"]["up"], timeout=15)
        (recovered,) = events(d2.log_path, "orders_recovered")
        assert recovered["open"] == 1
        assert recovered["routings"] == 0
        assert recovered["children_to_check"] == len(markets)
        client = FixClient(SETTINGS, store)
        await client.connect("127.0.0.1", d2.fix_port)
        await seen.until(
            client, lambda: all(seen.ended(c) for c in markets), "the end of the market orders"
        )
        # everything the daemon had for the client has arrived by its answer
        await seen.through(client, "MARK")
        for cl_ord_id in markets:
            # exactly one final report: canceled, unfilled, sent before the
            # stop ended; one the client missed is resent (PossDupFlag)
            (final, before_logout) = only(seen.finals[cl_ord_id])
            assert final.get(39) == b"4", final
            assert final.get(14) == b"0", final
            assert before_logout or final.get(43) == b"Y", final
            assert seen.orders[seen.by_cl_ord_id[cl_ord_id]].cum == 0
        assert b"REST" not in seen.finals
        open_orders = admin(d2.http_port, "/admin/orders?client=CLIENT1")
        assert [(o["cl_ord_id"], o["status"]) for o in open_orders] == [("REST", "new")]
        exposures = admin(d2.http_port, "/admin/exposures")
        assert exposures["clients"].get("CLIENT1", {}).get("EUR/USD", "0") == "0"
        assert exposures["lps"].get("LPX1", {}).get("EUR/USD", "0") == "0"
        # nothing was sent to LPX1 again, and nothing it said was a surprise
        assert accepted_at(a) == held
        surprises = ("lp_report_for_unknown_child", "fill_for_unknown_child", "lp_fill_after_drop")
        assert not [e for e in log_events(d2.log_path) if e.get("event") in surprises]
        await client.logout()
    finally:
        a.stop()


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]
