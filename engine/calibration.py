"""Probability calibration fitted on out-of-fold predictions: isotonic (pool-adjacent-violators) and Platt.

Why: gradient-boosted trees rank well but their raw probabilities are not frequencies; the decision rules
(τ thresholds, sizing buckets in p, utility U) need p to mean what it says. Calibrators are fitted only on
out-of-fold predictions, so they never see a sample the model was trained on.
Both are small parameter sets (breakpoints, or two coefficients) so they can be exported next to the
model and applied identically offline, in-process and in Ray Serve.
"""

from __future__ import annotations

from dataclasses import dataclass

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
