"""Degrade mode: the rules-only P(up) — hand-computed values, bounds, monotonicity, symmetry, NaN as neutral."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.decision.fallback import FallbackParams, rules_only_p_up


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


INF = math.inf
# (ofi, qi, dmicro_bps) → expected p_up with the default weights 0.8 / 1.0 / 0.4 and scales 1 / 0.5 bps
MATRIX: dict[str, tuple[float, float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0, 0.5),
    "all-nan-is-neutral": (math.nan, math.nan, math.nan, 0.5),
    "qi-one-sided-bid": (0.0, 1.0, 0.0, _sigmoid(1.0)),  # ≈ 0.731, Gould–Bonart's 0.7–0.8 range
    "qi-one-sided-ask": (0.0, -1.0, 0.0, _sigmoid(-1.0)),
    "ofi-one-queue": (1.0, 0.0, 0.0, _sigmoid(0.8 * math.tanh(1.0))),
    "dmicro-half-bp": (0.0, 0.0, 0.5, _sigmoid(0.4 * math.tanh(1.0))),
    "mixed": (2.0, -0.3, -0.25, _sigmoid(0.8 * math.tanh(2.0) - 0.3 + 0.4 * math.tanh(-0.5))),
    "nan-ofi-counts-zero": (math.nan, 0.5, 0.0, _sigmoid(0.5)),
    "all-saturated-up": (INF, 1.0, INF, _sigmoid(2.2)),  # ≈ 0.900
    "all-saturated-down": (-INF, -1.0, -INF, _sigmoid(-2.2)),
    "qi-outside-range-is-clipped": (0.0, 3.0, 0.0, _sigmoid(1.0)),
}


@pytest.mark.parametrize(("ofi", "qi", "dm", "expected"), MATRIX.values(), ids=MATRIX.keys())
def test_fallback_matrix(ofi: float, qi: float, dm: float, expected: float) -> None:
    assert rules_only_p_up(ofi, qi, dm) == pytest.approx(expected, rel=1e-12)


def test_clipped_to_the_guard_band() -> None:
    loud = FallbackParams(w_ofi=10.0, w_qi=10.0, w_dm=10.0)
    assert rules_only_p_up(INF, 1.0, INF, loud) == 0.95
    assert rules_only_p_up(-INF, -1.0, -INF, loud) == 0.05
    narrow = FallbackParams(p_min=0.3, p_max=0.7)
    assert rules_only_p_up(INF, 1.0, INF, narrow) == 0.7


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="weights"):
        FallbackParams(w_qi=-1.0)
    with pytest.raises(ValueError, match="scale"):
        FallbackParams(dm_scale=0.0)
    with pytest.raises(ValueError, match="p_min"):
        FallbackParams(p_min=0.6)


def _p_with(which: int, x: float, other1: float, other2: float) -> float:
    """p_up with input ``which`` (0 ofi, 1 qi, 2 dmicro) set to x and the other two to other1, other2."""
    args = [other1, other2]
    args.insert(which, x)
    return rules_only_p_up(args[0], args[1], args[2])


_x = st.one_of(st.floats(-1e6, 1e6), st.just(math.nan))


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), _x, _x, st.integers(0, 2))
def test_monotonic_in_each_input(a: float, b: float, other1: float, other2: float, which: int) -> None:
    lo, hi = min(a, b), max(a, b)
    assert _p_with(which, lo, other1, other2) <= _p_with(which, hi, other1, other2)


@settings(max_examples=300, deadline=None)
@given(_x, _x, _x)
def test_bounded_and_symmetric(ofi: float, qi: float, dm: float) -> None:
    p = rules_only_p_up(ofi, qi, dm)
    assert 0.05 <= p <= 0.95
    # mirrored book (buy pressure ↔ sell pressure) gives the mirrored probability
    assert rules_only_p_up(-ofi, -qi, -dm) == pytest.approx(1.0 - p, abs=1e-12)


def test_strictly_increasing_inside_the_band() -> None:
    grid = [x / 10 for x in range(-10, 11)]
    for which in range(3):
        ps = [_p_with(which, x, 0.0, 0.0) for x in grid]
        assert all(p1 < p2 for p1, p2 in itertools.pairwise(ps)), which
