"""ModelRouter: validation, stable cohorts by symbol, hot weights, shadows, per-model rows, real ONNX."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tradeplane.engine.decision.router import ModelRouter, RoutedModel

from .conftest import FEATURES, ConstScorer, FailingScorer, LinearScorer

FEATS = {"qi1": 0.3, "ofi1": -1.0, "dmicro_bps": 0.5, "spread_bps": 0.02}
SYMBOLS = [f"SYM{i}USDT" for i in range(10_000)]


def _router(*canary_weights: float, shadows: int = 0) -> ModelRouter:
    models = [RoutedModel("stable", "stable", 0.0, ConstScorer(0.6))]
    models += [RoutedModel(f"canary{i}", "canary", w, ConstScorer(0.7 + i / 100)) for i, w in enumerate(canary_weights)]
    models += [RoutedModel(f"shadow{i}", "shadow", 0.0, ConstScorer(0.4)) for i in range(shadows)]
    return ModelRouter(models)


# ---------------------------------------------------------------------------------------------- validation

INVALID: dict[str, tuple[list[tuple[str, str, float]], str]] = {
    "duplicate_version": ([("v1", "stable", 0), ("v1", "canary", 0.1)], "unique"),
    "two_stables": ([("v1", "stable", 0), ("v2", "stable", 0)], "one stable"),
    "unknown_role": ([("v1", "stable", 0), ("v2", "primary", 0)], "role"),
    "weight_above_one": ([("v1", "stable", 0), ("v2", "canary", 1.5)], r"\[0, 1\]"),
    "negative_weight": ([("v1", "stable", 0), ("v2", "canary", -0.1)], r"\[0, 1\]"),
    "nan_weight": ([("v1", "stable", 0), ("v2", "canary", math.nan)], r"\[0, 1\]"),
    "weights_sum_above_one": ([("v1", "stable", 0), ("v2", "canary", 0.6), ("v3", "canary", 0.5)], "sum"),
}


@pytest.mark.parametrize(("models", "match"), INVALID.values(), ids=INVALID.keys())
def test_invalid_routers_are_refused(models: list[tuple[str, str, float]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelRouter([RoutedModel(v, r, w, ConstScorer(0.5)) for v, r, w in models])


def test_shadow_weight_is_ignored_and_full_canary_weight_is_allowed() -> None:
    r = ModelRouter(
        [
            RoutedModel("s", "stable", 0.0, ConstScorer(0.5)),
            RoutedModel("c", "canary", 1.0, ConstScorer(0.6)),
            RoutedModel("sh", "shadow", 7.0, ConstScorer(0.7)),
        ]
    )
    assert r.weights() == {"s": 0.0, "c": 1.0, "sh": 0.0}
    assert all(r.route(s) == ("c", "canary") for s in SYMBOLS[:200])


def test_no_stable_model_fails_on_score() -> None:
    r = ModelRouter([RoutedModel("c", "canary", 0.5, ConstScorer(0.6))])
    with pytest.raises(ValueError, match="no stable"):
        r.score("BTCUSDT", FEATS)


def test_versions_and_weights() -> None:
    r = _router(0.05, 0.15, shadows=1)
    assert r.versions() == ("stable", "canary0", "canary1", "shadow0")
    assert r.weights() == pytest.approx({"stable": 0.8, "canary0": 0.05, "canary1": 0.15, "shadow0": 0.0})


# ---------------------------------------------------------------------------------------------- cohorts


def test_cohort_is_in_unit_interval_and_stable() -> None:
    r = _router()
    values = [r.cohort(s) for s in SYMBOLS[:1000]]
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == [_router().cohort(s) for s in SYMBOLS[:1000]]  # another router instance
    assert len(set(values)) == 1000


def test_cohort_is_the_same_in_another_process() -> None:
    code = (
        "from tradeplane.engine.decision.router import ModelRouter;"
        "r = ModelRouter([]); print(*(repr(r.cohort(s)) for s in ('BTCUSDT', 'ETHUSDT', 'SOLUSDT')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "4242"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    r = _router()
    assert [float(x) for x in out] == [r.cohort(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]


def test_cohorts_are_uniform() -> None:
    """Kolmogorov–Smirnov distance of 10 000 cohorts from U(0, 1) well inside the 1 % critical value."""
    r = _router()
    u = np.sort([r.cohort(s) for s in SYMBOLS])
    n = len(u)
    d = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
    assert d < 1.63 / math.sqrt(n)


@pytest.mark.parametrize("weight", [0.05, 0.2, 0.5, 0.9])
def test_canary_share_of_symbols_matches_its_weight(weight: float) -> None:
    r = _router(weight)
    share = sum(r.route(s)[0] == "canary0" for s in SYMBOLS) / len(SYMBOLS)
    assert abs(share - weight) <= 0.02


def test_two_canaries_split_their_cumulative_ranges() -> None:
    r = _router(0.1, 0.25)
    routes = [r.route(s)[0] for s in SYMBOLS]
    shares = {v: routes.count(v) / len(routes) for v in ("stable", "canary0", "canary1")}
    assert shares["canary0"] == pytest.approx(0.1, abs=0.02)
    assert shares["canary1"] == pytest.approx(0.25, abs=0.02)
    assert shares["stable"] == pytest.approx(0.65, abs=0.02)


def test_a_symbol_never_flips_while_weights_are_unchanged() -> None:
    r = _router(0.3)
    first = {s: r.route(s) for s in SYMBOLS[:500]}
    for _ in range(5):
        for s in SYMBOLS[:500]:
            assert r.route(s) == first[s]
            assert r.score(s, FEATS).version == first[s][0]


def test_raising_a_canary_weight_only_adds_symbols() -> None:
    r = _router(0.05)
    before = {s for s in SYMBOLS if r.route(s)[0] == "canary0"}
    r.set_weights({"canary0": 0.2})
    after = {s for s in SYMBOLS if r.route(s)[0] == "canary0"}
    assert before < after
    assert len(after) / len(SYMBOLS) == pytest.approx(0.2, abs=0.02)


def test_cohort_cache_stays_bounded_and_correct() -> None:
    r = _router()
    first = r.cohort(SYMBOLS[0])
    for s in SYMBOLS:
        r.cohort(s)
    assert len(r._cohorts) <= 4096
    assert r.cohort(SYMBOLS[0]) == first


# ---------------------------------------------------------------------------------------------- hot weights


def test_set_weights_is_hot() -> None:
    r = _router(0.0)
    assert all(r.score(s, FEATS).version == "stable" for s in SYMBOLS[:300])
    r.set_weights({"canary0": 1.0})
    assert all(r.score(s, FEATS).version == "canary0" for s in SYMBOLS[:300])
    assert r.weights()["stable"] == 0.0
    r.set_weights({"canary0": 0.0})
    assert all(r.score(s, FEATS).role == "stable" for s in SYMBOLS[:300])


BAD_UPDATES: dict[str, tuple[dict[str, float], str]] = {
    "unknown_version": ({"nope": 0.1}, "not canary"),
    "stable_named": ({"stable": 0.5}, "not canary"),
    "shadow_named": ({"shadow0": 0.5}, "not canary"),
    "sum_above_one": ({"canary0": 0.7}, "sum"),
    "out_of_range": ({"canary1": 2.0}, r"\[0, 1\]"),
}


@pytest.mark.parametrize(("update", "match"), BAD_UPDATES.values(), ids=BAD_UPDATES.keys())
def test_a_bad_weight_update_changes_nothing(update: dict[str, float], match: str) -> None:
    r = _router(0.1, 0.4, shadows=1)
    before = r.weights()
    routes = [r.route(s) for s in SYMBOLS[:500]]
    with pytest.raises(ValueError, match=match):
        r.set_weights(update)
    assert r.weights() == before
    assert [r.route(s) for s in SYMBOLS[:500]] == routes


def test_unnamed_canaries_keep_their_weight() -> None:
    r = _router(0.1, 0.2)
    r.set_weights({"canary1": 0.3})
    assert r.weights()["canary0"] == 0.1
    assert r.weights()["canary1"] == 0.3
    assert r.weights()["stable"] == pytest.approx(0.6)


# ---------------------------------------------------------------------------------------------- scoring


def test_each_model_gets_its_own_column_order() -> None:
    a = ConstScorer(0.6, ("qi1", "ofi1", "dmicro_bps"))
    b = ConstScorer(0.4, ("spread_bps", "qi1"))
    r = ModelRouter([RoutedModel("a", "stable", 0, a), RoutedModel("b", "shadow", 0, b)])
    r.score("BTCUSDT", FEATS)
    np.testing.assert_array_equal(a.rows[-1], [[0.3, -1.0, 0.5]])
    np.testing.assert_array_equal(b.rows[-1], [[0.02, 0.3]])
    assert a.rows[-1].dtype == np.float64 and a.rows[-1].shape == (1, 3)


def test_missing_and_nan_features_reach_the_model_as_nan() -> None:
    s = ConstScorer(0.6, ("qi1", "absent", "dmicro_bps"))
    r = ModelRouter([RoutedModel("a", "stable", 0, s)])
    r.score("BTCUSDT", {"qi1": math.nan, "dmicro_bps": 1.0})
    row = s.rows[-1]
    assert math.isnan(row[0, 0]) and math.isnan(row[0, 1]) and row[0, 2] == 1.0


def test_single_feature_model() -> None:
    s = ConstScorer(0.55, ("qi1",))
    r = ModelRouter([RoutedModel("a", "stable", 0, s)])
    assert r.score("BTCUSDT", FEATS).p_up == 0.55
    np.testing.assert_array_equal(s.rows[-1], [[0.3]])


def test_shadows_are_recorded_and_their_failures_never_raise() -> None:
    r = ModelRouter(
        [
            RoutedModel("s", "stable", 0, ConstScorer(0.61)),
            RoutedModel("sh-ok", "shadow", 0, ConstScorer(0.42)),
            RoutedModel("sh-bad", "shadow", 0, FailingScorer(exc=RuntimeError("boom"))),
        ]
    )
    out = r.score("BTCUSDT", FEATS)
    assert (out.p_up, out.version, out.role) == (0.61, "s", "stable")
    assert out.shadow[0] == ("sh-ok", 0.42)
    assert out.shadow[1][0] == "sh-bad" and math.isnan(out.shadow[1][1])
    assert out.error == "sh-bad: RuntimeError: boom"


def test_no_shadows_means_empty_shadow_and_error() -> None:
    out = _router().score("BTCUSDT", FEATS)
    assert (out.shadow, out.error) == ((), "")


def test_the_routed_models_failure_propagates() -> None:
    r = ModelRouter([RoutedModel("s", "stable", 0, FailingScorer())])
    with pytest.raises(RuntimeError, match="session lost"):
        r.score("BTCUSDT", FEATS)


def test_scorer_without_feature_names_is_refused() -> None:
    with pytest.raises(ValueError, match="feature_names"):
        ModelRouter([RoutedModel("s", "stable", 0, ConstScorer(0.5, ()))])


# ---------------------------------------------------------------------------------------------- real ONNX


def test_onnx_stable_with_python_canary_and_onnx_shadow(onnx_scorer_factory: Callable[..., Any]) -> None:
    stable = onnx_scorer_factory()
    reordered = tuple(reversed(FEATURES))
    shadow = onnx_scorer_factory(reordered, seed=11)
    canary = LinearScorer(("ofi1", "qi1"), (0.5, 2.0))
    r = ModelRouter(
        [
            RoutedModel("onnx-v1", "stable", 0, stable),
            RoutedModel("py-v2", "canary", 0.5, canary),
            RoutedModel("onnx-v3", "shadow", 0, shadow),
        ]
    )
    want_stable = float(stable.predict(np.array([[FEATS[n] for n in FEATURES]]))[0])
    want_shadow = float(shadow.predict(np.array([[FEATS[n] for n in reordered]]))[0])
    want_canary = float(canary.predict(np.array([[FEATS["ofi1"], FEATS["qi1"]]]))[0])
    by_role: dict[str, Any] = {}
    for s in SYMBOLS[:200]:
        out = r.score(s, FEATS)
        by_role.setdefault(out.role, out)
        assert out.shadow == (("onnx-v3", want_shadow),)
    assert set(by_role) == {"stable", "canary"}
    assert by_role["stable"].p_up == want_stable and by_role["stable"].version == "onnx-v1"
    assert by_role["canary"].p_up == pytest.approx(want_canary) and by_role["canary"].version == "py-v2"
    assert 0.0 < want_stable < 1.0 and want_stable != want_shadow


def test_onnx_model_sees_nan_as_missing(onnx_scorer_factory: Callable[..., Any]) -> None:
    scorer = onnx_scorer_factory()
    r = ModelRouter([RoutedModel("onnx-v1", "stable", 0, scorer)])
    feats = {**FEATS, "qi1": math.nan}
    p = r.score("BTCUSDT", feats).p_up
    assert p == float(scorer.predict(np.array([[math.nan, -1.0, 0.5, 0.02]]))[0])
    assert r.score("BTCUSDT", {k: v for k, v in feats.items() if k != "qi1"}).p_up == p
