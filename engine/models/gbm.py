"""LightGBM binary classifier with pinned, reproducible settings, and the logistic baseline beside it.

Why one thread and ``deterministic``: the same seed and data must give the same trees bit for bit, so a
training run can be reproduced from its lineage and a search trial re-run on its own. The baseline is a
plain L2 logistic regression on median-imputed, standardized features: if the boosted model does not beat
it out of sample, the extra capacity is fitting noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GbmParams:
    """The searched LightGBM hyper-parameters (names as in LightGBM's documentation)."""

    num_leaves: int = 15
    learning_rate: float = 0.05
    n_estimators: int = 200
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_depth: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_leaves < 2 or self.n_estimators < 1 or self.min_data_in_leaf < 1:
            raise ValueError("num_leaves must be ≥ 2, n_estimators and min_data_in_leaf ≥ 1")
        if not (0 < self.learning_rate <= 1 and 0 < self.feature_fraction <= 1 and 0 < self.bagging_fraction <= 1):
            raise ValueError("learning_rate, feature_fraction and bagging_fraction must be in (0, 1]")
        if self.lambda_l2 < 0:
            raise ValueError("lambda_l2 must be ≥ 0")

    def lightgbm_params(self) -> dict[str, Any]:
        """The parameter dict for ``lightgbm.train`` (without the number of rounds)."""
        p = asdict(self)
        p.pop("n_estimators")
        return {
            **p,
            "objective": "binary",
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "num_threads": 1,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_gbm(
    features: npt.ArrayLike, y: npt.ArrayLike, params: GbmParams, *, feature_names: Sequence[str] | None = None
) -> lgb.Booster:
    """Train on all given rows (no early stopping: the number of rounds is a searched parameter).

    ``feature_names`` are stored in the model, so the export can check them against the signature.
    """
    x = np.asarray(features, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != yy.shape[0]:
        raise ValueError(f"features must be [n, f] with one label per row, got {x.shape} and {yy.shape}")
    if yy.min(initial=0) == yy.max(initial=0):
        raise ValueError("training labels hold one class only")
    names: list[str] | Literal["auto"] = list(feature_names) if feature_names is not None else "auto"
    data = lgb.Dataset(x, label=yy, feature_name=names, params={"verbose": -1}, free_raw_data=True)
    return lgb.train(params.lightgbm_params(), data, num_boost_round=params.n_estimators)


def predict_gbm(booster: lgb.Booster, features: npt.ArrayLike) -> FloatArray:
    """Uncalibrated P(y = 1) per row."""
    return np.asarray(booster.predict(np.asarray(features, dtype=np.float64)), dtype=np.float64)


def fit_logistic(features: npt.ArrayLike, y: npt.ArrayLike, *, c: float = 1.0) -> Pipeline:
    """The baseline: impute medians, standardize, L2 logistic regression (lbfgs, deterministic)."""
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=c, max_iter=1000),
    )
    model.fit(np.asarray(features, dtype=np.float64), np.asarray(y))
    return model


def predict_logistic(model: Pipeline, features: npt.ArrayLike) -> FloatArray:
    return np.asarray(model.predict_proba(np.asarray(features, dtype=np.float64))[:, 1], dtype=np.float64)
