"""The Kafka bus: the :class:`~.base.Bus` protocol over confluent-kafka (librdkafka), for the cluster workloads.

Same topics (:mod:`.topics`), same calls as the in-process bus, so a workload runs on either. What Kafka
changes, and what this adapter adds for it:

* **Values are bytes.** Market data as md batches (:mod:`.mdbatch`), signals and intents as
  ``signal.proto``; anything else raises ``TypeError`` naming the topic. Keys (the symbol) go out UTF-8
  and come back as ``str`` (``bytes`` if they are not UTF-8). Keys are hashed with ``murmur2`` like the
  Java client and aiokafka do, so every producer puts a symbol on the same partition and per-symbol order
  holds whichever client wrote it.
* **Sequence header.** ``publish(..., seq=n)`` (a keyword-only Kafka extension; the Protocol call without
  it still works) adds the header ``tp-seq``: ``n`` as 8 big-endian bytes. Consumers de-duplicate
  redeliveries by it (:class:`~.dedup.SequenceFilter`); md batches also carry it in their own header.
* **Offsets.** ``publish`` returns how many records *this bus* published to the topic before this one
  (0, 1, 2, …), and :meth:`KafkaBus.end_offset` the count so far: the broker assigns real offsets
  asynchronously, per partition. Delivery reports give the real ones (:meth:`KafkaBus.last_delivered`,
  or ``on_delivery=``). Received records (:class:`KafkaRecord`) carry the real offset, the partition,
  the headers and the parsed ``seq``. Nothing here reads high watermarks or log-end offsets from the
  broker (Tansu, the test broker, reports them wrongly; see docs/dataplane.md, "Tansu caveats").
* **Delivery guarantee: at-least-once.** The producer is idempotent (``enable.idempotence``, ``acks=all``),
  so its own retries never duplicate or reorder (``idempotent=False``: still ordered, repeats possible and
  dropped by ``seq``; for brokers that forget producer ids on restart, see :class:`KafkaBus`). Consumers
  are consumer groups with auto-commit off: :meth:`KafkaConsumer.commit` commits what ``poll`` returned,
  and the owner calls it *after* processing. By default it first flushes this bus's producer, so whatever
  the processing published (intents, dead letters) is acknowledged before the input is marked done. A
  crash between processing and commit redelivers; the ``seq`` filter makes that harmless. A group without
  a committed offset starts at the earliest record (``auto.offset.reset``), so nothing published before
  it joined is lost.
* **Backpressure.** The producer queue is bounded (``max_buffered_messages`` / ``_kbytes``). When it is
  full, ``publish`` serves delivery reports and retries for up to ``backpressure_timeout`` seconds, then
  raises :class:`ProducerBackpressureError` (a :class:`~.base.BackpressureError`): the record is not
  queued, nothing queued is dropped. Consumers are bounded too: ``poll`` returns at most ``max_n`` and
  librdkafka's prefetch holds at most ``max_queue`` records per partition and ``fetch_queue_kbytes``.
  Unlike in-process, a slow consumer never blocks a producer: the broker keeps the records until the
  consumer catches up (consumer lag is its backpressure).
* **Delivery errors** (a record the broker finally refused, or that timed out after librdkafka's retries)
  are kept and raised as :class:`KafkaDeliveryError`, naming the topics, from the next ``publish`` or
  ``flush``. A transient broker outage is not an error: librdkafka retries until ``message.timeout.ms``
  (5 minutes by default) and ``health()`` shows ``brokers_down``.
* **Push delivery without threads.** ``subscribe(pattern, handler)`` makes a consumer group too; the
  handler runs inside :meth:`KafkaBus.pump`, which the owner's loop calls (no hidden threads, so handlers
  run on the owner's thread like in-process). After each pump the offsets of the records whose handler
  returned are committed. A handler that raises stops the pump: the record and those after it stay
  queued and are retried on the next pump, unless ``dead_letters=`` is given, in which case the record
  goes to the dead-letter topic and the stream continues.
* **Dead letters.** :meth:`KafkaBus.send_to_dlq` / :class:`DeadLetters` publish a record that cannot be
  processed (bad bytes, unknown schema version, a handler that keeps failing) unchanged to
  ``dlq.<family>`` with headers ``tp-dlq-reason``, ``tp-dlq-error``, ``tp-dlq-source-topic``,
  ``tp-dlq-source-partition`` and ``tp-dlq-source-offset``; the consumer commits past it and continues.
* **Patterns.** The fnmatch patterns of the Protocol (``fills.*``, ``md.*.BTCUSDT``) become anchored
  regex subscriptions (``^fills\\..*$``; librdkafka treats a subscription starting with ``^`` as a regex);
  a pattern without wildcards subscribes to that one topic. A regex subscription finds topics created
  later at its next metadata refresh (``metadata_refresh_ms``). Topics are created on first publish
  through the admin API with ``partitions`` partitions (:meth:`KafkaBus.ensure_topics`).

Not thread-safe: one bus per workload loop, like the in-process bus. Call ``publish``, ``pump`` or
:meth:`KafkaBus.poll` regularly so delivery reports are served. An asyncio variant over aiokafka (for the
asyncio services) would sit next to this module with the same surface; none is needed yet.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .base import BackpressureError, Handler, Key, Record
from .topics import DLQ, dlq_topic, parse_topic

log = logging.getLogger(__name__)

SEQ_HEADER: Final = "tp-seq"
"""Header with the record's per-(topic, key) sequence: 8 bytes, big-endian signed int64."""
DLQ_REASON_HEADER: Final = "tp-dlq-reason"
DLQ_ERROR_HEADER: Final = "tp-dlq-error"
DLQ_SOURCE_TOPIC_HEADER: Final = "tp-dlq-source-topic"
DLQ_SOURCE_PARTITION_HEADER: Final = "tp-dlq-source-partition"
DLQ_SOURCE_OFFSET_HEADER: Final = "tp-dlq-source-offset"
HANDLER_ERROR: Final = "handler-error"
"""Dead-letter reason of a record whose push handler raised (``subscribe(..., dead_letters=...)``)."""

MAX_DLQ_ERROR_BYTES: Final = 4096
DEFAULT_POLL: Final = 1024

_SEQ: Final = struct.Struct(">q")
_BROKERS_DOWN: Final = KafkaError._ALL_BROKERS_DOWN
_PARTITION_EOF: Final = KafkaError._PARTITION_EOF

Headers = tuple[tuple[str, bytes | None], ...]
ProduceHeaders = list[tuple[str, str | bytes | None]]
TopicPartitionKey = tuple[str, int]


# -- records, reports, errors ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaRecord(Record):
    """A received record: a :class:`~.base.Record` (``offset`` is the real Kafka offset in ``partition``)
    plus what Kafka adds. Works wherever a ``Record`` is expected."""

    partition: int = -1
    seq: int | None = None  #: the ``tp-seq`` header (None when absent or not 8 bytes)
    headers: Headers = ()
    timestamp_ms: int | None = None  #: the broker/producer timestamp, ms since the epoch


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The broker's answer for one published record (``error`` is None on success)."""

    topic: str
    partition: int
    offset: int  #: the real offset (-1 when delivery failed)
    key: Key
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A record the producer could not deliver (kept until raised by ``publish``/``flush``)."""

    topic: str
    partition: int
    key: Key
    code: str
    reason: str


class KafkaBusError(RuntimeError):
    """A Kafka operation failed for good (topic creation, a fatal producer error, a commit)."""


class KafkaDeliveryError(KafkaBusError):
    """Records the broker did not take, after librdkafka's retries. They are NOT delivered; the
    publisher decides (re-publish, stop). Raised once: the failures are cleared when raised."""

    def __init__(self, failures: list[DeliveryFailure]) -> None:
        topics = sorted({f.topic for f in failures})
        first = failures[0]
        super().__init__(
            f"{len(failures)} record(s) failed delivery to topic(s) {', '.join(map(repr, topics))}: "
            f"first on {first.topic!r} [{first.partition}] key {first.key!r}: {first.code}: {first.reason}"
        )
        self.failures = failures


class FlushTimeoutError(KafkaBusError, TimeoutError):
    """``flush`` ran out of time with records still queued; they stay queued and keep being retried."""


class CommitError(KafkaBusError):
    """The group coordinator refused a commit (e.g. a rebalance took the partitions away). The offsets
    stay pending and are retried by the next ``commit``; if the partitions moved, their new owner gets
    the records again (at-least-once), and the sequence filter drops what was already processed."""


class ProducerBackpressureError(BackpressureError):
    """The producer's bounded queue stayed full for ``backpressure_timeout`` seconds: the record was NOT
    published (nothing already queued is lost). Slow down or retry; the broker may be slow or down."""

    def __init__(self, topic: str, producer: str, max_queue: int, max_kbytes: int, waited: float) -> None:
        RuntimeError.__init__(
            self,
            f"backpressure on topic {topic!r}: producer {producer!r} queue stayed full (at most {max_queue} "
            f"records / {max_kbytes} KiB) for {waited:.2f}s while waiting for deliveries; the record was not "
            "published, retry it later",
        )
        self.topic = topic
        self.consumer = producer  # BackpressureError's field: who is full
        self.max_queue = max_queue


# -- helpers ----------------------------------------------------------------------------------------


def pack_seq(seq: int) -> bytes:
    """The ``tp-seq`` header value of ``seq`` (8 bytes big-endian); ``ValueError`` outside int64."""
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"seq must be an int, got {type(seq).__name__}")
    try:
        return _SEQ.pack(seq)
    except struct.error:
        raise ValueError(f"seq {seq} does not fit a signed 64-bit integer") from None


def unpack_seq(value: bytes | None) -> int | None:
    """The int of a ``tp-seq`` header value, ``None`` when it is not 8 bytes."""
    if value is None or len(value) != 8:
        return None
    return int(_SEQ.unpack(value)[0])


def record_seq(record: Record) -> int | None:
    """The sequence of a record from any bus (``tp-seq`` on Kafka; None in-process or when absent)."""
    return getattr(record, "seq", None)


def subscription_for(pattern: str) -> str:
    """The librdkafka subscription of an fnmatch ``pattern``: the topic itself when it has no wildcard,
    else an anchored POSIX regex (``fills.*`` → ``^fills\\..*$``), which librdkafka recognises by ``^``.

    Only what topic names can contain is supported: letters, digits, ``.``, ``_``, ``-`` and the wildcards
    ``*``, ``?``, ``[...]``/``[!...]``. A comma-separated list (``signals.s1,fills.s1,md.*.BTCUSDT``: topic
    names cannot hold commas) becomes one alternation, because a consumer has one subscription: that is how
    a Strategy's sink takes exactly its own topics.
    """
    if not pattern:
        raise ValueError("pattern must be a non-empty string")
    if "," in pattern:
        parts = [p.strip() for p in pattern.split(",")]
        if not all(parts):
            raise ValueError(f"pattern {pattern!r}: an empty entry in the list")
        return "^(" + "|".join(_regex_body(p) for p in parts) + ")$"
    if not any(c in pattern for c in "*?["):
        return pattern
    return "^" + _regex_body(pattern) + "$"


def _regex_body(pattern: str) -> str:
    """The POSIX regex (unanchored) of one fnmatch pattern over topic-name characters."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1 if i < n and pattern[i] == "!" else i
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "[" (as fnmatch does)
                out.append("\\[")
                continue
            body = pattern[i:j]
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\^" + body[1:]
            out.append(f"[{body}]")
        elif c.isalnum() or c in "_-":
            out.append(c)
        elif c in ".^$|()+{}\\]":
            out.append("\\" + c)
        else:
            raise ValueError(f"pattern {pattern!r}: character {c!r} cannot occur in a topic name")
    return "".join(out)


def _key_out(key: bytes | None) -> Key:
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key


def _to_record(msg: Message) -> KafkaRecord:
    headers = msg.headers()
    seq = None
    hdrs: Headers = ()
    if headers:
        pairs = headers.items() if isinstance(headers, dict) else headers
        hdrs = tuple((name, value.encode() if isinstance(value, str) else value) for name, value in pairs)
        for name, value in hdrs:
            if name == SEQ_HEADER:
                seq = unpack_seq(value)
    ts_type, ts = msg.timestamp()
    return KafkaRecord(
        msg.topic() or "",
        _key_out(msg.key()),
        msg.value(),
        msg.offset() or 0,
        partition=msg.partition() or 0,
        seq=seq,
        headers=hdrs,
        timestamp_ms=ts if ts_type else None,
    )


def header(record: Record, name: str) -> bytes | None:
    """The last value of header ``name`` of a Kafka record (None when absent or not a Kafka record)."""
    found = None
    for hname, value in getattr(record, "headers", ()):
        if hname == name:
            found = value
    return found


# -- dead letters -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """What the ``tp-dlq-*`` headers of a dead-letter record say."""

    reason: str
    error: str
    source_topic: str
    source_partition: int
    source_offset: int


def parse_dead_letter(record: Record) -> DeadLetterInfo:
    """The dead-letter headers of ``record`` (read from a ``dlq.*`` topic); ``ValueError`` if missing."""

    def text(name: str) -> str:
        value = header(record, name)
        if value is None:
            raise ValueError(f"record at {record.topic!r} offset {record.offset} has no {name!r} header")
        return value.decode(errors="replace")

    return DeadLetterInfo(
        reason=text(DLQ_REASON_HEADER),
        error=text(DLQ_ERROR_HEADER),
        source_topic=text(DLQ_SOURCE_TOPIC_HEADER),
        source_partition=int(text(DLQ_SOURCE_PARTITION_HEADER)),
        source_offset=int(text(DLQ_SOURCE_OFFSET_HEADER)),
    )


class DeadLetters:
    """Routes records that cannot be processed to ``dlq.<family>`` of their topic, through ``bus``.

    ``reason`` is a short machine-readable token (``decode-error``, ``schema-version``,
    ``handler-error`` …), ``error`` the human-readable detail (cut to 4 KiB). The record's bytes, key and
    ``tp-seq`` are kept. The dead letter is queued on the producer like any publish; the consumer's
    ``commit()`` flushes the producer first, so a record is never committed past before its dead letter
    is acknowledged.
    """

    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus
        self.sent: dict[tuple[str, str], int] = {}  #: (dlq topic, reason) → records sent

    def send(self, record: Record, reason: str, error: str) -> str:
        """Publish ``record`` to its dead-letter topic; returns that topic's name."""
        if not reason:
            raise ValueError("a dead letter needs a non-empty reason")
        family = record.topic.split(".", 1)[0]
        if family == DLQ:
            raise ValueError(f"record of {record.topic!r} is already a dead letter; refusing to dead-letter it")
        target = dlq_topic(family)
        value = record.value if record.value is not None else b""
        if not isinstance(value, bytes):
            raise TypeError(f"topic {record.topic!r}: dead letters carry bytes, got {type(value).__name__}")
        headers: ProduceHeaders = [
            (DLQ_REASON_HEADER, reason.encode()),
            (DLQ_ERROR_HEADER, error.encode()[:MAX_DLQ_ERROR_BYTES]),
            (DLQ_SOURCE_TOPIC_HEADER, record.topic.encode()),
            (DLQ_SOURCE_PARTITION_HEADER, str(getattr(record, "partition", -1)).encode()),
            (DLQ_SOURCE_OFFSET_HEADER, str(record.offset).encode()),
        ]
        seq = record_seq(record)
        if seq is not None:
            headers.append((SEQ_HEADER, pack_seq(seq)))
        self.bus._publish(target, record.key, value, headers)
        self.sent[(target, reason)] = self.sent.get((target, reason), 0) + 1
        self.bus._stats.dead_letters[(family, reason)] = self.bus._stats.dead_letters.get((family, reason), 0) + 1
        log.warning(
            "dead letter: %s [%s] offset %s → %s (%s: %s)",
            record.topic,
            getattr(record, "partition", -1),
            record.offset,
            target,
            reason,
            error[:200],
        )
        return target


# -- consumers --------------------------------------------------------------------------------------


class KafkaConsumer:
    """A pull consumer: one consumer group member (group id = ``name``) subscribed to ``pattern``.

    ``poll`` / :meth:`fetch` return records in partition order (per-key order holds); :meth:`commit`
    commits everything returned so far; call it after processing. Records returned but not committed
    are delivered again after a restart or a rebalance (at-least-once). ``close`` commits nothing.
    """

    def __init__(self, bus: KafkaBus, pattern: str, max_queue: int, name: str, config: dict[str, Any]) -> None:
        self._bus = bus
        self.pattern = pattern
        self.max_queue = max_queue
        self.name = name
        self.active = True
        self._buffer: deque[KafkaRecord] = deque()  # fetched, not yet returned (wait_assigned, pump retries)
        self._uncommitted: dict[TopicPartitionKey, int] = {}  # (topic, partition) → next offset to commit
        self._assigned: set[TopicPartitionKey] = set()
        self._error: KafkaError | None = None
        self.consumed = 0  #: records returned by poll/fetch
        self.fetch_wait_max_ms = int(config["fetch.wait.max.ms"])  #: how long the broker may hold an empty fetch
        self._consumer = _Consumer(config)
        self._consumer.subscribe(
            [subscription_for(pattern)], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    # -- rebalance callbacks (run inside consume) ----------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions moving away: forget their uncommitted offsets and buffered records; whoever gets
        them next starts at the last commit, so nothing is lost (duplicates are filtered by seq)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= gone
        for tp in gone:
            self._uncommitted.pop(tp, None)
        if self._buffer:
            self._buffer = deque(r for r in self._buffer if (r.topic, r.partition) not in gone)

    # -- fetching ------------------------------------------------------------------------------------

    def _consume(self, n: int, timeout: float) -> list[KafkaRecord]:
        if self._error is not None:
            fatal, self._error = self._error, None
            raise KafkaBusError(f"consumer {self.name!r} ({self.pattern!r}): {fatal.name()}: {fatal.str()}")
        # consume(n, timeout) would wait until n records or the timeout: wait for the first one only
        msgs = self._consumer.consume(num_messages=n, timeout=0)
        if not msgs and timeout > 0:
            first = self._consumer.poll(timeout)
            if first is not None:
                msgs = [first, *self._consumer.consume(num_messages=n - 1, timeout=0)] if n > 1 else [first]
        out: list[KafkaRecord] = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                out.append(_to_record(msg))
            elif err.code() != _PARTITION_EOF:
                if err.fatal():
                    self._error = err  # raised by the next call: these records are returned first
                else:
                    log.warning("consumer %r (%r): %s: %s", self.name, self.pattern, err.name(), err.str())
        return out

    def _take(self, max_n: int, timeout: float) -> deque[KafkaRecord]:
        """Up to ``max_n`` records, the buffered ones first; not yet marked for commit."""
        self._check_open()
        if max_n < 0:
            raise ValueError(f"consumer {self.name!r}: max_n must be >= 0, got {max_n}")
        out: deque[KafkaRecord] = deque()
        buf = self._buffer
        while buf and len(out) < max_n:
            out.append(buf.popleft())
        if len(out) < max_n:
            out.extend(self._consume(max_n - len(out), 0.0 if out else timeout))
        self.consumed += len(out)
        return out

    def _mark(self, record: KafkaRecord) -> None:
        self._uncommitted[(record.topic, record.partition)] = record.offset + 1

    def _unread(self, records: Iterable[KafkaRecord]) -> None:
        """Put records back at the head of the buffer, in order (a push handler raised)."""
        records = list(records)
        self.consumed -= len(records)
        self._buffer.extendleft(reversed(records))

    def fetch(self, max_n: int = DEFAULT_POLL, *, timeout: float = 0.0) -> list[KafkaRecord]:
        """Up to ``max_n`` records (waiting up to ``timeout`` s for the first), oldest first per partition,
        marked for the next :meth:`commit`. ``[]`` when none arrived."""
        records = self._take(max_n, timeout)
        for r in records:
            self._mark(r)
        self._bus._stats.consumed[self.name] = self._bus._stats.consumed.get(self.name, 0) + len(records)
        return list(records)

    def poll(self, max_n: int = DEFAULT_POLL, *, timeout: float = 0.0) -> list[Record]:
        """The Protocol's ``poll``: :meth:`fetch` typed as ``list[Record]`` (the items are KafkaRecords)."""
        return list(self.fetch(max_n, timeout=timeout))

    def wait_assigned(self, timeout: float = 30.0) -> list[TopicPartitionKey]:
        """Join the group: serve the consumer until it holds partitions or ``timeout`` passes; returns the
        assignment (``[]`` on timeout). Records that arrive meanwhile are kept for the next ``poll``."""
        self._check_open()
        deadline = time.monotonic() + timeout
        while not self._assigned and time.monotonic() < deadline:
            room = self.max_queue - len(self._buffer)
            if room > 0:
                self._buffer.extend(self._consume(room, 0.1))
            else:
                time.sleep(0.01)
        return sorted(self._assigned)

    # -- commits -------------------------------------------------------------------------------------

    @property
    def uncommitted(self) -> dict[TopicPartitionKey, int]:
        """(topic, partition) → the offset the next commit will store (last returned + 1)."""
        return dict(self._uncommitted)

    def commit(self, *, flush_producer: bool = True) -> dict[TopicPartitionKey, int]:
        """Commit the offsets of everything returned so far (synchronously); returns what was committed.

        ``flush_producer`` (default): flush this bus's producer first, so records published while
        processing (outputs, dead letters) are acknowledged before the inputs are marked done; a delivery
        failure then raises and nothing is committed. Raises :class:`CommitError` if the coordinator
        refuses (the offsets stay pending).
        """
        self._check_open()
        if not self._uncommitted:
            return {}
        if flush_producer:
            self._bus.flush()
        pending = dict(self._uncommitted)
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._bus._stats.commit_errors += 1
            err = exc.args[0] if exc.args else exc
            raise CommitError(f"consumer {self.name!r}: commit of {len(offsets)} partition(s) failed: {err}") from exc
        failed = [tp for tp in result or () if tp.error is not None]
        for (t, p), o in pending.items():
            if self._uncommitted.get((t, p)) == o and not any(f.topic == t and f.partition == p for f in failed):
                del self._uncommitted[(t, p)]
        if failed:
            self._bus._stats.commit_errors += 1
            detail = "; ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in failed)
            raise CommitError(f"consumer {self.name!r}: commit refused for {detail}")
        return pending

    def committed(self, timeout: float = 10.0) -> dict[TopicPartitionKey, int]:
        """The group's committed offsets of the currently assigned partitions (from the coordinator);
        partitions without a commit are left out."""
        self._check_open()
        parts = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not parts:
            return {}
        found = self._consumer.committed(parts, timeout=timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def assignment(self) -> list[TopicPartitionKey]:
        """The (topic, partition) pairs this member holds now."""
        return sorted(self._assigned)

    def __len__(self) -> int:
        """Records fetched and held here, not yet returned (librdkafka's prefetch is not counted)."""
        return len(self._buffer)

    def close(self) -> None:
        """Leave the group without committing; held records are dropped (the group redelivers them)."""
        if not self.active:
            return
        self.active = False
        self._buffer.clear()
        try:
            self._consumer.close()
        finally:
            self._bus._forget(self)

    def _check_open(self) -> None:
        if not self.active:
            raise RuntimeError(f"consumer {self.name!r} is closed")

    def __repr__(self) -> str:
        return f"KafkaConsumer({self.name!r}, {self.pattern!r}, assigned={len(self._assigned)})"


class KafkaSubscription:
    """A push subscription of :class:`KafkaBus`: a consumer whose records go to ``handler`` in
    :meth:`pump` (called by :meth:`KafkaBus.pump`). ``cancel()`` closes it without committing."""

    def __init__(
        self, consumer: KafkaConsumer, handler: Handler, dead_letters: DeadLetters | None, commit: bool
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.dead_letters = dead_letters
        self.commit = commit

    @property
    def pattern(self) -> str:
        return self.consumer.pattern

    @property
    def active(self) -> bool:
        return self.consumer.active

    def pump(self, timeout: float = 0.0, max_n: int = DEFAULT_POLL) -> int:
        """Deliver up to ``max_n`` records (waiting up to ``timeout`` s for the first) to the handler, then
        commit those whose handler returned; returns how many were delivered.

        If the handler raises and there are no ``dead_letters``, the record and the ones after it go back
        to the head of the queue (the next pump retries them) and the exception propagates, with a note
        naming topic, partition and offset; what was handled before it is still committed.
        """
        cons = self.consumer
        records = cons._take(max_n, timeout)
        done = 0
        try:
            while records:
                rec = records[0]
                try:
                    self.handler(rec)
                except Exception as exc:
                    if self.dead_letters is None:
                        exc.add_note(
                            f"in bus handler {getattr(self.handler, '__qualname__', self.handler)!r} for topic "
                            f"{rec.topic!r} partition {rec.partition} offset {rec.offset}"
                        )
                        raise
                    self.dead_letters.send(rec, HANDLER_ERROR, f"{type(exc).__name__}: {exc}")
                cons._mark(rec)
                records.popleft()
                done += 1
        except BaseException:
            cons._unread(records)  # the failed record and the rest: retried by the next pump
            raise
        finally:
            stats = cons._bus._stats.consumed
            stats[cons.name] = stats.get(cons.name, 0) + done
            if self.commit and cons._uncommitted and cons.active:
                cons.commit()
        return done

    def cancel(self) -> None:
        """Stop: leave the group without committing more (idempotent)."""
        self.consumer.close()

    def __repr__(self) -> str:
        return f"KafkaSubscription({self.pattern!r}, {getattr(self.handler, '__qualname__', self.handler)!r})"


# -- the bus ----------------------------------------------------------------------------------------


class _Stats:
    """Plain counters updated on the hot path; exported to Prometheus only when scraped."""

    def __init__(self) -> None:
        self.published: dict[str, int] = {}  # topic → records published (also end_offset)
        self.delivered: dict[str, int] = {}  # family → acknowledged
        self.delivery_errors: dict[str, int] = {}  # family → failed
        self.backpressure: dict[str, int] = {}  # family → ProducerBackpressureError raised
        self.consumed: dict[str, int] = {}  # consumer group → records returned / handled
        self.dead_letters: dict[tuple[str, str], int] = {}  # (family, reason) → dead letters sent
        self.commit_errors = 0


class _Collector(Collector):
    """Prometheus view of a bus's counters (read at scrape time: nothing on the hot path)."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s, client = self._bus._stats, self._bus.client_id
        published: dict[str, int] = {}
        for topic, n in s.published.items():
            fam = self._bus._families.get(topic, topic.split(".", 1)[0])
            published[fam] = published.get(fam, 0) + n
        for name, doc, data in (
            ("tradeplane_bus_published", "Records accepted by the producer", published),
            ("tradeplane_bus_delivered", "Records acknowledged by the broker", s.delivered),
            ("tradeplane_bus_delivery_errors", "Records the broker did not take", s.delivery_errors),
            ("tradeplane_bus_backpressure", "Publishes refused because the producer queue stayed full", s.backpressure),
        ):
            m = CounterMetricFamily(name, doc, labels=["client", "family"])
            for fam, n in data.items():
                m.add_metric([client, fam], n)
            yield m
        m = CounterMetricFamily("tradeplane_bus_consumed", "Records consumed", labels=["client", "group"])
        for group, n in s.consumed.items():
            m.add_metric([client, group], n)
        yield m
        labels = ["client", "family", "reason"]
        m = CounterMetricFamily("tradeplane_bus_dead_letters", "Dead letters sent", labels=labels)
        for (fam, reason), n in s.dead_letters.items():
            m.add_metric([client, fam, reason], n)
        yield m
        m = CounterMetricFamily("tradeplane_bus_commit_errors", "Commits refused", labels=["client"])
        m.add_metric([client], s.commit_errors)
        yield m
        g = GaugeMetricFamily("tradeplane_bus_producer_queue", "Records queued in the producer", labels=["client"])
        g.add_metric([client], self._bus.producer_queue)
        yield g


class KafkaBus:
    """Topics, push subscriptions and pull consumers over a Kafka cluster (see the module docstring).

    ``bootstrap_servers``: ``host:port[,host:port]``. Producer defaults: idempotent, ``acks=all``,
    ``compression`` lz4, ``linger_ms`` 5, a queue of ``max_buffered_messages`` records /
    ``max_buffered_kbytes`` KiB. ``producer_config`` / ``consumer_config`` add or override librdkafka
    settings (e.g. ``session.timeout.ms``). ``partitions`` and ``replication_factor`` (-1: the broker's
    default) apply to topics this bus creates; ``auto_create_topics`` creates a topic on its first
    publish. ``on_delivery`` is called with a :class:`DeliveryReport` for every acknowledged or failed
    record (inside ``publish``/``poll``/``flush``; if it raises, the error is logged and re-raised from
    the next ``publish`` or ``flush``). ``registry``: where the ``tradeplane_bus_*`` metrics are exported.

    ``idempotent`` (default): the broker de-duplicates the producer's retries and keeps their order.
    ``idempotent=False`` keeps ``acks=all`` and order (one request in flight per connection) but a retry
    can store a record twice (consumers drop the repeat by ``tp-seq``); it exists for brokers that lose
    producer state on restart (Tansu in memory), where an idempotent producer retries with an unknown
    producer id until ``message.timeout.ms``. On Kafka keep the default.

    ``fetch_wait_max_ms`` is how long the broker may hold a fetch that found no new records. Kafka
    answers as soon as records arrive, so there it only bounds idle polling; Tansu (the test broker)
    holds every such fetch for the full time, so its delivery latency is about half of it: use ~5 ms
    there (the tests and benchmarks do).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "tradeplane",
        validate_topics: bool = True,
        auto_create_topics: bool = True,
        idempotent: bool = True,
        partitions: int = 1,
        replication_factor: int = -1,
        linger_ms: float = 5.0,
        compression: str = "lz4",
        max_buffered_messages: int = 100_000,
        max_buffered_kbytes: int = 64 * 1024,
        backpressure_timeout: float = 5.0,
        flush_timeout: float = 30.0,
        auto_offset_reset: str = "earliest",
        fetch_queue_kbytes: int = 16 * 1024,
        fetch_wait_max_ms: int = 100,
        metadata_refresh_ms: int = 5000,
        producer_config: Mapping[str, Any] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        on_delivery: Callable[[DeliveryReport], None] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if max_buffered_messages < 1 or max_buffered_kbytes < 1:
            raise ValueError("max_buffered_messages and max_buffered_kbytes must be >= 1")
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.backpressure_timeout = backpressure_timeout
        self.flush_timeout = flush_timeout
        self.auto_offset_reset = auto_offset_reset
        self._validate = validate_topics
        self._auto_create = auto_create_topics
        self._max_msgs = max_buffered_messages
        self._max_kbytes = max_buffered_kbytes
        self._user_on_delivery = on_delivery
        self._families: dict[str, str] = {}  # topic → family (validated once)
        self._ready_topics: set[str] = set()  # created or known to exist
        self._last_delivered: dict[str, dict[int, int]] = {}
        self._failures: list[DeliveryFailure] = []
        self._fatal: KafkaError | None = None
        self._callback_error: Exception | None = None
        self.brokers_down = False
        self._stats = _Stats()
        self._consumers: list[KafkaConsumer] = []
        self._subs: list[KafkaSubscription] = []
        self._n_consumers = 0
        self._n_subs = 0
        self._admin: AdminClient | None = None
        self._dead_letters: DeadLetters | None = None
        self._closed = False
        self._consumer_base: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "queued.max.messages.kbytes": fetch_queue_kbytes,
            # when the bounded prefetch queue is full librdkafka pauses fetching for this long (default 1 s,
            # which capped a catching-up consumer at ~5k batches/s here; 20 ms: ~25k/s)
            "fetch.queue.backoff.ms": 20,
            "fetch.wait.max.ms": fetch_wait_max_ms,
            "topic.metadata.refresh.interval.ms": metadata_refresh_ms,
            "error_cb": self._on_consumer_error,
            "logger": log,
            "log.connection.close": False,
            **dict(consumer_config or {}),
        }
        self._producer_config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": idempotent,
            # without idempotence only one request in flight keeps retries from reordering a partition
            **({} if idempotent else {"max.in.flight.requests.per.connection": 1}),
            "compression.type": compression,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": max_buffered_messages,
            "queue.buffering.max.kbytes": max_buffered_kbytes,
            "partitioner": "murmur2_random",
            "on_delivery": self._on_delivery,
            "error_cb": self._on_producer_error,
            "logger": log,
            "log.connection.close": False,
            **dict(producer_config or {}),
        }
        self._producer_obj: Producer | None = None  # created on first use: consumer-only buses need none
        if registry is not None:
            registry.register(_Collector(self))

    @property
    def _producer(self) -> Producer:
        if self._producer_obj is None:
            self._producer_obj = Producer(self._producer_config)
        return self._producer_obj

    # -- topics --------------------------------------------------------------------------------------

    def _family(self, topic: str) -> str:
        fam = self._families.get(topic)
        if fam is None:
            if self._validate:
                fam = parse_topic(topic)[0]
            else:
                if not isinstance(topic, str) or not topic:
                    raise ValueError(f"topic must be a non-empty string, got {topic!r}")
                fam = topic.split(".", 1)[0]
            self._families[topic] = fam
        return fam

    def ensure_topics(
        self,
        names: Iterable[str],
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        timeout: float = 15.0,
    ) -> list[str]:
        """Create the topics that do not exist yet (idempotent: an existing topic is fine, whatever its
        partition count); returns the ones this call created. ``KafkaBusError`` naming a topic that could
        not be created."""
        self._check_open()
        todo = [t for t in dict.fromkeys(names) if t not in self._ready_topics]
        for t in todo:
            self._family(t)
        if not todo:
            return []
        if self._admin is None:
            conf: dict[str, Any] = {
                "bootstrap.servers": self.bootstrap_servers,
                "client.id": self.client_id,
                "logger": log,
                "log.connection.close": False,
            }
            self._admin = AdminClient(conf)
        nparts = self.partitions if partitions is None else partitions
        rf = self.replication_factor if replication_factor is None else replication_factor
        futures = self._admin.create_topics(
            [NewTopic(t, num_partitions=nparts, replication_factor=rf) for t in todo],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        created = []
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout)
                created.append(topic)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                    raise KafkaBusError(f"could not create topic {topic!r}: {err or exc}") from exc
            self._ready_topics.add(topic)
        return created

    # -- publishing ----------------------------------------------------------------------------------

    def publish(self, topic: str, key: Key, value: Any, *, seq: int | None = None) -> int:
        """Queue one record; returns how many records this bus published to ``topic`` before it.

        ``value`` must be ``bytes``. ``seq`` (Kafka extension): the record's per-(topic, key) sequence,
        sent as the ``tp-seq`` header. Raises ``ValueError`` for an invalid topic, ``TypeError`` for a
        value or key of the wrong type, :class:`ProducerBackpressureError` when the producer queue stays
        full, :class:`KafkaDeliveryError` for earlier records that failed delivery (this one is then not
        published). Delivery itself is asynchronous (see :meth:`flush`).
        """
        headers: ProduceHeaders | None = None if seq is None else [(SEQ_HEADER, pack_seq(seq))]
        return self._publish(topic, key, value, headers)

    def _publish(self, topic: str, key: Key, value: Any, headers: ProduceHeaders | None) -> int:
        self._check_open()
        self._raise_failures()
        family = self._family(topic)
        if not isinstance(value, bytes):
            raise TypeError(f"topic {topic!r}: Kafka values must be bytes, got {type(value).__name__}")
        if key is not None and not isinstance(key, str | bytes):
            raise TypeError(f"topic {topic!r}: key must be str, bytes or None, got {type(key).__name__}")
        if self._auto_create and topic not in self._ready_topics:
            self.ensure_topics([topic])
        producer = self._producer
        try:
            producer.produce(topic, value, key, headers=headers)
        except BufferError:
            self._produce_waiting(topic, family, value, key, headers)
        producer.poll(0)  # serve delivery reports as we go
        n = self._stats.published.get(topic, 0)
        self._stats.published[topic] = n + 1
        return n

    def _produce_waiting(self, topic: str, family: str, value: bytes, key: Key, headers: ProduceHeaders | None) -> None:
        """The queue is full: serve deliveries (which frees slots) and retry until the deadline."""
        start = time.monotonic()
        deadline = start + self.backpressure_timeout
        producer = self._producer
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stats.backpressure[family] = self._stats.backpressure.get(family, 0) + 1
                raise ProducerBackpressureError(
                    topic, self.client_id, self._max_msgs, self._max_kbytes, time.monotonic() - start
                )
            producer.poll(min(remaining, 0.05))
            try:
                producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                continue

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        topic = msg.topic() or ""
        family = self._families.get(topic, topic.split(".", 1)[0])
        partition = msg.partition()
        part = -1 if partition is None else partition
        if err is not None:
            self._failures.append(DeliveryFailure(topic, part, _key_out(msg.key()), err.name(), err.str()))
            self._stats.delivery_errors[family] = self._stats.delivery_errors.get(family, 0) + 1
            offset = -1
        else:
            offset = msg.offset() or 0
            self._last_delivered.setdefault(topic, {})[part] = offset
            self._stats.delivered[family] = self._stats.delivered.get(family, 0) + 1
            self.brokers_down = False
        if self._user_on_delivery is not None:
            report = DeliveryReport(topic, part, offset, _key_out(msg.key()), None if err is None else err.str())
            try:
                self._user_on_delivery(report)
            except Exception as exc:  # raising through librdkafka's callback would garble the error
                log.exception("on_delivery callback failed for %s [%s] offset %s", topic, part, offset)
                if self._callback_error is None:
                    self._callback_error = exc

    def _on_producer_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("kafka producer %r fatal error: %s: %s", self.client_id, err.name(), err.str())
        elif err.code() == _BROKERS_DOWN:
            self.brokers_down = True
            log.warning("kafka producer %r: all brokers down (records stay queued and are retried)", self.client_id)
        else:
            log.info("kafka producer %r: %s: %s", self.client_id, err.name(), err.str())

    def _on_consumer_error(self, err: KafkaError) -> None:
        log.log(logging.ERROR if err.fatal() else logging.INFO, "kafka consumer: %s: %s", err.name(), err.str())

    def _raise_failures(self) -> None:
        if self._fatal is not None:
            err = self._fatal
            raise KafkaBusError(
                f"the producer of {self.client_id!r} hit a fatal error ({err.name()}: {err.str()}); "
                "it cannot publish any more: close this bus and create a new one"
            )
        if self._callback_error is not None:
            exc, self._callback_error = self._callback_error, None
            raise KafkaBusError(f"the on_delivery callback of {self.client_id!r} raised: {exc!r}") from exc
        if self._failures:
            failures, self._failures = self._failures, []
            raise KafkaDeliveryError(failures)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports (and the ``on_delivery`` callback); returns how many were served."""
        return 0 if self._producer_obj is None else self._producer_obj.poll(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged (at most ``timeout`` s, default
        ``flush_timeout``); then raise :class:`KafkaDeliveryError` for records that failed, or
        :class:`FlushTimeoutError` if some are still queued (they stay queued)."""
        t = self.flush_timeout if timeout is None else timeout
        remaining = 0 if self._producer_obj is None else self._producer_obj.flush(t)
        self._raise_failures()
        if remaining:
            raise FlushTimeoutError(
                f"{remaining} record(s) of {self.client_id!r} still queued after {t:.1f}s of flush "
                "(broker slow or unreachable); they stay queued and are retried until message.timeout.ms"
            )

    @property
    def producer_queue(self) -> int:
        """Records queued in the producer, not yet acknowledged (0 once closed)."""
        return 0 if self._closed or self._producer_obj is None else len(self._producer_obj)

    def end_offset(self, topic: str) -> int:
        """Records this bus published to ``topic`` (the Protocol's "offset of the next record", counted
        locally: real offsets are per partition and assigned by the broker, see :meth:`last_delivered`)."""
        return self._stats.published.get(topic, 0)

    def offsets(self) -> dict[str, int]:
        """Every topic this bus published to → records published."""
        return dict(self._stats.published)

    def last_delivered(self, topic: str) -> dict[int, int]:
        """partition → the real offset of the last record of ``topic`` the broker acknowledged."""
        return dict(self._last_delivered.get(topic, {}))

    # -- receiving -----------------------------------------------------------------------------------

    def _consumer_config(self, name: str, max_queue: int, auto_offset_reset: str | None,
                         fetch_wait_max_ms: int | None = None) -> dict[str, Any]:  # fmt: skip
        return {
            **self._consumer_base,
            "group.id": name,
            "queued.min.messages": max_queue,
            "auto.offset.reset": auto_offset_reset or self.auto_offset_reset,
            **({} if fetch_wait_max_ms is None else {"fetch.wait.max.ms": fetch_wait_max_ms}),
        }

    def consumer(
        self, pattern: str, max_queue: int, *, name: str | None = None, auto_offset_reset: str | None = None,
        fetch_wait_max_ms: int | None = None,
    ) -> KafkaConsumer:  # fmt: skip
        """A pull consumer: member of consumer group ``name`` (default ``<client_id>-consumer-<n>``; give
        stable names so a restarted process resumes from the group's committed offsets), subscribed to
        ``pattern``. ``max_queue`` bounds librdkafka's prefetch per partition. A group without committed
        offsets starts at ``auto_offset_reset`` (default the bus's, ``earliest``). ``fetch_wait_max_ms``
        overrides the bus's for this consumer (a topic that is quiet most of the time need not be polled as
        eagerly as the hot path: on the test broker every empty fetch is a request)."""
        self._check_open()
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        subscription_for(pattern)  # validates
        self._n_consumers += 1
        group = name if name is not None else f"{self.client_id}-consumer-{self._n_consumers}"
        config = self._consumer_config(group, max_queue, auto_offset_reset, fetch_wait_max_ms)
        cons = KafkaConsumer(self, pattern, max_queue, group, config)
        self._consumers.append(cons)
        return cons

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        group: str | None = None,
        max_queue: int = DEFAULT_POLL,
        auto_offset_reset: str | None = None,
        dead_letters: DeadLetters | None = None,
        commit: bool = True,
    ) -> KafkaSubscription:
        """Push: ``handler(record)`` for each record of ``pattern``, called from :meth:`pump`.

        Each subscription is its own consumer group (default ``<client_id>-sub-<n>``). ``commit``
        (default): commit after each pump what the handler processed. ``dead_letters``: route records
        whose handler raises there instead of stopping.
        """
        self._check_open()
        self._n_subs += 1
        name = group if group is not None else f"{self.client_id}-sub-{self._n_subs}"
        cons = self.consumer(pattern, max_queue, name=name, auto_offset_reset=auto_offset_reset)
        sub = KafkaSubscription(cons, handler, dead_letters, commit)
        self._subs.append(sub)
        return sub

    def pump(self, timeout: float = 0.0, max_n: int = DEFAULT_POLL) -> int:
        """Run the push subscriptions once: each delivers up to ``max_n`` records to its handler and commits.
        If nothing arrived, waits up to ``timeout`` s (shared among the subscriptions) for records.
        Returns the number of records delivered. Also serves producer delivery reports."""
        self._check_open()
        if self._producer_obj is not None:
            self._producer_obj.poll(0)
        subs = [s for s in self._subs if s.active]
        done = sum(s.pump(0.0, max_n) for s in subs)
        if done or timeout <= 0 or not subs:
            return done
        share = timeout / len(subs)
        for s in subs:
            done += s.pump(share, max_n)
            if done:
                break
        return done

    def send_to_dlq(self, record: Record, reason: str, error: str) -> str:
        """Publish ``record`` to ``dlq.<family>`` with its reason (see :class:`DeadLetters`)."""
        return self.dead_letters.send(record, reason, error)

    @property
    def dead_letters(self) -> DeadLetters:
        """This bus's :class:`DeadLetters` router (created on first use)."""
        if self._dead_letters is None:
            self._dead_letters = DeadLetters(self)
        return self._dead_letters

    def _forget(self, cons: KafkaConsumer) -> None:
        if cons in self._consumers:
            self._consumers.remove(cons)
        self._subs = [s for s in self._subs if s.consumer is not cons]

    # -- health and lifecycle ------------------------------------------------------------------------

    def ping(self, timeout: float = 2.0) -> bool:
        """True when a broker answers a metadata request within ``timeout`` s (a readiness probe)."""
        self._check_open()
        try:
            return bool(self._producer.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return False

    def health(self) -> dict[str, Any]:
        """State for ``/readyz`` and logs (no network call; see :meth:`ping`)."""
        s = self._stats
        status = "ok"
        if self._fatal is not None or self._closed:
            status = "failed"
        elif self.brokers_down or self._failures:
            status = "degraded"
        return {
            "status": status,
            "closed": self._closed,
            "brokers_down": self.brokers_down,
            "fatal": None if self._fatal is None else self._fatal.str(),
            "producer_queue": self.producer_queue,
            "published": sum(s.published.values()),
            "delivered": sum(s.delivered.values()),
            "delivery_errors": sum(s.delivery_errors.values()),
            "pending_delivery_errors": len(self._failures),
            "backpressure": sum(s.backpressure.values()),
            "dead_letters": sum(s.dead_letters.values()),
            "consumers": {
                c.name: {"pattern": c.pattern, "assigned": len(c._assigned), "uncommitted": len(c._uncommitted)}
                for c in self._consumers
            },
        }

    def close(self, timeout: float | None = None) -> None:
        """Flush the producer (at most ``timeout`` s, default ``flush_timeout``), then leave every consumer
        group without committing anything and release the producer; publishing afterwards raises
        ``RuntimeError`` (idempotent).

        What the flush finds is raised after everything is closed: :class:`KafkaDeliveryError`, or
        :class:`FlushTimeoutError` when records were still queued; those are then purged (not delivered),
        because a closed bus cannot retry them, and the error says how many.
        """
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            for cons in list(self._consumers):
                try:
                    cons.close()
                except KafkaException as exc:  # leaving the group failed: the coordinator times it out
                    log.warning("closing consumer %r: %s", cons.name, exc)
            self._subs.clear()
            self._admin = None  # no close(): released (and its connections closed) when collected
            producer, self._producer_obj = self._producer_obj, None
            if producer is not None:
                if len(producer):  # flush timed out: Producer.close() would block until message.timeout.ms
                    producer.purge(in_queue=True, in_flight=True, blocking=False)
                    producer.poll(0)
                producer.close()

    def __enter__(self) -> KafkaBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the bus is closed")

    def __repr__(self) -> str:
        return f"KafkaBus({self.bootstrap_servers!r}, client_id={self.client_id!r})"
