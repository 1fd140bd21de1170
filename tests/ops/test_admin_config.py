"""``/admin/config``: the config in force as the admin API shows it, to the
read token too, with every secret left out."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from config import default_config_path, load_config
from gateway.ops import admin

CONFIG = load_config(default_config_path())


def shown(**tables: Any) -> dict[str, Any]:
    config = CONFIG
    for name, changes in tables.items():
        config = msgspec.structs.replace(
            config, **{name: msgspec.structs.replace(getattr(config, name), **changes)}
        )
    running = SimpleNamespace(
        config=config,
        config_version=lambda: ("1-abc", 1),
        reloader=SimpleNamespace(path=Path("fixgw.toml")),
    )
    redacted: dict[str, Any] = admin.config(running)["config"]
    return redacted


def test_tokens_and_passwords_are_redacted() -> None:
    config = shown(gateway={"admin_token": "adm-secret", "read_token": "rd-secret"})
    assert config["gateway"]["admin_token"] == admin.REDACTED
    assert config["gateway"]["read_token"] == admin.REDACTED
    assert "secret" not in repr(config)


def test_the_password_in_a_ledger_or_cluster_url_is_redacted() -> None:
    config = shown(
        backoffice={"ledger": "postgresql://fixgw:s3cr3t@db.example:5432/ledger"},
        cluster={
            "servers": (
                "nats://gw:p@ss@127.0.0.1:4222",
                "nats://127.0.0.1:4223",
                "tls://gw:nat5pw@nats.example:4224/",
            )
        },
    )
    assert config["backoffice"]["ledger"] == "postgresql://fixgw:(redacted)@db.example:5432/ledger"
    assert config["cluster"]["servers"] == [
        "nats://gw:(redacted)@127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        "tls://gw:(redacted)@nats.example:4224/",
    ]
    for secret in ("s3cr3t", "p@ss", "nat5pw"):
        assert secret not in repr(config)


def test_a_password_in_a_url_s_query_is_redacted() -> None:
    config = shown(backoffice={"ledger": "postgresql://db/ledger?user=fixgw&Password=s3cr3t&x=1"})
    assert config["backoffice"]["ledger"] == (
        "postgresql://db/ledger?user=fixgw&Password=(redacted)&x=1"
    )


def test_a_url_without_a_password_is_shown_as_written() -> None:
    config = shown(backoffice={"ledger": "postgresql://fixgw@db:5432/ledger"})
    assert config["backoffice"]["ledger"] == "postgresql://fixgw@db:5432/ledger"


def test_the_token_of_a_nats_url_is_redacted() -> None:
    config = shown(cluster={"servers": ("nats://s3cr3tToken@127.0.0.1:4222",)})
    assert config["cluster"]["servers"] == ["nats://(redacted)@127.0.0.1:4222"]
