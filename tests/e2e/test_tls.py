"""FIX client sessions over TLS, with a certificate made for the test."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netkit import make_certificate
from test_order_flow import order, until_final
from test_order_scenarios import free_port

from config import ConfigError, SessionSettings, default_config_path, parse_config
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]


def tls_config(tmp_path: Path, cert: Path, key: Path) -> Path:
    text = default_config_path().read_text()
    marker = 'admin_token = "dev-admin-token"\n'
    assert marker in text
    text = text.replace(marker, marker + f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n', 1)
    path = tmp_path / "tls.toml"
    path.write_text(text)
    return path


@pytest.mark.asyncio
async def test_orders_over_tls_and_plain_tcp_refused(daemon_factory: Any, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    d = daemon_factory("--config", str(tls_config(tmp_path, cert, key))).start()
    trust = ssl.create_default_context(cafile=str(cert))
    c = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await c.connect("127.0.0.1", d.fix_port, tls=trust)
    c.send(b"D", order("TLS1"))
    reports = await until_final(c, b"TLS1")
    assert reports[-1].get(39) == b"2"
    await c.logout()
    # a client that does not speak TLS never gets a session
    plain = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
    with pytest.raises(ConnectionError):
        await plain.connect("127.0.0.1", d.fix_port, timeout=2)
    # nor does one that does not trust the certificate
    untrusting = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
    with pytest.raises(ssl.SSLCertVerificationError):
        await untrusting.connect("127.0.0.1", d.fix_port, tls=ssl.create_default_context())


def test_tls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    text = (
        default_config_path()
        .read_text()
        .replace(
            'admin_token = "dev-admin-token"\n', 'admin_token = ""\ntls_cert_file = "c.pem"\n', 1
        )
    )
    with pytest.raises(ConfigError, match=r"gateway.tls_key_file: required with TLS"):
        parse_config(text)


def test_a_certificate_that_cannot_be_loaded_stops_the_start(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    key.write_text("not a key")
    args = ["--config", str(tls_config(tmp_path, cert, key)), "--data-dir", str(tmp_path / "d")]
    args += ["--http-port", "0", "--drop-copy-port", "0", "--fix-port", str(free_port())]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "run", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "tls_cert_file / tls_key_file: cannot be loaded" in proc.stderr


def test_check_config_refuses_a_certificate_the_start_would_refuse(tmp_path: Path) -> None:
    """What stops the start is an error of check-config too, and both name
    the files: a missing file's error names none by itself."""
    cert, _ = make_certificate(tmp_path)
    missing = tmp_path / "missing.key"
    config = tls_config(tmp_path, cert, missing)
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    assert checked.stderr.splitlines()[0] == f"{config}: 1 error(s)"
    line = checked.stderr.splitlines()[1]
    cannot = "gateway.tls_cert_file / tls_key_file: cannot be loaded from"
    assert line.startswith(f"{cannot} {cert} and {missing}: ")
    assert f"{missing}: No such file or directory" in line

    args = ["--config", str(config), "--data-dir", str(tmp_path / "d")]
    args += ["--http-port", "0", "--drop-copy-port", "0", "--fix-port", str(free_port())]
    started = subprocess.run(
        [sys.executable, "-m", "gateway", "run", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert started.returncode == 2
    assert started.stderr.splitlines()[-1] == f"{config}: refusing to start: {line}"
