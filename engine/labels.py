"""Labels for supervised models: triple-barrier, fixed-horizon direction with a volatility dead zone, and
per-second-normalized volume-bucket returns.

Every label comes with the end of its outcome interval (``t1``), which the purged splitters need: a sample
"knows" its outcome only once ``t1`` has passed. Labels look only at prices strictly after the decision
point and no later than ``t1``, so changing data after a sample's horizon changes nothing about it (tested).

Prices are a time-ordered series ``(ts, px)`` (trades, mids or bar closes); decision points are indices into
it. Barrier widths are in units of a volatility estimate ``sigma`` (a per-sample fractional return scale,
e.g. rolling std of returns over the horizon), so the same multipliers fit calm and volatile regimes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TripleBarrierLabels:
    """Per decision point. ``label``: +1 upper barrier first, −1 lower first, 0 vertical barrier (horizon).

    ``hit_index``/``t1``: where the label was decided; ``ret``: return at that point; ``peak_ret`` and
    ``time_to_peak_ns``: the best return reached in (t0, t1] and when — what a perfect exit could have had.
    """

    label: npt.NDArray[np.int8]
    hit_index: IntArray
    t1: IntArray
    ret: FloatArray
    peak_ret: FloatArray
    time_to_peak_ns: IntArray


@numba.njit(cache=True)
def _triple_barrier(
    ts: np.ndarray, px: np.ndarray, starts: np.ndarray, upper: np.ndarray, lower: np.ndarray, horizon: int,
    label: np.ndarray, hit: np.ndarray, ret: np.ndarray, peak: np.ndarray, peak_t: np.ndarray,
) -> None:  # fmt: skip
    n = ts.shape[0]
    for k in range(starts.shape[0]):
        i0 = starts[k]
        p0 = px[i0]
        t_end = ts[i0] + horizon
        label[k] = 0
        hit[k] = i0
        best = -np.inf
        best_j = i0
        j = i0 + 1
        last = i0
        while j < n and ts[j] <= t_end:
            r = px[j] / p0 - 1.0
            last = j
            if r > best:
                best = r
                best_j = j
            if r >= upper[k]:
                label[k] = 1
                break
            if r <= -lower[k]:
                label[k] = -1
                break
            j += 1
        hit[k] = last
        ret[k] = px[last] / p0 - 1.0
        peak[k] = best if best_j != i0 else 0.0
        peak_t[k] = ts[best_j] - ts[i0]


def triple_barrier(
    ts: npt.ArrayLike,
    px: npt.ArrayLike,
    starts: npt.ArrayLike,
    sigma: npt.ArrayLike,
    *,
    upper_mult: float = 2.0,
    lower_mult: float = 2.0,
    horizon_ns: int,
) -> TripleBarrierLabels:
    """Triple-barrier labels at decision indices ``starts``; barriers at ±mult·sigma, vertical at ``horizon_ns``.

    A barrier is hit when the return reaches it (≥ upper or ≤ −lower). With no price after the start within
    the horizon, the label is 0 and ``t1`` is the start itself.
    """
    t = np.ascontiguousarray(ts, dtype=np.int64)
    p = np.ascontiguousarray(px, dtype=np.float64)
    s = np.ascontiguousarray(starts, dtype=np.int64)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), s.shape)
    _check_series(t, p)
    if horizon_ns <= 0 or upper_mult <= 0 or lower_mult <= 0:
        raise ValueError("horizon_ns, upper_mult and lower_mult must be > 0")
    if len(s) and (s.min() < 0 or s.max() >= len(t)):
        raise ValueError(f"starts must index into the series of length {len(t)}")
    if np.any(~np.isfinite(sig) | (sig <= 0)):
        raise ValueError(f"sigma must be finite and > 0 (first bad sample {int(np.argmax(~(sig > 0)))})")
    m = len(s)
    out = TripleBarrierLabels(
        label=np.zeros(m, dtype=np.int8),
        hit_index=np.zeros(m, dtype=np.int64),
        t1=np.zeros(m, dtype=np.int64),
        ret=np.zeros(m),
        peak_ret=np.zeros(m),
        time_to_peak_ns=np.zeros(m, dtype=np.int64),
    )
    _triple_barrier(t, p, s, upper_mult * sig, lower_mult * sig, int(horizon_ns), out.label, out.hit_index,
                    out.ret, out.peak_ret, out.time_to_peak_ns)  # fmt: skip
    out.t1[:] = t[out.hit_index]
    return out


def fixed_horizon(
    ts: npt.ArrayLike, px: npt.ArrayLike, starts: npt.ArrayLike, sigma: npt.ArrayLike, *, horizon_ns: int,
    dead_zone_mult: float = 0.5,
) -> tuple[npt.NDArray[np.int8], FloatArray, IntArray]:  # fmt: skip
    """Direction over a fixed horizon with a volatility-adaptive dead zone.

    The return is taken at the last price at or before ``t0 + horizon_ns``; the label is +1 above
    ``dead_zone_mult·sigma``, −1 below its negative, 0 inside (too small to trade after costs).
    Returns (label, forward return, t1).
    """
    t = np.asarray(ts, dtype=np.int64)
    p = np.asarray(px, dtype=np.float64)
    s = np.asarray(starts, dtype=np.int64)
    _check_series(t, p)
    if horizon_ns <= 0 or dead_zone_mult < 0:
        raise ValueError("horizon_ns must be > 0 and dead_zone_mult ≥ 0")
    end = np.searchsorted(t, t[s] + horizon_ns, side="right") - 1
    fwd = p[end] / p[s] - 1.0
    band = dead_zone_mult * np.broadcast_to(np.asarray(sigma, dtype=np.float64), s.shape)
    label = np.where(fwd > band, 1, np.where(fwd < -band, -1, 0)).astype(np.int8)
    return label, fwd, t[end]


def volume_bucket_returns(
    end_ts: npt.ArrayLike, close: npt.ArrayLike, *, ahead: int = 1
) -> tuple[FloatArray, IntArray]:
    """Return over the next ``ahead`` volume buckets divided by the seconds they took (return per second).

    Volume buckets fill fast in busy markets and slowly in quiet ones; dividing by elapsed time makes the
    targets comparable across activity regimes. The last ``ahead`` buckets get NaN. Returns (y, t1).
    """
    t = np.asarray(end_ts, dtype=np.int64)
    c = np.asarray(close, dtype=np.float64)
    _check_series(t, c)
    if ahead < 1:
        raise ValueError("ahead must be ≥ 1")
    y = np.full(len(c), np.nan)
    t1 = t.copy()
    if len(c) > ahead:
        seconds = (t[ahead:] - t[:-ahead]) / 1e9
        with np.errstate(divide="ignore", invalid="ignore"):
            y[:-ahead] = np.where(seconds > 0, (c[ahead:] / c[:-ahead] - 1.0) / seconds, np.nan)
        t1[:-ahead] = t[ahead:]
    return y, t1


def _check_series(t: IntArray, p: FloatArray) -> None:
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"timestamps and prices must be 1-D and equally long, got {t.shape} and {p.shape}")
    if np.any(np.diff(t) < 0):
        raise ValueError(f"timestamps must be non-decreasing (first violation at {int(np.argmax(np.diff(t) < 0)) + 1})")
    if np.any(~np.isfinite(p) | (p <= 0)):
        raise ValueError(
            f"prices must be finite and > 0 (first bad index {int(np.argmax(~np.isfinite(p) | (p <= 0)))})"
        )
