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
from typing import Any

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
MS = 1_000_000


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


# --- four processes: ingest → Kafka → decide ⇄ execute → sink → ClickHouse -------------------------------------

RUNTIME_KEYS = {  # table → the columns compared row by row (sorted by the first ones) against the reference
    "signals": ("signal_id", "decision", "reason", "p_up", "model_version"),
    "intents": ("intent_id", "signal_id", "qty", "price"),
    "orders": ("client_order_id", "ts", "status", "filled_qty"),
    "fills": ("client_order_id", "trade_id", "qty", "price", "fee"),
    "positions": ("intent_id", "ts", "qty", "realized", "state"),
    "equity": ("ts", "equity", "fees"),
    "rejections": ("ts", "strategy", "stage", "reason", "intent_id"),
    "risk_events": ("ts", "budget", "from_phase", "to_phase", "reason", "detail"),
    "audit": ("signal_id", "ts", "schema_version"),
}


#: the audit table also holds ingest's data-quality records (audit.<ingest name>): the desk's have a signal id
WHERE = {"audit": " AND signal_id != ''"}


def _md_events(bootstrap: str, topic: str) -> tuple[list[Any], int]:
    """Every md batch ingest published (de-duplicated by tp-seq), in order; and how many records were read."""
    from tradeplane.workloads.bus.dedup import SequenceFilter
    from tradeplane.workloads.bus.mdbatch import decode_md_batch

    bus = KafkaBus(bootstrap, client_id="it-md", consumer_config=CONSUMER, fetch_wait_max_ms=10)
    cons = bus.consumer(topic, max_queue=100_000, name=f"it-md-{time.monotonic_ns()}")
    seen, batches, quiet, n = SequenceFilter(), [], 0, 0
    deadline = time.monotonic() + 90
    try:
        cons.wait_assigned(timeout=60)
        while (quiet < 6 or not n) and time.monotonic() < deadline:
            records = cons.fetch(10_000, timeout=0.5)
            quiet = 0 if records else quiet + 1
            for r in records:
                n += 1
                if r.seq is None or seen.accept(r.topic, r.key, r.seq):
                    batches.append(decode_md_batch(r.value))
    finally:
        bus.close(timeout=5)
    return batches, n


def _reference_rows(
    manifests: Path, home: Path, events: np.ndarray, opts: DecideOptions
) -> dict[str, list[dict[str, Any]]]:
    from tradeplane.workloads.bus.outbox import outbox_messages, table_rows

    desk, instruments, _ = build_desk(load_desk([manifests]), home, initial_balance=opts.initial_balance)
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def drain(batch: Outbox) -> None:
        for topic, _key, value in outbox_messages(batch, account=opts.account, lineage=lineage(opts)):
            for table, got in table_rows(topic, value).tables.items():
                rows[table] += got

    desk.on_drain = drain
    run_backtest(events, desk, backtest_config(desk, instruments, initial_balance=opts.initial_balance, seed=opts.seed))
    return dict(rows)


def _comparable(value: Any) -> Any:
    if isinstance(value, float | np.floating) and np.isnan(value):
        return "nan"
    return value.item() if isinstance(value, np.generic) else value


def test_four_processes_store_what_the_local_run_stores(
    trained: tuple[Path, Path], shared_dir: Path, tmp_path: Path, clickhouse_server: Any
) -> None:
    """The acceptance test of the data plane: ingest (against the replay server, exchange times rebased to
    the wall clock as a live exchange stamps them) → Kafka → decide ⇄ execute (paper) → sink → the
    ClickHouse server, as four OS processes. What the sink stored equals, table by table and row by row,
    what the desk produces in-process over the events ingest published; and the market data the sink stored
    replays into exactly those events."""
    from tests.fixtures.binance_replay import ReplayServer
    from tests.integration.test_ingest_replay import USDM, capture
    from tests.integration.test_ingest_workload import launch, stop
    from tradeplane.workloads.paper.feed import MarketFeed
    from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore
    from tradeplane.workloads.store.market import replay_events

    home, all_manifests = trained
    manifests = usdm_only(all_manifests)
    database = f"dp{time.monotonic_ns()}"
    clickhouse_server.client().execute(f"CREATE DATABASE {database}")
    run_id = "four-proc"
    options = {"manifests": [str(manifests)], "account": ACCOUNT, "home": str(home), "run_id": run_id}
    broker = KafkaBroker(tmp_path / "broker")
    broker.start().wait_ready(30)
    started: list[WorkloadProcess] = []
    try:
        base = _env(broker.bootstrap_servers, {})
        decide = WorkloadProcess(["decide", "--port", "0"], _env(broker.bootstrap_servers, options), tmp_path)
        started.append(decide)
        exec_opts = {k: v for k, v in options.items() if k not in ("home", "run_id")} | {"hold_back_ms": 500}
        execute = WorkloadProcess(["execute", "--port", "0"], _env(broker.bootstrap_servers, exec_opts), tmp_path)
        started.append(execute)
        ch = clickhouse_server.client_kwargs()
        sink_env = _env(broker.bootstrap_servers, {"run_id": run_id, "spill_dir": str(tmp_path / "spill"),
                                                   "fetch_wait_max_ms": 10, "session_timeout_ms": 6000,
                                                   "heartbeat_interval_ms": 500, "max_age_ms": 200})  # fmt: skip
        sink_env["TRADEPLANE_CLICKHOUSE__DSN"] = f"clickhouse://{ch['user']}:@{ch['host']}:{ch['port']}/{database}"
        sink = WorkloadProcess(["sink", "--port", "0"], sink_env, tmp_path)
        started.append(sink)
        port = {p: int(p.wait_log("http endpoints listening", timeout=120)["port"]) for p in (decide, execute, sink)}
        with ReplayServer([capture(shared_dir, USDM)], max_lines=300_000, speed=10.0, rebase_times=True) as server:
            ingest, _ = launch(started, tmp_path, base, broker, server, "ingest-four")
            server.wait_finished(120)
            time.sleep(1.0)  # the last frames reach ingest
            stop(ingest)
        topic = md_topic("binance-usdm", "BTCUSDT")
        batches, _ = _md_events(broker.bootstrap_servers, topic)
        # the reference: what execute's feed makes of these batches, run in-process
        feed = MarketFeed({("binance-usdm", "BTCUSDT"): 0})
        for b in batches:
            feed.add(b)
        events = feed.take()
        assert events.shape[0] == sum(b.count for b in batches) > 10_000
        lag = events["ingest_ts"] - events["exchange_ts"]
        assert lag.min() >= 0 and lag.max() < 500 * MS  # live-like clocks: within the hold-back
        _wait_fed(port[execute], events.shape[0])
        execute.proc.send_signal(signal.SIGTERM)
        drained = execute.wait_log("paper session drained", timeout=300)
        assert execute.proc.wait(timeout=60) == 0, "".join(execute.lines[-20:])
        assert drained["late_events"] == 0
        decide.proc.send_signal(signal.SIGTERM)
        assert decide.proc.wait(timeout=60) == 0, "".join(decide.lines[-20:])
        reference = _reference_rows(manifests, home, events, DecideOptions.model_validate(options))
        # a short window of live-clocked replay: the desk decides every tick (signals, audit, rejections, equity);
        # the orders and fills side of the lock-step is byte-compared by the two-process test above
        assert len(reference["signals"]) > 300 and reference.get("equity")
        expect = {t: len(reference.get(t, [])) for t in RUNTIME_KEYS}
        store = ClickHouseServerStore(host=ch["host"], port=ch["port"], database=database, user=ch["user"])
        deadline = time.monotonic() + 120
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = {t: int(store.query(f"SELECT count() AS n FROM {t} WHERE run_id = '{run_id}'{WHERE.get(t, '')}")["n"][0])
                      for t in RUNTIME_KEYS}  # fmt: skip
            if counts == expect:
                break
            time.sleep(0.5)
        assert counts == expect
        for table, cols in RUNTIME_KEYS.items():
            got = store.query(f"SELECT {', '.join(cols)} FROM {table} WHERE run_id = '{run_id}'{WHERE.get(table, '')}")
            stored = sorted(tuple(_comparable(v) for v in row) for row in zip(*(got[c] for c in cols), strict=True))
            ref = sorted(tuple(_comparable(r[c]) for c in cols) for r in reference.get(table, []))
            assert stored == ref, table
        replayed = replay_events(store, "binance-usdm", "BTCUSDT", 0, 1 << 62)
        assert replayed.shape[0] == events.shape[0]
        for name in ("kind", "exchange_ts", "ingest_ts", "px", "qty", "seq"):
            np.testing.assert_array_equal(replayed[name], events[name], err_msg=name)
        sink.proc.send_signal(signal.SIGTERM)
        assert sink.proc.wait(timeout=60) == 0, "".join(sink.lines[-20:])
        store.close()
    finally:
        for p in started:
            p.stop()
        broker.stop()
