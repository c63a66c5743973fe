"""The Strategy renderer: children, names, owners, labels, every Deployment's env/probes/hardening, the desk
ConfigMap, determinism of the config revision, and admission against the RiskBudget.

Inputs are the examples as the API server returns them (namespace, uid, generation filled in, specs defaulted by
the pydantic models, which equal the CRD schema's defaults). Option env vars are checked against the workloads'
own option models and the topic names against the bus's topic helpers, so the renderer cannot drift from what
the pods actually parse.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeplane.api.v1alpha1 import RiskBudgetSpec, StrategySpec
from tradeplane.operator import naming, reasons
from tradeplane.operator.naming import CONFIG_REV
from tradeplane.operator.render.common import canonical_hash
from tradeplane.operator.render.strategy import StrategyPlan, render_strategy
from tradeplane.settings import OperatorSettings, Settings
from tradeplane.workloads.bus import topics
from tradeplane.workloads.bus.kafka import subscription_for
from tradeplane.workloads.decide.main import DecideOptions
from tradeplane.workloads.execute.main import ExecuteOptions
from tradeplane.workloads.ingest.main import IngestOptions, ingest_config
from tradeplane.workloads.live.execute_options import LiveExecuteOptions, binance_config
from tradeplane.workloads.local.manifests import load_desk
from tradeplane.workloads.sink.options import STORED_PATTERN, SinkOptions

from .examples import NS, defaulted, load

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[3]
BOOTSTRAP = "kafka.desk.svc:9092"
OWNER_API = "tradeplane.io/v1alpha1"
WORKLOADS = ("ingest", "decide", "execute", "sink")
SINGLETONS = ("ingest", "decide", "execute")
OPTION_PREFIX = "TRADEPLANE_WORKLOAD__OPTIONS__"


# --- inputs ------------------------------------------------------------------------------------------------------


def budget() -> Obj:
    return load("00-riskbudget.yaml", "uid-budget")


def stable() -> Obj:
    return load("10-modelversion-stable.yaml", "uid-v1")


def candidate() -> Obj:
    return load("11-modelversion-candidate.yaml", "uid-v2")


def models() -> list[Obj]:
    return [stable(), candidate()]


STRATEGY_FILES = {"spot-majors": "20-strategy-btc-spot.yaml", "usdm-btc": "21-strategy-btc-usdm.yaml"}


def strategy(name: str) -> Obj:
    return load(STRATEGY_FILES[name], f"uid-{name}", generation=3)


def edited(obj: Obj, edit: Callable[[Obj], None]) -> Obj:
    """A deep copy of ``obj`` with ``edit`` applied to its spec, re-defaulted as the server would."""
    out = copy.deepcopy(obj)
    edit(out["spec"])
    out["spec"] = defaulted(out["kind"], out["spec"])
    return out


def version(name: str, family: str, *, artifact: bool = True, kind: str = "classifier") -> Obj:
    """Another ModelVersion (built from the stable example), with or without an artifact."""
    mv = stable()
    mv["metadata"].update(name=name, uid=f"uid-{name}", labels={"tradeplane.io/model": family})
    mv["spec"]["model"] = family
    mv["spec"]["kind"] = kind
    if not artifact:
        mv["spec"].pop("artifact")
        mv["spec"].pop("featureSignature")
        mv["spec"]["training"] = {"data": ["local://data/binance/BTCUSDT/klines.csv.gz"]}
    mv["spec"] = defaulted("ModelVersion", mv["spec"])
    return mv


def rl_policy(spec: Obj) -> None:
    spec["execution"]["policy"] = "rl-policy"
    spec["execution"]["policyModel"] = "exec-rl"


#: ``render``'s default budget (the example), told apart from ``None`` (no budget) by identity
_EXAMPLE_BUDGET: Obj = {}


def render(
    s: Obj,
    *,
    b: Obj | None = _EXAMPLE_BUDGET,
    mvs: list[Obj] | None = None,
    settings: OperatorSettings | None = None,
    pdb_api_version: str = "policy/v1",
) -> StrategyPlan:
    return render_strategy(
        s,
        budget=budget() if b is _EXAMPLE_BUDGET else b,
        models=models() if mvs is None else mvs,
        settings=settings or OperatorSettings(),
        kafka_bootstrap=BOOTSTRAP,
        pdb_api_version=pdb_api_version,
    )


# --- reading the output ------------------------------------------------------------------------------------------


def child(plan: StrategyPlan, kind: str, name: str) -> Obj:
    found = [c for c in plan.children if c["kind"] == kind and c["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def config_map(plan: StrategyPlan) -> Obj:
    return next(c for c in plan.children if c["kind"] == "ConfigMap")


def deployments(plan: StrategyPlan) -> dict[str, Obj]:
    """Deployments by workload (the container name)."""
    out = {}
    for c in plan.children:
        if c["kind"] == "Deployment":
            out[c["spec"]["template"]["spec"]["containers"][0]["name"]] = c
    return out


def container(dep: Obj) -> Obj:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    out: Obj = containers[0]
    return out


def env(dep: Obj) -> dict[str, Any]:
    """name → value (or the valueFrom mapping); duplicate names are an error."""
    items = container(dep)["env"]
    names = [e["name"] for e in items]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in items}


def options(dep: Obj) -> dict[str, str]:
    """The workload options as rendered (``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>``)."""
    return {k.removeprefix(OPTION_PREFIX): v for k, v in env(dep).items() if k.startswith(OPTION_PREFIX)}


def parsed_options(dep: Obj) -> dict[str, str]:
    """The options as the workload's settings see them (env names are case-insensitive: lower-cased keys)."""
    return {k.lower(): v for k, v in options(dep).items()}


def volumes(dep: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}


def mounts(dep: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in container(dep)["volumeMounts"]}


def desk_docs(plan: StrategyPlan, file: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(config_map(plan)["data"][file]) if d is not None]


# --- children, names, owners, labels -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_children_names_and_creation_order(name: str) -> None:
    plan = render(strategy(name))
    assert plan.admission.phase is None
    assert plan.admission.reason == reasons.RECONCILED
    assert [(c["kind"], c["metadata"]["name"]) for c in plan.children] == [
        ("ConfigMap", f"{name}-config"),
        *[("Deployment", f"{name}-{w}") for w in WORKLOADS],
        ("Service", f"{name}-metrics"),
        *[("PodDisruptionBudget", f"{name}-{w}") for w in WORKLOADS],
    ]
    # the names come from naming.py, which reconcilers and cleanup also use
    assert plan.children[0]["metadata"]["name"] == naming.config_map_name(name)
    assert [c["metadata"]["name"] for c in plan.children[1:5]] == [naming.deployment_name(name, w) for w in WORKLOADS]
    assert plan.children[5]["metadata"]["name"] == naming.metrics_service_name(name)
    assert [c["metadata"]["name"] for c in plan.children[6:]] == [naming.pdb_name(name, w) for w in WORKLOADS]


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_every_child_is_owned_namespaced_labelled_and_stamped(name: str) -> None:
    s = strategy(name)
    plan = render(s)
    owner = {"apiVersion": OWNER_API, "kind": "Strategy", "name": name, "uid": f"uid-{name}", "controller": True,
             "blockOwnerDeletion": True}  # fmt: skip
    for c in plan.children:
        md = c["metadata"]
        where = f"{c['kind']}/{md['name']}"
        assert md["namespace"] == NS, where
        assert md["ownerReferences"] == [owner], where
        labels = md["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tradeplane-operator", where
        assert labels["app.kubernetes.io/part-of"] == "tradeplane", where
        assert labels["tradeplane.io/strategy"] == name, where
        assert labels["app.kubernetes.io/instance"] == name, where
        assert labels.items() >= naming.strategy_selector(name).items(), f"{where}: not found by the selector"
        rev = md["annotations"][CONFIG_REV]
        assert len(rev) == 16 and int(rev, 16) >= 0, where
        unstamped = copy.deepcopy(c)
        del unstamped["metadata"]["annotations"][CONFIG_REV]
        assert rev == canonical_hash(unstamped), f"{where}: config-rev is not the hash of the manifest"


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_components_and_selectors(name: str) -> None:
    plan = render(strategy(name))
    component = {c["metadata"]["name"]: c["metadata"]["labels"]["app.kubernetes.io/component"] for c in plan.children}
    assert component[f"{name}-config"] == "config"
    assert component[f"{name}-metrics"] == "metrics"
    deps = deployments(plan)
    assert set(deps) == set(WORKLOADS)
    service = child(plan, "Service", f"{name}-metrics")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    for w, dep in deps.items():
        assert dep["metadata"]["name"] == f"{name}-{w}"
        assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == w
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector == naming.workload_selector(name, w) == {"tradeplane.io/strategy": name,
                                                                 "app.kubernetes.io/component": w}  # fmt: skip
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert pod_labels.items() >= selector.items(), f"{w}: the selector does not select its own pods"
        assert pod_labels.items() >= service["spec"]["selector"].items(), f"{w}: the metrics Service misses it"
        pdb = child(plan, "PodDisruptionBudget", f"{name}-{w}")
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    # one strategy's selectors never select another's pods
    other = deployments(render(strategy("usdm-btc" if name == "spot-majors" else "spot-majors")))
    for dep in other.values():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert not labels.items() >= service["spec"]["selector"].items()


@pytest.mark.parametrize("pdb_api_version", ["policy/v1", "policy/v1beta1"])
def test_pdb_api_version_follows_the_server(pdb_api_version: str) -> None:
    plan = render(strategy("usdm-btc"), pdb_api_version=pdb_api_version)
    pdbs = [c for c in plan.children if c["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == 4
    assert {p["apiVersion"] for p in pdbs} == {pdb_api_version}


# --- every Deployment ------------------------------------------------------------------------------------------

DEPLOYMENT_CASES = [(n, w) for n in STRATEGY_FILES for w in WORKLOADS]


@pytest.mark.parametrize(("name", "workload"), DEPLOYMENT_CASES, ids=[f"{n}-{w}" for n, w in DEPLOYMENT_CASES])
def test_deployment_pod(name: str, workload: str) -> None:
    settings = OperatorSettings(image="registry.example/tradeplane:9.9.9", image_pull_policy="Always")
    plan = render(strategy(name), settings=settings)
    dep = deployments(plan)[workload]
    c = container(dep)
    assert dep["apiVersion"] == "apps/v1"
    assert dep["spec"]["replicas"] == 1
    assert c["name"] == workload
    assert c["args"] == ["workload", workload]
    assert c["image"] == "registry.example/tradeplane:9.9.9"
    assert c["imagePullPolicy"] == "Always"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    e = env(dep)
    common = ("TRADEPLANE_LOG_FORMAT", "TRADEPLANE_HOME", "TRADEPLANE_BUS", "TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS",
              "TRADEPLANE_WORKLOAD__STRATEGY", "TRADEPLANE_WORKLOAD__HTTP_PORT")  # fmt: skip
    assert {k: e[k] for k in common} == {
        "TRADEPLANE_LOG_FORMAT": "json",
        "TRADEPLANE_HOME": "/var/lib/tradeplane",
        "TRADEPLANE_BUS": "kafka",
        "TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
        "TRADEPLANE_WORKLOAD__STRATEGY": name,
        "TRADEPLANE_WORKLOAD__HTTP_PORT": "8080",
    }
    refs = ("TRADEPLANE_CLICKHOUSE__DSN", "TRADEPLANE_NAMESPACE")
    assert all(isinstance(v, str) for k, v in e.items() if k not in refs), "env values are strings"
    # the pod's own namespace (decide reports into its Strategy's status there)
    assert e["TRADEPLANE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # probes on the named port: /healthz for startup and liveness, /readyz for readiness
    probes = {k: (c[k]["httpGet"]["path"], c[k]["httpGet"]["port"]) for k in ("startupProbe", "livenessProbe",
                                                                            "readinessProbe")}  # fmt: skip
    assert probes == {"startupProbe": ("/healthz", "http"), "livenessProbe": ("/healthz", "http"),
                      "readinessProbe": ("/readyz", "http")}  # fmt: skip
    # hardening: the restricted Pod Security Standard
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert "serviceAccountName" not in pod
    # writable paths are volumes: /tmp and the home (emptyDir without models_pvc)
    vols, mnts = volumes(dep), mounts(dep)
    assert vols["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert mnts["/tmp"]["name"] == "tmp"
    assert mnts["/var/lib/tradeplane"]["name"] == "home"
    assert vols["home"] == {"name": "home", "emptyDir": {}}
    assert {m["name"] for m in mnts.values()} == set(vols), "every volume is mounted, every mount has a volume"
    if workload in ("decide", "execute"):
        assert mnts[naming.DESK_DIR] == {"name": "desk", "mountPath": "/etc/tradeplane/desk", "readOnly": True}
        assert vols["desk"] == {"name": "desk", "configMap": {"name": f"{name}-config"}}
    else:
        assert "desk" not in vols
    # the pod template carries the config revision: a config change is a rollout
    assert dep["spec"]["template"]["metadata"]["annotations"] == {CONFIG_REV: plan.config_rev}


@pytest.mark.parametrize(
    ("workload", "update"),
    [("ingest", "Recreate"), ("decide", "Recreate"), ("execute", "Recreate"), ("sink", "RollingUpdate")],
)
def test_update_strategy(workload: str, update: str) -> None:
    dep = deployments(render(strategy("usdm-btc")))[workload]
    assert dep["spec"]["strategy"]["type"] == update
    if update == "RollingUpdate":
        assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


RESOURCE_CASES = {
    "usdm-decide-from-spec": ("usdm-btc", "decide", "1", "1Gi"),
    "usdm-ingest-defaults": ("usdm-btc", "ingest", "500m", "512Mi"),
    "usdm-sink-defaults": ("usdm-btc", "sink", "500m", "512Mi"),
    "spot-execute-defaults": ("spot-majors", "execute", "500m", "512Mi"),
}


@pytest.mark.parametrize(("name", "workload", "cpu", "memory"), RESOURCE_CASES.values(), ids=list(RESOURCE_CASES))
def test_resources_from_spec(name: str, workload: str, cpu: str, memory: str) -> None:
    dep = deployments(render(strategy(name)))[workload]
    assert container(dep)["resources"] == {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def test_resources_edited() -> None:
    def edit(spec: Obj) -> None:
        spec["resources"]["sink"] = {"replicas": 3, "cpu": "250m", "memory": "2Gi"}

    dep = deployments(render(edited(strategy("spot-majors"), edit)))["sink"]
    assert dep["spec"]["replicas"] == 3
    assert container(dep)["resources"] == {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}


def test_operator_settings_reach_the_pods() -> None:
    settings = OperatorSettings(models_pvc="tradeplane-models", workload_service_account="tradeplane-workload")
    for w, dep in deployments(render(strategy("usdm-btc"), settings=settings)).items():
        pod = dep["spec"]["template"]["spec"]
        assert volumes(dep)["home"] == {"name": "home", "persistentVolumeClaim": {"claimName": "tradeplane-models"}}, w
        assert mounts(dep)["/var/lib/tradeplane"]["name"] == "home", w
        assert pod["serviceAccountName"] == "tradeplane-workload", w


# --- workload options --------------------------------------------------------------------------------------------


def _market(venue: str, streams: list[str], depth_ms: int, symbols: list[str] | None = None) -> Callable[[Obj], None]:
    def edit(spec: Obj) -> None:
        spec["venue"] = venue
        spec["marketData"]["streams"] = streams
        spec["marketData"]["depthUpdateMs"] = depth_ms
        if symbols is not None:
            spec["symbols"] = symbols

    return edit


#: id → (base example, spec edit or None, expected ingest options)
INGEST_CASES: dict[str, tuple[str, Callable[[Obj], None] | None, dict[str, str]]] = {
    "spot-example-100ms": ("spot-majors", None, {
        "VENUE": "binance-spot", "SYMBOLS": "BTCUSDT,ETHUSDT", "STREAMS": "depth@100ms,bookTicker,trade",
        "NAME": "ingest-spot-majors"}),
    "spot-1000ms-is-plain-depth": ("spot-majors", _market("binance-spot", ["depth", "trade"], 1000), {
        "VENUE": "binance-spot", "SYMBOLS": "BTCUSDT,ETHUSDT", "STREAMS": "depth,trade", "NAME": "ingest-spot-majors"}),
    "spot-kline-dropped": ("spot-majors", _market("binance-spot", ["kline", "depth", "aggTrade"], 100), {
        "VENUE": "binance-spot", "SYMBOLS": "BTCUSDT,ETHUSDT", "STREAMS": "depth@100ms,aggTrade",
        "NAME": "ingest-spot-majors"}),
    "usdm-example-0ms-open-interest-polled": ("usdm-btc", None, {
        "VENUE": "binance-usdm", "SYMBOLS": "BTCUSDT", "STREAMS": "depth@0ms,bookTicker,trade,markPrice,forceOrder",
        "NAME": "ingest-usdm-btc", "OPEN_INTEREST_POLL_S": "60"}),
    "usdm-250ms-is-plain-depth": ("usdm-btc", _market("binance-usdm", ["depth", "bookTicker"], 250), {
        "VENUE": "binance-usdm", "SYMBOLS": "BTCUSDT", "STREAMS": "depth,bookTicker", "NAME": "ingest-usdm-btc",
        "OPEN_INTEREST_POLL_S": "0"}),
    "usdm-100ms": ("usdm-btc", _market("binance-usdm", ["depth"], 100), {
        "VENUE": "binance-usdm", "SYMBOLS": "BTCUSDT", "STREAMS": "depth@100ms", "NAME": "ingest-usdm-btc",
        "OPEN_INTEREST_POLL_S": "0"}),
    "usdm-0ms-real-time": ("usdm-btc", _market("binance-usdm", ["depth"], 0), {
        "VENUE": "binance-usdm", "SYMBOLS": "BTCUSDT", "STREAMS": "depth@0ms", "NAME": "ingest-usdm-btc",
        "OPEN_INTEREST_POLL_S": "0"}),
    "usdm-kline-and-open-interest-dropped": (
        "usdm-btc", _market("binance-usdm", ["trade", "kline", "openInterest"], 500, ["BTCUSDT", "ETHUSDT"]), {
        "VENUE": "binance-usdm", "SYMBOLS": "BTCUSDT,ETHUSDT", "STREAMS": "trade", "NAME": "ingest-usdm-btc",
        "OPEN_INTEREST_POLL_S": "60"}),
    "paper-feeds-on-usdm": ("usdm-btc", _market("paper", ["depth", "openInterest"], 250), {
        "VENUE": "binance-usdm", "SYMBOLS": "BTCUSDT", "STREAMS": "depth", "NAME": "ingest-usdm-btc",
        "OPEN_INTEREST_POLL_S": "60"}),
}  # fmt: skip


@pytest.mark.parametrize(("base", "edit", "expected"), INGEST_CASES.values(), ids=list(INGEST_CASES))
def test_ingest_options(base: str, edit: Callable[[Obj], None] | None, expected: dict[str, str]) -> None:
    s = strategy(base) if edit is None else edited(strategy(base), edit)
    dep = deployments(render(s))["ingest"]
    assert options(dep) == expected
    # and the ingest accepts them: the same streams, venue and symbols after its own validation
    config = ingest_config(IngestOptions.model_validate(parsed_options(dep)))
    assert config.venue == expected["VENUE"]
    assert list(config.symbols) == expected["SYMBOLS"].split(",")
    assert ",".join(config.streams) == expected["STREAMS"]
    assert config.open_interest_poll_s == float(expected.get("OPEN_INTEREST_POLL_S", config.open_interest_poll_s))


@pytest.mark.parametrize(("venue", "ms"), [("binance-usdm", 1000), ("binance-spot", 250), ("binance-spot", 0)])
def test_a_depth_speed_the_venue_does_not_offer_is_refused_with_the_field(venue: str, ms: int) -> None:
    base = "spot-majors" if venue == "binance-spot" else "usdm-btc"
    plan = render(edited(strategy(base), _market(venue, ["depth"], ms)))
    assert plan.admission.phase == "Failed" and plan.admission.reason == "InvalidSpec" and plan.children == []
    assert plan.admission.message.startswith(f"spec.marketData.depthUpdateMs: {ms} ms")


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_decide_and_execute_options(name: str) -> None:
    deps = deployments(render(strategy(name)))
    assert options(deps["decide"]) == {"MANIFESTS": "/etc/tradeplane/desk", "ACCOUNT": name,
                                       "HOME": "/var/lib/tradeplane", "RUN_ID": name, "REPORT_STATUS_S": "5",
                                       "ROUTES_FROM_API": "true",
                                       "SERVE_URL_TEMPLATE": "http://{family}-serve-serve-svc.desk.svc:8000"}  # fmt: skip
    assert options(deps["execute"]) == {"MANIFESTS": "/etc/tradeplane/desk", "ACCOUNT": name}
    decide = DecideOptions.model_validate(parsed_options(deps["decide"]))
    execute = ExecuteOptions.model_validate(parsed_options(deps["execute"]))
    assert decide.manifests == execute.manifests == [Path(naming.DESK_DIR)]
    assert decide.account == execute.account == naming.account_name(name)
    assert decide.routes_from_api  # rollout steps reach decide through the API, not the kubelet's volume sync
    assert str(decide.home) == mounts(deps["decide"])["/var/lib/tradeplane"]["mountPath"]
    for w in ("decide", "execute"):
        assert str(Path(naming.DESK_DIR)) in mounts(deps[w]), f"{w}: MANIFESTS is not the mounted desk"


def bus_topics(name: str, venue: str, symbols: list[str]) -> list[str]:
    """What the desk and the ingest of a strategy write, named by the bus's own helpers."""
    account = naming.account_name(name)
    return [topics.signals_topic(name), topics.intents_topic(name), topics.audit_topic(name),
            topics.audit_topic(f"ingest-{name}"), topics.fills_topic(account), topics.desk_topic(account),
            *[topics.md_topic(venue, s) for s in symbols]]  # fmt: skip


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_naming_strategy_topics_equal_the_bus_helpers(name: str) -> None:
    account = naming.account_name(name)
    assert sorted(naming.strategy_topics(name, account)) == sorted(bus_topics(name, "binance-spot", []))
    assert len(set(naming.strategy_topics(name, account))) == 6


SINK_CASES: dict[str, tuple[str, Callable[[Obj], None] | None, str, list[str]]] = {
    "spot-example": ("spot-majors", None, "binance-spot", ["BTCUSDT", "ETHUSDT"]),
    "usdm-example": ("usdm-btc", None, "binance-usdm", ["BTCUSDT"]),
    "paper-on-usdm-feed": ("usdm-btc", _market("paper", ["depth"], 100, ["BTCUSDT", "SOLUSDT"]), "binance-usdm",
                           ["BTCUSDT", "SOLUSDT"]),
}  # fmt: skip


@pytest.mark.parametrize(("base", "edit", "venue", "symbols"), SINK_CASES.values(), ids=list(SINK_CASES))
def test_sink_topics_are_the_strategys_topics(
    base: str, edit: Callable[[Obj], None] | None, venue: str, symbols: list[str]
) -> None:
    s = strategy(base) if edit is None else edited(strategy(base), edit)
    deps = deployments(render(s))
    rendered = options(deps["sink"])["TOPICS"].split(",")
    expected = bus_topics(base, venue, symbols)
    assert len(rendered) == len(set(rendered))
    assert set(rendered) == set(expected)
    for topic in rendered:
        family, _ = topics.parse_topic(topic)
        assert fnmatch.fnmatchcase(topic, STORED_PATTERN), f"{topic}: family {family} is not stored by the sink"
    subscription_for(options(deps["sink"])["TOPICS"])  # one valid subscription
    # what the ingest actually publishes (its md topics and quality topic) is in the sink's subscription
    ingest = ingest_config(IngestOptions.model_validate(parsed_options(deps["ingest"])))
    assert {topics.md_topic(ingest.venue, sym) for sym in ingest.symbols} | {ingest.quality_topic} <= set(rendered)
    # the desk's account topics
    account = options(deps["decide"])["ACCOUNT"]
    assert {topics.fills_topic(account), topics.desk_topic(account)} <= set(rendered)


def test_sink_store_chdb_without_a_secret() -> None:
    deps = deployments(render(strategy("usdm-btc")))
    opts = options(deps["sink"])
    assert opts == {"GROUP": "tradeplane-sink-usdm-btc", "TOPICS": opts["TOPICS"], "RUN_ID": "usdm-btc",
                    "SPILL_DIR": "/var/lib/tradeplane/sink", "STORE": "chdb",
                    "CHDB_PATH": "/var/lib/tradeplane/store", "VBUCKET_QUOTE": "500000.0"}  # fmt: skip
    sink = SinkOptions.model_validate(parsed_options(deps["sink"]))
    assert sink.store == "chdb"
    # the sink's volume buckets are the strategy's own (examples/21: volumeBucketUsdt 500000); spot-majors
    # leaves the field out, so the API's default applies
    assert sink.vbucket_quote == 500_000.0
    spot = SinkOptions.model_validate(parsed_options(deployments(render(strategy("spot-majors")))["sink"]))
    assert (
        spot.vbucket_quote == StrategySpec.model_validate(strategy("spot-majors")["spec"]).features.volume_bucket_usdt
    )
    for w, dep in deps.items():
        e = env(dep)
        assert "TRADEPLANE_CLICKHOUSE__DSN" not in e, w
        assert "TRADEPLANE_STORE" not in e, w


def test_sink_store_server_with_a_dsn_secret() -> None:
    settings = OperatorSettings(clickhouse_dsn_secret="clickhouse-dsn", clickhouse_dsn_key="url")
    deps = deployments(render(strategy("usdm-btc"), settings=settings))
    opts = options(deps["sink"])
    assert opts["STORE"] == "server"
    assert "CHDB_PATH" not in opts
    assert SinkOptions.model_validate(parsed_options(deps["sink"])).store == "server"
    e = env(deps["sink"])
    assert e["TRADEPLANE_CLICKHOUSE__DSN"] == {"secretKeyRef": {"name": "clickhouse-dsn", "key": "url"}}
    assert e["TRADEPLANE_STORE"] == "clickhouse"
    for w in SINGLETONS:  # only the sink gets the secret
        assert "TRADEPLANE_CLICKHOUSE__DSN" not in env(deps[w]), w


# --- the desk ConfigMap -----------------------------------------------------------------------------------------


def manifest_of(obj: Obj) -> Obj:
    """What ``tradeplane run`` accepts: apiVersion, kind, name/namespace and the spec; no server fields."""
    md = obj["metadata"]
    return {"apiVersion": OWNER_API, "kind": obj["kind"], "metadata": {"name": md["name"], "namespace": NS},
            "spec": obj["spec"]}  # fmt: skip


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_desk_files_load_back_to_the_inputs(name: str) -> None:
    s = strategy(name)
    s["status"] = {"phase": "Running", "configRev": "0123456789abcdef"}
    b = budget()
    b["status"] = {"phase": "Active"}
    plan = render(s, b=b)
    cm = config_map(plan)
    assert cm["apiVersion"] == "v1"
    assert set(cm["data"]) == {"strategy.yaml", "riskbudget.yaml", "modelversions.yaml"}
    assert desk_docs(plan, "strategy.yaml") == [manifest_of(s)]
    assert desk_docs(plan, "riskbudget.yaml") == [manifest_of(b)]
    assert desk_docs(plan, "modelversions.yaml") == [manifest_of(stable()), manifest_of(candidate())]


#: id → (strategy edit, ModelVersions, expected names in modelversions.yaml)
MODEL_CASES: dict[str, tuple[Callable[[Obj], None] | None, list[Obj], list[str]]] = {
    "examples": (None, [stable(), candidate()], ["ofi-lgbm-v1", "ofi-lgbm-v2"]),
    "sorted-by-name": (None, [candidate(), stable()], ["ofi-lgbm-v1", "ofi-lgbm-v2"]),
    "other-family-left-out": (None, [version("mean-rev-v1", "mean-rev"), candidate(), stable()],
                              ["ofi-lgbm-v1", "ofi-lgbm-v2"]),
    "no-artifact-left-out": (None, [stable(), version("ofi-lgbm-v3", "ofi-lgbm", artifact=False)], ["ofi-lgbm-v1"]),
    "policy-model-family-included": (
        rl_policy,
        [candidate(), version("exec-rl-v1", "exec-rl", kind="execution-policy"), stable(),
         version("exec-rl-v2", "exec-rl", kind="execution-policy", artifact=False), version("zz-v1", "zz")],
        ["exec-rl-v1", "ofi-lgbm-v1", "ofi-lgbm-v2"]),
    "policy-family-without-policy-model": (None, [stable(), version("exec-rl-v1", "exec-rl", kind="execution-policy")],
                                           ["ofi-lgbm-v1"]),
}  # fmt: skip


@pytest.mark.parametrize(("edit", "mvs", "expected"), MODEL_CASES.values(), ids=list(MODEL_CASES))
def test_modelversions_of_the_strategys_families(
    edit: Callable[[Obj], None] | None, mvs: list[Obj], expected: list[str], tmp_path: Path
) -> None:
    s = strategy("usdm-btc") if edit is None else edited(strategy("usdm-btc"), edit)
    plan = render(s, mvs=mvs)
    docs = desk_docs(plan, "modelversions.yaml")
    assert [d["metadata"]["name"] for d in docs] == expected
    by_name = {m["metadata"]["name"]: m for m in mvs}
    assert docs == [manifest_of(by_name[n]) for n in expected]
    # the desk a pod loads is valid, and holds exactly these versions
    desk_dir = tmp_path / "desk"
    desk_dir.mkdir()
    for file, text in config_map(plan)["data"].items():
        (desk_dir / file).write_text(text)
    desk = load_desk([desk_dir])
    assert sorted(desk.models) == expected


@pytest.mark.parametrize("name", [*STRATEGY_FILES, "usdm-btc-no-models", "spot-majors-halted"])
def test_desk_loads_with_load_desk(name: str, tmp_path: Path) -> None:
    base = name.removesuffix("-no-models").removesuffix("-halted")
    s, b = strategy(base), budget()
    if name.endswith("-halted"):
        s["status"] = {"configRev": "0123456789abcdef"}
        b["spec"]["halt"] = True
    plan = render(s, b=b, mvs=[] if name.endswith("-no-models") else None)
    assert plan.children, plan.admission
    files = []
    for file, text in config_map(plan)["data"].items():
        (tmp_path / file).write_text(text)
        files.append(tmp_path / file)
    desk = load_desk(files)
    assert list(desk.strategies) == [base]
    assert desk.strategies[base] == StrategySpec.model_validate(s["spec"])
    assert desk.budgets == {"desk-default": RiskBudgetSpec.model_validate(b["spec"])}
    assert desk.budgets["desk-default"].halt is name.endswith("-halted")
    assert sorted(desk.models) == ([] if name.endswith("-no-models") else ["ofi-lgbm-v1", "ofi-lgbm-v2"])


# --- determinism -------------------------------------------------------------------------------------------------


def reversed_keys(value: Any) -> Any:
    """The same content with every mapping's keys in reverse order (what another client's JSON might give)."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


@pytest.mark.parametrize("name", list(STRATEGY_FILES))
def test_same_input_same_output(name: str) -> None:
    first = render(strategy(name))
    again = render(strategy(name))
    shuffled = render(reversed_keys(strategy(name)), b=reversed_keys(budget()),
                      mvs=[reversed_keys(m) for m in reversed(models())])  # fmt: skip
    for other in (again, shuffled):
        assert json.dumps(other.children) == json.dumps(first.children)
        assert other.config_rev == first.config_rev
        assert other.admission == first.admission


Inputs = tuple[Obj, Obj, list[Obj]]


def _spec(edit: Callable[[Obj], None]) -> Callable[[Inputs], Inputs]:
    def change(inputs: Inputs) -> Inputs:
        s, b, mvs = inputs
        return edited(s, edit), b, mvs

    return change


def _budget(edit: Callable[[Obj], None]) -> Callable[[Inputs], Inputs]:
    def change(inputs: Inputs) -> Inputs:
        s, b, mvs = inputs
        return s, edited(b, edit), mvs

    return change


def _add_model(mv: Obj) -> Callable[[Inputs], Inputs]:
    return lambda inputs: (inputs[0], inputs[1], [*inputs[2], mv])


def _strategy_status(inputs: Inputs) -> Inputs:
    s, b, mvs = inputs
    s = copy.deepcopy(s)
    s["status"] = {"configRev": "0123456789abcdef", "phase": "Running", "observedGeneration": 3,
                   "positions": [{"symbol": "BTCUSDT", "quantity": 0.01, "notionalUsdt": 950.0}],
                   "pnl": {"realizedUsdt": 12.5, "unrealizedUsdt": -3.0},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled"}]}  # fmt: skip
    return s, b, mvs


def _server_metadata(inputs: Inputs) -> Inputs:
    s, b, mvs = copy.deepcopy(inputs)
    for obj in (s, b, *mvs):
        obj["metadata"].update(resourceVersion="424242", creationTimestamp="2026-01-01T00:00:00Z",
                               managedFields=[{"manager": "kubectl"}], generation=9,
                               annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"})  # fmt: skip
    return s, b, mvs


def _model_status(inputs: Inputs) -> Inputs:
    s, b, mvs = copy.deepcopy(inputs)
    for mv in mvs:
        mv["status"] = {"phase": "Promoted", "conditions": [{"type": "Ready", "status": "True"}]}
    return s, b, mvs


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def edit(spec: Obj) -> None:
        *parents, last = path.split(".")
        for p in parents:
            spec = spec[p]
        spec[last] = value

    return edit


#: id → (change of the inputs, whether the desk config changes)
CHANGES: dict[str, tuple[Callable[[Inputs], Inputs], bool]] = {
    "tau": (_spec(_set("decision.tau", 0.7)), True),
    "symbols": (_spec(_set("symbols", ["BTCUSDT", "ETHUSDT"])), True),
    "budget-limit": (_budget(_set("limits.maxDailyLossUsdt", 300.0)), True),
    "budget-halt": (_budget(_set("halt", True)), True),
    "new-version-of-family": (_add_model(version("ofi-lgbm-v3", "ofi-lgbm")), True),
    "new-version-of-another-family": (_add_model(version("mean-rev-v1", "mean-rev")), False),
    "new-version-of-family-without-artifact": (_add_model(version("ofi-lgbm-v3", "ofi-lgbm", artifact=False)), False),
    "strategy-status-only": (_strategy_status, False),
    "modelversion-status-only": (_model_status, False),
    "server-metadata-only": (_server_metadata, False),
}


@pytest.mark.parametrize(("change", "changes"), CHANGES.values(), ids=list(CHANGES))
def test_config_revision_follows_the_desk(change: Callable[[Inputs], Inputs], changes: bool) -> None:
    s = strategy("usdm-btc")
    s["status"] = {"configRev": "0123456789abcdef"}  # running: a halt keeps the workloads (see admission)
    before = render(s)
    s2, b2, mvs2 = change((s, budget(), models()))
    after = render(s2, b=b2, mvs=mvs2)
    assert after.children, after.admission
    if not changes:
        assert json.dumps(after.children) == json.dumps(before.children)
        assert after.config_rev == before.config_rev
        return
    assert after.config_rev != before.config_rev
    assert (
        config_map(after)["metadata"]["annotations"][CONFIG_REV]
        != (config_map(before)["metadata"]["annotations"][CONFIG_REV])
    )
    old, new = deployments(before), deployments(after)
    for w in WORKLOADS:
        old_rev = old[w]["spec"]["template"]["metadata"]["annotations"][CONFIG_REV]
        new_rev = new[w]["spec"]["template"]["metadata"]["annotations"][CONFIG_REV]
        assert (old_rev, new_rev) == (before.config_rev, after.config_rev), f"{w}: no rollout on a config change"


# --- admission ---------------------------------------------------------------------------------------------------


def _replicas(workload: str, n: int) -> Callable[[Obj], None]:
    def edit(spec: Obj) -> None:
        spec["resources"][workload]["replicas"] = n

    return edit


def _suspend(spec: Obj) -> None:
    spec["suspend"] = True


HALTED = {"halt": True}
STARTED = {"configRev": "0123456789abcdef"}


class Case:
    """One admission case: the inputs and what the plan must say."""

    def __init__(
        self,
        phase: str | None,
        reason: str,
        *,
        children: bool,
        edit: Callable[[Obj], None] | None = None,
        budget_spec: Obj | None = None,
        missing_budget: bool = False,
        status: Obj | None = None,
        message: str = "",
        replicas: dict[str, int] | None = None,
    ) -> None:
        self.phase, self.reason, self.children, self.edit = phase, reason, children, edit
        self.budget_spec, self.missing_budget, self.status = budget_spec or {}, missing_budget, status
        self.message, self.replicas = message, replicas


ADMISSION: dict[str, Case] = {
    "admitted": Case(None, reasons.RECONCILED, children=True, replicas=dict.fromkeys(WORKLOADS, 1)),
    "admitted-running": Case(None, reasons.RECONCILED, children=True, status=STARTED),
    "budget-missing": Case("Blocked", reasons.RISK_BUDGET_NOT_FOUND, children=False, missing_budget=True,
                           message="desk-default"),
    "budget-missing-while-running": Case("Blocked", reasons.RISK_BUDGET_NOT_FOUND, children=False,
                                         missing_budget=True, status=STARTED),
    "halted-never-started": Case("Blocked", reasons.RISK_BUDGET_HALTED, children=False, budget_spec=HALTED,
                                 message="desk-default"),
    "halted-never-started-status-without-rev": Case("Blocked", reasons.RISK_BUDGET_HALTED, children=False,
                                                    budget_spec=HALTED, status={"phase": "Blocked"}),
    "halted-started": Case("Blocked", reasons.RISK_BUDGET_HALTED, children=True, budget_spec=HALTED, status=STARTED,
                           replicas=dict.fromkeys(WORKLOADS, 1)),
    "halted-started-suspended": Case("Blocked", reasons.RISK_BUDGET_HALTED, children=True, budget_spec=HALTED,
                                     status=STARTED, edit=_suspend, replicas=dict.fromkeys(WORKLOADS, 0)),
    "suspended": Case("Suspended", reasons.SUSPENDED, children=True, edit=_suspend,
                      replicas=dict.fromkeys(WORKLOADS, 0)),
    "ingest-replicas-2": Case("Failed", reasons.INVALID_SPEC, children=False, edit=_replicas("ingest", 2),
                              message="spec.resources.ingest.replicas"),
    "decide-replicas-2": Case("Failed", reasons.INVALID_SPEC, children=False, edit=_replicas("decide", 2),
                              message="spec.resources.decide.replicas"),
    "execute-replicas-2": Case("Failed", reasons.INVALID_SPEC, children=False, edit=_replicas("execute", 2),
                               message="spec.resources.execute.replicas"),
    "sink-replicas-3": Case(None, reasons.RECONCILED, children=True, edit=_replicas("sink", 3),
                            replicas={"ingest": 1, "decide": 1, "execute": 1, "sink": 3}),
    "decide-replicas-0": Case(None, reasons.RECONCILED, children=True, edit=_replicas("decide", 0),
                              replicas={"ingest": 1, "decide": 0, "execute": 1, "sink": 1}),
}  # fmt: skip


@pytest.mark.parametrize("case", ADMISSION.values(), ids=list(ADMISSION))
def test_admission(case: Case) -> None:
    s = strategy("usdm-btc") if case.edit is None else edited(strategy("usdm-btc"), case.edit)
    if case.status is not None:
        s["status"] = copy.deepcopy(case.status)
    b = None if case.missing_budget else edited(budget(), lambda spec: spec.update(case.budget_spec))
    plan = render(s, b=b)
    assert plan.admission.phase == case.phase
    assert plan.admission.reason == case.reason
    assert case.message in plan.admission.message
    if case.phase is not None:
        assert plan.admission.message, "a blocked/failed/suspended strategy says why"
    assert plan.admission.workloads is case.children
    if not case.children:
        assert plan.children == []
        assert plan.config_rev is None
        return
    assert len(plan.children) == 10
    if case.replicas is not None:
        assert {w: d["spec"]["replicas"] for w, d in deployments(plan).items()} == case.replicas
    riskbudget = desk_docs(plan, "riskbudget.yaml")[0]
    assert riskbudget["spec"]["halt"] is bool(case.budget_spec.get("halt"))


def test_only_a_live_strategys_execute_gets_the_binance_keys_and_they_reach_the_adapter_config() -> None:
    live = edited(strategy("usdm-btc"), lambda spec: spec.update(mode="live"))
    settings = OperatorSettings(binance_secret="desk-keys")
    deps = deployments(render(live, settings=settings))
    e = env(deps["execute"])
    assert e["BINANCE_API_KEY"] == {"secretKeyRef": {"name": "desk-keys", "key": "apiKey"}}
    assert e["BINANCE_API_SECRET"] == {"secretKeyRef": {"name": "desk-keys", "key": "apiSecret"}}
    assert e["TRADEPLANE_BINANCE__TESTNET"] == "true"  # real money needs the operator's explicit switch
    for w in ("ingest", "decide", "sink"):
        assert not {"BINANCE_API_KEY", "BINANCE_API_SECRET"} & set(env(deps[w])), w
    for name in STRATEGY_FILES:  # paper strategies: no keys at all
        assert "BINANCE_API_KEY" not in env(deployments(render(strategy(name)))["execute"]), name
    # the names are the ones live execute reads: resolve the refs as the kubelet would and build its config
    pod_env = {k: ("k3y" if isinstance(v, dict) and v["secretKeyRef"]["key"] == "apiKey" else
                   "s3cret" if isinstance(v, dict) and "secretKeyRef" in v else v)
               for k, v in e.items() if not (isinstance(v, dict) and "fieldRef" in v)}  # fmt: skip
    opts = LiveExecuteOptions.model_validate(parsed_options(deps["execute"]))
    cfg = binance_config(opts, Settings(binance={"testnet": pod_env["TRADEPLANE_BINANCE__TESTNET"]}), "binance-usdm",
                         ("BTCUSDT",), env=pod_env)  # fmt: skip
    assert (cfg.api_key, cfg.api_secret) == ("k3y", "s3cret")
    assert "testnet" in cfg.base_url
    real = env(deployments(render(live, settings=OperatorSettings(binance_testnet=False)))["execute"])
    assert real["TRADEPLANE_BINANCE__TESTNET"] == "false"
