"""The cluster data plane as separate OS processes over a real Kafka-protocol broker (Tansu), compared with
the local runner on the same events.

``test_decide_and_execute_equal_the_local_run``: ``tradeplane workload execute`` (the paper simulator) and
``tradeplane workload decide`` (the desk) as two processes in lock-step over Kafka, fed the real USD-M
capture as md micro-batches. Every record decide publishes — signals, intents, audit records, order and
fill rows, positions, equity, risk events and rejections — must be byte-identical, per topic and key and in
order, to what the desk produces when the backtester runs it in-process over the same events (which is what
the local runner does; its own parity with the backtester is test_local_run's).

Each test has its own broker: the topics of a desk (``signals.<strategy>``…) are named by strategy, and
another test's desk on a shared broker would write into them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tradeplane.engine.runtime.outbox import Outbox
from tradeplane.engine.sim.runner import run_backtest
from tradeplane.workloads.bus.kafka import KafkaBus
from tradeplane.workloads.bus.mdbatch import encode_md_batch
from tradeplane.workloads.bus.outbox import STORED_FAMILIES
from tradeplane.workloads.bus.topics import md_topic
from tradeplane.workloads.decide.main import DecideOptions, lineage
from tradeplane.workloads.local.manifests import load_desk
from tradeplane.workloads.local.runner import backtest_config, build_desk
from tradeplane.workloads.local.source import capture_market

from ..services.kafka import KafkaBroker
from .conftest import usdm_only
from .test_workload_process import WorkloadProcess, http

CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
ACCOUNT = "paper-it"
BATCH = 500  # events per md micro-batch (ingest publishes a few ms of frames at a time)


def _env(bootstrap: str, options: Mapping[str, object]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")}
    env |= {"TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "OMP_NUM_THREADS": "1", "TRADEPLANE_LOG_LEVEL": "INFO"}
    for key, value in options.items():
        env[f"TRADEPLANE_WORKLOAD__OPTIONS__{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def _reference(
    manifests: Path, home: Path, events: np.ndarray, opts: DecideOptions
) -> dict[tuple[str, str], list[bytes]]:
    from tradeplane.workloads.bus.outbox import outbox_messages

    desk, instruments, _ = build_desk(load_desk([manifests]), home, initial_balance=opts.initial_balance)
    out: dict[tuple[str, str], list[bytes]] = defaultdict(list)

    def drain(batch: Outbox) -> None:
        for topic, key, value in outbox_messages(batch, account=opts.account, lineage=lineage(opts)):
            out[(topic, key)].append(value)

    desk.on_drain = drain
    run_backtest(events, desk, backtest_config(desk, instruments, initial_balance=opts.initial_balance, seed=opts.seed))
    return dict(out)


def _published(bootstrap: str, expect: int, timeout: float = 60.0) -> dict[tuple[str, str], list[bytes]]:
    bus = KafkaBus(bootstrap, client_id="it-reader", consumer_config=CONSUMER, fetch_wait_max_ms=10)
    cons = bus.consumer("*", max_queue=100_000, name="it-reader")  # every topic; filtered by family below
    out: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    got, deadline, quiet = 0, time.monotonic() + timeout, 0
    try:
        while time.monotonic() < deadline:
            records = cons.fetch(10_000, timeout=0.5)
            for r in records:
                if r.topic.split(".", 1)[0] in STORED_FAMILIES:
                    out[(r.topic, str(r.key))].append(bytes(r.value))
                    got += 1
            quiet = 0 if records else quiet + 1
            if got >= expect and quiet >= 4:
                break
    finally:
        bus.close(timeout=5)
    return dict(out)


def _wait_fed(port: int, n: int, timeout: float = 120.0) -> None:
    """Until execute's market-data check reports ``n`` events fed to the simulator."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        _, body = http(port, "/readyz")
        last = json.loads(body)["checks"]["market-data"]["reason"]
        if f"; {n} events fed" in last:
            return
        time.sleep(0.2)
    raise AssertionError(f"execute did not receive all {n} events: {last}")


def test_decide_and_execute_equal_the_local_run(trained: tuple[Path, Path], shared_dir: Path, tmp_path: Path) -> None:
    home, all_manifests = trained
    manifests = usdm_only(all_manifests)
    capture = shared_dir / "data" / "binance" / "ws" / "usdm_btcusdt_20240808.jsonl.gz"
    desk_def = load_desk([manifests])
    _, instruments, _ = build_desk(desk_def, home, initial_balance=10_000.0)
    events = capture_market([capture], instruments).events  # clock-aligned as the local runner does
    options = {"manifests": [str(manifests)], "account": ACCOUNT, "home": str(home)}
    opts = DecideOptions.model_validate(options)
    reference = _reference(manifests, home, events, opts)
    n_ref = sum(len(v) for v in reference.values())
    assert any(t.startswith("fills.") for t, _ in reference) and n_ref > 3000

    broker = KafkaBroker(tmp_path / "broker")
    broker.start().wait_ready(30)
    decide = execute = None
    try:
        env = _env(broker.bootstrap_servers, options)
        decide = WorkloadProcess(["decide", "--port", "0"], env, tmp_path)
        decide.wait_log("http endpoints listening", timeout=120)
        exec_opts = {k: v for k, v in options.items() if k != "home"} | {"hold_back_ms": 500}
        execute = WorkloadProcess(["execute", "--port", "0"], _env(broker.bootstrap_servers, exec_opts), tmp_path)
        port = execute.wait_log("http endpoints listening", timeout=120)["port"]
        producer = KafkaBus(broker.bootstrap_servers, client_id="it-ingest")
        topic = md_topic("binance-usdm", "BTCUSDT")
        for seq, start in enumerate(range(0, events.shape[0], BATCH)):
            part = events[start : start + BATCH]
            producer.publish(topic, "BTCUSDT", encode_md_batch(part, venue="binance-usdm", symbol="BTCUSDT", seq=seq),
                             seq=seq)  # fmt: skip
            if seq == 0:  # a duplicate, as a producer retry would make: de-duplicated by tp-seq
                producer.publish(topic, "BTCUSDT", encode_md_batch(part, venue="binance-usdm", symbol="BTCUSDT",
                                                                   seq=seq), seq=seq)  # fmt: skip
        producer.close(timeout=30)
        execute.wait_log("paper session started", timeout=60)
        _wait_fed(port, events.shape[0])  # then SIGTERM drains the session to the last event received
        execute.proc.send_signal(signal.SIGTERM)
        drained = execute.wait_log("paper session drained", timeout=300)
        assert execute.proc.wait(timeout=60) == 0, "".join(execute.lines[-20:])
        assert drained["late_events"] == 0
        got = _published(broker.bootstrap_servers, n_ref)
        decide.proc.send_signal(signal.SIGTERM)
        assert decide.proc.wait(timeout=60) == 0, "".join(decide.lines[-20:])
    finally:
        for p in (execute, decide):
            if p is not None:
                p.stop()
        broker.stop()
    assert set(got) == set(reference)
    for key in reference:
        assert got[key] == reference[key], key
