"""The Kafka bus against a real Kafka-protocol broker (Tansu): md batches of real events come back per symbol in
order through a consumer group; committed offsets survive a restart and uncommitted records are redelivered
(at-least-once) and dropped by the sequence filter; patterns select families; push subscriptions deliver from
``pump`` and retry a failing record; a full producer queue raises instead of dropping; poison messages go to
the dead-letter topic with their reason and the stream continues.

Every test uses its own topics and consumer groups (the broker is shared by the session). What arrived is read
back with a plain confluent-kafka consumer on assigned partitions where an independent reference is needed.
Offsets come from the records themselves: Tansu's high watermarks are wrong for multi-record batches.
"""

from __future__ import annotations

import fnmatch
import re
import struct
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry

from tests.services import KafkaBroker
from tradeplane.engine.events import EVENT_DTYPE, SymbolTable
from tradeplane.engine.replay import iter_capture
from tradeplane.workloads.bus import BackpressureError, Bus, Record
from tradeplane.workloads.bus.dedup import SequenceFilter
from tradeplane.workloads.bus.kafka import (
    DLQ_REASON_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    HANDLER_ERROR,
    SEQ_HEADER,
    DeadLetters,
    KafkaBus,
    KafkaBusError,
    KafkaConsumer,
    KafkaDeliveryError,
    KafkaRecord,
    ProducerBackpressureError,
    parse_dead_letter,
    subscription_for,
)
from tradeplane.workloads.bus.mdbatch import MdBatchError, decode_md_batch, encode_md_batch
from tradeplane.workloads.bus.topics import dlq_topic, fills_topic, md_topic

#: Tansu answers the first group join after session.timeout.ms / 2 (../shared/ENVIRONMENT.md)
CONSUMER_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
WAIT = 30.0


def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_bus(kafka_broker: KafkaBroker) -> Iterator[Callable[..., KafkaBus]]:
    """Buses on the session broker with test-friendly group timings; closed after the test."""
    made: list[KafkaBus] = []

    def make(**kwargs: Any) -> KafkaBus:
        kwargs.setdefault("client_id", f"t-{uid()}")
        kwargs.setdefault("consumer_config", CONSUMER_CONFIG)
        kwargs.setdefault("metadata_refresh_ms", 1000)
        kwargs.setdefault("fetch_wait_max_ms", 10)  # Tansu holds empty fetches this long (see KafkaBus)
        bus = KafkaBus(kafka_broker.bootstrap_servers, **kwargs)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close(timeout=5)


@pytest.fixture(scope="module")
def real_events(shared_dir: Path) -> np.ndarray[Any, Any]:
    first = next(
        iter_capture(shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz", SymbolTable(), batch_lines=300)
    )
    return first.events[:1000]


def read_topic(bootstrap: str, topic: str, expected: int, *, settle: float = 0.5) -> list[Message]:
    """Every record of ``topic`` from the beginning, with a plain consumer on assigned partitions (no group):
    waits for ``expected`` records, then ``settle`` s more to catch extras."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uid()}", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        got: list[Message] = []
        deadline = time.monotonic() + WAIT
        extra_until = None
        while time.monotonic() < deadline and (extra_until is None or time.monotonic() < extra_until):
            got += [m for m in c.consume(100, 0.1) if m.error() is None]
            if len(got) >= expected and extra_until is None:
                extra_until = time.monotonic() + settle
        return got
    finally:
        c.close()


def as_record(msg: Message) -> KafkaRecord:
    """A plain confluent-kafka message as the bus's record type (to read it with the bus's helpers)."""
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)
    return KafkaRecord(
        msg.topic() or "", None, msg.value(), msg.offset() or 0, partition=msg.partition() or 0, headers=headers
    )


def poll_until(consumer: KafkaConsumer, n: int, *, max_n: int = 100) -> list[KafkaRecord]:
    got: list[KafkaRecord] = []
    deadline = time.monotonic() + WAIT
    while len(got) < n and time.monotonic() < deadline:
        got += consumer.fetch(min(max_n, n - len(got)), timeout=0.2)
    assert len(got) == n, f"{consumer!r}: got {len(got)} of {n} records"
    return got


# -- pattern translation (no broker) -----------------------------------------------------------------

TOPICS = ["md.binance-usdm.BTCUSDT", "md.binance-spot.ETHUSDT", "fills.paper", "fills.paper2", "signals.a-b",
          "dlq.md", "mdx.a", "audit.usdm_btc", "intents.x"]  # fmt: skip


@pytest.mark.parametrize(
    "pattern",
    ["md.*", "fills.*", "*", "md.*.BTCUSDT", "fills.paper", "fills.paper?", "md.binance-[su]*.*", "*.[!p]*",
     "signals.a-b", "dlq.*", "*paper*"],
)  # fmt: skip
def test_subscription_regex_selects_what_fnmatch_selects(pattern: str) -> None:
    sub = subscription_for(pattern)
    if not any(c in pattern for c in "*?["):
        assert sub == pattern  # a plain name: subscribed as a topic, not a regex
        return
    assert sub.startswith("^") and sub.endswith("$")  # librdkafka's regex marker
    assert [t for t in TOPICS if re.fullmatch(sub[1:-1], t)] == [t for t in TOPICS if fnmatch.fnmatchcase(t, pattern)]


def test_subscription_regex_examples_and_refusals() -> None:
    assert subscription_for("fills.*") == r"^fills\..*$"
    assert subscription_for("md.*.BTC?") == r"^md\..*\.BTC.$"
    with pytest.raises(ValueError, match="non-empty"):
        subscription_for("")
    with pytest.raises(ValueError, match="cannot occur in a topic name"):
        subscription_for("md.a b*")


@pytest.mark.parametrize(
    "patterns", [["signals.a-b", "fills.paper"], ["md.*.BTCUSDT", "dlq.*", "audit.usdm_btc"], ["*paper*", "mdx.a"]]
)
def test_a_pattern_list_selects_the_union_of_its_patterns(patterns: list[str]) -> None:
    sub = subscription_for(",".join(patterns))
    assert sub.startswith("^") and sub.endswith("$")
    union = [t for t in TOPICS if any(fnmatch.fnmatchcase(t, p) for p in patterns)]
    assert union and [t for t in TOPICS if re.fullmatch(sub[1:-1], t)] == union
    with pytest.raises(ValueError, match="empty entry"):
        subscription_for("fills.a,,md.*")


def test_a_consumer_on_a_pattern_list_gets_exactly_those_topics(make_bus: Callable[..., KafkaBus]) -> None:
    bus = make_bus()
    s = uid()
    mine, also, other = f"signals.{s}", f"fills.{s}", f"signals.{s}x"
    bus.ensure_topics([mine, also, other])
    for topic in (mine, also, other):
        bus.publish(topic, "k", topic.encode())
    bus.flush()
    cons = bus.consumer(f"{mine},fills.{s}*", max_queue=100, name=f"g-{uid()}")
    got = poll_until(cons, 2)
    assert sorted(r.value for r in got) == sorted([mine.encode(), also.encode()])
    assert cons.fetch(10, timeout=1.0) == []  # signals.<s>x is not in the list


# -- publish / consume -------------------------------------------------------------------------------


def test_a_consumer_may_poll_its_topic_more_lazily_than_the_bus_default(make_bus: Callable[..., KafkaBus]) -> None:
    """``consumer(fetch_wait_max_ms=)``: a quiet topic's consumer holds its fetches longer (fewer empty
    requests on the broker) and still gets every record; the others keep the bus's wait."""
    bus = make_bus()
    topic = f"fills.lazy-{uid()}"
    bus.ensure_topics([topic])
    lazy = bus.consumer(topic, max_queue=100, name=f"lazy-{uid()}", fetch_wait_max_ms=200)
    eager = bus.consumer(topic, max_queue=100, name=f"eager-{uid()}")
    assert (lazy.fetch_wait_max_ms, eager.fetch_wait_max_ms) == (200, 10)
    for c in (lazy, eager):
        assert c.wait_assigned(timeout=60)
    for i in range(3):
        bus.publish(topic, "K", b"x%d" % i, seq=i + 1)
    bus.flush(10)
    for c in (lazy, eager):
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            got += [bytes(r.value) for r in c.fetch(10, timeout=0.2)]
        assert got == [b"x0", b"x1", b"x2"], c.name


def test_md_batches_of_two_symbols_come_back_in_per_key_order(
    make_bus: Callable[..., KafkaBus], real_events: np.ndarray[Any, Any], kafka_broker: KafkaBroker
) -> None:
    venue = f"v{uid()}"
    registry = CollectorRegistry()
    reports: list[Any] = []
    bus = make_bus(partitions=2, registry=registry, on_delivery=reports.append)
    as_protocol: Bus = bus  # mypy checks the structural match with the Protocol
    symbols = ["BTCUSDT", "ETHUSDT"]
    sent: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for i in range(0, len(real_events), 50):
        for j, sym in enumerate(symbols):
            chunk = real_events[i + 25 * j : i + 25 * j + 25]
            seq = 1_000_000 + i
            topic = md_topic(venue, sym)
            n = as_protocol.publish(topic, sym, encode_md_batch(chunk, venue=venue, symbol=sym, seq=seq))
            assert n == len(sent[sym])  # per-topic count of this bus's records
            sent[sym].append((seq, chunk.tobytes()))
    bus.flush()
    assert bus.end_offset(md_topic(venue, "BTCUSDT")) == 20
    assert len(reports) == 40 and all(r.error is None for r in reports)

    cons = bus.consumer(f"md.{venue}.*", max_queue=100, name=f"g-{uid()}")
    got = poll_until(cons, 40, max_n=7)
    by_symbol: dict[str, list[KafkaRecord]] = defaultdict(list)
    for rec in got:
        assert isinstance(rec, Record) and isinstance(rec.key, str) and rec.key in symbols
        assert rec.topic == md_topic(venue, rec.key)
        by_symbol[rec.key].append(rec)
    for sym in symbols:
        recs = by_symbol[sym]
        batches = [decode_md_batch(r.value) for r in recs]
        assert [(b.seq, b.events.tobytes()) for b in batches] == sent[sym]  # order and content per key
        assert {b.symbol for b in batches} == {sym} and {b.venue for b in batches} == {venue}
        assert len({r.partition for r in recs}) == 1  # one key, one partition
        assert [r.offset for r in recs] == list(range(20))  # the real offsets, consecutive from 0
        topic = md_topic(venue, sym)
        assert bus.last_delivered(topic) == {recs[0].partition: 19}
    sample = registry.get_sample_value("tradeplane_bus_published_total", {"client": bus.client_id, "family": "md"})
    assert sample == 40
    assert cons.commit() == {(md_topic(venue, s), by_symbol[s][0].partition): 20 for s in symbols}


def test_the_seq_header_travels_as_8_big_endian_bytes(
    make_bus: Callable[..., KafkaBus], kafka_broker: KafkaBroker
) -> None:
    bus = make_bus()
    topic = fills_topic(f"a{uid()}")
    seqs = [1, 2**40 + 3, 2**63 - 1]
    for s in seqs:
        bus.publish(topic, "BTCUSDT", b"fill", seq=s)
    bus.publish(topic, "BTCUSDT", b"no-seq")
    bus.flush()
    msgs = read_topic(kafka_broker.bootstrap_servers, topic, 4)
    headers = [dict(m.headers() or []) for m in msgs]
    assert [h.get(SEQ_HEADER) for h in headers] == [struct.pack(">q", s) for s in seqs] + [None]
    with pytest.raises(ValueError, match="does not fit a signed 64-bit"):
        bus.publish(topic, "BTCUSDT", b"x", seq=2**63)


def test_commit_after_processing_resumes_and_redelivers_the_uncommitted_tail(
    make_bus: Callable[..., KafkaBus],
) -> None:
    bus = make_bus(partitions=2)
    topic = fills_topic(f"a{uid()}")
    keys = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "ADAUSDT"]
    for i in range(30):
        bus.publish(topic, keys[i % 6], f"{keys[i % 6]}:{i}".encode(), seq=100 + i)
    bus.flush()
    assert len(bus.last_delivered(topic)) == 2  # murmur2 spreads these keys over both partitions
    group = f"g-{uid()}"
    seen = SequenceFilter()
    processed: list[int] = []

    def process(records: list[KafkaRecord]) -> None:
        for r in records:
            assert r.seq is not None
            if seen.accept(r.topic, r.key, r.seq):
                processed.append(r.seq)

    first = bus.consumer(topic, max_queue=50, name=group)
    done = poll_until(first, 12, max_n=4)
    process(done)
    committed = first.commit()
    tail = poll_until(first, 6, max_n=6)  # fetched and processed, never committed: a crash here
    process(tail)
    assert first.committed() == committed
    first.close()

    again = bus.consumer(topic, max_queue=50, name=group)  # same group: resumes at the commit
    rest = poll_until(again, 30 - 12)
    first_offsets: dict[int, int] = {}
    for r in rest:
        first_offsets.setdefault(r.partition, r.offset)
    # each partition restarts exactly at its commit (or at 0 without one): no gap, nothing before the commit
    assert first_offsets == {p: committed.get((topic, p), 0) for p in (0, 1)}
    redelivered = {(r.partition, r.offset) for r in rest} & {(r.partition, r.offset) for r in tail}
    assert redelivered == {(r.partition, r.offset) for r in tail}  # at-least-once: the tail comes again
    process(rest)
    assert seen.dropped == len(tail)  # ... and the sequence filter drops exactly those
    assert sorted(processed) == list(range(100, 130)) and len(processed) == 30  # everything once
    for key in keys:  # per-key order held across the restart
        mine = [s for s in processed if keys[(s - 100) % 6] == key]
        assert mine == sorted(mine)
    assert again.commit() and again.uncommitted == {}
    again.close()


def test_patterns_select_families_and_push_subscriptions_deliver_from_pump(
    make_bus: Callable[..., KafkaBus],
) -> None:
    bus = make_bus()
    md = md_topic(f"v{uid()}", "BTCUSDT")
    fills = fills_topic(f"a{uid()}")
    bus.ensure_topics([md, fills])
    for i in range(3):
        bus.publish(md, "BTCUSDT", b"md%d" % i)
        bus.publish(fills, "BTCUSDT", b"fill%d" % i)
    bus.flush()

    pulled = bus.consumer("md.*", max_queue=500, name=f"g-{uid()}")
    pushed: list[Record] = []
    failed_once: set[int] = set()

    def handler(rec: Record) -> None:
        if rec.topic == fills and rec.offset == 1 and 1 not in failed_once:
            failed_once.add(1)
            raise RuntimeError("transient")
        pushed.append(rec)

    sub = bus.subscribe("fills.*", handler, group=f"s-{uid()}")
    ours: list[Record] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + WAIT
    while len(ours) < 3 and time.monotonic() < deadline:
        try:
            bus.pump(timeout=0.2)
        except RuntimeError as exc:
            errors.append(exc)
        ours = [r for r in pushed if r.topic == fills]
    assert [r.value for r in ours] == [b"fill0", b"fill1", b"fill2"]  # the failed record was retried, in order
    assert len(errors) == 1 and any(f"topic {fills!r} partition 0 offset 1" in n for n in errors[0].__notes__)
    assert all(r.topic.startswith("fills.") for r in pushed)  # fills.* never sees md
    assert sub.consumer.committed().get((fills, 0)) == 3  # committed after the pumps: past what was handled

    everything: list[KafkaRecord] = []  # md.* also gets other tests' md topics: the broker is shared
    deadline = time.monotonic() + WAIT
    while len([r for r in everything if r.topic == md]) < 3 and time.monotonic() < deadline:
        everything += pulled.fetch(500, timeout=0.2)
    everything += pulled.fetch(500, timeout=0.5)
    assert all(r.topic.startswith("md.") for r in everything)  # md.* never sees fills
    assert [r.value for r in everything if r.topic == md] == [b"md0", b"md1", b"md2"]
    sub.cancel()
    sub.cancel()
    assert not sub.active


def test_a_full_producer_queue_raises_instead_of_dropping(
    make_bus: Callable[..., KafkaBus], kafka_broker: KafkaBroker
) -> None:
    bus = make_bus(max_buffered_messages=5, backpressure_timeout=0.2, linger_ms=2000)
    topic = fills_topic(f"a{uid()}")
    bus.ensure_topics([topic])
    accepted = []
    with pytest.raises(ProducerBackpressureError, match=f"backpressure on topic {topic!r}") as info:
        for i in range(20):
            bus.publish(topic, "BTCUSDT", b"r%d" % i)
            accepted.append(i)
    assert isinstance(info.value, BackpressureError) and info.value.topic == topic
    assert accepted == [0, 1, 2, 3, 4] and bus.end_offset(topic) == 5  # the refused record took no slot
    assert bus.health()["backpressure"] == 1
    bus.flush()
    assert bus.publish(topic, "BTCUSDT", b"r5") == 5  # the retry after the queue drained
    bus.flush()
    got = read_topic(kafka_broker.bootstrap_servers, topic, 6)
    assert [m.value() for m in got] == [b"r%d" % i for i in range(6)]  # everything accepted arrived, once


def test_poison_messages_go_to_the_dead_letter_topic_and_the_stream_continues(
    make_bus: Callable[..., KafkaBus], kafka_broker: KafkaBroker
) -> None:
    venue = f"v{uid()}"
    topic = md_topic(venue, "BTCUSDT")
    bus = make_bus()
    rows = np.zeros(4, EVENT_DTYPE)
    good1 = encode_md_batch(rows, venue=venue, symbol="BTCUSDT", seq=1)
    future = bytearray(encode_md_batch(rows, venue=venue, symbol="BTCUSDT", seq=2))
    struct.pack_into("<H", future, 4, 99)  # written by a newer producer
    good2 = encode_md_batch(rows[:2], venue=venue, symbol="BTCUSDT", seq=3)
    for value in (good1, b"not a market-data batch at all: some bytes", bytes(future), good2):
        bus.publish(topic, "BTCUSDT", value)
    bus.flush()

    cons = bus.consumer(topic, max_queue=100, name=f"g-{uid()}")
    processed = []
    for rec in poll_until(cons, 4):
        try:
            processed.append(decode_md_batch(rec.value).seq)
        except MdBatchError as exc:
            reason = "schema-version" if exc.field == "schema_version" else "decode-error"
            assert bus.send_to_dlq(rec, reason, str(exc)) == "dlq.md"
    cons.commit()  # flushes the dead letters first, then commits past the poison records
    assert processed == [1, 3]  # the stream continued after the poison
    assert cons.committed() == {(topic, 0): 4}

    letters = [m for m in read_topic(kafka_broker.bootstrap_servers, dlq_topic("md"), 2)
               if dict(m.headers() or [])[DLQ_SOURCE_TOPIC_HEADER] == topic.encode()]  # fmt: skip
    assert [m.value() for m in letters] == [
        b"not a market-data batch at all: some bytes",
        bytes(future),
    ]  # the original bytes
    assert all(m.key() == b"BTCUSDT" for m in letters)
    infos = [parse_dead_letter(as_record(m)) for m in letters]
    assert [(i.reason, i.source_topic, i.source_partition, i.source_offset) for i in infos] == [
        ("decode-error", topic, 0, 1),
        ("schema-version", topic, 0, 2),
    ]
    assert "magic" in infos[0].error and "newer than this reader" in infos[1].error
    assert bus.health()["dead_letters"] == 2
    with pytest.raises(ValueError, match="already a dead letter"):
        bus.send_to_dlq(KafkaRecord("dlq.md", None, b"x", 0), "again", "no")


def test_a_push_handler_that_raises_sends_the_record_to_the_dead_letter_topic(
    make_bus: Callable[..., KafkaBus], kafka_broker: KafkaBroker
) -> None:
    bus = make_bus()
    topic = fills_topic(f"a{uid()}")
    for v in (b"ok1", b"poison", b"ok2"):
        bus.publish(topic, "ETHUSDT", v, seq=len(v))
    bus.flush()
    handled: list[bytes] = []

    def handler(rec: Record) -> None:
        if rec.value == b"poison":
            raise ValueError("cannot parse fill")
        handled.append(rec.value)

    sub = bus.subscribe(topic, handler, group=f"s-{uid()}", dead_letters=DeadLetters(bus))
    deadline = time.monotonic() + WAIT
    while len(handled) < 2 and time.monotonic() < deadline:
        bus.pump(timeout=0.2)
    assert handled == [b"ok1", b"ok2"]
    assert sub.consumer.committed() == {(topic, 0): 3}
    letters = [m for m in read_topic(kafka_broker.bootstrap_servers, dlq_topic("fills"), 1)
               if dict(m.headers() or [])[DLQ_SOURCE_TOPIC_HEADER] == topic.encode()]  # fmt: skip
    assert len(letters) == 1 and letters[0].value() == b"poison"
    hdrs = dict(letters[0].headers() or [])
    assert hdrs[DLQ_REASON_HEADER] == HANDLER_ERROR.encode()
    assert hdrs["tp-dlq-error"] == b"ValueError: cannot parse fill"
    assert hdrs["tp-dlq-source-offset"] == b"1" and hdrs[SEQ_HEADER] == struct.pack(">q", 6)


# -- refusals ----------------------------------------------------------------------------------------


def test_invalid_topics_and_values_are_refused_naming_the_topic(make_bus: Callable[..., KafkaBus]) -> None:
    bus = make_bus()
    with pytest.raises(ValueError, match="unknown family 'trades'"):
        bus.publish("trades.BTCUSDT", "BTCUSDT", b"x")
    with pytest.raises(ValueError, match=r"does not have the shape md\.<venue>\.<symbol>"):
        bus.publish("md.binance", "BTCUSDT", b"x")
    with pytest.raises(ValueError, match="not a family that can have dead letters"):
        bus.publish("dlq.trades", None, b"x")
    topic = fills_topic(f"a{uid()}")
    with pytest.raises(TypeError, match=f"topic {topic!r}: Kafka values must be bytes, got str"):
        bus.publish(topic, "BTCUSDT", "a string")
    with pytest.raises(TypeError, match=f"topic {topic!r}: Kafka values must be bytes, got ndarray"):
        bus.publish(topic, "BTCUSDT", np.zeros(2, EVENT_DTYPE))
    with pytest.raises(TypeError, match="key must be str, bytes or None, got int"):
        bus.publish(topic, 7, b"x")  # type: ignore[arg-type]
    assert bus.offsets() == {}  # nothing was published
    with pytest.raises(ValueError, match="max_queue"):
        bus.consumer("fills.*", 0)


def test_delivery_failures_are_raised_naming_the_topic_and_close_is_bounded() -> None:
    # nothing listens on port 1: records time out after librdkafka's retries
    bus = KafkaBus("127.0.0.1:1", auto_create_topics=False, producer_config={"message.timeout.ms": 300})
    topic = fills_topic("unreachable")
    bus.publish(topic, "BTCUSDT", b"lost?")
    with pytest.raises(KafkaDeliveryError, match=f"1 record.s. failed delivery to topic.s. {topic!r}") as info:
        bus.flush(timeout=5)
    assert info.value.failures[0].code == "_MSG_TIMED_OUT"
    assert bus.health()["delivery_errors"] == 1
    bus.publish(topic, "BTCUSDT", b"again")  # raised once, then the bus goes on
    t0 = time.monotonic()
    with pytest.raises(KafkaDeliveryError):
        bus.close(timeout=5)
    assert time.monotonic() - t0 < 5
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish(topic, "BTCUSDT", b"after close")
    bus.close()  # idempotent


def test_close_gives_up_after_its_timeout_and_says_how_many_were_not_delivered() -> None:
    bus = KafkaBus("127.0.0.1:1", auto_create_topics=False)  # default message timeout: 5 minutes
    bus.publish(fills_topic("unreachable"), None, b"x")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"1 record\(s\) .* still queued after 0\.5s"):
        bus.close(timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert bus.health()["status"] == "failed"


def test_a_failing_delivery_callback_is_reported_not_swallowed() -> None:
    def explode(report: Any) -> None:
        raise ZeroDivisionError("callback bug")

    bus = KafkaBus(
        "127.0.0.1:1", auto_create_topics=False, on_delivery=explode, producer_config={"message.timeout.ms": 200}
    )
    bus.publish(fills_topic("unreachable"), None, b"x")
    with pytest.raises(KafkaBusError, match=r"on_delivery callback of .* raised: ZeroDivisionError") as info:
        bus.flush(timeout=5)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(KafkaDeliveryError):  # the delivery failure itself is still reported, next
        bus.flush(timeout=5)
    bus.close()


def test_a_non_idempotent_bus_loses_nothing_across_a_broker_restart(tmp_path: Path) -> None:
    # Its own broker: restarting the session's would break the other tests. Tansu keeps everything in memory,
    # so the restarted broker has neither the old records nor the group's offsets nor the producer id; records
    # queued while it was down must still arrive, once each after the sequence filter, in order.
    broker = KafkaBroker(tmp_path / "a")
    broker.stop_grace = 0.5  # in memory: nothing to flush, and a hard stop is the harder case
    broker.start().wait_ready(30)
    port, restarted = broker.port, None
    topic = fills_topic(f"a{uid()}")
    fast = {"reconnect.backoff.max.ms": 500}  # librdkafka backs off up to 10 s between reconnects by default
    producer = KafkaBus(broker.bootstrap_servers, client_id="restart-p", idempotent=False, producer_config=fast)
    consumer_bus = KafkaBus(
        broker.bootstrap_servers,
        client_id="restart-c",
        consumer_config={**CONSUMER_CONFIG, **fast},
        fetch_wait_max_ms=10,
    )
    try:
        for i in range(10):
            producer.publish(topic, "BTCUSDT", b"%d" % i, seq=i)
        producer.flush()
        cons = consumer_bus.consumer(topic, max_queue=100, name=f"g-{uid()}")
        seen = SequenceFilter()
        accepted = [
            int(r.value) for r in poll_until(cons, 10) if r.seq is not None and seen.accept(r.topic, r.key, r.seq)
        ]
        cons.commit()
        broker.stop()
        for i in range(10, 20):  # queued in the producer while the broker is down
            producer.publish(topic, "BTCUSDT", b"%d" % i, seq=i)
        restarted = KafkaBroker(tmp_path / "b", port=port)
        restarted.stop_grace = 0.5
        restarted.start().wait_ready(30)
        producer.flush(timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while len(accepted) < 20 and time.monotonic() < deadline:
            accepted += [
                int(r.value)
                for r in cons.fetch(100, timeout=0.2)
                if r.seq is not None and seen.accept(r.topic, r.key, r.seq)
            ]
        assert accepted == list(range(20))
        cons.commit()
    finally:
        producer.close(timeout=5)
        consumer_bus.close(timeout=5)
        (restarted or broker).stop()
