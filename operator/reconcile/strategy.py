"""Reconcile one Strategy: admission against its RiskBudget, its children, its status."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...api.v1alpha1 import API_VERSION
from ...settings import OperatorSettings
from .. import naming
from ..kube import KubeClient
from ..render.strategy import Admission, StrategyPlan, model_families, render_strategy
from ..status.conditions import status_differs, transitions
from ..status.strategy import strategy_status
from .children import converge

#: The kinds a Strategy owns, as (apiVersion, kind) — the PDB's version is the server's (KubeClient).
_CHILD_KINDS = (("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"))

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    """One pass at a time per Strategy: a budget halt, a child's deletion and the timer may all ask at once."""
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


@dataclass
class StrategyResult:
    plan: StrategyPlan
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0
    current: dict[str, Any] | None = None  #: the Strategy as read (what events are posted on)


def reconcile_strategy(
    kube: KubeClient, strategy: Mapping[str, Any], *, settings: OperatorSettings, kafka_bootstrap: str, now: str
) -> StrategyResult:
    """One idempotent pass. ``strategy`` may be stale (an event's body): the current object is read first."""
    md = strategy["metadata"]
    namespace, name = str(md["namespace"]), str(md["name"])
    with _lock(namespace, name):
        current = kube.get(API_VERSION, "Strategy", namespace, name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            gone = Admission(None, "Deleted", "the Strategy is being deleted", workloads=False)
            return StrategyResult(StrategyPlan(gone, None), {})
        ref = current["spec"]["riskBudgetRef"]["name"]
        budget = kube.get(API_VERSION, "RiskBudget", namespace, ref)
        models = kube.list_objects(API_VERSION, "ModelVersion", namespace)
        pdb_version = kube.pdb_api_version()
        plan = render_strategy(current, budget=budget, models=models, settings=settings,
                               kafka_bootstrap=kafka_bootstrap, pdb_api_version=pdb_version)  # fmt: skip
        selector = naming.strategy_selector(name)
        existing = [o for av, k in (*_CHILD_KINDS, (pdb_version, "PodDisruptionBudget"))
                    for o in kube.list_objects(av, k, namespace, selector)]  # fmt: skip
        changes = converge(kube, plan.children, existing)
        deployments = [o for (kind, _), o in changes.live.items() if kind == "Deployment"]
        status = strategy_status(current, plan, deployments, now)
        result = StrategyResult(plan, status, list(changes.events), changes.writes, current)
        old = current.get("status") or {}
        if old.get("configRev") and plan.config_rev and old.get("configRev") != plan.config_rev:
            result.events.append(("Normal", "ConfigChanged", f"config revision {old['configRev']} → "
                                  f"{plan.config_rev}: rolling restart"))  # fmt: skip
        for c in transitions(old.get("conditions", []), status["conditions"]):
            if c["type"] == "Ready":
                kind = "Normal" if c["status"] == "True" else "Warning"
                result.events.append((kind, c["reason"], c["message"] or f"{status['phase']}"))
        if status_differs(old, status):
            kube.patch_status(API_VERSION, "Strategy", namespace, name, status)
            result.writes += 1
        return result


def strategies_of_budget(kube: KubeClient, namespace: str, budget: str) -> list[dict[str, Any]]:
    return [
        s
        for s in kube.list_objects(API_VERSION, "Strategy", namespace)
        if s.get("spec", {}).get("riskBudgetRef", {}).get("name") == budget
    ]


def strategies_of_family(kube: KubeClient, namespace: str, family: str) -> list[dict[str, Any]]:
    return [s for s in kube.list_objects(API_VERSION, "Strategy", namespace) if family in model_families(s)]
