"""The Kafka bus on a loopback broker: md batches of real events, produce → consume throughput and batch latency.

What is measured, on the real USD-M BTCUSDT capture cut into batches of ``BATCH`` events (the shape the ingest
publishes), through :class:`~tradeplane.workloads.bus.kafka.KafkaBus` with its production settings
(idempotent producer, ``acks=all``, lz4, ``linger.ms`` 5):

* **pipeline**: a consumer group (joined before the clock starts) reads while a producer thread encodes every
  batch (``encode_md_batch``) and publishes it with its ``tp-seq`` as fast as the bounded producer queue
  allows; the consumer decodes each batch zero-copy (``decode_md_batch``), runs it through the
  ``SequenceFilter`` and commits at the end. Reported: batches/s and events/s from the first publish to the
  last batch consumed, and the producer's own rate (encode + publish + flush) while the consumer runs.
* **backlog**: a second group reads the whole topic afterwards (what a consumer catching up after a
  restart does; librdkafka starts prefetching as soon as the group is joined, before the clock starts).
* **latency**: a producer thread publishes at a fixed rate (its own bus; a bus is single-threaded), the main
  thread consumes; latency = receive time − the batch's ``seq``, which the producer stamps with
  ``time.time_ns()`` just before encoding (as the ingest does). p50/p99/max per rate, and once with
  ``linger_ms=1`` to show what the producer's batching delay costs.

The broker is Tansu in memory, started the way the tests start it (tests/services/kafka.py), or the one at
``$TRADEPLANE_BENCH_KAFKA_BOOTSTRAP``. Broker, producer and consumer share this machine's cores, so the numbers
are the whole loop's cost, not the network's. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_kafka_bus.py

Prints the numbers and writes benchmarks/results/kafka_bus.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from harness import REPO, cpu_model, shared_dir

sys.path.insert(0, str(REPO))  # tests.services: the same broker fixture the tests use

from tests.services.kafka import KafkaBroker
from tradeplane.engine.events import SymbolTable
from tradeplane.engine.replay import read_capture
from tradeplane.workloads.bus.dedup import SequenceFilter
from tradeplane.workloads.bus.kafka import KafkaBus, KafkaConsumer, KafkaRecord
from tradeplane.workloads.bus.mdbatch import decode_md_batch, encode_md_batch
from tradeplane.workloads.bus.topics import md_topic

BATCH = 100
VENUE = "binance-usdm"
SYMBOL = "BTCUSDT"
#: latency runs: (batches/s, producer linger.ms, consumer fetch.wait.max.ms). Tansu holds an empty fetch for the
#: whole fetch.wait.max.ms instead of answering when records arrive (Kafka answers at once), so the bus's
#: default of 100 ms is measured once to show that caveat, and 5 ms is what runs on Tansu.
RUNS = ((200, 5.0, 5), (1000, 5.0, 5), (1000, 1.0, 5), (200, 5.0, 100))
FETCH_WAIT_MS = 5
LATENCY_SECONDS = 5.0
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}  # Tansu joins in session/2


def _bus(bootstrap: str, **kwargs: Any) -> KafkaBus:
    kwargs.setdefault("consumer_config", CONSUMER)
    kwargs.setdefault("fetch_wait_max_ms", FETCH_WAIT_MS)
    return KafkaBus(bootstrap, client_id=f"bench-{uuid.uuid4().hex[:6]}", metadata_refresh_ms=1000, **kwargs)


def poll_all(cons: KafkaConsumer, n: int, timeout: float = 30.0) -> list[KafkaRecord]:
    got: list[KafkaRecord] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += cons.fetch(n - len(got), timeout=0.2)
    return got


def _consume_all(cons: KafkaConsumer, n: int) -> int:
    """Fetch ``n`` batches, decode each and pass it through a sequence filter (a consumer's real work);
    returns the events accepted."""
    seen = SequenceFilter()
    got = events_in = 0
    while got < n:
        for rec in cons.fetch(1000, timeout=1.0):
            batch = decode_md_batch(rec.value)
            if seen.accept(rec.topic, rec.key, batch.seq):
                events_in += batch.count
            got += 1
    cons.commit()
    return events_in


def throughput(bootstrap: str, events: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Pipelined (producer thread + consumer, both running), then a second group reading the backlog."""
    topic = md_topic(f"bench{uuid.uuid4().hex[:6]}", SYMBOL)
    chunks = [events[i : i + BATCH] for i in range(0, len(events) - BATCH + 1, BATCH)]
    consumer_bus = _bus(bootstrap)
    consumer_bus.ensure_topics([topic])
    cons = consumer_bus.consumer(topic, max_queue=10_000, name=f"bench-{uuid.uuid4().hex[:6]}")
    assert cons.wait_assigned(30), "the consumer did not join its group"
    producer = _bus(bootstrap)
    producer.publish(topic, SYMBOL, encode_md_batch(chunks[0], venue=VENUE, symbol=SYMBOL, seq=0), seq=0)
    producer.flush()  # connected, producer id obtained
    assert _consume_all(cons, 1) == BATCH
    produced: dict[str, float] = {}

    def produce() -> None:
        t0 = time.perf_counter()
        nbytes = 0
        for i, chunk in enumerate(chunks):
            data = encode_md_batch(chunk, venue=VENUE, symbol=SYMBOL, seq=i + 1)
            nbytes += len(data)
            producer.publish(topic, SYMBOL, data, seq=i + 1)
        producer.flush()
        produced.update(seconds=time.perf_counter() - t0, nbytes=nbytes)

    t0 = time.perf_counter()
    thread = threading.Thread(target=produce, name="bench-producer")
    thread.start()
    events_in = _consume_all(cons, len(chunks))
    pipeline_s = time.perf_counter() - t0
    thread.join()
    producer.close()
    assert events_in == len(chunks) * BATCH

    backlog = consumer_bus.consumer(topic, max_queue=10_000, name=f"backlog-{uuid.uuid4().hex[:6]}")
    assert backlog.wait_assigned(30), "the consumer did not join its group"
    t0 = time.perf_counter()
    assert _consume_all(backlog, len(chunks) + 1) == (len(chunks) + 1) * BATCH
    backlog_s = time.perf_counter() - t0
    consumer_bus.close()
    n, nbytes = len(chunks), produced["nbytes"]
    return {
        "batches": n,
        "events": n * BATCH,
        "payload_mb": round(nbytes / 1e6, 1),
        "pipeline_batches_per_s": round(n / pipeline_s),
        "pipeline_events_per_s": round(n * BATCH / pipeline_s),
        "produce_batches_per_s": round(n / produced["seconds"]),
        "produce_mb_per_s": round(nbytes / 1e6 / produced["seconds"], 1),
        "backlog_consume_batches_per_s": round((n + 1) / backlog_s),
        "backlog_consume_events_per_s": round((n + 1) * BATCH / backlog_s),
    }


def latency(
    bootstrap: str, events: np.ndarray[Any, Any], rate: int, linger_ms: float, fetch_wait_ms: int
) -> dict[str, Any]:
    topic = md_topic(f"lat{uuid.uuid4().hex[:6]}", SYMBOL)
    consumer_bus = _bus(bootstrap, fetch_wait_max_ms=fetch_wait_ms)
    consumer_bus.ensure_topics([topic])
    cons = consumer_bus.consumer(topic, max_queue=10_000, name=f"lat-{uuid.uuid4().hex[:6]}")
    assert cons.wait_assigned(30), "the consumer did not join its group"
    n = int(rate * LATENCY_SECONDS)
    chunks = [events[(i * BATCH) % (len(events) - BATCH) :][:BATCH] for i in range(n)]

    bus = _bus(bootstrap, linger_ms=linger_ms)
    warm = encode_md_batch(chunks[0], venue=VENUE, symbol=SYMBOL, seq=1)
    bus.publish(topic, SYMBOL, warm, seq=1)  # connect and get a producer id before the clock starts
    bus.flush()
    assert len(poll_all(cons, 1)) == 1

    def produce() -> None:
        start = time.perf_counter()
        for i, chunk in enumerate(chunks):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            seq = time.time_ns()
            bus.publish(topic, SYMBOL, encode_md_batch(chunk, venue=VENUE, symbol=SYMBOL, seq=seq), seq=seq)
        bus.close()

    thread = threading.Thread(target=produce, name="bench-producer")
    thread.start()
    lat_ms: list[float] = []
    deadline = time.monotonic() + LATENCY_SECONDS + 30
    while len(lat_ms) < n and time.monotonic() < deadline:
        for rec in cons.fetch(1000, timeout=0.05):
            now = time.time_ns()
            lat_ms.append((now - decode_md_batch(rec.value).seq) / 1e6)
    thread.join()
    consumer_bus.close()
    assert len(lat_ms) == n, f"received {len(lat_ms)} of {n}"
    arr = np.array(lat_ms)
    return {
        "rate_batches_per_s": rate,
        "rate_events_per_s": rate * BATCH,
        "linger_ms": linger_ms,
        "fetch_wait_max_ms": fetch_wait_ms,
        "batches": n,
        "latency_p50_ms": round(float(np.percentile(arr, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(arr, 99)), 2),
        "latency_max_ms": round(float(arr.max()), 2),
    }


def main() -> None:
    capture = shared_dir() / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
    events = read_capture(capture, SymbolTable()).events
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    external = os.environ.get("TRADEPLANE_BENCH_KAFKA_BOOTSTRAP")
    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker.attach(external) if external else KafkaBroker(Path(tmp))
        broker.start().wait_ready(30)
        try:
            bootstrap = broker.bootstrap_servers
            thr = throughput(bootstrap, events)
            lat = [latency(bootstrap, events, *run) for run in RUNS]
        finally:
            broker.stop()
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}",
        "broker": "external" if external else "tansu (memory, loopback)",
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "capture": capture.name,
        "batch_events": BATCH,
        "throughput": thr,
        "latency": lat,
    }
    print(json.dumps(result, indent=2))
    out = REPO / "benchmarks" / "results" / "kafka_bus.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
