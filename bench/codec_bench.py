"""Codec micro-benchmark: our FIX codec against simplefix.

    python bench/codec_bench.py [--n N] [--repeat R] [--batch B]

On one mix of realistic messages (NewOrderSingle, ExecutionReport, Heartbeat,
in turn) it measures messages per second for:

* parsing, ours (FrameDecoder + parse_frame) against simplefix
  (FixParser.append_buffer + get_message), with the same bytes fed
  (a) as a stream, B messages per buffer, and (b) one message per feed;
* encoding, ours (encode_message + encode_fields from (tag, value) lists)
  against simplefix (FixMessage.encode() of a message already built, and
  building it with append_pair first);
* our Validator.validate against the FIX 4.4 dictionary, on the mix and on
  each message type alone, and on two messages with repeating groups (a
  NewOrderSingle with Parties, the drop copy's TradeCaptureReport).

Each figure is the best of R timed runs of N messages (time.perf_counter).
Before timing, both parsers are checked to find the same fields in the same
bytes, so that they are compared on equal work.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import simplefix

from gateway.fix.codec import (
    FixMessage,
    FrameDecoder,
    encode_fields,
    encode_message,
    parse_frame,
)
from gateway.fix.dictionary import fix44
from gateway.fix.validation import ValidationOptions, Validator

Field = tuple[int, bytes]

BEGIN = b"FIX.4.4"
TS = b"20261125-10:00:00.123"


def _header(seq: int, sender: bytes, target: bytes) -> list[Field]:
    return [(34, b"%d" % seq), (49, sender), (52, TS), (56, target)]


# (name, MsgType, header, body)
MESSAGES: list[tuple[str, bytes, list[Field], list[Field]]] = [
    (
        "NewOrderSingle",
        b"D",
        _header(1042, b"CLIENT1", b"GATEWAY"),
        [
            (11, b"ORD-000001"),
            (1, b"ACC-7"),
            (21, b"1"),
            (55, b"EUR/USD"),
            (54, b"1"),
            (60, TS),
            (38, b"1000000"),
            (40, b"2"),
            (44, b"1.08325"),
        ],
    ),
    (
        "ExecutionReport",
        b"8",
        _header(2077, b"GATEWAY", b"CLIENT1"),
        [
            (37, b"GW-421"),
            (11, b"ORD-000001"),
            (17, b"EX-913"),
            (150, b"F"),
            (39, b"1"),
            (55, b"EUR/USD"),
            (54, b"1"),
            (38, b"1000000"),
            (40, b"2"),
            (44, b"1.08325"),
            (32, b"250000"),
            (31, b"1.08321"),
            (151, b"750000"),
            (14, b"250000"),
            (6, b"1.08321"),
            (60, TS),
            (15, b"EUR"),
        ],
    ),
    ("Heartbeat", b"0", _header(1043, b"CLIENT1", b"GATEWAY"), []),
]

# Messages with repeating groups, validated alone (not in the mix): a
# NewOrderSingle naming its trader and account as Parties (one of them with
# sub-IDs), and a TradeCaptureReport as the drop copy sends it.
GROUPED: list[tuple[str, bytes, list[Field], list[Field]]] = [
    (
        "NewOrderSingle with Parties",
        b"D",
        _header(1044, b"CLIENT1", b"GATEWAY"),
        [
            *MESSAGES[0][3],
            (453, b"2"),
            (448, b"TRADER-7"),
            (447, b"D"),
            (452, b"11"),
            (802, b"1"),
            (523, b"desk 4"),
            (803, b"9"),
            (448, b"ACC-7"),
            (447, b"D"),
            (452, b"24"),
        ],
    ),
    (
        "TradeCaptureReport (drop copy)",
        b"AE",
        _header(5120, b"GATEWAY", b"BACKOFFICE"),
        [
            (17, b"LP_A-X913"),
            (527, b"EX-913"),
            (31, b"1.08321"),
            (32, b"250000"),
            (55, b"EUR/USD"),
            (60, TS),
            (75, TS[:8]),
            (552, b"1"),
            (54, b"1"),
            (37, b"1O1.1C1"),
            (453, b"1"),
            (448, b"LP_A"),
            (447, b"D"),
            (452, b"17"),
            (1, b"CLIENT1"),
            (570, b"N"),
            (571, b"1O1.1C1/LP_A-X913"),
            (797, b"Y"),
        ],
    ),
]


def encode_ours(msg_type: bytes, header: list[Field], body: list[Field]) -> bytes:
    return encode_message(BEGIN, msg_type, header, encode_fields(body))


def build_simplefix(msg_type: bytes, header: list[Field], body: list[Field]) -> Any:
    msg = simplefix.FixMessage()
    msg.append_pair(8, BEGIN, header=True)
    msg.append_pair(35, msg_type, header=True)
    for tag, value in sorted(header):
        msg.append_pair(tag, value, header=True)
    for tag, value in body:
        msg.append_pair(tag, value)
    return msg


def best_rate(run: Callable[[], int], repeat: int) -> float:
    """Messages per second of the fastest of ``repeat`` runs; ``run`` returns
    how many messages it handled."""
    best = 0.0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        count = run()
        elapsed = time.perf_counter() - start
        best = max(best, count / elapsed)
    return best


def check_same_work(wire: list[bytes]) -> None:
    """Both parsers must find the same fields (ours leaves out 8, 9 and 10)."""
    for raw in wire:
        parser = simplefix.FixParser()
        parser.append_buffer(raw)
        theirs = [(int(t), v) for t, v in parser.get_message().pairs]
        ours = parse_frame(raw).fields
        if theirs[2:-1] != ours:
            raise SystemExit(f"parsers disagree on {raw!r}")
        mt, header, body = next((m[1], m[2], m[3]) for m in MESSAGES if m[1] == ours[0][1])
        if build_simplefix(mt, header, body).encode() != raw:
            raise SystemExit(f"encoders disagree on {raw!r}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Codec micro-benchmark: our FIX codec against simplefix."
    )
    ap.add_argument("--n", type=int, default=30_000, help="messages per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (best kept)")
    ap.add_argument("--batch", type=int, default=64, help="messages per buffer, stream case")
    args = ap.parse_args()
    n: int = args.n
    batch: int = min(args.batch, n)

    wire = [encode_ours(mt, header, body) for _, mt, header, body in MESSAGES]
    check_same_work(wire)
    mix = [wire[i % len(wire)] for i in range(n)]
    buffers = [b"".join(mix[i : i + batch]) for i in range(0, n, batch)]
    parsed = [parse_frame(raw) for raw in mix]
    to_encode = [MESSAGES[i % len(MESSAGES)][1:] for i in range(n)]
    prebuilt = [build_simplefix(mt, header, body) for mt, header, body in to_encode]
    validator = Validator(fix44(), ValidationOptions())
    if any(validator.validate(msg) is not None for msg in parsed[: len(MESSAGES)]):
        raise SystemExit("a benchmark message does not validate")
    grouped = {
        name: [parse_frame(encode_ours(mt, header, body))] * n for name, mt, header, body in GROUPED
    }
    if any(validator.validate(msgs[0]) is not None for msgs in grouped.values()):
        raise SystemExit("a benchmark message with groups does not validate")

    def ours_stream() -> int:
        decoder = FrameDecoder()
        count = 0
        for buf in buffers:
            decoder.feed(buf)
            while (frame := decoder.next_frame()) is not None:
                parse_frame(frame)
                count += 1
        return count

    def simplefix_stream() -> int:
        parser = simplefix.FixParser()
        count = 0
        for buf in buffers:
            parser.append_buffer(buf)
            while parser.get_message() is not None:
                count += 1
        return count

    def ours_single() -> int:
        decoder = FrameDecoder()
        for raw in mix:
            decoder.feed(raw)
            frame = decoder.next_frame()
            assert frame is not None
            parse_frame(frame)
        return n

    def simplefix_single() -> int:
        parser = simplefix.FixParser()
        for raw in mix:
            parser.append_buffer(raw)
            parser.get_message()
        return n

    def ours_encode() -> int:
        for mt, header, body in to_encode:
            encode_message(BEGIN, mt, header, encode_fields(body))
        return n

    def simplefix_encode() -> int:
        for msg in prebuilt:
            msg.encode()
        return n

    def simplefix_build_encode() -> int:
        for mt, header, body in to_encode:
            build_simplefix(mt, header, body).encode()
        return n

    def validate_run(msgs: list[FixMessage]) -> Callable[[], int]:
        def run() -> int:
            validate = validator.validate
            for msg in msgs:
                validate(msg)
            return len(msgs)

        return run

    # sanity: every run handles every message
    for run in (ours_stream, simplefix_stream):
        if run() != n:
            raise SystemExit(f"{run.__name__} lost messages")

    repeat: int = args.repeat
    started = time.perf_counter()
    ours_enc = best_rate(ours_encode, repeat)
    rows: list[tuple[str, float, float | None]] = [
        (
            f"parse, stream ({batch} msgs/buffer)",
            best_rate(ours_stream, repeat),
            best_rate(simplefix_stream, repeat),
        ),
        (
            "parse, one message per feed",
            best_rate(ours_single, repeat),
            best_rate(simplefix_single, repeat),
        ),
        ("encode (simplefix: encode() only)", ours_enc, best_rate(simplefix_encode, repeat)),
        (
            "encode (simplefix: append_pair + encode())",
            ours_enc,
            best_rate(simplefix_build_encode, repeat),
        ),
        ("validate, mix (ours only)", best_rate(validate_run(parsed), repeat), None),
    ]
    for k, (name, *_) in enumerate(MESSAGES):
        only = [msg for i, msg in enumerate(parsed) if i % len(MESSAGES) == k]
        rows.append((f"validate, {name} only", best_rate(validate_run(only), repeat), None))
    for name, msgs in grouped.items():
        rows.append((f"validate, {name} only", best_rate(validate_run(msgs), repeat), None))
    elapsed = time.perf_counter() - started

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {_cpus()} CPU"
    )
    print(f"simplefix {metadata.version('simplefix')}, uvloop {metadata.version('uvloop')}")
    sizes = ", ".join(
        f"{name} {len(raw)} B" for (name, *_), raw in zip(MESSAGES, wire, strict=True)
    )
    print(f"messages: {sizes}; mixed in turn")
    print(f"n={n} messages per run, best of {repeat} runs")
    print()
    widths = (42, 11, 7, 15, 7, 6)
    print(_row(widths, ("case", "ours msg/s", "µs/msg", "simplefix msg/s", "µs/msg", "ratio")))
    print("|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
    for case, ours, theirs in rows:
        cells = [case, f"{ours:,.0f}", f"{1e6 / ours:.2f}"]
        if theirs is None:
            cells += ["-", "-", "-"]
        else:
            cells += [f"{theirs:,.0f}", f"{1e6 / theirs:.2f}", f"{ours / theirs:.1f}x"]
        print(_row(widths, cells))
    print()
    print(
        f"parse ratio (ours / simplefix): {_ratio(rows[0])} stream, "
        f"{_ratio(rows[1])} one message per feed"
    )
    print(
        f"encode ratio (ours / simplefix): {_ratio(rows[2])} against encode() alone, "
        f"{_ratio(rows[3])} against append_pair + encode()"
    )
    print(f"timed part took {elapsed:.1f} s")


def _row(widths: tuple[int, ...], cells: tuple[str, ...] | list[str]) -> str:
    first, *rest = cells
    parts = [f" {first:<{widths[0]}} "] + [
        f" {cell:>{w}} " for cell, w in zip(rest, widths[1:], strict=True)
    ]
    return "|" + "|".join(parts) + "|"


def _ratio(row: tuple[str, float, float | None]) -> str:
    _, ours, theirs = row
    return "-" if theirs is None else f"{ours / theirs:.1f}x"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
