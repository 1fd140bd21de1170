"""The wire capture puts each direction's segments back together however
they are cut, matches an order to its final report by ClOrdID within its
connection, and, over a real gateway on loopback, finds every order a
client sent (timings are printed, never asserted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
GATEWAY = 9876
CLIENT = 50000


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wire", REPO / "bench" / "wire.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = load_script()


def fix(*fields: str) -> bytes:
    """A message as the capture reads it (length and checksum not checked)."""
    body = "".join(f"{f}\x01" for f in fields)
    return f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01".encode()


def order(cl: str) -> bytes:
    return fix("35=D", "34=2", f"11={cl}", "55=EUR/USD", "54=1", "38=1000", "40=1")


def report(cl: str, status: str) -> bytes:
    return fix("35=8", "34=3", f"11={cl}", "17=E1", f"39={status}", "150=F")


def test_an_order_cut_across_segments_is_matched_to_its_final_report() -> None:
    matcher = wire.Matcher(GATEWAY)
    first, second = order("A1")[:17], order("A1")[17:] + order("A2")[:5]
    matcher.segment(CLIENT, GATEWAY, True, first, 10.0)
    matcher.segment(CLIENT, GATEWAY, True, second, 10.001)  # A1 whole now
    matcher.segment(CLIENT, GATEWAY, False, order("A1"), 10.0012)  # taken in
    matcher.segment(GATEWAY, CLIENT, True, report("A1", "0"), 10.0015)  # New: not final
    matcher.segment(GATEWAY, CLIENT, True, report("A1", "2")[:9], 10.0020)
    matcher.segment(GATEWAY, CLIENT, True, report("A1", "2")[9:], 10.0030)
    (sent, latency, since) = matcher.done[0]
    assert (sent, round(latency, 7), round(since, 7)) == (10.001, 0.002, 0.0018)
    # A2's start waits for its rest; an answer seen coming in is the client's side
    matcher.segment(GATEWAY, CLIENT, False, report("A2", "2"), 10.004)
    matcher.segment(CLIENT, GATEWAY, True, order("A2")[5:], 10.005)
    matcher.segment(GATEWAY, CLIENT, True, report("A2", "8"), 10.006)
    assert [(round(s, 3), round(x, 3)) for s, x, _ in matcher.done] == [
        (10.001, 0.002),
        (10.005, 0.001),
    ]
    assert matcher.done[1][2] == -1.0  # no stamp of its taking in


def test_orders_are_matched_within_their_connection_and_unknown_answers_left() -> None:
    matcher = wire.Matcher(GATEWAY)
    matcher.segment(CLIENT, GATEWAY, True, order("X"), 1.0)
    matcher.segment(CLIENT + 1, GATEWAY, True, order("X"), 1.5)
    matcher.segment(GATEWAY, CLIENT + 1, True, report("X", "2"), 1.7)
    matcher.segment(GATEWAY, CLIENT, True, report("never-sent", "2"), 1.8)
    matcher.segment(GATEWAY, CLIENT, True, report("X", "4"), 2.0)
    assert [(s, round(x, 3)) for s, x, _ in matcher.done] == [(1.5, 0.2), (1.0, 1.0)]


def test_a_connection_that_ends_leaves_nothing_for_one_reusing_its_ports() -> None:
    matcher = wire.Matcher(GATEWAY)
    # A1 cut short after its ClOrdID, then the connection ends
    cut = order("A1")[: order("A1").index(b"55=")]
    matcher.segment(CLIENT, GATEWAY, True, cut, 1.0)
    matcher.segment(GATEWAY, CLIENT, True, report("A0", "2")[:30], 1.1)
    matcher.closed(CLIENT, GATEWAY, both=False)  # the client's FIN: its direction only
    assert list(matcher.streams) == [(GATEWAY, CLIENT, True)]
    matcher.closed(GATEWAY, CLIENT, both=True)  # a reset: both
    assert matcher.streams == {}
    # the next connection on the same ports: B1 is B1, not A1's head on B1's tail
    matcher.segment(CLIENT, GATEWAY, True, order("B1"), 2.0)
    matcher.segment(GATEWAY, CLIENT, True, report("B1", "2"), 2.5)
    assert [(s, x) for s, x, _ in matcher.done] == [(2.0, 0.5)]


def test_slow_answers_close_together_are_one_stall() -> None:
    rows = [(0.0, 0.001)] * 97 + [(1.0, 0.006), (1.002, 0.007), (2.0, 0.009)]
    assert wire.summary(rows) == (
        "100 orders  P50 1.000  P95 1.000  P99 7.000  max 9.000 ms  over 5 ms 3 in 2 stall(s)"
    )
    assert wire.window(rows, 0.5, 1.5) == [(1.0, 0.006), (1.002, 0.007)]
    assert wire.summary([]) == "no orders"


def test_a_message_cut_at_any_byte_is_read_whole() -> None:
    stream = order("A1") + report("A1", "2") + order("A2")
    for cut in range(len(stream) + 1):
        buffer = bytearray()
        got: list[bytes] = []
        for piece in (stream[:cut], stream[cut:]):
            buffer += piece
            got += wire.messages(buffer)
        assert got == [order("A1"), report("A1", "2"), order("A2")], cut
        assert not buffer


def run_filter(program: list[tuple[int, int, int, int]], frame: bytes) -> int:
    """What the kernel's classic BPF machine answers for ``frame``: the
    bytes taken (0: dropped).  Only the instructions the filter uses."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x28:  # ldh [k]
            a = int.from_bytes(frame[k : k + 2], "big")
        elif code == 0x30:  # ldb [k]
            a = frame[k]
        elif code == 0xB1:  # ldxb 4*([k]&0xf)
            x = (frame[k] & 0x0F) * 4
        elif code == 0x48:  # ldh [x+k]
            a = int.from_bytes(frame[x + k : x + k + 2], "big")
        elif code == 0x15:  # jeq #k
            pc += jt if a == k else jf
        elif code == 0x45:  # jset #k
            pc += jt if a & k else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not known here")


def frame(
    sport: int,
    dport: int,
    *,
    ethertype: int = 0x0800,
    protocol: int = 6,
    fragment: int = 0,
    options: int = 0,
) -> bytes:
    ip = bytes([0x45 + options, 0]) + (40 + 4 * options).to_bytes(2, "big") + b"\0\0"
    ip += fragment.to_bytes(2, "big") + bytes([64, protocol]) + b"\0" * 10 + b"\0" * 4 * options
    tcp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + b"\0" * 16
    return b"\0" * 12 + ethertype.to_bytes(2, "big") + ip + tcp


@pytest.mark.parametrize(
    ("packet", "taken"),
    [
        (frame(CLIENT, GATEWAY), True),
        (frame(GATEWAY, CLIENT), True),
        (frame(GATEWAY, CLIENT, options=3), True),  # IP options move the ports
        (frame(CLIENT, GATEWAY + 1), False),
        (frame(CLIENT, GATEWAY, protocol=17), False),  # UDP
        (frame(CLIENT, GATEWAY, ethertype=0x86DD), False),  # IPv6
        (frame(CLIENT, GATEWAY, fragment=0x2005), False),  # a later fragment: no ports
        (frame(CLIENT, GATEWAY, fragment=0x4000), True),  # don't fragment, whole
    ],
)
def test_the_filter_takes_the_ports_tcp_segments_in_both_directions(
    packet: bytes, taken: bool
) -> None:
    assert run_filter(wire.port_filter(GATEWAY), packet) == (wire.SNAP if taken else 0)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="a packet socket needs Linux and root",
)
def test_every_order_of_a_run_is_found_on_the_wire(daemon_factory: object) -> None:
    d = daemon_factory().start()  # type: ignore[operator]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "independent_load.py"),
            *("--port", str(d.fix_port), "--rate", "500", "--duration", "0.4"),
            *("--responder", "", "--wire"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [x.strip() for x in done.stdout.splitlines() if "on the wire" in x]
    assert [x.split(":")[0] for x in lines] == [
        "on the wire from the order sent",
        "on the wire from the order taken in",
    ]
    for x in lines:  # the 200 orders of the run, the warm-up's left out
        assert x.split(": ")[1].startswith("200 orders"), x
    assert "wire capture: 2,200 orders" in done.stderr
