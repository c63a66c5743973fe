"""Data plane end to end from what the operator rendered: the Deployments it created for a Strategy are
launched as local processes — their container command and env, as a kubelet would run them — against Kafka
(Tansu) and the ClickHouse server, and signals flow from exchange frames to ClickHouse.

What a kubelet would do and this test does instead: mount the desk ConfigMap (its files are written to a
directory) and the model home (the trained home), resolve the DSN's secretKeyRef from the Secret, and give
each process its own HTTP port (they share one host). Test-only changes, each because something cannot
exist here: the ingest talks to the replay server instead of Binance; consumers join Tansu's groups with
short session timeouts (docs/dataplane.md).
"""

from __future__ import annotations

import base64
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.services import KubernetesCluster
from tests.services.kafka import KafkaBroker
from tradeplane.operator import naming
from tradeplane.workloads.bus.kafka import KafkaBus
from tradeplane.workloads.codec import signal_from_proto
from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore

from .conftest import usdm_only
from .operator_proc import OperatorProcess, get, wait_for
from .test_operator import converged
from .test_workload_process import WorkloadProcess

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
STRATEGY = "usdm-btc"
#: Tansu answers a consumer group's first join after session.timeout.ms / 2 (../shared/ENVIRONMENT.md)
TANSU_SINK = {"SESSION_TIMEOUT_MS": "6000", "HEARTBEAT_INTERVAL_MS": "500", "FETCH_WAIT_MAX_MS": "10",
              "MAX_AGE_MS": "200"}  # fmt: skip


def pod_env(cluster: KubernetesCluster, ns: str, container: dict[str, Any], mounts: dict[str, str]) -> dict[str, str]:
    """The container's env as the kubelet resolves it (values, secretKeyRefs), with mount paths mapped."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    for item in container["env"]:
        if "value" in item:
            value = item["value"]
        elif "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            value = ns
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            secret = get(cluster, ns, "secret", ref["name"])
            value = base64.b64decode(secret["data"][ref["key"]]).decode()
        for inside, outside in mounts.items():
            value = value.replace(inside, outside)
        env[item["name"]] = value
    return env


def test_the_rendered_workloads_run_and_signals_reach_clickhouse(
    k8s_cluster: KubernetesCluster, trained: tuple[Path, Path], shared_dir: Path, tmp_path: Path,
    clickhouse_server: Any,
) -> None:  # fmt: skip
    from tests.fixtures.binance_replay import ReplayServer
    from tests.integration.test_ingest_replay import USDM, capture

    cluster = k8s_cluster
    cluster.apply_crds(sorted((REPO / "crds").glob("*.yaml")))
    home, manifests = trained
    ns = f"dp-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    database = f"op{time.monotonic_ns()}"
    clickhouse_server.client().execute(f"CREATE DATABASE {database}")
    ch = clickhouse_server.client_kwargs()
    dsn = f"clickhouse://{ch['user']}:@{ch['host']}:{ch['port']}/{database}"
    cluster.kubectl("create", "secret", "generic", "ch-dsn", "-n", ns, f"--from-literal=dsn={dsn}")
    broker = KafkaBroker(tmp_path / "broker")
    broker.start().wait_ready(30)
    op = OperatorProcess(cluster, ns, tmp_path, env={"TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                                                     "TRADEPLANE_OPERATOR__CLICKHOUSE_DSN_SECRET": "ch-dsn"})  # fmt: skip
    started: list[WorkloadProcess] = []
    try:
        cluster.kubectl("apply", "-n", ns, "-f", str(usdm_only(manifests)))
        wait_for(lambda: converged(cluster, ns, STRATEGY), 90, "the strategy's children")
        desk = tmp_path / "desk"
        desk.mkdir()
        for name, text in get(cluster, ns, "configmap", naming.config_map_name(STRATEGY))["data"].items():
            (desk / name).write_text(text)
        mounts = {naming.DESK_DIR: str(desk), naming.HOME_DIR: str(home)}

        def launch(workload: str, extra: dict[str, str]) -> WorkloadProcess:
            deploy = get(cluster, ns, "deployment", naming.deployment_name(STRATEGY, workload))
            [container] = deploy["spec"]["template"]["spec"]["containers"]
            assert container["args"] == ["workload", workload]
            env = pod_env(cluster, ns, container, mounts)
            env["KUBECONFIG"] = str(cluster.kubeconfig_path)  # in a pod: the ServiceAccount's in-cluster token
            env |= {f"TRADEPLANE_WORKLOAD__OPTIONS__{k}": v for k, v in extra.items()}
            proc = WorkloadProcess([workload, "--port", "0"], env, tmp_path)
            started.append(proc)
            proc.wait_log("http endpoints listening", timeout=120)
            return proc

        sink = launch("sink", TANSU_SINK)
        decide = launch("decide", {})
        execute = launch("execute", {})
        with ReplayServer([capture(shared_dir, USDM)], max_lines=150_000, speed=10.0, rebase_times=True) as server:
            ingest = launch("ingest", {"WS_URL": server.ws_url, "REST_URL": server.base_url, "FUNDING_POLL_S": "0",
                                       "SNAPSHOT_MIN_INTERVAL_S": "0"})  # fmt: skip
            server.wait_finished(180)
            time.sleep(1.0)
            ingest.proc.send_signal(signal.SIGTERM)
            assert ingest.proc.wait(timeout=60) == 0, "".join(ingest.lines[-20:])

        for proc in (execute, decide):  # drained: every signal decided is on Kafka now
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(timeout=120) == 0, "".join(proc.lines[-20:])
        # signals on Kafka, from the desk the operator configured
        reader = KafkaBus(broker.bootstrap_servers, client_id="it-reader", fetch_wait_max_ms=10,
                          consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})  # fmt: skip
        try:
            cons = reader.consumer(f"signals.{STRATEGY}", max_queue=100_000, name=f"r-{uuid.uuid4().hex[:6]}")
            signals: list[Any] = []
            deadline, quiet = time.monotonic() + 120, 0
            while time.monotonic() < deadline and quiet < 6:  # all of them: 3 s without a new one
                got = cons.fetch(10_000, timeout=0.5)
                signals += got
                quiet = 0 if got or not signals else quiet + 1
        finally:
            reader.close(timeout=5)
        assert len(signals) > 100, "no signals flowed"
        first = signal_from_proto(bytes(signals[0].value))
        assert first.symbol == "BTCUSDT" and first.strategy == STRATEGY

        # ... and in ClickHouse: the sink the operator rendered stored every one, under the strategy's run id
        store = ClickHouseServerStore(host=ch["host"], port=ch["port"], database=database, user=ch["user"])
        try:
            count = wait_for(lambda: (n := int(store.query(f"SELECT count() AS n FROM signals WHERE run_id = "
                                                           f"'{STRATEGY}'")["n"][0])) >= len(signals) and n, 120,
                             "the signals in ClickHouse")  # fmt: skip
            assert count == len(signals)
        finally:
            store.close()
        sink.proc.send_signal(signal.SIGTERM)
        assert sink.proc.wait(timeout=60) == 0, "".join(sink.lines[-20:])
        # decide reported into the Strategy's status (what the RiskBudget's usage is aggregated from)
        reported = get(cluster, ns, "strategy", STRATEGY)["status"]
        last = signal_from_proto(bytes(signals[-1].value))
        assert reported["lastSignal"]["id"] == last.id and reported["lastSignal"]["symbol"] == "BTCUSDT"
        assert set(reported["pnl"]) == {"realizedUsdt", "unrealizedUsdt", "drawdownPct"}  # kept by the schema
        assert reported["pnl"]["drawdownPct"] >= 0
    finally:
        for p in started:
            p.stop()
        op.stop()
        broker.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
