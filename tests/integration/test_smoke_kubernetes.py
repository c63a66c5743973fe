"""Smoke test of the Kubernetes test control plane and the helm binary.

Covers only the infrastructure the operator tests stand on: the API server is ready, the Python client
built from the kubeconfig can write and read objects, KubeRay's real CRDs install and become Established,
and helm 3.6.2 runs. Tests of tradeplane's own CRDs, examples and chart live in their own files.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from kubernetes import client

from tests.services import KubernetesCluster
from tests.services.kubernetes import TOOLS_BIN_DIR

KUBERAY_CRDS = {"rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"}
HELM = TOOLS_BIN_DIR / "helm"


def test_apiserver_ready(k8s_cluster: KubernetesCluster) -> None:
    assert k8s_cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = k8s_cluster.kubectl("version", "-o", "json").stdout
    assert '"gitVersion"' in version


def test_configmap_round_trip_with_python_client(k8s_cluster: KubernetesCluster) -> None:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    with k8s_cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"venue": "binance"})
        core.create_namespaced_config_map("default", body)
        try:
            got = core.read_namespaced_config_map(name, "default")
            assert got.data == {"venue": "binance"}
            assert got.metadata is not None and got.metadata.uid
        finally:
            core.delete_namespaced_config_map(name, "default")
        with pytest.raises(client.ApiException) as missing:
            core.read_namespaced_config_map(name, "default")
        assert missing.value.status == 404


def test_kuberay_crds_established(k8s_cluster: KubernetesCluster) -> None:
    assert set(k8s_cluster.install_kuberay_crds()) == KUBERAY_CRDS
    # Installing again must converge (replace), not fail: several test modules may install them.
    assert set(k8s_cluster.install_kuberay_crds()) == KUBERAY_CRDS
    kinds = k8s_cluster.kubectl("api-resources", "--api-group=ray.io", "-o", "name").stdout.split()
    assert set(kinds) == KUBERAY_CRDS
    # The schema is enforced both ways: a well-formed RayJob passes, a wrongly typed one is rejected.
    good = (
        "apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: smoke-good}\n"
        "spec: {entrypoint: python -c 'print(1)', shutdownAfterJobFinishes: true}\n"
    )
    k8s_cluster.kubectl("create", "--dry-run=server", "--validate=false", "-f", "-", input=good)
    bad = good.replace("smoke-good", "smoke-bad").replace(
        "shutdownAfterJobFinishes: true", "shutdownAfterJobFinishes: notabool"
    )
    rejected = k8s_cluster.kubectl("create", "--dry-run=server", "--validate=false", "-f", "-", input=bad, check=False)
    assert rejected.returncode != 0, rejected.stdout
    assert "shutdownAfterJobFinishes" in rejected.stderr and "boolean" in rejected.stderr, rejected.stderr


def test_helm_version() -> None:
    assert HELM.exists(), f"{HELM} missing: run scripts/install-helm.sh"
    out = subprocess.run([str(HELM), "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("v3.6.2"), out
