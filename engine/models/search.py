"""Seeded random search over LightGBM hyper-parameters within a trial and a time budget.

Why random search: with ~8 parameters of unequal importance it finds good regions faster than a grid, and
it is trivially reproducible: every trial's parameters are drawn up front from the seed, so the sequence
of trials never depends on timing. A time budget can only *truncate* that sequence (metrics.json records
trials_run, trials_planned and stopped_by_time);
with the trial budget binding, two runs give identical trials and the same winner. Trial 0 is always the
base parameters, so the search can never do worse than the defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .gbm import GbmParams


@dataclass(frozen=True)
class SearchSpace:
    """Ranges sampled per trial (log-uniform for scale parameters, uniform otherwise)."""

    num_leaves: tuple[int, int] = (4, 63)
    learning_rate: tuple[float, float] = (0.01, 0.2)
    n_estimators: tuple[int, int] = (50, 400)
    min_data_in_leaf: tuple[int, int] = (50, 1000)
    feature_fraction: tuple[float, float] = (0.4, 1.0)
    bagging_fraction: tuple[float, float] = (0.5, 1.0)
    lambda_l2: tuple[float, float] = (1e-3, 30.0)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_params(rng: np.random.Generator, space: SearchSpace, base: GbmParams) -> GbmParams:
    """One draw from ``space`` (the seed and max_depth are kept from ``base``)."""
    return replace(
        base,
        num_leaves=round(_log_uniform(rng, *space.num_leaves)),
        learning_rate=_log_uniform(rng, *space.learning_rate),
        n_estimators=round(_log_uniform(rng, *space.n_estimators)),
        min_data_in_leaf=round(_log_uniform(rng, *space.min_data_in_leaf)),
        feature_fraction=float(rng.uniform(*space.feature_fraction)),
        bagging_fraction=float(rng.uniform(*space.bagging_fraction)),
        lambda_l2=_log_uniform(rng, *space.lambda_l2),
    )


def trial_params(n_trials: int, seed: int, base: GbmParams, space: SearchSpace) -> list[GbmParams]:
    """The full, timing-independent sequence of trial parameters: the base first, then seeded draws."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be ≥ 1, got {n_trials}")
    rng = np.random.default_rng(seed)
    return [base, *(sample_params(rng, space, base) for _ in range(n_trials - 1))]


@dataclass(frozen=True)
class Trial:
    index: int
    params: GbmParams
    metrics: Mapping[str, float]
    seconds: float

    @property
    def objective(self) -> float:
        return float(self.metrics["objective"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial": self.index + 1,  # 1-based, as progress lines and reports count
            "objective": self.objective,
            "seconds": self.seconds,
            "params": self.params.as_dict(),
            **{k: v for k, v in self.metrics.items() if k != "objective"},
        }


@dataclass(frozen=True)
class SearchResult:
    trials: tuple[Trial, ...]
    planned: int
    stopped_by_time: bool

    @property
    def best(self) -> Trial:
        """Highest J; ties go to the earlier trial (so the base wins a tie)."""
        return max(self.trials, key=lambda t: (_finite(t.objective), -t.index))


def _finite(v: float) -> float:
    return v if np.isfinite(v) else -np.inf


def random_search(
    evaluate: Callable[[GbmParams], Mapping[str, float]],
    *,
    n_trials: int,
    seed: int,
    base: GbmParams | None = None,
    space: SearchSpace | None = None,
    time_budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_trial: Callable[[Trial, int], None] | None = None,
) -> SearchResult:
    """Evaluate the seeded trial sequence until it ends or the time budget is spent (≥ 1 trial always runs).

    ``evaluate`` returns a metrics dict with an ``objective`` entry (see ``objective.signal_metrics``).
    """
    plan = trial_params(n_trials, seed, base or GbmParams(seed=seed), space or SearchSpace())
    start = clock()
    trials: list[Trial] = []
    for i, params in enumerate(plan):
        if trials and time_budget_s is not None and clock() - start >= time_budget_s:
            return SearchResult(tuple(trials), len(plan), True)
        t0 = clock()
        m = dict(evaluate(params))
        if "objective" not in m:
            raise ValueError("evaluate() must return an 'objective' entry")
        trial = Trial(i, params, m, clock() - t0)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial, len(plan))
    return SearchResult(tuple(trials), len(plan), False)
