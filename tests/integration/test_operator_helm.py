"""The chart and the operator together: ``helm install`` into the API server, then the operator process run
exactly as the chart's Deployment says — its args, its env, and the chart's ServiceAccount token, so every
request goes through the chart's RBAC — reconciles the examples. Two replicas elect one active operator
through kopf peering."""

from __future__ import annotations

import base64
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.services import KubernetesCluster
from tests.services.kubernetes import KUBECONFIG

from .operator_proc import OperatorProcess, get, wait_for
from .test_helm_chart import CHART, helm
from .test_operator import EXAMPLES, STRATEGIES, converged

pytestmark = pytest.mark.k8s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(container: dict[str, Any], template: dict[str, Any], ns: str) -> dict[str, str]:
    """The container's env with the downward-API fields resolved as the kubelet does."""
    out: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" not in item:  # the API server drops empty values
            out[item["name"]] = item.get("value", "")
            continue
        path = item["valueFrom"]["fieldRef"]["fieldPath"]
        if path == "metadata.namespace":
            out[item["name"]] = ns
        elif path.startswith("metadata.annotations['"):
            out[item["name"]] = template["metadata"]["annotations"][path[len("metadata.annotations['") : -2]]
        else:
            raise AssertionError(f"unexpected fieldRef {path}")
    return out


def _single_active(logs: list[str]) -> list[int]:
    """[index] of the one replica whose last peering message is a resume ([] unless exactly one)."""
    active = []
    for i, text in enumerate(logs):
        resumed = text.rfind("Resuming operations after the pause")
        paused = max(text.rfind("Pausing operations in favour of"), text.rfind("Pausing all operators"))
        if resumed > paused:
            active.append(i)
    return active if len(active) == 1 else []


def _service_account_kubeconfig(cluster: KubernetesCluster, ns: str, sa: str, path: Path) -> Path:
    """A kubeconfig holding the ServiceAccount's token (1.20: the token controller writes it to a Secret)."""

    def token() -> str | None:
        for secret in get(cluster, ns, "secrets")["items"]:
            notes = secret["metadata"].get("annotations") or {}
            if secret["type"] == "kubernetes.io/service-account-token" and notes.get(
                "kubernetes.io/service-account.name") == sa:  # fmt: skip
                return base64.b64decode(secret["data"]["token"]).decode()
        return None

    path.write_text(KUBECONFIG.format(server=cluster.server, token=wait_for(token, 60, f"{sa}'s token")))
    return path


def test_the_chart_s_operator_under_its_own_rbac_reconciles_the_examples_with_one_leader(
    k8s_cluster: KubernetesCluster, tmp_path: Path
) -> None:
    cluster = k8s_cluster
    cluster.install_kuberay_crds()
    ns = f"hop-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    ops: list[OperatorProcess] = []
    try:
        result = helm("install", "tp", str(CHART), "-n", ns, "--set", "operator.replicas=2", "--timeout", "60s",
                      kubeconfig=cluster.kubeconfig_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        deploy = get(cluster, ns, "deployment", "tp-tradeplane-operator")
        template = deploy["spec"]["template"]
        [container] = template["spec"]["containers"]
        sa = template["spec"]["serviceAccountName"]
        kubeconfig = _service_account_kubeconfig(cluster, ns, sa, tmp_path / "sa-kubeconfig")
        env = _env(container, template, ns) | {"TRADEPLANE_OPERATOR__RESYNC_SECONDS": "5"}
        assert container["args"][:3] == ["operator", "--namespace", ns] and "--peering" in container["args"]
        for _ in range(2):  # two replicas on one host: only the liveness port differs
            argv = [a.replace(":8080/", f":{_free_port()}/") for a in container["args"]]
            ops.append(OperatorProcess(cluster, ns, tmp_path, kubeconfig=kubeconfig, env=env, argv=argv))
        cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))
        for s in STRATEGIES:
            wait_for(lambda s=s: converged(cluster, ns, s), 90, f"children of {s} (reconciled under the chart's RBAC)")
        logs = [op.text() for op in ops]
        assert all("Forbidden" not in text for text in logs), logs  # every request passed the chart's RBAC
        # One leader. A peered operator starts paused; the one that sees no higher priority resumes. Both may
        # work for a moment while the second replica registers (the lower one then pauses in favour of the
        # other), so the claim is about the steady state: after that, exactly one replica reconciles.
        [active] = wait_for(lambda: _single_active([op.text() for op in ops]), 60, "exactly one active replica")
        standby = 1 - active
        seen = len(ops[standby].text())
        cluster.kubectl("patch", "strategy", "usdm-btc", "-n", ns, "--type", "merge", "-p",
                        '{"spec":{"decision":{"tau":0.66}}}')  # fmt: skip
        wait_for(lambda: "tau: 0.66" in get(cluster, ns, "configmap", "usdm-btc-config")["data"]["strategy.yaml"], 30,
                 "the edit reconciled")  # fmt: skip
        assert "'strategy' succeeded" not in ops[standby].text()[seen:], ops[standby].text()[seen:]
    finally:
        for op in ops:
            op.stop()
        helm("uninstall", "tp", "-n", ns, kubeconfig=cluster.kubeconfig_path)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
