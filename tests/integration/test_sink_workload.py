"""The sink workload against the real services: Tansu (Kafka protocol) in, the ClickHouse 18.16 server out.

* Every stored family round-trips: md batches cut from a real Binance capture come back from ClickHouse
  byte-identical (``replay_events``), the desk's outbox (signals, intents, audit, orders, fills, positions,
  equity, risk events, rejections) lands row for row with the constant ``run_id``, audit records also in the
  JSONL file; records re-published with the same ``tp-seq`` are stored once; ``venue.*``/``orders.*`` are not
  even subscribed.
* ClickHouse stopped for 30 s mid-stream: the sink keeps consuming, keeps at most its bound in memory, spills
  the rest to disk (segments appear), commits past what is on disk, and after the restart catches up with
  every row exactly once.
* Poison messages go to ``dlq.<family>`` with their reason; the records after them are stored.
* Spill segments and durable marks left by a sink that died before committing are replayed at the next start
  without duplicates — in-process (a deterministic crash between spill and commit) and as a SIGKILLed OS
  process.
* ``tradeplane workload sink`` as a real process: ``/readyz`` names its checks, ``/metrics`` its counters,
  and SIGTERM flushes what only the flush would have stored (exit 0).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from tests.integration.test_chdb_store import ROWS
from tests.integration.test_kafka_bus import as_record
from tests.integration.test_workload_process import WorkloadProcess, http
from tests.services import ClickHouseServer, KafkaBroker
from tests.services._process import free_port
from tests.unit.workloads.test_codec import INTENT, SIGNAL, SKIPPED
from tradeplane.engine.events import AGG_TRADE, BBO, DEPTH, KIND_MASK, SNAPSHOT, TRADE, SymbolTable
from tradeplane.engine.replay import read_capture
from tradeplane.engine.runtime.outbox import Outbox
from tradeplane.settings import Settings
from tradeplane.workloads.audit import read_audit
from tradeplane.workloads.bus.kafka import KafkaBus, parse_dead_letter
from tradeplane.workloads.bus.mdbatch import encode_md_batch
from tradeplane.workloads.bus.outbox import outbox_messages
from tradeplane.workloads.bus.rows import encode_rows
from tradeplane.workloads.bus.topics import fills_topic, md_topic, orders_topic, venue_topic
from tradeplane.workloads.service.service import WorkloadService
from tradeplane.workloads.sink.buffer import OutageBuffer
from tradeplane.workloads.sink.main import setup
from tradeplane.workloads.sink.options import STORED_PATTERN
from tradeplane.workloads.sink.sink import Sink
from tradeplane.workloads.sink.spill import SpillDir, read_rejected
from tradeplane.workloads.store.base import rows_of
from tradeplane.workloads.store.clickhouse_server import ClickHouseServerStore, RetryPolicy
from tradeplane.workloads.store.market import replay_events

CAPTURE = "binance/ws/spot_ethusdt_20240808.jsonl.gz"
SYMBOL = "ETHUSDT"
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
RUNTIME = ("signals", "intents", "audit", "orders", "fills", "positions", "equity", "risk_events", "rejections")
WAIT = 60.0


def uid() -> str:
    return uuid.uuid4().hex[:8]


# -- data --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture(shared_dir: Path) -> np.ndarray:
    """The REST snapshot of a real spot ETHUSDT capture and the 12k events after it (symbol id 0)."""
    events = read_capture(shared_dir / "data" / CAPTURE, SymbolTable()).events
    snapshot = np.flatnonzero((events["kind"] & KIND_MASK) == SNAPSHOT)
    out = events[: snapshot[-1] + 12_000].copy()
    assert (out["symbol"] == 0).all()
    return out


def md_batches(events: np.ndarray, venue: str, size: int = 250) -> list[tuple[str, str, bytes, int]]:
    """(topic, key, value, seq) per micro-batch, as the ingest publishes them."""
    topic, seq0 = md_topic(venue, SYMBOL), time.time_ns()
    return [
        (topic, SYMBOL, encode_md_batch(events[k : k + size], venue=venue, symbol=SYMBOL, seq=seq0 + i), seq0 + i)
        for i, k in enumerate(range(0, len(events), size))
    ]


def _rows(table: str, strategy: str) -> list[dict[str, Any]]:
    cols = ROWS[table]
    n = len(next(iter(cols.values())))
    rows = [{k: np.asarray(v).tolist()[i] for k, v in cols.items()} for i in range(n)]
    for r in rows:
        if "strategy" in r:
            r["strategy"] = strategy
    return rows


def desk_messages(u: str) -> tuple[list[tuple[str, str, bytes]], dict[str, int]]:
    """The outbox messages of one desk batch (every runtime table), and the rows each table should get."""
    strategy, account = f"s-{u}", f"acct-{u}"
    signals = [dataclasses.replace(SIGNAL, strategy=strategy, id=f"sig-{u}-1"),
               dataclasses.replace(SKIPPED, strategy=strategy, id=f"sig-{u}-2")]  # fmt: skip
    intents = [dataclasses.replace(INTENT, strategy=strategy, signal_id=f"sig-{u}-1", intent_id=f"int-{u}-1")]
    batch = Outbox(signals=signals, intents=intents, orders=_rows("orders", strategy), fills=_rows("fills", strategy),
                   positions=_rows("positions", strategy), rejections=_rows("rejections", strategy),
                   risk_events=_rows("risk_events", strategy), equity=_rows("equity", strategy))  # fmt: skip
    messages = outbox_messages(batch, account=account, lineage={"model_version": "m1"})
    want = {"signals": 2, "intents": 1, "audit": 2, **{t: 3 for t in RUNTIME[3:]}}
    return messages, want


# -- services and the sink -----------------------------------------------------------------------------


@pytest.fixture
def producer(kafka_broker: KafkaBroker) -> Iterator[KafkaBus]:
    bus = KafkaBus(kafka_broker.bootstrap_servers, client_id=f"pub-{uid()}", linger_ms=1)
    yield bus
    bus.close(timeout=5)


def publish(bus: KafkaBus, messages: list[tuple[str, str, bytes, int]]) -> None:
    for topic, key, value, seq in messages:
        bus.publish(topic, key, value, seq=seq)
    bus.flush(timeout=30)


def with_seq(messages: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes, int]]:
    """Stamp each (topic, key) with increasing sequences, as the producers do."""
    seq0, last = time.time_ns(), {}
    out = []
    for i, (topic, key, value) in enumerate(messages):
        last[(topic, key)] = seq0 + i
        out.append((topic, key, value, seq0 + i))
    return out


def reader(server: ClickHouseServer, database: str) -> ClickHouseServerStore:
    """The test's own connection, to read what the sink stored."""
    return ClickHouseServerStore(server.host, server.port, database=database, retry=RetryPolicy(3, 0.05, 0.2))


def sink_options(u: str, home: Path, **options: Any) -> dict[str, Any]:
    """Options for a test sink: this test's topics only, Tansu-friendly consumer timings, fast retries."""
    return {
        "group": f"sink-{u}",
        "topics": f"{STORED_PATTERN}{u}*",  # only this test's topics (the broker is shared by the session)
        "fetch_wait_max_ms": 5,
        "metadata_refresh_ms": 500,
        "session_timeout_ms": CONSUMER["session.timeout.ms"],
        "heartbeat_interval_ms": CONSUMER["heartbeat.interval.ms"],
        "max_age_ms": 200,
        "retry_attempts": 2,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        "connect_timeout_s": 1.0,
        "probe_interval_s": 0.5,
        "spill_dir": str(home / "spill"),
        **options,
    }


def sink_settings(kafka_broker: KafkaBroker, dsn: str, home: Path, u: str, **options: Any) -> Settings:
    return Settings(
        home=home,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers},
        clickhouse={"dsn": dsn},
        workload={"options": sink_options(u, home, **options), "shutdown_deadline_s": 20},
    )


def dsn(host: str, port: int, database: str) -> str:
    return f"clickhouse://default@{host}:{port}/{database}"


@pytest.fixture
def sinks() -> Iterator[Callable[[Settings], tuple[WorkloadService, Sink]]]:
    """Start sinks through the workload's own ``setup`` (as ``tradeplane workload sink`` does) and drive their
    loop steps from the test; shut down (hooks) at the end unless the test did."""
    made: list[tuple[WorkloadService, Sink]] = []

    def start(settings: Settings) -> tuple[WorkloadService, Sink]:
        service = WorkloadService("sink", port=0, registry=CollectorRegistry(), shutdown_deadline_s=20)
        step = setup(service, settings)
        sink = step.__self__  # type: ignore[attr-defined]
        assert isinstance(sink, Sink)
        made.append((service, sink))
        return service, sink

    yield start
    for service, _ in made:
        if service.exit_code is None:
            service.shutdown()


def run_until(sink: Sink, done: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.step()
        if done():
            return
    raise AssertionError(f"sink did not get there in {timeout:.0f} s: {what} (stats {sink.stats}, "
                         f"buffer {sink.buffer.stats}, backlog {sink.buffer.rows} rows/{len(sink.buffer.segments)} seg)")  # fmt: skip


def count(store: ClickHouseServerStore, table: str, where: str = "1") -> int:
    return int(store.query(f"SELECT count() AS n FROM {table} WHERE {where}")["n"][0])


def counts(store: ClickHouseServerStore, tables: tuple[str, ...]) -> dict[str, int]:
    return {t: count(store, t) for t in tables}


def market_counts(events: np.ndarray) -> dict[str, int]:
    """Rows per market table of ``events`` (by kind: trades, and book diffs/snapshots/BBO)."""
    base = events["kind"] & KIND_MASK
    trades = int(np.isin(base, [TRADE, AGG_TRADE]).sum())
    book = int(np.isin(base, [DEPTH, SNAPSHOT, BBO]).sum())
    assert trades + book == len(events)  # a spot capture has nothing else
    return {"trades": trades, "book_diffs": book}


def caught_up(sink: Sink) -> bool:
    return not sink.buffer.backlog and not sink.pending_rows and not sink.consumer.uncommitted


# -- the tests -----------------------------------------------------------------------------------------


def test_every_family_round_trips_and_redelivered_records_are_stored_once(
    kafka_broker: KafkaBroker,
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    producer: KafkaBus,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    u, db = uid(), f"sink_{uid()}"
    venue, account = f"v-{u}", f"acct-{u}"
    md = md_batches(capture, venue)
    desk, want = desk_messages(u)
    desk_seq = with_seq(desk)
    producer.publish(venue_topic(account), account, b"a paper venue step", seq=1)  # not stored, not subscribed
    producer.publish(orders_topic(account), account, b"parent orders", seq=1)
    publish(producer, md + desk_seq)
    publish(producer, md[:5] + desk_seq[:4])  # delivered again with the same tp-seq (a retry, a redelivery)

    audit_path = tmp_path / "audit.jsonl"
    settings = sink_settings(kafka_broker, dsn(clickhouse_server.host, clickhouse_server.port, db), tmp_path, u,
                             audit_path=str(audit_path), run_id=f"run-{u}")  # fmt: skip
    _, sink = sinks(settings)
    total = len(md) + len(desk) + 5 + 4
    started = time.monotonic()
    run_until(sink, lambda: sum(sink.stats.records.values()) >= total and caught_up(sink), what="all records")
    elapsed = time.monotonic() - started

    store = reader(clickhouse_server, db)
    lo, hi = int(capture["exchange_ts"].min()), int(capture["exchange_ts"].max()) + 1
    replayed = replay_events(store, venue, SYMBOL, lo, hi)
    assert replayed.tobytes() == capture.tobytes()  # every event, every field, in the order received
    assert counts(store, ("trades", "book_diffs")) == market_counts(capture)  # no duplicate rows (no FINAL)

    assert counts(store, RUNTIME) == want
    signals = rows_of(store.query("SELECT signal_id, strategy, run_id, utility FROM signals ORDER BY signal_id"))
    assert [r["signal_id"] for r in signals] == [f"sig-{u}-1", f"sig-{u}-2"]
    assert all(r["strategy"] == f"s-{u}" and r["run_id"] == f"run-{u}" for r in signals)
    assert np.isnan(signals[1]["utility"])  # the skipped signal's NaN survived Kafka and ClickHouse
    fills = rows_of(store.query("SELECT client_order_id, price, fee, ts FROM fills ORDER BY trade_id"))
    want_fills = sorted(_rows("fills", "x"), key=lambda r: r["trade_id"])
    assert [(r["client_order_id"], r["price"], r["fee"]) for r in fills] == [
        (r["client_order_id"], r["price"], r["fee"]) for r in want_fills
    ]
    positions = store.query("SELECT avg_entry FROM positions ORDER BY intent_id, qty")["avg_entry"]
    assert int(np.isnan(positions).sum()) == 1
    for table in RUNTIME:
        assert store.query(f"SELECT DISTINCT run_id FROM {table}")["run_id"].tolist() == [f"run-{u}"]
    assert [r["signal_id"] for r in read_audit(audit_path)] == [f"sig-{u}-1", f"sig-{u}-2"]

    assert sink.stats.duplicates == 9 and sink.stats.dead_letters == {} and sink.stats.ignored == 0
    assert set(sink.stats.records) == {"md", "signals", "intents", "audit", "fills", "desk"}
    rows = sum(market_counts(capture).values()) + sum(want.values())
    print(f"\nsink: {len(md) + len(desk)} records, {rows} rows Kafka → ClickHouse 18.16 in {elapsed:.2f} s "
          f"(group join included) = {rows / elapsed:,.0f} rows/s")  # fmt: skip
    store.close()


def test_a_30s_clickhouse_outage_is_buffered_spilled_and_caught_up_exactly_once(
    kafka_broker: KafkaBroker,
    capture: np.ndarray,
    producer: KafkaBus,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    """The server is stopped (its own instance: the session's is shared) for 30 s while records keep coming."""
    server = ClickHouseServer(tmp_path / "ch")
    server.stop_grace = 2.0  # 18.16 takes its time over SIGTERM; after 2 s it is killed (a crash is an outage too)
    with server:
        u, db = uid(), f"sink_{uid()}"
        venue = f"v-{u}"
        md = md_batches(capture, venue, size=100)
        desk, want = desk_messages(u)
        bound, max_rows = 1500, 500
        settings = sink_settings(kafka_broker, dsn(server.host, server.port, db), tmp_path, u,
                                 max_buffer_rows=bound, max_rows=max_rows)  # fmt: skip
        _, sink = sinks(settings)
        before = md[: len(md) // 4]
        publish(producer, before)
        run_until(sink, lambda: sink.stats.records.get("md", 0) >= len(before) and caught_up(sink), what="phase 1")
        assert sink.buffer.available and sink.buffer.stats.written

        server.stop()
        server.processes.clear()
        during, rest = md[len(before) :], with_seq(desk)
        commits, max_rows_in_memory, segments_seen = sink.stats.commits, 0, 0
        outage_end = time.monotonic() + 30.0
        k = 0
        while time.monotonic() < outage_end:  # publish at ~a steady pace over the outage, and keep stepping
            due = int(len(during) * (1 - (outage_end - time.monotonic()) / 30.0)) + 1
            if k < due:
                publish(producer, during[k:due])
                k = due
            if rest and k > len(during) // 2:
                publish(producer, rest)
                rest = []
            sink.step()
            max_rows_in_memory = max(max_rows_in_memory, sink.buffer.rows + sink.pending_rows)
            segments_seen = max(segments_seen, len(list((tmp_path / "spill").glob("seg-*"))))
        publish(producer, during[k:])
        run_until(sink, lambda: sum(sink.stats.records.values()) >= len(md) + len(desk), what="all consumed")
        assert not sink.buffer.available and sink.buffer.stats.outages == 1
        assert segments_seen >= 3 and sink.buffer.stats.spilled_rows > bound  # spilled past the bound, in segments
        assert max_rows_in_memory <= bound + 2 * max_rows  # memory stayed bounded (one checkpoint's rows over)
        assert sink.stats.commits > commits  # it committed past what was on disk while the server was down

        server.start().wait_ready()
        run_until(sink, lambda: caught_up(sink), what="catch-up after the restart")
        assert not list((tmp_path / "spill").glob("seg-*")) and sink.buffer.stats.replayed_rows > 0
        store = reader(server, db)
        assert counts(store, ("trades", "book_diffs")) == market_counts(capture)  # every row exactly once
        assert counts(store, RUNTIME) == want
        lo, hi = int(capture["exchange_ts"].min()), int(capture["exchange_ts"].max()) + 1
        assert replay_events(store, venue, SYMBOL, lo, hi).tobytes() == capture.tobytes()
        store.close()


def test_the_chdb_store_option_writes_the_same_tables(
    kafka_broker: KafkaBroker,
    capture: np.ndarray,
    producer: KafkaBus,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    u = uid()
    events = capture[:2000]
    md = md_batches(events, f"v-{u}")
    desk, want = desk_messages(u)
    publish(producer, md + with_seq(desk))
    settings = sink_settings(kafka_broker, "clickhouse://unused", tmp_path, u, store="chdb",
                             chdb_path=str(tmp_path / "chdb"))  # fmt: skip
    _, sink = sinks(settings)
    run_until(sink, lambda: sum(sink.stats.records.values()) >= len(md) + len(desk) and caught_up(sink))
    store = sink.buffer.store  # chDB allows one open store per process: read through the sink's
    got = {t: int(store.query(f"SELECT count() AS n FROM {t}")["n"][0]) for t in ("trades", "book_diffs", *RUNTIME)}
    assert got == {**market_counts(events), **want}
    lo, hi = int(events["exchange_ts"].min()), int(events["exchange_ts"].max()) + 1
    assert replay_events(store, f"v-{u}", SYMBOL, lo, hi).tobytes() == events.tobytes()


def dead_letters_of(bootstrap: str, dlq: str, source: str, expected: int) -> list[tuple[str, str, bytes]]:
    """(reason, error, value) of the dead letters on ``dlq`` that came from topic ``source`` (the dead-letter
    topics are shared by every test of the session), read from the beginning without a group."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uid()}", "enable.auto.commit": False})
    try:
        parts = c.list_topics(dlq, timeout=10).topics[dlq].partitions
        c.assign([TopicPartition(dlq, p, OFFSET_BEGINNING) for p in parts])
        got: list[tuple[str, str, bytes]] = []
        deadline, settle = time.monotonic() + WAIT, None
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            for m in c.consume(100, 0.1):
                if m.error() is None:
                    info = parse_dead_letter(as_record(m))
                    if info.source_topic == source:
                        got.append((info.reason, info.error, m.value() or b""))
            if len(got) >= expected and settle is None:
                settle = time.monotonic() + 0.5
        return got
    finally:
        c.close()


def test_poison_messages_go_to_the_dead_letter_topic_and_the_stream_continues(
    kafka_broker: KafkaBroker,
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    producer: KafkaBus,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    u, db = uid(), f"sink_{uid()}"
    venue, account = f"v-{u}", f"acct-{u}"
    events = capture[:1000]
    md = md_batches(events, venue)
    topic, seq = md[0][0], md[-1][3]
    truncated = md[2][2][:-10]
    wrong_venue = encode_md_batch(events[:5], venue="elsewhere", symbol=SYMBOL, seq=seq + 10)
    fills = fills_topic(account)
    good = _rows("fills", f"s-{u}")
    bad_type = encode_rows("fill", [{**good[0], "qty": "a lot"}])
    messages = [
        md[0],
        (topic, SYMBOL, b"not a market-data batch at all", seq + 1),
        md[1],
        (topic, SYMBOL, truncated, seq + 2),
        (topic, SYMBOL, wrong_venue, seq + 3),
        md[2],
        md[3],
        (fills, "BTCUSDT", b"{not json", 1),
        (fills, "BTCUSDT", bad_type, 2),
        (fills, "BTCUSDT", encode_rows("fill", good), 3),
    ]
    publish(producer, messages)
    _, sink = sinks(sink_settings(kafka_broker, dsn(clickhouse_server.host, clickhouse_server.port, db), tmp_path, u))
    run_until(sink, lambda: sum(sink.stats.records.values()) >= len(messages) and caught_up(sink), what="records")

    md_letters = dead_letters_of(kafka_broker.bootstrap_servers, "dlq.md", topic, 3)
    assert [(r, v) for r, _, v in md_letters] == [
        ("decode-error", b"not a market-data batch at all"), ("decode-error", truncated), ("topic-mismatch", wrong_venue),
    ]  # fmt: skip
    assert "magic" in md_letters[0][1] and "payload" in md_letters[1][1] and "'elsewhere'" in md_letters[2][1]
    fill_letters = dead_letters_of(kafka_broker.bootstrap_servers, "dlq.fills", fills, 2)
    assert [(r, v) for r, _, v in fill_letters] == [("decode-error", b"{not json"), ("invalid-rows", bad_type)]
    assert "fills.qty (Float64)" in fill_letters[1][1]
    assert sink.stats.dead_letters == {("md", "decode-error"): 2, ("md", "topic-mismatch"): 1,
                                       ("fills", "decode-error"): 1, ("fills", "invalid-rows"): 1}  # fmt: skip

    store = reader(clickhouse_server, db)  # what came after each poison message is stored
    assert counts(store, ("trades", "book_diffs")) == market_counts(events)
    assert count(store, "fills") == 3
    store.close()


def test_a_block_the_store_refuses_for_good_is_kept_on_disk_and_the_next_goes_in(
    clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    db = f"sink_{uid()}"
    store = reader(clickhouse_server, db)
    buffer = OutageBuffer(store, SpillDir(tmp_path), max_buffer_rows=10)
    assert buffer.start() and buffer.available
    cols = {k: np.asarray(v) for k, v in ROWS["fills"].items()}
    bad = {**cols, "qty": np.array(["a", "b", "c"])}
    assert buffer.insert("fills", bad) == 3  # no exception: the block is set aside, not retried forever
    assert buffer.insert("fills", cols) == 3
    assert count(store, "fills") == 3 and buffer.stats.rejected == {"fills": 3} and buffer.available
    (path,) = (tmp_path / "rejected").glob("*.npz")
    table, kept = read_rejected(path)
    assert table == "fills" and kept["qty"].tolist() == ["a", "b", "c"] and kept["ts"].tolist() == cols["ts"].tolist()
    assert "fills.qty (Float64)" in json.loads(path.with_suffix(".json").read_text())["reason"]
    store.close()


def test_segments_of_a_sink_that_died_before_committing_are_replayed_without_duplicates(
    kafka_broker: KafkaBroker,
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    producer: KafkaBus,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    """Sink A has no ClickHouse (nothing listens on its port): it spills, and none of its commits reaches
    the broker (as if it died right after each spill). Sink B — same group, same spill directory, ClickHouse
    up — gets every record again from offset 0, replays A's segments and stores every row exactly once."""
    u, db = uid(), f"sink_{uid()}"
    venue = f"v-{u}"
    md = md_batches(capture, venue, size=100)
    desk, want = desk_messages(u)
    publish(producer, md)
    total = len(md) + len(desk)

    nowhere = sink_settings(kafka_broker, dsn("127.0.0.1", free_port(), db), tmp_path, u,
                            max_buffer_rows=1000, max_rows=500, poll_max=10)  # fmt: skip
    service_a = WorkloadService("sink", port=0, registry=CollectorRegistry())
    a = setup(service_a, nowhere).__self__  # type: ignore[attr-defined]
    lost: list[int] = []

    def commit_lost(**_: Any) -> dict[tuple[str, int], int]:  # the commits never reach the broker
        lost.append(1)
        return {}

    a.consumer.commit = commit_lost
    run_until(a, lambda: a.stats.records.get("md", 0) >= len(md), what="A consumed the market data")
    a.flush()  # spill what is in memory now: every md record is durable on disk
    publish(producer, with_seq(desk))
    # (the new topics rebalance A's group: without commits it gets the md records again, skipped by its marks)
    run_until(a, lambda: sum(n for f, n in a.stats.records.items() if f != "md") >= len(desk), what="desk taken")
    a.checkpoint()
    segments = sorted((tmp_path / "spill").glob("seg-*"))
    assert len(segments) >= 2 and lost and not a.buffer.available
    in_memory = a.buffer.rows + a.pending_rows  # the desk's rows: below the bound, only in memory, not durable
    assert in_memory == sum(want.values())
    a.bus.close(timeout=2)  # A is gone: it leaves the group without committing anything

    _, b = sinks(sink_settings(kafka_broker, dsn(clickhouse_server.host, clickhouse_server.port, db), tmp_path, u))
    assert len(b.buffer.segments) == len(segments)
    run_until(b, lambda: sum(b.stats.records.values()) >= total and caught_up(b), what="B caught up")
    assert b.stats.skipped_durable > 0 and not list((tmp_path / "spill").glob("seg-*"))
    assert b.buffer.stats.replayed_rows == sum(market_counts(capture).values()) + sum(want.values()) - in_memory
    store = reader(clickhouse_server, db)
    assert counts(store, ("trades", "book_diffs")) == market_counts(capture)
    assert counts(store, RUNTIME) == want
    store.close()


def test_volume_buckets_and_ingest_positions_continue_across_a_restart(
    kafka_broker: KafkaBroker,
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    producer: KafkaBus,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    """Sink A stores the first half of the trades and stops; sink B (same group and disk) takes the rest. The
    stored bucket of every trade equals a plain cumulative-quote computation over all trades in one pass, the
    first trade after the restart has its price change against the last one before it, and the ``vbuckets``
    view sums every trade's quote volume exactly once — as if one sink had run throughout."""
    u, db = uid(), f"sink_{uid()}"
    venue = f"v-{u}"
    base = capture["kind"] & KIND_MASK
    is_trade = np.isin(base, [TRADE, AGG_TRADE])
    px, qty = capture["px"][is_trade], capture["qty"][is_trade]
    quote = px * qty
    size = float(quote.sum() / 23.5)  # ~24 buckets, one of them cut by the restart
    md = md_batches(capture, venue, size=200)
    half = len(md) // 2
    settings = sink_settings(kafka_broker, dsn(clickhouse_server.host, clickhouse_server.port, db), tmp_path, u,
                             vbucket_quote=size)  # fmt: skip
    publish(producer, md[:half])
    service_a, a = sinks(settings)
    run_until(a, lambda: a.stats.records.get("md", 0) >= half and caught_up(a), what="A stored the first half")
    assert service_a.shutdown() == 0
    publish(producer, md[half:])
    _, b = sinks(settings)
    run_until(b, lambda: b.stats.records.get("md", 0) >= len(md) - half and caught_up(b), what="B stored the rest")
    assert b.stats.skipped_durable == 0  # A's commits held: B started exactly where A's rows end

    store = reader(clickhouse_server, db)
    got = store.query("SELECT trade_id, price, qty, dpx, vbucket, vbucket_quote, ingest_ts, ingest_pos FROM trades "
                      "ORDER BY ts, ingest_ts, ingest_pos")  # fmt: skip
    order = np.lexsort((np.arange(is_trade.sum()), capture["ingest_ts"][is_trade], capture["exchange_ts"][is_trade]))
    want_bucket = np.floor((np.cumsum(quote) - quote) / size).astype(np.int64)[order]
    np.testing.assert_array_equal(got["trade_id"], capture["seq"][is_trade][order])
    np.testing.assert_array_equal(got["vbucket"], want_bucket)
    assert set(got["vbucket_quote"].tolist()) == {size} and int(got["vbucket"].max()) >= 20
    want_dpx = np.r_[np.nan, np.diff(px)][order]
    np.testing.assert_allclose(got["dpx"], want_dpx, equal_nan=True)
    assert int(np.isnan(got["dpx"]).sum()) == 1  # only the very first trade has no previous price
    # ingest positions: unique per (ingest_ts), as one pass gives them (the ReplacingMergeTree key holds)
    keys = set(zip(got["ingest_ts"].tolist(), got["ingest_pos"].tolist(), strict=True))
    assert len(keys) == len(got["trade_id"])
    buckets = store.query(f"SELECT bucket, quote_volume FROM vbuckets WHERE venue = '{venue}' AND "
                          f"bucket_quote = {size!r} ORDER BY bucket")  # fmt: skip
    assert buckets["bucket"].tolist() == sorted(set(want_bucket.tolist()))
    np.testing.assert_allclose(buckets["quote_volume"].sum(), quote.sum(), rtol=1e-9)
    store.close()


def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing_in_clickhouse(
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    """The broker is restarted mid-stream (its own Tansu: restarting the session's would disturb other tests).
    Tansu keeps its log in memory, so the restarted broker has lost the records, the group's offsets and the
    producer id, and hands out offsets from 0 again — harder than Kafka, which keeps them. The producer queues
    what is published while the broker is down. ClickHouse must end with every event exactly once, by count
    and by key (the events replayed from the store equal the capture byte for byte)."""
    u, db = uid(), f"sink_{uid()}"
    venue = f"v-{u}"
    md = md_batches(capture, venue, size=200)
    half = len(md) // 2
    broker = KafkaBroker(tmp_path / "broker-a")
    broker.stop_grace = 0.5
    broker.start().wait_ready(30)
    port, restarted = broker.port, None
    fast = {"reconnect.backoff.max.ms": 500}
    producer = KafkaBus(broker.bootstrap_servers, client_id=f"pub-{u}", idempotent=False, producer_config=fast)
    try:
        settings = sink_settings(broker, dsn(clickhouse_server.host, clickhouse_server.port, db), tmp_path, u)
        _, sink = sinks(settings)
        publish(producer, md[:half])
        run_until(sink, lambda: sink.stats.records.get("md", 0) >= half and caught_up(sink), what="first half")
        broker.stop()
        for topic, key, value, seq in md[half : half + 10]:  # queued in the producer while the broker is down
            producer.publish(topic, key, value, seq=seq)
        for _ in range(10):  # the sink keeps stepping against a dead broker: it must not fail
            sink.step()
        restarted = KafkaBroker(tmp_path / "broker-b", port=port)
        restarted.stop_grace = 0.5
        restarted.start().wait_ready(30)
        publish(producer, md[half + 10 :])
        store = reader(clickhouse_server, db)
        want = market_counts(capture)
        run_until(sink, lambda: counts(store, ("trades", "book_diffs")) == want and caught_up(sink),
                  timeout=2 * WAIT, what="every event after the restart")  # fmt: skip
        lo, hi = int(capture["exchange_ts"].min()), int(capture["exchange_ts"].max()) + 1
        assert replay_events(store, venue, SYMBOL, lo, hi).tobytes() == capture.tobytes()
        assert sink.stats.reused_offsets > 0  # the restarted broker's offsets started below the durable mark
        store.close()
    finally:
        producer.close(timeout=5)
        (restarted or broker).stop()


# -- as a real OS process ------------------------------------------------------------------------------


def launch(tmp_path: Path, u: str, dsn_: str, bootstrap: str, **options: Any) -> tuple[WorkloadProcess, int]:
    """``tradeplane workload sink --port 0`` configured like the operator does: a config file (JSON is YAML)
    for the options, env variables for the connections (the DSN is a secret: env only)."""
    cfg = tmp_path / "sink.yaml"
    cfg.write_text(
        json.dumps({"workload": {"shutdown_deadline_s": 20, "options": sink_options(u, tmp_path, **options)}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPLANE_")} | {
        "TRADEPLANE_SECRETS_DIR": str(tmp_path / "no-secrets"),
        "TRADEPLANE_HOME": str(tmp_path),
        "TRADEPLANE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPLANE_CLICKHOUSE__DSN": dsn_,
        "TRADEPLANE_LOG_LEVEL": "INFO",
        "OMP_NUM_THREADS": "1",
    }
    proc = WorkloadProcess(["sink", "--port", "0", "--config", str(cfg)], env, tmp_path)
    port = int(proc.wait_log("http endpoints listening")["port"])
    proc.wait_log("workload running")
    return proc, port


def scrape(port: int) -> dict[str, float]:
    """Unlabelled samples, and labelled ones summed per sample name."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http(port, "/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def wait_metrics(port: int, done: Callable[[dict[str, float]], bool], what: str) -> dict[str, float]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = scrape(port)
        if done(got):
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: metrics {got}")


@pytest.fixture
def processes() -> Iterator[list[WorkloadProcess]]:
    procs: list[WorkloadProcess] = []
    yield procs
    for p in procs:
        p.stop()


def test_the_sink_process_is_ready_reports_metrics_and_sigterm_flushes(
    kafka_broker: KafkaBroker,
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    producer: KafkaBus,
    processes: list[WorkloadProcess],
    tmp_path: Path,
) -> None:
    u, db = uid(), f"sink_{uid()}"
    events = capture[:3000]
    md = md_batches(events, f"v-{u}")
    desk, want = desk_messages(u)
    publish(producer, md + with_seq(desk))
    total = len(md) + len(desk)
    # nothing is due before the stop: only the SIGTERM flush can store these rows
    proc, port = launch(tmp_path, u, dsn(clickhouse_server.host, clickhouse_server.port, db),
                        kafka_broker.bootstrap_servers, max_age_ms=600_000, max_rows=10**6)  # fmt: skip
    processes.append(proc)
    got = wait_metrics(port, lambda m: m.get("tradeplane_sink_records_total", 0) >= total, "all records taken")
    assert got["tradeplane_sink_pending_rows"] == sum(market_counts(events).values()) + sum(want.values())
    assert got["tradeplane_sink_store_up"] == 1 and got.get("tradeplane_sink_rows_written_total", 0) == 0
    status, body = http(port, "/readyz")
    tree = json.loads(body)
    assert status == 200, tree
    assert {name: c["status"] for name, c in tree["checks"].items()} == dict.fromkeys(
        ["kafka", "clickhouse", "consumer", "writer"], "ok"
    )
    assert tree["checks"]["writer"]["depends_on"] == ["consumer", "clickhouse"]
    store = reader(clickhouse_server, db)
    assert count(store, "trades") == 0 and count(store, "fills") == 0  # migrated, nothing written yet

    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=30) == 0
    assert counts(store, ("trades", "book_diffs")) == market_counts(events)
    assert counts(store, RUNTIME) == want
    records = proc.records()
    hooks = [r["hook"] for r in records if r["msg"] == "shutdown hook done"]
    assert hooks == ["stop consuming", "flush sink buffers", "commit offsets", "close"]
    assert all(r["workload"] == "sink" for r in records)
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": f"sink-{u}"})
    try:  # the offsets were committed after the rows were stored
        (committed,) = c.committed([TopicPartition(md[0][0], 0)], timeout=10)
        assert committed.offset == len(md)
    finally:
        c.close()
    store.close()


def test_a_sigkilled_sink_process_leaves_spill_segments_that_the_next_start_replays(
    kafka_broker: KafkaBroker,
    clickhouse_server: ClickHouseServer,
    capture: np.ndarray,
    producer: KafkaBus,
    processes: list[WorkloadProcess],
    sinks: Callable[[Settings], tuple[WorkloadService, Sink]],
    tmp_path: Path,
) -> None:
    u, db = uid(), f"sink_{uid()}"
    md = md_batches(capture, f"v-{u}", size=100)
    desk, want = desk_messages(u)
    publish(producer, md + with_seq(desk))
    total = len(md) + len(desk)
    # at most 1000 rows per step (10 records of 100 events): each spill takes 5001-6000 rows, so the 14k rows
    # make exactly two segments and leave the last 2k+ rows (and the desk's) in memory, not committed
    small = {"max_buffer_rows": 5000, "max_rows": 500, "poll_max": 10}
    proc, port = launch(tmp_path, u, dsn("127.0.0.1", free_port(), db), kafka_broker.bootstrap_servers, **small)
    processes.append(proc)
    got = wait_metrics(port, lambda m: m.get("tradeplane_sink_records_total", 0) >= total
                       and m.get("tradeplane_sink_spill_segments", 0) >= 2 and m["tradeplane_sink_pending_rows"] == 0
                       and m["tradeplane_sink_buffered_rows"] > 0, "spilled")  # fmt: skip
    status, body = http(port, "/readyz")
    tree = json.loads(body)
    assert status == 503 and tree["failing"] == ["clickhouse"] and tree["blocked"] == ["writer"]
    assert "unavailable" in tree["checks"]["clickhouse"]["reason"]
    proc.proc.send_signal(signal.SIGKILL)  # no hook runs: whatever was only in memory dies with it
    assert proc.proc.wait(timeout=10) == -signal.SIGKILL
    assert len(list((tmp_path / "spill").glob("seg-*"))) == 2 and got["tradeplane_sink_spilled_rows_total"] > 10_000

    _, sink = sinks(sink_settings(kafka_broker, dsn(clickhouse_server.host, clickhouse_server.port, db), tmp_path, u))
    assert sink.buffer.segments  # found at start
    run_until(sink, lambda: not list((tmp_path / "spill").glob("seg-*")), what="segments replayed")
    # the group hands the partitions over once the killed member's session expires; then what the killed
    # process had only in memory (taken after its last commit) arrives again
    store = reader(clickhouse_server, db)
    want_all = {**market_counts(capture), **want}
    run_until(sink, lambda: caught_up(sink) and counts(store, tuple(want_all)) == want_all, what="all stored")
    for _ in range(20):  # and nothing more comes
        sink.step()
    assert counts(store, tuple(want_all)) == want_all
    assert sink.buffer.stats.replayed_rows > 0
    store.close()
