"""Run a test service outside pytest: ``python -m tests.services start|stop|status kafka|clickhouse|kubernetes``.

For developers who want a broker, ClickHouse or an API server up while they work. ``start`` leaves the
processes running and records their PIDs and ports in ``./.tradeplane/services/<name>.json``; ``stop`` kills
exactly those PIDs (after checking each still runs the recorded binary) and deletes the work dir. Point the
test suite at a running service with the TRADEPLANE_TEST_* variables that ``start`` prints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from tests.services._process import Service, ServiceError, pid_alive, pid_matches, terminate_pid
from tests.services.clickhouse import ClickHouseServer
from tests.services.kafka import KafkaBroker
from tests.services.kubernetes import KubernetesCluster

SERVICES: dict[str, type[Service]] = {
    "kafka": KafkaBroker,
    "clickhouse": ClickHouseServer,
    "kubernetes": KubernetesCluster,
}
STATE_DIR = Path(".tradeplane") / "services"


def env_hint(name: str, conn: dict[str, Any]) -> str:
    """The environment variable(s) that make pytest use this service instead of starting its own."""
    if name == "kafka":
        return f"export TRADEPLANE_TEST_KAFKA_BOOTSTRAP={conn['bootstrap_servers']}"
    if name == "clickhouse":
        return f"export TRADEPLANE_TEST_CLICKHOUSE_HOST={conn['host']} TRADEPLANE_TEST_CLICKHOUSE_PORT={conn['port']}"
    return f"export TRADEPLANE_TEST_KUBECONFIG={conn['kubeconfig']}"


def start(name: str, state_file: Path) -> int:
    """Start, wait until ready, write the state file; on failure stop what was started."""
    if state_file.exists() and any(pid_alive(p["pid"]) for p in json.loads(state_file.read_text())["processes"]):
        print(f"{name} already running (see {state_file}); stop it first", file=sys.stderr)
        return 1
    service = SERVICES[name]()
    try:
        service.start().wait_ready()
    except BaseException:
        service.stop()
        raise
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(service.state(), indent=2) + "\n")
    print(json.dumps(service.connection_info()))
    print(env_hint(name, service.connection_info()))
    return 0


def stop(name: str, state_file: Path) -> int:
    """Kill the recorded PIDs (last started first) that still run their recorded binary."""
    if not state_file.exists():
        print(f"{name}: no state file {state_file}", file=sys.stderr)
        return 0
    state = json.loads(state_file.read_text())
    for proc in reversed(state["processes"]):
        if pid_matches(proc["pid"], proc["argv0"]):
            terminate_pid(proc["pid"], SERVICES[name].stop_grace)
            print(f"stopped {proc['name']} (pid {proc['pid']})")
        else:
            print(f"{proc['name']} (pid {proc['pid']}) not running")
    shutil.rmtree(state["workdir"], ignore_errors=True)
    state_file.unlink()
    return 0


def status(name: str, state_file: Path) -> int:
    """Print each recorded process as running/dead; exit 0 only when all are running."""
    if not state_file.exists():
        print(f"{name}: not started")
        return 1
    state = json.loads(state_file.read_text())
    up = True
    for proc in state["processes"]:
        alive = pid_matches(proc["pid"], proc["argv0"]) and pid_alive(proc["pid"])
        up &= alive
        print(f"{name}/{proc['name']}: pid {proc['pid']} {'running' if alive else 'DEAD'} (log {proc['log']})")
    print(json.dumps(state["connection"]))
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.services", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where state JSON files live")
    args = parser.parse_args(argv)
    state_file = args.state_dir / f"{args.service}.json"
    action = {"start": start, "stop": stop, "status": status}[args.action]
    try:
        return action(args.service, state_file)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
