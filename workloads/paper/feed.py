"""Market-data micro-batches from Kafka → the receive-ordered event stream the paper simulator is fed.

Why a frontier: each ``md.<venue>.<symbol>`` topic is in receive order on its own, but topics arrive
interleaved in any order. The simulator needs one stream in receive order, so events are released only up
to the *frontier* — the oldest of the symbols' newest receive times — and merged by ``ingest_ts``. A symbol
that has sent nothing yet does not hold the others back once ``start_wait_ns`` of receive time has passed
(a market that never trades must not stop paper trading on the rest).

Clock: the simulator refuses events received before they happened. A feed whose receive clock runs behind
the exchange's is shifted once, by the amount the first released events need (as
:func:`~tradeplane.engine.sim.latency.align_local_clock` does for a capture); later stragglers are
clamped to their exchange time and counted in :attr:`MarketFeed.clock_fixes`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...engine.events import EVENT_DTYPE, EventArray
from ..bus.mdbatch import MdBatch


class MarketFeed:
    """Collects decoded batches of the desk's instruments and releases them in receive order."""

    def __init__(self, instruments: Mapping[tuple[str, str], int], *, min_feed_latency_ns: int = 0,
                 start_wait_ns: int = 2_000_000_000) -> None:  # fmt: skip
        self.instruments = dict(instruments)  #: (md venue, symbol) → the desk's instrument id
        self.min_feed_latency_ns = int(min_feed_latency_ns)
        self.start_wait_ns = int(start_wait_ns)
        self._pending: dict[int, list[EventArray]] = {i: [] for i in self.instruments.values()}
        self._last: dict[int, int] = {}
        self._first_seen: int | None = None
        self.shift: int | None = None
        self.clock_fixes = 0
        self._last_out = np.iinfo(np.int64).min
        self.released = 0
        self.ignored = 0  #: batches of symbols the desk does not trade
        self.frontier = np.iinfo(np.int64).min  #: receive time up to which everything was released

    def add(self, batch: MdBatch) -> bool:
        """Queue a batch; False (and nothing queued) for a symbol the desk does not trade."""
        sid = self.instruments.get((batch.venue, batch.symbol))
        if sid is None:
            self.ignored += 1
            return False
        if batch.count == 0:
            return True
        events = np.array(batch.events, dtype=EVENT_DTYPE)  # a writable copy with the desk's symbol id
        events["symbol"] = sid
        self._pending[sid].append(events)
        self._last[sid] = max(self._last.get(sid, np.iinfo(np.int64).min), int(events["ingest_ts"][-1]))
        first = int(events["ingest_ts"][0])
        self._first_seen = first if self._first_seen is None else min(self._first_seen, first)
        return True

    def _limit(self) -> int | None:
        if not self._last:
            return None
        newest = max(self._last.values())
        everyone = len(self._last) == len(self._pending)
        assert self._first_seen is not None
        if not everyone and newest - self._first_seen < self.start_wait_ns:
            return None  # give the quiet symbols a moment before the first release
        return min(self._last.values())

    def take(self) -> EventArray:
        """Events up to the frontier, merged in receive order (ties: by instrument id), clock-aligned."""
        limit = self._limit()
        if limit is None or limit <= self.frontier:
            return np.zeros(0, EVENT_DTYPE)
        parts: list[EventArray] = []
        for sid, queued in self._pending.items():
            if not queued:
                continue
            events = queued[0] if len(queued) == 1 else np.concatenate(queued)
            cut = int(np.searchsorted(events["ingest_ts"], limit, side="right"))
            parts.append(events[:cut])
            self._pending[sid] = [events[cut:]] if cut < events.shape[0] else []
        self.frontier = limit
        out = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0, EVENT_DTYPE))
        if len(parts) > 1:
            out = out[np.argsort(out["ingest_ts"], kind="stable")]
        return self._aligned(out)

    def _aligned(self, events: EventArray) -> EventArray:
        if events.shape[0] == 0:
            return events
        lag = events["ingest_ts"] - events["exchange_ts"]
        if self.shift is None:
            self.shift = max(0, self.min_feed_latency_ns - int(lag.min()))
        if self.shift:
            events["ingest_ts"] += self.shift
        early = events["ingest_ts"] < events["exchange_ts"]
        if early.any():
            self.clock_fixes += int(early.sum())
            fixed = np.maximum.accumulate(np.maximum(events["ingest_ts"], events["exchange_ts"]))
            events["ingest_ts"] = np.maximum(fixed, self._last_out)
        self._last_out = int(events["ingest_ts"][-1])
        self.released += int(events.shape[0])
        return events

    @property
    def local_frontier(self) -> int:
        """:attr:`frontier` on the simulator's (shifted) clock."""
        return self.frontier + (self.shift or 0)
