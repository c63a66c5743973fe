"""decide(): every skip reason, full entries both ways, idempotency, cooldown, degrade mode, hot config, costs.

Numbers (conftest): mid 60 000.05, spread ≈ 0.0167 bps, ATR over the 60 s horizon 150 ≈ 25 bps (the typical
move); maker-then-taker fees 2 + 5 = 7 bps plus one taker leg of half-spread slippage; funding 1 bps / 8 h →
0.0021 bps over 60 s. p_up 0.7 → E = 0.4 · 25 = 10 bps, U ≈ 1.43: enters long.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine import costs
from tradeplane.engine.decision import reasons
from tradeplane.engine.decision.config import ConfigHolder, DecisionConfig, apply_hot_config
from tradeplane.engine.decision.cooldown import Cooldowns
from tradeplane.engine.decision.fallback import rules_only_p_up
from tradeplane.engine.decision.pipeline import decide
from tradeplane.engine.decision.router import ModelRouter, RoutedModel
from tradeplane.engine.decision.types import (
    ENTER_LONG,
    ENTER_SHORT,
    LONG,
    QUALITY_DATA_DEGRADED,
    QUALITY_MODEL_DEGRADED,
    QUALITY_SHADOW_ERROR,
    QUALITY_SLIPPAGE_PROXY,
    RULES_FALLBACK,
    SHORT,
    SKIP,
    Intent,
    MarketState,
    Signal,
    intent_id,
    signal_id,
)

from .conftest import BASE_FEATURES, BASE_STATE, NS, T0, ConstScorer, FailingScorer, make_cfg, make_state

NOW = T0 + 5_000_000  # decision time: 5 ms after the book top


def _router(p: float = 0.7, *extra: RoutedModel) -> ModelRouter:
    return ModelRouter([RoutedModel("v1", "stable", 0.0, ConstScorer(p)), *extra])


def run(
    *,
    cfg: DecisionConfig | None = None,
    state: MarketState = BASE_STATE,
    features: Mapping[str, float] = BASE_FEATURES,
    router: ModelRouter | str | None = "default",
    p: float = 0.7,
    cooldowns: Cooldowns | None = None,
    now: int = NOW,
    risk_headroom: bool = True,
    **kw: Any,
) -> tuple[Signal, Intent | None]:
    cfg = cfg or make_cfg()
    r = _router(p) if router == "default" else router
    assert not isinstance(r, str)
    cd = Cooldowns(cfg.cooldown_ns) if cooldowns is None else cooldowns  # (an empty Cooldowns is falsy)
    return decide(cfg, state, features, r, cd, now=now, risk_headroom=risk_headroom, **kw)


# --------------------------------------------------------------------------------------------- skip matrix


@dataclasses.dataclass(frozen=True)
class Case:
    reason: str
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    features: dict[str, float] = dataclasses.field(default_factory=dict)
    p: float = 0.7
    router: str = "const"  # const | none | failing | nan
    kw: dict[str, Any] = dataclasses.field(default_factory=dict)
    detail: str = ""  # substring expected in reason_detail


NO_DEGRADE = {"model": {"degradeToRules": False}}
SKIP_RULE = [{"name": "wide-book", "when": [{"feature": "spread_bps", "op": "gt", "value": 0.01}], "skipEntry": True}]
ZERO_RULE = [{"name": "halve-to-zero", "when": [{"feature": "qi1", "op": "gt", "value": 0}], "sizeMult": 0}]
BUCKETS_ZERO_BELOW_06 = {"sizing": {"probabilityBuckets": [{"minP": 0.6, "mult": 1.0}, {"minP": 0.0, "mult": 0.0}]}}

SKIPS: dict[str, Case] = {
    "no_router_no_fallback": Case(reasons.NO_MODEL, spec=NO_DEGRADE, router="none", detail="no model router"),
    "model_degraded_no_fallback": Case(reasons.NO_MODEL, spec=NO_DEGRADE, kw={"model_ok": False}, detail="degraded"),
    "model_raises_no_fallback": Case(reasons.NO_MODEL, spec=NO_DEGRADE, router="failing", detail="RuntimeError"),
    "model_returns_nan_no_fallback": Case(reasons.NO_MODEL, spec=NO_DEGRADE, router="nan", detail="p_up=nan"),
    "funding_positive": Case(reasons.GATE_FUNDING, state={"next_funding_rate": 0.002}, detail="funding"),
    "funding_negative": Case(reasons.GATE_FUNDING, state={"next_funding_rate": -0.0011}),
    "funding_before_spread": Case(reasons.GATE_FUNDING, state={"next_funding_rate": 0.01, "ask": 60_100.0}),
    "spread_wide": Case(reasons.GATE_SPREAD, state={"ask": 60_060.0}, detail="spread_bps"),
    "depth_thin_bid": Case(reasons.GATE_DEPTH, state={"bid_qty": 0.1}, detail="depth1"),
    "depth_thin_ask": Case(reasons.GATE_DEPTH, state={"ask_qty": 0.15}),
    "data_degraded_fallback_scores": Case(reasons.GATE_DATA_QUALITY, state={"data_ok": False}),
    "data_degraded_model_scores": Case(reasons.GATE_DATA_QUALITY, spec=NO_DEGRADE, state={"data_ok": False}),
    "no_risk_headroom": Case(reasons.GATE_RISK_HEADROOM, kw={"risk_headroom": False}),
    "rule_skip": Case(reasons.RULE_SKIP, spec={"rules": SKIP_RULE}, detail="wide-book"),
    "bucket_zero": Case(reasons.SIZE_ZERO, spec=BUCKETS_ZERO_BELOW_06, p=0.55, detail="p_bucket_mult=0"),
    "rules_size_zero": Case(reasons.SIZE_ZERO, spec={"rules": ZERO_RULE}, detail="rules_size_mult=0"),
    "below_tau_long": Case(reasons.BELOW_TAU, p=0.58, detail="p_dir=0.5800<tau=0.6"),
    "below_tau_short": Case(reasons.BELOW_TAU, p=0.45),
    "below_tau_raised": Case(reasons.BELOW_TAU, spec={"decision": {"tau": 0.75}}),
    "below_kappa_small_atr": Case(reasons.BELOW_KAPPA, state={"atr": 30.0}, detail="U="),
    "below_kappa_atr_not_warm": Case(reasons.BELOW_KAPPA, state={"atr": math.nan}, detail="atr=nan"),
    "below_kappa_raised": Case(reasons.BELOW_KAPPA, spec={"decision": {"kappa": 2.0}}),
    "below_kappa_taker_fees": Case(reasons.BELOW_KAPPA, spec={"execution": {"policy": "immediate"}}),
    "qty_below_min_notional": Case(reasons.QTY_BELOW_MIN, state={"min_notional": 1_000.0}, detail="min_notional"),
    "qty_below_min_qty": Case(reasons.QTY_BELOW_MIN, state={"min_qty": 0.01}),
    "spot_floor_to_zero": Case(reasons.QTY_BELOW_MIN, spec={"venue": "binance-spot"}, state={"step_size": 0.01}),
    "spot_short": Case(reasons.NO_SHORT_ON_SPOT, spec={"venue": "binance-spot"}, p=0.3, detail="p_up=0.3000<0.5"),
}
SEQUENCE_REASONS = {reasons.DUPLICATE, reasons.COOLDOWN}  # need history: tested below

#: how far the pipeline got before each skip: what a skip signal must carry, and what must still be NaN
STAGE = {
    reasons.NO_MODEL: 0,
    **dict.fromkeys([reasons.GATE_FUNDING, reasons.GATE_SPREAD, reasons.GATE_DEPTH], 1),
    **dict.fromkeys([reasons.GATE_DATA_QUALITY, reasons.GATE_RISK_HEADROOM, reasons.NO_SHORT_ON_SPOT], 1),
    reasons.RULE_SKIP: 2,
    reasons.SIZE_ZERO: 3,
    reasons.BELOW_TAU: 4,
    reasons.BELOW_KAPPA: 4,
    reasons.QTY_BELOW_MIN: 5,
}


def _case_router(case: Case) -> ModelRouter | None:
    if case.router == "none":
        return None
    if case.router == "failing":
        return ModelRouter([RoutedModel("v1", "stable", 0.0, FailingScorer())])
    return _router(math.nan if case.router == "nan" else case.p)


def _assert_reached(sig: Signal, stage: int) -> None:
    """Fields computed before the skip are numbers; later ones are NaN/empty."""
    assert math.isnan(sig.p_up) is (stage < 1)
    assert math.isnan(sig.tp_mult) is (stage < 2) and math.isnan(sig.sl_mult) is (stage < 2)
    assert math.isnan(sig.size_mult) is (stage < 3)
    for x in (sig.cost_bps, sig.fee_bps, sig.slippage_bps, sig.funding_bps):
        assert math.isnan(x) is (stage < 4)
    if stage < 4:
        assert math.isnan(sig.expected_return_bps) and math.isnan(sig.utility)
    assert sig.cooldown_until == 0


@pytest.mark.parametrize("case", SKIPS.values(), ids=SKIPS.keys())
def test_skip_matrix(case: Case) -> None:
    cfg = make_cfg(**case.spec)
    state = make_state(**{"venue": cfg.venue, **case.state})
    sig, intent = run(
        cfg=cfg, state=state, features={**BASE_FEATURES, **case.features}, router=_case_router(case), **case.kw
    )
    assert intent is None
    assert (sig.decision, sig.reason) == (SKIP, case.reason), sig.reason_detail
    assert case.detail in sig.reason_detail
    assert sig.config_rev == cfg.config_rev and sig.id == signal_id("strat", "BTCUSDT", T0)
    _assert_reached(sig, STAGE[case.reason])


def test_every_reason_code_is_reached_by_a_test() -> None:
    assert {c.reason for c in SKIPS.values()} | SEQUENCE_REASONS == set(reasons.ALL)


# --------------------------------------------------------------------------------------------- entries


def _on_grid(x: float, grid: float) -> bool:
    return abs(x / grid - round(x / grid)) < 1e-6


def test_enter_long_futures() -> None:
    cfg = make_cfg(sizing={"marginBaseUsdt": 110})  # 330 USDT notional → 0.0054999… BTC → 0.005 (nearest)
    sig, intent = run(cfg=cfg, p=0.7)
    assert intent is not None
    assert (sig.decision, sig.reason) == (ENTER_LONG, "")
    assert intent.side == LONG and intent.qty == 0.005 and _on_grid(intent.qty, 0.001)
    assert intent.notional_usdt == pytest.approx(0.005 * BASE_STATE.mid)
    assert intent.price == BASE_STATE.mid
    assert intent.stop_price < intent.price < intent.take_profit_price
    assert _on_grid(intent.stop_price, 0.1) and _on_grid(intent.take_profit_price, 0.1)
    assert intent.price - intent.stop_price <= 1.5 * BASE_STATE.atr  # ATR stop (atrMult 1.5), rounded inward
    assert (intent.leverage, intent.oco) == (3, False)
    assert intent.intent_id == intent_id("strat", "BTCUSDT", LONG, T0, cfg.config_rev)
    assert (intent.signal_id, intent.config_rev, intent.exchange_ts) == (sig.id, cfg.config_rev, T0)
    assert (intent.strategy, intent.symbol, intent.venue) == ("strat", "BTCUSDT", "binance-usdm")
    # the signal
    assert sig.p_up == 0.7 and sig.model_version == "v1" and sig.quality_flags == 0
    assert (sig.infer_ts, sig.exchange_ts, sig.ingest_ts) == (NOW, T0, BASE_STATE.ingest_ts)
    assert sig.cooldown_until == NOW + 30 * NS
    assert sig.size_mult == 1.0 and (sig.tp_mult, sig.sl_mult) == (1.0, 1.0)
    assert sig.fee_bps == 7.0
    assert sig.slippage_bps == pytest.approx(0.5 * BASE_STATE.spread_bps)
    assert sig.funding_bps == pytest.approx(1.0 * 60 / 28_800)
    assert sig.cost_bps == pytest.approx(sig.fee_bps + sig.slippage_bps + sig.funding_bps)
    move = 1e4 * 150.0 / BASE_STATE.mid
    assert sig.expected_return_bps == pytest.approx(0.4 * move)
    assert sig.utility == pytest.approx(sig.expected_return_bps / sig.cost_bps)
    assert sig.regime == "calm" and sig.rules_fired == () and sig.shadow == ()
    assert math.isnan(sig.p_low) and math.isnan(sig.p_high)


def test_enter_short_futures() -> None:
    cfg = make_cfg()
    sig, intent = run(cfg=cfg, p=0.2)  # p_dir 0.8 → bucket ×1.0
    assert intent is not None
    assert (sig.decision, intent.side) == (ENTER_SHORT, SHORT)
    assert intent.take_profit_price < intent.price < intent.stop_price
    assert _on_grid(intent.stop_price, 0.1) and _on_grid(intent.take_profit_price, 0.1)
    assert intent.qty == 0.005
    assert sig.funding_bps == pytest.approx(-1.0 * 60 / 28_800)  # a short receives positive funding
    assert sig.expected_return_bps == pytest.approx(0.6 * 1e4 * 150.0 / BASE_STATE.mid)
    assert intent.intent_id == intent_id("strat", "BTCUSDT", SHORT, T0, cfg.config_rev)


def test_enter_long_spot_floors_qty_and_places_an_oco() -> None:
    cfg = make_cfg(venue="binance-spot", sizing={"marginBaseUsdt": 119})  # 119 / 60 000 = 0.00198 → 0.001
    state = make_state(venue="binance-spot", next_funding_rate=math.nan, min_notional=5.0)
    sig, intent = run(cfg=cfg, state=state, p=0.9)  # p 0.9 → bucket ×1.2 → 142.8 USDT → 0.00238 → 0.002
    assert intent is not None and sig.decision == ENTER_LONG
    assert intent.qty == 0.002 and intent.qty <= 119 * 1.2 / state.mid
    assert (intent.leverage, intent.oco) == (1, True)
    assert sig.funding_bps == 0.0 and sig.size_mult == 1.2
    assert intent.stop_price < intent.price < intent.take_profit_price


def test_funding_only_with_include_funding() -> None:
    sig, _ = run(cfg=make_cfg(decision={"costModel": {"includeFunding": False}}))
    assert sig.funding_bps == 0.0 and sig.decision == ENTER_LONG


def test_rules_scale_size_and_exits() -> None:
    rules = [
        {
            "name": "strong-queue",
            "when": [{"feature": "qi1", "op": "ge", "value": 0.1}],
            "sizeMult": 1.5,
            "tpMult": 2.0,
            "slMult": 0.5,
        },
        {"name": "never", "when": [{"feature": "qi1", "op": "lt", "value": -0.9}], "sizeMult": 0.1},
    ]
    _, base = run()
    sig, intent = run(cfg=make_cfg(rules=rules))
    assert intent is not None and base is not None
    assert sig.rules_fired == ("strong-queue",)
    assert (sig.size_mult, sig.tp_mult, sig.sl_mult) == (1.5, 2.0, 0.5)
    assert intent.qty == pytest.approx(1.5 * base.qty, abs=0.001)
    assert intent.take_profit_price - intent.price > base.take_profit_price - base.price
    assert intent.price - intent.stop_price < base.price - base.stop_price


def test_size_mult_is_clamped_to_the_sizing_whitelist() -> None:
    cfg = make_cfg(sizing={"maxSizeMult": 0.8})
    sig, intent = run(cfg=cfg, p=0.9)  # bucket ×1.2 → clamped 0.8
    assert intent is not None and sig.size_mult == 0.8
    assert intent.qty == pytest.approx(100 * 3 * 0.8 / BASE_STATE.mid, abs=0.0005)


# --------------------------------------------------------------------------------------------- idempotency


def test_replay_gives_the_same_signal_and_intent() -> None:
    a = run(cooldowns=Cooldowns(30 * NS))
    b = run(cooldowns=Cooldowns(30 * NS))
    assert a == b
    assert a[1] is not None


def test_duplicate_then_cooldown_then_free_again() -> None:
    cfg = make_cfg()
    cd = Cooldowns(cfg.cooldown_ns)
    first, intent = run(cfg=cfg, cooldowns=cd)
    assert intent is not None and first.cooldown_until == NOW + 30 * NS

    replay, again = run(cfg=cfg, cooldowns=cd)  # the same input delivered twice
    assert again is None and replay.reason == reasons.DUPLICATE
    assert intent.intent_id in replay.reason_detail and replay.cooldown_until == NOW + 30 * NS

    later = make_state(exchange_ts=T0 + 100_000_000)
    sig, blocked = run(cfg=cfg, cooldowns=cd, state=later, now=NOW + 100_000_000)
    assert blocked is None and sig.reason == reasons.COOLDOWN
    assert sig.cooldown_until == NOW + 30 * NS
    _assert_reached(dataclasses.replace(sig, cooldown_until=0), 5)

    sig, short = run(cfg=cfg, cooldowns=cd, state=later, now=NOW + 100_000_000, p=0.2)
    assert short is not None and sig.decision == ENTER_SHORT  # the other direction has its own cooldown

    free = make_state(exchange_ts=T0 + 31 * NS)
    sig, second = run(cfg=cfg, cooldowns=cd, state=free, now=NOW + 31 * NS)
    assert second is not None and sig.decision == ENTER_LONG
    assert second.intent_id != intent.intent_id


def test_a_new_config_revision_is_a_new_intent_for_the_same_book() -> None:
    cd = Cooldowns(0)
    _, a = run(cfg=make_cfg(), cooldowns=cd)
    _, b = run(cfg=make_cfg(decision={"cooldownSeconds": 0, "kappa": 0.9}), cooldowns=cd)
    assert a is not None and b is not None and a.intent_id != b.intent_id


# --------------------------------------------------------------------------------------------- degrade mode

STRONG_BUY = {**BASE_FEATURES, "qi1": 1.0, "ofi1": 4.0, "dmicro_bps": 1.0}  # ofi1 = 2 touch queues


def _fallback_p(features: Mapping[str, float], state: MarketState = BASE_STATE) -> float:
    queue = 0.5 * (state.bid_qty + state.ask_qty)
    return rules_only_p_up(features["ofi1"] / queue, features["qi1"], features["dmicro_bps"])


DEGRADED: dict[str, tuple[str | None, dict[str, Any], str]] = {
    # name: (router, decide kwargs, note in reason_detail)
    "model_not_ok": ("const", {"model_ok": False}, "fallback: model degraded"),
    "no_router": (None, {}, "fallback: no model router"),
    "router_raises": ("failing", {}, "fallback: model error: RuntimeError: session lost"),
    "model_returns_nan": ("nan", {}, "returned p_up=nan"),
    "model_returns_out_of_range": ("two", {}, "returned p_up=2.0"),
}


@pytest.mark.parametrize(("router", "kw", "note"), DEGRADED.values(), ids=DEGRADED.keys())
def test_degraded_model_falls_back_to_rules(router: str | None, kw: dict[str, Any], note: str) -> None:
    r = {
        None: None,
        "const": _router(0.1),
        "failing": ModelRouter([RoutedModel("v1", "stable", 0, FailingScorer())]),
        "nan": _router(math.nan),
        "two": _router(2.0),
    }[router]
    calls: list[Mapping[str, float]] = []
    sig, intent = run(features=STRONG_BUY, router=r, contributions=lambda f: calls.append(f) or (), **kw)
    assert sig.model_version == RULES_FALLBACK
    assert sig.quality_flags == QUALITY_MODEL_DEGRADED
    assert sig.p_up == _fallback_p(STRONG_BUY) and sig.p_up > 0.85
    assert note in sig.reason_detail
    assert intent is not None and sig.decision == ENTER_LONG
    assert sig.contributions == () and calls == []  # contributions explain the model, not the fallback


def test_fallback_with_neutral_book_is_below_tau() -> None:
    sig, _ = run(features={"qi1": math.nan, "ofi1": math.nan, "dmicro_bps": math.nan}, router=None)
    assert sig.p_up == 0.5 and sig.reason == reasons.BELOW_TAU and sig.model_version == RULES_FALLBACK


def test_degraded_data_uses_the_fallback_when_the_gate_allows_trading() -> None:
    scorer = ConstScorer(0.7)
    r = ModelRouter([RoutedModel("v1", "stable", 0, scorer)])
    cfg = make_cfg(gates={"requireDataQuality": False})
    sig, intent = run(cfg=cfg, state=make_state(data_ok=False), features=STRONG_BUY, router=r)
    assert scorer.rows == []  # the model never saw degraded data
    assert sig.quality_flags == QUALITY_DATA_DEGRADED | QUALITY_MODEL_DEGRADED
    assert sig.model_version == RULES_FALLBACK and "data degraded" in sig.reason_detail
    assert intent is not None


def test_degraded_data_without_fallback_is_scored_by_the_model() -> None:
    cfg = make_cfg(gates={"requireDataQuality": False}, **NO_DEGRADE)
    sig, intent = run(cfg=cfg, state=make_state(data_ok=False))
    assert (sig.model_version, sig.quality_flags, sig.p_up) == ("v1", QUALITY_DATA_DEGRADED, 0.7)
    assert intent is not None


def test_shadow_error_is_flagged_and_recorded_but_the_decision_stands() -> None:
    r = _router(
        0.7,
        RoutedModel("v2", "shadow", 0, FailingScorer(exc=ValueError("bad shape"))),
        RoutedModel("v3", "shadow", 0, ConstScorer(0.3)),
    )
    sig, intent = run(router=r)
    assert intent is not None and sig.decision == ENTER_LONG
    assert sig.quality_flags == QUALITY_SHADOW_ERROR
    assert sig.shadow[0][0] == "v2" and math.isnan(sig.shadow[0][1])
    assert sig.shadow[1] == ("v3", 0.3)
    assert "shadow error: v2: ValueError: bad shape" in sig.reason_detail


def test_canary_decides_for_its_symbols() -> None:
    r = ModelRouter(
        [RoutedModel("v1", "stable", 0, ConstScorer(0.7)), RoutedModel("v2", "canary", 1.0, ConstScorer(0.2))]
    )
    sig, intent = run(router=r)
    assert sig.model_version == "v2" and sig.decision == ENTER_SHORT and intent is not None


# --------------------------------------------------------------------------------------------- hot config


def test_decision_in_flight_finishes_on_the_old_revision() -> None:
    old = make_cfg()
    new = make_cfg(decision={"tau": 0.9, "cooldownSeconds": 5})
    holder = ConfigHolder(old)
    cd = Cooldowns(old.cooldown_ns)

    def swap_mid_decision(_: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
        apply_hot_config(holder, cd, new)  # the operator pushes a new revision while we are scoring
        return ()

    snapshot = holder.current
    sig, intent = run(cfg=snapshot, cooldowns=cd, contributions=swap_mid_decision)
    assert holder.current is new
    assert sig.config_rev == old.config_rev and intent is not None and intent.config_rev == old.config_rev
    assert sig.decision == ENTER_LONG  # old τ 0.6 applied; new τ 0.9 would have skipped

    nxt = make_state(exchange_ts=T0 + NS)
    sig2, intent2 = run(cfg=holder.current, cooldowns=cd, state=nxt, now=NOW + NS, p=0.2)
    assert sig2.config_rev == new.config_rev and sig2.reason == reasons.BELOW_TAU and intent2 is None
    assert holder.revisions == [old.config_rev, new.config_rev]


def test_hot_cooldown_change_applies_to_the_next_decision() -> None:
    old, new = make_cfg(), make_cfg(decision={"cooldownSeconds": 5})
    holder = ConfigHolder(old)
    cd = Cooldowns(old.cooldown_ns)
    _, first = run(cfg=holder.current, cooldowns=cd)
    assert first is not None
    later = make_state(exchange_ts=T0 + 6 * NS)
    sig, _ = run(cfg=holder.current, cooldowns=cd, state=later, now=NOW + 6 * NS)
    assert sig.reason == reasons.COOLDOWN
    apply_hot_config(holder, cd, new)
    sig, second = run(cfg=holder.current, cooldowns=cd, state=later, now=NOW + 6 * NS)
    assert second is not None and sig.config_rev == new.config_rev
    assert sig.cooldown_until == NOW + 11 * NS


# --------------------------------------------------------------------------------------------- signal fields

REGIMES: dict[str, tuple[dict[str, float], str]] = {
    "volatile": ({"rv_pct": 0.95}, "volatile"),
    "at_threshold": ({"rv_pct": 0.8}, "volatile"),
    "calm": ({"rv_pct": 0.2}, "calm"),
    "nan": ({"rv_pct": math.nan}, "unknown"),
    "missing": ({}, "unknown"),
}


@pytest.mark.parametrize(("extra", "regime"), REGIMES.values(), ids=REGIMES.keys())
def test_regime_from_the_volatility_percentile(extra: dict[str, float], regime: str) -> None:
    feats = {k: v for k, v in BASE_FEATURES.items() if k != "rv_pct"} | extra
    assert run(features=feats)[0].regime == regime


def test_contributions_are_cut_to_five() -> None:
    pairs = tuple((f"f{i}", float(i)) for i in range(8))
    seen: list[Mapping[str, float]] = []
    sig, _ = run(contributions=lambda f: seen.append(f) or pairs)
    assert sig.contributions == pairs[:5]
    assert seen == [BASE_FEATURES]


def test_latency_is_measured_with_the_given_clock() -> None:
    ticks = itertools.count(1_000, 250)
    assert run(clock=lambda: next(ticks))[0].latency_ns == 250
    assert run()[0].latency_ns == 0


# --------------------------------------------------------------------------------------------- costs parity

POLICIES = ["maker-then-taker", "immediate"]


@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    half_spread=st.floats(0.001, 10.0),
    rate=st.floats(-0.0009, 0.0009) | st.just(math.nan),
    atr=st.floats(0.01, 1000.0),
    policy=st.sampled_from(POLICIES),
)
def test_costs_and_utility_match_engine_costs(
    p: float, half_spread: float, rate: float, atr: float, policy: str
) -> None:
    cfg = make_cfg(
        execution={"policy": policy},
        gates={"maxSpreadBps": 1e4, "minTop1DepthUsdt": 0},
        sizing={"probabilityBuckets": [{"minP": 0.0, "mult": 1.0}]},
        decision={"tau": 0.5, "kappa": 0},
    )
    mid = 60_000.0
    state = make_state(bid=mid - half_spread, ask=mid + half_spread, next_funding_rate=rate, atr=atr)
    sig, _ = run(cfg=cfg, state=state, p=p)
    side = LONG if p >= 0.5 else SHORT
    maker_entry = policy == "maker-then-taker"
    rt = costs.round_trip_cost(
        fees=costs.FeeSchedule(2.0, 5.0),
        entry_maker=maker_entry,
        exit_maker=False,
        slippage_bps=state.spread_bps / 2,
        funding_rate=0.0 if math.isnan(rate) else rate,
        horizon_s=60,
        direction=side,
    )
    assert sig.fee_bps == pytest.approx(float(rt.fees_bps))
    assert sig.slippage_bps == pytest.approx(float(rt.slippage_bps))
    assert sig.funding_bps == pytest.approx(float(rt.funding_bps), abs=1e-12)
    assert sig.cost_bps == pytest.approx(float(rt.total_bps))
    move = 1e4 * atr / mid
    assert sig.expected_return_bps == float(costs.expected_excess_return_bps(p, move, move, side))  # bit for bit
    assert sig.utility == float(costs.utility(sig.expected_return_bps, sig.cost_bps))
    assert sig.reason in {"", reasons.QTY_BELOW_MIN, reasons.BELOW_KAPPA, reasons.SIZE_ZERO}


def test_rebates_above_all_costs_give_infinite_utility() -> None:
    cfg = make_cfg(decision={"costModel": {"makerFeeBps": -10.0, "takerFeeBps": 0.0}})
    sig, intent = run(cfg=cfg)
    assert sig.cost_bps < 0 and sig.utility == math.inf and intent is not None


# --------------------------------------------------------------------------------------------- fitted slippage


def test_the_fitted_slippage_of_the_order_notional_bucket_is_charged_per_taker_leg() -> None:
    """Notional = margin 100 × the size multiplier × leverage 3: 300 at p 0.7 (×1.0), 360 at p 0.9 (×1.2)."""
    table = {"slippage_edges_usdt": (0.0, 320.0, 1_000.0), "slippage_bps": (0.25, 0.5, 2.0)}
    sig, intent = run(state=make_state(**table))  # maker-then-taker: one taker leg (the exit)
    assert intent is not None and sig.quality_flags == 0
    assert sig.slippage_bps == 0.25
    assert sig.cost_bps == sig.fee_bps + 0.25 + sig.funding_bps
    sig, _ = run(state=make_state(**table), p=0.9)
    assert sig.size_mult == 1.2 and sig.slippage_bps == 0.5
    sig, _ = run(cfg=make_cfg(execution={"policy": "immediate"}), state=make_state(**table))
    assert sig.slippage_bps == 2 * 0.25  # taker entry and taker exit
    spot = make_cfg(venue="binance-spot", sizing={"leverage": 1})  # spot: no leverage, notional 100
    sig, _ = run(cfg=spot, state=make_state(**(table | {"slippage_edges_usdt": (0.0, 50.0, 150.0)})))
    assert sig.slippage_bps == 0.5


def test_a_larger_slippage_quantile_charges_more_and_can_flip_an_entry_to_below_kappa() -> None:
    """A table fitted with engine/costs.py at the strategy's own quantile, as the runtime builds it: slippage
    spread evenly over 0–5 bps; E = 10 bps, fees 7 bps, one taker leg."""
    fit = costs.fit_slippage_quantiles(np.full(201, 300.0), np.linspace(0.0, 5.0, 201), [0.0, 1_000.0])
    signals = {}
    for q in (0.25, 0.5, 0.95):
        cfg = make_cfg(decision={"costModel": {"slippageQuantile": q}})
        bps = tuple(fit.at(cfg.slippage_quantile).tolist())
        signals[q] = run(cfg=cfg, state=make_state(slippage_edges_usdt=(0.0, 1_000.0), slippage_bps=bps))
    (low, enter_low), (mid, enter_mid), (high, enter_high) = signals.values()
    assert (low.slippage_bps, mid.slippage_bps, high.slippage_bps) == (1.25, 2.5, 4.75)
    assert low.cost_bps < mid.cost_bps < high.cost_bps
    assert enter_low is not None and enter_mid is not None and low.reason == mid.reason == ""
    assert enter_high is None and high.reason == reasons.BELOW_KAPPA and "C=11.75" in high.reason_detail
    # the take-profit nets the target after the slippage charged as well: a costlier trade targets further
    assert enter_mid.take_profit_price >= enter_low.take_profit_price


@pytest.mark.parametrize(
    ("edges", "bps"),
    [
        pytest.param((0.0, 1_000.0), (math.nan, 0.3), id="too-few-samples"),
        pytest.param((500.0, 1_000.0), (0.3, 0.3), id="below-the-first-edge"),
        pytest.param((0.0,), (math.nan,), id="nothing-fitted-yet"),
    ],
)
def test_an_untrusted_bucket_falls_back_to_the_half_spread_and_says_so(
    edges: tuple[float, ...], bps: tuple[float, ...]
) -> None:
    sig, intent = run(state=make_state(slippage_edges_usdt=edges, slippage_bps=bps))
    assert sig.slippage_bps == 0.5 * BASE_STATE.spread_bps  # what a state without a table is charged
    assert sig.quality_flags == QUALITY_SLIPPAGE_PROXY and intent is not None
    plain, _ = run()
    assert plain.quality_flags == 0 and plain.slippage_bps == sig.slippage_bps


# --------------------------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    spread=st.floats(0.01, 20.0),
    qty1=st.floats(0.01, 10.0),
    atr=st.floats(0.0, 1000.0) | st.just(math.nan),
    rate=st.floats(-0.002, 0.002),
    headroom=st.booleans(),
    data_ok=st.booleans(),
    venue=st.sampled_from(["binance-usdm", "binance-spot"]),
)
def test_decision_invariants(
    p: float, spread: float, qty1: float, atr: float, rate: float, headroom: bool, data_ok: bool, venue: str
) -> None:
    cfg = make_cfg(venue=venue)
    state = make_state(
        venue=venue,
        ask=60_000.0 + spread,
        bid_qty=qty1,
        ask_qty=qty1,
        atr=atr,
        next_funding_rate=rate if venue == "binance-usdm" else math.nan,
        data_ok=data_ok,
    )
    sig, intent = run(cfg=cfg, state=state, p=p, risk_headroom=headroom)
    assert sig.config_rev == cfg.config_rev
    if intent is None:
        assert sig.decision == SKIP and sig.reason in reasons.ALL
        return
    assert sig.reason == "" and sig.decision == (ENTER_LONG if intent.side == LONG else ENTER_SHORT)
    assert headroom and data_ok
    assert max(sig.p_up, 1 - sig.p_up) >= cfg.tau and sig.utility >= cfg.kappa
    assert _on_grid(intent.qty, state.step_size) and intent.qty >= state.min_qty
    assert intent.notional_usdt >= state.min_notional
    assert intent.side * (intent.take_profit_price - intent.price) > 0
    assert intent.side * (intent.price - intent.stop_price) > 0
    assert intent.qty * abs(intent.price - intent.stop_price) <= cfg.sizing.max_loss_usdt + 1e-9
    assert sig.cost_bps == pytest.approx(sig.fee_bps + sig.slippage_bps + sig.funding_bps)


# --------------------------------------------------------------------------------------------- real ONNX


def test_decision_with_a_real_onnx_model(onnx_scorer_factory: Callable[..., Any]) -> None:
    scorer = onnx_scorer_factory()
    r = ModelRouter([RoutedModel("onnx-v1", "stable", 0, scorer)])
    cfg = make_cfg(decision={"tau": 0.5, "kappa": 0.0})
    feats = {**BASE_FEATURES, "qi1": 2.0, "ofi1": 1.5}  # strongly up in the training data's logit
    sig, intent = run(cfg=cfg, features=feats, router=r)
    want = float(scorer.predict(np.array([[feats[n] for n in scorer.feature_names]]))[0])
    assert sig.p_up == want and want > 0.6
    assert sig.model_version == "onnx-v1" and sig.quality_flags == 0
    assert intent is not None and sig.decision == ENTER_LONG
