"""decide's view of the rollout: each family's ``routes.json`` (the operator's ``<family>-routes`` ConfigMap,
mounted at ``/etc/tradeplane/routes/<family>/routes.json``) applied to the live ModelRouters, without a restart.

Why a poll, and from where: the ConfigMap is deliberately not in the desk's config-rev hash, so a canary
weight change never restarts decide. In the cluster decide reads the ConfigMap itself through the API server
(:class:`ConfigMapSource`, option ``routes_from_api``; the workload's Role may ``get`` ConfigMaps): a step
reaches the router within ``poll_s``, where the mounted volume would wait for the kubelet's sync (a minute
or more). The mounted file (:class:`FileSource`) stays the fallback while the API is unreachable, and is the
only source outside a cluster. The watcher reads each source at most every ``poll_s``, acts only on a new
``revision``, and keeps the last good routing when the routes are missing, partial or invalid (it says why,
once per bad revision): a broken document must never take the desk's scoring down.

Weights, with their units (``kinds``: ``weight`` = share of decisions, ``cohort`` = share of symbols; a
canary without a kind, e.g. from an older operator, is ``cohort``), go to :meth:`ModelRouter.set_weights`
(the router swaps its table atomically). A change of *roles*
(a promotion: a canary becomes the stable; a rollback after promotion) cannot be expressed as weights, so
the family's router is rebuilt from its :class:`RoutedModel` list with the new roles and replaces the old one
in ``routers_by_family`` (and ``on_router`` is called, for holders of the old reference).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

from ...engine.decision.router import COHORT, KINDS, ROLES, STABLE, ModelRouter, RoutedModel

#: Where the operator mounts the routes (operator/naming.py ROUTES_DIR; a unit test keeps the two equal).
ROUTES_DIR: Final = Path("/etc/tradeplane/routes")
ROUTES_FILE: Final = "routes.json"


def routes_path(family: str, root: Path = ROUTES_DIR) -> Path:
    return root / family / ROUTES_FILE


@dataclass(frozen=True)
class Routes:
    """One parsed ``routes.json``."""

    family: str
    revision: int
    weights: dict[str, float]
    roles: dict[str, str]
    kinds: dict[str, str] = field(default_factory=dict)  #: canary → unit; absent → cohort

    def kind(self, version: str) -> str:
        return self.kinds.get(version, COHORT)


def parse_routes(text: str, family: str) -> Routes:
    """The document, validated; ValueError naming the field otherwise."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("family") != family:
        raise ValueError(f"family: {doc.get('family')!r}, expected {family!r}")
    revision = doc.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise ValueError(f"revision: {revision!r} is not a non-negative integer")
    weights, roles, kinds = doc.get("weights", {}), doc.get("roles", {}), doc.get("kinds", {})
    if not isinstance(weights, dict) or not isinstance(roles, dict) or not isinstance(kinds, dict):
        raise ValueError("weights, roles and kinds must be objects")
    for version, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"kinds[{version!r}]: {kind!r} is not one of {KINDS}")
    out_w: dict[str, float] = {}
    for version, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or not 0 <= w <= 1:
            raise ValueError(f"weights[{version!r}]: {w!r} is not in [0, 1]")
        out_w[str(version)] = float(w)
    for version, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles[{version!r}]: {role!r} is not one of {ROLES}")
    if sum(1 for r in roles.values() if r == STABLE) > 1:
        raise ValueError(f"roles: more than one stable version: {roles}")
    if math.fsum(out_w.values()) > 1 + 1e-9:
        raise ValueError(f"weights sum to {math.fsum(out_w.values()):g} > 1")
    return Routes(family, revision, out_w, {str(k): str(v) for k, v in roles.items()},
                  {str(k): str(v) for k, v in kinds.items()})  # fmt: skip


class RoutesMissingError(Exception):
    """The source has no routes for the family (yet): the spec's routes hold."""


class RoutesSource(Protocol):
    """Where one family's ``routes.json`` text comes from; ``where`` names it in messages. ``read`` raises
    :class:`RoutesMissingError` when there are none, ``OSError`` when the source cannot be read now."""

    @property
    def where(self) -> str: ...

    def read(self) -> str: ...


@dataclass(frozen=True)
class FileSource:
    """The mounted ConfigMap volume (or any file): ``<root>/<family>/routes.json``."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            raise RoutesMissingError(f"{self.path} does not exist") from None


class ConfigMapReader(Protocol):
    """The one call of ``kubernetes.client.CoreV1Api`` this module needs."""

    def read_namespaced_config_map(self, name: str, namespace: str, *, _request_timeout: float | None = ...) -> Any: ...


@dataclass(frozen=True)
class ConfigMapSource:
    """The ``<family>-routes`` ConfigMap read through the API server (key ``routes.json``); ``fallback``
    (the mounted file) is read when the API cannot be reached or refuses, so routes still move, later."""

    api: ConfigMapReader
    namespace: str
    name: str
    fallback: RoutesSource | None = None
    timeout_s: float = 2.0

    @property
    def where(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    def read(self) -> str:
        try:
            cm = self.api.read_namespaced_config_map(self.name, self.namespace, _request_timeout=self.timeout_s)
        except Exception as exc:  # kubernetes ApiException, urllib3 errors: the API is not the trading path
            status = getattr(exc, "status", None)
            if status == 404:
                raise RoutesMissingError(f"{self.where} does not exist") from None
            if self.fallback is not None:
                return self.fallback.read()
            raise OSError(f"{self.where}: {f'HTTP {status}' if status else type(exc).__name__}") from None
        text = (cm.data or {}).get(ROUTES_FILE)
        if text is None:
            raise RoutesMissingError(f"{self.where} has no {ROUTES_FILE}")
        return str(text)


def configmap_sources(api: ConfigMapReader, namespace: str, families: Sequence[str], *,
                      root: Path = ROUTES_DIR) -> dict[str, RoutesSource]:  # fmt: skip
    """Each family's ConfigMap (named as the operator names it), with its mounted file as the fallback."""
    return {f: ConfigMapSource(api, namespace, routes_config_map_name(f), FileSource(routes_path(f, root)))
            for f in families}  # fmt: skip


def routes_config_map_name(family: str) -> str:
    """``<family>-routes`` (operator/naming.py routes_config_map_name; a unit test keeps the two equal)."""
    return f"{family}-routes"


class RoutesWatcher:
    """Applies each family's routes file to its live router when its revision changes.

    ``models_by_family``: the RoutedModels each router was built from — needed only to rebuild a router
    for a role change (promotion); without them a role change is reported and the weights alone applied."""

    def __init__(
        self,
        paths_by_family: Mapping[str, Path | RoutesSource],
        routers_by_family: MutableMapping[str, ModelRouter],
        poll_s: float = 2.0,
        *,
        models_by_family: Mapping[str, Sequence[RoutedModel]] | None = None,
        on_router: Callable[[str, ModelRouter], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources: dict[str, RoutesSource] = {
            f: FileSource(p) if isinstance(p, Path) else p for f, p in paths_by_family.items()
        }
        self._routers = routers_by_family
        self._poll_s = poll_s
        self._models = {f: list(m) for f, m in (models_by_family or {}).items()}
        self._on_router = on_router
        self._clock = clock
        self._next = -math.inf
        self.applied: dict[str, int] = {}  #: family → revision in effect
        self._rejected: dict[str, str] = {}  #: family → the last problem reported (reported once)

    def check(self, *, force: bool = False) -> list[str]:
        """Read the files when ``poll_s`` has passed (or ``force``); apply new revisions. Returns one message
        per change applied or problem found (empty when nothing happened)."""
        now = self._clock()
        if not force and now < self._next:
            return []
        self._next = now + self._poll_s
        out: list[str] = []
        for family, source in sorted(self._sources.items()):
            msg = self._check_family(family, source)
            if msg:
                out.append(msg)
        return out

    def _reject(self, family: str, why: str) -> str:
        keep = self.applied.get(family)
        msg = f"{family}: routes not applied ({why}); keeping " + (f"revision {keep}" if keep else "the spec's routes")
        if self._rejected.get(family) == msg:
            return ""
        self._rejected[family] = msg
        return msg

    def _check_family(self, family: str, source: RoutesSource) -> str:
        router = self._routers.get(family)
        if router is None:
            return ""
        try:
            text = source.read()
        except RoutesMissingError as exc:
            return self._reject(family, str(exc))
        except OSError as exc:
            return self._reject(family, f"{source.where}: {exc.strerror or exc}")
        try:
            routes = parse_routes(text, family)
        except ValueError as exc:
            return self._reject(family, f"{source.where}: {exc}")
        if self.applied.get(family) == routes.revision:
            return ""
        try:
            msg = self._apply(family, router, routes)
        except ValueError as exc:
            return self._reject(family, f"revision {routes.revision}: {exc}")
        self.applied[family] = routes.revision
        self._rejected.pop(family, None)
        return msg

    def _apply(self, family: str, router: ModelRouter, routes: Routes) -> str:
        mine = set(router.versions())
        roles = {v: r for v, r in routes.roles.items() if v in mine}
        current = self._roles(family)
        if current is not None and any(current.get(v) != r for v, r in roles.items()):
            return self._rebuild(family, routes, roles)
        canaries = {v for v, r in (current if current is not None else roles).items() if r == "canary"} & mine
        weights = {v: w for v, w in routes.weights.items() if v in canaries}
        kinds = {v: routes.kind(v) for v in weights}
        router.set_weights(weights, kinds)
        note = "" if current is not None or not roles else " (roles not checked: no models to rebuild from)"
        return f"{family}: routes revision {routes.revision} applied: weights {weights}, kinds {kinds}{note}"

    def _roles(self, family: str) -> dict[str, str] | None:
        models = self._models.get(family)
        return None if models is None else {m.version: m.role for m in models}

    def _rebuild(self, family: str, routes: Routes, roles: Mapping[str, str]) -> str:
        models = [
            replace(
                m,
                role=roles.get(m.version, m.role),
                weight=routes.weights.get(m.version, 0.0),
                kind=routes.kind(m.version),
            )
            if roles.get(m.version, m.role) == "canary"
            else replace(m, role=roles.get(m.version, m.role), weight=0.0, kind=COHORT)
            for m in self._models[family]
        ]
        router = ModelRouter(models)  # validates everything before anything is replaced
        self._routers[family] = router
        self._models[family] = models
        if self._on_router is not None:
            self._on_router(family, router)
        stable = next((m.version for m in models if m.role == STABLE), None)
        return f"{family}: routes revision {routes.revision} applied: stable {stable}, roles {dict(roles)}"


class _Desk(Protocol):
    @property
    def strategies(self) -> Sequence[Any]: ...


def desk_routes(families: Mapping[str, Any], desk: _Desk, *, root: Path = ROUTES_DIR, poll_s: float = 2.0,
                sources: Mapping[str, RoutesSource] | None = None) -> RoutesWatcher:  # fmt: skip
    """A watcher over the families of one desk (``FamilyModels`` by family, as the models loader returns them):
    weights go to the routers the strategies hold; a rebuilt router (a promotion) replaces the old one in every
    strategy that held it. ``sources`` (e.g. :func:`configmap_sources`) replace the files under ``root``."""
    held: dict[str, ModelRouter] = {f: fm.router for f, fm in families.items()}  #: what the strategies hold now

    def swap(family: str, router: ModelRouter) -> None:
        for s in desk.strategies:
            if s.router is held[family]:
                s.router = router
        held[family] = router

    where: dict[str, Path | RoutesSource] = {f: routes_path(f, root) for f in families}
    where.update(sources or {})
    return RoutesWatcher(where, dict(held), poll_s,
                         models_by_family={f: fm.models for f, fm in families.items()}, on_router=swap)  # fmt: skip


def api_sources(namespace: str, families: Sequence[str], *, root: Path = ROUTES_DIR) -> dict[str, RoutesSource]:
    """:func:`configmap_sources` over a client of the workload's own (see ``report.workload_api_client``)."""
    from kubernetes import client

    from .report import workload_api_client

    return configmap_sources(client.CoreV1Api(workload_api_client()), namespace, families, root=root)
