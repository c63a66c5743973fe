"""``tradeplane workload sink``: the process main of the sink (Kafka → ClickHouse), see :mod:`.sink`.

Wiring only: options → the Kafka bus and its one consumer group, the store (a ClickHouse server from
``clickhouse.dsn``, or embedded chDB), the spill directory and the optional audit JSONL; then the readiness
checks and the shutdown hooks in data-flow order — stop consuming → flush the sink's buffers (spilling what
the store will not take in time) → commit the offsets → close the clients.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from ...settings import Settings, SettingsError
from ..audit import AuditWriter
from ..bus.kafka import KafkaBus, subscription_for
from ..service.main import parse_options
from ..service.service import LoopStep, WorkloadService
from ..store.base import Store
from ..store.chdb_store import ChdbStore
from ..store.clickhouse_server import ClickHouseServerStore, RetryPolicy
from .options import SinkOptions, default_path, store_endpoint
from .sink import Sink
from .spill import SpillDir


def make_store(opts: SinkOptions, settings: Settings, registry: CollectorRegistry | None) -> Store:
    """The store the options ask for; nothing connects yet (a sink starts while ClickHouse is down)."""
    if opts.store == "chdb":
        return ChdbStore(default_path(settings, opts.chdb_path, "store"))
    retry = RetryPolicy(attempts=opts.retry_attempts, initial_s=opts.retry_initial_s, max_s=opts.retry_max_s)
    return ClickHouseServerStore(
        **store_endpoint(settings.clickhouse), retry=retry, connect_timeout=opts.connect_timeout_s, registry=registry
    )


def make_bus(opts: SinkOptions, settings: Settings, registry: CollectorRegistry | None) -> KafkaBus:
    """The sink's Kafka bus: its consumer group, and the producer its dead letters go through."""
    security = settings.kafka.client_security()
    return KafkaBus(
        settings.kafka.bootstrap_servers,
        client_id="tradeplane-sink",
        fetch_wait_max_ms=opts.fetch_wait_max_ms,
        metadata_refresh_ms=opts.metadata_refresh_ms,
        consumer_config={
            "session.timeout.ms": opts.session_timeout_ms,
            "heartbeat.interval.ms": opts.heartbeat_interval_ms,
            **security,
        },
        producer_config=security,
        registry=registry,
    )


def setup(service: WorkloadService, settings: Settings) -> LoopStep:
    opts = parse_options(settings, SinkOptions)
    # every failed connect would log a traceback (each retry, each probe of a down server); the sink logs the
    # outage once and /readyz carries the last error
    logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)
    try:
        subscription_for(opts.topics)
    except ValueError as exc:
        raise SettingsError(f"workload.options.topics (TRADEPLANE_WORKLOAD__OPTIONS__TOPICS): {exc}") from None
    store = make_store(opts, settings, service.registry)  # a missing or bad DSN stops here (exit code 3)
    spill = SpillDir(default_path(settings, opts.spill_dir, "sink"))
    bus = make_bus(opts, settings, service.registry)
    consumer = bus.consumer(opts.topics, max_queue=opts.max_queue, name=opts.group)
    audit = AuditWriter(opts.audit_path) if opts.audit_path is not None else None
    sink = Sink(consumer, bus, store, opts, spill, audit=audit)
    sink.register_metrics(service.registry)

    service.on_shutdown(sink.stop_consuming, "stop consuming")
    service.on_shutdown(lambda: sink.flush(service.shutdown_remaining_s), "flush sink buffers")
    service.on_shutdown(lambda: sink.commit(service.shutdown_remaining_s()), "commit offsets")
    service.on_shutdown(lambda: sink.close(service.shutdown_remaining_s()), "close")
    service.add_check("kafka", sink.kafka_check)
    service.add_check("clickhouse", sink.store_check)
    service.add_check("consumer", sink.consumer_check, depends_on=["kafka"])
    service.add_check("writer", sink.writer_check, depends_on=["consumer", "clickhouse"])
    sink.start()
    return sink.step
