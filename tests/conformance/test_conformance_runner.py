"""The conformance runner itself: it reads every carried script, builds the
messages they describe, and fails an acceptor that answers wrongly, saying
why; it passes one that answers right.  The acceptors here are a few lines
of asyncio each, written for one script."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
RUNNER_PATH = HERE / "runner.py"
SCRIPTS = HERE / "quickfix-fix44"
LOGON_SCRIPT = SCRIPTS / "1a_ValidLogonWithCorrectMsgSeqNum.def"
SOH = "\x01"


def _load_runner() -> ModuleType:
    name = "fixgw_conformance_runner"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RUNNER_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


# --- the acceptors -----------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def fix(*fields: str, checksum_delta: int = 0) -> bytes:
    """A message from its fields after BodyLength: 8=FIX.4.4, BodyLength and
    CheckSum are added (the CheckSum off by ``checksum_delta``)."""
    head = f"8=FIX.4.4{SOH}".encode()
    body = "".join(f + SOH for f in fields).encode()
    head += f"9={len(body)}{SOH}".encode()
    total = (sum(head + body) + checksum_delta) % 256
    return head + body + f"10={total:03d}{SOH}".encode()


def sending_time(millis: bool = True) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H:%M:%S.%f")
    return f"52={stamp[:-3] if millis else stamp[:-7]}"


def logon_reply(heartbeat: str = "30", millis: bool = True) -> bytes:
    return fix(
        "35=A", "34=1", "49=ISLD", sending_time(millis), "56=TW44", "98=0", f"108={heartbeat}"
    )


def logout_reply() -> bytes:
    return fix("35=5", "34=2", "49=ISLD", sending_time(), "56=TW44")


async def read_message(reader: asyncio.StreamReader) -> bytes:
    """The next message from the runner (its fields hold no ``<SOH>10=``)."""
    head = await reader.readuntil(f"{SOH}10=".encode())
    return head + await reader.readuntil(SOH.encode())


async def logs_on_and_out(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What the logon script expects: a Logon answered, a Logout answered and
    the connection closed."""
    await read_message(reader)
    writer.write(logon_reply())
    await read_message(reader)
    writer.write(logout_reply())
    await writer.drain()
    writer.close()


async def wrong_heartbeat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_message(reader)
    writer.write(logon_reply(heartbeat="60"))
    await reader.read()


async def whole_seconds(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_message(reader)
    writer.write(logon_reply(millis=False))
    await reader.read()


async def bad_checksum(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_message(reader)
    writer.write(
        fix(
            "35=A", "34=1", "49=ISLD", sending_time(), "56=TW44", "98=0", "108=30", checksum_delta=1
        )
    )
    await reader.read()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_message(reader)
    writer.close()


async def stays_connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_message(reader)
    writer.write(logon_reply())
    await read_message(reader)
    writer.write(logout_reply())
    await reader.read()


def one_session(refuses_a_second: bool = True) -> Handler:
    """Logs on the first connection; a second one while the first is logged
    on is closed unanswered (unless ``refuses_a_second`` is false)."""
    logged_on = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal logged_on
        await read_message(reader)
        if logged_on and refuses_a_second:
            return
        logged_on += 1
        try:
            writer.write(logon_reply())
            await reader.read()
        finally:
            logged_on -= 1

    return handler


@asynccontextmanager
async def acceptor(handler: Handler) -> AsyncIterator[int]:
    """An acceptor on a free loopback port that runs ``handler`` for each
    connection; yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def run_against(handler: Handler, script: Path = LOGON_SCRIPT, **kwargs: float) -> Any:
    async with acceptor(handler) as port:
        return await runner.run_script(runner.parse_script(script), "127.0.0.1", port, **kwargs)


# --- reading scripts ---------------------------------------------------------------------


def test_reads_every_carried_script() -> None:
    paths = runner.script_paths([SCRIPTS, SCRIPTS / "validate"])
    assert len(paths) == 60
    scripts = [runner.parse_script(path) for path in paths]
    assert len({script.name for script in scripts}) == 60
    for script in scripts:
        actions = [step.action for step in script.steps]
        assert actions[0] == "connect", script.name
        assert "send" in actions, script.name
        assert {"expect", "expect_disconnect"} & set(actions), script.name
    both = {s.name for s in scripts if {step.link for step in s.steps} == {1, 2}}
    assert both == {"1b_DuplicateIdentity", "AlreadyLoggedOn"}


def test_directory_means_its_own_scripts_only() -> None:
    paths = runner.script_paths([SCRIPTS])
    assert len(paths) == 59
    assert paths == sorted(paths)
    assert all(path.parent == SCRIPTS for path in paths)


def test_script_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.def"
    path.write_bytes(
        b"# a comment\r\n\n"
        b"iCONNECT\n"
        b"I8=FIX.4.4\x0135=0\x01\n"
        b"i2,CONNECT\n"
        b"E2,8=FIX.4.4\x0135=0\x01\r\n"
        b"e2,DISCONNECT\n"
        b"iDISCONNECT"
    )
    script = runner.parse_script(path)
    assert script.name == "lines"
    assert [(s.line, s.action, s.link, s.message) for s in script.steps] == [
        (3, "connect", 1, b""),
        (4, "send", 1, b"8=FIX.4.4\x0135=0\x01"),
        (5, "connect", 2, b""),
        (6, "expect", 2, b"8=FIX.4.4\x0135=0\x01"),
        (7, "expect_disconnect", 2, b""),
        (8, "disconnect", 1, b""),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"eCONNECT\n", "only scripts for an acceptor"),
        (b"iCONNECT\nX8=FIX.4.4\x01\n", "line 2: not a script line"),
        (b"iCONNECT\niRESTART\n", "line 2: unknown action"),
        (b"I8=FIX.4.4\x0135=0\x01\n", "line 1: connection 1 is not open"),
        (b"iCONNECT\nE3,8=FIX.4.4\x01\n", "line 2: connection 3 is not open"),
        (b"iCONNECT\neDISCONNECT\nI8=FIX.4.4\x01\n", "line 3: connection 1 is not open"),
        (b"iCONNECT\nI8=FIX.4.4\x0158=<FILE:x>\x01\n", "<FILE:...>"),
        (b"# nothing\n", "never connects"),
    ],
)
def test_script_errors(tmp_path: Path, text: bytes, reason: str) -> None:
    path = tmp_path / "bad.def"
    path.write_bytes(text)
    with pytest.raises(runner.ScriptError, match=reason.replace(".", r"\.")):
        runner.parse_script(path)


def test_list_reads_without_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--list", str(SCRIPTS), str(SCRIPTS / "validate")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "60 read, 0 unreadable"
    assert "1b_DuplicateIdentity: 7 steps, connections [1, 2]" in out


# --- building messages -------------------------------------------------------------------


def test_times_are_filled_in() -> None:
    now = dt.datetime(2024, 2, 29, 23, 59, 30, tzinfo=dt.UTC)
    text = b"52=<TIME>\x01122=<TIME-121>\x0160=<TIME+45>\x01"
    assert runner.fill_times(text, now) == (
        b"52=20240229-23:59:30\x01122=20240229-23:57:29\x0160=20240301-00:00:15\x01"
    )


def test_body_length_and_checksum_are_added() -> None:
    message = runner.complete(b"8=FIX.4.4\x0135=0\x0134=2\x01")
    body = b"35=0\x0134=2\x01"
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    assert message == head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def test_fields_given_are_kept() -> None:
    both = b"8=FIX.4.4\x019=52\x0135=0\x0110=000\x01"
    assert runner.complete(both) == both
    out_of_order = b"35=0\x018=FIX.4.4\x019=29\x0110=121\x01"
    assert runner.complete(out_of_order) == out_of_order
    length_only = runner.complete(b"8=FIX.4.4\x019=30\x0135=0\x01")
    assert length_only.startswith(b"8=FIX.4.4\x019=30\x0135=0\x0110=")
    # a CheckSum of the script's own: the BodyLength counted as QuickFIX's tool
    # counts it, short of the SOH before the CheckSum
    checksum_only = runner.complete(b"8=FIX.4.4\x0135=0\x0134=2\x0110=256\x01")
    assert checksum_only == b"8=FIX.4.4\x019=9\x0135=0\x0134=2\x0110=256\x01"


# --- comparing messages ------------------------------------------------------------------


EXPECTED_LOGON = runner.complete(
    b"8=FIX.4.4\x019=63\x0135=A\x0134=1\x0149=ISLD\x0152=00000000-00:00:00.000\x01"
    b"56=TW44\x0198=0\x01108=30\x0110=0\x01"
)


def test_times_and_checksum_are_compared_by_form() -> None:
    assert runner.difference(EXPECTED_LOGON, logon_reply()) is None


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (
            fix("35=A", "34=2", "49=ISLD", sending_time(), "56=TW44", "98=0", "108=30"),
            "expected 34=1, got 34=2",
        ),
        (
            fix("35=A", "49=ISLD", "34=1", sending_time(), "56=TW44", "98=0", "108=30"),
            "field 4: expected 34=1, got 49=ISLD",
        ),
        (
            fix("35=A", "34=1", "49=ISLD", sending_time(), "56=TW44", "98=0"),
            "field 9: expected 108=30, got 10=",
        ),
        (
            fix("35=A", "34=1", "49=ISLD", sending_time(), "56=TW44", "98=0", "108=30", "58=x"),
            "field 10: expected 10=0, got 58=x",
        ),
        (
            fix("35=A", "34=1", "49=ISLD", "52=now", "56=TW44", "98=0", "108=30"),
            "52=now is not of the form",
        ),
        (
            logon_reply(millis=False),
            "expected 9=63, got 9=59 (the scripts count SendingTime with milliseconds)",
        ),
    ],
)
def test_differences_are_named(received: bytes, reason: str) -> None:
    found = runner.difference(EXPECTED_LOGON, received)
    assert found is not None
    assert reason in found


def test_received_messages_are_framed_by_their_length_and_checksum() -> None:
    first, second = logon_reply(), logout_reply()
    buffer = bytearray(first + second[:20])
    assert runner.take_message(buffer) == first
    assert runner.take_message(buffer) is None
    buffer += second[20:]
    assert runner.take_message(buffer) == second
    assert buffer == b""
    with pytest.raises(runner.MalformedError, match="CheckSum"):
        runner.take_message(bytearray(fix("35=0", checksum_delta=5)))
    too_long = fix("35=0", "34=2").replace(b"9=10", b"9=12")
    assert runner.take_message(bytearray(too_long)) is None  # the rest may be on its way
    with pytest.raises(runner.MalformedError, match="not the CheckSum field"):
        runner.take_message(bytearray(too_long + second))
    with pytest.raises(runner.MalformedError, match="BeginString"):
        runner.take_message(bytearray(b"garbage"))


# --- against acceptors -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_passes_an_acceptor_that_answers_right() -> None:
    outcome = await run_against(logs_on_and_out)
    assert outcome.passed, outcome.summary()
    assert outcome.summary().startswith("PASS 1a_ValidLogonWithCorrectMsgSeqNum (")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("handler", "line", "reason"),
    [
        (wrong_heartbeat, 5, "expected 108=30, got 108=60"),
        (whole_seconds, 5, "the scripts count SendingTime with milliseconds"),
        (bad_checksum, 5, "malformed message: CheckSum"),
        (silent, 5, "no message within 0.3s"),
        (hangs_up, 5, "the acceptor closed the connection instead of sending one"),
        (stays_connected, 10, "the acceptor did not disconnect within 0.3s"),
    ],
)
async def test_fails_an_acceptor_that_answers_wrong(
    handler: Handler, line: int, reason: str
) -> None:
    # an acceptor that answers is given time enough on a loaded machine;
    # the two that must run out of it are given little
    waits_out = handler in (silent, stays_connected)
    outcome = await run_against(handler, timeout=0.3 if waits_out else 5)
    assert not outcome.passed
    assert outcome.line == line
    assert reason in outcome.reason
    summary = outcome.summary()
    assert summary.startswith(f"FAIL 1a_ValidLogonWithCorrectMsgSeqNum - line {line}: ")


@pytest.mark.asyncio
async def test_several_connections() -> None:
    script = SCRIPTS / "1b_DuplicateIdentity.def"
    outcome = await run_against(one_session(), script, timeout=5)
    assert outcome.passed, outcome.summary()
    outcome = await run_against(one_session(refuses_a_second=False), script, timeout=5)
    assert not outcome.passed
    assert outcome.line == 14
    assert outcome.reason == "the acceptor sent data instead of disconnecting"
    assert outcome.received is not None
    assert outcome.received.startswith(b"8=FIX.4.4\x019=63\x0135=A\x01")


@pytest.mark.asyncio
async def test_fails_when_nothing_listens() -> None:
    async with acceptor(silent) as port:
        pass
    outcome = await runner.run_script(runner.parse_script(LOGON_SCRIPT), "127.0.0.1", port)
    assert not outcome.passed
    assert outcome.line == 3
    assert f"cannot connect to 127.0.0.1:{port}" in outcome.reason


@pytest.mark.asyncio
async def test_a_script_has_a_time_limit() -> None:
    outcome = await run_against(silent, timeout=5, limit=0.3)
    assert not outcome.passed
    assert outcome.reason == "the script did not end within 0.3s"


async def _command(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER_PATH),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.asyncio
async def test_command_line_fails_a_wrong_acceptor() -> None:
    async with acceptor(wrong_heartbeat) as port:
        status, out = await _command("--port", str(port), "--timeout", "1", "-v", str(LOGON_SCRIPT))
    lines = out.splitlines()
    assert status == 1, out
    assert lines[0].startswith(
        "FAIL 1a_ValidLogonWithCorrectMsgSeqNum - line 5: expected 108=30, got 108=60"
    )
    assert lines[1].startswith("    script:   E8=FIX.4.4|9=63|35=A|")
    assert lines[2].startswith("    expected: 8=FIX.4.4|9=63|35=A|")
    assert lines[3].startswith("    received: 8=FIX.4.4|9=63|35=A|")
    assert "|108=60|" in lines[3]
    assert lines[-1] == "0 passed, 1 failed"


@pytest.mark.asyncio
async def test_command_line_passes_a_right_acceptor() -> None:
    async with acceptor(logs_on_and_out) as port:
        status, out = await _command("--port", str(port), str(LOGON_SCRIPT), str(LOGON_SCRIPT))
    assert status == 0, out
    assert out.splitlines()[-1] == "2 passed, 0 failed"


@pytest.mark.asyncio
async def test_command_line_usage_errors(tmp_path: Path) -> None:
    status, out = await _command(str(SCRIPTS))
    assert status == 2
    assert "--port is required" in out
    status, out = await _command("--port", "1", str(tmp_path))
    assert status == 2
    assert "no .def files" in out
