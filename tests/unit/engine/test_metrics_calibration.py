"""Metrics and calibrators against scikit-learn / scipy on random and tied inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from tradeplane.engine import metrics
from tradeplane.engine.calibration import fit_isotonic, fit_platt


@st.composite
def labelled_scores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(5, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1  # both classes
    rounding = draw(st.sampled_from([None, 1, 2]))  # rounding creates ties
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    return y, (np.round(p, rounding) if rounding else p)


@settings(max_examples=100, deadline=None)
@given(labelled_scores())
def test_ranking_and_scoring_metrics_match_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    assert metrics.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.pr_auc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(labelled_scores())
def test_rank_ic_matches_scipy_and_ic_matches_numpy(data: tuple[np.ndarray, np.ndarray]) -> None:
    _, p = data
    r = p + np.sin(np.arange(len(p)))  # a "forward return" correlated with the score
    assert metrics.rank_information_coefficient(p, r) == pytest.approx(spearmanr(p, r).statistic, abs=1e-12)
    assert metrics.information_coefficient(p, r) == pytest.approx(np.corrcoef(p, r)[0, 1], abs=1e-12)


def test_calibration_table_ece_hit_at_k_fpr_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    table = metrics.calibration_table(y, p, 2, by="uniform")
    assert table.count.tolist() == [4, 4]
    assert table.predicted.tolist() == pytest.approx([0.25, 0.75])
    assert table.observed.tolist() == pytest.approx([0.5, 0.75])
    assert table.max_error_pp == pytest.approx(25.0)
    assert metrics.ece(y, p, 2) == pytest.approx(0.5 * 0.25 + 0.5 * 0.0)
    assert metrics.hit_at_top_k(y, p, 3) == pytest.approx(2 / 3)
    assert metrics.false_positive_rate(y, p, 0.6) == pytest.approx(1 / 3)
    assert metrics.average_utility([1.0, 2.0, 3.0], [True, False, True]) == 2.0


def test_deciles_have_equal_counts() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    table = metrics.calibration_table(rng.integers(0, 2, 1000), p)
    assert table.count.tolist() == [100] * 10


@settings(max_examples=60, deadline=None)
@given(labelled_scores())
def test_isotonic_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    ours = fit_isotonic(p, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(p, y)
    grid = np.linspace(-0.1, 1.1, 301)
    np.testing.assert_allclose(ours(grid), ref.predict(grid), atol=1e-12)
    assert np.all(np.diff(ours(grid)) >= -1e-15)  # monotone


def test_platt_matches_unregularized_logistic_regression() -> None:
    rng = np.random.default_rng(5)
    p = np.clip(rng.beta(2, 2, 5000), 1e-6, 1 - 1e-6)
    y = (rng.random(5000) < p**1.7).astype(int)  # miscalibrated on purpose
    ours = fit_platt(p, y)
    x = np.log(p / (1 - p)).reshape(-1, 1)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=1000).fit(x, y)
    assert ours.a == pytest.approx(ref.coef_[0, 0], rel=1e-6)
    assert ours.b == pytest.approx(ref.intercept_[0], rel=1e-6, abs=1e-8)
    before = metrics.calibration_table(y, p).max_error_pp
    after = metrics.calibration_table(y, ours(p)).max_error_pp
    assert after < before


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [([0, 2], [0.1, 0.2], "only 0 and 1"), ([0, 1], [0.1], "equally long"), ([0, 1], [0.1, np.nan], "finite")],
)
def test_bad_inputs(y: list[int], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.brier(y, p)
