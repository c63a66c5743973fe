"""The operator's rollout decision (plan_rollout: objects + now + inputs → status patch and events), the
family routes derived from the versions' statuses, the routes ConfigMap, the RayService user_config overrides
and decide's routes volume — all pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from tests.unit.operator.examples import NS, load
from tradeplane.engine.rollout import AnalysisVerdict, GuardSignal, MetricResult, Verdict
from tradeplane.engine.rollout import state_from_status as engine_state
from tradeplane.operator import naming
from tradeplane.operator.reconcile.rollout import (
    analysis_due,
    guard_from_budgets,
    pending_command,
    plan_rollout,
    store_analysis,
    wants_pass,
)
from tradeplane.operator.render.modelversion import render_family_rayservice
from tradeplane.operator.render.routes import family_routes, render_routes_configmap, stable_version, stored_revision
from tradeplane.operator.render.strategy import render_strategy
from tradeplane.operator.status.rollout import api_patch
from tradeplane.settings import OperatorSettings

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
Obj = dict[str, Any]


def _versions() -> tuple[Obj, Obj]:
    stable = load("10-modelversion-stable.yaml", "uid-v1")
    cand = load("11-modelversion-candidate.yaml", "uid-v2")
    return stable, cand


def _stored(mv: Obj, patch: Obj | None) -> Obj:
    """``mv`` after the merge patch (None deletes, as the API server does)."""
    assert patch is not None
    status = dict(mv.get("status") or {})
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(status.get(k), dict):
            merged = {**status[k], **v}
            status[k] = {a: b for a, b in merged.items() if b is not None}
        elif v is None:
            status.pop(k, None)
        else:
            status[k] = v
    if isinstance(status.get("rollout"), dict):
        status["rollout"] = {a: b for a, b in status["rollout"].items() if b is not None}
    return {**mv, "status": json.loads(json.dumps(status))}


def _pass(metric: str = "brier") -> AnalysisVerdict:
    return AnalysisVerdict(Verdict.PASS, "all held", (MetricResult(metric, 0.2, 0.21, 0.25, True, "ok"),))


def test_a_new_canary_starts_against_the_family_stable_and_stores_a_resumable_state() -> None:
    stable, cand = _versions()
    plan = plan_rollout(cand, [stable, cand], T0)
    assert plan.status is not None and plan.transition is not None
    assert plan.status["phase"] == "Canary" and plan.status["weightPct"] == 5.0 and plan.status["currentStep"] == 0
    assert plan.status["rollout"]["stable"] == "ofi-lgbm-v1" and plan.status["rollout"]["candidate"] == "ofi-lgbm-v2"
    assert plan.status["rollout"]["lastReason"] is None  # '' never reaches the 1.20 merge patch
    assert [e[1] for e in plan.events] == ["RolloutStarted"]
    progressing = next(c for c in plan.status["conditions"] if c["type"] == "Progressing")
    assert progressing["status"] == "True" and progressing["reason"] == "RolloutProgressing"
    stored = _stored(cand, plan.status)
    again = plan_rollout(stored, [stable, stored], T0 + timedelta(seconds=1))
    assert again.status is None and again.events == []  # idempotent while nothing is due
    state = engine_state(stored["status"], candidate="ofi-lgbm-v2")
    assert state == plan.transition.state


def test_an_analysis_is_due_after_its_interval_and_a_pass_after_the_pause_advances() -> None:
    stable, cand = _versions()
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)
    assert not analysis_due(cand, T0 + timedelta(seconds=59))
    assert analysis_due(cand, T0 + timedelta(seconds=60))
    at = T0 + timedelta(seconds=600)  # the first step's pause is 600 s
    plan = plan_rollout(cand, [stable, cand], at, verdict=_pass())
    assert plan.status is not None
    assert plan.status["currentStep"] == 1 and plan.status["weightPct"] == 20.0
    assert [e[1] for e in plan.events] == ["AnalysisPassed", "StepAdvanced"]
    assert plan.transition is not None and plan.transition.route_changed


def test_the_drawdown_guard_rolls_back_at_once_and_commands_win() -> None:
    stable, cand = _versions()
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)
    budget = {"metadata": {"name": "desk"}, "spec": {"limits": {"maxDrawdownPct": 10.0}},
              "status": {"usage": {"drawdownPct": 12.5}}}  # fmt: skip
    calm = {"metadata": {"name": "calm"}, "spec": {"limits": {"maxDrawdownPct": 10.0}},
            "status": {"usage": {"drawdownPct": 1.0}}}  # fmt: skip
    guard = guard_from_budgets([calm, budget])
    assert guard == GuardSignal(12.5, 10.0, "desk")
    plan = plan_rollout(cand, [stable, cand], T0 + timedelta(seconds=5), guard=guard)
    assert plan.status is not None and plan.status["phase"] == "RolledBack" and plan.status["weightPct"] == 0.0
    assert "drawdown guard" in plan.status["history"][-1]["reason"]
    degraded = next(c for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"

    annotated = json.loads(json.dumps(cand))
    annotated["metadata"]["annotations"] = {naming.ROLLOUT_COMMAND: "Promote", naming.ROLLOUT_COMMAND_BY: "ann"}
    command, error = pending_command(annotated)
    assert command is not None and error is None
    plan = plan_rollout(annotated, [stable, annotated], T0 + timedelta(seconds=5), command=command, guard=guard)
    assert plan.clear_command and plan.status is not None and plan.status["phase"] == "Promoted"
    assert "promoted manually by ann" in plan.status["history"][-1]["reason"]


def test_an_invalid_command_is_reported_and_removed() -> None:
    stable, cand = _versions()
    cand["metadata"]["annotations"] = {naming.ROLLOUT_COMMAND: "yolo"}
    command, error = pending_command(cand)
    assert command is None and error is not None and "yolo" in error
    plan = plan_rollout(cand, [stable, cand], T0, command_error=error)
    assert plan.clear_command and ("Warning", "RolloutCommandInvalid", error) in plan.events


def test_immediate_and_unrolled_versions_are_left_alone() -> None:
    stable, cand = _versions()
    assert plan_rollout(stable, [stable, cand], T0).status is None
    assert not wants_pass(stable, T0)
    assert wants_pass(cand, T0)  # not started yet


def test_family_routes_follow_the_statuses_through_promotion_and_abort() -> None:
    stable, cand = _versions()
    routes = family_routes("ofi-lgbm", [stable, cand])
    assert routes.stable == "ofi-lgbm-v1" and routes.roles == {"ofi-lgbm-v1": "stable", "ofi-lgbm-v2": "canary"}
    assert routes.weights == {"ofi-lgbm-v2": 0.0}  # not started: no traffic yet
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)
    assert family_routes("ofi-lgbm", [stable, cand]).weights == {"ofi-lgbm-v2": 0.05}
    command, _ = pending_command({"metadata": {"annotations": {naming.ROLLOUT_COMMAND: "promote"}}})
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0 + timedelta(seconds=1), command=command).status)
    promoted = family_routes("ofi-lgbm", [stable, cand])
    assert promoted.stable == "ofi-lgbm-v2" and promoted.roles["ofi-lgbm-v1"] == "canary"
    assert promoted.weights == {"ofi-lgbm-v1": 0.0}
    abort, _ = pending_command({"metadata": {"annotations": {naming.ROLLOUT_COMMAND: "abort"}}})
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0 + timedelta(seconds=2), command=abort).status)
    back = family_routes("ofi-lgbm", [stable, cand])
    assert back.stable == "ofi-lgbm-v1" and back.weights == {"ofi-lgbm-v2": 0.0}  # in one pass
    assert stable_version([stable, cand], exclude="ofi-lgbm-v1") is None


def test_the_routes_configmap_revision_moves_only_when_the_routes_do() -> None:
    stable, cand = _versions()
    routes = family_routes("ofi-lgbm", [stable, cand])
    first = render_routes_configmap(routes, NS, owners=[stable, cand], live=None)
    assert first["metadata"]["name"] == "ofi-lgbm-routes" and stored_revision(first)[0] == 1
    doc = json.loads(first["data"]["routes.json"])
    assert doc == {"family": "ofi-lgbm", "weights": {"ofi-lgbm-v2": 0.0},
                   "roles": {"ofi-lgbm-v1": "stable", "ofi-lgbm-v2": "canary"}, "revision": 1}  # fmt: skip
    assert {r["uid"] for r in first["metadata"]["ownerReferences"]} == {"uid-v1", "uid-v2"}
    same = render_routes_configmap(routes, NS, owners=[stable, cand], live=first)
    assert same == first
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)
    moved = render_routes_configmap(family_routes("ofi-lgbm", [stable, cand]), NS, owners=[stable, cand], live=first)
    assert stored_revision(moved)[0] == 2 and json.loads(moved["data"]["routes.json"])["weights"]["ofi-lgbm-v2"] == 0.05


def test_the_rayservice_router_user_config_carries_the_rollout_weights_and_roles() -> None:
    stable, cand = _versions()
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)

    def routes_of(weights: dict[str, float] | None, roles: dict[str, str] | None) -> dict[str, Any]:
        rs = render_family_rayservice([stable, cand], image="img", namespace=NS, weights=weights, roles=roles)
        assert rs is not None
        config = yaml.safe_load(rs["spec"]["serveConfigV2"])
        router = next(a for a in config["applications"] if a["name"] == "ofi-lgbm")
        return dict(router["deployments"][0]["user_config"]["routes"])

    weights, roles = family_routes("ofi-lgbm", [stable, cand]).only(["ofi-lgbm-v2"])  # v1 is in-process
    assert routes_of(weights, roles) == {"ofi-lgbm-v2": {"role": "canary", "weight": 0.05, "kind": "weight"}}
    assert routes_of({"ofi-lgbm-v2": 0.2}, None)["ofi-lgbm-v2"]["weight"] == 0.2
    assert routes_of(None, {"ofi-lgbm-v2": "stable"})["ofi-lgbm-v2"] == {"role": "stable", "weight": 0.0}


def test_decide_mounts_each_family_routes_optionally_outside_the_config_rev() -> None:
    strategy = load("20-strategy-btc-spot.yaml", "uid-s")
    budget = load("00-riskbudget.yaml", "uid-b")
    stable, cand = _versions()
    plan = render_strategy(strategy, budget=budget, models=[stable, cand], settings=OperatorSettings(),
                           kafka_bootstrap="k:9092")  # fmt: skip
    decide = next(c for c in plan.children if c["metadata"]["name"].endswith("-decide"))
    pod = decide["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "routes")
    [source] = volume["projected"]["sources"]
    assert source["configMap"] == {"name": "ofi-lgbm-routes", "optional": True,
                                   "items": [{"key": "routes.json", "path": "ofi-lgbm/routes.json"}]}  # fmt: skip
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "routes")
    assert mount == {"name": "routes", "mountPath": naming.ROUTES_DIR, "readOnly": True}
    # a rollout moves statuses only: the desk config (and its rev on the pod template) does not change
    moved = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)
    again = render_strategy(strategy, budget=budget, models=[stable, moved], settings=OperatorSettings(),
                            kafka_bootstrap="k:9092")  # fmt: skip
    assert again.config_rev == plan.config_rev


def test_without_a_store_every_analysis_is_inconclusive() -> None:
    stable, cand = _versions()
    cand = _stored(cand, plan_rollout(cand, [stable, cand], T0).status)
    state = engine_state(cand["status"])
    assert state is not None
    from tradeplane.api.v1alpha1 import ModelVersionSpec

    verdict = store_analysis(None)(ModelVersionSpec.model_validate(cand["spec"]), state, T0, [])
    assert verdict.verdict is Verdict.INCONCLUSIVE and "no analysis store" in verdict.reason


def test_api_patch_drops_empty_fields_from_list_items() -> None:
    out = api_patch({"analysis": [{"metric": "m", "candidate": None, "reason": "", "passed": True}],
                     "rollout": {"lastReason": "", "stable": None}, "phase": "Canary"})  # fmt: skip
    assert out == {"analysis": [{"metric": "m", "passed": True}], "rollout": {"lastReason": None, "stable": None},
                   "phase": "Canary"}  # fmt: skip


def test_routes_dir_and_command_annotation_agree_with_decide_and_the_cli() -> None:
    from tradeplane.cli import rollout_cmd
    from tradeplane.workloads.decide import routes

    assert str(routes.ROUTES_DIR) == naming.ROUTES_DIR
    assert routes.routes_config_map_name("clf") == naming.routes_config_map_name("clf")  # decide reads it by name
    assert rollout_cmd.COMMAND_ANNOTATION == naming.ROLLOUT_COMMAND
    assert rollout_cmd.COMMAND_BY_ANNOTATION == naming.ROLLOUT_COMMAND_BY
