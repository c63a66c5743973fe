"""The operator as the chart runs it — ``tradeplane operator -n NS --standalone`` — in its own process,
against the test API server; and polling helpers for the tests that watch it converge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from tests.services import KubernetesCluster

CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tradeplane"
T = TypeVar("T")
#: The image the operator is told to put into Ray pods (the workloads get ...:test).
RAY_IMAGE = "ghcr.io/tradeplane/tradeplane-ray:test"


class OperatorProcess:
    def __init__(
        self, cluster: KubernetesCluster, namespace: str, log_dir: Path, *, resync_s: float = 2.0,
        kubeconfig: Path | None = None, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ("--standalone",),
        argv: list[str] | None = None,
    ) -> None:  # fmt: skip
        """``argv``: the whole command line after ``tradeplane`` (a chart's container args); default
        ``operator -n <namespace> <args>``."""
        self.log = log_dir / f"operator-{namespace}-{time.monotonic_ns()}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
        base |= {
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig_path),
            "TRADEPLANE_OPERATOR__RESYNC_SECONDS": str(resync_s),
            "TRADEPLANE_OPERATOR__IMAGE": "ghcr.io/tradeplane/tradeplane:test",
            "TRADEPLANE_OPERATOR__RAY_IMAGE": RAY_IMAGE,
            "TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": "kafka.test:9092",
            "PYTHONWARNINGS": "ignore:Unverified HTTPS request",
        }
        base |= dict(env or {})
        with self.log.open("w") as out:
            command = argv if argv is not None else ["operator", "-n", namespace, *args]
            self.proc = subprocess.Popen([str(CLI), *command], env=base, stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies mid-reconcile."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def get(cluster: KubernetesCluster, namespace: str, kind: str, name: str | None = None) -> Any:
    """``kubectl get -o json`` (None when a named object does not exist)."""
    args = ["get", kind, "-n", namespace, "-o", "json"] + ([name] if name else [])
    out = cluster.kubectl(*args, check=False)
    if out.returncode != 0:
        if "NotFound" in out.stderr:
            return None
        raise AssertionError(out.stderr)
    return json.loads(out.stdout)


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}
