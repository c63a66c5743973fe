"""The Helm chart: lint clean, ships our generated CRDs unchanged (plus kopf's peering CRD), renders the
operator Deployment the operator CLI expects, least-privilege RBAC proven with ``kubectl auth can-i`` on a
real API server, an optional Grafana dashboard on metrics the workloads really export, an optional
ServiceMonitor, and every rendered object valid against the Kubernetes schemas."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.services import KubernetesCluster
from tests.services.kubernetes import TOOLS_BIN_DIR
from tradeplane.operator import naming
from tradeplane.settings import ENV_PREFIX, OperatorSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tradeplane"
#: Every optional part switched on, for lint and schema validation.
ALL_ON = (
    "operator.replicas=2",
    "grafana.dashboards.enabled=true",
    "serviceMonitor.enabled=true",
    "ray.namespace=ray",
    "imagePullSecrets={regcred}",
    "clickhouse.dsnSecret.name=ch",
    "models.pvc=models",
)
#: Kinds that are not in the Kubernetes schemas (validated by the API server or checked structurally).
CUSTOM_KINDS = {"KopfPeering", "ServiceMonitor"}
#: The oldest schema version kubernetes-validate ships (the chart's kubeVersion is >=1.20; the 1.20 API
#: server validates everything again in the k8s tests).
K8S_SCHEMA_VERSION = "1.25.0"


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("helm") or str(TOOLS_BIN_DIR / "helm")
    env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run([exe, *env_args, *args], capture_output=True, text=True, check=False, timeout=300)


def _render(*sets: str, crds: bool = True) -> list[dict[str, Any]]:
    args = ["template", "t", str(CHART), *(["--include-crds"] if crds else [])]
    for s in sets:
        args += ["--set", s]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deploy = _one(docs, "Deployment", "t-tradeplane-operator")
    container: dict[str, Any] = deploy["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(deploy: dict[str, Any]) -> dict[str, Any]:
    """The operator container's env as name -> value, with downward-API annotation refs resolved."""
    annotations = deploy["spec"]["template"]["metadata"].get("annotations", {})
    out: dict[str, Any] = {}
    for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" not in e:
            out[e["name"]] = e.get("value", "")  # the API server drops empty values
            continue
        path = e["valueFrom"].get("fieldRef", {}).get("fieldPath", "")
        m = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
        out[e["name"]] = annotations[m.group(1)] if m else e["valueFrom"]
    return out


# --- offline: lint and CRDs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [(), ALL_ON, ("operator.enabled=false", "rbac.create=false")], ids=str)
def test_helm_lint_is_clean(sets: tuple[str, ...]) -> None:
    result = helm("lint", "--strict", str(CHART), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_chart_ships_exactly_the_generated_crds_plus_kopf_peering(repo_root: Path) -> None:
    rendered = {d["metadata"]["name"]: d for d in _render() if d["kind"] == "CustomResourceDefinition"}
    committed = {}
    for path in sorted((repo_root / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        committed[doc["metadata"]["name"]] = doc
    peering = rendered.pop("kopfpeerings.kopf.dev")
    assert rendered == committed
    assert peering["spec"]["scope"] == "Namespaced" and peering["spec"]["group"] == "kopf.dev"
    assert peering["spec"]["names"] == {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"}
    (version,) = peering["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


# --- offline: the operator Deployment ---------------------------------------------------------------------------


def test_operator_is_on_by_default_with_the_cli_args_env_and_probes() -> None:
    docs = _render()
    deploy = _one(docs, "Deployment", "t-tradeplane-operator")
    container = _container(docs)
    assert container["args"] == ["operator", "--namespace", "default", "--standalone",
                                 "--liveness", "http://0.0.0.0:8080/healthz"]  # fmt: skip
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}  # a standalone operator never overlaps itself
    assert container["image"] == "ghcr.io/tradeplane/tradeplane:0.1.0"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert _env(deploy) == {
        "TRADEPLANE_LOG_LEVEL": "INFO",
        "TRADEPLANE_LOG_FORMAT": "json",
        "TRADEPLANE_NAMESPACE": "default",
        "TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092",
        "TRADEPLANE_OPERATOR__IMAGE": "ghcr.io/tradeplane/tradeplane:0.1.0",
        "TRADEPLANE_OPERATOR__IMAGE_PULL_POLICY": "IfNotPresent",
        "TRADEPLANE_OPERATOR__WORKLOAD_SERVICE_ACCOUNT": "t-tradeplane-workload",
        "TRADEPLANE_OPERATOR__CLICKHOUSE_DSN_SECRET": "",
        "TRADEPLANE_OPERATOR__CLICKHOUSE_DSN_KEY": "dsn",
        "TRADEPLANE_OPERATOR__RAY_NAMESPACE": "",
        "TRADEPLANE_OPERATOR__RAY_IMAGE": "",
        "TRADEPLANE_OPERATOR__MODELS_PVC": "",
        "TRADEPLANE_OPERATOR__RESYNC_SECONDS": "30",
        "TRADEPLANE_OPERATOR__BINANCE_SECRET": "binance-credentials",
        "TRADEPLANE_OPERATOR__BINANCE_TESTNET": "true",
        "TRADEPLANE_HOME": "/var/lib/tradeplane",
    }
    # every operator variable the chart sets is a setting the operator reads (a typo would be ignored silently)
    fields = set(OperatorSettings.model_fields)
    assert {k.removeprefix("TRADEPLANE_OPERATOR__").lower() for k in _env(deploy) if "OPERATOR__" in k} <= fields
    assert not [d for d in docs if d["kind"] in {"KopfPeering", "ServiceMonitor", "ConfigMap"}]


def test_operator_pod_is_non_root_with_a_read_only_root_filesystem_and_gets_the_dsn_only_by_reference() -> None:
    docs = _render("clickhouse.dsnSecret.name=ch", "clickhouse.dsnSecret.key=url")
    deploy = _one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    # The operator names the Secret for the sinks, and reads the DSN itself (rollout analysis) only through a
    # secretKeyRef the kubelet resolves: never a value in the manifest, no RBAC on Secrets.
    env = _env(deploy)
    assert env["TRADEPLANE_OPERATOR__CLICKHOUSE_DSN_SECRET"] == "ch"
    assert env["TRADEPLANE_OPERATOR__CLICKHOUSE_DSN_KEY"] == "url"
    (dsn,) = [e for e in container["env"] if e["name"] == "TRADEPLANE_CLICKHOUSE__DSN"]
    assert dsn == {"name": "TRADEPLANE_CLICKHOUSE__DSN", "valueFrom": {"secretKeyRef": {"name": "ch", "key": "url"}}}
    assert "value" not in dsn
    models = _one(_render("models.pvc=tp-models"), "Deployment")["spec"]["template"]["spec"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "tp-models", "readOnly": True}} in models[
        "volumes"
    ]
    assert {"name": "models", "mountPath": "/var/lib/tradeplane", "readOnly": True} in models["containers"][0][
        "volumeMounts"
    ]
    assert not [d for d in _render("operator.enabled=false") if d["kind"] == "Deployment"]


def test_replicas_above_one_use_kopf_peering_with_a_kopf_peering_object() -> None:
    docs = _render("operator.replicas=2")
    deploy = _one(docs, "Deployment")
    args = _container(docs)["args"]
    assert args == ["operator", "--namespace", "default", "--peering", "t-tradeplane",
                    "--liveness", "http://0.0.0.0:8080/healthz"]  # fmt: skip
    assert "strategy" not in deploy["spec"]  # rolling: the standby takes over through the peering
    peering = _one(docs, "KopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == "t-tradeplane" and peering["metadata"]["namespace"] == "default"


@pytest.mark.parametrize("replicas", [1, 3])
def test_the_operator_cli_accepts_the_rendered_args(replicas: int) -> None:
    """The container args parse with the real `tradeplane operator` command (parsed, not run)."""
    import typer

    from tradeplane.cli import app

    args = _container(_render(f"operator.replicas={replicas}"))["args"]
    command = typer.main.get_command(app).get_command(None, args[0])  # type: ignore[attr-defined]
    assert command is not None
    params = command.make_context(args[0], list(args[1:])).params
    assert params["namespace"] == "default" and params["liveness"] == "http://0.0.0.0:8080/healthz"
    assert (params["standalone"], params["peering"]) == ((True, None) if replicas == 1 else (False, "t-tradeplane"))


def test_values_reach_the_operator_env() -> None:
    docs = _render("operator.watchNamespace=desk", "workloads.image=reg.local/tp:abc", "image.tag=9.9",
                   "workloads.imagePullPolicy=Always", "ray.namespace=ray", "models.pvc=models",
                   "operator.resyncSeconds=7.5", "kafka.bootstrapServers=k1:9092\\,k2:9092",
                   "operator.logLevel=DEBUG", "operator.logFormat=text",
                   "workloads.serviceAccount.name=desk-pods", "workloads.rayImage=reg.local/tp-ray:abc")  # fmt: skip
    deploy = _one(docs, "Deployment")
    env = _env(deploy)
    assert _container(docs)["image"] == "ghcr.io/tradeplane/tradeplane:9.9"
    assert _container(docs)["args"][:3] == ["operator", "--namespace", "desk"]
    assert env["TRADEPLANE_NAMESPACE"] == "desk"
    assert env["TRADEPLANE_OPERATOR__IMAGE"] == "reg.local/tp:abc"
    assert env["TRADEPLANE_OPERATOR__IMAGE_PULL_POLICY"] == "Always"
    assert env["TRADEPLANE_OPERATOR__RAY_NAMESPACE"] == "ray"
    assert env["TRADEPLANE_OPERATOR__RAY_IMAGE"] == "reg.local/tp-ray:abc"
    assert env["TRADEPLANE_OPERATOR__MODELS_PVC"] == "models"
    assert env["TRADEPLANE_OPERATOR__RESYNC_SECONDS"] == "7.5"
    assert env["TRADEPLANE_OPERATOR__WORKLOAD_SERVICE_ACCOUNT"] == "desk-pods"
    assert env["TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS"] == "k1:9092,k2:9092"
    # The workloads SA and the Roles live where the objects are; the ray.io rules move to the ray namespace.
    assert _one(docs, "ServiceAccount", "desk-pods")["metadata"]["namespace"] == "desk"
    assert _one(docs, "Role", "t-tradeplane-operator")["metadata"]["namespace"] == "desk"
    ray_role = _one(docs, "Role", "t-tradeplane-operator-ray")
    assert ray_role["metadata"]["namespace"] == "ray"
    assert "ray.io" not in json.dumps(_one(docs, "Role", "t-tradeplane-operator")["rules"])
    assert _one(docs, "RoleBinding", "t-tradeplane-operator-ray")["subjects"][0]["namespace"] == "default"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIX) or key == "TRADEPLANE_CONFIG":
            monkeypatch.delenv(key)
    monkeypatch.setenv("TRADEPLANE_SECRETS_DIR", "/nonexistent")
    yield monkeypatch


def test_operator_env_loads_as_tradeplane_settings(clean_env: pytest.MonkeyPatch) -> None:
    """Every env name the chart sets is a real setting (the model forbids unknown keys) with the value."""
    env = _env(_one(_render("clickhouse.dsnSecret.name=ch", "models.pvc=models", "ray.namespace=ray"), "Deployment"))
    for key, value in env.items():
        clean_env.setenv(key, value)
    s = load_settings()
    assert (s.log_level, s.log_format, s.namespace) == ("INFO", "json", "default")
    assert s.kafka.bootstrap_servers == "kafka:9092"
    op = s.operator
    assert op.image == "ghcr.io/tradeplane/tradeplane:0.1.0" and op.image_pull_policy == "IfNotPresent"
    assert op.workload_service_account == "t-tradeplane-workload"
    assert (op.clickhouse_dsn_secret, op.clickhouse_dsn_key) == ("ch", "dsn")
    assert (op.ray_namespace, op.models_pvc, op.resync_seconds) == ("ray", "models", 30.0)


# --- offline: RBAC shape ----------------------------------------------------------------------------------------


def test_rbac_is_namespaced_except_read_only_discovery() -> None:
    docs = _render()
    role = _one(docs, "Role", "t-tradeplane-operator")
    rules = role["rules"]
    flat = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert not {r for _, r, _ in flat} & {"secrets", "pods", "pods/exec", "*"}
    assert not {v for *_, v in flat} & {"*", "escalate", "bind", "impersonate"}
    for kind in ("strategies", "modelversions", "riskbudgets"):
        assert {("tradeplane.io", kind, v) for v in ("get", "list", "watch", "patch", "update")} <= flat
        assert ("tradeplane.io", f"{kind}/status", "patch") in flat
        assert ("tradeplane.io", f"{kind}/finalizers", "update") in flat
    assert ("kopf.dev", "kopfpeerings", "patch") in flat and ("events.k8s.io", "events", "create") in flat
    assert ("ray.io", "rayservices/status", "get") in flat and ("ray.io", "rayjobs", "create") in flat
    cluster_role = _one(docs, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "default-t-tradeplane-operator-discovery"
    assert cluster_role["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]  # fmt: skip
    binding = _one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "t-tradeplane", "namespace": "default"}]
    workload_role = _one(docs, "Role", "t-tradeplane-workload")
    assert workload_role["rules"] == [
        {"apiGroups": ["tradeplane.io"], "resources": ["strategies"], "verbs": ["get"]},
        {"apiGroups": ["tradeplane.io"], "resources": ["strategies/status"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},  # decide reads <family>-routes
    ]
    rbac_kinds = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert not [d for d in _render("rbac.create=false") if d["kind"] in rbac_kinds]


# --- offline: observability -------------------------------------------------------------------------------------

#: PromQL words that look like metric names in a selector position but are not.
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _exported_metric_names() -> set[str]:
    """Metric names the workloads register: string literals passed to prometheus_client constructors and
    metric families, with the suffixes the exposition adds (``_total`` for counters; ``_bucket``/``_sum``/
    ``_count`` for histograms)."""
    names: set[str] = set()
    pattern = re.compile(
        r"\b(Counter|Gauge|Histogram|Summary|Info|BatchHistogram|CounterMetricFamily|GaugeMetricFamily|"
        r"HistogramMetricFamily|counter|single)\(\s*\"([a-z_][a-z0-9_]*)\""
    )
    hist = {"_bucket", "_sum", "_count"}
    for path in (REPO / "workloads").rglob("*.py"):
        for ctor, name in pattern.findall(path.read_text()):
            if ctor in {"Counter", "CounterMetricFamily", "counter"}:
                names |= {name + "_total"}
            elif ctor in {"Histogram", "BatchHistogram", "HistogramMetricFamily", "Summary"}:
                names |= {name + s for s in hist}
            elif ctor == "single":  # sink's helper: counter unless gauge=True; accept both spellings
                names |= {name, name + "_total"}
            else:
                names |= {name}
    # Names yielded from tuples in a loop (the Kafka bus's published/delivered/... counters).
    for path in (REPO / "workloads").rglob("*.py"):
        for name in re.findall(r"\(\"(tradeplane_[a-z0-9_]+)\", \"", path.read_text()):
            names |= {name + "_total"}
    return names


def _dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = _one(docs, "ConfigMap", "t-tradeplane-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def test_grafana_dashboard_is_optional_and_charts_metrics_the_workloads_export() -> None:
    assert not [d for d in _render() if d["kind"] == "ConfigMap"]
    dashboard = _dashboard(_render("grafana.dashboards.enabled=true"))
    assert dashboard["uid"] == "tradeplane-workloads" and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", e)} - _PROMQL_WORDS
    exported = _exported_metric_names()
    assert {"messages_total", "ingest_lag_ms_bucket", "tradeplane_sink_rows_written_total",
            "tradeplane_decide_records_total"} <= used  # fmt: skip
    assert used <= exported, f"dashboard uses metrics no workload exports: {sorted(used - exported)}"
    # Series are selected by the labels the ServiceMonitor turns into target labels.
    sm = _one(_render("serviceMonitor.enabled=true"), "ServiceMonitor")
    target_labels = {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in sm["spec"]["podTargetLabels"]}
    for expr in exprs:
        assert "tradeplane_io_strategy" in expr
        assert set(re.findall(r"\b(tradeplane_io_strategy|app_kubernetes_io_component)\b", expr)) <= target_labels


def test_service_monitor_only_when_enabled_and_selects_the_operator_rendered_metrics_services() -> None:
    assert not [d for d in _render() if d["kind"] == "ServiceMonitor"]
    sm = _one(_render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"), "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["selector"]["matchLabels"] == {naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
                                                     naming.COMPONENT_LABEL: "metrics"}  # fmt: skip
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["default"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"


# --- offline: schemas and documentation -------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [(), ALL_ON], ids=["defaults", "all-on"])
def test_every_rendered_object_is_valid_kubernetes(sets: tuple[str, ...]) -> None:
    docs = _render(*sets, crds=False)
    checked = 0
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["metadata"]["name"] and doc["apiVersion"].count("/") == 1
            continue
        kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
        checked += 1
    assert checked >= 8


def _documented_value_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of values.yaml down to the settings a user sets (Kubernetes structures stay whole)."""
    whole = {"resources", "podSecurityContext", "securityContext", "annotations", "podAnnotations", "labels"}
    keys: list[str] = []
    for key, value in node.items():
        path = prefix + key
        if isinstance(value, dict) and value and key not in whole:
            keys += _documented_value_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def test_every_value_is_commented_in_values_yaml_and_in_the_operations_table() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    commented: dict[str, bool] = {}
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][A-Za-z0-9_]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        stack = [(n, k) for n, k in stack if n < indent] + [(indent, m.group(2))]
        previous = lines[i - 1].strip() if i else ""
        commented[".".join(k for _, k in stack)] = "#" in line or previous.startswith("#")
    keys = _documented_value_keys(yaml.safe_load(text))
    undocumented = [k for k in keys if not commented.get(k)]
    assert not undocumented, f"values without a comment: {undocumented}"
    ops = (REPO / "docs" / "operations.md").read_text()
    missing = [k for k in keys if f"`{k}`" not in ops]
    assert not missing, f"values missing from the docs/operations.md table: {missing}"


# --- against the API server -------------------------------------------------------------------------------------


def _can(cluster: KubernetesCluster, sa: str, verb: str, resource: str, ns: str) -> bool:
    """``kubectl auth can-i`` as a ServiceAccount; ``kind/sub`` asks for a subresource (kubectl would read
    ``strategies/status`` as the strategy *named* status)."""
    resource, _, sub = resource.partition("/")
    extra = ["--subresource", sub] if sub else []
    result = cluster.kubectl("auth", "can-i", verb, resource, *extra, "-n", ns, "--as", sa, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stdout + result.stderr
    return answer == "yes"


@pytest.mark.k8s
def test_helm_install_rbac_and_upgrade_on_the_api_server(k8s_cluster: KubernetesCluster) -> None:
    ns = f"h-{uuid.uuid4().hex[:8]}"
    kube = k8s_cluster.kubeconfig_path
    # KubeRay's real CRDs, as on a cluster the operator runs in (kubectl auth can-i resolves ray.io through
    # discovery; without them it would check a resource of the core group).
    k8s_cluster.install_kuberay_crds()
    k8s_cluster.kubectl("create", "namespace", ns)
    try:
        # No --wait: the test control plane has no scheduler, so the operator pod stays Pending.
        result = helm("install", "tp", str(CHART), "-n", ns, "--timeout", "60s", kubeconfig=kube)
        assert result.returncode == 0, result.stderr
        assert f"kubectl get tradeplane -n {ns}" in result.stdout  # NOTES.txt
        assert "deployment/tp-tradeplane-operator" in result.stdout
        got = k8s_cluster.kubectl("get", "serviceaccount,role,rolebinding,deployment", "-n", ns, "-o", "name")
        assert {"serviceaccount/tp-tradeplane", "serviceaccount/tp-tradeplane-workload",
                "role.rbac.authorization.k8s.io/tp-tradeplane-operator",
                "role.rbac.authorization.k8s.io/tp-tradeplane-workload",
                "rolebinding.rbac.authorization.k8s.io/tp-tradeplane-operator",
                "rolebinding.rbac.authorization.k8s.io/tp-tradeplane-workload",
                "deployment.apps/tp-tradeplane-operator"} <= set(got.stdout.split())  # fmt: skip
        crds = k8s_cluster.kubectl("get", "crd", "-o", "name").stdout
        assert "strategies.tradeplane.io" in crds and "kopfpeerings.kopf.dev" in crds

        operator = f"system:serviceaccount:{ns}:tp-tradeplane"
        for verb, resource in [("patch", "strategies.tradeplane.io/status"), ("update", "strategies.tradeplane.io"),
                               ("watch", "riskbudgets.tradeplane.io"), ("patch", "modelversions.tradeplane.io"),
                               ("create", "deployments.apps"), ("delete", "poddisruptionbudgets.policy"),
                               ("create", "configmaps"), ("create", "services"),
                               ("create", "rayservices.ray.io"), ("get", "rayjobs.ray.io/status"),
                               ("create", "events"), ("patch", "kopfpeerings.kopf.dev"),
                               ("list", "customresourcedefinitions.apiextensions.k8s.io"),
                               ("watch", "namespaces")]:  # fmt: skip
            assert _can(k8s_cluster, operator, verb, resource, ns), f"operator cannot {verb} {resource}"
        for verb, resource in [("get", "secrets"), ("delete", "namespaces"), ("create", "pods"),
                               ("create", "customresourcedefinitions.apiextensions.k8s.io"),
                               ("create", "roles.rbac.authorization.k8s.io")]:  # fmt: skip
            assert not _can(k8s_cluster, operator, verb, resource, ns), f"operator may {verb} {resource}"
        assert not _can(k8s_cluster, operator, "create", "deployments.apps", "default")  # namespaced only

        workload = f"system:serviceaccount:{ns}:tp-tradeplane-workload"
        assert _can(k8s_cluster, workload, "patch", "strategies.tradeplane.io/status", ns)
        assert _can(k8s_cluster, workload, "get", "configmaps", ns)  # the routes, read by decide
        for verb, resource in [("create", "deployments.apps"), ("patch", "strategies.tradeplane.io"),
                               ("get", "secrets"), ("patch", "riskbudgets.tradeplane.io/status"),
                               ("patch", "configmaps"), ("list", "configmaps")]:  # fmt: skip
            assert not _can(k8s_cluster, workload, verb, resource, ns), f"workloads may {verb} {resource}"

        # Upgrade with changed values: peering, the dashboard, another Kafka; objects follow.
        result = helm("upgrade", "tp", str(CHART), "-n", ns, "--set", "operator.replicas=2",
                      "--set", "grafana.dashboards.enabled=true", "--set", "kafka.bootstrapServers=kafka-2:9092",
                      kubeconfig=kube)  # fmt: skip
        assert result.returncode == 0, result.stderr
        deploy = json.loads(k8s_cluster.kubectl("get", "deployment", "tp-tradeplane-operator", "-n", ns,
                                                "-o", "json").stdout)  # fmt: skip
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        assert deploy["spec"]["replicas"] == 2 and "--peering" in container["args"]
        assert _env(deploy)["TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka-2:9092"
        peering = json.loads(k8s_cluster.kubectl("get", "kopfpeering", "tp-tradeplane", "-n", ns,
                                                 "-o", "json").stdout)  # fmt: skip
        assert peering["kind"] == "KopfPeering"
        k8s_cluster.kubectl("get", "configmap", "tp-tradeplane-dashboards", "-n", ns)
        # The operator's peering heartbeat is a patch of the object's status: allowed.
        k8s_cluster.kubectl("patch", "kopfpeering", "tp-tradeplane", "-n", ns, "--type", "merge",
                            "-p", '{"status": {"op-1": {"priority": 0}}}', "--as", operator)  # fmt: skip

        # And back: the peering object goes away with replicas=1.
        result = helm("upgrade", "tp", str(CHART), "-n", ns, "--reuse-values", "--set", "operator.replicas=1",
                      kubeconfig=kube)  # fmt: skip
        assert result.returncode == 0, result.stderr
        gone = k8s_cluster.kubectl("get", "kopfpeering", "tp-tradeplane", "-n", ns, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        history = helm("history", "tp", "-n", ns, "-o", "json", kubeconfig=kube)
        assert [r["status"] for r in json.loads(history.stdout)][-1] == "deployed"
    finally:
        helm("uninstall", "tp", "-n", ns, kubeconfig=kube)
        k8s_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.k8s
def test_every_rendered_object_passes_server_side_dry_run(k8s_cluster: KubernetesCluster) -> None:
    """The 1.20 API server accepts every object of the all-on rendering (ServiceMonitor aside: its CRD
    belongs to prometheus-operator and is not installed here)."""
    ns = f"d-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", ns)
    k8s_cluster.kubectl("create", "namespace", f"{ns}-ray")
    try:
        crd = CHART / "crds" / "kopfpeerings.kopf.dev.yaml"
        k8s_cluster.apply_crds([crd])
        sets = [s.replace("ray.namespace=ray", f"ray.namespace={ns}-ray") for s in ALL_ON]
        args = ["template", "tp", str(CHART), "-n", ns]
        for s in sets:
            args += ["--set", s]
        result = helm(*args)
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] != "ServiceMonitor"]
        assert {"KopfPeering", "Deployment", "ClusterRole", "ConfigMap"} <= {d["kind"] for d in docs}
        stream = "\n---\n".join(yaml.safe_dump(d) for d in docs)
        out = k8s_cluster.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", input=stream)
        assert len(out.stdout.split()) == len(docs)
    finally:
        for name in (ns, f"{ns}-ray"):
            k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
