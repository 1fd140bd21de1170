"""Typed schema of the gateway configuration file.

Every section of the TOML file maps onto one frozen :class:`msgspec.Struct`. Value limits
are declared with ``Annotated[..., msgspec.Meta(...)]`` so that they live next to the field
they constrain; :mod:`config.loader` reads them back through :func:`msgspec.inspect.type_info`
to report every problem in a file at once.

Rules that involve more than one field cannot be expressed as ``Meta`` limits. They are
plain functions registered in :data:`CROSS_FIELD_CHECKS` under the struct they belong to.

Adding a section (``[[instruments]]``, ``[[lps]]``, ``[routing]``, ``[risk]``, ...) means
adding a struct for it and a field with a default (or a required field) on :class:`Config`;
the loader needs no change unless the section brings new cross-field rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "CROSS_FIELD_CHECKS",
    "CompID",
    "Config",
    "CrossFieldCheck",
    "FieldValue",
    "GatewaySettings",
    "NonEmptyStr",
    "SessionSettings",
    "StoreSettings",
    "session_identity",
]

# Key under ``Meta(extra=...)`` holding the message shown when a string fails ``pattern``.
PATTERN_MESSAGE: Final = "pattern_message"

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
"""A string with at least one character."""

CompID = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=r"^[!-<>-~]+$",
        extra={PATTERN_MESSAGE: "must be printable ASCII without whitespace, '=' or SOH"},
    ),
]
"""A SenderCompID/TargetCompID: printable ASCII, no whitespace, no '=' and no SOH."""

FieldValue = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=r"^[^\x01]+$",
        extra={PATTERN_MESSAGE: "must not contain SOH (\\u0001)"},
    ),
]
"""A value sent as-is in a FIX field: FIX forbids empty values and SOH inside a value."""

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
OptionalPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]
StoreBackend = Literal["file", "memory"]
FsyncPolicy = Literal["never", "batch"]
ApplicationProfile = Literal["orders", "echo"]


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[gateway]`` table: listeners, storage location, limits and logging."""

    fix_host: str = "0.0.0.0"
    """Address the FIX acceptor listens on."""

    fix_port: Port = 9876
    """TCP port of the FIX acceptor."""

    http_host: str = "0.0.0.0"
    """Address of the HTTP server (health, metrics)."""

    http_port: OptionalPort = 8080
    """TCP port of the HTTP server; 0 disables it."""

    data_dir: NonEmptyStr = "var/data"
    """Directory for message stores and state; relative to the process working directory."""

    max_message_size: Annotated[int, msgspec.Meta(ge=256)] = 65536
    """Largest inbound FIX message accepted, in bytes."""

    max_outbound_buffer: Annotated[int, msgspec.Meta(ge=65536)] = 4194304
    """Bytes queued to one peer before it is disconnected as a slow consumer."""

    log_level: LogLevel = "info"
    log_format: LogFormat = "json"


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[store]`` table: how session state and sent messages are kept."""

    backend: StoreBackend = "file"
    """``"file"`` persists under ``gateway.data_dir``; ``"memory"`` forgets on exit."""

    fsync: FsyncPolicy = "never"
    """Durability of the file store.

    ``"never"``: records are handed to the OS before the bytes they describe leave the
    process, which survives a process crash or ``kill -9`` but not a power loss.
    ``"batch"``: additionally fsync once per flush, which also survives a power loss.
    """


def session_identity(begin_string: str, sender_comp_id: str, target_comp_id: str) -> str:
    """Render a session identity as ``BeginString:SenderCompID->TargetCompID``."""
    return f"{begin_string}:{sender_comp_id}->{target_comp_id}"


class SessionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[sessions]]`` entry. Field names follow the QuickFIX settings of the same name."""

    BeginString: Literal["FIX.4.4"] = "FIX.4.4"
    SenderCompID: CompID
    """Our CompID on this session."""

    TargetCompID: CompID
    """The peer's CompID."""

    HeartBtInt: PositiveInt = 30
    """Heartbeat interval in seconds sent when we initiate. As acceptor the peer's value is
    used if it lies within ``MinHeartBtInt..MaxHeartBtInt``."""

    MinHeartBtInt: NonNegativeInt = 1
    MaxHeartBtInt: PositiveInt = 300

    Username: FieldValue | None = None
    """Username (553) sent in our Logon."""

    Password: FieldValue | None = None
    """Password (554). When set, a peer's Logon must carry this value."""

    ResetOnLogon: bool = False
    ResetOnLogout: bool = False
    ResetOnDisconnect: bool = False

    CheckLatency: bool = True
    MaxLatency: PositiveInt = 120
    """Allowed difference between SendingTime (52) and our clock, in seconds."""

    CheckCompID: bool = True
    ValidateFieldsOutOfOrder: bool = True
    ValidateFieldsHaveValues: bool = True
    ValidateUserDefinedFields: bool = True

    LogonTimeout: PositiveInt = 10
    """Seconds to wait for the peer's Logon after connecting (or its reply to ours)."""

    LogoutTimeout: PositiveInt = 2
    """Seconds to wait for the peer's Logout reply before disconnecting."""

    Application: ApplicationProfile = "orders"
    """Application profile: ``"orders"`` is order entry; ``"echo"`` is the test application
    that echoes NewOrderSingle and SecurityDefinition."""

    @property
    def session_id(self) -> str:
        """The session identity, e.g. ``FIX.4.4:GATEWAY->CLIENT1``."""
        return session_identity(self.BeginString, self.SenderCompID, self.TargetCompID)


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration file."""

    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    sessions: Annotated[tuple[SessionSettings, ...], msgspec.Meta(min_length=1)]
    """The ``[[sessions]]`` array; at least one session is required."""


# --------------------------------------------------------------------------------------
# Cross-field rules
#
# A check receives the values of one table after type validation: a mapping from field
# name to value that holds only the fields that passed validation (fields left out of the
# file appear with their default). Nested tables appear as mappings of the same kind and
# arrays as lists that keep their positions; an array entry that is not a table at all is
# present as a placeholder that is not a mapping. The check returns messages in the
# ``path: message`` form, building paths from the ``path`` argument (the table's own path).
# --------------------------------------------------------------------------------------

CrossFieldCheck = Callable[[Mapping[str, object], str], list[str]]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check_session(values: Mapping[str, object], path: str) -> list[str]:
    """Rules within one ``[[sessions]]`` entry."""
    errors: list[str] = []
    low = values.get("MinHeartBtInt")
    high = values.get("MaxHeartBtInt")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        errors.append(f"{_join(path, 'MinHeartBtInt')}: must be <= MaxHeartBtInt ({high})")
    return errors


def check_config(values: Mapping[str, object], path: str) -> list[str]:
    """Rules across sections: every session identity must be unique."""
    errors: list[str] = []
    sessions = values.get("sessions")
    if not isinstance(sessions, list):
        return errors
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(sessions):
        if not isinstance(entry, Mapping):
            continue
        parts = (entry.get("BeginString"), entry.get("SenderCompID"), entry.get("TargetCompID"))
        if not all(isinstance(part, str) for part in parts):
            continue
        identity = session_identity(*(str(part) for part in parts))
        entry_path = f"{_join(path, 'sessions')}[{index}]"
        if identity in first_seen:
            other = f"{_join(path, 'sessions')}[{first_seen[identity]}]"
            errors.append(f"{entry_path}: duplicate session {identity} (also {other})")
        else:
            first_seen[identity] = index
    return errors


CROSS_FIELD_CHECKS: Final[Mapping[type[msgspec.Struct], CrossFieldCheck]] = {
    SessionSettings: check_session,
    Config: check_config,
}
"""Cross-field rules by struct; the loader runs them after validating each table's fields."""
