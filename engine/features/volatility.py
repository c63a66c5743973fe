"""Volatility building blocks over per-symbol ring buffers of bars (numba, no allocation).

Why ring buffers: the bar-feature kernel is fed bar by bar across micro-batches, so every rolling window
must be computable from carried state alone. Each window statistic is recomputed from the ring at every
bar (O(window) per *bar*, never per event) instead of being kept as a running sum: no drift, and the
value at a bar does not depend on how the stream was split — which the online/batch parity relies on.

Ring convention: ``ring[(n - 1 - k) % size]`` is the value ``k`` bars ago when ``n`` bars have been pushed.

Definitions (``docs/features.md`` has the long form):

- realized volatility over ``w`` bars: ``sqrt(Σ r² · YEAR_NS / elapsed)`` with ``r`` the log returns of
  the last ``w`` bar closes and ``elapsed`` the time those returns span (``end_ts`` now minus ``end_ts``
  ``w`` bars ago); annualized on a 365-day year because crypto trades every day. For regular time bars
  this is the textbook ``sqrt(bars_per_year / w · Σ r²)``; for volume or count bars it uses the actual
  elapsed time, so buckets of any duration annualize consistently.
- Wilder ATR over ``n`` bars: TR = max(high − low, |high − prev close|, |low − prev close|), the first
  bar's TR is high − low; the first ATR is the mean of the first ``n`` TRs, then
  ``ATR = (ATR_prev · (n − 1) + TR) / n`` (the seeding of Wilder, TA-Lib and ``ta``).
- Bollinger: middle = SMA of ``w`` closes, σ the population std (ddof 0), bands middle ± k·σ;
  width = (upper − lower) / middle.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

#: Nanoseconds in the 365-day year used to annualize volatility.
YEAR_NS: float = 365.0 * 86_400.0 * 1e9


@numba.njit(cache=True, error_model="numpy", inline="always")
def at(n: int, size: int, k: int) -> int:
    """Ring slot of the value ``k`` bars ago after ``n`` pushes."""
    return (n - 1 - k) % size


@numba.njit(cache=True, error_model="numpy")
def realized_vol(
    ret: npt.NDArray[np.float64], end_ts: npt.NDArray[np.int64], n: int, size: int, w: int, year_ns: float
) -> float:
    """Annualized realized volatility of the last ``w`` returns; NaN until ``w + 1`` bars or on a NaN."""
    if n < w + 1:
        return np.nan
    ss = 0.0
    for k in range(w):
        r = ret[at(n, size, k)]
        if math.isnan(r):
            return np.nan
        ss += r * r
    elapsed = end_ts[at(n, size, 0)] - end_ts[at(n, size, w)]
    if elapsed <= 0:
        return np.nan
    return math.sqrt(ss * year_ns / elapsed)


@numba.njit(cache=True, error_model="numpy")
def percentile_rank(ring: npt.NDArray[np.float64], n: int, size: int) -> float:
    """Fraction of the last ``size`` values that are ≤ the newest; NaN until full or if any is NaN."""
    if n < size:
        return np.nan
    cur = ring[at(n, size, 0)]
    if math.isnan(cur):
        return np.nan
    le = 0
    for k in range(size):
        v = ring[k]
        if math.isnan(v):
            return np.nan
        if v <= cur:
            le += 1
    return le / size


# Wilder ATR state slots (a float array per symbol)
ATR_VALUE = 0
ATR_SEED_SUM = 1
ATR_COUNT = 2  # finite true ranges seen (float for a single state array)
ATR_PREV_CLOSE = 3
ATR_STATE_SIZE = 4


@numba.njit(cache=True, error_model="numpy")
def wilder_atr(state: npt.NDArray[np.float64], high: float, low: float, close: float, n: int) -> float:
    """Feed one bar into Wilder's ATR ``state``; return the ATR after it (NaN before ``n`` true ranges).

    A bar with a non-finite high/low leaves the state untouched and returns NaN.
    """
    pc = state[ATR_PREV_CLOSE]
    tr = high - low
    if not math.isnan(pc):
        tr = max(tr, abs(high - pc), abs(low - pc))
    if math.isnan(tr):
        return np.nan
    if not math.isnan(close):
        state[ATR_PREV_CLOSE] = close
    cnt = state[ATR_COUNT] + 1.0
    state[ATR_COUNT] = cnt
    if cnt < n:
        state[ATR_SEED_SUM] += tr
        return np.nan
    if cnt == n:
        state[ATR_VALUE] = (state[ATR_SEED_SUM] + tr) / n
    else:
        state[ATR_VALUE] = (state[ATR_VALUE] * (n - 1) + tr) / n
    return float(state[ATR_VALUE])


@numba.njit(cache=True, error_model="numpy")
def bollinger(close: npt.NDArray[np.float64], n: int, size: int, w: int, k: float) -> tuple[float, float]:
    """(middle band, band width as a fraction of the middle) over the last ``w`` closes; NaN if short."""
    if n < w:
        return np.nan, np.nan
    s = 0.0
    for j in range(w):
        c = close[at(n, size, j)]
        if math.isnan(c):
            return np.nan, np.nan
        s += c
    mean = s / w
    ss = 0.0
    for j in range(w):
        d = close[at(n, size, j)] - mean
        ss += d * d
    sigma = math.sqrt(ss / w)
    return mean, 2.0 * k * sigma / mean


@numba.njit(cache=True, error_model="numpy")
def is_squeeze(bw: npt.NDArray[np.float64], n: int, size: int) -> int:
    """1 if the newest width is ≤ every one of the ``size − 1`` before it, 0 if not, −1 if unknown."""
    if n < size:
        return -1
    cur = bw[at(n, size, 0)]
    if math.isnan(cur):
        return -1
    squeeze = 1
    for k in range(1, size):
        v = bw[at(n, size, k)]
        if math.isnan(v):
            return -1
        if v < cur:
            squeeze = 0
    return squeeze
