"""``fixgw check-config``, ``fixgw run`` and a reload list every problem of a
file in one pass, each with its path: schema errors, unknown adapter kinds
and the adapters' settings together; an lp-sim config is checked against
the lp-sim schema."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from config import Config, default_config_path, load_config
from gateway.cli import main
from gateway.ops.reload import Overrides, Reloader
from lp_adapters.registry import adapter_settings

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "config" / "default.toml"
LP_SIM_A = REPO / "config" / "lp-sim-a.toml"


def edited(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def default_with_errors() -> str:
    """The default config with a schema error, an unknown adapter kind and
    bad settings of a known kind."""
    text = DEFAULT.read_text()
    lp_b = text.index('name = "LP_B"')
    lp_c = text.index('name = "LP_C"')
    return (
        edited(text[:lp_b], ("max_message_size = 65536", "max_message_size = 12"))
        + edited(text[lp_b:lp_c], ("spread_ticks = 6 ", 'spread_ticks = "x"'))
        + edited(
            text[lp_c:],
            ('adapter = "simulated"', 'adapter = "fix44"'),
        )
    )


EXPECTED = [
    "gateway.max_message_size: must be >= 256",
    "lps[1].settings.spread_ticks: expected int, got str",
    'lps[2].adapter: unknown LP adapter kind "fix44"; known kinds: "fix", "simulated"',
]


def run_daemon(args: list[str], **environ: str) -> tuple[int, str]:
    """``fixgw ARGS`` in a process of its own (the daemon's logging set up
    there, not in this one); its exit status and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environ},
    )
    return done.returncode, done.stderr


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_check_config_lists_schema_kind_and_settings_errors_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(default_with_errors())
    status, out, err = run_main(["check-config", str(bad)], capsys)
    assert status == 1
    assert out == ""
    assert err.splitlines() == [f"{bad}: 3 error(s)", *EXPECTED]


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({"FIXGW_ADMIN_TOKEN": "bad token"}, "FIXGW_ADMIN_TOKEN: "),
        ({"FIXGW_READ_TOKEN": "dev-admin-token"}, "the read token (FIXGW_READ_TOKEN"),
    ],
)
def test_check_config_refuses_the_tokens_the_start_would(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    said: str,
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(default_config_path().read_text())
    for name in ("FIXGW_ADMIN_TOKEN", "FIXGW_READ_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    status, out, err = run_main(["check-config", str(good)], capsys)
    assert (status, out) == (1, "")
    assert err.splitlines()[0] == f"{good}: 1 error(s)"
    assert said in err.splitlines()[1]


def test_check_config_notes_what_a_back_office_on_the_config_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = default_config_path().read_text()
    noted = tmp_path / "noted.toml"
    noted.write_text(
        edited(
            text,
            ("drop_copy_port = 9877", "drop_copy_port = 0"),
            ('session = "BACKOFFICE"', 'session = "NOSUCH"'),
            ("http_port = 8082", "http_port = 9876"),
            ('tick_size = "0.00001"         #', 'tick_size = "0.0000000001"    #'),
        )
    )
    status, out, err = run_main(["check-config", str(noted)], capsys)
    assert (status, err) == (0, "")
    notes = [line.split(": ", 1)[1] for line in out.splitlines()[1:]]
    prefix = "`fixgw backoffice run` on it would refuse"
    assert [note.startswith(prefix) for note in notes] == [True, True, True, True]
    assert "backoffice.session: no [[sessions]] entry has TargetCompID NOSUCH" in notes[0]
    assert "gateway.drop_copy_port: 0" in notes[1]
    # its ledger keeps 8 decimals of a price: the trades would be rounded
    assert "instruments: EUR/USD tick_size 0.0000000001: more decimals than the ledger" in notes[2]
    assert "backoffice.http_port: 9876 is gateway.fix_port too" in notes[3]
    # an order larger than the ledger holds of a quantity: its trades refused
    larger = tmp_path / "larger.toml"
    larger.write_text(
        edited(text, ('max_qty = "10000000"          #', 'max_qty = "20000000000"       #'))
    )
    status, out, err = run_main(["check-config", str(larger)], capsys)
    assert (status, err) == (0, "")
    (note,) = out.splitlines()[1:]
    assert "instruments: EUR/USD max_qty 20000000000: more than the ledger holds" in note
    # the default config has nothing to note
    status, out, _ = run_main(["check-config", str(default_config_path())], capsys)
    assert (status, len(out.splitlines())) == (0, 1)


def test_a_cluster_url_with_a_password_is_named_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        default_config_path().read_text() + '\n[cluster]\nservers = ["natss://u:S3cretPW@h:4222"]\n'
    )
    status, _, err = run_main(["check-config", str(bad)], capsys)
    assert status == 1
    assert "natss://u:(redacted)@h:4222" in err
    assert "S3cretPW" not in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nats://h:4222x", "a port that is not a number from 0 to 65535"),
        ("nats://h:70000", "a port that is not a number from 0 to 65535"),
        ("nats://", "no host"),
        ("tls://:4222", "no host"),
    ],
)
def test_a_cluster_url_that_cannot_be_used_is_refused_by_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    """What the start would refuse (the NATS client cannot parse it), the
    check finds first, in one line naming the setting."""
    bad = tmp_path / "bad.toml"
    bad.write_text(
        default_config_path().read_text() + f'\n[cluster]\nservers = ["nats://h:4222", "{url}"]\n'
    )
    status, _, err = run_main(["check-config", str(bad)], capsys)
    assert status == 1
    assert f"cluster.servers[1]: {url!r} has {said}" in err.splitlines()


def test_run_refuses_to_start_listing_the_same_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(default_with_errors())
    status, _, err = run_main(["run", "--config", str(bad)], capsys)
    assert status == 2
    assert err.splitlines() == [
        f"{bad}: refusing to start, 3 configuration error(s):",
        *(f"  {line}" for line in EXPECTED),
    ]
    assert not (tmp_path / "var").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Logging as the tests found it, after ``fixgw run`` configured it."""
    found = structlog.get_config()
    yield
    structlog.reset_defaults()
    structlog.configure(**found)
    logging.getLogger().handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)


@pytest.mark.usefixtures("restore_logging")
def test_run_refuses_a_data_dir_that_cannot_be_made_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(DEFAULT.read_text())
    (tmp_path / "taken").write_text("a file, not a folder")
    data_dir = tmp_path / "taken" / "data"
    ports = [str(free_port()) for _ in range(2)]
    args = ["run", "--config", str(path), "--data-dir", str(data_dir), "--http-port", "0"]
    args += ["--fix-port", ports[0], "--drop-copy-port", ports[1]]
    status, err = run_daemon(args)
    assert status == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"{path}: refusing to start: gateway.data_dir: cannot create {data_dir}: Not a directory"
    )


@pytest.mark.usefixtures("restore_logging")
def test_run_refuses_a_data_dir_that_is_a_file_in_one_line(tmp_path: Path) -> None:
    """Named as what it is, not as the error of making it ("File exists")."""
    path = tmp_path / "gateway.toml"
    path.write_text(DEFAULT.read_text())
    data_dir = tmp_path / "data"
    data_dir.write_text("a file, not a folder")
    ports = [str(free_port()) for _ in range(2)]
    args = ["run", "--config", str(path), "--data-dir", str(data_dir), "--http-port", "0"]
    args += ["--fix-port", ports[0], "--drop-copy-port", ports[1]]
    status, err = run_daemon(args)
    assert status == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"{path}: refusing to start: gateway.data_dir: {data_dir} is not a folder"
    )
    assert data_dir.read_text() == "a file, not a folder"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("name", ["orders", "orders/segments", "sessions", "dropcopy"])
def test_run_refuses_a_data_folder_that_is_no_folder_in_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(DEFAULT.read_text())
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / name).write_text("a file, not a folder")
    ports = [str(free_port()) for _ in range(2)]
    args = ["run", "--config", str(path), "--data-dir", str(data_dir), "--http-port", "0"]
    args += ["--fix-port", ports[0], "--drop-copy-port", ports[1]]
    status, err = run_daemon(args)
    assert status == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"{path}: refusing to start: gateway.data_dir: {data_dir / name} is not a folder "
        f"(move it away: the gateway keeps its {name} there)"
    )
    assert (data_dir / name).read_text() == "a file, not a folder"
    assert sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file()) == [
        name
    ]


def test_run_refuses_a_read_token_the_environment_makes_the_admin_token(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(DEFAULT.read_text())
    ports = [str(free_port()) for _ in range(2)]
    args = ["run", "--config", str(path), "--data-dir", str(tmp_path / "d"), "--http-port", "0"]
    args += ["--fix-port", ports[0], "--drop-copy-port", ports[1]]
    # the config's admin token
    status, err = run_daemon(args, FIXGW_READ_TOKEN="dev-admin-token")
    assert status == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        f"{path}: refusing to start: the read token (FIXGW_READ_TOKEN or gateway.read_token) "
        "is the admin token"
    )


VISIBLE_ASCII = "visible ASCII characters only (letters, digits, punctuation; no spaces or accents)"


def test_check_config_refuses_a_token_outside_visible_ascii(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bearer token goes into an HTTP header: "clé" was taken by the
    daemon from curl (UTF-8) and refused to ``fixgw status --config``
    (latin-1).  The error does not repeat the token."""
    bad = tmp_path / "bad.toml"
    bad.write_text(
        edited(
            DEFAULT.read_text(),
            ('admin_token = "dev-admin-token"', 'admin_token = "clé-admin"\nread_token = "a b"'),
        )
    )
    status, out, err = run_main(["check-config", str(bad)], capsys)
    assert status == 1
    assert out == ""
    assert err.splitlines() == [
        f"{bad}: 2 error(s)",
        f"gateway.admin_token: {VISIBLE_ASCII}",
        f"gateway.read_token: {VISIBLE_ASCII}",
    ]
    spaced = tmp_path / "spaced.toml"  # spaces around a token are not part of it
    spaced.write_text(
        edited(DEFAULT.read_text(), ('admin_token = "dev-admin-token"', 'admin_token = " tok "'))
    )
    assert run_main(["check-config", str(spaced)], capsys)[0] == 0


def test_run_refuses_a_token_from_the_environment_outside_visible_ascii(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(DEFAULT.read_text())
    ports = [str(free_port()) for _ in range(2)]
    args = ["run", "--config", str(path), "--data-dir", str(tmp_path / "d"), "--http-port", "0"]
    args += ["--fix-port", ports[0], "--drop-copy-port", ports[1]]
    status, err = run_daemon(args, FIXGW_ADMIN_TOKEN="tok€n")
    assert status == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"{path}: refusing to start: FIXGW_ADMIN_TOKEN: {VISIBLE_ASCII}"


def reloading(tmp_path: Path) -> tuple[Path, Reloader, list[Config]]:
    """A config file of the default, the reloader of a daemon running on it,
    and the configs that reloader applies."""
    path = tmp_path / "gateway.toml"
    path.write_text(DEFAULT.read_text())
    current = load_config(path, adapter_settings())
    applied: list[Config] = []
    reloader = Reloader(
        path,
        Overrides(),
        current=lambda: current,
        version=lambda: "1-test",
        apply=applied.append,
    )
    return path, reloader, applied


@pytest.mark.asyncio
async def test_a_reload_refuses_the_file_listing_the_same_errors(tmp_path: Path) -> None:
    path, reloader, applied = reloading(tmp_path)
    path.write_text(default_with_errors())
    outcome = await reloader.reload("test")
    assert outcome.status == "invalid"
    assert list(outcome.details) == EXPECTED
    assert applied == []


@pytest.mark.asyncio
async def test_a_reload_making_the_admin_token_the_read_token_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, reloader, applied = reloading(tmp_path)
    monkeypatch.setenv("FIXGW_READ_TOKEN", "rotated")
    path.write_text(
        DEFAULT.read_text().replace('admin_token = "dev-admin-token"', 'admin_token = "rotated"')
    )
    outcome = await reloader.reload("test")
    assert outcome.status == "invalid"
    (detail,) = outcome.details
    assert detail.startswith("the read token (FIXGW_READ_TOKEN or gateway.read_token) is the")
    assert applied == []


def test_check_config_says_where_the_data_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etc" / "gateway.toml"
    path.parent.mkdir()
    path.write_text(DEFAULT.read_text())
    status, out, _ = run_main(["check-config", str(path)], capsys)
    assert status == 0
    assert out.startswith(f"{path}: OK (4 sessions: ")
    assert out.rstrip().endswith(f"; data_dir {tmp_path / 'var' / 'data'})")


def test_an_lp_sim_config_is_told_by_its_lp_table_and_checked_as_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run_main(["check-config", str(LP_SIM_A)], capsys)
    assert (status, err) == (0, "")
    assert out == (
        f"{LP_SIM_A}: OK (lp-sim LPX1, 1 sessions: FIX.4.4:LPX1->GATEWAY; "
        f"data_dir {REPO / 'var' / 'lp-sim' / 'LPX1'})\n"
    )


def test_an_lp_sim_config_lists_every_error_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "lp.toml"
    bad.write_text(
        edited(
            LP_SIM_A.read_text(),
            ('name = "LPX1" ', 'name = "LP X1"'),
            ("ResetOnLogon = false", "ResetOnLogon = false\nHeartBtInt = 0"),
            ('tick_size = "0.001"', "tick_size = 0.001"),
            ("spread_ticks = 4 ", "spred_ticks = 4 "),
        )
    )
    status, _, err = run_main(["check-config", str(bad)], capsys)
    assert status == 1
    assert err.splitlines() == [
        f"{bad}: 4 error(s) in an lp-sim config",
        "lp.name: must be printable ASCII without whitespace, '=', '/' or SOH",
        "sessions[0].HeartBtInt: must be > 0",
        'instruments[2].tick_size: write decimals as strings, e.g. "0.00001" (floats are inexact)',
        "simulated.spred_ticks: unknown field",
    ]


def test_the_simulated_lp_rules_come_with_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "lp.toml"
    bad.write_text(
        edited(
            LP_SIM_A.read_text(),
            ("ResetOnLogon = false", "ResetOnLogon = false\nHeartBtInt = 0"),
            ('"EUR/USD" = "1.08500"', '"EUR/USD" = "1.085001"'),
            ('"BTC/USD" = "30000.00"', '"BTC/USD" = "30000.00"\n"XAG/USD" = "20.00"'),
        )
    )
    status, _, err = run_main(["check-config", str(bad)], capsys)
    assert status == 1
    assert err.splitlines() == [
        f"{bad}: 3 error(s) in an lp-sim config",
        "sessions[0].HeartBtInt: must be > 0",
        'simulated.start_mid."XAG/USD": no such instrument XAG/USD',
        'simulated.start_mid."EUR/USD": must be a multiple of the tick size 0.00001',
    ]


def test_the_flag_checks_any_file_as_an_lp_sim_config(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_main(["check-config", "--lp-sim", str(DEFAULT)], capsys)
    assert status == 1
    lines = err.splitlines()
    assert lines[0].endswith("error(s) in an lp-sim config")
    assert "lp: required field missing" in lines
    assert "gateway: unknown field" in lines


@pytest.mark.parametrize("nodes", ["0", "-1", "1", "2", "ten", "10"])
def test_a_nats_cluster_of_no_nodes_is_refused_at_once(
    nodes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["nats-cluster", "--nodes", nodes])
    assert stopped.value.code == 2
    assert "a number of nodes, 3 to 9" in capsys.readouterr().err


def test_a_nats_cluster_whose_folder_cannot_be_made_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a folder\n")
    status, out, err = run_main(["nats-cluster", "--dir", str(taken)], capsys)
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        f"fixgw nats-cluster: cannot make {taken / 'n1' / 'store'}: Not a directory"
    ]


def test_a_nats_cluster_given_a_port_takes_the_ports_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--port``: the same URLs at every start, node i on PORT+2i
    (client) and PORT+2i+1 (route), rather than free ports."""
    from gateway.sim import nats_cluster

    asked: list[list[tuple[int, int]]] = []

    def start(self: nats_cluster.NatsCluster, timeout: float = 30.0) -> None:
        asked.append([(node.client_port, node.route_port) for node in self.nodes])
        raise nats_cluster.NatsClusterError("not started in this test")

    monkeypatch.setattr(nats_cluster.NatsCluster, "start", start)
    status = main(["nats-cluster", "--dir", str(tmp_path), "--nodes", "3", "--port", "24101"])
    assert status == 2
    assert asked == [[(24101, 24102), (24103, 24104), (24105, 24106)]]
    assert "not started in this test" in capsys.readouterr().err

    # a first port that leaves no room for every node is refused, naming it
    assert main(["nats-cluster", "--dir", str(tmp_path), "--port", "65533"]) == 2
    assert "--port 65533 leaves no room for 3 nodes" in capsys.readouterr().err
    assert len(asked) == 1


def _free_run(count: int) -> int:
    """The first of ``count`` consecutive ports on 127.0.0.1 that nothing is
    bound to right now."""
    from netkit import free_port as unbound_port  # below the ephemeral range

    for _ in range(100):
        first = unbound_port()
        if first + count > 65536:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports")


def test_a_nats_cluster_whose_node_cannot_listen_is_refused_in_one_line(tmp_path: Path) -> None:
    """A node that exits at once (its port taken) stops the start: the
    URLs of a cluster short of a node are not printed as if it ran."""
    first = _free_run(6)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", first))
        taken.listen()
        command = ["nats-cluster", "--dir", str(tmp_path), "--port", str(first)]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("fixgw nats-cluster: nats-server n1 exited")
    assert "address already in use" in line


def test_a_simulated_lp_quoting_more_levels_than_it_could_build_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2**70 levels a side passed the check, and the start then hung
    building the first quote."""
    text = default_config_path().read_text()
    assert "depth_levels = 5 " in text
    bad = tmp_path / "deep.toml"
    bad.write_text(text.replace("depth_levels = 5 ", f"depth_levels = {2**70} ", 1))
    status, out, err = run_main(["check-config", str(bad)], capsys)
    assert (status, out) == (1, "")
    head, line = err.splitlines()
    assert head == f"{bad}: 1 error(s)"
    assert "depth_levels" in line
    assert "<= 1000" in line
