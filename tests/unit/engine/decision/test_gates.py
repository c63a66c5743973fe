"""L0 gates: each row of the matrix breaches exactly one gate (or none), in the documented order."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from tradeplane.api.v1alpha1.strategy import GateSpec
from tradeplane.engine.decision import reasons
from tradeplane.engine.decision.gates import GateConfig, failed_gate
from tradeplane.engine.decision.types import MarketState

CFG = GateConfig(max_abs_funding_rate_bps=5.0, max_spread_bps=2.0, min_top1_depth_usdt=10_000.0)


def _state(**over: Any) -> MarketState:
    """A healthy futures top: spread ≈ 1 bps, 20 000 USDT at the bid, funding 1 bps per 8 h."""
    base: dict[str, Any] = dict(
        symbol="BTCUSDT",
        venue="binance-usdm",
        exchange_ts=1_700_000_000_000_000_000,
        ingest_ts=1_700_000_000_001_000_000,
        bid=100.0,
        ask=100.01,
        bid_qty=200.0,
        ask_qty=300.0,
        tick_size=0.01,
        step_size=0.001,
        min_qty=0.001,
        min_notional=5.0,
        next_funding_rate=0.0001,
        data_ok=True,
        atr=0.5,
    )
    base.update(over)
    return MarketState(**base)


# (state overrides, risk_headroom, expected (code, detail) or None)
MATRIX: dict[str, tuple[dict[str, Any], bool, tuple[str, str] | None]] = {
    "all-pass": ({}, True, None),
    "spot-no-funding-passes": ({"next_funding_rate": math.nan, "venue": "binance-spot"}, True, None),
    "funding-at-the-cap-passes": ({"next_funding_rate": 0.0005}, True, None),
    "funding-positive": ({"next_funding_rate": 0.0006}, True, (reasons.GATE_FUNDING, "|funding_rate_bps|=6>5")),
    "funding-negative": ({"next_funding_rate": -0.0008}, True, (reasons.GATE_FUNDING, "|funding_rate_bps|=8>5")),
    "spread": ({"ask": 100.025}, True, (reasons.GATE_SPREAD, "spread_bps=2.5>2")),
    "depth-bid-side": ({"bid_qty": 50.0}, True, (reasons.GATE_DEPTH, "depth1_usdt=5000<10000")),
    "depth-ask-side": ({"ask_qty": 50.0}, True, (reasons.GATE_DEPTH, "depth1_usdt=5000.5<10000")),
    "data-quality": ({"data_ok": False}, True, (reasons.GATE_DATA_QUALITY, "data_ok=False")),
    "risk-headroom": ({}, False, (reasons.GATE_RISK_HEADROOM, "risk_headroom=False")),
}


@pytest.mark.parametrize(("over", "headroom", "expected"), MATRIX.values(), ids=MATRIX.keys())
def test_gate_matrix(over: dict[str, Any], headroom: bool, expected: tuple[str, str] | None) -> None:
    assert failed_gate(_state(**over), CFG, risk_headroom=headroom) == expected


def test_first_failure_wins_in_the_documented_order() -> None:
    everything_wrong = _state(next_funding_rate=0.01, ask=101.0, bid_qty=1.0, data_ok=False)
    # in the documented order, with the repair that makes each gate pass so the next one shows
    repairs: list[tuple[str, dict[str, Any]]] = [
        (reasons.GATE_FUNDING, {"next_funding_rate": 0.0}),
        (reasons.GATE_SPREAD, {"ask": 100.01}),
        (reasons.GATE_DEPTH, {"bid_qty": 200.0}),
        (reasons.GATE_DATA_QUALITY, {"data_ok": True}),
    ]
    st = everything_wrong
    for code, repair in repairs:
        got = failed_gate(st, CFG, risk_headroom=False)
        assert got is not None and got[0] == code
        st = dataclasses.replace(st, **repair)
    assert failed_gate(st, CFG, risk_headroom=False) == (reasons.GATE_RISK_HEADROOM, "risk_headroom=False")


def test_unknown_spread_or_depth_fails_rather_than_passes() -> None:
    empty = _state(bid=0.0, ask=0.0)  # mid 0 → spread NaN
    assert failed_gate(empty, CFG, risk_headroom=True) == (reasons.GATE_SPREAD, "spread_bps=nan>2")
    no_qty = _state(bid_qty=math.nan)
    got = failed_gate(no_qty, CFG, risk_headroom=True)
    assert got is not None and got[0] == reasons.GATE_DEPTH


def test_disabled_gates_do_not_fire() -> None:
    lax = dataclasses.replace(CFG, require_data_quality=False, require_risk_headroom=False)
    assert failed_gate(_state(data_ok=False), lax, risk_headroom=False) is None


def test_from_spec_copies_every_limit() -> None:
    assert GateConfig.from_spec(GateSpec()) == GateConfig()  # the dataclass defaults mirror the API's
    spec = GateSpec.model_validate(
        {
            "maxAbsFundingRateBps": 5,
            "maxSpreadBps": 2,
            "minTop1DepthUsdt": 100000,
            "requireDataQuality": False,
            "requireRiskHeadroom": False,
        }
    )
    assert GateConfig.from_spec(spec) == GateConfig(5.0, 2.0, 100_000.0, False, False)
