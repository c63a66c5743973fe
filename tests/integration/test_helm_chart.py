"""The Helm chart: lint clean, renders our generated CRDs unchanged, hardened pods, and installs into a
real API server."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import KubernetesCluster
from tests.services.kubernetes import TOOLS_BIN_DIR

CHART = Path(__file__).resolve().parents[2] / "charts" / "tradeplane"


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("helm") or str(TOOLS_BIN_DIR / "helm")
    env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run([exe, *env_args, *args], capture_output=True, text=True, check=False, timeout=300)


def _render(*sets: str) -> list[dict[str, Any]]:
    args = ["template", "t", str(CHART), "--include-crds"]
    for s in sets:
        args += ["--set", s]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_helm_lint_is_clean() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_chart_ships_exactly_the_generated_crds(repo_root: Path) -> None:
    rendered = {d["metadata"]["name"]: d for d in _render() if d["kind"] == "CustomResourceDefinition"}
    committed = {}
    for path in sorted((repo_root / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        committed[doc["metadata"]["name"]] = doc
    assert rendered == committed


def test_operator_pod_is_non_root_with_a_read_only_root_filesystem() -> None:
    docs = _render("operator.enabled=true", "clickhouse.dsnSecret.name=ch")
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    dsn = [e for e in container["env"] if e["name"] == "TRADEPLANE_CLICKHOUSE__DSN"]
    assert dsn == [{"name": "TRADEPLANE_CLICKHOUSE__DSN", "valueFrom": {"secretKeyRef": {"name": "ch", "key": "dsn"}}}]
    assert not [d for d in _render() if d["kind"] == "Deployment"]  # off by default


@pytest.mark.k8s
def test_helm_install_into_the_api_server(k8s_cluster: KubernetesCluster) -> None:
    ns = f"h-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", ns)
    try:
        result = helm("install", "tp", str(CHART), "-n", ns, "--wait", "--timeout", "60s",
                      kubeconfig=k8s_cluster.kubeconfig_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "kubectl get tradeplane" in result.stdout  # NOTES.txt
        got = k8s_cluster.kubectl("get", "serviceaccount,role,rolebinding", "-n", ns, "-o", "name").stdout.split()
        assert {"serviceaccount/tp-tradeplane", "role.rbac.authorization.k8s.io/tp-tradeplane-operator",
                "rolebinding.rbac.authorization.k8s.io/tp-tradeplane-operator"} <= set(got)  # fmt: skip
        crds = k8s_cluster.kubectl("get", "crd", "-o", "name").stdout
        assert "strategies.tradeplane.io" in crds
        # The operator's ServiceAccount may write Strategy status but not, say, Secrets.
        sa = f"system:serviceaccount:{ns}:tp-tradeplane"
        can = k8s_cluster.kubectl("auth", "can-i", "patch", "strategies/status", "-n", ns, "--as", sa, check=False)
        cannot = k8s_cluster.kubectl("auth", "can-i", "get", "secrets", "-n", ns, "--as", sa, check=False)
        assert can.stdout.strip() == "yes" and cannot.stdout.strip() == "no"
    finally:
        helm("uninstall", "tp", "-n", ns, kubeconfig=k8s_cluster.kubeconfig_path)
        k8s_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
