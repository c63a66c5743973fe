"""`tradeplane workload noop` as a real OS process: HTTP probes from outside, JSON logs, SIGTERM and exit codes.

The process is the installed console script (``.venv/bin/tradeplane``), configured the way the operator
will configure it: a YAML config file (``--config``) plus ``TRADEPLANE_*`` env variables. It listens on
``--port 0`` and the test reads the bound port from its JSON log line (no free-port race). The noop
workload's readiness depends on a file the test controls, and its flush hook writes a marker file — the
proof that SIGTERM ran the hooks rather than killing the process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

CLI = Path(sys.executable).parent / "tradeplane"
START_TIMEOUT_S = 30.0


class WorkloadProcess:
    """One `tradeplane workload` process; stderr (JSON lines) is read by a thread so the pipe never fills."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [str(CLI), "workload", *args], env=env, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)

    def wait_log(self, msg: str, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            record: dict[str, Any] = json.loads(line)
            if record.get("msg") == msg:
                return record
        raise AssertionError(f"no log line {msg!r} (exit code {self.proc.poll()}):\n{''.join(self.lines)}")

    def records(self) -> list[dict[str, Any]]:
        self._reader.join(timeout=5)
        return [json.loads(line) for line in self.lines]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def http(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    return clean | {"TRADEPLANE_SECRETS_DIR": str(tmp_path / "no-secrets"), "TRADEPLANE_HOME": str(tmp_path)}


@pytest.fixture
def started() -> Iterator[list[WorkloadProcess]]:
    procs: list[WorkloadProcess] = []
    yield procs
    for p in procs:
        p.stop()


def _launch(
    started: list[WorkloadProcess], tmp_path: Path, env: dict[str, str], options: dict[str, Any], deadline_s: float
) -> tuple[WorkloadProcess, int]:
    cfg = tmp_path / "workload.yaml"
    cfg.write_text(json.dumps({"workload": {"shutdown_deadline_s": deadline_s, "options": options}}))  # JSON is YAML
    proc = WorkloadProcess(["noop", "--port", "0", "--config", str(cfg)], env, tmp_path)
    started.append(proc)
    port = int(proc.wait_log("http endpoints listening")["port"])
    proc.wait_log("workload running")
    return proc, port


def test_probes_metrics_and_graceful_sigterm(
    tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess]
) -> None:
    ready_file, marker = tmp_path / "dependency-up", tmp_path / "flushed.json"
    ready_file.touch()
    env = env | {"TRADEPLANE_WORKLOAD__OPTIONS__FLUSH_MARKER": str(marker), "TRADEPLANE_WORKLOAD__STRATEGY": "s1"}
    proc, port = _launch(started, tmp_path, env, {"ready_file": str(ready_file), "step_s": 0.02}, deadline_s=5.0)

    status, body = http(port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    beats, deadline = 0, time.monotonic() + 10
    while beats < 2 and time.monotonic() < deadline:  # the main loop's heartbeat advances
        beats = json.loads(http(port, "/healthz")[1])["beats"]
        time.sleep(0.02)
    assert beats >= 2
    status, body = http(port, "/readyz")
    assert status == 200 and json.loads(body)["checks"]["pipeline"]["status"] == "ok"

    ready_file.unlink()  # the dependency goes bad
    status, body = http(port, "/readyz")
    tree = json.loads(body)
    assert status == 503 and tree["failing"] == ["ready-file"]
    assert tree["checks"]["ready-file"]["reason"] == f"{ready_file} does not exist"
    assert tree["checks"]["pipeline"]["reason"] == "blocked by ready-file"
    assert http(port, "/healthz")[0] == 200  # still alive: readiness and liveness are separate

    status, body = http(port, "/metrics")
    samples = {
        s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if not s.labels
    }
    assert status == 200
    assert samples["process_resident_memory_bytes"] > 0 and samples["process_cpu_seconds_total"] > 0
    assert samples["tradeplane_noop_steps_total"] >= 1 and samples["tradeplane_workload_loop_steps_total"] >= 1
    assert samples["tradeplane_workload_ready"] == 0.0

    sent = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=10) == 0
    assert time.monotonic() - sent < 5.0  # within the configured deadline
    flushed = json.loads(marker.read_text())
    assert flushed["reason"] == "SIGTERM" and flushed["after"] == ["stop consuming"] and flushed["steps"] >= 1

    records = proc.records()
    assert all(r["workload"] == "noop" and r["strategy"] == "s1" and "ts" in r and "level" in r for r in records)
    hooks = [r["hook"] for r in records if r["msg"] == "shutdown hook done"]
    assert hooks == ["stop consuming", "flush", "close"]
    stopped = records[-1]
    assert stopped["msg"] == "workload stopped" and stopped["exit_code"] == 0 and stopped["reason"] == "SIGTERM"


def test_a_failing_hook_does_not_stop_the_flush_and_the_exit_code_says_so(
    tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess]
) -> None:
    marker = tmp_path / "flushed.json"
    proc, _ = _launch(started, tmp_path, env, {"fail_hook": True, "flush_marker": str(marker)}, deadline_s=5.0)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=10) == 4  # EXIT_SHUTDOWN_INCOMPLETE
    assert marker.exists()  # the flush after the failing hook still ran
    failed = [r for r in proc.records() if r["msg"] == "shutdown hook failed"]
    assert len(failed) == 1 and failed[0]["hook"] == "failing hook" and failed[0]["level"] == "ERROR"
    assert "RuntimeError: noop: fail_hook is set" in failed[0]["exc_info"]


def test_a_hook_past_the_deadline_is_abandoned_and_the_process_still_exits_in_time(
    tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess]
) -> None:
    marker = tmp_path / "flushed.json"
    proc, _ = _launch(started, tmp_path, env, {"flush_delay_s": 60, "flush_marker": str(marker)}, deadline_s=1.0)
    sent = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=10) == 4
    assert time.monotonic() - sent < 3.0 and not marker.exists()
    stopped = next(r for r in proc.records() if r["msg"] == "workload stopped")
    assert stopped["hooks"] == {"stop consuming": "ok", "flush": "timed_out", "close": "skipped"}


def test_a_second_sigterm_exits_at_once(tmp_path: Path, env: dict[str, str], started: list[WorkloadProcess]) -> None:
    proc, _ = _launch(started, tmp_path, env, {"flush_delay_s": 60}, deadline_s=30.0)
    proc.proc.send_signal(signal.SIGTERM)
    proc.wait_log("stop requested", timeout=10)
    sent = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 2.0


@pytest.mark.parametrize(
    ("args", "extra_env", "code", "message"),
    [
        pytest.param(["ingset"], {}, 2, "unknown workload 'ingset'; known:", id="unknown-workload"),
        pytest.param(["noop", "--port", "0"], {"TRADEPLANE_WORKLOAD__OPTIONS__STEP_S": "soon"}, 3,
                     "workload.options.step_s (TRADEPLANE_WORKLOAD__OPTIONS__STEP_S)", id="bad-option"),
    ],
)  # fmt: skip
def test_start_errors_are_clear(
    tmp_path: Path, env: dict[str, str], args: list[str], extra_env: dict[str, str], code: int, message: str
) -> None:
    result = subprocess.run(
        [str(CLI), "workload", *args], env=env | extra_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == code and message in result.stderr
