"""Flow and liquidity bar features against straightforward numpy references on small random bars.

Bars of several symbols are interleaved (each symbol's windows must only see its own bars); mids go
missing now and then (Kyle λ must then be NaN); some bars have no volume (Amihud skips them, VPIN's
denominator can vanish). References are per-symbol numpy loops written from the definitions in
docs/features.md: ``np.polyfit`` for Kyle λ, plain sums for VPIN / imbalances / liquidation intensity.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.features import BAR_DTYPE, BarFeatureSpec, compute_bar_features

TOL = {"rtol": 1e-9, "atol": 1e-9}


def random_bars(seed: int, n: int, n_symbols: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = np.zeros(n, BAR_DTYPE)
    b["symbol"] = rng.integers(0, n_symbols, n)
    b["start_ts"] = np.arange(n) * 1_000 + rng.integers(0, 500, n)
    b["end_ts"] = b["start_ts"] + 1_000 + rng.integers(0, 3_000, n)
    b["close"] = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    b["high"] = b["close"] * 1.001
    b["low"] = b["close"] * 0.999
    b["open"] = b["close"]
    mid = b["close"] + rng.normal(0, 0.01, n)
    mid[rng.random(n) < 0.03] = np.nan
    b["mid_close"] = mid
    b["buy_volume"] = rng.exponential(1.0, n) * (rng.random(n) > 0.1)
    b["sell_volume"] = rng.exponential(1.0, n) * (rng.random(n) > 0.1)
    b["volume"] = b["buy_volume"] + b["sell_volume"]
    b["buy_quote"] = b["buy_volume"] * b["close"]
    b["sell_quote"] = b["sell_volume"] * b["close"]
    b["quote_volume"] = b["buy_quote"] + b["sell_quote"]
    b["funding_rate"] = np.where(rng.random(n) < 0.1, np.nan, 1e-4 + rng.normal(0, 1e-5, n))
    b["open_interest"] = 1_000.0 + rng.normal(0, 5, n)
    b["liq_buy_quote"] = rng.exponential(10.0, n) * (rng.random(n) < 0.3)
    b["liq_sell_quote"] = rng.exponential(10.0, n) * (rng.random(n) < 0.3)
    return b


def windows(x: np.ndarray, w: int) -> list[np.ndarray | None]:
    """x[k-w+1..k] for every k, None while fewer than w values."""
    return [x[k - w + 1 : k + 1] if k >= w - 1 else None for k in range(len(x))]


def reference(b: np.ndarray, spec: BarFeatureSpec) -> dict[str, np.ndarray]:
    """Per-symbol features from plain definitions; rows in the order of ``b``."""
    out = {k: np.full(len(b), np.nan) for k in ("kyle", "amihud", "vpin", "imb", "fund_d", "oi_d", "liq_i", "liq_b")}
    for sym in np.unique(b["symbol"]):
        idx = np.flatnonzero(b["symbol"] == sym)
        g = b[idx]
        n = len(g)
        sv = g["buy_volume"] - g["sell_volume"]
        ret = np.concatenate([[np.nan], np.diff(np.log(g["close"]))])
        dmid = np.concatenate([[np.nan], np.diff(g["mid_close"])])
        for k in range(n):
            w = spec.kyle_n
            if k >= w:
                x, y = sv[k - w + 1 : k + 1], dmid[k - w + 1 : k + 1]
                if not (np.isnan(x).any() or np.isnan(y).any()) and np.var(x) > 0:
                    out["kyle"][idx[k]] = np.polyfit(x, y, 1)[0]
            w = spec.amihud_n
            if k >= w - 1:
                terms = [
                    abs(ret[j]) * 1e4 / (g["quote_volume"][j] / 1e6)
                    for j in range(k - w + 1, k + 1)
                    if g["quote_volume"][j] > 0 and not math.isnan(ret[j])
                ]
                if terms:
                    out["amihud"][idx[k]] = sum(terms) / len(terms)
            w = spec.vpin_n
            if k >= w - 1:
                s = slice(k - w + 1, k + 1)
                den = (g["buy_quote"][s] + g["sell_quote"][s]).sum()
                if den > 0:
                    out["vpin"][idx[k]] = np.abs(g["buy_quote"][s] - g["sell_quote"][s]).sum() / den
            w = spec.flow_n
            if k >= w - 1:
                s = slice(k - w + 1, k + 1)
                den = (g["buy_volume"][s] + g["sell_volume"][s]).sum()
                if den > 0:
                    out["imb"][idx[k]] = sv[s].sum() / den
            w = spec.liq_n
            if k >= w - 1:
                s = slice(k - w + 1, k + 1)
                liq = g["liq_buy_quote"][s] + g["liq_sell_quote"][s]
                out["liq_i"][idx[k]] = liq.sum() / ((g["end_ts"][k] - g["start_ts"][k - w + 1]) / 1e9)
                if liq.sum() > 0:
                    out["liq_b"][idx[k]] = (g["liq_buy_quote"][s] - g["liq_sell_quote"][s]).sum() / liq.sum()
            if k >= 1:
                out["fund_d"][idx[k]] = (g["funding_rate"][k] - g["funding_rate"][k - 1]) * 1e4
                out["oi_d"][idx[k]] = (g["open_interest"][k] / g["open_interest"][k - 1] - 1) * 1e4
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 150),
    n_symbols=st.integers(1, 3),
    kyle_n=st.integers(2, 12),
    vpin_n=st.integers(1, 12),
    small=st.integers(1, 8),
)
def test_flow_features_match_reference(seed: int, n: int, n_symbols: int, kyle_n: int, vpin_n: int, small: int) -> None:
    b = random_bars(seed, n, n_symbols)
    spec = BarFeatureSpec(kyle_n=kyle_n, vpin_n=vpin_n, amihud_n=small, flow_n=small + 1, liq_n=small, rv_long=5)
    got = compute_bar_features(b, spec)
    ref = reference(b, spec)
    np.testing.assert_allclose(got["kyle_lambda"], ref["kyle"], rtol=1e-7, atol=1e-9)  # polyfit's lstsq
    np.testing.assert_allclose(got["amihud"], ref["amihud"], **TOL)
    np.testing.assert_allclose(got["vpin"], ref["vpin"], **TOL)
    np.testing.assert_allclose(got["trade_imbalance"], ref["imb"], **TOL)
    np.testing.assert_allclose(got["funding_delta_bps"], ref["fund_d"], **TOL)
    np.testing.assert_allclose(got["oi_delta_bps"], ref["oi_d"], **TOL)
    np.testing.assert_allclose(got["liq_intensity"], ref["liq_i"], **TOL)
    np.testing.assert_allclose(got["liq_imbalance"], ref["liq_b"], **TOL)
    np.testing.assert_allclose(got["signed_volume"], b["buy_volume"] - b["sell_volume"], **TOL)
    np.testing.assert_allclose(got["signed_quote"], b["buy_quote"] - b["sell_quote"], **TOL)


def test_kyle_lambda_recovers_a_planted_impact() -> None:
    """Δmid = 0.25 · signed volume + noise → λ ≈ 0.25."""
    rng = np.random.default_rng(11)
    n = 400
    b = random_bars(0, n, 1)
    sv = rng.normal(0, 3, n)
    b["buy_volume"] = np.maximum(sv, 0)
    b["sell_volume"] = np.maximum(-sv, 0)
    b["mid_close"] = 100 + np.cumsum(0.25 * sv + rng.normal(0, 0.01, n))
    got = compute_bar_features(b, BarFeatureSpec(kyle_n=200))
    assert abs(got["kyle_lambda"][-1] - 0.25) < 1e-3


def test_vpin_is_one_when_every_bucket_is_one_sided() -> None:
    b = random_bars(1, 60, 1)
    b["sell_quote"] = 0.0
    got = compute_bar_features(b, BarFeatureSpec(vpin_n=10))
    assert np.isnan(got["vpin"][:9]).all()
    assert (got["vpin"][9:][b["buy_quote"][9:] > 0] == 1.0).all()
