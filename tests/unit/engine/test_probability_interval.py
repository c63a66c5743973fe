"""The p_up interval of a signal: Wilson's score interval with the calibration's evidence at that score."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tradeplane.engine.calibration import ProbabilityInterval, fit_probability_interval
from tradeplane.engine.decision.router import ModelRouter, RoutedModel

Z90 = 1.6448536269514722


def _wilson_by_root_finding(p: float, n: float) -> tuple[float, float]:
    """Independent reference: the Wilson interval is the set of π with |p − π| ≤ z·√(π(1−π)/n); find its two
    ends by bisection instead of the closed form."""

    def inside(pi: float) -> bool:
        return abs(p - pi) <= Z90 * math.sqrt(pi * (1.0 - pi) / n)

    def edge(lo: float, hi: float) -> float:  # lo outside, hi inside (or the reverse): bisect to the boundary
        out_is_lo = not inside(lo)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if inside(mid) == out_is_lo:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    low = 0.0 if inside(0.0) else edge(0.0, p)
    high = 1.0 if inside(1.0) else edge(1.0, p)
    return low, high


@pytest.mark.parametrize(("p", "n"), [(0.62, 40), (0.62, 4000), (0.5, 10), (0.97, 25), (0.03, 500), (0.0, 50)])
def test_bounds_equal_the_wilson_interval_found_by_root_finding(p: float, n: int) -> None:
    iv = ProbabilityInterval((math.inf,), (n,))
    lo, hi = iv.bounds(p)
    ref = _wilson_by_root_finding(p, n)
    assert lo == pytest.approx(ref[0], abs=1e-9)
    assert hi == pytest.approx(ref[1], abs=1e-9)
    assert 0.0 <= lo <= p <= hi <= 1.0


def test_more_evidence_gives_a_narrower_interval_as_one_over_root_n() -> None:
    widths = []
    for n in (100, 400, 1600):
        lo, hi = ProbabilityInterval((math.inf,), (n,)).bounds(0.6)
        widths.append(hi - lo)
    assert widths[0] / widths[1] == pytest.approx(2.0, rel=0.02)
    assert widths[1] / widths[2] == pytest.approx(2.0, rel=0.01)


def test_fitted_buckets_have_equal_counts_and_route_each_score_to_its_bucket() -> None:
    rng = np.random.default_rng(3)
    dense = rng.normal(0.5, 0.02, 9000)  # most out-of-fold scores sit near 0.5 …
    sparse = rng.uniform(0.8, 0.95, 1000)  # … few are confident
    iv = fit_probability_interval(np.concatenate([dense, sparse]), buckets=10)
    assert sum(iv.counts) == 10_000
    assert max(iv.counts) - min(iv.counts) <= 2  # quantile cuts land on samples
    assert math.isinf(iv.upper_edges[-1])
    near = iv.bounds(0.5)
    far = iv.bounds(0.9)
    # both buckets hold ~1000 samples: the same n, so the widths differ only through p(1 − p)
    assert (near[1] - near[0]) > (far[1] - far[0])
    # a score below every edge falls in the first bucket, above every edge in the last
    assert iv.bounds(0.0) == ProbabilityInterval((math.inf,), (iv.counts[0],)).bounds(0.0)


def test_non_probabilities_give_nan_and_bad_tables_are_refused() -> None:
    iv = ProbabilityInterval((0.5, math.inf), (10, 10))
    assert all(math.isnan(x) for x in iv.bounds(float("nan")))
    assert all(math.isnan(x) for x in iv.bounds(1.5))
    with pytest.raises(ValueError, match="ascending"):
        ProbabilityInterval((0.5, 0.4), (1, 1))
    with pytest.raises(ValueError, match="at least one sample"):
        ProbabilityInterval((math.inf,), (0,))
    with pytest.raises(ValueError, match=r"interval\.method"):
        ProbabilityInterval.from_dict({"method": "bootstrap"})
    with pytest.raises(ValueError, match="malformed"):
        ProbabilityInterval.from_dict({"method": "wilson", "upper_edges": [None]})


def test_json_round_trip_keeps_the_open_last_edge() -> None:
    iv = fit_probability_interval(np.linspace(0.1, 0.9, 101), buckets=4)
    text = json.dumps(iv.to_dict(), allow_nan=False)  # JSON has no infinity: the last edge is null
    assert ProbabilityInterval.from_dict(json.loads(text)) == iv


class _Const:
    feature_names = ("x",)

    def __init__(self, p: float) -> None:
        self.p = p

    def predict(self, features: object) -> np.ndarray:
        return np.array([self.p])


def test_router_reports_the_routed_models_interval_and_nan_without_one() -> None:
    wide = ProbabilityInterval((math.inf,), (20,))
    narrow = ProbabilityInterval((math.inf,), (20_000,))
    router = ModelRouter(
        [
            RoutedModel("stable", "stable", 0.0, _Const(0.6), interval=wide),
            RoutedModel("canary", "canary", 1.0, _Const(0.6), interval=narrow),  # every symbol → canary
            RoutedModel("shadow", "shadow", 0.0, _Const(0.7)),
        ]
    )
    scored = router.score("BTCUSDT", {"x": 1.0})
    assert scored.version == "canary"
    assert (scored.p_low, scored.p_high) == narrow.bounds(0.6)
    router.set_weights({"canary": 0.0})
    scored = router.score("BTCUSDT", {"x": 1.0})
    assert (scored.p_low, scored.p_high) == wide.bounds(0.6)
    bare = ModelRouter([RoutedModel("s", "stable", 0.0, _Const(0.6))]).score("ETHUSDT", {"x": 1.0})
    assert math.isnan(bare.p_low) and math.isnan(bare.p_high)
