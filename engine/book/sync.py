"""L2 books for many symbols, kept in sync with Binance's snapshot + diff protocol, one micro-batch at a time.

Why a stateful object around stateless kernels: the books, the pre-snapshot buffers and the sync state must
survive from one micro-batch to the next (a batch may even end inside a message), while the kernels must
stay plain functions of arrays for numba. :class:`BookSet` owns those arrays and makes exactly one kernel
call per :meth:`BookSet.apply`; the arrays it returns are the caller's to keep (the empty gap and resync
arrays of a quiet batch are shared and read-only).

The protocol as implemented (docs/book.md has the long form):

- Before a symbol's first REST snapshot, and after any break, its diffs go into a bounded buffer and its
  tops say ``synced=0``. A resync request asks the caller for a new snapshot.
- A SNAPSHOT replaces the book at ``lastUpdateId`` (lid). Buffered and later diffs with ``u < t`` are stale
  (``t = lid`` on futures, ``lid + 1`` on spot); the first applicable diff must have ``U <= t <= u`` (a futures
  diff with ``pu == lid`` also continues the snapshot exactly); from then on futures chain by
  ``pu == previous u`` and spot by ``U == previous u + 1``.
- Any break is a gap record at the exact message, the book empties and unsyncs, and the cycle restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from ..events import ASK, BID, EVENT_DTYPE, LAST_IN_MSG, SNAPSHOT, EventArray, book_top_dtype, empty_events
from . import kernels as kn

#: One row per detected break, at the exact message that broke the chain.
GAP_DTYPE: Final = np.dtype(
    [
        ("event_index", "i8"),  #: index in the batch of the message's first event; −1 if it came in an earlier batch
        ("stream_index", "i8"),  #: the same position counted over every event fed to this BookSet
        ("symbol", "u4"),
        ("reason", "u1"),  #: GAP_CHAIN, GAP_SNAPSHOT_TOO_OLD or GAP_TRUNCATED
        ("expected", "i8"),  #: what the rules required: futures pu = previous u; spot U = previous u + 1; after a
        #: snapshot U <= lid (futures) or lid + 1 (spot)
        ("got", "i8"),  #: the id the message carried
        ("seq", "i8"),  #: u of the offending message
        ("exchange_ts", "i8"),
    ],
    align=True,
)

#: One row per request for a fresh REST snapshot.
RESYNC_DTYPE: Final = np.dtype(
    [
        ("symbol", "u4"),
        ("event_index", "i8"),  #: index in the batch of the event that triggered the request
        ("stream_index", "i8"),
        ("reason", "u1"),  #: RESYNC_NO_SNAPSHOT, RESYNC_GAP, RESYNC_BUFFER_OVERFLOW (RESYNC_GAP_RATIO: quality)
    ],
    align=True,
)

# Shared, read-only results for the common batch without gaps or resync requests.
_NO_GAPS: Final = np.empty(0, GAP_DTYPE)
_NO_RESYNCS: Final = np.empty(0, RESYNC_DTYPE)
_NO_GAPS.flags.writeable = False
_NO_RESYNCS.flags.writeable = False

#: Human-readable unsynced reasons (reports, logs).
UNSYNCED_REASONS: Final = {
    kn.REASON_NO_SNAPSHOT: "no snapshot received",
    kn.REASON_GAP: "sequence gap: a diff did not chain to the previous one",
    kn.REASON_SNAPSHOT_TOO_OLD: "snapshot older than the diff stream: first diff after it starts beyond lastUpdateId",
    kn.REASON_TRUNCATED: "a message ended without its last event",
    kn.REASON_OFF_TICK: "a price was off the tick grid (tick configured or inferred too coarse)",
}

_STATE_NAMES: Final = {kn.WAIT_SNAPSHOT: "wait_snapshot", kn.WAIT_FIRST_DIFF: "wait_first_diff", kn.SYNCED: "synced"}


class BookCapacityError(RuntimeError):
    """An output buffer of the book kernel was too small (a bug: outputs are sized from a pre-scan)."""


@dataclass(frozen=True)
class BookConfig:
    """Book sizes and per-symbol tick sizes.

    ``tick_sizes`` maps symbol id → the market's price tick (quote units, e.g. 0.1 for USD-M BTCUSDT, 0.01
    for spot BTCUSDT: exchangeInfo's PRICE_FILTER). A symbol without an entry gets its tick inferred from its
    first snapshot: the finest decimal any of its ~2000 levels needs. Should a later price be finer than
    that (off the grid), the inferred tick is refined and the book resyncs rather than merging two levels.

    ``window_ticks``: the price range each book holds, in ticks, centred on the market (2 × 8 bytes × width
    per symbol: 2 MiB at the default). The default covers ±65k ticks: ±$655 on spot BTCUSDT, ±$6.5k on
    USD-M, several times the REST snapshot's 1000 levels (about ±$200 and ±$17 there).
    """

    levels: int = 10  #: levels per side in each emitted top (book_top_dtype(levels))
    window_ticks: int = 1 << 17
    buffer_events: int = 16384  #: pre-snapshot buffer per symbol, in level events (~1 MiB per symbol)
    tick_sizes: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("levels", "window_ticks", "buffer_events"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BookConfig.{name} must be an int ≥ 1, got {value!r}")
        if self.window_ticks < 64:
            raise ValueError(f"BookConfig.window_ticks must be ≥ 64, got {self.window_ticks}")
        for sym, tick in self.tick_sizes.items():
            if not (isinstance(tick, int | float) and tick > 0):
                raise ValueError(f"BookConfig.tick_sizes[{sym}] must be a number > 0, got {tick!r}")

    def inv_tick(self, symbol: int) -> float:
        """1 / tick (0.0: infer at the first snapshot), snapped to an integer when it is one (decimal ticks),
        so that ``tick_index / inv_tick`` reproduces the exchange's decimal price exactly."""
        tick = self.tick_sizes.get(symbol)
        if tick is None:
            return 0.0
        inv = 1.0 / tick
        nearest = float(round(inv))
        return nearest if nearest > 0 and abs(inv - nearest) <= 1e-9 * inv else inv


@dataclass(frozen=True, slots=True)
class BookBatch:
    """What one :meth:`BookSet.apply` produced.

    ``tops``: one row per depth/snapshot message whose last event is in the batch, in event order — every
    applied message (synced=1) and every message that arrived while its book was unsynced (synced=0, NaN
    levels); stale diffs and ignored snapshots change nothing and emit nothing.
    ``top_event_index``: index into the input batch of each top's LAST_IN_MSG event.
    ``gaps``: :data:`GAP_DTYPE` rows; ``resync_requests``: :data:`RESYNC_DTYPE` rows (a symbol appears once
    per request, so several times if it broke several times in one batch).
    ``counters``: how much each counter (:data:`~tradeplane.engine.book.kernels.COUNTER_NAMES`) grew in this
    batch, summed over symbols.
    """

    tops: npt.NDArray[np.void]
    top_event_index: npt.NDArray[np.int64]
    gaps: npt.NDArray[np.void]
    resync_requests: npt.NDArray[np.void]
    counters: dict[str, int]

    @property
    def resync_symbols(self) -> npt.NDArray[np.uint32]:
        """Distinct symbols that asked for a new REST snapshot in this batch."""
        return np.unique(self.resync_requests["symbol"])


@dataclass(frozen=True, slots=True)
class BookLevels:
    """A book's full depth, best level first on each side (prices in quote units, quantities in base)."""

    bid_px: npt.NDArray[np.float64]
    bid_qty: npt.NDArray[np.float64]
    ask_px: npt.NDArray[np.float64]
    ask_qty: npt.NDArray[np.float64]


class BookSet:
    """L2 books for a growing set of symbol ids, updated by one numba call per micro-batch.

    Symbols are dense ids from :class:`~tradeplane.engine.events.SymbolTable`; state grows when a batch
    mentions a new id. Spot or futures sequencing is read from each diff (``prev_seq`` is −1 on spot).
    """

    def __init__(self, config: BookConfig | None = None, n_symbols: int = 1) -> None:
        self.config = config or BookConfig()
        self.top_dtype: np.dtype[np.void] = book_top_dtype(self.config.levels)
        self._width = self.config.window_ticks
        self._n = 0
        self._stream = 0
        self._st = np.zeros((0, kn.N_ST), np.int64)
        self._counters = np.zeros((0, kn.N_COUNTERS), np.int64)
        self._batch_counters = np.zeros(kn.N_COUNTERS, np.int64)  #: what the last batch added (all symbols)
        self._g = np.empty((0, kn.N_G), np.int64)
        self._epoch = 0
        self._touched = np.zeros(0, np.int64)
        self._before = np.zeros((0, kn.N_COUNTERS), np.int64)
        self._r = np.empty((0, kn.N_R), np.int64)
        self._bq = np.zeros(0, np.float64)
        self._aq = np.zeros(0, np.float64)
        self._inv = np.zeros(0, np.float64)
        self._buf_i = np.zeros((0, kn.N_B), np.int64)
        self._buf_f = np.zeros((0, 2), np.float64)
        self._grow(max(n_symbols, 1))

    # --- state ------------------------------------------------------------------------------------------------

    @property
    def n_symbols(self) -> int:
        return self._n

    @property
    def stream_position(self) -> int:
        """Events fed so far (the ``stream_index`` of the next batch's first event)."""
        return self._stream

    def _grow(self, n: int) -> None:
        """Make room for symbol ids below ``n``; new symbols wait for a snapshot."""
        if n <= self._n:
            return
        add = n - self._n
        w, bc = self._width, self.config.buffer_events
        st = np.zeros((add, kn.N_ST), np.int64)
        st[:, kn.ST_STATE] = kn.WAIT_SNAPSHOT
        st[:, kn.ST_REASON] = kn.REASON_NO_SNAPSHOT
        st[:, kn.ST_BB] = -1
        st[:, kn.ST_BA] = w
        inv = np.array([self.config.inv_tick(s) for s in range(self._n, n)], np.float64)
        st[:, kn.ST_TICK_FIXED] = inv > 0
        st[:, kn.ST_DECIMALS] = -1
        self._st = np.concatenate([self._st, st])
        self._counters = np.concatenate([self._counters, np.zeros((add, kn.N_COUNTERS), np.int64)])
        self._touched = np.zeros(n, np.int64)
        self._before = np.zeros((n, kn.N_COUNTERS), np.int64)
        self._bq = np.concatenate([self._bq, np.zeros(add * w, np.float64)])
        self._aq = np.concatenate([self._aq, np.zeros(add * w, np.float64)])
        self._inv = np.concatenate([self._inv, inv])
        self._buf_i = np.concatenate([self._buf_i, np.zeros((add * bc, kn.N_B), np.int64)])
        self._buf_f = np.concatenate([self._buf_f, np.zeros((add * bc, 2), np.float64)])
        self._n = n

    def _check(self, symbol: int) -> None:
        if not 0 <= symbol < self._n:
            raise KeyError(f"symbol id {symbol} unknown to this BookSet (ids 0..{self._n - 1})")

    def state(self, symbol: int) -> str:
        """``wait_snapshot``, ``wait_first_diff`` (snapshot applied, book valid) or ``synced``."""
        self._check(symbol)
        return _STATE_NAMES[int(self._st[symbol, kn.ST_STATE])]

    def is_synced(self, symbol: int) -> bool:
        """True when the book is exact as of :meth:`last_update_id` (its tops say synced=1)."""
        self._check(symbol)
        return int(self._st[symbol, kn.ST_STATE]) != kn.WAIT_SNAPSHOT

    def unsynced_reason(self, symbol: int) -> str | None:
        """Why the book is not synced (None when it is)."""
        if self.is_synced(symbol):
            return None
        reason = int(self._st[symbol, kn.ST_REASON])
        return UNSYNCED_REASONS.get(reason, f"unknown reason {reason}")

    def last_update_id(self, symbol: int) -> int:
        """u of the last applied diff (lastUpdateId right after a snapshot); meaningful only when synced."""
        self._check(symbol)
        return int(self._st[symbol, kn.ST_LAST_U])

    def counters(self, symbol: int | None = None) -> dict[str, int]:
        """Lifetime counters of one symbol, or summed over all symbols."""
        if symbol is None:
            row = self._counters.sum(axis=0)
        else:
            self._check(symbol)
            row = self._counters[symbol]
        return {name: int(v) for name, v in zip(kn.COUNTER_NAMES, row, strict=True)}

    def tick_size(self, symbol: int) -> float | None:
        """The tick the book keys levels by (configured or inferred); None before the first snapshot."""
        self._check(symbol)
        inv = float(self._inv[symbol])
        return 1.0 / inv if inv > 0 else None

    def levels(self, symbol: int) -> BookLevels:
        """The full book of one symbol, best first (empty arrays while unsynced)."""
        self._check(symbol)
        w = self._width
        if not self.is_synced(symbol):
            empty = np.zeros(0, np.float64)
            return BookLevels(empty, empty.copy(), empty.copy(), empty.copy())
        base_tick, inv = int(self._st[symbol, kn.ST_BASE]), float(self._inv[symbol])
        bq = self._bq[symbol * w : (symbol + 1) * w]
        aq = self._aq[symbol * w : (symbol + 1) * w]
        bi = np.flatnonzero(bq)[::-1]
        ai = np.flatnonzero(aq)
        return BookLevels(
            bid_px=(base_tick + bi) / inv,
            bid_qty=bq[bi],
            ask_px=(base_tick + ai) / inv,
            ask_qty=aq[ai],
        )

    def to_snapshot(self, symbol: int, exchange_ts: int = 0, ingest_ts: int = 0) -> EventArray:
        """The book as SNAPSHOT events (bids then asks, best first, LAST_IN_MSG on the last) at its last u.

        A checkpoint in the event format: feeding it to a fresh BookSet, followed by the diffs after
        :meth:`last_update_id`, rebuilds the same book. An empty book becomes one NaN event.
        """
        if not self.is_synced(symbol):
            raise ValueError(f"symbol {symbol}: the book is not synced ({self.unsynced_reason(symbol)})")
        lv = self.levels(symbol)
        nb, na = lv.bid_px.shape[0], lv.ask_px.shape[0]
        ev = empty_events(max(nb + na, 1))
        ev["kind"] = SNAPSHOT
        ev["kind"][:nb] |= BID
        ev["kind"][nb : nb + na] |= ASK
        ev["kind"][-1] |= LAST_IN_MSG
        ev["symbol"] = symbol
        ev["exchange_ts"] = exchange_ts
        ev["ingest_ts"] = ingest_ts
        if nb + na == 0:
            ev["px"] = np.nan
            ev["qty"] = np.nan
        else:
            ev["px"] = np.concatenate([lv.bid_px, lv.ask_px])
            ev["qty"] = np.concatenate([lv.bid_qty, lv.ask_qty])
        ev["seq"] = ev["first_seq"] = self.last_update_id(symbol)
        ev["prev_seq"] = -1
        return ev

    # --- the hot path ------------------------------------------------------------------------------------------

    def apply(self, events: EventArray) -> BookBatch:
        """Apply one micro-batch of events (any kinds; only DEPTH and SNAPSHOT are read) in order.

        Raises TypeError for a batch that is not a 1-D EVENT_DTYPE array, and BookCapacityError if a kernel
        output overflowed (outputs are sized from a pre-scan, so that would be a bug).
        """
        if (events.dtype is not EVENT_DTYPE and events.dtype != EVENT_DTYPE) or events.ndim != 1:
            raise TypeError(f"events must be a 1-D EVENT_DTYPE array, got dtype={events.dtype} ndim={events.ndim}")
        if not events.flags.c_contiguous:
            events = np.ascontiguousarray(events)  # one kernel specialisation (C-contiguous records)
        n_last, max_sym = kn.prescan(events)
        if max_sym >= self._n:
            self._grow(max_sym + 1)
        # zeros, not empty: the padding bytes are deterministic too (tops are hashed and shipped as bytes).
        tops = np.zeros(n_last, self.top_dtype)
        t_index = np.empty(n_last, np.int64)
        # Each message touched by the batch (ends in it, or is the one trailing message per symbol) yields at
        # most one gap and two resync requests (gap or first diff, then buffer overflow). Reused buffers:
        # gaps are rare, so only their rows are copied out.
        need = n_last + self._n
        if self._g.shape[0] < need:
            self._g = np.empty((2 * need, kn.N_G), np.int64)
            self._r = np.empty((4 * need, kn.N_R), np.int64)
        g, r = self._g[:need], self._r[: 2 * need]
        self._epoch += 1
        status, nt, ng, nr = kn.apply_batch(
            events,
            self._stream,
            self._st,
            self._counters,
            self._batch_counters,
            self._epoch,
            self._touched,
            self._before,
            self._bq,
            self._aq,
            self._inv,
            self._width,
            self._buf_i,
            self._buf_f,
            self.config.buffer_events,
            tops,
            t_index,
            g,
            r,
        )
        self._stream += events.shape[0]
        if status != kn.OK:
            raise BookCapacityError(
                f"book kernel output full (status {status}: tops {nt}/{n_last}, gaps {ng}/{g.shape[0]}, "
                f"resyncs {nr}/{r.shape[0]}); the BookSet state is now partial and must be rebuilt"
            )
        return BookBatch(
            tops=tops if nt == n_last else tops[:nt],
            top_event_index=t_index if nt == n_last else t_index[:nt],
            gaps=_gap_records(g[:ng]) if ng else _NO_GAPS,
            resync_requests=_resync_records(r[:nr]) if nr else _NO_RESYNCS,
            counters=dict(zip(kn.COUNTER_NAMES, self._batch_counters.tolist(), strict=True)),
        )


def _gap_records(g: npt.NDArray[np.int64]) -> npt.NDArray[np.void]:
    out = np.empty(g.shape[0], GAP_DTYPE)
    out["event_index"] = g[:, kn.G_EVENT]
    out["stream_index"] = g[:, kn.G_STREAM]
    out["symbol"] = g[:, kn.G_SYMBOL]
    out["reason"] = g[:, kn.G_REASON]
    out["expected"] = g[:, kn.G_EXPECTED]
    out["got"] = g[:, kn.G_GOT]
    out["seq"] = g[:, kn.G_SEQ]
    out["exchange_ts"] = g[:, kn.G_ETS]
    return out


def _resync_records(r: npt.NDArray[np.int64]) -> npt.NDArray[np.void]:
    out = np.empty(r.shape[0], RESYNC_DTYPE)
    out["symbol"] = r[:, kn.R_SYMBOL]
    out["event_index"] = r[:, kn.R_EVENT]
    out["stream_index"] = r[:, kn.R_STREAM]
    out["reason"] = r[:, kn.R_REASON]
    return out
