"""The float64 ONNX export of a LightGBM binary classifier + calibrator, against LightGBM itself.

Reference: ``Booster.predict(X, raw_score=True)``, ``Booster.predict(X)`` and ``calibrator(Booster.predict(X))``
(engine/calibration.py). Small models are trained on synthetic data with a real signal; some features carry
NaN in training (nodes with missing_type NaN), the others only at inference (missing_type None, where
LightGBM reads NaN as 0.0). Held-out rows, rows sitting exactly on every split threshold and one ulp either
side, zeros, NaN and values inside LightGBM's zero band (|v| <= 1e-35f) must all agree to 1e-9 (the
requirement is 1e-6; the graph is float64 throughout, so the only differences are exp's last ulp).
Single-leaf trees come from a model that cannot split and from a LightGBM model string with a constant
tree spliced in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from tradeplane.engine.calibration import IsotonicCalibrator, PlattCalibrator, fit_isotonic, fit_platt
from tradeplane.engine.models.onnx_graph import OUTPUT_NAMES, classifier_to_onnx
from tradeplane.engine.models.onnx_scorer import OnnxScorer

TOL = 1e-9
NAMES = ("ret_1", "ret_5", "imbalance", "spread", "volume", "noise")
NAN_IN_TRAINING = (0, 3)  # these features get missing_type NaN; the others missing_type None
K_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold
BASE = {"objective": "binary", "seed": 7, "deterministic": True, "num_threads": 1, "verbose": -1}

CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "default": ({"num_leaves": 31, "min_data_in_leaf": 20}, 60),
    "shallow": ({"num_leaves": 8, "max_depth": 3, "min_data_in_leaf": 5, "learning_rate": 0.2}, 80),
    "deep": ({"num_leaves": 64, "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0.0}, 40),
    "stumps": ({"num_leaves": 2, "learning_rate": 0.3}, 100),
    "sigmoid_0.6": ({"num_leaves": 15, "sigmoid": 0.6}, 50),
}


# ------------------------------------------------------------------------------------------------ data


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack(
        [
            rng.normal(size=n),
            rng.normal(size=n),
            rng.integers(-3, 4, size=n).astype(np.float64),  # exact zeros, ties: thresholds near ±kZ
            rng.uniform(-1, 1, size=n),
            np.where(rng.random(n) < 0.3, 0.0, rng.exponential(size=n)),
            rng.normal(size=n),
        ]
    )
    logit = 1.2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] + np.sin(3 * x[:, 3]) + 0.8 * (x[:, 4] > 0.5)
    for j in NAN_IN_TRAINING:  # missingness itself is informative, so NaN nodes learn a direction
        missing = rng.random(n) < 0.15
        x[missing, j] = np.nan
        logit[missing] += 0.7
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return x, y


@functools.cache
def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows, training labels, held-out rows (NaN injected in every feature)."""
    rng = np.random.default_rng(20240607)
    x_train, y_train = _rows(rng, 3000)
    x_test, _ = _rows(rng, 2000)
    x_test[rng.random(x_test.shape) < 0.1] = np.nan
    return x_train, y_train, x_test


def _train(params: Mapping[str, Any], rounds: int, x: np.ndarray | None = None, y: np.ndarray | None = None) -> Any:
    x_train, y_train, _ = _data()
    x, y = (x_train, y_train) if x is None or y is None else (x, y)
    dataset = lgb.Dataset(x, y, feature_name=list(NAMES), free_raw_data=False)
    return lgb.train({**BASE, **params}, dataset, num_boost_round=rounds)


@functools.cache
def _model(config: str) -> Any:
    params, rounds = CONFIGS[config]
    return _train(params, rounds)


def _splits(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            out.append(node)
            stack += [node["left_child"], node["right_child"]]
    return out


# ------------------------------------------------------------------------------------------- comparing


def _outputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    return OnnxScorer(model.SerializeToString(), NAMES).predict_all(x)


def _max_diffs(booster: Any, model: onnx.ModelProto, x: np.ndarray, calibrator: Any = None) -> dict[str, float]:
    got = _outputs(model, x)
    p = booster.predict(x)
    want = {"raw_score": booster.predict(x, raw_score=True), "p_model": p, "p_up": calibrator(p) if calibrator else p}
    for name in OUTPUT_NAMES:
        assert got[name].shape == (len(x),)
        assert np.all(np.isfinite(got[name])), name
    return {name: float(np.max(np.abs(got[name] - want[name]))) for name in OUTPUT_NAMES}


def _assert_close(booster: Any, model: onnx.ModelProto, x: np.ndarray, calibrator: Any = None) -> None:
    diffs = _max_diffs(booster, model, x, calibrator)
    assert max(diffs.values()) <= TOL, diffs


def _threshold_rows(dump: Mapping[str, Any], base: np.ndarray) -> np.ndarray:
    """Every split threshold, and its two float64 neighbours, placed in otherwise realistic rows."""
    rows = []
    for i, node in enumerate(_splits(dump)):
        t = float(node["threshold"])
        for value in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
            row = base[i % len(base)].copy()
            row[node["split_feature"]] = value
            rows.append(row)
    n = len(NAMES)
    specials = [np.zeros(n), np.full(n, np.nan), np.full(n, -0.0)]
    specials += [np.full(n, v) for v in (K_ZERO, -K_ZERO, 1e-36, -1e-36, np.nextafter(K_ZERO, 1), -np.inf, np.inf)]
    return np.vstack([*rows, *specials])


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_held_out_rows_match_lightgbm(config: str) -> None:
    booster = _model(config)
    dump = booster.dump_model()
    # The data must exercise both NaN encodings: NaN-trained features (missing NaN, default side) and
    # features that see NaN only now (missing None → 0.0's side).
    missing_by_feature: dict[int, set[str]] = {}
    for node in _splits(dump):
        missing_by_feature.setdefault(node["split_feature"], set()).add(node["missing_type"])
    assert {"NaN"} <= set().union(*(missing_by_feature.get(j, set()) for j in NAN_IN_TRAINING))
    assert any("None" in missing_by_feature.get(j, set()) for j in (1, 2, 4)), missing_by_feature
    _, _, x_test = _data()
    model = classifier_to_onnx(dump, NAMES)
    _assert_close(booster, model, x_test)
    # p_up is p_model itself without a calibrator, bit for bit.
    out = _outputs(model, x_test)
    np.testing.assert_array_equal(out["p_up"], out["p_model"])


@pytest.mark.parametrize("config", ["default", "deep", "stumps"])
def test_rows_exactly_on_thresholds_and_special_values_match(config: str) -> None:
    booster = _model(config)
    dump = booster.dump_model()
    x = _threshold_rows(dump, _data()[2])
    _assert_close(booster, classifier_to_onnx(dump, NAMES), x)


def _edit_first_threshold(booster: Any, threshold: float, missing_nan: bool) -> Any:
    """The booster with its first tree's root threshold replaced (LightGBM model-string round trip)."""
    text = re.sub(r"tree_sizes=.*\n", "", booster.model_to_string())
    head, tree0, rest = re.split(r"(Tree=0\n.*?\n\n)", text, maxsplit=1, flags=re.S)
    values = re.search(r"threshold=(\S+)", tree0)
    assert values is not None
    first_rest = values.group(1).split(" ", 1)
    tree0 = tree0.replace(values.group(0), "threshold=" + " ".join([repr(threshold), *first_rest[1:]]), 1)
    types = re.search(r"decision_type=(\S+)", tree0)
    assert types is not None
    # decision_type bits: 2 = default left, 8 = missing NaN (4 would be Zero).
    root_type = " ".join([str(2 | (8 if missing_nan else 0)), *types.group(1).split(" ")[1:]])
    tree0 = tree0.replace(types.group(0), f"decision_type={root_type}", 1)
    return lgb.Booster(model_str=head + tree0 + rest)


@pytest.mark.parametrize("threshold", [5e-36, -5e-36, K_ZERO, -K_ZERO, 0.0, -0.0])
@pytest.mark.parametrize("missing_nan", [False, True])
def test_zero_band_inputs_follow_lightgbm(threshold: float, missing_nan: bool) -> None:
    """LightGBM's predictor reads |v| <= 1e-35f as exactly 0.0; a root threshold inside that band decides it."""
    booster = _edit_first_threshold(_model("stumps"), threshold, missing_nan)
    root = booster.dump_model()["tree_info"][0]["tree_structure"]
    assert float(root["threshold"]) == threshold
    assert root["missing_type"] == ("NaN" if missing_nan else "None")
    band = [0.0, -0.0, K_ZERO, -K_ZERO, 5e-36, -5e-36, 1e-36, -1e-36, 1e-300, -1e-300]
    outside = [np.nextafter(K_ZERO, 1), np.nextafter(-K_ZERO, -1), 1e-30, -1e-30, np.nan]
    values = np.array(band + outside)
    x = np.tile(_data()[2][:1], (len(values), 1))
    x[:, root["split_feature"]] = values
    _assert_close(booster, classifier_to_onnx(booster.dump_model(), NAMES), x)


def test_model_that_cannot_split_is_one_constant_tree() -> None:
    x_test = _data()[2]
    booster = _train({"min_data_in_leaf": 10_000}, 5)
    dump = booster.dump_model()
    assert [tree["num_leaves"] for tree in dump["tree_info"]] == [1]
    # No splits, so _threshold_rows gives only the special rows (zeros, NaN, ±kZ, ±inf, ...).
    _assert_close(booster, classifier_to_onnx(dump, NAMES), np.vstack([x_test, _threshold_rows(dump, x_test)]))


def _splice_constant_tree(booster: Any, position: int, value: float) -> Any:
    """A LightGBM model string with a single-leaf tree inserted at ``position`` (what LightGBM itself writes)."""
    text = re.sub(r"tree_sizes=.*\n", "", booster.model_to_string())
    start, end = text.index("Tree=0\n"), text.index("end of trees")
    trees = [block.strip() for block in re.split(r"\n(?=Tree=\d+\n)", text[start:end].strip())]
    constant = (
        "Tree=0\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\nleft_child=\n"
        f"right_child=\nleaf_value={value!r}\nleaf_weight=\nleaf_count=0\ninternal_value=\ninternal_weight=\n"
        "internal_count=\nis_linear=0\nshrinkage=1"
    )
    trees.insert(position, constant)
    body = "\n\n\n".join(re.sub(r"^Tree=\d+", f"Tree={i}", tree) for i, tree in enumerate(trees))
    return lgb.Booster(model_str=text[:start] + body + "\n\n\n" + text[end:])


def test_constant_tree_between_real_trees() -> None:
    original = _model("shallow")
    booster = _splice_constant_tree(original, 3, 0.123456789)
    dump = booster.dump_model()
    assert [tree["num_leaves"] for tree in dump["tree_info"]].count(1) == 1
    x_test = _data()[2]
    # LightGBM really loaded the spliced tree: it shifts every raw score by its leaf value.
    shift = booster.predict(x_test, raw_score=True) - original.predict(x_test, raw_score=True)
    np.testing.assert_allclose(shift, 0.123456789, atol=1e-12)
    _assert_close(booster, classifier_to_onnx(dump, NAMES), np.vstack([x_test, _threshold_rows(dump, x_test)]))


@functools.cache
def _oof_predictions() -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions of two fold models, the way calibrators are fitted in training."""
    x, y, _ = _data()
    folds = np.arange(len(y)) % 2
    oof = np.empty(len(y))
    params, rounds = CONFIGS["default"]
    for k in (0, 1):
        fold_model = _train(params, rounds, x[folds != k], y[folds != k])
        oof[folds == k] = fold_model.predict(x[folds == k])
    return oof, y


def test_isotonic_from_oof_predictions() -> None:
    calibrator = fit_isotonic(*_oof_predictions())
    assert len(calibrator.x) > 1000  # one breakpoint per unique OOF score before flat runs are dropped
    booster = _model("default")
    x_test = _data()[2]
    _assert_close(booster, classifier_to_onnx(booster.dump_model(), NAMES, calibrator), x_test, calibrator)


def test_platt_from_oof_predictions() -> None:
    calibrator = fit_platt(*_oof_predictions())
    assert abs(calibrator.a - 1.0) > 1e-3 or abs(calibrator.b) > 1e-3  # a real, non-identity map
    booster = _model("default")
    x_test = _data()[2]
    _assert_close(booster, classifier_to_onnx(booster.dump_model(), NAMES, calibrator), x_test, calibrator)


@pytest.mark.parametrize("shift", [-40.0, -27.7, -27.5, 27.5, 27.7, 40.0])
def test_platt_clips_extreme_probabilities(shift: float) -> None:
    """Scores at and beyond the 1e-12 clip (logit ±27.63): the Clip must sit where calibration.py puts it."""
    booster = _splice_constant_tree(_model("shallow"), 0, shift)
    x_test = _data()[2]
    p = booster.predict(x_test)
    beyond = ((p < 1e-12) | (p > 1 - 1e-12)).sum()
    assert beyond == len(p) if abs(shift) == 40.0 else 0 < beyond < len(p)
    calibrator = PlattCalibrator(0.3, 0.2)
    _assert_close(booster, classifier_to_onnx(booster.dump_model(), NAMES, calibrator), x_test, calibrator)


def test_isotonic_clips_at_both_ends() -> None:
    booster = _model("default")
    calibrator = IsotonicCalibrator(np.array([0.3, 0.45, 0.6, 0.7]), np.array([0.1, 0.2, 0.65, 0.9]))
    x_test = _data()[2]
    p = booster.predict(x_test)
    assert (p < 0.3).any() and (p > 0.7).any() and ((p > 0.3) & (p < 0.7)).any()
    _assert_close(booster, classifier_to_onnx(booster.dump_model(), NAMES, calibrator), x_test, calibrator)


def test_steep_isotonic_with_tiny_gaps() -> None:
    """Breakpoints 1e-9 either side of real scores with 0.005 jumps (slope 2.5e6), plus exact hits.

    An ulp of disagreement in p_model becomes slope · ulp ≈ 3e-10 here, so this also bounds how far the
    graph's p_model may drift from LightGBM's.
    """
    booster = _model("default")
    x_test = _data()[2]
    p = booster.predict(x_test)
    centres = np.unique(p[:: len(p) // 40])
    x = np.unique(np.concatenate([centres - 1e-9, centres + 1e-9, p[1::97], [0.0, 1.0]]))
    y = np.linspace(0.0, 1.0, len(x)) ** 2  # strictly increasing, so no breakpoint is dropped
    calibrator = IsotonicCalibrator(x, y)
    hits = np.isin(p, x).sum()
    inside = ((p > (centres[:, None] - 1e-9)) & (p < (centres[:, None] + 1e-9))).any(axis=0).sum()
    assert hits > 10 and inside > 30
    _assert_close(booster, classifier_to_onnx(booster.dump_model(), NAMES, calibrator), x_test, calibrator)


def test_single_breakpoint_isotonic_is_constant() -> None:
    booster = _model("shallow")
    calibrator = IsotonicCalibrator(np.array([0.4]), np.array([0.37]))
    x_test = _data()[2]
    out = _outputs(classifier_to_onnx(booster.dump_model(), NAMES, calibrator), x_test)
    np.testing.assert_array_equal(out["p_up"], np.full(len(x_test), 0.37))
    np.testing.assert_array_equal(out["p_up"], calibrator(booster.predict(x_test)))


def test_metadata_and_graph_types() -> None:
    booster = _model("shallow")
    model = classifier_to_onnx(
        booster.dump_model(), NAMES, PlattCalibrator(1.1, -0.05), metadata={"model_id": "m-42", "label": "up_5m"}
    )
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {"feature_names": "\n".join(NAMES), "calibrator": "platt", "model_id": "m-42", "label": "up_5m"}
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 21), ("ai.onnx.ml", 5)}
    assert model.ir_version == 10
    graph = model.graph
    assert [(v.name, v.type.tensor_type.elem_type) for v in graph.input] == [("features", onnx.TensorProto.DOUBLE)]
    assert [(v.name, v.type.tensor_type.elem_type) for v in graph.output] == [
        (name, onnx.TensorProto.DOUBLE) for name in OUTPUT_NAMES
    ]
    assert [n.op_type for n in graph.node].count("TreeEnsemble") == 1
    assert all(t.data_type in (onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64) for t in graph.initializer)
    kinds = [
        {p.key: p.value for p in classifier_to_onnx(booster.dump_model(), NAMES, c).metadata_props}["calibrator"]
        for c in (None, IsotonicCalibrator(np.array([0.1, 0.9]), np.array([0.0, 1.0])))
    ]
    assert kinds == ["none", "isotonic"]
    with pytest.raises(ValueError, match="reserved"):
        classifier_to_onnx(booster.dump_model(), NAMES, metadata={"calibrator": "x"})


# ------------------------------------------------------------------------------------------------- errors


def test_rejects_multiclass() -> None:
    x, y, _ = _data()
    booster = lgb.train(
        {**BASE, "objective": "multiclass", "num_class": 3},
        lgb.Dataset(x, (y + (x[:, 1] > 1)).astype(int), feature_name=list(NAMES)),
        3,
    )
    with pytest.raises(ValueError, match="objective must be binary, got 'multiclass num_class:3'"):
        classifier_to_onnx(booster.dump_model(), NAMES)


def test_rejects_other_objectives_and_model_kinds() -> None:
    x, y, _ = _data()
    xent = lgb.train({**BASE, "objective": "cross_entropy"}, lgb.Dataset(x, y, feature_name=list(NAMES)), 2)
    with pytest.raises(ValueError, match="objective must be binary"):
        classifier_to_onnx(xent.dump_model(), NAMES)
    rf = _train({"boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}, 3)
    with pytest.raises(ValueError, match="average_output"):
        classifier_to_onnx(rf.dump_model(), NAMES)
    linear = _train({"linear_tree": True, "num_leaves": 4}, 3)
    with pytest.raises(ValueError, match="linear tree"):
        classifier_to_onnx(linear.dump_model(), NAMES)
    zero = _train({"zero_as_missing": True, "num_leaves": 4}, 3)
    with pytest.raises(ValueError, match="missing_type 'Zero'"):
        classifier_to_onnx(zero.dump_model(), NAMES)
    no_sigmoid = {**_model("stumps").dump_model(), "objective": "binary"}
    with pytest.raises(ValueError, match="sigmoid"):
        classifier_to_onnx(no_sigmoid, NAMES)


def test_rejects_categorical_splits() -> None:
    x, y, _ = _data()
    x = x.copy()
    codes = np.arange(len(y)) % 6
    x[:, 2] = codes
    y = np.isin(codes, [1, 4]).astype(np.float64)  # not monotone in the code: a categorical split wins
    dataset = lgb.Dataset(x, y, feature_name=list(NAMES), categorical_feature=[2])
    booster = lgb.train({**BASE, "num_leaves": 4}, dataset, 3)
    assert any(node["decision_type"] == "==" for node in _splits(booster.dump_model()))
    with pytest.raises(ValueError, match="categorical"):
        classifier_to_onnx(booster.dump_model(), NAMES)


def test_rejects_wrong_feature_names() -> None:
    dump = _model("shallow").dump_model()
    with pytest.raises(ValueError, match="got 5 feature names but the model uses 6 features"):
        classifier_to_onnx(dump, NAMES[:5])
    swapped = (*NAMES[:2], NAMES[3], NAMES[2], *NAMES[4:])
    with pytest.raises(ValueError, match=r"position 2 is 'spread' but the model was trained with 'imbalance'"):
        classifier_to_onnx(dump, swapped)


def test_rejects_bad_calibrators() -> None:
    dump = _model("shallow").dump_model()
    with pytest.raises(ValueError, match="strictly increasing"):
        classifier_to_onnx(dump, NAMES, IsotonicCalibrator(np.array([0.2, 0.2, 0.5]), np.array([0.1, 0.2, 0.3])))
    with pytest.raises(ValueError, match="too steep"):
        classifier_to_onnx(dump, NAMES, IsotonicCalibrator(np.array([1e-310, 2e-310]), np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match="finite"):
        classifier_to_onnx(dump, NAMES, PlattCalibrator(float("nan"), 0.0))


# ------------------------------------------------------------------------------------------------- scorer


def test_scorer_shapes_names_and_threads() -> None:
    booster = _model("default")
    calibrator = fit_isotonic(*_oof_predictions())
    scorer = OnnxScorer(classifier_to_onnx(booster.dump_model(), NAMES, calibrator).SerializeToString(), list(NAMES))
    assert scorer.feature_names == NAMES
    x_test = _data()[2][:50]
    batch = scorer.predict(x_test)
    assert batch.shape == (50,) and batch.dtype == np.float64
    np.testing.assert_allclose(batch, calibrator(booster.predict(x_test)), rtol=0, atol=TOL)
    one = scorer.predict(x_test[7])
    assert one.shape == (1,)
    np.testing.assert_allclose(one, batch[7:8], rtol=0, atol=1e-15)
    # Fortran-ordered arrays and nested lists are converted, not rejected.
    np.testing.assert_array_equal(scorer.predict(np.asfortranarray(x_test)), batch)
    np.testing.assert_array_equal(scorer.predict(x_test.tolist()), batch)
    everything = scorer.predict_all(x_test)
    assert set(everything) == {"raw_score", "p_model", "p_up"}
    np.testing.assert_array_equal(everything["p_up"], batch)
    options = scorer._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_scorer_rejects_mismatched_names_and_widths() -> None:
    model_bytes = classifier_to_onnx(_model("shallow").dump_model(), NAMES).SerializeToString()
    wrong = [*NAMES[:4], "vol", NAMES[5]]
    with pytest.raises(ValueError, match=r"position 4: model has 'volume', expected 'vol'"):
        OnnxScorer(model_bytes, wrong)
    with pytest.raises(ValueError, match="model has 6 features, expected 7"):
        OnnxScorer(model_bytes, [*NAMES, "extra"])
    scorer = OnnxScorer(model_bytes)
    with pytest.raises(ValueError, match=r"expected features of shape \[N, 6\] or \[6\], got \(3, 5\)"):
        scorer.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"got \(7,\)"):
        scorer.predict(np.zeros(7))
    with pytest.raises(ValueError, match=r"got \(1, 1, 6\)"):
        scorer.predict_all(np.zeros((1, 1, 6)))
