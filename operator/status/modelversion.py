"""A ModelVersion's phase and conditions from its spec and the KubeRay children it has (pure; ``now`` passed in).

What is mapped (KubeRay's API, ray-operator/apis/ray/v1, as in the CRDs of ../shared/k8s/kuberay-crds):

* RayJob ``<mv>-train``: ``status.jobDeploymentStatus`` decides whether the job is over — only ``Complete``,
  ``Failed`` and ``ValidationFailed`` are terminal (KubeRay's IsJobDeploymentTerminal, plus the spec check that
  fails before any cluster exists); ``Complete`` counts as success only with ``status.jobStatus: SUCCEEDED``
  (``FAILED``/``STOPPED`` jobs also end Complete). ``Suspending``/``Suspended`` are a paused job; every other
  value (``""``, Initializing, Waiting, Scheduling, Scheduled, Running, Retrying) is a job on its way.
* RayService ``<family>-serve``: the ``Ready`` condition (KubeRay ≥ 1.3; older ones only set
  ``serviceStatus: Running``) says the cluster serves; ``status.activeServiceStatus.applicationStatuses`` says
  how *this* version's application and the family's router are doing (Ray Serve's NOT_STARTED, DEPLOYING,
  RUNNING, DEPLOY_FAILED, DELETING, UNHEALTHY). The RayService is shared by the family, so one version's
  failed deployment never marks another version Failed. ``Ready: False`` with reason ``InitializingTimeout``
  is KubeRay giving up on the cluster: Failed.

Why phases stop at Ready here: Shadow, Canary, Promoted and RolledBack are the rollout controller's; when a
ModelVersion is in one of them its phase is kept and only the conditions follow the children.

Why transition times stay put: a condition keeps its ``lastTransitionTime`` while its status does not change
(the Kubernetes convention), and history grows only on a phase change, so a pass over unchanged inputs
returns exactly the stored status and :func:`status_changed` says "no write". No special comparison needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from pydantic import ValidationError

from ...api.v1alpha1 import ConditionType, ModelVersionPhase, ModelVersionSpec
from ...api.v1alpha1.modelversion import ServingMode
from ...workloads.serve.config import model_app_name
from .. import reasons
from ..naming import rayservice_name
from ..reasons import SERVING_NOT_READY, SERVING_READY, TRAINING_FAILED, TRAINING_RUNNING, TRAINING_SUCCEEDED
from .conditions import condition, status_differs, with_times

#: Phases owned by the rollout controller (a later issue): kept as they are.
ROLLOUT_PHASES: Final = frozenset(
    {ModelVersionPhase.SHADOW, ModelVersionPhase.CANARY, ModelVersionPhase.PROMOTED, ModelVersionPhase.ROLLED_BACK}
)
#: Phase transitions kept in status.history (newest last): a flapping version must not grow its status forever.
HISTORY_LIMIT: Final = 20

#: RayJob jobDeploymentStatus values that end the job (KubeRay's IsJobDeploymentTerminal + ValidationFailed).
JOB_DEPLOYMENT_FAILED: Final = frozenset({"Failed", "ValidationFailed"})
JOB_DEPLOYMENT_COMPLETE: Final = "Complete"
JOB_DEPLOYMENT_SUSPENDED: Final = frozenset({"Suspending", "Suspended"})
JOB_SUCCEEDED: Final = "SUCCEEDED"
#: Ray Serve application statuses.
APP_RUNNING: Final = "RUNNING"
APP_DEPLOY_FAILED: Final = "DEPLOY_FAILED"
APP_UNHEALTHY: Final = "UNHEALTHY"
#: RayService Ready-condition reason when KubeRay gives up initializing the cluster.
SERVICE_INITIALIZING_TIMEOUT: Final = "InitializingTimeout"


class Training(Enum):
    ABSENT = "absent"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Serving(Enum):
    ABSENT = "absent"
    NOT_READY = "not-ready"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"


@dataclass(frozen=True)
class Observed:
    """One child's state in our terms, with a message for humans (deterministic: no times in it)."""

    state: Training | Serving
    message: str


@dataclass(frozen=True)
class Verdict:
    """What the ModelVersion is: its phase, the one reason/message behind it, and the three condition statuses."""

    phase: ModelVersionPhase
    reason: str
    message: str
    ready: bool
    progressing: bool
    degraded: bool


# --- children ---------------------------------------------------------------------------------------------------


def training_state(rayjob: Mapping[str, Any] | None) -> Observed:
    """The RayJob's state (see the module docstring for the mapping)."""
    if rayjob is None:
        return Observed(Training.ABSENT, "the training RayJob does not exist yet")
    st = rayjob.get("status") or {}
    deployment = str(st.get("jobDeploymentStatus") or "")
    job = str(st.get("jobStatus") or "")
    what = f"RayJob {rayjob['metadata']['name']}: jobDeploymentStatus {deployment or '(new)'}, jobStatus {job or '-'}"
    detail = " ".join(str(st[k]) for k in ("reason", "message") if st.get(k))
    if detail:
        what = f"{what}: {detail}"
    if deployment in JOB_DEPLOYMENT_FAILED:
        return Observed(Training.FAILED, what)
    if deployment == JOB_DEPLOYMENT_COMPLETE:
        return Observed(Training.SUCCEEDED if job == JOB_SUCCEEDED else Training.FAILED, what)
    if deployment in JOB_DEPLOYMENT_SUSPENDED:
        return Observed(Training.SUSPENDED, what)
    return Observed(Training.RUNNING, what)


def _service_ready(st: Mapping[str, Any]) -> tuple[bool, str]:
    """(ready, Ready-condition reason) of a RayService; pre-1.3 KubeRay has no conditions, only serviceStatus."""
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True", str(cond.get("reason") or "")
    return st.get("serviceStatus") == "Running", ""


def serving_state(family: str, version: str, rayservice: Mapping[str, Any] | None) -> Observed:
    """How the family's RayService serves ``version``: its application and the router must both be RUNNING."""
    if rayservice is None:
        return Observed(Serving.ABSENT, f"RayService {rayservice_name(family)} does not exist yet")
    st = rayservice.get("status") or {}
    ready, reason = _service_ready(st)
    apps = (st.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    mine = {name: apps.get(name) or {} for name in (model_app_name(family, version), family)}
    statuses = {name: str(app.get("status") or "NOT_STARTED") for name, app in mine.items()}
    parts = [f"RayService {rayservice['metadata']['name']}: Ready {ready}" + (f" ({reason})" if reason else "")]
    parts += [
        f"{name} {statuses[name]}" + (f": {app['message']}" if app.get("message") else "") for name, app in mine.items()
    ]
    message = "; ".join(parts)
    if reason == SERVICE_INITIALIZING_TIMEOUT or APP_DEPLOY_FAILED in statuses.values():
        return Observed(Serving.FAILED, message)
    if APP_UNHEALTHY in statuses.values():
        return Observed(Serving.UNHEALTHY, message)
    if ready and all(s == APP_RUNNING for s in statuses.values()):
        return Observed(Serving.READY, message)
    return Observed(Serving.NOT_READY, message)


# --- the verdict ------------------------------------------------------------------------------------------------


def _training_verdict(obs: Observed) -> Verdict:
    """A version that still needs its artifact: the RayJob decides."""
    p = ModelVersionPhase
    match obs.state:
        case Training.ABSENT:
            return Verdict(p.PENDING, TRAINING_RUNNING, obs.message, False, True, False)
        case Training.RUNNING:
            return Verdict(p.TRAINING, TRAINING_RUNNING, obs.message, False, True, False)
        case Training.SUSPENDED:
            return Verdict(p.TRAINING, TRAINING_RUNNING, f"suspended: {obs.message}", False, False, False)
        case Training.SUCCEEDED:
            message = f"{obs.message}; waiting for spec.artifact to be recorded"
            return Verdict(p.TRAINING, TRAINING_SUCCEEDED, message, False, True, False)
    return Verdict(p.FAILED, TRAINING_FAILED, obs.message, False, False, True)


def _serving_verdict(obs: Observed, was_ready: bool) -> Verdict:
    """A rayserve version with an artifact: its application in the family's RayService decides. A version that
    was Ready and lost its service stays Ready in phase but is Degraded (it did serve; it should again)."""
    p = ModelVersionPhase
    match obs.state:
        case Serving.READY:
            return Verdict(p.READY, SERVING_READY, obs.message, True, False, False)
        case Serving.FAILED:
            return Verdict(p.FAILED, SERVING_NOT_READY, obs.message, False, False, True)
        case Serving.UNHEALTHY:
            return Verdict(p.READY if was_ready else p.PENDING, SERVING_NOT_READY, obs.message, False, True, True)
    phase = p.READY if was_ready else p.PENDING
    return Verdict(phase, SERVING_NOT_READY, obs.message, False, True, was_ready)


def _verdict(
    name: str,
    spec: ModelVersionSpec,
    current: str | None,
    rayjob: Mapping[str, Any] | None,
    rayservice: Mapping[str, Any] | None,
) -> Verdict:
    if spec.artifact is None:  # the spec validator guarantees spec.training then
        return _training_verdict(training_state(rayjob))
    if spec.serving.mode is ServingMode.IN_PROCESS:
        message = "served in-process by the decide workload; nothing to run in the cluster"
        return Verdict(ModelVersionPhase.READY, reasons.RECONCILED, message, True, False, False)
    return _serving_verdict(serving_state(spec.model, name, rayservice), current == ModelVersionPhase.READY)


def _invalid(message: str) -> Verdict:
    return Verdict(ModelVersionPhase.FAILED, reasons.INVALID_SPEC, message, False, False, True)


# --- the patch --------------------------------------------------------------------------------------------------


def _conditions(verdict: Verdict, old: list[dict[str, Any]], generation: int | None, now: str) -> list[dict[str, Any]]:
    """Ready, Progressing, Degraded, all with the verdict's reason; unchanged statuses keep their transition time."""
    message = verdict.message[:4096]  # the Condition schema's limit
    new = [
        condition(ConditionType.READY, verdict.ready, verdict.reason, message, generation),
        condition(ConditionType.PROGRESSING, verdict.progressing, verdict.reason, message, generation),
        condition(ConditionType.DEGRADED, verdict.degraded, verdict.reason, message, generation),
    ]
    return with_times(new, old, now)


def _history(old: list[dict[str, Any]], current: str | None, phase: str, reason: str, now: str) -> list[dict[str, Any]]:
    """status.history with a record appended when the phase changes (the newest HISTORY_LIMIT kept)."""
    if phase == current:
        return list(old)
    return [*old, {"phase": phase, "time": now, "reason": reason}][-HISTORY_LIMIT:]


def modelversion_status(
    mv: Mapping[str, Any],
    *,
    rayjob: Mapping[str, Any] | None,
    rayservice: Mapping[str, Any] | None,
    now: str,
    render_error: str | None = None,
) -> dict[str, Any]:
    """The status patch (camelCase, ModelVersionStatus) of ``mv`` given its RayJob and its family's RayService.

    ``rayjob``/``rayservice`` are the children as read (None when absent); ``now`` is the RFC 3339 time used
    for new transitions. ``render_error`` is the message of a renderer's ValueError (e.g. two ``immediate``
    versions in one family, an input the trainer cannot read): phase Failed, reason InvalidSpec. The keys
    returned (phase, observedGeneration, conditions, history) replace the stored ones; others are untouched.
    """
    old = mv.get("status") or {}
    current = old.get("phase")
    name = str(mv["metadata"]["name"])
    generation = mv["metadata"].get("generation")
    try:
        spec = ModelVersionSpec.model_validate(mv["spec"])
    except ValidationError as exc:
        verdict = _invalid(f"spec: {exc.errors()[0]['msg']}")
    else:
        verdict = _invalid(render_error) if render_error else _verdict(name, spec, current, rayjob, rayservice)
    phase = current if current in ROLLOUT_PHASES else verdict.phase.value
    return {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": _conditions(verdict, list(old.get("conditions") or []), generation, now),
        "history": _history(list(old.get("history") or []), current, phase, verdict.reason, now),
    }


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether patching ``new`` onto the stored status ``old`` would change anything (False → skip the write).

    A plain comparison of the patched keys is enough: :func:`modelversion_status` keeps transition times and
    history as they are while nothing changes, so a second pass over the same inputs returns equal values.
    """
    return status_differs(old, new)
