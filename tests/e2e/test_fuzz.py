"""Seeded fuzzing of live FIX sessions on a ``fixgw run`` process.

A fuzzing client logs on as CLIENT2 and sends frames built from valid
messages and then damaged: bytes flipped, inserted, deleted; truncated;
wrong BodyLength or CheckSum; tags and values replaced by junk; oversized
frames; plain binary junk.  When the daemon ends its connection (as FIX
says it must for some faults) the fuzzer logs on again with ResetSeqNumFlag.
Meanwhile CLIENT1 trades normally.  The daemon must stay up, never hit an
unexpected error, keep its memory bounded and keep CLIENT1's orders filling.

``FIXGW_FUZZ_FRAMES`` sets the number of frames (default 100,000); a longer
run: ``FIXGW_FUZZ_FRAMES=1000000 .venv/bin/pytest tests/e2e/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_order_flow import order

from config import SessionSettings
from gateway.fix import codec
from gateway.net.client import FixClient

FRAMES = int(os.environ.get("FIXGW_FUZZ_FRAMES", "100000"))
SEED = 20261201


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Fuzzer:
    def __init__(self, port: int, rng: random.Random) -> None:
        self.port = port
        self.rng = rng
        self.seq = 1
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.sent = 0
        self.reconnects = 0

    def frame(self, msg_type: bytes, body: bytes, seq: int | None = None) -> bytes:
        header = [(34, b"%d" % (self.seq if seq is None else seq)), (49, b"CLIENT2")]
        header += [(52, _ts()), (56, b"GATEWAY")]
        return codec.encode_message(b"FIX.4.4", msg_type, header, body)

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.seq = 1
        self.writer.write(self.frame(b"A", b"98=0\x01108=30\x01141=Y\x01"))
        self.seq = 2
        await self.writer.drain()
        self.reconnects += 1

    def valid(self) -> tuple[bytes, bytes]:
        """A valid application or session message (type, body)."""
        rng = self.rng
        cl = b"F%d" % rng.randrange(10**6)
        kind = rng.randrange(8)
        if kind == 0:
            return b"D", order(cl.decode(), side=rng.choice("12"), qty=rng.choice(["1000", "2000"]))
        if kind == 1:
            return b"F", codec.encode_fields(
                [(11, cl), (38, b"1000"), (41, b"F1"), (54, b"1"), (55, b"EUR/USD"), (60, _ts())]
            )
        if kind == 2:
            return b"H", codec.encode_fields([(11, cl), (54, b"1"), (55, b"EUR/USD")])
        if kind == 3:
            # a snapshot only: thousands of live subscriptions would turn
            # every quote into thousands of refreshes for this one session
            fields = [(262, cl), (263, b"0"), (264, b"1"), (267, b"1"), (269, b"0")]
            return b"V", codec.encode_fields([*fields, (146, b"1"), (55, b"GBP/USD")])
        if kind == 4:
            return b"1", codec.encode_fields([(112, cl)])
        if kind == 5:
            return b"0", b""
        if kind == 6 and rng.random() < 0.05:
            # rare: each one makes the daemon send its whole history again
            return b"2", codec.encode_fields([(7, b"1"), (16, b"0")])
        if kind == 6:
            return b"D", order(cl.decode(), side="2", ord_type="2", price="1.00001", tif="3")
        fields = [(11, cl), (38, b"3000"), (40, b"2"), (41, b"F2"), (44, b"1.1"), (54, b"1")]
        return b"G", codec.encode_fields([*fields, (55, b"EUR/USD"), (60, _ts())])

    def damaged(self) -> bytes:
        """One frame at the current sequence number, which moves on only
        when the frame is well formed (a garbled frame consumes none)."""
        frame, well_formed = self._damaged()
        if well_formed:
            self.seq += 1
        return frame

    def _damaged(self) -> tuple[bytes, bool]:
        rng = self.rng
        msg_type, body = self.valid()
        frame = bytearray(self.frame(msg_type, body))
        how = rng.randrange(14)
        if how > 11:
            how = 11
        if how == 11:  # well formed
            pass
        elif how == 0:  # flip bytes
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        elif how == 1:  # insert junk
            at = rng.randrange(len(frame))
            frame[at:at] = rng.randbytes(rng.randrange(1, 20))
        elif how == 2:  # delete a span
            at = rng.randrange(len(frame))
            del frame[at : at + rng.randrange(1, 20)]
        elif how == 3:  # truncated
            del frame[rng.randrange(1, len(frame)) :]
        elif how == 4:  # wrong checksum
            frame[-4:-1] = b"%03d" % ((int(frame[-4:-1]) + 1) % 256)
        elif how == 5:  # wrong body length
            frame = bytearray(frame.replace(b"\x019=", b"\x019=9", 1))
        elif how == 6:  # junk tag and value, valid framing
            junk = b"%d=%b\x01" % (
                rng.randrange(-5, 100000),
                rng.randbytes(5).replace(b"\x01", b"x"),
            )
            frame = bytearray(self.frame(msg_type, body + junk))
        elif how == 7:  # values replaced by junk, valid framing
            fields = [
                (
                    t,
                    rng.randbytes(rng.randrange(0, 8)).replace(b"\x01", b"")
                    if rng.random() < 0.3
                    else v,
                )
                for t, v in codec.parse_frame(bytes(frame)).fields[1:]
                if t not in (34, 49, 52, 56)
            ]
            frame = bytearray(self.frame(msg_type, codec.encode_fields(fields)))
        elif how == 8:  # oversized
            frame = bytearray(self.frame(msg_type, body + b"58=" + b"x" * 70000 + b"\x01"))
        elif how == 9:  # binary junk
            frame = bytearray(rng.randbytes(rng.randrange(1, 300)))
        elif how == 10 and rng.random() < 0.1:  # wrong sequence number, valid framing
            wrong = max(1, self.seq + rng.randrange(-3, 4))
            frame = bytearray(self.frame(msg_type, body, seq=wrong))
            return bytes(frame), False
        else:  # valid
            pass
        # a well-formed frame at the current number (the rare wrong-number
        # frames returned above): how 10 falls through to here when not drawn
        return bytes(frame), how in (6, 7, 10, 11)

    async def run(self, count: int) -> None:
        await self.connect()
        while self.sent < count:
            assert self.writer is not None
            assert self.reader is not None
            batch = [self.damaged() for _ in range(50)]
            try:
                self.writer.write(b"".join(batch))
                await self.writer.drain()
                # read what the daemon answers, without waiting for it
                with_timeout = asyncio.wait_for(self.reader.read(1 << 20), 0.001)
                data = await with_timeout
                if not data:
                    raise ConnectionResetError
                if b"\x0135=2\x01" in data:
                    # a ResendRequest: move the daemon on with SequenceReset-Reset,
                    # so that what follows is processed, not queued
                    self.writer.write(self.frame(b"4", b"36=%d\x01" % (self.seq + 1)))
                    self.seq += 1
            except TimeoutError:
                pass
            except (ConnectionError, OSError):
                self.writer.close()
                await self.connect()
            self.sent += len(batch)
        await self.finish()

    async def finish(self) -> None:
        """Log out and read until the daemon closes: everything sent is
        worked on (closing with answers unread would reset the connection
        and drop what the daemon had not read yet)."""
        assert self.writer is not None
        assert self.reader is not None
        self.writer.write(self.frame(b"5", b""))
        self.seq += 1
        try:
            async with asyncio.timeout(60):
                while await self.reader.read(1 << 20):
                    pass
        except (ConnectionError, OSError):
            pass
        self.writer.close()


def _ts() -> bytes:
    return codec.format_utc_timestamp(time.time())


@pytest.mark.asyncio
async def test_fuzzed_frames_never_crash_the_daemon_nor_disturb_another_session(
    daemon_factory: Any,
) -> None:
    d = daemon_factory().start()
    assert d.proc is not None
    good = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await good.connect("127.0.0.1", d.fix_port)
    rss_before = rss_kib(d.proc.pid)
    fuzzer = Fuzzer(d.fix_port, random.Random(SEED))
    fuzz = asyncio.create_task(fuzzer.run(FRAMES))
    filled = 0
    i = 0
    while not fuzz.done():
        i += 1
        good.send(b"D", order(f"G{i}", side="1" if i % 2 else "2"))
        while True:
            msg = await good.receive(timeout=10)
            if msg.get(11) == f"G{i}".encode() and msg.get(39) in (b"2", b"4", b"8"):
                break
        assert msg.get(39) == b"2", msg.get(58)
        filled += 1
        await asyncio.sleep(0.05)  # pacing: a good order every 50 ms
    await fuzz
    assert fuzzer.sent >= FRAMES
    # the fuzzed client logs on again (resetting its numbers) and trades
    # normally; its orders are counted by the order flow
    after = FixClient(
        SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY", ResetOnLogon=True)
    )
    await after.connect("127.0.0.1", d.fix_port)
    for n in range(3):
        after.send(b"D", order(f"AFTER{n}"))
        while True:
            msg = await after.receive(timeout=10)
            if msg.get(11) == f"AFTER{n}".encode() and msg.get(39) in (b"2", b"4", b"8"):
                break
        assert msg.get(39) == b"2", msg.get(58)
    await after.logout()
    metrics = await asyncio.to_thread(scrape, d.http_port)
    match = re.search(r'^fixgw_orders_received_total\{client="CLIENT2"\} (\S+)$', metrics, re.M)
    assert match is not None
    assert float(match.group(1)) >= 3
    assert d.proc.poll() is None, "the daemon died"
    assert filled >= 3
    await good.logout()
    log = d.log_text()
    assert "application_error" not in log
    assert "Traceback" not in log
    assert rss_kib(d.proc.pid) - rss_before < 200 * 1024, "memory grew by more than 200 MB"
