"""What a decode call returns: the events, the closed klines, and the count of what happened to every
message (:class:`DecodeStats`); stats of consecutive batches merge, results concatenate."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from ..events import EVENT_DTYPE, KLINE_DTYPE, EventArray

#: Cap on :attr:`DecodeStats.errors` (the counters are always exact).
MAX_ERRORS: Final = 100


@dataclass(slots=True)
class DecodeStats:
    """What happened to every input message; nothing is dropped without being counted here.

    Invariant: ``messages == decoded + sum(unknown.values()) + malformed``, where ``decoded`` is the sum
    of ``by_type``. ``errors`` keeps the first :data:`MAX_ERRORS` unknown or malformed messages as
    ``(line number, short reason)`` in line order; the counters are always exact.
    """

    messages: int = 0  #: input lines (or payloads) seen, good or bad
    events: int = 0  #: EVENT_DTYPE rows produced
    klines: int = 0  #: KLINE_DTYPE rows produced (closed bars only)
    by_type: dict[str, int] = field(default_factory=dict)  #: decoded messages per event type
    unknown: dict[str, int] = field(default_factory=dict)  #: well-formed messages of types not decoded
    malformed: int = 0  #: lines or messages that could not be decoded
    malformed_by: dict[str, int] = field(default_factory=dict)  #: malformed count per cause
    errors: list[tuple[int, str]] = field(default_factory=list)  #: first examples: (line, reason)

    @property
    def decoded(self) -> int:
        """Messages decoded into events or klines."""
        return sum(self.by_type.values())

    def merge(self, other: DecodeStats) -> DecodeStats:
        """Add ``other`` (a later batch) into this object in place and return it, so a stream of batch
        stats folds with ``functools.reduce(DecodeStats.merge, stats, DecodeStats())``."""
        self.messages += other.messages
        self.events += other.events
        self.klines += other.klines
        self.malformed += other.malformed
        for mine, theirs in (
            (self.by_type, other.by_type),
            (self.unknown, other.unknown),
            (self.malformed_by, other.malformed_by),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        room = MAX_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])
        return self


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """Events (EVENT_DTYPE, in input line order), closed klines (KLINE_DTYPE) and the batch's stats."""

    events: EventArray
    klines: EventArray
    stats: DecodeStats

    @staticmethod
    def concat(results: Iterable[DecodeResult]) -> DecodeResult:
        """Join consecutive batches into one result (events and klines concatenated, stats merged)."""
        parts = list(results)
        stats = DecodeStats()
        for part in parts:
            stats.merge(part.stats)
        events = np.concatenate([p.events for p in parts]) if parts else np.empty(0, EVENT_DTYPE)
        klines = np.concatenate([p.klines for p in parts]) if parts else np.empty(0, KLINE_DTYPE)
        return DecodeResult(events, klines, stats)
