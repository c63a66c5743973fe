"""The two Serve deployments of a model family: one ONNX model per ModelVersion, and the family's router.

**Model** (:class:`OnnxModel`, one deployment per version, each in its own application): loads the artifact,
refuses it unless its sha256 and feature names match the spec, and scores with the engine's
:class:`OnnxScorer` (one ORT thread) behind ``@serve.batch``. Batches count *rows* (``batch_size_fn``), so
``spec.serving.maxBatchSize`` means what the API says; a request larger than a batch is scored on its own
instead of failing. Rows are checked before they are queued, so one malformed request cannot fail the batch
it would have joined. Batching parameters are the deployment's ``user_config``: :meth:`OnnxModel.reconfigure`.

**Router** (:class:`FamilyRouter`, the family's ingress): its ``user_config`` holds the routing table and the
versions it routes to; every routing decision is the engine's :class:`ModelRouter` (a canary's share of
symbols by the symbol's blake2b cohort, or of decisions by the blake2b of (symbol, request key); canary
ranges in version-name order, exactly as the in-process router of a local run), so a symbol — or a decision
with the same key — goes to the same version in-process and through Serve. The ModelRouter here is a
routing table only: its scorers carry the feature names; scoring happens in the model deployments, the
routed one and every shadow concurrently. A failing shadow is recorded in ``error``, never raised (as in-process).
:meth:`FamilyRouter.reconfigure` validates the new table completely, then swaps it in with one assignment:
requests in flight finish on the old table; an invalid table leaves the old one in force.

Both record what tests and operators need to see: replica/actor id (a reconfigure must not change them),
batch sizes, and how often they were reconfigured.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, Protocol, cast

import numpy as np
import numpy.typing as npt
import orjson
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from ...engine.calibration import ProbabilityInterval
from ...engine.decision.router import ModelRouter, RoutedModel
from ...engine.models.onnx_scorer import OnnxScorer
from ..local.manifests import ManifestError
from ..local.models import artifact_path, interval_of
from ..training.registry import INTERVAL_FILE
from .artifacts import ArtifactError, load_artifact
from .config import (
    SHADOW,
    RouterConfig,
    ServeConfigError,
    model_app_name,
    model_deployment_name,
    parse_batching,
    parse_model_args,
    parse_router_args,
    parse_router_config,
)

FloatArray = npt.NDArray[np.float64]

#: How many recent batches a replica remembers for :meth:`OnnxModel.stats`.
BATCH_LOG: Final = 4096


def _identity() -> dict[str, Any]:
    """Which replica this is: Serve's replica id, the Ray actor id and the OS process (stable across a
    reconfigure, new after a restart)."""
    ctx = serve.get_replica_context()
    return {
        "replica_id": ctx.replica_id.unique_id,
        "actor_id": ray.get_runtime_context().get_actor_id(),
        "pid": os.getpid(),
    }


def _rows_in(items: list[FloatArray]) -> int:
    return sum(len(x) for x in items)


class _BatchControl(Protocol):
    """The setters and getters ``@serve.batch`` attaches to the method it wraps (not in its type)."""

    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...

    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...

    def _get_max_batch_size(self) -> int: ...

    def _get_batch_wait_timeout_s(self) -> float: ...


def _batching(method: object) -> _BatchControl:
    return cast(_BatchControl, method)


class OnnxModel:
    """One ModelVersion's ONNX graph behind dynamic batching."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        spec = parse_model_args(args)
        version = spec.version
        data = load_artifact(version, spec.uri, spec.sha256, Path(spec.home) if spec.home else None)
        try:
            self._scorer = OnnxScorer(data, expected_feature_names=spec.feature_names)
        except ValueError as exc:
            raise ArtifactError(f"ModelVersion/{version}: spec.featureSignature.names: {exc}") from None
        self._version = version
        self._n_features = len(spec.feature_names)
        self._identity = _identity()
        self._started = time.time()
        self._log: deque[tuple[int, int]] = deque(maxlen=BATCH_LOG)  #: (requests, rows) per batch
        self._reconfigures = 0
        self._inflight = 0  #: requests inside predict() right now
        #: until the first reconfigure: the decorator's defaults, which are ServingSpec's defaults
        self._max_batch_size = _batching(self._batched)._get_max_batch_size()
        self._wait_s = _batching(self._batched)._get_batch_wait_timeout_s()

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Serve calls this with the deployment's ``user_config`` at start and on every change."""
        cfg = parse_batching(user_config, self._version)
        control = _batching(self._batched)
        control.set_max_batch_size(cfg.max_batch_size)
        control.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._max_batch_size = cfg.max_batch_size
        self._wait_s = cfg.batch_wait_timeout_s
        self._reconfigures += 1

    async def predict(self, rows: Any) -> FloatArray:
        """Calibrated p_up per row (shape [N]) for rows [N, F] or one row [F], in feature-signature order.

        A request alone in the replica (after one turn of the event loop lets requests that arrived together
        show up), or one at least a batch large, is scored at once: waiting ``batch_wait_timeout_s`` for
        company that is not there would only add latency. Under load requests overlap and are batched.
        """
        x = self._matrix(rows)
        self._inflight += 1
        try:
            await asyncio.sleep(0)
            if self._inflight == 1 or len(x) >= self._max_batch_size:
                return self._score([x])[0]
            result: FloatArray = await self._batched(x)
            return result
        finally:
            self._inflight -= 1

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002, batch_size_fn=_rows_in)
    async def _batched(self, items: list[FloatArray]) -> list[FloatArray]:
        return self._score(items)

    def _score(self, items: list[FloatArray]) -> list[FloatArray]:
        """One ORT call for the whole batch, split back per request."""
        x = items[0] if len(items) == 1 else np.concatenate(items)
        p = self._scorer.predict(x)
        self._log.append((len(items), len(x)))
        if len(items) == 1:
            return [p]
        return list(np.split(p, np.cumsum([len(i) for i in items[:-1]])))

    def _matrix(self, rows: Any) -> FloatArray:
        x = np.ascontiguousarray(rows, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self._n_features or len(x) == 0:
            raise ValueError(
                f"{self._version}: expected rows of shape [N, {self._n_features}] or [{self._n_features}], "
                f"got {np.shape(rows)}"
            )
        return x

    def stats(self) -> dict[str, Any]:
        """Identity, batching settings and the recent batches: requests per batch (a histogram), rows."""
        log = list(self._log)
        return {
            **self._identity,
            "version": self._version,
            "started_at": self._started,
            "reconfigures": self._reconfigures,
            "max_batch_size": self._max_batch_size,
            "batch_wait_timeout_s": self._wait_s,
            "batches": len(log),
            "requests": sum(r for r, _ in log),
            "rows": sum(n for _, n in log),
            "requests_per_batch": dict(sorted(Counter(r for r, _ in log).items())),
            "max_rows_per_batch": max((n for _, n in log), default=0),
        }

    def reset_stats(self) -> None:
        self._log.clear()


def _interval(version: str, uri: str, home: str | None) -> ProbabilityInterval | None:
    if uri.startswith("local://") and home is None:
        return None  # the model replica refuses this artifact with the reason
    try:
        path = artifact_path(uri, Path(home) if home else Path())
        return interval_of(path.parent / INTERVAL_FILE)
    except ManifestError as exc:
        raise ArtifactError(f"ModelVersion/{version}: {INTERVAL_FILE}: {exc}") from None


class _RouteOnly:
    """A ModelRouter entry that carries a version's feature names; the scoring happens in its deployment."""

    def __init__(self, version: str, feature_names: list[str]) -> None:
        self.version = version
        self.feature_names = tuple(feature_names)

    def predict(self, features: npt.ArrayLike) -> FloatArray:
        raise RuntimeError(f"{self.version}: the Serve router only routes; the model deployment scores")


def routing_table(cfg: RouterConfig) -> ModelRouter:
    """The engine router of a validated ``user_config``: every route (role, share, kind) in version-name
    order, as workloads/local/models.py builds it in-process, so both route a symbol or a keyed decision
    the same way. Its scorers only carry feature names (scoring happens in the model deployments)."""
    return ModelRouter(
        [
            RoutedModel(v, r.role, r.weight, _RouteOnly(v, cfg.versions[v].feature_names), kind=r.kind)
            for v, r in sorted(cfg.routes.items())
        ]
    )


@dataclass(frozen=True)
class _Table:
    """What one reconfigure produced; replaced whole, so a request sees one table from start to end."""

    router: ModelRouter
    shadows: tuple[str, ...]
    models: dict[str, Any]  #: version → DeploymentHandle of its model deployment
    getters: dict[str, tuple[Any, tuple[str, ...]]]  #: version → (itemgetter over its names, names)
    intervals: dict[str, ProbabilityInterval | None]
    shadow_timeout_s: float
    config: dict[str, Any]


class FamilyRouter:
    """The family's ingress: route by symbol cohort or by decision (engine ModelRouter), score routed +
    shadows in Serve."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        spec = parse_router_args(args)
        self._family = spec.family
        self._home = spec.home
        self._handles: dict[str, Any] = {}  #: version → handle, kept across reconfigures
        self._identity = _identity()
        self._reconfigures = 0
        self._table: _Table | None = None

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """Replace the routing table (``{"routes": {v: {role, weight, kind?}}, "versions": {v: {feature_names,
        uri}}}``; no kind → cohort); an invalid one raises and leaves the table in force unchanged."""
        cfg = parse_router_config(user_config)
        ordered = sorted(cfg.routes.items())  # version-name order, as workloads/local/models.py builds it
        router = routing_table(cfg)
        models = {v: self._handle(v) for v, _ in ordered}
        getters = {}
        for v, _ in ordered:
            names = tuple(cfg.versions[v].feature_names)
            getters[v] = (itemgetter(*names), names)
        intervals = {v: _interval(v, cfg.versions[v].uri, self._home) for v, _ in ordered}
        shadows = tuple(v for v, r in ordered if r.role == SHADOW)
        self._table = _Table(router, shadows, models, getters, intervals, cfg.shadow_timeout_s, cfg.model_dump())
        self._reconfigures += 1

    def _handle(self, version: str) -> Any:
        """A handle to the version's model deployment, made without asking the controller whether it exists:
        a version named in the same config as its application may not be deployed yet (calls then fail or
        wait, bounded by the client's deadline and by ``shadow_timeout_s``)."""
        handle = self._handles.get(version)
        if handle is None:
            app = model_app_name(self._family, version)
            handle = DeploymentHandle(model_deployment_name(version), app_name=app)
            self._handles[version] = handle
        return handle

    def _current(self) -> _Table:
        if self._table is None:
            raise ServeConfigError(f"family {self._family!r}: the router has no routes (user_config not applied)")
        return self._table

    @staticmethod
    def _row(table: _Table, version: str, features: Mapping[str, Any]) -> FloatArray:
        """The version's row in its own column order; a missing feature is NaN (as ModelRouter does)."""
        getter, names = table.getters[version]
        try:
            values = getter(features)
        except KeyError:
            values = tuple(features.get(n, math.nan) for n in names)
        return np.array(values, dtype=np.float64).reshape(1, -1)

    async def score(self, symbol: str, features: Mapping[str, Any], key: str | int | None = None) -> dict[str, Any]:
        """The routed version's p_up (with its interval) and every shadow's: the fields of engine RoutedScore,
        plus the symbol's cohort. ``key`` names the decision for weight canaries (as ``ModelRouter.score``:
        the same key routes the same way on every replica and in-process; None → the symbol)."""
        table = self._current()
        version, role = table.router.route(symbol, key)
        primary = table.models[version].predict.remote(self._row(table, version, features))
        pending = [(s, table.models[s].predict.remote(self._row(table, s, features))) for s in table.shadows]
        try:
            p = float((await primary)[0])
        except BaseException:
            for _, resp in pending:
                resp.cancel()
            raise
        shadow: list[tuple[str, float]] = []
        errors: list[str] = []
        deadline = time.monotonic() + table.shadow_timeout_s  # shadows ran alongside; they get this much more
        for s, resp in pending:
            try:
                left = max(0.0, deadline - time.monotonic())
                shadow.append((s, float((await asyncio.wait_for(_awaited(resp), left))[0])))
            except Exception as exc:  # a shadow must never break or stall the decision; recorded instead
                resp.cancel()
                shadow.append((s, math.nan))
                late = isinstance(exc, TimeoutError)
                why = f"no answer within shadow_timeout_s={table.shadow_timeout_s:g}" if late else str(exc)
                errors.append(f"{s}: {type(exc).__name__}: {why}")
        interval = table.intervals.get(version)
        lo, hi = interval.bounds(p) if interval is not None else (math.nan, math.nan)
        return {
            "p_up": p,
            "p_low": lo,
            "p_high": hi,
            "version": version,
            "role": role,
            "shadow": shadow,
            "error": "; ".join(errors),
            "cohort": table.router.cohort(symbol),
        }

    def route(self, symbols: list[str]) -> list[tuple[str, str]]:
        """(version, role) that would score each symbol now, without scoring (rollout checks, tests)."""
        router = self._current().router
        return [router.route(s) for s in symbols]

    async def predict(self, version: str, rows: Any) -> FloatArray:
        """One version's p_up for rows (the HTTP path of ServeScorer; handles call the model directly)."""
        models = self._current().models
        handle = models.get(version)
        if handle is None:
            raise ValueError(f"family {self._family!r} routes no version {version!r} (routes {sorted(models)})")
        result: FloatArray = await handle.predict.remote(np.asarray(rows, dtype=np.float64))
        return result

    def routes(self) -> dict[str, Any]:
        """The table in force, the shares it gives each version, and this replica's identity."""
        table = self._table
        return {
            **self._identity,
            "family": self._family,
            "versions": [] if table is None else sorted(table.models),
            "routes": {} if table is None else table.config["routes"],
            "weights": {} if table is None else table.router.weights(),
            "kinds": {} if table is None else table.router.kinds(),
            "reconfigures": self._reconfigures,
        }

    async def __call__(self, request: Request) -> Response:
        """HTTP: GET → :meth:`routes`; POST ``{"symbol", "features", "key"?}`` → :meth:`score` (``key``: a
        string or integer naming the decision, for weight canaries); POST ``{"version", "rows"}`` →
        :meth:`predict`. JSON both ways, NaN as null."""
        if request.method == "GET":
            return _json(self.routes())
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("body: expected a JSON object")
            if "symbol" in body:
                features = body.get("features") or {}
                key = body.get("key")
                if not isinstance(body["symbol"], str) or not isinstance(features, dict):
                    raise ValueError("body: symbol must be a string and features an object")
                if key is not None and (isinstance(key, bool) or not isinstance(key, str | int)):
                    raise ValueError("body: key must be a string or an integer")
                return _json(await self.score(body["symbol"], features, key))
            if "version" in body and "rows" in body:
                rows = np.array(body["rows"], dtype=np.float64)  # null → NaN
                return _json({"p_up": (await self.predict(str(body["version"]), rows)).tolist()})
            raise ValueError('body: expected {"symbol", "features"} or {"version", "rows"}')
        except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            return _json({"error": f"{type(exc).__name__}: {exc}"}, status=400)


async def _awaited(response: Any) -> Any:
    """A DeploymentResponse as a coroutine (what ``asyncio.wait_for`` takes)."""
    return await response


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


#: The Serve deployments; the app builder names, sizes and configures each per family and version.
ModelDeployment = serve.deployment()(OnnxModel)
RouterDeployment = serve.deployment()(FamilyRouter)
