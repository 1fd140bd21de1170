"""Typed schema of the gateway configuration file.

Every section of the TOML file maps onto one frozen :class:`msgspec.Struct`. Value limits
are declared with ``Annotated[..., msgspec.Meta(...)]`` so that they live next to the field
they constrain; :mod:`config.loader` reads them back through :func:`msgspec.inspect.type_info`
to report every problem in a file at once. ``Decimal`` fields (prices, quantities, USD
amounts) are written in TOML as strings or integers; their limits are declared with
:func:`decimal_limits` because msgspec takes numeric limits on int and float only.

Rules that involve more than one field cannot be expressed as ``Meta`` limits. They live
in :mod:`config.checks`, registered under the struct they belong to; this module does not
know them.

Adding a section (``[[instruments]]``, ``[[lps]]``, ``[routing]``, ``[risk]``, ...) means
adding a struct for it and a field with a default (or a required field) on :class:`Config`;
the loader needs no change unless the section brings new cross-field rules.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec

from router.model import AssetClass, Instrument

__all__ = [
    "DECIMAL_LIMITS",
    "DEFAULT_MAX_ID_LENGTH",
    "PATH",
    "PATTERN_MESSAGE",
    "USD_CONVERSION_BASE",
    "USD_CONVERSION_QUOTE",
    "AssetClassName",
    "AssetCode",
    "BackofficeSettings",
    "CandidatePolicy",
    "ClientRiskSettings",
    "CompID",
    "Config",
    "CurrencyCode",
    "FieldValue",
    "FilePath",
    "GatewaySettings",
    "InstrumentSettings",
    "LpAdapterKind",
    "LpName",
    "LpSettings",
    "NonEmptyPath",
    "NonEmptyStr",
    "OrdersSettings",
    "PositiveDecimal",
    "RiskSettings",
    "RoutingSettings",
    "SessionSettings",
    "StatementColumns",
    "StoreSettings",
    "decimal_limits",
    "session_identity",
]

# Key under ``Meta(extra=...)`` holding the message shown when a string fails ``pattern``.
PATTERN_MESSAGE: Final = "pattern_message"

# Key under ``Meta(extra=...)`` marking a string as a file-system path: a relative one is
# resolved against the folder of the configuration file (see :func:`config.loader.config_base`).
PATH: Final = "path"

# Key under ``Meta(extra=...)`` holding the limits of a ``Decimal`` field. msgspec accepts
# ``gt``/``ge``/``lt``/``le`` only on int and float, so decimal limits are declared here
# (see :func:`decimal_limits`) and enforced by :mod:`config.loader`.
DECIMAL_LIMITS: Final = "decimal_limits"


def decimal_limits(
    *,
    gt: Decimal | int | None = None,
    ge: Decimal | int | None = None,
    lt: Decimal | int | None = None,
    le: Decimal | int | None = None,
) -> msgspec.Meta:
    """A ``Meta`` carrying limits for a ``Decimal`` field, checked by the loader."""
    given = {"gt": gt, "ge": ge, "lt": lt, "le": le}
    limits = {name: Decimal(value) for name, value in given.items() if value is not None}
    return msgspec.Meta(extra={DECIMAL_LIMITS: limits})


NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
"""A string with at least one character."""

FilePath = Annotated[str, msgspec.Meta(extra={PATH: True})]
"""A file or directory; relative to the configuration file's folder. Empty means none."""

NonEmptyPath = Annotated[str, msgspec.Meta(min_length=1, extra={PATH: True})]
"""A file or directory that must be given; relative to the configuration file's folder."""

CompID = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=r"^[!-<>-~]+$",
        extra={PATTERN_MESSAGE: "must be printable ASCII without whitespace, '=' or SOH"},
    ),
]
"""A SenderCompID/TargetCompID: printable ASCII, no whitespace, no '=' and no SOH."""

LpName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=r"^[!-.0-<>-~]+$",
        extra={PATTERN_MESSAGE: "must be printable ASCII without whitespace, '=', '/' or SOH"},
    ),
]
"""An LP's name: a CompID without '/', as it names files (its statements
``<name>-YYYYMMDD.csv``): one holding '/' would be written in another
folder, or not at all."""

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
Cpus = Annotated[
    tuple[Annotated[int, msgspec.Meta(ge=0, le=4095)], ...], msgspec.Meta(max_length=4096)
]
"""CPU numbers, as Linux counts them (``[0]``, ``[2, 3]``)."""

PositiveDecimal = Annotated[Decimal, decimal_limits(gt=0)]
"""A decimal number > 0, written in TOML as a string (``"0.00001"``) or an integer."""

CurrencyCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z]{3}$",
        extra={PATTERN_MESSAGE: "must be a 3-letter upper-case currency code, e.g. USD"},
    ),
]
"""An ISO 4217 style currency code such as ``USD``."""

AssetCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z][A-Z0-9]{1,11}$",
        extra={PATTERN_MESSAGE: "must be an upper-case currency or coin code, e.g. JPY or USDT"},
    ),
]
"""A currency's or a coin's code (``JPY``, ``USDT``)."""

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]
StoreBackend = Literal["file", "memory"]
FsyncPolicy = Literal["never", "batch"]
ApplicationProfile = Literal["orders", "echo", "dropcopy"]
AssetClassName = Literal["fx", "crypto", "metal", "index", "commodity"]
LpAdapterKind = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=r"^[a-z][a-z0-9_-]*$",
        extra={PATTERN_MESSAGE: 'must be an adapter kind such as "simulated"'},
    ),
]
"""The name an LP adapter kind is registered under (``lp_adapters.registry``).
Whether the kind exists, and whether ``settings`` suit it, is checked when the
loader is told each kind's settings type (``adapter_settings`` of
:func:`config.loader.load_config`); the schema alone checks only the name's form."""
RoutingPolicy = Literal["best_price_exposure_aware", "best_price"]

USD_CONVERSION_QUOTE: Final = "quote"
USD_CONVERSION_BASE: Final = "base"

DEFAULT_MAX_ID_LENGTH: Final = 64
"""The default of ``[orders] max_id_length``, in bytes.  Venues commonly
limit client order ids to 20 to 36 characters (36: a UUID), a few to 64;
64 takes every one of these schemes, a UUID with a prefix included, so no
client's own ids are refused, and still bounds what one id costs."""

MOST_ID_LENGTH: Final = 256
"""The largest ``[orders] max_id_length`` may be: no ClOrdID stored is
longer, so an OrigClOrdID (41) up to it may name an order (one accepted
before a reload lowered the limit) and is looked up as given."""


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[gateway]`` table: listeners, storage location, limits and logging."""

    fix_host: str = "127.0.0.1"
    """Address the FIX acceptor listens on (loopback unless told otherwise)."""

    fix_port: Port = 9876
    """TCP port of the FIX acceptor."""

    drop_copy_port: OptionalPort = 9877
    """TCP port of the drop-copy sessions (``Application = "dropcopy"``),
    on ``fix_host``: served by a process of their own that follows the
    order journal, so the order path never waits for a copy.  Bound only
    when the config declares such a session; 0 takes any free port (the
    ``gateway_started`` log line names it)."""

    http_host: str = "127.0.0.1"
    """Address of the HTTP server (health, metrics, admin; loopback unless told otherwise)."""

    http_port: OptionalPort = 8080
    """TCP port of the HTTP server; 0 disables it."""

    data_dir: NonEmptyPath = "var/data"
    """Directory for message stores and state. A relative path is resolved against the
    folder of the configuration file (:func:`config.loader.config_base`); ``--data-dir``
    on the command line against the working directory."""

    max_message_size: Annotated[int, msgspec.Meta(ge=256)] = 65536
    """Largest inbound FIX message accepted, in bytes."""

    max_outbound_buffer: Annotated[int, msgspec.Meta(ge=65536)] = 4194304
    """Bytes queued to one peer before it is disconnected as a slow consumer."""

    cpus: Cpus = ()
    """The CPUs (numbers as Linux counts them) the gateway's process runs on;
    empty: wherever the system puts it.  A core of its own keeps the drop
    copy's and the back office's bursts off the core orders are served on
    (docs/operations.md).  Read at start only."""

    drop_copy_cpus: Cpus = ()
    """The CPUs the drop-copy process runs on; empty: those not in ``cpus``
    when ``cpus`` is set (all of them when it takes them all), otherwise
    wherever the system puts it."""

    busy_poll_us: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    """After each read from a connection bound to a session, keep the event
    loop polling (not sleeping) until this many microseconds pass without
    another: the next read is served on a warm core, at the price of one
    core kept busy while reads keep coming.  0: the loop sleeps whenever it
    is idle."""

    log_level: LogLevel = "info"
    """Applied again on reload."""

    log_format: LogFormat = "json"

    tls_cert_file: FilePath = ""
    """PEM certificate (chain) of the FIX acceptor; with ``tls_key_file``,
    client sessions are served over TLS only.  Empty: plain TCP."""

    tls_key_file: FilePath = ""
    """PEM private key matching ``tls_cert_file``."""

    id_prefix: str = ""
    """What this gateway's OrderIDs and ExecIDs start with (up to 8 letters
    and digits), before the run number that keeps them apart across
    restarts.  Needed when one back office follows several gateways that
    are not in one cluster: each gives its own, so that their ExecIDs never
    meet in the ledger.  Empty: the run number alone.  Not with
    ``[cluster]``: a cluster's gateways take a prefix made from their name."""

    admin_token: str = ""
    """Bearer token of the ``/admin`` endpoints, the back office's
    ``/backoffice`` ones and the dashboards' data: it may read and change
    (reload, hand a session over, ask for a reconciliation or an export).
    The environment variable ``FIXGW_ADMIN_TOKEN`` overrides it.  Empty
    (and no ``read_token``): those endpoints answer 403 to everyone.
    Visible ASCII only, as either token (an HTTP header's bytes)."""

    read_token: str = ""
    """Bearer token that may only read the same endpoints (``GET``): for
    dashboards, a risk desk's screens and monitoring scripts.  A change
    asked for with it is refused with 403.  ``FIXGW_READ_TOKEN``
    overrides it.  Empty: none."""


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

    writeback_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    """Every this many ms, ask the kernel to start writing the stores and the
    order journal to the disk (Linux ``sync_file_range``, not waited for),
    so that the disk sees a steady trickle rather than the kernel's burst
    every few seconds, which can hold a virtual machine, the gateway's loop
    with it, for tens of milliseconds.  0 leaves it to the kernel.  It
    changes nothing of what is durable when (that is ``fsync``'s)."""


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
    """Application profile: ``"orders"`` is order entry; ``"dropcopy"`` receives a copy of
    every ExecutionReport sent to the clients it covers and a TradeCaptureReport for every
    LP fill; ``"echo"`` is the test application that echoes NewOrderSingle and
    SecurityDefinition."""

    DropCopyFor: tuple[CompID, ...] | None = None
    """With ``Application = "dropcopy"``: the order-entry clients (TargetCompIDs) covered;
    left out, every client."""

    @property
    def session_id(self) -> str:
        """The session identity, e.g. ``FIX.4.4:GATEWAY->CLIENT1``."""
        return session_identity(self.BeginString, self.SenderCompID, self.TargetCompID)


def _frozen(value: object) -> object:
    """A hashable image of a value that may hold dicts, equal wherever the values are."""
    if isinstance(value, msgspec.Struct):
        fields = value.__struct_fields__
        return (type(value), tuple(_frozen(getattr(value, name)) for name in fields))
    if isinstance(value, dict):
        return frozenset((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value


class InstrumentSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[instruments]]`` entry: a tradable symbol, its price and quantity grid.

    Quantities (``min_qty``, ``max_qty`` and FIX OrderQty) are in units of the instrument;
    each must be a whole number of lots. Decimals are written as strings (``"0.00001"``)
    or integers, never as TOML floats.
    """

    symbol: FieldValue
    """The symbol as sent in FIX Symbol (55), e.g. ``"EUR/USD"``."""

    asset_class: AssetClassName

    tick_size: PositiveDecimal
    """Smallest price increment; every price is a multiple of it."""

    lot_size: PositiveDecimal
    """Units of the instrument per lot; every quantity is a multiple of it."""

    min_qty: PositiveDecimal
    """Smallest order quantity, in units."""

    max_qty: PositiveDecimal
    """Largest order quantity, in units."""

    quote_currency: CurrencyCode
    """Currency prices are quoted in."""

    usd_conversion: NonEmptyStr = USD_CONVERSION_QUOTE
    """How a position is valued in USD: ``"quote"`` when the quote currency is USD,
    ``"base"`` when the base currency is USD, otherwise the symbol of another configured
    instrument (quoted in USD) whose mid converts the quote currency into USD."""

    settlement_days: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    """Business days from trade date to value date (the back office's settlement
    report); by default that of the asset class: fx and metal 2 (spot), crypto,
    index and commodity 0.  USD/CAD and other T+1 pairs say 1 here."""

    def to_instrument(self) -> Instrument:
        """The router's view of this instrument, with quantity limits in lots."""
        return Instrument(
            symbol=self.symbol,
            asset_class=AssetClass(self.asset_class),
            tick_size=self.tick_size,
            lot_size=self.lot_size,
            min_lots=int(self.min_qty // self.lot_size),
            max_lots=int(self.max_qty // self.lot_size),
            quote_currency=self.quote_currency,
            usd_conversion=self.usd_conversion,
        )


class LpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[lps]]`` entry: a liquidity provider and the exposure allowed with it."""

    name: LpName
    """The LP's name, unique among LPs; used in logs, metrics, child order ids
    and the names of its statement files."""

    adapter: LpAdapterKind
    """Kind of adapter that connects to the LP."""

    enabled: bool = True
    """A disabled LP is neither connected nor routed to."""

    soft_limit_usd: PositiveDecimal
    """Gross notional at this LP, in USD (its positions valued long and
    short alike), beyond which routing to this LP is penalised."""

    hard_limit_usd: PositiveDecimal
    """Gross notional at this LP, in USD, that routing to this LP must never exceed."""

    soft_penalty_ticks: NonNegativeInt = 10
    """Ticks added to this LP's price, when ranking, while above the soft limit."""

    settings: dict[str, Any] = {}
    """The adapter's own settings (``[lps.settings]``), kept as written: checked
    against the adapter kind's settings type when the loader is given it, and
    converted to that type when the adapter is built."""

    def __hash__(self) -> int:
        return hash(_frozen(self))


class CandidatePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[routing.candidate]`` table: a second policy taking a share of the orders."""

    policy: RoutingPolicy
    """The policy traffic is being shifted to."""

    share_percent: Annotated[Decimal, decimal_limits(ge=0, le=100)]
    """Percentage of orders it routes (0 to 100, e.g. "5", "25", "100");
    chosen per order from a hash of the client and ClOrdID, so the same
    ClOrdID always gets the same policy under the same share."""


class RoutingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[routing]`` table: how client orders are split across LPs."""

    policy: RoutingPolicy = "best_price_exposure_aware"
    """Ranking of LP prices: best price first, penalised near an LP's exposure limits."""

    candidate: CandidatePolicy | None = None
    """A second policy and its share of the orders (traffic shifting)."""

    internal_crossing: bool = True
    """Match client orders against each other before going to LPs."""

    max_child_orders: PositiveInt = 4
    """Largest number of child orders one client order is split into at a time."""

    max_reroutes: NonNegativeInt = 2
    """Times an unfilled remainder is routed again before the order is finished."""

    child_timeout_ms: PositiveInt = 2000
    """Time an LP has to answer a child order before it is treated as lost."""

    quote_max_age_ms: PositiveInt = 5000
    """Quotes older than this are not routed to."""


TimeOfDay = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        extra={PATTERN_MESSAGE: "must be a time of day HH:MM (UTC), e.g. 21:00"},
    ),
]
"""A time of day, ``HH:MM``, in UTC."""


class OrdersSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[orders]`` table: the trading day and how long final orders are kept."""

    trading_day_end: TimeOfDay = "21:00"
    """When the trading day ends, UTC (21:00 is 17:00 in New York in summer,
    the usual FX cut; 22:00 in winter, as UTC does not follow New York's
    daylight saving): open DAY orders expire and the final orders of the day
    are forgotten, so their ClOrdIDs may be used again."""

    retain_finished: PositiveInt = 100_000
    """Final orders kept for OrderStatusRequest and duplicate-ClOrdID checks
    within a day; beyond this the oldest are forgotten first (memory stays
    bounded however busy the day)."""

    journal_checkpoint_mb: PositiveInt = 1024
    """When the order journal has grown past this many MiB since its last
    checkpoint, it is checkpointed again (replaced by the state alone), so
    that its size stays bounded on a busy day.  The checkpoint is written
    while trading goes on, 8 KiB of the state a loop turn, then synced in a
    thread; what was journaled meanwhile is copied behind it, 256 KiB a
    turn, and the new file renamed over the old (see docs/guarantees.md)."""

    shed_after_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 100
    """Load shedding (0 turns it off).  A NewOrderSingle that has waited
    longer than this many ms behind other messages of its connection (the
    gateway is taking them in slower than they come), in the gateway or in
    the kernel's socket buffer while the connection was behind, is
    rejected at once, ExecutionReport Rejected (OrdRejReason 99) with a Text
    saying the gateway is busy, instead of being queued; cancels, replaces
    and status requests are always worked.  Past its capacity the gateway
    then answers every order within about this bound, the excess refused,
    rather than letting a queue grow.  It also refuses the tail of a burst
    that takes longer than the bound to work through (about 70 µs an order,
    compiled, on a 2 GHz core), so set it above the bursts the clients
    send, or to 0: then a burst is worked through whole, reading from the
    client paused meanwhile (TCP pushes back), and past capacity the wait
    grows with the load."""

    max_id_length: Annotated[int, msgspec.Meta(ge=16, le=MOST_ID_LENGTH)] = DEFAULT_MAX_ID_LENGTH
    """Longest ClOrdID (11), OrigClOrdID (41) and MDReqID (262) a client may
    send, in bytes (16 to 256: fewer would refuse common id schemes, more
    buys nothing but memory).  The gateway keeps these ids (book, journal,
    subscriptions) and repeats them on every report, so one client must not
    choose their size.  A request carrying a longer one is refused: a
    NewOrderSingle with an ExecutionReport Rejected (OrdRejReason 99), a
    cancel or replace with an OrderCancelReject, a MarketDataRequest with a
    MarketDataRequestReject; the id is echoed cut to this length.  Other
    client strings echoed in a reject (Symbol, OrderID) are cut to it too."""


class MarketDataSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[market_data]`` table: what one client's market data may cost."""

    refresh_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 100
    """Refreshes of live subscriptions are sent at most this often: however
    often the LPs quote, a subscription gets about one refresh per symbol per
    interval, carrying the book as it is then (conflated).  0 sends a refresh
    on the loop turn after each book change.  The snapshot answering a
    request is never delayed by it."""

    max_subscriptions: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    """Live subscriptions (and snapshots not yet answered) one session may
    hold; a request beyond is refused with MarketDataRequestReject
    (MDReqRejReason 2, insufficient bandwidth)."""


DEFAULT_MAX_OPEN_ORDERS: Final = 10_000
"""Orders one client may have open at once unless its limits say otherwise."""

DEFAULT_MAX_MESSAGES_PER_SECOND: Final = 50_000
"""Application messages one client may send per second unless its limits
say otherwise: above the 30,000 a second ``fixgw bench --max`` drives one
client at, so a benchmark is never throttled, while a runaway client is."""


class ClientRiskSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Pre-trade limits for one client; a limit left out is not checked,
    but for the two that bound what the client makes the gateway hold and
    work (``max_open_orders``, ``max_messages_per_second``), which have
    defaults."""

    max_order_qty: PositiveDecimal | None = None
    """Largest quantity of one order, in units."""

    max_notional_usd: PositiveDecimal | None = None
    """Largest USD value of one order."""

    max_open_position: PositiveDecimal | None = None
    """Largest net position per symbol, in units, in the worst case: after an
    order fills together with the client's other open orders on its side
    (a buy with the open buys, a sell with the open sells)."""

    allowed_symbols: tuple[NonEmptyStr, ...] | None = None
    """Symbols the client may trade; left out means every configured instrument."""

    max_open_orders: PositiveInt | None = DEFAULT_MAX_OPEN_ORDERS
    """Orders the client may have open at once (resting or being worked);
    a new order beyond it is rejected."""

    max_messages_per_second: PositiveInt | None = DEFAULT_MAX_MESSAGES_PER_SECOND
    """Application messages the client's session may send per second (a
    token bucket holding one second's worth); an excess message is rejected
    (orders with an ExecutionReport, cancels and replaces with an
    OrderCancelReject, anything else with a BusinessMessageReject), never
    queued."""


class RiskSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[risk]`` table: ``[risk.default]`` and per-client ``[risk.clients.<CompID>]``."""

    default: ClientRiskSettings = ClientRiskSettings()
    """Limits of every client without an entry in ``clients``."""

    clients: dict[CompID, ClientRiskSettings] = {}
    """Limits by client CompID (a session's TargetCompID); they replace ``default``."""

    def for_client(self, comp_id: str) -> ClientRiskSettings:
        """The limits that apply to the client with CompID ``comp_id``."""
        return self.clients.get(comp_id, self.default)

    def __hash__(self) -> int:
        return hash(_frozen(self))


ScanFraction = Annotated[Decimal, decimal_limits(gt=0, le=1)]
"""A fraction of a price, > 0 and <= 1 (``"0.05"`` is 5%)."""

CreditRate = Annotated[Decimal, decimal_limits(gt=0, le=1)]
"""A spread's credit rate, > 0 and <= 1 (``"0.55"`` credits 55% of its legs' scan risk)."""


class SpreadLegSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One leg of a margin spread: a group, how many of its units per spread, and a side
    letter (legs of opposite letters hold positions of opposite signs)."""

    group: NonEmptyStr
    ratio: PositiveDecimal
    side: Literal["A", "B"]


class MarginGroupSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[margin.groups]]`` entry: instruments whose positions net, and the price
    move they are margined for (exactly one of ``scan_pct`` and ``scan_usd``)."""

    name: NonEmptyStr
    symbols: Annotated[tuple[NonEmptyStr, ...], msgspec.Meta(min_length=1)]
    """Configured instruments, all of one asset class (one underlying is the usual group)."""

    scan_pct: ScanFraction | None = None
    """Scan range as a fraction of the USD value of one unit at the mark (``"0.05"``: 5%)."""

    scan_usd: PositiveDecimal | None = None
    """Scan range in USD per unit of the instrument."""


class MarginSpreadSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[margin.spreads]]`` entry: an inter-group spread earning a credit."""

    name: NonEmptyStr
    priority: NonNegativeInt
    """Spreads are formed in priority order, lowest first; spreads within one asset class
    must all come before any spread across asset classes."""

    rate: CreditRate
    legs: Annotated[tuple[SpreadLegSettings, ...], msgspec.Meta(min_length=2)]


class MarginSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[margin]`` table: portfolio margin parameters (no groups: margin is off)."""

    version: NonEmptyStr | None = None
    """Name of this parameter set; every margin figure reported carries it.  Left out,
    the config's own version (reload generation and content hash) names it."""

    groups: tuple[MarginGroupSettings, ...] = ()
    spreads: tuple[MarginSpreadSettings, ...] = ()

    def __hash__(self) -> int:
        return hash(_frozen(self))


class AccountSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[accounts.<CompID>]`` table: a client's collateral and margin levels.
    Levels are margin levels, equity / margin (``"1.0"`` is 100%)."""

    collateral_usd: Annotated[Decimal, decimal_limits(ge=0)]
    """Collateral deposited, in USD."""

    margin_call_level: PositiveDecimal = Decimal(1)
    """Below this margin level a margin call is raised."""

    stop_out_level: PositiveDecimal = Decimal("0.5")
    """Below this margin level open orders are canceled and positions closed; below
    ``margin_call_level`` and ``initial_factor``."""

    initial_factor: Annotated[Decimal, decimal_limits(ge=1)] = Decimal(1)
    """Initial margin = maintenance margin x this factor (checked before each order)."""


StatementTime = Literal["iso", "epoch_ms", "fix"]


class StatementColumns(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One LP's statement file layout: which CSV column holds each field."""

    file: NonEmptyStr | None = None
    """A glob of its statement files in ``statements_dir``; ``"<LP>-*.csv"`` by default."""

    delivery: Literal["live", "end_of_day", "none"] | None = None
    """``live``: the LP writes each execution within a second (the simulated
    LPs do), so a fill the house booked more than the grace ago and not on
    the statement is a break; ``end_of_day``: the statement is complete up to
    its latest line; ``none``: the LP sends no statement (its fills are not
    reconciled against one).  Unset: ``live`` for a simulated LP,
    ``end_of_day`` for any other."""

    exec_id: NonEmptyStr = "ExecID"
    """The LP's execution id: the ExecID (17) of its ExecutionReport to the gateway."""

    cl_ord_id: NonEmptyStr = "ClOrdID"
    """The order id the gateway gave the LP (the gateway's child order id)."""

    symbol: NonEmptyStr = "Symbol"
    side: NonEmptyStr = "Side"
    buy: NonEmptyStr = "BUY"
    """What the side column says for a buy by the gateway at the LP."""

    sell: NonEmptyStr = "SELL"
    quantity: NonEmptyStr = "Quantity"
    """Units executed, as on the wire (LastQty)."""

    price: NonEmptyStr = "Price"
    exec_time: NonEmptyStr = "ExecTime"
    time_format: StatementTime = "iso"
    """``iso`` (2026-12-03T18:20:01.123Z), ``epoch_ms`` or ``fix`` (20261203-18:20:01.123)."""

    delimiter: Annotated[str, msgspec.Meta(min_length=1, max_length=1)] = ","


class BackofficeGateway(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One gateway whose drop copy the back office follows (a
    ``[[backoffice.gateways]]`` entry)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    """What the back office calls it (its status, metrics, session files)."""

    host: NonEmptyStr = "127.0.0.1"
    drop_copy_port: Port
    """Where its drop-copy sessions are served (its ``gateway.drop_copy_port``)."""

    http_port: OptionalPort = 0
    """Its HTTP port, for its positions (``/admin/exposures``, with this
    config's ``gateway.read_token``, else its ``admin_token``); 0: its
    positions are not compared."""

    http_host: str = ""
    """The address of its HTTP server when not ``host`` (an admin interface
    apart from the one FIX is served on)."""


class BackofficeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[backoffice]`` table: the back-office process (``fixgw backoffice``)."""

    session: CompID = "BACKOFFICE"
    """TargetCompID of the drop-copy session in ``[[sessions]]`` it logs on to
    (it connects to ``gateway.fix_host``:``drop_copy_port`` as that CompID)."""

    gateways: tuple[BackofficeGateway, ...] = ()
    """The gateways whose drop copies it follows, each on the session above
    (the gateways of a cluster: one ledger for all); empty: this config's
    gateway alone."""

    ledger: str = ""
    """Where trades are kept: ``duckdb:<file>`` (a relative file is relative to
    ``gateway.data_dir``) or ``postgresql://user@host:port/db``; by default
    ``duckdb:backoffice/ledger.duckdb`` under ``gateway.data_dir``."""

    statements_dir: FilePath = ""
    """Folder of the LPs' statement files; ``<data_dir>/statements`` by default."""

    export_dir: FilePath = ""
    """Folder of the day exports; ``<data_dir>/backoffice/exports`` by default."""

    http_host: str = "127.0.0.1"
    http_port: OptionalPort = 8082
    """Port of its HTTP server (breaks, treasury, metrics, dashboard); 0 disables it."""

    grace_seconds: Annotated[Decimal, decimal_limits(gt=0, le=3600)] = Decimal(5)
    """How long a record may wait for its counterpart (an LP line, the house's
    fill, a client report) before the missing counterpart is a break."""

    recon_interval_ms: Annotated[int, msgspec.Meta(ge=50, le=60000)] = 1000
    """How often recon runs over what arrived since its last run."""

    positions_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=3600000)] = 5000
    """How often the gateway's positions (``GET /admin/exposures``) are compared
    with the sums of the fills; 0 never.  A difference is a break once it has
    been seen twice in a row with the fills unchanged in between."""

    lps: dict[CompID, StatementColumns] = {}
    """Statement layout per LP (an LP not named uses the defaults)."""

    minor_units: dict[AssetCode, Annotated[int, msgspec.Meta(ge=0, le=8)]] = {}
    """Decimals of the smallest unit per currency or coin (``{ JPY = 0,
    KWD = 3, BTC = 8 }``), to which each leg of a trade is rounded before
    settlement amounts are netted.  Adds to or overrides the built-in
    table (ISO 4217's exponents for the usual currencies, the common
    coins); a code in neither keeps the ledger's 8 decimals."""

    duckdb_memory_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 1024
    """The most memory an embedded (DuckDB) ledger keeps for its data and
    its queries' work, in MiB; past it, large sorts and joins spill to a
    folder beside the ledger file (``<file>.tmp``).  DuckDB would otherwise
    take up to 80% of the machine's memory, which it shares with the
    gateway.  0 leaves DuckDB's own bound.  A PostgreSQL ledger's memory is
    its server's to set."""

    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10
    """How much the back office lowers its own scheduling priority (Unix
    ``nice``): on a machine it shares with the gateway, the gateway's order
    flow comes first and the back office takes what is left, catching up
    when the load falls.  0 keeps the priority it was started with."""

    cpus: Cpus = ()
    """The CPUs the back office runs on (its threads too); empty: wherever
    the system puts it.  With the gateway on a core of its own, give the
    back office the others (docs/operations.md)."""

    idle_priority: bool = True
    """Run under Linux's ``SCHED_IDLE`` policy, below every nice level: the
    back office gets a core only when nothing else wants it, and gives it
    back the moment the gateway (or its client) wakes up, so a catch-up
    after an outage does not move the gateway's latency.  False keeps only
    ``nice``; where the policy does not exist it is skipped with a warning."""


class ClusterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[cluster]`` table: several gateways live at once, sharing
    session ownership through a NATS JetStream cluster (docs/cluster.md)."""

    servers: tuple[NonEmptyStr, ...] = ()
    """NATS server URLs (``nats://host:port``); none: this gateway runs alone."""

    instance: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{0,64}$")] = ""
    """This gateway's name in the cluster, unique among its instances
    (letters, digits, ``-`` and ``_``); by default ``<host name>-<FIX port>``."""

    lease_ms: Annotated[int, msgspec.Meta(ge=300, le=60_000)] = 1500
    """How long a session's owner may go without renewing its lease before
    another instance may take the session over."""

    renew_ms: Annotated[int, msgspec.Meta(ge=50, le=20_000)] = 400
    """How often an owner renews the leases of its sessions; at most a
    third of ``lease_ms``."""

    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    """Copies JetStream keeps of the cluster's buckets (R=3 on a 3-node cluster)."""

    bucket_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = "fixgw"
    """Prefix of the buckets' names: gateways sharing one prefix share sessions."""

    connect_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 3000
    """How long the gateway tries to reach the cluster at start before it
    refuses to start."""

    take_unattended_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 5000
    """How long a session served before (its client's state or orders are
    in the copy) may go with no gateway holding it (its owner died, or
    stopped and let it go) before a gateway of the cluster takes it without
    a Logon: its client's orders are worked and its margin judged while the
    client is away, and what they send it is stored for its resend.  0: a
    session is taken only by its client's Logon."""


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration file."""

    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    sessions: Annotated[tuple[SessionSettings, ...], msgspec.Meta(min_length=1)]
    """The ``[[sessions]]`` array; at least one session is required."""

    instruments: tuple[InstrumentSettings, ...] = ()
    """The ``[[instruments]]`` array; needed as soon as a session has order entry."""

    lps: tuple[LpSettings, ...] = ()
    """The ``[[lps]]`` array; order entry needs at least one enabled LP."""

    routing: RoutingSettings = RoutingSettings()
    orders: OrdersSettings = OrdersSettings()
    market_data: MarketDataSettings = MarketDataSettings()
    risk: RiskSettings = RiskSettings()
    margin: MarginSettings = MarginSettings()
    accounts: dict[CompID, AccountSettings] = {}
    """Margin accounts by client CompID; a client without one is not margined."""

    backoffice: BackofficeSettings = BackofficeSettings()
    cluster: ClusterSettings = ClusterSettings()

    def __hash__(self) -> int:
        return hash(_frozen(self))
