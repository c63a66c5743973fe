"""Evaluation metrics for probabilistic direction models, written out in numpy.

Why our own: the same functions score offline folds, live canary windows (from ClickHouse rows) and shadow
comparisons, with no scikit-learn in the decide image; tests check each one against scikit-learn/scipy.
Conventions: ``y`` is 0/1 (1 = the predicted event happened), ``p`` a probability in [0, 1].
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _arrays(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    if yy.shape != pp.shape or yy.ndim != 1:
        raise ValueError(f"y and p must be 1-D and equally long, got {yy.shape} and {pp.shape}")
    if not np.all((yy == 0) | (yy == 1)):
        raise ValueError("y must hold only 0 and 1")
    if np.any(~np.isfinite(pp)):
        raise ValueError("p must be finite")
    return yy, pp


def roc_auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count ½."""
    yy, pp = _arrays(y, p)
    n_pos = yy.sum()
    n_neg = len(yy) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(pp) + 1.0  # 1-based, ties averaged: the Mann–Whitney formulation
    return float((ranks[yy == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Average precision: Σ (R_k − R_{k−1}) · P_k over descending score thresholds (step-wise PR area)."""
    yy, pp = _arrays(y, p)
    n_pos = yy.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-pp, kind="mergesort")
    ys, ps = yy[order], pp[order]
    last_of_tie = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]
    tp = np.cumsum(ys)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _threshold_counts(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative false and true positives at each distinct score, scores descending (ties form one step)."""
    yy, pp = _arrays(y, p)
    if len(yy) == 0:
        raise ValueError("y and p must not be empty")
    order = np.argsort(pp, kind="mergesort")[::-1]
    ys, ps = yy[order], pp[order]
    last_of_tie = np.concatenate([np.nonzero(np.diff(ps))[0], [len(ps) - 1]])
    tps = np.cumsum(ys)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return fps, tps, ps[last_of_tie]


def precision_recall_curve(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision and recall at every distinct threshold, as ``sklearn.metrics.precision_recall_curve``.

    Returns ``(precision, recall, thresholds)``: thresholds are the distinct scores ascending; precision[i] and
    recall[i] belong to predicting 1 for ``p >= thresholds[i]``; a final point (precision 1, recall 0) with no
    threshold closes the curve, so precision and recall are one longer than thresholds. Without any positive,
    recall is 1 everywhere (scikit-learn's convention; it also warns, this does not).
    """
    fps, tps, thresholds = _threshold_counts(y, p)
    precision = tps / (tps + fps)  # tps + fps >= 1: every step holds at least one sample
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        thresholds[::-1].copy(),
    )


def roc_curve(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """False and true positive rates at every distinct threshold, as ``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``.

    Returns ``(fpr, tpr, thresholds)``: thresholds are ``inf`` (nothing predicted 1, the point (0, 0)) followed by
    the distinct scores descending; fpr[i] and tpr[i] belong to predicting 1 for ``p >= thresholds[i]``. A rate
    whose class is absent from ``y`` is NaN everywhere (scikit-learn's convention, without its warning).
    """
    fps, tps, thresholds = _threshold_counts(y, p)
    fps = np.concatenate([[0.0], fps])
    tps = np.concatenate([[0.0], tps])
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def brier(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean squared error of the probability."""
    yy, pp = _arrays(y, p)
    return float(np.mean((pp - yy) ** 2))


@dataclass(frozen=True)
class CalibrationTable:
    """Per bucket: mean predicted probability, observed frequency and count."""

    predicted: FloatArray
    observed: FloatArray
    count: npt.NDArray[np.int64]

    @property
    def max_error_pp(self) -> float:
        """Largest |predicted − observed| over non-empty buckets, in percentage points."""
        m = self.count > 0
        return float(np.max(np.abs(self.predicted[m] - self.observed[m])) * 100) if m.any() else float("nan")


def calibration_table(
    y: npt.ArrayLike, p: npt.ArrayLike, n_buckets: int = 10, *, by: str = "quantile"
) -> CalibrationTable:
    """Calibration by bucket: ``quantile`` buckets (deciles by default, equal counts) or ``uniform`` widths.

    Quantile buckets are cut by *rank* (the i-th smallest of n scores goes to bucket ⌊i·b/n⌋, ties in input
    order), not by value edges: an isotonic calibrator emits a few distinct values, and value edges would then
    leave buckets empty or holding a single sample whose error (p or 1 − p) says nothing about calibration.
    """
    yy, pp = _arrays(y, p)
    if by == "quantile":
        rank = np.empty(len(pp), dtype=np.int64)
        rank[np.argsort(pp, kind="mergesort")] = np.arange(len(pp))
        idx = rank * n_buckets // max(len(pp), 1)
    elif by == "uniform":
        idx = np.clip((pp * n_buckets).astype(np.int64), 0, n_buckets - 1)
    else:
        raise ValueError(f"by must be 'quantile' or 'uniform', got {by!r}")
    count = np.bincount(idx, minlength=n_buckets).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(idx, weights=pp, minlength=n_buckets) / count
        observed = np.bincount(idx, weights=yy, minlength=n_buckets) / count
    return CalibrationTable(predicted, observed, count)


def ece(y: npt.ArrayLike, p: npt.ArrayLike, n_buckets: int = 10) -> float:
    """Expected calibration error over equal-width buckets: Σ (n_b / n) · |mean p − mean y|."""
    table = calibration_table(y, p, n_buckets, by="uniform")
    m = table.count > 0
    return float(np.sum(table.count[m] / table.count.sum() * np.abs(table.predicted[m] - table.observed[m])))


def hit_at_top_k(y: npt.ArrayLike, p: npt.ArrayLike, k: int) -> float:
    """Share of positives among the ``k`` highest-scored samples (how good the most confident signals are)."""
    yy, pp = _arrays(y, p)
    if not 1 <= k <= len(yy):
        raise ValueError(f"k must be in [1, {len(yy)}], got {k}")
    top = np.argsort(-pp, kind="mergesort")[:k]
    return float(yy[top].mean())


def false_positive_rate(y: npt.ArrayLike, p: npt.ArrayLike, tau: float) -> float:
    """Share of negatives scored at or above the decision threshold τ."""
    yy, pp = _arrays(y, p)
    neg = yy == 0
    return float(np.mean(pp[neg] >= tau)) if neg.any() else float("nan")


def information_coefficient(score: npt.ArrayLike, forward_return: npt.ArrayLike) -> float:
    """Pearson correlation between a score and the realized forward return."""
    s = np.asarray(score, dtype=np.float64)
    r = np.asarray(forward_return, dtype=np.float64)
    if s.std() == 0 or r.std() == 0:
        return float("nan")
    return float(np.corrcoef(s, r)[0, 1])


def _average_ranks(x: FloatArray) -> FloatArray:
    """0-based ranks with ties given the average of their positions."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    bounds = np.r_[0, np.nonzero(np.diff(sx))[0] + 1, len(x)]
    for a, b in itertools.pairwise(bounds):
        ranks[order[a:b]] = 0.5 * (a + b - 1)
    return ranks


def rank_information_coefficient(score: npt.ArrayLike, forward_return: npt.ArrayLike) -> float:
    """Spearman correlation (Pearson on average ranks): robust to the fat tails of returns."""
    s = _average_ranks(np.asarray(score, dtype=np.float64))
    r = _average_ranks(np.asarray(forward_return, dtype=np.float64))
    return information_coefficient(s, r)


def average_utility(utility: npt.ArrayLike, taken: npt.ArrayLike) -> float:
    """Mean utility U of the signals that were taken (NaN when none was)."""
    u = np.asarray(utility, dtype=np.float64)
    t = np.asarray(taken, dtype=bool)
    return float(u[t].mean()) if t.any() else float("nan")
