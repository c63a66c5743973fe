"""One Kafka hop's latency as the partition grows, on the test broker (Tansu, memory storage engine).

Why: the data plane's lag benchmark showed md batches taking longer and longer to cross the broker within one
run at a constant rate. This isolates the broker: one producer (linger 1 ms, as ingest), one consumer
(``fetch_wait_max_ms`` 5, as the docs advise on Tansu), records of ``--bytes`` published every ``--every-ms``
for ``--seconds``; the latency (publish → consume, same process) is reported per window of ``--window`` s
together with how many records the partition held. On Apache Kafka a fetch finds its offset through the
segment index, whatever the log's length; a latency that grows with the record count is the broker's, and
every lag figure measured on it includes that growth.

    .venv/bin/python benchmarks/bench_broker_growth.py [--seconds 30] [--every-ms 2.5] [--bytes 1500]

Prints the table and writes benchmarks/results/broker_growth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.services.kafka import KafkaBroker  # noqa: E402
from tradeplane.workloads.bus.kafka import KafkaBus  # noqa: E402

CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def measure(seconds: float, every_ms: float, size: int, window: float) -> list[dict[str, Any]]:
    """Publish → consume latency per window, with the partition's record count at the window's end."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker(Path(tmp) / "broker")
        broker.start().wait_ready(30)
        try:
            topic = "md.bench.GROWTH"
            producer = KafkaBus(broker.bootstrap_servers, client_id="growth-p", linger_ms=1.0)
            consumer_bus = KafkaBus(broker.bootstrap_servers, client_id="growth-c", fetch_wait_max_ms=5,
                                    consumer_config=CONSUMER)  # fmt: skip
            producer.ensure_topics([topic])
            consumer = consumer_bus.consumer(topic, max_queue=100_000, name="growth")
            consumer.wait_assigned(timeout=60)
            payload = os.urandom(size)
            seen: list[tuple[float, float, int]] = []  # (s since start, latency ms, records published)
            t0, seq = time.monotonic(), 0
            while time.monotonic() - t0 < seconds:
                seq += 1
                producer.publish(topic, "K", time.time_ns().to_bytes(8, "big") + payload, seq=seq)
                for r in consumer.fetch(10_000, timeout=0.0):
                    sent = int.from_bytes(r.value[:8], "big")
                    seen.append((time.monotonic() - t0, (time.time_ns() - sent) / 1e6, seq))
                time.sleep(every_ms / 1e3)
            producer.close(timeout=5)
            consumer_bus.close(timeout=5)
        finally:
            broker.stop()
    a = np.array(seen)
    rows = []
    for start in np.arange(0.0, seconds, window):
        sel = (a[:, 0] >= start) & (a[:, 0] < start + window)
        if sel.any():
            lat = a[sel, 1]
            rows.append({"from_s": float(start), "records": int(a[sel, 2].max()),
                         "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                         "max_ms": float(lat.max())})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--every-ms", type=float, default=2.5)
    ap.add_argument("--bytes", type=int, default=1500)
    ap.add_argument("--window", type=float, default=3.0)
    args = ap.parse_args()
    rows = measure(args.seconds, args.every_ms, args.bytes, args.window)
    print(f"{'from':>6} {'records':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in rows:
        print(f"{r['from_s']:>5.0f}s {r['records']:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.2f}")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out = {"machine": machine, "broker": "tansu 0.6.0, memory://", "seconds": args.seconds,
           "every_ms": args.every_ms, "bytes": args.bytes, "windows": rows}  # fmt: skip
    path = REPO / "benchmarks" / "results" / "broker_growth.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
