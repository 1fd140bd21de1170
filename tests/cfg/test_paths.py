"""Relative paths in a config file belong to the file's folder, wherever the
process was started from; a config keeps them as written, and they are
resolved where they are used."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import config.loader
from config import (
    Config,
    config_base,
    default_config_path,
    load_config,
    parse_config,
    resolve_paths,
)
from config.schema import FilePath
from config.walk import rebase_paths
from gateway.sim.lp_sim_config import load_lp_sim_config
from lp_adapters.registry import adapter_settings

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway]
data_dir = "{data_dir}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "1000000"
quote_currency = "USD"

[[lps]]
name = "LP_F"
adapter = "fix"
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"
[lps.settings]
port = 9001
sender_comp_id = "GW"
target_comp_id = "LPF"
data_dir = "lp-f"

[[lps]]
name = "LP_G"
adapter = "fix"
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"
[lps.settings]
port = 9002
sender_comp_id = "GW"
target_comp_id = "LPG"

[[lps]]
name = "LP_S"
adapter = "simulated"
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"
"""


def write(folder: Path, data_dir: str = "state", cert: str = "tls/gw.pem", key: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.toml"
    path.write_text(CONFIG.format(data_dir=data_dir, cert=cert, key=key or "tls/gw.key"))
    return path


def test_a_file_s_paths_belong_to_its_folder_wherever_the_process_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "etc")
    for cwd in (tmp_path, tmp_path / "etc", REPO):
        monkeypatch.chdir(cwd)
        assert config_base(path) == tmp_path / "etc"
        assert config_base(Path("..") / path.relative_to(tmp_path)) == Path.cwd().parent / "etc"
        resolved = resolve_paths(load_config(path), config_base(path), adapter_settings())
        assert resolved.gateway.data_dir == str(tmp_path / "etc" / "state")
        assert resolved.gateway.tls_cert_file == str(tmp_path / "etc" / "tls" / "gw.pem")
        assert resolved.gateway.tls_key_file == str(tmp_path / "etc" / "tls" / "gw.key")
        fix_f, fix_g, simulated = (lp.settings for lp in resolved.lps)
        assert fix_f["data_dir"] == str(tmp_path / "etc" / "lp-f")
        assert "data_dir" not in fix_g  # the default, under the gateway's data directory
        assert simulated == {}


def test_the_config_keeps_its_paths_as_written(tmp_path: Path) -> None:
    """A reloaded file is compared with the config in force: both as written."""
    path = write(tmp_path)
    cfg = load_config(path, adapter_settings())
    assert cfg.gateway.data_dir == "state"
    assert cfg.lps[0].settings["data_dir"] == "lp-f"
    assert load_config(path, adapter_settings()) == cfg


def test_absolute_and_empty_paths_are_kept_and_dots_are_folded(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", data_dir="/srv/fixgw", cert="")
    path.write_text(path.read_text().replace('tls_key_file = "tls/gw.key"', 'tls_key_file = ""'))
    resolved = resolve_paths(load_config(path), config_base(path))
    assert resolved.gateway.data_dir == "/srv/fixgw"
    assert resolved.gateway.tls_cert_file == ""
    assert resolved.gateway.tls_key_file == ""
    path = write(tmp_path / "etc", data_dir="../var/./data")
    resolved = resolve_paths(load_config(path), config_base(path))
    assert resolved.gateway.data_dir == str(tmp_path / "var" / "data")


def test_without_the_settings_types_adapter_settings_are_left_as_written(tmp_path: Path) -> None:
    path = write(tmp_path)
    resolved = resolve_paths(load_config(path), tmp_path)
    assert resolved.lps[0].settings["data_dir"] == "lp-f"


def test_the_shipped_configs_keep_their_data_where_it_always_was() -> None:
    """Beside config/, as when they were read from the repository root;
    the FIX LPs' config apart from the default's (one run's journal is not
    the other's)."""
    for name, data in [
        ("default.toml", "var/data"),
        ("fix-lps.toml", "var/data-fix-lps"),
        ("conformance.toml", "var/conformance"),
    ]:
        path = REPO / "config" / name
        resolved = resolve_paths(load_config(path), config_base(path), adapter_settings())
        assert resolved.gateway.data_dir == str(REPO / data)
    for name, data in [("lp-sim-a.toml", "var/lp-sim/LPX1"), ("lp-sim-b.toml", "var/lp-sim/LPX2")]:
        assert load_lp_sim_config(REPO / "config" / name).lp.data_dir == str(REPO / data)


def test_the_installed_packaged_default_keeps_its_data_out_of_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed (in site-packages), the packaged default is read as if it were
    ./config/default.toml: its data goes to ./var/data of the working directory."""
    monkeypatch.chdir(tmp_path)
    packaged = default_config_path()
    assert config_base(packaged) == packaged.parent  # a source checkout: its own folder
    monkeypatch.setattr(config.loader, "_installed", lambda folder: True)
    assert config_base(packaged) == tmp_path / "config"
    resolved = resolve_paths(load_config(packaged), config_base(packaged))
    assert resolved.gateway.data_dir == str(tmp_path / "var" / "data")
    other = write(tmp_path / "etc")  # any other file: its own folder still
    assert config_base(other) == tmp_path / "etc"


def test_installed_means_inside_site_packages() -> None:
    import sysconfig

    assert config.loader._installed(Path(sysconfig.get_path("purelib")) / "config")
    assert not config.loader._installed(REPO / "config")


def test_an_lp_sim_config_resolves_against_its_folder_and_the_flag_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (REPO / "config" / "lp-sim-a.toml").read_text()
    path = tmp_path / "lp" / "sim.toml"
    path.parent.mkdir()
    path.write_text(text.replace('"../var/lp-sim/LPX1"', '"stores"'))
    monkeypatch.chdir(tmp_path)
    assert load_lp_sim_config(path).lp.data_dir == str(tmp_path / "lp" / "stores")
    # given on the command line: as given, relative to the working directory
    assert load_lp_sim_config(path, data_dir="here").lp.data_dir == "here"


def test_text_without_a_file_keeps_relative_paths_relative() -> None:
    cfg = parse_config(CONFIG.format(data_dir="state", cert="c", key="k"))
    assert cfg.gateway.data_dir == "state"


class Inner(msgspec.Struct, frozen=True, kw_only=True):
    file: FilePath | None = None
    name: str = ""


class Outer(msgspec.Struct, frozen=True, kw_only=True):
    files: tuple[FilePath, ...] = ()
    by_name: dict[str, Inner] = {}
    inner: Inner = Inner()


def test_the_walk_rebases_declared_paths_only() -> None:
    value = {
        "files": ["a", "/b", ""],
        "by_name": {"x": {"file": "c", "name": "d"}},
        "inner": {"file": None, "name": "e"},
        "other": "f",
    }
    assert rebase_paths(value, Outer, "/base") == {
        "files": ["/base/a", "/b", ""],
        "by_name": {"x": {"file": "/base/c", "name": "d"}},
        "inner": {"file": None, "name": "e"},
        "other": "f",
    }


def test_resolving_keeps_everything_else(tmp_path: Path) -> None:
    cfg = load_config(REPO / "config" / "default.toml", adapter_settings())
    resolved = resolve_paths(cfg, tmp_path, adapter_settings())
    assert isinstance(resolved, Config)
    assert msgspec.structs.replace(resolved.gateway, data_dir=cfg.gateway.data_dir) == cfg.gateway
    assert resolved.lps == cfg.lps
    assert resolved.instruments == cfg.instruments
    assert resolved.risk == cfg.risk
