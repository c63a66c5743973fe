"""The RayService and RayJob the operator renders for ModelVersions, against KubeRay's real CRD schemas.

The ModelVersions are the examples, created in a real API server and read back (so owner references carry real
uids). Each rendered child is created with ``kubectl create --dry-run=server``: the API server validates it
against KubeRay's structural schema and prunes unknown fields, so the test also checks that nothing we render
was pruned (a misspelled field would otherwise vanish silently). A deliberately broken render proves the
schema is applied at all.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import KubernetesCluster
from tradeplane.operator.render.modelversion import render_family_rayservice, render_training_rayjob

pytestmark = pytest.mark.k8s

IMAGE = "registry.example/tradeplane:test"
EXAMPLES = ("10-modelversion-stable.yaml", "11-modelversion-candidate.yaml")


@pytest.fixture(scope="module")
def cluster(k8s_cluster: KubernetesCluster, repo_root: Path) -> KubernetesCluster:
    installed = k8s_cluster.install_kuberay_crds()
    assert {"rayservices.ray.io", "rayjobs.ray.io", "rayclusters.ray.io"} <= set(installed)
    k8s_cluster.apply_crds(sorted((repo_root / "crds").glob("*.yaml")))
    return k8s_cluster


def example(repo_root: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo_root / "examples" / name).read_text())
    return doc


def as_rayserve(mv: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(mv)
    out["spec"]["serving"] = {"mode": "rayserve", "replicas": 2, "resources": {"cpu": "500m", "memory": "1Gi"}}
    return out


def as_training(mv: dict[str, Any], name: str, **training: Any) -> dict[str, Any]:
    out = copy.deepcopy(mv)
    out["metadata"]["name"] = name
    out["spec"].pop("artifact")
    out["spec"].pop("featureSignature")
    out["spec"]["training"] = {"data": ["local://data/klines_btcusdt_1m.csv.gz"], **training}
    return out


def create_in_server(cluster: KubernetesCluster, namespace: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create ModelVersions for real and return them as the API server does (uid, generation, defaults)."""
    out = []
    for doc in docs:
        created = cluster.kubectl("create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(doc))
        out.append(json.loads(created.stdout))
    return out


def dry_run(cluster: KubernetesCluster, manifest: dict[str, Any]) -> Any:
    """``kubectl create --dry-run=server`` (client-side validation off: kubectl 1.20 predates these schemas)."""
    return cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=false",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )


def assert_kept(rendered: Any, returned: Any, path: str = "") -> None:
    """Everything rendered came back (the server may add defaults, but pruned nothing)."""
    if isinstance(rendered, dict):
        assert isinstance(returned, dict), f"{path}: {returned!r}"
        for key, value in rendered.items():
            assert key in returned, f"{path}.{key} was pruned by the API server (not in KubeRay's schema)"
            assert_kept(value, returned[key], f"{path}.{key}")
    elif isinstance(rendered, list):
        assert isinstance(returned, list) and len(rendered) == len(returned), f"{path}: {returned!r}"
        for i, (a, b) in enumerate(zip(rendered, returned, strict=True)):
            assert_kept(a, b, f"{path}[{i}]")
    else:
        assert rendered == returned, f"{path}: rendered {rendered!r}, server has {returned!r}"


def accepted(cluster: KubernetesCluster, manifest: dict[str, Any]) -> dict[str, Any]:
    result = dry_run(cluster, manifest)
    assert result.returncode == 0, result.stderr
    returned: dict[str, Any] = json.loads(result.stdout)
    assert_kept(manifest["spec"], returned["spec"], "spec")
    assert_kept(manifest["metadata"]["labels"], returned["metadata"]["labels"], "metadata.labels")
    assert returned["metadata"]["ownerReferences"] == manifest["metadata"]["ownerReferences"]
    assert returned["metadata"]["annotations"] == manifest["metadata"]["annotations"]
    return returned


@pytest.mark.parametrize("variant", ["examples", "both-rayserve"])
def test_rayservice_of_the_examples_is_accepted(
    cluster: KubernetesCluster, namespace: str, repo_root: Path, variant: str
) -> None:
    stable, candidate = (example(repo_root, n) for n in EXAMPLES)
    docs = [stable, candidate] if variant == "examples" else [as_rayserve(stable), candidate]
    versions = create_in_server(cluster, namespace, docs)
    rs = render_family_rayservice(
        versions,
        image=IMAGE,
        namespace=namespace,
        home_volume={"persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
    )
    assert rs is not None
    returned = accepted(cluster, rs)
    served = ["ofi-lgbm-v2"] if variant == "examples" else ["ofi-lgbm-v1", "ofi-lgbm-v2"]
    assert [o["name"] for o in returned["metadata"]["ownerReferences"]] == served
    uids = {v["metadata"]["name"]: v["metadata"]["uid"] for v in versions}
    assert all(o["uid"] == uids[o["name"]] for o in returned["metadata"]["ownerReferences"])
    assert yaml.safe_load(returned["spec"]["serveConfigV2"]) == yaml.safe_load(rs["spec"]["serveConfigV2"])


@pytest.mark.parametrize(("workers", "cpu"), [(0, "2"), (1, "1"), (3, "1500m")])
def test_training_rayjob_is_accepted(
    cluster: KubernetesCluster, namespace: str, repo_root: Path, workers: int, cpu: str
) -> None:
    mv = as_training(
        example(repo_root, EXAMPLES[1]),
        f"ofi-lgbm-t{workers}",
        workers=workers,
        resources={"cpu": cpu, "memory": "2Gi"},
        maxDurationMinutes=45,
    )
    (created,) = create_in_server(cluster, namespace, [mv])
    rj = render_training_rayjob(created, image=IMAGE, namespace=namespace)
    assert rj is not None
    returned = accepted(cluster, rj)
    assert returned["spec"]["activeDeadlineSeconds"] == 45 * 60
    assert returned["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]


def _break_replicas(m: dict[str, Any]) -> None:
    cluster = m["spec"].get("rayClusterConfig") or m["spec"]["rayClusterSpec"]
    cluster["workerGroupSpecs"][0]["replicas"] = "two"


def _break_start_params(m: dict[str, Any]) -> None:
    cluster = m["spec"].get("rayClusterConfig") or m["spec"]["rayClusterSpec"]
    cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string


def _drop_group_name(m: dict[str, Any]) -> None:
    cluster = m["spec"].get("rayClusterConfig") or m["spec"]["rayClusterSpec"]
    del cluster["workerGroupSpecs"][0]["groupName"]


def _break_deadline(m: dict[str, Any]) -> None:
    m["spec"]["activeDeadlineSeconds"] = "an hour"


BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "replicas-not-an-integer": (_break_replicas, "replicas"),
    "start-param-not-a-string": (_break_start_params, "rayStartParams"),
    "worker-group-without-name": (_drop_group_name, "groupName"),
}


@pytest.mark.parametrize("kind", ["RayService", "RayJob"])
@pytest.mark.parametrize("breakage", sorted(BREAKS))
def test_a_broken_render_is_rejected(
    cluster: KubernetesCluster, namespace: str, repo_root: Path, kind: str, breakage: str
) -> None:
    """The schema is really applied: a wrong type or a missing required field fails, naming the field."""
    candidate = example(repo_root, EXAMPLES[1])
    candidate["metadata"].update(uid="00000000-0000-0000-0000-000000000001", namespace=namespace)
    candidate["apiVersion"] = "tradeplane.io/v1alpha1"
    if kind == "RayService":
        manifest = render_family_rayservice([candidate], image=IMAGE, namespace=namespace)
    else:
        manifest = render_training_rayjob(
            as_training(candidate, "ofi-lgbm-t", workers=1), image=IMAGE, namespace=namespace
        )
    assert manifest is not None
    accepted(cluster, manifest)  # the unbroken render passes
    breaker, field = BREAKS[breakage]
    breaker(manifest)
    result = dry_run(cluster, manifest)
    assert result.returncode != 0, f"{breakage} was accepted: {result.stdout[:400]}"
    assert "is invalid" in result.stderr and field in result.stderr, result.stderr


def test_a_broken_rayjob_deadline_is_rejected(cluster: KubernetesCluster, namespace: str, repo_root: Path) -> None:
    candidate = example(repo_root, EXAMPLES[1])
    candidate["metadata"].update(uid="00000000-0000-0000-0000-000000000002", namespace=namespace)
    manifest = render_training_rayjob(as_training(candidate, "ofi-lgbm-d"), image=IMAGE, namespace=namespace)
    assert manifest is not None
    _break_deadline(manifest)
    result = dry_run(cluster, manifest)
    assert result.returncode != 0 and "activeDeadlineSeconds" in result.stderr, result.stderr


def test_a_misspelled_field_would_be_noticed(cluster: KubernetesCluster, namespace: str, repo_root: Path) -> None:
    """The API server silently prunes unknown fields; :func:`assert_kept` is what turns that into a failure."""
    candidate = example(repo_root, EXAMPLES[1])
    candidate["metadata"].update(uid="00000000-0000-0000-0000-000000000003", namespace=namespace)
    manifest = render_family_rayservice([candidate], image=IMAGE, namespace=namespace)
    assert manifest is not None
    manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicaCount"] = 2
    result = dry_run(cluster, manifest)
    assert result.returncode == 0, result.stderr  # accepted, but ...
    with pytest.raises(AssertionError, match=r"replicaCount was pruned"):
        assert_kept(manifest["spec"], json.loads(result.stdout)["spec"], "spec")
