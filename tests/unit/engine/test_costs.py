"""Cost model: book walking vs a plain loop, fitted slippage quantiles vs numpy, funding signs, utility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.costs import (
    fee_schedule,
    fit_slippage_quantiles,
    funding_cost_bps,
    passes_thresholds,
    round_trip_cost,
    utility,
    walk_book,
)


def _walk_reference(qty: float, px: list[float], q: list[float]) -> tuple[float, float]:
    left, cost, filled = qty, 0.0, 0.0
    for p, a in zip(px, q, strict=True):
        take = min(left, a)
        cost += take * p
        filled += take
        left -= take
        if left <= 0:
            break
    return (cost / filled if filled else float("nan")), filled


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.001, 5.0), min_size=1, max_size=10), st.floats(0.001, 30.0))
def test_walk_book_matches_a_plain_loop(level_qty: list[float], qty: float) -> None:
    px = [100.0 + 0.1 * i for i in range(len(level_qty))]
    vwap, slip, filled = walk_book(qty, [px], [level_qty], 99.95)
    ref_vwap, ref_filled = _walk_reference(qty, px, level_qty)
    assert filled[0] == pytest.approx(ref_filled) and vwap[0] == pytest.approx(ref_vwap)
    assert slip[0] == pytest.approx(abs(ref_vwap - 99.95) / 99.95 * 1e4)


def test_walk_book_rows_and_empty_levels() -> None:
    px = np.array([[100.0, 100.1, np.nan], [200.0, 200.5, 201.0]])
    q = np.array([[1.0, 1.0, np.nan], [0.5, 0.5, 10.0]])
    vwap, _, filled = walk_book([3.0, 2.0], px, q, [99.95, 199.9])
    assert filled.tolist() == [2.0, 2.0]  # the first book cannot fill 3: 2 filled
    assert vwap.tolist() == pytest.approx([100.05, (0.5 * 200 + 0.5 * 200.5 + 1.0 * 201) / 2])


def test_slippage_quantiles_match_numpy_per_bucket() -> None:
    rng = np.random.default_rng(1)
    notional = rng.uniform(0, 3000, 5000)
    slip = notional / 1000 + rng.exponential(0.5, 5000)
    fitted = fit_slippage_quantiles(notional, slip, [0, 200, 500, 1000])
    sel = (notional >= 500) & (notional < 1000)
    assert fitted.q50[2] == pytest.approx(np.quantile(slip[sel], 0.5))
    assert fitted.q975[3] == pytest.approx(np.quantile(slip[notional >= 1000], 0.975))
    assert fitted.count.sum() == 5000
    assert fitted.quantile([100, 700, 5000]).tolist() == pytest.approx([fitted.q50[0], fitted.q50[2], fitted.q50[3]])
    assert np.all(np.diff(fitted.q50) > 0)  # slippage grows with size in this data


def test_funding_is_paid_by_longs_when_positive() -> None:
    assert funding_cost_bps(0.0001, 8 * 3600, 1) == pytest.approx(1.0)  # 0.01 % per 8 h = 1 bp
    assert funding_cost_bps(0.0001, 8 * 3600, -1) == pytest.approx(-1.0)  # shorts receive
    assert funding_cost_bps(-0.0002, 3600, 1) == pytest.approx(-0.25)


def test_round_trip_cost_and_utility() -> None:
    fees = fee_schedule("binance-usdm")
    c = round_trip_cost(fees=fees, entry_maker=[True, False], exit_maker=False, slippage_bps=0.5,
                        funding_rate=0.0001, horizon_s=3600, direction=1)  # fmt: skip
    assert c.fees_bps.tolist() == [7.0, 10.0]
    assert c.slippage_bps.tolist() == [0.5, 1.0]
    assert c.total_bps.tolist() == pytest.approx([7.0 + 0.5 + 0.125, 10.0 + 1.0 + 0.125])
    u = utility([15.0, 5.0, 1.0], [10.0, 10.0, -1.0])
    assert u.tolist() == [1.5, 0.5, np.inf]
    assert passes_thresholds([0.7, 0.7, 0.55], [1.5, 0.5, 2.0], tau=0.6, kappa=1.0).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="no fee schedule for venue 'kraken'"):
        fee_schedule("kraken")
