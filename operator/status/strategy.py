"""A Strategy's status from its admission and its Deployments (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...api.v1alpha1 import ConditionType
from .. import reasons
from ..render.strategy import StrategyPlan
from .conditions import condition, with_times


def deployment_available(deployment: Mapping[str, Any]) -> bool:
    """Rolled out and available: the controller saw this generation and every wanted replica is updated and
    available (a Deployment scaled to 0 is available at once)."""
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    seen = int(status.get("observedGeneration", 0)) >= int(deployment.get("metadata", {}).get("generation", 0))
    return seen and int(status.get("updatedReplicas", 0)) >= want and int(status.get("availableReplicas", 0)) >= want


def strategy_status(
    strategy: Mapping[str, Any], plan: StrategyPlan, deployments: Sequence[Mapping[str, Any]], now: str
) -> dict[str, Any]:
    """The status keys the operator owns (positions, PnL and the last signal are the desk's to report)."""
    generation = strategy.get("metadata", {}).get("generation")
    old = (strategy.get("status") or {}).get("conditions", [])
    adm = plan.admission
    waiting = sorted(d["metadata"]["name"] for d in deployments if not deployment_available(d))
    if adm.phase is not None:
        phase = adm.phase
        ready = phase == "Suspended" and not waiting
        progress_reason = reasons.CHILDREN_NOT_READY if waiting else adm.reason
        conds = [
            condition(ConditionType.READY, ready, adm.reason, adm.message, generation),
            condition(
                ConditionType.PROGRESSING, bool(waiting), progress_reason, _waiting(waiting) or adm.message, generation
            ),
            condition(ConditionType.DEGRADED, phase in ("Blocked", "Failed"), adm.reason, adm.message, generation),
        ]
    elif waiting:
        phase = "Pending"
        conds = [
            condition(ConditionType.READY, False, reasons.CHILDREN_NOT_READY, _waiting(waiting), generation),
            condition(ConditionType.PROGRESSING, True, reasons.CHILDREN_NOT_READY, _waiting(waiting), generation),
            condition(ConditionType.DEGRADED, False, reasons.RECONCILED, "", generation),
        ]
    else:
        phase = "Running"
        conds = [
            condition(ConditionType.READY, True, reasons.RECONCILED, "every workload is available", generation),
            condition(ConditionType.PROGRESSING, False, reasons.RECONCILED, "", generation),
            condition(ConditionType.DEGRADED, False, reasons.RECONCILED, "", generation),
        ]
    return {
        "phase": phase,
        "configRev": plan.config_rev,
        "children": [{"kind": c["kind"], "name": c["metadata"]["name"]} for c in plan.children],
        "conditions": with_times(conds, old, now),
        "observedGeneration": generation,
    }


def _waiting(names: Sequence[str]) -> str:
    return f"waiting for {', '.join(names)} to become available" if names else ""
