"""Model routers for a local run: each family's ModelVersions loaded from their artifacts, with their roles.

Why checks here, at load time: a model file that is not the one the manifest names (sha256), or whose
inputs differ from the declared feature signature, would make every decision silently wrong. Both fail
the run before it starts, naming the ModelVersion and the field.

Roles follow the rollout spec: ``immediate`` → stable; ``canary`` → canary at its first step's weight (the
rollout controller moves it later); ``shadow`` → scored on every decision, never acted on.

Where scoring runs: in-process (ONNX Runtime on the checked artifact) unless the caller passes ``serve`` —
the cluster's ``decide`` workload does when it is given the Serve address — and then every version whose
``spec.serving.mode`` is ``rayserve`` is scored through its Ray Serve application
(:func:`~tradeplane.workloads.serve.client.scorer_for`). The router, the roles and the cohorts stay here, so
the decision pipeline is the same either way. A local run never passes ``serve``: locally everything is
in-process (ARCHITECTURE, "Two ways to run").
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...api.v1alpha1.modelversion import ModelVersionSpec, ServingMode
from ...engine.calibration import ProbabilityInterval
from ...engine.decision.router import ModelRouter, RoutedModel, Scorer
from ...engine.models.contributions import ContributionTable, top_k_named
from ...engine.models.onnx_scorer import OnnxScorer
from ..training.registry import INTERVAL_FILE
from .manifests import ManifestError

if TYPE_CHECKING:  # serve.client imports this module (artifact paths)
    from ..serve.client import ServeClient

Contributions = Callable[[Mapping[str, float]], tuple[tuple[str, float], ...]]
ServeClients = Callable[[str], "ServeClient"]
"""model family → the Serve client of its application (the caller owns and closes the clients)."""


@dataclass(frozen=True)
class FamilyModels:
    """One family's router, the stable version's feature names and contributions (top-5 per signal, from the
    artifact's ``contributions.json`` when the training wrote one), and each version's artifact sha256."""

    router: ModelRouter
    feature_names: tuple[str, ...]
    artifacts: dict[str, str]
    roles: dict[str, str]
    contributions: Contributions | None = None
    models: tuple[RoutedModel, ...] = ()  #: what the router was built from (a promotion rebuilds it)


def contributions_of(path: Path) -> Contributions | None:
    """The top-5 signed contributions (log-odds) of a decision's features, from the lookup table the research
    pipeline fitted beside the model (engine/models/contributions.py); None without the file."""
    if not path.is_file():
        return None
    table = ContributionTable.from_dict(json.loads(path.read_text()))
    names = table.feature_names

    def top5(features: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
        row = np.array([features.get(n, math.nan) for n in names], dtype=np.float64)
        return tuple(top_k_named(table.contributions(row), names, 5)[0])

    return top5


def interval_of(path: Path) -> ProbabilityInterval | None:
    """The p_up interval table the research pipeline wrote beside the model (``interval.json``); None for an
    artifact without one (trained before it existed: its signals keep NaN bounds)."""
    if not path.is_file():
        return None
    try:
        return ProbabilityInterval.from_dict(json.loads(path.read_text()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: {exc}") from None


def artifact_path(uri: str, home: Path) -> Path:
    """``local://x`` is relative to the tradeplane home; ``file:///abs`` and plain paths are files."""
    if uri.startswith("local://"):
        return home / uri.removeprefix("local://")
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" in uri:
        raise ManifestError(f"artifact uri {uri!r}: a local run reads local://, file:// or plain paths only")
    return Path(uri)


def _verified_artifact(name: str, spec: ModelVersionSpec, home: Path, *, required: bool) -> bytes | None:
    """The artifact's bytes, checked against the manifest's sha256; ``None`` when it is not on this machine and
    not ``required`` (a Serve-scored version: Serve loads and checks it, decide only reads its side files)."""
    assert spec.artifact is not None
    path = artifact_path(spec.artifact.uri, home)
    try:
        data = path.read_bytes()
    except OSError as exc:
        if not required and not path.exists():
            return None
        raise ManifestError(f"ModelVersion/{name}: spec.artifact.uri: cannot read {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.artifact.sha256:
        raise ManifestError(f"ModelVersion/{name}: spec.artifact.sha256: the file {path} has sha256 {digest}, "
                            f"the manifest says {spec.artifact.sha256}")  # fmt: skip
    return data


def _scorer(name: str, spec: ModelVersionSpec, data: bytes | None, serve: ServeClients | None) -> Scorer:
    """Serve's scorer for a ``rayserve`` version when Serve is configured; otherwise ONNX on the bytes."""
    assert spec.feature_signature is not None
    if serve is not None and spec.serving.mode is ServingMode.RAY_SERVE:
        return serve(spec.model).scorer(name, spec.feature_signature.names)
    if data is None:
        raise ManifestError(f"ModelVersion/{name}: spec.artifact.uri: the file is not on this machine and the "
                            "version is not scored through Ray Serve")  # fmt: skip
    try:
        return OnnxScorer(data, expected_feature_names=spec.feature_signature.names)
    except ValueError as exc:
        raise ManifestError(f"ModelVersion/{name}: spec.featureSignature.names: {exc}") from None


def load_family(family: str, versions: dict[str, ModelVersionSpec], home: Path, *,
                serve: ServeClients | None = None) -> FamilyModels:  # fmt: skip
    models: list[RoutedModel] = []
    artifacts: dict[str, str] = {}
    roles: dict[str, str] = {}
    stable_names: tuple[str, ...] = ()
    contributions: Contributions | None = None
    for name in sorted(versions):
        spec = versions[name]
        if spec.artifact is None or spec.feature_signature is None:
            raise ManifestError(f"ModelVersion/{name}: spec.artifact: not trained yet (a local run needs the file)")
        served = serve is not None and spec.serving.mode is ServingMode.RAY_SERVE
        data = _verified_artifact(name, spec, home, required=not served)
        scorer = _scorer(name, spec, data, serve)
        side_files = artifact_path(spec.artifact.uri, home).parent
        role, weight = spec.rollout.initial_route()
        if role == "stable":
            if stable_names:
                raise ManifestError(f"ModelVersion/{name}: family {family!r} has two immediate (stable) versions")
            stable_names = tuple(spec.feature_signature.names)
            contributions = contributions_of(side_files / "contributions.json")
        interval = interval_of(side_files / INTERVAL_FILE)
        models.append(RoutedModel(version=name, role=role, weight=weight, scorer=scorer, interval=interval,
                                  kind=spec.rollout.initial_kind()))  # fmt: skip
        artifacts[name] = spec.artifact.sha256
        roles[name] = role
    if not stable_names:
        raise ManifestError(f"model family {family!r}: no ModelVersion with rollout.strategy immediate (stable)")
    return FamilyModels(ModelRouter(models), stable_names, artifacts, roles, contributions, tuple(models))


def load_families(models: dict[str, ModelVersionSpec], families: set[str], home: Path, *,
                  serve: ServeClients | None = None) -> dict[str, FamilyModels]:  # fmt: skip
    """Routers for the families the strategies use (a family without versions is an error naming it)."""
    out: dict[str, FamilyModels] = {}
    for family in sorted(families):
        versions = {n: m for n, m in models.items() if m.model == family}
        if not versions:
            raise ManifestError(f"model family {family!r}: no ModelVersion in the manifests")
        out[family] = load_family(family, versions, home, serve=serve)
    return out
