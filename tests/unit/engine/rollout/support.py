"""Builders shared by the rollout tests: synthetic windows of decisions, specs, verdicts and a fake clock.

The synthetic world: each decision has a true P(up) drawn uniformly from [0.05, 0.95]; the outcome is up (+1)
with that probability, else down (−1). A calibrated model reports the true P(up); a miscalibrated one reports
it shifted. The offline calibration curve comes from a large calibrated sample, as training would produce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from tradeplane.api.v1alpha1.modelversion import AnalysisSpec, RolloutSpec
from tradeplane.engine.rollout.analysis import AnalysisVerdict, MetricResult, Sample, Verdict
from tradeplane.engine.rollout.metrics import OfflineCalibration

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CANDIDATE, STABLE = "clf-v2", "clf-v1"


def window(
    seed: int,
    n: int = 20_000,
    *,
    shift: float = 0.0,
    latency_ms: float = 1.0,
    matured: float = 1.0,
    pnl_mean: float = 0.05,
) -> Sample:
    """``n`` decisions of a model whose P(up) is the truth plus ``shift`` (clipped), with ``matured`` of the
    labels known, inference latency ≈ ``latency_ms`` and a PnL series (1 per acted decision, risk 100 each)."""
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.05, 0.95, n)
    label = np.where(rng.random(n) < p_true, 1.0, -1.0)
    label[rng.random(n) >= matured] = np.nan
    p = np.clip(p_true + shift, 0.0, 1.0)
    acted = np.abs(p - 0.5) > 0.1
    latency = rng.gamma(4.0, latency_ms / 4.0, n)
    m = int(acted.sum())
    return Sample(
        p_up=p,
        label=label,
        acted=acted,
        latency_ms=latency,
        pnl=rng.normal(pnl_mean, 1.0, m),
        risk=np.full(m, 100.0),
    )


def offline_curve(seed: int = 12345, n: int = 400_000) -> OfflineCalibration:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < p).astype(float)
    return OfflineCalibration.from_outcomes(y, p)


def canary_spec(**analysis: Any) -> RolloutSpec:
    """1 % → 5 % → 20 % → 100 %, each held 300 s, analysis every 60 s; ``analysis`` overrides (camelCase)."""
    return RolloutSpec.model_validate(
        {
            "strategy": "canary",
            "steps": [
                {"weightPct": 1, "pauseSeconds": 300},
                {"weightPct": 5, "pauseSeconds": 300},
                {"cohortPct": 20, "pauseSeconds": 300},
                {"weightPct": 100, "pauseSeconds": 300},
            ],
            "analysis": {
                "intervalSeconds": 60,
                "minSamples": 500,
                "maxFailures": 3,
                "maxConsecutiveFailures": 2,
                "thresholds": {"minPrAuc": 0.55, "minHitRate": 0.55, "maxDrawdownPct": 5.0},
                **analysis,
            },
        }
    )


def analysis_spec(**overrides: Any) -> AnalysisSpec:
    return canary_spec(**overrides).analysis


def verdict(kind: Verdict, reason: str = "") -> AnalysisVerdict:
    """A hand-made verdict (for rule tests that do not need real data)."""
    passed = kind is not Verdict.FAIL
    result = MetricResult("brier", 0.31 if not passed else 0.2, 0.2, 0.25, passed, reason or f"brier {kind.value}")
    return AnalysisVerdict(kind, reason or f"brier {kind.value}", (result,) if kind is not Verdict.INCONCLUSIVE else ())


PASS, FAIL, INCONCLUSIVE = (
    verdict(Verdict.PASS),
    verdict(Verdict.FAIL, "brier 0.31 > ceiling 0.25"),
    verdict(Verdict.INCONCLUSIVE, "candidate n=12 < min_samples=500"),
)


@dataclass
class Clock:
    """A fake clock: ``now`` only moves when told to."""

    now: datetime = T0

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
