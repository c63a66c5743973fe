"""A RiskBudget's status: its phase and the usage the charged strategies report (pure).

Usage is aggregated from each charged Strategy's ``status.positions`` and ``status.pnl``, which the desk
reports; the budget's limits themselves are enforced inside the desks (pre-trade and on every fill), so this
status is the desk-wide picture for people and alerts, not the enforcement point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...api.v1alpha1 import ConditionType
from .. import reasons
from .conditions import condition, with_times


def charged(budget_name: str, strategies: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The strategies charged to the budget, by name."""
    out = [s for s in strategies if s.get("spec", {}).get("riskBudgetRef", {}).get("name") == budget_name]
    return sorted(out, key=lambda s: str(s["metadata"]["name"]))


def usage(strategies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Gross notional, futures margin (notional / leverage) and spot quote over every reported position, and
    the summed PnL; drawdown is the worst of the strategies' accounts (each desk reports its own). Order rate and
    loss streaks are not in the strategies' status: reported as 0."""
    gross = margin = spot = pnl = drawdown = 0.0
    for s in strategies:
        spec, status = s.get("spec", {}), s.get("status") or {}
        leverage = max(1, int(spec.get("sizing", {}).get("leverage", 1)))
        for p in status.get("positions", []):
            notional = abs(float(p.get("notionalUsdt", 0.0)))
            gross += notional
            if spec.get("venue") == "binance-spot":
                spot += notional
            else:
                margin += notional / leverage
        money = status.get("pnl") or {}
        pnl += float(money.get("realizedUsdt", 0.0)) + float(money.get("unrealizedUsdt", 0.0))
        drawdown = max(drawdown, float(money.get("drawdownPct", 0.0)))
    return {"grossNotionalUsdt": round(gross, 6), "futuresMarginUsdt": round(margin, 6),
            "spotQuoteUsdt": round(spot, 6), "dailyPnlUsdt": round(pnl, 6), "drawdownPct": round(drawdown, 6),
            "ordersLastMinute": 0, "consecutiveLosses": 0}  # fmt: skip


def phase_of(spec: Mapping[str, Any], used: Mapping[str, Any]) -> tuple[str, str, str]:
    """(phase, reason, message): Halted by the kill switch or a loss past the daily limit, Reducing from
    ``reduceAtPct`` of it, else Active."""
    if spec.get("halt"):
        return "Halted", reasons.KILL_SWITCH, "spec.halt is true: every charged strategy is halted"
    limit = float(spec.get("limits", {}).get("maxDailyLossUsdt", 500.0))
    loss = max(0.0, -float(used["dailyPnlUsdt"]))
    if loss >= limit:
        return "Halted", reasons.LIMIT_BREACHED, f"daily loss {loss:.2f} USDT ≥ maxDailyLossUsdt {limit:g}"
    reduce_at = float(spec.get("reduceAtPct", 80.0)) / 100.0 * limit
    if loss >= reduce_at:
        return "Reducing", reasons.REDUCE_ONLY, f"daily loss {loss:.2f} USDT ≥ {reduce_at:g} (reduceAtPct)"
    return "Active", reasons.WITHIN_LIMITS, ""


def riskbudget_status(budget: Mapping[str, Any], strategies: Sequence[Mapping[str, Any]], now: str) -> dict[str, Any]:
    spec = budget.get("spec", {})
    mine = charged(budget["metadata"]["name"], strategies)
    used = usage(mine)
    phase, reason, message = phase_of(spec, used)
    generation = budget.get("metadata", {}).get("generation")
    old = (budget.get("status") or {}).get("conditions", [])
    conds = [
        condition(ConditionType.READY, phase == "Active", reason, message, generation),
        condition(ConditionType.PROGRESSING, False, reason, "", generation),
        condition(ConditionType.DEGRADED, phase != "Active", reason, message, generation),
    ]
    names = [str(s["metadata"]["name"]) for s in mine]
    return {"phase": phase, "reason": reason, "usage": used, "strategies": names, "strategyCount": len(names),
            "conditions": with_times(conds, old, now), "observedGeneration": generation}  # fmt: skip
