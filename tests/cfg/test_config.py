"""Tests for the configuration schema and loader."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import (
    Config,
    ConfigError,
    GatewaySettings,
    SessionSettings,
    StoreSettings,
    default_config_path,
    load_config,
    parse_config,
    validate_raw,
    with_overrides,
)
from config.loader import validate_value

CONFORMANCE_PATH = default_config_path().with_name("conformance.toml")

ORDER_FLOW = """
[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "1000000"
quote_currency = "USD"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"
"""
"""The least an order-entry session needs: one instrument and one enabled LP."""

MINIMAL = (
    ORDER_FLOW
    + """
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
"""
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.errors


def session_errors(body: str) -> list[str]:
    """Errors for a single session consisting of the minimal CompIDs plus ``body``."""
    return errors_of(
        f'{ORDER_FLOW}[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "C"\n{body}\n'
    )


# --- the shipped files ------------------------------------------------------------------


def test_default_config_loads() -> None:
    cfg = load_config(default_config_path())
    assert cfg.gateway.fix_port == 9876
    assert cfg.gateway.http_port == 8080
    assert cfg.gateway.drop_copy_port == 9877
    assert cfg.gateway.data_dir == "../var/data"  # relative to config/: var/data beside it
    assert cfg.store == StoreSettings(writeback_ms=100)  # a trickle to the disk, not bursts
    assert [s.session_id for s in cfg.sessions] == [
        "FIX.4.4:GATEWAY->CLIENT1",
        "FIX.4.4:GATEWAY->CLIENT2",
        "FIX.4.4:GATEWAY->CLIENT3",
        "FIX.4.4:GATEWAY->BACKOFFICE",
    ]
    for session in cfg.sessions:
        assert session.SenderCompID == "GATEWAY"
        assert session.ResetOnLogon is False
    assert [s.Application for s in cfg.sessions] == ["orders"] * 3 + ["dropcopy"]


def test_default_config_path_is_packaged_file() -> None:
    path = default_config_path()
    assert path.is_absolute()
    assert path.name == "default.toml"
    assert path.is_file()


def test_conformance_config_loads() -> None:
    cfg = load_config(CONFORMANCE_PATH)
    assert cfg.gateway.fix_port == 5001
    assert cfg.gateway.http_port == 0
    assert cfg.gateway.data_dir == "../var/conformance"
    assert cfg.store.backend == "file"
    by_target = {s.TargetCompID: s for s in cfg.sessions}
    assert list(by_target) == ["TW44", "TW", "NO_CHECK_FIELDS_HAVE_VALUES"]
    for session in cfg.sessions:
        assert session.BeginString == "FIX.4.4"
        assert session.SenderCompID == "ISLD"
        assert session.ResetOnLogon is True
        assert session.ResetOnLogout is False
        assert session.MaxLatency == 120
        assert session.LogoutTimeout == 2
        assert session.MinHeartBtInt == 1
        assert session.Application == "echo"
        assert session.CheckLatency is True
        assert session.CheckCompID is True
        assert session.ValidateUserDefinedFields is True
        assert session.ValidateFieldsOutOfOrder is True
    assert by_target["TW44"].ValidateFieldsHaveValues is True
    assert by_target["TW"].ValidateFieldsHaveValues is True
    assert by_target["NO_CHECK_FIELDS_HAVE_VALUES"].ValidateFieldsHaveValues is False


def test_the_lp_simulators_trade_every_instrument_of_the_fix_lps_config() -> None:
    """config/fix-lps.toml reaches the two lp-sim configs: each quotes and
    trades every instrument the gateway offers, on the same grid."""
    from gateway.sim.lp_sim_config import load_lp_sim_config

    gateway = load_config(default_config_path().with_name("fix-lps.toml"))
    for name in ("lp-sim-a.toml", "lp-sim-b.toml"):
        lp_sim = load_lp_sim_config(default_config_path().with_name(name))
        assert lp_sim.instruments == gateway.instruments, name


def test_minimal_config_takes_defaults() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.gateway == GatewaySettings()
    assert cfg.store == StoreSettings()
    assert cfg.sessions == (SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"),)
    session = cfg.sessions[0]
    assert session.BeginString == "FIX.4.4"
    assert (session.HeartBtInt, session.MinHeartBtInt, session.MaxHeartBtInt) == (30, 1, 300)
    assert session.Username is None
    assert session.Password is None
    assert session.Application == "orders"


def test_every_field_can_be_written() -> None:
    session = SessionSettings(
        SenderCompID="S",
        TargetCompID="T",
        Username="user",
        Password="secret",
        ResetOnDisconnect=True,
        Application="echo",
    )
    cfg = Config(
        gateway=GatewaySettings(log_level="debug", log_format="console"),
        store=StoreSettings(backend="memory", fsync="batch"),
        sessions=(session,),
    )
    raw = msgspec.to_builtins(cfg)
    loaded, errors = validate_raw(raw)
    assert errors == []
    assert loaded == cfg


# --- error reporting --------------------------------------------------------------------

MANY_ERRORS = (
    """
[gateway]
fix_port = 70000
http_port = -1
bogus = 1
log_level = "loud"

[store]
fsync = "always"
"""
    + ORDER_FLOW
    + """

[[sessions]]
SenderCompID = "GATEWAY"
Application = "fast"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
ResetOnLogon = "yes"
MinHeartBtInt = 500

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT2"
HeartBtInt = 0
"""
)


def test_every_error_is_reported_with_its_path() -> None:
    assert errors_of(MANY_ERRORS) == [
        "gateway.fix_port: must be <= 65535",
        "gateway.http_port: must be >= 0",
        "gateway.bogus: unknown field",
        'gateway.log_level: must be one of "debug", "info", "warning", "error"',
        'store.fsync: must be one of "never", "batch"',
        'sessions[0].Application: must be one of "orders", "echo", "dropcopy"',
        "sessions[0].TargetCompID: required field missing",
        "sessions[1].ResetOnLogon: expected bool, got str",
        "sessions[1].MinHeartBtInt: must be <= MaxHeartBtInt (300)",
        "sessions[2].HeartBtInt: must be > 0",
    ]


def test_config_error_str_lists_one_error_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MANY_ERRORS)
    lines = str(info.value).splitlines()
    assert lines == info.value.errors
    assert len(lines) == 10


def test_config_error_survives_pickling() -> None:
    error = ConfigError(["a: x", "b: y"], source="file.toml")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.errors == ["a: x", "b: y"]
    assert copy.source == "file.toml"
    assert str(copy) == "a: x\nb: y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[bogus]\n" + MINIMAL, "bogus: unknown field"),
        ("[gateway]\nfixport = 1\n" + MINIMAL, "gateway.fixport: unknown field"),
        ("[store]\npath = 'x'\n" + MINIMAL, "store.path: unknown field"),
        (MINIMAL + "HeartbeatInt = 30\n", "sessions[0].HeartbeatInt: unknown field"),
        (MINIMAL + '"odd key" = 1\n', 'sessions[0]."odd key": unknown field'),
    ],
)
def test_unknown_fields_are_rejected(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("HeartBtInt = '30'", "sessions[0].HeartBtInt: expected int, got str"),
        ("HeartBtInt = 30.0", "sessions[0].HeartBtInt: expected int, got float"),
        ("HeartBtInt = true", "sessions[0].HeartBtInt: expected int, got bool"),
        ("HeartBtInt = [30]", "sessions[0].HeartBtInt: expected int, got array"),
        ("HeartBtInt = {a = 1}", "sessions[0].HeartBtInt: expected int, got table"),
        ("CheckLatency = 1", "sessions[0].CheckLatency: expected bool, got int"),
        ("ResetOnLogon = 'Y'", "sessions[0].ResetOnLogon: expected bool, got str"),
        ("Username = 5", "sessions[0].Username: expected str, got int"),
        ("Password = ''", "sessions[0].Password: must not be empty"),
        ('Password = "a\\u0001b"', "sessions[0].Password: must not contain SOH (\\u0001)"),
        ("LogonTimeout = 1979-05-27", "sessions[0].LogonTimeout: expected int, got date"),
        ("BeginString = 'FIX.4.2'", 'sessions[0].BeginString: must be "FIX.4.4"'),
        ("Application = 1", 'sessions[0].Application: must be one of "orders", "echo", "dropcopy"'),
        ("MinHeartBtInt = -1", "sessions[0].MinHeartBtInt: must be >= 0"),
        ("MaxHeartBtInt = 0", "sessions[0].MaxHeartBtInt: must be > 0"),
        ("MaxLatency = 0", "sessions[0].MaxLatency: must be > 0"),
        ("LogoutTimeout = -2", "sessions[0].LogoutTimeout: must be > 0"),
    ],
)
def test_session_field_errors(body: str, expected: str) -> None:
    assert session_errors(body) == [expected]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("fix_port = 0", "gateway.fix_port: must be >= 1"),
        ("fix_port = 65536", "gateway.fix_port: must be <= 65535"),
        ("fix_port = '9876'", "gateway.fix_port: expected int, got str"),
        ("http_port = 65536", "gateway.http_port: must be <= 65535"),
        ("fix_host = 1", "gateway.fix_host: expected str, got int"),
        ("data_dir = ''", "gateway.data_dir: must not be empty"),
        ("max_message_size = 255", "gateway.max_message_size: must be >= 256"),
        ("max_outbound_buffer = 65535", "gateway.max_outbound_buffer: must be >= 65536"),
        ("log_format = 'text'", 'gateway.log_format: must be one of "json", "console"'),
    ],
)
def test_gateway_field_errors(body: str, expected: str) -> None:
    assert errors_of(f"[gateway]\n{body}\n{MINIMAL}") == [expected]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            "{ jpy = 0 }",
            "backoffice.minor_units.jpy: must be an upper-case currency or coin code, "
            "e.g. JPY or USDT",
        ),
        ("{ JPY = 9 }", "backoffice.minor_units.JPY: must be <= 8"),
        ("{ JPY = -1 }", "backoffice.minor_units.JPY: must be >= 0"),
        ('{ JPY = "0" }', "backoffice.minor_units.JPY: expected int, got str"),
    ],
)
def test_minor_units_errors(table: str, expected: str) -> None:
    assert errors_of(f"{MINIMAL}\n[backoffice]\nminor_units = {table}\n") == [expected]


def test_minor_units_take_currencies_and_coins() -> None:
    cfg = parse_config(f"{MINIMAL}\n[backoffice]\nminor_units = {{ JPY = 1, USDT = 4 }}\n")
    assert cfg.backoffice.minor_units == {"JPY": 1, "USDT": 4}


def test_boundary_values_are_accepted() -> None:
    cfg = parse_config(
        "[gateway]\nfix_port = 65535\nhttp_port = 0\nmax_message_size = 256\n"
        "max_outbound_buffer = 65536\n" + MINIMAL + "MinHeartBtInt = 0\nMaxHeartBtInt = 1\n"
    )
    assert cfg.gateway.fix_port == 65535
    assert cfg.gateway.http_port == 0
    assert cfg.gateway.max_message_size == 256
    assert cfg.gateway.max_outbound_buffer == 65536
    assert cfg.sessions[0].MinHeartBtInt == 0


@pytest.mark.parametrize(
    ("comp_id", "message"),
    [
        ("''", "must not be empty"),
        ("'GATE WAY'", "must be printable ASCII without whitespace, '=' or SOH"),
        ("'A=B'", "must be printable ASCII without whitespace, '=' or SOH"),
        ('"A\\u0001"', "must be printable ASCII without whitespace, '=' or SOH"),
        ("'CLIENTé'", "must be printable ASCII without whitespace, '=' or SOH"),
    ],
)
def test_comp_id_restrictions(comp_id: str, message: str) -> None:
    text = f"{ORDER_FLOW}[[sessions]]\nSenderCompID = {comp_id}\nTargetCompID = 'X'\n"
    assert errors_of(text) == [f"sessions[0].SenderCompID: {message}"]


def test_punctuation_is_allowed_in_comp_ids() -> None:
    cfg = parse_config(
        ORDER_FLOW + "[[sessions]]\nSenderCompID = 'A-B_C.D/E~!'\nTargetCompID = 'X'\n"
    )
    assert cfg.sessions[0].SenderCompID == "A-B_C.D/E~!"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "sessions: required field missing"),
        ("sessions = []", "sessions: must not be empty"),
        ("[sessions]\nSenderCompID = 'A'\n", "sessions: expected array, got table"),
        ("sessions = 'x'", "sessions: expected array, got str"),
        ("gateway = 1\n" + MINIMAL, "gateway: expected table, got int"),
        ("sessions = [1]", "sessions[0]: expected table, got int"),
    ],
)
def test_structure_errors(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


def test_missing_required_fields_are_all_listed() -> None:
    assert errors_of(ORDER_FLOW + "[[sessions]]\nHeartBtInt = 0\n") == [
        "sessions[0].HeartBtInt: must be > 0",
        "sessions[0].SenderCompID: required field missing",
        "sessions[0].TargetCompID: required field missing",
    ]


# --- cross-field rules ------------------------------------------------------------------


def test_min_heartbeat_must_not_exceed_max() -> None:
    assert session_errors("MinHeartBtInt = 61\nMaxHeartBtInt = 60") == [
        "sessions[0].MinHeartBtInt: must be <= MaxHeartBtInt (60)"
    ]
    assert parse_config(MINIMAL + "MinHeartBtInt = 60\nMaxHeartBtInt = 60\n")


def test_heartbeat_rule_skips_invalid_values() -> None:
    # An invalid MaxHeartBtInt is reported once, not compared with MinHeartBtInt.
    assert session_errors("MinHeartBtInt = 10\nMaxHeartBtInt = 'x'") == [
        "sessions[0].MaxHeartBtInt: expected int, got str"
    ]


DUPLICATES = (
    ORDER_FLOW
    + """
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT2"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[sessions]]
SenderCompID = "CLIENT1"
TargetCompID = "GATEWAY"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT2"
HeartBtInt = 0
"""
)


def test_duplicate_sessions_are_reported() -> None:
    assert errors_of(DUPLICATES) == [
        "sessions[4].HeartBtInt: must be > 0",
        "sessions[2]: duplicate session FIX.4.4:GATEWAY->CLIENT1 (also sessions[0])",
        "sessions[4]: duplicate session FIX.4.4:GATEWAY->CLIENT2 (also sessions[1])",
    ]


def test_comp_ids_are_case_sensitive() -> None:
    text = MINIMAL + '\n[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "client1"\n'
    assert len(parse_config(text).sessions) == 2


# --- TOML and file errors ---------------------------------------------------------------


def test_toml_syntax_error_reports_line_and_column() -> None:
    errors = errors_of('[gateway]\nfix_port = 9876\nhttp_port = \n[[sessions]]\nX = "1"\n')
    assert len(errors) == 1
    assert errors[0].startswith("TOML syntax error at line 3, column 13: ")


def test_toml_syntax_error_at_end_of_document() -> None:
    assert errors_of("a = ") == ["TOML syntax error: Invalid value (at end of document)"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        f"cannot read configuration file {path}: No such file or directory"
    ]
    assert info.value.source == str(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.errors[0].startswith(f"cannot read configuration file {tmp_path}: ")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [f"configuration file {path} is not valid UTF-8 (byte offset 5)"]


def test_file_errors_carry_the_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[gateway]\nfix_port = 0\n" + MINIMAL, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.errors == ["gateway.fix_port: must be >= 1"]
    assert info.value.source == str(path)


def test_file_with_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path).sessions[0].TargetCompID == "CLIENT1"


# --- validate_raw -----------------------------------------------------------------------


def raw_order_flow() -> dict[str, Any]:
    """``ORDER_FLOW`` as a parsed document."""
    return {
        "instruments": [
            {
                "symbol": "EUR/USD",
                "asset_class": "fx",
                "tick_size": "0.00001",
                "lot_size": "1000",
                "min_qty": "1000",
                "max_qty": "1000000",
                "quote_currency": "USD",
            }
        ],
        "lps": [
            {
                "name": "LP_A",
                "adapter": "simulated",
                "soft_limit_usd": "1000000",
                "hard_limit_usd": "2000000",
            }
        ],
    }


def test_validate_raw_returns_config_or_errors() -> None:
    raw: dict[str, Any] = {
        **raw_order_flow(),
        "sessions": [{"SenderCompID": "A", "TargetCompID": "B"}],
    }
    cfg, errors = validate_raw(raw)
    assert errors == []
    assert cfg is not None
    assert cfg.sessions[0].session_id == "FIX.4.4:A->B"

    raw["sessions"][0]["HeartBtInt"] = -5
    cfg, errors = validate_raw(raw)
    assert cfg is None
    assert errors == ["sessions[0].HeartBtInt: must be > 0"]


def test_validate_raw_accepts_none_for_optional_fields() -> None:
    raw = {
        **raw_order_flow(),
        "sessions": [{"SenderCompID": "A", "TargetCompID": "B", "Password": None}],
    }
    cfg, errors = validate_raw(raw)
    assert errors == []
    assert cfg is not None
    assert cfg.sessions[0].Password is None


_FIELD_VALUES = st.one_of(
    st.integers(min_value=-70_000, max_value=70_000),
    st.booleans(),
    st.sampled_from(["", "x", "FIX.4.4", "orders", "echo", "A B", "30", "\x01"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
)
_SESSION_KEYS = [f.encode_name for f in msgspec.structs.fields(SessionSettings)]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_SESSION_KEYS), _FIELD_VALUES, max_size=6))
def test_walk_agrees_with_msgspec(fields: dict[str, object]) -> None:
    session: dict[str, object] = {"SenderCompID": "A", "TargetCompID": "B", **fields}
    raw = {**raw_order_flow(), "sessions": [session]}
    cfg, errors = validate_raw(raw)
    # the cross-field rules, which msgspec does not know
    cross = ("must be <= MaxHeartBtInt", "only for a session with", "no order-entry session")
    type_errors = [e for e in errors if not any(c in e for c in cross)]
    try:
        converted: Config | None = msgspec.convert(raw, Config)
    except msgspec.ValidationError:
        converted = None
    assert (converted is not None) == (not type_errors), errors
    if cfg is not None:
        assert cfg == converted


# --- overrides and immutability ---------------------------------------------------------


def test_with_overrides_replaces_only_given_values() -> None:
    cfg = load_config(default_config_path())
    updated = with_overrides(cfg, fix_port=15001, data_dir=Path("/tmp/fixgw"))
    assert updated.gateway.fix_port == 15001
    assert updated.gateway.data_dir == "/tmp/fixgw"
    assert updated.gateway.http_port == cfg.gateway.http_port
    assert updated.sessions == cfg.sessions
    assert cfg.gateway.fix_port == 9876  # the original is untouched

    assert with_overrides(cfg, http_port=0).gateway.http_port == 0
    assert with_overrides(cfg) is cfg


def test_with_overrides_validates_values() -> None:
    cfg = parse_config(MINIMAL)
    with pytest.raises(ConfigError) as info:
        with_overrides(cfg, fix_port=0, http_port=70000, data_dir="")
    assert info.value.errors == [
        "gateway.fix_port: must be >= 1",
        "gateway.http_port: must be <= 65535",
        "gateway.data_dir: must not be empty",
    ]


def test_config_is_frozen() -> None:
    cfg = load_config(default_config_path())
    with pytest.raises(AttributeError):
        cfg.gateway = GatewaySettings()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.gateway.fix_port = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.sessions[0].HeartBtInt = 5  # type: ignore[misc]
    assert isinstance(cfg.sessions, tuple)
    assert hash(cfg) == hash(load_config(default_config_path()))


def test_session_id() -> None:
    session = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1")
    assert session.session_id == "FIX.4.4:GATEWAY->CLIENT1"


# --- the generic walk on other shapes of schema -----------------------------------------


class _Kind(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _Fix(_Kind, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    host: str


class _Rest(_Kind, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    url: str
    weight: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0


class _Outer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    lps: Annotated[list[_Fix | _Rest], msgspec.Meta(min_length=2)]
    limits: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = {}
    opens: dt.time | None = None
    side: Literal["buy", "sell"] | int = "buy"


def walk(raw: object) -> list[str]:
    return validate_value(raw, _Outer)[1]


def test_walk_tagged_unions_dicts_and_floats() -> None:
    raw: dict[str, object] = {
        "lps": [
            {"kind": "_Fix", "host": "h"},
            {"kind": "_Rest", "url": "u", "weight": 2},
            {"kind": "_Other"},
            {"host": "h"},
        ],
        "limits": {"EURUSD": 5, "odd key": -1},
        "opens": dt.time(9, 0),
        "side": 3,
    }
    assert walk(raw) == [
        "lps[1].weight: must be <= 1",
        'lps[2].kind: must be one of "_Fix", "_Rest"',
        "lps[3].kind: required field missing",
        'limits."odd key": must be >= 0',
    ]
    raw["lps"] = [{"kind": "_Fix", "host": "h"}]
    raw["limits"] = {}
    raw["opens"] = "09:00"
    raw["side"] = True
    assert walk(raw) == [
        "lps: must have at least 2 entries",
        "opens: expected time, got str",
        "side: expected str or int, got bool",
    ]


def test_walk_rejects_unsupported_schema_types() -> None:
    class Unsupported(msgspec.Struct):
        data: bytes

    with pytest.raises(TypeError, match="does not support"):
        validate_value({"data": b"x"}, Unsupported)


def test_a_drop_copy_names_order_entry_clients_once_and_only_a_drop_copy_names_any() -> None:
    sessions = (
        '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "C1"\n'
        '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "BO"\nApplication = "dropcopy"\n'
        'DropCopyFor = ["C1", "C1", "NOBODY"]\n'
        '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "C2"\nDropCopyFor = ["C1"]\n'
    )
    assert errors_of(ORDER_FLOW + sessions) == [
        "sessions[1].DropCopyFor[1]: C1 is listed twice",
        "sessions[1].DropCopyFor[2]: no order-entry session for NOBODY",
        'sessions[2].DropCopyFor: only for a session with Application = "dropcopy"',
    ]


DROP_COPY = (
    '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "BO"\nApplication = "dropcopy"\n'
)


def test_a_drop_copy_session_resets_its_numbers_on_none_of_its_own_events() -> None:
    """A reset would drop the copies stored while the back office was away,
    which its ResendRequest brings when it logs on again."""
    sessions = (
        '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "C1"\nResetOnLogon = true\n'
        + DROP_COPY
        + "ResetOnLogon = true\nResetOnDisconnect = true\n"
    )
    why = "not for a drop-copy session (a reset would drop the copies stored while its"
    assert errors_of(ORDER_FLOW + sessions) == [
        f"sessions[1].ResetOnLogon: {why} counterparty was away)",
        f"sessions[1].ResetOnDisconnect: {why} counterparty was away)",
    ]


def test_two_listeners_on_one_port_are_reported() -> None:
    text = "[gateway]\nfix_port = 9876\nhttp_port = 9876\ndrop_copy_port = 9876\n" + MINIMAL
    errors = [e for e in errors_of(text + DROP_COPY) if "port" in e]
    assert errors == [
        "gateway.drop_copy_port: 9876 is gateway.fix_port too",
        "gateway.http_port: 9876 is gateway.fix_port too",
    ]
    # on addresses of their own, one port number each is no clash
    apart = '[gateway]\nfix_port = 9876\nhttp_host = "127.0.0.2"\nhttp_port = 9876\n' + MINIMAL
    assert parse_config(apart).gateway.http_port == 9876
    everywhere = apart.replace('http_host = "127.0.0.2"', 'http_host = "0.0.0.0"')
    assert errors_of(everywhere) == ["gateway.http_port: 9876 is gateway.fix_port too"]


@pytest.mark.parametrize(
    ("ledger", "ok"),
    [
        ("", True),
        ("duckdb:ledger.duckdb", True),
        ("duckdb:/srv/l.duckdb", True),
        ("postgresql://bo@db:5432/ledger", True),
        ("postgres://bo:secret@db/ledger", True),
        ("mysql://x@y/z", False),
        ("postgresql:/broken", False),
        ("duckdb:", False),
        ("ledger.duckdb", False),
    ],
)
def test_a_ledger_url_neither_duckdb_nor_postgresql_is_reported(ledger: str, ok: bool) -> None:
    text = MINIMAL + f'\n[backoffice]\nledger = "{ledger}"\n'
    if ok:
        assert parse_config(text).backoffice.ledger == ledger
        return
    (error,) = errors_of(text)
    assert error.startswith("backoffice.ledger: ")
    assert "neither duckdb:<file> nor postgresql://" in error


@pytest.mark.parametrize("value", ['"1e40"', '"99999999999999999999999999999"'])
def test_a_risk_limit_too_large_to_count_in_lots_is_an_error(value: str) -> None:
    text = (
        default_config_path()
        .read_text()
        .replace('max_open_position = "20000000" #', f"max_open_position = {value} #", 1)
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert [e.split(":")[0] for e in raised.value.errors] == ["risk.default.max_open_position"]


def test_two_order_entry_sessions_of_one_client_are_an_error() -> None:
    """The order flow keys a client by its TargetCompID: a second order-entry
    session for the same CompID (another SenderCompID) replaced the first,
    whose every Logon then failed with a KeyError in the acceptor."""
    text = (
        default_config_path()
        .read_text()
        .replace(
            '[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "CLIENT2"',
            '[[sessions]]\nSenderCompID = "GATEWAY2"\nTargetCompID = "CLIENT1"',
            1,
        )
        .replace('[accounts.CLIENT2]\ncollateral_usd = "5000000"\n', "", 1)
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert [e.split(":")[0] for e in raised.value.errors] == ["sessions[1].TargetCompID"]


def test_two_fix_lps_on_one_session_are_reported() -> None:
    """Both would use one session store: the second finds it locked when it
    connects, and never logs on (an exception in a callback, no retry)."""
    text = default_config_path().with_name("fix-lps.toml").read_text()
    text = text.replace('target_comp_id = "LPX2"', 'target_comp_id = "LPX1"')
    errors = [e for e in errors_of(text) if "duplicate LP session" in e]
    assert errors == [
        "lps[1].settings: duplicate LP session FIX.4.4:GATEWAY->LPX1 in one data_dir (also lps[0])"
    ]
    # one of them disabled (a standby entry): no store, nothing to refuse
    standby = text.replace(
        'name = "LPX2"\nadapter = "fix"\n', 'name = "LPX2"\nadapter = "fix"\nenabled = false\n'
    )
    assert standby != text
    parse_config(standby)  # no ConfigError


def test_a_postgresql_ledger_url_whose_port_is_not_a_number_is_reported() -> None:
    text = MINIMAL + '\n[backoffice]\nledger = "postgresql://bo:secret@db:notaport/ledger"\n'
    (error,) = errors_of(text)
    assert error == (
        "backoffice.ledger: 'postgresql://bo:(redacted)@db:notaport/ledger'"
        " has a port that is not a number"
    )


def test_the_drop_copy_port_clashes_with_nothing_without_a_drop_copy_session() -> None:
    """It is bound only for a session with Application = "dropcopy": without
    one, a listener on its number takes nothing from it."""
    text = "[gateway]\nfix_port = 9877\n" + MINIMAL
    assert parse_config(text).gateway.fix_port == 9877
    assert errors_of(text + DROP_COPY) == ["gateway.drop_copy_port: 9877 is gateway.fix_port too"]
