"""Datasets from real klines: no look-ahead, label intervals, funding as-of, feature-set resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tradeplane.engine.models.datasets import (
    FEATURE_COLUMNS,
    FEATURE_SETS,
    LabelSpec,
    kline_dataset,
    resolve_feature_names,
    settled_funding,
    symbol_samples,
)
from tradeplane.engine.replay import read_funding_csv, read_klines_csv

KLINES = "binance/klines/binance_usdm_btcusdt_1m_2025-05-04_2025-06-24.csv.gz"
ETH = "binance/klines/binance_usdm_ethusdt_1m_2025-05-04_2025-06-24.csv.gz"
FUNDING = "binance/funding/binance_usdm_btcusdt_funding_2019-09-10_2026-04-07.csv.gz"
NAMES = FEATURE_SETS["bars-v1"]


@pytest.fixture(scope="module")
def btc(shared_dir: Path) -> np.ndarray:
    return read_klines_csv(shared_dir / "data" / KLINES, 0)[:6000]


@pytest.fixture(scope="module")
def funding(shared_dir: Path) -> np.ndarray:
    return read_funding_csv(shared_dir / "data" / FUNDING, 0)


def test_perturbing_the_future_changes_no_earlier_feature_or_settled_label(
    btc: np.ndarray, funding: np.ndarray
) -> None:
    label = LabelSpec(horizon_bars=30)
    base = symbol_samples(btc, funding, NAMES, label, stride=1)
    cut = 4000  # bars after this one are perturbed
    changed = btc.copy()
    rng = np.random.default_rng(1)
    scale = np.exp(rng.normal(0, 0.01, len(btc) - cut - 1))
    for col in ("open", "high", "low", "close"):
        changed[col][cut + 1 :] *= scale
    changed["volume"][cut + 1 :] *= 3.0
    after = symbol_samples(changed, funding, NAMES, label, stride=1)
    assert np.array_equal(base.bar_index, after.bar_index)
    cut_ts = btc["close_ts"][cut]
    early = base.t0 <= cut_ts
    np.testing.assert_array_equal(base.features[early], after.features[early])  # bitwise, NaN included
    settled = base.t1 <= cut_ts  # outcome known before the perturbation
    assert settled.sum() > 3000
    np.testing.assert_array_equal(base.y[settled], after.y[settled])
    np.testing.assert_array_equal(base.forward_ret_bps[settled], after.forward_ret_bps[settled])
    # and the perturbation is real: later samples did change
    assert not np.array_equal(base.features[~early], after.features[~early])
    window = early & ~settled  # decided before the cut, resolved after: may change only through their own window
    assert window.sum() > 0 and np.all(base.t1[window] > cut_ts)


def test_label_interval_starts_at_the_decision_and_stays_within_the_horizon(btc: np.ndarray) -> None:
    label = LabelSpec(horizon_bars=30)
    ds = symbol_samples(btc, None, NAMES, label, stride=7)
    bar_ns = 60 * 10**9
    assert np.all(ds.t1 > ds.t0)
    assert np.all(ds.t1 - ds.t0 <= 30 * bar_ns)
    assert np.all(np.diff(ds.bar_index) == 7)
    # the target agrees with an independent recomputation from closes for the barrier samples
    close = btc["close"]
    for i in range(0, len(ds), 97):
        k = int(ds.bar_index[i])
        path = close[k + 1 : k + 31] / close[k] - 1.0
        up = ds.up_move_bps[i] / 1e4
        down = ds.down_move_bps[i] / 1e4
        hits = np.nonzero((path >= up) | (path <= -down))[0]
        expected = 1 if len(hits) and path[hits[0]] >= up else 0
        assert ds.y[i] == expected


def test_funding_is_the_last_settled_rate(funding: np.ndarray) -> None:
    ts = funding["exchange_ts"]
    probe = np.array([ts[100] - 1, ts[100], ts[100] + 1, ts[0] - 1], dtype=np.int64)
    got = settled_funding(probe, funding)
    assert got[0] == funding["qty"][99]
    assert got[1] == got[2] == funding["qty"][100]
    assert np.isnan(got[3])


def test_pooled_dataset_is_time_sorted_with_both_symbols(shared_dir: Path, btc: np.ndarray) -> None:
    eth = read_klines_csv(shared_dir / "data" / ETH, 1)[:6000]
    ds = kline_dataset({0: btc, 1: eth}, {}, NAMES, LabelSpec(), stride=5)
    assert set(np.unique(ds.symbol)) == {0, 1}
    assert np.all(np.diff(ds.t0) >= 0)
    assert ds.features.shape == (len(ds), len(NAMES))
    sub = ds.subset(ds.symbol == 1)
    assert len(sub) < len(ds) and sub.feature_names == ds.feature_names


def test_feature_resolution_names_the_problem() -> None:
    assert resolve_feature_names("bars-v1") == NAMES
    assert resolve_feature_names("rv, atr_bps") == ("rv", "atr_bps")
    with pytest.raises(ValueError, match="unknown feature 'nope'"):
        resolve_feature_names("rv,nope")
    with pytest.raises(ValueError, match="listed twice"):
        resolve_feature_names("rv,rv")
    assert set(NAMES) <= set(FEATURE_COLUMNS)


def test_label_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="kind"):
        LabelSpec(kind="banana")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="horizon_bars"):
        LabelSpec(horizon_bars=0)
