"""Publishing decoded market data: one micro-batch per symbol on ``md.<venue>.<symbol>``, plus quality records.

Sequence numbers: every batch of a (venue, symbol) carries ``seq = max(previous + 1, time.time_ns())``.
Within a process that is strictly increasing; across a restart the wall clock has moved on, so the new
process's first seq is above the old one's last (unless the clock was set back past the outage). Consumers
de-duplicate by it (at-least-once delivery on Kafka).

Why an outbox: a bus may refuse a record (the in-process bus raises :class:`~..bus.base.BackpressureError`
when a pull consumer is full; Kafka's producer queue can fill). Refused records stay queued in order, with
their seq already stamped, and :meth:`Publisher.drain` retries them later; nothing is dropped and per-topic
order holds. The ingest stops decoding new frames while the backlog is above its bound.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import orjson

from ...engine.events import EventArray, SymbolTable
from ..bus.base import BackpressureError, Bus
from ..bus.topics import md_topic


class MdEncoder(Protocol):
    """Turns one symbol's events into a bus value (``encode_md_batch`` from :mod:`..bus.mdbatch`)."""

    def __call__(self, events: EventArray, *, venue: str, symbol: str, seq: int) -> Any: ...


QualityEncoder = Callable[[Mapping[str, Any]], Any]
"""Turns a quality record (a JSON-safe dict) into a bus value; default: orjson bytes."""


def orjson_bytes(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record)


def next_seq(prev: int, now_ns: int) -> int:
    """``max(prev + 1, now_ns)``: strictly increasing, and ahead of a previous process's seqs after a restart."""
    return max(prev + 1, now_ns)


class Publisher:
    """Encodes, stamps and publishes; keeps what the bus refused (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        venue: str,
        symbols: SymbolTable,
        *,
        encode: MdEncoder,
        encode_quality: QualityEncoder = orjson_bytes,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.bus = bus
        self.venue = venue
        self.symbols = symbols
        self.encode = encode
        self.encode_quality = encode_quality
        self.clock_ns = clock_ns
        self.last_seq: dict[str, int] = {}
        self.batches = 0  #: md batches handed to the bus
        self.records = 0  #: quality records handed to the bus
        self._outbox: deque[tuple[str, str, Any]] = deque()

    @property
    def backlog(self) -> int:
        """Records refused by the bus and waiting for :meth:`drain`."""
        return len(self._outbox)

    def symbol_name(self, symbol_id: int) -> str:
        """``BTCUSDT`` of a SymbolTable id (the table holds ``venue:SYMBOL``)."""
        return self.symbols.name(symbol_id).split(":", 1)[1]

    def stamp(self, symbol: str) -> int:
        seq = next_seq(self.last_seq.get(symbol, 0), self.clock_ns())
        self.last_seq[symbol] = seq
        return seq

    def publish_events(self, events: EventArray) -> dict[str, int]:
        """One batch per symbol present in ``events`` (each keeps its events' order); returns symbol → seq."""
        if events.shape[0] == 0:
            return {}
        sym = events["symbol"]
        if bool(np.all(sym == sym[0])):
            parts: list[tuple[int, EventArray]] = [(int(sym[0]), events)]
        else:
            order = np.argsort(sym, kind="stable")
            ids, starts = np.unique(sym[order], return_index=True)
            chunks = np.split(order, starts[1:])
            parts = [(int(i), events[idx]) for i, idx in zip(ids.tolist(), chunks, strict=True)]
        seqs: dict[str, int] = {}
        for sid, part in parts:
            name = self.symbol_name(sid)
            seq = self.stamp(name)
            value = self.encode(np.ascontiguousarray(part), venue=self.venue, symbol=name, seq=seq)
            self._outbox.append((md_topic(self.venue, name), name, value))
            self.batches += 1
            seqs[name] = seq
        self.drain()
        return seqs

    def publish_record(self, topic: str, record: Mapping[str, Any]) -> None:
        """A quality record keyed by its ``symbol``."""
        self._outbox.append((topic, str(record.get("symbol", "")), self.encode_quality(record)))
        self.records += 1
        self.drain()

    def drain(self) -> bool:
        """Publish queued records in order until the bus refuses one; True when nothing is left."""
        box = self._outbox
        while box:
            topic, key, value = box[0]
            try:
                self.bus.publish(topic, key, value)
            except BackpressureError:
                return False
            box.popleft()
        return True
