"""The routing rules in force: one immutable object built from a config.

Everything the order flow may change while the market is open (routing
policies and their traffic shares, LP limits, client risk limits, routing
parameters) is read from one :class:`Rules` object.  A reload builds a new one
from the new file and swaps it in with a single assignment between two
events; a routing that began under the old rules keeps a reference to them,
so its re-routes and timeouts follow the rules it started with.

Building rules does no I/O.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

import msgspec
import structlog

from config import Config
from risk.accounts import AccountTerms
from risk.limits import ClientLimits
from risk.margin import MarginGroup, MarginParams, SpreadDef, SpreadLeg
from router.model import Instrument
from router.policy import LpLimits, RoutingLimits, RoutingPolicy, build_policy

_log = structlog.get_logger("gateway.orderflow.rules")

SHARE_SCALE = 10_000
"""Traffic shares are kept in basis points of the orders."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The routing rules of one config version."""

    config: Config
    generation: int
    """1 for the config the daemon started with, +1 per applied reload."""
    digest: str
    """Short hash of the config's content."""
    policies: Mapping[str, RoutingPolicy]
    """Every policy in use by name: the primary, and the candidate if any."""
    primary: str
    candidate: str | None
    candidate_share: int
    """The candidate's share of the orders in basis points (0 to 10,000)."""
    limits: RoutingLimits
    client_limits: Mapping[str, ClientLimits]
    margin: MarginParams | None = None
    """The margin parameters; None when ``[margin]`` has no groups."""
    accounts: Mapping[str, AccountTerms] = field(default_factory=lambda: MappingProxyType({}))
    """Margin accounts by client CompID."""

    @property
    def version(self) -> str:
        return f"{self.generation}-{self.digest}"

    @property
    def shares(self) -> dict[str, Decimal]:
        """Percentage of orders per policy."""
        if self.candidate is None:
            return {self.primary: Decimal(100)}
        candidate = Decimal(self.candidate_share) / 100
        if self.candidate == self.primary:
            return {self.primary: Decimal(100)}
        return {self.primary: Decimal(100) - candidate, self.candidate: candidate}

    def policy_for(self, client: str, cl_ord_id: str) -> str:
        """The name of the policy that routes the client's order entered
        with ``cl_ord_id`` (the ClOrdID of its NewOrderSingle, whatever its
        replaces called it since): the same for the same ClOrdID as long as
        the share stays the same, and an order that goes to the candidate
        at a share still does at any larger one."""
        candidate = self.candidate
        if candidate is None or not self.candidate_share:
            return self.primary
        if self.candidate_share >= SHARE_SCALE:
            return candidate
        bucket = zlib.crc32(f"{client}\x01{cl_ord_id}".encode()) % SHARE_SCALE
        return candidate if bucket < self.candidate_share else self.primary


def client_limits(
    config: Config, client: str, instruments: Mapping[str, Instrument]
) -> ClientLimits:
    """The client's risk limits in lots (config states them in units)."""
    risk = config.risk.for_client(client)

    def per_symbol(units: Decimal | None) -> dict[str, int]:
        if units is None:
            return {}
        return {s: int(units // i.lot_size) for s, i in instruments.items()}

    return ClientLimits(
        max_order_qty_by_symbol=per_symbol(risk.max_order_qty),
        max_notional_usd=risk.max_notional_usd,
        max_open_position_lots_by_symbol=per_symbol(risk.max_open_position),
        allowed_symbols=None if risk.allowed_symbols is None else frozenset(risk.allowed_symbols),
        max_open_orders=risk.max_open_orders,
        max_messages_per_second=risk.max_messages_per_second,
        units_per_lot={s: i.lot_size for s, i in instruments.items()},
    )


def margin_params(config: Config, version: str) -> MarginParams | None:
    """The ``[margin]`` table as the margin method's parameters (the config
    checks have made them consistent); ``version`` names them when the
    table does not."""
    margin = config.margin
    if not margin.groups:
        return None
    classes = {i.symbol: i.asset_class for i in config.instruments}
    grouped = {symbol for g in margin.groups for symbol in g.symbols}
    outside = sorted(set(classes) - grouped)
    if outside and config.accounts:
        _log.warning(
            "margin_instruments_without_group",
            symbols=outside,
            hint="orders in them are not margined; their losses still count in equity, "
            "and an equity below zero stops the account out",
        )
    groups = tuple(
        MarginGroup(
            name=g.name,
            asset_class=classes[g.symbols[0]],
            symbols=g.symbols,
            scan_pct=None if g.scan_pct is None else float(g.scan_pct),
            scan_usd=None if g.scan_usd is None else float(g.scan_usd),
        )
        for g in margin.groups
    )
    spreads = tuple(
        SpreadDef(
            s.name,
            s.priority,
            float(s.rate),
            tuple(SpreadLeg(leg.group, float(leg.ratio), leg.side) for leg in s.legs),
        )
        for s in margin.spreads
    )
    return MarginParams(margin.version or version, groups, spreads)


def account_terms(config: Config) -> dict[str, AccountTerms]:
    return {
        client: AccountTerms(
            collateral_usd=a.collateral_usd,
            margin_call_level=a.margin_call_level,
            stop_out_level=a.stop_out_level,
            initial_factor=a.initial_factor,
        )
        for client, a in config.accounts.items()
    }


def config_digest(config: Config) -> str:
    return hashlib.sha256(msgspec.json.encode(config)).hexdigest()[:12]


def build_rules(
    config: Config,
    instruments: Mapping[str, Instrument],
    clients: list[str],
    generation: int,
) -> Rules:
    """The rules ``config`` states for ``clients``."""
    routing = config.routing
    policies: dict[str, RoutingPolicy] = {routing.policy: build_policy(routing.policy)}
    candidate = None
    share = 0
    if routing.candidate is not None:
        candidate = routing.candidate.policy
        policies.setdefault(candidate, build_policy(candidate))
        share = int(routing.candidate.share_percent * SHARE_SCALE / 100)
    limits = RoutingLimits(
        lps={
            lp.name: LpLimits(
                soft_limit_usd=lp.soft_limit_usd,
                hard_limit_usd=lp.hard_limit_usd,
                soft_penalty_ticks=lp.soft_penalty_ticks,
                enabled=lp.enabled,
            )
            for lp in config.lps
        },
        max_child_orders=routing.max_child_orders,
    )
    digest = config_digest(config)
    return Rules(
        config=config,
        generation=generation,
        digest=digest,
        policies=policies,
        primary=routing.policy,
        candidate=candidate,
        candidate_share=share,
        limits=limits,
        client_limits={c: client_limits(config, c, instruments) for c in clients},
        margin=margin_params(config, f"{generation}-{digest}"),
        accounts=MappingProxyType(account_terms(config)),
    )


def capped(rules: Rules, caps: Mapping[str, Decimal]) -> Rules:
    """``rules`` with each LP in ``caps`` limited to at most that gross
    notional (a cluster's slice of its hard limit): the hard and the soft
    limit are both brought down to it."""
    if not caps:
        return rules
    lps = {}
    for name, lp in rules.limits.lps.items():
        cap = caps.get(name)
        if cap is None or cap >= lp.hard_limit_usd:
            lps[name] = lp
            continue
        cap = max(cap, Decimal(0))
        lps[name] = LpLimits(
            soft_limit_usd=min(lp.soft_limit_usd, cap),
            hard_limit_usd=cap,
            soft_penalty_ticks=lp.soft_penalty_ticks,
            enabled=lp.enabled,
        )
    routing = RoutingLimits(lps=lps, max_child_orders=rules.limits.max_child_orders)
    return replace(rules, limits=routing)
