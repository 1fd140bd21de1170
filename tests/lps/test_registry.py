"""The adapter registry: kinds by name with their settings types, duplicates
refused, clear misses, settings converted and checked before an adapter is
built, and a config's LPs checked without building any."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from lp_test_kit import INSTRUMENTS, EventQueue

from config import ConfigError, SettingsSchema, parse_config
from lp_adapters import registry
from lp_adapters.base import EventSink, LpAdapter
from lp_adapters.fix import FixLp, FixLpSettings
from lp_adapters.registry import (
    adapter_class,
    adapter_kind,
    adapter_settings,
    create_adapter,
    register,
    registered_kinds,
    unregister,
)
from lp_adapters.simulated import SimulatedLp, SimulatedLpSettings
from router.model import ChildOrder, Instrument, LpEvent


class RecordingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    symbol: str = "EUR/USD"


def check_recording(
    settings: RecordingSettings, instruments: Mapping[str, Instrument]
) -> list[str]:
    if settings.symbol not in instruments:
        return [f"symbol: no such instrument {settings.symbol}"]
    return []


class RecordingLp(LpAdapter):
    """A fake adapter that only records what it was asked to do."""

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: object,
    ) -> None:
        super().__init__(name, instruments, sink, settings)
        self.calls: list[str] = []
        self._up = False

    @property
    def up(self) -> bool:
        return self._up

    async def connect(self) -> None:
        self.calls.append("connect")
        self._up = True

    async def disconnect(self) -> None:
        self.calls.append("disconnect")
        self._up = False

    def send(self, child: ChildOrder) -> None:
        self.calls.append(f"send {child.child_id}")


@pytest.fixture(autouse=True)
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def sink(event: LpEvent) -> None:
    raise AssertionError(f"unexpected event {event!r}")


def register_recording() -> None:
    register("recording", RecordingSettings, check=check_recording)(RecordingLp)


def test_builtin_kinds_resolve() -> None:
    assert adapter_class("simulated") is SimulatedLp
    assert adapter_class("fix") is FixLp
    assert adapter_kind("simulated").settings_type is SimulatedLpSettings
    assert adapter_kind("fix").settings_type is FixLpSettings
    assert registered_kinds() == ("fix", "simulated")


def test_adapter_settings_name_every_kind_with_its_type_and_check() -> None:
    register_recording()
    schemas = adapter_settings()
    assert list(schemas) == ["fix", "recording", "simulated"]
    assert schemas["recording"] == SettingsSchema(
        settings_type=RecordingSettings, check=check_recording
    )
    assert schemas["simulated"].settings_type is SimulatedLpSettings
    assert schemas["fix"].check is not None


def test_checking_settings_does_not_import_the_adapters() -> None:
    script = (
        "import sys\n"
        "from lp_adapters.registry import adapter_settings, registered_kinds\n"
        "assert set(adapter_settings()) == set(registered_kinds()) == {'fix', 'simulated'}\n"
        "loaded = [m for m in sys.modules if m.endswith('.adapter') or m.startswith('gateway')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_register_makes_a_kind_available() -> None:
    assert register("recording", RecordingSettings)(RecordingLp) is RecordingLp
    assert adapter_class("recording") is RecordingLp
    assert registered_kinds() == ("fix", "recording", "simulated")
    unregister("recording")
    assert registered_kinds() == ("fix", "simulated")
    with pytest.raises(KeyError):
        unregister("recording")


def test_duplicate_kind_is_refused() -> None:
    register_recording()

    class Other(RecordingLp):
        pass

    with pytest.raises(ValueError, match=r"'recording' is already registered by .*RecordingLp"):
        register("recording")(Other)
    with pytest.raises(
        ValueError, match=r"'simulated' is already registered by .*simulated\.adapter\.SimulatedLp"
    ):
        register("simulated")(Other)
    assert adapter_class("recording") is RecordingLp


def test_only_adapter_classes_and_config_kinds_register() -> None:
    with pytest.raises(TypeError, match="not an LpAdapter subclass"):
        register("thing")(dict)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="non-empty"):
        register("")
    with pytest.raises(ValueError, match="'Fix LP': must be an adapter kind such as"):
        register("Fix LP")
    with pytest.raises(TypeError, match="must be a class"):
        register("thing", dict[str, int])


def test_unknown_kind_names_the_known_kinds() -> None:
    register_recording()
    known = r"unknown LP adapter kind 'fix44'; known kinds: 'fix', 'recording', 'simulated'"
    with pytest.raises(KeyError, match=known):
        adapter_class("fix44")
    with pytest.raises(KeyError, match=known):
        create_adapter("fix44", "lp-x", INSTRUMENTS, sink, {})


@pytest.mark.asyncio
async def test_create_adapter_builds_a_registered_kind_with_typed_settings() -> None:
    register_recording()
    lp = create_adapter("recording", "lp-r", INSTRUMENTS, sink, {"host": "lp", "port": 9001})
    assert isinstance(lp, RecordingLp)
    assert lp.name == "lp-r"
    assert dict(lp.instruments) == INSTRUMENTS
    assert lp.settings == RecordingSettings(host="lp", port=9001)
    assert lp.sink is sink
    assert lp.data_dir == Path("var/data")
    assert repr(lp) == "<RecordingLp 'lp-r' down>"
    await lp.connect()
    assert lp.up
    # cancel is optional: the contract's default does nothing.
    assert lp.cancel("c-1") is None
    await lp.disconnect()
    assert lp.calls == ["connect", "disconnect"]
    typed = RecordingSettings(host="lp", port=1)
    again = create_adapter("recording", "lp-r", INSTRUMENTS, sink, typed, Path("elsewhere"))
    assert again.settings is typed
    assert again.data_dir == Path("elsewhere")


@pytest.mark.parametrize(
    ("settings", "problems"),
    [
        ({}, "host: required field missing; port: required field missing"),
        ({"host": "lp", "port": 0, "colour": 1}, "port: must be >= 1; colour: unknown field"),
        ({"host": "lp", "port": 1, "symbol": "GBP/USD"}, "symbol: no such instrument GBP/USD"),
        (RecordingSettings(host="lp", port=1, symbol="XX"), "symbol: no such instrument XX"),
    ],
)
def test_create_adapter_refuses_bad_settings_naming_the_lp_and_every_problem(
    settings: Any, problems: str
) -> None:
    register_recording()
    with pytest.raises(ValueError, match=r"^LP 'lp-r': invalid settings: ") as info:
        create_adapter("recording", "lp-r", INSTRUMENTS, sink, settings)
    assert str(info.value) == f"LP 'lp-r': invalid settings: {problems}"


def test_a_kind_without_a_settings_type_takes_any_table() -> None:
    register("recording")(RecordingLp)
    lp = create_adapter("recording", "lp-r", INSTRUMENTS, sink, {"anything": [1, "a"]})
    assert lp.settings == {"anything": [1, "a"]}
    assert adapter_settings()["recording"] == SettingsSchema(settings_type=dict)


def test_create_adapter_builds_a_simulated_lp() -> None:
    events = EventQueue()
    lp = create_adapter("simulated", "lp-s", INSTRUMENTS, events, {"spread_ticks": 4, "seed": 9})
    assert isinstance(lp, SimulatedLp)
    assert lp.config.spread_ticks == 4
    assert lp.config.seed == 9
    assert not lp.up


CONFIG = """
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
"""


def lp(name: str, adapter: str, settings: str) -> str:
    return (
        f'[[lps]]\nname = "{name}"\nadapter = "{adapter}"\n'
        f'soft_limit_usd = "1000000"\nhard_limit_usd = "2000000"\n'
        f"[lps.settings]\n{settings}\n"
    )


def test_every_lp_is_checked_in_one_pass_without_building_it() -> None:
    register_recording()
    text = CONFIG + "".join(
        (
            lp("LP_A", "simulated", "seed = 1"),
            lp("LP_B", "pigeon", "wings = 2"),
            lp("LP_C", "simulated", "spread_ticks = 0"),
            lp(
                "LP_D",
                "fix",
                "port = 1\nsender_comp_id = 'A'\ntarget_comp_id = 'B'\nsymbols = ['X']",
            ),
            lp("LP_E", "recording", "host = 'lp'\nport = 1\nsymbol = 'GBP/USD'"),
        )
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(text, adapter_settings=adapter_settings())
    assert refused.value.errors == [
        'lps[1].adapter: unknown LP adapter kind "pigeon"; '
        'known kinds: "fix", "recording", "simulated"',
        "lps[2].settings.spread_ticks: must be >= 1",
        "lps[3].settings.symbols[0]: no such instrument X",
        "lps[4].settings.symbol: no such instrument GBP/USD",
    ]


def test_adapter_needs_a_name_and_every_required_method() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        RecordingLp("", INSTRUMENTS, sink, {})

    class Incomplete(LpAdapter):
        async def connect(self) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete("lp-x", INSTRUMENTS, sink, {})  # type: ignore[abstract]
