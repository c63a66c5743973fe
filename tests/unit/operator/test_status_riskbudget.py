"""A RiskBudget's status: the charged strategies, their aggregated usage and the phase it implies.

Usage is recomputed here independently from the strategies' ``status.positions`` and ``status.pnl`` (gross =
Σ|notional|; futures margin = Σ|notional|/leverage on futures and paper; spot quote = Σ|notional| on spot).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from tradeplane.api.v1alpha1 import RiskBudgetStatus
from tradeplane.operator import reasons
from tradeplane.operator.status.conditions import status_differs
from tradeplane.operator.status.riskbudget import charged, phase_of, riskbudget_status, usage

from .examples import load

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[3]
T0 = "2026-03-01T10:00:00Z"
T1 = "2026-03-01T10:05:00Z"


def budget(**spec: Any) -> Obj:
    b = load("00-riskbudget.yaml", "uid-budget", generation=5)
    b["spec"].update(spec)
    return b


def position(symbol: str, notional: float, quantity: float = 0.01) -> Obj:
    return {"symbol": symbol, "quantity": quantity, "notionalUsdt": notional}


def spot(name: str = "spot-majors", *, ref: str = "desk-default", positions: list[Obj] | None = None,
         pnl: Obj | None = None) -> Obj:  # fmt: skip
    s = load("20-strategy-btc-spot.yaml", f"uid-{name}")
    s["metadata"]["name"] = name
    s["spec"]["riskBudgetRef"]["name"] = ref
    s["status"] = {"positions": positions or [], "pnl": pnl or {}}
    return s


def usdm(name: str = "usdm-btc", *, ref: str = "desk-default", positions: list[Obj] | None = None,
         pnl: Obj | None = None, venue: str = "binance-usdm", leverage: int | None = 3) -> Obj:  # fmt: skip
    s = load("21-strategy-btc-usdm.yaml", f"uid-{name}")
    s["metadata"]["name"] = name
    s["spec"]["riskBudgetRef"]["name"] = ref
    s["spec"]["venue"] = venue
    if leverage is None:
        del s["spec"]["sizing"]["leverage"]
    else:
        s["spec"]["sizing"]["leverage"] = leverage
    s["status"] = {"positions": positions or [], "pnl": pnl or {}}
    return s


def expected_usage(strategies: list[Obj]) -> Obj:
    """The aggregation, written out independently of the module."""
    gross = margin = spot_quote = pnl = 0.0
    drawdowns = [0.0]
    for s in strategies:
        status = s.get("status") or {}
        drawdowns.append((status.get("pnl") or {}).get("drawdownPct", 0.0))
        lev = s["spec"].get("sizing", {}).get("leverage", 1)
        for p in status.get("positions", []):
            n = abs(p.get("notionalUsdt", 0.0))
            gross += n
            if s["spec"]["venue"] == "binance-spot":
                spot_quote += n
            else:  # binance-usdm and paper (which trades on the USD-M feed)
                margin += n / lev
        pnl += (status.get("pnl") or {}).get("realizedUsdt", 0.0) + (status.get("pnl") or {}).get("unrealizedUsdt", 0.0)
    return {"grossNotionalUsdt": gross, "futuresMarginUsdt": margin, "spotQuoteUsdt": spot_quote,
            "dailyPnlUsdt": pnl, "drawdownPct": max(drawdowns), "ordersLastMinute": 0, "consecutiveLosses": 0}  # fmt: skip


def close(actual: Obj, expected: Obj) -> bool:
    return actual.keys() == expected.keys() and all(
        math.isclose(actual[k], expected[k], rel_tol=1e-9, abs_tol=1e-6) for k in expected
    )


# --- charged -----------------------------------------------------------------------------------------------------


def test_charged_strategies_only_sorted_by_name() -> None:
    mine = [usdm("zz-usdm"), spot("aa-spot"), usdm("mm-paper", venue="paper")]
    others = [spot("bb-other", ref="other-budget"), usdm("cc-other", ref="desk-defaults")]
    interleaved = [mine[0], others[0], mine[1], others[1], mine[2]]
    assert [s["metadata"]["name"] for s in charged("desk-default", interleaved)] == ["aa-spot", "mm-paper", "zz-usdm"]
    assert charged("nobody", interleaved) == []
    assert charged("desk-default", []) == []


# --- usage -------------------------------------------------------------------------------------------------------

USAGE: dict[str, list[Obj]] = {
    "nothing-reported": [spot(), usdm()],
    "status-missing": [spot() | {"status": None}, usdm() | {"status": {}}],
    "spot-long-positions": [spot(positions=[position("BTCUSDT", 950.0), position("ETHUSDT", 410.5)])],
    "futures-long-and-short-leverage-3": [
        usdm(positions=[position("BTCUSDT", 1500.0), position("ETHUSDT", -600.0, quantity=-0.2)])
    ],
    "futures-leverage-default-1": [usdm(positions=[position("BTCUSDT", 700.0)], leverage=None)],
    "futures-leverage-20": [usdm(positions=[position("BTCUSDT", 2000.0)], leverage=20)],
    "paper-counts-as-futures-margin": [usdm(positions=[position("BTCUSDT", 900.0)], venue="paper")],
    "mixed-desk": [
        spot(positions=[position("BTCUSDT", 1000.0)], pnl={"realizedUsdt": 12.25, "unrealizedUsdt": -2.5}),
        usdm(positions=[position("BTCUSDT", -3000.0)], pnl={"realizedUsdt": -40.0, "unrealizedUsdt": 7.75}),
        usdm("paper-btc", venue="paper", leverage=5, positions=[position("ETHUSDT", 250.0)],
             pnl={"realizedUsdt": 1.0}),
    ],
    "pnl-only": [spot(pnl={"realizedUsdt": -100.0, "unrealizedUsdt": -20.0}), usdm(pnl={"unrealizedUsdt": 30.0})],
    "drawdown-is-the-worst-account": [spot(pnl={"drawdownPct": 2.5}), usdm(pnl={"drawdownPct": 7.25}), usdm("x")],
    "notional-missing-is-zero": [usdm(positions=[{"symbol": "BTCUSDT", "quantity": 0.0}])],
}  # fmt: skip


@pytest.mark.parametrize("strategies", USAGE.values(), ids=list(USAGE))
def test_usage(strategies: list[Obj]) -> None:
    used = usage(strategies)
    assert close(used, expected_usage(strategies)), used
    RiskBudgetStatus.model_validate({"usage": used})  # non-negative where the schema says so


def test_usage_example_numbers() -> None:
    """One case in plain numbers, so the expectation is not only the test's own formula."""
    used = usage(USAGE["mixed-desk"])
    assert used["grossNotionalUsdt"] == pytest.approx(1000 + 3000 + 250)
    assert used["spotQuoteUsdt"] == pytest.approx(1000)
    assert used["futuresMarginUsdt"] == pytest.approx(3000 / 3 + 250 / 5)
    assert used["dailyPnlUsdt"] == pytest.approx(12.25 - 2.5 - 40 + 7.75 + 1)


# --- phase -------------------------------------------------------------------------------------------------------


def pnl_of(daily: float) -> Obj:
    return {"dailyPnlUsdt": daily}


#: id → (spec overrides, daily PnL, phase, reason) with the example's maxDailyLossUsdt 400 and reduceAtPct 80
PHASES: dict[str, tuple[Obj, float, str, str]] = {
    "flat": ({}, 0.0, "Active", reasons.WITHIN_LIMITS),
    "in-profit": ({}, 1500.0, "Active", reasons.WITHIN_LIMITS),
    "small-loss": ({}, -100.0, "Active", reasons.WITHIN_LIMITS),
    "just-below-reduce": ({}, -319.99, "Active", reasons.WITHIN_LIMITS),
    "at-reduce": ({}, -320.0, "Reducing", reasons.REDUCE_ONLY),
    "between-reduce-and-limit": ({}, -399.99, "Reducing", reasons.REDUCE_ONLY),
    "at-limit": ({}, -400.0, "Halted", reasons.LIMIT_BREACHED),
    "past-limit": ({}, -1000.0, "Halted", reasons.LIMIT_BREACHED),
    "reduce-at-50": ({"reduceAtPct": 50.0}, -200.0, "Reducing", reasons.REDUCE_ONLY),
    "reduce-at-100-is-the-limit": ({"reduceAtPct": 100.0}, -399.0, "Active", reasons.WITHIN_LIMITS),
    "kill-switch": ({"halt": True}, 0.0, "Halted", reasons.KILL_SWITCH),
    "kill-switch-in-profit": ({"halt": True}, 500.0, "Halted", reasons.KILL_SWITCH),
    "kill-switch-wins-over-breach": ({"halt": True}, -1000.0, "Halted", reasons.KILL_SWITCH),
}


@pytest.mark.parametrize(("overrides", "daily", "phase", "reason"), PHASES.values(), ids=list(PHASES))
def test_phase_of(overrides: Obj, daily: float, phase: str, reason: str) -> None:
    spec = budget(**overrides)["spec"]
    got_phase, got_reason, message = phase_of(spec, pnl_of(daily))
    assert (got_phase, got_reason) == (phase, reason)
    assert bool(message) is (phase != "Active"), "a Reducing/Halted budget says why"
    if reason == reasons.LIMIT_BREACHED:
        assert "400" in message


# --- riskbudget_status --------------------------------------------------------------------------------------------


def test_status_of_an_active_budget() -> None:
    strategies = [usdm(positions=[position("BTCUSDT", 1200.0)], pnl={"realizedUsdt": 10.0}),
                  spot("other", ref="other-budget", positions=[position("BTCUSDT", 99999.0)]),
                  spot(positions=[position("ETHUSDT", 300.0)])]  # fmt: skip
    status = riskbudget_status(budget(), strategies, T0)
    assert status["phase"] == "Active"
    assert status["reason"] == reasons.WITHIN_LIMITS
    assert status["strategies"] == ["spot-majors", "usdm-btc"]
    assert status["strategyCount"] == 2
    assert close(status["usage"], expected_usage([strategies[0], strategies[2]]))
    assert status["usage"]["grossNotionalUsdt"] == pytest.approx(1500.0), "the other budget's strategy is not charged"
    assert status["observedGeneration"] == 5
    conds = {c["type"]: c for c in status["conditions"]}
    assert {k: (c["status"], c["reason"]) for k, c in conds.items()} == {
        "Ready": ("True", reasons.WITHIN_LIMITS),
        "Progressing": ("False", reasons.WITHIN_LIMITS),
        "Degraded": ("False", reasons.WITHIN_LIMITS),
    }
    for c in status["conditions"]:
        assert c["lastTransitionTime"] == T0
        assert c["observedGeneration"] == 5
        assert c.get("message", "x") != "", "no empty message (a merge patch would send null)"
    RiskBudgetStatus.model_validate(status)


#: id → (budget overrides, charged strategies' pnl, phase, reason)
STATUS_PHASES: dict[str, tuple[Obj, list[Obj], str, str]] = {
    "kill-switch": ({"halt": True}, [], "Halted", reasons.KILL_SWITCH),
    "daily-loss-limit": ({}, [{"realizedUsdt": -300.0}, {"unrealizedUsdt": -150.0}], "Halted", reasons.LIMIT_BREACHED),
    "reducing": ({}, [{"realizedUsdt": -200.0}, {"realizedUsdt": -130.0}], "Reducing", reasons.REDUCE_ONLY),
    "active": ({}, [{"realizedUsdt": -200.0}, {"realizedUsdt": 50.0}], "Active", reasons.WITHIN_LIMITS),
}


@pytest.mark.parametrize(("overrides", "pnls", "phase", "reason"), STATUS_PHASES.values(), ids=list(STATUS_PHASES))
def test_status_phase_and_conditions(overrides: Obj, pnls: list[Obj], phase: str, reason: str) -> None:
    strategies = [usdm(f"s{i}", pnl=p) for i, p in enumerate(pnls)]
    status = riskbudget_status(budget(**overrides), strategies, T0)
    assert (status["phase"], status["reason"]) == (phase, reason)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == ("True" if phase == "Active" else "False")
    assert conds["Degraded"]["status"] == ("False" if phase == "Active" else "True")
    assert conds["Progressing"]["status"] == "False"
    assert {c["reason"] for c in conds.values()} == {reason}
    if phase != "Active":
        assert conds["Ready"]["message"] and conds["Degraded"]["message"]
    assert all(c.get("message", "x") != "" for c in conds.values())
    assert status["strategyCount"] == len(strategies)
    RiskBudgetStatus.model_validate(status)


def test_status_transition_times_and_quiet_second_pass() -> None:
    strategies = [usdm(pnl={"realizedUsdt": -100.0})]
    b = budget()
    first = riskbudget_status(b, strategies, T0)
    b["status"] = copy.deepcopy(first)
    assert riskbudget_status(b, strategies, T1) == first
    assert not status_differs(b["status"], first)
    # the kill switch: Ready and Degraded flip at T1, Progressing (False → False) keeps T0
    halted = riskbudget_status(budget(halt=True) | {"status": copy.deepcopy(first)}, strategies, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in halted["conditions"]}
    assert times == {"Ready": T1, "Progressing": T0, "Degraded": T1}
    assert status_differs(first, halted)


def test_no_strategies() -> None:
    status = riskbudget_status(budget(), [], T0)
    assert status["strategies"] == []
    assert status["strategyCount"] == 0
    assert status["phase"] == "Active"
    assert close(status["usage"], expected_usage([]))
