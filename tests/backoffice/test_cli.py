"""``fixgw backoffice breaks|recon|treasury|status|export``: what the
command sends to the back office and how it fails, against a small fake
back office on loopback."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netkit import answering_http, free_port

from config import default_config_path
from gateway.cli import main
from gateway.storage.session_store import open_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[Any]:
    with answering_http(
        (200, b'{"count": 0, "by_type": {}, "breaks": []}'), methods=True
    ) as server:
        yield server


def test_the_token_never_goes_to_a_proxy_from_the_environment(
    fake: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fake stands as the proxy: it would be handed the admin token."""
    # urlopen's opener reads the proxies once: a fresh one for this test
    monkeypatch.setattr(urllib.request, "_opener", None)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", fake.url)
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    nobody = f"http://127.0.0.1:{free_port()}"
    for command in (["status"], ["breaks"], ["recon"], ["export", "--date", "2026-01-02"]):
        assert main(["backoffice", *command, "--url", nobody]) == 1
    assert fake.seen == []
    err = capsys.readouterr().err
    assert f"fixgw backoffice status: no back office answers at {nobody}" in err


@pytest.mark.parametrize("kind", ["missing at lp", "missing_at_lp&x=1", "a#b", "é"])
def test_a_break_type_is_sent_as_one_query_value(fake: Any, kind: str) -> None:
    assert main(["backoffice", "breaks", "--url", fake.url, "--type", kind]) == 0
    ((method, target, _),) = fake.seen
    assert method == "GET"
    parts = urllib.parse.urlsplit(target)
    assert parts.path == "/backoffice/breaks"
    assert urllib.parse.parse_qs(parts.query) == {"type": [kind]}


def test_an_export_sends_its_date(fake: Any) -> None:
    fake.answer = (200, b'{"trade_date": "2026-01-02", "files": []}')
    assert main(["backoffice", "export", "--url", fake.url, "--date", "2026-01-02"]) == 0
    assert [(m, t) for m, t, _ in fake.seen] == [("POST", "/backoffice/export?date=2026-01-02")]


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://127.0.0.1:notaport", "http://127.0.0.1:99999", "127.0.0.1:8082"],
)
def test_a_bad_url_is_one_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backoffice", "status", "--url", url]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"fixgw backoffice status: bad --url {url!r}: give http://HOST:PORT\n"


def test_a_token_from_the_environment_outside_visible_ascii_is_refused(
    fake: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FIXGW_ADMIN_TOKEN", "tok€n")
    assert main(["backoffice", "status", "--url", fake.url]) == 2
    assert fake.seen == []
    assert capsys.readouterr().err.splitlines() == [
        "fixgw backoffice: configuration error(s):",
        "  FIXGW_ADMIN_TOKEN: visible ASCII characters only (letters, digits, punctuation; "
        "no spaces or accents)",
    ]


def _run_config(tmp_path: Path) -> Path:
    """The default config, its back office on ports of its own, its files
    under ``tmp_path``."""
    text = default_config_path().read_text()
    text = text.replace("http_port = 8082", f"http_port = {free_port()}", 1)
    text = text.replace("drop_copy_port = 9877", f"drop_copy_port = {free_port()}", 1)
    path = tmp_path / "backoffice.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("kind", ["a file where its folder goes", "in use by another"])
def test_a_session_store_that_cannot_be_opened_refuses_the_start(tmp_path: Path, kind: str) -> None:
    """The drop copy's session store is opened before the back office says
    it started: another back office on the data directory (one on a
    PostgreSQL ledger takes no lock on the file of its ledger), or a folder
    it cannot make there, is one line naming it and exit status 2."""
    data = tmp_path / "data"
    session = data / "backoffice" / "session"
    session.parent.mkdir(parents=True)
    held = None
    if kind == "in use by another":
        held = open_store("file", session, "BACKOFFICE-GATEWAY")
        cause = f"session store {session / 'BACKOFFICE-GATEWAY'} is in use"
    else:
        session.write_text("")
        cause = f"cannot open {session / 'BACKOFFICE-GATEWAY'}: Not a directory"
    args = ["--config", str(_run_config(tmp_path)), "--data-dir", str(data)]
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "gateway", "backoffice", "run", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        if held is not None:
            held.close()
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout
    assert "backoffice_started" not in ran.stdout + ran.stderr
    assert ran.stderr.splitlines()[-1] == (
        f"fixgw backoffice: refusing to start: the drop copy's session: {cause}"
    )
