"""Per-prediction feature contributions (tradeplane.engine.models.contributions).

Offline: LightGBM TreeSHAP must add up to the raw score. Online: the additive lookup table is checked
against TreeSHAP where it must be exact (stump models on few-valued features: every value is its own bin),
where it must converge (stumps on continuous features, error shrinking as bins get finer), and where it can
only approximate (a 15-leaf model with interactions: top-1 agreement and score correlation above measured
floors, with a column-permuted and a bin-shuffled table as controls that must fall far below them).
Binning is checked against a hand-worked table and against ``bisect.bisect_right`` on random inputs (both
internal lookup paths); ``top_k`` against a plain ``sorted()`` reference; serialization through real JSON.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from tradeplane.engine.models import contributions as contrib
from tradeplane.engine.models.contributions import (
    ContributionTable,
    fit_contribution_table,
    offline_contributions,
    top_k,
    top_k_named,
)

LGB_PARAMS: dict[str, Any] = {"num_threads": 1, "deterministic": True, "seed": 7, "verbose": -1}


def _names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def _bernoulli(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return (rng.random(len(logit)) < 1.0 / (1.0 + np.exp(-logit))).astype(int)


# ---------------------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def discrete_stumps() -> dict[str, Any]:
    """Stumps on features taking 5 values (one with NaNs): SHAP of feature i is a function of x_i alone."""
    rng = np.random.default_rng(11)
    n, f = 4000, 6
    x = rng.integers(-2, 3, size=(n, f)).astype(np.float64)
    x[rng.random(n) < 0.1, 2] = np.nan
    z = np.nan_to_num(x)
    logit = z[:, 0] - 0.7 * z[:, 1] ** 2 + 1.0 * (z[:, 2] > 0) + 0.5 * np.abs(z[:, 3]) - 0.4 * np.isnan(x[:, 2])
    y = _bernoulli(rng, logit)
    params = {**LGB_PARAMS, "objective": "binary", "num_leaves": 2, "max_depth": 1, "learning_rate": 0.1}
    booster = lgb.train(params, lgb.Dataset(x[:3000], y[:3000]), num_boost_round=150)
    return {"booster": booster, "x_train": x[:3000], "x_test": x[3000:]}


@pytest.fixture(scope="module")
def continuous_stumps() -> dict[str, Any]:
    rng = np.random.default_rng(12)
    n, f = 6000, 8
    x = rng.normal(size=(n, f))
    x[rng.random(n) < 0.05, 5] = np.nan
    z = np.nan_to_num(x)
    logit = (
        1.5 * z[:, 0] + np.sin(2 * z[:, 1]) + 1.0 * (z[:, 2] > 0.3) - 0.5 * z[:, 3] ** 2 + 0.3 * z[:, 4]
    ) + 0.5 * np.isnan(x[:, 5])
    y = _bernoulli(rng, logit)
    params = {**LGB_PARAMS, "objective": "binary", "num_leaves": 2, "max_depth": 1, "learning_rate": 0.1}
    booster = lgb.train(params, lgb.Dataset(x[:4000], y[:4000]), num_boost_round=300)
    return {"booster": booster, "x_train": x[:4000], "x_test": x[4000:]}


@pytest.fixture(scope="module")
def realistic() -> dict[str, Any]:
    """15-leaf trees, 200 rounds, interactions; f0..f3 dominate, f6..f24 are weak, 2% NaN everywhere."""
    rng = np.random.default_rng(0)
    n, f = 5500, 25
    x = rng.normal(size=(n, f))
    x[rng.random((n, f)) < 0.02] = np.nan
    z = np.nan_to_num(x)
    logit = (
        2.0 * z[:, 0]
        + 1.5 * z[:, 1] * z[:, 2]
        + 1.2 * np.sin(2 * z[:, 3])
        + 0.8 * (z[:, 4] > 0.5) * z[:, 5]
        + 0.1 * z[:, 6:].sum(1)
    )
    y = _bernoulli(rng, logit)
    params = {**LGB_PARAMS, "objective": "binary", "num_leaves": 15, "learning_rate": 0.05}
    booster = lgb.train(params, lgb.Dataset(x[:4000], y[:4000]), num_boost_round=200)
    x_fit, x_test = x[:2500], x[4000:]  # table fitted on (part of) the training rows, judged on held-out rows
    phi_fit, bias_fit = offline_contributions(booster, x_fit)
    phi_test, bias_test = offline_contributions(booster, x_test)
    table = fit_contribution_table(x_fit, phi_fit, float(bias_fit[0]), _names(f))
    return {
        "booster": booster,
        "x_test": x_test,
        "phi_test": phi_test,
        "bias_test": bias_test,
        "table": table,
    }


# --------------------------------------------------------------------------------------------- offline


def test_offline_contributions_add_up_to_raw_score(discrete_stumps: dict[str, Any], realistic: dict[str, Any]) -> None:
    cases = [
        (
            discrete_stumps["booster"],
            discrete_stumps["x_test"],
            *offline_contributions(discrete_stumps["booster"], discrete_stumps["x_test"]),
        ),
        (realistic["booster"], realistic["x_test"], realistic["phi_test"], realistic["bias_test"]),
    ]
    for booster, x, phi, bias in cases:
        assert phi.shape == x.shape and bias.shape == (len(x),)
        raw = booster.predict(x, raw_score=True)
        np.testing.assert_allclose(phi.sum(1) + bias, raw, rtol=0, atol=1e-9)
        assert np.all(bias == bias[0])  # the expected value does not depend on the row
        # one row as 1-D gives the same as that row of the batch
        phi1, bias1 = offline_contributions(booster, x[7])
        np.testing.assert_allclose(phi1, phi[7:8], rtol=0, atol=1e-12)
        assert bias1[0] == pytest.approx(bias[7], abs=1e-12)


def test_offline_contributions_rejects_wrong_width_and_multiclass() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    y = rng.integers(0, 3, 300)
    booster = lgb.train(
        {**LGB_PARAMS, "objective": "multiclass", "num_class": 3, "num_leaves": 4}, lgb.Dataset(x, y), 3
    )
    with pytest.raises(ValueError, match="single-output"):
        offline_contributions(booster, x)
    with pytest.raises(ValueError, match="expects 3"):
        offline_contributions(booster, x[:, :2])


# ------------------------------------------------------------------------------------- binning by hand


@pytest.fixture(params=["broadcast", "per_feature"])
def lookup_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test through each internal lookup path (small-batch broadcast / large-batch searchsorted)."""
    monkeypatch.setattr(contrib, "_BROADCAST_MAX_ROWS", 10**9 if request.param == "broadcast" else 0)
    yield request.param


def _hand_table() -> ContributionTable:
    return ContributionTable(
        feature_names=("a", "b", "c"),
        edges=(np.array([0.0, 1.0]), np.array([]), np.array([-5.0])),
        values=(np.array([10.0, 20.0, 30.0]), np.array([7.0]), np.array([-1.0, 1.0])),
        nan_values=np.array([-100.0, -200.0, -300.0]),
        bias=0.25,
    )


def test_binning_rule_by_hand(lookup_path: str) -> None:
    table = _hand_table()
    a = np.array([-np.inf, -0.5, 0.0, 0.5, np.nextafter(1.0, 0.0), 1.0, 7.0, np.inf, np.nan])
    x = np.column_stack([a, a, a - 5.0])
    got = table.contributions(x)
    # side="right": a value equal to an edge goes to the bin above it; ±inf to the outer bins; NaN → nan_values
    np.testing.assert_array_equal(got[:, 0], [10, 10, 20, 20, 20, 30, 30, 30, -100])
    np.testing.assert_array_equal(got[:, 1], [7, 7, 7, 7, 7, 7, 7, 7, -200])  # no edges: one bin
    np.testing.assert_array_equal(got[:, 2], [-1, -1, 1, 1, 1, 1, 1, 1, -300])


def test_contributions_shapes_and_width_errors() -> None:
    table = _hand_table()
    row = table.contributions([0.5, 3.0, -9.0])
    assert row.shape == (1, 3)
    np.testing.assert_array_equal(row, [[20.0, 7.0, -1.0]])
    assert table.contributions(np.zeros((0, 3))).shape == (0, 3)
    for bad in (np.zeros(2), np.zeros((4, 4)), np.zeros((2, 3, 1))):
        with pytest.raises(ValueError, match="shape"):
            table.contributions(bad)


def test_lookup_matches_bisect_reference_on_random_tables(lookup_path: str) -> None:
    """Random tables; inputs include edge values exactly, NaN and ±inf; reference: bisect.bisect_right per cell."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        f = int(rng.integers(1, 9))
        edges = tuple(np.unique(rng.normal(size=int(rng.integers(0, 12))).round(1)) for _ in range(f))
        values = tuple(rng.normal(size=e.size + 1) for e in edges)
        table = ContributionTable(tuple(_names(f)), edges, values, rng.normal(size=f), float(rng.normal()))
        n = int(rng.integers(1, 120))
        x = rng.normal(size=(n, f)).round(1)  # rounding makes many inputs equal to an edge
        specials = rng.random((n, f))
        x[specials < 0.05] = np.nan
        x[(specials >= 0.05) & (specials < 0.08)] = np.inf
        x[(specials >= 0.08) & (specials < 0.11)] = -np.inf
        got = table.contributions(x)
        want = np.empty_like(x)
        for r in range(n):
            for j in range(f):
                v = x[r, j]
                want[r, j] = (
                    table.nan_values[j] if np.isnan(v) else values[j][bisect.bisect_right(edges[j].tolist(), v)]
                )
        np.testing.assert_array_equal(got, want)


def test_both_lookup_paths_agree(realistic: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    table, x = realistic["table"], realistic["x_test"][:200]
    monkeypatch.setattr(contrib, "_BROADCAST_MAX_ROWS", 10**9)
    broadcast = table.contributions(x)
    monkeypatch.setattr(contrib, "_BROADCAST_MAX_ROWS", 0)
    per_feature = table.contributions(x)
    np.testing.assert_array_equal(broadcast, per_feature)
    assert per_feature.flags.c_contiguous


# --------------------------------------------------------------------------------------------- fitting


def test_fit_by_hand_edges_means_constant_and_all_nan_features() -> None:
    x = np.column_stack(
        [
            np.arange(1.0, 9.0),  # 1..8, 4 bins -> chunks {1,2} {3,4} {5,6} {7,8}
            np.full(8, 3.0),  # constant -> no edges
            np.full(8, np.nan),  # all NaN -> no edges, value 0, nan_value = mean
            [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0, np.inf],  # ties at the minimum; inf binned, never an edge
        ]
    )
    phi = np.arange(32, dtype=np.float64).reshape(8, 4)
    table = fit_contribution_table(x, phi, 0.5, ["a", "b", "c", "d"], n_bins=4)
    np.testing.assert_array_equal(table.edges[0], [3.0, 5.0, 7.0])
    np.testing.assert_array_equal(table.values[0], [2.0, 10.0, 18.0, 26.0])  # means of phi[:, 0] per pair
    assert table.edges[1].size == 0
    np.testing.assert_array_equal(table.values[1], [np.mean(phi[:, 1])])
    assert table.edges[2].size == 0
    np.testing.assert_array_equal(table.values[2], [0.0])
    assert table.nan_values[2] == np.mean(phi[:, 2])
    np.testing.assert_array_equal(table.edges[3], [2.0])  # the minimum (1.0) is dropped: no empty bin 0
    np.testing.assert_array_equal(table.values[3], [np.mean(phi[:4, 3]), np.mean(phi[4:, 3])])
    np.testing.assert_array_equal(table.nan_values[[0, 1, 3]], [0.0, 0.0, 0.0])  # no NaN seen -> 0
    assert table.bias == 0.5
    # applying the table to the training rows gives the per-bin means back
    np.testing.assert_array_equal(table.contributions(x)[:, 0], np.repeat([2.0, 10.0, 18.0, 26.0], 2))


def test_fit_rejects_bad_input() -> None:
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="phi has shape"):
        fit_contribution_table(x, np.zeros((5, 3)), 0.0, ["a", "b"])
    with pytest.raises(ValueError, match="feature_names"):
        fit_contribution_table(x, np.zeros((5, 2)), 0.0, ["a"])
    with pytest.raises(ValueError, match="n_bins"):
        fit_contribution_table(x, np.zeros((5, 2)), 0.0, ["a", "b"], n_bins=0)
    with pytest.raises(ValueError, match="unique"):
        fit_contribution_table(x, np.zeros((5, 2)), 0.0, ["a", "a"])


def test_nan_inputs_use_nan_values() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(500, 3))
    nan_rows = rng.random(500) < 0.2
    x[nan_rows, 1] = np.nan
    phi = rng.normal(size=(500, 3))
    phi[nan_rows, 1] = 4.0 + rng.normal(size=nan_rows.sum()) * 0.01
    table = fit_contribution_table(x, phi, 0.0, ["a", "b", "c"])
    assert table.nan_values[1] == pytest.approx(np.mean(phi[nan_rows, 1]), abs=1e-12)
    assert table.nan_values[0] == 0.0 and table.nan_values[2] == 0.0  # never NaN in training -> 0
    got = table.contributions(x)
    np.testing.assert_array_equal(got[nan_rows, 1], table.nan_values[1])
    assert np.all(np.abs(got[~nan_rows, 1]) < 3.0)  # non-NaN rows use the bins, not the NaN value
    fresh = table.contributions([[np.nan, 0.0, np.nan]])
    np.testing.assert_array_equal(fresh[0, [0, 2]], [0.0, 0.0])


# ------------------------------------------------------------------------------------- online vs SHAP


def test_stumps_on_few_valued_features_are_reproduced_exactly(discrete_stumps: dict[str, Any]) -> None:
    booster = discrete_stumps["booster"]
    phi, bias = offline_contributions(booster, discrete_stumps["x_train"])
    table = fit_contribution_table(discrete_stumps["x_train"], phi, float(bias[0]), _names(6))
    for e in table.edges:  # every value (-2..2) is its own bin
        np.testing.assert_array_equal(e, [-1.0, 0.0, 1.0, 2.0])
    assert table.nan_values[2] != 0.0  # the NaN branch of feature 2 carries a contribution
    x_test = discrete_stumps["x_test"]
    assert np.isnan(x_test[:, 2]).any()
    phi_test, _ = offline_contributions(booster, x_test)
    online = table.contributions(x_test)
    np.testing.assert_allclose(online, phi_test, rtol=0, atol=1e-9)
    np.testing.assert_allclose(online.sum(1) + table.bias, booster.predict(x_test, raw_score=True), atol=1e-9)


def test_stumps_on_continuous_features_converge_with_finer_bins(continuous_stumps: dict[str, Any]) -> None:
    booster, x_train, x_test = continuous_stumps["booster"], continuous_stumps["x_train"], continuous_stumps["x_test"]
    phi, bias = offline_contributions(booster, x_train)
    phi_test, _ = offline_contributions(booster, x_test)
    scale = np.abs(phi_test).mean()

    def rel_error(n_bins: int) -> float:
        table = fit_contribution_table(x_train, phi, float(bias[0]), _names(8), n_bins=n_bins)
        return float(np.abs(table.contributions(x_test) - phi_test).mean() / scale)

    errors = {nb: rel_error(nb) for nb in (8, 32, 256)}
    # measured: 0.21, 0.062, 0.0082
    assert errors[32] < 0.1
    assert errors[8] > errors[32] > errors[256]
    assert errors[256] < 0.02
    # One bin per distinct training value: every stump threshold separates bins, so training rows are exact.
    exact = fit_contribution_table(x_train, phi, float(bias[0]), _names(8), n_bins=len(x_train))
    np.testing.assert_allclose(exact.contributions(x_train), phi, rtol=0, atol=1e-9)


def _top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(top_k(a, 1)[0][:, 0] == top_k(b, 1)[0][:, 0]))


def test_realistic_model_top_features_agree_and_controls_do_not(realistic: dict[str, Any]) -> None:
    table: ContributionTable = realistic["table"]
    x, phi_test = realistic["x_test"], realistic["phi_test"]
    raw = realistic["booster"].predict(x, raw_score=True)
    online = table.contributions(x)
    # sanity of the construction: a few features dominate the exact attributions
    assert np.isin(top_k(phi_test, 1)[0][:, 0], [0, 1, 2, 3]).mean() > 0.9

    top1 = _top1_agreement(online, phi_test)
    top5 = float(
        np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_k(online, 5)[0], top_k(phi_test, 5)[0], strict=True)])
    )
    corr = float(np.corrcoef(online.sum(1) + table.bias, raw)[0, 1])
    # measured on this construction: top-1 0.896, top-5 overlap 0.703, corr 0.947 (other seeds: 0.90-0.92)
    assert top1 >= 0.85
    assert top5 >= 0.6
    assert corr > 0.9

    # Control 1: tables attached to the wrong columns (a feature-order bug between training and serving).
    perm = np.roll(np.arange(table.n_features), 1)
    shifted = ContributionTable(
        table.feature_names,
        tuple(table.edges[j] for j in perm),
        tuple(table.values[j] for j in perm),
        table.nan_values[perm],
        table.bias,
    )
    assert _top1_agreement(shifted.contributions(x), phi_test) < 0.1  # measured 0.002
    # Control 2: per-feature values shuffled across bins (scale kept, value→contribution mapping broken).
    rng = np.random.default_rng(99)
    shuffled = ContributionTable(
        table.feature_names, table.edges, tuple(rng.permutation(v) for v in table.values), table.nan_values, table.bias
    )
    assert abs(np.corrcoef(shuffled.contributions(x).sum(1), raw)[0, 1]) < 0.3  # measured 0.01


# ------------------------------------------------------------------------------------------ serialization


def test_json_round_trip_gives_identical_contributions(realistic: dict[str, Any]) -> None:
    table: ContributionTable = realistic["table"]
    text = json.dumps(table.to_dict(), allow_nan=False)
    back = ContributionTable.from_dict(json.loads(text))
    x = realistic["x_test"].copy()
    x[0, 0], x[1, 1], x[2, 2] = np.inf, -np.inf, table.edges[2][3]
    np.testing.assert_array_equal(back.contributions(x), table.contributions(x))
    assert back.to_dict() == table.to_dict()
    assert back.feature_names == table.feature_names and back.bias == table.bias


def _valid_dict() -> dict[str, Any]:
    return _hand_table().to_dict()


@pytest.mark.parametrize("key", ["version", "feature_names", "edges", "values", "nan_values", "bias"])
def test_from_dict_missing_key_is_named(key: str) -> None:
    data = _valid_dict()
    del data[key]
    with pytest.raises(ValueError, match=f"missing key '{key}'"):
        ContributionTable.from_dict(data)


def test_from_dict_errors_name_the_key_or_feature() -> None:
    cases: list[tuple[str, Any, str]] = [
        ("edges", [[0.0, 1.0], []], "'edges' has 2 entries but 'feature_names' has 3"),
        ("nan_values", [0.0], "'nan_values' has 1 entries"),
        ("values", [[1.0, 2.0, 3.0], [7.0], [1.0]], "values for feature 'c'"),
        ("edges", [[1.0, 0.0], [], [-5.0]], "edges for feature 'a' must be strictly increasing"),
        ("edges", [[0.0, 1.0], ["x"], [-5.0]], "'edges' of feature 'b'"),
        ("values", [[1.0, 2.0, 3.0], [7.0], [1.0, float("nan")]], "values for feature 'c' must be finite"),
        ("feature_names", ["a", "b", 3], "'feature_names'"),
        ("bias", "0.5", "'bias'"),
        ("version", 2, "'version'"),
    ]
    for key, value, message in cases:
        data = _valid_dict()
        data[key] = value
        with pytest.raises(ValueError, match=re.escape(message)):
            ContributionTable.from_dict(data)


def test_table_is_immutable() -> None:
    table = _hand_table()
    with pytest.raises(ValueError, match="read-only"):
        table.edges[0][0] = 5.0
    with pytest.raises(AttributeError):
        table.bias = 1.0  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------- top_k


def test_top_k_by_hand() -> None:
    c = np.array([[0.5, -2.0, 1.0, -0.5, 2.0], [0.0, 0.0, -0.0, 0.0, 0.0]])
    idx, vals = top_k(c, 3)
    # |−2| ties |2|: the lower index (1) first; signs kept
    np.testing.assert_array_equal(idx, [[1, 4, 2], [0, 1, 2]])
    np.testing.assert_array_equal(vals, [[-2.0, 2.0, 1.0], [0.0, 0.0, -0.0]])
    idx, vals = top_k(c[0], 99)  # 1-D is one row; k clipped to F
    np.testing.assert_array_equal(idx, [[1, 4, 2, 0, 3]])
    np.testing.assert_array_equal(vals, [[-2.0, 2.0, 1.0, 0.5, -0.5]])
    assert top_k(c, 0)[0].shape == (2, 0)
    with pytest.raises(ValueError, match="k must be"):
        top_k(c, -1)
    assert top_k_named(c, ["a", "b", "c", "d", "e"], 2) == [[("b", -2.0), ("e", 2.0)], [("a", 0.0), ("b", 0.0)]]
    with pytest.raises(ValueError, match="feature_names"):
        top_k_named(c, ["a", "b"], 2)


def test_top_k_matches_sorted_reference() -> None:
    rng = np.random.default_rng(21)
    for _ in range(50):
        n, f = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        c = rng.normal(size=(n, f)).round(int(rng.integers(0, 3)))  # rounding creates many |value| ties
        c *= rng.choice([-1.0, 1.0], size=c.shape)
        for k in (1, 3, f, f + 4):
            idx, vals = top_k(c, k)
            assert idx.shape == vals.shape == (n, min(k, f))
            for r in range(n):
                want = sorted(range(f), key=lambda j, row=c[r]: (-abs(float(row[j])), j))[: min(k, f)]
                assert idx[r].tolist() == want
                assert vals[r].tolist() == [float(c[r, j]) for j in want]
