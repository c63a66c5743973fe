"""Smoke test of the Kafka-protocol broker with both client libraries the platform uses.

Proves the features our adapters rely on actually work against the broker: topic creation, the idempotent
producer, consumer groups with committed offsets (confluent-kafka), and an aiokafka round trip. Offsets are
tracked from the messages themselves: Tansu's high watermarks are wrong for multi-record batches.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.services import KafkaBroker

PARTITIONS = 3
MESSAGES = 100
KEYS = [f"key-{i}" for i in range(7)]


def _create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"smoke-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=10
    ).values():
        future.result(timeout=15)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == partitions
    return topic


def test_idempotent_produce_and_group_consume(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = _create_topic(bootstrap, PARTITIONS)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors: list[str] = []
    sent: dict[str, list[int]] = defaultdict(list)
    for seq in range(MESSAGES):
        key = KEYS[seq % len(KEYS)]
        sent[key].append(seq)
        producer.produce(
            topic,
            key=key,
            value=f"{key}:{seq}".encode(),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
    assert producer.flush(15) == 0, "messages still queued after flush"
    assert errors == []

    group = f"smoke-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    received: dict[str, list[int]] = defaultdict(list)
    next_offset: dict[int, int] = {}
    deadline = time.monotonic() + 60
    try:
        while sum(map(len, received.values())) < MESSAGES and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            value, msg_key, partition, offset = msg.value(), msg.key(), msg.partition(), msg.offset()
            assert value is not None and msg_key is not None and partition is not None and offset is not None
            key, seq_text = value.decode().split(":")
            assert msg_key.decode() == key
            received[key].append(int(seq_text))
            next_offset[partition] = offset + 1
        assert sum(map(len, received.values())) == MESSAGES, f"got {dict(received)}"
        assert received == sent, "per-key order (or content) differs from what was produced"

        positions = [TopicPartition(topic, p, o) for p, o in sorted(next_offset.items())]
        consumer.commit(offsets=positions, asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        got = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        assert got == next_offset
        # Keys hash to partitions, so 7 keys spread over 3 partitions must use more than one.
        assert len(next_offset) > 1
    finally:
        consumer.close()


async def _aiokafka_round_trip(bootstrap: str, topic: str, payloads: list[bytes]) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # not idempotent: Tansu rejects aiokafka's
    await producer.start()
    try:
        for payload in payloads:
            await producer.send_and_wait(topic, payload, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < len(payloads):
                batch = await consumer.getmany(timeout_ms=500)
                got += [rec.value for records in batch.values() for rec in records if rec.value is not None]
        return got
    finally:
        await consumer.stop()


def test_aiokafka_round_trip(kafka_broker: KafkaBroker) -> None:
    topic = _create_topic(kafka_broker.bootstrap_servers, 1)
    payloads = [f"m{i}".encode() for i in range(20)]
    assert asyncio.run(_aiokafka_round_trip(kafka_broker.bootstrap_servers, topic, payloads)) == payloads
