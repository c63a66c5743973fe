"""Idempotent consumption: drop records whose per-key sequence number was already accepted.

Kafka delivery here is at-least-once (offsets are committed after processing, see :mod:`.kafka`): a
consumer that crashes, or loses its partitions in a rebalance, between processing a record and committing
it gets that record again. Producers stamp every record with a sequence that strictly increases per
(topic, key) — the md batch ``seq`` (:mod:`.mdbatch`), also sent as the ``tp-seq`` header on every topic —
so a consumer makes the redelivery harmless by remembering the last sequence it accepted per (topic, key)
and dropping anything not above it. Kafka keeps per-key order inside a partition, so a sequence at or
below the last accepted one can only be a repeat.

Memory is one int per (topic, key): keys are symbols, so a few thousand entries at most. After a restart
the filter starts empty, which would let redelivered records through once; seed it with :meth:`restore`
from wherever the consumer's effects are durable (the sink: the highest ``seq`` it stored per symbol).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .base import Key

SeqKey = tuple[str, Key]
"""``(topic, key)``: the scope a sequence increases in."""
Marks = Mapping[tuple[str, Any], int] | Iterable[tuple[str, Any, int]]
"""High-water marks to seed a filter with: ``{(topic, key): seq}`` or ``(topic, key, seq)`` triples."""


class SequenceFilter:
    """Per-(topic, key) high-water mark of accepted sequences; :meth:`accept` says whether a record is new.

    Not thread-safe (one per consumer loop, like the consumer itself).
    """

    __slots__ = ("_last", "accepted", "dropped", "dropped_by_topic")

    def __init__(self, initial: Marks = ()) -> None:
        self._last: dict[SeqKey, int] = {}
        self.accepted = 0  #: records accepted so far
        self.dropped = 0  #: duplicates dropped so far (all topics)
        self.dropped_by_topic: dict[str, int] = {}  #: duplicates dropped per topic
        self.restore(initial)

    def accept(self, topic: str, key: Key, seq: int) -> bool:
        """True (and remember ``seq``) when ``seq`` is above the last accepted one for (topic, key);
        False for a duplicate (``seq`` at or below it: a retry or a redelivery), counted in ``dropped``."""
        k = (topic, key)
        last = self._last.get(k)
        if last is not None and seq <= last:
            self.dropped += 1
            self.dropped_by_topic[topic] = self.dropped_by_topic.get(topic, 0) + 1
            return False
        self._last[k] = seq
        self.accepted += 1
        return True

    def last(self, topic: str, key: Key) -> int | None:
        """The last accepted sequence of (topic, key), ``None`` if none yet."""
        return self._last.get((topic, key))

    def restore(self, entries: Marks) -> None:
        """Seed high-water marks, e.g. from :meth:`snapshot` or from what the sink last stored.

        Takes ``{(topic, key): seq}`` or ``(topic, key, seq)`` triples. A mark only moves up: restoring an
        older value than one already accepted keeps the newer one, so restoring is safe at any time.
        """
        items = ((t, k, s) for (t, k), s in entries.items()) if isinstance(entries, Mapping) else entries
        for topic, key, seq in items:
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise TypeError(f"restore: seq of ({topic!r}, {key!r}) must be an int, got {seq!r}")
            k = (topic, key)
            last = self._last.get(k)
            if last is None or seq > last:
                self._last[k] = seq

    def snapshot(self) -> dict[SeqKey, int]:
        """Every (topic, key) → its last accepted sequence (a copy; feed it to :meth:`restore`)."""
        return dict(self._last)

    def forget(self, topic: str) -> None:
        """Drop the marks of every key of ``topic`` (a topic that was deleted and recreated starts over)."""
        for k in [k for k in self._last if k[0] == topic]:
            del self._last[k]

    def __len__(self) -> int:
        """Number of (topic, key) pairs tracked."""
        return len(self._last)

    def stats(self) -> dict[str, int]:
        """Counters for health endpoints and metrics."""
        return {"accepted": self.accepted, "dropped": self.dropped, "keys": len(self._last)}

    def __repr__(self) -> str:
        return f"SequenceFilter(keys={len(self._last)}, accepted={self.accepted}, dropped={self.dropped})"
