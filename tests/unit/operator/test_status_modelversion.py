"""ModelVersion status from its spec and KubeRay children: every RayJob/RayService status value mapped, transition
times kept, history on phase changes only, rollout phases left alone, and the patch is a valid ModelVersionStatus."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeplane.api.v1alpha1 import ModelVersionStatus
from tradeplane.operator.status.modelversion import HISTORY_LIMIT, modelversion_status, status_changed

REPO = Path(__file__).resolve().parents[3]
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"
FAMILY = "ofi-lgbm"


def load(name: str) -> dict[str, Any]:
    mv: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    mv["metadata"].update(namespace="desk", uid="uid-" + mv["metadata"]["name"], generation=4)
    return mv


def stable() -> dict[str, Any]:
    return load("10-modelversion-stable.yaml")


def candidate() -> dict[str, Any]:
    return load("11-modelversion-candidate.yaml")


def untrained(mv: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(mv)
    out["spec"].pop("artifact")
    out["spec"].pop("featureSignature")
    out["spec"]["training"] = {"data": ["local://data/k.csv"]}
    return out


def rayjob(deployment: str | None, job: str | None = None, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = dict(extra)
    if deployment is not None:
        status["jobDeploymentStatus"] = deployment
    if job is not None:
        status["jobStatus"] = job
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "ofi-lgbm-v2-train"}, "status": status}


def rayservice(
    ready: str | None = "True",
    reason: str = "NonZeroServeEndpoints",
    app: str | None = "RUNNING",
    router: str | None = "RUNNING",
    service_status: str | None = None,
) -> dict[str, Any]:
    """A RayService status as KubeRay writes it (Ready condition ≥ 1.3, serviceStatus before)."""
    status: dict[str, Any] = {}
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": ready, "reason": reason, "message": "", "lastTransitionTime": T0},
            {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster", "message": ""},
        ]
    if service_status is not None:
        status["serviceStatus"] = service_status
    apps = {}
    if app is not None:
        apps[f"{FAMILY}--ofi-lgbm-v2"] = {"status": app, "message": "boom" if app == "DEPLOY_FAILED" else ""}
    if router is not None:
        apps[FAMILY] = {"status": router}
    status["activeServiceStatus"] = {"applicationStatuses": apps, "rayClusterName": "ofi-lgbm-serve-raycluster-x"}
    return {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "ofi-lgbm-serve"}, "status": status}


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def compute(mv: dict[str, Any], rj: dict[str, Any] | None = None, rs: dict[str, Any] | None = None, now: str = T0,
            **kw: Any) -> dict[str, Any]:  # fmt: skip
    status = modelversion_status(mv, rayjob=rj, rayservice=rs, now=now, **kw)
    ModelVersionStatus.model_validate(status)  # camelCase and shape of the API type
    return status


# --- training: every RayJob status ----------------------------------------------------------------------------

# (jobDeploymentStatus, jobStatus) → (phase, reason, Ready, Progressing, Degraded)
JOB_CASES: list[tuple[str | None, str | None, str, str, str, str, str]] = [
    (None, None, "Training", "TrainingRunning", "False", "True", "False"),  # created, KubeRay not there yet
    ("", "", "Training", "TrainingRunning", "False", "True", "False"),
    ("Initializing", "", "Training", "TrainingRunning", "False", "True", "False"),
    ("Waiting", "", "Training", "TrainingRunning", "False", "True", "False"),
    ("Scheduling", "", "Training", "TrainingRunning", "False", "True", "False"),
    ("Scheduled", "", "Training", "TrainingRunning", "False", "True", "False"),
    ("Running", "PENDING", "Training", "TrainingRunning", "False", "True", "False"),
    ("Running", "RUNNING", "Training", "TrainingRunning", "False", "True", "False"),
    ("Running", "SUCCEEDED", "Training", "TrainingRunning", "False", "True", "False"),  # Complete comes next
    ("Retrying", "FAILED", "Training", "TrainingRunning", "False", "True", "False"),
    ("Suspending", "RUNNING", "Training", "TrainingRunning", "False", "False", "False"),
    ("Suspended", "", "Training", "TrainingRunning", "False", "False", "False"),
    ("Complete", "SUCCEEDED", "Training", "TrainingSucceeded", "False", "True", "False"),
    ("Complete", "FAILED", "Failed", "TrainingFailed", "False", "False", "True"),
    ("Complete", "STOPPED", "Failed", "TrainingFailed", "False", "False", "True"),
    ("Failed", "FAILED", "Failed", "TrainingFailed", "False", "False", "True"),
    ("Failed", "RUNNING", "Failed", "TrainingFailed", "False", "False", "True"),  # DeadlineExceeded
    ("Failed", "", "Failed", "TrainingFailed", "False", "False", "True"),  # SubmissionFailed
    ("ValidationFailed", "", "Failed", "TrainingFailed", "False", "False", "True"),
]


@pytest.mark.parametrize("example", [stable, candidate])
@pytest.mark.parametrize(("deployment", "job", "phase", "reason", "ready", "progressing", "degraded"), JOB_CASES)
def test_training_phase_follows_the_rayjob(
    example: Any, deployment: str | None, job: str | None, phase: str, reason: str, ready: str, progressing: str,
    degraded: str,
) -> None:  # fmt: skip
    status = compute(untrained(example()), rayjob(deployment, job, reason="DeadlineExceeded"))
    assert status["phase"] == phase
    assert conds(status) == {
        "Ready": (ready, reason),
        "Progressing": (progressing, reason),
        "Degraded": (degraded, reason),
    }
    assert "RayJob ofi-lgbm-v2-train" in status["conditions"][0]["message"]


def test_no_rayjob_yet_is_pending() -> None:
    status = compute(untrained(candidate()))
    assert status["phase"] == "Pending"
    assert conds(status)["Progressing"] == ("True", "TrainingRunning")


def test_failure_detail_is_in_the_message() -> None:
    status = compute(untrained(candidate()), rayjob("Failed", "RUNNING", reason="DeadlineExceeded", message="too slow"))
    assert "DeadlineExceeded too slow" in status["conditions"][0]["message"]


def test_a_trained_version_ignores_its_finished_rayjob() -> None:
    """Once spec.artifact is recorded, serving decides (the RayJob may linger until its TTL)."""
    mv = candidate()
    mv["spec"]["training"] = {"data": ["local://data/k.csv"]}
    status = compute(mv, rayjob("Complete", "SUCCEEDED"), rayservice())
    assert status["phase"] == "Ready"
    assert conds(status)["Ready"] == ("True", "ServingReady")


# --- serving: in-process and every RayService status ----------------------------------------------------------


def test_in_process_version_is_ready_at_once() -> None:
    status = compute(stable())
    assert status["phase"] == "Ready"
    assert conds(status) == {
        "Ready": ("True", "Reconciled"),
        "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "Reconciled"),
    }
    assert status["observedGeneration"] == 4
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])


# RayService → (phase, Ready, Progressing, Degraded); reason ServingReady when ready, ServingNotReady otherwise
SERVICE_CASES: dict[str, tuple[dict[str, Any] | None, str, str, str, str]] = {
    "absent": (None, "Pending", "False", "True", "False"),
    "ready": (rayservice(), "Ready", "True", "False", "False"),
    "ready-old-kuberay": (rayservice(ready=None, service_status="Running"), "Ready", "True", "False", "False"),
    "not-running-old-kuberay": (rayservice(ready=None, service_status=""), "Pending", "False", "True", "False"),
    "initializing": (rayservice("False", "Initializing", "NOT_STARTED", None), "Pending", "False", "True", "False"),
    "app-not-started": (rayservice("True", app="NOT_STARTED"), "Pending", "False", "True", "False"),
    "app-deploying": (rayservice("True", app="DEPLOYING"), "Pending", "False", "True", "False"),
    "app-deleting": (rayservice("True", app="DELETING"), "Pending", "False", "True", "False"),
    "app-missing": (rayservice("True", app=None), "Pending", "False", "True", "False"),
    "router-deploying": (rayservice("True", router="DEPLOYING"), "Pending", "False", "True", "False"),
    "zero-endpoints": (rayservice("False", "ZeroServeEndpoints"), "Pending", "False", "True", "False"),
    "app-unhealthy": (rayservice("True", app="UNHEALTHY"), "Pending", "False", "True", "True"),
    "router-unhealthy": (rayservice("True", router="UNHEALTHY"), "Pending", "False", "True", "True"),
    "app-deploy-failed": (rayservice("True", app="DEPLOY_FAILED"), "Failed", "False", "False", "True"),
    "router-deploy-failed": (rayservice("True", router="DEPLOY_FAILED"), "Failed", "False", "False", "True"),
    "initializing-timeout": (
        rayservice("False", "InitializingTimeout", None, None),
        "Failed",
        "False",
        "False",
        "True",
    ),
}


@pytest.mark.parametrize("case", sorted(SERVICE_CASES))
def test_serving_phase_follows_the_rayservice(case: str) -> None:
    rs, phase, ready, progressing, degraded = SERVICE_CASES[case]
    status = compute(candidate(), rs=rs)
    reason = "ServingReady" if ready == "True" else "ServingNotReady"
    assert status["phase"] == phase
    assert conds(status) == {
        "Ready": (ready, reason),
        "Progressing": (progressing, reason),
        "Degraded": (degraded, reason),
    }


@pytest.mark.parametrize("case", ["absent", "zero-endpoints", "app-deploying", "app-unhealthy", "router-unhealthy"])
def test_a_ready_version_that_loses_its_service_is_degraded_not_pending(case: str) -> None:
    mv = candidate()
    mv["status"] = compute(mv, rs=rayservice())
    status = compute(mv, rs=SERVICE_CASES[case][0], now=T1)
    assert status["phase"] == "Ready"
    assert conds(status) == {
        "Ready": ("False", "ServingNotReady"),
        "Progressing": ("True", "ServingNotReady"),
        "Degraded": ("True", "ServingNotReady"),
    }
    assert status["history"] == mv["status"]["history"]  # no phase change, no record


def test_another_versions_failure_does_not_touch_this_one() -> None:
    rs = rayservice()
    rs["status"]["activeServiceStatus"]["applicationStatuses"][f"{FAMILY}--ofi-lgbm-v3"] = {"status": "DEPLOY_FAILED"}
    assert compute(candidate(), rs=rs)["phase"] == "Ready"


# --- transitions, history, idempotency --------------------------------------------------------------------------


def test_transition_times_are_kept_while_statuses_do_not_change() -> None:
    mv = untrained(candidate())
    first = compute(mv, rayjob("Initializing"))
    mv["status"] = first
    second = compute(mv, rayjob("Running", "RUNNING"), now=T1)  # same statuses, new message
    assert [c["lastTransitionTime"] for c in second["conditions"]] == [T0, T0, T0]
    assert status_changed(first, second)  # the message changed: a write is due
    mv["status"] = second
    third = compute(mv, rayjob("Running", "RUNNING"), now=T2)
    assert third == second
    assert not status_changed(second, third)  # nothing changed: no write


def test_history_records_phase_changes_only() -> None:
    mv = untrained(candidate())
    steps = [
        (None, T0, "Pending"),
        (rayjob("Initializing"), T1, "Training"),
        (rayjob("Running", "RUNNING"), T2, "Training"),
        (rayjob("Complete", "FAILED"), "2026-01-01T01:00:00Z", "Failed"),
    ]
    for rj, now, phase in steps:
        mv["status"] = compute(mv, rj, now=now)
        assert mv["status"]["phase"] == phase
    assert mv["status"]["history"] == [
        {"phase": "Pending", "time": T0, "reason": "TrainingRunning"},
        {"phase": "Training", "time": T1, "reason": "TrainingRunning"},
        {"phase": "Failed", "time": "2026-01-01T01:00:00Z", "reason": "TrainingFailed"},
    ]
    ready, progressing, degraded = mv["status"]["conditions"]
    assert ready["lastTransitionTime"] == T0  # False all along
    assert progressing["lastTransitionTime"] == degraded["lastTransitionTime"] == "2026-01-01T01:00:00Z"


def test_history_is_bounded() -> None:
    mv = candidate()
    for i in range(3 * HISTORY_LIMIT):
        rs = rayservice() if i % 2 else rayservice("True", app="DEPLOY_FAILED")
        mv["status"] = compute(mv, rs=rs, now=f"2026-01-01T00:00:{i:02d}Z")
    history = mv["status"]["history"]
    assert len(history) == HISTORY_LIMIT
    assert history[-1]["time"] == f"2026-01-01T00:00:{3 * HISTORY_LIMIT - 1:02d}Z"


@pytest.mark.parametrize("phase", ["Shadow", "Canary", "Promoted", "RolledBack"])
def test_rollout_phases_are_kept(phase: str) -> None:
    mv = candidate()
    mv["status"] = {"phase": phase, "history": [{"phase": phase, "time": T0, "reason": "Analysis"}]}
    status = compute(mv, rs=rayservice("True", app="UNHEALTHY"), now=T1)
    assert status["phase"] == phase
    assert status["history"] == mv["status"]["history"]
    assert conds(status)["Degraded"] == ("True", "ServingNotReady")  # conditions still tell the truth


def test_render_error_is_invalid_spec() -> None:
    status = compute(candidate(), rs=rayservice(), render_error="routes: exactly one stable version allowed")
    assert status["phase"] == "Failed"
    assert conds(status)["Degraded"] == ("True", "InvalidSpec")
    assert status["conditions"][0]["message"] == "routes: exactly one stable version allowed"


def test_a_spec_the_api_types_reject_is_invalid_spec() -> None:
    mv = candidate()
    mv["spec"].pop("artifact")  # neither artifact nor training: only the API types catch this
    status = compute(mv)
    assert status["phase"] == "Failed"
    assert conds(status)["Ready"] == ("False", "InvalidSpec")


def test_status_changed_compares_patched_keys_only() -> None:
    old = {"phase": "Ready", "failures": 2, "conditions": []}
    assert not status_changed(old, {"phase": "Ready", "conditions": []})
    assert status_changed(old, {"phase": "Failed"})
    assert status_changed(None, {"phase": "Ready"})
