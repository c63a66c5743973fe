"""Operator reconcile latency and scale against a real API server (etcd + kube-apiserver +
controller-manager from scripts/build-k8s.sh), with the operator as its own process, as the chart runs it.

Two measurements (ARCHITECTURE.md: "Strategy applied → all children exist: p99 < 2 s; 200 Strategies < 60 s"):

* **latency** — Strategies applied one at a time; for each, the time from the create call returning until
  every one of its 10 children exists (polled every 20 ms with one list call per kind).
* **scale** — N Strategies created at once (one ``kubectl apply`` of a List); the time until every one has all
  its children and a status naming them, plus when each strategy got there (p50/p99 of those times).

Everything — etcd, the API server, the controller-manager, the operator and this poller — shares this
machine's 2 cores. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_operator_scale.py [--strategies 200] [--singles 20]

Prints the numbers and writes benchmarks/results/operator_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import cpu_model  # noqa: E402

from tests.integration.operator_proc import OperatorProcess  # noqa: E402
from tests.services.kubernetes import KubernetesCluster  # noqa: E402

KINDS = "configmaps,deployments,services,poddisruptionbudgets"
PER_STRATEGY = 10
NS = "bench"


def strategy_docs(prefix: str, n: int) -> list[dict[str, Any]]:
    template = yaml.safe_load((REPO / "examples" / "21-strategy-btc-usdm.yaml").read_text())
    docs = []
    for i in range(n):
        doc = json.loads(json.dumps(template))
        doc["metadata"] = {"name": f"{prefix}{i:03d}", "namespace": NS}
        docs.append(doc)
    return docs


def child_counts(cluster: KubernetesCluster) -> dict[str, int]:
    out = cluster.kubectl(
        "get",
        KINDS,
        "-n",
        NS,
        "-l",
        "app.kubernetes.io/managed-by=tradeplane-operator",
        "-o",
        'jsonpath={range .items[*]}{.metadata.labels.tradeplane\\.io/strategy}{"\\n"}{end}',
    )
    counts: dict[str, int] = {}
    for line in out.stdout.split():
        counts[line] = counts.get(line, 0) + 1
    return counts


def with_status(cluster: KubernetesCluster) -> set[str]:
    out = cluster.kubectl("get", "strategies", "-n", NS, "-o", "json").stdout
    return {s["metadata"]["name"] for s in json.loads(out)["items"]
            if len((s.get("status") or {}).get("children", [])) == PER_STRATEGY}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(cluster: KubernetesCluster, singles: int) -> list[float]:
    from kubernetes import client

    times: list[float] = []
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for doc in strategy_docs("lat", singles):
            name = doc["metadata"]["name"]
            custom.create_namespaced_custom_object("tradeplane.io", "v1alpha1", NS, "strategies", doc)
            t0 = time.monotonic()
            while child_counts(cluster).get(name, 0) < PER_STRATEGY:
                time.sleep(0.02)
                if time.monotonic() - t0 > 60:
                    raise RuntimeError(f"{name}: children missing after 60 s")
            times.append(time.monotonic() - t0)
    return times


def scale(cluster: KubernetesCluster, n: int) -> tuple[float, list[float]]:
    docs = strategy_docs("s", n)
    t0 = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    applied = time.monotonic() - t0
    done: dict[str, float] = {}
    names = {d["metadata"]["name"] for d in docs}
    while len(done) < n:
        if time.monotonic() - t0 > 600:
            raise RuntimeError(f"only {len(done)} of {n} strategies converged in 600 s")
        counts, statused = child_counts(cluster), with_status(cluster)
        now = time.monotonic() - t0
        for name in names - done.keys():
            if counts.get(name, 0) == PER_STRATEGY and name in statused:
                done[name] = now
        time.sleep(0.25)
    print(f"kubectl apply of {n} strategies took {applied:.2f} s")
    return max(done.values()), sorted(done.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", type=int, default=200)
    ap.add_argument("--singles", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = KubernetesCluster(Path(tmp) / "k8s")
        cluster.start().wait_ready(120)
        op = None
        try:
            cluster.apply_crds(sorted((REPO / "crds").glob("*.yaml")))
            cluster.install_kuberay_crds()
            cluster.kubectl("create", "namespace", NS)
            for f in ("00-riskbudget.yaml", "10-modelversion-stable.yaml"):
                cluster.kubectl("apply", "-n", NS, "-f", str(REPO / "examples" / f))
            op = OperatorProcess(cluster, NS, Path(tmp), resync_s=60)
            time.sleep(3)  # the operator is up and has resumed the budget and the model
            singles = latency(cluster, args.singles)
            total, each = scale(cluster, args.strategies)
        finally:
            if op is not None:
                op.stop()
            cluster.stop()
    machine = {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
               "platform": platform.platform()}  # fmt: skip
    lat = {"n": len(singles), "p50": round(statistics.median(singles), 3), "p99": round(pct(singles, 0.99), 3),
           "max": round(max(singles), 3)}  # fmt: skip
    big = {"strategies": args.strategies, "children": args.strategies * PER_STRATEGY,
           "all_converged_s": round(total, 2), "p50_s": round(pct(each, 0.5), 2),
           "p99_s": round(pct(each, 0.99), 2)}  # fmt: skip
    out = {"machine": machine, "latency_s": lat, "scale": big, "targets": {"latency_p99_s": 2.0, "scale_200_s": 60.0}}
    print(f"one Strategy → all children: p50 {out['latency_s']['p50']} s, p99 {out['latency_s']['p99']} s "
          f"(n={len(singles)})")  # fmt: skip
    print(f"{args.strategies} Strategies at once → all converged in {out['scale']['all_converged_s']} s "
          f"(per strategy p50 {out['scale']['p50_s']} s, p99 {out['scale']['p99_s']} s)")  # fmt: skip
    path = REPO / "benchmarks" / "results" / "operator_scale.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
