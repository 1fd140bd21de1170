"""Send one market order to fixgw and print what becomes of it.

Logs on as CLIENT1 (by default) to the daemon started with ``fixgw run`` on
its default configuration, sends a NewOrderSingle built by
:func:`gateway.fix.new_order_single`, prints every ExecutionReport for it
until the order is final, and logs out::

    .venv/bin/python examples/send_order.py [--host H] [--port N] [--sender CLIENT2]
        [--symbol EUR/USD] [--side buy|sell] [--qty 1000]

The Logon carries ResetSeqNumFlag(141)=Y: this client keeps no store, so it
starts both sequence numbers from 1 each time (see README, "Connect a
client and send an order").  Exits 0 once the order is final and the session logged out; 1
when the order cannot be built, the logon fails, the order is rejected or
no report comes in time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from config import SessionSettings
from gateway.fix import new_order_single
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient, LogonError
from gateway.ops.logs import configure_logging

# ExecType (150) and OrdStatus (39) values a market order can meet
EXEC_TYPES = {b"0": "New", b"4": "Canceled", b"8": "Rejected", b"C": "Expired", b"F": "Trade"}
ORD_STATUSES = {
    b"0": "New",
    b"1": "PartiallyFilled",
    b"2": "Filled",
    b"4": "Canceled",
    b"8": "Rejected",
    b"C": "Expired",
}
# after one of these nothing more happens to the order
FINAL = {b"2", b"4", b"8", b"C"}


def describe(report: FixMessage) -> str:
    def field(tag: int, names: dict[bytes, str] | None = None) -> str:
        value = report.get(tag)
        if value is None:
            return "-"
        text = value.decode("latin-1")
        return f"{text} ({names[value]})" if names and value in names else text

    line = (
        f"ExecType={field(150, EXEC_TYPES)} OrdStatus={field(39, ORD_STATUSES)}"
        f" LastQty={field(32)} LastPx={field(31)} CumQty={field(14)}"
    )
    text = report.get(58)
    return f"{line} Text={text.decode('latin-1')!r}" if text else line


async def send_order(args: argparse.Namespace) -> int:
    cl_ord_id = f"EX-{time.time_ns()}"  # unique without keeping a counter anywhere
    try:
        order = new_order_single(
            cl_ord_id, args.symbol, args.side, args.qty, transact_time=time.time()
        )
    except ValueError as exc:  # refused before anything is sent, e.g. --qty 0
        print(f"cannot send that order: {exc}", file=sys.stderr)
        return 1

    # ResetOnLogon: the Logon carries ResetSeqNumFlag(141)=Y (see the docstring)
    client = FixClient(
        SessionSettings(SenderCompID=args.sender, TargetCompID="GATEWAY", ResetOnLogon=True)
    )
    try:
        await client.connect(args.host, args.port)
    except LogonError as exc:  # who refused what, and why
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:  # nothing listening there, or no route to it
        print(f"cannot connect to {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"logged on to {args.host}:{args.port} as {args.sender}")

    client.send(*order)
    print(f"sent {cl_ord_id}: {args.side} {args.qty} {args.symbol} at market")

    status = b""
    try:
        while status not in FINAL:
            report = await client.receive(timeout=10)
            if report.msg_type == b"8" and report.get(11) == cl_ord_id.encode():
                print(describe(report))
                status = report.get(39) or b""
    except TimeoutError:
        print("no ExecutionReport within 10 s", file=sys.stderr)
    await client.logout()
    print("logged out")
    return 0 if status in FINAL - {b"8"} else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Send one market order to fixgw.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9876)
    parser.add_argument("--sender", default="CLIENT1", help="our SenderCompID")
    parser.add_argument("--symbol", default="EUR/USD")
    parser.add_argument("--side", choices=("buy", "sell"), default="buy")
    parser.add_argument("--qty", default="1000", help="OrderQty, e.g. 1000 or 0.5")
    args = parser.parse_args()
    # the session's own log (warnings only) goes to stderr
    configure_logging("warning", "console")
    return asyncio.run(send_order(args))


if __name__ == "__main__":
    sys.exit(main())
