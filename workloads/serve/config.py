"""Render a model family's Ray Serve applications from its ModelVersion specs (pure: no Ray, no numpy).

Why pure and here: the operator renders these dicts into a RayService's ``serveConfigV2`` and the local deploy
path (:func:`tradeplane.workloads.serve.app.deploy`) hands the very same dicts to Serve, so what the unit tests
check is what runs. It imports only the API types, so the operator image (no numpy, no Ray) can use it.

Why one application per version plus one router application, and everything mutable in ``user_config``:
Serve derives the code version of *every* deployment of an application from the application's
``import_path`` and ``args``; any change to ``args`` restarts all its replicas. So ``args`` hold only what
never changes — a version's artifact (a ModelVersion is immutable), the family name — and everything a
rollout changes (canary weights, promotion, a version joining or leaving the router, batching) lives in
``user_config``, which Serve applies by calling the replicas' ``reconfigure``: no restart, no lost requests.
Adding a canary adds its application; the stable's replicas never notice.

For family ``f`` with versions ``v1`` (stable), ``v2`` (canary) the applications are::

    - name: f                  route_prefix: /models/f      import_path: ...app:build_router_app
      args: {family: f, home}
      deployments: [{name: router, user_config: {routes: {v1: {role: stable, weight: 0}, v2: {role: canary,
                     weight: 0.1, kind: weight}}, versions: {v1: {feature_names, uri}, v2: ...}}}]
    - name: f--v1              route_prefix: null (handles only)   import_path: ...app:build_model_app
      args: {family: f, version: v1, home, uri, sha256, feature_names}
      deployments: [{name: model-v1, num_replicas ← spec.serving.replicas,
                     ray_actor_options ← spec.serving.resources, user_config {max_batch_size,
                     batch_wait_timeout_s} ← spec.serving batching}]
    - name: f--v2 ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from ...api.v1alpha1.modelversion import ModelVersionSpec, ServingMode

MODEL_IMPORT_PATH: Final = "tradeplane.workloads.serve.app:build_model_app"
ROUTER_IMPORT_PATH: Final = "tradeplane.workloads.serve.app:build_router_app"
ROUTER_DEPLOYMENT: Final = "router"
MODEL_DEPLOYMENT_PREFIX: Final = "model-"
#: The roles of engine/decision/router.py (checked equal by a unit test; not imported: no numpy here).
STABLE: Final = "stable"
CANARY: Final = "canary"
SHADOW: Final = "shadow"
ROLES: Final = (STABLE, CANARY, SHADOW)
#: A canary's unit, as engine/decision/router.py KINDS: share of symbols (the default) or of decisions.
COHORT: Final = "cohort"
WEIGHT: Final = "weight"
KINDS: Final = (COHORT, WEIGHT)
#: URI schemes a Serve replica can open itself (object stores need a mount: use file:// on the volume).
LOADABLE_SCHEMES: Final = ("local://", "file://")
#: A sha256 mismatch or a missing file does not heal by retrying; a few retries cover a slow volume mount.
MODEL_CONSTRUCTOR_RETRIES: Final = 3
#: A shadow that answers later than this after the routed model is recorded as failed: it must not stall a
#: decision. Generous against a loaded replica's batch wait, small against a decision's deadline.
DEFAULT_SHADOW_TIMEOUT_S: Final = 0.05

_WEIGHT_TOL = 1e-9
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_SUFFIX = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}

Role = Literal["stable", "canary", "shadow"]
Kind = Literal["cohort", "weight"]


class ServeConfigError(ValueError):
    """A spec or override that cannot become a Serve application; the message names the version and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Strict):
    """One version's place in the router: its role and, for a canary, its share in [0, 1] of ``kind``:
    ``cohort`` (symbols, the default: a route without a kind) or ``weight`` (decisions)."""

    role: Role
    weight: float = Field(default=0.0, ge=0.0, le=1.0)
    kind: Kind = COHORT

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``kind`` only when it is not the default, so a cohort route renders as it always did (no
        ``user_config`` change, hence no reconfigure, for families that never use weight steps)."""
        out: dict[str, Any] = handler(self)
        if out.get("kind") == COHORT:
            del out["kind"]
        return out


class VersionInfo(_Strict):
    """What the router needs of a version: its row layout, and where its artifact (and interval.json) is."""

    feature_names: list[str] = Field(min_length=1)
    uri: str


class RouterConfig(_Strict):
    """The router deployment's ``user_config``: the whole routing table (declarative, replaced whole)."""

    routes: dict[str, Route]
    versions: dict[str, VersionInfo]
    #: how much longer than the routed model the shadows may take before they are recorded as failed
    shadow_timeout_s: float = Field(default=DEFAULT_SHADOW_TIMEOUT_S, gt=0.0, le=10.0)


class BatchingConfig(_Strict):
    """A model deployment's ``user_config``: rows per batch and the longest wait to fill one."""

    max_batch_size: int = Field(ge=1, le=4096)
    batch_wait_timeout_s: float = Field(ge=0.0, le=1.0)


class ModelArgs(_Strict):
    """A version application's ``args``: the immutable artifact it serves."""

    family: str
    version: str
    home: str | None = None  #: base directory of ``local://`` URIs inside the replicas
    uri: str
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$")
    feature_names: list[str] = Field(min_length=1)


class RouterArgs(_Strict):
    """The router application's ``args`` (never change during a family's life)."""

    family: str
    home: str | None = None


@dataclass(frozen=True)
class RouterOptions:
    """Sizing of the router (ingress) deployment; it only routes, so a fraction of a CPU is plenty."""

    num_replicas: int = 1
    num_cpus: float = 0.25
    max_ongoing_requests: int = 256
    shadow_timeout_s: float = DEFAULT_SHADOW_TIMEOUT_S


def model_deployment_name(version: str) -> str:
    """The deployment that serves ``version`` (a DNS label, so no ``#``, which Serve reserves)."""
    return f"{MODEL_DEPLOYMENT_PREFIX}{version}"


def model_app_name(family: str, version: str) -> str:
    """The application of one version (``--`` keeps it apart from any family name, which has no ``--``
    prefix convention, and is checked for collisions by :func:`build_serve_config`)."""
    return f"{family}--{version}"


def default_route_prefix(family: str) -> str:
    return f"/models/{family}"


def parse_quantity(value: str, where: str) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``512Mi``, ``2Gi``) as a plain number (cores or bytes)."""
    m = _QUANTITY.match(value)
    if m is None:
        raise ServeConfigError(f"{where}: not a Kubernetes quantity: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def default_routes(versions: Mapping[str, ModelVersionSpec]) -> dict[str, Route]:
    """Roles from the rollout spec, as the local runner assigns them (workloads/local/models.py): immediate →
    stable; canary → canary at its first step's weight and unit (the rollout controller moves it later);
    shadow → scored on every decision, never acted on."""
    out: dict[str, Route] = {}
    for name in sorted(versions):
        role, weight = versions[name].rollout.initial_route()
        kind = versions[name].rollout.initial_kind() if role == CANARY else COHORT
        out[name] = Route(role=role, weight=weight, kind=kind)
    return out


def resolve_routes(
    versions: Mapping[str, ModelVersionSpec],
    *,
    weights: Mapping[str, float] | None = None,
    roles: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
) -> dict[str, Route]:
    """The spec's routes with the rollout controller's overrides: ``roles`` (version → role, e.g. a promoted
    canary becomes stable) first, then ``weights`` (canary version → share in [0, 1]) and ``kinds`` (canary
    version → the share's unit, ``cohort`` or ``weight``; an unnamed canary keeps its spec's)."""
    routes = default_routes(versions)
    for name, role in (roles or {}).items():
        if name not in routes:
            raise ServeConfigError(f"roles: {name!r} is not a version of this family (versions: {sorted(routes)})")
        if role not in ROLES:
            raise ServeConfigError(f"roles[{name!r}]: role must be one of {ROLES}, got {role!r}")
        keep = routes[name] if role == CANARY else Route(role=STABLE)
        routes[name] = Route.model_validate({"role": role, "weight": keep.weight, "kind": keep.kind})
    for name in set(weights or {}) | set(kinds or {}):
        route = routes.get(name)
        if route is None or route.role != CANARY:
            canaries = sorted(n for n, r in routes.items() if r.role == CANARY)
            what = "weights" if name in (weights or {}) else "kinds"
            raise ServeConfigError(f"{what}: {name!r} is not a canary of this family (canaries: {canaries})")
        weight = (weights or {}).get(name, route.weight)
        w = float(weight)
        if not 0.0 <= w <= 1.0:  # also rejects NaN
            raise ServeConfigError(f"weights[{name!r}]: must be in [0, 1], got {weight!r}")
        kind = (kinds or {}).get(name, route.kind)
        if kind not in KINDS:
            raise ServeConfigError(f"kinds[{name!r}]: must be one of {KINDS}, got {kind!r}")
        routes[name] = Route.model_validate({"role": CANARY, "weight": w, "kind": kind})
    check_routes(routes)
    return routes


def check_routes(routes: Mapping[str, Route]) -> None:
    """The invariants ModelRouter enforces, checked before anything is rendered or deployed."""
    stables = sorted(n for n, r in routes.items() if r.role == STABLE)
    if len(stables) > 1:
        raise ServeConfigError(f"routes: exactly one stable version allowed, got {stables}")
    total = math.fsum(r.weight for r in routes.values() if r.role == CANARY)
    if total > 1.0 + _WEIGHT_TOL:
        raise ServeConfigError(f"routes: canary weights sum to {total:g} > 1")


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


def parse_router_config(user_config: Mapping[str, Any]) -> RouterConfig:
    """The router's ``user_config`` validated; errors name the field (``routes.v2.weight: ...``)."""
    try:
        cfg = RouterConfig.model_validate(user_config)
    except ValidationError as exc:
        raise ServeConfigError(f"router user_config: {_first_error(exc)}") from None
    unknown = sorted(set(cfg.routes) - set(cfg.versions))
    if unknown:
        raise ServeConfigError(f"router user_config: routes name versions missing from versions: {unknown}")
    check_routes(cfg.routes)
    return cfg


def parse_batching(user_config: Mapping[str, Any], version: str) -> BatchingConfig:
    try:
        return BatchingConfig.model_validate(user_config)
    except ValidationError as exc:
        raise ServeConfigError(f"{model_deployment_name(version)} user_config: {_first_error(exc)}") from None


def parse_model_args(args: Mapping[str, Any]) -> ModelArgs:
    try:
        return ModelArgs.model_validate(args)
    except ValidationError as exc:
        raise ServeConfigError(f"model application args: {_first_error(exc)}") from None


def parse_router_args(args: Mapping[str, Any]) -> RouterArgs:
    try:
        return RouterArgs.model_validate(args)
    except ValidationError as exc:
        raise ServeConfigError(f"router application args: {_first_error(exc)}") from None


def _artifact(name: str, spec: ModelVersionSpec) -> tuple[str, str, list[str]]:
    where = f"ModelVersion/{name}"
    if spec.artifact is None or spec.feature_signature is None:
        raise ServeConfigError(f"{where}: spec.artifact: not trained yet (Serve needs the model file)")
    uri = spec.artifact.uri
    if not uri.startswith(LOADABLE_SCHEMES):
        raise ServeConfigError(
            f"{where}: spec.artifact.uri: {uri!r}: a Serve replica reads {' or '.join(LOADABLE_SCHEMES)} "
            "(mount the artifact store and use file://)"
        )
    return uri, spec.artifact.sha256, list(spec.feature_signature.names)


def batching_of(spec: ModelVersionSpec) -> BatchingConfig:
    """``spec.serving``'s batching as the model deployment's ``user_config`` (ms → s)."""
    return BatchingConfig(
        max_batch_size=spec.serving.max_batch_size, batch_wait_timeout_s=spec.serving.batch_wait_timeout_ms / 1000.0
    )


def build_model_app(
    family: str, version: str, spec: ModelVersionSpec, *, home: str | None = None, access_log: bool = False
) -> dict[str, Any]:
    """One version's application: an ONNX deployment with dynamic batching, reachable by handle only."""
    uri, sha256, names = _artifact(version, spec)
    serving = spec.serving
    where = f"ModelVersion/{version}: spec.serving.resources"
    args = ModelArgs(family=family, version=version, home=home, uri=uri, sha256=sha256, feature_names=names)
    return {
        "name": model_app_name(family, version),
        "route_prefix": None,
        "import_path": MODEL_IMPORT_PATH,
        "args": args.model_dump(),
        "logging_config": {"enable_access_log": access_log},
        "deployments": [
            {
                "name": model_deployment_name(version),
                "num_replicas": serving.replicas,
                # ≥ one full batch queued while the previous one runs, or batches never fill (Serve warns too)
                "max_ongoing_requests": max(2 * serving.max_batch_size, 8),
                "max_constructor_retry_count": MODEL_CONSTRUCTOR_RETRIES,
                "user_config": batching_of(spec).model_dump(),
                "ray_actor_options": {
                    "num_cpus": parse_quantity(serving.resources.cpu, f"{where}.cpu"),
                    "memory": int(parse_quantity(serving.resources.memory, f"{where}.memory")),
                },
            }
        ],
    }


def build_router_app(
    family: str,
    versions: Mapping[str, ModelVersionSpec],
    *,
    home: str | None = None,
    routes: Mapping[str, Route] | None = None,
    route_prefix: str | None = None,
    options: RouterOptions = RouterOptions(),
    access_log: bool = False,
) -> dict[str, Any]:
    """The family's router application (the HTTP ingress); ``routes`` default to the specs' rollout."""
    table = dict(routes) if routes is not None else default_routes(versions)
    check_routes(table)
    unknown = sorted(set(table) - set(versions))
    if unknown:
        raise ServeConfigError(f"routes name versions that are not served: {unknown}")
    infos = {}
    for name in sorted(versions):
        uri, _, names = _artifact(name, versions[name])
        infos[name] = VersionInfo(feature_names=names, uri=uri)
    user_config = RouterConfig(routes=table, versions=infos, shadow_timeout_s=options.shadow_timeout_s)
    return {
        "name": family,
        "route_prefix": route_prefix or default_route_prefix(family),
        "import_path": ROUTER_IMPORT_PATH,
        "args": RouterArgs(family=family, home=home).model_dump(),
        "logging_config": {"enable_access_log": access_log},
        "deployments": [
            {
                "name": ROUTER_DEPLOYMENT,
                "num_replicas": options.num_replicas,
                "max_ongoing_requests": options.max_ongoing_requests,
                "user_config": user_config.model_dump(),
                "ray_actor_options": {"num_cpus": options.num_cpus},
            }
        ],
    }


def build_family_apps(
    family: str,
    versions: Mapping[str, ModelVersionSpec],
    *,
    home: str | None = None,
    weights: Mapping[str, float] | None = None,
    roles: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
    route_prefix: str | None = None,
    router: RouterOptions = RouterOptions(),
    access_log: bool = False,
) -> list[dict[str, Any]]:
    """A family's Serve applications (``ServeApplicationSchema`` dicts): its router, then one per version.

    ``versions`` are the family's ModelVersions by name; those with ``spec.serving.mode: rayserve`` are
    served (a family whose stable runs in-process has no stable in the router: the decide workload routes
    it itself and calls the served versions through ``ServeScorer``). ``weights``/``roles``/``kinds`` are the
    rollout controller's current state (:func:`resolve_routes`); they change only the router's ``user_config``.
    ``home`` resolves ``local://`` URIs inside the replicas. ``access_log`` is off: Serve would write a log
    line per scored request.
    """
    for name, spec in versions.items():
        if spec.model != family:
            raise ServeConfigError(f"ModelVersion/{name}: spec.model is {spec.model!r}, not family {family!r}")
    served = {n: s for n, s in versions.items() if s.serving.mode is ServingMode.RAY_SERVE}
    if not served:
        raise ServeConfigError(
            f"model family {family!r}: no ModelVersion with spec.serving.mode rayserve (versions: {sorted(versions)})"
        )
    unserved = sorted((set(weights or {}) | set(roles or {}) | set(kinds or {})) - set(served))
    if unserved:
        raise ServeConfigError(f"weights/roles/kinds name versions not served by Ray Serve: {unserved}")
    routes = resolve_routes(served, weights=weights, roles=roles, kinds=kinds)
    apps = [
        build_router_app(
            family, served, home=home, routes=routes, route_prefix=route_prefix, options=router, access_log=access_log
        )
    ]
    apps += [build_model_app(family, n, served[n], home=home, access_log=access_log) for n in sorted(served)]
    return apps


def build_serve_config(
    applications: Sequence[Mapping[str, Any]],
    *,
    host: str = "0.0.0.0",
    port: int = 8000,
    proxy_location: str = "EveryNode",
) -> dict[str, Any]:
    """The multi-application config (``ServeDeploySchema``; a RayService's ``serveConfigV2``)."""
    names = [a["name"] for a in applications]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ServeConfigError(f"applications: duplicate names {dupes}")
    prefixes = [a["route_prefix"] for a in applications if a.get("route_prefix") is not None]
    clash = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if clash:
        raise ServeConfigError(f"applications: duplicate route prefixes {clash}")
    return {
        "proxy_location": proxy_location,
        "http_options": {"host": host, "port": port},
        "applications": [dict(a) for a in applications],
    }


def serve_config_v2(serve_config: Mapping[str, Any]) -> str:
    """The YAML string a RayService carries in ``spec.serveConfigV2``."""
    return yaml.safe_dump(dict(serve_config), sort_keys=False)
