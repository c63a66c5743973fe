"""Reconcile one ModelVersion: its family's RayService (when served by Ray Serve), its training RayJob,
its status from theirs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...api.v1alpha1 import API_VERSION
from ...settings import OperatorSettings
from .. import naming
from ..kube import KubeClient, KubeError
from ..render.modelversion import render_family_rayservice, render_training_rayjob
from ..status.conditions import status_differs, transitions
from ..status.modelversion import modelversion_status
from .children import Changes, converge

RAY = "ray.io/v1"


@dataclass
class ModelResult:
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    writes: int = 0


def _home_volume(settings: OperatorSettings) -> dict[str, Any] | None:
    if not settings.models_pvc:
        return None
    return {"name": "home", "persistentVolumeClaim": {"claimName": settings.models_pvc}}


def reconcile_family(kube: KubeClient, namespace: str, family: str, *, settings: OperatorSettings) -> Changes:
    """The family's RayService: applied while some version is served by Ray Serve, deleted when none is."""
    versions = [m for m in kube.list_objects(API_VERSION, "ModelVersion", namespace) if m["spec"]["model"] == family
                and not m["metadata"].get("deletionTimestamp")]  # fmt: skip
    ray_ns = settings.ray_namespace or namespace
    desired = render_family_rayservice(versions, image=settings.ray_image or settings.image, namespace=ray_ns,
                                       image_pull_policy=settings.image_pull_policy,
                                       home_volume=_home_volume(settings))  # fmt: skip
    existing = kube.get(RAY, "RayService", ray_ns, naming.rayservice_name(family))
    return converge(kube, [desired] if desired else [], [existing] if existing else [])


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
    for c in transitions(old.get("conditions", []), status.get("conditions", [])):
        if c["type"] == "Ready":
            events.append(("Normal" if c["status"] == "True" else "Warning", c["reason"], c["message"]))
    if status_differs(old, status):
        kube.patch_status(API_VERSION, "ModelVersion", namespace, name, status)
        writes += 1
    return ModelResult(status, events, writes)
