"""Reconcile one RiskBudget: its status from the charged strategies; the caller then re-reconciles those
strategies, which is how a halt reaches them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...api.v1alpha1 import API_VERSION
from ..kube import KubeClient
from ..status.conditions import status_differs, transitions
from ..status.riskbudget import riskbudget_status


@dataclass
class BudgetResult:
    status: dict[str, Any]
    strategies: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0


def reconcile_riskbudget(kube: KubeClient, budget: Mapping[str, Any], *, now: str) -> BudgetResult:
    md = budget["metadata"]
    namespace, name = str(md["namespace"]), str(md["name"])
    current = kube.get(API_VERSION, "RiskBudget", namespace, name)
    if current is None or current["metadata"].get("deletionTimestamp"):
        return BudgetResult({})
    strategies = kube.list_objects(API_VERSION, "Strategy", namespace)
    status = riskbudget_status(current, strategies, now)
    mine = [s for s in strategies if s["metadata"]["name"] in set(status["strategies"])]
    result = BudgetResult(status, mine)
    old = current.get("status") or {}
    if old.get("phase") != status["phase"]:
        kind = "Warning" if status["phase"] != "Active" else "Normal"
        result.events.append((kind, status["reason"], f"phase {old.get('phase')} → {status['phase']}"))
    for c in transitions(old.get("conditions", []), status["conditions"]):
        if c["type"] == "Degraded" and c["status"] == "True" and old.get("phase") == status["phase"]:
            result.events.append(("Warning", c["reason"], c["message"]))
    if status_differs(old, status):
        kube.patch_status(API_VERSION, "RiskBudget", namespace, name, status)
        result.writes += 1
    return result
