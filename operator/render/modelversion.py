"""Render the Ray children of ModelVersions: one RayService per model family, one RayJob per training version.

Why one RayService per *family* and not per version: a family's versions are scored side by side by one
router (stable, canary, shadows), and the router must hold handles to every version's application, which
only works inside one Serve instance. workloads/serve/config.py explains why each version is still its own
Serve application: a canary joining or leaving changes only the router's ``user_config``, never the stable's
``args``, so the stable's replicas never restart. This module only wraps those applications (built by the
very same pure functions the local deploy path uses) into KubeRay's RayService, and adds the cluster to run
them on.

Why a RayJob per version: training is a batch run with a deadline; KubeRay's RayJob creates a throw-away
cluster, runs ``tradeplane train`` as the job's entrypoint, records success or failure in its status (which
operator/status/modelversion.py maps onto the ModelVersion) and deletes the cluster afterwards.

Everything here is pure (no I/O, no clock): same objects in, byte-identical manifests out, so the
``tradeplane.io/config-rev`` hash is a reliable "does the live child match" check.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ...api.v1alpha1 import ModelVersionSpec
from ...api.v1alpha1.modelversion import ServingMode, TrainingSpec
from ...workloads.serve.config import (
    RouterOptions,
    ServeConfigError,
    build_family_apps,
    build_serve_config,
    parse_quantity,
    serve_config_v2,
)
from ..naming import HOME_DIR, MODEL_LABEL, MODEL_VERSION_LABEL, common_labels, rayjob_name, rayservice_name
from .common import container_security_context, metadata, owner_reference, pod_security_context, stamp_rev

RAY_API_VERSION: Final = "ray.io/v1"
#: Ray of the platform image (pyproject's ``rl`` extra); KubeRay uses it to talk to the cluster's dashboard.
RAY_VERSION: Final = "2.60.0"
#: Ray's well-known ports; KubeRay's head Service and the Serve Service find them by these names.
HEAD_PORTS: Final = (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("serve", 8000))
SERVE_PORT: Final = 8000
#: The head only coordinates (GCS, dashboard, Serve controller, proxy); ``num-cpus: 0`` keeps replicas and
#: training off it, so a busy model can never starve the cluster's control plane.
HEAD_CPU: Final = "1"
HEAD_MEMORY: Final = "2Gi"
#: Headroom per Serve worker besides its model replica: the router replica may land on any worker
#: (it asks for RouterOptions().num_cpus) and every worker runs a Serve proxy (proxy_location EveryNode),
#: the raylet and an object store, which we pin to OBJECT_STORE_BYTES so that it does not take 30 % of the pod.
ROUTER_CPU: Final = RouterOptions().num_cpus
RAY_OVERHEAD_MEMORY_BYTES: Final = 2**30
OBJECT_STORE_BYTES: Final = 256 * 2**20
#: The training job's cluster lives this long after the job ends (logs, dashboard), then KubeRay deletes it.
DEFAULT_TRAINING_TTL_SECONDS: Final = 600
#: `tradeplane train` counts its label horizon in bars; the platform's training data are 1-minute klines.
TRAINING_BAR_SECONDS: Final = 60
#: Share of spec.training.maxDurationMinutes given to the hyper-parameter search (`--time-budget`): the
#: trainer stops starting trials then and still has time to calibrate and export before the RayJob's
#: activeDeadlineSeconds kills it, so a long search ends with a model instead of nothing.
TRAINING_SEARCH_SHARE: Final = 0.8
HOME_VOLUME: Final = "home"
TMP_VOLUME: Final = "tmp"

_MI: Final = 2**20


class TrainingRenderError(ValueError):
    """spec.training cannot become a `tradeplane train` command line (the message names the field)."""


# --- shared pieces ---------------------------------------------------------------------------------------------


def _spec(mv: Mapping[str, Any]) -> ModelVersionSpec:
    """The parsed spec; a ``ValidationError`` (a ValueError) means a spec the CRD schema could not reject."""
    return ModelVersionSpec.model_validate(mv["spec"])


def _name(mv: Mapping[str, Any]) -> str:
    return str(mv["metadata"]["name"])


def _cpu(cores: float) -> str:
    """Cores as a millicore quantity, rounded up (never hand a replica less than its spec asked for)."""
    return f"{math.ceil(round(cores * 1000, 6))}m"


def _memory(n_bytes: float) -> str:
    """Bytes as a Mi quantity, rounded up."""
    return f"{math.ceil(n_bytes / _MI)}Mi"


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    """Requests equal to limits: Guaranteed QoS, and Ray reads its CPU/memory from the limits, so what Ray
    schedules against is what the node reserved."""
    amount = {"cpu": cpu, "memory": memory}
    return {"requests": dict(amount), "limits": dict(amount)}


def _volumes(home_volume: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The home (model artifacts: ``local://`` URIs resolve under it) and a writable /tmp (Ray's session
    directory; the root filesystem is read-only). ``home_volume`` is a volume *source*, e.g.
    ``{"persistentVolumeClaim": {"claimName": "models"}}`` (a ``name`` in it is ignored: the mounts need ours);
    without it the home is an emptyDir."""
    home = dict(home_volume) if home_volume is not None else {"emptyDir": {}}
    return [{**home, "name": HOME_VOLUME}, {"name": TMP_VOLUME, "emptyDir": {}}]


def _env(omp_threads: int) -> list[dict[str, str]]:
    return [
        {"name": "OMP_NUM_THREADS", "value": str(omp_threads)},
        {"name": "TRADEPLANE_HOME", "value": HOME_DIR},
    ]


def _container(
    name: str,
    *,
    image: str,
    image_pull_policy: str,
    resources: dict[str, Any],
    ports: Sequence[tuple[str, int]],
    omp_threads: int,
) -> dict[str, Any]:
    """A Ray container. No command: KubeRay writes ``ray start`` itself (the image's entry point is not used)."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "env": _env(omp_threads),
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": resources,
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": HOME_VOLUME, "mountPath": HOME_DIR}, {"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }


def _pod_template(
    labels: Mapping[str, str], container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": volumes,
        },
    }


def _head_group(
    labels: Mapping[str, str],
    *,
    image: str,
    image_pull_policy: str,
    home_volume: Mapping[str, Any] | None,
    cpu: str = HEAD_CPU,
    memory: str = HEAD_MEMORY,
    schedulable: bool = False,
) -> dict[str, Any]:
    """The head group; ``schedulable`` lets work run on the head (a training cluster without workers)."""
    params = {"dashboard-host": "0.0.0.0"}
    if not schedulable:
        params["num-cpus"] = "0"
    container = _container(
        "ray-head",
        image=image,
        image_pull_policy=image_pull_policy,
        resources=_resources(cpu, memory),
        ports=HEAD_PORTS,
        omp_threads=max(1, math.ceil(parse_quantity(cpu, "head cpu"))) if schedulable else 1,
    )
    return {"rayStartParams": params, "template": _pod_template(labels, container, _volumes(home_volume))}


def _worker_group(
    group: str,
    labels: Mapping[str, str],
    *,
    replicas: int,
    cpu: str,
    memory: str,
    image: str,
    image_pull_policy: str,
    home_volume: Mapping[str, Any] | None,
    ports: Sequence[tuple[str, int]],
    omp_threads: int,
    params: Mapping[str, str],
) -> dict[str, Any]:
    """A fixed-size worker group (min = max = replicas): the autoscaler is off, the spec decides capacity."""
    container = _container(
        "ray-worker",
        image=image,
        image_pull_policy=image_pull_policy,
        resources=_resources(cpu, memory),
        ports=ports,
        omp_threads=omp_threads,
    )
    return {
        "groupName": group,
        "replicas": replicas,
        "minReplicas": replicas,
        "maxReplicas": replicas,
        "rayStartParams": dict(params),
        "template": _pod_template(labels, container, _volumes(home_volume)),
    }


def _owners_in(namespace: str, owners: Sequence[Mapping[str, Any]], *, controller: bool) -> list[dict[str, Any]]:
    """Owner references, only for owners in the child's namespace: Kubernetes has no cross-namespace
    ownership, and the garbage collector deletes a child whose owner it cannot find in its own namespace.
    With a separate Ray namespace (OperatorConfig.ray_namespace) the operator cleans up by label instead."""
    return [
        owner_reference(o, controller=controller)
        for o in owners
        if o["metadata"].get("namespace", namespace) == namespace
    ]


def model_labels(family: str) -> dict[str, str]:
    """Labels of every child of a model family (the selector of naming.model_selector)."""
    return common_labels() | {MODEL_LABEL: family}


# --- RayService: one per model family --------------------------------------------------------------------------


def _is_served(mv: Mapping[str, Any], spec: ModelVersionSpec) -> bool:
    """Served by Ray Serve: mode rayserve, an artifact to load (a version still training has none yet) and not
    being deleted (a version on its way out leaves the router first, before its finalizer is released)."""
    return (
        spec.serving.mode is ServingMode.RAY_SERVE
        and spec.artifact is not None
        and not mv["metadata"].get("deletionTimestamp")
    )


def served_versions(versions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ModelVersions of one family that the family's RayService serves (and that own it), by name."""
    return sorted((mv for mv in versions if _is_served(mv, _spec(mv))), key=_name)


def _family(versions: Sequence[Mapping[str, Any]]) -> str:
    families = sorted({_spec(mv).model for mv in versions})
    if len(families) != 1:
        raise ServeConfigError(f"render_family_rayservice takes the versions of one family, got {families}")
    return families[0]


def _serve_worker_size(specs: Sequence[ModelVersionSpec]) -> tuple[int, str, str]:
    """(pods, cpu, memory) of the Serve worker group: one pod per model replica, each big enough for the
    largest replica of the family plus the router's share and Ray's own processes (see ROUTER_CPU)."""
    pods = sum(s.serving.replicas for s in specs)
    cores = max(parse_quantity(s.serving.resources.cpu, "spec.serving.resources.cpu") for s in specs)
    mem = max(parse_quantity(s.serving.resources.memory, "spec.serving.resources.memory") for s in specs)
    return pods, _cpu(cores + ROUTER_CPU), _memory(mem + RAY_OVERHEAD_MEMORY_BYTES)


def render_family_rayservice(
    versions: Sequence[dict[str, Any]],
    *,
    image: str,
    namespace: str,
    image_pull_policy: str = "IfNotPresent",
    home_volume: dict[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
    roles: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The RayService ``<family>-serve`` serving every rayserve version of one family; None when none is served.

    ``weights``/``roles``/``kinds``: the rollout's routes (operator/render/routes.py; served versions only),
    which change only the router's ``user_config`` — KubeRay applies that in place, no replica restarts.

    ``versions`` are all ModelVersions of the family as read from the API server (in-process ones included:
    they are simply not served). Roles and weights are the specs' initial routes (rollout.initial_route);
    the rollout controller changes them later through the router's ``user_config`` only. Raises
    ``ServeConfigError`` (a ValueError) for a family Serve cannot run, e.g. two ``immediate`` versions.
    """
    if not versions:
        return None
    family = _family(versions)
    served = served_versions(versions)
    if not served:
        return None
    specs = {_name(mv): _spec(mv) for mv in served}
    config = build_serve_config(
        build_family_apps(family, specs, home=HOME_DIR, weights=weights, roles=roles, kinds=kinds)
    )
    labels = model_labels(family)
    pods, cpu, memory = _serve_worker_size(list(specs.values()))
    workers = _worker_group(
        "serve",
        labels,
        replicas=pods,
        cpu=cpu,
        memory=memory,
        image=image,
        image_pull_policy=image_pull_policy,
        home_volume=home_volume,
        ports=(("serve", SERVE_PORT),),
        omp_threads=1,
        params={"object-store-memory": str(OBJECT_STORE_BYTES)},
    )
    head = _head_group(labels, image=image, image_pull_policy=image_pull_policy, home_volume=home_volume)
    manifest = {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayService",
        "metadata": metadata(
            rayservice_name(family), namespace, labels, _owners_in(namespace, served, controller=False)
        ),
        "spec": {
            "serveConfigV2": serve_config_v2(config),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": False,
                "headGroupSpec": head,
                "workerGroupSpecs": [workers],
            },
        },
    }
    return stamp_rev(manifest)


# --- RayJob: one per ModelVersion with spec.training -----------------------------------------------------------


def _data_path(uri: str, index: int) -> str:
    """A training input as the path `tradeplane train --data` reads: the CLI opens local files only."""
    where = f"spec.training.data[{index}]"
    if uri.startswith("local://"):
        return f"{HOME_DIR}/{uri.removeprefix('local://').lstrip('/')}"
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    if "://" in uri:
        raise TrainingRenderError(
            f"{where}: {uri!r}: `tradeplane train` reads local files only; use local:// (under the tradeplane "
            "home volume) or file:// (a path mounted in the Ray pods)"
        )
    return uri


def _version_suffix(name: str, family: str) -> str:
    """`tradeplane train --version`: the trainer names its manifest ``<model>-<version>``; for a ModelVersion
    named that way (the convention) this gives back the same name."""
    prefix = f"{family}-"
    return name.removeprefix(prefix) if name.startswith(prefix) and len(name) > len(prefix) else name


def artifact_dir(family: str, version: str) -> str:
    """Where training writes the model (on the home volume): ``local://models/<family>/<version>/``."""
    return f"models/{family}/{version}"


def training_command(name: str, spec: ModelVersionSpec) -> list[str]:
    """The `tradeplane train` argv for a ModelVersion's spec.training (see docs for the fields it cannot take).

    Mapped: data → ``--data`` (repeated), featureSet → ``--features``, label → ``--label``, horizonSeconds →
    ``--horizon-bars`` (1-minute bars, rounded up), maxDurationMinutes → ``--time-budget`` (a share of it),
    spec.model → ``--model``; the output goes to the home volume and ``--artifact-uri`` is its local:// URI.
    """
    training = spec.training
    if training is None:
        raise TrainingRenderError(f"ModelVersion/{name}: spec.training is not set")
    version = _version_suffix(name, spec.model)
    out = artifact_dir(spec.model, version)
    argv = ["tradeplane", "train"]
    for i, uri in enumerate(training.data):
        argv += ["--data", _data_path(uri, i)]
    argv += [
        "--out",
        f"{HOME_DIR}/{out}",
        "--features",
        training.feature_set,
        "--label",
        training.label,
        "--horizon-bars",
        str(max(1, math.ceil(training.horizon_seconds / TRAINING_BAR_SECONDS))),
        "--time-budget",
        str(int(training.max_duration_minutes * 60 * TRAINING_SEARCH_SHARE)),
        "--model",
        spec.model,
        "--version",
        version,
        "--artifact-uri",
        f"local://{out}/model.onnx",
    ]
    return argv


def _training_cluster(
    labels: Mapping[str, str],
    training: TrainingSpec,
    *,
    image: str,
    image_pull_policy: str,
    home_volume: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The job's RayCluster: ``workers`` pods of ``resources`` each; with no workers the head does the work."""
    cpu, memory = training.resources.cpu, training.resources.memory
    threads = max(1, math.ceil(parse_quantity(cpu, "spec.training.resources.cpu")))
    if training.workers == 0:
        head = _head_group(
            labels,
            image=image,
            image_pull_policy=image_pull_policy,
            home_volume=home_volume,
            cpu=cpu,
            memory=memory,
            schedulable=True,
        )
        return {"rayVersion": RAY_VERSION, "enableInTreeAutoscaling": False, "headGroupSpec": head}
    head = _head_group(labels, image=image, image_pull_policy=image_pull_policy, home_volume=home_volume)
    workers = _worker_group(
        "train",
        labels,
        replicas=training.workers,
        cpu=cpu,
        memory=memory,
        image=image,
        image_pull_policy=image_pull_policy,
        home_volume=home_volume,
        ports=(),
        omp_threads=threads,
        params={},
    )
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": False,
        "headGroupSpec": head,
        "workerGroupSpecs": [workers],
    }


def _submitter_template(labels: Mapping[str, str], *, image: str, image_pull_policy: str) -> dict[str, Any]:
    """The pod that runs ``ray job submit`` (KubeRay fills in its command): given explicitly so that it is as
    locked down as every other pod (KubeRay's default template has no security context)."""
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": pod_security_context(),
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": image,
                    "imagePullPolicy": image_pull_policy,
                    "resources": _resources("500m", "512Mi"),
                    "securityContext": container_security_context(),
                    "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
        },
    }


def render_training_rayjob(
    mv: dict[str, Any],
    *,
    image: str,
    namespace: str,
    image_pull_policy: str = "IfNotPresent",
    home_volume: dict[str, Any] | None = None,
    ttl_seconds_after_finished: int = DEFAULT_TRAINING_TTL_SECONDS,
) -> dict[str, Any] | None:
    """The RayJob ``<mv>-train`` that trains a ModelVersion; None without spec.training, or once spec.artifact
    is set (training exists to produce the artifact; a ModelVersion is immutable, so there is nothing to redo).

    The entrypoint is :func:`training_command`; ``activeDeadlineSeconds`` is maxDurationMinutes (KubeRay fails
    the job then), and the cluster is deleted ``ttl_seconds_after_finished`` after the job ends. The artifact
    lands on the home volume, so ``home_volume`` must be persistent (a PVC) for the model to outlive the job.
    Raises :class:`TrainingRenderError` for inputs the trainer cannot read.
    """
    spec = _spec(mv)
    training = spec.training
    if training is None or spec.artifact is not None:
        return None
    name = _name(mv)
    labels = model_labels(spec.model) | {MODEL_VERSION_LABEL: name}
    cores = parse_quantity(training.resources.cpu, "spec.training.resources.cpu")
    manifest = {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": metadata(rayjob_name(name), namespace, labels, _owners_in(namespace, [mv], controller=True)),
        "spec": {
            "entrypoint": shlex.join(training_command(name, spec)),
            # the trainer runs where its CPUs are reserved: on a worker, never on the num-cpus-0 head
            "entrypointNumCpus": cores,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "activeDeadlineSeconds": training.max_duration_minutes * 60,
            # a failed search fails again on the same data; a retry would only burn the deadline twice
            "backoffLimit": 0,
            "submitterPodTemplate": _submitter_template(labels, image=image, image_pull_policy=image_pull_policy),
            "rayClusterSpec": _training_cluster(
                labels, training, image=image, image_pull_policy=image_pull_policy, home_volume=home_volume
            ),
        },
    }
    return stamp_rev(manifest)
