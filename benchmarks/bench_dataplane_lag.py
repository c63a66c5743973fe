"""End-to-end lag of the cluster data plane: exchange time → signal on Kafka, as separate OS processes.

Pipeline (all on this machine, loopback): the replay server (tests/fixtures/binance_replay.py) sends the real
USD-M BTCUSDT capture with exchange times rebased to the send time, as a live exchange stamps them →
``tradeplane workload ingest`` → Kafka (Tansu) ``md.*`` → ``tradeplane workload execute`` (paper simulator,
``hold_back_ms`` below) ⇄ ``tradeplane workload decide`` (the demo desk, models in-process) → ``signals.*`` →
this program's consumer. Lag = the wall time this consumer receives a signal − the signal's
``exchange_ts`` (the newest event it was decided on), so it includes one more Kafka hop than the decision
itself. Rates are messages/s of replay (the capture runs ~5k msg/s at speed 1; speed = rate / that).

Run from the repository root (a few minutes; trains the demo models first):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dataplane_lag.py [--seconds 20] [--hold-back-ms 20]

Prints the numbers and writes benchmarks/results/dataplane_lag.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.binance_replay import ReplayServer, load_capture  # noqa: E402
from tests.integration.conftest import usdm_only  # noqa: E402
from tests.integration.test_ingest_workload import launch, stop  # noqa: E402
from tests.integration.test_workload_process import WorkloadProcess  # noqa: E402
from tests.services.kafka import KafkaBroker  # noqa: E402
from tradeplane.workloads.bus.kafka import KafkaBus  # noqa: E402
from tradeplane.workloads.bus.topics import signals_topic  # noqa: E402
from tradeplane.workloads.codec import signal_from_proto  # noqa: E402
from tradeplane.workloads.local.demo import DemoConfig, demo_manifests, train_models  # noqa: E402
from tradeplane.workloads.local.manifests import load_desk  # noqa: E402

CAPTURE = REPO.parent / "shared" / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _env(bootstrap: str, options: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    env |= {"TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "OMP_NUM_THREADS": "1"}
    for key, value in options.items():
        env[f"TRADEPLANE_WORKLOAD__OPTIONS__{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def capture_rate() -> float:
    """Messages per second of the capture at speed 1 (the first 200k lines)."""
    _, msgs, _ = load_capture(CAPTURE, 200_000)
    ts = [m.recv_ns for m in msgs]
    return len(ts) / ((max(ts) - min(ts)) / 1e9)


def one_rate(rate: float, native: float, seconds: float, hold_back_ms: float, home: Path, manifests: Path,
             work: Path) -> dict[str, Any]:  # fmt: skip
    speed = rate / native
    lines = int(rate * seconds)
    broker = KafkaBroker(work / f"broker-{int(rate)}")
    broker.start().wait_ready(30)
    started: list[WorkloadProcess] = []
    lags: list[float] = []
    try:
        opts = {"manifests": [str(manifests)], "account": "bench"}
        decide = WorkloadProcess(["decide", "--port", "0"], _env(broker.bootstrap_servers, opts | {"home": str(home)}),
                                 work)  # fmt: skip
        exec_env = _env(broker.bootstrap_servers, opts | {"hold_back_ms": hold_back_ms})
        execute = WorkloadProcess(["execute", "--port", "0"], exec_env, work)
        started += [decide, execute]
        for p in (decide, execute):
            p.wait_log("http endpoints listening", timeout=120)
        bus = KafkaBus(broker.bootstrap_servers, client_id="bench-reader", consumer_config=CONSUMER,
                       fetch_wait_max_ms=5)  # fmt: skip
        topics = [signals_topic(name) for name in load_desk([manifests]).strategies]
        bus.ensure_topics(topics)  # subscribed before the first signal: the lag is the pipeline's, not a join's
        cons = bus.consumer(topics[0] if len(topics) == 1 else "signals.*", max_queue=100_000, name="bench-reader")
        cons.wait_assigned(timeout=60)
        with ReplayServer([CAPTURE], max_lines=lines, speed=speed, rebase_times=True) as server:
            ingest, _ = launch(started, work, _env(broker.bootstrap_servers, {}), broker, server, "ingest-bench")
            deadline = time.monotonic() + seconds * 3 + 60
            while time.monotonic() < deadline and not server.stats().finished:
                for r in cons.fetch(10_000, timeout=0.05):
                    now = time.time_ns()
                    lags.append((now - signal_from_proto(r.value).exchange_ts) / 1e6)
            end = time.monotonic() + 3
            while time.monotonic() < end:
                for r in cons.fetch(10_000, timeout=0.05):
                    lags.append((time.time_ns() - signal_from_proto(r.value).exchange_ts) / 1e6)
            stop(ingest)
        execute.proc.send_signal(signal.SIGTERM)
        drained = execute.wait_log("paper session drained", timeout=120)
        bus.close(timeout=5)
    finally:
        for p in started:
            p.stop()
        broker.stop()
    a = np.array(lags[len(lags) // 10 :])  # the first tenth: processes warming up (numba, models)
    return {"rate_msgs_s": rate, "speed": round(speed, 3), "signals": int(a.size),
            "p50_ms": float(np.percentile(a, 50)) if a.size else None,
            "p99_ms": float(np.percentile(a, 99)) if a.size else None,
            "max_ms": float(a.max()) if a.size else None, "late_events": drained.get("late_events"),
            "steps": drained.get("steps")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--hold-back-ms", type=float, default=20.0)
    ap.add_argument("--rates", default="1000,5000,20000")
    args = ap.parse_args()
    native = capture_rate()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = DemoConfig(examples=REPO / "examples", home=work / "home", train_hours=1.0, trials=2, seed=3)
        manifests = usdm_only(demo_manifests(cfg, train_models(cfg, lambda _: None)))
        rows = [one_rate(float(r), native, args.seconds, args.hold_back_ms, work / "home", manifests, work)
                for r in args.rates.split(",")]  # fmt: skip
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out = {"machine": machine, "capture_msgs_per_s": native, "hold_back_ms": args.hold_back_ms,
           "seconds": args.seconds, "rates": rows}  # fmt: skip
    for r in rows:
        print(
            f"{r['rate_msgs_s']:>8.0f} msg/s  speed {r['speed']:>6}  signals {r['signals']:>6}  "
            f"p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms  late {r['late_events']}"
        )
    path = REPO / "benchmarks" / "results" / "dataplane_lag.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
