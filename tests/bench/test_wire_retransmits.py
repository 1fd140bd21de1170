"""The wire capture takes each direction's bytes once, by TCP sequence
number: a segment the kernel sends again (a retransmit after a loss, a
probe) neither moves an order's send time to the later copy nor puts its
bytes in the stream twice.  Packets are handed to the capture's own reader
from a made-up socket: no packet socket, no root."""

from __future__ import annotations

import socket
import struct

from test_wire import CLIENT, GATEWAY, order, report, wire


def packet(sport: int, dport: int, seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    """An Ethernet-framed IPv4 TCP segment as ``lo`` shows it."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0,
                     b"\x7f\0\0\x01", b"\x7f\0\0\x01")  # fmt: skip
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload


class Packets:
    """Stands for the packet socket: hands out the packets given, each
    going out of ``lo`` and stamped at the time given."""

    def __init__(self, packets: list[tuple[float, bytes]]) -> None:
        self.packets = list(packets)

    def recvmsg_into(
        self, buffers: list[bytearray], ancbufsize: int
    ) -> tuple[int, list[tuple[int, int, bytes]], int, tuple[str, int, int, int, bytes]]:
        stamp, data = self.packets.pop(0)
        buffers[0][: len(data)] = data
        sec = int(stamp)
        nsec = round((stamp - sec) * 1e9)
        stamped = [(socket.SOL_SOCKET, wire.SO_TIMESTAMPNS, struct.pack("qq", sec, nsec))]
        return len(data), stamped, 0, ("lo", 0x0800, wire.PACKET_OUTGOING, 1, b"")


def capture(packets: list[tuple[float, bytes]]) -> list[tuple[float, float]]:
    matcher = wire.Matcher(GATEWAY)
    sock = Packets(packets)
    while sock.packets:
        wire._take(sock, matcher, False)
    return [(round(sent, 4), round(latency, 4)) for sent, latency, _ in matcher.done]


def test_an_order_sent_again_is_timed_from_its_first_sending() -> None:
    a1 = order("A1")
    # A1 leaves at 10.0; its copy is lost on the way in, and TCP sends it
    # again at 10.2 (the retransmission timeout); answered at 10.21
    got = capture(
        [
            (10.0, packet(CLIENT, GATEWAY, 1000, a1)),
            (10.2, packet(CLIENT, GATEWAY, 1000, a1)),
            (10.21, packet(GATEWAY, CLIENT, 5000, report("A1", "2"))),
        ]
    )
    assert got == [(10.0, 0.21)]


def test_bytes_sent_again_with_new_ones_are_taken_once() -> None:
    a1, a2 = order("A1"), order("A2")
    r1, r2 = report("A1", "2"), report("A2", "2")
    got = capture(
        [
            (1.0, packet(CLIENT, GATEWAY, 1000, a1)),
            # the tail of A1 again, with A2 behind it
            (1.1, packet(CLIENT, GATEWAY, 1000 + 20, a1[20:] + a2)),
            (1.2, packet(GATEWAY, CLIENT, 7000, r1[:30])),
            # the answers' stream: its first 30 bytes again, then the rest and A2's
            (1.3, packet(GATEWAY, CLIENT, 7000, r1 + r2)),
        ]
    )
    assert got == [(1.0, 0.3), (1.1, 0.2)]


def test_a_new_connection_on_the_same_ports_is_numbered_afresh() -> None:
    got = capture(
        [
            (1.0, packet(CLIENT, GATEWAY, 1000, order("A1"))),
            (1.1, packet(GATEWAY, CLIENT, 5000, report("A1", "2"))),
            (1.2, packet(CLIENT, GATEWAY, 1000 + len(order("A1")), b"", flags=0x11)),  # FIN
            (1.2, packet(GATEWAY, CLIENT, 5000 + len(report("A1", "2")), b"", flags=0x11)),
            # the next connection's numbers start below the last one's
            (2.0, packet(CLIENT, GATEWAY, 99, b"", flags=0x02)),  # SYN
            (2.0, packet(GATEWAY, CLIENT, 499, b"", flags=0x12)),  # SYN-ACK
            (2.1, packet(CLIENT, GATEWAY, 100, order("B1"))),
            (2.3, packet(GATEWAY, CLIENT, 500, report("B1", "2"))),
        ]
    )
    assert got == [(1.0, 0.1), (2.1, 0.2)]


def test_a_gap_in_the_numbers_starts_the_direction_afresh() -> None:
    a1, a2 = order("A1"), order("A2")
    got = capture(
        [
            (1.0, packet(CLIENT, GATEWAY, 1000, a1[:30])),  # up to its ClOrdID
            # the rest of A1 never seen by the capture; A2 comes whole after it
            (1.1, packet(CLIENT, GATEWAY, 1000 + len(a1), a2)),
            (1.2, packet(GATEWAY, CLIENT, 5000, report("A1", "2"))),
            (1.3, packet(GATEWAY, CLIENT, 5000 + len(report("A1", "2")), report("A2", "2"))),
        ]
    )
    assert got == [(1.1, 0.2)]  # A2's; A1's head is not taken for A2
