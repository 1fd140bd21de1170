"""The adapter registry: kinds by name, duplicates refused, clear misses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from lp_test_kit import INSTRUMENTS, EventQueue

from lp_adapters import base
from lp_adapters.base import (
    EventSink,
    LpAdapter,
    adapter_class,
    create_adapter,
    register,
    registered_kinds,
)
from lp_adapters.simulated.adapter import SimulatedLp
from router.model import ChildOrder, Instrument, LpEvent


class RecordingLp(LpAdapter):
    """A fake adapter that only records what it was asked to do."""

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: Mapping[str, Any],
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
    adapter_class("simulated")  # the built-in kind is loaded before the copy is taken
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def sink(event: LpEvent) -> None:
    raise AssertionError(f"unexpected event {event!r}")


def test_builtin_simulated_kind_resolves() -> None:
    assert adapter_class("simulated") is SimulatedLp
    assert "simulated" in registered_kinds()


def test_register_makes_a_kind_available() -> None:
    assert register("recording")(RecordingLp) is RecordingLp
    assert adapter_class("recording") is RecordingLp
    assert registered_kinds() == ("fix", "recording", "simulated")


def test_duplicate_kind_is_refused() -> None:
    register("recording")(RecordingLp)

    class Other(RecordingLp):
        pass

    with pytest.raises(ValueError, match=r"'recording' is already registered by .*RecordingLp"):
        register("recording")(Other)
    with pytest.raises(ValueError, match="'simulated' is already registered"):
        register("simulated")(Other)
    assert adapter_class("recording") is RecordingLp


def test_only_adapter_classes_register() -> None:
    with pytest.raises(TypeError, match="not an LpAdapter subclass"):
        register("thing")(dict)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="non-empty"):
        register("")


def test_unknown_kind_names_the_known_kinds() -> None:
    register("recording")(RecordingLp)
    known = r"unknown LP adapter kind 'fix44'; known kinds: 'fix', 'recording', 'simulated'"
    with pytest.raises(KeyError, match=known):
        adapter_class("fix44")


@pytest.mark.asyncio
async def test_create_adapter_builds_a_registered_kind() -> None:
    register("recording")(RecordingLp)
    settings = {"host": "lp.example", "port": 9001}
    lp = create_adapter("recording", "lp-r", INSTRUMENTS, sink, settings)
    assert isinstance(lp, RecordingLp)
    assert lp.name == "lp-r"
    assert dict(lp.instruments) == INSTRUMENTS
    assert dict(lp.settings) == settings
    assert lp.sink is sink
    assert repr(lp) == "<RecordingLp 'lp-r' down>"
    await lp.connect()
    assert lp.up
    # cancel is optional: the contract's default does nothing.
    assert lp.cancel("c-1") is None
    await lp.disconnect()
    assert lp.calls == ["connect", "disconnect"]


def test_create_adapter_builds_a_simulated_lp() -> None:
    events = EventQueue()
    lp = create_adapter("simulated", "lp-s", INSTRUMENTS, events, {"spread_ticks": 4, "seed": 9})
    assert isinstance(lp, SimulatedLp)
    assert lp.config.spread_ticks == 4
    assert lp.config.seed == 9
    assert not lp.up


def test_adapter_needs_a_name_and_every_required_method() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        RecordingLp("", INSTRUMENTS, sink, {})

    class Incomplete(LpAdapter):
        async def connect(self) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete("lp-x", INSTRUMENTS, sink, {})  # type: ignore[abstract]
