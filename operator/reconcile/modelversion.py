"""Reconcile one ModelVersion: its family's RayService (when served by Ray Serve), its training RayJob,
its status from theirs."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...api.v1alpha1 import API_VERSION
from ...settings import OperatorSettings
from .. import naming, reasons
from ..kube import KubeClient, KubeError
from ..render.modelversion import render_family_rayservice, render_training_rayjob, served_versions
from ..render.routes import family_routes, render_routes_configmap, stored_revision
from ..status.conditions import status_differs, transitions
from ..status.modelversion import modelversion_status
from ..status.rollout import rollout_conditions
from .children import Changes, converge

RAY = "ray.io/v1"
_family_locks: dict[tuple[str, str], threading.Lock] = {}
_family_locks_guard = threading.Lock()


@dataclass
class ModelResult:
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0


def _home_volume(settings: OperatorSettings) -> dict[str, Any] | None:
    if not settings.models_pvc:
        return None
    return {"name": "home", "persistentVolumeClaim": {"claimName": settings.models_pvc}}


def _family_lock(namespace: str, family: str) -> threading.Lock:
    """One family render at a time: the routes ConfigMap's revision is read, compared and written in one go."""
    with _family_locks_guard:
        return _family_locks.setdefault((namespace, family), threading.Lock())


def reconcile_routes(kube: KubeClient, namespace: str, family: str, versions: list[dict[str, Any]]) -> Changes:
    """The family's ``<family>-routes`` ConfigMap (decide's weights and roles), from the versions' statuses;
    deleted when the family has no version left to route."""
    routes = family_routes(family, versions)
    existing = kube.get("v1", "ConfigMap", namespace, naming.routes_config_map_name(family))
    desired = [render_routes_configmap(routes, namespace, owners=versions, live=existing)] if routes.roles else []
    changes = converge(kube, desired, [existing] if existing else [])
    before, _ = stored_revision(existing)
    after, _ = stored_revision(changes.live.get(("ConfigMap", naming.routes_config_map_name(family))))
    if desired and after != before:
        changes.events.append(("Normal", reasons.ROUTES_CHANGED, f"{family} routes revision {after}: "
                               f"stable {routes.stable}, canary weights {routes.weights}"))  # fmt: skip
    return changes


def reconcile_family(kube: KubeClient, namespace: str, family: str, *, settings: OperatorSettings) -> Changes:
    """The family's routes ConfigMap, then its RayService: applied while some version is served by Ray Serve
    (with the rollout's weights and roles in the router's user_config), deleted when none is."""
    with _family_lock(namespace, family):
        versions = [m for m in kube.list_objects(API_VERSION, "ModelVersion", namespace)
                    if m["spec"]["model"] == family and not m["metadata"].get("deletionTimestamp")]  # fmt: skip
        routes_changes = reconcile_routes(kube, namespace, family, versions)
        routes = family_routes(family, versions)
        served = [str(m["metadata"]["name"]) for m in served_versions(versions)]
        weights, roles = routes.only(served)
        ray_ns = settings.ray_namespace or namespace
        desired = render_family_rayservice(versions, image=settings.ray_image or settings.image, namespace=ray_ns,
                                           image_pull_policy=settings.image_pull_policy,
                                           home_volume=_home_volume(settings), weights=weights or None,
                                           roles=roles or None, kinds=routes.kinds_of(served) or None)  # fmt: skip
        existing = kube.get(RAY, "RayService", ray_ns, naming.rayservice_name(family))
        changes = converge(kube, [desired] if desired else [], [existing] if existing else [])
        changes.live |= routes_changes.live
        changes.events = routes_changes.events + changes.events
        changes.writes += routes_changes.writes
        return changes


def reconcile_modelversion(
    kube: KubeClient, mv: Mapping[str, Any], *, settings: OperatorSettings, now: str
) -> ModelResult:
    md = mv["metadata"]
    namespace, name = str(md["namespace"]), str(md["name"])
    current = kube.get(API_VERSION, "ModelVersion", namespace, name)
    if current is None or current["metadata"].get("deletionTimestamp"):
        return ModelResult({})
    family = str(current["spec"]["model"])
    ray_ns = settings.ray_namespace or namespace
    events: list[tuple[str, str, str]] = []
    writes = 0
    error: str | None = None
    rayservice = rayjob = None
    try:
        family_changes = reconcile_family(kube, namespace, family, settings=settings)
        events += family_changes.events
        writes += family_changes.writes
        rayservice = family_changes.live.get(("RayService", naming.rayservice_name(family)))
        job = render_training_rayjob(current, image=settings.ray_image or settings.image, namespace=ray_ns,
                                     image_pull_policy=settings.image_pull_policy,
                                     home_volume=_home_volume(settings))  # fmt: skip
        existing = kube.get(RAY, "RayJob", ray_ns, naming.rayjob_name(name))
        if job is not None:  # a finished job is kept (its status is the training's record) until its owner goes
            job_changes = converge(kube, [job], [existing] if existing else [])
            events += job_changes.events
            writes += job_changes.writes
            rayjob = job_changes.live.get(("RayJob", naming.rayjob_name(name)))
        else:
            rayjob = existing
    except ValueError as exc:  # the renderers' errors: a family Serve cannot run, inputs the trainer cannot read
        error = str(exc)
    except KubeError as exc:
        if exc.status != 404:
            raise
        error = f"KubeRay's CRDs are not installed (ray.io/v1: {exc.message})"
    status = modelversion_status(current, rayjob=rayjob, rayservice=rayservice, now=now, render_error=error)
    old = current.get("status") or {}
    # a version in a rollout phase: Progressing/Degraded say where the rollout is (operator/status/rollout.py)
    status["conditions"] = rollout_conditions(status["conditions"], {**old, "phase": status["phase"]},
                                              current["metadata"].get("generation"), now,
                                              stored=old.get("conditions") or [])  # fmt: skip
    for c in transitions(old.get("conditions", []), status.get("conditions", [])):
        if c["type"] == "Ready":
            events.append(("Normal" if c["status"] == "True" else "Warning", c["reason"], c["message"]))
    if status_differs(old, status):
        kube.patch_status(API_VERSION, "ModelVersion", namespace, name, status)
        writes += 1
    return ModelResult(status, events, writes)
