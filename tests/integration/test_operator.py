"""The operator (its own process, as the chart runs it) against the real API server with our CRDs and
KubeRay's real CRDs: examples → children, idempotence, drift repair, garbage collection, the kill switch,
admission, a restart mid-reconcile.

There is no kubelet: Deployments never become available, so a healthy Strategy stays Pending with
ChildrenNotReady here (the Running transition is covered by tests/unit/operator on the pure status).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import KubernetesCluster

from .operator_proc import RAY_IMAGE, OperatorProcess, condition, get, wait_for

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STRATEGIES = ("spot-majors", "usdm-btc")
CHILD_KINDS = "configmaps,deployments,services,poddisruptionbudgets"
CHILDREN_PER_STRATEGY = 10  # ConfigMap, 4 Deployments, Service, 4 PDBs


@pytest.fixture(scope="module")
def cluster(k8s_cluster: KubernetesCluster) -> KubernetesCluster:
    k8s_cluster.apply_crds(sorted((REPO / "crds").glob("*.yaml")))
    k8s_cluster.install_kuberay_crds()
    return k8s_cluster


@pytest.fixture
def ns(cluster: KubernetesCluster, namespace: str) -> str:
    """A namespace of the test's own, on the API server with the CRDs installed."""
    return namespace


@pytest.fixture
def operator(cluster: KubernetesCluster, ns: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster, ns, tmp_path)
    yield op
    op.stop()
    assert "Traceback" not in op.text() or "KubeError: 409" in op.text(), op.text()[-4000:]


def children(cluster: KubernetesCluster, ns: str, strategy: str) -> list[dict[str, Any]]:
    got = cluster.kubectl("get", CHILD_KINDS, "-n", ns, "-l", f"tradeplane.io/strategy={strategy}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(got.stdout)["items"]
    return items


def converged(cluster: KubernetesCluster, ns: str, strategy: str) -> dict[str, Any] | None:
    """The Strategy once all its children exist and its status names them (None before)."""
    obj = get(cluster, ns, "strategy", strategy)
    status = (obj or {}).get("status") or {}
    if len(status.get("children", [])) != CHILDREN_PER_STRATEGY:
        return None
    if len(children(cluster, ns, strategy)) != CHILDREN_PER_STRATEGY:
        return None
    return dict(obj)


def apply_examples(cluster: KubernetesCluster, ns: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES))


def test_examples_become_owned_children_with_the_rendered_desk(cluster: KubernetesCluster, ns: str,
                                                                operator: OperatorProcess) -> None:  # fmt: skip
    start = time.monotonic()
    apply_examples(cluster, ns)
    objs = {s: wait_for(lambda s=s: converged(cluster, ns, s), 60, f"children of {s}") for s in STRATEGIES}
    print(f"examples applied → all children exist: {time.monotonic() - start:.2f} s")
    for name, strategy in objs.items():
        uid, status = strategy["metadata"]["uid"], strategy["status"]
        assert "tradeplane.io/finalizer" in strategy["metadata"]["finalizers"]
        kids = children(cluster, ns, name)
        assert {(k["kind"], k["metadata"]["name"]) for k in kids} == {
            (c["kind"], c["name"]) for c in status["children"]
        }
        for kid in kids:
            [ref] = kid["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Strategy", name, uid, True)
        config = next(k for k in kids if k["kind"] == "ConfigMap")
        desk = yaml.safe_load(config["data"]["strategy.yaml"])
        assert desk["spec"] == strategy["spec"]  # the desk runs exactly the stored spec (with server defaults)
        budget = yaml.safe_load(config["data"]["riskbudget.yaml"])
        assert budget["metadata"]["name"] == "desk-default" and budget["spec"]["halt"] is False
        versions = [d["metadata"]["name"] for d in yaml.safe_load_all(config["data"]["modelversions.yaml"])]
        assert versions == ["ofi-lgbm-v1", "ofi-lgbm-v2"]
        deployments = {k["metadata"]["name"]: k for k in kids if k["kind"] == "Deployment"}
        assert sorted(deployments) == sorted(f"{name}-{w}" for w in ("ingest", "decide", "execute", "sink"))
        decide = deployments[f"{name}-decide"]["spec"]["template"]
        assert decide["metadata"]["annotations"]["tradeplane.io/config-rev"] == status["configRev"]
        container = decide["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert container["args"] == ["workload", "decide"] and env["TRADEPLANE_WORKLOAD__OPTIONS__ACCOUNT"] == name
        assert env["TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka.test:9092"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert decide["spec"]["securityContext"]["runAsNonRoot"] is True
        # no kubelet here: children exist, none becomes available
        assert status["phase"] == "Pending" and status["observedGeneration"] == strategy["metadata"]["generation"]
        ready = condition(strategy, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "ChildrenNotReady"
    ingest = get(cluster, ns, "deployment", "usdm-btc-ingest")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in ingest["env"]}
    assert env["TRADEPLANE_WORKLOAD__OPTIONS__VENUE"] == "binance-usdm"
    assert env["TRADEPLANE_WORKLOAD__OPTIONS__SYMBOLS"] == "BTCUSDT"
    # the candidate is served by Ray Serve: the family's RayService, accepted by KubeRay's schema, owned by it
    rs = wait_for(lambda: get(cluster, ns, "rayservice", "ofi-lgbm-serve"), 30, "the family's RayService")
    v2 = get(cluster, ns, "modelversion", "ofi-lgbm-v2")
    assert [r["uid"] for r in rs["metadata"]["ownerReferences"]] == [v2["metadata"]["uid"]]
    assert "ofi-lgbm-v2" in rs["spec"]["serveConfigV2"]
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == RAY_IMAGE  # Ray pods get the Ray-carrying image, workloads the platform image
    budget = wait_for(lambda: (b := get(cluster, ns, "riskbudget", "desk-default"))["status"].get("strategyCount") == 2
                      and b, 30, "budget status")  # fmt: skip
    assert budget["status"]["phase"] == "Active" and budget["status"]["strategies"] == sorted(STRATEGIES)
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Strategy",
                             "-o", "json").stdout  # fmt: skip
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"Created", "ChildrenNotReady"} <= reasons


def _versions(cluster: KubernetesCluster, ns: str) -> dict[str, str]:
    out = cluster.kubectl("get", f"{CHILD_KINDS},strategies,riskbudgets,modelversions,rayservices", "-n", ns,
                          "-o", "json").stdout  # fmt: skip
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in json.loads(out)["items"]}


def test_a_second_pass_writes_nothing(cluster: KubernetesCluster, ns: str, operator: OperatorProcess) -> None:
    apply_examples(cluster, ns)
    for s in STRATEGIES:
        wait_for(lambda s=s: converged(cluster, ns, s), 60, f"children of {s}")
    wait_for(lambda: get(cluster, ns, "riskbudget", "desk-default")["status"].get("strategyCount") == 2, 30, "budget")
    time.sleep(3)  # the last status writes of the first passes land
    before = _versions(cluster, ns)
    time.sleep(8)  # four resync periods: every timer fired several times
    after = _versions(cluster, ns)
    changed = {k for k in before if after.get(k) != before[k]}
    # Deployments' status is the controller-manager's (ReplicaSet progress), not ours: compare the rest
    assert {k for k in changed if not k.startswith("Deployment/")} == set(), changed
    deploys = [d for d in json.loads(cluster.kubectl("get", "deployments", "-n", ns, "-o", "json").stdout)["items"]]
    for d in deploys:  # our writes bump the generation; status updates by the controller do not
        assert d["metadata"]["generation"] == 1, d["metadata"]["name"]


def test_spec_edits_reach_the_children_and_drift_is_repaired(cluster: KubernetesCluster, ns: str,
                                                             operator: OperatorProcess) -> None:  # fmt: skip
    apply_examples(cluster, ns)
    first = wait_for(lambda: converged(cluster, ns, "usdm-btc"), 60, "children")
    rev = first["status"]["configRev"]
    patch = {"spec": {"symbols": ["BTCUSDT", "ETHUSDT"], "decision": {"tau": 0.65}}}
    cluster.kubectl("patch", "strategy", "usdm-btc", "-n", ns, "--type", "merge", "-p", json.dumps(patch))

    def edited() -> bool:
        cm = get(cluster, ns, "configmap", "usdm-btc-config")
        spec = yaml.safe_load(cm["data"]["strategy.yaml"])["spec"]
        ingest = get(cluster, ns, "deployment", "usdm-btc-ingest")["spec"]["template"]
        env = {e["name"]: e.get("value") for e in ingest["spec"]["containers"][0]["env"]}
        return (spec["decision"]["tau"] == 0.65 and env["TRADEPLANE_WORKLOAD__OPTIONS__SYMBOLS"] == "BTCUSDT,ETHUSDT"
                and ingest["metadata"]["annotations"]["tradeplane.io/config-rev"] != rev)  # fmt: skip

    wait_for(edited, 30, "the edit in the ConfigMap and the Deployments")
    strategy = wait_for(lambda: (s := get(cluster, ns, "strategy", "usdm-btc"))["status"]["observedGeneration"] == 2
                        and s, 30, "observedGeneration 2")  # fmt: skip
    assert strategy["status"]["configRev"] != rev
    sink_env = get(cluster, ns, "deployment", "usdm-btc-sink")["spec"]["template"]["spec"]["containers"][0]["env"]
    topics = next(e["value"] for e in sink_env if e["name"] == "TRADEPLANE_WORKLOAD__OPTIONS__TOPICS")
    assert "md.binance-usdm.ETHUSDT" in topics.split(",") and "signals.usdm-btc" in topics.split(",")

    # a child deleted by hand comes back (a new object)
    old_uid = get(cluster, ns, "deployment", "usdm-btc-decide")["metadata"]["uid"]
    cluster.kubectl("delete", "deployment", "usdm-btc-decide", "-n", ns)
    back = wait_for(lambda: (d := get(cluster, ns, "deployment", "usdm-btc-decide")) and d["metadata"]["uid"] != old_uid
                    and d, 30, "the deleted Deployment restored")  # fmt: skip
    assert back["spec"]["template"]["metadata"]["annotations"]["tradeplane.io/config-rev"] == strategy["status"][
        "configRev"]  # fmt: skip
    # a field edited by hand is reverted; so is the desk config
    cluster.kubectl("scale", "deployment", "usdm-btc-sink", "-n", ns, "--replicas=3")
    wait_for(lambda: get(cluster, ns, "deployment", "usdm-btc-sink")["spec"]["replicas"] == 1, 30, "replicas back to 1")
    cluster.kubectl("patch", "configmap", "usdm-btc-config", "-n", ns, "--type", "merge", "-p",
                    json.dumps({"data": {"riskbudget.yaml": "tampered"}}))  # fmt: skip
    wait_for(lambda: get(cluster, ns, "configmap", "usdm-btc-config")["data"]["riskbudget.yaml"] != "tampered", 30,
             "the ConfigMap restored")  # fmt: skip


def test_deleting_a_strategy_collects_its_children(cluster: KubernetesCluster, ns: str,
                                                   operator: OperatorProcess) -> None:  # fmt: skip
    apply_examples(cluster, ns)
    for s in STRATEGIES:
        wait_for(lambda s=s: converged(cluster, ns, s), 60, f"children of {s}")
    cluster.kubectl("delete", "strategy", "usdm-btc", "-n", ns, "--wait=false")
    wait_for(lambda: get(cluster, ns, "strategy", "usdm-btc") is None, 30, "the finalizer released")
    wait_for(lambda: children(cluster, ns, "usdm-btc") == [], 60, "garbage collection of the children")
    assert len(children(cluster, ns, "spot-majors")) == CHILDREN_PER_STRATEGY  # the other strategy untouched
    wait_for(lambda: get(cluster, ns, "riskbudget", "desk-default")["status"]["strategies"] == ["spot-majors"], 30,
             "the budget's strategy list")  # fmt: skip


def test_a_halt_reaches_every_charged_strategy_without_waiting_for_a_timer(cluster: KubernetesCluster, ns: str,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    op = OperatorProcess(cluster, ns, tmp_path, resync_s=600)  # only the budget's own handler can do it
    try:
        apply_examples(cluster, ns)
        revs = {s: wait_for(lambda s=s: converged(cluster, ns, s), 60, f"children of {s}")["status"]["configRev"]
                for s in STRATEGIES}  # fmt: skip
        start = time.monotonic()
        cluster.kubectl("patch", "riskbudget", "desk-default", "-n", ns, "--type", "merge", "-p",
                        '{"spec":{"halt":true}}')  # fmt: skip

        def halted(s: str) -> dict[str, Any] | None:
            obj = get(cluster, ns, "strategy", s)
            cm = get(cluster, ns, "configmap", f"{s}-config")
            ok = (obj["status"]["phase"] == "Blocked" and condition(obj, "Ready").get("reason") == "RiskBudgetHalted"
                  and yaml.safe_load(cm["data"]["riskbudget.yaml"])["spec"]["halt"] is True)  # fmt: skip
            return obj if ok else None

        objs = {s: wait_for(lambda s=s: halted(s), 30, f"{s} halted") for s in STRATEGIES}
        print(f"halt → every charged strategy Blocked with the halt in its config: {time.monotonic() - start:.2f} s")
        for s, obj in objs.items():
            assert obj["status"]["configRev"] != revs[s]  # a new config: the pods restart with the halt
            assert len(children(cluster, ns, s)) == CHILDREN_PER_STRATEGY  # running desks stay up to cancel/flatten
        budget = get(cluster, ns, "riskbudget", "desk-default")
        assert budget["status"]["phase"] == "Halted" and budget["status"]["reason"] == "KillSwitch"
        cluster.kubectl("patch", "riskbudget", "desk-default", "-n", ns, "--type", "merge", "-p",
                        '{"spec":{"halt":false}}')  # fmt: skip
        for s in STRATEGIES:
            wait_for(lambda s=s: get(cluster, ns, "strategy", s)["status"]["phase"] == "Pending", 30, f"{s} resumed")
    finally:
        op.stop()


def test_admission_blocks_a_strategy_until_its_budget_exists_and_is_not_halted(
    cluster: KubernetesCluster, ns: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "21-strategy-btc-usdm.yaml"))

    def blocked(reason: str) -> bool:
        obj = get(cluster, ns, "strategy", "usdm-btc")
        return bool(obj.get("status")) and obj["status"]["phase"] == "Blocked" and condition(obj, "Ready").get(
            "reason") == reason  # fmt: skip

    wait_for(lambda: blocked("RiskBudgetNotFound"), 30, "Blocked: RiskBudgetNotFound")
    assert children(cluster, ns, "usdm-btc") == []
    budget = yaml.safe_load((EXAMPLES / "00-riskbudget.yaml").read_text())
    budget["spec"]["halt"] = True
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(budget))
    wait_for(lambda: blocked("RiskBudgetHalted"), 30, "Blocked: RiskBudgetHalted")
    time.sleep(3)
    assert children(cluster, ns, "usdm-btc") == []  # halted before it ever ran: not started
    cluster.kubectl("patch", "riskbudget", "desk-default", "-n", ns, "--type", "merge", "-p", '{"spec":{"halt":false}}')
    wait_for(lambda: converged(cluster, ns, "usdm-btc"), 60, "children once the budget allows")


def test_a_singleton_workload_with_two_replicas_is_refused_with_the_field(cluster: KubernetesCluster, ns: str,
                                                                         operator: OperatorProcess) -> None:  # fmt: skip
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "00-riskbudget.yaml"))
    doc = yaml.safe_load((EXAMPLES / "21-strategy-btc-usdm.yaml").read_text())
    doc["spec"].setdefault("resources", {})["decide"] = {"replicas": 2}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))
    obj = wait_for(lambda: (s := get(cluster, ns, "strategy", "usdm-btc")).get("status", {}).get("phase") == "Failed"
                   and s, 30, "phase Failed")  # fmt: skip
    ready = condition(obj, "Ready")
    assert ready["reason"] == "InvalidSpec" and "spec.resources.decide.replicas" in ready["message"]
    assert children(cluster, ns, "usdm-btc") == []


def test_an_operator_killed_mid_reconcile_converges_after_restart(cluster: KubernetesCluster, ns: str,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "00-riskbudget.yaml"))
    template = yaml.safe_load((EXAMPLES / "21-strategy-btc-usdm.yaml").read_text())
    names = [f"s{i:02d}" for i in range(15)]
    docs = []
    for name in names:
        doc = json.loads(json.dumps(template))
        doc["metadata"]["name"] = name
        docs.append(doc)
    first = OperatorProcess(cluster, ns, tmp_path)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    wait_for(lambda: len(json.loads(cluster.kubectl("get", "deployments", "-n", ns, "-o", "json").stdout)["items"])
             >= 4, 60, "the first Deployments")  # fmt: skip
    first.kill()  # mid-reconcile: some strategies have all children, some a few, some none
    partial = len(json.loads(cluster.kubectl("get", CHILD_KINDS, "-n", ns, "-o", "json").stdout)["items"]) - 1
    second = OperatorProcess(cluster, ns, tmp_path)
    try:
        for name in names:
            wait_for(lambda n=name: converged(cluster, ns, n), 120, f"children of {name} after the restart")
    finally:
        second.stop()
    everything = json.loads(
        cluster.kubectl(
            "get", CHILD_KINDS, "-n", ns, "-l", "app.kubernetes.io/managed-by=tradeplane-operator", "-o", "json"
        ).stdout
    )
    keys = [(i["kind"], i["metadata"]["name"]) for i in everything["items"]]
    assert len(keys) == len(set(keys)) == CHILDREN_PER_STRATEGY * len(names)  # nothing twice, nothing missing
    assert partial < CHILDREN_PER_STRATEGY * len(names)  # the kill did land mid-way
