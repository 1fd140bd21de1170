"""FIX client sessions over TLS, with a certificate made for the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_order_flow import order, until_final
from test_order_scenarios import free_port

from config import ConfigError, SessionSettings, default_config_path, parse_config
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fixgw test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


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
