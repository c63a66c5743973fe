"""analyze(): minimum samples, matured labels, each threshold's breach, the verdict and its reason."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tradeplane.api.v1alpha1.modelversion import AnalysisResult
from tradeplane.engine.rollout.analysis import Sample, Verdict, analyze

from .support import analysis_spec, offline_curve, window

OFFLINE = offline_curve()


def _by_metric(results: tuple[object, ...]) -> dict[str, object]:
    return {r.metric: r for r in results}  # type: ignore[attr-defined]


def test_a_calibrated_fast_profitable_candidate_passes_every_threshold() -> None:
    v = analyze(window(1), window(2), analysis_spec(), OFFLINE)
    assert v.verdict is Verdict.PASS, v.reason
    metrics = _by_metric(v.results)
    assert set(metrics) == {
        "latency_p99_ms",
        "brier",
        "ece",
        "calibration_drift_pp",
        "pr_auc",
        "hit_rate",
        "pnl_vs_stable_per_risk",
        "drawdown_pct",
    }
    assert all(r.passed for r in v.results)
    assert v.reason == "all 7 thresholds held"  # PnL vs stable has no floor set: reported, not judged
    api = v.to_api()
    assert all(isinstance(r, AnalysisResult) for r in api) and api[0].metric == "latency_p99_ms"


def test_too_few_samples_is_inconclusive_with_the_counts() -> None:
    v = analyze(window(1, n=120), window(2), analysis_spec(), OFFLINE)
    assert v.verdict is Verdict.INCONCLUSIVE
    assert v.reason == "candidate n=120 < min_samples=500" and v.results == ()


def test_a_stable_without_traffic_judges_the_candidate_on_its_own_limits() -> None:
    """A 100 % step leaves the stable no decisions: the candidate is still judged (and can pass or fail), the
    comparison with stable is skipped with a note, never left pending forever."""
    spec = analysis_spec(thresholds={"minPnlVsStablePerRisk": 0.0})
    nothing = Sample(np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0))
    ok = analyze(window(1), nothing, spec, OFFLINE)
    assert ok.verdict is Verdict.PASS, ok.reason
    assert "pnl_vs_stable_per_risk" not in _by_metric(ok.results)
    assert any(n.startswith("stable n=0 < min_samples=500") for n in ok.notes)
    assert all(r.stable is None for r in ok.results)
    bad = analyze(window(1, shift=0.15), window(2, n=499), spec, OFFLINE)
    assert bad.verdict is Verdict.FAIL and "calibration_drift_pp" in [r.metric for r in bad.failed]


def test_unmatured_labels_keep_label_metrics_pending_but_latency_is_judged() -> None:
    spec = analysis_spec()
    v = analyze(window(1, matured=0.01), window(2), spec, OFFLINE)
    assert v.verdict is Verdict.INCONCLUSIVE
    assert set(_by_metric(v.results)) == {"latency_p99_ms", "pnl_vs_stable_per_risk", "drawdown_pct"}
    assert any(p.startswith("brier:") and "matured labels < 500 needed" in p for p in v.pending)
    # a judged breach fails the run even while label metrics are pending
    slow = analyze(window(1, matured=0.01, latency_ms=9.0), window(2), spec, OFFLINE)
    assert slow.verdict is Verdict.FAIL and [r.metric for r in slow.failed] == ["latency_p99_ms"]


def test_shifted_probabilities_fail_on_calibration_drift_naming_the_bucket_values() -> None:
    v = analyze(window(1, shift=0.15), window(2), analysis_spec(), OFFLINE)
    assert v.verdict is Verdict.FAIL
    drift = _by_metric(v.results)["calibration_drift_pp"]
    assert not drift.passed and 12 < drift.candidate < 18  # type: ignore[attr-defined]
    assert drift.threshold == 5.0  # type: ignore[attr-defined]
    assert "live hit rate" in drift.reason and "vs offline" in drift.reason and "beyond ±5 pp" in drift.reason  # type: ignore[attr-defined]
    assert "calibration_drift_pp" in v.reason


def test_latency_ceiling() -> None:
    v = analyze(window(1, latency_ms=8.0), window(2), analysis_spec(), OFFLINE)
    assert v.verdict is Verdict.FAIL and [r.metric for r in v.failed] == ["latency_p99_ms"]
    r = v.failed[0]
    assert r.candidate is not None and r.candidate > 5.0 and r.stable is not None and r.stable < 5.0
    assert "> ceiling 5 ms" in r.reason


def test_pnl_per_risk_against_stable_floor() -> None:
    spec = analysis_spec(thresholds={"minPnlVsStablePerRisk": -0.0001})
    losing = analyze(window(1, pnl_mean=-0.5), window(2, pnl_mean=0.05), spec, OFFLINE)
    r = _by_metric(losing.results)["pnl_vs_stable_per_risk"]
    assert not r.passed and r.candidate < r.stable  # type: ignore[attr-defined]
    assert "pnl_vs_stable_per_risk" in losing.reason and "< floor -0.0001" in losing.reason
    ok = analyze(window(1), window(2), spec, OFFLINE)
    assert _by_metric(ok.results)["pnl_vs_stable_per_risk"].passed  # type: ignore[attr-defined]


def test_drawdown_ceiling_is_per_unit_of_risk() -> None:
    base = window(1)
    crashing = dataclasses.replace(base, pnl=np.full(50, -20.0), risk=np.full(50, 100.0))  # dd 1000 / 5000 = 20 %
    v = analyze(crashing, window(2), analysis_spec(), OFFLINE)
    r = _by_metric(v.results)["drawdown_pct"]
    assert not r.passed and r.candidate == pytest.approx(20.0)  # type: ignore[attr-defined]


def test_pnl_missing_keeps_pnl_thresholds_pending() -> None:
    base = window(1)
    no_pnl = Sample(base.p_up, base.label, base.acted, base.latency_ms)
    v = analyze(no_pnl, window(2), analysis_spec(), OFFLINE)
    assert v.verdict is Verdict.INCONCLUSIVE and any(p.startswith("drawdown_pct") for p in v.pending)


def test_without_offline_curve_drift_is_noted_not_pending() -> None:
    v = analyze(window(1), window(2), analysis_spec(), None)
    assert v.verdict is Verdict.PASS
    assert "calibration_drift_pp" not in _by_metric(v.results)
    assert v.notes and "no offline calibration" in v.notes[0]


def test_unset_thresholds_are_reported_not_judged() -> None:
    spec = analysis_spec(thresholds={"maxBrier": None, "maxEce": None, "maxCalibrationDriftPp": None})
    v = analyze(window(1, shift=0.15), window(2), spec, OFFLINE)
    assert v.verdict is Verdict.PASS
    brier = _by_metric(v.results)["brier"]
    assert brier.threshold is None and brier.passed and "no threshold set" in brier.reason  # type: ignore[attr-defined]


def test_paired_shadow_comparison_reports_decision_agreement() -> None:
    same = analyze(window(1), window(1), analysis_spec(), OFFLINE, paired=True)
    assert _by_metric(same.results)["decision_agreement"].candidate == 1.0  # type: ignore[attr-defined]
    shifted = analyze(window(1, shift=0.2), window(1), analysis_spec(thresholds={}), OFFLINE, paired=True)
    agreement = _by_metric(shifted.results)["decision_agreement"].candidate  # type: ignore[attr-defined]
    assert 0.3 < agreement < 0.95


def test_sample_validates_lengths_and_pairs() -> None:
    with pytest.raises(ValueError, match="per-decision arrays must be equally long"):
        Sample(np.array([0.5, 0.6]), np.array([1.0]), np.array([True, False]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="pnl and risk must be given together"):
        Sample(np.array([0.5]), np.array([1.0]), np.array([True]), np.array([1.0]), pnl=np.array([1.0]))
    with pytest.raises(ValueError, match=r"^label must hold only"):
        Sample(np.array([0.5]), np.array([3.0]), np.array([True]), np.array([1.0]))
    s = Sample(np.array([0.5]), np.array([math.nan]), np.array([1]), np.array([1.0]), pnl=np.array([1.0]), risk=5.0)
    assert s.acted.dtype == bool and s.risk == 5.0
