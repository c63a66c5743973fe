"""The model artifact directory: what a training run writes, and the one way to load it back verified.

Why a directory with a manifest rather than one file: the ONNX graph is what serving loads, but an audit
also needs the native booster (exact offline contributions), the online contribution table, the calibrator,
metrics and lineage. ``artifact.json`` lists every file with its sha256, so a loader (the decide workload,
Ray Serve, a later backtest) refuses anything that changed since training, and the ModelVersion manifest
carries the ONNX file's sha256 exactly as the API requires.

Layout (``docs/research.md``)::

    model.onnx  model.lgb.txt  calibrator.json  contributions.json  interval.json  metrics.json  lineage.json
    artifact.json  modelversion.yaml  report.html  *.png
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy.typing as npt
import yaml

from tradeplane.api.v1alpha1.modelversion import feature_signature_hash

from ...engine.models.contributions import ContributionTable
from ...engine.models.onnx_scorer import OnnxScorer
from ...engine.rollout.metrics import OfflineCalibration

SCHEMA_VERSION: Final = 1
ARTIFACT_INDEX: Final = "artifact.json"
MODEL_FILE: Final = "model.onnx"
INTERVAL_FILE: Final = "interval.json"
"""The calibration evidence behind each decision's p_low/p_high (engine.calibration.ProbabilityInterval)."""
API_VERSION: Final = "tradeplane.io/v1alpha1"

#: Keys of metrics.json's hold-out section that map onto ModelVersion.spec.metrics (camelCase on the wire).
_METRIC_FIELDS: Final = {
    "pr_auc": "prAuc",
    "roc_auc": "rocAuc",
    "brier": "brier",
    "ece": "ece",
    "max_calibration_error_pp": "maxCalibrationErrorPp",
    "hit_at_top_k": "hitAtTopK",
    "avg_utility": "avgUtility",
    "information_coefficient": "informationCoefficient",
    "rank_information_coefficient": "rankInformationCoefficient",
    "false_positive_rate": "falsePositiveRate",
}


class ArtifactError(ValueError):
    """An artifact directory that is incomplete or does not match its index (names the file)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def json_ready(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively, so the files parse everywhere."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(json_ready(value), indent=2, sort_keys=False, allow_nan=False) + "\n")


def modelversion_manifest(
    *,
    name: str,
    model: str,
    artifact_uri: str,
    sha256: str,
    feature_names: Sequence[str],
    metrics: Mapping[str, float],
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ModelVersion document for a trained artifact (validated by the caller with the API types).

    The version enters as a shadow: a new model never trades until a person or a canary promotes it.
    """
    spec_metrics = {
        wire: float(metrics[key])
        for key, wire in _METRIC_FIELDS.items()
        if key in metrics and metrics[key] is not None and math.isfinite(float(metrics[key]))
    }
    spec: dict[str, Any] = {
        "model": model,
        "kind": "classifier",
        "artifact": {"uri": artifact_uri, "sha256": sha256, "format": "onnx"},
        "featureSignature": {"names": list(feature_names), "hash": feature_signature_hash(list(feature_names))},
        "metrics": spec_metrics,
        "serving": {"mode": "in-process"},
        "rollout": {"strategy": "shadow"},
    }
    if training:
        spec["training"] = dict(training)
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {"name": name, "labels": {"tradeplane.io/model": model}},
        "spec": spec,
    }


def write_index(
    out_dir: Path, names: Sequence[str], *, model: str, version: str, feature_names: Sequence[str]
) -> dict[str, Any]:
    """Hash the files this run wrote (``names``, never leftovers of an earlier run) into ``artifact.json``."""
    files = {
        name: {"sha256": sha256_file(out_dir / name), "bytes": (out_dir / name).stat().st_size}
        for name in sorted(names)
    }
    if MODEL_FILE not in files:
        raise ArtifactError(f"{out_dir}: no {MODEL_FILE} to index")
    index = {
        "schemaVersion": SCHEMA_VERSION,
        "model": model,
        "version": version,
        "featureSignature": {"names": list(feature_names), "hash": feature_signature_hash(list(feature_names))},
        "files": files,
    }
    write_json(out_dir / ARTIFACT_INDEX, index)
    return index


def write_modelversion(path: Path, manifest: Mapping[str, Any]) -> None:
    header = "# Written by `tradeplane train`; apply it, or validate it with `tradeplane validate`.\n"
    path.write_text(header + yaml.safe_dump(dict(manifest), sort_keys=False, width=120))


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact: the scorer, the online contribution table and the index it was checked against."""

    directory: Path
    index: Mapping[str, Any]
    feature_names: tuple[str, ...]
    scorer: OnnxScorer
    contributions: ContributionTable | None


def verify_artifact(directory: Path) -> dict[str, Any]:
    """Check every indexed file's sha256 and the feature signature; return the index."""
    index_path = directory / ARTIFACT_INDEX
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{index_path}: missing (not a tradeplane model directory)") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{index_path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if index.get("schemaVersion") != SCHEMA_VERSION:
        raise ArtifactError(f"{index_path}: schemaVersion {index.get('schemaVersion')!r}, expected {SCHEMA_VERSION}")
    for name, entry in index.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in {ARTIFACT_INDEX} but missing")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ArtifactError(f"{path}: sha256 {actual} does not match {ARTIFACT_INDEX} ({entry.get('sha256')})")
    signature = index.get("featureSignature", {})
    names = list(signature.get("names", []))
    if not names or feature_signature_hash(names) != signature.get("hash"):
        raise ArtifactError(f"{index_path}: featureSignature.hash does not match its names")
    return dict(index)


def load_model(directory: Path | str, expected_feature_names: Sequence[str] | None = None) -> LoadedModel:
    """Verify and load an artifact directory for scoring (refuses a changed file or another feature set)."""
    root = Path(directory)
    index = verify_artifact(root)
    names = tuple(index["featureSignature"]["names"])
    if expected_feature_names is not None and tuple(expected_feature_names) != names:
        raise ArtifactError(
            f"{root}: the model expects features {list(names)}, the caller provides {list(expected_feature_names)}"
        )
    scorer = OnnxScorer((root / MODEL_FILE).read_bytes(), names)
    table_path = root / "contributions.json"
    table = ContributionTable.from_dict(json.loads(table_path.read_text())) if table_path.is_file() else None
    return LoadedModel(root, index, names, scorer, table)


CALIBRATION_FILE: Final = "calibration.json"
"""The out-of-fold reliability curve (hit rate and count per equal-width p bucket) that a rollout's calibration
drift is judged against (engine.rollout.metrics.OfflineCalibration; docs/rollouts.md)."""


def write_offline_calibration(out_dir: Path, y: npt.ArrayLike, p: npt.ArrayLike) -> str:
    """Write :data:`CALIBRATION_FILE` from out-of-fold outcomes ``y`` (0/1) and calibrated scores ``p``;
    returns the file name (for :func:`write_index`).

    Why out-of-fold and beside the model: live calibration drift must be measured against what the model
    promised on data it had not seen, per bucket, so "the world changed" is told apart from "the model was
    never calibrated there"; the hold-out is too small for ten buckets, the OOF predictions are not."""
    curve = OfflineCalibration.from_outcomes(y, p)
    write_json(
        out_dir / CALIBRATION_FILE,
        {
            "schemaVersion": SCHEMA_VERSION,
            "source": "out-of-fold",
            "buckets": curve.n_buckets,
            "hitRate": list(curve.hit_rate),
            "count": list(curve.count),
        },
    )
    return CALIBRATION_FILE


def read_offline_calibration(directory: Path) -> OfflineCalibration | None:
    """The :class:`~tradeplane.engine.rollout.metrics.OfflineCalibration` in ``directory`` (an artifact
    directory), or None when the artifact has no such file (trained before it existed). When the directory's
    ``artifact.json`` lists the file, its sha256 must match (:class:`ArtifactError` otherwise)."""
    path = directory / CALIBRATION_FILE
    if not path.is_file():
        return None
    index_path = directory / ARTIFACT_INDEX
    if index_path.is_file():
        entry = json.loads(index_path.read_text()).get("files", {}).get(CALIBRATION_FILE)
        if entry is not None and sha256_file(path) != entry.get("sha256"):
            raise ArtifactError(f"{path}: sha256 does not match {ARTIFACT_INDEX}")
    try:
        doc = json.loads(path.read_text())
        hit = tuple(math.nan if h is None else float(h) for h in doc["hitRate"])
        return OfflineCalibration(hit, tuple(int(c) for c in doc["count"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: not an offline calibration curve: {exc}") from None
