"""The HTTP endpoints of a WorkloadService on a real loopback socket (port 0): status codes and JSON bodies.

Liveness and readiness are checked against each other: a failing dependency makes /readyz 503 while
/healthz stays 200, and a stale heartbeat makes /healthz 503 while /readyz stays 200.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tradeplane.workloads.service import CheckResult, WorkloadService


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, headers, body = get(port, path)
    assert headers["Content-Type"] == "application/json"
    parsed: dict[str, Any] = json.loads(body)
    return status, parsed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def svc(clock: FakeClock) -> Iterator[WorkloadService]:
    service = WorkloadService("decide", host="127.0.0.1", port=0, heartbeat_timeout_s=10.0, clock=clock)
    service.start()
    service.running.set()  # as run() does when the main loop starts
    yield service
    service.close()


def test_not_ready_until_the_main_loop_runs(clock: FakeClock) -> None:
    service = WorkloadService("decide", host="127.0.0.1", port=0, heartbeat_timeout_s=10.0, clock=clock)
    service.start()
    try:
        status, body = get_json(service.port, "/readyz")  # setup still running: no checks registered yet
        assert status == 503 and body["reason"].startswith("starting")
        service.running.set()
        assert get_json(service.port, "/readyz")[0] == 200
    finally:
        service.close()


def test_ready_then_blocked_by_a_failing_dependency_while_alive(svc: WorkloadService) -> None:
    kafka = {"up": True}
    svc.add_check("kafka", lambda: CheckResult(kafka["up"], "connected" if kafka["up"] else "no broker reachable"))
    svc.add_check("consumer", lambda: CheckResult.passed("assigned 4 partitions"), depends_on=["kafka"])
    status, body = get_json(svc.port, "/readyz")
    assert status == 200 and body["status"] == "ok" and body["workload"] == "decide"
    assert body["checks"]["consumer"]["reason"] == "assigned 4 partitions"

    kafka["up"] = False
    status, body = get_json(svc.port, "/readyz")
    assert status == 503 and body["status"] == "fail"
    assert body["checks"]["kafka"] | {"duration_ms": 0} == {
        "status": "fail", "reason": "no broker reachable", "required": True, "depends_on": [], "duration_ms": 0,
    }  # fmt: skip
    assert body["checks"]["consumer"]["status"] == "blocked"
    assert body["checks"]["consumer"]["reason"] == "blocked by kafka"
    assert (body["failing"], body["blocked"]) == (["kafka"], ["consumer"])
    status, live = get_json(svc.port, "/healthz")
    assert status == 200 and live["status"] == "ok"  # a dependency outage never fails liveness


def test_stale_heartbeat_fails_liveness_only(svc: WorkloadService, clock: FakeClock) -> None:
    svc.add_check("kafka", CheckResult.passed)
    clock.now += 10.5
    status, live = get_json(svc.port, "/healthz")
    assert status == 503 and live["reason"] == "main loop heartbeat is 10.5 s old (limit 10 s)"
    assert get_json(svc.port, "/readyz")[0] == 200
    svc.heartbeat()
    assert get_json(svc.port, "/healthz")[0] == 200


def test_not_ready_once_stopping(svc: WorkloadService) -> None:
    svc.add_check("kafka", CheckResult.passed)
    svc.request_stop("SIGTERM")
    status, body = get_json(svc.port, "/readyz")
    assert status == 503 and body["reason"] == "stopping (SIGTERM)"
    assert body["checks"]["kafka"]["status"] == "ok"  # the tree is still shown
    assert get_json(svc.port, "/healthz")[0] == 200  # alive while flushing: no restart mid-shutdown


def test_metrics_endpoint(svc: WorkloadService) -> None:
    status, headers, body = get(svc.port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"process_cpu_seconds", "tradeplane_workload_ready", "tradeplane_workload_heartbeat_age_seconds"} <= names


def test_check_that_raises_is_a_503_not_a_500(svc: WorkloadService) -> None:
    def broken() -> CheckResult:
        raise RuntimeError("state lock poisoned")

    svc.add_check("state", broken)
    status, body = get_json(svc.port, "/readyz")
    assert status == 503 and body["checks"]["state"]["reason"] == "check raised RuntimeError: state lock poisoned"


def test_unknown_path_head_and_query_strings(svc: WorkloadService) -> None:
    status, body = get_json(svc.port, "/nope")
    assert status == 404 and body["endpoints"] == ["/healthz", "/metrics", "/readyz"]
    status, headers, raw = get(svc.port, "/healthz", method="HEAD")
    assert status == 200 and raw == b"" and int(headers["Content-Length"]) > 0
    assert get_json(svc.port, "/readyz/?verbose=1")[0] == 200


def test_close_releases_the_port() -> None:
    service = WorkloadService("sink", host="127.0.0.1", port=0).start()
    port = service.port
    service.close()
    service.close()  # idempotent
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            WorkloadService("sink", host="127.0.0.1", port=port).start()
