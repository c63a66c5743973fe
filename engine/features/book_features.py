"""Order-book features, one row per valid book top.

Why per top: the book changes once per applied depth message and every top-of-book feature (mid,
microprice, spread, depth, queue imbalance, OFI, slope, near-touch void) is a function of that top and
the previous valid top of the same symbol. The kernel walks a micro-batch of tops once, keeps the
previous top per symbol in state arrays, and writes into a preallocated output (at most one row per top).

Validity: a top with ``synced == 0`` (book waiting for a snapshot or after a gap) or ``crossed == 1`` (or a
missing/crossed touch) produces **no row**. Its symbol's previous top is forgotten, so the next valid row
has NaN in the change features (``dmicro_bps``, ``ofi1``, ``ofi_n``) and carries ``FEAT_FIRST`` and
``FEAT_AFTER_SKIP``: a consumer can always tell a quiet book from an untrustworthy one. Definitions,
units and windows are in ``docs/features.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numba
import numpy as np
import numpy.typing as npt

from ..events import EventArray
from ._state import capacity_for, copy_rows, grow, max_symbol
from .schema import BOOK_FEATURE_DTYPE, FEAT_AFTER_SKIP, FEAT_DEGRADED, FEAT_FIRST

# previous-top slots (axis 1 of the prev array)
_P_BID_PX, _P_BID_QTY, _P_ASK_PX, _P_ASK_QTY = 0, 1, 2, 3
# per-symbol int state (axis 1)
_S_HAS_PREV = 0  # a comparable previous top is stored
_S_SKIPPED = 1  # tops were skipped since the last row
_S_N_UNSYNCED = 2  # tops skipped because synced == 0 (lifetime count)
_S_N_CROSSED = 3  # tops skipped because crossed or no valid touch (lifetime count)
_S_N_ROWS = 4  # rows emitted (lifetime count)
_N_SSTATE = 5
# shared zero-length results for batches without tops (nothing can be written into them)
_NO_ROWS = np.zeros(0, BOOK_FEATURE_DTYPE)
_NO_INDEX = np.zeros(0, np.int64)


@dataclass(frozen=True)
class BookFeatureSpec:
    """What the book kernel computes.

    ``levels``: N, the depth used by ``qi_n``, ``ofi_n`` and the slopes (≤ the levels of the tops).
    ``qi_decay``: weight of level *i* (1-based) in ``qi_n`` is ``qi_decay ** (i - 1)``; 1.0 = equal weights.
    ``void_ticks``: W, width of the near-touch window in ticks (touch included); must be ≤ ``levels`` so
    the window is always fully observed. ``tick_sizes``: symbol id → tick size in quote currency; a symbol
    without one gets NaN voids.
    """

    levels: int = 10
    qi_decay: float = 0.5
    void_ticks: int = 10
    tick_sizes: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"BookFeatureSpec.levels must be >= 1, got {self.levels}")
        if not 0.0 < self.qi_decay <= 1.0:
            raise ValueError(f"BookFeatureSpec.qi_decay must be in (0, 1], got {self.qi_decay}")
        if not 1 <= self.void_ticks <= self.levels:
            raise ValueError(f"BookFeatureSpec.void_ticks must be in [1, levels={self.levels}], got {self.void_ticks}")
        for sym, tick in self.tick_sizes.items():
            if not tick > 0.0:
                raise ValueError(f"BookFeatureSpec.tick_sizes[{sym}] must be > 0, got {tick}")

    def weights(self) -> npt.NDArray[np.float64]:
        """Per-level weights of ``qi_n``: ``qi_decay ** (i - 1)`` for i = 1..levels."""
        return np.asarray(self.qi_decay ** np.arange(self.levels), dtype=np.float64)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _q(x: float) -> float:
    """Quantity with NaN (beyond the book's depth) read as zero."""
    return 0.0 if math.isnan(x) else x


@numba.njit(cache=True, error_model="numpy", inline="always")
def ofi_level(pb: float, qb: float, pa: float, qa: float, ppb: float, pqb: float, ppa: float, pqa: float) -> float:
    """Cont–Kukanov–Stoikov order-flow contribution of one level between two tops (base units).

    ``e = qb·1[pb ≥ ppb] − pqb·1[pb ≤ ppb] − qa·1[pa ≤ ppa] + pqa·1[pa ≥ ppa]``; a side contributes only
    when the level's price exists in both tops (NaN beyond the book's depth contributes nothing).
    """
    e = 0.0
    if _finite(pb) and _finite(ppb):
        if pb >= ppb:
            e += _q(qb)
        if pb <= ppb:
            e -= _q(pqb)
    if _finite(pa) and _finite(ppa):
        if pa <= ppa:
            e -= _q(qa)
        if pa >= ppa:
            e += _q(pqa)
    return e


@numba.njit(cache=True, error_model="numpy")
def _book_kernel(
    tops: EventArray,
    n_levels: int,
    weights: npt.NDArray[np.float64],
    ticks: npt.NDArray[np.float64],
    void_ticks: int,
    prev: npt.NDArray[np.float64],
    prev_micro: npt.NDArray[np.float64],
    st: npt.NDArray[np.int64],
    out: EventArray,
    out_index: npt.NDArray[np.int64],
) -> int:
    """Write one row per valid top into ``out``; return the number of rows (never more than ``len(tops)``)."""
    k = 0
    for j in range(tops.shape[0]):
        t = tops[j]
        s = t.symbol
        bpx = t.bid_px
        bq = t.bid_qty
        apx = t.ask_px
        aq = t.ask_qty
        b1 = bpx[0]
        a1 = apx[0]
        qb1 = bq[0]
        qa1 = aq[0]
        if t.synced == 0:
            st[s, _S_HAS_PREV] = 0
            st[s, _S_SKIPPED] = 1
            st[s, _S_N_UNSYNCED] += 1
            continue
        if (
            t.crossed != 0
            or not (_finite(b1) and _finite(a1) and b1 < a1)
            or not (_finite(qb1) and _finite(qa1) and qb1 > 0.0 and qa1 > 0.0)
        ):
            st[s, _S_HAS_PREV] = 0
            st[s, _S_SKIPPED] = 1
            st[s, _S_N_CROSSED] += 1
            continue
        r = out[k]
        flags = 0
        has_prev = st[s, _S_HAS_PREV] == 1
        if not has_prev:
            flags |= FEAT_FIRST
        if st[s, _S_SKIPPED] == 1:
            flags |= FEAT_AFTER_SKIP
        if t.degraded != 0:
            flags |= FEAT_DEGRADED
        mid = 0.5 * (b1 + a1)
        micro = (b1 * qa1 + a1 * qb1) / (qb1 + qa1)
        r.symbol = s
        r.flags = flags
        r.exchange_ts = t.exchange_ts
        r.ingest_ts = t.ingest_ts
        r.seq = t.seq
        r.mid = mid
        r.microprice = micro
        r.spread_bps = (a1 - b1) / mid * 1e4
        r.bid_depth1_quote = b1 * qb1
        r.ask_depth1_quote = a1 * qa1
        r.depth1_quote = b1 * qb1 + a1 * qa1
        r.qi1 = (qb1 - qa1) / (qb1 + qa1)
        # One pass over the levels computes everything that needs them (all scalar code: helpers taking
        # arrays would cost a call and reference counting per top). Slopes use Welford-style running
        # means and co-moments: single pass, and stable whatever the magnitude of the depth.
        inv_mid = 1e4 / mid
        tick = ticks[s]
        inv_tick = 1.0 / tick if tick > 0.0 else np.nan
        qnum = 0.0
        qden = 0.0
        o1 = 0.0
        on = 0.0
        b_alive = True
        a_alive = True
        b_m = 0
        a_m = 0
        b_cum = 0.0
        a_cum = 0.0
        b_mx = 0.0
        b_my = 0.0
        b_cxx = 0.0
        b_cxy = 0.0
        a_mx = 0.0
        a_my = 0.0
        a_cxx = 0.0
        a_cxy = 0.0
        b_void_open = tick > 0.0
        a_void_open = tick > 0.0
        w_edge = void_ticks - 0.5  # a level at distance d ticks (d rounded) is inside when d < void_ticks
        b_cnt = 0
        a_cnt = 0
        for i in range(n_levels):
            pb = bpx[i]
            qb_raw = bq[i]
            pa = apx[i]
            qa_raw = aq[i]
            qb = _q(qb_raw)
            qa = _q(qa_raw)
            qnum += weights[i] * (qb - qa)
            qden += weights[i] * (qb + qa)
            if has_prev:
                e = ofi_level(
                    pb,
                    qb_raw,
                    pa,
                    qa_raw,
                    prev[s, _P_BID_PX, i],
                    prev[s, _P_BID_QTY, i],
                    prev[s, _P_ASK_PX, i],
                    prev[s, _P_ASK_QTY, i],
                )
                if i == 0:
                    o1 = e
                on += e
            # bid side: slope over levels up to the first missing one; void over the first void_ticks ticks
            if b_alive:
                if _finite(pb) and _finite(qb_raw) and qb_raw > 0.0:
                    b_cum += pb * qb_raw
                    x = (mid - pb) * inv_mid
                    b_m += 1
                    dx = x - b_mx
                    b_mx += dx / b_m
                    dy = b_cum - b_my
                    b_my += dy / b_m
                    b_cxx += dx * (x - b_mx)
                    b_cxy += dx * (b_cum - b_my)
                else:
                    b_alive = False
            if b_void_open:
                if not _finite(pb):
                    b_void_open = False
                elif qb_raw > 0.0:
                    if (b1 - pb) * inv_tick >= w_edge:
                        b_void_open = False
                    else:
                        b_cnt += 1
            if a_alive:
                if _finite(pa) and _finite(qa_raw) and qa_raw > 0.0:
                    a_cum += pa * qa_raw
                    x = (pa - mid) * inv_mid
                    a_m += 1
                    dx = x - a_mx
                    a_mx += dx / a_m
                    dy = a_cum - a_my
                    a_my += dy / a_m
                    a_cxx += dx * (x - a_mx)
                    a_cxy += dx * (a_cum - a_my)
                else:
                    a_alive = False
            if a_void_open:
                if not _finite(pa):
                    a_void_open = False
                elif qa_raw > 0.0:
                    if (pa - a1) * inv_tick >= w_edge:
                        a_void_open = False
                    else:
                        a_cnt += 1
        r.qi_n = qnum / qden
        if has_prev:
            r.dmicro_bps = (micro / prev_micro[s] - 1.0) * 1e4
            r.ofi1 = o1
            r.ofi_n = on
        else:
            r.dmicro_bps = np.nan
            r.ofi1 = np.nan
            r.ofi_n = np.nan
        r.bid_slope = b_cxy / b_cxx if b_m >= 2 and b_cxx > 0.0 else np.nan
        r.ask_slope = a_cxy / a_cxx if a_m >= 2 and a_cxx > 0.0 else np.nan
        r.bid_void = 1.0 - b_cnt / void_ticks if tick > 0.0 else np.nan
        r.ask_void = 1.0 - a_cnt / void_ticks if tick > 0.0 else np.nan
        for i in range(n_levels):
            prev[s, _P_BID_PX, i] = bpx[i]
            prev[s, _P_BID_QTY, i] = bq[i]
            prev[s, _P_ASK_PX, i] = apx[i]
            prev[s, _P_ASK_QTY, i] = aq[i]
        prev_micro[s] = micro
        st[s, _S_HAS_PREV] = 1
        st[s, _S_SKIPPED] = 0
        st[s, _S_N_ROWS] += 1
        out_index[k] = j
        k += 1
    return k


class BookFeatures:
    """Online book-feature state: feed tops micro-batch by micro-batch, get the rows of each batch.

    Feeding a day in one call or in any split gives identical rows (the previous top per symbol is the only
    carried state). ``skipped_unsynced`` / ``skipped_crossed`` count the tops that produced no row.
    """

    def __init__(self, spec: BookFeatureSpec | None = None) -> None:
        self.spec = spec or BookFeatureSpec()
        self._weights = self.spec.weights()
        self._n_sym = 0
        self._prev: npt.NDArray[np.float64] = np.full((0, 4, self.spec.levels), np.nan)
        self._prev_micro: npt.NDArray[np.float64] = np.full(0, np.nan)
        self._st: npt.NDArray[np.int64] = np.zeros((0, _N_SSTATE), dtype=np.int64)
        self._ticks: npt.NDArray[np.float64] = np.full(0, np.nan)
        self._out = np.empty(16, BOOK_FEATURE_DTYPE)
        self._out_index = np.empty(16, np.int64)

    def _ensure_symbols(self, n: int) -> None:
        if n <= self._n_sym:
            return
        cap = capacity_for(n, self._n_sym)
        self._prev = grow(self._prev, cap, np.nan)
        self._prev_micro = grow(self._prev_micro, cap, np.nan)
        self._st = grow(self._st, cap, 0)
        self._ticks = np.array([self.spec.tick_sizes.get(s, np.nan) for s in range(cap)], dtype=np.float64)
        self._n_sym = cap

    def update(self, tops: EventArray | None) -> tuple[EventArray, npt.NDArray[np.int64]]:
        """Rows for the valid tops of this batch, and the index of each row's top in ``tops``."""
        if tops is None or tops.shape[0] == 0:
            return _NO_ROWS, _NO_INDEX
        levels = tops.dtype["bid_px"].shape[0] if tops.dtype["bid_px"].shape else 1
        if levels < self.spec.levels:
            raise ValueError(f"tops carry {levels} levels but BookFeatureSpec.levels is {self.spec.levels}")
        self._ensure_symbols(max_symbol(tops) + 1)
        if self._out.shape[0] < tops.shape[0]:  # reusable scratch; the rows are copied out below
            self._out = np.empty(max(tops.shape[0], 2 * self._out.shape[0]), BOOK_FEATURE_DTYPE)
            self._out_index = np.empty(self._out.shape[0], np.int64)
        out = self._out
        out_index = self._out_index
        n = _book_kernel(
            tops,
            self.spec.levels,
            self._weights,
            self._ticks,
            self.spec.void_ticks,
            self._prev,
            self._prev_micro,
            self._st,
            out,
            out_index,
        )
        return copy_rows(out[:n]), out_index[:n].copy()

    def _count(self, slot: int) -> dict[int, int]:
        return {s: int(v) for s, v in enumerate(self._st[: self._n_sym, slot]) if v}

    @property
    def skipped_unsynced(self) -> dict[int, int]:
        """Symbol id → number of tops skipped because the book was not synced."""
        return self._count(_S_N_UNSYNCED)

    @property
    def skipped_crossed(self) -> dict[int, int]:
        """Symbol id → number of tops skipped because the book was crossed or had no valid touch."""
        return self._count(_S_N_CROSSED)


def compute_book_features(
    tops: EventArray, spec: BookFeatureSpec | None = None
) -> tuple[EventArray, npt.NDArray[np.int64]]:
    """Batch path: all rows of a day of tops at once (a fresh :class:`BookFeatures` fed one batch)."""
    return BookFeatures(spec).update(tops)
