"""What a reload may change on the fly, and how traffic is shared between
two routing policies."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from config import CandidatePolicy, Config, default_config_path, load_config
from gateway.ops.reload import changed_settings
from gateway.orderflow.rules import SHARE_SCALE, Rules, build_rules

BASE = load_config(default_config_path())


def edit(config: Config, section: str, **values: object) -> Config:
    return msgspec.structs.replace(
        config, **{section: msgspec.structs.replace(getattr(config, section), **values)}
    )


def edit_lp(config: Config, index: int, **values: object) -> Config:
    lps = list(config.lps)
    lps[index] = msgspec.structs.replace(lps[index], **values)
    return msgspec.structs.replace(config, lps=tuple(lps))


def edit_instrument(config: Config, index: int, **values: object) -> Config:
    instruments = list(config.instruments)
    instruments[index] = msgspec.structs.replace(instruments[index], **values)
    return msgspec.structs.replace(config, instruments=tuple(instruments))


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (edit(BASE, "routing", max_reroutes=5), [("routing.max_reroutes", True)]),
        (edit(BASE, "routing", policy="best_price"), [("routing.policy", True)]),
        (
            edit(
                BASE,
                "routing",
                candidate=CandidatePolicy(policy="best_price", share_percent=Decimal(5)),
            ),
            [("routing.candidate", True)],
        ),
        (edit(BASE, "orders", retain_finished=10), [("orders.retain_finished", True)]),
        (edit(BASE, "gateway", log_level="debug"), [("gateway.log_level", True)]),
        (edit(BASE, "gateway", admin_token="other"), [("gateway.admin_token", True)]),
        (edit_lp(BASE, 1, soft_limit_usd=Decimal(1)), [("lps[1].soft_limit_usd", True)]),
        (edit_lp(BASE, 2, hard_limit_usd=Decimal(10**9)), [("lps[2].hard_limit_usd", True)]),
        (edit_lp(BASE, 0, soft_penalty_ticks=9), [("lps[0].soft_penalty_ticks", True)]),
        (edit_lp(BASE, 0, enabled=False), [("lps[0].enabled", True)]),
        # read by the back office alone
        (edit(BASE, "backoffice", grace_seconds=Decimal(30)), [("backoffice.grace_seconds", True)]),
        (edit_instrument(BASE, 0, settlement_days=0), [("instruments[0].settlement_days", True)]),
        # needs a restart
        (edit_instrument(BASE, 0, lot_size=Decimal(100)), [("instruments[0].lot_size", False)]),
        (edit(BASE, "gateway", fix_port=1234), [("gateway.fix_port", False)]),
        (edit(BASE, "gateway", log_format="console"), [("gateway.log_format", False)]),
        (edit(BASE, "store", fsync="batch"), [("store.fsync", False)]),
        (edit_lp(BASE, 0, adapter="other"), [("lps[0].adapter", False)]),
        (edit_lp(BASE, 0, name="LP_Z"), [("lps[0].name", False)]),
        (msgspec.structs.replace(BASE, lps=BASE.lps[:2]), [("lps", False)]),
    ],
)
def test_each_setting_is_classified(new: Config, expected: list[tuple[str, bool]]) -> None:
    assert changed_settings(BASE, new) == expected


def test_a_session_identity_change_needs_a_restart() -> None:
    sessions = list(BASE.sessions)
    sessions[0] = msgspec.structs.replace(sessions[0], TargetCompID="CLIENT9")
    new = msgspec.structs.replace(BASE, sessions=tuple(sessions))
    assert changed_settings(BASE, new) == [("sessions[0].TargetCompID", False)]


def test_enabling_an_lp_needs_a_restart_unless_it_was_connected_at_start() -> None:
    disabled = edit_lp(BASE, 0, enabled=False)
    assert changed_settings(disabled, BASE) == [("lps[0].enabled", False)]
    assert changed_settings(disabled, BASE, frozenset({"LP_A"})) == [("lps[0].enabled", True)]


def test_nothing_changed() -> None:
    assert changed_settings(BASE, load_config(default_config_path())) == []


def rules_with_share(percent: str) -> Rules:
    candidate = CandidatePolicy(policy="best_price", share_percent=Decimal(percent))
    config = edit(BASE, "routing", candidate=candidate)
    return build_rules(config, {}, ["CLIENT1"], generation=2)


@pytest.mark.parametrize("percent", ["5", "25", "50"])
def test_traffic_shares_are_met_within_tolerance(percent: str) -> None:
    rules = rules_with_share(percent)
    n = 20_000
    chosen = [rules.policy_for("CLIENT1", f"ORD-{i}") for i in range(n)]
    share = chosen.count("best_price") / n * 100
    assert abs(share - float(percent)) < 1.0
    assert set(chosen) == {"best_price", "best_price_exposure_aware"}


def test_the_same_cl_ord_id_always_gets_the_same_policy_and_growing_shares_keep_it() -> None:
    small, large = rules_with_share("5"), rules_with_share("25")
    ids = [f"X{i}" for i in range(5000)]
    at_5 = {i for i in ids if small.policy_for("C", i) == "best_price"}
    again = {i for i in ids if small.policy_for("C", i) == "best_price"}
    at_25 = {i for i in ids if large.policy_for("C", i) == "best_price"}
    assert at_5 == again
    assert at_5 < at_25


def test_no_share_and_the_whole_share() -> None:
    none, whole = rules_with_share("0"), rules_with_share("100")
    assert {none.policy_for("C", f"{i}") for i in range(500)} == {"best_price_exposure_aware"}
    assert {whole.policy_for("C", f"{i}") for i in range(500)} == {"best_price"}
    assert whole.candidate_share == SHARE_SCALE
    assert whole.shares == {"best_price_exposure_aware": Decimal(0), "best_price": Decimal(100)}
