"""precision_recall_curve and roc_curve against scikit-learn on random and tied scores, and one curve by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import metrics as skm

from tradeplane.engine import metrics


@st.composite
def labelled_scores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    classes = draw(st.sampled_from(["both", "both", "both", "only0", "only1"]))
    y = rng.integers(0, 2, n) if classes == "both" else np.full(n, int(classes == "only1"))
    if classes == "both" and n >= 2:
        y[0], y[1] = 0, 1
    rounding = draw(st.sampled_from([None, 0, 1, 2]))  # rounding creates ties (0 digits: at most two scores)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    return y, (np.round(p, rounding) if rounding is not None else p)


def _sklearn(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():  # the single-class warnings; the values are what is compared
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_precision_recall_curve_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    precision, recall, thresholds = metrics.precision_recall_curve(y, p)
    want_p, want_r, want_t = _sklearn(skm.precision_recall_curve, y, p)
    assert precision.shape == want_p.shape and recall.shape == want_r.shape and thresholds.shape == want_t.shape
    assert_allclose(precision, want_p, rtol=0, atol=1e-12)
    assert_allclose(recall, want_r, rtol=0, atol=1e-12)
    assert_array_equal(thresholds, want_t)
    assert precision.dtype == recall.dtype == thresholds.dtype == np.float64


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_roc_curve_matches_sklearn_without_dropping(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    fpr, tpr, thresholds = metrics.roc_curve(y, p)
    want_fpr, want_tpr, want_t = _sklearn(skm.roc_curve, y, p, drop_intermediate=False)
    assert fpr.shape == want_fpr.shape and tpr.shape == want_tpr.shape and thresholds.shape == want_t.shape
    assert_allclose(fpr, want_fpr, rtol=0, atol=1e-12, equal_nan=True)
    assert_allclose(tpr, want_tpr, rtol=0, atol=1e-12, equal_nan=True)
    assert_array_equal(thresholds, want_t)


@settings(max_examples=100, deadline=None)
@given(labelled_scores())
def test_curves_agree_with_the_scalar_areas(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    if 0 < y.sum() < len(y):
        precision, recall, _ = metrics.precision_recall_curve(y, p)
        assert -np.sum(np.diff(recall) * precision[:-1]) == pytest.approx(metrics.pr_auc(y, p), abs=1e-12)
        fpr, tpr, _ = metrics.roc_curve(y, p)
        assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.roc_auc(y, p), abs=1e-12)


def test_curves_by_hand_with_a_tie() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.4, 0.4, 0.8])  # three samples tied at 0.4 form one step
    precision, recall, thresholds = metrics.precision_recall_curve(y, p)
    assert thresholds.tolist() == [0.1, 0.4, 0.8]
    assert precision.tolist() == pytest.approx([3 / 5, 3 / 4, 1.0, 1.0])
    assert recall.tolist() == pytest.approx([1.0, 1.0, 1 / 3, 0.0])
    fpr, tpr, thresholds = metrics.roc_curve(y, p)
    assert thresholds.tolist() == [np.inf, 0.8, 0.4, 0.1]
    assert fpr.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0])
    assert tpr.tolist() == pytest.approx([0.0, 1 / 3, 1.0, 1.0])


def test_curves_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        metrics.precision_recall_curve([], [])
    with pytest.raises(ValueError, match="empty"):
        metrics.roc_curve([], [])
    with pytest.raises(ValueError, match="0 and 1"):
        metrics.roc_curve([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        metrics.precision_recall_curve([0, 1], [0.1, np.nan])
