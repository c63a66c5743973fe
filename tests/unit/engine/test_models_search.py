"""Search reproducibility and budgets, the objective J, out-of-fold bookkeeping, LightGBM determinism."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tradeplane.engine import metrics
from tradeplane.engine.models.gbm import GbmParams, fit_gbm, fit_logistic, predict_gbm, predict_logistic
from tradeplane.engine.models.objective import ObjectiveWeights, SignalCosts, objective, signal_metrics
from tradeplane.engine.models.oof import out_of_fold
from tradeplane.engine.models.search import SearchSpace, random_search, trial_params
from tradeplane.engine.splits import purged_kfold, walk_forward


def _toy(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[rng.random((n, 6)) < 0.05] = np.nan
    logit = 1.2 * np.nan_to_num(x[:, 0]) - 0.8 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return x, y


def test_trial_sequence_is_seeded_and_starts_with_the_base() -> None:
    base = GbmParams(seed=3)
    a = trial_params(8, 42, base, SearchSpace())
    b = trial_params(8, 42, base, SearchSpace())
    c = trial_params(8, 43, base, SearchSpace())
    assert a == b and a != c
    assert a[0] == base
    assert len({p.num_leaves for p in a[1:]}) > 3
    space = SearchSpace()
    for p in a[1:]:
        assert space.num_leaves[0] <= p.num_leaves <= space.num_leaves[1]
        assert space.learning_rate[0] <= p.learning_rate <= space.learning_rate[1]
        assert p.seed == 3


def test_search_is_reproducible_and_the_best_trial_wins() -> None:
    x, y = _toy()
    splits = walk_forward(np.arange(len(y)), np.arange(len(y)), 3)

    def evaluate(params: GbmParams) -> dict[str, float]:
        oof = out_of_fold(x, y, splits, lambda a, b, c: predict_gbm(fit_gbm(a, b, params), c))
        t = oof.tested
        return {"objective": metrics.pr_auc(y[t], oof.p[t])}

    space = SearchSpace(n_estimators=(20, 60))
    first = random_search(evaluate, n_trials=4, seed=7, base=GbmParams(n_estimators=30), space=space)
    second = random_search(evaluate, n_trials=4, seed=7, base=GbmParams(n_estimators=30), space=space)
    assert [t.objective for t in first.trials] == [t.objective for t in second.trials]
    assert first.best.objective == max(t.objective for t in first.trials)
    assert not first.stopped_by_time and first.planned == 4


def test_time_budget_truncates_the_same_sequence() -> None:
    ticks: Iterator[float] = iter(float(i) for i in range(1000))
    seen: list[GbmParams] = []

    def evaluate(params: GbmParams) -> dict[str, float]:
        seen.append(params)
        return {"objective": float(len(seen))}

    result = random_search(evaluate, n_trials=10, seed=1, time_budget_s=5.0, clock=lambda: next(ticks))
    assert result.stopped_by_time and 1 <= len(result.trials) < 10
    assert seen == trial_params(10, 1, GbmParams(seed=1), SearchSpace())[: len(seen)]


def test_ties_go_to_the_earlier_trial_and_nan_never_wins() -> None:
    values = iter([0.5, float("nan"), 0.5, 0.4])
    result = random_search(lambda p: {"objective": next(values)}, n_trials=4, seed=0)
    assert result.best.index == 0


def test_objective_is_the_weighted_sum_of_its_terms() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.3).astype(np.int8)
    p = np.clip(0.3 + 0.2 * (y - 0.3) + rng.normal(0, 0.1, n), 0.01, 0.99)
    fwd = np.where(y == 1, 40.0, -10.0) + rng.normal(0, 5, n)
    w = ObjectiveWeights(alpha=1.3, beta=0.7, gamma=0.2, delta=0.9, tau=0.4, kappa=0.0, top_k_frac=0.1)
    costs = SignalCosts(slippage_bps=1.0, horizon_s=1800)
    m = signal_metrics(
        y,
        p,
        forward_ret_bps=fwd,
        up_move_bps=np.full(n, 40.0),
        down_move_bps=np.full(n, 40.0),
        funding_rate=np.full(n, 1e-4),
        costs=costs,
        weights=w,
    )
    # independent pieces: PR-AUC from the metric, hit@K by sorting, FPR by counting, U by hand
    k = 200
    top = np.argsort(-p, kind="mergesort")[:k]
    cost = 2 * 5.0 + 2 * 1.0 + 1e-4 * 1e4 * 1800 / 28800  # taker fees, taker slippage, funding for a long
    ex_ante = (p * 40 - (1 - p) * 40) / cost
    taken = (p >= 0.4) & (ex_ante >= 0.0)
    assert m["hit_at_top_k"] == pytest.approx(y[top].mean())
    assert m["false_positive_rate"] == pytest.approx(np.mean(p[y == 0] >= 0.4))
    assert m["avg_utility"] == pytest.approx(np.mean(fwd[taken] / cost))
    assert m["taken"] == taken.sum() > 0
    expected = 1.3 * m["pr_auc"] + 0.7 * m["hit_at_top_k"] + 0.2 * m["avg_utility"] - 0.9 * m["false_positive_rate"]
    assert m["objective"] == pytest.approx(expected)
    assert objective({**m, "avg_utility": float("nan")}, w) == pytest.approx(expected - 0.2 * m["avg_utility"])
    assert objective({**m, "taken": 19.0}, w) == pytest.approx(expected - 0.2 * m["avg_utility"])  # too few trades


def test_out_of_fold_scores_each_sample_once_from_models_that_never_saw_it() -> None:
    x, y = _toy(1200)
    t0 = np.arange(len(y)) * 10
    t1 = t0 + 35  # overlapping label windows
    splits = purged_kfold(t0, t1, 4, embargo=20)
    seen_train: list[np.ndarray] = []

    def fit_predict(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        seen_train.append(a)
        return predict_logistic(fit_logistic(a, b), c)

    oof = out_of_fold(x, y, splits, fit_predict)
    assert oof.tested.all() and np.isfinite(oof.p).all()
    for i, split in enumerate(splits):
        assert np.all(oof.fold[split.test] == i)
        assert not np.intersect1d(split.train, split.test).size
        assert seen_train[i].shape[0] == split.train.shape[0]
    with pytest.raises(ValueError, match="already tested"):
        out_of_fold(x, y, [splits[0], splits[0]], fit_predict)


def test_walk_forward_leaves_the_first_block_untested() -> None:
    x, y = _toy(900)
    idx = np.arange(len(y))
    oof = out_of_fold(x, y, walk_forward(idx, idx, 2), lambda a, b, c: predict_logistic(fit_logistic(a, b), c))
    assert not oof.tested[:300].any() and oof.tested[300:].all()
    assert np.isnan(oof.p[:300]).all()


def test_lightgbm_is_deterministic_and_learns_the_signal() -> None:
    x, y = _toy()
    params = GbmParams(n_estimators=60, seed=5)
    a = predict_gbm(fit_gbm(x[:2000], y[:2000], params), x[2000:])
    b = predict_gbm(fit_gbm(x[:2000], y[:2000], params), x[2000:])
    np.testing.assert_array_equal(a, b)
    assert metrics.roc_auc(y[2000:], a) > 0.7
    with pytest.raises(ValueError, match="one class"):
        fit_gbm(x[:10], np.zeros(10, dtype=np.int8), params)
