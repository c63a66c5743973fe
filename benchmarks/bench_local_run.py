"""Local run throughput: the example desk (two strategies, three instruments, a stable model and a shadow)
over a synthetic market through `tradeplane run`'s whole path — simulator, desk runtime with ONNX scoring,
risk, executors, bus with the Protobuf codec, chDB sink, audit log — in events/s and decisions/s, and the
decision latency the signals recorded (p50/p99, in process).

Run: ``OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/bench_local_run.py`` (writes
benchmarks/results/local_run.json). Models are trained first on a synthetic hour (not timed).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from harness import REPO, cpu_model

from tradeplane.workloads.local.demo import DemoConfig, demo_manifests, train_models
from tradeplane.workloads.local.runner import RunConfig, run_local
from tradeplane.workloads.store.chdb_store import ChdbStore

SECONDS = 1800.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        cfg = DemoConfig(examples=REPO / "examples", home=home, train_hours=1.0, trials=2, seed=3)
        manifests = demo_manifests(cfg, train_models(cfg, lambda _: None))
        run_local(RunConfig(manifests=(manifests,), seconds=60, home=home, run_id="warm", report=False))
        s = run_local(RunConfig(manifests=(manifests,), seconds=SECONDS, seed=1, home=home, run_id="bench",
                                report=False))  # fmt: skip
        with ChdbStore(home / "store") as store:
            lat = store.query("SELECT latency_ns FROM signals WHERE run_id = 'bench'")["latency_ns"] / 1e3
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "market": f"synthetic, {SECONDS:g} s, 3 instruments (spot BTC, spot ETH, USD-M BTC)",
        "events": s.events,
        "decisions": s.decisions,
        "entries": s.entries,
        "fills": s.fills,
        "wall_s": round(s.wall_s, 2),
        "events_per_s": round(s.events / s.wall_s),
        "decisions_per_s": round(s.decisions / s.wall_s),
        "decision_latency_p50_us": round(float(np.percentile(lat, 50)), 1),
        "decision_latency_p99_us": round(float(np.percentile(lat, 99)), 1),
        "decision_latency_budget_p99_us": 250.0,
    }
    out = REPO / "benchmarks" / "results" / "local_run.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
