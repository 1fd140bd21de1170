#!/usr/bin/env python3
"""Run QuickFIX acceptance scripts (``.def`` files) against a FIX acceptor.

    python3 tests/conformance/runner.py --port 5001 [-v] [paths...]

Each path is a ``.def`` file or a directory of them (its ``*.def`` files, in
name order, not its subdirectories); without paths, the FIX 4.4 scripts
beside this file (``quickfix-fix44/``).  Every script prints one line,
``PASS name`` or ``FAIL name - line N: reason``, and the run ends with
``N passed, N failed``.  The exit status is 0 only when every script passed
(1 otherwise, 2 for a usage error).  ``-v`` shows the script line, the
expected and the received message of each failure, ``-vv`` every message
sent and received; ``--list`` reads the scripts without connecting.

A script is read line by line:

* a blank line, or one starting with ``#``, is ignored;
* ``iCONNECT`` opens a TCP connection to the acceptor, ``iDISCONNECT`` closes
  it, ``eDISCONNECT`` waits for the acceptor to close it (it must send
  nothing more first);
* ``I<message>`` sends a message, ``E<message>`` reads the next message and
  compares it with the one written;
* each of these may name one of several connections, ``i2,CONNECT`` or
  ``I2,8=FIX.4.4...``; without a number it is connection 1.

In a message, ``<TIME>`` stands for the UTC time when the line runs (to the
second), ``<TIME+n>`` and ``<TIME-n>`` for that time n seconds later or
earlier.  A message starting with ``8=`` gets the BodyLength (9) and
CheckSum (10) it does not give itself; one that gives them, or does not
start with ``8=``, is sent as written, which is how scripts send broken
messages.

A received message matches an expected one when they have the same fields,
tag for tag in the same order, with the same values; CheckSum (10),
OrigTime (42), SendingTime (52), TransactTime (60) and OrigSendingTime (122)
need only have the form of a three-digit sum or a UTC timestamp.  So the
BodyLength is compared as written in the script: the scripts count
SendingTime with milliseconds.  The runner also checks on its own that each
received message is framed by a right BodyLength and CheckSum.

This file uses nothing but the standard library and shares no code with
the gateway's FIX codec, so that it cannot share that codec's mistakes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SOH = b"\x01"
DEFINITIONS = Path(__file__).resolve().parent / "quickfix-fix44"
"""The carried FIX 4.4 acceptance scripts."""

STEP_TIMEOUT = 10.0
"""Seconds to wait in a connect, expect or expect-disconnect step."""
SCRIPT_LIMIT = 120.0
"""Seconds a whole script may take."""
CLOSE_WAIT = 2.0
"""Seconds to wait, after closing our side of a connection, for the acceptor
to close its side."""

_TIMESTAMP = re.compile(rb"\d{8}-\d{2}:\d{2}:\d{2}(?:\.\d{3})?")
BY_FORM: dict[bytes, re.Pattern[bytes]] = {
    b"10": re.compile(rb"\d{3}"),  # CheckSum
    b"42": _TIMESTAMP,  # OrigTime
    b"52": _TIMESTAMP,  # SendingTime
    b"60": _TIMESTAMP,  # TransactTime
    b"122": _TIMESTAMP,  # OrigSendingTime
}
"""Tags whose received value is checked for its form only: they carry times
and sums that differ on every run."""

_LINE = re.compile(rb"([IEie])(?:([0-9]),)?(.*)", re.DOTALL)
_TIME = re.compile(rb"<TIME(?:([+-])([0-9]+))?>")
_TRAILER = re.compile(rb"10=[0-9]{3}\x01")

Trace = Callable[[str], None]


class ScriptError(Exception):
    """A script cannot be read or asks for something this runner does not do."""


class Failure(Exception):
    """The acceptor did not do what the script expects."""

    def __init__(
        self, reason: str, *, expected: bytes | None = None, received: bytes | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expected = expected
        self.received = received


# --- scripts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One line of a script that does something."""

    line: int
    """Its line number in the script file, from 1."""
    action: str
    """``connect``, ``disconnect``, ``expect_disconnect``, ``send`` or ``expect``."""
    link: int
    """The connection it acts on, 1 unless the line names another."""
    source: bytes
    """The line as written."""
    message: bytes = b""
    """The message of a ``send`` or ``expect`` line, placeholders not yet filled in."""


@dataclass(frozen=True)
class Script:
    """A parsed ``.def`` file."""

    name: str
    path: Path
    steps: tuple[Step, ...]


_WORDS = {
    (b"i", b"CONNECT"): "connect",
    (b"i", b"DISCONNECT"): "disconnect",
    (b"e", b"DISCONNECT"): "expect_disconnect",
}


def parse_script(path: Path) -> Script:
    """Read a script; raise :class:`ScriptError` when it cannot run as written."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScriptError(f"cannot read {path}: {exc}") from exc
    steps: list[Step] = []
    open_links: set[int] = set()
    for number, raw in enumerate(data.split(b"\n"), 1):
        line = raw.removesuffix(b"\r")
        if not line.strip() or line.startswith(b"#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ScriptError(f"line {number}: not a script line: {show(line)}")
        kind, digit, rest = match.groups()
        link = int(digit) if digit else 1
        if kind in (b"I", b"E"):
            action = "send" if kind == b"I" else "expect"
            if b"<FILE:" in rest:
                raise ScriptError(f"line {number}: <FILE:...> placeholders are not supported")
            if link not in open_links:
                raise ScriptError(f"line {number}: connection {link} is not open")
            steps.append(Step(number, action, link, line, rest))
            continue
        word = _WORDS.get((kind, rest.strip()))
        if word is None:
            if (kind, rest.strip()) == (b"e", b"CONNECT"):
                raise ScriptError(
                    f"line {number}: eCONNECT (the script plays the acceptor): "
                    "only scripts for an acceptor under test are supported"
                )
            raise ScriptError(f"line {number}: unknown action: {show(line)}")
        if word == "connect":
            open_links.add(link)
        elif link not in open_links:
            raise ScriptError(f"line {number}: connection {link} is not open")
        else:
            open_links.discard(link)
        steps.append(Step(number, word, link, line))
    if not any(step.action == "connect" for step in steps):
        raise ScriptError("the script never connects")
    return Script(name=path.stem, path=path, steps=tuple(steps))


def script_paths(sources: Sequence[Path]) -> list[Path]:
    """The ``.def`` files named, or found directly in the directories named."""
    paths: list[Path] = []
    for source in sources:
        if source.is_dir():
            paths.extend(sorted(p for p in source.glob("*.def") if p.is_file()))
        elif source.is_file():
            paths.append(source)
        else:
            raise ScriptError(f"no such file or directory: {source}")
    return paths


# --- messages ----------------------------------------------------------------------------


def show(data: bytes) -> str:
    """Wire bytes as text: SOH as ``|``, other unprintable bytes as ``\\xNN``."""
    out = []
    for byte in data:
        if byte == 1:
            out.append("|")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def fill_times(text: bytes, now: dt.datetime) -> bytes:
    """Replace ``<TIME>``, ``<TIME+n>`` and ``<TIME-n>`` by UTC timestamps."""

    def stamp(match: re.Match[bytes]) -> bytes:
        seconds = int(match[2] or b"0")
        if match[1] == b"-":
            seconds = -seconds
        return (now + dt.timedelta(seconds=seconds)).strftime("%Y%m%d-%H:%M:%S").encode()

    return _TIME.sub(stamp, text)


def checksum(data: bytes | bytearray) -> int:
    """The FIX CheckSum of ``data``: its byte sum modulo 256."""
    return sum(data) % 256


def complete(text: bytes) -> bytes:
    """The message ``text`` with the BodyLength and CheckSum it leaves out."""
    if not text.startswith(b"8="):
        return text
    end_of_begin = text.find(SOH) + 1
    if end_of_begin == 0:
        return text
    head, body = text[:end_of_begin], text[end_of_begin:]
    trailer = b""
    at = body.rfind(b"\x0110=")
    if at >= 0 and body.endswith(SOH) and SOH not in body[at + 1 : -1]:
        body, trailer = body[: at + 1], body[at + 1 :]
    if b"\x019=" not in text:
        # With a CheckSum of its own, QuickFIX's tool counts the body up to,
        # not including, the SOH before it: one byte short.  Such lines send
        # a wrong CheckSum on purpose; the bytes are kept the same as there.
        length = len(body) - 1 if trailer else len(body)
        head += b"9=%d\x01" % length
    if not trailer:
        trailer = b"10=%03d\x01" % checksum(head + body)
    return head + body + trailer


def _fields(message: bytes) -> list[tuple[bytes, bytes | None]]:
    parts = message.split(SOH)
    if parts and parts[-1] == b"":
        parts.pop()
    fields: list[tuple[bytes, bytes | None]] = []
    for part in parts:
        tag, equals, value = part.partition(b"=")
        fields.append((tag, value if equals else None))
    return fields


def _field(tag: bytes, value: bytes | None) -> str:
    return show(tag) if value is None else f"{show(tag)}={show(value)}"


def difference(expected: bytes, received: bytes) -> str | None:
    """Why ``received`` does not match ``expected``; None when it does."""
    want, got = _fields(expected), _fields(received)
    problems: list[tuple[bytes, str]] = []
    for index, ((tag, value), (got_tag, got_value)) in enumerate(zip(want, got, strict=False), 1):
        wanted, found = _field(tag, value), _field(got_tag, got_value)
        if tag != got_tag:
            problems.append((tag, f"field {index}: expected {wanted}, got {found}"))
            break  # the fields after it no longer line up
        form = BY_FORM.get(tag)
        if form is not None:
            if got_value is None or form.fullmatch(got_value) is None:
                problems.append((tag, f"{found} is not of the form {form.pattern.decode()}"))
        elif value != got_value:
            problems.append((tag, f"expected {wanted}, got {found}"))
    else:
        if len(got) > len(want):
            extra = _field(*got[len(want)])
            problems.append((b"", f"{len(got)} fields, not {len(want)}: {extra} is one too many"))
        elif len(got) < len(want):
            missing = _field(*want[len(got)])
            problems.append((b"", f"{len(got)} fields, not {len(want)}: {missing} is missing"))
    if not problems:
        return None
    others = [text for tag, text in problems if tag != b"9"]
    if len(others) < len(problems):
        if others:
            return f"{others[0]} (and BodyLength differs)"
        stamps = [v for t, v in got if t in (b"52", b"122") and v is not None]
        if any(b"." not in v for v in stamps):
            return f"{problems[0][1]} (the scripts count SendingTime with milliseconds)"
    return problems[0][1]


class MalformedError(Exception):
    """The acceptor sent bytes that are not a well-framed FIX message."""


def take_message(buffer: bytearray) -> bytes | None:
    """Cut the first whole message off the front of ``buffer``.

    None while more bytes are needed; :class:`MalformedError` when the bytes
    cannot be the start of a FIX message with a right BodyLength and
    CheckSum.
    """
    if not b"8=".startswith(bytes(buffer[:2])):
        raise MalformedError("the data does not begin with BeginString (8=)")
    end_of_begin = buffer.find(SOH) + 1
    if end_of_begin == 0:
        return None
    if not b"9=".startswith(bytes(buffer[end_of_begin : end_of_begin + 2])):
        raise MalformedError("the second field is not BodyLength (9=)")
    end_of_length = buffer.find(SOH, end_of_begin) + 1
    if end_of_length == 0:
        return None
    digits = bytes(buffer[end_of_begin + 2 : end_of_length - 1])
    if not digits.isdigit():
        raise MalformedError(f"BodyLength {show(digits)} is not a number")
    end_of_body = end_of_length + int(digits)
    end = end_of_body + 7  # 10=NNN<SOH>
    if len(buffer) < end:
        return None
    trailer = bytes(buffer[end_of_body:end])
    if _TRAILER.fullmatch(trailer) is None:
        raise MalformedError(
            f"after the {int(digits)} bytes of body that BodyLength announces "
            f"comes {show(trailer)}, not the CheckSum field"
        )
    sum_written, sum_computed = int(trailer[3:6]), checksum(buffer[:end_of_body])
    if sum_written != sum_computed:
        raise MalformedError(
            f"CheckSum {sum_written:03d}, but the bytes add up to {sum_computed:03d}"
        )
    message = bytes(buffer[:end])
    del buffer[:end]
    return message


# --- connections -------------------------------------------------------------------------


class Link:
    """One numbered TCP connection of a script to the acceptor."""

    def __init__(
        self,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        trace: Trace | None,
    ) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.closed_by_acceptor = False
        self._trace = trace

    @classmethod
    async def open(
        cls, number: int, host: str, port: int, timeout: float, trace: Trace | None
    ) -> Link:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            raise Failure(f"cannot connect to {host}:{port} within {timeout:g}s") from None
        except OSError as exc:
            raise Failure(f"cannot connect to {host}:{port}: {exc}") from None
        link = cls(number, reader, writer, trace)
        link.note("connected")
        return link

    def note(self, text: str) -> None:
        if self._trace is not None:
            self._trace(f"[{self.number}] {text}")

    async def send(self, message: bytes) -> None:
        if self.writer.is_closing():
            self.note(f"not sent, the connection is closed: {show(message)}")
            return
        self.note(f"-> {show(message)}")
        self.writer.write(message)
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            self.note(f"sending failed: {exc}")

    async def _read_more(self, deadline: float) -> None:
        """Add what arrives before ``deadline`` to the buffer (TimeoutError if nothing)."""
        async with asyncio.timeout_at(deadline):
            try:
                chunk = await self.reader.read(65536)
            except ConnectionError as exc:
                self.note(f"connection lost: {exc}")
                chunk = b""
        if chunk:
            self.buffer += chunk
        else:
            self.closed_by_acceptor = True
            self.note("closed by the acceptor")

    async def read_message(self, timeout: float) -> bytes:
        """The next message the acceptor sends."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                message = take_message(self.buffer)
            except MalformedError as exc:
                raise Failure(f"malformed message: {exc}", received=bytes(self.buffer)) from None
            if message is not None:
                self.note(f"<- {show(message)}")
                return message
            partial = bytes(self.buffer) or None
            if self.closed_by_acceptor:
                what = "in the middle of a message" if partial else "instead of sending one"
                raise Failure(f"the acceptor closed the connection {what}", received=partial)
            try:
                await self._read_more(deadline)
            except TimeoutError:
                what = "whole message" if partial else "message"
                raise Failure(f"no {what} within {timeout:g}s", received=partial) from None

    async def expect_closed(self, timeout: float) -> None:
        """Wait for the acceptor to close the connection without sending anything."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.buffer and not self.closed_by_acceptor:
            try:
                await self._read_more(deadline)
            except TimeoutError:
                raise Failure(f"the acceptor did not disconnect within {timeout:g}s") from None
        if self.buffer:
            raise Failure(
                "the acceptor sent data instead of disconnecting", received=bytes(self.buffer)
            )

    async def close(self, wait: float = CLOSE_WAIT) -> None:
        """Close our side, and give the acceptor ``wait`` seconds to close its
        side too, so that the next step or script does not race its clean-up."""
        if not self.closed_by_acceptor and not self.writer.is_closing():
            self.note("closing")
            try:
                self.writer.write_eof()
                async with asyncio.timeout(wait):
                    while await self.reader.read(65536):
                        pass
            except (TimeoutError, OSError):
                pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


# --- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one script went."""

    name: str
    passed: bool
    reason: str = ""
    line: int | None = None
    """The script line that failed."""
    script_line: bytes | None = None
    expected: bytes | None = None
    received: bytes | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """``PASS name (0.12s)`` or ``FAIL name - line N: reason (0.12s)``."""
        if self.passed:
            return f"PASS {self.name} ({self.seconds:.2f}s)"
        where = f"line {self.line}: " if self.line is not None else ""
        return f"FAIL {self.name} - {where}{self.reason} ({self.seconds:.2f}s)"

    def details(self) -> list[str]:
        """The script line, expected and received message of a failure."""
        out = []
        if self.script_line is not None:
            out.append(f"    script:   {show(self.script_line)}")
        if self.expected is not None:
            out.append(f"    expected: {show(self.expected)}")
        if self.received is not None:
            out.append(f"    received: {show(self.received)}")
        return out


async def _run_step(
    step: Step,
    links: dict[int, Link],
    host: str,
    port: int,
    timeout: float,
    trace: Trace | None,
) -> None:
    if step.action == "connect":
        old = links.pop(step.link, None)
        if old is not None:
            await old.close()
        links[step.link] = await Link.open(step.link, host, port, timeout, trace)
        return
    link = links[step.link]
    if step.action == "disconnect":
        del links[step.link]
        await link.close()
    elif step.action == "expect_disconnect":
        await link.expect_closed(timeout)
    elif step.action == "send":
        now = dt.datetime.now(dt.UTC)
        await link.send(complete(fill_times(step.message, now)))
    else:
        now = dt.datetime.now(dt.UTC)
        expected = complete(fill_times(step.message, now))
        try:
            received = await link.read_message(timeout)
        except Failure as failure:
            failure.expected = expected
            raise
        reason = difference(expected, received)
        if reason is not None:
            raise Failure(reason, expected=expected, received=received)


async def run_script(
    script: Script,
    host: str,
    port: int,
    *,
    timeout: float = STEP_TIMEOUT,
    limit: float = SCRIPT_LIMIT,
    trace: Trace | None = None,
) -> Outcome:
    """Play ``script`` against the acceptor on ``host``:``port``.

    ``timeout`` bounds each step that waits, ``limit`` the whole script.
    """
    started = time.monotonic()
    links: dict[int, Link] = {}
    step: Step | None = None
    failure: Failure | None = None
    try:
        async with asyncio.timeout(limit):
            for step in script.steps:
                await _run_step(step, links, host, port, timeout, trace)
    except Failure as exc:
        failure = exc
    except TimeoutError:
        failure = Failure(f"the script did not end within {limit:g}s")
    finally:
        for link in links.values():
            await link.close()
    seconds = time.monotonic() - started
    if failure is None:
        return Outcome(script.name, True, seconds=seconds)
    return Outcome(
        script.name,
        False,
        failure.reason,
        line=step.line if step is not None else None,
        script_line=step.source if step is not None else None,
        expected=failure.expected,
        received=failure.received,
        seconds=seconds,
    )


# --- command line ------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run QuickFIX acceptance scripts (.def) against a FIX acceptor."
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help=f".def files or directories of them (default: {DEFINITIONS})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the acceptor's address")
    parser.add_argument("--port", type=int, help="the acceptor's TCP port")
    parser.add_argument(
        "--timeout",
        type=float,
        default=STEP_TIMEOUT,
        help=f"seconds each connect, expect or expected disconnect may take ({STEP_TIMEOUT:g})",
    )
    parser.add_argument(
        "--limit",
        type=float,
        default=SCRIPT_LIMIT,
        help=f"seconds a whole script may take ({SCRIPT_LIMIT:g})",
    )
    parser.add_argument(
        "--list", action="store_true", help="read the scripts and exit without connecting"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: the messages of each failure; -vv: every message",
    )
    args = parser.parse_args(argv)
    if args.port is None and not args.list:
        parser.error("--port is required (unless --list)")
    return args


def _print(text: str) -> None:
    print(text, flush=True)


def _trace(text: str) -> None:
    _print(f"    {time.strftime('%H:%M:%S')} {text}")


async def _run_all(scripts: Sequence[Script | Outcome], args: argparse.Namespace) -> list[Outcome]:
    outcomes = []
    for script in scripts:
        if isinstance(script, Outcome):
            outcome = script
        else:
            outcome = await run_script(
                script,
                args.host,
                args.port,
                timeout=args.timeout,
                limit=args.limit,
                trace=_trace if args.verbose >= 2 else None,
            )
        _print(outcome.summary())
        if args.verbose and not outcome.passed:
            for line in outcome.details():
                _print(line)
        outcomes.append(outcome)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    args = _arguments(argv)
    try:
        paths = script_paths(args.paths or [DEFINITIONS])
    except ScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print("error: no .def files", file=sys.stderr)
        return 2
    scripts: list[Script | Outcome] = []
    for path in paths:
        try:
            scripts.append(parse_script(path))
        except ScriptError as exc:
            scripts.append(Outcome(path.stem, False, f"cannot run the script: {exc}"))
    if args.list:
        unreadable = 0
        for script in scripts:
            if isinstance(script, Outcome):
                unreadable += 1
                _print(script.summary())
            else:
                links = sorted({step.link for step in script.steps})
                _print(f"{script.name}: {len(script.steps)} steps, connections {links}")
        _print(f"{len(scripts) - unreadable} read, {unreadable} unreadable")
        return 1 if unreadable else 0
    outcomes = asyncio.run(_run_all(scripts, args))
    passed = sum(outcome.passed for outcome in outcomes)
    _print(f"{passed} passed, {len(outcomes) - passed} failed")
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
