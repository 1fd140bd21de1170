"""Rules of the configuration that involve more than one field, and the text of their errors.

A check receives the values of one table after type validation: a mapping from field name to
value that holds only the fields that passed validation (fields left out of the file appear
with their default). Nested tables appear as mappings of the same kind and arrays as lists that
keep their positions; an array entry that is not a table at all is present as a placeholder
that is not a mapping. The check returns messages in the ``path: message`` form, building paths
from the ``path`` argument (the table's own path).

:data:`CROSS_FIELD_CHECKS` names the check of each struct of :mod:`config.schema`;
:mod:`config.loader` runs it after validating that table's fields, so every rule broken in a
file is reported in the same pass as the type and limit errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import urlsplit

import msgspec

from config.redact import url_without_secrets
from config.schema import (
    USD_CONVERSION_BASE,
    USD_CONVERSION_QUOTE,
    BackofficeSettings,
    ClusterSettings,
    Config,
    GatewaySettings,
    InstrumentSettings,
    LpSettings,
    SessionSettings,
    session_identity,
)

_INSTANCE_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

__all__ = [
    "CROSS_FIELD_CHECKS",
    "CrossFieldCheck",
    "check_backoffice",
    "check_cluster",
    "check_config",
    "check_gateway",
    "check_instrument",
    "check_lp",
    "check_session",
    "child_path",
]

CrossFieldCheck = Callable[[Mapping[str, object], str], list[str]]
"""A check of one table: its validated values and its path in, ``path: message`` lines out."""

_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def child_path(path: str, key: object) -> str:
    """The path of ``key`` inside the table at ``path``; keys that TOML would need to quote
    are shown quoted, e.g. ``risk.clients."odd key"``."""
    name = key if isinstance(key, str) and _BARE_KEY.match(key) else json.dumps(str(key))
    return f"{path}.{name}" if path else str(name)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _entries(values: Mapping[str, object], name: str) -> list[tuple[int, Mapping[str, object]]]:
    """The entries of array ``name`` that are tables, with their positions."""
    array = values.get(name)
    if not isinstance(array, list):
        return []
    return [(index, entry) for index, entry in enumerate(array) if isinstance(entry, Mapping)]


def _is_multiple(value: Decimal, step: Decimal) -> bool:
    try:
        return value % step == 0
    except InvalidOperation:  # the quotient has more digits than the context can hold
        return False


def _duplicates(values: Mapping[str, object], path: str, array: str, key: str) -> list[str]:
    """``array[i]: duplicate <key> X (also array[j])`` for each repeated string ``key``."""
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    for index, entry in _entries(values, array):
        value = entry.get(key)
        if not isinstance(value, str):
            continue
        if value in first_seen:
            other = f"{_join(path, array)}[{first_seen[value]}]"
            errors.append(f"{_join(path, array)}[{index}]: duplicate {key} {value} (also {other})")
        else:
            first_seen[value] = index
    return errors


def _duplicate_lp_sessions(values: Mapping[str, object], path: str) -> list[str]:
    """Two enabled FIX LPs on one session (the same CompIDs, and the same
    store folder): the second's store is locked by the first, and it never
    logs on.  A disabled one has no store (and no reload enables it)."""
    errors: list[str] = []
    first_seen: dict[tuple[str, str, object], int] = {}
    for index, entry in _entries(values, "lps"):
        settings = entry.get("settings")
        if entry.get("adapter") != "fix" or entry.get("enabled") is False:
            continue
        if not isinstance(settings, Mapping):
            continue
        sender, target = settings.get("sender_comp_id"), settings.get("target_comp_id")
        if not isinstance(sender, str) or not isinstance(target, str):
            continue
        key = (sender, target, settings.get("data_dir"))
        if key in first_seen:
            other = f"{_join(path, 'lps')}[{first_seen[key]}]"
            errors.append(
                f"{_join(path, 'lps')}[{index}].settings: duplicate LP session "
                f"{session_identity('FIX.4.4', sender, target)} in one data_dir (also {other})"
            )
        else:
            first_seen[key] = index
    return errors


def check_session(values: Mapping[str, object], path: str) -> list[str]:
    """Rules within one ``[[sessions]]`` entry."""
    errors: list[str] = []
    low = values.get("MinHeartBtInt")
    high = values.get("MaxHeartBtInt")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        errors.append(f"{_join(path, 'MinHeartBtInt')}: must be <= MaxHeartBtInt ({high})")
    return errors


def check_instrument(values: Mapping[str, object], path: str) -> list[str]:
    """Rules within one ``[[instruments]]`` entry: the quantity limits lie on the lot grid
    and in order, and ``"quote"`` conversion needs a USD quote currency."""
    errors: list[str] = []
    lot = values.get("lot_size")
    low = values.get("min_qty")
    high = values.get("max_qty")
    if isinstance(low, Decimal) and isinstance(high, Decimal) and low > high:
        errors.append(f"{_join(path, 'min_qty')}: must be <= max_qty ({high})")
    if isinstance(lot, Decimal):
        for name, qty in (("min_qty", low), ("max_qty", high)):
            if isinstance(qty, Decimal) and not _is_multiple(qty, lot):
                errors.append(f"{_join(path, name)}: must be a multiple of lot_size ({lot})")
    currency = values.get("quote_currency")
    conversion = values.get("usd_conversion")
    if conversion == USD_CONVERSION_QUOTE and isinstance(currency, str) and currency != "USD":
        errors.append(
            f'{_join(path, "usd_conversion")}: "quote" needs quote_currency "USD", '
            f"got {json.dumps(currency)}"
        )
    return errors


def check_lp(values: Mapping[str, object], path: str) -> list[str]:
    """Rules within one ``[[lps]]`` entry: the soft limit lies below the hard limit."""
    soft = values.get("soft_limit_usd")
    hard = values.get("hard_limit_usd")
    if isinstance(soft, Decimal) and isinstance(hard, Decimal) and not soft < hard:
        return [f"{_join(path, 'soft_limit_usd')}: must be < hard_limit_usd ({hard})"]
    return []


def _check_usd_conversions(values: Mapping[str, object], path: str) -> list[str]:
    """Each ``usd_conversion`` naming a symbol names another instrument that
    turns the quote currency into USD: one quoted in USD (GBP/USD for
    EUR/GBP), or one whose base is USD, quoted in that same currency
    (USD/JPY for EUR/JPY)."""
    errors: list[str] = []
    currencies: dict[str, object] = {}
    conversions: dict[str, object] = {}
    for _, entry in _entries(values, "instruments"):
        symbol = entry.get("symbol")
        if isinstance(symbol, str):
            currencies.setdefault(symbol, entry.get("quote_currency"))
            conversions.setdefault(symbol, entry.get("usd_conversion"))
    for index, entry in _entries(values, "instruments"):
        conversion = entry.get("usd_conversion")
        if not isinstance(conversion, str) or conversion in (
            USD_CONVERSION_QUOTE,
            USD_CONVERSION_BASE,
        ):
            continue
        field = f"{_join(path, 'instruments')}[{index}].usd_conversion"
        if conversion == entry.get("symbol"):
            errors.append(f"{field}: must name another instrument, not the instrument itself")
        elif conversion not in currencies:
            errors.append(
                f'{field}: must be "quote", "base" or the symbol of a configured instrument, '
                f"got {json.dumps(conversion)}"
            )
        elif conversions[conversion] == USD_CONVERSION_BASE:
            # USD is its base: its price is so many units of its quote
            # currency a dollar, which must be the quote currency here
            quote = entry.get("quote_currency")
            if isinstance(quote, str) and currencies[conversion] != quote:
                errors.append(
                    f"{field}: {conversion} converts {currencies[conversion]} to USD, "
                    f"not {quote} (the quote currency of {entry.get('symbol')})"
                )
        elif isinstance(currencies[conversion], str) and currencies[conversion] != "USD":
            errors.append(
                f"{field}: {conversion} is quoted in {currencies[conversion]}, "
                "so its mid does not convert to USD"
            )
    return errors


def _check_risk(values: Mapping[str, object], path: str) -> list[str]:
    """Risk entries refer to configured instruments and order-entry client sessions."""
    errors: list[str] = []
    risk = values.get("risk")
    if not isinstance(risk, Mapping):
        return errors
    risk_path = _join(path, "risk")
    instruments = values.get("instruments")
    symbols: set[str] | None = None
    if isinstance(instruments, list):
        symbols = {
            symbol
            for _, entry in _entries(values, "instruments")
            if isinstance(symbol := entry.get("symbol"), str)
        }
    clients: set[str] | None = None
    if isinstance(values.get("sessions"), list):
        clients = {
            target
            for _, entry in _entries(values, "sessions")
            if entry.get("Application") == "orders"
            and isinstance(target := entry.get("TargetCompID"), str)
        }
    limits: list[tuple[str, object]] = [(_join(risk_path, "default"), risk.get("default"))]
    by_client = risk.get("clients")
    if isinstance(by_client, Mapping):
        clients_path = _join(risk_path, "clients")
        for comp_id, entry in by_client.items():
            entry_path = child_path(clients_path, comp_id)
            if clients is not None and comp_id not in clients:
                errors.append(f"{entry_path}: no such client session")
            limits.append((entry_path, entry))
    lots = {
        symbol: lot
        for _, entry in _entries(values, "instruments")
        if isinstance(symbol := entry.get("symbol"), str)
        and isinstance(lot := entry.get("lot_size"), Decimal)
    }
    for entry_path, entry in limits:
        if not isinstance(entry, Mapping):
            continue
        errors.extend(_check_limit_lots(entry, entry_path, lots))
        if symbols is None:
            continue
        allowed = entry.get("allowed_symbols")
        if not isinstance(allowed, list):
            continue
        for index, symbol in enumerate(allowed):
            if isinstance(symbol, str) and symbol not in symbols:
                errors.append(f"{entry_path}.allowed_symbols[{index}]: no such instrument {symbol}")
    return errors


def _check_limit_lots(
    entry: Mapping[str, object], entry_path: str, lots: Mapping[str, Decimal]
) -> list[str]:
    """The limits in units that are counted in lots of each instrument
    (``max_order_qty``, ``max_open_position``) can be: a number of lots with
    more digits than decimal arithmetic holds would stop the start, or a
    reload half-way, instead of being refused here."""
    errors: list[str] = []
    for name in ("max_order_qty", "max_open_position"):
        units = entry.get(name)
        if not isinstance(units, Decimal):
            continue
        for symbol, lot in lots.items():
            try:
                units // lot
            except InvalidOperation:
                errors.append(
                    f"{_join(entry_path, name)}: too large: {units} is more lots of {symbol}"
                    f" (lot_size {lot}) than can be counted"
                )
                break
    return errors


def _check_margin(values: Mapping[str, object], path: str) -> list[str]:
    """Margin groups name configured instruments of one asset class, each instrument in
    one group; spreads name groups, once each, within-class spreads before cross-asset
    ones; accounts name order-entry clients, with the stop-out below the margin call and
    the initial factor, and need groups (without them margin is off and no account would
    be margined)."""
    errors: list[str] = []
    classes: dict[str, object] = {
        symbol: entry.get("asset_class")
        for _, entry in _entries(values, "instruments")
        if isinstance(symbol := entry.get("symbol"), str)
    }
    margin = values.get("margin")
    group_class: dict[str, object] = {}
    groups = margin.get("groups") if isinstance(margin, Mapping) else None
    accounts = values.get("accounts")
    if isinstance(accounts, Mapping) and accounts and not groups:
        errors.append(
            f"{_join(path, 'accounts')}: no client is margined without [[margin.groups]]"
            " (margin is off): add the groups, or remove [accounts]"
        )
    if isinstance(margin, Mapping):
        margin_path = _join(path, "margin")
        owner: dict[str, str] = {}
        for index, group in _entries(margin, "groups"):
            group_path = f"{_join(margin_path, 'groups')}[{index}]"
            name = group.get("name")
            if (group.get("scan_pct") is None) == (group.get("scan_usd") is None):
                errors.append(f"{group_path}: give exactly one of scan_pct and scan_usd")
            if not isinstance(name, str):
                continue
            if name in group_class:
                errors.append(f"{group_path}.name: group {name} declared twice")
            symbols = group.get("symbols")
            seen_classes: set[object] = set()
            for i, symbol in enumerate(symbols if isinstance(symbols, list) else []):
                if not isinstance(symbol, str):
                    continue
                if symbol not in classes:
                    errors.append(f"{group_path}.symbols[{i}]: no such instrument {symbol}")
                    continue
                if symbol in owner:
                    errors.append(
                        f"{group_path}.symbols[{i}]: {symbol} is already in group {owner[symbol]}"
                    )
                owner.setdefault(symbol, name)
                seen_classes.add(classes[symbol])
            if len(seen_classes) > 1:
                listed = ", ".join(sorted(str(c) for c in seen_classes))
                errors.append(
                    f"{group_path}.symbols: instruments of several asset classes ({listed})"
                )
            group_class.setdefault(name, next(iter(seen_classes), None))
        errors.extend(_check_spreads(margin, margin_path, group_class))
    errors.extend(_check_accounts(values, path))
    return errors


def _check_spreads(
    margin: Mapping[str, object], margin_path: str, group_class: Mapping[str, object]
) -> list[str]:
    errors: list[str] = []
    names: set[str] = set()
    cross: list[tuple[int, str]] = []  # (priority, path) of cross-asset spreads
    within: list[tuple[int, str]] = []
    for index, spread in _entries(margin, "spreads"):
        spread_path = f"{_join(margin_path, 'spreads')}[{index}]"
        name = spread.get("name")
        if isinstance(name, str):
            if name in names:
                errors.append(f"{spread_path}.name: spread {name} declared twice")
            names.add(name)
        legs = spread.get("legs")
        leg_classes: set[object] = set()
        seen: set[str] = set()
        for i, leg in enumerate(legs if isinstance(legs, list) else []):
            group = leg.get("group") if isinstance(leg, Mapping) else None
            if not isinstance(group, str):
                continue
            if group not in group_class:
                errors.append(f"{spread_path}.legs[{i}].group: no such margin group {group}")
                continue
            if group in seen:
                errors.append(f"{spread_path}.legs[{i}].group: group {group} is in two legs")
            seen.add(group)
            leg_classes.add(group_class[group])
        priority = spread.get("priority")
        if isinstance(priority, int):
            (cross if len(leg_classes) > 1 else within).append((priority, spread_path))
    if cross:
        first, first_path = min(cross)
        for priority, spread_path in within:
            if priority >= first:
                errors.append(
                    f"{spread_path}.priority: a spread within one asset class must come before "
                    f"every cross-asset spread ({first_path} has priority {first})"
                )
    return errors


def _check_accounts(values: Mapping[str, object], path: str) -> list[str]:
    errors: list[str] = []
    accounts = values.get("accounts")
    if not isinstance(accounts, Mapping):
        return errors
    clients = {
        target
        for _, entry in _entries(values, "sessions")
        if entry.get("Application") == "orders"
        and isinstance(target := entry.get("TargetCompID"), str)
    }
    accounts_path = _join(path, "accounts")
    for comp_id, entry in accounts.items():
        entry_path = child_path(accounts_path, comp_id)
        if comp_id not in clients:
            errors.append(f"{entry_path}: no such client session")
        if not isinstance(entry, Mapping):
            continue
        call = _decimal(entry.get("margin_call_level", 1))
        stop = _decimal(entry.get("stop_out_level", "0.5"))
        if call is not None and stop is not None and stop >= call:
            errors.append(
                f"{entry_path}.stop_out_level: {stop} must be below margin_call_level {call}"
            )
        # an order is accepted while equity covers its margin times the
        # initial factor: the level it leaves may be the factor, no more
        factor = _decimal(entry.get("initial_factor", 1))
        if factor is not None and stop is not None and stop >= factor:
            errors.append(
                f"{entry_path}.stop_out_level: {stop} must be below initial_factor {factor}"
                " (an order the margin check accepts may leave the margin level there)"
            )
    return errors


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return Decimal(value)
    except ArithmeticError:
        return None


def _check_drop_copies(values: Mapping[str, object], path: str) -> list[str]:
    """DropCopyFor belongs to drop-copy sessions and names order-entry clients;
    a drop-copy session resets its numbers on none of its own events."""
    errors: list[str] = []
    entries = _entries(values, "sessions")
    clients = {
        target
        for _, entry in entries
        if entry.get("Application", "orders") == "orders"
        and isinstance(target := entry.get("TargetCompID"), str)
    }
    store = values.get("store")
    backend = store.get("backend", "file") if isinstance(store, Mapping) else "file"
    if backend != "file":
        for index, entry in entries:
            if entry.get("Application") == "dropcopy":
                errors.append(
                    f"{_join(path, 'sessions')}[{index}].Application: a drop-copy session needs"
                    f' store.backend = "file" (the drop copy follows the order journal,'
                    f' which the "{backend}" backend does not keep)'
                )
                break
    for index, entry in entries:
        if entry.get("Application") != "dropcopy":
            continue
        # a reset throws away the copies stored while the back office was
        # away, which its ResendRequest would have brought
        errors.extend(
            f"{_join(path, 'sessions')}[{index}].{flag}: not for a drop-copy session"
            " (a reset would drop the copies stored while its counterparty was away)"
            for flag in ("ResetOnLogon", "ResetOnLogout", "ResetOnDisconnect")
            if entry.get(flag) is True
        )
    for index, entry in entries:
        covered = entry.get("DropCopyFor")
        if covered is None:
            continue
        entry_path = f"{_join(path, 'sessions')}[{index}].DropCopyFor"
        if entry.get("Application") != "dropcopy":
            errors.append(f'{entry_path}: only for a session with Application = "dropcopy"')
            continue
        seen: set[str] = set()
        for i, client in enumerate(covered if isinstance(covered, list | tuple) else []):
            if isinstance(client, str) and client not in clients:
                errors.append(f"{entry_path}[{i}]: no order-entry session for {client}")
            elif isinstance(client, str) and client in seen:
                errors.append(f"{entry_path}[{i}]: {client} is listed twice")
            if isinstance(client, str):
                seen.add(client)
    return errors


def _check_order_entry(values: Mapping[str, object], path: str) -> list[str]:
    """A session with order entry needs an instrument to trade and an LP to route to."""
    orders = any(entry.get("Application") == "orders" for _, entry in _entries(values, "sessions"))
    if not orders:
        return []
    errors: list[str] = []
    instruments = values.get("instruments")
    if isinstance(instruments, list) and not instruments:
        errors.append(
            f"{_join(path, 'instruments')}: at least one instrument is needed for order entry"
        )
    lps = values.get("lps")
    if isinstance(lps, list) and not any(
        not isinstance(entry, Mapping) or entry.get("enabled") is not False for entry in lps
    ):
        errors.append(f"{_join(path, 'lps')}: at least one enabled LP is needed for order entry")
    return errors


def _check_order_clients(values: Mapping[str, object], path: str) -> list[str]:
    """One order-entry session per client CompID: the order flow, the risk
    limits and the margin accounts know a client by its TargetCompID alone."""
    errors: list[str] = []
    first_seen: dict[str, tuple[int, object]] = {}
    for index, entry in _entries(values, "sessions"):
        target = entry.get("TargetCompID")
        if entry.get("Application") != "orders" or not isinstance(target, str):
            continue
        sender = (entry.get("BeginString"), entry.get("SenderCompID"))
        if target in first_seen:
            first, first_sender = first_seen[target]
            if sender == first_sender:
                continue  # the same session twice: reported as a duplicate session
            other = f"{_join(path, 'sessions')}[{first}]"
            errors.append(
                f"{_join(path, 'sessions')}[{index}].TargetCompID: {target} has an order-entry"
                f" session already ({other}); a client's orders, limits and margin go by its"
                " CompID: one order-entry session per client"
            )
        else:
            first_seen[target] = (index, sender)
    return errors


def check_config(values: Mapping[str, object], path: str) -> list[str]:
    """Rules across sections: unique sessions, instruments and LPs; references between
    sections; what order entry needs; and the gateway's listeners on ports of their own
    (the drop copy's with a drop-copy session)."""
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    for index, entry in _entries(values, "sessions"):
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
    errors.extend(_check_order_clients(values, path))
    errors.extend(_duplicates(values, path, "instruments", "symbol"))
    errors.extend(_check_usd_conversions(values, path))
    errors.extend(_duplicates(values, path, "lps", "name"))
    errors.extend(_duplicate_lp_sessions(values, path))
    errors.extend(_check_risk(values, path))
    errors.extend(_check_margin(values, path))
    errors.extend(_check_drop_copies(values, path))
    errors.extend(_check_order_entry(values, path))
    gateway, cluster = values.get("gateway"), values.get("cluster")
    if isinstance(gateway, Mapping):
        drop_copy = any(
            entry.get("Application") == "dropcopy" for _, entry in _entries(values, "sessions")
        )
        errors.extend(_listener_clashes(gateway, _join(path, "gateway"), drop_copy))
    if (
        isinstance(gateway, Mapping)
        and gateway.get("id_prefix")
        and isinstance(cluster, Mapping)
        and cluster.get("servers")
    ):
        errors.append(
            f"{_join(path, 'gateway')}.id_prefix: a cluster's gateways take theirs from their"
            " names (one config shared by them would give them all the same); leave it out"
        )
    return errors


def _listener_clashes(values: Mapping[str, object], path: str, drop_copy: bool) -> list[str]:
    """Two of the gateway's listeners (the ``[gateway]`` table ``values`` at
    ``path``) on one port of one address; the drop-copy port only when
    ``drop_copy`` (a drop-copy session: it is bound for none otherwise)."""
    errors: list[str] = []
    # the drop copy listens on fix_host too; a wildcard address takes the
    # port on every address
    fix_host = values.get("fix_host", "127.0.0.1")
    listeners = (
        ("fix_port", fix_host),
        ("drop_copy_port", fix_host),
        ("http_port", values.get("http_host", "127.0.0.1")),
    )
    taken: list[tuple[object, object, str]] = []
    for name, host in listeners:
        port = values.get(name)
        if not isinstance(port, int) or not port or (name == "drop_copy_port" and not drop_copy):
            continue
        for other_port, other_host, other in taken:
            if port == other_port and (host == other_host or _WILDCARD & {host, other_host}):
                errors.append(f"{_join(path, name)}: {port} is {_join(path, other)} too")
                break
        else:
            taken.append((port, host, name))
    return errors


def check_gateway(values: Mapping[str, object], path: str) -> list[str]:
    """TLS needs both the certificate and the key; the read token is not
    the admin token (it would give its holder every right)."""
    errors = []
    cert, key = values.get("tls_cert_file"), values.get("tls_key_file")
    if bool(cert) != bool(key):
        errors.append(
            f"{_join(path, 'tls_key_file' if cert else 'tls_cert_file')}: required with TLS"
        )
    prefix = values.get("id_prefix")
    if (
        isinstance(prefix, str)
        and prefix
        and not (len(prefix) <= 8 and prefix.isascii() and prefix.isalnum())
    ):
        errors.append(f"{_join(path, 'id_prefix')}: up to 8 letters and digits, got {prefix!r}")
    for name in ("admin_token", "read_token"):
        token = values.get(name)
        problem = bearer_token_problem(token.strip()) if isinstance(token, str) else None
        if problem is not None:
            errors.append(f"{_join(path, name)}: {problem}")
    read = values.get("read_token")
    if read and read == values.get("admin_token"):
        errors.append(
            f"{_join(path, 'read_token')}: the same as admin_token, which may change "
            "things too; give the read token a value of its own"
        )
    return errors


_WILDCARD: Final = frozenset({"0.0.0.0", "::", ""})

_BEARER_TOKEN: Final = re.compile(r"[!-~]*")


def bearer_token_problem(token: str) -> str | None:
    """Why ``token`` cannot be given as a bearer token, or None.

    Visible ASCII only (RFC 6750's token68, and the rest of printable
    ASCII but the space): a character beyond it goes into an HTTP header
    as one byte from one client (latin-1, Python's http.client) and as two
    from another (UTF-8, curl), and is refused by one or crashes the other.
    The text does not repeat the token, which is a secret."""
    if _BEARER_TOKEN.fullmatch(token):
        return None
    return "visible ASCII characters only (letters, digits, punctuation; no spaces or accents)"


def check_cluster(values: Mapping[str, object], path: str) -> list[str]:
    """Leases are renewed well before they lapse; server URLs are NATS's;
    an instance name is a key part."""
    errors: list[str] = []
    lease, renew = values.get("lease_ms", 1500), values.get("renew_ms", 400)
    if isinstance(lease, int) and isinstance(renew, int) and renew * 3 > lease:
        errors.append(
            f"{_join(path, 'renew_ms')}: must be at most a third of lease_ms ({lease}), not {renew}"
        )
    servers = values.get("servers", ())
    if isinstance(servers, list | tuple):
        for index, url in enumerate(servers):
            if not isinstance(url, str):
                continue
            shown = url_without_secrets(url)
            where = f"{_join(path, 'servers')}[{index}]"
            if not url.startswith(("nats://", "tls://")):
                errors.append(f"{where}: {shown!r} is not a nats:// or tls:// URL")
                continue
            # what the NATS client could not connect to stops the start
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 (reading it checks it)
            except ValueError:
                errors.append(f"{where}: {shown!r} has a port that is not a number from 0 to 65535")
                continue
            if not parts.hostname:
                errors.append(f"{where}: {shown!r} has no host")
    name = values.get("instance", "")
    if isinstance(name, str) and name and not _INSTANCE_NAME.fullmatch(name):
        errors.append(
            f"{_join(path, 'instance')}: {name!r} may hold only letters, digits, '-' and '_'"
            " (at most 64)"
        )
    return errors


def check_backoffice(values: Mapping[str, object], path: str) -> list[str]:
    """The gateways a back office follows have names and drop copies of
    their own; the ledger is DuckDB's or PostgreSQL's."""
    errors = _duplicates(values, path, "gateways", "name")
    ledger = values.get("ledger", "")
    if isinstance(ledger, str) and ledger:
        scheme, _, rest = ledger.partition(":")
        duck = scheme == "duckdb" and bool(rest)
        postgres = scheme in ("postgresql", "postgres") and rest.startswith("//")
        if not (duck or postgres):
            shown = url_without_secrets(ledger)
            errors.append(
                f"{_join(path, 'ledger')}: {shown!r} is neither duckdb:<file> nor "
                "postgresql://user@host:port/database"
            )
        elif postgres:
            try:
                urlsplit(ledger).port  # noqa: B018 (reading it checks it)
            except ValueError:
                shown = url_without_secrets(ledger)
                errors.append(f"{_join(path, 'ledger')}: {shown!r} has a port that is not a number")
    seen: dict[tuple[object, object], int] = {}
    for index, entry in _entries(values, "gateways"):
        address = (entry.get("host", "127.0.0.1"), entry.get("drop_copy_port"))
        if address in seen:
            errors.append(
                f"{_join(path, 'gateways')}[{index}]: the same drop copy as"
                f" {_join(path, 'gateways')}[{seen[address]}] ({address[0]}:{address[1]})"
            )
        else:
            seen[address] = index
    return errors


CROSS_FIELD_CHECKS: Final[Mapping[type[msgspec.Struct], CrossFieldCheck]] = {
    GatewaySettings: check_gateway,
    SessionSettings: check_session,
    InstrumentSettings: check_instrument,
    LpSettings: check_lp,
    ClusterSettings: check_cluster,
    BackofficeSettings: check_backoffice,
    Config: check_config,
}
"""Cross-field rules by struct; the loader runs them after validating each table's fields."""
