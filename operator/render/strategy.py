"""Strategy → its desk config (a ConfigMap with a revision hash) and the ingest, decide, execute and sink
workloads (Deployments, one metrics Service, PodDisruptionBudgets).

Why the config is the desk's own manifests: ``decide`` and ``execute`` load exactly what ``tradeplane run``
loads (the Strategy, its RiskBudget and the ModelVersions of its model families), so a cluster desk and a
local run of the same ConfigMap make the same decisions. Its hash is stamped on the pod templates: a
config change — a spec edit, a budget halt, a new ModelVersion — is a rolling restart, never a stale pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from ...api.v1alpha1 import API_VERSION
from ...api.v1alpha1.strategy import FeatureSpec, market_data_venue
from ...settings import OperatorSettings
from .. import naming, reasons
from .common import (
    Manifest,
    canonical_hash,
    container_security_context,
    metadata,
    owner_reference,
    pod_security_context,
    stamp_rev,
)

#: Workloads that must never run twice for one account: two deciders (or executors, or feeds) would answer
#: the same lock-step or publish the same market data twice. The sink is a consumer group and scales.
SINGLETONS: Final = ("ingest", "decide", "execute")
#: How often decide reports positions, PnL and the last signal into the Strategy's status (s): what the
#: RiskBudget's usage is aggregated from.
REPORT_STATUS_S: Final = 5
#: Streams that are not WebSocket subscriptions of the ingest: klines are bars (no md topic), open interest
#: is polled over REST.
_NOT_STREAMS: Final = ("kline", "openInterest")


@dataclass(frozen=True)
class Admission:
    """Whether the Strategy may run, and why not. ``workloads`` False: no Deployments at all."""

    phase: str | None  #: Blocked / Suspended when the admission decides it; None: from the children
    reason: str
    message: str
    workloads: bool


@dataclass(frozen=True)
class StrategyPlan:
    """What :func:`render_strategy` decided: the desired children, in creation order, and why."""

    admission: Admission
    config_rev: str | None
    children: list[Manifest] = field(default_factory=list)


def admit(strategy: Mapping[str, Any], budget: Mapping[str, Any] | None) -> Admission:
    """Admission against the RiskBudget. A strategy whose budget is missing, or halted before the strategy
    ever ran, is not started. A halt while it runs keeps the workloads (the desk itself cancels working
    orders and, with haltPolicy flatten, closes positions) and re-renders the config with the halt."""
    spec = strategy["spec"]
    ref = spec["riskBudgetRef"]["name"]
    started = bool((strategy.get("status") or {}).get("configRev"))
    invalid = _invalid(spec)
    if invalid:
        return Admission("Failed", reasons.INVALID_SPEC, invalid, workloads=False)
    if budget is None:
        return Admission("Blocked", reasons.RISK_BUDGET_NOT_FOUND, f"RiskBudget {ref!r} does not exist in the "
                         "namespace; the strategy starts once it does", workloads=False)  # fmt: skip
    if budget.get("spec", {}).get("halt"):
        if started:
            message = f"RiskBudget {ref!r} is halted: orders cancelled, no new orders until it is resumed"
            return Admission("Blocked", reasons.RISK_BUDGET_HALTED, message, workloads=True)
        return Admission("Blocked", reasons.RISK_BUDGET_HALTED, f"RiskBudget {ref!r} is halted; the strategy "
                         "starts when spec.halt is false", workloads=False)  # fmt: skip
    if spec.get("suspend"):
        return Admission("Suspended", reasons.SUSPENDED, "spec.suspend is true: workloads scaled to 0", True)
    return Admission(None, reasons.RECONCILED, "", workloads=True)


#: Diff-stream speeds each venue offers (ms); 0 is futures' real-time stream.
DEPTH_SPEEDS: Final = {"binance-spot": (100, 1000), "binance-usdm": (0, 100, 250, 500)}


def _invalid(spec: Mapping[str, Any]) -> str:
    """What the CRD schema cannot say: singleton workloads (see SINGLETONS), the venue's depth speeds."""
    venue = market_data_venue(spec["venue"])
    ms = spec.get("marketData", {}).get("depthUpdateMs", 100)
    if ms not in DEPTH_SPEEDS.get(venue, (ms,)):
        return f"spec.marketData.depthUpdateMs: {ms} ms is not a {venue} diff stream (one of {DEPTH_SPEEDS[venue]})"
    for workload in SINGLETONS:
        replicas = spec.get("resources", {}).get(workload, {}).get("replicas", 1)
        if replicas > 1:
            return f"spec.resources.{workload}.replicas: {replicas} > 1 (one {workload} per strategy account)"
    return ""


def render_strategy(
    strategy: Mapping[str, Any],
    *,
    budget: Mapping[str, Any] | None,
    models: Sequence[Mapping[str, Any]],
    settings: OperatorSettings,
    kafka_bootstrap: str,
    pdb_api_version: str = "policy/v1",
) -> StrategyPlan:
    """The desired children of ``strategy`` given its budget and the namespace's ModelVersions (objects as
    read from the API server). Pure: the same inputs give byte-identical manifests."""
    admission = admit(strategy, budget)
    if not admission.workloads or budget is None:
        return StrategyPlan(admission, None, [])
    name, namespace = strategy["metadata"]["name"], strategy["metadata"]["namespace"]
    owner = [owner_reference(strategy)]
    data = desk_files(strategy, budget, models)
    rev = canonical_hash(data)
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(naming.config_map_name(name), namespace, naming.strategy_labels(name, "config"), owner),
        "data": data,
    }
    children: list[Manifest] = [stamp_rev(config)]
    suspended = bool(strategy["spec"].get("suspend"))
    for workload in naming.WORKLOADS:
        deployment = _deployment(strategy, workload, rev, settings=settings, bootstrap=kafka_bootstrap,
                                 suspended=suspended)  # fmt: skip
        children.append(stamp_rev(deployment))
    children.append(stamp_rev(_metrics_service(name, namespace, owner)))
    children += [stamp_rev(_pdb(name, namespace, w, owner, pdb_api_version)) for w in naming.WORKLOADS]
    return StrategyPlan(admission, rev, children)


# --- the desk config ---------------------------------------------------------------------------------------------


def _manifest(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as a manifest ``tradeplane run`` accepts: no server fields, no status."""
    md = obj["metadata"]
    return {"apiVersion": API_VERSION, "kind": obj["kind"],
            "metadata": {"name": md["name"], "namespace": md["namespace"]}, "spec": obj["spec"]}  # fmt: skip


def model_families(strategy: Mapping[str, Any]) -> list[str]:
    """The model families a Strategy uses: its classifier family and its execution-policy family (rl-policy)."""
    spec = strategy["spec"]
    families = [spec["model"]["family"]]
    policy = spec.get("execution", {}).get("policyModel")
    if policy and policy not in families:
        families.append(policy)
    return families


def desk_files(
    strategy: Mapping[str, Any], budget: Mapping[str, Any], models: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """The ConfigMap's files. ModelVersions without an artifact (still training) are left out until their
    artifact exists: the desk could not load them."""
    families = set(model_families(strategy))
    versions = sorted(
        (m for m in models if m["spec"]["model"] in families and m["spec"].get("artifact")),
        key=lambda m: str(m["metadata"]["name"]),
    )
    files = {
        "strategy.yaml": _dump(_manifest(strategy)),
        "riskbudget.yaml": _dump(_manifest(budget)),
    }
    if versions:
        files["modelversions.yaml"] = "---\n".join(_dump(_manifest(m)) for m in versions)
    return files


def _dump(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=True, default_flow_style=False)


# --- workloads ---------------------------------------------------------------------------------------------------


def ingest_streams(spec: Mapping[str, Any]) -> list[str]:
    """The ingest's per-symbol stream suffixes for ``spec.marketData`` (``depth`` at the diff speed asked;
    Binance's unsuffixed depth stream is 1000 ms on spot, 250 ms on futures)."""
    md = spec.get("marketData", {})
    venue = market_data_venue(spec["venue"])
    ms = int(md.get("depthUpdateMs", 100))
    plain = 1000 if venue == "binance-spot" else 250
    out: list[str] = []
    for stream in md.get("streams", ["depth", "bookTicker", "trade"]):
        if stream in _NOT_STREAMS:
            continue
        out.append(("depth" if ms == plain else f"depth@{ms}ms") if stream == "depth" else stream)
    return out


def sink_topics(strategy: Mapping[str, Any]) -> str:
    """The sink's subscription: exactly this strategy's stored topics (a comma list, one alternation)."""
    name, spec = strategy["metadata"]["name"], strategy["spec"]
    venue = market_data_venue(spec["venue"])
    topics = naming.strategy_topics(name, naming.account_name(name))
    topics += [f"md.{venue}.{symbol}" for symbol in spec["symbols"]]
    return ",".join(topics)


def _options(strategy: Mapping[str, Any], workload: str, settings: OperatorSettings) -> dict[str, str]:
    """``TRADEPLANE_WORKLOAD__OPTIONS__*`` of one workload (each validates them with its own model)."""
    name, spec = strategy["metadata"]["name"], strategy["spec"]
    account = naming.account_name(name)
    if workload == "ingest":
        venue = market_data_venue(spec["venue"])
        opts = {"VENUE": venue, "SYMBOLS": ",".join(spec["symbols"]), "STREAMS": ",".join(ingest_streams(spec)),
                "NAME": f"ingest-{name}"}  # fmt: skip
        if venue != "binance-spot":
            oi = "openInterest" in spec.get("marketData", {}).get("streams", [])
            opts["OPEN_INTEREST_POLL_S"] = "60" if oi else "0"
        return opts
    if workload == "decide":
        # Serve is asked only for families with a rayserve version (decide builds those clients lazily)
        ray_ns = settings.ray_namespace or strategy["metadata"]["namespace"]
        return {"MANIFESTS": naming.DESK_DIR, "ACCOUNT": account, "HOME": naming.HOME_DIR, "RUN_ID": name,
                "REPORT_STATUS_S": str(REPORT_STATUS_S), "ROUTES_FROM_API": "true",
                "SERVE_URL_TEMPLATE": naming.serve_url_template(ray_ns)}  # fmt: skip
    if workload == "execute":
        return {"MANIFESTS": naming.DESK_DIR, "ACCOUNT": account}
    bucket = spec.get("features", {}).get("volumeBucketUsdt", FeatureSpec.model_fields["volume_bucket_usdt"].default)
    opts = {"GROUP": f"tradeplane-sink-{name}", "TOPICS": sink_topics(strategy), "RUN_ID": name,
            "SPILL_DIR": f"{naming.HOME_DIR}/sink", "VBUCKET_QUOTE": repr(float(bucket))}  # fmt: skip
    opts["STORE"] = "server" if settings.clickhouse_dsn_secret else "chdb"
    if not settings.clickhouse_dsn_secret:
        opts["CHDB_PATH"] = f"{naming.HOME_DIR}/store"
    return opts


def _env(
    strategy: Mapping[str, Any], workload: str, settings: OperatorSettings, bootstrap: str
) -> list[dict[str, Any]]:
    name = strategy["metadata"]["name"]
    plain = {
        "TRADEPLANE_LOG_FORMAT": "json",
        "TRADEPLANE_HOME": naming.HOME_DIR,
        "TRADEPLANE_BUS": "kafka",
        "TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPLANE_WORKLOAD__STRATEGY": name,
        "TRADEPLANE_WORKLOAD__HTTP_PORT": str(naming.HTTP_PORT),
        "OMP_NUM_THREADS": "1",
    }
    plain |= {f"TRADEPLANE_WORKLOAD__OPTIONS__{k}": v for k, v in _options(strategy, workload, settings).items()}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    # the pod's namespace: where decide reports into the Strategy's status
    env.append({"name": "TRADEPLANE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    if workload == "execute" and strategy["spec"].get("mode") == "live":
        # only a live strategy's execute holds the keys; the testnet switch is the operator's, not the desk's
        env.append({"name": "TRADEPLANE_BINANCE__TESTNET", "value": str(settings.binance_testnet).lower()})
        for var, key in (("BINANCE_API_KEY", "apiKey"), ("BINANCE_API_SECRET", "apiSecret")):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": settings.binance_secret, "key": key}}})
    if workload == "sink" and settings.clickhouse_dsn_secret:
        ref = {"name": settings.clickhouse_dsn_secret, "key": settings.clickhouse_dsn_key}
        env.append({"name": "TRADEPLANE_STORE", "value": "clickhouse"})
        env.append({"name": "TRADEPLANE_CLICKHOUSE__DSN", "valueFrom": {"secretKeyRef": ref}})
    return env


def routes_volume(families: Sequence[str]) -> dict[str, Any]:
    """decide's view of its families' routes: each ``<family>-routes`` ConfigMap at ``<family>/routes.json``
    under naming.ROUTES_DIR. Optional, so decide starts before a family has routes; and not part of the desk
    config-rev (only the ConfigMaps' *names* are in the pod template), so a weight change reaches the running
    pod through the kubelet's volume refresh, never as a restart."""
    sources = [{"configMap": {"name": naming.routes_config_map_name(f), "optional": True,
                              "items": [{"key": "routes.json", "path": f"{f}/routes.json"}]}}
               for f in families]  # fmt: skip
    return {"name": "routes", "projected": {"sources": sources}}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 2}  # fmt: skip


def _deployment(
    strategy: Mapping[str, Any], workload: str, rev: str, *, settings: OperatorSettings, bootstrap: str,
    suspended: bool,
) -> Manifest:  # fmt: skip
    name, namespace, spec = strategy["metadata"]["name"], strategy["metadata"]["namespace"], strategy["spec"]
    res = spec.get("resources", {}).get(workload, {})
    replicas = 0 if suspended else int(res.get("replicas", 1))
    cpu, memory = res.get("cpu", "500m"), res.get("memory", "512Mi")
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": naming.HOME_DIR},
    ]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if settings.models_pvc:
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": settings.models_pvc}})
    else:
        volumes.append({"name": "home", "emptyDir": {}})
    if workload in ("decide", "execute"):
        mounts.append({"name": "desk", "mountPath": naming.DESK_DIR, "readOnly": True})
        volumes.append({"name": "desk", "configMap": {"name": naming.config_map_name(name)}})
    if workload == "decide":
        mounts.append({"name": "routes", "mountPath": naming.ROUTES_DIR, "readOnly": True})
        volumes.append(routes_volume(model_families(strategy)))
    container = {
        "name": workload,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["workload", workload],
        "env": _env(strategy, workload, settings, bootstrap),
        "ports": [{"name": "http", "containerPort": naming.HTTP_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        # decide compiles (or loads cached) numba kernels and ONNX models before its loop runs
        "startupProbe": _probe("/healthz", period=5, failures=60),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=5, failures=2),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }
    if settings.workload_service_account:
        pod_spec["serviceAccountName"] = settings.workload_service_account
    # Two deciders for one account would both answer the lock-step: replace, never overlap.
    update: dict[str, Any] = (
        {"type": "Recreate"}
        if workload in SINGLETONS
        else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    labels = naming.strategy_labels(name, workload)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(naming.deployment_name(name, workload), namespace, labels, [owner_reference(strategy)]),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": naming.workload_selector(name, workload)},
            "strategy": update,
            "template": {
                "metadata": {"labels": labels, "annotations": {naming.CONFIG_REV: rev}},
                "spec": pod_spec,
            },
        },
    }


def _metrics_service(name: str, namespace: str, owner: list[dict[str, Any]]) -> Manifest:
    """One Service over all the strategy's pods, port ``http``: what a ServiceMonitor scrapes."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            naming.metrics_service_name(name), namespace, naming.strategy_labels(name, "metrics"), owner
        ),
        "spec": {
            "selector": {naming.STRATEGY_LABEL: name},
            "ports": [{"name": "http", "port": naming.HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _pdb(name: str, namespace: str, workload: str, owner: list[dict[str, Any]], api_version: str) -> Manifest:
    """At most one pod of a workload evicted at a time (a drain never takes a scaled-out sink down).
    ``api_version``: policy/v1 where the server has it (v1beta1 is gone from Kubernetes 1.25)."""
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": metadata(naming.pdb_name(name, workload), namespace, naming.strategy_labels(name, workload), owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": naming.workload_selector(name, workload)}},
    }
