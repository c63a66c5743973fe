"""Shared builders for the decision tests: a spec, a market state, scorers (pure Python and a real ONNX model).

The default market is a healthy BTCUSDT USD-M top (mid 60 000.05, spread ≈ 0.017 bps, 120 000 USDT per side,
funding 1 bps per 8 h, ATR over the horizon 150 ≈ 25 bps) and the default strategy trades it with the spec's
defaults except margin 100 × leverage 3 (notional ≈ 300 → qty 0.005 on a 0.001 step). With p_up = 0.7 that
enters long: E = 0.4 · 25 bps = 10 bps, C ≈ 7.01 bps (maker 2 + taker 5), U ≈ 1.43 ≥ κ = 1.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tradeplane.api.v1alpha1.strategy import StrategySpec
from tradeplane.engine.decision.config import DecisionConfig, compile_decision_config
from tradeplane.engine.decision.types import MarketState

FEATURES = ("qi1", "ofi1", "dmicro_bps", "spread_bps")
NS = 1_000_000_000
T0 = 1_700_000_000 * NS

BASE_SPEC: dict[str, Any] = {
    "riskBudgetRef": {"name": "desk"},
    "venue": "binance-usdm",
    "symbols": ["BTCUSDT"],
    "model": {"family": "ofi-lgbm"},
    "sizing": {"marginBaseUsdt": 100, "leverage": 3},
}

BASE_STATE = MarketState(
    symbol="BTCUSDT",
    venue="binance-usdm",
    exchange_ts=T0,
    ingest_ts=T0 + 1_000_000,
    bid=60_000.0,
    ask=60_000.1,
    bid_qty=2.0,
    ask_qty=2.0,
    tick_size=0.1,
    step_size=0.001,
    min_qty=0.001,
    min_notional=100.0,
    next_funding_rate=0.0001,
    data_ok=True,
    atr=150.0,
)

BASE_FEATURES: dict[str, float] = {"qi1": 0.1, "ofi1": 0.2, "dmicro_bps": 0.0, "spread_bps": 0.017, "rv_pct": 0.5}


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (lists and scalars replace)."""
    out = copy.deepcopy(dict(base))
    for k, v in changes.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def make_spec(**changes: Any) -> StrategySpec:
    """The base spec with camelCase ``changes`` deep-merged in."""
    return StrategySpec.model_validate(merge(BASE_SPEC, changes))


def make_cfg(**changes: Any) -> DecisionConfig:
    return compile_decision_config("strat", make_spec(**changes), FEATURES)


def make_state(**changes: Any) -> MarketState:
    return dataclasses.replace(BASE_STATE, **changes)


class ConstScorer:
    """A pure-Python scorer: constant p_up, remembering the rows it saw."""

    def __init__(self, p: float, names: tuple[str, ...] = FEATURES) -> None:
        self.p = p
        self.feature_names = names
        self.rows: list[npt.NDArray[np.float64]] = []

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.asarray(features, dtype=np.float64)
        self.rows.append(x.copy())
        return np.full(x.shape[0], self.p)


class FailingScorer:
    def __init__(self, names: tuple[str, ...] = FEATURES, exc: Exception | None = None) -> None:
        self.feature_names = names
        self.exc = exc or RuntimeError("session lost")

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        raise self.exc


class LinearScorer:
    """A pure-Python logistic model in its own column order (checks that routers build rows per model)."""

    def __init__(self, names: tuple[str, ...], weights: tuple[float, ...]) -> None:
        self.feature_names = names
        self.w = np.asarray(weights, dtype=np.float64)

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.nan_to_num(np.atleast_2d(np.asarray(features, dtype=np.float64)))
        return np.asarray(1.0 / (1.0 + np.exp(-(x @ self.w))))


@functools.cache
def onnx_model_bytes(names: tuple[str, ...] = FEATURES, seed: int = 7) -> bytes:
    """A tiny LightGBM classifier trained with the project's fit_gbm and exported by its own converter."""
    from tradeplane.engine.models.gbm import GbmParams, fit_gbm
    from tradeplane.engine.models.onnx_graph import classifier_to_onnx

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, len(names)))
    logit = 1.5 * x[:, 0] + 0.8 * x[:, 1] - 0.3 * x[:, -1]
    y = (rng.random(2000) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    params = GbmParams(num_leaves=7, n_estimators=30, min_data_in_leaf=20, learning_rate=0.1, seed=seed)
    booster = fit_gbm(x, y, params, feature_names=names)
    return bytes(classifier_to_onnx(booster.dump_model(), names).SerializeToString())


@pytest.fixture(scope="session")
def onnx_scorer_factory() -> Callable[..., Any]:
    from tradeplane.engine.models.onnx_scorer import OnnxScorer

    def build(names: tuple[str, ...] = FEATURES, seed: int = 7) -> OnnxScorer:
        return OnnxScorer(onnx_model_bytes(names, seed), names)

    return build
