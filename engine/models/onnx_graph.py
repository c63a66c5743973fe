"""LightGBM binary classifier (+ optional calibrator) → one float64 ONNX graph.

Why: the same model must score identically offline (LightGBM), in-process and in Ray Serve (ONNX Runtime).
Off-the-shelf converters typically go through float32 thresholds and outputs, which moves rows that sit on
(or one ulp from) a split threshold to the other branch and shifts probabilities by ~1e-7. Here every
threshold, leaf weight and arithmetic step is float64, and each tree node reproduces LightGBM's C++
``NumericalDecision`` exactly, so the graph agrees with ``Booster.predict`` to rounding (~1e-15).

The converter takes ``Booster.dump_model()`` (plain data), not a Booster, so engine code that exports a
stored model never needs a LightGBM handle. The graph has one input and three outputs, all ``[N, 1]``:

* ``raw_score`` — sum of the trees (log-odds),
* ``p_model``   — ``1 / (1 + exp(-sigmoid · raw_score))``, LightGBM's own formula,
* ``p_up``      — the calibrated probability (``p_model`` when there is no calibrator).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..calibration import IsotonicCalibrator, PlattCalibrator

INPUT_NAME = "features"
RAW_SCORE = "raw_score"
P_MODEL = "p_model"
P_UP = "p_up"
OUTPUT_NAMES = (RAW_SCORE, P_MODEL, P_UP)

OPSET = 21
ML_OPSET = 5  # ai.onnx.ml TreeEnsemble: double thresholds, double leaf weights, double output.
IR_VERSION = 10

META_FEATURE_NAMES = "feature_names"
META_CALIBRATOR = "calibrator"
_RESERVED_METADATA = frozenset({META_FEATURE_NAMES, META_CALIBRATOR})

# LightGBM's kZeroThreshold is the float literal 1e-35f widened to double. Its predictor drops every input
# with |v| <= kZeroThreshold (the row is read as sparse), so such values reach the trees as exactly 0.0.
_K_ZERO = float(np.float32(1e-35))
# The Platt clip, as engine/calibration.py computes it.
_PLATT_EPS = 1e-12
_BRANCH_LEQ = 0

FloatArray = npt.NDArray[np.float64]
Calibrator = IsotonicCalibrator | PlattCalibrator


def classifier_to_onnx(
    model_dump: Mapping[str, Any],
    feature_names: Sequence[str],
    calibrator: Calibrator | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Build the float64 graph ``features → raw_score, p_model, p_up`` for a binary LightGBM model.

    ``model_dump`` is ``booster.dump_model()``. Raises ValueError for anything the graph could not reproduce
    exactly (non-binary objectives, categorical splits, linear trees, random forests, zero-as-missing).
    """
    sigmoid = _validate_model(model_dump)
    names = _validate_feature_names(model_dump, feature_names)
    extra = _validate_metadata(metadata)

    trees = _encode_trees(model_dump["tree_info"], len(names))
    nodes: list[onnx.NodeProto] = [trees.to_node(RAW_SCORE)]
    initializers: list[onnx.TensorProto] = []
    nodes += _model_sigmoid_nodes(RAW_SCORE, P_MODEL, sigmoid, initializers)
    nodes += _calibration_nodes(P_MODEL, P_UP, calibrator, initializers)

    graph = helper.make_graph(
        nodes,
        "tradeplane_lgbm_binary_classifier",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, ["N", len(names)])],
        [helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["N", 1]) for name in OUTPUT_NAMES],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="tradeplane",
        doc_string="LightGBM binary classifier with calibration, float64 end to end.",
    )
    model.ir_version = IR_VERSION
    props = {META_FEATURE_NAMES: "\n".join(names), META_CALIBRATOR: _calibrator_kind(calibrator), **extra}
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


# ---------------------------------------------------------------------------------------------- validation


def _validate_feature_names(model_dump: Mapping[str, Any], feature_names: Sequence[str]) -> tuple[str, ...]:
    """The graph's column order is the contract with the feature pipeline, so it must match the model's."""
    if isinstance(feature_names, str):
        raise TypeError("feature_names must be a sequence of names, not one string")
    names = tuple(feature_names)
    n_model = int(model_dump["max_feature_idx"]) + 1
    if len(names) != n_model:
        raise ValueError(f"got {len(names)} feature names but the model uses {n_model} features")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name or "\n" in name:
            raise ValueError(f"feature name at position {i} must be a non-empty string without newlines: {name!r}")
    dumped = model_dump.get("feature_names")
    if dumped is not None:
        for i, (given, expected) in enumerate(zip(names, dumped, strict=False)):
            if given != expected:
                raise ValueError(
                    f"feature name at position {i} is {given!r} but the model was trained with {expected!r}"
                )
        if len(dumped) != len(names):
            raise ValueError(f"the model dump lists {len(dumped)} feature names, got {len(names)}")
    return names


def _validate_model(model_dump: Mapping[str, Any]) -> float:
    """Reject every model kind whose prediction is not 'sum of numerical trees, then sigmoid'; return sigmoid."""
    sigmoid = _parse_binary_objective(str(model_dump.get("objective", "")))
    if int(model_dump.get("num_class", 1)) != 1:
        raise ValueError(f"num_class must be 1 for a binary classifier, got {model_dump['num_class']}")
    if int(model_dump.get("num_tree_per_iteration", 1)) != 1:
        raise ValueError(f"num_tree_per_iteration must be 1, got {model_dump['num_tree_per_iteration']}")
    if model_dump.get("average_output", False):
        raise ValueError("average_output models (boosting=rf) are not supported: the graph sums the trees")
    if not model_dump.get("tree_info"):
        raise ValueError("the model has no trees")
    return sigmoid


def _parse_binary_objective(objective: str) -> float:
    """``"binary sigmoid:1"`` → 1.0; p = 1 / (1 + exp(-sigmoid · raw)) depends on it."""
    tokens = objective.split()
    if not tokens or tokens[0] != "binary":
        raise ValueError(f"objective must be binary, got {objective!r}")
    values = [t.partition(":")[2] for t in tokens[1:] if t.startswith("sigmoid:")]
    if len(values) != 1:
        raise ValueError(f"objective {objective!r} has no sigmoid:<value> parameter")
    sigmoid = float(values[0])
    if not math.isfinite(sigmoid) or sigmoid <= 0:
        raise ValueError(f"objective sigmoid parameter must be finite and positive, got {sigmoid}")
    return sigmoid


def _validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    extra = dict(metadata or {})
    clash = sorted(_RESERVED_METADATA.intersection(extra))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved (written by the converter)")
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"metadata must map str to str, got {key!r}: {value!r}")
    return extra


# ----------------------------------------------------------------------------------------------- the trees


@dataclass
class _TreeArrays:
    """The parallel ``nodes_*`` / ``leaf_*`` attribute lists of one ai.onnx.ml TreeEnsemble node."""

    roots: list[int] = field(default_factory=list)
    featureids: list[int] = field(default_factory=list)
    splits: list[float] = field(default_factory=list)
    tracks_true: list[int] = field(default_factory=list)
    true_ids: list[int] = field(default_factory=list)
    true_leafs: list[int] = field(default_factory=list)
    false_ids: list[int] = field(default_factory=list)
    false_leafs: list[int] = field(default_factory=list)
    leaf_weights: list[float] = field(default_factory=list)

    def add_split(self, feature: int, threshold: float, tracks_true: bool) -> int:
        self.featureids.append(feature)
        self.splits.append(threshold)
        self.tracks_true.append(int(tracks_true))
        for column in (self.true_ids, self.true_leafs, self.false_ids, self.false_leafs):
            column.append(-1)  # filled in by link() once the child has an index
        return len(self.featureids) - 1

    def add_leaf(self, value: float) -> int:
        self.leaf_weights.append(value)
        return len(self.leaf_weights) - 1

    def link(self, parent: int, is_true_side: bool, child: int, child_is_leaf: bool) -> None:
        ids, leafs = (self.true_ids, self.true_leafs) if is_true_side else (self.false_ids, self.false_leafs)
        ids[parent] = child
        leafs[parent] = int(child_is_leaf)

    def to_node(self, output: str) -> onnx.NodeProto:
        n_nodes = len(self.featureids)
        return helper.make_node(
            "TreeEnsemble",
            [INPUT_NAME],
            [output],
            domain="ai.onnx.ml",
            name="trees",
            n_targets=1,
            aggregate_function=1,  # SUM
            post_transform=0,  # NONE: the sigmoid is applied in float64 below, in LightGBM's formula
            tree_roots=self.roots,
            nodes_featureids=self.featureids,
            nodes_modes=numpy_helper.from_array(np.full(n_nodes, _BRANCH_LEQ, dtype=np.uint8), "nodes_modes"),
            nodes_splits=numpy_helper.from_array(np.asarray(self.splits, dtype=np.float64), "nodes_splits"),
            nodes_truenodeids=self.true_ids,
            nodes_trueleafs=self.true_leafs,
            nodes_falsenodeids=self.false_ids,
            nodes_falseleafs=self.false_leafs,
            nodes_missing_value_tracks_true=self.tracks_true,
            leaf_targetids=[0] * len(self.leaf_weights),
            leaf_weights=numpy_helper.from_array(np.asarray(self.leaf_weights, dtype=np.float64), "leaf_weights"),
        )


def _encode_trees(tree_info: Sequence[Mapping[str, Any]], n_features: int) -> _TreeArrays:
    """All trees into one TreeEnsemble, in LightGBM's order (so the SUM adds them in the same order)."""
    arrays = _TreeArrays()
    for tree in tree_info:
        where = f"tree {tree.get('tree_index', len(arrays.roots))}"
        if int(tree.get("num_cat", 0)) > 0:
            raise ValueError(f"{where} has categorical splits; only numerical (<=) splits are supported")
        arrays.roots.append(_encode_tree(tree["tree_structure"], arrays, n_features, where))
    return arrays


def _encode_tree(root: Mapping[str, Any], arrays: _TreeArrays, n_features: int, where: str) -> int:
    """Append one tree (preorder, explicit stack: deep trees must not hit Python's recursion limit)."""
    if _is_leaf(root):
        # A constant tree: ONNX needs a split node, so both branches of a dummy split reach the same leaf.
        node = arrays.add_split(0, 0.0, tracks_true=False)
        leaf = arrays.add_leaf(_leaf_value(root, where))
        arrays.link(node, True, leaf, child_is_leaf=True)
        arrays.link(node, False, leaf, child_is_leaf=True)
        return node
    root_index = -1
    stack: list[tuple[Mapping[str, Any], int, bool]] = [(root, -1, True)]
    while stack:
        current, parent, is_true_side = stack.pop()
        if _is_leaf(current):
            arrays.link(parent, is_true_side, arrays.add_leaf(_leaf_value(current, where)), child_is_leaf=True)
            continue
        feature, threshold, tracks_true = _split(current, n_features, where)
        index = arrays.add_split(feature, threshold, tracks_true)
        if parent < 0:
            root_index = index
        else:
            arrays.link(parent, is_true_side, index, child_is_leaf=False)
        stack.append((current["right_child"], index, False))
        stack.append((current["left_child"], index, True))
    return root_index


def _is_leaf(node: Mapping[str, Any]) -> bool:
    return "split_feature" not in node


def _leaf_value(node: Mapping[str, Any], where: str) -> float:
    if any(key in node for key in ("leaf_const", "leaf_coeff", "leaf_features")):
        raise ValueError(f"{where} is a linear tree (linear_tree=True); only constant leaves are supported")
    value = float(node["leaf_value"])
    if not math.isfinite(value):
        raise ValueError(f"{where} has a non-finite leaf value {value}")
    return value


def _split(node: Mapping[str, Any], n_features: int, where: str) -> tuple[int, float, bool]:
    """(feature, ONNX threshold, NaN-goes-left) reproducing LightGBM's ``NumericalDecision`` for one node.

    LightGBM: a NaN input on a node whose missing_type is not NaN becomes 0.0; missing_type NaN sends NaN to
    the default side; otherwise left iff v <= threshold. ONNX BRANCH_LEQ with ``missing_value_tracks_true``
    is "left iff v <= threshold, NaN → tracks_true", so NaN maps to default_left (missing NaN) or to the
    side 0.0 takes (missing None). missing_type Zero also sends |v| <= kZeroThreshold to the default side,
    which one LEQ node cannot express, so it is rejected (it only arises with zero_as_missing=True).
    """
    decision = node.get("decision_type")
    if decision != "<=":
        raise ValueError(f"{where} has a categorical split (decision_type {decision!r}); only '<=' is supported")
    feature = int(node["split_feature"])
    if not 0 <= feature < n_features:
        raise ValueError(f"{where} splits on feature {feature}, outside [0, {n_features})")
    threshold = float(node["threshold"])
    if math.isnan(threshold):
        raise ValueError(f"{where} has a NaN threshold")
    missing = node.get("missing_type")
    if missing == "NaN":
        tracks_true = bool(node["default_left"])
    elif missing == "None":
        tracks_true = threshold >= 0.0
    elif missing == "Zero":
        raise ValueError(f"{where} has missing_type 'Zero' (zero_as_missing=True), which is not supported")
    else:
        raise ValueError(f"{where} has unknown missing_type {missing!r}")
    return feature, _effective_threshold(threshold), tracks_true


def _effective_threshold(threshold: float) -> float:
    """The threshold t' with ``v <= t'`` ⇔ ``z(v) <= t`` where z zeroes |v| <= kZeroThreshold, as LightGBM does.

    Only thresholds inside [-kZ, kZ) are affected: the zeroed band then sits wholly on 0's side of t, so the
    band edge becomes the threshold (kZ when 0 <= t, just below -kZ when t < 0).
    """
    if not -_K_ZERO <= threshold < _K_ZERO:
        return threshold
    return _K_ZERO if threshold >= 0.0 else float(np.nextafter(-_K_ZERO, -np.inf))


# -------------------------------------------------------------------------------------- sigmoid, calibration


def _const(name: str, value: float | npt.ArrayLike, initializers: list[onnx.TensorProto]) -> str:
    initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float64), name))
    return name


def _model_sigmoid_nodes(
    source: str, output: str, sigmoid: float, initializers: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """LightGBM's ``1 / (1 + exp(-sigmoid · raw))``, op for op.

    Not the Sigmoid kernel: that one differs from LightGBM by an ulp on about half of all inputs, and an
    ulp in p_model is amplified by a steep isotonic segment. Written out, a single row (ONNX Runtime's
    scalar exp path) reproduces LightGBM bit for bit; batches differ by at most an ulp on a few percent of
    rows (vectorized exp). The extra three nodes cost ~1.5 µs per call.
    """
    neg_scale = _const("model_neg_sigmoid", -sigmoid, initializers)
    one = _const("model_one", 1.0, initializers)
    return [
        helper.make_node("Mul", [source, neg_scale], ["model_neg_logit"]),
        helper.make_node("Exp", ["model_neg_logit"], ["model_exp"]),
        helper.make_node("Add", [one, "model_exp"], ["model_den"]),
        helper.make_node("Div", [one, "model_den"], [output]),
    ]


def _calibration_nodes(
    source: str, output: str, calibrator: Calibrator | None, initializers: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    if calibrator is None:
        return [helper.make_node("Identity", [source], [output])]
    if isinstance(calibrator, PlattCalibrator):
        return _platt_nodes(source, output, calibrator, initializers)
    if isinstance(calibrator, IsotonicCalibrator):
        return _isotonic_nodes(source, output, calibrator, initializers)
    raise TypeError(f"unsupported calibrator type {type(calibrator).__name__}")


def _calibrator_kind(calibrator: Calibrator | None) -> str:
    if calibrator is None:
        return "none"
    return "platt" if isinstance(calibrator, PlattCalibrator) else "isotonic"


def _platt_nodes(
    source: str, output: str, calibrator: PlattCalibrator, initializers: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """``sigmoid(a · log(q / (1 - q)) + b)``, q = clip(p, 1e-12, 1 - 1e-12), in calibration.py's op order.

    The final sigmoid is the Sigmoid kernel: Platt is smooth, so its ulp-level difference from numpy's
    ``1 / (1 + exp(-z))`` stays an ulp, and one node is cheaper than four.
    """
    a, b = float(calibrator.a), float(calibrator.b)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"Platt coefficients must be finite, got a={a}, b={b}")
    lo = _const("platt_lo", _PLATT_EPS, initializers)
    hi = _const("platt_hi", 1 - _PLATT_EPS, initializers)
    one = _const("platt_one", 1.0, initializers)
    coef_a = _const("platt_a", a, initializers)
    coef_b = _const("platt_b", b, initializers)
    nodes = [
        helper.make_node("Clip", [source, lo, hi], ["platt_q"]),
        helper.make_node("Sub", [one, "platt_q"], ["platt_1mq"]),
        helper.make_node("Div", ["platt_q", "platt_1mq"], ["platt_odds"]),
        helper.make_node("Log", ["platt_odds"], ["platt_logit"]),
        helper.make_node("Mul", [coef_a, "platt_logit"], ["platt_az"]),
        helper.make_node("Add", ["platt_az", coef_b], ["platt_z"]),
    ]
    return [*nodes, helper.make_node("Sigmoid", ["platt_z"], [output])]


def _isotonic_nodes(
    source: str, output: str, calibrator: IsotonicCalibrator, initializers: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """np.interp(p, x, y) as ``y0 + Σ_k slope_k · (min(max(p, x_k), x_{k+1}) − x_k)``.

    Broadcasting p [N, 1] against the K segment vectors and summing over axis 1 needs no gather and no
    data-dependent control flow; outside [x_0, x_K] every term saturates, which is np.interp's clipping.
    """
    x, y = _isotonic_breakpoints(calibrator)
    if len(x) == 1:
        # np.interp with one breakpoint is that constant everywhere (even for NaN).
        value = numpy_helper.from_array(np.asarray([y[0]], dtype=np.float64), "value")
        return [
            helper.make_node("Shape", [source], ["iso_shape"]),
            helper.make_node("ConstantOfShape", ["iso_shape"], [output], value=value),
        ]
    lo = _const("iso_lo", x[:-1], initializers)
    hi = _const("iso_hi", x[1:], initializers)
    slope = _const("iso_slope", np.diff(y) / np.diff(x), initializers)
    y0 = _const("iso_y0", y[:1], initializers)
    initializers.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), "iso_axes"))
    return [
        helper.make_node("Max", [source, lo], ["iso_above_lo"]),
        helper.make_node("Min", ["iso_above_lo", hi], ["iso_clamped"]),
        helper.make_node("Sub", ["iso_clamped", lo], ["iso_run"]),
        helper.make_node("Mul", ["iso_run", slope], ["iso_rise"]),
        helper.make_node("ReduceSum", ["iso_rise", "iso_axes"], ["iso_total_rise"], keepdims=1),
        helper.make_node("Add", [y0, "iso_total_rise"], [output]),
    ]


def _isotonic_breakpoints(calibrator: IsotonicCalibrator) -> tuple[FloatArray, FloatArray]:
    """Validated breakpoints, with the interior points of flat runs dropped.

    Pool-adjacent-violators output is a staircase over every unique OOF score (thousands of points), but
    inside a flat run the function is that constant, so only the run's two ends are needed. Dropping the
    interior points changes no value and keeps the [N, K] broadcast small (single-row latency).
    """
    x = np.asarray(calibrator.x, dtype=np.float64)
    y = np.asarray(calibrator.y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError("isotonic calibrator needs non-empty 1-D x and y of equal length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("isotonic calibrator breakpoints must be finite")
    if np.any(np.diff(x) <= 0):
        raise ValueError("isotonic calibrator x must be strictly increasing")
    keep = np.ones(len(x), dtype=bool)
    keep[1:-1] = (y[1:-1] != y[:-2]) | (y[1:-1] != y[2:])
    x, y = x[keep], y[keep]
    with np.errstate(over="ignore"):
        steep = len(x) > 1 and not np.all(np.isfinite(np.diff(y) / np.diff(x)))
    if steep:
        raise ValueError("isotonic calibrator has a segment too steep for a finite float64 slope")
    return x, y
