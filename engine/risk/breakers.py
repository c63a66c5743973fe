"""Circuit breakers: stop new entries while the inputs the decisions rely on are unhealthy.

Why breakers stop entries and not exits: a decision made on stale or gappy data, or one that took too long to
compute, should not open risk; but closing risk must never wait for the data to heal.

Every breaker has the same life cycle (:class:`Breaker`), with ``cooldown = breakers.cooldownSeconds``::

    ok ──input bad──► tripped ──input ok──► cooling down ──cooldown elapsed, input still ok──► ok
                         ▲                      │
                         └──────input bad───────┘   (the cooldown starts again at the next recovery)

The cooldown keeps a flapping input (lag hovering around its limit) from switching entries on and off every
tick. Inputs:

- ingest lag: the latest ``ingest_ts − exchange_ts`` reported by the runtime; bad when > ``maxIngestLagMs``;
- feed gap ratio: the share of sequence gaps per minute the runtime computes; bad when > ``maxFeedGapRatioPct``;
- decision latency: the p99 over the rolling minute of every latency reported (:class:`LatencyWindow`); bad
  when > ``maxDecisionLatencyP99Ms``; a minute with no decisions has no p99 and counts as healthy;
- drawdown: bad while the drawdown from the equity peak is ≥ ``reduceAtPct`` % of ``maxDrawdownPct`` (the spec has
  no separate threshold; the breaker adds the cooldown on the way out of that zone).

A breaker only changes on an input or on :meth:`Breakers.tick`; a feed that stops reporting leaves its breaker
as it was (staleness is the decision's data-quality gate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from . import reasons
from .config import RiskConfig

_NS_PER_S: Final = 1_000_000_000
_NS_PER_MS: Final = 1_000_000
WINDOW_S: Final = 60  #: the rolling window of the latency p99: 60 one-second slots

#: Latency histogram: bucket 0 is (0, 1 µs], bucket i is (1 µs · r^(i−1), 1 µs · r^i], the last one is overflow.
_LAT_LO_NS: Final = 1_000.0
_LAT_RATIO: Final = 1.05
_LAT_BUCKETS: Final = math.ceil(math.log(60 * _NS_PER_S / _LAT_LO_NS) / math.log(_LAT_RATIO)) + 1
_LAT_EDGES: Final = np.append(_LAT_LO_NS * _LAT_RATIO ** np.arange(_LAT_BUCKETS, dtype=np.float64), np.inf)


@dataclass(slots=True)
class Breaker:
    """One breaker's state: tripped since when, recovering since when, and the last input value."""

    code: str
    tripped: bool = False
    tripped_at: int = 0
    recovered_at: int = -1  # ns of the first healthy input after the trip; -1 while the input is still bad
    value: float = math.nan

    def update(self, bad: bool, value: float, ts: int, cooldown_ns: int) -> bool:
        """Feed one input; True when the breaker tripped or cleared because of it."""
        self.value = value
        if bad:
            self.recovered_at = -1
            if not self.tripped:
                self.tripped, self.tripped_at = True, ts
                return True
            return False
        if self.tripped and self.recovered_at < 0:
            self.recovered_at = ts
        return self.expire(ts, cooldown_ns)

    def expire(self, ts: int, cooldown_ns: int) -> bool:
        """Clear the breaker when the input has been healthy for the cooldown; True when it cleared."""
        if self.tripped and self.recovered_at >= 0 and ts - self.recovered_at >= cooldown_ns:
            self.tripped, self.recovered_at = False, -1
            return True
        return False

    def active(self, ts: int, cooldown_ns: int) -> bool:
        """Whether the breaker blocks entries at ``ts`` (read-only: a cooldown that has elapsed counts as clear)."""
        return self.tripped and not (self.recovered_at >= 0 and ts - self.recovered_at >= cooldown_ns)


class LatencyWindow:
    """Decision latencies of the rolling minute as a bucketed histogram with bounded memory.

    60 one-second slots × ~370 log buckets 5 % wide: memory and the cost of a p99 do not grow with the decision
    rate. The window is the current second plus the 59 before it. The p99 is the nearest-rank 99th percentile
    reported as the *upper* edge of its bucket, so it over-states the true value by less than 5 % and a
    breaker can trip slightly early, never late.
    """

    def __init__(self) -> None:
        self._counts: npt.NDArray[np.int64] = np.zeros((WINDOW_S, _LAT_BUCKETS + 1), dtype=np.int64)
        self._slot_n: list[int] = [0] * WINDOW_S
        self._slot_sec: list[int] = [-1] * WINDOW_S
        self._total: npt.NDArray[np.int64] = np.zeros(_LAT_BUCKETS + 1, dtype=np.int64)
        self.count = 0
        self._sec = -1

    def advance(self, ts: int) -> None:
        """Move the window's end to the second of ``ts``, dropping the slots that fall out of it."""
        sec = ts // _NS_PER_S
        if sec <= self._sec:
            return
        for s in range(max(self._sec + 1, sec - WINDOW_S + 1), sec + 1):
            slot = s % WINDOW_S
            if self._slot_n[slot]:
                self._total -= self._counts[slot]
                self.count -= self._slot_n[slot]
                self._counts[slot] = 0
                self._slot_n[slot] = 0
            self._slot_sec[slot] = s
        self._sec = sec

    def add(self, ts: int, latency_ns: float) -> None:
        """Count one latency at ``ts``; a sample older than the window is dropped."""
        self.advance(ts)
        sec = ts // _NS_PER_S
        slot = sec % WINDOW_S
        if self._slot_sec[slot] != sec:
            return  # late sample from a second that has left the window
        if latency_ns <= _LAT_LO_NS:
            b = 0
        elif not math.isfinite(latency_ns):
            b = _LAT_BUCKETS
        else:
            b = min(math.ceil(math.log(latency_ns / _LAT_LO_NS) / math.log(_LAT_RATIO)), _LAT_BUCKETS)
        self._counts[slot, b] += 1
        self._total[b] += 1
        self._slot_n[slot] += 1
        self.count += 1

    def p99_ns(self) -> float:
        """The nearest-rank p99 of the window (upper bucket edge, ns); NaN when the window is empty."""
        if self.count == 0:
            return math.nan
        rank = math.ceil(0.99 * self.count)
        b = int(np.searchsorted(np.cumsum(self._total), rank, side="left"))
        return float(_LAT_EDGES[b])


class Breakers:
    """The four breakers of a RiskBudget and the latency window that feeds one of them."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self.ingest_lag = Breaker(reasons.BREAKER_INGEST_LAG)
        self.feed_gap = Breaker(reasons.BREAKER_FEED_GAP)
        self.decision_latency = Breaker(reasons.BREAKER_DECISION_LATENCY)
        self.drawdown = Breaker(reasons.BREAKER_DRAWDOWN)
        self.latency = LatencyWindow()

    @property
    def all(self) -> tuple[Breaker, Breaker, Breaker, Breaker]:
        """In reporting order (the first active one is the reason of a rejection)."""
        return (self.ingest_lag, self.feed_gap, self.decision_latency, self.drawdown)

    def observe(
        self,
        ts: int,
        *,
        ingest_lag_ms: float | None = None,
        gap_ratio_pct: float | None = None,
        decision_latency_ns: int | None = None,
    ) -> bool:
        """Feed the inputs that are given; True when any breaker tripped or cleared. A NaN input counts as bad."""
        b = self.config.breakers
        cd = self.config.cooldown_ns
        changed = False
        if ingest_lag_ms is not None:
            bad = not ingest_lag_ms <= b.max_ingest_lag_ms
            changed |= self.ingest_lag.update(bad, ingest_lag_ms, ts, cd)
        if gap_ratio_pct is not None:
            bad = not gap_ratio_pct <= b.max_feed_gap_ratio_pct
            changed |= self.feed_gap.update(bad, gap_ratio_pct, ts, cd)
        if decision_latency_ns is not None:
            self.latency.add(ts, float(decision_latency_ns))
            changed |= self._update_latency(ts)
        return changed | self.tick(ts)

    def observe_drawdown(self, ts: int, drawdown_pct: float) -> bool:
        """Feed the current drawdown; True when the drawdown breaker tripped or cleared."""
        limit = self.config.reduce_fraction * self.config.limits.max_drawdown_pct
        return self.drawdown.update(drawdown_pct >= limit, drawdown_pct, ts, self.config.cooldown_ns)

    def tick(self, ts: int) -> bool:
        """Let time pass: roll the latency window and end elapsed cooldowns; True when anything cleared."""
        self.latency.advance(ts)
        changed = self._update_latency(ts) if self.decision_latency.tripped else False
        cd = self.config.cooldown_ns
        for br in self.all:
            changed |= br.expire(ts, cd)
        return changed

    def _update_latency(self, ts: int) -> bool:
        p99 = self.latency.p99_ns()
        bad = p99 > self.config.breakers.max_decision_latency_p99_ms * _NS_PER_MS  # NaN (empty) is healthy
        return self.decision_latency.update(bad, p99 / _NS_PER_MS, ts, self.config.cooldown_ns)

    def active(self, ts: int) -> tuple[str, ...]:
        """Codes of the breakers that block entries at ``ts``."""
        cd = self.config.cooldown_ns
        return tuple(br.code for br in self.all if br.active(ts, cd))
