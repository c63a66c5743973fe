"""decide's routes read through the real API server (``routes_from_api``): the operator's ``<family>-routes``
ConfigMap reaches the live ModelRouter at the next poll — no kubelet volume sync in between — a bad revision
keeps the last good routing, a deleted ConfigMap keeps it too, and an unreachable API server falls back to the
mounted file. The client is the one decide builds (``workload_api_client``: the kubeconfig outside a pod)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from tests.services import KubernetesCluster
from tradeplane.engine.decision.router import ModelRouter
from tradeplane.workloads.decide.routes import ConfigMapSource, FileSource, RoutesWatcher, api_sources, routes_path

from ..unit.workloads.test_decide_routes import _models, _write

FAMILY = "clf"


def _doc(revision: int, weight: float, kind: str = "weight") -> dict[str, str]:
    routes = {"family": FAMILY, "revision": revision, "weights": {"v2": weight},
              "roles": {"v1": "stable", "v2": "canary"}, "kinds": {"v2": kind}}  # fmt: skip
    return {"routes.json": json.dumps(routes)}


@pytest.mark.k8s
def test_routes_move_through_the_api_at_the_next_poll_and_bad_news_keeps_the_last_good(
    k8s_cluster: KubernetesCluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig_path))
    api = client.CoreV1Api(k8s_cluster.api_client())
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"{FAMILY}-routes"), data=_doc(1, 0.2))
    api.create_namespaced_config_map(namespace, body)
    router = ModelRouter(_models())
    routers = {FAMILY: router}
    sources = api_sources(namespace, [FAMILY], root=tmp_path)  # what decide builds with routes_from_api
    watcher = RoutesWatcher(sources, routers, poll_s=0.0, models_by_family={FAMILY: _models()})

    msgs = watcher.check()
    assert watcher.applied == {FAMILY: 1}, msgs
    assert router.weights()["v2"] == pytest.approx(0.2) and router.kinds() == {"v2": "weight"}

    api.patch_namespaced_config_map(f"{FAMILY}-routes", namespace, {"data": _doc(2, 0.5, "cohort")})
    watcher.check()  # the very next poll: no volume sync to wait for
    assert watcher.applied == {FAMILY: 2}
    assert router.weights()["v2"] == pytest.approx(0.5) and router.kinds() == {"v2": "cohort"}

    api.patch_namespaced_config_map(f"{FAMILY}-routes", namespace, {"data": {"routes.json": '{"family": "clf", '}})
    (bad,) = watcher.check()
    assert f"configmap {namespace}/{FAMILY}-routes" in bad and "keeping revision 2" in bad
    assert router.weights()["v2"] == pytest.approx(0.5)

    api.delete_namespaced_config_map(f"{FAMILY}-routes", namespace)
    (gone,) = watcher.check()
    assert "does not exist" in gone and "keeping revision 2" in gone

    # the API server unreachable (a closed port): the mounted file is read instead
    dead = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    fallback = FileSource(routes_path(FAMILY, tmp_path))
    offline = RoutesWatcher({FAMILY: ConfigMapSource(client.CoreV1Api(dead), namespace, f"{FAMILY}-routes",
                                                     fallback, timeout_s=0.5)}, routers, poll_s=0.0)  # fmt: skip
    _write(tmp_path, 7, {"v2": 0.1}, {"v1": "stable", "v2": "canary"})
    assert offline.check() and offline.applied == {FAMILY: 7}
    assert router.weights()["v2"] == pytest.approx(0.1) and router.kinds() == {"v2": "cohort"}  # no kinds: cohort
    no_file = RoutesWatcher({FAMILY: ConfigMapSource(client.CoreV1Api(dead), namespace, "x-routes", timeout_s=0.5)},
                            {FAMILY: router}, poll_s=0.0)  # fmt: skip
    (down,) = no_file.check()
    assert f"configmap {namespace}/x-routes" in down and "keeping the spec's routes" in down
    dead.close()
