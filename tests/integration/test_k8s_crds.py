"""Our generated CRDs on a real kube-apiserver: examples accepted, bad specs rejected with field paths,
server-side defaulting identical to the pydantic models, status subresource and printer columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import KubernetesCluster
from tradeplane.api.v1alpha1 import GROUP, RESOURCES, VERSION

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def cluster(k8s_cluster: KubernetesCluster, repo_root: Path) -> KubernetesCluster:
    names = k8s_cluster.apply_crds(sorted((repo_root / "crds").glob("*.yaml")))
    assert sorted(names) == sorted(r.crd_name for r in RESOURCES)
    return k8s_cluster


def _table(output: str) -> list[dict[str, str]]:
    """Parse kubectl's column output (one table) into rows keyed by header."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines[1:]]


def test_every_example_is_accepted_and_listed_with_printer_columns(
    cluster: KubernetesCluster, namespace: str, repo_root: Path
) -> None:
    applied = cluster.kubectl("apply", "-n", namespace, "-f", str(repo_root / "examples"))
    assert applied.stdout.count("created") == 5, applied.stdout
    expected_headers = {
        "riskbudgets": ["NAME", "PHASE", "HALT", "GROSS", "MAXGROSS", "DAILYPNL", "STRATEGIES", "AGE"],
        "modelversions": ["NAME", "MODEL", "KIND", "ROLLOUT", "PHASE", "STEP", "WEIGHT", "AGE"],
        "strategies": ["NAME", "VENUE", "MODE", "BUDGET", "PHASE", "PNL", "REV", "AGE"],
    }
    for plural, headers in expected_headers.items():
        out = cluster.kubectl("get", plural, "-n", namespace).stdout
        assert out.split("\n")[0].split() == headers, out
    strategies = {row["NAME"]: row for row in _table(cluster.kubectl("get", "strat", "-n", namespace).stdout)}
    assert strategies["usdm-btc"]["VENUE"] == "binance-usdm" and strategies["usdm-btc"]["BUDGET"] == "desk-default"
    assert strategies["spot-majors"]["MODE"] == "paper"
    rb = _table(cluster.kubectl("get", "rb", "-n", namespace).stdout)
    assert [(r["NAME"], r["HALT"], r["MAXGROSS"]) for r in rb] == [("desk-default", "false", "20000")]
    # The three kinds in one command, and the category.
    combined = cluster.kubectl("get", "strategies,modelversions,riskbudgets", "-n", namespace).stdout
    assert combined.count("NAME") == 3 and "ofi-lgbm-v2" in combined
    names = cluster.kubectl("get", "tradeplane", "-n", namespace, "-o", "name").stdout.split()
    assert len(names) == 5


def test_the_three_mistakes_are_rejected_by_the_api_server(
    cluster: KubernetesCluster, namespace: str, repo_root: Path
) -> None:
    manifest = repo_root / "tests" / "fixtures" / "manifests" / "invalid-three-errors.yaml"
    result = cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", str(manifest), check=False)
    assert result.returncode != 0
    for field in ("spec.limits.maxGrossNotionalUsdt", "spec.limits.maxDailyLossUsdt", "spec.haltPolicy"):
        assert field in result.stderr, result.stderr
    assert "panic-sell" in result.stderr and "Unsupported value" in result.stderr
    assert cluster.kubectl("get", "rb", "-n", namespace, "-o", "name").stdout.strip() == ""


MINIMAL = {
    "RiskBudget": {},
    "ModelVersion": {"model": "fam", "training": {"data": ["file:///data/klines.csv.gz"]}},
    "Strategy": {"riskBudgetRef": {"name": "b"}, "venue": "paper", "symbols": ["BTCUSDT"], "model": {"family": "f"}},
}


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    return value


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_server_defaults_equal_the_models_defaults(cluster: KubernetesCluster, namespace: str, resource: Any) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": resource.kind, "metadata": {"name": "minimal"},
            "spec": MINIMAL[resource.kind]}  # fmt: skip
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    stored = json.loads(cluster.kubectl("get", resource.plural, "minimal", "-n", namespace, "-o", "json").stdout)
    expected = resource.spec_model.model_validate(MINIMAL[resource.kind]).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert _numbers_as_float(stored["spec"]) == _numbers_as_float(expected)


def test_status_subresource_feeds_the_printer_columns(cluster: KubernetesCluster, namespace: str) -> None:
    from kubernetes import client

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskBudget", "metadata": {"name": "desk"}, "spec": {"halt": True}}
    ))  # fmt: skip
    api = cluster.api_client()
    try:
        objects = client.CustomObjectsApi(api)
        status = {"phase": "Halted", "reason": "KillSwitch", "strategyCount": 2,
                  "usage": {"grossNotionalUsdt": 1234.5, "dailyPnlUsdt": -12.5}}  # fmt: skip
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "riskbudgets", "desk", {"status": status}
        )
        # A spec change through the main resource must not touch status (and vice versa).
        objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, "riskbudgets", "desk", {"status": {}})
        stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "riskbudgets", "desk")
    finally:
        api.close()
    assert stored["status"]["phase"] == "Halted" and stored["status"]["usage"]["grossNotionalUsdt"] == 1234.5
    row = _table(cluster.kubectl("get", "rb", "desk", "-n", namespace).stdout)[0]
    assert (row["PHASE"], row["HALT"], row["GROSS"], row["DAILYPNL"], row["STRATEGIES"]) == (
        "Halted", "true", "1234.5", "-12.5", "2",
    )  # fmt: skip


def test_invalid_status_is_rejected_too(cluster: KubernetesCluster, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskBudget", "metadata": {"name": "desk"}, "spec": {}}
    ))  # fmt: skip
    api = cluster.api_client()
    try:
        with pytest.raises(ApiException) as info:
            client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "riskbudgets", "desk", {"status": {"phase": "Exploded"}}
            )
    finally:
        api.close()
    assert info.value.status == 422 and "status.phase" in str(info.value.body)
