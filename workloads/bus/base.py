"""The bus interface every adapter implements: in-process now (:mod:`.inprocess`), Kafka in issue 7.

A bus moves records between the parts of the runtime (ingest → decision → risk → execution → store) by
topic (:mod:`.topics`). Two ways to receive, because the parts differ:

* ``subscribe(pattern, handler)``: push. The handler is called for every record whose topic matches the
  fnmatch-style pattern (``fills.*``, ``md.binance-usdm.*``, ``*``), in publish order. For the parts that
  must see everything at once and in order (risk on fills, the decision on market data).
* ``consumer(pattern, max_queue)``: pull. A bounded queue the owner drains with ``poll(max_n)`` at its own
  pace (the store writer, the progress display). A full queue is backpressure: ``publish`` raises
  :class:`BackpressureError` naming the topic and the consumer instead of dropping or growing without bound.

Records carry the topic, the key (kept as given; keyed by symbol so per-symbol order holds on Kafka's
partitions) and the per-topic offset (0, 1, 2, … in publish order). In-process the value is the Python
object itself (bytes, a numpy array of EVENT_DTYPE, a Signal): nothing is encoded. Over Kafka values
are bytes (signals and intents as ``signal.proto``, market data as the binary micro-batch), so a part
that wants to run on both reads values through the codec and accepts bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Key = str | bytes | None
"""A record's key: the symbol on every topic family (``None`` when a record has no natural key)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One published message as a receiver sees it."""

    topic: str
    key: Key
    value: Any  #: bytes, a read-only numpy array or (in-process) any object; see the module docstring
    offset: int  #: position in the topic, from 0, in publish order


Handler = Callable[[Record], None]


class BackpressureError(RuntimeError):
    """A pull consumer's queue is full: the record was NOT published (nothing already queued is lost)."""

    def __init__(self, topic: str, consumer: str, max_queue: int) -> None:
        super().__init__(
            f"backpressure on topic {topic!r}: consumer {consumer!r} has {max_queue} records queued "
            "(its max_queue); poll it before publishing more"
        )
        self.topic = topic
        self.consumer = consumer
        self.max_queue = max_queue


class Subscription(Protocol):
    """Handle of a push subscription."""

    @property
    def pattern(self) -> str: ...

    def cancel(self) -> None:
        """Stop delivering to the handler (idempotent); records already being delivered still arrive."""


class Consumer(Protocol):
    """A pull consumer with a bounded queue."""

    @property
    def name(self) -> str: ...

    @property
    def pattern(self) -> str: ...

    @property
    def max_queue(self) -> int: ...

    def poll(self, max_n: int = ...) -> list[Record]:
        """Up to ``max_n`` queued records, oldest first (``[]`` when none); frees their queue slots."""

    def __len__(self) -> int:
        """Records queued and not yet polled."""

    def close(self) -> None:
        """Unregister; queued records are discarded (idempotent)."""


class Bus(Protocol):
    """What the runtime needs from a bus (in-process and Kafka alike)."""

    def publish(self, topic: str, key: Key, value: Any) -> int:
        """Publish one record; returns its offset in ``topic``. Raises ``ValueError`` for an invalid topic
        name and :class:`BackpressureError` when a matching consumer's queue is full."""

    def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        """Call ``handler(record)`` for each record published from now on whose topic matches ``pattern``."""

    def consumer(self, pattern: str, max_queue: int, *, name: str | None = None) -> Consumer:
        """A pull consumer receiving each record published from now on whose topic matches ``pattern``."""

    def end_offset(self, topic: str) -> int:
        """The offset the next record of ``topic`` will get (records published so far)."""

    def flush(self) -> None:
        """Deliver whatever is still pending (in-process: after a handler raised; Kafka: producer flush)."""

    def close(self) -> None:
        """Flush and stop; publishing afterwards raises ``RuntimeError``."""
