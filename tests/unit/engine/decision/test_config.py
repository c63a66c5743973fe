"""Decision config: the revision hash, compilation from the spec, and the hot holder."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.decision.config import (
    ConfigHolder,
    apply_hot_config,
    compile_decision_config,
    config_rev,
)
from tradeplane.engine.decision.cooldown import Cooldowns
from tradeplane.engine.decision.types import LONG

from .conftest import BASE_SPEC, FEATURES, NS, make_cfg, make_spec, merge

REPO = Path(__file__).resolve().parents[4]

# ---------------------------------------------------------------------------------------------- config_rev


def test_rev_is_12_hex_and_deterministic() -> None:
    rev = config_rev(make_spec())
    assert re.fullmatch(r"[0-9a-f]{12}", rev)
    assert config_rev(make_spec()) == rev


DECISION_CHANGES: dict[str, dict[str, Any]] = {
    "tau": {"decision": {"tau": 0.61}},
    "kappa": {"decision": {"kappa": 1.5}},
    "cooldown": {"decision": {"cooldownSeconds": 31}},
    "horizon": {"decision": {"horizonSeconds": 61}},
    "taker_fee": {"decision": {"costModel": {"takerFeeBps": 4.5}}},
    "gate_spread": {"gates": {"maxSpreadBps": 4.0}},
    "rule_added": {"rules": [{"name": "wide", "when": [{"feature": "spread_bps", "op": "gt", "value": 3}]}]},
    "leverage": {"sizing": {"leverage": 4}},
    "execution_policy": {"execution": {"policy": "immediate"}},
    "degrade_to_rules": {"model": {"degradeToRules": False}},
    "symbols": {"symbols": ["BTCUSDT", "ETHUSDT"]},
}


@pytest.mark.parametrize("changes", DECISION_CHANGES.values(), ids=DECISION_CHANGES.keys())
def test_a_change_that_affects_decisions_changes_the_rev(changes: dict[str, Any]) -> None:
    assert config_rev(make_spec(**changes)) != config_rev(make_spec())


DEPLOYMENT_CHANGES: dict[str, dict[str, Any]] = {
    "resources_replicas": {"resources": {"decide": {"replicas": 3}}},
    "resources_cpu": {"resources": {"ingest": {"cpu": "2", "memory": "2Gi"}}},
    "suspend": {"suspend": True},
}


@pytest.mark.parametrize("changes", DEPLOYMENT_CHANGES.values(), ids=DEPLOYMENT_CHANGES.keys())
def test_resources_and_suspend_do_not_change_the_rev(changes: dict[str, Any]) -> None:
    assert config_rev(make_spec(**changes)) == config_rev(make_spec())


def test_rev_ignores_key_order_and_spelling_of_defaults() -> None:
    """The same spec written differently (reordered keys, defaults spelled out, snake_case) has one rev."""
    reordered = dict(reversed(list(BASE_SPEC.items())))
    explicit = merge(BASE_SPEC, {"decision": {"tau": 0.6, "kappa": 1.0}, "mode": "paper"})
    snake = StrategySpec(
        risk_budget_ref={"name": "desk"},  # type: ignore[arg-type]
        venue="binance-usdm",  # type: ignore[arg-type]
        symbols=["BTCUSDT"],
        model={"family": "ofi-lgbm"},  # type: ignore[arg-type]
        sizing={"margin_base_usdt": 100, "leverage": 3},  # type: ignore[arg-type]
    )
    rev = config_rev(make_spec())
    assert config_rev(StrategySpec.model_validate(reordered)) == rev
    assert config_rev(StrategySpec.model_validate(explicit)) == rev
    assert config_rev(snake) == rev


def test_rev_is_the_same_in_another_process() -> None:
    """sha256 of canonical JSON, not hash(): a different PYTHONHASHSEED gives the same revision."""
    code = (
        "import json, sys;"
        "from tradeplane.api.v1alpha1.strategy import StrategySpec;"
        "from tradeplane.engine.decision.config import config_rev;"
        "print(config_rev(StrategySpec.model_validate(json.loads(sys.argv[1]))))"
    )
    import json

    spec = merge(BASE_SPEC, DECISION_CHANGES["rule_added"])
    for seed in ("1", "999"):
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == config_rev(StrategySpec.model_validate(spec))


# ---------------------------------------------------------------------------------------------- compile


def test_compile_carries_the_decision_parameters() -> None:
    cfg = compile_decision_config(
        "usdm-btc",
        make_spec(decision={"horizonSeconds": 120, "tau": 0.62, "kappa": 1.3, "cooldownSeconds": 45, "tickMs": 250}),
        FEATURES,
    )
    assert (cfg.strategy, cfg.venue, cfg.futures) == ("usdm-btc", "binance-usdm", True)
    assert (cfg.horizon_s, cfg.tau, cfg.kappa, cfg.tick_ms) == (120, 0.62, 1.3, 250)
    assert cfg.cooldown_ns == 45 * NS
    assert cfg.feature_names == FEATURES
    assert cfg.sizing.leverage == 3 and cfg.sizing.futures
    assert cfg.gates.max_spread_bps == 5.0
    assert cfg.degrade_to_rules is True
    assert cfg.config_rev == config_rev(
        make_spec(decision={"horizonSeconds": 120, "tau": 0.62, "kappa": 1.3, "cooldownSeconds": 45, "tickMs": 250})
    )


VENUES: dict[str, tuple[str, bool, int]] = {
    # venue: (venue, futures, leverage used)
    "usdm": ("binance-usdm", True, 3),
    "spot": ("binance-spot", False, 1),
    "paper": ("paper", False, 1),
}


@pytest.mark.parametrize(("venue", "futures", "leverage"), VENUES.values(), ids=VENUES.keys())
def test_futures_and_leverage_follow_the_venue(venue: str, futures: bool, leverage: int) -> None:
    cfg = make_cfg(venue=venue)
    assert cfg.futures is futures
    assert cfg.sizing.leverage == leverage


FEE_CASES: dict[str, tuple[str, float, float, bool, float, float]] = {
    # name: (policy, maker, taker, entry_maker, round trip fee, taker legs)
    "maker_then_taker": ("maker-then-taker", 2.0, 5.0, True, 7.0, 1.0),
    "immediate": ("immediate", 2.0, 5.0, False, 10.0, 2.0),
    "twap": ("twap", 2.0, 5.0, False, 10.0, 2.0),
    "maker_rebate": ("maker-then-taker", -1.0, 4.0, True, 3.0, 1.0),
    "spot_flat": ("immediate", 10.0, 10.0, False, 20.0, 2.0),
}


@pytest.mark.parametrize(
    ("policy", "maker", "taker", "entry_maker", "fee", "legs"), FEE_CASES.values(), ids=FEE_CASES.keys()
)
def test_fee_legs_follow_the_execution_policy(
    policy: str, maker: float, taker: float, entry_maker: bool, fee: float, legs: float
) -> None:
    cfg = make_cfg(execution={"policy": policy}, decision={"costModel": {"makerFeeBps": maker, "takerFeeBps": taker}})
    assert cfg.entry_maker is entry_maker
    assert cfg.round_trip_fee_bps == pytest.approx(fee)
    assert cfg.taker_legs == legs
    assert (cfg.maker_bps, cfg.taker_bps) == (maker, taker)


FUNDING_CASES: dict[str, tuple[dict[str, Any], float]] = {
    # name: (spec changes, funding bps per unit rate for a long over the horizon)
    "usdm_60s": ({}, 1e4 * 60 / 28_800),
    "usdm_8h": ({"decision": {"horizonSeconds": 28_800}}, 1e4),
    "usdm_without_funding": ({"decision": {"costModel": {"includeFunding": False}}}, 0.0),
    "spot": ({"venue": "binance-spot"}, 0.0),
}


@pytest.mark.parametrize(("changes", "per_rate"), FUNDING_CASES.values(), ids=FUNDING_CASES.keys())
def test_funding_is_priced_per_unit_rate(changes: dict[str, Any], per_rate: float) -> None:
    assert make_cfg(**changes).funding_bps_per_rate == pytest.approx(per_rate, rel=1e-12)


def test_derived_costs_follow_a_replaced_config() -> None:
    """The cost coefficients are derived, so a hand-edited config cannot carry stale fees."""
    cfg = make_cfg()
    assert (cfg.round_trip_fee_bps, cfg.taker_legs) == (7.0, 1.0)
    changed = dataclasses.replace(cfg, taker_bps=6.0, entry_maker=False, include_funding=False)
    assert (changed.round_trip_fee_bps, changed.taker_legs, changed.funding_bps_per_rate) == (12.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="init=False"):
        dataclasses.replace(cfg, round_trip_fee_bps=0.0)


def test_rules_are_compiled_with_the_sizing_clamp() -> None:
    cfg = make_cfg(
        sizing={"minSizeMult": 0.5, "maxSizeMult": 1.5},
        rules=[{"name": "big", "when": [{"feature": "qi1", "op": "gt", "value": 0}], "sizeMult": 5}],
    )
    assert cfg.rules.names == ("big",)
    assert cfg.rules.apply({"qi1": 1.0}).size_mult == 1.5


def test_unknown_rule_feature_fails_at_compile_time() -> None:
    spec = make_spec(rules=[{"name": "typo", "when": [{"feature": "spred_bps", "op": "gt", "value": 3}]}])
    with pytest.raises(ValueError, match=r"rules\[0\]\.when\[0\]\.feature"):
        compile_decision_config("s", spec, FEATURES, known_features={*FEATURES, "rv_pct"})
    assert compile_decision_config("s", spec, FEATURES).rules.names == ("typo",)  # unchecked without the list


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("2*-strategy-*.yaml")), ids=lambda p: p.name)
def test_example_strategies_compile(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    spec = StrategySpec.model_validate(doc["spec"])
    cfg = compile_decision_config(doc["metadata"]["name"], spec)
    assert cfg.config_rev == config_rev(spec)
    assert cfg.tau == spec.decision.tau
    assert cfg.futures is (spec.venue == "binance-usdm")


# ---------------------------------------------------------------------------------------------- holder


def test_holder_swaps_and_keeps_history() -> None:
    a, b, c = make_cfg(), make_cfg(decision={"tau": 0.7}), make_cfg(decision={"tau": 0.8})
    holder = ConfigHolder(a)
    assert holder.current is a and holder.revisions == [a.config_rev]
    assert holder.swap(b) is a
    assert holder.swap(c) is b
    assert holder.current is c
    assert holder.revisions == [a.config_rev, b.config_rev, c.config_rev]


def test_holder_refuses_another_strategys_config() -> None:
    holder = ConfigHolder(make_cfg())
    other = compile_decision_config("other", make_spec(), FEATURES)
    with pytest.raises(ValueError, match="other"):
        holder.swap(other)
    assert holder.revisions == [make_cfg().config_rev]


def test_concurrent_swaps_record_every_revision() -> None:
    configs = [make_cfg(decision={"tau": 0.6 + i / 1000}) for i in range(40)]
    holder = ConfigHolder(configs[0])
    seen: list[str] = []

    def swapper(chunk: list[Any]) -> None:
        for cfg in chunk:
            holder.swap(cfg)
            seen.append(holder.current.config_rev)

    threads = [threading.Thread(target=swapper, args=(configs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(holder.revisions) == 1 + len(configs)
    assert sorted(holder.revisions[1:]) == sorted(c.config_rev for c in configs)
    assert holder.current.config_rev == holder.revisions[-1]


def test_apply_hot_config_changes_the_running_cooldown() -> None:
    old = make_cfg(decision={"cooldownSeconds": 30})
    new = make_cfg(decision={"cooldownSeconds": 5})
    holder = ConfigHolder(old)
    cooldowns = Cooldowns(old.cooldown_ns)
    cooldowns.record("BTCUSDT", LONG, "i1", 0)
    assert cooldowns.blocked_until("BTCUSDT", LONG, 6 * NS) == 30 * NS
    assert apply_hot_config(holder, cooldowns, new) is old
    assert holder.current is new
    assert cooldowns.blocked_until("BTCUSDT", LONG, 6 * NS) == 0
    assert cooldowns.blocked_until("BTCUSDT", LONG, 4 * NS) == 5 * NS
