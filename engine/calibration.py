"""Probability calibration fitted on out-of-fold predictions: isotonic (pool-adjacent-violators) and Platt.

Why: gradient-boosted trees rank well but their raw probabilities are not frequencies; the decision rules
(τ thresholds, sizing buckets in p, utility U) need p to mean what it says. Calibrators are fitted only on
out-of-fold predictions, so they never see a sample the model was trained on.
Both are small parameter sets (breakpoints, or two coefficients) so they can be exported next to the
model and applied identically offline, in-process and in Ray Serve.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-12


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Monotone piecewise-linear map p → calibrated p through the fitted breakpoints (clipped at the ends)."""

    x: FloatArray
    y: FloatArray

    def __call__(self, p: npt.ArrayLike) -> FloatArray:
        return np.interp(np.asarray(p, dtype=np.float64), self.x, self.y)


def fit_isotonic(p: npt.ArrayLike, y: npt.ArrayLike) -> IsotonicCalibrator:
    """Pool adjacent violators over the unique scores (weights = sample counts)."""
    pp = np.asarray(p, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if pp.shape != yy.shape or pp.ndim != 1 or len(pp) == 0:
        raise ValueError("p and y must be non-empty 1-D arrays of equal length")
    ux, inverse = np.unique(pp, return_inverse=True)
    w = np.bincount(inverse).astype(np.float64)
    m = np.bincount(inverse, weights=yy) / w
    # PAV with a stack of blocks (value, weight, length).
    vals: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for v, wt in zip(m.tolist(), w.tolist(), strict=True):
        vals.append(v)
        wts.append(wt)
        lens.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, l2 = vals.pop(), wts.pop(), lens.pop()
            total = wts[-1] + w2
            vals[-1] = (vals[-1] * wts[-1] + v2 * w2) / total
            wts[-1] = total
            lens[-1] += l2
    fitted = np.repeat(np.array(vals), np.array(lens))
    return IsotonicCalibrator(ux, fitted)


@dataclass(frozen=True)
class PlattCalibrator:
    """p → sigmoid(a · logit(p) + b)."""

    a: float
    b: float

    def __call__(self, p: npt.ArrayLike) -> FloatArray:
        return _sigmoid(self.a * _logit(np.asarray(p, dtype=np.float64)) + self.b)


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(q / (1 - q)))


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def fit_platt(p: npt.ArrayLike, y: npt.ArrayLike, *, max_iter: int = 100, tol: float = 1e-12) -> PlattCalibrator:
    """Unregularized logistic regression of y on logit(p), by Newton's method (two parameters)."""
    x = _logit(np.asarray(p, dtype=np.float64))
    yy = np.asarray(y, dtype=np.float64)
    if x.shape != yy.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError("p and y must be non-empty 1-D arrays of equal length")
    if yy.min() == yy.max():
        raise ValueError("Platt calibration needs both classes in y")
    design = np.column_stack([x, np.ones_like(x)])
    theta = np.zeros(2)
    for _ in range(max_iter):
        q = _sigmoid(design @ theta)
        grad = design.T @ (q - yy)
        hess = design.T @ (design * (q * (1 - q))[:, None]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < tol:
            break
    return PlattCalibrator(float(theta[0]), float(theta[1]))


_Z_BY_LEVEL = {0.8: 1.2815515655446004, 0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


@dataclass(frozen=True)
class ProbabilityInterval:
    """A ``level`` interval around a calibrated P(up), as wide as the calibration's evidence at that score.

    Why this and not a model ensemble: the calibrator turned scores into frequencies using the out-of-fold
    samples, and how many of them fell near a given score says how well that frequency is known. A score in a
    bucket of 40 samples is a much weaker statement than one in a bucket of 4,000, although both read 0.62.
    The interval is Wilson's score interval for a proportion ``p`` seen in ``n`` trials, with ``n`` the
    out-of-fold samples whose calibrated p fell in the same equal-count bucket; it contains ``p``, stays in
    [0, 1] and narrows as 1/√n. Evaluated per decision on floats (bisect, no numpy) because it is one row.
    """

    upper_edges: tuple[float, ...]  #: bucket i covers (upper_edges[i-1], upper_edges[i]]; last is +inf
    counts: tuple[int, ...]
    level: float = 0.9

    def __post_init__(self) -> None:
        if len(self.upper_edges) != len(self.counts) or not self.counts:
            raise ValueError("upper_edges and counts must be non-empty and equally long")
        if any(b <= a for a, b in zip(self.upper_edges, self.upper_edges[1:], strict=False)):
            raise ValueError("upper_edges must be strictly ascending")
        if any(c < 1 for c in self.counts):
            raise ValueError("every bucket needs at least one sample")
        if self.level not in _Z_BY_LEVEL:
            raise ValueError(f"level must be one of {sorted(_Z_BY_LEVEL)}, got {self.level}")

    def bounds(self, p: float) -> tuple[float, float]:
        """(low, high) around ``p``; (NaN, NaN) for a p that is not a probability."""
        if not 0.0 <= p <= 1.0:
            return math.nan, math.nan
        n = float(self.counts[min(bisect_left(self.upper_edges, p), len(self.counts) - 1)])
        z2 = _Z_BY_LEVEL[self.level] ** 2
        centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n)
        half = math.sqrt(z2) * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / (1.0 + z2 / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (the open last edge, +inf, is written as null)."""
        edges = [None if math.isinf(e) else e for e in self.upper_edges]
        return {"method": "wilson", "level": self.level, "upper_edges": edges, "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbabilityInterval:
        """Inverse of :meth:`to_dict`; a missing or malformed key is a ``ValueError`` naming it."""
        if d.get("method") != "wilson":
            raise ValueError(f"interval.method: only 'wilson' is known, got {d.get('method')!r}")
        try:
            edges = tuple(math.inf if e is None else float(e) for e in d["upper_edges"])
            counts = tuple(int(c) for c in d["counts"])
            level = float(d.get("level", 0.9))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"interval: malformed ({type(exc).__name__}: {exc})") from None
        return cls(edges, counts, level)


def fit_probability_interval(p: npt.ArrayLike, *, buckets: int = 10, level: float = 0.9) -> ProbabilityInterval:
    """Equal-count buckets over the calibrated out-of-fold probabilities ``p`` (ties kept in one bucket)."""
    pp = np.sort(np.asarray(p, dtype=np.float64))
    pp = pp[np.isfinite(pp)]
    if len(pp) == 0 or buckets < 1:
        raise ValueError("need at least one finite probability and one bucket")
    cuts = np.unique(np.quantile(pp, np.linspace(0.0, 1.0, buckets + 1)[1:-1], method="inverted_cdf"))
    edges = [*cuts.tolist(), math.inf]
    counts = np.diff(np.searchsorted(pp, edges, side="right"), prepend=0)
    keep = counts > 0  # a tie-heavy sample can leave a cut with no new samples above the previous one
    return ProbabilityInterval(tuple(np.asarray(edges)[keep].tolist()), tuple(int(c) for c in counts[keep]), level)
