"""The sink's loop: every stored topic family from one Kafka consumer group into the store's tables.

One loop step takes up to ``poll_max`` records and turns them into rows:

* ``md.<venue>.<symbol>``: market-data micro-batches (:mod:`..bus.mdbatch`) → the market event tables
  through one :class:`~..store.market.MarketRows` (the step's batches are joined into one array first, so the
  row conversion is a few numpy operations per step, not per batch);
* ``signals.*``, ``intents.*``, ``audit.*``, ``fills.*``, ``desk.*`` → table rows
  (:func:`~..bus.outbox.table_rows`), checked against the table (:mod:`.validate`); audit records also go to
  the JSONL file when one is configured.

Redelivered records are dropped by their per-key sequence (``tp-seq``, or the md batch's own; records without
one pass) and, after a restart, by the durable marks (:mod:`.spill`). A record that does not decode, names
the wrong venue or symbol, or carries rows that do not fit the table goes to ``dlq.<family>`` with the reason
and the stream continues.

Rows go through :class:`~..store.writer.TableWriter` s into the :class:`~.buffer.OutageBuffer`. A
**checkpoint** runs when ``max_rows`` rows wait or ``max_age_ms`` passed: flush every writer; if the memory
buffer is past ``max_buffer_rows``, spill it; then, when no row of any record taken so far is only in memory,
those records are durable — flush the dead letters, fsync the audit file, save the marks, and commit the
Kafka offsets. So a commit never runs ahead of the rows, and a crash at any point loses nothing (what was not
committed is consumed again and skipped where it was already durable).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...engine.events import EVENT_DTYPE
from ..audit import AuditWriter
from ..bus.dedup import SequenceFilter
from ..bus.kafka import CommitError, KafkaBus, KafkaConsumer, KafkaRecord
from ..bus.mdbatch import MdBatchError, decode_md_batch
from ..bus.outbox import STORED_FAMILIES, table_rows
from ..bus.rows import KINDS
from ..bus.topics import MD
from ..service.health import CheckResult
from ..store.base import Store, StoreError
from ..store.market import MarketRows
from ..store.writer import TableWriter
from .buffer import OutageBuffer
from .options import SinkOptions
from .spill import Marks, SpillDir
from .validate import Schema, rows_problem, store_schema

log = logging.getLogger(__name__)

RUNTIME_TABLES: Final = frozenset({"signals", "intents", "audit", *KINDS.values()})
"""Tables of the desk's records: they get the constant ``run_id`` column."""
NEVER: Final = 2**62
"""A TableWriter age that never comes due: the sink flushes all writers together at a checkpoint."""
INSERT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class SinkStats:
    """Counters of the loop (plain ints; exported at scrape time)."""

    records: dict[str, int] = field(default_factory=dict)  #: family → records taken
    events: int = 0  #: md events turned into rows
    duplicates: int = 0  #: dropped by sequence
    reused_offsets: int = 0  #: below the durable offset but newer by sequence: the broker lost its log
    skipped_durable: int = 0  #: below the durable marks after a restart
    ignored: int = 0  #: families the sink does not store
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)  #: (family, reason) → records
    commits: int = 0
    commit_errors: int = 0
    checkpoints: int = 0


class Sink:
    """The sink's state and loop step; see the module docstring. ``store`` is the real store (the sink wraps
    it in its :class:`OutageBuffer`); ``spill`` its disk. Single-threaded apart from the checks and the
    metrics, which read counters."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        bus: KafkaBus,
        store: Store,
        options: SinkOptions,
        spill: SpillDir,
        *,
        audit: AuditWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.consumer = consumer
        self.bus = bus
        self.spill = spill
        self.audit = audit
        self._clock = clock
        self.marks = spill.load_marks()
        self.seen = SequenceFilter(self.marks.seq)
        self._reused_warned: set[tuple[str, int]] = set()
        self._insert_seconds: Histogram | None = None
        self.buffer = OutageBuffer(
            store,
            spill,
            max_buffer_rows=options.max_buffer_rows,
            probe_interval_s=options.probe_interval_s,
            on_insert=self._observe_insert,
            clock=clock,
        )
        self.writers: dict[str, TableWriter] = {}
        self._names: list[str] = []  # "venue:SYMBOL" by the sink's own symbol id
        self._sids: dict[tuple[str, str], int] = {}
        self.market = MarketRows(self._names, bucket_quote=options.vbucket_quote)
        self._market_at = self.marks.market_at
        if self.marks.market:  # continue buckets and ingest positions where the durable rows end
            for name in sorted({n for part in self.marks.market.values() for n in part}):
                venue, _, symbol = name.partition(":")
                self._sid(venue, symbol)
            self.market.restore(self.marks.market)
        self.schemas: dict[str, Schema] | None = None
        self._keys: dict[str, frozenset[str]] = {}
        self.stats = SinkStats()
        self._last_checkpoint = clock()
        self._dlq_unflushed = 0
        self._audit_unsynced = 0
        self.kafka_ok: bool | None = None
        self._last_ping = -math.inf
        self.last_fetch_at: float | None = None
        self.stopping = False
        if self.buffer.segments:
            log.info(
                "spill segments found at start: replaying them first",
                extra={"segments": len(self.buffer.segments), "rows": self.buffer.segment_rows},
            )

    # -- start and the loop --------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate the store if it answers (else the loop keeps probing) and check the broker once."""
        if self.buffer.start():
            self._load_schemas()
        self._ping_kafka()

    def step(self) -> None:
        """One loop step: take records, turn them into rows, catch up, checkpoint when due."""
        if self._clock() - self._last_ping >= self.options.kafka_ping_s:
            self._ping_kafka()
        records = self.consumer.fetch(self.options.poll_max, timeout=self.options.poll_timeout_s)
        self.last_fetch_at = self._clock()
        if records:
            self.process(records)
        self.buffer.recover(self.options.drain_budget_s)
        if self.schemas is None and self.buffer.available:
            self._load_schemas()
        if self._due():
            self.checkpoint()

    def _ping_kafka(self) -> None:
        self._last_ping = self._clock()
        self.kafka_ok = self.bus.ping(timeout=1.0)

    def _load_schemas(self) -> None:
        try:
            self.schemas = {t: store_schema(self.buffer.store, t) for t in sorted(RUNTIME_TABLES)}
        except StoreError as exc:  # checked again once the store answers
            log.info("table schemas not loaded yet", extra={"error": str(exc)})

    # -- records → rows ------------------------------------------------------------------------------

    def process(self, records: list[KafkaRecord]) -> None:
        """Turn ``records`` into buffered rows (dead-lettering what cannot be stored)."""
        parts: list[npt.NDArray[Any]] = []
        sids: list[int] = []
        skip = self.marks.offsets  # what is durable already: after a restart, or a commit that failed
        counts = self.stats.records
        for r in records:
            family = r.topic.split(".", 1)[0]
            counts[family] = counts.get(family, 0) + 1
            if skip:
                below = skip.get((r.topic, r.partition))
                if below is not None and r.offset < below and not self._reused_offset(r):
                    self.stats.skipped_durable += 1
                    continue
            if family == MD:
                self._md(r, parts, sids)
            elif family in STORED_FAMILIES:
                self._rows(r, family)
            else:
                self.stats.ignored += 1
        if parts:
            self._market(parts, sids)

    def _reused_offset(self, r: KafkaRecord) -> bool:
        """A record below the durable offset whose sequence is newer than the last durable one: the broker
        handed out that offset again (its log was lost — a broker restarted without its data — or the topic
        was recreated). It is new data, not a redelivery; skipping it by offset would lose it."""
        if r.seq is None or r.seq <= self.marks.seq.get((r.topic, r.key), -(2**63)):
            return False
        if (r.topic, r.partition) not in self._reused_warned:
            self._reused_warned.add((r.topic, r.partition))
            log.warning("offsets start over below the durable mark: taking records by their sequence",
                        extra={"topic": r.topic, "partition": r.partition, "offset": r.offset,
                               "durable": self.marks.offsets.get((r.topic, r.partition))})  # fmt: skip
        self.stats.reused_offsets += 1
        return True

    def _md(self, r: KafkaRecord, parts: list[npt.NDArray[Any]], sids: list[int]) -> None:
        try:
            batch = decode_md_batch(r.value if r.value is not None else b"")
        except MdBatchError as exc:
            self._dead_letter(r, MD, "schema-version" if exc.field == "schema_version" else "decode-error", str(exc))
            return
        names = r.topic.split(".")
        if len(names) != 3 or names[1] != batch.venue or names[2] != batch.symbol:
            why = f"batch of {batch.venue!r}/{batch.symbol!r} on topic {r.topic!r}"
            self._dead_letter(r, MD, "topic-mismatch", why)
            return
        seq = r.seq if r.seq is not None else batch.seq
        if not self.seen.accept(r.topic, r.key, seq):
            self.stats.duplicates += 1
            return
        if batch.count:
            parts.append(batch.events)
            sids.append(self._sid(batch.venue, batch.symbol))

    def _sid(self, venue: str, symbol: str) -> int:
        sid = self._sids.get((venue, symbol))
        if sid is None:
            sid = self._sids[(venue, symbol)] = len(self._names)
            self._names.append(f"{venue}:{symbol}")
        return sid

    def _market(self, parts: list[npt.NDArray[Any]], sids: list[int]) -> None:
        events = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
        if events.dtype != EVENT_DTYPE:
            events = events.astype(EVENT_DTYPE)
        events["symbol"] = np.repeat(np.asarray(sids, np.uint32), [len(p) for p in parts])
        for table, columns in self.market.rows(events).items():
            self._writer(table).append(columns)
        self._market_at += 1
        self.stats.events += len(events)

    def _rows(self, r: KafkaRecord, family: str) -> None:
        try:
            decoded = table_rows(r.topic, r.value if r.value is not None else b"")
        except ValueError as exc:
            self._dead_letter(r, family, "decode-error", str(exc))
            return
        schemas = self.schemas
        for table, rows in decoded.tables.items():
            schema = schemas.get(table) if schemas is not None else None
            problem = rows_problem(table, rows, schema, ("run_id",) if table in RUNTIME_TABLES else ())
            known = self._keys.get(table)
            if problem is None and rows and known is not None and frozenset(rows[0]) != known:
                problem = f"{table}: columns {sorted(rows[0])}, earlier rows {sorted(known)}"
            if problem is not None:
                self._dead_letter(r, family, "invalid-rows", problem)
                return
        if r.seq is not None and not self.seen.accept(r.topic, r.key, r.seq):
            self.stats.duplicates += 1
            return
        for table, rows in decoded.tables.items():
            if not rows:
                continue
            self._keys.setdefault(table, frozenset(rows[0]))
            writer = self._writer(table)
            for row in rows:
                writer.append_row(row)
        if self.audit is not None:
            for record in decoded.audit:
                self.audit.write(record)
                self._audit_unsynced += 1

    def _writer(self, table: str) -> TableWriter:
        writer = self.writers.get(table)
        if writer is None:
            constants = {"run_id": self.options.run_id} if table in RUNTIME_TABLES else None
            writer = TableWriter(self.buffer, table, max_rows=self.options.max_rows, max_age_ns=NEVER,
                                 constants=constants)  # fmt: skip
            self.writers[table] = writer
        return writer

    def _dead_letter(self, r: KafkaRecord, family: str, reason: str, error: str) -> None:
        self.bus.send_to_dlq(r, reason, error)
        self._dlq_unflushed += 1
        key = (family, reason)
        self.stats.dead_letters[key] = self.stats.dead_letters.get(key, 0) + 1

    # -- checkpoints ----------------------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        """Rows in the writers, not yet handed to the buffer."""
        return sum(w.buffered for w in list(self.writers.values()))

    def _due(self) -> bool:
        pending = self.pending_rows
        if pending >= self.options.max_rows or self.buffer.over_bound:  # memory stays bounded between ages
            return True
        if self._clock() - self._last_checkpoint < self.options.max_age_ms / 1000.0:
            return False
        return bool(pending or self.buffer.blocks or self.consumer.uncommitted)

    def checkpoint(self) -> None:
        """Flush every writer; spill past the bound; commit when everything taken is durable."""
        self._last_checkpoint = self._clock()
        self.stats.checkpoints += 1
        for writer in self.writers.values():
            writer.flush()  # never raises for an outage: the buffer keeps the rows
        if self.buffer.over_bound:
            self._spill()
        if not self.buffer.blocks:
            self._durable()

    def _spill(self) -> None:
        self._flush_producer()  # dead letters first: the segment's marks skip their records after a crash
        marks = self.marks.copy()
        marks.merge(self._taken(self.consumer.uncommitted))
        self.buffer.spill(marks)

    def _taken(self, offsets: dict[tuple[str, int], int]) -> Marks:
        """Marks of everything taken so far: these offsets, the accepted sequences, the market rows' state."""
        return Marks(offsets, self.seen.snapshot(), self.market.state(), self._market_at)

    def _durable(self, timeout: float | None = None) -> None:
        """Every record taken so far has its rows stored or on disk: record that, then commit."""
        pending = self.consumer.uncommitted
        if not pending:
            return
        self._flush_producer(timeout)
        if self.audit is not None and self._audit_unsynced:
            self.audit.sync()
            self._audit_unsynced = 0
        self.marks.merge(self._taken(pending))
        self.spill.save_marks(self.marks)
        try:
            self.consumer.commit(flush_producer=False)
            self.stats.commits += 1
        except CommitError as exc:  # offsets stay pending and go with the next commit
            self.stats.commit_errors += 1
            log.warning("commit refused; retried at the next checkpoint", extra={"error": str(exc)})

    def _flush_producer(self, timeout: float | None = None) -> None:
        if self._dlq_unflushed:
            self.bus.flush(timeout)
            self._dlq_unflushed = 0

    # -- shutdown (hooks, in this order) ---------------------------------------------------------------

    def stop_consuming(self) -> None:
        """The loop has stopped taking records; nothing is fetched after this."""
        self.stopping = True

    def flush(self, remaining_s: Callable[[], float] = lambda: math.inf) -> None:
        """Everything taken becomes durable: writers flushed, a backlog caught up while the store answers
        and time allows (half of what is left), and whatever is still in memory spilled to disk."""
        for writer in self.writers.values():
            writer.flush()
        if self.buffer.backlog and self.buffer.available:
            budget = remaining_s()
            self.buffer.recover(min(budget / 2, 3600.0) if math.isfinite(budget) else 3600.0)
        if self.buffer.blocks:
            self._spill()

    def commit(self, timeout: float | None = None) -> None:
        """Save the marks and commit the offsets of everything taken (after :meth:`flush`); ``timeout``
        bounds the wait for the dead letters' acknowledgement."""
        if not self.buffer.blocks and not self.pending_rows:
            self._durable(max(0.1, timeout) if timeout is not None and math.isfinite(timeout) else None)

    def close(self, timeout: float = 10.0) -> None:
        """Close the audit file, the bus (leaving the group; nothing more is committed) and the store."""
        try:
            if self.audit is not None:
                self.audit.close()
            self.bus.close(timeout=max(0.1, min(timeout, 10.0)))
        finally:
            self.buffer.close()

    # -- checks ----------------------------------------------------------------------------------------

    def kafka_check(self) -> CheckResult:
        if self.kafka_ok is None:
            return CheckResult.failed("broker not checked yet")
        if not self.kafka_ok:
            return CheckResult.failed("no broker reachable", bootstrap=self.bus.bootstrap_servers)
        return CheckResult.passed(f"broker answered {self._clock() - self._last_ping:.1f} s ago")

    def store_check(self) -> CheckResult:
        b = self.buffer
        details = {"buffered_rows": b.rows, "segments": len(b.segments), "segment_rows": b.segment_rows}
        if not b.available:
            since = "" if b.down_since is None else f" for {self._clock() - b.down_since:.1f} s"
            return CheckResult.failed(f"unavailable{since}: {b.last_error or 'not reached yet'}", **details)
        last = "no insert yet" if b.last_insert_at is None else f"insert {self._clock() - b.last_insert_at:.1f} s ago"
        return CheckResult.passed(last, **details)

    def consumer_check(self) -> CheckResult:
        if self.last_fetch_at is None:
            return CheckResult.failed("not polled yet")
        age = self._clock() - self.last_fetch_at
        details = {"group": self.consumer.name, "assigned": len(self.consumer.assignment)}
        if age > 30.0:
            return CheckResult.failed(f"last poll {age:.1f} s ago", **details)
        return CheckResult.passed(f"polled {age:.1f} s ago, {details['assigned']} partition(s)", **details)

    def writer_check(self) -> CheckResult:
        b = self.buffer
        return CheckResult.passed(
            f"{self.pending_rows} rows pending, {b.rows} buffered, {len(b.segments)} segment(s) to replay",
            checkpoints=self.stats.checkpoints,
            commits=self.stats.commits,
        )

    # -- metrics ---------------------------------------------------------------------------------------

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Export the sink's counters (read at scrape time) and the insert latency histogram."""
        self._insert_seconds = Histogram(
            "tradeplane_sink_insert_seconds",
            "Time of one insert into the store (the store's retries included)",
            ["table"],
            buckets=INSERT_BUCKETS,
            registry=registry,
        )
        registry.register(_Collector(self))

    def _observe_insert(self, table: str, rows: int, seconds: float) -> None:
        if self._insert_seconds is not None:
            self._insert_seconds.labels(table).observe(seconds)


class _Collector(Collector):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s, b = self._sink.stats, self._sink.buffer
        bs = b.stats

        def counter(name: str, doc: str, labels: list[str], data: dict[Any, int]) -> Metric:
            m = CounterMetricFamily(name, doc, labels=labels)
            for key, n in list(data.items()):
                m.add_metric(list(key) if isinstance(key, tuple) else [key], n)
            return m

        def single(name: str, doc: str, value: float, *, gauge: bool = False) -> Metric:
            m: Any = GaugeMetricFamily(name, doc) if gauge else CounterMetricFamily(name, doc)
            m.add_metric([], value)
            return m  # type: ignore[no-any-return]

        yield counter("tradeplane_sink_records", "Records taken from Kafka", ["family"], s.records)
        yield counter("tradeplane_sink_rows_written", "Rows inserted into the store", ["table"], bs.written)
        yield counter("tradeplane_sink_rejected_rows", "Rows the store refused for good (kept on disk)", ["table"],
                      bs.rejected)  # fmt: skip
        yield counter("tradeplane_sink_dead_letters", "Records sent to dlq.<family>", ["family", "reason"],
                      s.dead_letters)  # fmt: skip
        yield single("tradeplane_sink_events", "Market-data events turned into rows", s.events)
        yield single("tradeplane_sink_duplicates", "Records dropped by their sequence", s.duplicates)
        yield single("tradeplane_sink_skipped_durable", "Records skipped as already durable", s.skipped_durable)
        yield single("tradeplane_sink_reused_offsets", "Records taken below the durable offset because their "
                     "sequence is newer (the broker lost its log)", s.reused_offsets)  # fmt: skip
        yield single("tradeplane_sink_commits", "Offset commits", s.commits)
        yield single("tradeplane_sink_commit_errors", "Offset commits refused", s.commit_errors)
        yield single("tradeplane_sink_spilled_rows", "Rows spilled to disk", bs.spilled_rows)
        yield single("tradeplane_sink_spill_segments_written", "Spill segments written", bs.spill_segments)
        yield single("tradeplane_sink_replayed_rows", "Rows inserted from spill segments", bs.replayed_rows)
        yield single("tradeplane_sink_store_outages", "Times the store became unavailable", bs.outages)
        yield single("tradeplane_sink_pending_rows", "Rows in the writers", self._sink.pending_rows, gauge=True)
        yield single("tradeplane_sink_buffered_rows", "Rows held in memory for the store", b.rows, gauge=True)
        yield single("tradeplane_sink_spill_segments", "Spill segments on disk", len(b.segments), gauge=True)
        yield single("tradeplane_sink_spill_segment_rows", "Rows in spill segments on disk", b.segment_rows,
                     gauge=True)  # fmt: skip
        yield single("tradeplane_sink_store_up", "1 while the store takes inserts", float(b.available), gauge=True)
