"""The gateway's latency as the wire shows it: the time from a
NewOrderSingle crossing the loopback interface to the gateway's final
ExecutionReport for it crossing back, both stamped by the kernel as the
packets are sent.

A client on the same machine measures the gateway and its own scheduling
together: on a small machine, whatever else runs beside the client (a back
office catching up, a drop copy) delays the client's reads and writes and
shows as gateway latency.  The wire does not wait for the client: a packet
is stamped when its writer sends it, whether or not its reader is on a CPU.

Linux only, as root (a packet socket on ``lo``, with a filter for the
gateway's FIX port, IPv4).  Prints ``capturing`` once its filter is on;
runs until SIGTERM, SIGINT or the end of the process that started it, then
writes one line per order answered to ``--out``: the NewOrderSingle's wall
time, its latency from the order sent and (with ``--delivered``) from the
order taken in by the gateway's side, or -1, in seconds::

    python bench/wire.py --port 9876 --out wire.txt &
    ...                                   # load the gateway
    kill %1; python bench/wire.py --summary wire.txt

Orders are matched by ClOrdID (11) within each connection; the final
report is the first ExecutionReport whose OrdStatus (39) is filled,
canceled, rejected or expired.  A ClOrdID reused on one connection is
matched to the report that follows its latest NewOrderSingle.  Each
direction's bytes are taken once, by their TCP sequence number: a segment
sent again (a retransmit, a probe) adds nothing, and an order is timed from
its first sending.
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ETH_P_ALL: Final = 0x0003
SO_ATTACH_FILTER: Final = 26
SO_TIMESTAMPNS: Final = 35
SO_RCVBUFFORCE: Final = 33
SOL_PACKET: Final = 263
PACKET_STATISTICS: Final = 6
PACKET_OUTGOING: Final = 4
SNAP: Final = 0x40000
"""Bytes a packet is taken with at most (the filter's accept); a segment on
``lo`` is at most 65,535 bytes after its 14-byte link header."""
PR_SET_PDEATHSIG: Final = 1
FINAL_STATUS: Final = frozenset({b"2", b"4", b"8", b"C"})
SOH: Final = b"\x01"


def port_filter(port: int) -> list[tuple[int, int, int, int]]:
    """A classic BPF program accepting IPv4 TCP segments from or to
    ``port`` on an Ethernet-framed interface (``lo`` is one): ``(code,
    jump if true, jump if false, k)`` each."""
    return [
        (0x28, 0, 0, 12),  # A = ethertype
        (0x15, 0, 10, 0x0800),  # IPv4, else drop
        (0x30, 0, 0, 23),  # A = IP protocol
        (0x15, 0, 8, 6),  # TCP, else drop
        (0x28, 0, 0, 20),  # A = flags and fragment offset
        (0x45, 6, 0, 0x1FFF),  # a later fragment: drop
        (0xB1, 0, 0, 14),  # X = IP header length
        (0x48, 0, 0, 14),  # A = source port
        (0x15, 2, 0, port),  # from the port: accept
        (0x48, 0, 0, 16),  # A = destination port
        (0x15, 0, 1, port),  # to the port: accept, else drop
        (0x06, 0, 0, SNAP),  # accept
        (0x06, 0, 0, 0),  # drop
    ]


def open_capture(port: int) -> tuple[socket.socket, object]:
    """A packet socket on ``lo`` seeing only the port's segments, each with
    the kernel's time stamp; and the filter's memory, kept while it lives.
    It takes no packet until the filter is on: opened for no protocol, it is
    bound to ``lo`` and all protocols only then."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    program = port_filter(port)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    # past net.core.rmem_max, as root may
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    sock.bind(("lo", ETH_P_ALL))
    return sock, buf


def dropped(sock: socket.socket) -> int:
    """Packets the kernel dropped for want of room in the socket's buffer."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return int(drops)


def field(msg: bytes, tag: bytes) -> bytes | None:
    """The value of ``tag`` (e.g. ``b"11="``) in one FIX message."""
    at = msg.find(SOH + tag)
    if at < 0:
        return None
    start = at + 1 + len(tag)
    return msg[start : msg.find(SOH, start)]


def messages(stream: bytearray) -> Iterator[bytes]:
    """Whole FIX messages taken off the front of ``stream`` (the rest,
    an incomplete one, stays)."""
    while True:
        start = stream.find(b"8=FIX")
        if start < 0:
            del stream[:-4]  # what may be the start of one cut short
            return
        end = stream.find(SOH + b"10=", start)
        if end < 0 or len(stream) < end + 8:
            if start:
                del stream[:start]
            return
        msg = bytes(stream[start : end + 8])
        del stream[: end + 8]
        yield msg


class Matcher:
    """NewOrderSingles and their final reports, per connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: dict[tuple[int, int, bool], bytearray] = {}
        # the sequence number of the next byte of each direction not yet taken
        self.next_seq: dict[tuple[int, int, bool], int] = {}
        self.sent: dict[tuple[int, bytes], float] = {}
        self.delivered: dict[tuple[int, bytes], float] = {}
        self.done: list[tuple[float, float, float]] = []

    def closed(self, sport: int, dport: int, both: bool) -> None:
        """The end of a direction (FIN) or of the connection (RST, ``both``):
        what is left of it goes, so a later connection on the same ports
        starts clean; the other direction of a FIN may still bring answers."""
        ends = ((sport, dport), (dport, sport)) if both else ((sport, dport),)
        for key in [k for k in self.streams if k[:2] in ends]:
            del self.streams[key]
        for key in [k for k in self.next_seq if k[:2] in ends]:
            del self.next_seq[key]

    def segment(
        self,
        sport: int,
        dport: int,
        out: bool,
        payload: bytes,
        stamp: float,
        seq: int | None = None,
    ) -> None:
        """A segment seen going out (``out``) or coming in, with its stamp
        and, when known, the TCP sequence number of its first byte."""
        to_gateway = dport == self.port
        if not to_gateway and not out:
            return  # the client's side of an answer: not measured
        key = (sport, dport, out)
        if seq is not None:
            expected = self.next_seq.get(key)
            if expected is not None:
                behind = (expected - seq) & 0xFFFFFFFF
                if 0 < behind < 1 << 31:  # sent again: what was taken before goes
                    if behind >= len(payload):
                        return
                    payload, seq = payload[behind:], expected
                elif seq != expected:  # bytes never seen: the direction starts afresh
                    self.streams.pop(key, None)
            self.next_seq[key] = (seq + len(payload)) & 0xFFFFFFFF
        stream = self.streams.setdefault(key, bytearray())
        stream += payload
        client = sport if to_gateway else dport
        for msg in messages(stream):
            kind = field(msg, b"35=")
            if to_gateway and kind == b"D":
                cl = field(msg, b"11=")
                if cl is not None:
                    (self.sent if out else self.delivered)[(client, cl)] = stamp
            elif not to_gateway and kind == b"8" and field(msg, b"39=") in FINAL_STATUS:
                cl = field(msg, b"11=")
                if cl is None:
                    continue
                sent = self.sent.pop((client, cl), None)
                delivered = self.delivered.pop((client, cl), None)
                if sent is not None:
                    since = stamp - delivered if delivered is not None else -1.0
                    self.done.append((sent, stamp - sent, since))


PREQUEUE: Final = Path("/proc/sys/net/core/netdev_tstamp_prequeue")


def capture(port: int, out: Path, delivered: bool) -> None:
    """Until SIGTERM, SIGINT or its parent's end: the port's orders and
    answers into ``out``.  With ``delivered``, each order's delivery to the
    gateway's socket too: the kernel then stamps a packet coming in when it
    is taken in, not when it is queued (``net.core.netdev_tstamp_prequeue =
    0`` meanwhile; on ``lo`` the queue is the sender's CPU's backlog, taken
    in by its soft interrupt)."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # before anything is changed: a signal from here on ends the loop, and
    # the setting is put back
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # its parent gone: SIGTERM
    before = PREQUEUE.read_text() if delivered else ""
    if delivered:
        PREQUEUE.write_text("0")
    try:
        sock, _keep = open_capture(port)
        print("capturing", flush=True)  # the filter on: what a caller waits for
        matcher = Matcher(port)
        packets = 0
        sock.settimeout(0.2)
        while not stopping:
            packets += _take(sock, matcher, delivered)
        # what the kernel still holds for the socket
        sock.setblocking(False)
        while (taken := _take(sock, matcher, delivered)) >= 0:
            packets += taken
        drops = dropped(sock)
    finally:
        if delivered:
            PREQUEUE.write_text(before)
    with out.open("w") as f:
        for sent, latency, since in matcher.done:
            f.write(f"{sent:.6f} {latency:.7f} {since:.7f}\n")
    used = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"wire capture: {len(matcher.done):,} orders, {packets:,} segments, "
        f"{drops:,} dropped by the kernel, {used.ru_utime + used.ru_stime:.1f} s of CPU",
        file=sys.stderr,
    )


_PACKET = bytearray(SNAP)
_ANCILLARY = socket.CMSG_SPACE(16)


def _take(sock: socket.socket, matcher: Matcher, delivered: bool) -> int:
    """One packet off the socket into ``matcher``: 1 if it was one of the
    segments measured, 0 if not or none came in time, -1 if none was there
    (a socket that does not wait)."""
    try:
        size, ancdata, flags, addr = sock.recvmsg_into([_PACKET], _ANCILLARY)
    except TimeoutError:
        return 0
    except BlockingIOError:
        return -1
    except InterruptedError:
        return 0
    # lo shows each packet going out and coming in; the incoming copy is
    # stamped when it is taken in (with the time stamp before the queue
    # off) and kept only with --delivered
    out_going = addr[2] == PACKET_OUTGOING
    if not out_going and not delivered:
        return 0
    data = memoryview(_PACKET)[:size]
    ihl = (data[14] & 0x0F) * 4
    tcp = 14 + ihl
    total = struct.unpack_from("!H", data, 16)[0]
    sport, dport, seq = struct.unpack_from("!HHI", data, tcp)
    if flags & socket.MSG_TRUNC or len(data) < 14 + total:
        # cut short: that direction starts afresh (its orders unmatched)
        matcher.streams.pop((sport, dport, out_going), None)
        return 0
    stamp = time.time()
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            stamp = sec + nsec / 1e9
    offset = (data[tcp + 12] >> 4) * 4
    if 14 + total > tcp + offset:
        payload = bytes(data[tcp + offset : 14 + total])
        matcher.segment(sport, dport, out_going, payload, stamp, seq)
    flags_byte = data[tcp + 13]
    if flags_byte & 0x05:  # FIN (0x01) or RST (0x04)
        matcher.closed(sport, dport, both=bool(flags_byte & 0x04))
    elif flags_byte & 0x02:  # SYN: a connection's direction starts, numbered afresh
        matcher.closed(sport, dport, both=False)
    return 1


def command(port: int, out: Path | str) -> list[str]:
    """How a bench starts a capture of ``port`` into ``out`` (the orders'
    delivery stamped too); it prints ``capturing`` once it sees them."""
    return [sys.executable, __file__, "--port", str(port), "--out", str(out), "--delivered"]


def read(path: Path, delivered: bool = False) -> list[tuple[float, float]]:
    """``(sent, latency)`` of each order answered, from its packet sent (or,
    with ``delivered``, taken in by the gateway's side: the orders without
    that stamp left out)."""
    rows = []
    for line in path.read_text().splitlines():
        sent, latency, since = line.split()
        value = float(since if delivered else latency)
        if value >= 0:
            rows.append((float(sent), value))
    return rows


STALL: Final = 0.005
"""An answer later than this is slow; slow answers less than this apart
make one stall (as ``bench/independent_load.py`` counts them)."""


def summary(rows: list[tuple[float, float]]) -> str:
    """Of ``(sent, latency)`` rows: how many, P50, P99, max (ms), the
    answers over 5 ms and the stalls they make."""
    if not rows:
        return "no orders"
    xs = sorted(latency for _, latency in rows)

    def at(q: float) -> float:
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000

    slow = sorted(sent + latency for sent, latency in rows if latency > STALL)
    stalls = sum(1 for i, t in enumerate(slow) if i == 0 or t - slow[i - 1] > STALL)
    return (
        f"{len(xs):,} orders  P50 {at(0.5):.3f}  P95 {at(0.95):.3f}  P99 {at(0.99):.3f}  "
        f"max {xs[-1] * 1000:.3f} ms  over 5 ms {len(slow):,} in {stalls:,} stall(s)"
    )


def window(rows: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The orders sent from ``start`` to ``end`` (wall time)."""
    return [r for r in rows if start <= r[0] < end]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="the gateway's FIX port")
    parser.add_argument("--out", type=Path, help="where the latencies go")
    parser.add_argument(
        "--delivered",
        action="store_true",
        help="also stamp each order when the gateway's side takes it in",
    )
    parser.add_argument("--summary", type=Path, help="summarise a file written before")
    parser.add_argument(
        "--skip", type=int, default=0, help="with --summary: leave out the first N orders"
    )
    args = parser.parse_args()
    if args.summary:
        print(f"from the order sent: {summary(sorted(read(args.summary))[args.skip :])}")
        taken = sorted(read(args.summary, delivered=True))[args.skip :]
        if taken:
            print(f"from the order taken in: {summary(taken)}")
        return
    if args.port is None or args.out is None:
        parser.error("--port and --out, or --summary")
    if not sys.platform.startswith("linux"):
        raise SystemExit("wire.py: Linux only (a packet socket on lo)")
    capture(args.port, args.out, args.delivered)


if __name__ == "__main__":
    main()
