"""Order-flow and liquidity statistics over per-symbol ring buffers of bars (numba, no allocation).

Same ring convention and the same "recompute the window at every bar" rule as ``volatility``, for the same
reason: online and batch results must not depend on where a stream was split.

- **Kyle λ** over ``w`` bars: OLS slope (with intercept) of Δmid on signed volume, where Δmid is the change
  of the bar-close mid since the previous bar (quote per base) and signed volume is taker buy − taker
  sell in the bar (base units). Units: quote per base, per base unit of net taker buying. NaN if any mid in
  the window is missing or the signed volume does not vary.
- **Amihud illiquidity** over ``w`` bars: mean over the bars with quote volume of
  ``|log return| · 1e4 / (quote volume / 1e6)`` — bps of price move per million of quote traded.
- **ratio of sums** (VPIN, trade imbalance, liquidation imbalance): ``Σ num / Σ den`` over ``w`` bars.
  VPIN uses ``|buy quote − sell quote|`` over ``buy quote + sell quote``: Binance tells the aggressor side
  of every trade, so no bulk classification is needed, and a ratio of sums stays right when time-capped
  buckets are smaller than the target.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from .volatility import at


@numba.njit(cache=True, error_model="numpy")
def kyle_lambda(sv: npt.NDArray[np.float64], mid: npt.NDArray[np.float64], n: int, size: int, w: int) -> float:
    """OLS slope of Δmid on signed volume over the last ``w`` bars (needs ``w + 1`` bars of mids)."""
    if n < w + 1 or w < 2:
        return np.nan
    sx = 0.0
    sy = 0.0
    for k in range(w):
        x = sv[at(n, size, k)]
        y = mid[at(n, size, k)] - mid[at(n, size, k + 1)]
        if math.isnan(x) or math.isnan(y):
            return np.nan
        sx += x
        sy += y
    mx = sx / w
    my = sy / w
    sxx = 0.0
    sxy = 0.0
    for k in range(w):
        dx = sv[at(n, size, k)] - mx
        dy = mid[at(n, size, k)] - mid[at(n, size, k + 1)] - my
        sxx += dx * dx
        sxy += dx * dy
    if sxx <= 0.0:
        return np.nan
    return sxy / sxx


@numba.njit(cache=True, error_model="numpy")
def mean_finite(ring: npt.NDArray[np.float64], n: int, size: int, w: int) -> float:
    """Mean of the finite values among the last ``w`` (Amihud terms); NaN until ``w`` bars or if none."""
    if n < w:
        return np.nan
    s = 0.0
    m = 0
    for k in range(w):
        v = ring[at(n, size, k)]
        if not math.isnan(v):
            s += v
            m += 1
    if m == 0:
        return np.nan
    return s / m


@numba.njit(cache=True, error_model="numpy")
def ratio_of_sums(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64], n: int, size: int, w: int) -> float:
    """``Σ num / Σ den`` over the last ``w`` bars; NaN until ``w`` bars, on a NaN, or if ``Σ den ≤ 0``."""
    if n < w:
        return np.nan
    a = 0.0
    b = 0.0
    for k in range(w):
        slot = at(n, size, k)
        a += num[slot]
        b += den[slot]
    if not b > 0.0:
        return np.nan
    return a / b
