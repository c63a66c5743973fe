"""Rollout metrics against independent references: scikit-learn, hand-computed cases, hand-made PnL series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss

from tradeplane.engine.rollout import metrics as m


@st.composite
def scored(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, 2, n).astype(float)
    y[0] = 1.0  # at least one positive: average precision is undefined without
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    rounding = draw(st.sampled_from([None, 1, 2]))  # rounding creates ties, which form one PR step
    return y, (np.round(p, rounding) if rounding else p)


@settings(max_examples=60, deadline=None)
@given(scored())
def test_average_precision_and_brier_match_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    assert m.average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m.brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_average_precision_without_positive_is_nan() -> None:
    assert math.isnan(m.average_precision([0, 0, 0], [0.2, 0.4, 0.9]))


def test_ece_on_a_hand_computed_case() -> None:
    # buckets of width 0.1: [0,.1) {.05:0} → |.05−0| = .05 (n 1); [.1,.2) {.15:1, .12:0} → |.135−.5| = .365 (n 2);
    # [.8,.9) {.85:1} → .15 (n 1); [.9,1] {.95:1} → .05 (n 1). ECE = (.05 + 2·.365 + .15 + .05) / 5 = .196
    y = [0, 1, 0, 1, 1]
    p = [0.05, 0.15, 0.12, 0.95, 0.85]
    assert m.expected_calibration_error(y, p) == pytest.approx(0.196, abs=1e-12)
    assert m.expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0  # p = 1 falls in the last bucket


def test_calibration_drift_finds_the_worst_bucket_with_its_values() -> None:
    offline = m.OfflineCalibration(hit_rate=(0.3, 0.7), count=(100, 100))
    # bucket [0, .5): 40 samples, 20 hits → 0.5 (+20 pp); bucket [.5, 1]: 40 samples, 30 hits → 0.75 (+5 pp)
    p = np.r_[np.full(40, 0.3), np.full(40, 0.7)]
    y = np.r_[np.ones(20), np.zeros(20), np.ones(30), np.zeros(10)]
    d = m.calibration_drift(y, p, offline, min_count=30)
    assert (d.bucket, d.low, d.high, d.judged, d.live_count) == (0, 0.0, 0.5, 2, 40)
    assert d.drift_pp == pytest.approx(20.0)
    assert (d.live_hit_rate, d.offline_hit_rate) == (0.5, 0.3)
    assert "0.500 vs offline 0.300 (+20.0 pp, n=40)" in d.describe()


def test_calibration_drift_judges_only_buckets_with_enough_samples_live_and_offline() -> None:
    p = np.r_[np.full(40, 0.3), np.full(40, 0.7)]
    y = np.r_[np.ones(40), np.ones(30), np.zeros(10)]  # bucket 0 drifts +70 pp, bucket 1 +5 pp
    thin_offline = m.OfflineCalibration(hit_rate=(0.3, 0.7), count=(10, 100))
    d = m.calibration_drift(y, p, thin_offline, min_count=30)
    assert (d.bucket, d.judged) == (1, 1) and d.drift_pp == pytest.approx(5.0)
    none = m.calibration_drift(y, p, thin_offline, min_count=50)
    assert none.judged == 0 and math.isnan(none.drift_pp) and none.describe() == "no bucket had enough samples"


def test_offline_calibration_from_outcomes_is_the_uniform_table() -> None:
    off = m.OfflineCalibration.from_outcomes([0, 1, 1, 0], [0.05, 0.05, 0.95, 0.91], n_buckets=2)
    assert off.count == (2, 2) and off.hit_rate == (0.5, 0.5)
    with pytest.raises(ValueError, match=r"hit_rate\[0\]"):
        m.OfflineCalibration(hit_rate=(1.5,), count=(3,))


def test_hit_rate_counts_acted_matured_decisions_and_timeouts_miss() -> None:
    label = [1, -1, 0, 1, np.nan]
    side = [1, -1, 1, -1, 1]
    acted = [True, True, True, False, True]
    rate, n = m.hit_rate(label, side, acted)
    assert (rate, n) == (pytest.approx(2 / 3), 3)
    rate0, n0 = m.hit_rate([1.0], [1.0], [False])
    assert math.isnan(rate0) and n0 == 0


def test_latency_p99_is_numpy_linear() -> None:
    assert m.latency_p99(np.arange(101.0)) == pytest.approx(99.0)
    assert m.latency_p99(np.arange(1.0, 11.0)) == pytest.approx(9.91)  # rank 0.99·9 = 8.91 → 9 + 0.91


def test_drawdown_and_pnl_per_risk_on_a_hand_made_series() -> None:
    pnl = [1, 2, -4, 1, -2, 5]  # equity 0 1 3 −1 0 −2 3: peak 3 → trough −2
    assert m.max_drawdown(pnl) == 5.0
    assert m.max_drawdown([-1, -1]) == 2.0  # the start is a peak
    assert m.max_drawdown([1, 2, 3]) == 0.0
    assert m.max_drawdown_pct(pnl, 100.0) == pytest.approx(5.0)
    assert m.pnl_per_risk(pnl, np.full(6, 10.0)) == pytest.approx(3 / 60)  # notional summed
    assert m.max_drawdown_pct(pnl, np.full(6, 10.0)) == pytest.approx(100 * 5 / 60)


BAD = {
    "nan_p": (lambda: m.brier_score([0, 1], [0.5, math.nan]), r"^p must not hold NaN"),
    "p_out_of_range": (lambda: m.brier_score([0, 1], [0.5, 1.2]), r"^p must lie in \[0, 1\]"),
    "y_not_binary": (lambda: m.expected_calibration_error([0, 2], [0.5, 0.5]), r"^y must hold only 0 and 1"),
    "length_mismatch": (lambda: m.average_precision([0, 1, 1], [0.5, 0.5]), r"y and p must be equally long"),
    "latency_2d": (lambda: m.latency_p99([[1.0, 2.0]]), r"^latency_ms must be 1-D"),
    "latency_nan": (lambda: m.latency_p99([1.0, math.nan]), r"^latency_ms must not hold"),
    "label_value": (lambda: m.hit_rate([2], [1], [True]), r"^label must hold only -1, 0, 1 or NaN"),
    "side_value": (lambda: m.hit_rate([1], [0], [True]), r"^side must be \+1 or -1"),
    "risk_zero": (lambda: m.pnl_per_risk([1.0], [0.0]), r"^risk must sum to > 0"),
    "risk_length": (lambda: m.pnl_per_risk([1.0, 2.0], [1.0]), r"^risk must be as long as pnl"),
    "pnl_inf": (lambda: m.max_drawdown([1.0, math.inf]), r"^pnl must not hold"),
    "unmatured_outcome": (lambda: m.outcome_up([1.0, math.nan]), r"^label must be matured"),
}


@pytest.mark.parametrize(("call", "match"), BAD.values(), ids=BAD.keys())
def test_bad_inputs_raise_naming_the_argument(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
