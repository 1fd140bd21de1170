"""``fixgw backoffice breaks|recon|treasury|status|export``: what the
command sends to the back office and how it fails, against a small fake
back office on loopback."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from netkit import answering_http, free_port

from gateway.cli import main


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
