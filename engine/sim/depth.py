"""The simulator's own L2 depth: the engine book's tick-indexed storage and Binance sync, one message at a time.

Why not :class:`~tradeplane.engine.book.BookSet` itself: the matcher must interleave own-order events with
the book *between* messages (an order arriving at exchange time t sees exactly the messages up to t, and
resting orders need the level quantity before and after every message), while ``BookSet.apply`` consumes
whole micro-batches. Why not a second book implementation: the snapshot + diff protocol (buffering before
the snapshot, pu-chain gaps, resync, window re-centring) is subtle and already checked against bookTicker on
the real captures. So :class:`SimDepth` owns arrays in exactly ``BookSet``'s layout and the matching kernel
calls the book's own ``apply_batch`` kernel on each message's slice (≈ 6.5k calls on the USD-M capture).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

from ..book import kernels as kn
from ..book.sync import BookConfig
from ..events import KIND_MASK, LAST_IN_MSG, book_top_dtype

#: Gap / resync records of one message never exceed this (one gap + two requests, plus one of each from the
#: buffer replay at a snapshot).
_SCRATCH = 8


class SimDepth:
    """Per-symbol books (``BookSet`` layout) for the simulator; ticks must be configured, not inferred,
    because orders are priced in integer ticks of the same grid."""

    def __init__(self, tick_sizes: Mapping[int, float], window_ticks: int = 1 << 17, buffer_events: int = 16384):
        n = max(tick_sizes) + 1 if tick_sizes else 1
        missing = [s for s in range(n) if s not in tick_sizes]
        if missing:
            raise ValueError(f"tick size missing for symbol ids {missing} (ids must be dense from 0)")
        cfg = BookConfig(levels=1, window_ticks=window_ticks, buffer_events=buffer_events, tick_sizes=tick_sizes)
        self.n_symbols, self.width, self.buf_cap = n, window_ticks, buffer_events
        self.st = np.zeros((n, kn.N_ST), np.int64)
        self.st[:, kn.ST_STATE] = kn.WAIT_SNAPSHOT
        self.st[:, kn.ST_REASON] = kn.REASON_NO_SNAPSHOT
        self.st[:, kn.ST_BB] = -1
        self.st[:, kn.ST_BA] = window_ticks
        self.st[:, kn.ST_TICK_FIXED] = 1
        self.st[:, kn.ST_DECIMALS] = -1
        self.inv = np.array([cfg.inv_tick(s) for s in range(n)], np.float64)
        self.counters = np.zeros((n, kn.N_COUNTERS), np.int64)
        self.batch_counters = np.zeros(kn.N_COUNTERS, np.int64)
        self.touched = np.zeros(n, np.int64)
        self.before = np.zeros((n, kn.N_COUNTERS), np.int64)
        self.bq = np.zeros(n * window_ticks, np.float64)
        self.aq = np.zeros(n * window_ticks, np.float64)
        self.buf_i = np.zeros((n * buffer_events, kn.N_B), np.int64)
        self.buf_f = np.zeros((n * buffer_events, 2), np.float64)
        self.tops = np.zeros(_SCRATCH, book_top_dtype(1))
        self.t_index = np.zeros(_SCRATCH, np.int64)
        self.g = np.zeros((_SCRATCH, kn.N_G), np.int64)
        self.r = np.zeros((_SCRATCH, kn.N_R), np.int64)

    def is_synced(self, symbol: int) -> bool:
        return bool(self.st[symbol, kn.ST_STATE] != kn.WAIT_SNAPSHOT)

    def best_ticks(self, symbol: int) -> tuple[int | None, int | None]:
        """(best bid tick, best ask tick); None for an empty side."""
        s, base = self.st[symbol], int(self.st[symbol, kn.ST_BASE])
        bid = base + int(s[kn.ST_BB]) if s[kn.ST_NB] > 0 else None
        ask = base + int(s[kn.ST_BA]) if s[kn.ST_NA] > 0 else None
        return bid, ask

    def mid(self, symbol: int) -> float:
        """Mid price (NaN unless both sides exist and the book is synced)."""
        bid, ask = self.best_ticks(symbol)
        if bid is None or ask is None or not self.is_synced(symbol):
            return float("nan")
        return (bid + ask) / 2.0 / float(self.inv[symbol])

    def level_qty(self, symbol: int, is_bid: bool, tick: int) -> float:
        return float(level_qty(self.bq if is_bid else self.aq, self.st, symbol, tick, self.width))


@njit(cache=True, inline="always")
def level_qty(q: np.ndarray, st: np.ndarray, s: int, tick: int, width: int) -> float:
    """Displayed quantity at an absolute tick (0 outside the window or with no level)."""
    idx = tick - st[s, kn.ST_BASE]
    if idx < 0 or idx >= width:
        return 0.0
    return float(q[s * width + idx])


@njit(cache=True, inline="always")
def synced(st: np.ndarray, s: int) -> bool:
    return bool(st[s, kn.ST_STATE] != kn.WAIT_SNAPSHOT)


@njit(cache=True)
def message_end(events: np.ndarray, i: int) -> int:
    """Index one past the last event of the book message starting at ``i`` (its LAST_IN_MSG event, or the
    first event of another kind/symbol/seq: a truncated message, which the book kernel then reports)."""
    n: int = events.shape[0]
    s = events[i]["symbol"]
    u = events[i]["seq"]
    typ = events[i]["kind"] & KIND_MASK
    j = i
    while j < n:
        k = events[j]["kind"]
        if (k & KIND_MASK) != typ or events[j]["symbol"] != s or events[j]["seq"] != u:
            return j
        if k & LAST_IN_MSG:
            return j + 1
        j += 1
    return n
