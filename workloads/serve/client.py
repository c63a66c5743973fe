"""How the decide workload scores through Ray Serve: drop-in scorers with timeouts and a degraded flag.

What the decide workload calls, by the ModelVersion's ``spec.serving.mode``:

* :func:`scorer_for` returns the scorer for one version: the engine's in-process :class:`OnnxScorer` for
  ``in-process``, a :class:`ServeScorer` for ``rayserve``. Both satisfy the engine's ``Scorer`` protocol
  (``feature_names``; ``predict(rows [N, F]) -> p_up [N]``), so the decide workload builds its
  ``ModelRouter`` exactly as a local run does and the decision pipeline is unchanged: routing by symbol
  cohort stays in-process, inference (with Serve's batching) moves to the cluster.
* :meth:`ServeClient.score` has the signature and return type of ``ModelRouter.score``
  (``(symbol, features) -> RoutedScore``) for a family served wholly by Serve, routed by the Serve router
  under the weights of its ``user_config`` (the rollout moves them without restarts); shadows are scored
  there concurrently.

Failure model. Every call has a deadline (``timeout_s``). A call that Serve cannot answer (timeout, app or
replica gone, backpressure, connection refused) raises :class:`ServeUnavailableError` and opens a breaker: for
``retry_after_s`` every further call fails at once instead of waiting out its deadline on the hot path, then
one call probes again. :attr:`ServeClient.degraded` says so, for the runtime to pass ``model_ok=False``.
Raised from a routed model, the exception is what ``engine/decision/pipeline.py`` already turns into the
rules-only fallback (``fallback.py``, quality flag "model degraded") when the strategy allows it; from a
shadow, ``ModelRouter`` records it and carries on. A request Serve answered with an error (malformed rows, an
unknown version) raises :class:`ServeError` and leaves the breaker closed: it is about that request.

Two transports: :class:`HandleTransport` (a Serve ``DeploymentHandle``; the caller is a Ray driver or runs
inside Ray, in-cluster) and :class:`HttpTransport` (the Serve HTTP proxy; any process, JSON, NaN as null).
"""

from __future__ import annotations

import http.client
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import orjson

from ...api.v1alpha1.modelversion import ModelVersionSpec, ServingMode
from ...engine.decision.router import RoutedScore, Scorer
from ...engine.models.onnx_scorer import OnnxScorer
from .artifacts import ArtifactError, load_artifact
from .config import ROUTER_DEPLOYMENT, model_app_name, model_deployment_name

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

FloatArray = npt.NDArray[np.float64]

#: The default deadline of one call: a few Serve round trips (p99 ~10 ms sequential on 2 cores), far below
#: a decision's horizon, short enough that a dead cluster costs one decision, not a backlog.
DEFAULT_TIMEOUT_S: Final = 0.1
DEFAULT_RETRY_AFTER_S: Final = 2.0


class ServeError(RuntimeError):
    """Serve answered this request with an error (bad rows, unknown version, the model raised)."""


class ServeUnavailableError(ServeError):
    """Serve did not answer: timeout, application or replica gone, backpressure, connection refused."""


class Transport(Protocol):
    """One way of reaching a family's Serve application; raises ServeUnavailableError or ServeError."""

    kind: str
    target: str

    def predict(self, version: str, rows: FloatArray, timeout_s: float) -> FloatArray: ...

    def score(
        self, symbol: str, features: Mapping[str, float], timeout_s: float, key: str | int | None = None
    ) -> dict[str, Any]: ...

    def routes(self, timeout_s: float) -> dict[str, Any]: ...

    def close(self) -> None: ...


class HandleTransport:
    """Serve ``DeploymentHandle`` calls: a version's model deployment directly for predict (one hop), the
    family router for score.

    Needs Ray connected in this process (``ray.init(address=...)``, or a Ray worker); it never starts Ray.
    Call it from a thread without a running asyncio loop (``.result()`` blocks).
    """

    kind = "handle"

    def __init__(self, family: str) -> None:
        self.target = family
        self._handles: dict[tuple[str, str], Any] = {}

    def _handle(self, app: str, deployment: str) -> Any:
        handle = self._handles.get((app, deployment))
        if handle is None:
            import ray
            from ray import serve

            if not ray.is_initialized():
                raise ServeUnavailableError("Ray is not initialized here (connect first: ray.init(address=...))")
            try:
                handle = serve.get_deployment_handle(deployment, app_name=app)
            except Exception as exc:
                raise ServeUnavailableError(f"{app}/{deployment}: {type(exc).__name__}: {exc}") from exc
            self._handles[(app, deployment)] = handle
        return handle

    def _call(self, app: str, deployment: str, method: str, timeout_s: float, *args: Any) -> Any:
        response = getattr(self._handle(app, deployment), method).remote(*args)
        try:
            return response.result(timeout_s=timeout_s)
        except BaseException as exc:
            if isinstance(exc, TimeoutError):
                response.cancel()
            self._raise(app, deployment, exc)

    def _raise(self, app: str, deployment: str, exc: BaseException) -> NoReturn:
        from ray import exceptions as rx
        from ray.serve.exceptions import RayServeException

        where = f"{app}/{deployment}"
        if isinstance(exc, TimeoutError):
            raise ServeUnavailableError(f"{where}: no answer within the deadline") from exc
        if isinstance(exc, rx.RayTaskError):
            cause = exc.cause
            if isinstance(cause, RayServeException | rx.RayActorError | TimeoutError):
                raise ServeUnavailableError(f"{where}: {type(cause).__name__}: {cause}") from exc
            raise ServeError(f"{where}: {type(cause).__name__}: {cause}") from exc
        if isinstance(exc, RayServeException | rx.RayError | ConnectionError):
            self._handles.pop((app, deployment), None)  # the app may come back under a new controller
            raise ServeUnavailableError(f"{where}: {type(exc).__name__}: {exc}") from exc
        raise exc

    def predict(self, version: str, rows: FloatArray, timeout_s: float) -> FloatArray:
        app = model_app_name(self.target, version)
        out = self._call(app, model_deployment_name(version), "predict", timeout_s, rows)
        return np.asarray(out, dtype=np.float64)

    def score(
        self, symbol: str, features: Mapping[str, float], timeout_s: float, key: str | int | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = self._call(self.target, ROUTER_DEPLOYMENT, "score", timeout_s, symbol, dict(features),
                                         key)  # fmt: skip
        return out

    def routes(self, timeout_s: float) -> dict[str, Any]:
        out: dict[str, Any] = self._call(self.target, ROUTER_DEPLOYMENT, "routes", timeout_s)
        return out

    def close(self) -> None:
        self._handles.clear()


class HttpTransport:
    """JSON over Serve's HTTP proxy to the family router (``http://host:8000/models/<family>``).

    One keep-alive connection per calling thread; a failed connection is dropped and re-opened next call.
    """

    kind = "http"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url: expected http://host[:port]/route-prefix, got {url!r}")
        self.target = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._local = threading.local()

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
            self._local.conn = conn
        conn.timeout = timeout_s
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(self, method: str, body: bytes | None, timeout_s: float) -> dict[str, Any]:
        try:
            conn = self._connection(timeout_s)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, self._path, body=body, headers=headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise ServeUnavailableError(f"{self.target}: {type(exc).__name__}: {exc}") from exc
        if status == 200:
            out: dict[str, Any] = orjson.loads(data)
            return out
        text = data[:500].decode(errors="replace")
        if status in (404, 408, 429, 502, 503, 504):  # no such app (yet, or any more), overload, proxy trouble
            raise ServeUnavailableError(f"{self.target}: HTTP {status}: {text}")
        raise ServeError(f"{self.target}: HTTP {status}: {text}")

    def predict(self, version: str, rows: FloatArray, timeout_s: float) -> FloatArray:
        body = orjson.dumps({"version": version, "rows": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
        out = self._request("POST", body, timeout_s)
        return np.array(out["p_up"], dtype=np.float64)

    def score(
        self, symbol: str, features: Mapping[str, float], timeout_s: float, key: str | int | None = None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {"symbol": symbol, "features": dict(features)}
        if key is not None:
            doc["key"] = key
        return self._request("POST", orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), timeout_s)

    def routes(self, timeout_s: float) -> dict[str, Any]:
        return self._request("GET", None, timeout_s)

    def close(self) -> None:
        self._drop()


@dataclass(frozen=True)
class ClientOptions:
    timeout_s: float = DEFAULT_TIMEOUT_S  #: deadline of one call (s)
    retry_after_s: float = DEFAULT_RETRY_AFTER_S  #: how long the breaker stays open after a failure (s)

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.retry_after_s >= 0):
            raise ValueError(
                f"timeout_s must be > 0 and retry_after_s >= 0, got {self.timeout_s}, {self.retry_after_s}"
            )


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.calls = Counter(
            "tradeplane_serve_client_calls",
            "Calls to Ray Serve by outcome (ok, error, unavailable, short_circuit).",
            ["target", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "tradeplane_serve_client_latency_seconds",
            "Latency of answered calls to Ray Serve.",
            ["target"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()


def _metrics_of(registry: CollectorRegistry) -> _Metrics:
    """One set of (target-labelled) metrics per registry, so several clients can report into one process."""
    metrics = _METRICS.get(registry)
    if metrics is None:
        metrics = _METRICS[registry] = _Metrics(registry)
    return metrics


class ServeClient:
    """Deadline, breaker and metrics around one Transport (one family's Serve application)."""

    def __init__(
        self,
        transport: Transport,
        *,
        options: ClientOptions = ClientOptions(),
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.options = options
        self._clock = clock
        self._metrics = _metrics_of(registry) if registry is not None else None
        self._open_until = -math.inf  #: breaker open while clock() < this
        self._degraded_since: float | None = None
        self._last_error = ""
        self._failures = 0

    @property
    def degraded(self) -> bool:
        """True from a failed call until a call succeeds again (the runtime's ``model_ok=False``)."""
        return self._degraded_since is not None

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.calls.labels(self.transport.target, outcome).inc()

    def _guarded(self, call: Callable[[float], Any]) -> Any:
        now = self._clock()
        if now < self._open_until:
            self._count("short_circuit")
            raise ServeUnavailableError(
                f"{self.transport.target}: degraded, next attempt in {self._open_until - now:.2f}s "
                f"(last error: {self._last_error})"
            )
        began = time.perf_counter()
        try:
            out = call(self.options.timeout_s)
        except ServeUnavailableError as exc:
            self._failures += 1
            self._last_error = str(exc)
            self._open_until = self._clock() + self.options.retry_after_s
            if self._degraded_since is None:
                self._degraded_since = time.time()
            self._count("unavailable")
            raise
        except ServeError:
            self._count("error")
            raise
        if self._metrics is not None:
            self._metrics.latency.labels(self.transport.target).observe(time.perf_counter() - began)
        self._count("ok")
        self._degraded_since = None
        self._open_until = -math.inf
        return out

    def predict(self, version: str, rows: npt.ArrayLike) -> FloatArray:
        """p_up [N] of ``version`` for rows [N, F] (already in its feature-signature order)."""
        x = np.ascontiguousarray(rows, dtype=np.float64)
        out: FloatArray = self._guarded(lambda t: self.transport.predict(version, x, t))
        if out.shape != (len(x),):
            raise ServeError(f"{self.transport.target}/{version}: expected {len(x)} scores, got shape {out.shape}")
        return out

    def score(self, symbol: str, features: Mapping[str, float], key: str | int | None = None) -> RoutedScore:
        """``ModelRouter.score`` through the Serve router: the routed version's p_up and every shadow's. ``key``
        names the decision for weight canaries (None → the symbol), as in-process."""
        raw: dict[str, Any] = self._guarded(lambda t: self.transport.score(symbol, features, t, key))
        shadow = tuple((str(v), _float(p)) for v, p in raw["shadow"])
        return RoutedScore(
            float(raw["p_up"]),
            str(raw["version"]),
            str(raw["role"]),
            shadow,
            str(raw["error"]),
            _float(raw.get("p_low")),
            _float(raw.get("p_high")),
        )

    def routes(self) -> dict[str, Any]:
        """The Serve router's table in force (routes, weights, replica identity)."""
        out: dict[str, Any] = self._guarded(self.transport.routes)
        return out

    def check(self) -> bool:
        """Probe now (ignoring the breaker's wait): True and not degraded when the router answers."""
        self._open_until = -math.inf
        try:
            self.routes()
        except ServeError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        """For /readyz: ok or degraded, with the last error and when the next attempt is allowed."""
        wait = self._open_until - self._clock()
        return {
            "status": "degraded" if self.degraded else "ok",
            "transport": self.transport.kind,
            "target": self.transport.target,
            "degraded_since": self._degraded_since,
            "retry_in_s": max(0.0, wait) if math.isfinite(wait) else 0.0,
            "failures": self._failures,
            "last_error": self._last_error,
        }

    def scorer(self, version: str, feature_names: tuple[str, ...] | list[str]) -> ServeScorer:
        return ServeScorer(self, version, feature_names)

    def close(self) -> None:
        self.transport.close()


def _float(x: Any) -> float:
    """JSON null (HTTP carries NaN as null) or a missing field → NaN."""
    return math.nan if x is None else float(x)


class ServeScorer:
    """One ModelVersion scored by its Serve deployment; the engine's ``Scorer`` protocol, like OnnxScorer."""

    def __init__(self, client: ServeClient, version: str, feature_names: tuple[str, ...] | list[str]) -> None:
        if not feature_names:
            raise ValueError(f"{version}: feature_names must not be empty")
        self.client = client
        self.version = version
        self.feature_names = tuple(feature_names)
        self._n = len(self.feature_names)

    def predict(self, features: npt.ArrayLike) -> FloatArray:
        """p_up, shape [N], for rows [N, F] or one row [F] (OnnxScorer's contract)."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        if x.ndim == 1 and x.shape[0] == self._n:
            x = x.reshape(1, -1)
        elif not (x.ndim == 2 and x.shape[1] == self._n):
            raise ValueError(f"expected features of shape [N, {self._n}] or [{self._n}], got {x.shape}")
        return self.client.predict(self.version, x)


def scorer_for(version: str, spec: ModelVersionSpec, *, home: Path | None, client: ServeClient | None) -> Scorer:
    """The scorer the decide workload puts in its ModelRouter for ``version``, by ``spec.serving.mode``:
    in-process → OnnxScorer on the sha256-checked artifact; rayserve → ServeScorer through ``client``."""
    where = f"ModelVersion/{version}"
    if spec.artifact is None or spec.feature_signature is None:
        raise ArtifactError(f"{where}: spec.artifact: not trained yet")
    names = tuple(spec.feature_signature.names)
    if spec.serving.mode is ServingMode.RAY_SERVE:
        if client is None:
            raise ValueError(f"{where}: spec.serving.mode is rayserve but no Serve client is configured")
        return client.scorer(version, names)
    data = load_artifact(version, spec.artifact.uri, spec.artifact.sha256, home)
    try:
        return OnnxScorer(data, expected_feature_names=names)
    except ValueError as exc:
        raise ArtifactError(f"{where}: spec.featureSignature.names: {exc}") from None
