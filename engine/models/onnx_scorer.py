"""Score an exported classifier graph (see onnx_graph.py) with ONNX Runtime on one thread.

Why one thread: the scorer sits on the per-event decision path where a call is one row; thread pools only
add wake-up latency there, and parallelism comes from running several processes, not from intra-op work.
One thread also makes the result independent of the host's core count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .onnx_graph import INPUT_NAME, META_FEATURE_NAMES, OUTPUT_NAMES, P_UP

FloatArray = npt.NDArray[np.float64]


class OnnxScorer:
    """Runs an exported classifier graph on one thread.

    intra_op_num_threads=1, inter_op_num_threads=1, ORT_SEQUENTIAL.
    """

    feature_names: tuple[str, ...]

    def __init__(self, model_bytes: bytes, expected_feature_names: Sequence[str] | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self.feature_names = _feature_names(self._session)
        if expected_feature_names is not None:
            _check_names(self.feature_names, tuple(expected_feature_names))
        self._n_features = len(self.feature_names)
        self._p_up_only = [P_UP]
        self._all_outputs = list(OUTPUT_NAMES)

    def predict(self, features: npt.ArrayLike) -> FloatArray:
        """Calibrated p_up, shape [N]; one row may be given as [F]."""
        out: FloatArray = self._session.run(self._p_up_only, {INPUT_NAME: self._matrix(features)})[0]
        return out.reshape(-1)

    def predict_all(self, features: npt.ArrayLike) -> dict[str, FloatArray]:
        """raw_score, p_model and p_up, each shape [N] (for diagnostics and parity checks)."""
        outs = self._session.run(self._all_outputs, {INPUT_NAME: self._matrix(features)})
        return {
            name: np.asarray(out, dtype=np.float64).reshape(-1) for name, out in zip(OUTPUT_NAMES, outs, strict=True)
        }

    def _matrix(self, features: npt.ArrayLike) -> FloatArray:
        """One conversion to C-contiguous float64 [N, F]; ORT would otherwise reject or copy it again."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == self._n_features:
            return x
        if x.ndim == 1 and x.shape[0] == self._n_features:
            return x.reshape(1, -1)
        raise ValueError(f"expected features of shape [N, {self._n_features}] or [{self._n_features}], got {x.shape}")


def _feature_names(session: ort.InferenceSession) -> tuple[str, ...]:
    """The column contract stored by the converter, cross-checked against the graph's input width."""
    joined = session.get_modelmeta().custom_metadata_map.get(META_FEATURE_NAMES)
    if not joined:
        raise ValueError(f"model has no {META_FEATURE_NAMES!r} metadata; was it built by classifier_to_onnx?")
    names = tuple(joined.split("\n"))
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ValueError(f"model must have exactly one input named {INPUT_NAME!r}")
    width = inputs[0].shape[1]
    if width != len(names):
        raise ValueError(f"model input has {width} columns but its metadata lists {len(names)} feature names")
    return names


def _check_names(actual: tuple[str, ...], expected: tuple[str, ...]) -> None:
    """Fail loudly on a column-order mismatch: a silently permuted feature vector still yields a number."""
    for i, (got, want) in enumerate(zip(actual, expected, strict=False)):
        if got != want:
            raise ValueError(f"feature name at position {i}: model has {got!r}, expected {want!r}")
    if len(actual) != len(expected):
        raise ValueError(f"model has {len(actual)} features, expected {len(expected)}")
