"""Rolling bar features: one ``BAR_FEATURE_DTYPE`` row per bar of a clock.

Why a separate kernel from the clocks: the same feature code must run on bars from any clock and on
exchange klines (``bars_from_klines``) — the reference tests check ATR and realized volatility on real
1-minute candles through exactly this kernel. The kernel keeps, per symbol, a ring of the last ``R`` bars'
derived values (log close, return, mid, signed volume, …), Wilder's ATR state, and rings of recent
realized-volatility and Bollinger-width values; every window statistic is recomputed from the rings at
each bar, so a stream split into any micro-batches gives bit-identical rows.

Windows are counted in bars of the clock the kernel is fed (a 30-bar rv is 30 s on a 1 s clock and
30 min on a 1 m clock). Definitions, units and windows: ``docs/features.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from ..events import EventArray
from ._state import capacity_for, grow, max_symbol
from .flow_features import kyle_lambda, mean_finite, ratio_of_sums
from .schema import BAR_FEATURE_DTYPE, MAX_HORIZONS
from .volatility import (
    ATR_PREV_CLOSE,
    ATR_STATE_SIZE,
    YEAR_NS,
    at,
    bollinger,
    is_squeeze,
    percentile_rank,
    realized_vol,
    wilder_atr,
)

# rows of the per-symbol history ring (axis 1 of hist)
_H_CLOSE, _H_LOGC, _H_RET, _H_MID, _H_SV, _H_VBS, _H_AQ, _H_VQ, _H_AMI, _H_LIQ, _H_LIQS = range(11)
_N_H = 11
# rows of the int history ring
_T_START, _T_END = 0, 1
# scalar float state per symbol (the ATR state occupies the first ATR_STATE_SIZE slots)
_S_PREV_FUND = ATR_STATE_SIZE
_S_PREV_OI = ATR_STATE_SIZE + 1
_S_PREV_BW = ATR_STATE_SIZE + 2
_N_S = ATR_STATE_SIZE + 3
# scalar int state per symbol
_G_N, _G_NRV, _G_NBW, _G_PREV_SQ = 0, 1, 2, 3
_N_G = 4
# window slots in the packed int array handed to the kernel
_W_RV, _W_RVL, _W_PCT, _W_ATR, _W_BB, _W_SQ, _W_KYLE, _W_AMI, _W_VPIN, _W_FLOW, _W_LIQ, _W_R = range(12)


@dataclass(frozen=True)
class BarFeatureSpec:
    """Windows (in bars) and constants of the bar features.

    ``horizons``: return horizons in bars (1..4 of them). ``rv_short``/``rv_long``: realized-volatility
    windows (rv and rv_long; rv_ratio = rv / rv_long). ``rv_pct_lookback``: how many rv values the
    percentile ranks against. ``atr_n``: Wilder period. ``bb_n``/``bb_k``: Bollinger SMA window and width
    in σ. ``squeeze_lookback``: a squeeze is a width ≤ each of the previous ``squeeze_lookback`` widths.
    ``kyle_n``, ``amihud_n``, ``vpin_n``, ``flow_n`` (trade imbalance), ``liq_n`` (liquidations): windows.
    ``year_ns``: the annualization year (365 days).
    """

    horizons: tuple[int, ...] = (1, 5, 15, 60)
    rv_short: int = 30
    rv_long: int = 240
    rv_pct_lookback: int = 1440
    atr_n: int = 14
    bb_n: int = 20
    bb_k: float = 2.0
    squeeze_lookback: int = 120
    kyle_n: int = 60
    amihud_n: int = 60
    vpin_n: int = 50
    flow_n: int = 30
    liq_n: int = 60
    year_ns: float = YEAR_NS

    def __post_init__(self) -> None:
        if not 1 <= len(self.horizons) <= MAX_HORIZONS or min(self.horizons) < 1:
            raise ValueError(f"BarFeatureSpec.horizons must be 1..{MAX_HORIZONS} positive ints, got {self.horizons}")
        minimum = {"kyle_n": 2}  # a regression needs two points; every other window one bar
        for name in (
            "rv_short",
            "rv_long",
            "rv_pct_lookback",
            "atr_n",
            "bb_n",
            "squeeze_lookback",
            "kyle_n",
            "amihud_n",
            "vpin_n",
            "flow_n",
            "liq_n",
        ):
            low = minimum.get(name, 1)
            if getattr(self, name) < low:
                raise ValueError(f"BarFeatureSpec.{name} must be >= {low}, got {getattr(self, name)}")
        if not self.bb_k > 0.0 or not self.year_ns > 0.0:
            raise ValueError(f"BarFeatureSpec.bb_k and year_ns must be > 0, got {self.bb_k}, {self.year_ns}")

    def ring_size(self) -> int:
        """Bars of history the kernel keeps per symbol (the longest window plus the bar before it)."""
        return 1 + max(
            max(self.horizons),
            self.rv_short,
            self.rv_long,
            self.bb_n,
            self.kyle_n,
            self.amihud_n,
            self.vpin_n,
            self.flow_n,
            self.liq_n,
        )

    def packed(self) -> npt.NDArray[np.int64]:
        """The integer windows in the order the kernel reads them."""
        return np.array(
            [
                self.rv_short,
                self.rv_long,
                self.rv_pct_lookback,
                self.atr_n,
                self.bb_n,
                self.squeeze_lookback,
                self.kyle_n,
                self.amihud_n,
                self.vpin_n,
                self.flow_n,
                self.liq_n,
                self.ring_size(),
            ],
            dtype=np.int64,
        )

    def horizon_array(self) -> npt.NDArray[np.int64]:
        return np.array(self.horizons, dtype=np.int64)


@numba.njit(cache=True, error_model="numpy")
def _bar_feature_kernel(
    bars: EventArray,
    horizons: npt.NDArray[np.int64],
    win: npt.NDArray[np.int64],
    bb_k: float,
    year_ns: float,
    hist: npt.NDArray[np.float64],
    hts: npt.NDArray[np.int64],
    rvr: npt.NDArray[np.float64],
    bwr: npt.NDArray[np.float64],
    sf: npt.NDArray[np.float64],
    sg: npt.NDArray[np.int64],
    out: EventArray,
) -> int:
    """One feature row per bar into ``out`` (same length as ``bars``); returns the number written."""
    size = win[_W_R]
    pct_n = win[_W_PCT]
    sq_n = win[_W_SQ] + 1
    for b in range(bars.shape[0]):
        bar = bars[b]
        s = bar.symbol
        n = sg[s, _G_N] + 1
        sg[s, _G_N] = n
        slot = (n - 1) % size
        h = hist[s]
        close = bar.close
        logc = math.log(close) if close > 0.0 else np.nan
        ret = logc - h[_H_LOGC, at(n, size, 1)] if n >= 2 else np.nan
        bq = bar.buy_quote
        sq = bar.sell_quote
        h[_H_CLOSE, slot] = close
        h[_H_LOGC, slot] = logc
        h[_H_RET, slot] = ret
        h[_H_MID, slot] = bar.mid_close
        h[_H_SV, slot] = bar.buy_volume - bar.sell_volume
        h[_H_VBS, slot] = bar.buy_volume + bar.sell_volume
        h[_H_AQ, slot] = abs(bq - sq)
        h[_H_VQ, slot] = bq + sq
        qv = bar.quote_volume
        h[_H_AMI, slot] = abs(ret) * 1e4 / (qv / 1e6) if qv > 0.0 and not math.isnan(ret) else np.nan
        liq = bar.liq_buy_quote + bar.liq_sell_quote
        h[_H_LIQ, slot] = liq
        h[_H_LIQS, slot] = bar.liq_buy_quote - bar.liq_sell_quote
        hts[s, _T_START, slot] = bar.start_ts
        hts[s, _T_END, slot] = bar.end_ts

        r = out[b]
        r.symbol = s
        r.flags = bar.flags
        r.start_ts = bar.start_ts
        r.end_ts = bar.end_ts
        r.close = close
        for x in range(r.ret_bps.shape[0]):
            r.ret_bps[x] = np.nan
        for x in range(horizons.shape[0]):
            hz = horizons[x]
            if n >= hz + 1:
                r.ret_bps[x] = (logc - h[_H_LOGC, at(n, size, hz)]) * 1e4
        r.signed_volume = bar.buy_volume - bar.sell_volume
        r.signed_quote = bq - sq
        r.trade_imbalance = ratio_of_sums(h[_H_SV], h[_H_VBS], n, size, win[_W_FLOW])
        r.kyle_lambda = kyle_lambda(h[_H_SV], h[_H_MID], n, size, win[_W_KYLE])
        r.amihud = mean_finite(h[_H_AMI], n, size, win[_W_AMI])
        r.vpin = ratio_of_sums(h[_H_AQ], h[_H_VQ], n, size, win[_W_VPIN])

        end_ring = hts[s, _T_END]
        rv = realized_vol(h[_H_RET], end_ring, n, size, win[_W_RV], year_ns)
        rvl = realized_vol(h[_H_RET], end_ring, n, size, win[_W_RVL], year_ns)
        r.rv = rv
        r.rv_long = rvl
        r.rv_ratio = rv / rvl if rvl > 0.0 else np.nan
        nrv = sg[s, _G_NRV] + 1
        sg[s, _G_NRV] = nrv
        rvr[s, (nrv - 1) % pct_n] = rv
        r.rv_pct = percentile_rank(rvr[s], nrv, pct_n)

        atr = wilder_atr(sf[s], bar.high, bar.low, close, win[_W_ATR])
        r.atr = atr
        r.atr_bps = atr / close * 1e4 if close > 0.0 else np.nan

        mean, bw = bollinger(h[_H_CLOSE], n, size, win[_W_BB], bb_k)
        r.bb_width = bw
        nbw = sg[s, _G_NBW] + 1
        sg[s, _G_NBW] = nbw
        bwr[s, (nbw - 1) % sq_n] = bw
        prev_sq = sg[s, _G_PREV_SQ]
        prev_bw = sf[s, _S_PREV_BW]
        if prev_sq < 0 or math.isnan(bw) or math.isnan(prev_bw):
            r.bb_squeeze_turn = np.nan
        elif prev_sq == 1 and bw > prev_bw:
            d = close - mean
            r.bb_squeeze_turn = 1.0 if d > 0.0 else (-1.0 if d < 0.0 else 0.0)
        else:
            r.bb_squeeze_turn = 0.0
        sg[s, _G_PREV_SQ] = is_squeeze(bwr[s], nbw, sq_n)
        sf[s, _S_PREV_BW] = bw

        fund = bar.funding_rate
        r.funding_rate = fund
        r.funding_delta_bps = (fund - sf[s, _S_PREV_FUND]) * 1e4
        sf[s, _S_PREV_FUND] = fund
        oi = bar.open_interest
        prev_oi = sf[s, _S_PREV_OI]
        r.oi_delta_bps = (oi / prev_oi - 1.0) * 1e4 if prev_oi > 0.0 else np.nan
        sf[s, _S_PREV_OI] = oi

        liq_n = win[_W_LIQ]
        if n >= liq_n:
            elapsed = (hts[s, _T_END, at(n, size, 0)] - hts[s, _T_START, at(n, size, liq_n - 1)]) / 1e9
            total = 0.0
            for k in range(liq_n):
                total += h[_H_LIQ, at(n, size, k)]
            r.liq_intensity = total / elapsed if elapsed > 0.0 else np.nan
        else:
            r.liq_intensity = np.nan
        r.liq_imbalance = ratio_of_sums(h[_H_LIQS], h[_H_LIQ], n, size, liq_n)
    return int(bars.shape[0])


class BarFeatures:
    """Online bar-feature state for one clock: feed bars batch by batch, get one row per bar.

    Identical rows whether a day of bars arrives at once or in any split (all windows read carried rings).
    """

    def __init__(self, spec: BarFeatureSpec | None = None) -> None:
        self.spec = spec or BarFeatureSpec()
        self._horizons = self.spec.horizon_array()
        self._win = self.spec.packed()
        self._size = int(self._win[_W_R])
        self._n_sym = 0
        self._hist: npt.NDArray[np.float64] = np.full((0, _N_H, self._size), np.nan)
        self._hts: npt.NDArray[np.int64] = np.zeros((0, 2, self._size), dtype=np.int64)
        self._rvr: npt.NDArray[np.float64] = np.full((0, self.spec.rv_pct_lookback), np.nan)
        self._bwr: npt.NDArray[np.float64] = np.full((0, self.spec.squeeze_lookback + 1), np.nan)
        self._sf: npt.NDArray[np.float64] = np.full((0, _N_S), np.nan)
        self._sg: npt.NDArray[np.int64] = np.zeros((0, _N_G), dtype=np.int64)

    def _ensure_symbols(self, n: int) -> None:
        if n <= self._n_sym:
            return
        cap = capacity_for(n, self._n_sym)
        old = self._n_sym
        self._hist = grow(self._hist, cap, np.nan)
        self._hts = grow(self._hts, cap, 0)
        self._rvr = grow(self._rvr, cap, np.nan)
        self._bwr = grow(self._bwr, cap, np.nan)
        sf = grow(self._sf, cap, np.nan)
        sf[old:, :ATR_STATE_SIZE] = 0.0
        sf[old:, ATR_PREV_CLOSE] = np.nan
        self._sf = sf
        sg = grow(self._sg, cap, 0)
        sg[old:, _G_PREV_SQ] = -1
        self._sg = sg
        self._n_sym = cap

    def update(self, bars: EventArray) -> EventArray:
        """Feature rows (``BAR_FEATURE_DTYPE``) for ``bars`` (``BAR_DTYPE``), one per bar, same order."""
        out = np.empty(bars.shape[0], BAR_FEATURE_DTYPE)
        if bars.shape[0] == 0:
            return out
        self._ensure_symbols(max_symbol(bars) + 1)
        _bar_feature_kernel(
            bars,
            self._horizons,
            self._win,
            self.spec.bb_k,
            self.spec.year_ns,
            self._hist,
            self._hts,
            self._rvr,
            self._bwr,
            self._sf,
            self._sg,
            out,
        )
        return out


def compute_bar_features(bars: EventArray, spec: BarFeatureSpec | None = None) -> EventArray:
    """Batch path: feature rows for a whole series of bars (a fresh :class:`BarFeatures` fed once)."""
    return BarFeatures(spec).update(bars)
