"""A Strategy's status from its plan and its Deployments: availability, phases, conditions, transition times.

The plans are rendered from the examples (render_strategy is pure), and the Deployments are the rendered ones
with the ``metadata.generation`` and ``status`` the API server and the Deployment controller would add.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradeplane.api.v1alpha1 import StrategyStatus
from tradeplane.operator import reasons
from tradeplane.operator.render.strategy import StrategyPlan, render_strategy
from tradeplane.operator.status.conditions import status_differs
from tradeplane.operator.status.strategy import deployment_available, strategy_status
from tradeplane.settings import OperatorSettings

from .examples import load

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[3]
NAME = "usdm-btc"
GENERATION = 4
T0 = "2026-03-01T10:00:00Z"
T1 = "2026-03-01T10:05:00Z"
T2 = "2026-03-01T10:09:00Z"


def strategy(*, suspend: bool = False, status: Obj | None = None, decide_replicas: int = 1) -> Obj:
    s = load("21-strategy-btc-usdm.yaml", "uid-usdm", generation=GENERATION)
    s["spec"]["suspend"] = suspend
    s["spec"]["resources"]["decide"]["replicas"] = decide_replicas
    if status is not None:
        s["status"] = status
    return s


def budget(*, halt: bool = False) -> Obj:
    b = load("00-riskbudget.yaml", "uid-budget")
    b["spec"]["halt"] = halt
    return b


MODELS = [load("10-modelversion-stable.yaml", "uid-v1"), load("11-modelversion-candidate.yaml", "uid-v2")]


def plan_of(s: Obj, b: Obj | None) -> StrategyPlan:
    return render_strategy(s, budget=b, models=MODELS, settings=OperatorSettings(), kafka_bootstrap="kafka:9092")


def observed(plan: StrategyPlan, *, generation: int = 2, unavailable: tuple[str, ...] = (),
             lagging: tuple[str, ...] = ()) -> list[Obj]:  # fmt: skip
    """The plan's Deployments as read back: every one rolled out, except ``unavailable`` (no pod available yet)
    and ``lagging`` (the controller has not seen the newest generation)."""
    out = []
    for c in plan.children:
        if c["kind"] != "Deployment":
            continue
        d = copy.deepcopy(c)
        name = d["metadata"]["name"]
        want = d["spec"]["replicas"]
        d["metadata"]["generation"] = generation
        ready = 0 if name in unavailable else want
        d["status"] = {"observedGeneration": generation - 1 if name in lagging else generation,
                       "replicas": want, "updatedReplicas": want, "readyReplicas": ready, "availableReplicas": ready}  # fmt: skip
        if not ready:
            d["status"] = {k: v for k, v in d["status"].items() if k not in ("readyReplicas", "availableReplicas")}
        out.append(d)
    return out


def by_type(status: Obj) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


# --- deployment_available -----------------------------------------------------------------------------------------


def deployment(replicas: int | None, generation: int, status: Obj | None) -> Obj:
    d: Obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": generation},
              "spec": {}}  # fmt: skip
    if replicas is not None:
        d["spec"]["replicas"] = replicas
    if status is not None:
        d["status"] = status
    return d


def st(observed_generation: int, updated: int | None = None, available: int | None = None) -> Obj:
    out: Obj = {"observedGeneration": observed_generation}
    if updated is not None:
        out["updatedReplicas"] = updated
    if available is not None:
        out["availableReplicas"] = available
    return out


AVAILABILITY: dict[str, tuple[Obj, bool]] = {
    "just-created-no-status": (deployment(1, 1, None), False),
    "status-null": (deployment(1, 1, None) | {"status": None}, False),
    "rolled-out": (deployment(1, 1, st(1, 1, 1)), True),
    "rolled-out-two": (deployment(2, 3, st(3, 2, 2)), True),
    "surplus-during-rollout-counts": (deployment(1, 2, st(2, 1, 2)), True),
    "observed-generation-lags": (deployment(1, 2, st(1, 1, 1)), False),
    "observed-generation-ahead": (deployment(1, 2, st(3, 1, 1)), True),
    "none-available": (deployment(1, 1, st(1, 1, 0)), False),
    "none-available-key-missing": (deployment(1, 1, st(1, 1)), False),
    "partial-available": (deployment(3, 1, st(1, 3, 2)), False),
    "partial-updated": (deployment(3, 1, st(1, 2, 3)), False),
    "scaled-to-zero-observed": (deployment(0, 2, st(2)), True),
    "scaled-to-zero-not-yet-observed": (deployment(0, 2, st(1, 1, 1)), False),
    "replicas-default-one-unavailable": (deployment(None, 1, st(1)), False),
    "replicas-default-one-available": (deployment(None, 1, st(1, 1, 1)), True),
}


@pytest.mark.parametrize(("dep", "available"), AVAILABILITY.values(), ids=list(AVAILABILITY))
def test_deployment_available(dep: Obj, available: bool) -> None:
    assert deployment_available(dep) is available


# --- phases and conditions --------------------------------------------------------------------------------------


class Case:
    def __init__(
        self,
        phase: str,
        conditions: dict[str, tuple[str, str]],
        *,
        inputs: Callable[[], tuple[Obj, StrategyPlan, list[Obj]]],
        message: dict[str, str] | None = None,
    ) -> None:
        self.phase, self.conditions, self.inputs, self.message = phase, conditions, inputs, message or {}


def _admitted(**kw: Any) -> Callable[[], tuple[Obj, StrategyPlan, list[Obj]]]:
    def make() -> tuple[Obj, StrategyPlan, list[Obj]]:
        s = strategy()
        plan = plan_of(s, budget())
        return s, plan, observed(plan, **kw)

    return make


def _suspended(**kw: Any) -> Callable[[], tuple[Obj, StrategyPlan, list[Obj]]]:
    def make() -> tuple[Obj, StrategyPlan, list[Obj]]:
        s = strategy(suspend=True)
        plan = plan_of(s, budget())
        return s, plan, observed(plan, **kw)

    return make


def _missing_budget() -> tuple[Obj, StrategyPlan, list[Obj]]:
    s = strategy()
    return s, plan_of(s, None), []


def _halted_never_started() -> tuple[Obj, StrategyPlan, list[Obj]]:
    s = strategy()
    return s, plan_of(s, budget(halt=True)), []


def _halted_running(**kw: Any) -> Callable[[], tuple[Obj, StrategyPlan, list[Obj]]]:
    def make() -> tuple[Obj, StrategyPlan, list[Obj]]:
        s = strategy(status={"configRev": "0123456789abcdef"})
        plan = plan_of(s, budget(halt=True))
        return s, plan, observed(plan, **kw)

    return make


def _invalid() -> tuple[Obj, StrategyPlan, list[Obj]]:
    s = strategy(decide_replicas=2)
    return s, plan_of(s, budget()), []


T, F = "True", "False"
R, CNR = reasons.RECONCILED, reasons.CHILDREN_NOT_READY
PHASES: dict[str, Case] = {
    "running": Case("Running", {"Ready": (T, R), "Progressing": (F, R), "Degraded": (F, R)}, inputs=_admitted()),
    "pending-decide-unavailable": Case(
        "Pending", {"Ready": (F, CNR), "Progressing": (T, CNR), "Degraded": (F, R)},
        inputs=_admitted(unavailable=("usdm-btc-decide",)),
        message={"Ready": "usdm-btc-decide", "Progressing": "usdm-btc-decide"}),
    "pending-two-unavailable-sorted": Case(
        "Pending", {"Ready": (F, CNR), "Progressing": (T, CNR), "Degraded": (F, R)},
        inputs=_admitted(unavailable=("usdm-btc-sink", "usdm-btc-execute")),
        message={"Ready": "usdm-btc-execute, usdm-btc-sink"}),
    "pending-generation-not-observed": Case(
        "Pending", {"Ready": (F, CNR), "Progressing": (T, CNR), "Degraded": (F, R)},
        inputs=_admitted(lagging=("usdm-btc-ingest",)), message={"Ready": "usdm-btc-ingest"}),
    "suspended-scaled-down": Case(
        "Suspended", {"Ready": (T, reasons.SUSPENDED), "Progressing": (F, reasons.SUSPENDED),
                      "Degraded": (F, reasons.SUSPENDED)}, inputs=_suspended(), message={"Ready": "suspend"}),
    "suspended-scaling-down": Case(
        "Suspended", {"Ready": (F, reasons.SUSPENDED), "Progressing": (T, CNR), "Degraded": (F, reasons.SUSPENDED)},
        inputs=_suspended(lagging=("usdm-btc-decide",)), message={"Progressing": "usdm-btc-decide"}),
    "blocked-budget-missing": Case(
        "Blocked", {"Ready": (F, reasons.RISK_BUDGET_NOT_FOUND), "Progressing": (F, reasons.RISK_BUDGET_NOT_FOUND),
                    "Degraded": (T, reasons.RISK_BUDGET_NOT_FOUND)}, inputs=_missing_budget,
        message={"Ready": "desk-default", "Degraded": "desk-default"}),
    "blocked-halted-never-started": Case(
        "Blocked", {"Ready": (F, reasons.RISK_BUDGET_HALTED), "Progressing": (F, reasons.RISK_BUDGET_HALTED),
                    "Degraded": (T, reasons.RISK_BUDGET_HALTED)}, inputs=_halted_never_started,
        message={"Ready": "halted"}),
    "blocked-halted-running": Case(
        "Blocked", {"Ready": (F, reasons.RISK_BUDGET_HALTED), "Progressing": (F, reasons.RISK_BUDGET_HALTED),
                    "Degraded": (T, reasons.RISK_BUDGET_HALTED)}, inputs=_halted_running(),
        message={"Ready": "halted"}),
    "blocked-halted-rolling-out-the-halt": Case(
        "Blocked", {"Ready": (F, reasons.RISK_BUDGET_HALTED), "Progressing": (T, CNR),
                    "Degraded": (T, reasons.RISK_BUDGET_HALTED)},
        inputs=_halted_running(lagging=("usdm-btc-decide", "usdm-btc-execute"))),
    "failed-invalid-spec": Case(
        "Failed", {"Ready": (F, reasons.INVALID_SPEC), "Progressing": (F, reasons.INVALID_SPEC),
                   "Degraded": (T, reasons.INVALID_SPEC)}, inputs=_invalid,
        message={"Ready": "spec.resources.decide.replicas", "Degraded": "spec.resources.decide.replicas"}),
}  # fmt: skip


@pytest.mark.parametrize("case", PHASES.values(), ids=list(PHASES))
def test_phase_and_conditions(case: Case) -> None:
    s, plan, deps = case.inputs()
    status = strategy_status(s, plan, deps, T0)
    assert status["phase"] == case.phase
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Progressing", "Degraded"]
    assert by_type(status) == case.conditions
    for kind, text in case.message.items():
        message = next(c for c in status["conditions"] if c["type"] == kind).get("message", "")
        assert text in message, f"{kind}: {message!r}"
    for c in status["conditions"]:
        assert c["lastTransitionTime"] == T0, "a new condition starts at now"
        assert c["observedGeneration"] == GENERATION
        # the 1.20 API server turns "" into null in a merge patch, which the schema refuses: no empty message
        assert c.get("message", "x") != "", c
        assert all(v is not None for v in c.values()), c
    assert status["observedGeneration"] == GENERATION
    assert status["configRev"] == plan.config_rev
    assert status["children"] == [{"kind": c["kind"], "name": c["metadata"]["name"]} for c in plan.children]
    # the patch is a valid StrategyStatus (the CRD's status schema comes from the same model)
    StrategyStatus.model_validate(status)


def test_no_children_status() -> None:
    s, plan, deps = _missing_budget()
    status = strategy_status(s, plan, deps, T0)
    assert status["children"] == []
    assert status["configRev"] is None


def test_running_conditions_carry_no_empty_message() -> None:
    s, plan, deps = _admitted()()
    conds = {c["type"]: c for c in strategy_status(s, plan, deps, T0)["conditions"]}
    assert conds["Ready"]["message"] == "every workload is available"
    assert "message" not in conds["Progressing"]
    assert "message" not in conds["Degraded"]


# --- transition times ---------------------------------------------------------------------------------------------


def stored(s: Obj, status: Obj) -> Obj:
    """``s`` with ``status`` written (what the next pass reads)."""
    out = copy.deepcopy(s)
    out["status"] = {**(out.get("status") or {}), **copy.deepcopy(status)}
    return out


def test_second_pass_is_identical_and_writes_nothing() -> None:
    s, plan, deps = _admitted(unavailable=("usdm-btc-decide",))()
    first = strategy_status(s, plan, deps, T0)
    again = strategy_status(stored(s, first), plan, deps, T1)
    assert again == first
    assert not status_differs(stored(s, first)["status"], again)


def test_transition_times_follow_status_changes() -> None:
    s, plan, _ = _admitted()()
    pending = strategy_status(s, plan, observed(plan, unavailable=("usdm-btc-sink",)), T0)
    running = strategy_status(stored(s, pending), plan, observed(plan), T1)
    times = {c["type"]: c["lastTransitionTime"] for c in running["conditions"]}
    assert times == {"Ready": T1, "Progressing": T1, "Degraded": T0}  # Degraded stayed False
    assert status_differs(stored(s, pending)["status"], running)
    again = strategy_status(stored(s, running), plan, observed(plan), T2)
    assert again == running
    assert not status_differs(stored(s, running)["status"], again)


def test_reason_change_keeps_the_transition_time() -> None:
    """Blocked for a missing budget, then the budget appears halted: Ready stays False (time kept), reason changes."""
    s, plan, deps = _missing_budget()
    first = strategy_status(s, plan, deps, T0)
    s2 = stored(s, first)
    halted = strategy_status(s2, plan_of(s2, budget(halt=True)), [], T1)
    ready = next(c for c in halted["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", reasons.RISK_BUDGET_HALTED, T0)
    assert status_differs(s2["status"], halted)


def test_old_condition_without_time_gets_now() -> None:
    s, plan, deps = _admitted()()
    s["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled"}]}
    status = strategy_status(s, plan, deps, T1)
    assert {c["type"]: c["lastTransitionTime"] for c in status["conditions"]} == dict.fromkeys(
        ("Ready", "Progressing", "Degraded"), T1
    )


def test_status_is_pure() -> None:
    s, plan, deps = _admitted(unavailable=("usdm-btc-decide",))()
    before = (copy.deepcopy(s), copy.deepcopy(deps))
    assert strategy_status(s, plan, deps, T0) == strategy_status(s, plan, deps, T0)
    assert (s, deps) == before, "inputs are not modified"
